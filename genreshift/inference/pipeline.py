"""One conversion pipeline: a request in, a result out.

A :class:`Request` names the input, the mode with its settings (trained, reference or round
trip, each a frozen dataclass), how to reconstruct and the output options. :func:`run` does
the stages every mode shares, once:

    check output -> load -> [mode: its change to the mid log-mel] -> reconstruct -> loudness
    -> write

and returns a :class:`Result`: the summary, the mid log-mels before and after (for plots) and
the path written. A mode supplies only its change (:class:`Mode`): it reads the song's mid
log-mel at the analysis settings it needs (``Song.mid``, computed once per setting) and returns
the converted mid. The CLI, the web worker and the benchmarks all call :func:`run`.

Reconstruction (ReconstructionConfig.method):

- ``gain`` (default): the change the mid received becomes a per-band gain on the input's own
  STFT, taken at the input's own sample rate, so nothing is resampled: the phase is the
  input's, every channel gets the same gain (the stereo image is kept), and the band above the
  analysis range (11 kHz) keeps the input's own content, shaped by the change of the top
  bands (spectral.apply_band_gains). ``n_iter`` Griffin-Lim iterations may refine it.
- ``mel`` / ``linear``: the converted log-mel of each channel is inverted by Griffin-Lim at the
  analysis rate, started from the input's phase, then resampled back (band-limited to the
  analysis range; kept to compare against, docs/DECISIONS.md).

``max_boost_db`` (``--max-boost``) limits how far any band of any frame may be raised. A
band the input barely has (the top of a classical recording) can only be raised by
amplifying its noise floor: the jazz converter lifts such bands by 25-35 dB, which is heard
as hiss. Off by default: on the validation split a 24 dB limit brought the output closer to
the real target rendering (LSD 11.38 -> 11.17 dB, jazz 12.59 -> 12.06) but the classifier
named the target less often (72.8% -> 71.6%; docs/DECISIONS.md, seventh session).

Either way the result is matched to the input's loudness with a peak-safe limiter.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from genreshift import audio as gaudio
from genreshift import spectral
from genreshift.errors import AudioError, GenreshiftError
from genreshift.inference import chunking
from genreshift.spectral import MelConfig

# BS.1770 integrated loudness needs one 400 ms block; a little more leaves room for gating.
MIN_SECONDS = 0.5
# Below this the BS.1770 absolute gate (-70 LUFS) finds nothing: treat as silence.
SILENCE_LUFS = -70.0

RECON_METHODS = ("gain", *spectral.GL_METHODS)
# Up to this many frames (~95 s at 44.1 kHz) the gains are computed once for all channels;
# beyond, per block and channel, so that memory stays bounded for long songs.
_GAINS_KEPT_FRAMES = 4096
# Iterations when --iters is not given: none for the gain (docs/DECISIONS.md, "fast
# reconstruction"), the round-trip benchmark's choice for Griffin-Lim from the log-mel.
DEFAULT_ITERS = {"gain": 0, "mel": spectral.DEFAULT_GL_ITERS, "linear": spectral.DEFAULT_GL_ITERS}


@dataclass(frozen=True)
class ReconstructionConfig:
    """How the converted log-mel becomes audio again (see the module docstring)."""

    method: str = "gain"
    n_iter: int | None = None  # None: DEFAULT_ITERS[method]
    init: str = "phase"  # Griffin-Lim from the log-mel: the input's STFT phase, or "random"
    momentum: float | None = None  # None: the method's default
    seed: int = 0
    max_boost_db: float | None = None  # no band raised by more than this (None: no limit)

    def __post_init__(self) -> None:
        if self.method not in RECON_METHODS:
            raise GenreshiftError(f"unknown reconstruction method '{self.method}'; choose "
                                  f"{', '.join(RECON_METHODS)}")
        if self.init not in ("phase", "random"):
            raise GenreshiftError(f"unknown phase init '{self.init}'; choose phase or random")
        if self.method == "gain" and self.init != "phase":
            raise GenreshiftError("--init random needs a Griffin-Lim method (--gl-method mel or "
                                  "linear): the gain method keeps the input's own phase")
        if self.n_iter is not None and not 0 <= self.n_iter <= 1000:
            raise GenreshiftError(f"Griffin-Lim iterations must be in 0..1000, got {self.n_iter}")
        if self.momentum is not None and not 0.0 <= self.momentum < 1.0:
            raise GenreshiftError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.max_boost_db is not None and not 0.0 <= self.max_boost_db <= 60.0:
            raise GenreshiftError("must be between 0 and 60 dB", kind="bad_option",
                                  option="max-boost", value=self.max_boost_db)

    @property
    def iterations(self) -> int:
        return DEFAULT_ITERS[self.method] if self.n_iter is None else self.n_iter

    def to_dict(self) -> dict:
        return {**asdict(self), "n_iter": self.iterations}


@dataclass(frozen=True)
class OutputOptions:
    """Where and how the result is written."""

    path: Path
    fmt: str | None = None  # None: from the extension
    bit_depth: str | None = None  # None: follow the input where the format can hold it
    sample_rate: int | None = None  # None: the input's
    force: bool = False


@dataclass(frozen=True)
class RoundtripSettings:
    """Round trip: analyse and reconstruct with no change (the cost of reconstruction)."""

    mel_config: MelConfig = MelConfig()


@dataclass(frozen=True)
class Request:
    input: Path
    output: OutputOptions
    mode: Any  # TrainedSettings | ReferenceSettings | RoundtripSettings
    recon: ReconstructionConfig = ReconstructionConfig()
    mono: bool = False
    device: str = "auto"
    progress: bool = False


@dataclass
class Result:
    summary: dict
    output: Path
    mel_config: MelConfig  # of the mels below
    mels: dict[str, np.ndarray]  # mid log-mels [n_mels, frames]: input, output (+ reference)


class Timings:
    """Seconds per stage; a stage timed twice adds up."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - t

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.seconds.items()}


