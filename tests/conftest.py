"""Shared test helpers: signals generated in the tests, and the CLI run as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def music_like(seconds: float = 3.0, sr: int = 22_050, seed: int = 0) -> np.ndarray:
    """A mono float32 signal with the ingredients of music: harmonic chords that change, a
    plucked envelope, and noise-burst percussion. Shape [samples]."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sr)
    t = np.arange(n) / sr
    out = np.zeros(n)
    beat = 0.5
    for k, start in enumerate(np.arange(0.0, seconds, beat)):
        i0 = int(start * sr)
        seg = t[i0:] - start
        env = np.exp(-seg * 4.0)
        root = 110.0 * 2 ** (rng.integers(0, 12) / 12)
        for ratio in (1.0, 1.25, 1.5):
            for h in range(1, 8):
                out[i0:] += env * 0.08 / h * np.sin(2 * np.pi * root * ratio * h * seg)
        if k % 2 == 1:  # snare-like burst on the off-beat
            m = min(n - i0, int(0.08 * sr))
            out[i0:i0 + m] += rng.standard_normal(m) * 0.2 * np.exp(-np.arange(m) / (0.02 * sr))
    return (out / np.max(np.abs(out)) * 0.5).astype(np.float32)


def run_cli(*args: str | os.PathLike, user: str | None = None, cwd: Path | None = None
            ) -> subprocess.CompletedProcess:
    """Run `python -m genreshift ARGS` as a separate process; optionally as another user."""
    cmd = [sys.executable, "-m", "genreshift", *map(str, args)]
    if user is not None:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd or ROOT, env=env,
                          timeout=300)


@pytest.fixture
def music_wav(tmp_path: Path) -> Path:
    import soundfile as sf

    path = tmp_path / "music.wav"
    sf.write(path, music_like(), 22_050, subtype="PCM_16")
    return path
