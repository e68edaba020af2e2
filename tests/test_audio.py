"""Audio I/O: every encoding, rate and layout loads right; writes are atomic and safe."""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genreshift import audio as gaudio
from genreshift.errors import AudioError, GenreshiftError

# (subtype, tolerance of a value read back): quantisation step of the encoding
WAV_ENCODINGS = {
    "PCM_U8": 1 / 64,
    "PCM_16": 1 / 16384,
    "PCM_24": 1e-6,
    "PCM_32": 1e-7,
    "FLOAT": 1e-7,
    "DOUBLE": 1e-7,
}
RATES = [8000, 22_050, 44_100, 96_000, 192_000]
CHANNELS = [1, 2, 6]


def _test_signal(channels: int, sr: int, seconds: float = 0.25) -> np.ndarray:
    """[samples, channels] with a different sine per channel, peak 0.8."""
    t = np.arange(int(sr * seconds)) / sr
    return np.stack([0.8 * np.sin(2 * np.pi * (220 + 110 * c) * t) for c in range(channels)],
                    axis=1)


@pytest.mark.parametrize("subtype", list(WAV_ENCODINGS))
@pytest.mark.parametrize("sr", RATES)
@pytest.mark.parametrize("channels", CHANNELS)
def test_wav_encodings_load(tmp_path: Path, subtype: str, sr: int, channels: int) -> None:
    x = _test_signal(channels, sr)
    path = tmp_path / "x.wav"
    sf.write(path, x, sr, subtype=subtype)
    audio, got_sr = gaudio.load_audio(path)
    assert got_sr == sr
    assert audio.dtype == np.float32
    assert audio.shape == (channels, x.shape[0])
    np.testing.assert_allclose(audio, x.T, atol=WAV_ENCODINGS[subtype] + 1e-7)


def test_u8_is_unsigned_and_centred(tmp_path: Path) -> None:
    # 8-bit WAV stores unsigned bytes: 128 is zero. Read the raw bytes to be sure.
    path = tmp_path / "u8.wav"
    sf.write(path, np.zeros((100, 1)), 8000, subtype="PCM_U8")
    raw = path.read_bytes()[-100:]
    assert set(raw) == {128}
    audio, _ = gaudio.load_audio(path)
    assert np.all(audio == 0)


def _dominant_freq(x: np.ndarray, sr: int) -> float:
    n = 1 << 20  # zero-padded FFT: 0.02 Hz bins at 22 kHz
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), n))
    k = int(np.argmax(spec))
    a, b, c = np.log(spec[k - 1: k + 2] + 1e-20)
    k = k + 0.5 * (a - c) / (a - 2 * b + c)  # parabolic interpolation of the peak
    return k * sr / n


@pytest.mark.parametrize("fmt,subtype", [("FLAC", "PCM_16"), ("FLAC", "PCM_24"),
                                          ("OGG", "VORBIS"), ("MP3", "MPEG_LAYER_III")])
def test_compressed_formats_load(tmp_path: Path, fmt: str, subtype: str) -> None:
    sr = 44_100
    x = _test_signal(2, sr, seconds=1.0) * 0.5
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(path, x, sr, format=fmt, subtype=subtype)
    audio, got_sr = gaudio.load_audio(path)
    assert got_sr == sr and audio.shape[0] == 2
    assert abs(audio.shape[1] - x.shape[0]) < 0.1 * sr  # lossy codecs pad a little
    for c, f in enumerate((220, 330)):
        assert abs(_dominant_freq(audio[c], sr) - f) < 1.0
    if fmt == "FLAC":
        np.testing.assert_allclose(audio, x.T, atol=1 / 16384)


def test_m4a_through_ffmpeg(tmp_path: Path) -> None:
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "ffmpeg is installed by `make install`; this test needs it"
    wav = tmp_path / "x.wav"
    sf.write(wav, _test_signal(2, 44_100, 1.0) * 0.5, 44_100)
    m4a = tmp_path / "x.m4a"
    subprocess.run([ffmpeg, "-loglevel", "error", "-i", wav, "-c:a", "aac", "-b:a", "128k", m4a],
                   check=True)
    audio, sr = gaudio.load_audio(m4a)
    assert sr == 44_100 and audio.shape[0] == 2
    assert abs(_dominant_freq(audio[0], sr) - 220) < 1.0
    info = gaudio.audio_info(m4a)
    assert "aac" in info.encoding and info.channels == 2


