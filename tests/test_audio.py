"""Audio I/O: every encoding, rate and layout loads right; writes are atomic and safe."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genreshift import audio as gaudio
from genreshift.errors import AudioError

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
    with pytest.raises(AudioError, match=r"song\.m4a.*ffmpeg.*apt install ffmpeg"):
        gaudio.load_audio(m4a)


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
    with pytest.raises(AudioError, match="bit depth 'float' does not apply to flac"):
        gaudio.save_audio(tmp_path / "a.flac", x, 8000, bit_depth="float")
    with pytest.raises(AudioError, match="bit depth '24' does not apply to mp3"):
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
        raise RuntimeError("disk full")

    monkeypatch.setattr(gaudio.sf, "write", boom)
    with pytest.raises(AudioError, match="could not write"):
        gaudio.save_audio(tmp_path / "a.wav", np.zeros((1, 100), np.float32), 8000)
    assert list(tmp_path.iterdir()) == []


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
