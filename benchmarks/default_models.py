"""The shipped converters measured on held-out tunes of the synthetic paired corpus.

For every converter ``rest -> G`` in ``--models`` and every ``--split`` tune rendered in G and
in some other genre S, the S rendering is converted to G exactly as `genreshift convert --to G
--from S` does (generator over windows, reconstruction from the input's phase, loudness match),
and the *reconstructed audio* is analysed again and measured:

- transfer: the classifier's label of the output (accuracy: share labelled G) and its mean
  probability of G;
- distance to the ground truth: LSD (dB) between the output's log-mel and the log-mel of the
  tune's real rendering in G;
- content kept: chroma cosine similarity between input and output (metrics.chroma_similarity);
- speed: seconds per conversion of the mel part and of the reconstruction.

The identity baseline is the S rendering analysed and reconstructed unchanged, measured the
same way against the same targets. ``--window-sweep`` also reports transfer on the converted
log-mels (no reconstruction) for several generator window lengths, which chose
convert.DEFAULT_WINDOW.

Run: ``.venv/bin/python benchmarks/default_models.py --data data/synth --models checkpoints
--out results.json [--jobs 2] [--window-sweep]``
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import time
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from genreshift import spectral
from genreshift.inference import convert as tconv
from genreshift.inference.metrics import chroma_similarity, mel_lsd
from genreshift.inference.pipeline import (
    ReconstructionConfig,
    analyse,
    load_song,
    synthesise,
)
from genreshift.models.classifier import classify_clip

SWEEP = (128, 256, 512, 1024, None)  # None: the whole clip in one piece


def _rows(data: Path, split: str) -> dict[str, dict[str, Path]]:
    """tune -> genre -> audio path, for the tunes of ``split``."""
    out: dict[str, dict[str, Path]] = defaultdict(dict)
    with open(data / "metadata.csv", newline="") as f:
        for r in csv.DictReader(f):
            if r["split"] == split:
                out[r["tune"]][r["genre"]] = data / r["file_name"]
    return dict(out)


def _probs(cache, clf_path, wav: np.ndarray, cfg) -> dict[str, float]:
    clf = cache.classifier(clf_path)
    mel = spectral.wav_to_mel(torch.from_numpy(np.ascontiguousarray(wav[0])), cfg)
    return dict(zip(clf.genres, classify_clip(clf.model, mel).tolist()))


def _target_mel(path: Path, cfg) -> torch.Tensor:
    audio, sr = load_song(path, mono=True)
    return analyse(audio, sr, cfg).mel[0]


def _measure(probs: dict[str, float], target: str, truth: torch.Tensor, out_mel: torch.Tensor,
             audio: np.ndarray, wav: np.ndarray, sr: int, cfg) -> dict:
    return {"target": target, "hit": max(probs, key=probs.get) == target,
            "p_target": probs[target], "lsd_db": mel_lsd(truth, out_mel, cfg),
            "chroma": chroma_similarity(audio[0], wav[0], sr)}


def evaluate_source(args: tuple) -> dict:
    """All measurements for the tunes rendered in one source genre (one process)."""
    models_dir, data, split, source, window, sweep, max_tunes = args
    torch.set_num_threads(1)
    models = tconv.scan_models(models_dir)
    targets = [t for t in sorted(models.targets()) if t != source]
    cache = tconv.ModelCache(torch.device("cpu"))
    recon = ReconstructionConfig()
    tunes = sorted((t, g) for t, g in _rows(Path(data), split).items() if source in g)
    conv_rows, id_rows, sweep_rows, own = [], [], defaultdict(list), []
    for tune, by_genre in tunes[:max_tunes]:
        audio, sr = load_song(by_genre[source], mono=True)
        plans = [(t, *tconv.choose_converter(models, t, source)) for t in targets
                 if t in by_genre]
        if not plans:
            continue
        cfg = cache.mel_config(plans[0][1])
        analysis = analyse(audio, sr, cfg)
        ident = synthesise(analysis.mel, analysis, recon)
        ident_probs = _probs(cache, models.classifier, ident, cfg)
        ident_mel = analyse(ident, sr, cfg).mel[0]
        own.append(max(ident_probs, key=ident_probs.get) == source)
        for target, info, direction in plans:
            gen = cache.generator(info, direction)
            truth = _target_mel(by_genre[target], cfg)
            t0 = time.perf_counter()
            mel_out = tconv.convert_mel(analyse(audio, sr, cfg).mel, [(gen, 1.0)],
                                        stride=cache.stride(info), window=window,
                                        overlap=tconv.overlap_for(window))
            t1 = time.perf_counter()
            out = synthesise(mel_out, analysis, recon)
            t2 = time.perf_counter()
            row = _measure(_probs(cache, models.classifier, out, cfg), target, truth,
                           analyse(out, sr, cfg).mel[0], audio, out, sr, cfg)
            row.update(tune=tune, source=source, convert_s=t1 - t0, reconstruct_s=t2 - t1,
                       seconds=audio.shape[-1] / sr)
            conv_rows.append(row)
            row = _measure(ident_probs, target, truth, ident_mel, audio, ident, sr, cfg)
            row.update(tune=tune, source=source)
            id_rows.append(row)
            if sweep:
                clf = cache.classifier(models.classifier)
                k = clf.genres.index(target)
                with torch.inference_mode():
                    for w in SWEEP:
                        m = (gen(analysis.mel) if w is None else tconv.convert_mel(
                            analysis.mel, [(gen, 1.0)], stride=cache.stride(info), window=w,
                            overlap=tconv.overlap_for(w)))
                        probs = classify_clip(clf.model, m[0])
                        sweep_rows[str(w or "whole")].append(
                            (int(probs.argmax()) == k, float(probs[k])))
    return {"converted": conv_rows, "identity": id_rows, "sweep": dict(sweep_rows),
            "source_correct": own}


def _summary(rows: list[dict]) -> dict:
    if not rows:
        return {}
    return {
        "clips": len(rows),
        "transfer_accuracy": float(np.mean([r["hit"] for r in rows])),
        "p_target": float(np.mean([r["p_target"] for r in rows])),
        "lsd_db": float(np.mean([r["lsd_db"] for r in rows])),
        "chroma": float(np.mean([r["chroma"] for r in rows])),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data/synth"),
                    help="the synthetic corpus (metadata.csv + renderings)")
    ap.add_argument("--models", type=Path, default=Path("checkpoints"))
    ap.add_argument("--split", default="test")
    ap.add_argument("--jobs", type=int, default=2, help="processes (one target genre each)")
    ap.add_argument("--window", type=int, default=tconv.DEFAULT_WINDOW)
    ap.add_argument("--window-sweep", action="store_true")
    ap.add_argument("--tunes", type=int, default=None, help="at most N tunes per source")
    ap.add_argument("--out", type=Path, help="write every measurement as JSON")
    args = ap.parse_args()
    models = tconv.scan_models(args.models)
    targets = sorted(models.targets())
    if models.classifier is None or not targets:
        raise SystemExit(f"{args.models}: needs converters and classifier.pt")
    t0 = time.perf_counter()
    sources = sorted({g for by in _rows(args.data, args.split).values() for g in by})
    jobs = [(args.models, args.data, args.split, s, args.window, args.window_sweep, args.tunes)
            for s in sources]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        per_source = list(pool.map(evaluate_source, jobs))
    results = []
    for t in targets:
        results.append({"target": t, **{k: [r for p in per_source for r in p[k]
                                             if r["target"] == t]
                                        for k in ("converted", "identity")}})
    sweep_all: dict[str, list] = defaultdict(list)
    for p in per_source:
        for k, v in p["sweep"].items():
            sweep_all[k] += v
    wall = time.perf_counter() - t0
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, check=False,
                            text=True).stdout.strip()
    report = {"date": time.strftime("%Y-%m-%d %H:%M"), "commit": commit,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores",
              "window": args.window, "wall_s": round(wall, 1), "per_target": {}}
    print(f"held-out split '{args.split}', window {args.window}, {wall:.0f} s "
          f"({args.jobs} processes), commit {commit}\n")
    print("| target | clips | transfer acc. (identity) | p(target) (identity) | "
          "LSD to truth dB (identity) | chroma kept (identity) |")
    print("|---|---|---|---|---|---|")
    all_conv, all_id = [], []
    for r in results:
        c, i = _summary(r["converted"]), _summary(r["identity"])
        all_conv += r["converted"]
        all_id += r["identity"]
        report["per_target"][r["target"]] = {"converted": c, "identity": i}
        print(f"| {r['target']} | {c['clips']} | {c['transfer_accuracy']:.0%} "
              f"({i['transfer_accuracy']:.0%}) | {c['p_target']:.2f} ({i['p_target']:.2f}) | "
              f"{c['lsd_db']:.2f} ({i['lsd_db']:.2f}) | {c['chroma']:.3f} ({i['chroma']:.3f}) |")
    c, i = _summary(all_conv), _summary(all_id)
    report["overall"] = {"converted": c, "identity": i}
    print(f"| **all** | {c['clips']} | **{c['transfer_accuracy']:.0%}** "
          f"({i['transfer_accuracy']:.0%}) | {c['p_target']:.2f} ({i['p_target']:.2f}) | "
          f"**{c['lsd_db']:.2f}** ({i['lsd_db']:.2f}) | **{c['chroma']:.3f}** "
          f"({i['chroma']:.3f}) |")
    secs = np.mean([r["seconds"] for r in all_conv])
    conv_s = np.mean([r["convert_s"] for r in all_conv])
    rec_s = np.mean([r["reconstruct_s"] for r in all_conv])
    report["speed"] = {"clip_seconds": secs, "mel_and_generator_s": conv_s,
                       "reconstruction_s": rec_s}
    print(f"\nper {secs:.0f} s clip (1 thread, {args.jobs} processes): analysis + generator "
          f"{conv_s:.3f} s, reconstruction {rec_s:.3f} s")
    own = [h for p in per_source for h in p["source_correct"]]
    report["classifier_accuracy_on_inputs"] = float(np.mean(own))
    print(f"classifier accuracy on the unconverted inputs (reconstructed): {np.mean(own):.1%} "
          f"of {len(own)}")
    print(f"LSD change vs identity: {(c['lsd_db'] - i['lsd_db']) / i['lsd_db']:+.1%}")
    if args.window_sweep:
        sweep = sweep_all
        report["window_sweep"] = {k: {"transfer_accuracy": float(np.mean([h for h, _ in v])),
                                      "p_target": float(np.mean([p for _, p in v]))}
                                  for k, v in sweep.items()}
        print("\nwindow (frames) | transfer acc. on converted log-mel | p(target)")
        for k, v in report["window_sweep"].items():
            print(f"{k} | {v['transfer_accuracy']:.0%} | {v['p_target']:.2f}")
    if args.out:
        report["rows"] = {r["target"]: {"converted": r["converted"], "identity": r["identity"]}
                          for r in results}
        args.out.write_text(json.dumps(report, indent=1, default=float))
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
