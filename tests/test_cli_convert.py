"""`genreshift convert --like` (reference mode) end to end through the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from conftest import music_like, run_cli


def _files(tmp_path: Path) -> tuple[Path, Path]:
    song, ref = tmp_path / "song.wav", tmp_path / "ref.flac"
    stereo = np.stack([music_like(3.0, 44_100, seed=1), music_like(3.0, 44_100, seed=2)], axis=1)
    sf.write(song, stereo, 44_100, subtype="PCM_24")
    noisy = (music_like(2.0, 22_050, seed=5)
             + 0.05 * np.random.default_rng(0).standard_normal(44_100))
    sf.write(ref, noisy.astype(np.float32), 22_050)
    return song, ref


def test_convert_like_writes_stereo_and_is_seeded(tmp_path: Path) -> None:
    song, ref = _files(tmp_path)
    outs = []
    for name in ("a.wav", "b.wav"):
        r = run_cli("convert", song, "--like", ref, "-o", tmp_path / name, "--steps", "5",
                    "--seed", "3", "--quiet")
        assert r.returncode == 0, r.stderr
        outs.append(sf.read(tmp_path / name)[0])
    assert outs[0].shape == (3 * 44_100, 2)  # input's rate, length and channels kept
    np.testing.assert_array_equal(outs[0], outs[1])
    assert sf.info(tmp_path / "a.wav").samplerate == 44_100
    # it really changed the song
    original = sf.read(song)[0]
    assert np.abs(outs[0] - original).mean() > 1e-3


def test_convert_like_bad_references(tmp_path: Path) -> None:
    song, _ = _files(tmp_path)
    short = tmp_path / "short.wav"
    sf.write(short, music_like(0.5), 22_050)
    for ref, phrase in ((short, "1 s"), (tmp_path / "missing.wav", "no such file")):
        r = run_cli("convert", song, "--like", ref, "-o", tmp_path / "out.wav")
        assert r.returncode == 1 and "Traceback" not in r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and ref.name in lines[0] and phrase in lines[0], r.stderr
        assert not (tmp_path / "out.wav").exists()
