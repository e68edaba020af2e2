"""Production of the synthetic corpus (genreshift.data.production) and the SoundFonts it uses:
no latency anywhere in the chain, mastering lands on its loudness without clipping, seeded
byte-for-byte, drum kits play every GM drum the arrangements use, fonts can be held out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genreshift.audio import integrated_loudness
from genreshift.data import production as prod
from genreshift.data.arrangements import (
    BASS,
    COMP,
    DRUMS,
    LEAD,
    Arrangement,
    NoteEvent,
    Track,
)
from genreshift.data.synth import (
    KIT_ONLY_KEY_MAP,
    SAMPLE_RATE,
    SynthError,
    build_synth_corpus,
    default_drumkits,
    default_soundfonts,
    exclude_soundfonts,
    read_metadata,
    render_stems,
)

SF_DIR = Path("/usr/share/sounds/sf2")
FLUID, TIM = SF_DIR / "FluidR3_GM.sf2", SF_DIR / "TimGM6mb.sf2"
AVL = SF_DIR / "Black_Pearl_4_LV2.sf2"
SR = SAMPLE_RATE
needs_gm = pytest.mark.skipif(not (FLUID.is_file() and TIM.is_file()),
                              reason="needs fluid-soundfont-gm and timgm6mb-soundfont")
needs_avl = pytest.mark.skipif(not AVL.is_file(), reason="needs avldrums.lv2-soundfont")


def _tracks(genre_programs: dict[int, int]) -> tuple[Track, ...]:
    roles = {LEAD: "lead", COMP: "comp", BASS: "bass", DRUMS: "drums"}
    return tuple(Track(roles[c], c, p, 0.0 if c == LEAD else -4.0)
                 for c, p in sorted(genre_programs.items()))


def _music(seconds: float, seed: int) -> np.ndarray:
    """Decaying tone bursts on a 0.25 s grid with random pitch and level: music-like
    dynamics (transients, decays) for the mastering tests."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(int(0.25 * SR)) / SR
    out = np.zeros((2, n), dtype=np.float32)
    for start in range(0, n - len(t), len(t)):
        f = float(rng.uniform(80, 2000))
        burst = np.sin(2 * np.pi * f * t) * np.exp(-t * rng.uniform(5, 30)) * rng.uniform(0.1, 1)
        out[:, start:start + len(t)] += burst.astype(np.float32) * np.array([[1.0], [0.8]])
    return out


def _clicks(n: int, times: list[float]) -> np.ndarray:
    x = np.zeros(n, dtype=np.float32)
    for s in times:
        x[int(s * SR)] = 0.8
    return x


def _onset_lag(a: np.ndarray, b: np.ndarray, max_lag: int = 200) -> int:
    """Lag (samples) of b against a at the peak of the cross-correlation of their positive
    sample-to-sample differences (an onset signal)."""
    da = np.maximum(np.diff(np.abs(a)), 0)
    db = np.maximum(np.diff(np.abs(b)), 0)
    lags = range(-max_lag, max_lag + 1)
    cc = [float(np.dot(da[max(0, -k):len(da) - max(0, k)], db[max(0, k):len(db) - max(0, -k)]))
          for k in lags]
    return list(lags)[int(np.argmax(cc))]


# --------------------------------------------------------------------------- latency


@pytest.mark.parametrize("genre, track", [
    ("rock", Track("comp", COMP, 30, 0.0)),  # distortion guitar: drive + filters
    ("metal", Track("lead", LEAD, 29, 0.0)),
    ("hiphop", Track("comp", COMP, 4, 0.0)),  # Rhodes: chorus
    ("jazz", Track("drums", DRUMS, 0, 0.0)),  # compressor
    ("jazz", Track("bass", BASS, 32, 0.0)),
])
def test_track_effects_add_no_latency(genre, track):
    board, label = prod.track_board(genre, track, np.random.default_rng(0))
    assert board is not None and label
    x = _clicks(SR, [0.1, 0.4, 0.7])[None]
    y = board(x * 0.05, SR)
    assert y.shape == x.shape
    assert _onset_lag(x[0], y[0]) == 0
    # filters' phase may move the peak of a click by a sample or two; latency would be more
    assert abs(int(np.argmax(np.abs(y[0, : int(0.3 * SR)]))) - int(0.1 * SR)) <= 2


