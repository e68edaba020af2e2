"""Are genre and content separable in the synthetic corpus?

Two measurements on a synth corpus (built here unless --corpus points at one):

1. Genre is recognisable: a logistic regression on MFCC statistics (mean and standard
   deviation of 20 MFCCs, plus their deltas) is trained on the renderings of some tunes and
   asked the genre of renderings of tunes it never saw. Reported for the corpus's own split
   (train tunes -> valid+test tunes) and for 5-fold cross-validation grouped by tune.
2. Content survives the genre change: frame-by-frame chroma cosine similarity (the
   renderings of one tune are time-aligned) between two renderings of the same tune in
   different genres, against two different tunes in the same genre and in different genres.
   AUC = probability that a same-tune pair scores above a different-tune pair.

Prints markdown tables and the command that produced them.

    .venv/bin/python benchmarks/separability.py --tunes 50 --seconds 30 --seed 0
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

import numpy as np


def _features(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(MFCC statistics [80], chroma [12, frames] with unit-norm frames) of one clip."""
    import librosa

    from genreshift.audio import load_audio
    from genreshift.inference import metrics

    audio, sr = load_audio(path, mono=True)
    y = audio[0]
    mfcc = librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20, n_fft=2048, hop_length=512)
    delta = librosa.feature.delta(mfcc)
    stats = np.concatenate([mfcc.mean(1), mfcc.std(1), delta.mean(1), delta.std(1)])
    return stats.astype(np.float64), metrics.chroma(y, sr)


def _frame_cosine(a: np.ndarray, b: np.ndarray) -> float:
    n = min(a.shape[1], b.shape[1])
    return float((a[:, :n] * b[:, :n]).sum(axis=0).mean())


