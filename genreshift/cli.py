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
from collections.abc import Callable

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
    p.add_argument("--reconstruction", "--gl-method", dest="recon_method",
                   choices=["gain", "mel", "linear"], default="gain",
                   help="gain (default): the change as a gain on the input's own STFT at its own "
                        "rate, phase and full band kept; mel / linear: Griffin-Lim from the "
                        "log-mel at the analysis rate (band-limited to 11 kHz), projecting onto "
                        "the log-mel itself or on an estimated linear magnitude")
    p.add_argument("--iters", type=int, default=None,
                   help="Griffin-Lim iterations (default 0 with gain, 32 with mel / linear; "
                        "docs/DECISIONS.md)")
    p.add_argument("--init", choices=["phase", "random"], default="phase",
                   help="start Griffin-Lim from the input's phase (default) or at random "
                        "(mel / linear only)")
    p.add_argument("--max-boost", type=float, default=None, metavar="DB",
                   help="raise no band by more than DB (0-60): less hiss where a converter "
                        "lifts bands the input barely has, at some cost in transfer (default: "
                        "no limit; README, roundtrip options)")
    p.add_argument("--seed", type=int, default=0, help=seed_help)


def _recon_config(args: argparse.Namespace):
    from genreshift.inference.pipeline import ReconstructionConfig

    return ReconstructionConfig(method=args.recon_method, n_iter=args.iters, init=args.init,
                                seed=args.seed, max_boost_db=args.max_boost)


def _output_options(args: argparse.Namespace, dst):
    from genreshift.inference.pipeline import OutputOptions

    return OutputOptions(dst, fmt=args.format, bit_depth=args.bit_depth, sample_rate=args.sr,
                         force=args.force)


def _print_warnings(summary: dict, say=None) -> None:
    for w in summary.get("warnings", []):
        print(f"genreshift: warning: {w}", file=sys.stderr)


def _check_sr(sr: int | None) -> None:
    if sr is not None and not 8000 <= sr <= 192_000:
        raise GenreshiftError(f"--sr {sr}: choose a sample rate between 8000 and 192000 Hz")


def cmd_roundtrip(args: argparse.Namespace) -> int:
    from pathlib import Path

    from genreshift.inference.pipeline import Request, RoundtripSettings, run, without_huge_pages

    without_huge_pages()
    _check_sr(args.sr)
    request = Request(Path(args.input), _output_options(args, Path(args.output)),
                      RoundtripSettings(), _recon_config(args), mono=args.mono, device="cpu")
    summary = run(request).summary
    _print_warnings(summary)
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
    return _report(args, summary, format_summary)


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


def _report(args: argparse.Namespace, summary: dict, text: Callable[[dict], str]) -> int:
    """A data command's summary: JSON with --json, ``text(summary)`` unless --quiet."""
    if args.json:
        print(json.dumps(summary, indent=2))
    elif not args.quiet:
        print(text(summary))
    return EXIT_OK


# --- data synth: the paired synthetic genre corpus ---------------------------------------

def cmd_data_synth(args: argparse.Namespace) -> int:
    from genreshift.data.synth import build_synth_corpus, format_synth_summary

    summary = build_synth_corpus(args.out, args.genres, args.tunes, args.seconds,
                                 soundfonts=args.soundfont, seed=args.seed,
                                 workers=args.workers, progress=not args.quiet,
                                 force=args.force, exclude=args.exclude_soundfont,
                                 production=not args.dry, variety=not args.dry,
                                 only_split=args.only_split)
    return _report(args, summary, format_synth_summary)


