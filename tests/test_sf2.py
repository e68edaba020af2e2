"""A SoundFont cut to the presets a rendering plays (genreshift.data.sf2): the cut font renders
what the whole one renders, and is a fraction of its size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genreshift.data import sf2, synth
from genreshift.data.arrangements import DRUM_BANK, DRUMS, Arrangement, NoteEvent, Track

SF_DIR = Path("/usr/share/sounds/sf2")
TIM = SF_DIR / "TimGM6mb.sf2"
FLUID = SF_DIR / "FluidR3_GM.sf2"
SR = 22_050
# TinySoundFont keeps a voice's sample position as an absolute index into the font's sample
# data; in the cut font the indices are smaller, so the interpolation's rounding differs in
# the last bits of float32 (measured: at most 4e-7 on full-scale hits, about -130 dB). 1e-5 is
# -100 dB: far below hearing, far above that rounding, and a wrong sample or loop is ~1.
TOLERANCE = 1e-5


def _arrangement(programs: list[tuple[int, int]], seconds: float = 3.0) -> Arrangement:
    """One track per (channel, program): the drum keys 35-81 on DRUMS, a scale elsewhere."""
    tracks, notes = [], []
    for channel, program in programs:
        tracks.append(Track("drums" if channel == DRUMS else "lead", channel, program, 0.0))
        keys = range(35, 82) if channel == DRUMS else range(48, 72, 2)
        step = seconds / len(keys)
        for i, key in enumerate(keys):
            notes.append(NoteEvent(i * step, i * step + 0.8 * step, channel, key,
                                   40 + (i * 37) % 87))
    notes.sort(key=lambda n: (n.start, n.channel, n.pitch))
    return Arrangement("test", None, tuple(tracks), tuple(notes), seconds, 0.5)


def _kits(path: Path) -> list[int]:
    return sorted(p for b, p in synth.soundfont_presets(path) if b == DRUM_BANK)


@pytest.mark.skipif(not TIM.is_file(), reason="needs TimGM6mb.sf2 (make install)")
@pytest.mark.parametrize("program", [0, 25, 40])
def test_cut_font_renders_like_the_whole_font(program):
    arr = _arrangement([(DRUMS, program), (0, 33)])
    whole = synth.render_stems(arr, TIM, SR).stems
    cut = synth.render_stems(arr, TIM, SR, used_presets_only=True).stems
    for channel in (DRUMS, 0):
        assert np.abs(whole[channel]).max() > 0.05
        np.testing.assert_allclose(cut[channel], whole[channel], rtol=0, atol=TOLERANCE)


@pytest.mark.skipif(not TIM.is_file(), reason="needs TimGM6mb.sf2 (make install)")
def test_cut_holds_only_the_chosen_presets(tmp_path):
    kits = _kits(TIM)
    data = sf2.subset(TIM, lambda bank, program: bank == DRUM_BANK)
    out = tmp_path / "kits.sf2"
    out.write_bytes(data)
    assert sorted(synth.soundfont_presets(out)) == [(DRUM_BANK, k) for k in kits]
    assert len(data) < TIM.stat().st_size / 4
    one = sf2.subset(TIM, lambda bank, program: (bank, program) == (DRUM_BANK, kits[-1]))
    assert len(one) < len(data)
    assert sf2.subset(TIM, lambda bank, program: False) is None


@pytest.mark.skipif(not FLUID.is_file(), reason="needs FluidR3_GM.sf2 (make install)")
def test_groove_kit_of_fluidr3_is_small_and_the_same():
    jazz_kit = 32
    data = sf2.subset(FLUID, lambda bank, program: bank == DRUM_BANK and program in (0, jazz_kit))
    assert len(data) < FLUID.stat().st_size / 8
    arr = _arrangement([(DRUMS, jazz_kit)], seconds=2.0)
    whole = synth.render_stems(arr, FLUID, SR).stems[DRUMS]
    cut = synth.render_stems(arr, FLUID, SR, used_presets_only=True).stems[DRUMS]
    np.testing.assert_allclose(cut, whole, rtol=0, atol=TOLERANCE)
    synth.release_soundfonts()  # the whole font holds ~435 MB


def test_not_a_soundfont_is_refused(tmp_path):
    bad = tmp_path / "notes.sf2"
    bad.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    with pytest.raises(sf2.Sf2Error, match="notes.sf2"):
        sf2.subset(bad, lambda bank, program: True)
    short = tmp_path / "short.sf2"
    short.write_bytes(TIM.read_bytes()[:4096] if TIM.is_file() else b"RIFF\0\0\0\0sfbk")
    with pytest.raises(sf2.Sf2Error, match="short.sf2"):
        sf2.subset(short, lambda bank, program: True)
