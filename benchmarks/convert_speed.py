"""Start-up, conversion speed and memory of the CLI, stage by stage.

Measured, on a song made from the bundled example (repeated, resampled to 44.1 kHz, written as
stereo 16-bit WAV, the common case):

1. start-up of commands that do no conversion, each as a new process: `--help`, `info SONG`,
   a parse error, `genres`; median wall time, peak memory, and whether torch was imported;
2. `convert --to` in one process after a warm-up (models loaded once): ``--repeats`` calls of
   pipeline.run, median per stage and of the sum;
3. `convert --to` as a new process (Python start, imports, model loading): median wall time,
   peak memory, torch imported or not;
4. the peak memory of converting a ``--long-seconds`` (3 min) song as a new process.

Conversions run twice: with ``--rhythm keep`` (the converter and reconstruction alone: what
the pipeline's speed goals are about) on the example song, and with the default ``--rhythm
replace`` on a drummed song (a generated rock tune at 110 BPM, benchmarks/rhythm.py's
generator, FluidR3_GM), where the groove is really rendered. The example song has no clear
beat, so replace would only analyse it and then keep it.

Peak memory is the new process's own peak resident set (VmHWM in /proc/self/status). Run:
``.venv/bin/python benchmarks/convert_speed.py [--models checkpoints] [--to jazz]``. The load
average is printed before and after: on a shared machine timings are only comparable within
one run.
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

from genreshift import audio as gaudio
from genreshift.inference import convert as tconv
from genreshift.inference import pipeline

ROOT = Path(__file__).resolve().parents[1]
# Runs the CLI's main() and reports whether torch got imported (the fast path must not) and
# the process's peak resident memory (VmHWM: this program's own, not its parent's before exec).
PROBE = ("import sys; from genreshift.cli import main\n"
         "try:\n    code = main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
         "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1]\n"
         "print('TORCH' if 'torch' in sys.modules else 'NOTORCH', 'HWM', hwm, file=sys.stderr)\n"
         "sys.exit(code)")


def make_song(path: Path, seconds: float) -> None:
    audio, sr = gaudio.load_audio(ROOT / "examples" / "example.flac", mono=True)
    reps = int(np.ceil(seconds * sr / audio.shape[-1]))
    mono = np.tile(audio[0], reps)[: int(seconds * sr)]
    at = gaudio.resample(mono[None], sr, 44_100)[0]
    stereo = np.stack([at, np.roll(at, 441) * 0.8], axis=1)  # a little width
    sf.write(path, stereo, 44_100, subtype="PCM_16")


def make_drummed_song(path: Path, seconds: float) -> None:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from rhythm import generated_song

    mix, _, _ = generated_song("rock", 110.0, seconds, 44_100, seed=5)
    sf.write(path, mix.T, 44_100, subtype="PCM_16")


def run_child(argv: list[str], env: dict) -> tuple[float, float, bool, int, str]:
    """(wall s, peak RSS MB, torch imported, exit code, stderr) of the CLI as a new process."""
    t = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-c", PROBE, *argv], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    err = p.stderr.read()
    p.wait()
    wall = time.perf_counter() - t
    hwm = [w for w in err.split("HWM")[-1].split() if w.isdigit()]
    return (wall, int(hwm[0]) / 1024 if hwm else float("nan"), "NOTORCH" not in err,
            p.returncode, err)


def fresh(argv: list[str], repeats: int, env: dict, ok_codes=(0,)
          ) -> tuple[list[float], float, bool]:
    walls, peak, torch_seen = [], 0.0, False
    for _ in range(repeats):
        wall, rss, torch_loaded, code, err = run_child(argv, env)
        if code not in ok_codes:
            raise SystemExit(f"genreshift {' '.join(argv)} exited {code}: {err[-800:]}")
        walls.append(wall)
        peak, torch_seen = max(peak, rss), torch_seen or torch_loaded
    return walls, peak, torch_seen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, default=ROOT / "checkpoints")
    ap.add_argument("--to", default="jazz")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--long-seconds", type=float, default=180.0)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    env = dict(os.environ)
    print(f"{platform.machine()}, {os.cpu_count()} cores; load average before: "
          f"{os.getloadavg()[0]:.2f}\n")
    with tempfile.TemporaryDirectory() as tmp:
        song, long_song = Path(tmp) / "song.wav", Path(tmp) / "long.wav"
        drummed, long_drummed = Path(tmp) / "drummed.wav", Path(tmp) / "long_drummed.wav"
        make_song(song, args.seconds)
        make_song(long_song, args.long_seconds)
        make_drummed_song(drummed, args.seconds)
        make_drummed_song(long_drummed, args.long_seconds)

        print("| command (new process) | median wall (s) | min-max (s) | peak memory (MB) | "
              "imports torch |")
        print("|---|---:|---:|---:|---|")
        r = args.repeats
        for label, argv, codes, n in (
                ("`--help`", ["--help"], (0,), r),
                ("`info SONG`", ["info", str(song)], (0,), r),
                ("parse error (`convert --strength 2`)",
                 ["convert", str(song), "--to", "jazz", "--strength", "2"], (2,), r),
                ("`genres`", ["genres", "--models", str(args.models)], (0,), r),
                (f"`convert --to {args.to} --rhythm keep` ({args.seconds:g} s, 44.1 kHz "
                 "stereo)",
                 ["convert", str(song), "--to", args.to, "--rhythm", "keep", "--models",
                  str(args.models), "-o", str(Path(tmp) / "cli.wav"), "--force", "--quiet"],
                 (0,), r),
                (f"`convert --to {args.to}` (default `--rhythm replace`; {args.seconds:g} s "
                 "drummed, 44.1 kHz stereo)",
                 ["convert", str(drummed), "--to", args.to, "--models", str(args.models), "-o",
                  str(Path(tmp) / "cli.wav"), "--force", "--quiet"], (0,), r),
                (f"`convert --to {args.to} --rhythm keep` ({args.long_seconds:g} s, 44.1 kHz "
                 "stereo)",
                 ["convert", str(long_song), "--to", args.to, "--rhythm", "keep", "--models",
                  str(args.models), "-o", str(Path(tmp) / "long_out.wav"), "--force",
                  "--quiet"], (0,), 1),
                (f"`convert --to {args.to}` ({args.long_seconds:g} s drummed, 44.1 kHz "
                 "stereo)",
                 ["convert", str(long_drummed), "--to", args.to, "--models", str(args.models),
                  "-o", str(Path(tmp) / "long_out.wav"), "--force", "--quiet"], (0,), 1)):
            walls, peak, torch_seen = fresh(argv, n, env, codes)
            print(f"| {label} | {statistics.median(walls):.2f} | {min(walls):.2f}-"
                  f"{max(walls):.2f} | {peak:.0f} | {'yes' if torch_seen else 'no'} |")

        models = tconv.scan_models(args.models)
        cache = tconv.ModelCache("cpu")
        print(f"\nIn one process, {args.seconds:g} s 44.1 kHz stereo -> {args.to}, median of "
              f"{args.repeats} (models loaded once), seconds per stage:\n")
        head = False
        for label, path, rhythm in (("`--rhythm keep`, example song", song, "keep"),
                                    ("`--rhythm replace` (default), drummed song", drummed,
                                     "replace")):
            settings = tconv.TrainedSettings(targets=tuple(tconv.parse_targets(args.to)),
                                             rhythm=rhythm)
            runs = []
            for i in range(args.repeats + 1):
                request = pipeline.Request(path, pipeline.OutputOptions(Path(tmp) / "out.wav",
                                                                        force=True), settings,
                                           device="cpu")
                s = pipeline.run(request, models=models, cache=cache).summary
                if i:  # the first call loads the models and warms up
                    runs.append(s["timings_s"])
            stage_names = ("load", "models", "mel", "classify", "rhythm", "generator",
                           "reconstruction", "write")
            med = {k: statistics.median(r.get(k, 0.0) for r in runs) for k in stage_names}
            total = statistics.median(sum(r.values()) for r in runs)
            if not head:
                print("| conversion | " + " | ".join(stage_names) + " | load to written file |")
                print("|---|" + "---:|" * (len(stage_names) + 1))
                head = True
            print(f"| {label} | " + " | ".join(f"{med[k]:.3f}" for k in stage_names)
                  + f" | **{total:.2f}** |")
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
