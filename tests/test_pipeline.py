"""The one conversion pipeline (inference/pipeline.py): request -> result, each mode's change,
full-band reconstruction, output format, failing fast, and the torch-free fast path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT, music_like, run_cli

from genreshift.errors import GenreshiftError
from genreshift.inference import pipeline
from genreshift.inference.pipeline import (
    Change,
    OutputOptions,
    ReconstructionConfig,
    Request,
    RoundtripSettings,
    Song,
    band_energy_share,
    reconstruct,
)
from genreshift.spectral import MelConfig

SR = 44_100


def bright_song(seconds: float = 2.0) -> np.ndarray:
    """[2, samples] at 44.1 kHz: music below 11 kHz plus a part above it (cymbal-like noise
    high-passed at 12 kHz and a 14 kHz tone), the right channel quieter."""
    rng = np.random.default_rng(0)
    low = music_like(seconds, SR, seed=4)
    noise = np.fft.rfft(rng.standard_normal(low.size))
    noise[np.fft.rfftfreq(low.size, 1 / SR) < 12_000] = 0
    t = np.arange(low.size) / SR
    high = np.fft.irfft(noise, n=low.size) * 0.02 + 0.01 * np.sin(2 * np.pi * 14_000 * t)
    mono = (low + high).astype(np.float32)
    return np.stack([mono, 0.5 * mono])


@pytest.fixture(scope="module")
def song_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("pipeline") / "bright.wav"
    sf.write(path, bright_song().T, SR, subtype="PCM_24")
    return path


def test_roundtrip_keeps_the_band_above_11_khz_and_24_bits(song_file: Path,
                                                          tmp_path: Path) -> None:
    audio, _ = sf.read(song_file, always_2d=True)
    share_in = band_energy_share(audio.T, SR)
    assert share_in > -40  # the input really has a high band
    out = tmp_path / "rt.wav"
    summary = pipeline.run(Request(song_file, OutputOptions(out), RoundtripSettings())).summary
    got, sr = sf.read(out, always_2d=True)
    assert sr == SR and sf.info(out).subtype == "PCM_24"  # the input's sample format
    assert abs(band_energy_share(got.T, SR) - share_in) <= 3.0
    assert summary["reconstruction"]["method"] == "gain"
    # Griffin-Lim from the log-mel at the analysis rate is band-limited: this test can fail.
    old = tmp_path / "old.wav"
    pipeline.run(Request(song_file, OutputOptions(old), RoundtripSettings(),
                         ReconstructionConfig(method="mel", n_iter=2)))
    old_audio, _ = sf.read(old, always_2d=True)
    assert band_energy_share(old_audio.T, SR) < share_in - 20


def test_gain_reconstruction_applies_the_change_and_keeps_the_stereo_image() -> None:
    audio = bright_song(1.5)
    song = Song(Path("x.wav"), audio, SR)
    cfg = MelConfig()
    mid = song.mid(cfg)
    # -12 dB on the bands below ~1 kHz (mel band 40): a per-band change of the mid
    change = np.zeros_like(mid)
    change[:40] = -12.0 / 60.0
    out = reconstruct(song, Change(cfg, mid, mid + change), ReconstructionConfig())
    after = Song(Path("y.wav"), out, SR).mid(cfg)
    delta_db = (after - mid) * 60.0
    heard = mid > -0.8  # bins above the floor of the log-mel range (-100 dB)
    low, kept = delta_db[5:35][heard[5:35]], delta_db[40:90][heard[40:90]]
    assert low.size > 100 and kept.size > 100
    # loudness matching moves everything by one gain; the low bands must drop ~12 dB more
    # than the ones left alone
    assert 10.0 < float(np.median(kept) - np.median(low)) < 14.0
    ratio = np.sqrt((out[1] ** 2).mean() / (out[0] ** 2).mean())
    assert 0.45 < ratio < 0.55  # the right channel is still half the left


def test_max_boost_limits_raised_bands_and_keeps_cuts() -> None:
    cfg = MelConfig()
    mid = np.full((cfg.n_mels, 40), -0.5, dtype=np.float32)
    out = mid.copy()
    out[100:] += 30.0 / 60.0  # the top bands raised 30 dB
    out[:20] -= 12.0 / 60.0  # the bottom ones cut 12 dB
    change = Change(cfg, mid, out)
    limited = pipeline.limit_boost(change, 18.0)
    raised = (limited.mid_out - mid) * 60.0
    np.testing.assert_allclose(raised[100:], 18.0, atol=1e-4)
    np.testing.assert_allclose(raised[:20], -12.0, atol=1e-4)
    assert pipeline.limit_boost(change, None) is change
    audio = bright_song(1.0)
    song = Song(Path("x.wav"), audio, SR)
    mid = song.mid(cfg)
    raise_top = mid.copy()
    raise_top[90:] += 30.0 / 60.0
    free = reconstruct(song, Change(cfg, mid, raise_top), ReconstructionConfig())
    capped = reconstruct(song, Change(cfg, mid, raise_top), ReconstructionConfig(max_boost_db=6))
    # the same loudness either way: the limited output has less of its energy up there
    assert band_energy_share(capped, SR, 4_000) < band_energy_share(free, SR, 4_000) - 3.0
    with pytest.raises(GenreshiftError, match="between 0 and 60"):
        ReconstructionConfig(max_boost_db=-1)


def test_conversion_commands_turn_numpy_huge_pages_off(song_file: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from numpy._core import multiarray

    from genreshift.cli import main

    monkeypatch.delenv("NUMPY_MADVISE_HUGEPAGE", raising=False)
    before = multiarray._set_madvise_hugepage(True)  # returns the setting it replaces
    try:
        assert main(["roundtrip", str(song_file), "-o", str(tmp_path / "rt.wav"),
                     "--quiet"]) == 0
        assert multiarray._set_madvise_hugepage(True) is False  # the command turned them off
        monkeypatch.setenv("NUMPY_MADVISE_HUGEPAGE", "1")  # the user's choice is kept
        assert pipeline.without_huge_pages() is False
        assert multiarray._set_madvise_hugepage(True) is True
    finally:
        multiarray._set_madvise_hugepage(before)


def test_each_mode_supplies_only_its_change(song_file: Path, tmp_path: Path) -> None:
    from test_convert import write_tiny_models

    from genreshift.inference import convert as tconv
    from genreshift.inference import reference

    audio, sr = pipeline.load_song(song_file)
    song = Song(song_file, audio, sr)
    timings = pipeline.Timings()
    rt = pipeline.RoundtripMode(RoundtripSettings()).change(song, timings)
    assert np.array_equal(rt.mid_in, rt.mid_out) and rt.mid_in.shape[0] == 128

    models = tconv.scan_models(write_tiny_models(tmp_path / "models"))
    mode = tconv.TrainedMode(tconv.TrainedSettings(tuple(tconv.parse_targets("jazz"))),
                             models=models, device="cpu")
    mode.check()
    ch = mode.change(song, timings)
    assert ch.mid_out.shape == ch.mid_in.shape and np.abs(ch.mid_out - ch.mid_in).mean() > 1e-3
    assert ch.info["targets"][0]["genre"] == "jazz" and "classify" in timings.seconds

    ref = tmp_path / "ref.wav"
    sf.write(ref, music_like(1.5, 22_050, seed=9), 22_050)
    rmode = reference.ReferenceMode(reference.ReferenceSettings(ref, steps=1), device="cpu")
    rmode.check()
    rc = rmode.change(song, timings)
    assert rc.mid_out.shape == rc.mid_in.shape and "reference" in rc.mels
    assert rc.protect == (ref,)


class _MustNotRun:
    name = "spy"

    def check(self) -> None:
        pass

    def change(self, song, timings):  # pragma: no cover - reaching it is the failure
        raise AssertionError("the conversion started before the output was checked")


def test_an_unwritable_output_folder_fails_before_the_conversion(song_file: Path) -> None:
    for dst in (Path("/proc/genreshift-test/out.wav"), Path("/no/such/folder/out.wav")):
        with pytest.raises(GenreshiftError, match=str(dst.parent)):
            pipeline.run(Request(song_file, OutputOptions(dst), RoundtripSettings()),
                         mode=_MustNotRun())


def test_a_truncated_wav_converts_with_a_warning(tmp_path: Path) -> None:
    full = tmp_path / "full.wav"
    sf.write(full, music_like(2.0, 22_050, seed=5), 22_050, subtype="PCM_16")
    cut = tmp_path / "cut.wav"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) - 22_050])  # half a second of samples missing
    r = run_cli("roundtrip", cut, "-o", tmp_path / "out.wav", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert len(summary["warnings"]) == 1 and str(cut) in summary["warnings"][0]
    assert "warning" in r.stderr and str(cut) in r.stderr


def test_parsing_and_a_trained_conversion_import_no_torch(tmp_path: Path) -> None:
    """`--help`, a parse error, `info`, `genres` and `convert --to` with the shipped models
    (their ONNX graphs) in one process: torch must never be imported."""
    example = ROOT / "examples" / "example.flac"
    code = f"""
