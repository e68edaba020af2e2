"""The rhythm section (genreshift.inference.rhythm): separation, beat and meter analysis, the
groove on the song's grid, and the keep / replace / add mix, on short generated signals.

Generated material only: a click track, a "song" of synthesised kick, snare and hats over
sustained sawtooth chords (bass note on each downbeat), and a beat-less drone. The grooves
need a GM SoundFont (FluidR3_GM or TimGM6mb); those tests skip without one.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from genreshift.audio import integrated_loudness
from genreshift.errors import GenreshiftError
from genreshift.inference import rhythm

SR = 22_050
needs_kit = pytest.mark.skipif(
    not any((Path("/usr/share/sounds/sf2") / n).is_file()
            for n in rhythm.GROOVE_SOUNDFONTS),
    reason="needs a GM SoundFont with drum kits: sudo apt install fluid-soundfont-gm",
)


# --------------------------------------------------------------------------- material


def _decay(n: int, sr: int, tau: float) -> np.ndarray:
    return np.exp(-np.arange(n) / (tau * sr))


def _add(out: np.ndarray, sig: np.ndarray, t: float, sr: int, gain: float = 1.0) -> None:
    i = round(t * sr)
    if 0 <= i < len(out):
        m = min(len(sig), len(out) - i)
        out[i:i + m] += gain * sig[:m]


def beat_times(bpm: float, seconds: float, drift: float = 0.0) -> np.ndarray:
    """Beats from 0 with the tempo changing linearly by ``drift`` (a fraction) to the end."""
    t, out = 0.0, []
    while t < seconds:
        out.append(t)
        t += 60.0 / (bpm * (1.0 + drift * t / seconds))
    return np.array(out)


def click_track(bpm: float, seconds: float, sr: int = SR, drift: float = 0.0) -> np.ndarray:
    y = np.zeros(int(seconds * sr))
    n = int(0.02 * sr)
    click = np.sin(2 * np.pi * 1000 * np.arange(n) / sr) * _decay(n, sr, 0.004)
    for k, b in enumerate(beat_times(bpm, seconds, drift)):
        _add(y, click, b, sr, 0.8 if k % 4 == 0 else 0.5)
    return y.astype(np.float32)


def drum_song(bpm: float, seconds: float, sr: int = SR, beats_per_bar: int = 4, seed: int = 0,
              drums: bool = True) -> np.ndarray:
    """Kick on 1 (and 3), snare on the other beats, eighth hats, over sawtooth chords that
    change each bar with a bass note on the downbeat."""
    rng = np.random.default_rng(seed)
    beats = beat_times(bpm, seconds)
    y = np.zeros(int(seconds * sr))
    nk, ns, nh = int(0.25 * sr), int(0.18 * sr), int(0.05 * sr)
    tk = np.arange(nk) / sr
    kick = 0.9 * np.sin(2 * np.pi * np.cumsum(50 + 100 * np.exp(-tk / 0.03)) / sr) \
        * _decay(nk, sr, 0.08)
    for k, b in enumerate(beats):
        if drums:
            pos = k % beats_per_bar
            if pos == 0 or (beats_per_bar == 4 and pos == 2):
                _add(y, kick, b, sr)
            else:
                snare = 0.5 * rng.standard_normal(ns) * _decay(ns, sr, 0.05)
                _add(y, snare, b, sr)
            for half in (0.0, 0.5):
                hat = np.diff(rng.standard_normal(nh + 1)) * 0.15 * _decay(nh, sr, 0.012)
                _add(y, hat, b + half * 60.0 / bpm, sr, 1.0 if half == 0 else 0.7)
    progression = ((0, 4, 7), (9, 0, 4), (5, 9, 0), (7, 11, 2))
    downbeats = list(beats[::beats_per_bar]) + [seconds]
    for j, (a, b) in enumerate(itertools.pairwise(downbeats)):
        i0, i1 = int(a * sr), min(int(b * sr), len(y))
        t = np.arange(i1 - i0) / sr
        chord = sum(np.sin(2 * np.pi * 220 * 2 ** (pc / 12) * h * t) / h
                    for pc in progression[j % 4] for h in range(1, 6))
        fade = np.minimum(1.0, np.minimum(t / 0.03, (t[-1] - t + 1e-3) / 0.03))
        y[i0:i1] += 0.1 * chord * fade
        root = 55 * 2 ** (progression[j % 4][0] / 12)
        y[i0:i1] += 0.25 * np.sin(2 * np.pi * root * t) * np.exp(-t / 0.6)
    return (0.7 * y / np.abs(y).max()).astype(np.float32)


def drone(seconds: float, sr: int = SR, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    y = sum(np.sin(2 * np.pi * f * t + 2 * np.sin(2 * np.pi * 0.1 * t))
            * (0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(0.03, 0.1) * t + rng.uniform(0, 6)))
            for f in (110, 165, 220, 277.2, 330))
    return (0.1 * y + 0.002 * rng.standard_normal(len(t))).astype(np.float32)


@pytest.fixture(scope="module")
def song90() -> tuple[np.ndarray, rhythm.RhythmAnalysis]:
    """A 44.1 kHz stereo song at 90 BPM and its analysis (the native-rate path)."""
    y = drum_song(90, 8.0, sr=44_100, seed=1)
    stereo = np.stack([y, 0.8 * y])
    return stereo, rhythm.analyse_rhythm(stereo, 44_100)


@pytest.fixture(scope="module")
def clicks() -> tuple[np.ndarray, rhythm.RhythmAnalysis]:
    y = click_track(120, 6.0)
    return y, rhythm.analyse_rhythm(y, SR)


def _onsets(y: np.ndarray, sr: int) -> np.ndarray:
    import librosa

    return librosa.onset.onset_detect(y=y, sr=sr, hop_length=128, units="time",
                                      backtrack=False)


# --------------------------------------------------------------------------- analysis


def test_layers_sum_to_the_input_and_the_masks_are_librosas():
    import librosa

    rng = np.random.default_rng(0)
    y = drum_song(100, 3.0, seed=2)
    stereo = np.stack([y, np.roll(y, 7)])
    harmonic, percussive = rhythm.separate(stereo, SR)
    assert harmonic.shape == percussive.shape == stereo.shape
    assert harmonic.dtype == percussive.dtype == np.float32
    np.testing.assert_allclose(harmonic + percussive, stereo, atol=1e-6)
    mag = np.abs(rng.standard_normal((65, 90))).astype(np.float32)
    for margin in (1.0, 2.0):
        ours = rhythm.hpss_masks(mag, margin=margin, kernel=(17, 9))
        theirs = librosa.decompose.hpss(mag, kernel_size=(17, 9), mask=True, margin=margin)
        for a, b in zip(ours, theirs):
            np.testing.assert_allclose(a, b, atol=1e-5)


def test_click_track_tempo_and_beats(clicks):
    _, a = clicks
    truth = beat_times(120, 6.0)
    assert a.tempo == pytest.approx(120.0, rel=0.01)
    assert a.has_clear_beat and a.beat_confidence > 0.8 and a.tempo_confidence > 0.8
    offsets = [np.min(np.abs(truth - b)) for b in a.beats]
    assert max(offsets) < 0.02 and len(a.beats) >= len(truth) - 2


def test_tempo_drift_is_followed():
    truth = beat_times(110, 8.0, drift=0.15)
    a = rhythm.analyse_rhythm(click_track(110, 8.0, drift=0.15), SR)
    assert max(np.min(np.abs(truth - b)) for b in a.beats) < 0.025
    assert len(a.beats) >= len(truth) - 2


@pytest.mark.parametrize("beats_per_bar", [4, 3])
def test_meter_and_downbeats(beats_per_bar):
    bpm, seconds = 100, 8.0
    a = rhythm.analyse_rhythm(drum_song(bpm, seconds, beats_per_bar=beats_per_bar, seed=3), SR)
    assert a.beats_per_bar == beats_per_bar
    truth = beat_times(bpm, seconds)[::beats_per_bar]
    assert max(np.min(np.abs(truth - d)) for d in a.downbeats) < 0.03
    assert 0.0 <= a.downbeat_confidence <= 1.0 and a.meter_confidence > 0.3


def test_a_drone_has_no_clear_beat():
    a = rhythm.analyse_rhythm(drone(6.0), SR)
    assert not a.has_clear_beat
    assert a.beat_confidence < rhythm.CLEAR_BEAT_THRESHOLD
    for value in (a.tempo_confidence, a.beat_confidence, a.downbeat_confidence,
                  a.meter_confidence):
        assert 0.0 <= value <= 1.0


# --------------------------------------------------------------------------- groove


@needs_kit
def test_click_track_groove_hits_the_clicks(clicks):
    """The electronic groove's kick and snare (four on the floor, claps on 2 and 4) from the
    first downbeat on (before it, the pickup plays the phrase's closing snare roll), rendered
    alone, has its onsets within 30 ms of the clicks and one at nearly every click."""
    import dataclasses

    from genreshift.data.arrangements import CLAP, KICK, SNARE, SNARE2
    from genreshift.data.synth import render_stems

    _, a = clicks
    arr = rhythm.groove_arrangement(a, "electronic", seed=0)
    hits = tuple(n for n in arr.notes if n.pitch in (KICK, SNARE, CLAP, SNARE2)
                 and n.start > a.downbeats[0] - 0.05)
    kit = render_stems(dataclasses.replace(arr, notes=hits), rhythm.groove_soundfont(), SR)
    onsets = _onsets(kit.stems[arr.tracks[0].channel], SR)
    clicks_t = beat_times(120, 6.0)
    clicks_t = clicks_t[clicks_t > a.downbeats[0] - 0.05]
    covered = clicks_t[(clicks_t >= onsets.min() - 0.03) & (clicks_t <= onsets.max() + 0.03)]
    assert len(onsets) >= len(clicks_t) - 3
    assert max(np.min(np.abs(clicks_t - t)) for t in onsets) < 0.030
    assert all(np.min(np.abs(onsets - c)) < 0.030 for c in covered)


@needs_kit
def test_same_seed_same_groove_other_seed_other_groove(clicks):
    _, a = clicks
    one = rhythm.render_groove(a, "jazz", SR, seed=5)
    assert one.shape == (1, 6 * SR) and one.dtype == np.float32 and np.any(one)
    np.testing.assert_array_equal(one, rhythm.render_groove(a, "jazz", SR, seed=5))
    assert not np.array_equal(one, rhythm.render_groove(a, "jazz", SR, seed=6))
    assert rhythm.render_groove(a, "rock", SR, channels=2).shape == (2, 6 * SR)
    # the pipeline renders the groove before converting and hands it to apply_rhythm
    audio, _ = clicks
    mixed, _ = rhythm.apply_rhythm(audio, SR, "replace", [("jazz", 1.0)], seed=5, analysis=a)
    given, _ = rhythm.apply_rhythm(audio, SR, "replace", [("jazz", 1.0)], seed=5, analysis=a,
                                   groove=one)
    np.testing.assert_array_equal(mixed, given)


def test_classical_has_no_groove(clicks):
    _, a = clicks
    assert rhythm.groove_arrangement(a, "classical") is None
    assert not np.any(rhythm.render_groove(a, "classical", SR))


# --------------------------------------------------------------------------- mixing


@needs_kit
def test_a_song_at_90_bpm_keeps_90_bpm_after_replace(song90):
    stereo, a = song90
    assert a.tempo == pytest.approx(90.0, rel=0.02)
    out, info = rhythm.apply_rhythm(stereo, 44_100, "replace", [("rock", 1.0)], analysis=a)
    assert out.shape == stereo.shape and out.dtype == np.float32
    assert info["rhythm"] == "replace" and info["groove"] == "rock"
    assert info["tempo_bpm"] == pytest.approx(90.0, rel=0.02) and info["bars"] >= 2
    after = rhythm.analyse_rhythm(out, 44_100)
    assert after.has_clear_beat
    assert after.tempo == pytest.approx(90.0, rel=0.03)
    # the groove sits at the loudness of the percussion it replaced
    assert info["level_method"] == "BS.1770"
    groove = out - a.harmonic
    assert integrated_loudness(groove, 44_100) == pytest.approx(
        integrated_loudness(a.percussive, 44_100), abs=1.0)


@needs_kit
def test_add_lays_the_groove_under_the_songs_percussion(song90):
    stereo, a = song90
    out, info = rhythm.apply_rhythm(stereo, 44_100, "add", [("jazz", 0.6), ("rock", 0.4)],
                                    analysis=a, seed=2)
    assert info["rhythm"] == "add" and info["groove"] == "jazz"  # the heaviest weight
    added = out - stereo
    assert integrated_loudness(added, 44_100) == pytest.approx(
        integrated_loudness(a.percussive, 44_100) + rhythm.ADD_LEVEL_DB, abs=1.0)


def test_replace_into_classical_takes_the_kit_out():
    y = drum_song(100, 6.0, seed=4)
    out, info = rhythm.apply_rhythm(y, SR, "replace", [("classical", 1.0)])
    assert info["rhythm"] == "replace" and info["groove"] is None
    assert "no drums" in info["reason"]
    before = np.sum(rhythm.separate(y, SR)[1] ** 2)
    after = np.sum(rhythm.separate(out, SR)[1] ** 2)
    assert after < 0.5 * before


def test_a_drone_gets_the_note_and_no_groove():
    y = drone(6.0)
    out, info = rhythm.apply_rhythm(y[None], SR, "replace", [("rock", 1.0)])
    assert out is not None and np.array_equal(out, y[None])
    assert info["rhythm"] == "keep" and info["asked"] == "replace"
    assert info["reason"].startswith("no clear beat (confidence ")
    assert f"{info['beat_confidence']:.2f}" in info["reason"]
    assert "groove" not in info


def test_keep_changes_nothing_and_bad_settings_are_named(clicks):
    y, _ = clicks
    out, info = rhythm.apply_rhythm(y[None], SR, "keep", [("rock", 1.0)])
    assert np.array_equal(out, y[None]) and info == {"rhythm": "keep", "asked": "keep"}
    with pytest.raises(GenreshiftError) as e:
        rhythm.apply_rhythm(y[None], SR, "swap", [("rock", 1.0)])
    assert e.value.option == "rhythm" and e.value.kind == "bad_option"
    with pytest.raises(GenreshiftError) as e:
        rhythm.apply_rhythm(y[None], SR, "replace", [("polka", 1.0)])
    assert e.value.option == "to" and "known:" in str(e.value)
    assert rhythm.groove_genre([("rock", 0.5), ("jazz", 0.5)]) == "rock"


def test_importing_it_loads_neither_torch_nor_librosa():
    code = ("import sys, genreshift.inference.rhythm; "
            "print(sorted(m for m in ('torch', 'librosa') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
