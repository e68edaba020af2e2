"""Regenerate BENCHMARKS.md from scratch: every table, measured now, on this machine.

Renders the paired synthetic corpus (the same command and seed as `make default-models`, so
its test split holds the tunes the shipped models never saw), evaluates every conversion
method and baseline on it (`genreshift evaluate`'s library call), times the CLI, and runs
every other benchmark script in benchmarks/. Each section records its command, its wall time
and the load average around it; the file is stamped with the commit and the date, and a PNG
of the comparison (metric bars per method next to the reconstruction floor, confusion
matrices) is written next to it.

    benchmarks/run_all                      # everything: hours on 2 cores (resumable)
    benchmarks/run_all --only evaluate      # (after a run) one section, into --work's copy
    benchmarks/run_all --quick --work /tmp/x --out /tmp/x/B.md    # a smoke run, minutes

The scratch folder (--work, several GB: corpus, mel shards) is deleted at the end unless
--keep. If a section fails, BENCHMARKS.md is left alone and the partial result goes to
the scratch folder instead (which is then kept), with the failing command's log.

Each finished section is saved in the scratch folder as it ends (sections/NAME.json: its
Markdown, wall time, load, plots and reports). A run that was stopped (killed, a session's
end, a failed section) goes on with `--work DIR --resume` and the same arguments: the saved
sections are taken as they are and only the rest run. A run resumed with other code (any
tracked file under CODE_PATHS but Markdown), other sizes or another corpus is refused, so
every number still belongs to one version of the code; commits of documentation between the
processes do not count, nor do uncommitted edits of them.

    benchmarks/run_all --work /tmp/bench                  # stopped after a few sections
    benchmarks/run_all --work /tmp/bench --resume         # runs the remaining ones

The sections folder is self-contained (Markdown with `$WORK` for the scratch folder, plots
copied next to the JSON), so a run can span machines: copy `sections/` into a new --work
folder, check out a commit with the same code, and --resume. The corpus is then rendered (and timed)
again, since the later sections read it.

Written by hand: no benchmark runner does "run these scripts, keep their Markdown, stamp it".
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = ".genreshift-run-all"  # marks a --work folder this script made and may delete
GENRES = "classical,jazz,rock,electronic,hiphop"
TEN_GENRES = GENRES + ",blues,country,reggae,metal,lofi"
# What `make default-models` renders and trains (Makefile CORPUS_GENRES, GENRES, HELDOUT_...).
CORPUS_GENRES = "classical,jazz,rock,electronic,hiphop,lofi,blues,country,reggae,metal"
TARGETS = "classical,jazz,rock,electronic,hiphop,lofi"
HELDOUT_SOUNDFONT = "sf_GMbank.sf2"
SOUNDFONT_DIR = Path("/usr/share/sounds/sf2")


@dataclass
class Sizes:
    """How much each section measures: the full run, or --quick's smoke run."""

    tunes: int = 240  # corpus: same as `make default-models`
    seconds: float = 30.0
    genres: str = CORPUS_GENRES
    targets: str = TARGETS  # the shipped converters' targets: the pairs evaluated
    eval_tunes: int = 4  # test tunes per method in the comparison (x 54 genre pairs)
    heldout_tunes: int = 4  # test tunes rendered with the held-out SoundFont
    real_modes: str = "roundtrip,to,like"  # real_eval.py modes (../shared/judge)
    real_per_clip: int = 1  # conversions per clip in modes to / like (20 clips)
    # the same conversions again with other options: the rhythm modes against the default
    # replace (issue 13), reference mode's classifier style space against random (issue 16)
    real_variants: str = "to:--rhythm keep;to:--rhythm add;like:--style-space random"
    # trained mode with the models from before the real-recordings work (issue 12), taken out
    # of git: the same conversions, so both model sets are judged on the same clips
    real_previous: bool = True
    ablation_real: bool = True  # the ablation's variants on the real clips too (judge needed)
    methods: str = "identity,eq,trained,reference"  # the comparison's methods
    eval_seconds: float | None = None  # whole clips
    gram_tunes: int = 2
    gram_pairs: str = "rock:jazz,classical:electronic"
    gram_seconds: float = 5.0
    gram_steps: int | None = None  # the published 300
    sweep_tunes: int = 5  # per source genre (x 4 targets x 5 window settings)
    seams_every: int = 10
    convert_repeats: int = 5
    convert_seconds: float = 30.0
    convert_long_seconds: float = 180.0  # the peak-memory song
    recon_clips: int = 6  # full-band Debian tracks (make real-data), one per package
    recon_seconds: float = 20.0
    rhythm_seconds: float = 20.0  # generated songs for the rhythm section
    rhythm_tempi: str = "72,90,110,140"
    rhythm_real: int = 6  # excerpts of data/real (make real-data); 0 where there are none
    rhythm_synth_tunes: int = 12  # test tunes of the run's corpus through each rhythm mode
    roundtrip_runs: int = 3
    roundtrip_clips: int = 4
    roundtrip_iters: str = "0,16,32,64"
    roundtrip_hops: str = "256,512"
    oracle_tunes: int = 4
    sep10_tunes: int = 20
    tensor_clips: int = 1000
    tensor_seconds: float = 30.0
    ref_seconds: float = 8.0
    ref_baseline_steps: int | None = None  # the published 300
    ref_style_tunes: int = 1  # test tunes x every ordered pair of the classifier's genres
    ref_style_seconds: float = 10.0
    model_repeats: int = 3
    model_train_steps: int = 3
    model_candidates: tuple[str, ...] = ()  # () = all
    jobs: int = 2


QUICK = Sizes(tunes=6, seconds=5.0, genres="jazz,rock", targets="jazz,rock", eval_tunes=1,
              heldout_tunes=1, real_modes="", real_variants="", real_previous=False,
              ablation_real=False, gram_tunes=1,
              gram_pairs="rock:jazz", gram_seconds=2.0, gram_steps=2, sweep_tunes=1, seams_every=1,
              convert_repeats=1, convert_seconds=5.0, convert_long_seconds=10.0,
              recon_clips=1, recon_seconds=3.0, rhythm_seconds=6.0, rhythm_tempi="110",
              rhythm_real=0, rhythm_synth_tunes=1, roundtrip_runs=1, roundtrip_clips=1,
              roundtrip_iters="0,2", roundtrip_hops="512", oracle_tunes=1, sep10_tunes=6,
              tensor_clips=20, tensor_seconds=5.0, ref_seconds=3.0, ref_baseline_steps=2,
              ref_style_seconds=3.0,
              model_repeats=1, model_train_steps=1, model_candidates=("212d-8",))


@dataclass
class Context:
    work: Path
    sizes: Sizes
    python: str
    reports: dict[str, dict] = field(default_factory=dict)
    pngs: list[Path] = field(default_factory=list)  # plots to publish next to --out

    @property
    def corpus(self) -> Path:
        return self.work / "synth"

    def test_tunes(self) -> dict[str, dict[str, Path]]:
        """tune -> genre -> rendering, for the corpus's test split."""
        from genreshift.inference.evaluate import Corpus

        return Corpus.open(self.corpus).tunes("test")


@dataclass
class Section:
    name: str
    title: str
    about: str  # what it measures and why; no numbers (they would go stale)
    run: Callable[[Context], str]  # -> the Markdown body