import sys
from genreshift.cli import main
for argv in (["--help"], ["convert", "x.wav", "--to", "jazz", "--strength", "2"]):
    try:
        main(argv)
    except SystemExit:
        pass
assert main(["info", {str(example)!r}]) == 0
assert main(["genres"]) == 0
assert main(["convert", {str(example)!r}, "--to", "jazz", "-o", {str(tmp_path / 'j.wav')!r},
             "--quiet"]) == 0
print("TORCH" if "torch" in sys.modules else "NO TORCH")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "NO TORCH"
    assert (tmp_path / "j.wav").is_file()


def drummed_song(seconds: float = 8.0, bpm: float = 100.0, sr: int = 22_050) -> np.ndarray:
    """[samples]: a kick on every beat and a hat on every off-beat over a sustained chord."""
    t = np.arange(int(seconds * sr)) / sr
    x = 0.05 * sum(np.sin(2 * np.pi * f * t) for f in (220.0, 277.2, 329.6))
    rng = np.random.default_rng(3)
    beat = 60.0 / bpm
    for k in range(int(seconds / beat)):
        i = int(k * beat * sr)
        n = min(int(0.15 * sr), len(t) - i)
        tt = np.arange(n) / sr
        x[i:i + n] += 0.6 * np.sin(2 * np.pi * 60 * tt) * np.exp(-tt * 30)
        j = int((k + 0.5) * beat * sr)
        m = min(int(0.05 * sr), len(t) - j)
        if m > 0:
            x[j:j + m] += 0.1 * rng.standard_normal(m) * np.exp(-np.arange(m) / sr * 80)
    return x.astype(np.float32)


