"""Source detection with the classifier's windows side by side (hop = one window, what
`convert` uses) against half-overlapped (training's and evaluate's), on every ~1/60 of the
synthetic corpus's test clips and every 20th excerpt of the real-recording training material
(data/real; never ../shared/realmusic). Prints agreement and the accuracy on the test clips of
the classifier's genres.

    .venv/bin/python benchmarks/source_hop.py checkpoints/classifier.onnx
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np

from genreshift import audio as ga
from genreshift import spectral
from genreshift.inference.convert import UNCERTAIN_BELOW
from genreshift.inference.runtime import OnnxClassifier

ROOT = Path(__file__).resolve().parents[1]


def main(path: str) -> None:
    clf = OnnxClassifier(path)
    cfg = clf.mel_config

    def mel_of(f: Path) -> np.ndarray:
        a, sr = ga.load_audio(f, mono=True)
        return spectral.wav_to_mel(ga.resample(a, sr, cfg.sample_rate)[0], cfg)

    with open(ROOT / "data/synth/metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    test = [r for r in rows if r["split"] == "test"]
    files = [("synth", ROOT / "data/synth" / r["file_name"])
             for r in test[::max(1, len(test) // 60)]]
    files += [("real", p) for p in sorted((ROOT / "data/real/real").glob("*.wav"))[::20]]
    agree = {"synth": [0, 0, 0], "real": [0, 0, 0]}
    diffs = []
    for kind, f in files:
        mel = mel_of(f)
        p1, p2 = clf.classify_clip(mel), clf.classify_clip(mel, hop=clf.config.frames)
        u1, u2 = p1.max() < UNCERTAIN_BELOW, p2.max() < UNCERTAIN_BELOW
        d = agree[kind]
        d[0] += 1
        d[1] += int(np.argmax(p1) == np.argmax(p2))
        d[2] += int(u1 == u2 and (u1 or np.argmax(p1) == np.argmax(p2)))
        diffs.append(float(np.abs(p1 - p2).max()))
    for k, (n, top, status) in agree.items():
        print(f"{k}: {n} clips, same top genre {top}/{n}, same reported source (genre or "
              f"uncertain) {status}/{n}")
    print(f"max |probability difference|: median {np.median(diffs):.4f}, max {np.max(diffs):.4f}")
    acc = [0, 0, 0]
    for r in (r for r in test if r["genre"] in clf.genres):
        mel = mel_of(ROOT / "data/synth" / r["file_name"])
        acc[0] += 1
        acc[1] += clf.genres[int(np.argmax(clf.classify_clip(mel)))] == r["genre"]
        acc[2] += clf.genres[int(np.argmax(clf.classify_clip(mel, hop=clf.config.frames)))] \
            == r["genre"]
    print(f"accuracy on {acc[0]} synthetic test clips of its genres: half-overlapped {acc[1]}, "
          f"side by side {acc[2]}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "checkpoints" / "classifier.onnx"))
