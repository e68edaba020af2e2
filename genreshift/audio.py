"""Audio I/O, resampling and loudness: pure functions over numpy arrays.

Every waveform in genreshift is a float32 array of shape [channels, samples] with values
nominally in [-1, 1]. Reading and writing go through soundfile (libsndfile), which covers WAV
in every common encoding, FLAC, OGG/Vorbis and MP3; M4A/AAC and other container formats are
decoded by an ``ffmpeg`` binary when one is on PATH. torchaudio's load/save are not used: from
2.9 on they need torchcodec.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyloudnorm
import scipy.ndimage
import soundfile as sf
import soxr

from genreshift.errors import AudioError
from genreshift.fsutil import atomic_path

# Formats libsndfile reads and writes itself, by file extension.
SNDFILE_FORMATS = {
    ".wav": "WAV",
    ".wave": "WAV",
    ".flac": "FLAC",
    ".ogg": "OGG",
    ".oga": "OGG",
    ".mp3": "MP3",
    ".aif": "AIFF",
    ".aiff": "AIFF",
    ".au": "AU",  # GTZAN's original distribution
    ".snd": "AU",
}
# Formats only an ffmpeg binary decodes.
FFMPEG_FORMATS = {".m4a", ".aac", ".mp4", ".wma", ".opus", ".webm", ".mka"}
READABLE_EXTENSIONS = tuple(sorted(set(SNDFILE_FORMATS) | FFMPEG_FORMATS))

# What `save_audio` writes: format name -> (extension, default subtype, allowed bit depths).
OUTPUT_FORMATS = {
    "wav": (".wav", "16"),
    "flac": (".flac", "16"),
    "ogg": (".ogg", None),
    "mp3": (".mp3", None),
}
_SUBTYPES = {
    ("wav", "16"): "PCM_16",
    ("wav", "24"): "PCM_24",
    ("wav", "float"): "FLOAT",
    ("flac", "16"): "PCM_16",
    ("flac", "24"): "PCM_24",
    ("ogg", None): "VORBIS",
    ("mp3", None): "MPEG_LAYER_III",
}
# MPEG-1/2 layer III and Vorbis (through libsndfile) accept at most 48 kHz.
LOSSY_MAX_RATE = 48_000

LOUDNESS_BLOCK_S = 0.4  # BS.1770 gating block: shorter audio has no integrated loudness
DEFAULT_CEILING_DB = -1.0  # sample-peak ceiling of every output; headroom for lossy encoders


@dataclass(frozen=True)
class AudioInfo:
    path: str
    format: str  # container, e.g. "WAV", "FLAC", "MP3"
    encoding: str  # e.g. "PCM_16", "FLOAT", "VORBIS", "aac (ffmpeg)"
    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def _check_path(path: Path) -> None:
    """Fail early, with a useful message, on paths that are not readable audio files."""
    try:
        path.stat()
    except FileNotFoundError:
        raise AudioError(f"{path}: no such file; check the path") from None
    except OSError as e:
        raise AudioError(f"{path}: cannot access it ({e.strerror}); check its permissions "
                         "and those of its folders") from None
    if not path.exists():
        raise AudioError(f"{path}: no such file; check the path")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file; give a file inside it")
    if not os.access(path, os.R_OK):
        raise AudioError(f"{path}: permission denied; make the file readable (chmod +r)")
    ext = path.suffix.lower()
    if ext not in READABLE_EXTENSIONS:
        known = " ".join(READABLE_EXTENSIONS)
        raise AudioError(
            f"{path}: unknown audio extension '{ext or '(none)'}'; supported: {known}"
        )
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: file is empty (0 bytes); re-export or re-copy it")
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise AudioError(f"{path}: cannot open it ({e.strerror}); make the file readable "
                         "(chmod +r)") from None


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise AudioError(
            "decoding this format needs the ffmpeg program, which is not installed; "
            "install it (Debian/Ubuntu: sudo apt install ffmpeg; macOS: brew install ffmpeg) "
            "or convert the file to WAV/FLAC first"
        )
    return exe


def _decode_with_ffmpeg(path: Path) -> tuple[np.ndarray, int, str]:
    """Decode anything ffmpeg reads to float32 [channels, samples] at its own rate."""
    try:
        exe = _ffmpeg()
    except AudioError as e:
        raise AudioError(f"{path}: {e}") from None
    probe = subprocess.run(
        [exe, "-hide_banner", "-nostdin", "-i", str(path), "-f", "wav", "-c:a", "pcm_f32le",
         "-"],
        capture_output=True,
    )
    if probe.returncode != 0 or not probe.stdout:
        last = (probe.stderr.decode(errors="replace").strip().splitlines() or ["unknown"])[-1]
        raise AudioError(f"{path}: ffmpeg cannot decode it ({last}); is it really audio?")
    data, sr = sf.read(io.BytesIO(probe.stdout), dtype="float32", always_2d=True)
    codec = "unknown"
    for line in probe.stderr.decode(errors="replace").splitlines():
        if "Audio:" in line and "Stream" in line:
            codec = line.split("Audio:", 1)[1].split(",")[0].strip()
            break
    return np.ascontiguousarray(data.T), int(sr), f"{codec} (ffmpeg)"


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Header facts of an audio file, without decoding it (ffmpeg formats are decoded)."""
    path = Path(path)
    _check_path(path)
    if path.suffix.lower() in FFMPEG_FORMATS:
        data, sr, codec = _decode_with_ffmpeg(path)
        return AudioInfo(str(path), path.suffix.lstrip(".").upper(), codec, sr,
                         data.shape[0], data.shape[1])
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(f"{path}: not a readable audio file ({_sf_reason(e)})") from None
    return AudioInfo(str(path), info.format, info.subtype, int(info.samplerate),
                     int(info.channels), int(info.frames))


