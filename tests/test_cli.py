"""The CLI end to end on real files: info, roundtrip, and every kind of bad input."""

from __future__ import annotations

import json
import os
import stat
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from genreshift import audio as gaudio

from conftest import music_like, run_cli


def test_info_reports_every_field(tmp_path: Path) -> None:
    x = np.stack([music_like(2.0, 44_100), music_like(2.0, 44_100, seed=1)], axis=1)
    sf.write(tmp_path / "a.wav", x, 44_100, subtype="PCM_24")
    sf.write(tmp_path / "b.flac", x[:, 0], 44_100, subtype="PCM_16")
    r = run_cli("info", tmp_path / "a.wav", tmp_path / "b.flac")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 2
    assert "WAV PCM_24, 44100 Hz, 2 ch, 2.00 s" in lines[0] and "dBFS" in lines[0]
    assert "FLAC PCM_16" in lines[1] and "LUFS" in lines[1]
    r = run_cli("info", "--json", tmp_path / "a.wav")
    info = json.loads(r.stdout)[0]
    assert info["channels"] == 2 and info["sample_rate"] == 44_100
    expected_peak = 20 * np.log10(np.max(np.abs(x)))
    assert abs(info["peak_dbfs"] - expected_peak) < 0.01
    assert abs(info["loudness_lufs"] - gaudio.integrated_loudness(x.T, 44_100)) < 0.01


def test_info_continues_past_a_bad_file(tmp_path: Path, music_wav: Path) -> None:
    (tmp_path / "bad.wav").write_text("not audio")
    r = run_cli("info", tmp_path / "bad.wav", music_wav)
    assert r.returncode == 1
    assert "music.wav" in r.stdout
    assert r.stderr.count("\n") == 1 and "bad.wav" in r.stderr