class SectionFailed(Exception):
    pass


def _rel(path: Path | str) -> str:
    try:
        return str(Path(path).relative_to(ROOT))
    except ValueError:
        return str(path)


def _script(ctx: Context, name: str, args: list) -> str:
    """Run benchmarks/NAME with ARGS; its stdout (Markdown) is the section body."""
    argv = [ctx.python, str(ROOT / "benchmarks" / name), *map(str, args)]
    log = ctx.work / "logs" / f"{Path(name).stem}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    shown = ".venv/bin/python " + " ".join(shlex.quote(_rel(a)) for a in argv[1:])
    with open(log, "a") as err:
        r = subprocess.run(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True,
                           check=False)
    if r.returncode:
        raise SectionFailed(f"`{shown}` exited with {r.returncode}; its log: {log}")
    return f"```\n{shown}\n```\n\n{r.stdout.strip()}\n"


# --------------------------------------------------------------------------- the sections


def run_corpus(ctx: Context) -> str:
    s = ctx.sizes
    shutil.rmtree(ctx.corpus, ignore_errors=True)
    return _script(ctx, "synth_speed.py", ["--tunes", s.tunes, "--seconds", s.seconds,
                                           "--genres", s.genres, "--seed", 0, "--workers", 2,
                                           "--exclude-soundfont", HELDOUT_SOUNDFONT,
                                           "--out", ctx.corpus])


def _evaluate(ctx: Context, method: str, judge, tag: str = "", **kw) -> dict:
    from genreshift.inference import evaluate as ev

    t0 = time.perf_counter()
    report = ev.evaluate(ev.Corpus.open(ctx.corpus), method, judge=judge,
                         jobs=ctx.sizes.jobs, **kw)
    report["wall_s"] = time.perf_counter() - t0
    path = ctx.work / "reports" / f"{tag}{method}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1))
    return report


def _pct(x: float) -> str:
    return f"{x:.0%}"


def _comparison_table(reports: list[dict]) -> list[str]:
    floor = reports[0]["overall"]["floor"]
    lines = ["| method | clips | transfer, classifier | transfer, feature judge | "
             "p(target), classifier | LSD to the real rendering (dB) | chroma kept | "
             "chroma corr. (CENS) | onset F-measure | real-time factor | wall (s) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
             f"| *reconstruction floor* | {floor['clips']} | {_pct(floor['cnn_hit'])} | "
             f"{_pct(floor['judge_hit'])} | {floor['cnn_p']:.2f} | {floor['lsd_db']:.2f} | "
             f"{floor['chroma']:.3f} | {floor['chroma_corr']:.3f} | {floor['onset_f']:.3f} | "
             f"{floor['rtf']:.3f} | — |"]
    for r in reports:
        m, fl = r["overall"]["method"], r["overall"]["floor"]
        change = (m["lsd_db"] - fl["lsd_db"]) / fl["lsd_db"]
        lines.append(f"| {r['method']} | {m['clips']} | {_pct(m['cnn_hit'])} | "
                     f"{_pct(m['judge_hit'])} | {m['cnn_p']:.2f} | {m['lsd_db']:.2f} "
                     f"({change:+.1%}) | {m['chroma']:.3f} | {m['chroma_corr']:.3f} | "
                     f"{m['onset_f']:.3f} | {m['rtf']:.3f} | {r['wall_s']:.0f} |")
    return lines


def _per_target(reports: list[dict]) -> list[str]:
    targets = sorted({row["target"] for r in reports for row in r["rows"]})
    lines = ["| target | " + " | ".join(r["method"] for r in reports) + " |",
             "|---|" + "---:|" * len(reports)]
    for t in targets:
        cells = []
        for r in reports:
            sel = [row for row in r["rows"] if row["target"] == t]
            cells.append(f"{_pct(sum(x['cnn_hit'] for x in sel) / len(sel))} / "
                         f"{_pct(sum(x['judge_hit'] for x in sel) / len(sel))}")
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return lines


def _trained_detail(report: dict) -> list[str]:
    lines = ["| target | clips | transfer, classifier | transfer, feature judge | "
             "p(target) | LSD, dB (floor) | chroma kept |", "|---|---:|---:|---:|---:|---:|---:|"]
    rows = report["rows"]
    targets = sorted({r["target"] for r in rows})
    for t in [*targets, None]:
        sel = [r for r in rows if t is None or r["target"] == t]
        pairs = [v for k, v in report["per_pair"].items() if t is None or k.endswith(f":{t}")]
        fl_lsd = (sum(p["floor"]["lsd_db"] * p["floor"]["clips"] for p in pairs)
                  / sum(p["floor"]["clips"] for p in pairs))
        mean = {k: sum(float(r[k]) for r in sel) / len(sel)
                for k in ("cnn_hit", "judge_hit", "cnn_p", "lsd_db", "chroma")}
        name = "**all**" if t is None else t
        lines.append(f"| {name} | {len(sel)} | {_pct(mean['cnn_hit'])} | "
                     f"{_pct(mean['judge_hit'])} | {mean['cnn_p']:.2f} | "
                     f"{mean['lsd_db']:.2f} ({fl_lsd:.2f}) | {mean['chroma']:.3f} |")
    return lines


def _confusion(report: dict, judge: str) -> list[str]:
    conf = report["confusion"][judge]
    labels = [lab for lab in next(iter(conf.values()))
              if any(row.get(lab) for row in conf.values())]
    lines = ["| target \\ judged | " + " | ".join(labels) + " |",
             "|---|" + "---:|" * len(labels)]
    for t, row in conf.items():
        lines.append(f"| {t} | " + " | ".join(str(row[lab]) for lab in labels) + " |")
    return lines


