"""Songs of any length: mel -> mel functions and Griffin-Lim over overlapping windows.

A song's log-mel [..., n_mels, frames] is cut into windows of at most ``window`` frames that
overlap by at least ``overlap`` frames; the function (a generator, or reference mode's
optimisation) sees one window at a time, so its memory does not grow with the song. The
outputs are joined by a raised-cosine cross-fade inside each overlap:

    window i      ───────────────────────╲
    window i+1                    ╱──────────────────────
                           |margin| fade |margin|
                           └────── overlap ──────┘

The fade (sin² up, cos² down: the two weights add to exactly 1 at every frame) sits in the
middle of the overlap, ``margin`` frames away from either window's edge. Near its own edges a
window's output is least trustworthy (a convolution there sees padding, not music); with the
margin the fade never uses those frames. For a shift-equivariant function whose receptive
field reaches no further than ``margin`` frames, windowed and one-piece outputs are therefore
the same everywhere, up to float rounding (tests/test_chunking.py checks this).

Windows are spread evenly with equal lengths (at most ``window``), so the extra work is
(windows - 1) x overlap frames and never a nearly empty last window.

Griffin-Lim is chunked the same way in time, with the fade applied to waveforms. With the
input's own phase as the start every chunk converges to the same phase in the overlaps, so the
cross-fade adds in phase; with a random start the initial phase is drawn per block of frames
from the seed, so overlapping chunks at least start from the same phase.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from genreshift import spectral
from genreshift.spectral import MelConfig

# Griffin-Lim's memory is a few complex STFTs of the whole input; beyond this many frames
# (~47 s at hop 512, ~24 s at hop 256) reconstruction goes window by window, which also lets a
# long song show its progress. The overlap costs about 3 % more work.
GL_WINDOW_FRAMES = 2048
GL_MIN_OVERLAP_FRAMES = 64


def gl_margin_frames(cfg: MelConfig) -> int:
    """Frames to keep a Griffin-Lim fade away from a chunk's edge: each iteration's STFT
    couples frames up to n_fft / hop apart (4 at hop 512, 8 at hop 256); twice that."""
    return 2 * math.ceil(cfg.n_fft / cfg.hop_length)


# Random initial phase is drawn per block of this many frames, seeded by (seed, block), so that
# every chunk covering a frame starts it from the same phase.
_PHASE_BLOCK = 64

# A mel -> mel function on numpy arrays (trained mode) or torch tensors (reference mode, which
# optimises with autograd): apply_windowed works with either and keeps the input's kind.
MelFn = Callable[[Any], Any]


@dataclass(frozen=True)
class Window:
    """Frames [start, stop) of the song, and the weight ramps at either end of the window.

    ``fade_in`` is the frame range [a, b) where this window's weight rises from 0 to 1 (empty
    for the first window); ``fade_out`` where it falls back to 0 (empty for the last).
    """

    start: int
    stop: int
    fade_in: tuple[int, int]
    fade_out: tuple[int, int]

    @property
    def length(self) -> int:
        return self.stop - self.start


def plan_windows(frames: int, window: int, overlap: int, margin: int = 0) -> list[Window]:
    """Cover ``frames`` frames with equal windows of at most ``window`` frames.

    Consecutive windows overlap by at least ``overlap`` frames; the fade between them is the
    overlap less ``margin`` frames at each end. Needs 0 <= 2 * margin < overlap and
    3 * overlap <= window, which keeps every frame inside at most two fades' worth of windows.
    """
    if frames <= 0:
        raise ValueError(f"need at least one frame, got {frames}")
    if window <= 0 or overlap < 0 or margin < 0:
        raise ValueError(f"need window > 0, overlap >= 0, margin >= 0; got {window}, {overlap}, "
                         f"{margin}")
    if frames <= window:
        return [Window(0, frames, (0, 0), (frames, frames))]
    if not 2 * margin < overlap or 3 * overlap > window:
        raise ValueError(f"need 2 * margin < overlap and 3 * overlap <= window; got margin "
                         f"{margin}, overlap {overlap}, window {window}")
    n = math.ceil((frames - overlap) / (window - overlap))
    length = math.ceil((frames + (n - 1) * overlap) / n)  # <= window, since n covers it
    starts = [round(i * (frames - length) / (n - 1)) for i in range(n)]
    fades = []
    for i in range(n - 1):
        a, b = starts[i + 1] + margin, starts[i] + length - margin
        fades.append((a, b))
    for (_, b), (a, _) in itertools.pairwise(fades):
        # Each frame may be shared by at most two windows' weights; the checks above make this
        # hold, this guards the arithmetic.
        assert b <= a, (frames, window, overlap, margin)
    windows = []
    for i, s in enumerate(starts):
        fade_in = fades[i - 1] if i > 0 else (s, s)
        fade_out = fades[i] if i < n - 1 else (s + length, s + length)
        windows.append(Window(s, s + length, fade_in, fade_out))
    return windows


def _ramp(n: int) -> np.ndarray:
    """n weights rising from ~0 to ~1 (sin², sampled at half-frame offsets), so that
    ramp + ramp[::-1] == 1 exactly in exact arithmetic."""
    t = (np.arange(n, dtype=np.float64) + 0.5) / n
    return np.sin(0.5 * math.pi * t) ** 2


def window_weights(win: Window, *, dtype: Any = np.float32, scale: int = 1) -> np.ndarray:
    """Weights [win.length * scale] of one window's output; over all windows of a plan they
    add up to 1 at every position. ``scale`` > 1 gives the same weights at ``scale`` positions
    per frame (samples per hop, for waveforms)."""
    w = np.ones(win.length * scale, dtype=np.float64)
    a, b = win.fade_in
    if b > a:
        w[(a - win.start) * scale:(b - win.start) * scale] = _ramp((b - a) * scale)
        w[:(a - win.start) * scale] = 0.0
    a, b = win.fade_out
    if b > a:
        w[(a - win.start) * scale:(b - win.start) * scale] = 1.0 - _ramp((b - a) * scale)
        w[(b - win.start) * scale:] = 0.0
    return w.astype(dtype)


def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _pad_to_multiple(x: Any, multiple: int) -> tuple[Any, int]:
    extra = (-x.shape[-1]) % multiple
    if extra == 0:
        return x, 0
    # Reflection continues the music; replicate where the window is too short to reflect.
    reflect = x.shape[-1] > extra
    if _is_tensor(x):
        import torch.nn.functional as F  # a tensor came in, so torch is loaded already

        flat = x.reshape(-1, *x.shape[-2:])
        padded = F.pad(flat, (0, extra), mode="reflect" if reflect else "replicate")
        return padded.reshape(*x.shape[:-1], x.shape[-1] + extra), extra
    widths = [(0, 0)] * (x.ndim - 1) + [(0, extra)]
    return np.pad(x, widths, mode="reflect" if reflect else "edge"), extra


def _bar(items: list, progress: bool, **kwargs: Any) -> Any:
    """``items`` with a tqdm bar when ``progress``; tqdm.auto is imported only then (its
    import is ~0.1 s of a fresh CLI conversion's start)."""
    if not progress:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, leave=False, **kwargs)


