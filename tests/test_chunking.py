"""Windowed processing of songs of any length: plans, cross-fade weights, seams, memory."""

from __future__ import annotations

import itertools

import numpy as np

import pytest
import torch

from genreshift import spectral
from genreshift.inference import chunking, reference
from genreshift.spectral import MelConfig

from conftest import music_like


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These tensors are small, so one thread loses little; and on a CPU shared with other
    jobs, two OpenMP threads spin-waiting on each other at every op were measured 25x slower
    (OMP_WAIT_POLICY=ACTIVE, the default)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# Windowed vs one-piece agreement for a shift-equivariant function whose receptive field fits
# in the margin: the two compute the same numbers, then blend them with weights that add to 1,
# so they differ by float32 rounding only (6e-8 measured, outputs of size ~1); a misplaced
# window or a weight off by one frame gives errors of the size of the signal (~0.1 and up).
SEAM_TOL = 1e-5


def conv_net(radius: int, seed: int = 0) -> torch.nn.Module:
    """A small random conv net on [batch, 128, frames] with receptive field 2 * radius + 1,
    zero-padded so it keeps the length: shift-equivariant away from the edges."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv1d(128, 32, 2 * radius + 1, padding=radius), torch.nn.Tanh(),
        torch.nn.Conv1d(32, 128, 1),
    ).eval()


def random_mel(frames: int, seed: int = 0) -> torch.Tensor:
    """[1, 128, frames] in [-1, 1]; a conv net does not care that it is not music."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(1, 128, frames, generator=gen) * 2 - 1


def song_mel(frames: int, seed: int = 0) -> torch.Tensor:
    cfg = MelConfig()
    samples = (frames - 1) * cfg.hop_length
    wav = torch.from_numpy(music_like(samples / cfg.sample_rate + 0.1, seed=seed))[:samples]
    mel = spectral.wav_to_mel(wav, cfg)
    assert mel.shape[-1] == frames
    return mel


@pytest.mark.parametrize("frames,window,overlap,margin", [
    (1, 64, 16, 4), (64, 64, 16, 4), (65, 64, 16, 4), (1001, 128, 32, 8), (1000, 96, 32, 0),
    (5000, 2816, 128, 24), (51_681, 2816, 128, 24), (777, 100, 33, 16),
])
def test_plan_covers_and_weights_sum_to_one(frames: int, window: int, overlap: int,
                                            margin: int) -> None:
    plan = chunking.plan_windows(frames, window, overlap, margin)
    assert plan[0].start == 0 and plan[-1].stop == frames
    assert len({w.length for w in plan}) == 1 and plan[0].length <= window
    total = torch.zeros(frames, dtype=torch.float64)
    for a, b in itertools.pairwise(plan):
        assert b.start < a.stop and a.stop - b.start >= overlap  # overlap at least as asked
        fa, fb = a.fade_out
        assert fa - b.start >= margin and a.stop - fb >= margin  # fade keeps off the edges
    for w in plan:
        total[w.start:w.stop] += torch.from_numpy(chunking.window_weights(w, dtype=np.float64))
    torch.testing.assert_close(total, torch.ones(frames, dtype=torch.float64), rtol=0,
                               atol=1e-12)


def test_plan_rejects_impossible_settings() -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunking.plan_windows(1000, 90, 40, 4)  # 3 * overlap > window
    with pytest.raises(ValueError, match="margin"):
        chunking.plan_windows(1000, 90, 20, 10)  # fade would be empty


@pytest.mark.parametrize("frames", [861, 1000])  # an odd count, an even one
def test_windowed_equals_one_piece_for_local_function(frames: int) -> None:
    radius = 6
    net = conv_net(radius)
    mel = random_mel(frames)
    with torch.no_grad():
        whole = net(mel)
        windowed = chunking.apply_windowed(net, mel, window=200, overlap=48, margin=radius)
    assert windowed.shape == mel.shape
    assert len(chunking.plan_windows(frames, 200, 48, radius)) >= 5
    err = (windowed - whole).abs().max().item()
    assert err < SEAM_TOL, f"windowed vs one-piece max |diff| {err:.2e} >= {SEAM_TOL}"