def run_evaluate(ctx: Context) -> str:
    from genreshift.inference import evaluate as ev
    from genreshift.inference.plot import plot_evaluation

    s = ctx.sizes
    corpus = ev.Corpus.open(ctx.corpus)
    t0 = time.perf_counter()
    judge = ev.fit_feature_judge(corpus, seconds=s.eval_seconds)
    judge_s = time.perf_counter() - t0
    pairs = _target_pairs(corpus, s.targets)
    reports = [_evaluate(ctx, m, judge, tunes=s.eval_tunes, seconds=s.eval_seconds,
                         pairs=pairs)
               for m in s.methods.split(",")]
    ctx.reports["main"] = {r["method"]: r for r in reports}
    plot_evaluation(ctx.work / "comparison.png", reports)
    ctx.pngs.append(ctx.work / "comparison.png")
    trained = ctx.reports["main"]["trained"]
    m, fl = trained["overall"]["method"], trained["overall"]["floor"]
    lsd_change = (m["lsd_db"] - fl["lsd_db"]) / fl["lsd_db"]
    clip = "whole clips" if s.eval_seconds is None else f"the first {s.eval_seconds:g} s"
    out = [
        "```",
        "genreshift evaluate --data SYNTH --split test --method METHOD "
        f"--tunes {s.eval_tunes}"
        f"{'' if s.eval_seconds is None else f' --seconds {s.eval_seconds:g}'} "
        f"--jobs {s.jobs} --out METHOD.json   # for each method (the library call, one "
        "feature judge for all)",
        "```", "",
        f"{trained['tunes']} test tunes, {clip}, every ordered pair of "
        f"{len(corpus.genres())} genres; the feature judge was fitted on the "
        f"{sum(1 for r in corpus.rows if r['split'] == 'train')} train-split renderings in "
        f"{judge_s:.0f} s. {s.jobs} processes of one torch thread each.", "",
        *_comparison_table(reports), "",
        "LSD in brackets: change against the reconstruction floor (the same clips analysed and "
        "reconstructed unchanged). Real-time factor: seconds of work per second of audio "
        "(conversion and reconstruction; the floor's is reconstruction alone).", "",
        "Transfer per target genre, classifier / feature judge:", "",
        *_per_target(reports), "",
        "### Trained mode (the shipped default models) per target", "",
        *_trained_detail(trained), "",
        "Goals of the default models: transfer >= 95% by the classifier "
        f"({'met' if m['cnn_hit'] >= 0.95 else 'missed'}: {_pct(m['cnn_hit'])}) and >= 90% by "
        f"the feature judge ({'met' if m['judge_hit'] >= 0.9 else 'missed'}: "
        f"{_pct(m['judge_hit'])}), LSD 25% below the floor "
        f"({'met' if lsd_change <= -0.25 else 'missed'}: {lsd_change:+.1%}), onset F >= 0.9 "
        f"({'met' if m['onset_f'] >= 0.9 else 'missed'}: {m['onset_f']:.3f}).",
        "",
        "Trained mode, the classifier's label against the target (rows):", "",
        *_confusion(trained, "cnn"), "",
        "The same, judged by the feature judge:", "",
        *_confusion(trained, "judge"), "",
        "![metric bars per method next to the floor, confusion matrix](benchmarks/results/"
        "comparison.png)",
    ]
    return "\n".join(out) + "\n"


def _target_pairs(corpus, targets: str) -> list[tuple[str, str]]:
    """Every corpus genre -> each shipped target (the pairs a user can ask for)."""
    genres = corpus.genres()
    return [(src, t) for t in targets.split(",") if t in genres for src in genres if src != t]


def run_heldout_font(ctx: Context) -> str:
    """The test tunes rendered again with the SoundFont the shipped models never heard."""
    from genreshift.inference import evaluate as ev

    s = ctx.sizes
    font = SOUNDFONT_DIR / HELDOUT_SOUNDFONT
    if not font.is_file():
        return (f"Not run: {font} is not installed (`sudo apt install csound-soundfont`).\n")
    held = ctx.work / "synth_heldout"
    shutil.rmtree(held, ignore_errors=True)
    argv = [ctx.python, "-m", "genreshift", "data", "synth", "--out", str(held), "--tunes",
            str(s.tunes), "--seconds", str(s.seconds), "--genres", s.genres, "--seed", "0",
            "--soundfont", str(font), "--only-split", "test", "--workers", "2", "-q"]
    r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False)
    if r.returncode:
        raise SectionFailed(f"`{shlex.join(argv)}` exited with {r.returncode}: "
                            f"{r.stderr.strip()[-500:]}")
    main = ev.Corpus.open(ctx.corpus)
    judge = ev.fit_feature_judge(main, seconds=s.eval_seconds)  # fitted on the training fonts
    corpus = ev.Corpus.open(held)
    pairs = _target_pairs(corpus, s.targets)
    reports = []
    for method in ("identity", "trained"):
        t0 = time.perf_counter()
        rep = ev.evaluate(corpus, method, judge=judge, jobs=s.jobs, tunes=s.heldout_tunes,
                          seconds=s.eval_seconds, pairs=pairs)
        rep["wall_s"] = time.perf_counter() - t0
        reports.append(rep)
    ctx.reports["heldout_font"] = {r["method"]: r for r in reports}
    m = reports[1]["overall"]["method"]
    out = ["```",
           f"genreshift data synth --out HELD --tunes {s.tunes} --genres {s.genres} --seed 0 "
           f"--soundfont {font} --only-split test",
           f"genreshift evaluate --data HELD --method trained --tunes {s.heldout_tunes} "
           f"--pairs <every genre -> {s.targets}>   # and --method identity; the feature "
           "judge fitted on the main corpus's train split",
           "```", "",
           f"{reports[1]['tunes']} test tunes rendered with {HELDOUT_SOUNDFONT} only "
           "(melodic parts; drums from the kits drawn as in the main corpus).", "",
           *_comparison_table(reports), "",
           "Goals: transfer >= 90% by the classifier "
           f"({'met' if m['cnn_hit'] >= 0.9 else 'missed'}: {_pct(m['cnn_hit'])}) and >= 85% "
           f"by the feature judge ({'met' if m['judge_hit'] >= 0.85 else 'missed'}: "
           f"{_pct(m['judge_hit'])}).", "",
           "Per target, classifier / feature judge:", "", *_per_target(reports)]
    return "\n".join(out) + "\n"


def run_real_music(ctx: Context) -> str:
    s = ctx.sizes
    return _script(ctx, "real_music.py", ["--modes", s.real_modes, "--targets", s.targets,
                                          "--per-clip", s.real_per_clip,
                                          "--work", ctx.work / "real_music"])


def run_real_variants(ctx: Context) -> str:
    """Its own section: each variant costs as much as a mode of real_music, and a section
    must finish within one process (a session) to be saved."""
    s = ctx.sizes
    variants = [a for v in s.real_variants.split(";") if v.strip()
                for a in ("--variant", v.strip())]
    if not variants:
        return "No variants asked for (`real_variants` is empty).\n"
    return _script(ctx, "real_music.py", ["--modes", "", *variants, "--targets", s.targets,
                                          "--per-clip", s.real_per_clip, "--no-detection",
                                          "--work", ctx.work / "real_variants"])


# The default models before the real-recordings work (issue 12): trained on the dry
# two-font corpus of 2026-11-22, five targets (no lofi). The last commit that ships them.
PREVIOUS_MODELS_COMMIT = "8a6ef6ca06539dde17606b548a057c219ac79215"
PREVIOUS_MODELS_LABEL = "2026-11-22"


def previous_models(folder: Path) -> Path | None:
    """The .pt files of checkpoints/ at PREVIOUS_MODELS_COMMIT, written to ``folder``; None
    where this clone lacks that commit (a shallow clone)."""
    names = _git("ls-tree", "--name-only", PREVIOUS_MODELS_COMMIT, "checkpoints/").split()
    names = [n for n in names if n.endswith(".pt")]
    if not names:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        blob = subprocess.run(["git", "show", f"{PREVIOUS_MODELS_COMMIT}:{name}"], cwd=ROOT,
                              capture_output=True, check=True).stdout
        (folder / Path(name).name).write_bytes(blob)
    return folder


def run_real_previous(ctx: Context) -> str:
    s = ctx.sizes
    if not s.real_previous:
        return "Not asked for (`real_previous` is off).\n"
    folder = previous_models(ctx.work / f"models-{PREVIOUS_MODELS_LABEL}")
    if folder is None:
        return (f"Not run: this clone lacks commit {PREVIOUS_MODELS_COMMIT[:7]} (the models "
                f"of {PREVIOUS_MODELS_LABEL}); run from a full clone.\n")
    return _script(ctx, "real_music.py", ["--models", folder, "--label", PREVIOUS_MODELS_LABEL,
                                          "--modes", "to", "--targets", s.targets,
                                          "--per-clip", s.real_per_clip, "--no-detection",
                                          "--work", ctx.work / "real_previous"])


