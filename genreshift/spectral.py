"""Mel analysis and reconstruction: typed numpy/scipy functions, one implementation for
conversion, the shard builder and evaluation (DESIGN.md: torch needs none of it, because
training reads precomputed mel shards).

Shapes: a waveform is [..., samples]; a complex STFT is [..., n_freq, frames] with
n_freq = n_fft // 2 + 1 and frames = 1 + samples // hop_length (centred frames, reflection
padding, periodic Hann window: the framing of ``torch.stft(center=True)`` and librosa); a
log-mel is [..., n_mels, frames], normalised to [-1, 1] over the fixed range [db_min, db_max] dB.

STFT magnitudes are scaled by 2 / sum(window), so a full-scale sine has magnitude 1 (0 dB) in
its bin whatever n_fft is. The mel filterbank is the Slaney-scale one of librosa
(``librosa.filters.mel(htk=False, norm=None)``: unit-peak triangles), computed here from the
published formula because importing librosa costs about 2 s, more than a whole conversion
(tests/test_spectral.py checks it against librosa).

Reconstruction. :func:`apply_band_gains` is what conversion uses: the change a converter made
to the log-mel becomes a gain on the input's own STFT (at the input's own rate, so the band
above the analysis range is kept; phase kept), optionally refined by a few Griffin-Lim
iterations. :func:`mel_to_wav` inverts a log-mel alone by Griffin-Lim (written here because
it starts from a given phase and can project onto the mel spectrogram itself,
:func:`mel_griffin_lim`, which no library offers); the benchmarks compare both.

Every function takes numpy arrays. Given a torch tensor (training's TensorBoard samples,
reference mode, tests), it computes on a CPU numpy copy and hands back a tensor on the
input's device; no autograd flows through these functions, and torch is never imported here.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import scipy.fft

from genreshift.errors import GenreshiftError

# Defaults chosen by the round-trip benchmark (BENCHMARKS.md, benchmarks/roundtrip.py).
DEFAULT_GL_ITERS = 32  # BENCHMARKS.md: mel LSD 0.48 dB at 16, 0.26 at 32, 0.16 at 64
DEFAULT_MOMENTUM = 0.99  # classic (linear-magnitude) fast Griffin-Lim
DEFAULT_MEL_MOMENTUM = 0.9  # mel-projected Griffin-Lim: 0.99 overshoots (benchmark)
DEFAULT_INVERSE_ITERS = 10
GL_METHODS = ("mel", "linear")
# Largest per-band gain one mel projection may apply (60 dB): lets the target add energy
# where the current estimate has almost none, without dividing by numerical zeros.
_MAX_BAND_GAIN = 1e3
# Band gains (apply_band_gains) are limited to this range in dB: a converter's change is at
# most max_change of the normalised range (30 dB at the default 0.5), so this only guards
# against bands at the floor of the log-mel range.
GAIN_DB_RANGE = (-60.0, 40.0)
# Above the analysis band (f_max) the input's own high band gets the mean change, in dB, of
# the top SEAM_BANDS mel bands; across those bands the per-band gains cross-fade into it.
SEAM_BANDS = 8


@dataclass(frozen=True)
class MelConfig:
    """Everything that defines a log-mel; stored in every checkpoint and manifest."""

    sample_rate: int = 22_050
    n_fft: int = 2048
    hop_length: int = 512
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float = 11_025.0
    db_min: float = -100.0
    db_max: float = 20.0

    def __post_init__(self) -> None:
        problems = []
        if self.sample_rate <= 0:
            problems.append("sample_rate must be positive")
        if self.n_fft <= 0 or self.hop_length <= 0 or self.hop_length > self.n_fft:
            problems.append("need 0 < hop_length <= n_fft")
        if not 0 < self.n_mels <= self.n_fft // 2 + 1:
            problems.append("need 0 < n_mels <= n_fft // 2 + 1")
        if not 0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            problems.append("need 0 <= f_min < f_max <= sample_rate / 2")
        if not self.db_min < self.db_max:
            problems.append("need db_min < db_max")
        if problems:
            raise GenreshiftError(f"invalid MelConfig {self}: {'; '.join(problems)}")

    @property
    def n_freq(self) -> int:
        return self.n_fft // 2 + 1

    def frames(self, samples: int) -> int:
        """Number of centred STFT frames for a waveform of ``samples`` samples."""
        return 1 + samples // self.hop_length

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "MelConfig":
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise GenreshiftError(
                f"mel config has unknown keys {sorted(unknown)}; it was written by a newer "
                "genreshift, upgrade to read it"
            )
        return cls(**d)


@dataclass(frozen=True)
class StftConfig:
    """An STFT framing at some sample rate (the input's own, for reconstruction)."""

    sample_rate: int
    n_fft: int
    hop_length: int

    @property
    def n_freq(self) -> int:
        return self.n_fft // 2 + 1

    def frames(self, samples: int) -> int:
        return 1 + samples // self.hop_length


def native_stft(cfg: MelConfig, sample_rate: int) -> StftConfig:
    """The framing at ``sample_rate`` that matches ``cfg``'s in time: the window and hop
    scaled by the rate ratio (the window rounded to a power of two), so that 44.1 kHz
    gets n_fft 4096 and hop 1024 against 2048 / 512 at 22.05 kHz."""
    ratio = sample_rate / cfg.sample_rate
    n_fft = max(16, 2 ** round(math.log2(cfg.n_fft * ratio)))
    hop = max(1, round(n_fft * cfg.hop_length / cfg.n_fft))
    return StftConfig(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop)


# --------------------------------------------------------------------------- torch bridge

def _is_tensor(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def _bridge(fn: Callable) -> Callable:
    """Let ``fn`` (numpy in, numpy out) take torch tensors: arguments that are tensors are
    copied to numpy; the result goes back as a tensor on the first tensor's device."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        device = None
        conv_args = []
        for a in args:
            if _is_tensor(a):
                device = device or a.device
                a = a.detach().cpu().numpy()
            conv_args.append(a)
        for k, v in list(kwargs.items()):
            if _is_tensor(v):
                device = device or v.device
                kwargs[k] = v.detach().cpu().numpy()
        out = fn(*conv_args, **kwargs)
        if device is None:
            return out
        import torch  # only reached when the caller already has torch loaded

        return torch.from_numpy(np.ascontiguousarray(out)).to(device)

    return wrapper


# --------------------------------------------------------------------------- filterbank

def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear (200/3 Hz per mel) below 1 kHz, logarithmic above."""
    f = np.asarray(f, dtype=np.float64)
    lin = f / (200.0 / 3)
    log = 15.0 + np.log(np.maximum(f, 1e-12) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(f >= 1000.0, log, lin)


def _mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    return np.where(m >= 15.0, 1000.0 * np.exp((np.log(6.4) / 27.0) * (m - 15.0)),
                    m * (200.0 / 3))


def _mel_edges(n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """The n_mels + 2 band edges in Hz, evenly spaced on the Slaney mel scale."""
    return _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))


@functools.lru_cache(maxsize=32)
def _filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float
                ) -> np.ndarray:
    """[n_mels, n_fft // 2 + 1] float64 unit-peak triangles between mel-spaced edges
    (librosa.filters.mel(htk=False, norm=None)); bands above Nyquist are empty."""
    edges = _mel_edges(n_mels, f_min, f_max)
    freqs = np.linspace(0.0, sample_rate / 2, n_fft // 2 + 1)
    width = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]
    lower = -ramps[:-2] / width[:-1, None]
    upper = ramps[2:] / width[1:, None]
    fb = np.maximum(0.0, np.minimum(lower, upper))
    fb.setflags(write=False)
    return fb


@functools.lru_cache(maxsize=32)
def _mel_basis_as(cfg: MelConfig, dtype: str) -> np.ndarray:
    fb = _filterbank(cfg.sample_rate, cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max)
    out = np.ascontiguousarray(fb, dtype=dtype)
    out.setflags(write=False)
    return out


def mel_basis(cfg: MelConfig, dtype: Any = np.float32) -> np.ndarray:
    """[n_mels, n_freq] filterbank of ``cfg`` (read-only, cached)."""
    return _mel_basis_as(cfg, np.dtype(dtype).str)


@functools.lru_cache(maxsize=16)
def _mel_spread(cfg: MelConfig, dtype: str = "<f4") -> np.ndarray:
    """[n_freq, n_mels]: spreads per-band gains to linear bins; each bin's weights sum to 1
    (bins no band covers get zero)."""
    fb = mel_basis(cfg, np.float64)
    out = (fb / np.maximum(fb.sum(axis=0, keepdims=True), 1e-8)).T.astype(dtype)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=16)