def test_windowed_agrees_away_from_window_edges_for_wider_function() -> None:
    # Receptive field wider than the margin: the fades now use frames whose output saw padding,
    # so the outputs differ near the seams, but nowhere else.
    radius, margin, frames = 10, 4, 700
    net = conv_net(radius, seed=1)
    mel = random_mel(frames, seed=1)
    with torch.no_grad():
        whole = net(mel)
        windowed = chunking.apply_windowed(net, mel, window=160, overlap=40, margin=margin)
    plan = chunking.plan_windows(frames, 160, 40, margin)
    near = torch.zeros(frames, dtype=torch.bool)
    for w in plan[1:]:
        near[max(0, w.start - radius):w.start + radius] = True
    for w in plan[:-1]:
        near[max(0, w.stop - radius):w.stop + radius] = True
    diff = (windowed - whole).abs().amax(dim=(0, 1))
    assert diff[~near].max().item() < SEAM_TOL
    assert diff[near].max().item() > SEAM_TOL  # the check above can tell the two apart


def test_windows_never_exceed_the_window_on_a_ten_minute_song() -> None:
    cfg = MelConfig()
    frames = cfg.frames(10 * 60 * cfg.sample_rate)  # a 10-minute song
    window = reference.window_frames(cfg)  # reference mode's window: ~32 s
    overlap = reference.window_frames(cfg, reference.OVERLAP_SECONDS)
    sizes: list[int] = []

    def fn(x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-1] <= window, f"called on {x.shape[-1]} frames > {window}"
        sizes.append(x.shape[-1])
        return x * 0.5

    mel = torch.rand(1, 128, frames) * 2 - 1
    out = chunking.apply_windowed(fn, mel, window=window, overlap=overlap, margin=24)
    assert out.shape == mel.shape
    assert len(sizes) >= frames // window
    torch.testing.assert_close(out, mel * 0.5)  # weights add to 1 all along


@pytest.mark.parametrize("frames", [1, 7, 63, 129, 333])
def test_pad_multiple_keeps_lengths(frames: int) -> None:
    seen: list[int] = []

    def strided(x: torch.Tensor) -> torch.Tensor:  # like a U-Net with total stride 8
        assert x.shape[-1] % 8 == 0
        seen.append(x.shape[-1])
        return x.flip(-2)

    mel = torch.rand(2, 128, frames) * 2 - 1
    out = chunking.apply_windowed(strided, mel, window=64, overlap=16, margin=2, pad_multiple=8)
    assert out.shape == mel.shape
    torch.testing.assert_close(out, mel.flip(-2))
    assert max(seen) <= 64


def test_shape_changing_function_is_refused() -> None:
    with pytest.raises(ValueError, match="same size"):
        chunking.apply_windowed(lambda x: x[..., :-1], torch.zeros(1, 128, 300), window=100,
                                overlap=20, margin=2)


def test_chunked_griffin_lim_matches_one_piece() -> None:
    cfg = MelConfig()
    wav = torch.from_numpy(music_like(3.0, seed=3))
    spec = spectral.stft(wav, cfg)
    mel = spectral.magnitude_to_mel(spec.abs(), cfg)
    n = wav.shape[-1]
    whole = spectral.mel_to_wav(mel, cfg, phase=spec, length=n)
    # Up to one window it is the one-piece inverse itself.
    same = chunking.mel_to_wav_chunked(mel, cfg, phase=spec, length=n, window=mel.shape[-1])
    assert torch.equal(same, whole)
    chunked = chunking.mel_to_wav_chunked(mel, cfg, phase=spec, length=n, window=120,
                                          overlap=40, margin=16)
    assert chunked.shape == whole.shape
    # Started from the input's phase, each chunk converges to (nearly) the same waveform as the
    # one-piece run, so the cross-fades add in phase: no dip, no comb filtering at the seams.
    corr = torch.dot(chunked, whole) / (chunked.norm() * whole.norm())
    assert corr > 0.99, f"chunked vs one-piece correlation {corr:.4f}"
    mag = spec.abs()
    sc_whole = float((spectral.stft(whole, cfg).abs() - mag).norm() / mag.norm())
    sc_chunk = float((spectral.stft(chunked, cfg).abs() - mag).norm() / mag.norm())
    assert sc_chunk < sc_whole + 0.02, (sc_chunk, sc_whole)


def test_chunked_griffin_lim_random_phase_is_seeded() -> None:
    cfg = MelConfig()
    mel = song_mel(200, seed=4)
    a = chunking.mel_to_wav_chunked(mel, cfg, n_iter=2, window=120, overlap=40, margin=16,
                                    seed=5)
    b = chunking.mel_to_wav_chunked(mel, cfg, n_iter=2, window=120, overlap=40, margin=16,
                                    seed=5)
    assert torch.equal(a, b) and torch.isfinite(a).all()
    assert a.shape[-1] == (200 - 1) * cfg.hop_length