def run_ablation(ctx: Context) -> str:
    s = ctx.sizes
    args = ["--data", ctx.corpus, "--tunes", s.eval_tunes, "--jobs", s.jobs]
    if s.ablation_real:
        args.append("--real")
    if s.eval_seconds is not None:
        args += ["--seconds", s.eval_seconds]
    return _script(ctx, "ablation.py", args)


def run_gram(ctx: Context) -> str:
    from genreshift.inference import evaluate as ev
    from genreshift.inference.plot import plot_evaluation

    s = ctx.sizes
    corpus = ev.Corpus.open(ctx.corpus)
    pairs = ev.parse_pairs(s.gram_pairs, corpus.genres())
    judge = ev.fit_feature_judge(corpus, seconds=s.gram_seconds)
    reports = [_evaluate(ctx, m, judge, tunes=s.gram_tunes, seconds=s.gram_seconds,
                         pairs=pairs, steps=s.gram_steps if m == "gram-baseline" else None,
                         tag="small-")
               for m in ev.METHODS]
    ctx.reports["small"] = {r["method"]: r for r in reports}
    plot_evaluation(ctx.work / "comparison_short.png", reports)
    ctx.pngs.append(ctx.work / "comparison_short.png")
    steps = "" if s.gram_steps is None else f" --steps {s.gram_steps}"
    out = [
        "```",
        f"genreshift evaluate --data SYNTH --split test --method METHOD --tunes {s.gram_tunes} "
        f"--pairs {s.gram_pairs} --seconds {s.gram_seconds:g} --jobs {s.jobs} --out "
        f"METHOD.json   # gram-baseline with{steps or ' its 300 Adam steps'}",
        "```", "",
        f"{reports[0]['tunes']} test tunes x {len(pairs)} pairs, the first {s.gram_seconds:g} s "
        "of each rendering; reference methods use the same references (a random other tune "
        "of the target genre, drawn per tune from the seed).", "",
        *_comparison_table(reports), "",
        "![the same, all five methods](benchmarks/results/comparison_short.png)",
    ]
    return "\n".join(out) + "\n"


def run_window_sweep(ctx: Context) -> str:
    return _script(ctx, "window_sweep.py", ["--data", ctx.corpus, "--jobs", ctx.sizes.jobs,
                                            "--tunes", ctx.sizes.sweep_tunes])


def run_window_seams(ctx: Context) -> str:
    return _script(ctx, "window_seams.py", ["--data", ctx.corpus,
                                            "--every", ctx.sizes.seams_every])


def run_convert_speed(ctx: Context) -> str:
    s = ctx.sizes
    return _script(ctx, "convert_speed.py", ["--repeats", s.convert_repeats, "--seconds",
                                             s.convert_seconds, "--long-seconds",
                                             s.convert_long_seconds])


def _full_band_tracks(n: int) -> list[Path]:
    """Up to n original tracks (44.1 kHz, full band) of the Debian game-music packages that
    `make real-data` unpacks into data/debian (training material, never the test set): the
    first imported track of each package, packages in order."""
    meta = ROOT / "data" / "real" / "metadata.csv"
    if not meta.is_file():
        return []
    with open(meta, newline="") as f:
        rows = list(csv.DictReader(f))
    out, seen = [], set()
    for r in rows:
        path = ROOT / "data" / "debian" / r["package"] / r["file"]
        if r["package"] in seen or ":" in r["file"] or not path.is_file():
            continue  # one per package; tracks inside archives (pk3) are skipped
        seen.add(r["package"])
        out.append(path)
    return out[:n]


def run_rhythm(ctx: Context) -> str:
    s = ctx.sizes
    real = s.rhythm_real if (ROOT / "data" / "real" / "real").is_dir() else 0
    return _script(ctx, "rhythm.py", ["--seconds", s.rhythm_seconds, "--tempi", s.rhythm_tempi,
                                      "--real", real, "--synth-tunes", s.rhythm_synth_tunes,
                                      "--synth-dir", ctx.corpus])


def run_reconstruction(ctx: Context) -> str:
    s = ctx.sizes
    clips = _full_band_tracks(s.recon_clips)
    if not clips:
        return ("Not measured here: no full-band recordings. `make real-data` unpacks the "
                "Debian game-music packages into data/debian; rerun this section then.\n")
    return _script(ctx, "reconstruction.py", [*clips, "--seconds", s.recon_seconds])


def run_roundtrip_cli(ctx: Context) -> str:
    clip = min(ctx.test_tunes().values(), key=lambda g: sorted(g.values()))
    clip = clip.get("rock", next(iter(clip.values())))
    argv = [ctx.python, "-m", "genreshift", "roundtrip", str(clip), "-o",
            str(ctx.work / "roundtrip_cli.wav"), "--force", "--json"]
    cmd = f"OMP_NUM_THREADS=N genreshift roundtrip {_rel(clip)} -o OUT.wav --force --json"
    lines = ["| threads | load (s) | mel (s) | reconstruction (s) | write (s) | "
             "total, each run (s) |", "|---:|---:|---:|---:|---:|---:|"]
    for threads in (1, 2):
        runs = []
        for _ in range(ctx.sizes.roundtrip_runs):
            r = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False,
                               env={**os.environ, "OMP_NUM_THREADS": str(threads)})
            if r.returncode:
                raise SectionFailed(f"`{shlex.join(argv)}` exited with {r.returncode}: "
                                    f"{r.stderr.strip()[-500:]}")
            runs.append(json.loads(r.stdout)["timings_s"])

        def span(key: str, runs=runs) -> str:
            lo, hi = min(r[key] for r in runs), max(r[key] for r in runs)
            return f"{lo:.2f}" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f}-{hi:.2f}"

        lines.append(f"| {threads} | {span('load')} | {span('mel')} | "
                     f"{span('reconstruction')} | {span('write')} | "
                     + " / ".join(f"{sum(r.values()):.2f}" for r in runs) + " |")
    return f"```\n{cmd}\n```\n\n" + "\n".join(lines) + "\n"


def _test_clips(ctx: Context, n: int) -> list[Path]:
    """n test renderings, one tune each, genres in turn."""
    tunes = ctx.test_tunes()
    out = []
    for i, name in enumerate(sorted(tunes)[:n]):
        genres = sorted(tunes[name])
        out.append(tunes[name][genres[i % len(genres)]])
    return out


def run_roundtrip(ctx: Context) -> str:
    s = ctx.sizes
    return _script(ctx, "roundtrip.py", [*_test_clips(ctx, s.roundtrip_clips), "--seconds",
                                         s.seconds, "--iters", s.roundtrip_iters, "--hops",
                                         s.roundtrip_hops])


def run_oracle(ctx: Context) -> str:
    s = ctx.sizes
    iters = ",".join(i for i in s.roundtrip_iters.split(",") if int(i) <= 32)
    return _script(ctx, "roundtrip.py", ["--paired", ctx.corpus, "--paired-tunes",
                                         s.oracle_tunes, "--skip-roundtrip", "--iters", iters,
                                         "--seconds", s.seconds])


