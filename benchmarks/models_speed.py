"""Generator designs compared on speed and size (CPU): what `genreshift train cyclegan` ships.

For each candidate generator config:

- parameters of one generator, and the size of a converter inference file (two generators),
  written by the real checkpoint code in float32 and float16;
- forward time for a 30 s clip in one pass (128 mel bands x 1292 frames at the default hop of
  512; x 2584 frames at hop 256), median of ``--repeats`` after a warm-up;
- training speed: the real ``train_step`` (two generators, two PatchGANs, LSGAN + cycle +
  identity, Adam, image pool) on random windows, steps/s and windows/s;
- the genre classifier's time for the same 30 s clip (default hop).

Run: ``.venv/bin/python benchmarks/models_speed.py [--threads 1 2] [--json out.json]``.
The machine's load average is printed before and after: on a shared machine the numbers are
only comparable within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from genreshift.models.classifier import ClassifierConfig, GenreClassifier, classify_clip
from genreshift.models.config import DiscriminatorConfig, GeneratorConfig
from genreshift.models.discriminator import Discriminator
from genreshift.models.generator import Generator, count_parameters
from genreshift.spectral import MelConfig
from genreshift import checkpoint as ckpt
from genreshift.train import runtime as rtm
from genreshift.train.config import TrainConfig
from genreshift.train.cyclegan import ImagePool, State, train_step

CLIP_SAMPLES = 30 * 22_050
HOPS = (MelConfig().hop_length, 256)  # the default first

DEFAULT_CANDIDATE = "212d-16"
CANDIDATES = {  # "212d-16" is GeneratorConfig()'s default
    "212d-8": GeneratorConfig(variant="212d", channels=8, core_channels=128),
    "212d-16": GeneratorConfig(variant="212d", channels=16, core_channels=128),
    "212d-32": GeneratorConfig(variant="212d", channels=32, core_channels=256),
    "2d-16": GeneratorConfig(variant="2d", channels=16),
    "2d-32": GeneratorConfig(variant="2d", channels=32),
}


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def timed(fn, repeats: int) -> float:
    fn()  # warm-up: oneDNN picks its kernels on the first call
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def file_sizes(cfg: GeneratorConfig) -> tuple[int, int]:
    g_ab, g_ba = Generator(cfg), Generator(cfg)
    sizes = []
    with tempfile.TemporaryDirectory() as tmp:
        for half in (False, True):
            path = Path(tmp) / f"c{int(half)}.pt"
            ckpt.save_converter(path, g_ab=g_ab, g_ba=g_ba, config=cfg,
                                mel_config=MelConfig(n_mels=cfg.n_mels),
                                a=ckpt.Domain("rest", ("a",)), b=ckpt.Domain("b", ("b",)),
                                provenance=ckpt.provenance("benchmark", 0), half=half)
            sizes.append(path.stat().st_size)
    return sizes[0], sizes[1]


def train_speed(cfg: GeneratorConfig, batch: int, frames: int, steps: int) -> float:
    """Seconds per train_step (median over ``steps`` after one warm-up step)."""
    torch.manual_seed(0)
    tcfg = TrainConfig(batch_size=batch, frames=frames, steps=10_000)
    dcfg = DiscriminatorConfig(n_mels=cfg.n_mels)
    g_ab, g_ba = Generator(cfg), Generator(cfg)
    d_a, d_b = Discriminator(dcfg), Discriminator(dcfg)
    opt_g = torch.optim.Adam([*g_ab.parameters(), *g_ba.parameters()], lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam([*d_a.parameters(), *d_b.parameters()], lr=1e-4, betas=(0.5, 0.999))
    lin = rtm.LinearDecay(tcfg.steps, tcfg.decay_start)
    state = State(g_ab=g_ab, g_ba=g_ba, d_a=d_a, d_b=d_b, opt_g=opt_g, opt_d=opt_d,
                  sched_g=torch.optim.lr_scheduler.LambdaLR(opt_g, lin),
                  sched_d=torch.optim.lr_scheduler.LambdaLR(opt_d, lin),
                  pool_a=ImagePool(50, 1), pool_b=ImagePool(50, 2), config=tcfg,
                  device=torch.device("cpu"),
                  precision=rtm.resolve_precision("off", torch.device("cpu")))
    real = (torch.rand(batch, cfg.n_mels, frames) * 2 - 1,
            torch.rand(batch, cfg.n_mels, frames) * 2 - 1)
    train_step(state, real)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        train_step(state, real)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    ap.add_argument("--threads", nargs="+", type=int, default=[torch.get_num_threads()])
    ap.add_argument("--repeats", type=int, default=5, help="timed 30 s forwards per candidate")
    ap.add_argument("--train-steps", type=int, default=5, help="timed training steps")
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--frames", type=int, default=128)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    load_before = load_average()
    results = []
    clips = {hop: torch.rand(1, 128, MelConfig(hop_length=hop).frames(CLIP_SAMPLES)) * 2 - 1
             for hop in HOPS}
    lines = []
    for threads in args.threads:
        torch.set_num_threads(threads)
        for name in args.candidates:
            cfg = CANDIDATES[name]
            g = Generator(cfg).eval()
            fwd = {}
            with torch.inference_mode():
                for hop, clip in clips.items():
                    fwd[hop] = timed(lambda g=g, clip=clip: g(clip), args.repeats)
            step = train_speed(cfg, args.batch_size, args.frames, args.train_steps)
            fp32, fp16 = file_sizes(cfg)
            row = {"candidate": name, "config": cfg.to_dict(), "threads": threads,
                   "params_per_generator": count_parameters(g),
                   "converter_file_mb_fp32": round(fp32 / 2**20, 2),
                   "converter_file_mb_fp16": round(fp16 / 2**20, 2),
                   **{f"forward_30s_hop{hop}_s": round(t, 3) for hop, t in fwd.items()},
                   "train_step_s": round(step, 3), "train_steps_per_s": round(1 / step, 2),
                   "train_windows_per_s": round(2 * args.batch_size / step, 1),
                   "batch_size": args.batch_size, "frames": args.frames,
                   "load_after": load_average()}
            results.append(row)
            default = " (default)" if name == DEFAULT_CANDIDATE else ""
            lines.append(f"| {name}{default} | {threads} | "
                         f"{row['params_per_generator'] / 1e6:.2f} M "
                         f"| {row['converter_file_mb_fp32']} / {row['converter_file_mb_fp16']} MB "
                         "| " + " / ".join(f"{fwd[h]:.3f}" for h in HOPS) + " s "
                         f"| {1 / step:.2f} | {2 * args.batch_size / step:.1f} |")
            print(f"{name} threads {threads} done", file=sys.stderr, flush=True)
        clf = GenreClassifier(replace(ClassifierConfig(), n_classes=10)).eval()
        clip = clips[HOPS[0]][0]
        t_clf = timed(lambda clf=clf, clip=clip: classify_clip(clf, clip), args.repeats)
        results.append({"candidate": "classifier", "threads": threads,
                        "params": count_parameters(clf), "classify_30s_s": round(t_clf, 3)})
        lines.append(f"| classifier (10 genres) | {threads} | {count_parameters(clf) / 1e6:.2f} M "
                     f"| — | {t_clf:.3f} s (hop {HOPS[0]}) | — | — |")
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}; load average {load_before} before, {load_average()} after; "
          f"{args.repeats} timed forwards, {args.train_steps} timed training steps (both "
          f"generators and discriminators, batch {args.batch_size} x {args.frames} frames per "
          "domain)\n")
    print("| generator | torch threads | params per generator | converter file fp32 / fp16 "
          "| 30 s forward, hop " + " / ".join(map(str, HOPS)) + " | train steps/s "
          "| windows/s |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print("\n".join(lines))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
