"""Rendering speed of the synthetic corpus, in times real time.

Builds a corpus (default 40 tunes x 5 genres x 30 s, produced: per-track effects, stereo,
reverb/EQ/compression, mastering; ``--dry`` for the plain corpus) in a temporary folder with
``build_synth_corpus`` and reports:

- wall clock: everything ``genreshift data synth`` does (choosing and parsing tunes, starting
  the workers, arranging, rendering, mixing, loudness normalisation, writing WAV + MIDI +
  metadata), as audio seconds per wall second, overall and per worker;
- CPU: audio seconds per CPU second, in the rendering jobs (arrange + render + mix +
  produce or normalise + write) and for the whole build over all processes: the rate of one
  core that has the machine to itself (the corpus must render at >= 50x per core);
- the projection for the issue's target, 500 tunes x 5 genres x 30 s on 2 cores.

The machine is shared, so the load average before and after is printed next to the numbers.

    .venv/bin/python benchmarks/synth_speed.py --tunes 40 --workers 2
    .venv/bin/python benchmarks/synth_speed.py --tunes 4 --workers 1 \
        --genres classical,jazz,rock,electronic,hiphop,metal
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shlex
import sys
import tempfile
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tunes", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--genres", default="classical,jazz,rock,electronic,hiphop")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--soundfont", action="append",
                    help="default: the installed GM fonts (FluidR3_GM, TimGM6mb, sf_GMbank, "
                         "OPL-3_FM_128M)")
    ap.add_argument("--exclude-soundfont", action="append", metavar="NAME")
    ap.add_argument("--dry", action="store_true", help="no production, no variety")
    ap.add_argument("--out", type=Path,
                    help="build the corpus here and keep it (a new folder; default: a "
                         "temporary one, deleted)")
    args = ap.parse_args(argv)
    if args.out is not None and args.out.exists():
        ap.error(f"--out {args.out}: already exists; give a new folder")

    from genreshift.data.synth import build_synth_corpus

    command = "python benchmarks/synth_speed.py " + shlex.join(argv or sys.argv[1:])
    load_before = os.getloadavg()
    usage0 = [resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                   resource.RUSAGE_CHILDREN)]
    with tempfile.TemporaryDirectory(prefix="synth-speed-") as tmp:
        s = build_synth_corpus(args.out or Path(tmp) / "corpus", args.genres, args.tunes,
                               args.seconds, soundfonts=args.soundfont, seed=args.seed,
                               workers=args.workers, progress=False,
                               exclude=args.exclude_soundfont, production=not args.dry,
                               variety=not args.dry)
    # the worker processes have exited and been reaped: RUSAGE_CHILDREN holds their time
    usage1 = [resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                   resource.RUSAGE_CHILDREN)]
    total_cpu = sum(u1.ru_utime + u1.ru_stime - u0.ru_utime - u0.ru_stime
                    for u0, u1 in zip(usage0, usage1))
    load_after = os.getloadavg()

    wall_x = s["audio_seconds"] / s["wall_seconds"]
    cpu_x = s["audio_seconds"] / s["cpu_seconds"]
    target_audio = 500 * 5 * 30.0
    print(f"Command: `{command}`  ")
    print(f"Machine: {platform.machine()} {os.cpu_count()}-core CPU (shared), Python "
          f"{platform.python_version()}; load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after  ")
    print(f"Corpus: {s['tunes']} tunes x {len(s['genres'])} genres x {args.seconds:g} s = "
          f"{s['renderings']} clips, {s['audio_seconds'] / 60:.1f} min of audio, 22 050 Hz "
          f"{'stereo, produced' if s['production'] else 'mono, dry'}; SoundFonts "
          f"{', '.join(Path(f).name for f in s['soundfonts'])}; drum kits "
          f"{', '.join(Path(f).name for f in s['drumkits']) or 'the fonts own'}\n")
    print("| measure | value |")
    print("|---|---|")
    print(f"| wall clock, whole build on {s['workers']} workers | {s['wall_seconds']:.1f} s |")
    print(f"| real-time factor, whole build | {wall_x:.0f}x |")
    print(f"| real-time factor per worker (wall) | {wall_x / s['workers']:.0f}x |")
    print(f"| CPU time in rendering jobs (arrange, render, mix, normalise, write) | "
          f"{s['cpu_seconds']:.1f} s |")
    print(f"| real-time factor per core, rendering jobs (CPU time) | {cpu_x:.0f}x |")
    print(f"| target >= 50x per core (rendering jobs) | {'met' if cpu_x >= 50 else 'MISSED'} |")
    print(f"| CPU time of the whole build, all processes (incl. parsing tunes, worker "
          f"start-up) | {total_cpu:.1f} s |")
    print(f"| real-time factor per core, whole build (CPU time) | "
          f"{s['audio_seconds'] / total_cpu:.0f}x |")
    print(f"| 500 tunes x 5 genres x 30 s at the measured wall rate | "
          f"{target_audio / wall_x / 60:.1f} min |")
    print(f"| same, at the whole-build CPU rate on 2 otherwise idle cores | "
          f"{target_audio / (2 * s['audio_seconds'] / total_cpu) / 60:.1f} min |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
