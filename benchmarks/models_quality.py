"""Generator designs compared on quality per CPU budget, with the library's own training code.

On a paired corpus (every tune rendered in every genre: the synthetic corpus, as a mel
directory), for one direction ``--a`` -> ``--b``:

1. train a genre classifier (the judge) on the train split, ``--classifier-steps`` steps;
2. train a converter per candidate generator design for ``--steps`` steps, same seed, same
   data, same discriminator (genreshift.train.cyclegan.train_cyclegan);
3. on every ``--split`` tune that has renderings in both domains, convert the whole a-rendering
   with G_ab and measure, next to the identity baseline (the input unchanged):

   - transfer accuracy: share of converted clips the classifier labels as a genre of b;
   - LSD (dB) between the converted log-mel and the tune's real rendering in b;
   - cycle L1 of the whole clip (a -> b -> a) in the normalised log-mel range;

   and the wall time and steps/s of the training.

A few hundred steps are far from converged; the point is the comparison at an equal budget.
Run: ``.venv/bin/python benchmarks/models_quality.py --data MELDIR --a rest --b jazz
--out RUNDIR [--candidates 212d-16 2d-16] [--steps 300]``; every run directory is a normal
`genreshift train` run (TensorBoard in RUNDIR/<candidate>/tb).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from genreshift.data.windows import load_manifest
from genreshift.inference.metrics import mel_lsd
from genreshift.models.classifier import ClassifierConfig, classify_clip
from genreshift.models.config import DiscriminatorConfig, GeneratorConfig
from genreshift.spectral import MelConfig
from genreshift import checkpoint as ckpt
from genreshift.train.classifier import train_classifier
from genreshift.train.config import ClassifierTrainConfig, TrainConfig
from genreshift.train.cyclegan import train_cyclegan

CANDIDATES = {
    "212d-8": GeneratorConfig(variant="212d", channels=8, core_channels=128),
    "212d-16": GeneratorConfig(variant="212d", channels=16, core_channels=128),
    "212d-32": GeneratorConfig(variant="212d", channels=32, core_channels=256),
    "2d-16": GeneratorConfig(variant="2d", channels=16),
}


def paired_clips(meldir: Path, split: str) -> dict[str, dict[str, torch.Tensor]]:
    """{tune: {genre: log-mel [n_mels, frames]}} of one split (clips need a ``group``)."""
    manifest = load_manifest(meldir)
    maps: dict[str, np.ndarray] = {}
    out: dict[str, dict[str, torch.Tensor]] = defaultdict(dict)
    for c in manifest["clips"]:
        if c["split"] != split or "group" not in c:
            continue
        if c["shard"] not in maps:
            maps[c["shard"]] = np.load(meldir / c["shard"], mmap_mode="r")
        block = maps[c["shard"]][:, c["offset"]:c["offset"] + c["frames"]]
        out[c["group"]][c["genre"]] = torch.from_numpy(np.array(block, dtype=np.float32))
    return dict(out)


@torch.no_grad()
def evaluate(conv: ckpt.Converter, clf: ckpt.Classifier, pairs: dict, mel: MelConfig) -> dict:
    rows = defaultdict(list)
    for renderings in pairs.values():
        targets = [g for g in conv.b.genres if g in renderings]
        if not targets:
            continue
        target = renderings[targets[0]]
        for g in conv.a.genres:
            if g not in renderings:
                continue
            x = renderings[g]
            fake = conv.g_ab(x[None])[0]
            n = min(fake.shape[-1], target.shape[-1])
            rows["lsd"].append(mel_lsd(target[:, :n], fake[:, :n], mel))
            rows["lsd_identity"].append(mel_lsd(target[:, :n], x[:, :n], mel))
            rows["cycle_l1"].append(float((conv.g_ba(fake[None])[0] - x).abs().mean()))
            for key, m in (("transfer", fake), ("transfer_identity", x)):
                top = clf.genres[int(classify_clip(clf.model, m).argmax())]
                rows[key].append(float(top in conv.b.genres))
    return {k: round(float(np.mean(v)), 4) for k, v in rows.items()} | {
        "clips": len(rows["lsd"])}


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="mel directory of a paired corpus")
    ap.add_argument("--a", default="rest")
    ap.add_argument("--b", default="jazz")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--candidates", nargs="+", default=["212d-16", "2d-16"],
                    choices=list(CANDIDATES))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--frames", type=int, default=128)
    ap.add_argument("--classifier-steps", type=int, default=400)
    ap.add_argument("--split", default="test")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    print(f"# load average before: {load_average()}", flush=True)
    clf_dir = args.out / "classifier"
    t = time.perf_counter()
    train_classifier(args.data, clf_dir, config=ClassifierTrainConfig(
        steps=args.classifier_steps, checkpoint_every=args.classifier_steps,
        val_every=args.classifier_steps, threads=args.threads, device="cpu"),
        model=ClassifierConfig(), resume=True, progress=False)
    clf = ckpt.load_classifier(clf_dir / "classifier.pt")
    print(f"classifier: {args.classifier_steps} steps in {time.perf_counter() - t:.0f} s",
          flush=True)
    pairs = paired_clips(args.data, args.split)
    results = []
    for name in args.candidates:
        run_dir = args.out / name
        config = TrainConfig(steps=args.steps, batch_size=args.batch_size, frames=args.frames,
                             checkpoint_every=max(1, args.steps // 2), val_every=args.steps,
                             sample_every=args.steps, threads=args.threads, device="cpu")
        t = time.perf_counter()
        state = train_cyclegan(args.data, run_dir, a=args.a, b=args.b, config=config,
                               generator=CANDIDATES[name], discriminator=DiscriminatorConfig(),
                               classifier=clf_dir / "classifier.pt", resume=True,
                               progress=False)
        wall = time.perf_counter() - t
        conv = ckpt.load_converter(run_dir / "converter.pt")
        torch.set_num_threads(args.threads)
        metrics = evaluate(conv, clf, pairs, conv.mel_config)
        row = {"candidate": name, "config": CANDIDATES[name].to_dict(), "steps": state.step,
               "train_wall_s": round(wall, 1),
               "train_s_recorded": conv.provenance.get("train_seconds"),
               "steps_per_s": round(args.steps / wall, 3), **metrics,
               "load_after": load_average()}
        results.append(row)
        print(json.dumps(row), flush=True)
    (args.out / "quality.json").write_text(json.dumps(results, indent=1))
    print(f"# load average after: {load_average()}")


if __name__ == "__main__":
    main()