def _add_synth_parser(data_sub: argparse._SubParsersAction) -> None:
    from genreshift.data import DEFAULT_SYNTH_GENRES as DEFAULT_GENRES
    from genreshift.data import SYNTH_GENRES as GENRES

    p = data_sub.add_parser(
        "synth", help="render public-domain tunes in every genre: a paired genre corpus",
        description="Render melodies from the music21 corpus in several genre arrangements "
                    "with General MIDI SoundFonts and produce them (per-track effects, "
                    "stereo mix, reverb/EQ/compression, a limiter to -16..-8 LUFS): "
                    "<out>/<genre>/<tune>.wav (22050 Hz stereo; --dry: mono, -20 LUFS) + "
                    ".mid, and metadata.csv with a train/valid/test split by tune.")
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
                        "default: FluidR3_GM, TimGM6mb, sf_GMbank and OPL-3_FM_128M from "
                        "/usr/share/sounds/sf2, those installed")
    p.add_argument("--only-split", choices=("train", "valid", "test"), default=None,
                   help="render only the tunes of this split (the same tunes as the full "
                        "corpus of these options), e.g. the test tunes with a held-out font")
    p.add_argument("--exclude-soundfont", action="append", metavar="NAME",
                   help="leave out the SoundFont (melodic or drum kit) with this file name, "
                        "e.g. sf_GMbank.sf2 to hold it out for testing; repeatable")
    p.add_argument("--dry", action="store_true",
                   help="no production and no added variety: dry mono mixes at -20 LUFS "
                        "(the plain corpus, for the corpus-realism ablation)")
    p.add_argument("--seed", type=int, default=0,
                   help="chooses tunes, keys, tempi, instruments, splits (default 0)")
    p.add_argument("--workers", type=_positive_int, default=None, metavar="K",
                   help="rendering processes (default: all available cores)")
    p.add_argument("--force", action="store_true",
                   help="replace the synthetic corpus already in --out")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, no summary")
    p.set_defaults(func=cmd_data_synth)


# --- data real: licence-checked excerpts of real recordings ------------------------------

def cmd_data_real(args: argparse.Namespace) -> int:
    from genreshift.data.real import format_real_summary, import_real

    summary = import_real(args.source, args.out, seconds=args.seconds,
                          per_track=args.per_track, seed=args.seed, loudness=args.loudness,
                          force=args.force, jobs=args.jobs,
                          log=(lambda *a: None) if args.quiet else print)
    return _report(args, summary, format_real_summary)


def _add_real_parser(data_sub: argparse._SubParsersAction) -> None:
    p = data_sub.add_parser(
        "real", help="music of unpacked Debian game packages -> licence-checked excerpts",
        description="Read <source>/<package>/ folders (dpkg -x of Debian packages), keep the "
                    "music whose copyright file gives a free licence, and write 22050 Hz mono "
                    "excerpts at a fixed loudness + metadata.csv (genre 'real', train/valid by "
                    "track) + LICENSES.md: a folder `genreshift data tensors` reads as-is.")
    p.add_argument("--source", required=True, metavar="DIR",
                   help="folder of unpacked packages, one folder per package")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder for the excerpts (new, or a previous import: it resumes)")
    p.add_argument("--seconds", type=float, default=30.0, metavar="S",
                   help="length of an excerpt (default 30)")
    p.add_argument("--per-track", type=_positive_int, default=4, metavar="N",
                   help="at most N excerpts per track, spread over it (default 4)")
    p.add_argument("--seed", type=int, default=0, help="chooses offsets and splits (default 0)")
    p.add_argument("--loudness", type=float, default=-14.0, metavar="LUFS",
                   help="integrated loudness of every excerpt (default -14)")
    p.add_argument("--jobs", type=_positive_int, default=1, metavar="K",
                   help="decoding processes (default 1)")
    p.add_argument("--force", action="store_true",
                   help="cut every track again (needed to change options of a previous import)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary")
    p.set_defaults(func=cmd_data_real)


# --- convert: trained mode (--to) and reference mode (--like) ------------------------------

def _strength(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"{text}: choose a value from 0 (the input, reconstructed) to 1 (the full "
            "conversion)")
    return value