def test_roundtrip_keeps_rate_channels_length_and_loudness(tmp_path: Path) -> None:
    x = np.stack([music_like(3.0, 44_100), music_like(3.0, 44_100, seed=1)], axis=1)
    src = tmp_path / "in.wav"
    sf.write(src, x, 44_100, subtype="PCM_24")
    out = tmp_path / "out.flac"
    r = run_cli("roundtrip", src, "-o", out, "--bit-depth", "24", "--json")
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert set(summary["timings_s"]) == {"load", "mel", "reconstruction", "write"}
    y, sr = gaudio.load_audio(out)
    assert sr == 44_100 and y.shape == (2, x.shape[0])
    assert sf.info(out).subtype == "PCM_24"
    assert abs(gaudio.integrated_loudness(y, sr) - gaudio.integrated_loudness(x.T, sr)) < 0.5
    assert gaudio.peak_dbfs(y) <= -1.0 + 1e-3
    # the content survives: the channels stay distinguishable and in time with the input
    def envelope(sig: np.ndarray) -> np.ndarray:  # RMS per 50 ms
        frames = sig[: len(sig) // 2205 * 2205].reshape(-1, 2205)
        return np.sqrt((frames ** 2).mean(axis=1))

    for c in range(2):
        assert np.corrcoef(envelope(x[:, c]), envelope(y[c]))[0, 1] > 0.9


def test_roundtrip_mono_and_sr_options(tmp_path: Path) -> None:
    x = np.stack([music_like(2.0, 44_100)] * 2, axis=1)
    src = tmp_path / "in.wav"
    sf.write(src, x, 44_100)
    r = run_cli("roundtrip", src, "-o", tmp_path / "o.wav", "--mono", "--sr", "48000",
                "--quiet")
    assert r.returncode == 0 and r.stdout == "", r.stderr
    info = sf.info(tmp_path / "o.wav")
    assert info.channels == 1 and info.samplerate == 48_000


def test_roundtrip_refuses_existing_output_and_input_overwrite(tmp_path: Path,
                                                               music_wav: Path) -> None:
    out = tmp_path / "o.wav"
    out.write_bytes(b"keep me")
    r = run_cli("roundtrip", music_wav, "-o", out)
    assert r.returncode == 1 and "--force" in r.stderr
    assert out.read_bytes() == b"keep me"
    before = music_wav.read_bytes()
    r = run_cli("roundtrip", music_wav, "-o", music_wav, "--force")
    assert r.returncode == 1 and "input" in r.stderr
    assert music_wav.read_bytes() == before


def _wav_bytes(x: np.ndarray, sr: int = 22_050, subtype: str = "PCM_16") -> bytes:
    import io

    buf = io.BytesIO()
    sf.write(buf, x, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def _make_bad_inputs(d: Path) -> dict[str, tuple[Path, str]]:
    """name -> (path, a phrase the one-line error must contain)."""
    good = _wav_bytes(music_like(1.0))
    nan = music_like(1.0)
    nan[100] = np.nan
    cases: dict[str, tuple[Path, str]] = {}

    def put(name: str, data: bytes, phrase: str) -> None:
        p = d / name
        p.write_bytes(data)
        cases[name] = (p, phrase)

    put("empty.wav", b"", "empty")
    put("truncated_header.wav", good[:30], "not a readable audio file")
    put("text.wav", b"this is a text file, not audio\n" * 20, "not a readable audio file")
    put("nan.wav", _wav_bytes(nan, subtype="FLOAT"), "NaN")
    put("zero_samples.wav", _wav_bytes(np.zeros(0, np.float32)), "no samples")
    put("ten_ms.wav", _wav_bytes(music_like(1.0)[:220]), "too short")
    put("silent.wav", _wav_bytes(np.zeros(22_050, np.float32)), "silent")
    put("unknown.xyz", good, "unknown audio extension")
    folder = d / "a_folder.wav"
    folder.mkdir()
    cases["a_folder.wav"] = (folder, "directory")
    return cases


@pytest.mark.parametrize("case", ["empty.wav", "truncated_header.wav", "text.wav", "nan.wav",
                                  "zero_samples.wav", "ten_ms.wav", "silent.wav", "unknown.xyz",
                                  "a_folder.wav", "missing.wav"])
def test_bad_input_one_line_no_traceback_no_output(tmp_path: Path, case: str) -> None:
    cases = _make_bad_inputs(tmp_path)
    cases["missing.wav"] = (tmp_path / "missing.wav", "no such file")
    path, phrase = cases[case]
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    r = run_cli("roundtrip", path, "-o", out_dir / "result.wav")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert str(path) in lines[0] and phrase in lines[0]
    assert list(out_dir.iterdir()) == []  # no output, no temp file


def test_unreadable_file(music_wav: Path) -> None:
    # Root reads any file whatever its mode, so as root the CLI runs as 'nobody'.
    d = Path(tempfile.mkdtemp(prefix="genreshift-perm-"))
    try:
        d.chmod(0o777)
        src = d / "locked.wav"
        src.write_bytes(music_wav.read_bytes())
        src.chmod(0)
        user = "65534" if os.geteuid() == 0 else None
        r = run_cli("roundtrip", src, "-o", d / "o.wav", user=user, cwd=d)
        assert r.returncode == 1 and "Traceback" not in r.stderr
        assert r.stderr.count("\n") == 1 and "locked.wav" in r.stderr
        assert "permission" in r.stderr.lower() or "cannot open" in r.stderr
        assert not (d / "o.wav").exists()
    finally:
        (d / "locked.wav").chmod(stat.S_IRUSR | stat.S_IWUSR)
        for p in d.iterdir():
            p.unlink()
        d.rmdir()


def test_bad_option_values(tmp_path: Path, music_wav: Path) -> None:
    r = run_cli("roundtrip", music_wav, "-o", tmp_path / "o.flac", "--bit-depth", "float")
    assert r.returncode == 1 and "does not apply to flac" in r.stderr
    r = run_cli("roundtrip", music_wav, "-o", tmp_path / "o.wav", "--sr", "100")
    assert r.returncode == 1 and "--sr" in r.stderr
    r = run_cli("roundtrip", music_wav, "-o", tmp_path / "o.txt")
    assert r.returncode == 1 and "extension" in r.stderr
    r = run_cli("roundtrip", music_wav, "-o", tmp_path / "o.wav", "--iters", "-3")
    assert r.returncode == 1 and "iterations" in r.stderr
    assert list(p.name for p in tmp_path.iterdir()) == ["music.wav"]


def test_module_and_console_script_agree() -> None:
    r = run_cli("--version")
    assert r.returncode == 0 and r.stdout.startswith("genreshift ")
