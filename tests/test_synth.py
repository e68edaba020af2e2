"""The paired synthetic genre corpus: melodies, arrangements, rendering, the corpus builder and
`genreshift data synth`.

A few-tune corpus of 4-second clips is built once per module (in-process) and once more with
two worker processes to prove that the files do not depend on the number of workers.
"""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genreshift.audio import integrated_loudness, load_audio
from genreshift.data import arrangements as arr_mod
from genreshift.data.arrangements import DEFAULT_GENRES, DRUMS, GENRES, arrange, to_midi
from genreshift.data.melodies import (
    TuneRef,
    TuneSkipped,
    candidate_tunes,
    derive_harmony,
    identify_chord,
    load_tune,
    meter_for,
    place_tune,
)
from genreshift.data.synth import (
    METADATA_COLUMNS,
    SAMPLE_RATE,
    TARGET_LUFS,
    SynthError,
    assign_splits,
    build_synth_corpus,
    check_genres,
    check_soundfont,
    read_metadata,
    render_arrangement,
    soundfont_presets,
)

SF_DIR = Path("/usr/share/sounds/sf2")
FLUID = SF_DIR / "FluidR3_GM.sf2"
TIM = SF_DIR / "TimGM6mb.sf2"
needs_soundfonts = pytest.mark.skipif(
    not (FLUID.is_file() and TIM.is_file()),
    reason="needs the Debian GM SoundFonts: sudo apt install fluid-soundfont-gm "
           "timgm6mb-soundfont (make install does it)",
)
SECONDS = 4.0
N_TUNES = 3
SEED = 7


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    if not (FLUID.is_file() and TIM.is_file()):
        pytest.skip("GM SoundFonts not installed")
    out = tmp_path_factory.mktemp("synth") / "corpus"
    summary = build_synth_corpus(out, DEFAULT_GENRES, N_TUNES, SECONDS,
                                 soundfonts=[FLUID, TIM], seed=SEED, workers=1,
                                 progress=False)
    assert summary["renderings"] == N_TUNES * len(DEFAULT_GENRES)
    assert summary["tunes"] == N_TUNES
    return out


@pytest.fixture(scope="module")
def rows(corpus) -> list[dict[str, str]]:
    return read_metadata(corpus)


# --------------------------------------------------------------------------- melodies


def test_candidates_are_sorted_and_cover_the_collections():
    refs = candidate_tunes()
    assert len(refs) > 5000  # Essen, O'Neill's, Ryan's, Aird's, chorales ...
    assert list(refs) == sorted(refs, key=TuneRef.sort_key)
    sources = {r.source.split("/")[0] for r in refs}
    assert {"essenFolksong", "ryansMammoth", "bach", "oneills1850"} <= sources


def test_load_tune_with_pickup_gets_bar_aligned_melody_and_derived_harmony():
    tune = load_tune(TuneRef("ryansMammoth/SoldiersJoy.abc"))
    assert tune.meter.label == "2/4" and tune.meter.bar_ql == 2.0
    assert (tune.tonic, tune.mode) == (2, "major")  # D major
    assert tune.harmony == "derived"
    # the two-sixteenth pickup ends exactly on the first bar line
    assert tune.melody[0].start == pytest.approx(1.5)
    assert tune.melody[2].start == pytest.approx(2.0)
    # chords tile one pass of the tune without gaps and end on the tonic (final cadence)
    assert tune.chords[0].start == 0.0
    for a, b in zip(tune.chords, tune.chords[1:]):
        assert a.end == pytest.approx(b.start)
    assert tune.chords[-1].end == pytest.approx(tune.period)
    assert tune.period % tune.meter.bar_ql == 0


def test_chord_symbols_and_chorales_keep_their_own_harmony():
    lead = load_tune(TuneRef("nottingham-dataset/reelsa-c.abc", 80))
    assert lead.harmony == "chord symbols"
    assert {c.name for c in lead.chords} >= {"D", "Em", "A7"}
    chorale = load_tune(TuneRef("bach/bwv10.7.mxl"))
    assert chorale.harmony == "chorale"
    assert chorale.chords[0].name == "Gm"  # G minor chorale opens on the tonic


def test_unusable_entries_are_skipped_with_a_reason():
    with pytest.raises(TuneSkipped, match="no time signature"):
        load_tune(TuneRef("essenFolksong/altdeu10.abc", 2))  # "M: none"
    with pytest.raises(TuneSkipped, match="does not parse"):
        load_tune(TuneRef("essenFolksong/no-such-file.abc", 1))