def _convert_jobs(args: argparse.Namespace, label: str):
    """[(input, output, plot or None)] for a single file or a batch; checks -o and --plot."""
    from pathlib import Path

    from genreshift.inference.convert import (
        batch_output_path,
        default_output_path,
        expand_inputs,
    )

    inputs = expand_inputs(args.inputs)
    batch = len(inputs) > 1 or any(Path(i).is_dir() for i in args.inputs)
    plot = args.plot
    if batch and plot not in (None, "auto"):
        raise GenreshiftError(f"--plot {plot}: a batch writes one plot per output "
                              "(<output>.png); give --plot without a path")
    jobs = []
    if batch:
        outdir = Path(args.output) if args.output else None
        if outdir is not None:
            if outdir.exists() and not outdir.is_dir():
                raise GenreshiftError(f"-o {outdir}: several inputs need an output folder, "
                                      "and this is a file; give a folder (created if missing)")
            outdir.mkdir(parents=True, exist_ok=True)
        taken: set[Path] = set()
        for src in inputs:
            if outdir is None:
                dst = default_output_path(src, label, args.format)
            else:
                dst = batch_output_path(src, outdir, label, args.format, taken)
            jobs.append((src, dst, dst.with_suffix(".png") if plot else None))
        return jobs, True
    src = inputs[0]
    if args.output is None:
        dst = default_output_path(src, label, args.format)
    elif Path(args.output).is_dir():
        dst = default_output_path(Path(args.output) / src.name, label, args.format)
    else:
        dst = Path(args.output)
    if plot == "auto":
        plot = dst.with_suffix(".png")
    return [(src, dst, Path(plot) if plot else None)], False


def _print_summary(summary: dict, say=print) -> None:
    t = summary["timings_s"]
    if summary["mode"] == "trained":
        src = summary["source_genre"] or "unknown genre"
        how = ("given" if summary["source_given"] else
               f"detected, p={summary['source_confidence']:.2f}"
               if summary["source_confidence"] is not None else "not detected")
        if summary.get("source_status") == "uncertain":
            src = "uncertain genre"
            how = (f"best guess {summary['source_guess']}, "
                   f"p={summary['source_confidence']:.2f}")
        to = ", ".join(f"{x['genre']} {x['weight']:.2f}" if len(summary["targets"]) > 1
                       else x["genre"] for x in summary["targets"])
        head = f"{summary['input']}: {src} ({how}) -> {to}"
        if summary["strength"] < 1:
            head += f" at strength {summary['strength']:g}"
        r = summary.get("rhythm") or {}
        if r.get("asked", "keep") != "keep":
            head += (f", rhythm {r['rhythm']}"
                     + (f" ({r['groove']} groove at {r['tempo_bpm']:g} BPM)"
                        if r.get("groove") and r["rhythm"] != "keep" else ""))
    else:
        head = f"{summary['input']}: like {summary['reference']}"
    say(f"{head}; wrote {summary['output']} in {sum(t.values()):.2f} s")
    for note in summary.get("notes", []):
        say(f"  note: {note}")
    if summary.get("plot"):
        say(f"  plot: {summary['plot']}")


def cmd_convert(args: argparse.Namespace) -> int:
    from pathlib import Path

    from genreshift.inference import pipeline
    from genreshift.inference.plot import check_plot_path, plot_conversion

    pipeline.without_huge_pages()
    _check_sr(args.sr)
    recon = _recon_config(args)
    context = {}
    if args.to is not None:
        from genreshift.inference import convert as tconv

        targets = tuple(tconv.parse_targets(args.to))
        settings = tconv.TrainedSettings(targets=targets, strength=args.strength,
                                         source=args.source, window=args.window,
                                         overlap=tconv.overlap_for(args.window),
                                         rhythm=args.rhythm, rhythm_layer=args.rhythm_layer,
                                         seed=args.seed)
        models = tconv.scan_models(args.models, model_files=args.model or ())
        tconv.check_genres(models, settings)
        label = tconv.target_label(targets)
        context = {"models": models,
                   "cache": tconv.ModelCache(pipeline.resolve_device(args.device))}
    else:
        from genreshift.inference import reference

        reference.check_reference(args.like)
        label = "like-" + Path(args.like).stem
        kwargs = {k: getattr(args, k) for k in ("style_weight", "content_weight", "steps",
                                                "optimizer", "style_space", "chroma_weight",
                                                "style_model") if getattr(args, k) is not None}
        if "style_model" in kwargs:
            kwargs["style_model"] = Path(kwargs["style_model"])
        elif args.models is not None and kwargs.get("style_space") != "random":
            kwargs["style_model"] = reference.default_style_model(Path(args.models))
        settings = reference.ReferenceSettings(Path(args.like), seed=args.seed,
                                               strength=args.strength, **kwargs)
    jobs, batch = _convert_jobs(args, label)
    quiet = args.quiet or args.json
    summaries, failed = [], []
    items, write = jobs, print
    if batch:  # tqdm only for a batch's bar (its import is ~0.1 s of a fresh conversion)
        from tqdm.auto import tqdm

        items, write = tqdm(jobs, desc="files", unit="file", disable=quiet), tqdm.write
    for src, dst, plot in items:
        try:
            if plot is not None:
                check_plot_path(plot, args.force)
            request = pipeline.Request(Path(src), _output_options(args, Path(dst)), settings,
                                       recon, mono=args.mono, device=args.device,
                                       progress=not quiet and not batch)
            result = pipeline.run(request, **context)
            summary = result.summary
            if plot is not None:
                plot_conversion(plot, input_mel=result.mels["input"],
                                output_mel=result.mels["output"],
                                reference_mel=result.mels.get("reference"),
                                cfg=result.mel_config, title=f"{Path(src).name} -> {label}")
                summary["plot"] = str(plot)
        except GenreshiftError as e:
            if not batch:
                raise
            _error(str(e))
            failed.append({"input": str(src), "error": str(e)})
            continue
        summaries.append(summary)
        _print_warnings(summary)
        if not quiet:
            _print_summary(summary, write)
    if args.json:
        print(json.dumps(summaries[0] if not batch else
                         {"converted": summaries, "failed": failed}, indent=2, default=str))
    elif batch and not args.quiet:
        print(f"converted {len(summaries)} of {len(jobs)} files"
              + (f"; {len(failed)} failed (see above)" if failed else ""))
    return EXIT_FAILED if failed else EXIT_OK


