"""Transfer of the shipped converters for several generator window lengths.

For every test-split tune rendered in a source genre S and a target G (every converter
``rest -> G`` in ``--models``), the S rendering's log-mel is converted to G over windows of
128, 256, 512 and 1024 frames (cross-faded, as `genreshift convert` does) and in one pass over
the whole clip, and the *converted log-mel* (no reconstruction) is judged by the shipped
classifier: transfer accuracy (share labelled G) and mean p(G). This chose
convert.DEFAULT_WINDOW. The full evaluation of the chosen setting, reconstruction included,
is `genreshift evaluate --method trained`.

Run: ``.venv/bin/python benchmarks/window_sweep.py --data data/synth --models checkpoints``
"""

from __future__ import annotations

import argparse
import multiprocessing
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from genreshift.inference import convert as tconv
from genreshift.inference.evaluate import Corpus
from genreshift.inference.pipeline import Song, load_song

ROOT = Path(__file__).resolve().parents[1]
SWEEP = (128, 256, 512, 1024, None)  # None: the whole clip in one piece


def sweep_source(args: tuple) -> dict[str, list[tuple[bool, float]]]:
    """(hit, p(target)) per window length for the tunes rendered in one source genre."""
    models_dir, data, split, source, max_tunes = args
    torch.set_num_threads(1)
    models = tconv.scan_models(models_dir)
    cache = tconv.ModelCache("cpu")
    clf = cache.classifier(models.classifier)
    out: dict[str, list[tuple[bool, float]]] = defaultdict(list)
    tunes = Corpus.open(data).tunes(split)
    for name in [t for t in sorted(tunes) if source in tunes[t]][:max_tunes]:
        by_genre = tunes[name]
        audio, sr = load_song(by_genre[source], mono=True)
        mid = Song(by_genre[source], audio, sr).mid(clf.mel_config)[None]
        for target in sorted(models.targets()):
            if target == source or target not in by_genre:
                continue
            info, direction = tconv.choose_converter(models, target, source)
            # the converter's change times its calibrated gain, as convert applies it
            gens = [(cache.generator(info, direction), info.gain(direction))]
            k = clf.genres.index(target)
            for w in SWEEP:
                m = (tconv.blend_fn(gens, 1.0)(mid) if w is None else tconv.convert_mel(
                    mid, gens, stride=info.stride, window=w, overlap=tconv.overlap_for(w)))
                probs = clf.classify_clip(m[0])
                out[str(w or "whole")].append((int(probs.argmax()) == k, float(probs[k])))
    return dict(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data/synth"),
                    help="the synthetic corpus (metadata.csv + renderings)")
    ap.add_argument("--models", type=Path, default=ROOT / "checkpoints")
    ap.add_argument("--split", default="test")
    ap.add_argument("--jobs", type=int, default=2, help="processes (one source genre each)")
    ap.add_argument("--tunes", type=int, default=None, help="at most N tunes per source genre")
    args = ap.parse_args()
    models = tconv.scan_models(args.models)
    if models.classifier is None or not models.targets():
        raise SystemExit(f"{args.models}: needs converters and classifier.pt")
    sources = Corpus.open(args.data).genres()
    with ProcessPoolExecutor(max_workers=args.jobs,
                             mp_context=multiprocessing.get_context("spawn")) as pool:
        parts = list(pool.map(sweep_source, [(args.models, args.data, args.split, s, args.tunes)
                                             for s in sources]))
    print("| window (frames) | conversions | transfer accuracy | p(target) |")
    print("|---|---:|---:|---:|")
    for w in SWEEP:
        key = str(w or "whole")
        hits = [h for p in parts for h in p.get(key, [])]
        default = " (default)" if w == tconv.DEFAULT_WINDOW else ""
        print(f"| {key}{default} | {len(hits)} | {np.mean([h for h, _ in hits]):.0%} "
              f"| {np.mean([p for _, p in hits]):.2f} |")


if __name__ == "__main__":
    main()
