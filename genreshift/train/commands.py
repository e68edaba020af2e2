"""`genreshift train cyclegan` and `genreshift train classifier`: argparse glue only.

Options are generated from the fields of the frozen configs (TrainConfig, GeneratorConfig,
DiscriminatorConfig, ClassifierTrainConfig, ClassifierConfig), so the command line never drifts
from them. Options left out take the value of the run being resumed (with ``--resume``) or the
config's default; an option given with ``--resume`` that contradicts the run is refused by the
trainer. Nothing here imports torch until a command runs (the parser is built on every
`genreshift` invocation).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import MISSING
from typing import Any

from genreshift.models.config import ClassifierConfig, DiscriminatorConfig, GeneratorConfig
from genreshift.train.config import ClassifierTrainConfig, TrainConfig, cli_fields


def _add_fields(group: Any, cls: type, dest: str, flag: str) -> None:
    """One option per CLI field of ``cls``: ``--{flag}{name}`` stored as ``{dest}{name}``."""
    for f in cli_fields(cls):
        default = f.default if f.default is not MISSING else None
        name = f"--{flag}{f.name.replace('_', '-')}"
        kwargs: dict[str, Any] = {"dest": f"{dest}{f.name}", "default": argparse.SUPPRESS,
                                  "help": f"{f.metadata.get('help', '')} (default {default})"}
        if isinstance(default, bool):
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = type(default)
            kwargs["metavar"] = {int: "N", float: "X", str: "S"}.get(type(default), "V")
            if "choices" in f.metadata:
                kwargs["choices"] = f.metadata["choices"]
                kwargs.pop("metavar")
        group.add_argument(name, **kwargs)


def _given(args: argparse.Namespace, cls: type, dest: str) -> dict[str, Any]:
    """The options of ``cls`` that were given on the command line."""
    values = vars(args)
    return {f.name: values[dest + f.name] for f in cli_fields(cls) if dest + f.name in values}


def _is_main_process() -> bool:
    return os.environ.get("RANK", "0") == "0"


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="MELDIR",
                   help="mel directory written by `genreshift data tensors` or `data gtzan`")
    p.add_argument("--out", required=True, metavar="RUNDIR",
                   help="run directory: inference file, resume.pt, tb/ (TensorBoard)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in RUNDIR (starts one if it holds none yet); options "
                        "left out keep the run's values")
    p.add_argument("--stop-at", type=int, metavar="STEP", default=None,
                   help="end this session after STEP steps, with a checkpoint (continue later "
                        "with --resume)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")


def cmd_train_cyclegan(args: argparse.Namespace) -> int:
    from genreshift.train.cyclegan import INFERENCE_FILE, stored_configs, train_cyclegan

    stored = stored_configs(args.out) if args.resume else None
    config = TrainConfig.from_dict({**(stored["train"] if stored else {}),
                                    **_given(args, TrainConfig, "t_")})
    generator = GeneratorConfig.from_dict({**(stored["generator"] if stored else {}),
                                           **_given(args, GeneratorConfig, "g_")})
    discriminator = DiscriminatorConfig.from_dict({**(stored["discriminator"] if stored else {}),
                                                   **_given(args, DiscriminatorConfig, "d_")})
    state = train_cyclegan(args.data, args.out, a=args.a, b=args.b, config=config,
                           generator=generator, discriminator=discriminator, resume=args.resume,
                           classifier=args.classifier, real=args.real,
                           init_from=args.init_from, stop_at=args.stop_at,
                           progress=not args.quiet)
    if _is_main_process():
        print(f"converter at step {state.step} of {config.steps}: "
              f"{os.path.join(args.out, INFERENCE_FILE)}")
    return 0


def cmd_train_classifier(args: argparse.Namespace) -> int:
    from genreshift.train.classifier import INFERENCE_FILE, stored_configs, train_classifier

    stored = stored_configs(args.out) if args.resume else None
    config = ClassifierTrainConfig.from_dict({**(stored["train"] if stored else {}),
                                              **_given(args, ClassifierTrainConfig, "t_")})
    model = ClassifierConfig.from_dict({**(stored["model"] if stored else {}),
                                        **_given(args, ClassifierConfig, "m_")})
    genres = [g.strip() for g in args.genres.split(",") if g.strip()] if args.genres else None
    state = train_classifier(args.data, args.out, genres=genres, config=config, model=model,
                             real=args.real, resume=args.resume, stop_at=args.stop_at,
                             progress=not args.quiet)
    if _is_main_process():
        print(f"classifier at step {state.step} of {config.steps}: "
              f"{os.path.join(args.out, INFERENCE_FILE)}")
    return 0


def cmd_train_export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from genreshift.errors import GenreshiftError

    files = [Path(f) for f in args.files]
    if args.onnx_only:
        if args.half or args.no_onnx:
            raise GenreshiftError("--onnx-only writes the ONNX graphs of existing inference "
                                  "files; --half and --no-onnx do not apply to it")
        from genreshift.checkpoint import export_onnx

        for f in files:
            for out in export_onnx(f):
                _print_written(out)
        return 0
    if len(files) != 2:
        raise GenreshiftError(f"train export takes IN OUT (got {len(files)} paths); to "
                              "(re)write the ONNX graphs of inference files, pass --onnx-only "
                              "FILE.pt ...")
    src, dst = files
    if dst.exists() and not args.force:
        raise GenreshiftError(f"{dst} exists; pass --force to replace it")
    from genreshift.checkpoint import export_inference

    out = export_inference(src, dst, half=args.half)
    _print_written(out, ", float16 weights" if args.half else "")
    if not args.no_onnx:
        from genreshift.checkpoint import export_onnx

        for graph in export_onnx(out):
            _print_written(graph)
    return 0


def cmd_train_calibrate(args: argparse.Namespace) -> int:
    import json

    from genreshift.errors import GenreshiftError
    from genreshift.fsutil import atomic_write_text
    from genreshift.train.calibrate import calibrate, format_report

    try:
        gains = [float(g) for g in args.gains.split(",") if g.strip()]
    except ValueError:
        raise GenreshiftError(f"--gains {args.gains}: give numbers separated by commas, e.g. "
                              "1,1.5,2") from None
    if args.seconds is not None and args.seconds < 1:
        raise GenreshiftError(f"--seconds {args.seconds}: measure at least 1 s per clip")
    if not os.path.isdir(args.models):
        raise GenreshiftError(f"{args.models}: no such folder; give the model folder whose "
                              "converters to calibrate (e.g. checkpoints)")
    if args.report and not os.path.isdir(os.path.dirname(os.path.abspath(args.report))):
        raise GenreshiftError(f"--report {args.report}: its folder does not exist")
    report = calibrate(args.models, args.data, gains=gains, split=args.split, tunes=args.tunes,
                       seconds=args.seconds, jobs=args.jobs, write=not args.dry_run,
                       progress=not args.quiet)
    if args.report:
        atomic_write_text(args.report, json.dumps(report, indent=1))
    if not args.quiet:
        print(format_report(report))
        print("(dry run: nothing written)" if args.dry_run else
              f"wrote the gains into {len(report['converters'])} converter file(s) and their "
              "ONNX graphs")
    return 0


def _print_written(path: os.PathLike, note: str = "") -> None:
    size = os.stat(path).st_size / 2**20
    kind = ", ONNX float32" if str(path).endswith(".onnx") else ""
    print(f"wrote {path} ({size:.2f} MB{kind}{note})")


def add_train_parsers(train_sub: argparse._SubParsersAction) -> None:
    """Register `train cyclegan` and `train classifier` under `genreshift train`."""
    p = train_sub.add_parser(
        "cyclegan", help="train a converter between two genre domains (CycleGAN on log-mel)",
        description="Train a pair of U-Net generators (a->b, b->a) with LSGAN, cycle and "
                    "identity losses. A domain is a genre, a comma list of genres, or 'rest' "
                    "(every genre of the data the other domain does not name). Runs on CUDA "
                    "when present, else CPU; under `torchrun --nproc_per_node=K -m genreshift "
                    "train cyclegan ...` it trains data-parallel (NCCL on GPU, gloo on CPU).")
    _add_run_options(p)
    p.add_argument("--a", metavar="DOMAIN", default=None,
                   help="domain a: genre, comma list, or rest (required unless resuming)")
    p.add_argument("--b", metavar="DOMAIN", default=None,
                   help="domain b: genre, comma list, or rest (required unless resuming)")
    p.add_argument("--classifier", metavar="CKPT", default=None,
                   help="classifier.pt: adds the target-genre probability to validation")
    p.add_argument("--real", metavar="MELDIR", default=None,
                   help="mel directory of unlabelled real recordings (`genreshift data real`, "
                        "then `data tensors`): --real-windows of them join domain a's batch "
                        "every step, so the a->b generator learns to keep real mixes' content")
    p.add_argument("--init-from", metavar="CKPT", default=None,
                   help="warm-start a new run from another run's resume.pt (generators and "
                        "discriminators) or converter.pt (generators), with fresh optimisers "
                        "and this run's schedule: same mel directory, architecture and domains")
    _add_fields(p.add_argument_group("training"), TrainConfig, "t_", "")
    _add_fields(p.add_argument_group("generator"), GeneratorConfig, "g_", "g-")
    _add_fields(p.add_argument_group("discriminator"), DiscriminatorConfig, "d_", "d-")
    p.set_defaults(func=cmd_train_cyclegan)

    p = train_sub.add_parser(
        "classifier", help="train the genre classifier on log-mel windows",
        description="Train a compact CNN that tells the genres of a mel directory apart "
                    "(used to detect the source genre and to judge conversions).")
    _add_run_options(p)
    p.add_argument("--genres", metavar="G1,G2,...", default=None,
                   help="classes (default: every genre of the data)")
    p.add_argument("--real", metavar="MELDIR", default=None,
                   help="mel directory of real recordings (`data real`, then `data tensors`): "
                        "with --real-windows N, N excerpts a step train the features "
                        "contrastively (two positions of one excerpt against the others), "
                        "so that reference mode's style space knows real music")
    _add_fields(p.add_argument_group("training"), ClassifierTrainConfig, "t_", "")
    _add_fields(p.add_argument_group("model"), ClassifierConfig, "m_", "")
    p.set_defaults(func=cmd_train_classifier)

    p = train_sub.add_parser(
        "export", help="write a run's inference file for shipping (optionally float16) and its "
                       "ONNX graphs",
        usage="%(prog)s [--half] [--force] [--no-onnx] IN OUT\n"
              "       %(prog)s --onnx-only FILE.pt [FILE.pt ...]",
        description="Copy the model of a converter.pt / classifier.pt / resume.pt (IN) into an "
                    "inference file OUT (configs, genres and provenance kept, training state "
                    "dropped), checking that it loads, then write next to it the ONNX graphs "
                    "that conversion runs without torch: OUT's name with .onnx for a classifier; "
                    ".ab.onnx (a->b) and/or .ba.onnx (b->a) for a converter, one per direction "
                    "whose target is not 'rest' (e.g. rest-to-jazz.pt -> rest-to-jazz.ab.onnx). "
                    "Each graph records the SHA-256 of its .pt; conversion refuses a graph whose "
                    ".pt changed since, so after replacing a .pt by other means, re-export its "
                    "graphs with --onnx-only.")
    p.add_argument("files", nargs="+", metavar="PATH",
                   help="IN OUT: the inference or resume file of a run, and the file to write "
                        "(e.g. checkpoints/rest-to-jazz.pt); with --onnx-only: inference files "
                        "whose ONNX graphs to (re)write")
    p.add_argument("--half", action="store_true",
                   help="store the weights as float16 (half the size; outputs change by "
                        "about 1e-3 of the log-mel range); the ONNX graphs are float32 anyway")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists (its ONNX "
                   "graphs are always rewritten)")
    p.add_argument("--no-onnx", action="store_true",
                   help="write OUT only, no ONNX graphs (conversion then needs torch)")
    p.add_argument("--onnx-only", action="store_true",
                   help="only (re)write the ONNX graphs next to the given inference files, "
                        "e.g. `genreshift train export --onnx-only checkpoints/*.pt`")
    p.set_defaults(func=cmd_train_export)

    from genreshift.train.calibrate import (
        CONTENT_CHROMA,
        CONTENT_ONSET,
        DEFAULT_GAINS,
        TOLERANCE,
    )

    p = train_sub.add_parser(
        "calibrate", help="choose each converter's residual gain on the validation split and "
                          "store it in its file",
        description="Convert the validation split of a paired corpus (`genreshift data "
                    "synth`) with each converter of MODELS at several residual gains (the "
                    "change G(x) - x applied g times), and store in each converter file (and "
                    "its ONNX graphs) the smallest gain whose transfer, by the independent "
                    f"feature judge, is within {TOLERANCE * 100:.0f} points of the best among "
                    "the gains that keep the song (chroma >= "
                    f"{CONTENT_CHROMA}, onset F >= {CONTENT_ONSET}). "
                    "Convert, evaluate and the web page then apply it; --strength 1 is the "
                    "calibrated conversion.")
    p.add_argument("models", metavar="MODELS", help="the model folder (converters and the "
                   "classifier, e.g. checkpoints)")
    p.add_argument("--data", required=True, metavar="SYNTHDIR", help="the paired corpus")
    p.add_argument("--split", default="valid",
                   help="the split to measure on (default valid; test is refused)")
    p.add_argument("--gains", default=",".join(f"{g:g}" for g in DEFAULT_GAINS),
                   metavar="G1,G2,...", help="candidate gains (default %(default)s; 1 is "
                                             "always measured)")
    p.add_argument("--tunes", type=int, metavar="N", help="at most N tunes of the split")
    p.add_argument("--seconds", type=float, metavar="S",
                   help="the first S seconds of each clip (default: all)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="worker processes of one thread each (default 1)")
    p.add_argument("--report", metavar="REPORT.json", help="also write the measurements")
    p.add_argument("--dry-run", action="store_true",
                   help="measure and print the choice, write no model file")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=cmd_train_calibrate)


__all__ = ["add_train_parsers", "cmd_train_calibrate", "cmd_train_classifier",
           "cmd_train_cyclegan", "cmd_train_export"]
