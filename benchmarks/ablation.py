"""The ablation table of the real-recordings work: the converters of `make ablation` (one
target, five ways of training) judged side by side. Prints Markdown.

    .venv/bin/python benchmarks/ablation.py --data data/synth [--runs runs/ablation] [--real]

Each variant's inference file is runs/ablation/models-<variant>/rest-to-<genre>.pt (written by
`make ablation`, next to a copy of the shipped classifier). Synthetic: `genreshift evaluate
--method trained` on the produced corpus's test split, every genre -> the target. Real (with
--real and the judge environment): `../shared/judge/real_eval.py --mode to --targets <genre>`,
with the default convert options and again with `--rhythm keep` (the default `--rhythm
replace` lays the same groove under every variant's output, which can hide how they differ).
Variants that were not trained are listed with the command that makes them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from real_music import DEFAULT_JUDGE, judge_missing

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
VARIANTS = {
    "full": "everything (produced corpus, real recordings, residual + content loss, paired)",
    "dry": "without corpus realism (trained on the --dry corpus: dry mono GM renderings)",
    "noreal": "without real recordings in `rest`",
    "noresidual": "without the residual generator and the content loss",
    "nopaired": "without the paired loss",
}
# the convert options of the real columns: (column prefix, options)
REAL_OPTIONS = (("real", ""), ("real, keep", "--rhythm keep"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path, help="the produced paired corpus")
    ap.add_argument("--runs", type=Path, default=ROOT / "runs" / "ablation")
    ap.add_argument("--genre", default="rock")
    ap.add_argument("--tunes", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=None, help="the first S s of each clip")
    ap.add_argument("--real", action="store_true", help="also judge on real recordings")
    ap.add_argument("--judge", default=DEFAULT_JUDGE)
    args = ap.parse_args()

    from genreshift.inference import evaluate as ev

    corpus = ev.Corpus.open(args.data)
    pairs = [(g, args.genre) for g in corpus.genres() if g != args.genre]
    judge = ev.fit_feature_judge(corpus, seconds=args.seconds)
    real_note = None
    why = judge_missing(args.judge) if args.real else None
    if why:
        real_note = f"Real recordings not judged: {why}."
        args.real = False
    real_options = REAL_OPTIONS if args.real else ()
    lines = ["| variant | what | steps | transfer, classifier | transfer, feature judge | "
             "LSD (dB) | chroma kept | onset F |"
             + "".join(f" {c}: target up | {c}: top 2 | {c}: median content |"
                       for c, _ in real_options),
             "|---|---|---:|---:|---:|---:|---:|---:|" + "---:|---:|---:|" * len(real_options)]
    missing = []
    real_clips = set()
    floor = None
    for name, what in VARIANTS.items():
        folder = args.runs / f"models-{name}"
        if not (folder / f"rest-to-{args.genre}.pt").is_file():
            missing.append(name)
            continue
        from genreshift.checkpoint import read_checkpoint

        steps = read_checkpoint(folder / f"rest-to-{args.genre}.pt")["provenance"]["steps"]
        rep = ev.evaluate(corpus, "trained", judge=judge, models_dir=folder, pairs=pairs,
                          tunes=args.tunes, jobs=args.jobs, seconds=args.seconds)
        m, floor = rep["overall"]["method"], rep["overall"]["floor"]
        row = (f"| {name} | {what} | {steps} | {m['cnn_hit']:.0%} | {m['judge_hit']:.0%} | "
               f"{m['lsd_db']:.2f} | {m['chroma']:.3f} | {m['onset_f']:.3f} |")
        for i, (_, options) in enumerate(real_options):
            out = Path("/tmp") / f"ablation_real_{name}_{i}.jsonl"
            subprocess.run([args.judge, str(SHARED / "judge" / "real_eval.py"), "--clips",
                            str(SHARED / "realmusic"), "--mode", "to", "--targets", args.genre,
                            "--per-clip", "1", "--extra", f"--models {folder} {options}".strip(),
                            "--out", str(out)], cwd=ROOT, capture_output=True, text=True,
                           check=True)
            s = json.loads(out.read_text().strip().splitlines()[-1])
            n = s["conversions"] - s["failed"]
            real_clips.add(s["conversions"])
            row += (f" {s['target_up']}/{n} | {s['target_top2']}/{n} | "
                    f"{s['median_content']:.2f} |")
        lines.append(row)
    out = []  # run_all shows the command that ran this script
    if floor is not None:
        out.append(f"Every genre -> {args.genre} on {args.tunes} test tunes of the produced "
                   f"corpus; the reconstruction floor there: LSD {floor['lsd_db']:.2f} dB, "
                   f"chroma {floor['chroma']:.3f}, onset F {floor['onset_f']:.3f}, transfer "
                   f"{floor['cnn_hit']:.0%} / {floor['judge_hit']:.0%}.")
        out += ["", *lines]
    if real_note:
        out += ["", real_note]
    elif real_clips:
        count = "/".join(str(c) for c in sorted(real_clips))
        out += ["", f"Real columns: `../shared/judge/real_eval.py --mode to --targets "
                f"{args.genre} --per-clip 1` on the {count} clips of ../shared/realmusic whose "
                f"family is not {args.genre}'s (real_eval.py converts a clip only to a family it "
                "is not), each variant's folder as --models (musicnn's score for the target "
                "family up, in its top 2 of 8; median content). Columns `real`: the default "
                "convert options (`--rhythm replace`); `real, keep`: with `--rhythm keep`, the "
                "converter's change alone."]
    if missing:
        out += ["", f"Not trained here: {', '.join(missing)} (`make ablation` trains them; "
                f"{time.strftime('%Y-%m-%d')})."]
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