def _mel_pinv(cfg: MelConfig, dtype: str = "<f4") -> np.ndarray:
    """[n_freq, n_mels] pseudo-inverse of the filterbank (computed in float64)."""
    out = np.linalg.pinv(mel_basis(cfg, np.float64)).astype(dtype)
    out.setflags(write=False)
    return out


# --------------------------------------------------------------------------- STFT

@functools.lru_cache(maxsize=16)
def _window(n_fft: int, dtype: str = "<f4") -> np.ndarray:
    """Periodic Hann window (torch.hann_window's default, scipy's fftbins=True)."""
    w = (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n_fft) / n_fft)).astype(dtype)
    w.setflags(write=False)
    return w


def _framing(cfg: MelConfig | StftConfig) -> tuple[int, int]:
    return cfg.n_fft, cfg.hop_length


def _real_dtype(x: np.ndarray) -> np.dtype:
    return np.dtype(np.float64) if x.dtype in (np.float64, np.complex128) else \
        np.dtype(np.float32)


# Frames transformed at once by stft / istft: their temporaries stay at a few tens of MB
# whatever the song's length (a 3-minute song at 44.1 kHz has 7 752 frames of 4 096 samples).
_BLOCK_FRAMES = 512


@_bridge
def stft(wav: np.ndarray, cfg: MelConfig | StftConfig) -> np.ndarray:
    """[..., samples] -> complex [..., n_freq, frames], scaled so a full-scale sine is 1."""
    n_fft, hop = _framing(cfg)
    wav = np.asarray(wav)
    dtype = _real_dtype(wav)
    wav = wav.astype(dtype, copy=False)
    pad = n_fft // 2
    widths = [(0, 0)] * (wav.ndim - 1) + [(pad, pad)]
    padded = np.pad(wav, widths, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft, axis=-1)[..., ::hop, :]
    window = _window(n_fft, dtype.str)
    scale = dtype.type(2.0 / float(window.sum(dtype=np.float64)))
    cdtype = np.complex128 if dtype == np.float64 else np.complex64
    out = np.empty((*wav.shape[:-1], n_fft // 2 + 1, frames.shape[-2]), dtype=cdtype)
    for a in range(0, frames.shape[-2], _BLOCK_FRAMES):
        block = scipy.fft.rfft(frames[..., a:a + _BLOCK_FRAMES, :] * window, axis=-1)
        out[..., a:a + _BLOCK_FRAMES] = np.swapaxes(block, -1, -2) * scale
    return out


@functools.lru_cache(maxsize=16)
def _ola_envelope(n_fft: int, hop: int, frames: int, dtype: str) -> np.ndarray:
    w2 = _window(n_fft, dtype).astype(np.float64) ** 2
    env = np.zeros(n_fft + hop * (frames - 1))
    for k in range(frames):
        env[k * hop:k * hop + n_fft] += w2
    out = env.astype(dtype)
    out.setflags(write=False)
    return out


def _overlap_add(seg: np.ndarray, hop: int) -> np.ndarray:
    """[..., frames, n] windowed segments -> [..., n + hop * (frames - 1)] summed."""
    frames, n = seg.shape[-2], seg.shape[-1]
    out = np.zeros((*seg.shape[:-2], n + hop * (frames - 1)), dtype=seg.dtype)
    if n % hop == 0:  # the usual case: add n / hop shifted copies of hop-long blocks
        r = n // hop
        blocks = out.reshape(*out.shape[:-1], frames + r - 1, hop)
        parts = seg.reshape(*seg.shape[:-1], r, hop)
        for j in range(r):
            blocks[..., j:j + frames, :] += parts[..., j, :]
        return out
    for k in range(frames):
        out[..., k * hop:k * hop + n] += seg[..., k, :]
    return out


@_bridge
def istft(spec: np.ndarray, cfg: MelConfig | StftConfig, length: int | None = None, *,
          gains: np.ndarray | Callable[[int, int], np.ndarray] | None = None) -> np.ndarray:
    """Inverse of :func:`stft`: complex [..., n_freq, frames] -> [..., samples].

    ``gains`` (real [n_freq, frames], or a function (start, stop) -> the gains of frames
    [start, stop)) multiplies the spectrogram first, block by block, so no gained copy of a
    long spectrogram is ever held."""
    n_fft, hop = _framing(cfg)
    spec = np.asarray(spec)
    dtype = _real_dtype(spec)
    window = _window(n_fft, dtype.str)
    frames = spec.shape[-1]
    unscale = dtype.type(float(window.sum(dtype=np.float64)) / 2.0)
    wav = np.zeros((*spec.shape[:-2], n_fft + hop * (frames - 1)), dtype=dtype)
    for a in range(0, frames, _BLOCK_FRAMES):
        b = min(frames, a + _BLOCK_FRAMES)
        block = spec[..., a:b]
        if gains is not None:
            block = block * (gains(a, b) if callable(gains) else gains[..., a:b])
        seg = scipy.fft.irfft(np.swapaxes(block, -1, -2), n=n_fft, axis=-1)
        seg = seg.astype(dtype, copy=False) * (window * unscale)
        wav[..., a * hop:(b - 1) * hop + n_fft] += _overlap_add(seg, hop)
    env = _ola_envelope(n_fft, hop, frames, dtype.str)
    wav /= np.where(env > 1e-11, env, 1.0)
    pad = n_fft // 2
    wav = wav[..., pad:]
    n = hop * (frames - 1) if length is None else length
    if wav.shape[-1] >= n:
        return wav[..., :n]
    widths = [(0, 0)] * (wav.ndim - 1) + [(0, n - wav.shape[-1])]
    return np.pad(wav, widths)


# --------------------------------------------------------------------------- log-mel

@_bridge
def power_to_db(power: np.ndarray, cfg: MelConfig) -> np.ndarray:
    floor = 10.0 ** (cfg.db_min / 10.0)
    power = np.asarray(power)
    return (10.0 * np.log10(np.maximum(power, floor))).astype(power.dtype, copy=False)


@_bridge
def db_to_normalized(db: np.ndarray, cfg: MelConfig) -> np.ndarray:
    db = np.asarray(db)
    out = (db - cfg.db_min) / (cfg.db_max - cfg.db_min) * 2.0 - 1.0
    return np.clip(out, -1.0, 1.0).astype(db.dtype, copy=False)


@_bridge
def normalized_to_db(logmel: np.ndarray, cfg: MelConfig) -> np.ndarray:
    logmel = np.asarray(logmel)
    out = (np.clip(logmel, -1.0, 1.0) + 1.0) / 2.0 * (cfg.db_max - cfg.db_min) + cfg.db_min
    return out.astype(logmel.dtype, copy=False)


def db_per_unit(cfg: MelConfig) -> float:
    """dB per unit of the normalised log-mel (60 at the default range)."""
    return (cfg.db_max - cfg.db_min) / 2.0


@_bridge
def magnitude_to_mel(mag: np.ndarray, cfg: MelConfig) -> np.ndarray:
    """Linear magnitude [..., n_freq, frames] -> normalised log-mel [..., n_mels, frames]."""
    mag = np.asarray(mag)
    dtype = _real_dtype(mag)
    basis = mel_basis(cfg, dtype)
    mel_power = np.matmul(basis, np.square(mag.astype(dtype, copy=False)))
    return db_to_normalized(power_to_db(mel_power, cfg), cfg)


@_bridge
def wav_to_mel(wav: np.ndarray, cfg: MelConfig) -> np.ndarray:
    """Waveform [..., samples] at cfg.sample_rate -> normalised log-mel [..., n_mels, frames]."""
    return magnitude_to_mel(np.abs(stft(wav, cfg)), cfg)


# --------------------------------------------------------------------------- reconstruction

def _interp_frames(x: np.ndarray, src_hop_s: float, dst_hop_s: float, frames: int,
                   start: int = 0) -> np.ndarray:
    """[..., F] sampled every src_hop_s seconds -> its values at frames [start, start +
    frames) of a grid every dst_hop_s (linear, held at the ends)."""
    if start == 0 and x.shape[-1] == frames and math.isclose(src_hop_s, dst_hop_s,
                                                             rel_tol=1e-9):
        return x
    pos = np.arange(start, start + frames) * (dst_hop_s / src_hop_s)
    lo = np.clip(np.floor(pos).astype(np.int64), 0, x.shape[-1] - 1)
    hi = np.minimum(lo + 1, x.shape[-1] - 1)
    t = np.clip(pos - lo, 0.0, 1.0).astype(x.dtype)
    return x[..., lo] * (1 - t) + x[..., hi] * t


@functools.lru_cache(maxsize=16)
def _bin_weights(cfg: MelConfig, stft_cfg: StftConfig) -> tuple[np.ndarray, np.ndarray]:
    """(spread [n_freq', n_mels], high [n_freq']) for band gains at the framing stft_cfg:
    bin gain = (1 - high) * spread @ g + high * mean(g over the top SEAM_BANDS bands).

    ``spread`` is the analysis bands' triangles laid on the finer bins, each bin's weights
    summing to 1; ``high`` rises from 0 to 1 (raised cosine) across the top SEAM_BANDS bands
    and stays 1 above f_max, where the analysis saw nothing."""
    fb = _filterbank(stft_cfg.sample_rate, stft_cfg.n_fft, cfg.n_mels, cfg.f_min, cfg.f_max)
    total = fb.sum(axis=0)
    spread = np.divide(fb, total[None, :], out=np.zeros_like(fb), where=total[None, :] > 0).T
    freqs = np.linspace(0.0, stft_cfg.sample_rate / 2, stft_cfg.n_freq)
    edges = _mel_edges(cfg.n_mels, cfg.f_min, cfg.f_max)
    seam_lo = edges[max(0, cfg.n_mels - SEAM_BANDS)]
    seam_hi = edges[-1]
    t = np.clip((freqs - seam_lo) / max(seam_hi - seam_lo, 1e-9), 0.0, 1.0)
    high = np.where(freqs >= seam_hi, 1.0, 0.5 - 0.5 * np.cos(np.pi * t))
    # Bins below f_min that no band covers keep the lowest band's change.
    uncovered = (total <= 0) & (freqs < seam_hi)
    spread[uncovered, 0] = 1.0
    spread = spread.astype(np.float32)
    high = high.astype(np.float32)
    spread.setflags(write=False)
    high.setflags(write=False)
    return spread, high


def band_gains_to_bins(gain_db: np.ndarray, cfg: MelConfig, stft_cfg: StftConfig,
                       frames: int, start: int = 0) -> np.ndarray:
    """Per-band gains [..., n_mels, F] in dB on ``cfg``'s frames -> per-bin gains
    [..., n_freq', frames] in dB on ``stft_cfg``'s frames [start, start + frames) (see
    _bin_weights)."""
    spread, high = _bin_weights(cfg, stft_cfg)
    gain_db = np.clip(np.asarray(gain_db, dtype=np.float32), *GAIN_DB_RANGE)
    gain_db = _interp_frames(gain_db, cfg.hop_length / cfg.sample_rate,
                             stft_cfg.hop_length / stft_cfg.sample_rate, frames, start)
    top = gain_db[..., -min(SEAM_BANDS, cfg.n_mels):, :].mean(axis=-2, keepdims=True)
    return np.matmul(spread, gain_db) * (1.0 - high)[:, None] + top * high[:, None]


def band_gains(gain_db: np.ndarray, cfg: MelConfig, stft_cfg: StftConfig, frames: int,
               start: int = 0) -> np.ndarray:
    """Per-band changes ``gain_db`` [..., n_mels, F] (dB, on ``cfg``'s frames) -> linear
    amplitude gains [..., n_freq', frames] for frames [start, start + frames) of an STFT with
    framing ``stft_cfg``."""
    db = band_gains_to_bins(gain_db, cfg, stft_cfg, frames, start)
    return np.exp(db * np.float32(math.log(10.0) / 20.0), dtype=np.float32)


def apply_gains(spec: np.ndarray, gains: np.ndarray | Callable[[int, int], np.ndarray],
                stft_cfg: StftConfig, *, n_iter: int = 0, length: int | None = None,
                momentum: float = DEFAULT_MOMENTUM) -> np.ndarray:
    """The waveform [..., length] of the input's own STFT ``spec`` [..., n_freq', frames]
    times ``gains`` (band_gains, or a function (start, stop) -> the gains of those frames):
    the input's phase, its magnitude times the gain. ``n_iter`` > 0 runs that many fast
    Griffin-Lim iterations toward the gained magnitude, starting from the input's phase (a
    gained STFT is not quite consistent; benchmarks decide if it matters)."""
    if n_iter <= 0:
        return istft(spec, stft_cfg, length, gains=gains)
    target = spec * (gains(0, spec.shape[-1]) if callable(gains) else gains)
    return griffin_lim(np.abs(target), stft_cfg, n_iter=n_iter, phase=target,
                       momentum=momentum, length=length)


def apply_band_gains(spec: np.ndarray, gain_db: np.ndarray, cfg: MelConfig,
                     stft_cfg: StftConfig, *, n_iter: int = 0, length: int | None = None,
                     momentum: float = DEFAULT_MOMENTUM) -> np.ndarray:
    """band_gains then apply_gains: the input's STFT ``spec`` given the per-band change
    ``gain_db`` [n_mels, F] measured on ``cfg``'s log-mel, as a waveform at
    stft_cfg.sample_rate."""
    gains = band_gains(gain_db, cfg, stft_cfg, spec.shape[-1])
    return apply_gains(spec, gains, stft_cfg, n_iter=n_iter, length=length, momentum=momentum)


@_bridge
def mel_to_magnitude(logmel: np.ndarray, cfg: MelConfig, *,
                     n_iter: int = DEFAULT_INVERSE_ITERS) -> np.ndarray:
    """Normalised log-mel [..., n_mels, frames] -> linear magnitude [..., n_freq, frames].

    Non-negative least squares for the linear power P in basis @ P = mel power: start from
    the pseudo-inverse clamped at zero, then ``n_iter`` multiplicative updates
    P <- P * basis^T m / basis^T (basis P), which keep P >= 0 and lower the error at every
    step (Lee & Seung). The clamped pseudo-inverse alone smears energy across bins; the
    updates concentrate it again (benchmarks/roundtrip.py measures the gain).
    """
    logmel = np.asarray(logmel)
    dtype = _real_dtype(logmel)
    mel_power = (10.0 ** (normalized_to_db(logmel, cfg) / 10.0)).astype(dtype, copy=False)
    power = np.maximum(np.matmul(_mel_pinv(cfg, dtype.str), mel_power), 0.0)
    if n_iter > 0:
        basis = mel_basis(cfg, dtype)
        tiny = dtype.type(10.0 ** (cfg.db_min / 10.0) * 1e-3)
        power = np.maximum(power, tiny)
        numer = np.matmul(basis.T, mel_power)
        for _ in range(n_iter):
            power = power * numer / np.maximum(np.matmul(basis.T, np.matmul(basis, power)), tiny)
    return np.sqrt(power)


def _unit(z: np.ndarray) -> np.ndarray:
    mag = np.abs(z)
    return np.where(mag > 0, z / np.maximum(mag, 1e-12), 1.0).astype(z.dtype, copy=False)


def _start_angles(mag: np.ndarray, phase: np.ndarray | None, seed: int) -> np.ndarray:
    cdtype = np.complex128 if mag.dtype == np.float64 else np.complex64
    if phase is not None:
        if phase.shape != mag.shape:
            raise ValueError(f"phase shape {tuple(phase.shape)} != magnitude {tuple(mag.shape)}")
        return _unit(np.asarray(phase).astype(cdtype, copy=False))
    theta = np.random.default_rng(seed).random(mag.shape) * (2 * np.pi)
    return np.exp(1j * theta).astype(cdtype)


@_bridge
def griffin_lim(
    mag: np.ndarray,
    cfg: MelConfig | StftConfig,
    *,
    n_iter: int = DEFAULT_GL_ITERS,
    phase: np.ndarray | None = None,
    momentum: float = DEFAULT_MOMENTUM,
    length: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Magnitude [..., n_freq, frames] -> waveform [..., samples] by fast Griffin-Lim.

    ``phase`` is a complex STFT of the same shape (the input's own) whose angles start the
    iteration; without it the start is random (seeded). ``momentum`` is the fast Griffin-Lim
    acceleration of Perraudin et al. (2013); 0 gives the classic algorithm.
    """
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    mag = np.asarray(mag)
    angles = _start_angles(mag, phase, seed)
    previous = np.zeros_like(angles)
    alpha = momentum / (1.0 + momentum)
    for _ in range(n_iter):
        rebuilt = stft(istft(mag * angles, cfg, length), cfg)
        angles = _unit(rebuilt - alpha * previous)
        previous = rebuilt
    return istft(mag * angles, cfg, length)


@_bridge
def mel_griffin_lim(
    logmel: np.ndarray,
    cfg: MelConfig,
    *,
    n_iter: int = DEFAULT_GL_ITERS,
    phase: np.ndarray | None = None,
    momentum: float = DEFAULT_MEL_MOMENTUM,
    length: int | None = None,
    seed: int = 0,
    inverse_iters: int = DEFAULT_INVERSE_ITERS,
) -> np.ndarray:
    """Log-mel [..., n_mels, frames] -> waveform [..., samples], Griffin-Lim in the mel domain.

    Classic Griffin-Lim alternates between consistent spectrograms and one guessed linear
    magnitude; but a log-mel fixes only the energy per mel band, and any linear magnitude
    guessed from it smears the harmonics. Here the second projection is onto the set that is
    actually known: spectrograms with the target mel. Each iteration takes the consistent
    STFT Y of the current signal and scales each linear bin by the gain its mel bands need,
    sqrt(target / mel(Y)), spread over bins with weights that sum to one; the fine structure
    of Y (harmonics, started from the input's own phase) is kept, its mel envelope is the
    target's. Momentum as in fast Griffin-Lim. The start is the NNLS magnitude with the given
    phase (or a seeded random one). benchmarks/roundtrip.py compares both methods.
    """
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    logmel = np.asarray(logmel)
    dtype = _real_dtype(logmel)
    target = (10.0 ** (normalized_to_db(logmel, cfg) / 10.0)).astype(dtype, copy=False)
    mag = mel_to_magnitude(logmel, cfg, n_iter=inverse_iters)
    spec = mag * _start_angles(mag, phase, seed)
    basis = mel_basis(cfg, dtype)
    spread = _mel_spread(cfg, dtype.str)
    floor = dtype.type(10.0 ** (cfg.db_min / 10.0))
    previous = None
    for _ in range(n_iter):
        rebuilt = stft(istft(spec, cfg, length), cfg)
        have = np.matmul(basis, rebuilt.real ** 2 + rebuilt.imag ** 2)
        gain = np.sqrt(np.maximum(target, floor) / np.maximum(have, floor))
        projected = rebuilt * np.matmul(spread, np.clip(gain, 1.0 / _MAX_BAND_GAIN,
                                                        _MAX_BAND_GAIN))
        spec = projected if previous is None else projected + momentum * (projected - previous)
        previous = projected
    return istft(previous if previous is not None else spec, cfg, length)


@_bridge
def mel_to_wav(
    logmel: np.ndarray,
    cfg: MelConfig,
    *,
    method: str = "mel",
    n_iter: int = DEFAULT_GL_ITERS,
    phase: np.ndarray | None = None,
    momentum: float | None = None,
    length: int | None = None,
    seed: int = 0,
    inverse_iters: int = DEFAULT_INVERSE_ITERS,
) -> np.ndarray:
    """Normalised log-mel [..., n_mels, frames] -> waveform [..., samples].

    ``method`` "mel": :func:`mel_griffin_lim` (default); "linear": classic fast Griffin-Lim
    on the NNLS linear magnitude. ``phase``: the input's complex STFT to start from.
    """
    if method == "mel":
        return mel_griffin_lim(
            logmel, cfg, n_iter=n_iter, phase=phase, length=length, seed=seed,
            momentum=DEFAULT_MEL_MOMENTUM if momentum is None else momentum,
            inverse_iters=inverse_iters)
    if method == "linear":
        mag = mel_to_magnitude(logmel, cfg, n_iter=inverse_iters)
        return griffin_lim(mag, cfg, n_iter=n_iter, phase=phase, length=length, seed=seed,
                           momentum=DEFAULT_MOMENTUM if momentum is None else momentum)
    raise ValueError(f"unknown Griffin-Lim method '{method}'; choose one of {GL_METHODS}")