class Song:
    """A loaded input: audio [channels, samples] at ``sr``, and its mid's log-mel at any
    analysis setting, computed once per setting."""

    def __init__(self, path: Path, audio: np.ndarray, sr: int) -> None:
        self.path = path
        self.audio = audio
        self.sr = sr
        self._mid: dict[MelConfig, np.ndarray] = {}
        self._lufs: float | None = None

    @property
    def channels(self) -> int:
        return int(self.audio.shape[0])

    @property
    def lufs(self) -> float:
        if self._lufs is None:
            self._lufs = gaudio.integrated_loudness(self.audio, self.sr)
        return self._lufs

    def mid(self, cfg: MelConfig) -> np.ndarray:
        """Log-mel [n_mels, frames] of the channels' mean (the mid) at ``cfg``."""
        if cfg not in self._mid:
            mid = self.audio.mean(axis=0, keepdims=True)
            at_rate = gaudio.resample(mid, self.sr, cfg.sample_rate)[0]
            self._mid[cfg] = spectral.wav_to_mel(at_rate, cfg)
        return self._mid[cfg]


@dataclass
class Change:
    """What a mode did: the mid log-mel before and after, at ``mel_config``."""

    mel_config: MelConfig
    mid_in: np.ndarray
    mid_out: np.ndarray
    info: dict = field(default_factory=dict)  # the mode's own summary fields
    mels: dict[str, np.ndarray] = field(default_factory=dict)  # more mels to plot
    protect: tuple[Path, ...] = ()  # more inputs the output must not overwrite
    # The audio [channels, samples] at the song's rate that the change applies to, when it is
    # not the song itself (rhythm replace: its harmonic layer), and what to do with the
    # reconstruction before the loudness match (rhythm: mix the groove in).
    source: np.ndarray | None = None
    post: Callable[[np.ndarray], np.ndarray] | None = None


class Mode(Protocol):
    name: str

    def check(self) -> None:
        """Refuse bad settings before any audio is decoded."""

    def change(self, song: Song, timings: Timings) -> Change:
        """The converted mid log-mel of ``song``."""


