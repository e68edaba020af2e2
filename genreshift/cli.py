"""Command line: thin subcommands over library functions.

Every subcommand handler parses, calls one library function and prints its result. A
GenreshiftError becomes one line on stderr and exit code 1; argparse usage errors exit 2.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import traceback

from genreshift import __version__
from genreshift.errors import GenreshiftError

EXIT_OK = 0
EXIT_FAILED = 1  # bad input, or some files of a batch failed


def _error(msg: str) -> None:
    print(f"genreshift: error: {msg}", file=sys.stderr)


# --- info ---------------------------------------------------------------------------------

def _fmt_db(x: float, unit: str) -> str:
    if math.isnan(x):
        return "n/a"
    return "-inf" if math.isinf(x) else f"{x:.1f} {unit}"


def cmd_info(args: argparse.Namespace) -> int:
    from genreshift import audio as gaudio

    failed = 0
    rows = []
    for path in args.files:
        try:
            info = gaudio.audio_info(path)
            data, sr = gaudio.load_audio(path)
        except GenreshiftError as e:
            _error(str(e))
            failed += 1
            continue
        rows.append({
            "path": info.path,
            "format": info.format,
            "encoding": info.encoding,
            "sample_rate": info.sample_rate,
            "channels": info.channels,
            "duration_s": round(data.shape[1] / sr, 3),
            "peak_dbfs": gaudio.peak_dbfs(data),
            "loudness_lufs": gaudio.integrated_loudness(data, sr),
        })
    if args.json:
        clean = [{k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                  for k, v in r.items()} for r in rows]
        print(json.dumps(clean, indent=2))
    else:
        for r in rows:
            print(
                f"{r['path']}: {r['format']} {r['encoding']}, {r['sample_rate']} Hz, "
                f"{r['channels']} ch, {r['duration_s']:.2f} s, "
                f"peak {_fmt_db(r['peak_dbfs'], 'dBFS')}, "
                f"loudness {_fmt_db(r['loudness_lufs'], 'LUFS')}"
            )
    return EXIT_FAILED if failed else EXIT_OK


# --- roundtrip ----------------------------------------------------------------------------

def _add_output_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--format", choices=["wav", "flac", "ogg", "mp3"],
                   help="output format (default: from the output's extension)")
    p.add_argument("--bit-depth", choices=["16", "24", "float"],
                   help="sample format for wav (16, 24, float) or flac (16, 24)")
    p.add_argument("--sr", type=int, help="output sample rate (default: the input's)")
    p.add_argument("--mono", action="store_true", help="mix the input down to mono first")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")


def _add_reconstruction_options(p: argparse.ArgumentParser,
                                seed_help: str = "seed for --init random") -> None:
    p.add_argument("--iters", type=int, default=None,
                   help="Griffin-Lim iterations (default 32, chosen in BENCHMARKS.md)")
    p.add_argument("--init", choices=["phase", "random"], default="phase",
                   help="start Griffin-Lim from the input's phase (default) or at random")
    p.add_argument("--gl-method", choices=["mel", "linear"], default="mel",
                   help="Griffin-Lim projecting onto the log-mel itself (default) or classic "
                        "Griffin-Lim on an estimated linear magnitude")
    p.add_argument("--seed", type=int, default=0, help=seed_help)


def _recon_config(args: argparse.Namespace):
    from genreshift.inference.pipeline import ReconstructionConfig

    iters = ReconstructionConfig.n_iter if args.iters is None else args.iters
    return ReconstructionConfig(n_iter=iters, init=args.init, method=args.gl_method,
                                seed=args.seed)


def _check_sr(sr: int | None) -> None:
    if sr is not None and not 8000 <= sr <= 192_000:
        raise GenreshiftError(f"--sr {sr}: choose a sample rate between 8000 and 192000 Hz")


def cmd_roundtrip(args: argparse.Namespace) -> int:
    from genreshift.inference.pipeline import roundtrip_file

    _check_sr(args.sr)
    summary = roundtrip_file(
        args.input, args.output, recon=_recon_config(args), fmt=args.format,
        bit_depth=args.bit_depth, force=args.force, mono=args.mono, sr=args.sr,
    )
    if args.json:
        print(json.dumps(summary, indent=2))
    elif not args.quiet:
        t = summary["timings_s"]
        print(f"wrote {summary['output']} ({summary['duration_s']:.2f} s, "
              f"{summary['sample_rate']} Hz, {summary['channels']} ch) in "
              f"{sum(t.values()):.2f} s")
    return EXIT_OK


# --- data gtzan / data tensors: datasets -> mel shards ------------------------------------

def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _add_mel_build_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, metavar="MELDIR",
                   help="folder for manifest.json and the mel shards (created; a rerun resumes)")
    p.add_argument("--workers", type=_positive_int, default=None, metavar="K",
                   help="decoding processes (default: all available cores)")
    # defaults come from MelConfig when the command runs: building the parser must not
    # import torch (it costs seconds on every call, even for --help and one-line errors)
    p.add_argument("--hop", type=_positive_int, default=None, metavar="N",
                   help="STFT hop in samples (default: MelConfig's, 512)")
    p.add_argument("--n-mels", type=_positive_int, default=None, metavar="N",
                   help="mel bins (default: MelConfig's, 128)")
    p.add_argument("--seed", type=int, default=0, help="seed of a random split (default 0)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")


def _build_mel(args: argparse.Namespace, source) -> int:
    from genreshift.data.tensors import build_tensors, format_summary
    from genreshift.spectral import MelConfig

    cfg = MelConfig(hop_length=args.hop or MelConfig.hop_length,
                    n_mels=args.n_mels or MelConfig.n_mels)
    summary = build_tensors(source, args.out, mel_config=cfg, workers=args.workers,
                            split=getattr(args, "split", "auto"), seed=args.seed,
                            progress=not args.quiet)
    if args.json:
        print(json.dumps(summary, indent=2))
    elif not args.quiet:
        print(format_summary(summary))
    return EXIT_OK


def cmd_data_gtzan(args: argparse.Namespace) -> int:
    from genreshift.data.gtzan import gtzan_clips

    return _build_mel(args, gtzan_clips(args.source, split=args.split, seed=args.seed))


def cmd_data_tensors(args: argparse.Namespace) -> int:
    return _build_mel(args, args.source)


def _add_mel_data_parsers(data_sub: argparse._SubParsersAction) -> None:
    p = data_sub.add_parser(
        "gtzan", help="GTZAN (local folder or Hugging Face datasets) -> mel shards",
        description="Read GTZAN from a folder in any common layout, a save_to_disk directory, "
                    "parquet files or a hub id, and write mel shards + manifest.json.")
    p.add_argument("--source", required=True, metavar="SOURCE",
                   help="GTZAN folder, saved dataset folder, parquet file/glob/folder, or hub id")
    p.add_argument("--split", choices=("filtered", "random"), default="filtered",
                   help="fault-filtered artist split (default) or a stratified random split")
    _add_mel_build_options(p)
    p.set_defaults(func=cmd_data_gtzan)

    p = data_sub.add_parser(
        "tensors", help="a folder dataset (synthetic corpus, GTZAN, <genre>/*.wav) -> mel shards",
        description="Turn <source>/<genre>/*.wav|flac|... into mel shards (one per genre and "
                    "split) + manifest.json with normalisation statistics.")
    p.add_argument("--source", required=True, metavar="DIR", help="the dataset folder")
    p.add_argument("--split", choices=("auto", "filtered", "metadata", "random"), default="auto",
                   help="auto: metadata.csv's split, GTZAN's filtered split, else random")
    _add_mel_build_options(p)
    p.set_defaults(func=cmd_data_tensors)


# --- data synth: the paired synthetic genre corpus ---------------------------------------

def cmd_data_synth(args: argparse.Namespace) -> int:
    from genreshift.data.synth import build_synth_corpus, format_synth_summary

    summary = build_synth_corpus(args.out, args.genres, args.tunes, args.seconds,
                                 soundfonts=args.soundfont, seed=args.seed,
                                 workers=args.workers, progress=not args.quiet,
                                 force=args.force)
    if args.json:
        print(json.dumps(summary, indent=2))
    elif not args.quiet:
        print(format_synth_summary(summary))
    return EXIT_OK


def _add_synth_parser(data_sub: argparse._SubParsersAction) -> None:
    from genreshift.data.arrangements import DEFAULT_GENRES, GENRES

    p = data_sub.add_parser(
        "synth", help="render public-domain tunes in every genre: a paired genre corpus",
        description="Render melodies from the music21 corpus in several genre arrangements "
                    "with General MIDI SoundFonts: <out>/<genre>/<tune>.wav (22050 Hz mono, "
                    "-20 LUFS) + .mid, and metadata.csv with a train/valid/test split by tune.")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for the corpus (new or empty; see --force)")
    p.add_argument("--genres", default=",".join(DEFAULT_GENRES), metavar="LIST",
                   help=f"comma-separated genres from: {', '.join(GENRES)} (default: %(default)s)")
    p.add_argument("--tunes", type=int, default=100, metavar="N",
                   help="tunes, each rendered in every genre (default 100)")
    p.add_argument("--seconds", type=float, default=30.0, metavar="S",
                   help="length of every rendering; tunes loop to fill it (default 30)")
    p.add_argument("--soundfont", action="append", metavar="PATH",
                   help="General MIDI .sf2/.sf3; repeat for several (one is drawn per tune); "
                        "default: FluidR3_GM and TimGM6mb from /usr/share/sounds/sf2")
    p.add_argument("--seed", type=int, default=0,
                   help="chooses tunes, keys, tempi, instruments, splits (default 0)")
    p.add_argument("--workers", type=_positive_int, default=None, metavar="K",
                   help="rendering processes (default: all available cores)")
    p.add_argument("--force", action="store_true",
                   help="replace the synthetic corpus already in --out")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    p.set_defaults(func=cmd_data_synth)


# --- convert (reference mode) ------------------------------------------------------------

def cmd_convert(args: argparse.Namespace) -> int:
    from genreshift.inference import reference

    _check_sr(args.sr)
    kwargs = {k: getattr(args, k) for k in ("style_weight", "content_weight", "steps",
                                            "optimizer") if getattr(args, k) is not None}
    summary = reference.convert_reference_file(
        args.input, args.like, args.output, seed=args.seed, device=args.device,
        recon=_recon_config(args), fmt=args.format, bit_depth=args.bit_depth, force=args.force,
        mono=args.mono, sr=args.sr, progress=not (args.quiet or args.json), **kwargs,
    )
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    elif not args.quiet:
        t = summary["timings_s"]
        print(f"wrote {summary['output']} in {sum(t.values()):.2f} s")
    return EXIT_OK


def _add_convert_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert", help="make a song sound like a reference recording (reference mode)",
        description="Reference mode: the song's log-mel is optimised so that the Gram matrices "
                    "of random convolutional features match the reference's, while a content "
                    "term keeps the song's structure. No trained model is needed.")
    p.add_argument("input", metavar="IN")
    p.add_argument("--like", required=True, metavar="REF", help="the reference recording")
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    p.add_argument("--style-weight", type=float, help="weight of the style term (default 1.0)")
    p.add_argument("--content-weight", type=float,
                   help="weight of the content term (default 0.5; higher keeps more of the song)")
    p.add_argument("--steps", type=int, help="optimisation steps (default 30)")
    p.add_argument("--optimizer", choices=["lbfgs", "adam"], help="default lbfgs")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto takes CUDA when present")
    _add_reconstruction_options(
        p, seed_help="seed of the random features and of --init random (same seed, same output)")
    _add_output_options(p)
    p.set_defaults(func=cmd_convert)


# --- parser -------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="genreshift",
        description="Convert music from one genre to another.",
    )
    parser.add_argument("--version", action="version", version=f"genreshift {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("info", help="describe audio files: format, rate, duration, loudness")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("roundtrip",
                       help="analyse to log-mel and reconstruct: the cost of reconstruction alone")
    p.add_argument("input", metavar="IN")
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    _add_reconstruction_options(p)
    _add_output_options(p)
    p.set_defaults(func=cmd_roundtrip)

    _add_convert_parser(sub)

    # `genreshift data ...`: dataset preparation subcommands.
    data = sub.add_parser("data", help="prepare datasets (GTZAN, synthetic corpus, mel tensors)")
    data_sub = data.add_subparsers(dest="data_command", metavar="DATASET", required=True)
    _add_data_parsers(data_sub)

    # `genreshift train ...`: converter and classifier training (genreshift/train/commands.py,
    # whose options come from the frozen configs; it imports torch only when a command runs).
    from genreshift.train.commands import add_train_parsers

    train = sub.add_parser("train", help="train a converter (CycleGAN) or the genre classifier")
    add_train_parsers(train.add_subparsers(dest="train_command", metavar="MODEL", required=True))

    return parser


def _add_data_parsers(data_sub: argparse._SubParsersAction) -> None:
    """`genreshift data <name>` subcommands; each registers its own parser here."""
    _add_mel_data_parsers(data_sub)
    _add_synth_parser(data_sub)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except GenreshiftError as e:
        _error(str(e))
        return EXIT_FAILED
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Exception as e:  # a bug: say so in one line; the traceback only on request
        if os.environ.get("GENRESHIFT_DEBUG"):
            traceback.print_exc()
        _error(f"internal error: {type(e).__name__}: {e} "
               "(set GENRESHIFT_DEBUG=1 for the traceback and please report it)")
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