def test_bus_and_master_add_no_latency():
    settings = prod.bus_settings("classical", np.random.default_rng(1))
    x = np.repeat(_clicks(2 * SR, [0.2, 0.9, 1.5])[None], 2, axis=0) * 0.1
    y = prod.bus_board(settings)(x, SR)
    assert _onset_lag(x[0], y[0]) == 0 and _onset_lag(x[1], y[1]) == 0
    m, _ = prod.master(x + 0.01 * _music(2.0, 0), SR, -12.0)
    assert _onset_lag(x[0], m[0]) == 0


def test_two_genres_stay_aligned_through_the_whole_chain():
    """The same clicks (the same performance) produced as rock and as lo-fi (different
    effects, pans, reverbs, loudness): the outputs' onsets line up at lag 0."""
    n = 3 * SR
    times = [0.25, 0.8, 1.3, 1.9, 2.4]
    stems = {LEAD: _clicks(n, times), COMP: _clicks(n, times), BASS: _clicks(n, times),
             DRUMS: _clicks(n, times)}
    outs = []
    for genre, effects in (("rock", ()), ("lofi", (("lowpass", 4000.0), ("vinyl", 3.0)))):
        arr = Arrangement(genre, None, _tracks({LEAD: 30, COMP: 4, BASS: 33, DRUMS: 0}),
                          (), n / SR, 0.5, effects)
        outs.append(prod.produce(arr, stems, SR, (0, 1, 2)).audio.mean(axis=0))
    # within two samples (0.1 ms; the low-pass's phase): the mel frames are 256 samples apart
    assert abs(_onset_lag(outs[0], outs[1])) <= 2
    for out in outs:
        assert abs(_onset_lag(stems[LEAD], out)) <= 2
    # the measure sees a shift: a chain with 64 samples of latency would fail above
    assert abs(_onset_lag(outs[0], np.roll(outs[1], 64)) - 64) <= 2


# --------------------------------------------------------------------------- mastering


@pytest.mark.parametrize("target, scale", [(-16.0, 0.01), (-12.0, 0.3), (-8.0, 1.0),
                                           (-8.0, 4.0)])
def test_master_hits_the_loudness_without_clipping(target, scale):
    x = _music(6.0, int(-target)) * np.float32(scale)
    y, lufs = prod.master(x, SR, target)
    assert y.dtype == np.float32 and np.isfinite(y).all()
    measured = integrated_loudness(y, SR)
    assert abs(measured - target) <= 0.5
    assert lufs == pytest.approx(measured, abs=0.02)
    peak_db = 20 * np.log10(np.abs(y).max())
    assert peak_db <= -0.1
    assert (np.abs(y) >= 0.999).sum() == 0  # nothing at full scale: no clipped samples


def test_bus_targets_span_the_range():
    targets = [prod.bus_settings("rock", np.random.default_rng(s)).target_lufs
               for s in range(200)]
    assert min(targets) >= -16.0 and max(targets) <= -8.0
    assert min(targets) < -15.0 and max(targets) > -9.0


def test_loudness_matches_pyloudnorm():
    x = _music(5.0, 3)
    assert prod.loudness(x, SR) == pytest.approx(integrated_loudness(x, SR), abs=0.02)
    assert prod.loudness(x[0], SR) == pytest.approx(integrated_loudness(x[:1], SR), abs=0.02)
    assert prod.loudness(np.zeros((2, SR)), SR) == float("-inf")