class RoundtripMode:
    name = "roundtrip"

    def __init__(self, settings: RoundtripSettings) -> None:
        self.settings = settings

    def check(self) -> None:
        pass

    def change(self, song: Song, timings: Timings) -> Change:
        cfg = self.settings.mel_config
        with timings("mel"):
            mid = song.mid(cfg)
        return Change(cfg, mid, mid)


# --------------------------------------------------------------------------- stages


def resolve_device(device: str = "auto") -> str:
    """'cpu' or 'cuda[:N]'. 'auto' is CUDA when torch is installed and sees a GPU, but only
    asks torch when it is already imported or CUDA is likely (importing torch costs seconds);
    'cuda' without a GPU is a clear error."""
    if device not in ("auto", "cpu") and not str(device).startswith("cuda"):
        raise GenreshiftError("unknown device; choose auto, cpu or cuda", kind="bad_option",
                              option="device", value=device)
    if device == "cpu":
        return "cpu"
    if device == "auto" and not _cuda_likely():
        return "cpu"
    import torch

    if not torch.cuda.is_available():
        if device == "auto":
            return "cpu"
        raise GenreshiftError("no CUDA device is available here; use --device cpu or auto",
                              kind="bad_option", option="device", value="cuda")
    return "cuda" if device == "auto" else str(device)


def _cuda_likely() -> bool:
    import os
    import sys

    if "torch" in sys.modules:
        return True
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    return os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia/version")


def load_song(path: str | Path, *, mono: bool = False) -> tuple[np.ndarray, int]:
    """Load an input song and refuse what cannot be converted (too short, silent)."""
    song = _load(Path(path), mono)
    return song.audio, song.sr


def _load(path: Path, mono: bool) -> Song:
    audio, sr = gaudio.load_audio(path, mono=mono, min_seconds=MIN_SECONDS)
    song = Song(path, audio, sr)
    if not np.isfinite(song.lufs) or song.lufs < SILENCE_LUFS:
        raise AudioError(
            f"{path}: is silent (no part louder than {SILENCE_LUFS:g} LUFS); nothing to convert"
        )
    return song


def without_huge_pages() -> bool:
    """Turn off numpy's transparent huge pages (madvise on every array of 4 MB or more) for a
    process that runs conversions; returns whether they were on. The commands that convert
    call it (convert, roundtrip, serve, worker), not the library: a conversion allocates and
    frees its large arrays once, so a huge page's first touch (zeroing 2 MB, and compaction
    where the kernel defragments on madvise) can cost more than its fewer TLB misses save.
    A fresh `convert --to jazz` (default replace) of 30 s of 44.1 kHz stereo on the 2-core VM:
    median 1.56 -> 1.43 s, slowest of 6 2.23 -> 1.56 s; `--rhythm keep` unchanged within the
    noise (docs/DECISIONS.md, seventh session). A NUMPY_MADVISE_HUGEPAGE set by the user is
    left alone (numpy reads it at import)."""
    if "NUMPY_MADVISE_HUGEPAGE" in os.environ:
        return False
    try:  # private to numpy (its __init__ calls it): numpy 2 as _core, numpy 1 as core
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    setter = getattr(multiarray, "_set_madvise_hugepage", None)
    return bool(setter(False)) if setter is not None else False


def check_output(dst: str | Path, fmt: str | None, force: bool) -> tuple[Path, str]:
    """Validate the output before any work is done, so a bad -o fails fast: the format, an
    existing file without --force, and a folder that must exist and take a new file.
    Returns (path, format name)."""
    fmt = gaudio.output_format(dst, fmt)
    dst = Path(dst)
    if dst.exists() and not force:
        raise AudioError(f"{dst}: already exists; pass --force to overwrite it", kind="output")
    gaudio.check_output_dir(dst)
    return dst, fmt