def test_identify_chord_and_meters():
    assert identify_chord({7, 11, 2, 5}) == (7, "7")
    assert identify_chord({9, 0, 4}, bass=0) == (9, "min")  # inversion: root is not the bass
    assert identify_chord(set()) is None
    assert meter_for(6, 8).compound and meter_for(6, 8).bar_ql == 3.0
    assert meter_for(4, 2).bars_per_measure == 2
    assert meter_for(5, 4) is None


def test_derived_harmony_covers_the_melody():
    tune = load_tune(TuneRef("ryansMammoth/SoldiersJoy.abc"))
    chords = derive_harmony(tune.melody, tune.meter, tune.period, tune.tonic, tune.mode)
    covered = total = 0.0
    for note in tune.melody:
        t = note.start % tune.period
        chord = next(c for c in chords if c.start <= t + 1e-9 < c.end)
        total += note.dur
        covered += note.dur * (note.pitch % 12 in chord.pitch_classes)
    assert covered / total > 0.6  # most of the melody (by time) is a chord tone


def test_place_tune_is_seeded_and_fills_the_time():
    tune = load_tune(TuneRef("ryansMammoth/SoldiersJoy.abc"))
    a = place_tune(tune, 20.0, np.random.default_rng(1))
    b = place_tune(tune, 20.0, np.random.default_rng(1))
    assert a == b
    assert 84 <= a.bpm <= 116
    assert a.seconds(a.total_ql) == pytest.approx(20.0)
    assert a.melody[-1].end <= a.total_ql + 1e-9
    assert (a.tonic - tune.tonic) % 12 == a.transpose % 12
    pitches = [n.pitch for n in a.melody]
    assert 52 <= min(pitches) and max(pitches) <= 93
    assert a.chords[0].start == 0 and a.chords[-1].end == pytest.approx(a.total_ql)


# --------------------------------------------------------------------------- arrangements


@pytest.fixture(scope="module")
def sheet():
    tune = load_tune(TuneRef("ryansMammoth/SoldiersJoy.abc"))
    return place_tune(tune, 12.0, np.random.default_rng(3))


def _drum_keys(arrangement) -> set[int]:
    return {n.pitch for n in arrangement.notes if n.channel == DRUMS}


def test_every_genre_keeps_the_melody(sheet):
    for genre in GENRES:
        a = arrange(sheet, genre, np.random.default_rng(0))
        lead = [n for n in a.notes if n.channel == arr_mod.LEAD]
        assert [n.pitch for n in lead] == [n.pitch for n in sheet.melody], genre
        roles = {t.role for t in a.tracks}
        assert {"lead", "comp", "bass"} <= roles, genre
        for n in a.notes:
            assert 0 <= n.start < n.end and 1 <= n.velocity <= 127 and 0 <= n.pitch <= 127


def test_genre_signatures(sheet):
    beat_s = 60.0 / sheet.qpm
    classical = arrange(sheet, "classical", np.random.default_rng(0))
    assert not any(t.is_drums for t in classical.tracks)
    jazz = arrange(sheet, "jazz", np.random.default_rng(0))
    assert arr_mod.RIDE in _drum_keys(jazz) and arr_mod.HAT_PEDAL in _drum_keys(jazz)
    assert jazz.swing > 0.55
    bass = [n for n in jazz.notes if n.channel == arr_mod.BASS]
    assert len(bass) == pytest.approx(sheet.total_ql / sheet.meter.beat_ql, abs=2)  # walking
    rock = arrange(sheet, "rock", np.random.default_rng(0))
    snares = [n.start for n in rock.notes if n.channel == DRUMS and n.pitch == arr_mod.SNARE]
    # backbeat: in 2/4 every snare hit is on beat 2 (within the humanisation)
    phase = [(t / beat_s) % 2 for t in snares]
    assert all(abs(p - 1.0) < 0.05 for p in phase)
    electronic = arrange(sheet, "electronic", np.random.default_rng(0))
    kicks = [n.start for n in electronic.notes if n.channel == DRUMS and n.pitch == arr_mod.KICK]
    assert len(kicks) == pytest.approx(sheet.total_ql / sheet.meter.beat_ql, abs=1)
    hiphop = arrange(sheet, "hiphop", np.random.default_rng(0))
    comp = next(t for t in hiphop.tracks if t.role == "comp")
    assert comp.program in (4, 5)  # Rhodes / electric piano


