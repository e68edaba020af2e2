"""The path every conversion shares: audio -> log-mel (+ phase) ... log-mel -> audio.

``analyse`` resamples to the analysis rate and keeps what reconstruction needs (the input's
STFT phase, its length, rate and loudness). ``synthesise`` inverts a (possibly converted)
log-mel with Griffin-Lim started from that phase, resamples back to the input's rate and
matches the input's loudness with a peak-safe limiter. ``roundtrip`` is analysis followed
directly by synthesis: the cost of reconstruction alone.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from genreshift import audio as gaudio
from genreshift import spectral
from genreshift.errors import AudioError, GenreshiftError
from genreshift.inference import chunking
from genreshift.spectral import MelConfig

# BS.1770 integrated loudness needs one 400 ms block; a little more leaves room for gating.
MIN_SECONDS = 0.5
# Below this the BS.1770 absolute gate (-70 LUFS) finds nothing: treat as silence.
SILENCE_LUFS = -70.0


@dataclass(frozen=True)
class ReconstructionConfig:
    """How a log-mel becomes audio again. Defaults chosen by benchmarks/roundtrip.py."""

    n_iter: int = spectral.DEFAULT_GL_ITERS
    init: str = "phase"  # "phase": start from the input's STFT phase; "random": seeded random
    method: str = "mel"  # "mel": mel-projected Griffin-Lim; "linear": classic
    momentum: float | None = None  # None: the method's default
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in spectral.GL_METHODS:
            raise GenreshiftError(
                f"unknown Griffin-Lim method '{self.method}'; choose {' or '.join(spectral.GL_METHODS)}")
        if self.init not in ("phase", "random"):
            raise GenreshiftError(f"unknown phase init '{self.init}'; choose phase or random")
        if not 0 <= self.n_iter <= 1000:
            raise GenreshiftError(f"Griffin-Lim iterations must be in 0..1000, got {self.n_iter}")
        if self.momentum is not None and not 0.0 <= self.momentum < 1.0:
            raise GenreshiftError(f"momentum must be in [0, 1), got {self.momentum}")


@dataclass
class Analysis:
    """An input song, analysed. Tensors are per channel."""

    mel: torch.Tensor  # [channels, n_mels, frames], normalised log-mel
    spec: torch.Tensor  # complex [channels, n_freq, frames], the input's own STFT
    samples: int  # length at the analysis rate
    source_sr: int  # the input's sample rate
    source: np.ndarray = field(repr=False)  # the input audio [channels, samples] at source_sr
    mel_config: MelConfig = field(default_factory=MelConfig)


def analyse(audio: np.ndarray, sr: int, cfg: MelConfig, device: str | torch.device = "cpu"
            ) -> Analysis:
    """[channels, samples] at ``sr`` -> Analysis at cfg.sample_rate."""
    at_rate = gaudio.resample(audio, sr, cfg.sample_rate)
    wav = torch.from_numpy(np.ascontiguousarray(at_rate)).to(device)
    spec = spectral.stft(wav, cfg)
    mel = spectral.magnitude_to_mel(spec.abs(), cfg)
    return Analysis(mel=mel, spec=spec, samples=at_rate.shape[-1], source_sr=sr, source=audio,
                    mel_config=cfg)


def synthesise(mel: torch.Tensor, analysis: Analysis, recon: ReconstructionConfig, *,
               progress: bool = False) -> np.ndarray:
    """Log-mel [channels, n_mels, frames] -> audio [channels, samples] at the input's rate,
    loudness-matched to the input and peak-limited."""
    cfg = analysis.mel_config
    phase = analysis.spec if recon.init == "phase" else None
    kwargs = dict(method=recon.method, n_iter=recon.n_iter, phase=phase,
                  momentum=recon.momentum, length=analysis.samples, seed=recon.seed)
    if mel.shape[-1] <= chunking.GL_WINDOW_FRAMES:
        wav = spectral.mel_to_wav(mel, cfg, **kwargs)
    else:  # long songs: Griffin-Lim in overlapping chunks keeps memory bounded
        wav = chunking.mel_to_wav_chunked(mel, cfg, window=chunking.GL_WINDOW_FRAMES,
                                          progress=progress, **kwargs)
    out = gaudio.resample(wav.detach().cpu().numpy().astype(np.float32), cfg.sample_rate,
                          analysis.source_sr)
    n = analysis.source.shape[-1]
    out = out[:, :n] if out.shape[-1] >= n else np.pad(out, ((0, 0), (0, n - out.shape[-1])))
    return gaudio.match_loudness(out, analysis.source_sr, analysis.source, analysis.source_sr)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' takes CUDA when present; 'cuda' without a GPU is a clear error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise GenreshiftError("--device cuda: no CUDA device is available here; use --device cpu "
                              "or auto")
    if device != "cpu" and not device.startswith("cuda"):
        raise GenreshiftError(f"unknown device '{device}'; choose auto, cpu or cuda")
    return torch.device(device)


def mid_mel(analysis: Analysis) -> torch.Tensor:
    """Log-mel [n_mels, frames] of the channels' mean (the mid), from the input's STFT."""
    return spectral.magnitude_to_mel(analysis.spec.mean(dim=0).abs(), analysis.mel_config)


def apply_mid_change(mel: torch.Tensor, mid_before: torch.Tensor, mid_after: torch.Tensor
                     ) -> torch.Tensor:
    """Give every channel of ``mel`` [channels, n_mels, frames] the change the mid received.

    The normalised log-mel is linear in dB, so the difference is a per-band, per-frame gain;
    adding it to every channel keeps their level differences (the stereo image).
    """
    return (mel + (mid_after - mid_before).unsqueeze(0)).clamp(-1.0, 1.0)


def load_song(path: str | Path, *, mono: bool = False) -> tuple[np.ndarray, int]:
    """Load an input song and refuse what cannot be converted (too short, silent)."""
    audio, sr = gaudio.load_audio(path, mono=mono, min_seconds=MIN_SECONDS)
    lufs = gaudio.integrated_loudness(audio, sr)
    if not np.isfinite(lufs) or lufs < SILENCE_LUFS:
        raise AudioError(
            f"{path}: is silent (no part louder than {SILENCE_LUFS:g} LUFS); nothing to convert"
        )
    return audio, sr


def check_output(dst: str | Path, fmt: str | None, force: bool) -> tuple[Path, str]:
    """Validate the output before any work is done, so a bad -o fails fast.
    Returns (path, format name)."""
    fmt = gaudio.output_format(dst, fmt)
    dst = Path(dst)
    if dst.exists() and not force:
        raise AudioError(f"{dst}: already exists; pass --force to overwrite it")
    return dst, fmt


def write_output(out: np.ndarray, in_sr: int, dst: Path, *, sr: int | None, fmt: str,
                 bit_depth: str | None, force: bool, protect: tuple[str | Path, ...]
                 ) -> tuple[Path, np.ndarray, int]:
    """Resample [channels, samples] at ``in_sr`` to ``sr`` if asked (peak-safe again) and
    write it atomically. Returns (path written, audio written, its rate)."""
    out_sr = in_sr
    if sr is not None and sr != in_sr:
        out = gaudio.limit_peaks(gaudio.resample(out, in_sr, sr), sr)
        out_sr = sr
    written = gaudio.save_audio(dst, out, out_sr, fmt=fmt, bit_depth=bit_depth, force=force,
                                protect=protect)
    return written, out, out_sr


def roundtrip_file(
    src: str | Path,
    dst: str | Path,
    *,
    mel_config: MelConfig = MelConfig(),
    recon: ReconstructionConfig = ReconstructionConfig(),
    fmt: str | None = None,
    bit_depth: str | None = None,
    force: bool = False,
    mono: bool = False,
    sr: int | None = None,
    device: str = "cpu",
) -> dict:
    """Analyse ``src`` and reconstruct it unchanged into ``dst``; returns a summary with
    per-stage timings in seconds."""
    dst, fmt = check_output(dst, fmt, force)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    audio, in_sr = load_song(src, mono=mono)
    timings["load"] = time.perf_counter() - t
    t = time.perf_counter()
    analysis = analyse(audio, in_sr, mel_config, device)
    timings["mel"] = time.perf_counter() - t
    t = time.perf_counter()
    out = synthesise(analysis.mel, analysis, recon)
    timings["reconstruction"] = time.perf_counter() - t
    t = time.perf_counter()
    written, out, out_sr = write_output(out, in_sr, dst, sr=sr, fmt=fmt, bit_depth=bit_depth,
                                        force=force, protect=(src,))
    timings["write"] = time.perf_counter() - t
    return {
        "input": str(src),
        "output": str(written),
        "mode": "roundtrip",
        "sample_rate": out_sr,
        "channels": int(out.shape[0]),
        "duration_s": out.shape[-1] / out_sr,
        "reconstruction": asdict(recon),
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
    }
