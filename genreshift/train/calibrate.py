"""The residual gain of trained converters, chosen on the validation split
(`genreshift train calibrate`).

A converter's generator predicts a bounded change to its input (residual), and its objective
pulls two ways: the adversarial and paired terms toward the target genre, the identity and
content terms toward the input. Trained on the 2 cores' budget, the change it learns points
the right way but stays small: the target genre's probability rises steadily as the change is
scaled up, and the distance to the paired ground truth falls at first. The gain ``g`` of
``x + g (G(x) - x)`` is therefore a property of a trained converter like its weights, and
it is chosen once, on data the converter never trained on, then stored in the file
(``checkpoint.set_converter_gain``) so that every caller (CLI, web page, library, evaluate)
applies the same conversion. ``--strength`` still runs from 0 (the input) to 1 (the
calibrated conversion).

The rule, per converter direction, over the candidate gains measured on the validation split
of a paired corpus (never its test split, never real recordings):

1. a candidate keeps the song when its outputs' mean chroma similarity to the inputs is at
   least ``CONTENT_CHROMA`` and their onset F-measure at least ``CONTENT_ONSET``; gain 1 is
   always a candidate (it is the converter as trained);
2. transfer is the independent feature judge's (evaluate.FeatureJudge: a logistic regression
   on MFCC / spectral-contrast statistics fitted on the train split), never the CNN
   classifier the converters were validated against, and never the real-music judge;
3. the chosen gain is the smallest candidate whose transfer is within ``TOLERANCE`` of the
   best candidate's: a larger change is taken only where it buys transfer.

Each candidate also reports the CENS chroma correlation (metrics.chroma_correlation), a
stricter content measure than the chroma cosine of rule 1; it is reported, not yet part of the
rule: on real music the cosine barely moves where the correlation falls
(docs/experiments/2026-12-06-real-strength), and its threshold is still to be chosen on
validation data.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from genreshift.errors import GenreshiftError

DEFAULT_GAINS = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
CONTENT_CHROMA = 0.9
CONTENT_ONSET = 0.9
TOLERANCE = 0.05


@dataclass(frozen=True)
class Candidate:
    """One gain's measurements over the validation clips one converter direction served."""

    gain: float
    clips: int
    judge_hit: float  # transfer by the feature judge (what the rule reads)
    cnn_hit: float  # transfer by the model folder's classifier (reported only)
    lsd_db: float  # to the paired ground truth
    chroma: float
    onset_f: float
    chroma_corr: float | None = None  # CENS correlation; reported, not in the rule

    def keeps_content(self) -> bool:
        return self.chroma >= CONTENT_CHROMA and self.onset_f >= CONTENT_ONSET


def choose_gain(candidates: Sequence[Candidate]) -> tuple[Candidate, str]:
    """The candidate the rule picks (see the module docstring), and why, in words."""
    if not candidates:
        raise GenreshiftError("no candidate gain was measured")
    kept = [c for c in candidates if c.keeps_content() or c.gain == 1.0]
    if not kept:
        kept = [min(candidates, key=lambda c: abs(c.gain - 1.0))]
    best = max(c.judge_hit for c in kept)
    chosen = min((c for c in kept if c.judge_hit >= best - TOLERANCE), key=lambda c: c.gain)
    dropped = sorted(c.gain for c in candidates if c not in kept)
    why = (f"smallest gain within {TOLERANCE * 100:.0f} points of the best feature-judge "
           f"transfer ({best:.0%}) among the gains that keep the song (chroma >= {CONTENT_CHROMA}, "
           f"onset F >= {CONTENT_ONSET})")
    if dropped:
        why += f"; {', '.join(f'{g:g}' for g in dropped)} lost too much of it"
    return chosen, why


def _summary(rows: list[dict], gain: float) -> Candidate:
    """One gain's candidate from evaluate's rows: the same means evaluate reports."""
    from genreshift.inference.evaluate import _summarise

    s = _summarise(rows)
    return Candidate(gain=gain, clips=s["clips"], judge_hit=s["judge_hit"],
                     cnn_hit=s["cnn_hit"], lsd_db=s["lsd_db"], chroma=s["chroma"],
                     onset_f=s["onset_f"], chroma_corr=s["chroma_corr"])


