"""Mel analysis and reconstruction: typed, differentiable torch functions.

Shapes: a waveform is [..., samples]; a complex STFT is [..., n_freq, frames] with
n_freq = n_fft // 2 + 1 and frames = 1 + samples // hop_length (centred frames); a log-mel is
[..., n_mels, frames], normalised to [-1, 1] over the fixed range [db_min, db_max] dB.

STFT magnitudes are scaled by 2 / sum(window), so a full-scale sine has magnitude 1 (0 dB) in
its bin whatever n_fft is. The mel filterbank is librosa's (Slaney scale, unit-peak
triangles: ``norm=None``). Griffin-Lim is written here because torchaudio's GriffinLim cannot start from a
given phase, which is how genreshift keeps the input's timing and transients, and because
genreshift's default variant projects onto the mel spectrogram itself (see
:func:`mel_griffin_lim`), which torchaudio does not offer.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch

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


@functools.lru_cache(maxsize=16)
def _window(n_fft: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return torch.hann_window(n_fft, device=device, dtype=dtype)


@functools.lru_cache(maxsize=16)
def _mel_basis(cfg: MelConfig, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[n_mels, n_freq] filterbank."""
    import librosa  # imported here: it is slow to import and only analysis needs it

    fb = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels,
                             fmin=cfg.f_min, fmax=cfg.f_max, htk=False, norm=None,
                             dtype=np.float64)
    return torch.from_numpy(fb).to(device=device, dtype=dtype).contiguous()