def _weights_like(win: Window, y: Any) -> Any:
    if _is_tensor(y):
        import torch

        return torch.from_numpy(window_weights(win, dtype=np.float64)).to(y.device, y.dtype)
    return window_weights(win, dtype=y.dtype)


def apply_windowed(
    fn: MelFn,
    mel: Any,
    *,
    window: int,
    overlap: int,
    margin: int = 0,
    pad_multiple: int = 1,
    progress: bool = False,
    desc: str = "windows",
) -> Any:
    """Apply a mel -> mel function [..., n_mels, w] -> [..., n_mels, w] to a log-mel of any
    length (numpy array or torch tensor), window by window, cross-faded; returns
    [..., n_mels, frames] of the same kind as ``mel``.

    ``fn`` is only ever called on windows of at most ``window`` frames (plus up to
    ``pad_multiple - 1`` frames of reflection padding, for networks that need a length
    divisible by their total stride; the padding is cropped off the output).
    """
    frames = mel.shape[-1]
    plan = plan_windows(frames, window, overlap, margin)
    if len(plan) == 1:
        x, extra = _pad_to_multiple(mel, pad_multiple)
        y = fn(x)
        return y[..., :frames] if extra else y
    if _is_tensor(mel):
        import torch

        out = torch.zeros_like(mel)
    else:
        out = np.zeros_like(mel)
    for win in _bar(plan, progress, desc=desc):
        x, extra = _pad_to_multiple(mel[..., win.start:win.stop], pad_multiple)
        y = fn(x)
        if extra:
            y = y[..., :win.length]
        if y.shape != x[..., :win.length].shape:
            raise ValueError(f"the windowed function changed the shape {tuple(x.shape)} -> "
                             f"{tuple(y.shape)}; it must map mel to mel of the same size")
        out[..., win.start:win.stop] += y * _weights_like(win, y)
    return out