def _add_convert_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert", help="convert songs to another genre (--to) or to sound like a reference "
                        "recording (--like)",
        description="Trained mode (--to GENRE): a trained converter maps the song's log-mel "
                    "to the target genre; the source genre is detected by the classifier "
                    "(or given with --from). Reference mode (--like REF): the song's log-mel "
                    "is optimised so that the Gram matrices of random convolutional features "
                    "match the reference's, while a content term keeps the song; no trained "
                    "model is needed. Both reconstruct audio from the song's own phase and "
                    "match its loudness. Several files or folders convert as a batch.")
    p.add_argument("inputs", nargs="+", metavar="IN", help="audio files or folders of them")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--to", metavar="GENRE[:W,...]",
                      help="target genre, or a blend such as jazz:0.6,rock:0.4 (trained mode)")
    mode.add_argument("--like", metavar="REF", help="the reference recording (reference mode)")
    p.add_argument("-o", "--output", metavar="OUT",
                   help="output file, or folder for a batch (default: next to each input, "
                        "named <input>.<genre>.<format>)")
    p.add_argument("--strength", type=_strength, default=1.0, metavar="S",
                   help="how far toward the target, 0..1 (default 1; 0 gives the input "
                        "back, reconstructed)")
    p.add_argument("--plot", nargs="?", const="auto", metavar="PNG",
                   help="draw input, reference, output and difference spectrograms (default "
                        "path: the output's with .png)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="auto takes CUDA when present")
    g = p.add_argument_group("trained mode")
    g.add_argument("--from", dest="source", metavar="GENRE",
                   help="the input's genre (default: detected by the classifier)")
    g.add_argument("--model", action="append", metavar="PATH",
                   help="use this converter checkpoint (repeat for blends) instead of the "
                        "model folder's")
    g.add_argument("--models", metavar="DIR",
                   help="folder of converter checkpoints and classifier.pt (default: "
                        "$GENRESHIFT_MODELS, else the models shipped in the package, "
                        "genreshift/checkpoints/)")
    g.add_argument("--window", type=_positive_int, default=256, metavar="FRAMES",
                   help="generator window in mel frames (default 256, ~6 s)")
    from genreshift.inference import DEFAULT_RHYTHM, RHYTHM_MODES

    g.add_argument("--rhythm", choices=RHYTHM_MODES, default=DEFAULT_RHYTHM,
                   help=f"the rhythm section (default {DEFAULT_RHYTHM}, the best on real "
                        "recordings): replace the song's percussion with the target genre's "
                        "groove on the song's beat grid; add the groove on top; keep the "
                        "song's own. A song without a clear beat is kept, and the summary "
                        "says why")
    g.add_argument("--rhythm-layer", choices=["harmonic", "song"], default="harmonic",
                   help="with --rhythm replace/add: convert the song's harmonic layer "
                        "(default) or the whole song")
    g = p.add_argument_group("reference mode")
    g.add_argument("--style-weight", type=float, help="weight of the style term (default 1.0)")
    g.add_argument("--content-weight", type=float,
                   help="weight of the content term on the style space's own features, frame "
                        "by frame (default 0 with --style-space both or classifier, 0.5 with "
                        "random; higher keeps more of the song)")
    g.add_argument("--chroma-weight", type=float,
                   help="weight of the chroma + onset-envelope content term: harmony and "
                        "timing kept (default 0.05 with --style-space both or classifier, 0 with "
                        "random)")
    g.add_argument("--style-space", choices=["classifier", "both", "random"],
                   help="where style is measured: the genre classifier's conv activations, "
                        "those and random 1-D filters together, or the random filters alone "
                        "(default both: the tagger hears the reference's genre in more real "
                        "songs, for some of the song and ~5x the CPU of random; "
                        "docs/DECISIONS.md)")
    g.add_argument("--style-model", metavar="CLASSIFIER.pt",
                   help="the classifier of --style-space classifier/both (default: "
                        "style.pt of the model folder, the classifier trained on real "
                        "recordings too, or its classifier.pt where there is none)")
    g.add_argument("--steps", type=int, help="optimisation steps per window (default 100 "
                                             "with --style-space both, 30 with the others)")
    g.add_argument("--optimizer", choices=["lbfgs", "adam"], help="default lbfgs")
    _add_reconstruction_options(
        p, seed_help="seed of reference mode's random features and of --init random (same "
                     "seed, same output)")
    _add_output_options(p)
    p.set_defaults(func=cmd_convert)


# --- genres -------------------------------------------------------------------------------

def cmd_genres(args: argparse.Namespace) -> int:
    from genreshift.inference import convert as tconv

    models = tconv.scan_models(args.models)
    rows = tconv.describe_models(models)
    style = tconv.style_model_path(models.folder) if models.folder is not None else None
    style = style if style is not None and style.is_file() else None
    if args.json:
        print(json.dumps({"folder": str(models.folder),
                          "targets": rows,
                          "classifier": str(models.classifier) if models.classifier else None,
                          "classifier_genres": list(models.classifier_genres),
                          "style_model": str(style) if style else None,
                          "skipped": models.skipped}, indent=2))
    if not rows:  # nothing to convert with: a broken install or a wrong folder, not a listing
        raise GenreshiftError(tconv.no_converters_message(models))
    if args.json:
        return EXIT_OK
    for r in rows:
        steps = f", {r['steps']} steps" if r["steps"] is not None else ""
        gain = f", gain {r['gain']:g}" if r["gain"] != 1.0 else ""
        print(f"{r['genre']:<12} from {r['from']:<10} {r['model']}{steps}{gain}")
    if models.classifier:
        print(f"source detection: {models.classifier} "
              f"({', '.join(models.classifier_genres)})")
    else:
        print("source detection: no classifier.pt; pass --from GENRE to convert")
    if style is not None:
        print(f"reference mode's style model: {style}")
    for s in models.skipped:
        print(f"skipped: {s}")
    return EXIT_OK


# --- evaluate -----------------------------------------------------------------------------

def cmd_evaluate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from genreshift.fsutil import atomic_write_text
    from genreshift.inference import evaluate as ev

    out = Path(args.out)
    if out.exists() and not args.force:
        raise GenreshiftError(f"{out}: already exists; pass --force to overwrite it")
    if not out.parent.is_dir():
        raise GenreshiftError(f"--out {out}: folder {out.parent} does not exist")
    if args.seconds is not None and args.seconds < 1:
        raise GenreshiftError(f"--seconds {args.seconds}: evaluate at least 1 s per clip")
    if args.plot:
        from genreshift.inference.plot import check_plot_path

        check_plot_path(args.plot, args.force)
    corpus = ev.Corpus.open(args.data)
    pairs = ev.parse_pairs(args.pairs, corpus.genres())
    report = ev.evaluate(corpus, args.method, split=args.split, pairs=pairs,
                         models_dir=args.models, tunes=args.tunes, seconds=args.seconds,
                         steps=args.steps, seed=args.seed, jobs=args.jobs,
                         progress=not (args.quiet or args.json), gain=args.gain)
    atomic_write_text(out, json.dumps(report, indent=1))
    if args.plot:
        from genreshift.inference.plot import plot_evaluation

        plot_evaluation(args.plot, [report])
    if args.json:
        print(json.dumps({k: v for k, v in report.items() if k != "rows"}, indent=2))
    elif not args.quiet:
        m, fl = report["overall"]["method"], report["overall"]["floor"]
        print(f"{args.method} on {m['clips']} clips of split '{args.split}' "
              f"({report['tunes']} tunes); the reconstruction floor in brackets:")
        for key, name, fmt in (("cnn_hit", "transfer (classifier)", "{:.0%}"),
                               ("judge_hit", "transfer (feature judge)", "{:.0%}"),
                               ("lsd_db", "LSD to the target rendering (dB)", "{:.2f}"),
                               ("chroma", "chroma similarity to input", "{:.3f}"),
                               ("chroma_corr", "chroma correlation (CENS) to input",
                                "{:.3f}"),
                               ("onset_f", "onset F-measure vs input", "{:.3f}"),
                               ("rtf", "real-time factor", "{:.3f}")):
            print(f"  {name:<34} {fmt.format(m[key])} ({fmt.format(fl[key])})")
        print(f"wrote {out}")
    return EXIT_OK


def _add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    from genreshift.inference import EVALUATE_METHODS as METHODS

    p = sub.add_parser(
        "evaluate", help="measure a conversion method on a paired synthetic corpus",
        description="Runs one method on every (source, target) genre pair of a split of a "
                    "paired corpus (`genreshift data synth`) and measures transfer (the genre "
                    "classifier and an independent feature judge), distance to the real "
                    "rendering in the target genre (LSD), content kept (chroma similarity, "
                    "CENS chroma correlation, onset F-measure) and speed, next to the "
                    "reconstruction floor.")
    p.add_argument("--data", required=True, metavar="SYNTHDIR", help="the paired corpus")
    p.add_argument("--split", default="test", help="the split to evaluate (default test)")
    p.add_argument("--method", required=True, choices=METHODS)
    p.add_argument("--pairs", metavar="SRC:DST,...",
                   help="genre pairs, e.g. rock:jazz,classical:jazz (default: every pair)")
    p.add_argument("--models", metavar="DIR",
                   help="model folder (default: $GENRESHIFT_MODELS, else the models "
                        "shipped in the package, genreshift/checkpoints/)")
    p.add_argument("--tunes", type=_positive_int, metavar="N", help="at most N tunes")
    p.add_argument("--seconds", type=float, metavar="S",
                   help="evaluate the first S seconds of each clip (default: all)")
    p.add_argument("--steps", type=int, metavar="N",
                   help="optimisation steps of reference / gram-baseline (default: each's own)")
    p.add_argument("--seed", type=int, default=0, help="seed of reference choice and features")
    p.add_argument("--gain", type=float, metavar="G",
                   help="trained: apply every converter's change with residual gain G instead "
                        "of the calibrated one stored in its file")
    p.add_argument("--jobs", type=_positive_int, default=1, metavar="N",
                   help="worker processes of one torch thread each (default 1); the results "
                        "do not depend on it")
    p.add_argument("--out", required=True, metavar="REPORT.json")
    p.add_argument("--plot", metavar="PNG",
                   help="also draw the metrics (next to the floor) and the confusion matrix")
    p.add_argument("--force", action="store_true", help="overwrite an existing report")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_evaluate)


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

    _add_evaluate_parser(sub)

    p = sub.add_parser("genres", help="list the target genres of the available converters")
    p.add_argument("--models", metavar="DIR",
                   help="model folder (default: $GENRESHIFT_MODELS, else the models "
                        "shipped in the package, genreshift/checkpoints/)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_genres)

    # `genreshift serve`: the web app, and `genreshift worker`: its Redis queue's workers
    # (they import FastAPI, RQ and redis only when they run).
    from genreshift.web.cli import add_serve_parser, add_worker_parser

    add_serve_parser(sub)
    add_worker_parser(sub)

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
    _add_real_parser(data_sub)


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