@functools.lru_cache(maxsize=16)
def _mel_spread(cfg: MelConfig, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[n_freq, n_mels]: spreads per-band gains to linear bins; each bin's weights sum to 1
    (bins no band covers get zero)."""
    fb = _mel_basis(cfg, device, dtype)
    return (fb / fb.sum(dim=0, keepdim=True).clamp_min(1e-8)).T.contiguous()


@functools.lru_cache(maxsize=16)
def _mel_pinv(cfg: MelConfig, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[n_freq, n_mels] pseudo-inverse of the filterbank (computed in float64).

    numpy's SVD: torch's CPU SVD of this 128 x 1025 matrix took seconds here."""
    fb = _mel_basis(cfg, torch.device("cpu"), torch.float64).numpy()
    return torch.from_numpy(np.linalg.pinv(fb)).to(device=device, dtype=dtype)


def _scale(cfg: MelConfig, device: torch.device, dtype: torch.dtype) -> float:
    return 2.0 / float(_window(cfg.n_fft, device, dtype).sum())


def stft(wav: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """[..., samples] -> complex [..., n_freq, frames], scaled so a full-scale sine is 1."""
    shape = wav.shape
    flat = wav.reshape(-1, shape[-1])
    dtype = flat.dtype if flat.is_floating_point() else torch.float32
    flat = flat.to(dtype)
    window = _window(cfg.n_fft, flat.device, dtype)
    spec = torch.stft(
        flat, cfg.n_fft, cfg.hop_length, window=window, center=True, pad_mode="reflect",
        return_complex=True,
    )
    spec = spec * _scale(cfg, flat.device, dtype)
    return spec.reshape(*shape[:-1], *spec.shape[-2:])


def istft(spec: torch.Tensor, cfg: MelConfig, length: int | None = None) -> torch.Tensor:
    """Inverse of :func:`stft`: complex [..., n_freq, frames] -> [..., samples]."""
    shape = spec.shape
    flat = spec.reshape(-1, *shape[-2:])
    real_dtype = flat.real.dtype
    window = _window(cfg.n_fft, flat.device, real_dtype)
    wav = torch.istft(
        flat / _scale(cfg, flat.device, real_dtype), cfg.n_fft, cfg.hop_length, window=window,
        center=True, length=length,
    )
    return wav.reshape(*shape[:-2], wav.shape[-1])


def power_to_db(power: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    floor = 10.0 ** (cfg.db_min / 10.0)
    return 10.0 * torch.log10(power.clamp_min(floor))


def db_to_normalized(db: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    return ((db - cfg.db_min) / (cfg.db_max - cfg.db_min) * 2.0 - 1.0).clamp(-1.0, 1.0)


def normalized_to_db(logmel: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    return (logmel.clamp(-1.0, 1.0) + 1.0) / 2.0 * (cfg.db_max - cfg.db_min) + cfg.db_min


def magnitude_to_mel(mag: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """Linear magnitude [..., n_freq, frames] -> normalised log-mel [..., n_mels, frames]."""
    basis = _mel_basis(cfg, mag.device, mag.dtype)
    mel_power = torch.matmul(basis, mag.pow(2))
    return db_to_normalized(power_to_db(mel_power, cfg), cfg)


def wav_to_mel(wav: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """Waveform [..., samples] at cfg.sample_rate -> normalised log-mel [..., n_mels, frames]."""
    return magnitude_to_mel(stft(wav, cfg).abs(), cfg)


def mel_to_magnitude(logmel: torch.Tensor, cfg: MelConfig, *,
                     n_iter: int = DEFAULT_INVERSE_ITERS) -> torch.Tensor:
    """Normalised log-mel [..., n_mels, frames] -> linear magnitude [..., n_freq, frames].

    Non-negative least squares for the linear power P in basis @ P = mel power: start from
    the pseudo-inverse clamped at zero, then ``n_iter`` multiplicative updates
    P <- P * basis^T m / basis^T (basis P), which keep P >= 0 and lower the error at every
    step (Lee & Seung). The clamped pseudo-inverse alone smears energy across bins; the
    updates concentrate it again (benchmarks/roundtrip.py measures the gain).
    """
    mel_power = 10.0 ** (normalized_to_db(logmel, cfg) / 10.0)
    pinv = _mel_pinv(cfg, logmel.device, logmel.dtype)
    power = torch.matmul(pinv, mel_power).clamp_min(0.0)
    if n_iter > 0:
        basis = _mel_basis(cfg, logmel.device, logmel.dtype)
        tiny = 10.0 ** (cfg.db_min / 10.0) * 1e-3
        power = power.clamp_min(tiny)
        numer = torch.matmul(basis.T, mel_power)
        for _ in range(n_iter):
            power = power * numer / torch.matmul(basis.T, torch.matmul(basis, power)).clamp_min(tiny)
    return power.sqrt()


def griffin_lim(
    mag: torch.Tensor,
    cfg: MelConfig,
    *,
    n_iter: int = DEFAULT_GL_ITERS,
    phase: torch.Tensor | None = None,
    momentum: float = DEFAULT_MOMENTUM,
    length: int | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Magnitude [..., n_freq, frames] -> waveform [..., samples] by fast Griffin-Lim.

    ``phase`` is a complex STFT of the same shape (the input's own) whose angles start the
    iteration; without it the start is random (seeded). ``momentum`` is the fast Griffin-Lim
    acceleration of Perraudin et al. (2013); 0 gives the classic algorithm.
    """
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    angles = _start_angles(mag, phase, seed)
    previous = torch.zeros_like(angles)
    alpha = momentum / (1.0 + momentum)
    for _ in range(n_iter):
        rebuilt = stft(istft(mag * angles, cfg, length), cfg)
        angles = rebuilt - alpha * previous
        angles = angles / angles.abs().clamp_min(1e-12)
        previous = rebuilt
    return istft(mag * angles, cfg, length)


def _start_angles(mag: torch.Tensor, phase: torch.Tensor | None, seed: int) -> torch.Tensor:
    if phase is not None:
        if phase.shape != mag.shape:
            raise ValueError(f"phase shape {tuple(phase.shape)} != magnitude {tuple(mag.shape)}")
        unit = phase / phase.abs().clamp_min(1e-12)
        return torch.where(phase.abs() > 0, unit, torch.ones_like(unit))
    gen = torch.Generator(device="cpu").manual_seed(seed)
    theta = torch.rand(mag.shape, generator=gen, dtype=mag.dtype) * (2 * torch.pi)
    return torch.polar(torch.ones_like(theta), theta).to(mag.device)


def mel_griffin_lim(
    logmel: torch.Tensor,
    cfg: MelConfig,
    *,
    n_iter: int = DEFAULT_GL_ITERS,
    phase: torch.Tensor | None = None,
    momentum: float = DEFAULT_MEL_MOMENTUM,
    length: int | None = None,
    seed: int = 0,
    inverse_iters: int = DEFAULT_INVERSE_ITERS,
) -> torch.Tensor:
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
    target = 10.0 ** (normalized_to_db(logmel, cfg) / 10.0)
    mag = mel_to_magnitude(logmel, cfg, n_iter=inverse_iters)
    spec = mag * _start_angles(mag, phase, seed)
    basis = _mel_basis(cfg, logmel.device, logmel.dtype)
    spread = _mel_spread(cfg, logmel.device, logmel.dtype)
    floor = 10.0 ** (cfg.db_min / 10.0)
    previous = None
    for _ in range(n_iter):
        rebuilt = stft(istft(spec, cfg, length), cfg)
        have = torch.matmul(basis, torch.view_as_real(rebuilt).pow(2).sum(-1))
        gain = (target.clamp_min(floor) / have.clamp_min(floor)).sqrt()
        projected = rebuilt * torch.matmul(spread, gain.clamp(1.0 / _MAX_BAND_GAIN, _MAX_BAND_GAIN))
        spec = projected if previous is None else projected + momentum * (projected - previous)
        previous = projected
    return istft(previous if previous is not None else spec, cfg, length)


def mel_to_wav(
    logmel: torch.Tensor,
    cfg: MelConfig,
    *,
    method: str = "mel",
    n_iter: int = DEFAULT_GL_ITERS,
    phase: torch.Tensor | None = None,
    momentum: float | None = None,
    length: int | None = None,
    seed: int = 0,
    inverse_iters: int = DEFAULT_INVERSE_ITERS,
) -> torch.Tensor:
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
