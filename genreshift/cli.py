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
from pathlib import Path

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


def _add_reconstruction_options(p: argparse.ArgumentParser) -> None:
    from genreshift.spectral import DEFAULT_GL_ITERS

    p.add_argument("--iters", type=int, default=DEFAULT_GL_ITERS,
                   help=f"Griffin-Lim iterations (default {DEFAULT_GL_ITERS})")
    p.add_argument("--init", choices=["phase", "random"], default="phase",
                   help="start Griffin-Lim from the input's phase (default) or at random")
    p.add_argument("--gl-method", choices=["mel", "linear"], default="mel",
                   help="Griffin-Lim projecting onto the log-mel itself (default) or classic "
                        "Griffin-Lim on an estimated linear magnitude")
    p.add_argument("--seed", type=int, default=0, help="seed for --init random")


def _recon_config(args: argparse.Namespace):
    from genreshift.inference.pipeline import ReconstructionConfig

    return ReconstructionConfig(n_iter=args.iters, init=args.init, method=args.gl_method,
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

    return parser


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