def run_separability(ctx: Context) -> str:
    s = ctx.sizes
    five = _script(ctx, "separability.py", ["--corpus", ctx.corpus])
    shutil.rmtree(ctx.work / "synth10", ignore_errors=True)
    ten = _script(ctx, "separability.py", ["--tunes", s.sep10_tunes, "--seconds", s.seconds,
                                           "--seed", 0, "--genres", TEN_GENRES,
                                           "--out", ctx.work / "synth10"])
    return (f"The corpus above (its {s.genres.count(',') + 1} default genres):\n\n{five}\n"
            f"All ten genres the arranger knows, a smaller corpus:\n\n{ten}")


def run_tensors(ctx: Context) -> str:
    s = ctx.sizes
    return _script(ctx, "tensors_speed.py", ["--dir", ctx.work / "tensors", "--clips",
                                             s.tensor_clips, "--seconds", s.tensor_seconds])


def run_reference_style(ctx: Context) -> str:
    s = ctx.sizes
    return _script(ctx, "reference_style.py", [
        "--data", ctx.corpus, "--split", "test", "--tunes", s.ref_style_tunes, "--seconds",
        s.ref_style_seconds, "--judge-cache", ctx.work / "reference_style_judge.pkl",
        "--run", "random=space=random,chroma=0", "--run", "classifier=space=classifier",
        "--run", "both=space=both"])


def run_reference_speed(ctx: Context) -> str:
    s = ctx.sizes
    tunes = ctx.test_tunes()
    names = sorted(tunes)
    song_genre, ref_genre = sorted(tunes[names[0]])[0], sorted(tunes[names[-1]])[-1]
    args = ["--song", tunes[names[0]][song_genre], "--ref", tunes[names[-1]][ref_genre],
            "--seconds", s.ref_seconds, "--out", ctx.work / "reference"]
    if s.ref_baseline_steps is not None:
        args += ["--baseline-steps", s.ref_baseline_steps]
    return _script(ctx, "reference_speed.py", args)


def run_models_speed(ctx: Context) -> str:
    s = ctx.sizes
    args = ["--threads", 1, "--repeats", s.model_repeats, "--train-steps", s.model_train_steps]
    if s.model_candidates:
        args += ["--candidates", *s.model_candidates]
    return _script(ctx, "models_speed.py", args)