def _gain_reconstruct(song: Song, change: Change, recon: ReconstructionConfig) -> np.ndarray:
    cfg = change.mel_config
    stft_cfg = spectral.native_stft(cfg, song.sr)
    gain_db = (change.mid_out - change.mid_in) * spectral.db_per_unit(cfg)
    n = song.audio.shape[-1]
    frames = stft_cfg.frames(n)
    if song.channels == 1 or frames <= _GAINS_KEPT_FRAMES:
        gains = spectral.band_gains(gain_db, cfg, stft_cfg, frames)  # shared by the channels
    else:  # a long stereo song: each block's gains are made when that block is inverted
        def gains(a: int, b: int) -> np.ndarray:
            return spectral.band_gains(gain_db, cfg, stft_cfg, b - a, a)
    out = np.empty_like(song.audio)
    for c in range(song.channels):  # one channel's STFT in memory at a time
        out[c] = spectral.apply_gains(
            spectral.stft(song.audio[c], stft_cfg), gains, stft_cfg, n_iter=recon.iterations,
            length=n,
            momentum=spectral.DEFAULT_MOMENTUM if recon.momentum is None else recon.momentum)
    return out


def _griffin_lim_reconstruct(song: Song, change: Change, recon: ReconstructionConfig, *,
                             progress: bool) -> np.ndarray:
    """Each channel's log-mel gets the mid's change (the normalised log-mel is linear in dB,
    so the difference is a per-band, per-frame gain that keeps the channels' level
    differences), then Griffin-Lim at the analysis rate from the input's phase."""
    cfg = change.mel_config
    at_rate = gaudio.resample(song.audio, song.sr, cfg.sample_rate)
    spec = spectral.stft(at_rate, cfg)
    mel = spectral.magnitude_to_mel(np.abs(spec), cfg)
    mel_out = np.clip(mel + (change.mid_out - change.mid_in)[None], -1.0, 1.0)
    kwargs = dict(method=recon.method, n_iter=recon.iterations,
                  phase=spec if recon.init == "phase" else None, momentum=recon.momentum,
                  length=at_rate.shape[-1], seed=recon.seed)
    # one piece up to GL_WINDOW_FRAMES, overlapping chunks beyond (memory stays bounded)
    wav = chunking.mel_to_wav_chunked(mel_out, cfg, window=chunking.GL_WINDOW_FRAMES,
                                      progress=progress, **kwargs)
    out = gaudio.resample(wav.astype(np.float32), cfg.sample_rate, song.sr)
    n = song.audio.shape[-1]
    return out[:, :n] if out.shape[-1] >= n else np.pad(out, ((0, 0), (0, n - out.shape[-1])))


def limit_boost(change: Change, max_boost_db: float | None) -> Change:
    """``change`` with no band of any frame of its mid raised by more than ``max_boost_db``
    (cuts are kept as they are); ``change`` itself when there is no limit."""
    if max_boost_db is None:
        return change
    ceiling = change.mid_in + np.float32(max_boost_db / spectral.db_per_unit(change.mel_config))
    return replace(change, mid_out=np.minimum(change.mid_out, ceiling))


def reconstruct(song: Song, change: Change, recon: ReconstructionConfig, *,
                progress: bool = False) -> np.ndarray:
    """The converted song [channels, samples] at the input's rate, loudness-matched to the
    input and peak-limited."""
    base = song if change.source is None else Song(song.path, change.source, song.sr)
    change = limit_boost(change, recon.max_boost_db)  # run() has applied it already: a no-op
    if recon.method == "gain":
        out = _gain_reconstruct(base, change, recon)
    else:
        out = _griffin_lim_reconstruct(base, change, recon, progress=progress)
    if change.post is not None:
        out = change.post(out)
    return gaudio.normalize_loudness(out, song.sr, song.lufs)


def write_output(out: np.ndarray, in_sr: int, options: OutputOptions, fmt: str, *,
                 source: Path, protect: tuple[str | Path, ...]) -> tuple[Path, np.ndarray, int]:
    """Resample [channels, samples] at ``in_sr`` to the asked rate (peak-safe again) and write
    it atomically, in the input's sample format unless a bit depth was asked. Returns (path
    written, audio written, its rate)."""
    out_sr = in_sr
    if options.sample_rate is not None and options.sample_rate != in_sr:
        out = gaudio.limit_peaks(gaudio.resample(out, in_sr, options.sample_rate),
                                 options.sample_rate)
        out_sr = options.sample_rate
    bit_depth = options.bit_depth
    if bit_depth is None:
        bit_depth = gaudio.source_bit_depth(source, fmt)
    written = gaudio.save_audio(options.path, out, out_sr, fmt=fmt, bit_depth=bit_depth,
                                force=options.force, protect=protect)
    return written, out, out_sr