def test_instruments_vary_between_tunes(sheet):
    leads = {arrange(sheet, "jazz", np.random.default_rng(s)).tracks[0].program
             for s in range(20)}
    assert len(leads) >= 3


def test_midi_round_trip(sheet):
    import mido

    a = arrange(sheet, "rock", np.random.default_rng(0))
    mid = to_midi(a, {0: 100})
    assert mid.length == pytest.approx(a.duration, abs=0.01)
    notes_on = sum(1 for tr in mid.tracks for m in tr if m.type == "note_on")
    assert notes_on == len(a.notes)
    tempo = next(m.tempo for m in mid.tracks[0] if m.type == "set_tempo")
    assert mido.tempo2bpm(tempo) == pytest.approx(sheet.qpm, rel=1e-4)


@needs_soundfonts
def test_render_levels_follow_the_mix(sheet):
    a = arrange(sheet, "electronic", np.random.default_rng(0))
    r = render_arrangement(a, TIM)
    assert r.audio.dtype == np.float32
    assert r.audio.shape == (round(a.duration * SAMPLE_RATE),)
    assert np.isfinite(r.audio).all() and np.abs(r.audio).max() > 0.01
    assert set(r.volumes) == {t.channel for t in a.tracks}
    assert max(r.volumes.values()) == 127


@needs_soundfonts
def test_lofi_is_low_fidelity(sheet):
    """Lo-fi's effects (low-pass, vinyl) are applied to the mix: less top end than the same
    performance rendered clean."""
    import dataclasses

    a = arrange(sheet, "lofi", np.random.default_rng(0))
    names = [name for name, _ in a.effects]
    assert names == ["lowpass", "vinyl"]
    treated = render_arrangement(a, TIM).audio
    clean = render_arrangement(dataclasses.replace(a, effects=()), TIM).audio

    def top_share(x):  # energy above 6 kHz / total
        spec = np.abs(np.fft.rfft(x)) ** 2
        freqs = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
        return spec[freqs > 6000].sum() / spec.sum()

    assert top_share(treated) < 0.5 * top_share(clean)


# --------------------------------------------------------------------------- the corpus


@needs_soundfonts
def test_layout_and_metadata(corpus, rows):
    import mido

    assert set(METADATA_COLUMNS) <= set(rows[0])
    assert len(rows) == N_TUNES * len(DEFAULT_GENRES)
    assert {r["genre"] for r in rows} == set(DEFAULT_GENRES)
    for genre in DEFAULT_GENRES:
        assert len({r["tune"] for r in rows if r["genre"] == genre}) == N_TUNES
    for r in rows:
        wav = corpus / r["file_name"]
        assert r["file_name"] == f"{r['genre']}/{r['tune']}.wav" and wav.is_file()
        audio, sr = load_audio(wav)
        assert sr == SAMPLE_RATE == int(r["sample_rate"])
        assert audio.shape == (2, int(SECONDS * SAMPLE_RATE))  # produced: stereo
        mid = mido.MidiFile(corpus / r["midi_file"])
        assert any(m.type == "note_on" for tr in mid.tracks for m in tr)
        tempo = next(m.tempo for m in mid.tracks[0] if m.type == "set_tempo")
        assert mido.tempo2bpm(tempo) == pytest.approx(float(r["tempo"]), abs=0.01)
        assert r["seed"] == str(SEED)
        assert r["soundfont"] in (FLUID.name, TIM.name)
        assert r["drumkit"] == "" if r["genre"] == "classical" else r["drumkit"]
        assert "reverb=" in r["production"] and "lufs=" in r["production"]
        assert r["source"] in {t.source for t in candidate_tunes()}
    # audiofolder layout: only WAVs are audio; nothing else but the MIDI files and the CSV
    others = {p.suffix for p in corpus.rglob("*") if p.is_file()} - {".wav", ".mid", ".csv"}
    assert not others


@needs_soundfonts
def test_one_split_key_tempo_and_soundfont_per_tune(rows):
    by_tune: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        by_tune.setdefault(r["tune"], []).append(r)
    for tune, renderings in by_tune.items():
        drummed = [r for r in renderings if r["genre"] != "classical"]
        assert len({r["drumkit"] for r in drummed}) == 1, tune
        for col in ("split", "key", "tempo", "soundfont", "source", "transpose"):
            assert len({r[col] for r in renderings}) == 1, (tune, col)
    assert {r["split"] for r in rows} == {"train", "valid", "test"}  # 3 tunes: one each


