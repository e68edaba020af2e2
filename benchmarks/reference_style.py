"""Reference mode's style spaces compared on the paired synthetic corpus (issue 16).

Runs `genreshift evaluate`'s library call (genreshift.inference.evaluate) for reference mode
under several settings, on the same clips, the same references (a random other tune of the
target genre, drawn per tune from the seed) and the same two judges (the shipped CNN classifier
and the feature judge fitted on the train split), and prints one markdown table: transfer by
both judges, LSD to the real rendering of the tune in the target genre, chroma kept, onset
F-measure, and the work per second of audio. ``gram-baseline`` (the published method) can be
one of the rows.

    python benchmarks/reference_style.py --data data/synth --split valid --tunes 2 \\
        --seconds 10 --run today=space=random,chroma=0 --run new=space=classifier

A --run is NAME=KEY=VALUE,...; keys: space (classifier|random), chroma (chroma_weight),
content (content_weight), style (style_weight), steps, model (style_model path), blocks,
scales (beat/bar seconds, '/'-separated, '' for none). NAME=gram-baseline runs the published
method instead. The feature judge is fitted on --judge-per-genre train renderings of each genre
the shipped classifier knows (the genres evaluated), once, and cached (--judge-cache).

Evaluation runs in this process (jobs 1), because the settings are applied by wrapping
reference_transfer here; that also keeps it to one core on a shared machine.
"""

from __future__ import annotations

import argparse
import functools
import json
import pickle
import time
from pathlib import Path

import numpy as np

from genreshift.inference import evaluate as ev
from genreshift.inference import reference as ref_mode
from genreshift.models.style import StyleConfig


def parse_run(text: str) -> tuple[str, dict]:
    name, _, rest = text.partition("=")
    kw: dict = {}
    style_cfg: dict = {}
    for part in filter(None, rest.split(",")):
        k, _, v = part.partition("=")
        if k == "space":
            kw["style_space"] = v
        elif k in ("chroma", "content", "style"):
            kw[f"{k}_weight"] = float(v)
        elif k == "steps":
            kw["steps"] = int(v)
        elif k == "model":
            kw["style_model"] = v
        elif k == "blocks":
            style_cfg["blocks"] = int(v)
        elif k == "scales":
            style_cfg["scales_s"] = tuple(float(s) for s in v.split("/") if s)
        else:
            raise SystemExit(f"--run {text}: unknown key {k}")
    if style_cfg:
        kw["style_config"] = StyleConfig(**style_cfg)
    return name, kw


def judge(corpus: ev.Corpus, genres: list[str], seconds: float | None, per_genre: int,
          cache: Path | None) -> ev.FeatureJudge:
    """The feature judge, fitted on the train split's first ``per_genre`` renderings of each
    of ``genres`` (the genres evaluated), first ``seconds`` of each."""
    if cache is not None and cache.exists():
        return pickle.loads(cache.read_bytes())
    from genreshift.audio import load_audio

    t = time.perf_counter()
    feats, labels = [], []
    for g in genres:
        rows = sorted((r for r in corpus.rows if r["split"] == "train" and r["genre"] == g),
                      key=lambda r: r["tune"])[:per_genre]
        for r in rows:
            audio, sr = load_audio(corpus.root / r["file_name"], mono=True)
            cut = audio[0] if seconds is None else audio[0, :round(seconds * sr)]
            feats.append(ev.clip_features(cut, sr))
            labels.append(g)
    j = ev.FeatureJudge().fit(np.stack(feats), labels)
    print(f"feature judge fitted on {len(labels)} train renderings in "
          f"{time.perf_counter() - t:.0f} s", flush=True)
    if cache is not None:
        cache.write_bytes(pickle.dumps(j))
    return j


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="data/synth")
    ap.add_argument("--split", default="valid")
    ap.add_argument("--tunes", type=int, default=2)
    ap.add_argument("--pairs", default=None, help="source:target,...; default: every ordered "
                    "pair of the genres the shipped classifier knows")
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run", action="append", required=True)
    ap.add_argument("--judge-cache", type=Path)
    ap.add_argument("--judge-per-genre", type=int, default=96,
                    help="train renderings per genre the feature judge is fitted on")
    ap.add_argument("--out", type=Path, help="folder for one report JSON per run")
    a = ap.parse_args()

    corpus = ev.Corpus.open(a.data)
    from genreshift.inference import convert as tconv

    clf = ev._cache().classifier(tconv.scan_models(None).classifier)
    known = [g for g in corpus.genres() if g in clf.genres]
    pairs = ev.parse_pairs(a.pairs, corpus.genres() if a.pairs else known)
    j = judge(corpus, known, a.seconds, a.judge_per_genre, a.judge_cache)
    original = ref_mode.reference_transfer
    rows = []
    for text in a.run:
        name, kw = parse_run(text)
        method = "gram-baseline" if name == "gram-baseline" else "reference"
        ref_mode.reference_transfer = functools.partial(original, **kw)
        t = time.perf_counter()
        try:
            report = ev.evaluate(corpus, method, split=a.split, pairs=pairs, tunes=a.tunes,
                                 seconds=a.seconds, seed=a.seed, judge=j, progress=False,
                                 steps=kw.get("steps"))
        finally:
            ref_mode.reference_transfer = original
        wall = time.perf_counter() - t
        m = report["overall"]["method"]
        rows.append((name, text, m, wall))
        print(f"| {name} | {m['clips']} | {m['cnn_hit']:.0%} | {m['judge_hit']:.0%} | "
              f"{m['cnn_p']:.2f} | {m['judge_p']:.2f} | {m['lsd_db']:.2f} | {m['chroma']:.3f} | "
              f"{m['onset_f']:.3f} | {m['rtf']:.2f} | {wall:.0f} |", flush=True)
        if a.out is not None:
            a.out.mkdir(parents=True, exist_ok=True)
            report["settings"] = text
            (a.out / f"{name}.json").write_text(json.dumps(report, default=str))
    floor = report["overall"]["floor"]
    print()
    print(f"{a.split} split, {report['tunes']} tunes x {len(pairs)} pairs, first {a.seconds:g} s")
    print("| run | clips | transfer, classifier | transfer, feature judge | p(target) clf | "
          "p(target) judge | LSD to truth (dB) | chroma kept | onset F | work per s of audio "
          "(s) | wall (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| *floor (identity)* | {floor['clips']} | {floor['cnn_hit']:.0%} | "
          f"{floor['judge_hit']:.0%} | {floor['cnn_p']:.2f} | {floor['judge_p']:.2f} | "
          f"{floor['lsd_db']:.2f} | {floor['chroma']:.3f} | {floor['onset_f']:.3f} | "
          f"{floor['rtf']:.2f} | — |")
    for name, text, m, wall in rows:
        print(f"| {name} (`{text.partition('=')[2] or 'defaults'}`) | {m['clips']} | "
              f"{m['cnn_hit']:.0%} | {m['judge_hit']:.0%} | {m['cnn_p']:.2f} | "
              f"{m['judge_p']:.2f} | {m['lsd_db']:.2f} | {m['chroma']:.3f} | "
              f"{m['onset_f']:.3f} | {m['rtf']:.2f} | {wall:.0f} |")


if __name__ == "__main__":
    main()