def test_m4a_without_ffmpeg_names_the_fix(tmp_path: Path, monkeypatch) -> None:
    m4a = tmp_path / "song.m4a"
    m4a.write_bytes(b"\0\0\0\x18ftypM4A " + b"\0" * 100)
    monkeypatch.setattr(gaudio.shutil, "which", lambda name: None)
    with pytest.raises(AudioError, match=r"song\.m4a.*ffmpeg.*apt install ffmpeg") as e:
        gaudio.load_audio(m4a)
    assert e.value.kind == "unsupported_format"


def test_error_kinds_and_parts(tmp_path: Path) -> None:
    with pytest.raises(AudioError, match="no such file") as e:
        gaudio.load_audio(tmp_path / "missing.wav")
    assert e.value.kind == "not_found"
    (tmp_path / "a.xyz").write_bytes(b"x")
    with pytest.raises(AudioError, match="unknown audio extension") as e:
        gaudio.load_audio(tmp_path / "a.xyz")
    assert e.value.kind == "unsupported_format"
    (tmp_path / "bad.wav").write_bytes(b"RIFF" + bytes(40))
    with pytest.raises(AudioError, match="not a readable audio file") as e:
        gaudio.load_audio(tmp_path / "bad.wav")
    assert e.value.kind == "bad_input"
    # the parts survive a pickle (the Redis queue's workers), and the worded message too
    err = pickle.loads(pickle.dumps(AudioError("does not apply", kind="bad_option",
                                               option="bit-depth", value="float")))
    assert (type(err), err.kind, err.option, err.value) == (AudioError, "bad_option",
                                                            "bit-depth", "float")
    assert str(err) == "--bit-depth 'float': does not apply"
    assert err.worded(lambda o: f"field {o}") == "field bit-depth 'float': does not apply"
    assert GenreshiftError("plain").kind is None and str(GenreshiftError("plain")) == "plain"
    with pytest.raises(ValueError, match="unknown error kind"):
        GenreshiftError("x", kind="oops")