def calibrate(models_dir: str | Path, corpus_dir: str | Path, *,
              gains: Sequence[float] = DEFAULT_GAINS, split: str = "valid",
              tunes: int | None = None, seconds: float | None = None, jobs: int = 1,
              write: bool = True, progress: bool = False) -> dict:
    """Measure every converter direction of ``models_dir`` at each gain on ``split`` of the
    paired corpus, choose each one's gain, and (``write``) store it in the converter files.
    Returns the report: per converter direction, every candidate, the choice and why."""
    from genreshift import checkpoint
    from genreshift.inference import convert as tconv
    from genreshift.inference import evaluate as ev

    if split == "test":
        raise GenreshiftError("--split test: the test split is what the calibrated models are "
                              "measured on; calibrate on the validation split (valid)")
    gains = sorted({checkpoint.check_gain(g, "--gains") for g in gains} | {1.0})
    corpus = ev.Corpus.open(corpus_dir)
    models = tconv.scan_models(models_dir)
    genres = corpus.genres()
    targets = [t for t in models.targets() if t in genres]
    if not targets:
        raise GenreshiftError(f"{models_dir}: no converter produces a genre of {corpus_dir} "
                              f"({', '.join(genres)}); nothing to calibrate")
    pairs = [(s, t) for t in targets for s in genres if s != t]
    # which converter direction serves each pair, as convert and evaluate choose it
    served = {p: tconv.choose_converter(models, p[1], p[0]) for p in pairs}
    judge = ev.fit_feature_judge(corpus, seconds=seconds, progress=progress)
    rows_by_gain = {}
    for g in gains:
        report = ev.evaluate(corpus, "trained", split=split, pairs=pairs, models_dir=models_dir,
                             tunes=tunes, seconds=seconds, judge=judge, jobs=jobs, gain=g,
                             progress=progress)
        rows_by_gain[g] = report["rows"]
        tunes_used = report["tunes"]
    out: dict = {"split": split, "tunes": tunes_used, "seconds": seconds, "gains": gains,
                 "rule": {"content_chroma": CONTENT_CHROMA, "content_onset": CONTENT_ONSET,
                          "tolerance": TOLERANCE, "judge": "feature judge (train split)"},
                 "corpus": str(corpus_dir), "converters": []}
    keys = sorted({(info.path, d) for info, d in served.values()}, key=lambda k: str(k))
    for path, direction in keys:
        mine = {p for p, (info, d) in served.items() if (info.path, d) == (path, direction)}
        cands = []
        for g in gains:
            sel = [r for r in rows_by_gain[g] if (r["source"], r["target"]) in mine]
            if sel:
                cands.append(_summary(sel, g))
        if not cands:
            continue
        chosen, why = choose_gain(cands)
        entry = {"file": str(path), "direction": direction,
                 "targets": sorted({t for _, t in mine}), "gain": chosen.gain, "why": why,
                 "candidates": [asdict(c) for c in cands]}
        if write:
            record = {k: v for k, v in entry.items() if k not in ("file",)}
            record.update(split=split, tunes=tunes_used, seconds=seconds,
                          date=dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
            checkpoint.set_converter_gain(path, {direction: chosen.gain}, record)
        out["converters"].append(entry)
    return out


def format_report(report: dict) -> str:
    """The calibration as a Markdown table per converter direction."""
    part = "" if report["seconds"] is None else f", first {report['seconds']:g} s"
    lines = [f"Calibrated on split '{report['split']}' ({report['tunes']} tunes{part}):"]
    for c in report["converters"]:
        lines += ["", f"{Path(c['file']).name} ({c['direction']}, to "
                      f"{', '.join(c['targets'])}): gain {c['gain']:g} — {c['why']}", "",
                  "| gain | clips | transfer, feature judge | transfer, classifier | LSD (dB) | "
                  "chroma | chroma corr. (CENS) | onset F |",
                  "|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for x in c["candidates"]:
            mark = " **(chosen)**" if x["gain"] == c["gain"] else ""
            corr = "—" if x.get("chroma_corr") is None else f"{x['chroma_corr']:.3f}"
            lines.append(f"| {x['gain']:g}{mark} | {x['clips']} | {x['judge_hit']:.0%} | "
                         f"{x['cnn_hit']:.0%} | {x['lsd_db']:.2f} | {x['chroma']:.3f} | "
                         f"{corr} | {x['onset_f']:.3f} |")
    return "\n".join(lines)


__all__ = ["CONTENT_CHROMA", "CONTENT_ONSET", "Candidate", "DEFAULT_GAINS", "TOLERANCE",
           "calibrate", "choose_gain", "format_report"]