def test_split_proportions_and_seeding():
    splits = assign_splits(100, 0)
    assert (splits.count("train"), splits.count("valid"), splits.count("test")) == (80, 10, 10)
    assert assign_splits(100, 0) == splits and assign_splits(100, 1) != splits
    assert assign_splits(1, 0) == ["train"]


@needs_soundfonts
def test_mastered_loudness_in_range_without_clipping(corpus, rows):
    """Produced clips land on their drawn target (recorded in `production` as lufs=...),
    inside -16..-8 LUFS, with the sample peak at or under -0.1 dBFS and no NaN."""
    targets = []
    for r in rows:
        audio, sr = load_audio(corpus / r["file_name"])
        assert np.isfinite(audio).all()
        measured = integrated_loudness(audio, sr)
        target = float(r["production"].split("lufs=")[1].split()[0])
        targets.append(target)
        assert -16.0 <= target <= -8.0
        assert measured == pytest.approx(target, abs=0.5)
        assert float(r["loudness_lufs"]) == pytest.approx(measured, abs=0.1)
        assert np.abs(audio).max() <= 10 ** (-0.1 / 20)
    assert max(targets) - min(targets) > 1.0  # drawn, not fixed


@needs_soundfonts
def test_dry_corpus_is_mono_at_the_old_target(tmp_path):
    out = tmp_path / "dry"
    build_synth_corpus(out, ["rock", "classical"], 1, 3.0, soundfonts=[TIM], seed=SEED,
                       workers=1, progress=False, production=False, variety=False)
    for r in read_metadata(out):
        audio, sr = load_audio(out / r["file_name"])
        assert audio.shape[0] == 1 and r["production"] == "dry"
        assert integrated_loudness(audio, sr) == pytest.approx(TARGET_LUFS, abs=1.0)
        assert float(r["loudness_lufs"]) == pytest.approx(TARGET_LUFS, abs=1.0)
        assert np.abs(audio).max() <= 10 ** (-1 / 20) + 1e-3  # -1 dBFS ceiling