def test_resample_keeps_frequency_and_level() -> None:
    sr_in, sr_out = 44_100, 22_050
    t = np.arange(sr_in * 2) / sr_in
    x = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
    y = gaudio.resample(x[None], sr_in, sr_out)[0]
    assert y.shape[0] == x.shape[0] // 2
    assert abs(_dominant_freq(y, sr_out) - 1000.0) < 1.0
    core = slice(sr_out // 4, -sr_out // 4)  # away from the filter's edge transients
    level_db = 20 * np.log10(np.sqrt(np.mean(y[core] ** 2)) / np.sqrt(np.mean(x ** 2)))
    assert abs(level_db) < 0.1
    back = gaudio.resample(y[None], sr_out, sr_in)[0]
    assert abs(_dominant_freq(back, sr_in) - 1000.0) < 1.0


def test_resample_removes_content_above_new_nyquist() -> None:
    sr = 44_100
    t = np.arange(sr) / sr
    x = (0.5 * np.sin(2 * np.pi * 15_000 * t)).astype(np.float32)  # above 11 025 Hz
    y = gaudio.resample(x[None], sr, 22_050)[0]
    assert np.sqrt(np.mean(y[2000:-2000] ** 2)) < 1e-3  # aliasing would leave it loud


@pytest.mark.parametrize("fmt,bit_depth,subtype", [
    ("wav", None, "PCM_16"), ("wav", "16", "PCM_16"), ("wav", "24", "PCM_24"),
    ("wav", "float", "FLOAT"), ("flac", None, "PCM_16"), ("flac", "24", "PCM_24"),
    ("ogg", None, "VORBIS"), ("mp3", None, "MPEG_LAYER_III"),
])
def test_save_formats_read_back(tmp_path: Path, fmt: str, bit_depth, subtype: str) -> None:
    sr = 44_100
    x = (_test_signal(2, sr, 1.0) * 0.5).T.astype(np.float32)
    path = gaudio.save_audio(tmp_path / f"out.{fmt}", x, sr, bit_depth=bit_depth)
    info = sf.info(path)
    assert info.subtype == subtype and info.channels == 2 and info.samplerate == sr
    y, _ = gaudio.load_audio(path)
    if fmt in ("wav", "flac"):
        np.testing.assert_allclose(y, x, atol=1 / 16384)
    else:
        assert abs(_dominant_freq(y[1], sr) - 330) < 1.0
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left


def test_save_refuses_existing_and_inputs(tmp_path: Path) -> None:
    x = np.zeros((1, 1000), np.float32)
    target = gaudio.save_audio(tmp_path / "a.wav", x, 8000)
    with pytest.raises(AudioError, match="already exists.*--force"):
        gaudio.save_audio(target, x, 8000)
    gaudio.save_audio(target, x + 0.1, 8000, force=True)
    assert np.allclose(gaudio.load_audio(target)[0], 0.1, atol=1e-4)
    with pytest.raises(AudioError, match="overwrite an input"):
        gaudio.save_audio(target, x, 8000, force=True, protect=(target,))


def test_save_bad_requests(tmp_path: Path) -> None:
    x = np.zeros((1, 1000), np.float32)
    with pytest.raises(AudioError, match="--bit-depth 'float': does not apply to flac") as e:
        gaudio.save_audio(tmp_path / "a.flac", x, 8000, bit_depth="float")
    assert (e.value.kind, e.value.option) == ("bad_option", "bit-depth")
    with pytest.raises(AudioError, match="--bit-depth '24': does not apply to mp3"):
        gaudio.save_audio(tmp_path / "a.mp3", x, 8000, bit_depth="24")
    with pytest.raises(AudioError, match="extension '.xyz'"):
        gaudio.save_audio(tmp_path / "a.xyz", x, 8000)
    with pytest.raises(AudioError, match="does not exist"):
        gaudio.save_audio(tmp_path / "missing" / "a.wav", x, 8000)
    assert list(tmp_path.iterdir()) == []


def test_lossy_above_48k_is_resampled(tmp_path: Path) -> None:
    x = (_test_signal(1, 96_000, 0.5) * 0.5).T.astype(np.float32)
    path = gaudio.save_audio(tmp_path / "hi.mp3", x, 96_000)
    assert sf.info(path).samplerate == 48_000


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    def boom(*a, **k):
        raise RuntimeError("Error opening: unsupported")

    monkeypatch.setattr(gaudio.sf, "SoundFile", boom)
    with pytest.raises(AudioError, match="could not write wav") as e:
        gaudio.save_audio(tmp_path / "a.wav", np.zeros((1, 100), np.float32), 8000)
    assert e.value.kind == "output"
    assert list(tmp_path.iterdir()) == []


def _full_disk(monkeypatch) -> None:
    """The disk fills up: every write(2) to a file fails with ENOSPC."""
    real = os.write

    def write(fd, data):
        if fd > 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)