SECTIONS = [
    Section("corpus", "Synthetic corpus: rendering speed",
            "The paired corpus every later section uses, rendered now with the real builder "
            "(`build_synth_corpus`, 2 worker processes): public-domain tunes from the music21 "
            "corpus, each arranged in every genre and rendered with TinySoundFont from "
            "FluidR3_GM or TimGM6mb, 22 050 Hz mono, -20 LUFS. Same tunes, seed and size as "
            "`make default-models`, so its test split holds the tunes the shipped models never "
            "saw. The CPU rows count every process (`resource.getrusage` of this process and "
            "its reaped workers): the rate of one core that has the machine to itself. Target: "
            ">= 50x real time per core (500 tunes x 5 genres x 30 s in <= 15 min on 2 cores).",
            run_corpus),
    Section("evaluate", "Conversion methods compared on held-out tunes",
            "Every method converts each test tune's rendering in one genre to each other genre; "
            "the *reconstructed audio* is analysed again and measured against the real "
            "rendering of the same tune in the target genre (paired ground truth). Transfer: "
            "the share labelled as the target by the shipped CNN classifier and by an "
            "independent feature judge (logistic regression on MFCC / spectral-contrast "
            "statistics, fitted on the train split), so that no number rests on the model the "
            "converters were validated against. Content kept: chroma cosine similarity, the "
            "stricter CENS chroma correlation (whose chance level is near 0, not 0.5) and "
            "onset F-measure (mir_eval, 50 ms) between input and output. Methods: identity "
            "(the input, reconstructed: the floor), eq (a fixed per-band gain onto the target "
            "genre's average spectrum from the train split), trained (the shipped converters, "
            "`genreshift convert --to`), reference (`genreshift convert --like`, reference = a "
            "random other tune of the target genre).", run_evaluate),
    Section("heldout_font", "Trained mode on a SoundFont it never heard",
            "The test tunes rendered again with the one allowed General MIDI SoundFont the "
            "shipped models did not train on (`make default-models` leaves it out of the "
            "corpus), converted by the shipped models and judged as in the comparison above: "
            "how much of the transfer is the instruments of the training fonts.",
            run_heldout_font),
    Section("real_music", "Real recordings: the independent judge",
            "The 20 real excerpts of ../shared/realmusic (a test set: never trained or tuned "
            "on), converted by `../shared/judge/real_eval.py` in three modes (roundtrip: the "
            "floor; to: trained mode; like: reference mode, the reference being another clip "
            "of the target family) and judged by musicnn (a tagger trained on real music: does "
            "the target family's score rise, is it in the top 2 of 8 families) and by "
            "content.py (chroma + basic-pitch notes: is it still the song). Then the shipped "
            "classifier's source detection on the same clips. Runs only where the judge's "
            "environment exists (`bash ../shared/judge/setup.sh`).", run_real_music),
    Section("real_variants", "Real recordings: the same conversions with other options",
            "The conversions of the section above (the same clips, targets and references, "
            "drawn by real_eval.py from its seed), again with one convert option changed: "
            "trained mode with `--rhythm keep` and `--rhythm add` against the default "
            "`replace` (rows `to`, defaults, above), reference mode with `--style-space "
            "random` (the random filters alone, the method before issue 16) against the default "
            "`both` (the classifier's conv activations with the random filters; row `like`, "
            "defaults, above). Judged the same way.",
            run_real_variants),
    Section("real_previous", "Real recordings: the models before the real-recordings work",
            "The trained-mode conversions of the first section on real recordings (the same "
            "clips and targets, drawn by real_eval.py from its seed), made by the default "
            f"models of {PREVIOUS_MODELS_LABEL} (commit {PREVIOUS_MODELS_COMMIT[:7]}: dry mono "
            "renderings from two SoundFonts, no real recordings, no content loss) instead of "
            "the shipped ones (row `to`, defaults, there). Those models have no lofi "
            "converter: conversions to lofi fail and are left out of their row.",
            run_real_previous),
    Section("ablation", "What each part of the real-recordings work bought",
            "One target, trained five ways on the same tunes (`make ablation`, the shipped "
            "1 200 steps): everything, and everything but corpus realism (the --dry corpus), "
            "real recordings in `rest`, the residual generator with the content loss, and the "
            "paired loss; each judged on the held-out tunes of the produced corpus and on real "
            "recordings (with the default `--rhythm replace` and with `--rhythm keep`, the "
            "converter's change alone). Reports the runs it finds and says how to make the "
            "missing ones.",
            run_ablation),
    Section("gram", "The published Gram baseline next to every method (short excerpts)",
            "The published audio style transfer (Ulyanov & Lebedev: log(1+|STFT|), one random "
            "conv layer of 4096 filters, 300 Adam steps, Griffin-Lim) costs minutes of CPU "
            "per second of audio here, so it is compared with every other method on a few "
            "short excerpts, all methods on the same clips and references.", run_gram),
    Section("window_sweep", "Trained mode: generator window length",
            "Transfer of the converted log-mel (no reconstruction) for several generator "
            "window lengths (cross-faded; 64-frame overlap, 42 for 128) and for the whole clip "
            "in one pass, on the test-split conversions of the first tunes of each source "
            "genre. Instance norm takes its statistics "
            "from the window it sees; the training windows are 128 frames.", run_window_sweep),
    Section("window_seams", "Trained mode: windowed against one-piece output",
            "How far the windowed conversion is from one pass of the generator over the whole "
            "clip; tests/test_default_models.py bounds this for the shipped converters.",
            run_window_seams),
    Section("convert_speed", "Start-up, conversion speed and memory",
            "Commands as new processes (`--help`, `info`, a parse error, `genres`, `convert "
            "--to jazz`): wall time, peak memory and whether torch was imported; then `convert "
            "--to jazz` on a 44.1 kHz stereo 16-bit WAV (the bundled example repeated) stage by "
            "stage through pipeline.run (models loaded once), and the peak memory of a 3-minute "
            "song. Goals on an idle 2-core machine: `--help` <= 0.3 s; 30 s of 44.1 kHz stereo "
            "<= 1.5 s as a new process and <= 0.8 s in process; <= 1 GB for 3 minutes.",
            run_convert_speed),
    Section("reconstruction", "Reconstruction: full band, fidelity and time",
            "Each reconstruction method of the pipeline on full-band real recordings (44.1 "
            "kHz stereo originals of the Debian game-music packages, training material): the "
            "round trip against the input over the full band (energy above 11 kHz, LSD, "
            "spectral convergence), the shipped jazz converter's change and how faithfully "
            "the output realises it (mel LSD and SC of the output's log-mel against the "
            "converted one), and the time. **gain** = the change as a gain on the input's own "
            "STFT at its own rate (the default, docs/DECISIONS.md); **mel** / **linear** = "
            "Griffin-Lim from the log-mel at the analysis rate (the earlier default).",
            run_reconstruction),
    Section("rhythm", "Rhythm section: analysis, groove alignment, speed",
            "`convert --rhythm` (inference/rhythm.py) on generated songs with known beats and "
            "kits (several tempi and meters) and on excerpts of the Debian game music of `make "
            "real-data`: the HPSS settings (how much of the true kit stays in the harmonic "
            "layer, how much music leaks into the percussive one), tempo, beats and downbeats "
            "against the truth and against `librosa.beat.beat_track`, the beat confidence by "
            "kind of material, the rendered groove's kick and snare onsets against the "
            "input's beats, the beat F-measure of the output against the input (goal >= 0.8), "
            "the extra CPU per 30 s, and test tunes of the corpus converted with each rhythm "
            "mode against the same tune rendered in the target genre (LSD, transfer).",
            run_rhythm),
    Section("roundtrip_cli", "Reconstruction alone: the CLI round trip",
            "`genreshift roundtrip` with its defaults (the gain reconstruction: the input's own "
            "STFT at its own rate, no Griffin-Lim) on one test rendering, stage timings from "
            "its --json output, with OMP_NUM_THREADS 1 and 2.",
            run_roundtrip_cli),
    Section("roundtrip", "Reconstruction alone: settings",
            "What analysis + reconstruction costs before any conversion, for the settings that "
            "chose the defaults: LSD and spectral convergence of the reconstruction against "
            "the input on the same STFT grid; mel LSD between the reconstruction's log-mel and "
            "the log-mel it was made from (what matters once a converter made the log-mel). "
            "**mel** = genreshift's Griffin-Lim that projects onto the target log-mel "
            "(`spectral.mel_griffin_lim`); **linear** = classic fast Griffin-Lim on the NNLS "
            "linear magnitude; both start from the NNLS inverse mel.", run_roundtrip),
    Section("oracle", "Reconstruction alone: oracle conversion",
            "A perfect converter would output the true log-mel of the target rendering: here "
            "the true log-mel of a tune in genre B is reconstructed starting from the phase of "
            "the same tune in genre A, and compared with the real B rendering. Does the "
            "input's phase still help once the content changes?", run_oracle),
    Section("separability", "Synthetic corpus: separability of genre and content",
            "(1) A logistic regression on MFCC statistics, tested on tunes it never saw: is "
            "genre recognisable from timbre and rhythm alone (target >= 95%)? (2) Frame-by-"
            "frame chroma similarity of renderings of the same tune in different genres "
            "against different tunes (AUC = probability that a same-tune pair scores above a "
            "different-tune pair): does the content survive the genre change?",
            run_separability),
    Section("tensors", "Mel tensors: GTZAN-sized input",
            "Clips in GTZAN's layout and format (22 050 Hz mono 16-bit WAV, "
            "`genres/<genre>/<genre>.000NN.wav`, music-like generated signals) -> mel shards + "
            "manifest with `build_tensors` (split random, so every clip is processed), then "
            "the rerun on the finished folder and MelWindows' read speed. Target: 1000 x 30 s "
            "in <= 3 minutes on 2 cores.", run_tensors),
    Section("reference_style", "Reference mode: style spaces",
            "`genreshift convert --like` with the style measured in random 1-D filters (the "
            "method before issue 16), in the genre classifier's conv activations, and in both "
            "(the default), each with its default content weights, on the same test "
            "clips and references (a random other tune of the target genre). The style model is "
            "the model folder's classifier, which is also the CNN judge here: read the feature "
            "judge's column for independent transfer.", run_reference_style),
    Section("reference_speed", "Reference mode against the published Gram baseline",
            "`genreshift convert --like` (log-mel, random filters, L-BFGS) and the published "
            "approach, end to end on the same test rendering and reference; style loss in "
            "each method's own feature space and in shared ones, measured on the written "
            "audio.", run_reference_speed),
    Section("models_speed", "Models: size and speed of the generator designs",
            "Each candidate generator: parameters, converter file size, a 30 s clip through "
            "it, and full CycleGAN training steps (both generators, both discriminators), one "
            "torch thread. \"212d\" is the 2-1-2-D design (2-D down/upsampling around a 1-D "
            "residual core, as in CycleGAN-VC2 / MaskCycleGAN-VC); \"2d\" a 2-D U-Net.",
            run_models_speed),
]


# --------------------------------------------------------------------------- the run


def _git(*args: str) -> str:
    r = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return r.stdout.strip()


# What a saved section's numbers depend on: the code, the models and the build, not the
# documentation or the results written back (BENCHMARKS.md, plots, saved sections), so that
# a commit of notes during a long run does not void what it already measured.
CODE_PATHS = ("genreshift/", "benchmarks/", "examples/", "Makefile", "pyproject.toml")
CODE_EXCLUDES = (":(exclude,glob)**/*.md", ":(exclude)benchmarks/results/")


def _code_signature() -> str:
    """A hash of every tracked file under CODE_PATHS at HEAD, less Markdown and
    benchmarks/results/."""
    rows = [row for row in _git("ls-tree", "-r", "HEAD", "--", *CODE_PATHS).splitlines()
            if not row.endswith(".md") and "\tbenchmarks/results/" not in row]
    return hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def _code_changes() -> str | None:
    """A hash of the uncommitted diff of the same files as _code_signature, or None."""
    diff = _git("diff", "HEAD", "--", *CODE_PATHS, *CODE_EXCLUDES)
    return hashlib.sha256(diff.encode()).hexdigest()[:16] if diff else None


