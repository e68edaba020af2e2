"""How long GTZAN-sized input takes to become mel shards (target: <= 3 minutes on 2 cores).

Generates 1000 clips of 30 s (22 050 Hz mono 16-bit WAV, GTZAN's layout genres/<genre>/
<genre>.000NN.wav) of music-like signals, then times ``build_tensors`` on them: a fresh build,
a rerun on the finished folder (everything reused), and the read speed of ``MelWindows``.

    .venv/bin/python benchmarks/tensors_speed.py [--dir /tmp/genreshift-bench] [--workers K]

The input and output go to --dir (outside the repository; ~1.3 GB + ~0.7 GB), removed at the end
unless --keep. The split is random so that all 1000 clips are processed (the fault-filtered split
would use only its 930 listed clips). Prints a Markdown block for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from genreshift.data.gtzan import GTZAN_GENRES
from genreshift.data.tensors import build_tensors, default_workers
from genreshift.data.windows import MelWindows
from genreshift.spectral import MelConfig

SR = 22_050
MARKER = ".genreshift-tensors-bench"  # marks a --dir this script made and may delete


def _note_bank(rng: np.random.Generator, seconds: float, brightness: float) -> np.ndarray:
    """[24, n] plucked harmonic notes over two octaves, decaying; timbre set by brightness."""
    n = int(seconds * SR)
    t = np.arange(n) / SR
    env = np.exp(-t * rng.uniform(2.0, 6.0))
    bank = np.zeros((24, n), dtype=np.float32)
    for k in range(24):
        f0 = 110.0 * 2 ** (k / 12)
        for h in range(1, 9):
            if f0 * h < SR / 2:
                bank[k] += (env * brightness ** (h - 1) / h * np.sin(2 * np.pi * f0 * h * t)
                            ).astype(np.float32)
    return bank


def music_clip(rng: np.random.Generator, genre_idx: int, seconds: float) -> np.ndarray:
    """A 30 s music-like float32 signal: notes on a beat grid, chords, noise-burst drums.

    Built from a small note bank by indexing, so 1000 clips take seconds, not minutes. Tempo and
    timbre depend on the genre so that the genres differ audibly, as in real data.
    """
    beat = 60.0 / (70 + 12 * genre_idx + rng.uniform(-5, 5))
    bank = _note_bank(rng, beat, brightness=0.3 + 0.06 * genre_idx)
    n_beats = int(np.ceil(seconds / beat))
    roots = rng.integers(0, 12, size=n_beats)
    # a root and a third/fifth above it per beat, as a chord
    chords = bank[roots] + 0.6 * bank[roots + rng.choice([3, 4], size=n_beats)] \
        + 0.5 * bank[np.minimum(roots + 7, 23)]
    signal = chords.reshape(-1)[: int(seconds * SR)].copy()
    burst = int(0.06 * SR)
    decay = np.exp(-np.arange(burst) / (0.015 * SR)).astype(np.float32)
    step = bank.shape[1]
    for b in range(0, n_beats, 2 if genre_idx % 2 else 1):  # drums every beat or every other
        i0 = b * step
        if i0 + burst <= signal.size:
            signal[i0:i0 + burst] += rng.standard_normal(burst).astype(np.float32) * decay * 0.8
    signal += rng.standard_normal(signal.size).astype(np.float32) * 0.003
    return (signal / np.max(np.abs(signal)) * 0.7).astype(np.float32)


def make_gtzan(root: Path, clips: int, seconds: float, seed: int = 0) -> Path:
    """Write ``clips`` WAVs in GTZAN's layout under ``root``/genres; returns that folder."""
    rng = np.random.default_rng(seed)
    genres_dir = root / "genres"
    per_genre = int(np.ceil(clips / len(GTZAN_GENRES)))
    written = 0
    for g_idx, genre in enumerate(GTZAN_GENRES):
        (genres_dir / genre).mkdir(parents=True, exist_ok=True)
        for k in range(per_genre):
            if written == clips:
                break
            sf.write(genres_dir / genre / f"{genre}.{k:05d}.wav",
                     music_clip(rng, g_idx, seconds), SR, subtype="PCM_16")
            written += 1
    return genres_dir


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/genreshift-bench"))
    ap.add_argument("--clips", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--hop", type=int, default=None, help="STFT hop (default: MelConfig's)")
    ap.add_argument("--keep", action="store_true", help="keep the generated input and output")
    ap.add_argument("--reuse-input", action="store_true",
                    help="use the input a previous --keep run left in --dir (same --clips)")
    args = ap.parse_args()
    workers = args.workers or default_workers()
    cfg = MelConfig() if args.hop is None else MelConfig(hop_length=args.hop)
    # --dir is deleted at the end: refuse a folder this script did not make (a typo such as
    # --dir /tmp must not wipe other people's files).
    marker = args.dir / MARKER
    if args.dir.exists() and any(args.dir.iterdir()) and not marker.is_file():
        print(f"error: {args.dir} exists and was not made by this benchmark; give a new --dir",
              file=sys.stderr)
        return 1
    args.dir.mkdir(parents=True, exist_ok=True)
    marker.touch()
    src_root, out = args.dir / "gtzan", args.dir / "mel"
    shutil.rmtree(out, ignore_errors=True)  # always a fresh build
    have = len(list(src_root.rglob("*.wav"))) if src_root.is_dir() else 0
    if args.reuse_input and have == args.clips:
        print(f"reusing the {have} clips in {src_root}", flush=True)
    else:
        shutil.rmtree(src_root, ignore_errors=True)
        t0 = time.perf_counter()
        make_gtzan(src_root, args.clips, args.seconds)
        print(f"generated {args.clips} x {args.seconds:g} s in {time.perf_counter() - t0:.1f} s",
              flush=True)
    src_root = src_root / "genres"
    size_gb = sum(p.stat().st_size for p in src_root.rglob("*.wav")) / 1e9

    load_before = os.getloadavg()
    t0 = time.perf_counter()
    summary = build_tensors(src_root, out, mel_config=cfg, workers=workers, split="random",
                            progress=sys.stderr.isatty())
    t_build = time.perf_counter() - t0
    load_after = os.getloadavg()
    print(f"build: {summary['clips']} clips in {t_build:.1f} s", flush=True)

    t0 = time.perf_counter()
    rerun = build_tensors(src_root, out, mel_config=cfg, workers=workers, split="random",
                          progress=False)
    t_rerun = time.perf_counter() - t0
    assert rerun["decoded"] == 0, rerun

    window = min(128, cfg.frames(int(args.seconds * SR)))  # short --seconds: shorter windows
    ds = MelWindows(out, split="train", frames=window, augment=True)
    n = min(len(ds), 5000)
    order = np.random.default_rng(0).permutation(len(ds))[:n]
    t0 = time.perf_counter()
    for i in order:
        ds[int(i)]
    t_win = time.perf_counter() - t0
    shard_gb = sum(p.stat().st_size for p in (out / "shards").rglob("*.npy")) / 1e9

    cpu = platform.processor() or platform.machine()
    print()
    flags = "".join(f" {a}" for a in sys.argv[1:])
    print(f"- Command: `.venv/bin/python benchmarks/tensors_speed.py{flags}` ({args.clips} clips x "
          f"{args.seconds:g} s, GTZAN layout, random split so every clip is processed; mel "
          f"config: hop {cfg.hop_length}, n_fft {cfg.n_fft}, {cfg.n_mels} mels)")
    print(f"- Machine: {os.cpu_count()}-core {cpu} CPU, torch {torch.__version__}, {workers} "
          f"worker processes; load average (1/5/15 min) {load_before[0]:.2f}/"
          f"{load_before[1]:.2f}/{load_before[2]:.2f} before, {load_after[0]:.2f}/"
          f"{load_after[1]:.2f}/{load_after[2]:.2f} after")
    print(f"- Fresh build: **{t_build:.1f} s** for {summary['clips']} clips "
          f"({summary['clips'] * args.seconds / t_build:.0f}x real time; "
          f"{size_gb:.2f} GB WAV -> {shard_gb:.2f} GB float16 shards); target <= 180 s")
    print(f"- Rerun on the finished folder (all {rerun['reused']} clips reused by checksum): "
          f"{t_rerun:.1f} s")
    print(f"- MelWindows reads ({window}-frame windows, augment on, random order, warm page "
          "cache): "
          f"{n / t_win:.0f} windows/s in one process")
    if not args.keep:
        shutil.rmtree(args.dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
