"""Windowed vs one-piece generator output for the shipped converters.

For each converter in ``--models`` and each clip (the bundled example repeated 4x, and every
``--every``-th rendering of the corpus's test split), the mean absolute difference between
the 256-frame windowed conversion (`genreshift convert`'s) and one pass of the generator over
the whole clip, in the normalised log-mel range (1 = 60 dB), 64 frames away from the ends.

Run: ``.venv/bin/python benchmarks/window_seams.py --data data/synth --models checkpoints``
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from genreshift import audio as gaudio
from genreshift.inference import convert as tconv
from genreshift.inference.pipeline import Song, load_song

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("data/synth"))
    ap.add_argument("--models", type=Path, default=ROOT / "checkpoints")
    ap.add_argument("--every", type=int, default=10)
    args = ap.parse_args()
    models = tconv.scan_models(args.models)
    cache = tconv.ModelCache("cpu")
    with open(args.data / "metadata.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] == "test"][:: args.every]
    example, sr = gaudio.load_audio(ROOT / "examples" / "example.flac", mono=True)
    clips = [(np.tile(example, 4), sr)] + [load_song(args.data / r["file_name"], mono=True)
                                          for r in rows]
    print(f"{len(clips)} clips (the bundled example repeated 4x, every {args.every}th test "
          f"rendering of {args.data}); per clip the mean |windowed - whole| in the normalised "
          "log-mel range (1 = 60 dB), 64 frames away from the ends\n")
    print("| converter | clips | smallest | mean | largest |")
    print("|---|---:|---:|---:|---:|")
    for genre in sorted(models.targets()):
        info, direction = tconv.choose_converter(models, genre, None)
        # the conversion as convert runs it: the change times the converter's calibrated gain
        gens = [(cache.generator(info, direction), info.gain(direction))]
        vals = []
        for audio, rate in clips:
            mel = Song(Path(), audio, rate).mid(info.mel_config)[None]
            windowed = tconv.convert_mel(mel, gens, stride=info.stride)
            whole = tconv.blend_fn(gens, 1.0)(mel)
            vals.append(float(np.abs(windowed - whole)[..., 64:-64].mean()))
        print(f"| {info.path.name} | {len(vals)} | {min(vals):.3f} | {np.mean(vals):.3f} "
              f"| {max(vals):.3f} |")


if __name__ == "__main__":
    main()