def _sf_reason(e: Exception) -> str:
    msg = str(e)
    # soundfile prefixes the path; keep only libsndfile's reason.
    return msg.split(": ", 1)[-1] if ": " in msg else msg


def load_audio(
    path: str | os.PathLike,
    *,
    sr: int | None = None,
    mono: bool = False,
    min_seconds: float = 0.0,
) -> tuple[np.ndarray, int]:
    """Read an audio file.

    Returns (audio, sample_rate): audio is float32 [channels, samples] (or [1, samples] with
    ``mono``), resampled to ``sr`` when given. Integer encodings map to [-1, 1); float files
    keep their values. Raises AudioError for anything unusable: missing, empty, not audio,
    truncated, no samples, NaN/inf samples, or shorter than ``min_seconds``.
    """
    path = Path(path)
    _check_path(path)
    if path.suffix.lower() in FFMPEG_FORMATS:
        audio, file_sr, _ = _decode_with_ffmpeg(path)
        return _checked(audio, file_sr, str(path), sr=sr, mono=mono, min_seconds=min_seconds)
    return _decode_sndfile(str(path), str(path), sr=sr, mono=mono, min_seconds=min_seconds)


def load_audio_bytes(
    data: bytes,
    name: str,
    *,
    sr: int | None = None,
    mono: bool = False,
    min_seconds: float = 0.0,
) -> tuple[np.ndarray, int]:
    """:func:`load_audio` for an encoded file held in memory (a dataset's audio bytes);
    ``name`` labels error messages. Formats: those libsndfile reads (not the ffmpeg ones)."""
    if not data:
        raise AudioError(f"{name}: holds no data (0 bytes); the clip is missing or empty")
    return _decode_sndfile(io.BytesIO(data), name, sr=sr, mono=mono, min_seconds=min_seconds)


