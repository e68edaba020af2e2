"""Audio I/O, resampling and loudness: pure functions over numpy arrays.

Every waveform in genreshift is a float32 array of shape [channels, samples] with values
nominally in [-1, 1]. Reading and writing go through soundfile (libsndfile), which covers WAV
in every common encoding, FLAC, OGG/Vorbis and MP3; M4A/AAC and other container formats are
decoded by an ``ffmpeg`` binary when one is on PATH. torchaudio's load/save are not used: from
2.9 on they need torchcodec.

Every AudioError carries a ``kind`` (genreshift.errors.KINDS): "bad_input" by default,
"not_found", "unsupported_format", "bad_option" or "output" where that is what went wrong.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import math
from functools import lru_cache

import numpy as np
import soundfile as sf
import soxr

from genreshift.errors import AudioError, GenreshiftError
from genreshift.fsutil import atomic_path, check_writable, write_all

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
        raise AudioError(f"{path}: no such file; check the path", kind="not_found") from None
    except OSError as e:
        raise AudioError(f"{path}: cannot access it ({e.strerror}); check its permissions "
                         "and those of its folders") from None
    if not path.exists():
        raise AudioError(f"{path}: no such file; check the path", kind="not_found")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory, not an audio file; give a file inside it")
    if not os.access(path, os.R_OK):
        raise AudioError(f"{path}: permission denied; make the file readable (chmod +r)")
    ext = path.suffix.lower()
    if ext not in READABLE_EXTENSIONS:
        known = " ".join(READABLE_EXTENSIONS)
        raise AudioError(
            f"{path}: unknown audio extension '{ext or '(none)'}'; supported: {known}",
            kind="unsupported_format",
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
        # "unsupported_format", not "unavailable": this installation cannot decode the format
        # until someone installs ffmpeg, so a retry (what a web client does on 503) would fail.
        raise AudioError(
            "decoding this format needs the ffmpeg program, which is not installed; "
            "install it (Debian/Ubuntu: sudo apt install ffmpeg; macOS: brew install ffmpeg) "
            "or convert the file to WAV/FLAC first", kind="unsupported_format"
        )
    return exe


def _decode_with_ffmpeg(path: Path) -> tuple[np.ndarray, int, str]:
    """Decode anything ffmpeg reads to float32 [channels, samples] at its own rate."""
    try:
        exe = _ffmpeg()
    except AudioError as e:
        raise AudioError(f"{path}: {e}", kind=e.kind) from None
    probe = subprocess.run(
        [exe, "-hide_banner", "-nostdin", "-i", str(path), "-f", "wav", "-c:a", "pcm_f32le",
         "-"],
        capture_output=True, check=False,
    )
    if probe.returncode != 0 or not probe.stdout:
        last = (probe.stderr.decode(errors="replace").strip().splitlines() or ["unknown"])[-1]
        raise AudioError(f"{path}: ffmpeg cannot decode it ({last}); is it really audio?",
                         kind="unsupported_format")
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


# --------------------------------------------------------------------------- loudness
#
# BS.1770 loudness and the limiter are written here on numpy rather than taken from pyloudnorm
# and scipy.ndimage: those two pull in scipy.signal / scipy.ndimage, about 1 s of import on this
# machine, paid by every conversion and even by `genreshift info`. The K-weighting filter is
# applied through the FFT with its exact complex response (the same output as the IIR filter,
# up to a tail below 1e-12 cut at one second), the gates and blocks are BS.1770-4's.
# tests/test_audio.py checks both against pyloudnorm and scipy.ndimage.

_LOUDNESS_OFFSET = -0.691  # BS.1770's constant
_ABSOLUTE_GATE = -70.0  # LUFS
_RELATIVE_GATE = -10.0  # LU below the absolutely gated loudness
_CHANNEL_WEIGHTS = (1.0, 1.0, 1.0, 1.41, 1.41)  # L, R, C, Ls, Rs


@lru_cache(maxsize=8)
def k_weighting_sections(sample_rate: int) -> np.ndarray:
    """ITU-R BS.1770 K-weighting (high shelf +4 dB at 1.5 kHz, high pass at 38 Hz) as
    second-order sections [2, 6] (b0 b1 b2 1 a1 a2) for ``sample_rate``, by the RBJ formulas
    pyloudnorm uses too."""
    sections = []
    for kind, gain_db, q, fc in (("shelf", 4.0, 1 / math.sqrt(2), 1500.0),
                                 ("highpass", 0.0, 0.5, 38.0)):
        a_ = 10.0 ** (gain_db / 40.0)
        w0 = 2.0 * math.pi * fc / sample_rate
        alpha = math.sin(w0) / (2.0 * q)
        cw = math.cos(w0)
        if kind == "shelf":
            b = [a_ * ((a_ + 1) + (a_ - 1) * cw + 2 * math.sqrt(a_) * alpha),
                 -2 * a_ * ((a_ - 1) + (a_ + 1) * cw),
                 a_ * ((a_ + 1) + (a_ - 1) * cw - 2 * math.sqrt(a_) * alpha)]
            a = [(a_ + 1) - (a_ - 1) * cw + 2 * math.sqrt(a_) * alpha,
                 2 * ((a_ - 1) - (a_ + 1) * cw),
                 (a_ + 1) - (a_ - 1) * cw - 2 * math.sqrt(a_) * alpha]
        else:
            b = [(1 + cw) / 2, -(1 + cw), (1 + cw) / 2]
            a = [1 + alpha, -2 * cw, 1 - alpha]
        sections.append([x / a[0] for x in b] + [1.0] + [x / a[0] for x in a[1:]])
    return np.array(sections)


@lru_cache(maxsize=8)
def _k_response(sample_rate: int) -> tuple[int, np.ndarray]:
    """(tail, H): the K-weighting's complex response on the bins of an FFT of 8 x tail
    samples, where ``tail`` (a power of two, >= 0.18 s) is longer than the filter's impulse
    response has any energy (its slowest pole, the 38 Hz high pass, decays in ~5 ms)."""
    tail = 1 << math.ceil(math.log2(0.18 * sample_rate))
    size = 8 * tail
    z = np.exp(-2j * np.pi * np.arange(size // 2 + 1) / size)
    h = np.ones_like(z)
    for b0, b1, b2, _, a1, a2 in k_weighting_sections(sample_rate):
        h *= (b0 + z * (b1 + z * b2)) / (1.0 + z * (a1 + z * a2))
    return tail, h.astype(np.complex64)


def k_weight(audio: np.ndarray, sr: int) -> np.ndarray:
    """[channels, samples] through the K-weighting filter, by FFT overlap-save in blocks of
    8 x tail samples (the IIR filter's output, up to its tail beyond ``tail``: < 1e-12)."""
    import scipy.fft  # light, unlike scipy.signal; spectral.py uses it too

    tail, h = _k_response(sr)
    size = 8 * tail
    hop = size - tail
    n = audio.shape[-1]
    blocks = -(-n // hop)
    padded = np.zeros((audio.shape[0], tail + blocks * hop + tail), dtype=np.float32)
    padded[:, tail:tail + n] = audio
    frames = np.lib.stride_tricks.sliding_window_view(padded, size, axis=-1)[:, ::hop][:, :blocks]
    out = np.empty((audio.shape[0], blocks * hop), dtype=np.float32)
    for a in range(0, blocks, _K_BLOCKS):  # bounded temporaries whatever the length
        b = min(blocks, a + _K_BLOCKS)
        y = scipy.fft.irfft(scipy.fft.rfft(frames[:, a:b], axis=-1) * h, n=size, axis=-1)
        out[:, a * hop:b * hop] = y[..., tail:].reshape(audio.shape[0], -1)
    return out[:, :n]


# FFT blocks of k_weight transformed at once (16 x 65 536 samples at 44.1 kHz: ~20 MB of
# temporaries per channel).
_K_BLOCKS = 16


def integrated_loudness(audio: np.ndarray, sr: int) -> float:
    """ITU-R BS.1770-4 integrated loudness in LUFS of [channels, samples].

    400 ms blocks every 100 ms, an absolute gate at -70 LUFS and a relative one 10 LU below.
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
    block = round(LOUDNESS_BLOCK_S * sr)
    step = round(0.25 * block)  # 75 % overlap
    starts = np.arange(0, audio.shape[1] - block + 1, step)
    total = np.zeros(starts.size)
    for c in range(audio.shape[0]):  # one channel's filtered copy in memory at a time
        y = k_weight(audio[c:c + 1], sr)[0]
        total += _CHANNEL_WEIGHTS[c] * _block_energies(y, block, step, starts.size) / block
    with np.errstate(divide="ignore"):
        block_lufs = _LOUDNESS_OFFSET + 10.0 * np.log10(total)
    kept = block_lufs > _ABSOLUTE_GATE
    if not kept.any():
        return float("-inf")
    relative = _LOUDNESS_OFFSET + 10.0 * np.log10(total[kept].mean()) + _RELATIVE_GATE
    kept &= block_lufs > relative
    if not kept.any():
        return float("-inf")
    value = float(_LOUDNESS_OFFSET + 10.0 * np.log10(total[kept].mean()))
    return value if np.isfinite(value) else float("-inf")


def _block_energies(y: np.ndarray, block: int, step: int, count: int) -> np.ndarray:
    """Sum of y**2 over [k * step, k * step + block) for k < count (float64). Where the block
    is a whole number of steps (4 at the usual rates), from per-step sums computed a chunk at
    a time: no float64 copy or cumulative sum of the whole signal in memory (each was 64 MB
    per channel-minute at 44.1 kHz)."""
    if block % step:
        csum = np.concatenate([[0.0], np.cumsum(np.square(y), dtype=np.float64)])
        starts = np.arange(count) * step
        return csum[starts + block] - csum[starts]
    r = block // step
    steps = count + r - 1
    per_step = np.empty(steps)
    chunk = max(1, _ENERGY_CHUNK // step)
    for a in range(0, steps, chunk):
        b = min(steps, a + chunk)
        seg = y[a * step:b * step].astype(np.float64).reshape(b - a, step)
        per_step[a:b] = np.einsum("ij,ij->i", seg, seg)
    csum = np.concatenate([[0.0], np.cumsum(per_step)])
    return csum[r:r + count] - csum[:count]


_ENERGY_CHUNK = 1 << 20  # samples squared at once by _block_energies


def _running_min(x: np.ndarray, size: int, origin: int) -> np.ndarray:
    """scipy.ndimage.minimum_filter1d(x, size, mode="nearest", origin=origin) for 1-D x: the
    minimum over x[i - size // 2 - origin : ... + size], edges repeated (van Herk / Gil-Werman:
    prefix and suffix minima of blocks of ``size``, so O(n) whatever the size)."""
    n = x.size
    start = -(size // 2) - origin
    left = max(0, -start)
    padded = np.pad(x, (left, max(0, start + size - 1) + size), mode="edge")
    m = -(-padded.size // size) * size
    padded = np.pad(padded, (0, m - padded.size), mode="edge").reshape(-1, size)
    prefix = np.minimum.accumulate(padded, axis=1).ravel()
    suffix = np.minimum.accumulate(padded[:, ::-1], axis=1)[:, ::-1].ravel()
    a = start + left  # window [a + k, a + k + size) in padded coordinates, k < n
    return np.minimum(suffix[a:a + n], prefix[a + size - 1:a + size - 1 + n])


def _moving_average(x: np.ndarray, size: int) -> np.ndarray:
    """scipy.ndimage.uniform_filter1d(x, size, mode="nearest") for 1-D x."""
    start = -(size // 2)
    padded = np.pad(x.astype(np.float64), (size, size), mode="edge")
    csum = np.concatenate([[0.0], np.cumsum(padded)])
    del padded
    a, n = size + start, x.size  # window [a + k, a + k + size) of padded, k < n
    out = csum[a + size:a + size + n] - csum[a:a + n]
    out /= size
    return out.astype(x.dtype)


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
    # Linked peak over the channels, one channel's |x| at a time (memory: a 3-minute
    # 44.1 kHz song is 32 MB per channel, and this runs on every conversion's output).
    channels = audio if audio.ndim == 2 else audio[None]
    peak = np.abs(channels[0])
    for c in range(1, channels.shape[0]):
        np.maximum(peak, np.abs(channels[c]), out=peak)
    if peak.size == 0 or float(peak.max()) <= ceiling:
        return audio
    need = np.minimum(1.0, ceiling / np.maximum(peak, 1e-12))
    look = max(1, int(sr * lookahead_ms / 1000.0))
    rel = max(1, int(sr * release_ms / 1000.0))
    # running minimum over [n - rel, n + look]: attack ahead of the peak, hold/release after it
    size = look + rel + 1
    origin = (rel - look) // 2
    del peak
    gain = _running_min(need, size, origin)
    # moving average of length `look`, centred: stays <= the running minimum of width >= look
    gain = np.minimum(_moving_average(gain, look), need)
    del need
    out = audio * gain.astype(audio.dtype, copy=False)
    np.clip(out, -ceiling, ceiling, out=out)
    return out.astype(audio.dtype, copy=False)


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
            raise AudioError(f"unknown output format; choose one of {', '.join(OUTPUT_FORMATS)}",
                             kind="bad_option", option="format", value=fmt)
        return fmt
    ext = Path(path).suffix.lower()
    for name, (e, _) in OUTPUT_FORMATS.items():
        if ext == e:
            return name
    raise AudioError(
        f"{path}: cannot tell the output format from the extension '{ext or '(none)'}'; "
        f"use .wav, .flac, .ogg or .mp3, or pass --format", kind="bad_option"
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
    a temporary file in the same folder, renamed over the target only once complete; a
    write the filesystem refuses (no space, permission denied) raises AudioError of kind
    "output" naming the path and the cause, and leaves no file behind.
    """
    path = Path(path)
    fmt = output_format(path, fmt)
    if bit_depth is not None:
        bit_depth = str(bit_depth).lower()
    key = (fmt, bit_depth if bit_depth is not None else OUTPUT_FORMATS[fmt][1])
    if key not in _SUBTYPES:
        allowed = sorted(b for f, b in _SUBTYPES if f == fmt and b)
        hint = (f"choose {' or '.join(allowed)}" if allowed
                else "a lossy format has no bit depth: leave it unset")
        raise AudioError(f"does not apply to {fmt} ({path}); {hint}", kind="bad_option",
                         option="bit-depth", value=bit_depth)
    for p in protect:
        if _same_file(path, Path(p)) or path.resolve() == Path(p).resolve():
            raise AudioError(f"{path}: refusing to overwrite an input file; choose another output",
                             kind="output")
    if path.is_dir():
        raise AudioError(f"{path}: is a directory; give an output file name", kind="output")
    if path.exists() and not force:
        raise AudioError(f"{path}: already exists; pass --force to overwrite it", kind="output")
    if not path.parent.exists():
        raise AudioError(f"{path}: folder {path.parent} does not exist; create it first",
                         kind="output")
    if audio.ndim == 1:
        audio = audio[None]
    if not np.isfinite(audio).all():
        raise AudioError(f"{path}: refusing to write NaN/infinite samples (internal error)",
                         kind="internal")
    if fmt in ("ogg", "mp3") and sr > LOSSY_MAX_RATE:
        audio = resample(audio, sr, LOSSY_MAX_RATE)
        sr = LOSSY_MAX_RATE
    if key[1] != "float":
        audio = np.clip(audio, -1.0, 1.0)
    try:
        with atomic_path(path) as tmp:
            _write_sndfile(tmp, np.ascontiguousarray(audio.T), sr, subtype=_SUBTYPES[key],
                           container=SNDFILE_FORMATS[OUTPUT_FORMATS[fmt][0]])
    except AudioError:
        raise
    except GenreshiftError as e:  # the filesystem refused it: fsutil's message, as an AudioError
        raise AudioError(str(e), kind=e.kind) from None
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(f"{path}: could not write {fmt} ({_sf_reason(e)})",
                         kind="output") from None
    return path


class _SndfileTarget:
    """The file libsndfile writes, as a file object for its virtual I/O: the bytes go
    through fsutil.write_all, and a failing write keeps its OSError, errno and all.
    libsndfile writing to a path itself reports only "System error.", and an exception
    raised in its (cffi) callback would only be printed; instead the callback reports 0 bytes
    written, libsndfile gives up, and :func:`_write_sndfile` raises the kept OSError."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        if self.error is not None:
            return 0
        try:
            write_all(self.fd, data)
        except OSError as e:
            self.error = e
            return 0
        return len(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        try:
            return os.lseek(self.fd, offset, whence)
        except OSError as e:
            self.error = self.error or e
            return -1

    def tell(self) -> int:
        return self.seek(0, os.SEEK_CUR)

    def read(self, n: int) -> bytes:
        try:
            return os.read(self.fd, n)
        except OSError as e:
            self.error = self.error or e
            return b""


def _write_sndfile(tmp: Path, frames: np.ndarray, sr: int, *, subtype: str, container: str
                   ) -> None:
    """Write [samples, channels] to ``tmp``; an OSError of the filesystem's propagates."""
    fd = os.open(tmp, os.O_RDWR | os.O_TRUNC)
    try:
        target = _SndfileTarget(fd)
        try:
            with sf.SoundFile(target, "w", samplerate=sr, channels=frames.shape[1],
                              subtype=subtype, format=container) as f:
                f.write(frames)
        except Exception:  # libsndfile's error, or soundfile's check of the frames written
            if target.error is None:
                raise
        if target.error is not None:  # named after the file, so atomic_path words it
            raise OSError(target.error.errno, target.error.strerror, str(tmp))
    finally:
        os.close(fd)


def check_output_dir(dst: str | os.PathLike) -> None:
    """Fail before any conversion work if ``dst`` cannot be written: AudioError (kind
    "output") when it is a folder, or its folder is missing, is a file, or refuses a new file
    (tried for real: a temporary file is created and removed there)."""
    dst = Path(dst)
    if dst.is_dir():
        raise AudioError(f"{dst}: is a directory; give an output file name", kind="output")
    try:
        check_writable(dst)
    except GenreshiftError as e:
        raise AudioError(str(e), kind=e.kind) from None


# Input encodings (libsndfile subtypes) -> the output bit depth that keeps them, per format.
# Integer PCM keeps its depth (8-bit comes out 16-bit, the least written; 32-bit integer,
# rare, comes out 24-bit, the most); float stays float in WAV and becomes 24-bit in FLAC,
# which has no float (24-bit is FLAC's deepest here; outputs are peak-limited to -1 dBFS, so
# nothing clips). Lossy and unknown encodings: None, the 16-bit default being right.
_DEPTH_OF_SUBTYPE = {
    "PCM_S8": "16", "PCM_U8": "16", "PCM_16": "16", "ULAW": "16", "ALAW": "16",
    "IMA_ADPCM": "16", "MS_ADPCM": "16", "DPCM_8": "16", "DPCM_16": "16", "DWVW_12": "16",
    "DWVW_16": "16", "ALAC_16": "16",
    "PCM_24": "24", "DWVW_24": "24", "ALAC_20": "24", "ALAC_24": "24",
    "PCM_32": "24", "ALAC_32": "24",
    "FLOAT": "float", "DOUBLE": "float",
}
# ffmpeg's sample formats of lossless codecs ("s32p (24 bit)" is 24-bit audio in 32-bit words).
_LOSSLESS_CODECS = ("pcm_", "alac", "flac", "wavpack", "tta", "ape", "mlp", "truehd")


def source_bit_depth(path: str | os.PathLike, out_fmt: str) -> str | None:
    """The ``bit_depth`` for :func:`save_audio` that keeps the input's sample format in
    ``out_fmt`` ('wav', 'flac', 'ogg', 'mp3'): '24' for 24-bit input, 'float' for float
    input to WAV ('24' to FLAC, which has no float), '16' for 16-bit (and shallower) input;
    None for lossy outputs, lossy or undetermined inputs, and inputs it cannot read (the
    loader reports those). Reads the header only (ffmpeg formats: ffmpeg's probe)."""
    fmt = output_format("", out_fmt)
    if fmt not in ("wav", "flac"):
        return None
    path = Path(path)
    depth = None
    if path.suffix.lower() in FFMPEG_FORMATS:
        depth = _ffmpeg_bit_depth(path)
    else:
        try:
            depth = _DEPTH_OF_SUBTYPE.get(sf.info(str(path)).subtype)
        except (sf.LibsndfileError, RuntimeError, OSError):
            return None
    if depth == "float" and fmt == "flac":
        return "24"
    return depth


def _ffmpeg_bit_depth(path: Path) -> str | None:
    exe = shutil.which("ffmpeg")
    if exe is None:
        return None
    try:  # no output file: ffmpeg describes the input, then exits with an error
        r = subprocess.run([exe, "-hide_banner", "-nostdin", "-i", str(path)],
                           capture_output=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    for line in r.stderr.decode(errors="replace").splitlines():
        if "Stream" in line and "Audio:" in line:
            desc = line.split("Audio:", 1)[1].strip()
            if not desc.startswith(_LOSSLESS_CODECS):
                return None
            bits = re.search(r"\((\d+) bit\)", desc)
            fields = [f.strip() for f in desc.split(",")]
            if bits:
                return "16" if int(bits.group(1)) <= 16 else "24"
            if any(f.startswith(("flt", "dbl")) for f in fields) or "pcm_f" in desc:
                return "float"
            if any(f.startswith(("s16", "u8")) for f in fields):
                return "16"
            if any(f.startswith("s32") for f in fields):
                return "24"
            return None
    return None


def truncation_warning(path: str | os.PathLike) -> str | None:
    """A warning when a WAV file's data chunk is shorter than its header says (a file cut off
    mid-download or mid-copy), naming the file, the duration present and the duration the
    header promised; None for complete WAVs, other formats and unreadable files.

    Parsed here by hand, as far as needed (RIFF/RF64 chunk headers, 'fmt ', 'ds64', the
    size of 'data' against the bytes present): libsndfile reads such a file without an error,
    logging the shortfall only to its log buffer, and no library reports it."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            found = _wav_data_extent(f)
    except OSError:
        return None
    if found is None:
        return None
    offset, declared, byte_rate, block_align, sample_rate = found
    present = max(0, size - offset)
    if present >= declared or byte_rate <= 0:
        return None
    if block_align > 0 and sample_rate > 0 and byte_rate == block_align * sample_rate:
        read_s = (present // block_align) / sample_rate  # whole frames, as libsndfile reads
    else:  # compressed WAV (ADPCM, ...): the average rate is all the header gives
        read_s = present / byte_rate
    promised_s = declared / byte_rate
    return (f"{path}: the file is cut short: it holds {_clock(read_s)} of audio, but its "
            f"header promises {_clock(promised_s)} (an interrupted download or copy?); "
            f"only the {_clock(read_s)} present were used")


def _clock(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.2f} s"
    m, s = divmod(seconds, 60)
    return f"{int(m)}:{s:05.2f} min"


# Data sizes a writer that could not seek back leaves in the header: the length is unknown,
# not promised (ffmpeg writing to a pipe: 0xFFFFFFFF; others: 0).
_UNKNOWN_DATA_SIZES = {0, 0xFFFFFFFF}


def _wav_data_extent(f) -> tuple[int, int, int, int, int] | None:
    """(offset of the data, its declared size, byte rate, block align, sample rate) of a
    RIFF/RF64/BW64 WAVE file; None if it is not one, or says nothing checkable."""
    head = f.read(12)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RF64", b"BW64") or head[8:12] != b"WAVE":
        return None
    ds64_data = None
    fmt = None
    while True:
        chunk = f.read(8)
        if len(chunk) < 8:
            return None  # no data chunk: the decoder will say the file is unreadable
        cid, csize = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        start = f.tell()
        if cid == b"ds64":
            body = f.read(min(csize, 28))
            if len(body) >= 16:
                ds64_data = struct.unpack("<Q", body[8:16])[0]
        elif cid == b"fmt ":
            body = f.read(min(csize, 16))
            if len(body) < 16:
                return None
            _, _, sample_rate, byte_rate, block_align, _ = struct.unpack("<HHIIHH", body)
            fmt = (byte_rate, block_align, sample_rate)
        elif cid == b"data":
            if head[:4] != b"RIFF" and csize == 0xFFFFFFFF:
                csize = ds64_data if ds64_data is not None else 0
            elif csize in _UNKNOWN_DATA_SIZES:
                return None
            if fmt is None or csize == 0:
                return None
            return (start, csize, *fmt)
        f.seek(start + csize + (csize & 1))  # chunks are padded to an even size