def _auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """P(pos > neg) + 0.5 P(pos == neg), by ranks."""
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2)
                 / (len(pos) * len(neg)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", help="an existing synth corpus (default: build one)")
    ap.add_argument("--out", help="where to build the corpus (default: a temporary folder)")
    ap.add_argument("--tunes", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--genres", default="classical,jazz,rock,electronic,hiphop")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--pairs", type=int, default=3000,
                    help="different-tune pairs sampled per category")
    args = ap.parse_args(argv)

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import confusion_matrix
    from sklearn.model_selection import GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from genreshift.data.synth import build_synth_corpus, read_metadata

    command = "python benchmarks/separability.py " + shlex.join(argv or sys.argv[1:])
    load_before = os.getloadavg()
    tmp = None
    if args.corpus:
        corpus = Path(args.corpus)
    else:
        if args.out:
            corpus = Path(args.out)
        else:
            tmp = tempfile.TemporaryDirectory(prefix="synth-sep-")
            corpus = Path(tmp.name) / "corpus"
        summary = build_synth_corpus(corpus, args.genres, args.tunes, args.seconds,
                                     seed=args.seed, workers=args.workers)
        print(f"built {summary['renderings']} clips in {summary['wall_seconds']:.1f} s",
              file=sys.stderr)
    rows = read_metadata(corpus)
    genres = list(dict.fromkeys(r["genre"] for r in rows))
    t0 = time.perf_counter()
    feats, chromas = [], []
    for r in rows:
        f, c = _features(corpus / r["file_name"])
        feats.append(f)
        chromas.append(c)
    feature_s = time.perf_counter() - t0
    X = np.stack(feats)
    y = np.array([genres.index(r["genre"]) for r in rows])
    tunes = np.array([r["tune"] for r in rows])
    split = np.array([r["split"] for r in rows])

    def model():
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, C=1.0))

    train = split == "train"
    held = ~train
    clf = model().fit(X[train], y[train])
    split_acc = float((clf.predict(X[held]) == y[held]).mean())

    n_folds = min(5, len(set(tunes)))
    pred = np.zeros_like(y)
    for tr, te in GroupKFold(n_splits=n_folds).split(X, y, groups=tunes):
        pred[te] = model().fit(X[tr], y[tr]).predict(X[te])
    cv_acc = float((pred == y).mean())
    cm = confusion_matrix(y, pred, labels=range(len(genres)))

    # chroma similarity
    rng = np.random.default_rng(0)
    index = {(r["tune"], r["genre"]): i for i, r in enumerate(rows)}
    tune_ids = sorted(set(tunes))
    same = [_frame_cosine(chromas[index[(t, a)]], chromas[index[(t, b)]])
            for t in tune_ids for a, b in combinations(genres, 2)]
    diff_same_genre, diff_diff_genre = [], []
    for _ in range(args.pairs):
        t1, t2 = rng.choice(len(tune_ids), 2, replace=False)
        g = genres[rng.integers(len(genres))]
        diff_same_genre.append(_frame_cosine(chromas[index[(tune_ids[t1], g)]],
                                             chromas[index[(tune_ids[t2], g)]]))
        g1, g2 = rng.choice(len(genres), 2, replace=False)
        diff_diff_genre.append(_frame_cosine(chromas[index[(tune_ids[t1], genres[g1])]],
                                             chromas[index[(tune_ids[t2], genres[g2])]]))
    same_a, dsg, ddg = map(np.array, (same, diff_same_genre, diff_diff_genre))
    per_pair = {}
    for a, b in combinations(genres, 2):
        per_pair[(a, b)] = float(np.mean([
            _frame_cosine(chromas[index[(t, a)]], chromas[index[(t, b)]]) for t in tune_ids]))

    n_train_tunes = len(set(tunes[train]))
    print(f"Command: `{command}`  ")
    print(f"Corpus: {len(tune_ids)} tunes x {len(genres)} genres x "
          f"{float(rows[0]['duration']):g} s = {len(rows)} clips; soundfonts "
          f"{', '.join(sorted({r['soundfont'] for r in rows}))}  ")
    print(f"Machine: {os.cpu_count()}-core CPU, load average {load_before[0]:.2f} at start; "
          f"features {feature_s:.1f} s\n")
    print("| genre classifier (logistic regression, MFCC + delta mean/std, 80 dims) | "
          "held-out tunes | accuracy |")
    print("|---|---|---|")
    print(f"| corpus split: train on {n_train_tunes} train tunes, test valid+test | "
          f"{len(set(tunes[held]))} tunes, {int(held.sum())} clips | {split_acc:.1%} |")
    print(f"| {n_folds}-fold cross-validation grouped by tune | all {len(tune_ids)} tunes, "
          f"{len(y)} clips | {cv_acc:.1%} |")
    print()
    print("Confusion matrix (grouped cross-validation; rows: true, columns: predicted)\n")
    print("| | " + " | ".join(genres) + " |")
    print("|---" * (len(genres) + 1) + "|")
    for i, g in enumerate(genres):
        print(f"| {g} | " + " | ".join(str(v) for v in cm[i]) + " |")
    print()
    print("| chroma cosine similarity (frame by frame) | pairs | mean | sd | "
          "AUC vs same tune |")
    print("|---|---|---|---|---|")
    print(f"| same tune, different genres | {len(same_a)} | {same_a.mean():.3f} | "
          f"{same_a.std():.3f} | |")
    print(f"| different tunes, same genre | {len(dsg)} | {dsg.mean():.3f} | {dsg.std():.3f} | "
          f"{_auc(same_a, dsg):.3f} |")
    print(f"| different tunes, different genres | {len(ddg)} | {ddg.mean():.3f} | "
          f"{ddg.std():.3f} | {_auc(same_a, ddg):.3f} |")
    print()
    print("Same-tune chroma similarity by genre pair\n")
    print("| pair | mean |")
    print("|---|---|")
    for (a, b), v in per_pair.items():
        print(f"| {a} - {b} | {v:.3f} |")
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
