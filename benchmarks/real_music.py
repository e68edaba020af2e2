"""Trained and reference mode on real recordings, judged by the independent kit in
../shared/judge (musicnn tags, chroma + basic-pitch content), and the classifier's source
detection on the same clips. Prints Markdown.

    .venv/bin/python benchmarks/real_music.py                        # the shipped models
    .venv/bin/python benchmarks/real_music.py --models DIR --label today --modes to
    .venv/bin/python benchmarks/real_music.py --modes to --variant "to:--rhythm keep"

The clips (../shared/realmusic) are a test set: this script only measures. The judge runs in
its own environment (`bash ../shared/judge/setup.sh` builds /tmp/judge_venv); without it the
script says so and exits 0, so run_all can report the section as not run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DEFAULT_JUDGE = "/tmp/judge_venv/bin/python"  # what `bash ../shared/judge/setup.sh` builds
# The clips' style families (MANIFEST.tsv) -> the classifier genres that count as right.
FAMILY_GENRES = {"classical/orchestral": {"classical"}, "rock/metal": {"rock", "metal"},
                 "electronic/dance": {"electronic"}, "jazz/blues/lounge": {"jazz", "blues"},
                 "hip-hop/funk": {"hiphop"}, "folk/country": {"country"}}


def judge_missing(judge: str) -> str | None:
    """Why the real-music judge cannot run, in words (None when it can). Shared with
    ablation.py, so that both sections say the same."""
    if os.access(judge, os.X_OK):
        return None
    return (f"no judge environment at {judge}; build it with `bash ../shared/judge/setup.sh` "
            "and run this section again")


def parse_variant(text: str) -> tuple[str, str]:
    """'MODE:OPTIONS' -> (mode, convert options), e.g. 'to:--rhythm keep'."""
    mode, sep, options = text.partition(":")
    if mode not in ("to", "like") or not sep or not options.strip():
        raise SystemExit(f"--variant {text!r}: give MODE:OPTIONS with MODE to or like, e.g. "
                         "'to:--rhythm keep'")
    return mode, options.strip()


def judge_runs(args: argparse.Namespace) -> list[str]:
    lines = ["| models | mode | convert options | targets | conversions | target up | "
             "target in top 2 | median content | wall (s) |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    runs = [(m, "") for m in args.modes.split(",") if m] + [parse_variant(v)
                                                            for v in args.variant]
    for i, (mode, options) in enumerate(runs):
        out = work / f"real_{args.label}_{i}_{mode}.jsonl"
        extra = f"--models {args.models} {options}".strip() if mode != "roundtrip" else ""
        cmd = [args.judge, str(SHARED / "judge" / "real_eval.py"), "--clips", args.clips,
               "--mode", mode, "--targets", args.targets, "--out", str(out)]
        if extra:
            cmd += ["--extra", extra]
        # the round trip is the same for every target: once per clip is the floor
        cmd += ["--per-clip", "1" if mode == "roundtrip" else str(args.per_clip)]
        t0 = time.perf_counter()
        r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
        if r.returncode or not out.is_file():
            sys.stderr.write(r.stdout + r.stderr)
            raise SystemExit(f"real_eval.py --mode {mode} failed (exit {r.returncode})")
        summ = json.loads(out.read_text().strip().splitlines()[-1])
        n = summ["conversions"] - summ["failed"]
        lines.append(f"| {args.label} | {mode} | {f'`{options}`' if options else 'defaults'} | "
                     f"{args.targets} | {n} "
                     f"({summ['failed']} failed) | {summ['target_up']}/{n} "
                     f"({summ['target_up'] / max(n, 1):.0%}) | {summ['target_top2']}/{n} "
                     f"({summ['target_top2'] / max(n, 1):.0%}) | {summ['median_content']:.2f} | "
                     f"{wall:.0f} |")
    return lines


def detection(args: argparse.Namespace) -> list[str]:
    """The shipped classifier on every clip: right, wrong or uncertain, by family."""
    import torch

    from genreshift.audio import load_audio
    from genreshift.inference.convert import UNCERTAIN_BELOW, ModelCache, detect_genre
    from genreshift.inference.pipeline import Song

    torch.set_num_threads(1)
    clf = ModelCache("cpu").classifier(Path(args.models) / "classifier.pt")
    with open(Path(args.clips) / "MANIFEST.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    lines = ["| clip | family | detected (p) | verdict |", "|---|---|---|---|"]
    counts = {"right": 0, "wrong": 0, "uncertain, right guess": 0, "uncertain, wrong guess": 0,
              "no such genre": 0}
    for row in rows:
        audio, sr = load_audio(Path(args.clips) / row["file"])
        genre, p, _ = detect_genre(clf, Song(Path(row["file"]), audio, sr).mid(clf.mel_config))
        ok = FAMILY_GENRES.get(row["style_family"])
        if ok is None or not ok & set(clf.genres):
            verdict = "no such genre"
        elif p < UNCERTAIN_BELOW:
            verdict = "uncertain, right guess" if genre in ok else "uncertain, wrong guess"
        else:
            verdict = "right" if genre in ok else "wrong"
        counts[verdict] += 1
        lines.append(f"| {row['file']} | {row['style_family']} | {genre} ({p:.2f}) | "
                     f"{verdict} |")
    mappable = sum(v for k, v in counts.items() if k != "no such genre")
    named = counts["right"] + counts["wrong"]
    summary = [f"Source detection ({args.label}, threshold {UNCERTAIN_BELOW}): of {mappable} "
               f"clips whose family is one of the classifier's genres, {counts['right']} named "
               f"right, {counts['wrong']} named wrong, "
               f"{counts['uncertain, right guess'] + counts['uncertain, wrong guess']} reported "
               f"uncertain ({counts['uncertain, right guess']} of them with the right best "
               f"guess); precision when it names a genre {counts['right'] / max(named, 1):.0%}"
               f"; top-1 including the uncertain guesses "
               f"{(counts['right'] + counts['uncertain, right guess']) / max(mappable, 1):.0%}."
               f" {counts['no such genre']} clips have no matching genre (ambient, or a family "
               "this classifier lacks).", ""]
    return summary + lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=str(ROOT / "checkpoints"))
    ap.add_argument("--label", default="shipped")
    ap.add_argument("--modes", default="roundtrip,to,like")
    ap.add_argument("--targets", default="classical,jazz,rock,electronic,hiphop,lofi")
    ap.add_argument("--per-clip", type=int, default=1,
                    help="conversions per clip in modes to and like (real_eval.py's --per-clip: "
                         "targets drawn from those the clip's family is not)")
    ap.add_argument("--variant", action="append", default=[], metavar="MODE:OPTIONS",
                    help="one more run of mode to or like with these convert options, on the "
                         "same conversions (e.g. 'to:--rhythm keep'); repeatable")
    ap.add_argument("--clips", default=str(SHARED / "realmusic"))
    ap.add_argument("--judge", default=DEFAULT_JUDGE)
    ap.add_argument("--work", default="/tmp/genreshift-real-music")
    ap.add_argument("--no-detection", action="store_true")
    args = ap.parse_args()
    if not Path(args.clips, "MANIFEST.tsv").is_file():
        print(f"Not run: no real-music clips at {args.clips} (MANIFEST.tsv missing).")
        return 0
    out: list[str] = []
    missing = judge_missing(args.judge)
    if missing:
        out.append(f"Judge not run: {missing}.")
    elif args.modes or args.variant:
        out += [  # run_all shows the command that ran this script
                "Every row of modes to and like converts the same clips to the same targets "
                "(real_eval.py draws them per clip from the seed); only the options differ.", "",
                *judge_runs(args), ""]
    if not args.no_detection:
        out += detection(args)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