def _cpu_check() -> float:
    """Seconds one core takes for a fixed piece of work (numpy's single-threaded FFT of 2**20
    samples, 16 times; best of 3), timed before each section. Wall times from runs on
    different days, or from sections of one resumed run, compare only with this next to them:
    the same code has run 2-3x slower on this shared machine."""
    import numpy as np

    x = np.random.default_rng(0).standard_normal(2**20).astype(np.float32)
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(16):
            np.fft.rfft(x)
        best = min(best, time.perf_counter() - t0)
    return best


def _machine() -> str:
    import torch

    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
        mem_s = f", {mem:.0f} GiB RAM"
    except (ValueError, OSError):
        mem_s = ""
    gpu = "no GPU" if not torch.cuda.is_available() else torch.cuda.get_device_name(0)
    return (f"{platform.machine()}, {os.cpu_count()} CPU cores{mem_s}, {gpu}; Python "
            f"{platform.python_version()}, torch {torch.__version__}")


def _prepare_work(path: Path | None) -> Path:
    """The scratch folder: new, or one an earlier run made (its corpus is reused by --only)."""
    if path is None:
        path = Path(tempfile.mkdtemp(prefix="genreshift-benchmarks-"))
    elif (path.exists() and any(path.iterdir()) and not (path / MARKER).is_file()
          and [p.name for p in path.iterdir()] != ["sections"]):  # a copied sections/ resumes
        raise SystemExit(f"error: --work {path} exists and was not made by run_all; give a "
                         "new folder (it is deleted at the end unless --keep)")
    path.mkdir(parents=True, exist_ok=True)
    (path / MARKER).touch()
    return path