@needs_soundfonts
def test_same_seed_same_bytes_with_any_number_of_workers(corpus, tmp_path):
    again = tmp_path / "again"
    build_synth_corpus(again, DEFAULT_GENRES, N_TUNES, SECONDS, soundfonts=[FLUID, TIM],
                       seed=SEED, workers=2, progress=False)
    files = sorted(p.relative_to(corpus) for p in corpus.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (corpus / rel).read_bytes() == (again / rel).read_bytes(), rel


@needs_soundfonts
def test_different_seed_different_corpus(corpus, rows, tmp_path):
    other = tmp_path / "other"
    build_synth_corpus(other, ["rock"], 1, SECONDS, soundfonts=[FLUID, TIM], seed=SEED + 1,
                       workers=1, progress=False)
    new = read_metadata(other)[0]
    old = next(r for r in rows if r["genre"] == "rock" and r["tune"] == new["tune"])
    a, _ = load_audio(other / new["file_name"])
    b, _ = load_audio(corpus / old["file_name"])
    assert not np.array_equal(a, b)


@needs_soundfonts
def test_renderings_of_one_tune_are_time_aligned(corpus, rows):
    """The drummed genres' onset envelopes line up with rock's (cross-correlation peaks within
    two 11.6 ms frames of zero lag, and correlates); a different tune's does not. Classical
    has no drums and slow string attacks, so its alignment is checked in the MIDI: every
    on-beat melody note starts within the humanisation of the same note in every genre."""
    import librosa
    import mido

    def envelope(r):
        audio, sr = load_audio(corpus / r["file_name"], mono=True)
        e = librosa.onset.onset_strength(y=audio[0], sr=sr, hop_length=256)
        return (e - e.mean()) / (e.std() + 1e-9)

    def xcorr(a, b, lag):
        n = min(len(a), len(b))
        a, b = a[:n], b[:n]
        return float(np.mean(a[max(0, lag):n + min(0, lag)] * b[max(0, -lag):n - max(0, lag)]))

    def lead_onsets(r):
        mid = mido.MidiFile(corpus / r["midi_file"])
        lead = next(t for t in mid.tracks if t.name == "lead")
        tempo = next(m.tempo for m in mid.tracks[0] if m.type == "set_tempo")
        ticks, out = 0, []
        for m in lead:
            ticks += m.time
            if m.type == "note_on" and m.velocity > 0:
                out.append(mido.tick2second(ticks, mid.ticks_per_beat, tempo))
        return np.array(out)

    by = {(r["tune"], r["genre"]): r for r in rows}
    tunes = sorted({r["tune"] for r in rows})
    for tune in tunes:
        rock = envelope(by[(tune, "rock")])
        beat_s = 60.0 / float(by[(tune, "rock")]["tempo"])
        if by[(tune, "rock")]["meter"] in ("6/8", "9/8", "12/8"):
            beat_s *= 1.5
        max_lag = max(3, int(beat_s * SAMPLE_RATE / 256 / 8))
        for genre in ("electronic", "hiphop", "jazz"):
            env = envelope(by[(tune, genre)])
            cc = [xcorr(rock, env, lag) for lag in range(-max_lag, max_lag + 1)]
            assert abs(int(np.argmax(cc)) - max_lag) <= 2, (tune, genre)
            assert cc[max_lag] > 0.2, (tune, genre)
        reference = lead_onsets(by[(tune, "classical")])
        on_beat = np.abs(reference / beat_s - np.round(reference / beat_s)) * beat_s < 0.015
        for genre in ("jazz", "rock", "electronic", "hiphop"):
            onsets = lead_onsets(by[(tune, genre)])
            assert len(onsets) == len(reference), (tune, genre)
            assert np.abs(onsets - reference)[on_beat].max() < 0.025, (tune, genre)
    same = xcorr(envelope(by[(tunes[0], "rock")]), envelope(by[(tunes[0], "electronic")]), 0)
    other = xcorr(envelope(by[(tunes[0], "rock")]), envelope(by[(tunes[1], "electronic")]), 0)
    assert same > other + 0.2


# --------------------------------------------------------------------------- bad input


def test_soundfont_checks(tmp_path):
    with pytest.raises(SynthError, match="SoundFont not found"):
        check_soundfont(tmp_path / "missing.sf2")
    fake = tmp_path / "fake.sf2"
    fake.write_text("not a soundfont\n")
    with pytest.raises(SynthError, match="not a SoundFont"):
        check_soundfont(fake)
    with pytest.raises(SynthError, match="is a directory"):
        check_soundfont(tmp_path)
    riff = tmp_path / "tiny.sf2"
    riff.write_bytes(b"RIFF" + (4).to_bytes(4, "little") + b"sfbk")
    with pytest.raises(SynthError, match="not a SoundFont"):
        check_soundfont(riff)


@needs_soundfonts
def test_soundfont_presets_of_real_fonts():
    for font in (FLUID, TIM):
        presets = soundfont_presets(font)
        assert {(0, p) for p in range(128)} <= presets
        assert {(128, 0), (128, 25), (128, 32)} <= presets
        assert check_soundfont(font) == font


def test_genre_checks():
    assert check_genres("Jazz, rock,jazz") == ["jazz", "rock"]
    with pytest.raises(SynthError, match="unknown genre 'polka'.*known genres: classical"):
        check_genres("jazz,polka")
    with pytest.raises(SynthError, match="no genre"):
        check_genres(" , ")


@pytest.mark.parametrize("kwargs, message", [
    ({"tunes": 0}, "--tunes must be"),
    ({"seconds": 0.5}, "--seconds must be between"),
    ({"seconds": float("nan")}, "--seconds must be between"),
    ({"seed": -1}, "--seed must be"),
    ({"workers": 0}, "--workers must be"),
    ({"genres": "classical,dubstep"}, "unknown genre 'dubstep'"),
])
def test_bad_arguments(tmp_path, kwargs, message):
    args = {"out": tmp_path / "c", "tunes": 1, "seconds": 3.0, "seed": 0, "progress": False}
    args.update(kwargs)
    with pytest.raises(SynthError, match=message):
        build_synth_corpus(**args)
    assert not (tmp_path / "c").exists()  # nothing written before the inputs are checked


def test_out_folder_checks(tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("user data")
    with pytest.raises(SynthError, match="not empty.*--force"):
        build_synth_corpus(full, ["rock"], 1, 3.0, progress=False)
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(SynthError, match="not a folder"):
        build_synth_corpus(a_file, ["rock"], 1, 3.0, progress=False)


@needs_soundfonts
def test_force_replaces_only_the_previous_corpus(tmp_path):
    out = tmp_path / "c"
    build_synth_corpus(out, ["rock", "jazz"], 2, 3.0, seed=1, workers=1, progress=False)
    (out / "notes.txt").write_text("user data")
    build_synth_corpus(out, ["rock"], 1, 3.0, seed=1, workers=1, progress=False, force=True)
    assert (out / "notes.txt").read_text() == "user data"
    assert sorted(p.name for p in (out / "rock").iterdir()) == ["tune_0000.mid",
                                                                 "tune_0000.wav"]
    assert not any((out / "jazz").iterdir())
    assert len(read_metadata(out)) == 1


# --------------------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "genreshift", "data", "synth", *args],
                          check=False, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("make_args, message", [
    (lambda tmp: ["--soundfont", str(tmp / "missing.sf2")], "SoundFont not found"),
    (lambda tmp: ["--soundfont", str(tmp / "text.sf2")], "not a SoundFont"),
    (lambda tmp: ["--genres", "jazz,polka"], "unknown genre 'polka'"),
    (lambda tmp: ["--tunes", "0"], "--tunes must be"),
    (lambda tmp: ["--seconds", "9999"], "--seconds must be between"),
])
def test_cli_bad_input_is_one_line_and_exit_1(tmp_path, capsys, make_args, message):
    from genreshift.cli import main

    (tmp_path / "text.sf2").write_text("hello\n")
    code = main(["data", "synth", "--out", str(tmp_path / "c"), "-q", *make_args(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("genreshift: error: ") and message in err
    assert not (tmp_path / "c").exists()


def test_cli_subprocess_bad_soundfont_no_traceback(tmp_path):
    """`python -m genreshift` end to end: a text file named .sf2 is refused in one line."""
    fake = tmp_path / "text.sf2"
    fake.write_text("hello\n")
    proc = _cli("--out", str(tmp_path / "c"), "-q", "--soundfont", str(fake))
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("genreshift: error: ")
    assert "not a SoundFont" in lines[0] and "Traceback" not in proc.stderr


@needs_soundfonts
def test_cli_builds_a_corpus(tmp_path):
    out = tmp_path / "c"
    proc = _cli("--out", str(out), "--genres", "jazz,classical", "--tunes", "1",
                "--seconds", "3", "--seed", "4", "--soundfont", str(TIM))
    assert proc.returncode == 0, proc.stderr
    assert "wrote 2 clips" in proc.stdout
    rows = read_metadata(out)
    assert [r["genre"] for r in rows] == ["jazz", "classical"]
    assert all(r["soundfont"] == TIM.name for r in rows)
    with open(out / "metadata.csv", newline="") as f:
        assert next(csv.reader(f))[0] == "file_name"
    assert math.isclose(float(rows[0]["duration"]), 3.0)


@needs_soundfonts
def test_make_example_regenerates_the_bundled_clip(tmp_path):
    """examples/make_example.py with its defaults gives back examples/example.flac (to the
    last bit here; within 2 LSB allows for float differences on other CPUs)."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("make_example",
                                                  root / "examples" / "make_example.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = tmp_path / "example.flac"
    assert script.main(["--out", str(out)]) == 0
    new, sr = load_audio(out)
    committed, sr0 = load_audio(root / "examples" / "example.flac")
    assert sr == sr0 == SAMPLE_RATE and new.shape == committed.shape
    assert np.abs(new - committed).max() <= 2 / 32768


def test_only_split_renders_the_same_test_tunes(tmp_path):
    """--only-split test renders exactly the tunes a full corpus puts in its test split (the
    held-out SoundFont measurement relies on it), and nothing else."""
    args = dict(genres=["rock"], tunes=4, seconds=2.0, soundfonts=[TIM], seed=SEED, workers=1,
                progress=False, production=False, variety=False)
    build_synth_corpus(tmp_path / "full", **args)
    build_synth_corpus(tmp_path / "test", only_split="test", **args)
    full = [r for r in read_metadata(tmp_path / "full") if r["split"] == "test"]
    part = read_metadata(tmp_path / "test")
    assert part and [r["tune"] for r in part] == [r["tune"] for r in full]
    assert {r["split"] for r in part} == {"test"}
    with pytest.raises(SynthError, match="only-split"):
        build_synth_corpus(tmp_path / "bad", only_split="held-out", **args)
