"""Trained-mode conversion speed for a 30 s song, stage by stage, and the CLI's wall time.

The song is the bundled example (12 s) repeated to ``--seconds`` and written as 44.1 kHz
stereo 16-bit WAV, the common case (so resampling both ways is included). Measured:

1. in one process, after a warm-up, ``--repeats`` calls of the library function behind
   `genreshift convert --to` (load, mel, classify, generator, reconstruction, write): median
   per stage and of the sum ("load to written file");
2. ``--repeats`` runs of the CLI itself as a new process (Python start, imports and model
   loading included): median wall time.

Run: ``.venv/bin/python benchmarks/convert_speed.py [--models checkpoints] [--to jazz]
[--threads 2]``. The load average is printed before and after: on a shared machine timings
are only comparable within one run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from genreshift import audio as gaudio
from genreshift.inference import convert as tconv

ROOT = Path(__file__).resolve().parents[1]


def make_song(path: Path, seconds: float) -> None:
    audio, sr = gaudio.load_audio(ROOT / "examples" / "example.flac", mono=True)
    reps = int(np.ceil(seconds * sr / audio.shape[-1]))
    mono = np.tile(audio[0], reps)[: int(seconds * sr)]
    at = gaudio.resample(mono[None], sr, 44_100)[0]
    stereo = np.stack([at, np.roll(at, 441) * 0.8], axis=1)  # a little width
    sf.write(path, stereo, 44_100, subtype="PCM_16")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, default=ROOT / "checkpoints")
    ap.add_argument("--to", default="jazz")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{platform.machine()}, {os.cpu_count()} cores, {args.threads} threads; "
          f"load average before: {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        song = Path(tmp) / "song.wav"
        make_song(song, args.seconds)
        models = tconv.scan_models(args.models)
        settings = tconv.TrainedSettings(targets=tuple(tconv.parse_targets(args.to)))
        cache = tconv.ModelCache(torch.device("cpu"))
        runs = []
        for i in range(args.repeats + 1):
            s = tconv.convert_trained_file(song, Path(tmp) / "out.wav", settings,
                                           models=models, cache=cache, device="cpu",
                                           force=True)
            if i:  # the first call loads the models and warms up
                runs.append(s["timings_s"])
        stages = list(runs[0])
        med = {k: statistics.median(r[k] for r in runs) for k in stages}
        total = statistics.median(sum(r.values()) for r in runs)
        print(f"\n{args.seconds:g} s 44.1 kHz stereo song -> {args.to}, median of "
              f"{args.repeats} (models loaded once):\n")
        print("| " + " | ".join(stages) + " | load to written file |")
        print("|" + "---|" * (len(stages) + 1))
        print("| " + " | ".join(f"{med[k]:.3f}" for k in stages) + f" | **{total:.2f} s** |")
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        walls = []
        for _ in range(args.repeats):
            t = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "genreshift", "convert", str(song), "--to",
                                args.to, "--models", str(args.models), "-o",
                                str(Path(tmp) / "cli.wav"), "--force", "--quiet"],
                               capture_output=True, text=True, env=env, cwd=ROOT)
            walls.append(time.perf_counter() - t)
            if r.returncode:
                raise SystemExit(r.stderr)
        print(f"\nCLI as a new process (Python start, imports, model loading): median "
              f"{statistics.median(walls):.2f} s (min {min(walls):.2f}, max {max(walls):.2f})")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