def _decode_sndfile(source, name: str, *, sr: int | None, mono: bool, min_seconds: float
                    ) -> tuple[np.ndarray, int]:
    try:
        data, file_sr = sf.read(source, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioError(
            f"{name}: not a readable audio file ({_sf_reason(e)}); "
            "check that it is a complete, uncorrupted audio file"
        ) from None
    return _checked(np.ascontiguousarray(data.T), file_sr, name, sr=sr, mono=mono,
                    min_seconds=min_seconds)


def _checked(audio: np.ndarray, file_sr: int, name: str, *, sr: int | None, mono: bool,
             min_seconds: float) -> tuple[np.ndarray, int]:
    """The checks and conversions every decoded file goes through."""
    if audio.shape[1] == 0:
        raise AudioError(f"{name}: holds no samples (0 frames); nothing to process")
    if not np.isfinite(audio).all():
        bad = int((~np.isfinite(audio)).sum())
        raise AudioError(
            f"{name}: holds {bad} NaN/infinite sample value(s); the file is corrupt, "
            "re-export it from its source"
        )
    duration = audio.shape[1] / file_sr
    if duration < min_seconds:
        raise AudioError(
            f"{name}: too short ({duration * 1000:.0f} ms); at least {min_seconds:g} s is needed"
        )
    if mono and audio.shape[0] > 1:
        audio = audio.mean(axis=0, keepdims=True)
    if sr is not None and sr != file_sr:
        audio = resample(audio, file_sr, sr)
        file_sr = sr
    return audio.astype(np.float32, copy=False), int(file_sr)


def resample(audio: np.ndarray, sr_from: int, sr_to: int) -> np.ndarray:
    """Resample [channels, samples] (or [samples]) with soxr's very-high-quality filter."""
    if sr_from == sr_to:
        return audio
    if sr_from <= 0 or sr_to <= 0:
        raise ValueError(f"sample rates must be positive, got {sr_from} -> {sr_to}")
    if audio.ndim == 1:
        return soxr.resample(audio, sr_from, sr_to, quality="VHQ").astype(np.float32)
    # soxr wants [samples, channels]
    out = soxr.resample(np.ascontiguousarray(audio.T), sr_from, sr_to, quality="VHQ")
    return np.ascontiguousarray(out.T, dtype=np.float32)


def peak_dbfs(audio: np.ndarray) -> float:
    """Sample peak in dBFS (-inf for silence)."""
    peak = float(np.max(np.abs(audio))) if audio.size else 0.0
    return 20.0 * np.log10(peak) if peak > 0 else float("-inf")


def integrated_loudness(audio: np.ndarray, sr: int) -> float:
    """ITU-R BS.1770-4 integrated loudness in LUFS of [channels, samples].

    -inf for silence (no gating block above the absolute threshold). Audio shorter than one
    400 ms gating block has no integrated loudness: returns nan. More than five channels
    (BS.1770 weights only five) are measured on their mixdown.
    """
    if audio.ndim == 1:
        audio = audio[None]
    if audio.shape[1] < int(np.ceil(LOUDNESS_BLOCK_S * sr)) + 1:
        return float("nan")
    if audio.shape[0] > 5:
        audio = audio.mean(axis=0, keepdims=True)
    meter = pyloudnorm.Meter(sr, block_size=LOUDNESS_BLOCK_S)
    with np.errstate(all="ignore"):
        value = float(meter.integrated_loudness(audio.T.astype(np.float64)))
    return value if np.isfinite(value) else float("-inf")


def limit_peaks(
    audio: np.ndarray, sr: int, *, ceiling_db: float = DEFAULT_CEILING_DB,
    lookahead_ms: float = 5.0, release_ms: float = 80.0,
) -> np.ndarray:
    """Peak-safe look-ahead limiter: no output sample exceeds ``ceiling_db`` dBFS.

    Written by hand because no small, well-kept library provides one. The gain needed per
    sample, min(1, ceiling/|x|) over all channels (linked, so the stereo image holds), is
    spread backwards over the look-ahead window by a running minimum, held and released
    by a second running minimum, then smoothed by a moving average no longer than the
    running-minimum window, which keeps the smoothed gain at or below the needed gain
    everywhere. A final clip at the ceiling only guards against float rounding.
    """
    ceiling = 10.0 ** (ceiling_db / 20.0)
    peak = np.max(np.abs(audio), axis=0) if audio.ndim == 2 else np.abs(audio)
    if peak.size == 0 or float(peak.max()) <= ceiling:
        return audio
    need = np.minimum(1.0, ceiling / np.maximum(peak, 1e-12))
    look = max(1, int(sr * lookahead_ms / 1000.0))
    rel = max(1, int(sr * release_ms / 1000.0))
    # running minimum over [n - rel, n + look]: attack ahead of the peak, hold/release after it
    size = look + rel + 1
    origin = (rel - look) // 2
    gain = scipy.ndimage.minimum_filter1d(need, size=size, mode="nearest", origin=origin)
    # moving average of length `look`, centred: stays <= the running minimum of width >= look
    smooth = scipy.ndimage.uniform_filter1d(gain, size=look, mode="nearest")
    gain = np.minimum(smooth, need)
    out = audio * gain.astype(audio.dtype)
    return np.clip(out, -ceiling, ceiling).astype(audio.dtype)


def normalize_loudness(
    audio: np.ndarray, sr: int, target_lufs: float, *, ceiling_db: float = DEFAULT_CEILING_DB,
) -> np.ndarray:
    """Scale to ``target_lufs`` integrated loudness, then limit peaks to ``ceiling_db``.

    Silence and clips too short to measure are returned peak-limited but unscaled.
    """
    current = integrated_loudness(audio, sr)
    if np.isfinite(current) and np.isfinite(target_lufs):
        audio = audio * np.float32(10.0 ** ((target_lufs - current) / 20.0))
    return limit_peaks(audio, sr, ceiling_db=ceiling_db)


def match_loudness(
    audio: np.ndarray, sr: int, reference: np.ndarray, reference_sr: int,
    *, ceiling_db: float = DEFAULT_CEILING_DB,
) -> np.ndarray:
    """Give ``audio`` the integrated loudness of ``reference``, peak-safe."""
    return normalize_loudness(
        audio, sr, integrated_loudness(reference, reference_sr), ceiling_db=ceiling_db
    )


def output_format(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The output format name ('wav', 'flac', 'ogg', 'mp3') from ``fmt`` or the extension."""
    if fmt is not None:
        fmt = fmt.lower()
        if fmt not in OUTPUT_FORMATS:
            raise AudioError(
                f"unknown output format '{fmt}'; choose one of {', '.join(OUTPUT_FORMATS)}"
            )
        return fmt
    ext = Path(path).suffix.lower()
    for name, (e, _) in OUTPUT_FORMATS.items():
        if ext == e:
            return name
    raise AudioError(
        f"{path}: cannot tell the output format from the extension '{ext or '(none)'}'; "
        f"use .wav, .flac, .ogg or .mp3, or pass --format"
    )


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def save_audio(
    path: str | os.PathLike,
    audio: np.ndarray,
    sr: int,
    *,
    fmt: str | None = None,
    bit_depth: str | None = None,
    force: bool = False,
    protect: tuple[str | os.PathLike, ...] = (),
) -> Path:
    """Write [channels, samples] (or [samples]) atomically and return the path written.

    ``fmt`` is 'wav', 'flac', 'ogg' or 'mp3' (default: from the extension); ``bit_depth`` is
    '16', '24' or 'float' for WAV, '16' or '24' for FLAC, and must be unset for the lossy
    formats. An existing file is refused unless ``force``; a path in ``protect`` (the inputs)
    is never overwritten. Lossy formats above 48 kHz are resampled to 48 kHz. The data go to
    a temporary file in the same folder, renamed over the target only once complete.
    """
    path = Path(path)
    fmt = output_format(path, fmt)
    if bit_depth is not None:
        bit_depth = str(bit_depth).lower()
    key = (fmt, bit_depth if bit_depth is not None else OUTPUT_FORMATS[fmt][1])
    if key not in _SUBTYPES:
        allowed = sorted(b for f, b in _SUBTYPES if f == fmt and b)
        hint = f"choose {', '.join(allowed)}" if allowed else "leave --bit-depth unset for it"
        raise AudioError(f"{path}: bit depth '{bit_depth}' does not apply to {fmt}; {hint}")
    for p in protect:
        if _same_file(path, Path(p)) or path.resolve() == Path(p).resolve():
            raise AudioError(f"{path}: refusing to overwrite an input file; choose another output")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory; give an output file name")
    if path.exists() and not force:
        raise AudioError(f"{path}: already exists; pass --force to overwrite it")
    if not path.parent.exists():
        raise AudioError(f"{path}: folder {path.parent} does not exist; create it first")
    if audio.ndim == 1:
        audio = audio[None]
    if not np.isfinite(audio).all():
        raise AudioError(f"{path}: refusing to write NaN/infinite samples (internal error)")
    if fmt in ("ogg", "mp3") and sr > LOSSY_MAX_RATE:
        audio = resample(audio, sr, LOSSY_MAX_RATE)
        sr = LOSSY_MAX_RATE
    if key[1] != "float":
        audio = np.clip(audio, -1.0, 1.0)
    try:
        with atomic_path(path) as tmp:
            sf.write(tmp, np.ascontiguousarray(audio.T), sr, subtype=_SUBTYPES[key],
                     format=SNDFILE_FORMATS[OUTPUT_FORMATS[fmt][0]])
    except (sf.LibsndfileError, RuntimeError, OSError) as e:
        raise AudioError(f"{path}: could not write {fmt} ({_sf_reason(e)})") from None
    return path