def _random_phase(n_freq: int, start: int, stop: int, seed: int) -> np.ndarray:
    """Unit complex [n_freq, stop - start]: the random phase of frames [start, stop), drawn per
    block of frames from (seed, block) so that it does not depend on where a chunk starts."""
    cols = []
    for block in range(start // _PHASE_BLOCK, (stop - 1) // _PHASE_BLOCK + 1):
        rng = np.random.default_rng([seed, block])
        theta = rng.random((n_freq, _PHASE_BLOCK)) * (2 * math.pi)
        lo = max(start, block * _PHASE_BLOCK) - block * _PHASE_BLOCK
        hi = min(stop, (block + 1) * _PHASE_BLOCK) - block * _PHASE_BLOCK
        cols.append(theta[:, lo:hi])
    return np.exp(1j * np.concatenate(cols, axis=1)).astype(np.complex64)


@spectral._bridge
def mel_to_wav_chunked(
    logmel: np.ndarray,
    cfg: MelConfig,
    *,
    phase: np.ndarray | None = None,
    length: int | None = None,
    seed: int = 0,
    window: int = GL_WINDOW_FRAMES,
    overlap: int | None = None,
    margin: int | None = None,
    progress: bool = False,
    **gl: Any,
) -> np.ndarray:
    """:func:`genreshift.spectral.mel_to_wav` with memory bounded by ``window`` frames.

    Log-mel [..., n_mels, frames] (and ``phase``, a complex STFT [..., n_freq, frames] whose
    angles start Griffin-Lim) -> waveform [..., length]. ``gl`` (method, n_iter, momentum,
    ...) goes to ``spectral.mel_to_wav`` unchanged. Up to ``window`` frames this is exactly
    ``spectral.mel_to_wav``; longer inputs are reconstructed chunk by chunk and the waveforms
    cross-faded over ``overlap - 2 * margin`` frames (defaults: margin gl_margin_frames(cfg),
    overlap GL_MIN_OVERLAP_FRAMES, at least 4 * margin, at most window / 3 where that allows).
    """
    frames = logmel.shape[-1]
    hop = cfg.hop_length
    if length is None:
        length = (frames - 1) * hop
    if frames <= window:
        return spectral.mel_to_wav(logmel, cfg, phase=phase, length=length, seed=seed, **gl)
    margin = gl_margin_frames(cfg) if margin is None else margin
    if overlap is None:
        overlap = max(4 * margin, min(GL_MIN_OVERLAP_FRAMES, window // 3))
    if margin < 1:
        # A chunk's waveform ends one hop before its last frame: a fade that reached the chunk's
        # edge would miss those samples.
        raise ValueError(f"Griffin-Lim chunks need margin >= 1 frame, got {margin}")
    plan = plan_windows(frames, window, overlap, margin)
    logmel = np.asarray(logmel)
    out = np.zeros((*logmel.shape[:-2], length), dtype=logmel.dtype)
    for win in _bar(plan, progress, desc="reconstruct", unit="chunk"):
        if phase is not None:
            init = phase[..., win.start:win.stop]
        else:
            init = _random_phase(cfg.n_freq, win.start, win.stop, seed)
            init = np.broadcast_to(init, (*logmel.shape[:-2], *init.shape))
        last = win.stop == frames
        # A chunk's centred frames cover samples [start * hop, (stop - 1) * hop); the last one
        # runs on to the song's own length, as the one-piece inverse would.
        n = length - win.start * hop if last else (win.length - 1) * hop
        wav = spectral.mel_to_wav(logmel[..., win.start:win.stop], cfg, phase=init, length=n,
                                  seed=seed, **gl)
        w = window_weights(win, dtype=wav.dtype, scale=hop)
        if n > w.shape[0]:
            w = np.concatenate([w, np.ones(n - w.shape[0], dtype=w.dtype)])
        out[..., win.start * hop:win.start * hop + n] += wav * w[:n]
    return out