def test_cli_rhythm_replace_lays_a_groove_on_the_beat_and_keeps_a_drone(tmp_path: Path) -> None:
    from test_convert import write_tiny_models

    models = write_tiny_models(tmp_path / "models")
    song = tmp_path / "drums.wav"
    sf.write(song, drummed_song(), 22_050)
    r = run_cli("convert", song, "--to", "rock", "--models", models, "--rhythm", "replace",
                "-o", tmp_path / "out.wav", "--json")
    assert r.returncode == 0, r.stderr
    rhythm = json.loads(r.stdout)["rhythm"]
    assert rhythm["rhythm"] == "replace" and rhythm["groove"] == "rock"
    assert abs(rhythm["tempo_bpm"] - 100.0) < 3.0
    drone = tmp_path / "drone.wav"
    t = np.arange(8 * 22_050) / 22_050
    sf.write(drone, (0.2 * np.sin(2 * np.pi * 110 * t)).astype(np.float32), 22_050)
    r = run_cli("convert", drone, "--to", "rock", "--models", models, "--rhythm", "replace",
                "-o", tmp_path / "drone_out.wav", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["rhythm"]["rhythm"] == "keep" and "no clear beat" in summary["rhythm"]["reason"]
    assert any("no clear beat" in n for n in summary["notes"])


def test_add_into_a_genre_without_drums_converts_the_whole_song(tmp_path: Path) -> None:
    """Nothing is added (classical has no kit), so the song's own kit stays: the converter
    changes it with the rest instead of leaving it unconverted next to a converted layer."""
    from test_convert import _save_converter, write_tiny_models

    from genreshift.inference import convert as tconv

    models = write_tiny_models(tmp_path / "models")
    _save_converter(models / "rest-to-classical.pt", "classical", 3)
    song = tmp_path / "drums.wav"
    sf.write(song, drummed_song(), 22_050)
    found = tconv.scan_models(models)
    layers = {}
    for target in ("classical", "rock"):
        s = tconv.convert_trained_file(
            song, tmp_path / f"{target}.wav", models=found, device="cpu",
            settings=tconv.TrainedSettings(targets=tuple(tconv.parse_targets(target)),
                                           rhythm="add"))
        layers[target] = (s["rhythm"]["rhythm"], s["rhythm"]["converted_layer"])
    assert layers == {"classical": ("keep", "song"), "rock": ("add", "harmonic")}