def band_energy_share(audio: np.ndarray, sr: int, above_hz: float = 11_000.0) -> float:
    """Share of the energy above ``above_hz``, in dB (-inf when none; nan above Nyquist)."""
    if sr / 2 <= above_hz:
        return float("nan")
    spec = np.abs(np.fft.rfft(audio.mean(axis=0).astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(audio.shape[-1], 1.0 / sr)
    total = spec.sum()
    high = spec[freqs > above_hz].sum()
    return float(10 * np.log10(high / total)) if total > 0 and high > 0 else float("-inf")


# --------------------------------------------------------------------------- run


def mode_for(request: Request, **context: Any) -> Mode:
    """The mode object for the request's settings (context: models, cache for trained)."""
    settings = request.mode
    if isinstance(settings, RoundtripSettings):
        return RoundtripMode(settings)
    from genreshift.inference import convert

    if isinstance(settings, convert.TrainedSettings):
        return convert.TrainedMode(settings, device=request.device, progress=request.progress,
                                   **context)
    from genreshift.inference import reference  # imports torch: only for reference mode

    if isinstance(settings, reference.ReferenceSettings):
        return reference.ReferenceMode(settings, device=request.device,
                                       progress=request.progress)
    raise TypeError(f"unknown mode settings {type(settings).__name__}")


def run(request: Request, mode: Mode | None = None, **context: Any) -> Result:
    """Convert ``request.input`` and write ``request.output``; see the module docstring.
    Everything that can be checked is checked before the audio is decoded, and nothing is
    written on failure."""
    src = Path(request.input)
    dst, fmt = check_output(request.output.path, request.output.fmt, request.output.force)
    if request.output.sample_rate is not None and request.output.sample_rate <= 0:
        raise GenreshiftError("must be a positive sample rate", kind="bad_option", option="sr",
                              value=request.output.sample_rate)
    mode = mode if mode is not None else mode_for(request, **context)
    mode.check()
    timings = Timings()
    warnings: list[str] = []
    with timings("load"):
        song = _load(src, request.mono)
        note = gaudio.truncation_warning(src)
        if note:
            warnings.append(note)
    audio, in_sr = song.audio, song.sr
    change = limit_boost(mode.change(song, timings), request.recon.max_boost_db)
    with timings("reconstruction"):
        out = reconstruct(song, change, request.recon, progress=request.progress)
    with timings("write"):
        options = OutputOptions(dst, fmt, request.output.bit_depth, request.output.sample_rate,
                                request.output.force)
        written, out, out_sr = write_output(out, in_sr, options, fmt, source=src,
                                            protect=(src, *change.protect))
    summary = {
        "input": str(src),
        "output": str(written),
        "mode": mode.name,
        **change.info,
        "sample_rate": out_sr,
        "channels": int(out.shape[0]),
        "stereo": "mid-gain" if song.channels > 1 else "mono",
        "duration_s": out.shape[-1] / out_sr,
        "input_duration_s": audio.shape[-1] / in_sr,
        "reconstruction": request.recon.to_dict(),
        "warnings": warnings,
        "timings_s": timings.rounded(),
    }
    mels = {"input": change.mid_in, "output": change.mid_out, **change.mels}
    return Result(summary=summary, output=written, mel_config=change.mel_config, mels=mels)


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
    """Analyse ``src`` and reconstruct it unchanged into ``dst``; returns the summary."""
    request = Request(Path(src), OutputOptions(Path(dst), fmt, bit_depth, sr, force),
                      RoundtripSettings(mel_config), recon, mono=mono, device=device)
    return run(request).summary