@pytest.mark.parametrize("name", ["a.wav", "a.flac", "a.mp3"])
def test_disk_full_names_path_and_cause(tmp_path: Path, monkeypatch, name: str) -> None:
    (tmp_path / "old").mkdir()
    target = tmp_path / "old" / name
    x = (_test_signal(1, 22_050, 0.5) * 0.5).T.astype(np.float32)
    gaudio.save_audio(target, x, 22_050)
    before = target.read_bytes()
    _full_disk(monkeypatch)
    with pytest.raises(AudioError) as e:
        gaudio.save_audio(target, x * 0.5, 22_050, force=True)
    assert str(e.value).startswith(f"{target}: cannot write it (no space left on device)")
    assert "free some space" in str(e.value) and e.value.kind == "output"
    # no temporary file, no partial output: the old file is intact
    assert [p.name for p in target.parent.iterdir()] == [name]
    assert target.read_bytes() == before


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE, SIGXFSZ")
def test_a_real_write_failure_keeps_its_cause(tmp_path: Path) -> None:
    """write(2) refusing for real (a file-size limit on the process: EFBIG), through
    libsndfile, comes out as the OS's cause, not libsndfile's "System error."."""
    import resource
    import signal

    x = np.zeros((2, 100_000), np.float32)  # 400 kB of 16-bit WAV
    old = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, old[1]))
    try:
        with pytest.raises(AudioError, match=r"big\.wav: cannot write it \(file too large\)"):
            gaudio.save_audio(tmp_path / "big.wav", x, 44_100)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old)
        signal.signal(signal.SIGXFSZ, handler)
    assert list(tmp_path.iterdir()) == []


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder that refuses new files even to root: /sys (sysfs), else a read-only folder
    where chmod binds (not root); skips where neither is available."""
    import tempfile

    try:
        fd, name = tempfile.mkstemp(dir="/sys")
    except PermissionError:
        return Path("/sys")
    except OSError:
        pass
    else:
        os.close(fd)
        os.unlink(name)
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        folder = tmp_path / "locked"
        folder.mkdir(mode=0o500)
        return folder
    pytest.skip("no folder here refuses files to root")


def test_permission_denied_names_path_and_cause(tmp_path: Path) -> None:
    folder = _unwritable_folder(tmp_path)
    target = folder / "genreshift-test.wav"
    with pytest.raises(AudioError, match=r"cannot write it \(permission denied\)") as e:
        gaudio.save_audio(target, np.zeros((1, 100), np.float32), 8000)
    assert str(e.value).startswith(str(target)) and e.value.kind == "output"
    with pytest.raises(AudioError, match=r"\(permission denied\)"):
        gaudio.check_output_dir(target)
    assert not target.exists()


def test_check_output_dir(tmp_path: Path, monkeypatch) -> None:
    gaudio.check_output_dir(tmp_path / "out.wav")
    assert list(tmp_path.iterdir()) == []  # the probe is gone
    with pytest.raises(AudioError, match=r"folder .*missing does not exist; create it") as e:
        gaudio.check_output_dir(tmp_path / "missing" / "out.wav")
    assert e.value.kind == "output"
    (tmp_path / "notes.txt").write_text("a file")
    with pytest.raises(AudioError, match=r"notes\.txt is a file, not a folder"):
        gaudio.check_output_dir(tmp_path / "notes.txt" / "out.wav")
    with pytest.raises(AudioError, match="is a directory"):
        gaudio.check_output_dir(tmp_path)
    if sys.platform.startswith("linux"):  # procfs makes no files, even for root
        with pytest.raises(AudioError, match=r"^/proc/genreshift-test\.wav: cannot write it"):
            gaudio.check_output_dir(Path("/proc/genreshift-test.wav"))
    _full_disk(monkeypatch)
    with pytest.raises(AudioError, match=r"out\.wav: cannot write it \(no space left"):
        gaudio.check_output_dir(tmp_path / "out.wav")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize("fmt,subtype,out_fmt,expected", [
    ("WAV", "PCM_24", "wav", "24"), ("WAV", "PCM_24", "flac", "24"),
    ("WAV", "PCM_24", "mp3", None), ("WAV", "PCM_16", "wav", "16"),
    ("WAV", "PCM_U8", "wav", "16"), ("WAV", "PCM_32", "wav", "24"),
    ("WAV", "FLOAT", "wav", "float"), ("WAV", "DOUBLE", "wav", "float"),
    ("WAV", "FLOAT", "flac", "24"), ("WAV", "FLOAT", "ogg", None),
    ("FLAC", "PCM_24", "wav", "24"), ("FLAC", "PCM_16", "flac", "16"),
    ("MP3", "MPEG_LAYER_III", "wav", None),
])
def test_source_bit_depth(tmp_path: Path, fmt: str, subtype: str, out_fmt: str,
                          expected) -> None:
    src = tmp_path / f"in.{fmt.lower()}"
    sf.write(src, _test_signal(1, 22_050, 0.05) * 0.5, 22_050, format=fmt, subtype=subtype)
    depth = gaudio.source_bit_depth(src, out_fmt)
    assert depth == expected
    # what it returns is what save_audio takes, and keeps the input's encoding
    out = gaudio.save_audio(tmp_path / f"out.{out_fmt}", gaudio.load_audio(src)[0], 22_050,
                            bit_depth=depth)
    if subtype in ("PCM_24", "FLOAT", "PCM_16") and out_fmt == fmt.lower():
        assert sf.info(out).subtype == subtype


def test_source_bit_depth_through_ffmpeg(tmp_path: Path) -> None:
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "ffmpeg is installed by `make install`; this test needs it"
    wav = tmp_path / "x.wav"
    sf.write(wav, _test_signal(2, 44_100, 0.1) * 0.5, 44_100, subtype="PCM_24")
    for codec, name, expected in (("alac", "lossless.m4a", "24"), ("aac", "lossy.m4a", None)):
        subprocess.run([ffmpeg, "-loglevel", "error", "-i", wav, "-c:a", codec,
                        tmp_path / name], check=True)
        assert gaudio.source_bit_depth(tmp_path / name, "flac") == expected, codec


def test_source_bit_depth_of_unreadable_input(tmp_path: Path) -> None:
    assert gaudio.source_bit_depth(tmp_path / "missing.wav", "wav") is None
    (tmp_path / "text.wav").write_text("not audio")
    assert gaudio.source_bit_depth(tmp_path / "text.wav", "flac") is None
    with pytest.raises(AudioError, match="unknown output format") as e:
        gaudio.source_bit_depth(tmp_path / "text.wav", "aiff")
    assert e.value.kind == "bad_option"


def _cut(path: Path, n_bytes: int) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:-n_bytes])


@pytest.mark.parametrize("fmt", ["WAV", "RF64"])
def test_truncated_wav_is_reported(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / "cut.wav"
    sf.write(path, _test_signal(1, 8000, 1.0) * 0.5, 8000, format=fmt, subtype="PCM_16")
    assert gaudio.truncation_warning(path) is None  # complete
    _cut(path, 4000)  # 16 000 bytes of data -> 12 000: 0.75 s of the 1 s
    warning = gaudio.truncation_warning(path)
    assert warning is not None and warning.startswith(f"{path}: the file is cut short")
    assert "holds 0.75 s of audio" in warning and "header promises 1.00 s" in warning
    audio, sr = gaudio.load_audio(path)  # the loader reads what is there, as the warning says
    assert audio.shape[1] / sr == 0.75


def test_truncation_warning_ignores_others(tmp_path: Path) -> None:
    x = _test_signal(2, 8000, 61.0) * 0.5
    wav = tmp_path / "long.wav"
    sf.write(wav, x, 8000, subtype="PCM_24")
    assert gaudio.truncation_warning(wav) is None
    _cut(wav, 8000 * 6 * 2)  # two seconds of 24-bit stereo
    assert ("holds 59.00 s of audio, but its header promises 1:01.00 min"
            in gaudio.truncation_warning(wav))
    flac = tmp_path / "x.flac"
    sf.write(flac, x[:1000], 8000)
    _cut(flac, 100)
    assert gaudio.truncation_warning(flac) is None  # not a WAV
    (tmp_path / "text.wav").write_text("not audio at all")
    assert gaudio.truncation_warning(tmp_path / "text.wav") is None
    assert gaudio.truncation_warning(tmp_path / "missing.wav") is None
    # a WAV streamed to a pipe states no length (0xFFFFFFFF): nothing was promised
    streamed = bytearray((tmp_path / "long.wav").read_bytes())
    at = streamed.index(b"data") + 4
    streamed[at:at + 4] = b"\xff\xff\xff\xff"
    (tmp_path / "streamed.wav").write_bytes(bytes(streamed))
    assert gaudio.truncation_warning(tmp_path / "streamed.wav") is None


def test_loudness_normalisation_hits_target() -> None:
    sr = 44_100
    x = (_test_signal(2, sr, 3.0) * 0.05).T.astype(np.float32)
    before = gaudio.integrated_loudness(x, sr)
    y = gaudio.normalize_loudness(x, sr, -23.0)
    assert abs(gaudio.integrated_loudness(y, sr) - (-23.0)) < 0.05
    assert abs(before - (-23.0)) > 3  # it really had to move


def test_limiter_never_clips_and_leaves_quiet_audio_alone() -> None:
    sr = 22_050
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((2, sr * 2)) * 0.1).astype(np.float32)  # peaks ~0.55
    x[:, sr // 2: sr // 2 + 50] *= 25.0  # a burst far over full scale
    ceiling_db = -1.0
    y = gaudio.limit_peaks(x, sr, ceiling_db=ceiling_db)
    assert np.max(np.abs(y)) <= 10 ** (ceiling_db / 20) + 1e-6
    # gain was reduced around the burst only: audio a second away is untouched
    np.testing.assert_array_equal(y[:, int(1.5 * sr):], x[:, int(1.5 * sr):])
    quiet = x * 0.1
    assert np.array_equal(gaudio.limit_peaks(quiet, sr), quiet)


def test_limiter_gain_is_smooth_not_a_hard_clip() -> None:
    sr = 22_050
    t = np.arange(sr) / sr
    x = (1.5 * np.sin(2 * np.pi * 100 * t))[None].astype(np.float32)
    y = gaudio.limit_peaks(x, sr, ceiling_db=-1.0)
    # a hard clipper would flatten the tops of the sine; the limiter scales it as a whole
    core = y[0, 2000:-2000]
    # (a scaled sine spends 9 % of its time within 1 % of its peak; clipped, over half)
    assert np.mean(np.abs(core) > 0.99 * np.max(np.abs(core))) < 0.12


def test_loudness_of_silence_and_short_audio() -> None:
    assert gaudio.integrated_loudness(np.zeros((1, 22_050), np.float32), 22_050) == float("-inf")
    assert np.isnan(gaudio.integrated_loudness(np.ones((1, 100), np.float32), 22_050))


def test_nan_samples_rejected(tmp_path: Path) -> None:
    x = np.zeros((1000, 1), np.float32)
    x[10] = np.nan
    x[20] = np.inf
    sf.write(tmp_path / "nan.wav", x, 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"nan\.wav: holds 2 NaN/infinite"):
        gaudio.load_audio(tmp_path / "nan.wav")


def test_mono_mixdown_and_resample_on_load(tmp_path: Path) -> None:
    x = _test_signal(2, 44_100, 0.5)
    sf.write(tmp_path / "s.wav", x, 44_100, subtype="FLOAT")
    audio, sr = gaudio.load_audio(tmp_path / "s.wav", sr=22_050, mono=True)
    assert sr == 22_050 and audio.shape == (1, x.shape[0] // 2)


# --------------------------------------------------------------------------- loudness, limiter
# audio.py computes BS.1770 loudness and the limiter's running filters on numpy (importing
# pyloudnorm / scipy.ndimage costs about a second per command); these pin them to the
# libraries they replace.


# 11 025 Hz: the 400 ms block is not a whole number of 100 ms steps (the cumulative-sum path)
@pytest.mark.parametrize("sr, channels", [(22_050, 1), (44_100, 2), (48_000, 5), (8_000, 2),
                                          (11_025, 1)])
def test_integrated_loudness_matches_pyloudnorm(sr: int, channels: int,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import pyloudnorm

    # small pieces, so the block-wise K-weighting and the chunked energies really join pieces
    monkeypatch.setattr(gaudio, "_K_BLOCKS", 1)
    monkeypatch.setattr(gaudio, "_ENERGY_CHUNK", 5_000)
    rng = np.random.default_rng(sr + channels)
    x = (rng.standard_normal((channels, int(sr * 3.3))) * 0.1).astype(np.float32)
    x[:, : sr // 2] *= 0.001  # a quiet start, so both gates act
    ref = pyloudnorm.Meter(sr, block_size=0.4).integrated_loudness(x.T.astype(np.float64))
    assert abs(gaudio.integrated_loudness(x, sr) - ref) < 1e-3


@pytest.mark.parametrize("size, origin", [(3749, 1653), (221, 0), (10, -3), (1, 0)])
def test_limiter_filters_match_scipy(size: int, origin: int) -> None:
    import scipy.ndimage

    x = np.abs(np.random.default_rng(size).standard_normal(20_000))
    np.testing.assert_array_equal(
        gaudio._running_min(x, size, origin),
        scipy.ndimage.minimum_filter1d(x, size=size, mode="nearest", origin=origin))
    np.testing.assert_allclose(gaudio._moving_average(x, size),
                               scipy.ndimage.uniform_filter1d(x, size=size, mode="nearest"),
                               rtol=0, atol=1e-10)