def main(argv: list[str] | None = None) -> int:
    from genreshift.fsutil import atomic_write_text

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="sections: " + ", ".join(s.name for s in SECTIONS))
    ap.add_argument("--work", type=Path, help="scratch folder (default: a new temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folder")
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    ap.add_argument("--results", type=Path, default=None,
                    help="where the plots and evaluate_summary.json go (default: "
                         "benchmarks/results/ for the repository's BENCHMARKS.md, else --out's "
                         "folder)")
    ap.add_argument("--quick", action="store_true",
                    help="tiny sizes: checks that everything runs, measures nothing useful")
    ap.add_argument("--set", metavar="NAME=VALUE", action="append", default=[],
                    help="override one size of the run (a field of Sizes, e.g. eval_tunes=2); "
                         "the file says which were changed")
    ap.add_argument("--corpus", type=Path, default=None,
                    help="use this already rendered corpus (rendered with the default sizes) "
                         "instead of rendering it again")
    ap.add_argument("--resume", action="store_true",
                    help="with --work: take the sections an earlier, stopped run of the same "
                         "commit and arguments saved there, and run only the rest")
    ap.add_argument("--only", metavar="SECTION,...",
                    help="run only these sections (the corpus is rendered when a section "
                         "needs it)")
    args = ap.parse_args(argv)

    names = [s.name for s in SECTIONS]
    wanted = names if args.only is None else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in wanted if n not in names]
    if unknown:
        ap.error(f"--only: unknown section {', '.join(unknown)}; choose from {', '.join(names)}")
    repo_file = args.out.resolve() == (ROOT / "BENCHMARKS.md").resolve()
    if args.only is not None and repo_file:
        ap.error("--only writes a partial file: give it its own --out (BENCHMARKS.md holds "
                 "every section)")
    if args.quick and repo_file:
        ap.error("--quick measures nothing useful: give it its own --out")
    if not args.out.parent.is_dir():
        ap.error(f"--out {args.out}: folder {args.out.parent} does not exist")
    results = args.results or (ROOT / "benchmarks" / "results" if repo_file
                               else args.out.parent)
    if args.resume and args.work is None:
        ap.error("--resume needs --work: the scratch folder of the run to go on with")
    work = _prepare_work(args.work)
    sizes = QUICK if args.quick else Sizes()
    overrides = {}
    for item in args.set:
        name, sep, value = item.partition("=")
        fields = {f.name: f for f in dataclasses.fields(Sizes)}
        if not sep or name not in fields:
            ap.error(f"--set {item}: give NAME=VALUE with NAME one of {', '.join(fields)}")
        default = getattr(Sizes(), name)
        kind = type(default) if default is not None else (float if "seconds" in name else int)
        overrides[name] = value if kind is str else (None if value == "None" else kind(value))
    if overrides and repo_file:
        ap.error("--set changes what is measured: give it its own --out")
    sizes = dataclasses.replace(sizes, **overrides)
    ctx = Context(work, sizes, sys.executable)
    if args.corpus is not None:
        if not (args.corpus / "metadata.csv").is_file():
            ap.error(f"--corpus {args.corpus}: no metadata.csv; render it with "
                     "`genreshift data synth` first")
        if ctx.corpus.is_symlink() or ctx.corpus.exists():
            ctx.corpus.unlink() if ctx.corpus.is_symlink() else shutil.rmtree(ctx.corpus)
        ctx.corpus.symlink_to(args.corpus.resolve())
        wanted = [n for n in wanted if n != "corpus"]
    if "corpus" not in wanted and not (ctx.corpus / "metadata.csv").is_file():
        wanted = ["corpus", *wanted]

    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    started = dt.datetime.now(dt.timezone.utc)
    t_start = time.perf_counter()
    bodies: dict[str, str] = {}
    times: dict[str, tuple[float, ...]] = {}
    failed: list[str] = []
    # uncommitted changes count by their diff, so a resume never mixes two versions of them
    changes = _code_changes()
    signature = {"code": _code_signature(), "changes": changes,
                 "sizes": dataclasses.asdict(sizes),
                 "corpus": str(args.corpus.resolve()) if args.corpus else None,
                 "quick": args.quick}
    saved = _saved_sections(work, signature) if args.resume else {}
    resumed: list[str] = []
    print(f"run_all: {len(wanted)} sections, scratch folder {work}", flush=True)
    for sec in SECTIONS:
        if sec.name not in wanted:
            continue
        if failed and sec.name != "corpus" and "corpus" in failed:
            break
        corpus_gone = not (ctx.corpus / "metadata.csv").is_file()
        if sec.name == "corpus" and sec.name in saved and corpus_gone:
            # a resume on another machine: the saved sections came without the scratch
            # folder, and the later ones read the corpus; render (and time) it again
            print(f"[{time.strftime('%H:%M:%S')}] corpus: saved, but {ctx.corpus} is gone; "
                  "rendering it again (the builder is seeded and byte-reproducible)", flush=True)
            del saved[sec.name]
        if sec.name in saved:
            rec = saved[sec.name]
            bodies[sec.name] = rec["body"]
            times[sec.name] = tuple(rec["times"])
            ctx.reports.update(rec["reports"])
            ctx.pngs.extend(work / "sections" / p for p in rec["pngs"])
            started = min(started, dt.datetime.fromisoformat(rec["started"]))
            resumed.append(sec.name)
            print(f"[{time.strftime('%H:%M:%S')}] {sec.name}: saved by the earlier run, "
                  "taken as it is", flush=True)
            continue
        check = _cpu_check()
        load0, t0 = os.getloadavg()[0], time.perf_counter()
        reports0, pngs0 = set(ctx.reports), len(ctx.pngs)
        sec_started = dt.datetime.now(dt.timezone.utc)
        print(f"[{time.strftime('%H:%M:%S')}] {sec.name} ...", flush=True)
        try:
            bodies[sec.name] = sec.run(ctx)
        except Exception as e:  # noqa: BLE001 - any failure: record it, go on, report at the end
            if not isinstance(e, SectionFailed):
                import traceback

                log = work / "logs" / f"{sec.name}.log"
                log.parent.mkdir(parents=True, exist_ok=True)
                with open(log, "a") as f:
                    traceback.print_exc(file=f)
                e = SectionFailed(f"{type(e).__name__}: {e} (traceback in {log})")
            failed.append(sec.name)
            bodies[sec.name] = f"**FAILED**: {e}\n"
            print(f"  FAILED: {e}", file=sys.stderr, flush=True)
        times[sec.name] = (time.perf_counter() - t0, load0, os.getloadavg()[0], check)
        print(f"  {times[sec.name][0]:.0f} s", flush=True)
        if sec.name not in failed:
            _save_section(work, sec.name, signature, {
                "started": sec_started.isoformat(), "commit": commit,
                "body": bodies[sec.name].replace(str(work), "$WORK"),
                "times": times[sec.name],
                "reports": {k: v for k, v in ctx.reports.items() if k not in reports0}},
                ctx.pngs[pngs0:])
    # the sections' own wall times: a resumed run's file counts the earlier process's too
    total = sum(t[0] for t in times.values()) if resumed else time.perf_counter() - t_start

    header = [
        "# genreshift benchmarks", "",
        "Generated by `benchmarks/run_all` (`make benchmarks`): every number below was "
        "measured by the command shown with it, in one run, on the machine named here. Do not "
        "edit by hand; rerun it. The measurements that chose the defaults along the way, "
        "with their dates and conditions, are in docs/DECISIONS.md.", "",
        f"- Commit `{commit}`{' (with uncommitted changes)' if dirty else ''}, run started "
        f"{started:%Y-%m-%d %H:%M} UTC, {total / 60:.1f} min in all"
        f"{' — QUICK run: tiny sizes, not measurements' if args.quick else ''}",
        *([f"- Partial run: sections {', '.join(wanted)} only"
           + (f"; sizes changed with --set: {', '.join(args.set)}" if args.set else "")
           + (f"; corpus reused from {_rel(args.corpus)}" if args.corpus else "")]
          if args.only is not None or args.set or args.corpus else []),
        *([f"- Resumed run: {', '.join(resumed)} measured by an earlier process of the same "
           "run (same code and sizes, `--resume`); the total is the sum of the sections' "
           "wall times"] if resumed else []),
        f"- Machine: {_machine()}",
        "- `$WORK` below: the run's scratch folder "
        f"({'kept' if args.keep else 'deleted at the end'})",
        "- Load average (1 min) before and after each section is given with it: on a shared "
        "machine, wall times are upper bounds. Each row also gives a CPU check: the seconds one "
        "core took for a fixed piece of work just before the section (numpy FFT of 2^20 "
        "samples x 16, best of 3); a larger one means a slower machine, so compare timings "
        "across runs, or across the sections of a resumed one, only next to it.", "",
        "| section | wall time (s) | load before → after | CPU check (s) |", "|---|---:|---|---:|",
    ]
    for sec in SECTIONS:
        if sec.name in times:
            w, l0, l1, *rest = times[sec.name]  # sections saved before the check have none
            check = f"{rest[0]:.3f}" if rest else "—"
            header.append(f"| [{sec.title}](#{_anchor(sec.title)}) | {w:.0f} | "
                          f"{l0:.2f} → {l1:.2f} | {check} |")
    parts = ["\n".join(header) + "\n"]
    for sec in SECTIONS:
        if sec.name in bodies:
            parts.append(f"## {sec.title}\n\n{sec.about}\n\n{bodies[sec.name]}")
    text = "\n".join(parts).replace(str(work), "$WORK")
    for png in ctx.pngs:
        rel = os.path.relpath(results / png.name, args.out.parent)
        text = text.replace(f"](benchmarks/results/{png.name})", f"]({rel})")
    if failed:
        partial = work / "BENCHMARKS.partial.md"
        atomic_write_text(partial, text)
        print(f"error: {len(failed)} section(s) failed ({', '.join(failed)}); {args.out} was "
              f"left alone. Partial result: {partial}; logs: {work / 'logs'}", file=sys.stderr)
        return 1
    results.mkdir(parents=True, exist_ok=True)
    for png in ctx.pngs:
        shutil.copyfile(png, results / png.name)
    summary = {name: {m: {k: v for k, v in r.items() if k != "rows"} for m, r in group.items()}
               for name, group in ctx.reports.items()}
    if summary:
        atomic_write_text(results / "evaluate_summary.json", json.dumps(
            {"commit": commit, "started": f"{started:%Y-%m-%d %H:%M} UTC", **summary},
            indent=1))
    atomic_write_text(args.out, text)
    print(f"wrote {args.out} ({total / 60:.1f} min)"
          + (f" and {len(ctx.pngs)} plot(s) in {results}" if ctx.pngs else ""))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _section_file(work: Path, name: str) -> Path:
    return work / "sections" / f"{name}.json"


def _save_section(work: Path, name: str, signature: dict, record: dict,
                  pngs: list[Path]) -> None:
    """sections/NAME.json, and its plots copied next to it: the folder is self-contained, so
    it can be copied (or committed) and resumed from on another machine."""
    from genreshift.fsutil import atomic_write_text

    path = _section_file(work, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    for png in pngs:
        shutil.copyfile(png, path.parent / png.name)
    atomic_write_text(path, json.dumps({"signature": signature, **record,
                                        "pngs": [png.name for png in pngs]}, indent=1))


def _saved_sections(work: Path, signature: dict) -> dict[str, dict]:
    """The sections an earlier run of the same code and arguments finished in `work`."""
    folder = work / "sections"
    saved: dict[str, dict] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        try:
            rec = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise SystemExit(f"error: --resume: {path} is unreadable ({e}); delete it to "
                             "measure that section again") from None
        theirs, ours = rec.get("signature", {}), json.loads(json.dumps(signature))
        what = [k for k in ours if theirs.get(k) != ours[k]]
        if what:
            shown = {"code": "code (a commit that changed more than documentation)",
                     "changes": "uncommitted changes", "sizes": "sizes",
                     "corpus": "--corpus", "quick": "--quick"}
            raise SystemExit(
                f"error: --resume: section {path.stem} in {work} was measured with other "
                f"{', '.join(shown[k] for k in what)} (measured at commit {rec.get('commit')}); "
                "resume with the same code and arguments, or start a new --work folder")
        saved[path.stem] = rec
    if not saved:
        print(f"run_all: --resume: nothing saved in {work} yet; running every section",
              flush=True)
    return saved


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    keep = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
    return keep.replace(" ", "-")


if __name__ == "__main__":
    raise SystemExit(main())
