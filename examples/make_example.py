"""Regenerate examples/example.flac: a public-domain tune rendered by the synthetic-corpus
code, exactly as `genreshift data synth` would render it (same placement, arrangement,
SoundFont rendering and -20 LUFS normalisation), cut to 12 seconds.

    .venv/bin/python examples/make_example.py            # writes examples/example.flac
    .venv/bin/python examples/make_example.py --force    # overwrite it

The defaults are the ones the committed clip was made with; examples/README.md lists them.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from genreshift.audio import integrated_loudness, normalize_loudness, save_audio
from genreshift.data.melodies import TuneRef, load_tune
from genreshift.data.synth import SAMPLE_RATE, TARGET_LUFS, perform, render_arrangement

HERE = Path(__file__).resolve().parent
DEFAULTS = {
    "source": "leadSheet/fosterBrownHair.mxl",  # Stephen Foster, 1854: public domain
    "genre": "classical",
    "seed": 7,
    "seconds": 12.0,
    "soundfont": "/usr/share/sounds/sf2/FluidR3_GM.sf2",
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--source", default=DEFAULTS["source"], help="music21 corpus path")
    ap.add_argument("--number", type=int, default=None, help="X: number in a multi-tune ABC")
    ap.add_argument("--genre", default=DEFAULTS["genre"])
    ap.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    ap.add_argument("--seconds", type=float, default=DEFAULTS["seconds"])
    ap.add_argument("--soundfont", default=DEFAULTS["soundfont"])
    ap.add_argument("--out", default=str(HERE / "example.flac"))
    ap.add_argument("--force", action="store_true", help="overwrite --out")
    args = ap.parse_args(argv)

    tune = load_tune(TuneRef(args.source, args.number))
    # tune index 0: the clip is what a one-tune corpus with this seed holds for this genre
    arrangement = perform(tune, 0, args.genre, args.seconds, args.seed)
    rendering = render_arrangement(arrangement, args.soundfont)
    audio = normalize_loudness(rendering.audio[None], SAMPLE_RATE, TARGET_LUFS)
    out = save_audio(args.out, audio, SAMPLE_RATE, fmt="flac", bit_depth="16",
                     force=args.force)
    sheet = arrangement.sheet
    digest = hashlib.sha256(audio.tobytes()).hexdigest()[:16]
    print(f"wrote {out}: {tune.title} ({args.source}), {args.genre}, {sheet.key_name}, "
          f"{sheet.meter.label} at {sheet.qpm:.0f} qpm, {arrangement.programs_label()}, "
          f"{Path(args.soundfont).name}, seed {args.seed}, {args.seconds:g} s, "
          f"{integrated_loudness(audio, SAMPLE_RATE):.1f} LUFS, samples sha256 {digest}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