def test_produce_is_seeded_and_stereo():
    n = 2 * SR
    rng = np.random.default_rng(0)
    stems = {c: (rng.normal(0, 0.05, n) * (np.arange(n) % 5000 < 800)).astype(np.float32)
             for c in (LEAD, COMP, BASS, DRUMS)}
    arr = Arrangement("rock", None, _tracks({LEAD: 29, COMP: 30, BASS: 34, DRUMS: 16}), (),
                      n / SR, 0.5)
    a = prod.produce(arr, stems, SR, (5, 1, 2))
    b = prod.produce(arr, stems, SR, (5, 1, 2))
    c = prod.produce(arr, stems, SR, (6, 1, 2))
    assert a.audio.shape == (2, n) and a.audio.tobytes() == b.audio.tobytes()
    assert a.label == b.label and a.audio.tobytes() != c.audio.tobytes()
    assert not np.allclose(a.audio[0], a.audio[1])  # panned: a real stereo image
    assert "drive:" in a.label and "reverb=" in a.label and "lufs=" in a.label
    assert -16.5 <= a.loudness_lufs <= -7.5


# --------------------------------------------------------------------------- SoundFonts


@needs_avl
def test_avldrums_kit_plays_every_gm_drum_the_arrangements_use():
    notes = tuple(NoteEvent(0.3 * i, 0.3 * i + 0.2, DRUMS, key, 100)
                  for i, key in enumerate(range(35, 58)))
    arr = Arrangement("rock", None, (Track("drums", DRUMS, 16, 0.0),), notes,
                      0.3 * len(notes) + 0.3, 0.5)
    stem = render_stems(arr, TIM if TIM.is_file() else AVL, drumkit=AVL).stems[DRUMS]
    for i, key in enumerate(range(35, 58)):
        seg = stem[int(0.3 * i * SR): int((0.3 * i + 0.25) * SR)]
        assert np.abs(seg).max() > 1e-3, key  # every key sounds
    assert set(KIT_ONLY_KEY_MAP) == {35, 48, 50, 52}


@needs_gm
def test_default_fonts_and_exclusion():
    fonts = default_soundfonts()
    assert [f.name for f in fonts[:2]] == [FLUID.name, TIM.name]
    assert all(f.name != AVL.name for f in fonts)  # kits are never melodic fonts
    assert exclude_soundfonts(fonts, ["timgm6mb.SF2"]) == [f for f in fonts if f != TIM]
    if AVL.is_file():
        assert AVL in default_drumkits()


@needs_gm
def test_exclude_soundfont_removes_the_font(tmp_path):
    out = tmp_path / "c"
    summary = build_synth_corpus(out, ["rock"], 3, 2.5, soundfonts=[FLUID, TIM], seed=2,
                                 workers=1, progress=False, exclude=[TIM.name])
    assert [Path(f).name for f in summary["soundfonts"]] == [FLUID.name]
    assert TIM.name not in {Path(k).name for k in summary["drumkits"]}
    for r in read_metadata(out):
        assert r["soundfont"] == FLUID.name and r["drumkit"] != TIM.name
        assert TIM.name not in r["production"]
    with pytest.raises(SynthError, match="leaves no melodic SoundFont"):
        build_synth_corpus(tmp_path / "d", ["rock"], 1, 2.5, soundfonts=[TIM],
                           exclude=[TIM.name], progress=False)


@needs_gm
def test_cli_exclude_and_dry(tmp_path):
    from genreshift.audio import load_audio
    from genreshift.cli import main

    out = tmp_path / "c"
    code = main(["data", "synth", "--out", str(out), "--genres", "rock", "--tunes", "2",
                 "--seconds", "2.5", "--soundfont", str(FLUID), "--soundfont", str(TIM),
                 "--exclude-soundfont", TIM.name, "--dry", "-q"])
    assert code == 0
    for r in read_metadata(out):
        assert r["soundfont"] == FLUID.name and r["production"] == "dry"
        audio, _ = load_audio(out / r["file_name"])
        assert audio.shape[0] == 1
