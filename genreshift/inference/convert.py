"""Trained mode, genre blending and batches: the library behind `genreshift convert --to`.

A *model directory* holds inference checkpoints: converters (``rest-to-jazz.pt``, or any
two-domain converter such as ``rock-jazz.pt``) and at most one genre classifier. The shipped
defaults are package data, ``genreshift/checkpoints/`` (the repository's ``checkpoints/`` links
there), so a wheel install converts offline; ``GENRESHIFT_MODELS`` or ``--models`` points
elsewhere, and ``--model PATH`` names one converter file directly.

Converting a song:

1. the source genre is detected by the classifier on the song's mid (or given with --from);
2. for each target genre the most specific converter is chosen: one whose other domain names
   the source genre, else one trained from ``rest`` (every genre but the target);
3. the generator runs over windows of the mid's log-mel (chunking.apply_windowed), and the
   targets are blended in the log-mel domain:

       out = x + strength * sum_i w_i * (G_i(x) - x),     sum_i w_i = 1

   so strength 0 gives the input back (reconstructed), strength 1 with one target is the full
   conversion, and ``jazz:0.6,rock:0.4`` mixes the two conversions' changes;
4. the change the mid received is given to every channel (the stereo image is kept, as in
   reference mode) and the result is reconstructed from the input's phase (pipeline).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from genreshift import audio as gaudio
from genreshift.errors import GenreshiftError
from genreshift.inference import chunking
from genreshift.inference.pipeline import (
    ReconstructionConfig,
    analyse,
    apply_mid_change,
    check_output,
    load_song,
    mid_mel,
    resolve_device,
    synthesise,
    write_output,
)
from genreshift.spectral import MelConfig

# Generator windows. The converters are trained on 128-frame windows (~3 s) and instance norm
# adapts to the statistics of the window it sees; on held-out synthetic tunes 128- and
# 256-frame windows gave the highest share of clips judged as the target, whole 30 s clips the
# lowest (BENCHMARKS.md, "trained mode: window length"). 256 with a 64-frame overlap is the
# default: twice as few seams as 128 for about the same transfer.
DEFAULT_WINDOW = 256
DEFAULT_OVERLAP = 64
DEFAULT_MARGIN = 8
MIN_WINDOW = 64


def overlap_for(window: int) -> int:
    """The overlap used with a generator window: DEFAULT_OVERLAP, less for short windows."""
    if window < MIN_WINDOW:
        raise GenreshiftError(f"--window {window}: the generator window must be at least "
                              f"{MIN_WINDOW} frames (~1.5 s)")
    return min(DEFAULT_OVERLAP, window // 3)

MODELS_ENV = "GENRESHIFT_MODELS"
REST = "rest"


def packaged_models_dir() -> Path:
    """The default models shipped inside the installed package: ``genreshift/checkpoints/``."""
    return Path(__file__).resolve().parents[1] / "checkpoints"


def default_models_dir() -> Path:
    """``$GENRESHIFT_MODELS`` if set, else the package's own models (packaged_models_dir)."""
    env = os.environ.get(MODELS_ENV)
    if env:
        return Path(env)
    return packaged_models_dir()


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    genre: str
    weight: float


def parse_targets(text: str) -> list[Target]:
    """``jazz`` or ``jazz:0.6,rock:0.4`` -> targets whose weights sum to 1.

    Weights are relative (``jazz:3,rock:1`` is ``jazz:0.75,rock:0.25``); a genre without a
    weight counts 1.
    """
    targets: list[Target] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise GenreshiftError(f"--to '{text}': empty genre; write e.g. jazz or "
                                  "jazz:0.6,rock:0.4")
        name, sep, weight = part.partition(":")
        name = name.strip().lower()
        try:
            w = float(weight) if sep else 1.0
        except ValueError:
            raise GenreshiftError(f"--to '{text}': '{weight}' is not a number; write "
                                  "genre:weight, e.g. jazz:0.6,rock:0.4") from None
        if not math.isfinite(w) or w <= 0:
            raise GenreshiftError(f"--to '{text}': the weight of {name} must be a positive "
                                  f"number, got {weight}")
        if any(t.genre == name for t in targets):
            raise GenreshiftError(f"--to '{text}': {name} is named twice")
        targets.append(Target(name, w))
    total = sum(t.weight for t in targets)
    return [Target(t.genre, t.weight / total) for t in targets]


def check_strength(strength: float) -> float:
    if not (isinstance(strength, (int, float)) and 0.0 <= strength <= 1.0):
        raise GenreshiftError(f"--strength {strength}: choose a value from 0 (the input, "
                              "reconstructed) to 1 (the full conversion)")
    return float(strength)


# --------------------------------------------------------------------------- model directory


@dataclass(frozen=True)
class ModelInfo:
    """One converter file: its two domains (name, genres)."""

    path: Path
    a_name: str
    a_genres: tuple[str, ...]
    b_name: str
    b_genres: tuple[str, ...]
    steps: int | None

    def sides(self) -> list[tuple[str, tuple[str, ...], str, tuple[str, ...]]]:
        """(target name, target genres, source name, source genres) for each direction."""
        return [(self.b_name, self.b_genres, self.a_name, self.a_genres),
                (self.a_name, self.a_genres, self.b_name, self.b_genres)]

    def targets(self) -> list[str]:
        """The genres this file can convert *to*: every genre of a named domain (a ``rest``
        domain is a catch-all source, not a genre to aim at)."""
        out = []
        for name, genres, _, _ in self.sides():
            if name != REST:
                out.extend(genres)
        return out


@dataclass
class ModelSet:
    converters: list[ModelInfo]
    classifier: Path | None
    classifier_genres: tuple[str, ...]
    skipped: list[str]  # "path: reason" for files that are not usable checkpoints
    folder: Path | None = None  # the folder scanned; None when only explicit files were given
    origin: str = "default"  # how the folder was chosen: "option", "env" or "default"

    def targets(self) -> dict[str, list[ModelInfo]]:
        out: dict[str, list[ModelInfo]] = {}
        for m in self.converters:
            for g in m.targets():
                out.setdefault(g, []).append(m)
        return dict(sorted(out.items()))

    def known_genres(self) -> set[str]:
        known = set(self.classifier_genres)
        for m in self.converters:
            known.update(m.a_genres)
            known.update(m.b_genres)
        return known


def _model_info(path: Path, ck: dict) -> ModelInfo:
    from genreshift.checkpoint import Domain

    a, b = Domain.from_dict(ck["domains"]["a"]), Domain.from_dict(ck["domains"]["b"])
    steps = ck.get("provenance", {}).get("steps")
    return ModelInfo(path=path, a_name=a.name, a_genres=a.genres, b_name=b.name,
                     b_genres=b.genres, steps=int(steps) if steps is not None else None)


def scan_models(models_dir: str | Path | None = None, *,
                model_files: Sequence[str | Path] = ()) -> ModelSet:
    """Read the headers of the checkpoints in ``models_dir`` (default: default_models_dir())
    and of the explicit ``model_files``. Explicit files must be valid converters; a bad file
    in the directory is skipped and reported in ``skipped``."""
    from genreshift.checkpoint import read_checkpoint

    converters: list[ModelInfo] = []
    classifier: Path | None = None
    classifier_genres: tuple[str, ...] = ()
    skipped: list[str] = []
    for f in model_files:
        ck = read_checkpoint(f, kind="converter")
        converters.append(_model_info(Path(f), ck))
    origin = "option" if models_dir is not None else \
        "env" if os.environ.get(MODELS_ENV) else "default"
    folder: Path | None = None
    if not model_files:
        d = folder = Path(models_dir) if models_dir is not None else default_models_dir()
        if models_dir is not None and not d.is_dir():
            raise GenreshiftError(f"--models {d}: no such folder; give the folder that holds "
                                  "the converter checkpoints (*.pt)")
        for f in sorted(d.glob("*.pt")) if d.is_dir() else []:
            try:
                ck = read_checkpoint(f)
            except GenreshiftError as e:
                skipped.append(str(e))
                continue
            if ck.get("kind") == "converter":
                converters.append(_model_info(f, ck))
            elif ck.get("kind") == "classifier" and classifier is None:
                classifier = f
                classifier_genres = tuple(str(g) for g in ck.get("genres", ()))
    else:
        d = Path(models_dir) if models_dir is not None else default_models_dir()
        cls = d / "classifier.pt"
        if cls.is_file():
            try:
                ck = read_checkpoint(cls, kind="classifier")
                classifier, classifier_genres = cls, tuple(str(g) for g in ck["genres"])
            except GenreshiftError as e:
                skipped.append(str(e))
    return ModelSet(converters=converters, classifier=classifier,
                    classifier_genres=classifier_genres, skipped=skipped, folder=folder,
                    origin=origin)


def no_converters_message(models: ModelSet) -> str:
    """Why ``models`` has no converter and what to do, for the way the folder was chosen:
    ``--models``, ``$GENRESHIFT_MODELS``, or the package's own folder (a source checkout, or
    an installation without its package data)."""
    d = models.folder if models.folder is not None else default_models_dir()
    shipped = packaged_models_dir()
    if models.origin == "option":
        msg = (f"--models {d}: no converter checkpoints (*.pt) in this folder; give the folder "
               f"that holds them, or leave --models out to use {default_models_dir()}")
    elif models.origin == "env":
        what = "no converter checkpoints (*.pt) in this folder" if d.is_dir() else \
            "no such folder"
        msg = (f"${MODELS_ENV}={d}: {what}; set it to the folder that holds the converter "
               f"checkpoints, or unset it to use the models shipped with genreshift ({shipped})")
    elif (shipped.parents[1] / "pyproject.toml").is_file():  # a source checkout
        msg = (f"no converter checkpoints (*.pt) in {d}, the models folder of this source "
               "checkout; restore the shipped ones with `git checkout -- genreshift/checkpoints` "
               f"or train them with `make default-models`, or point --models or ${MODELS_ENV} "
               "at a folder of converters")
    else:
        from genreshift import __version__

        what = f"no converter checkpoints (*.pt) in {d}" if d.is_dir() else \
            f"{d} does not exist"
        msg = (f"{what}: this installation of genreshift lacks its default models (package "
               "data); reinstall it from a wheel that carries them (`pip install "
               f"--force-reinstall genreshift-{__version__}-py3-none-any.whl`), or point "
               f"--models or ${MODELS_ENV} at a folder of converters")
    if models.skipped:
        msg += (f" ({len(models.skipped)} .pt file(s) there could not be used; the first: "
                f"{models.skipped[0]})")
    return msg


def choose_converter(models: ModelSet, target: str, source: str | None
                     ) -> tuple[ModelInfo, str]:
    """The converter for ``target`` given the (detected or stated) ``source`` genre, and which
    generator of it to run ('ab' or 'ba'). Preference: a converter whose source domain names
    the source genre explicitly, then one whose ``rest`` domain contains it, then any that
    produces the target (the source is then already the target, or unknown)."""
    best: tuple[int, ModelInfo, str] | None = None
    for m in models.converters:
        for direction, (tname, tgenres, sname, sgenres) in zip(("ab", "ba"), m.sides()):
            if tname == REST or target not in tgenres:
                continue
            if source is not None and source in sgenres:
                rank = 1 if sname == REST else 0
            else:
                rank = 2
            if best is None or rank < best[0]:
                best = (rank, m, direction)
    if best is None:
        available = ", ".join(models.targets()) or "none"
        where = ("the given --model files" if not models.converters or
                 len({m.path.parent for m in models.converters}) != 1
                 else str(models.converters[0].path.parent))
        raise GenreshiftError(
            f"no converter to '{target}' in {where}; available target genres: {available} "
            "(`genreshift genres` lists them with their files; train another with "
            "`genreshift train cyclegan`)")
    return best[1], best[2]


# --------------------------------------------------------------------------- loaded models


class ModelCache:
    """Loads each checkpoint once per process (the web app and batches reuse it)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._converters: dict[Path, object] = {}
        self._classifier: dict[Path, object] = {}

    def generator(self, info: ModelInfo, direction: str) -> torch.nn.Module:
        from genreshift.checkpoint import load_converter

        if info.path not in self._converters:
            self._converters[info.path] = load_converter(info.path, device=self.device)
        conv = self._converters[info.path]
        return conv.g_ab if direction == "ab" else conv.g_ba  # type: ignore[attr-defined]

    def mel_config(self, info: ModelInfo) -> MelConfig:
        self.generator(info, "ab")
        return self._converters[info.path].mel_config  # type: ignore[attr-defined]

    def stride(self, info: ModelInfo) -> int:
        self.generator(info, "ab")
        return self._converters[info.path].config.stride  # type: ignore[attr-defined]

    def classifier(self, path: Path):
        from genreshift.checkpoint import load_classifier

        if path not in self._classifier:
            self._classifier[path] = load_classifier(path, device=self.device)
        return self._classifier[path]


# Below this top probability the detected genre is reported as uncertain and not used to pick
# a converter (the `rest -> target` one applies to anything). On real recordings the classifier
# often spreads its probability over genres it was never shown music of; naming the top one
# there would be a guess stated as a fact.
UNCERTAIN_BELOW = 0.5


def detect_genre(classifier, mel: torch.Tensor) -> tuple[str, float, dict[str, float]]:
    """(genre, probability, all probabilities) for a mid log-mel [n_mels, frames]."""
    from genreshift.models.classifier import classify_clip

    with torch.inference_mode():
        probs = classify_clip(classifier.model, mel.to(next(classifier.model.parameters()).device))
    k = int(probs.argmax())
    return (classifier.genres[k], float(probs[k]),
            {g: round(float(p), 4) for g, p in zip(classifier.genres, probs)})


def blend_fn(generators: Sequence[tuple[torch.nn.Module, float]], strength: float
             ) -> Callable[[torch.Tensor], torch.Tensor]:
    """mel window [C, n_mels, w] -> x + strength * sum_i w_i (G_i(x) - x), in [-1, 1]."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        delta = torch.zeros_like(x)
        for g, w in generators:
            delta += w * (g(x) - x)
        return (x + strength * delta).clamp(-1.0, 1.0)

    return fn


@torch.inference_mode()
def convert_mel(mel: torch.Tensor, generators: Sequence[tuple[torch.nn.Module, float]], *,
                strength: float = 1.0, stride: int = 4, window: int = DEFAULT_WINDOW,
                overlap: int = DEFAULT_OVERLAP, margin: int = DEFAULT_MARGIN,
                progress: bool = False) -> torch.Tensor:
    """Blend of converters over a log-mel [C, n_mels, frames] of any length (windowed)."""
    if window < 3 * overlap or overlap <= 2 * margin:
        raise GenreshiftError(f"generator window {window}, overlap {overlap}, margin {margin}: "
                              "need window >= 3 x overlap and overlap > 2 x margin")
    if strength == 0.0:  # exactly the input (windowing would add rounding)
        return mel.clone()
    return chunking.apply_windowed(blend_fn(generators, strength), mel, window=window,
                                   overlap=overlap, margin=margin, pad_multiple=stride,
                                   progress=progress, desc="convert")


# --------------------------------------------------------------------------- files


@dataclass(frozen=True)
class TrainedSettings:
    """What a trained-mode conversion needs besides the files."""

    targets: tuple[Target, ...]
    strength: float = 1.0
    source: str | None = None  # --from; None: detect with the classifier
    window: int = DEFAULT_WINDOW
    overlap: int = DEFAULT_OVERLAP


def plan_targets(models: ModelSet, settings: TrainedSettings, source: str | None
                 ) -> list[tuple[Target, ModelInfo, str]]:
    return [(t, *choose_converter(models, t.genre, source)) for t in settings.targets]


def check_genres(models: ModelSet, settings: TrainedSettings) -> None:
    """Fail before any work on an unknown target or source genre."""
    if not models.converters:
        raise GenreshiftError(no_converters_message(models))
    available = models.targets()
    for t in settings.targets:
        if t.genre not in available:
            names = ", ".join(available) or "none"
            raise GenreshiftError(
                f"unknown target genre '{t.genre}'; available: {names} "
                "(`genreshift genres` lists them with their checkpoints)")
    known = models.known_genres()
    if settings.source is not None and settings.source not in known:
        raise GenreshiftError(f"--from '{settings.source}': unknown genre; the models know "
                              f"{', '.join(sorted(known))}")
    if settings.source is None and models.classifier is None:
        sources = {m.path for t in settings.targets for m in available[t.genre]}
        if len(sources) > 1:
            raise GenreshiftError(
                "no genre classifier (classifier.pt) next to the converters to detect the "
                "source genre; say it with --from GENRE")


def convert_trained_file(
    src: str | Path,
    dst: str | Path,
    settings: TrainedSettings,
    *,
    models: ModelSet | None = None,
    cache: ModelCache | None = None,
    device: str = "auto",
    recon: ReconstructionConfig = ReconstructionConfig(),
    fmt: str | None = None,
    bit_depth: str | None = None,
    force: bool = False,
    mono: bool = False,
    sr: int | None = None,
    progress: bool = False,
    keep_mels: bool = False,
) -> dict:
    """Convert ``src`` to ``settings.targets`` and write ``dst``; returns a summary (source
    genre and confidence, the converters used, per-stage timings). Everything is checked
    before the audio is decoded, and nothing is written on failure."""
    dst, fmt = check_output(dst, fmt, force)
    check_strength(settings.strength)
    models = models if models is not None else scan_models()
    check_genres(models, settings)
    dev = resolve_device(device)
    cache = cache if cache is not None and cache.device == dev else ModelCache(dev)
    timings: dict[str, float] = {}

    t = time.perf_counter()
    audio, in_sr = load_song(src, mono=mono)
    timings["load"] = time.perf_counter() - t

    # The source genre decides which converters apply, so the classifier runs first, on its
    # own analysis; the converters then share one analysis, the first planned target's (the
    # classifier's is reused when the settings agree). Loading checkpoints (once per
    # ModelCache) is a stage of its own.
    t = time.perf_counter()
    clf = cache.classifier(models.classifier) if models.classifier is not None else None
    timings["models"] = time.perf_counter() - t
    t = time.perf_counter()
    clf_analysis = analyse(audio, in_sr, clf.mel_config, dev) if clf is not None else None
    timings["mel"] = time.perf_counter() - t

    t = time.perf_counter()
    detected = detect_genre(clf, mid_mel(clf_analysis)) if clf is not None else None
    uncertain = (settings.source is None and detected is not None
                 and detected[1] < UNCERTAIN_BELOW)
    source = settings.source or (detected[0] if detected and not uncertain else None)
    timings["classify"] = time.perf_counter() - t

    plan = plan_targets(models, settings, source)
    first = plan[0][1]
    t = time.perf_counter()
    mel_config = cache.mel_config(first)
    timings["models"] += time.perf_counter() - t
    t = time.perf_counter()
    analysis = (clf_analysis if clf is not None and clf.mel_config == mel_config
                else analyse(audio, in_sr, mel_config, dev))
    mid = mid_mel(analysis)
    timings["mel"] += time.perf_counter() - t
    gens = []
    for target, info, direction in plan:
        if cache.mel_config(info) != mel_config:
            raise GenreshiftError(f"{info.path} analyses audio differently from {first.path} "
                                  "(mel settings); blend converters trained on the same "
                                  "settings")
        gens.append((cache.generator(info, direction), target.weight))
    stride = max(cache.stride(info) for _, info, _ in plan)
    t = time.perf_counter()
    mid_out = convert_mel(mid[None], gens, strength=settings.strength, stride=stride,
                          window=settings.window, overlap=settings.overlap,
                          progress=progress)[0]
    mel_out = apply_mid_change(analysis.mel, mid, mid_out)
    timings["generator"] = time.perf_counter() - t

    t = time.perf_counter()
    out = synthesise(mel_out, analysis, recon, progress=progress)
    timings["reconstruction"] = time.perf_counter() - t
    t = time.perf_counter()
    written, out, out_sr = write_output(out, in_sr, dst, sr=sr, fmt=fmt, bit_depth=bit_depth,
                                        force=force, protect=(src,))
    timings["write"] = time.perf_counter() - t
    notes = []
    for target, info, direction in plan:
        if source is not None and source == target.genre:
            notes.append(f"the input is already {source}; the {target.genre} converter "
                         "mostly leaves such input alone")
    summary = {
        "input": str(src),
        "output": str(written),
        "mode": "trained",
        "source_genre": source,
        "source_given": settings.source is not None,
        "source_confidence": round(detected[1], 4) if detected else None,
        # "given", "detected", "uncertain" (top probability under UNCERTAIN_BELOW; the best
        # guess is in source_guess) or "unknown" (no classifier)
        "source_status": ("given" if settings.source is not None else "uncertain" if uncertain
                          else "detected" if detected else "unknown"),
        "source_guess": detected[0] if detected else None,
        "source_probabilities": detected[2] if detected else None,
        "targets": [{"genre": tg.genre, "weight": round(tg.weight, 4), "model": str(info.path),
                     "direction": f"{info.a_name}->{info.b_name}" if d == "ab"
                     else f"{info.b_name}->{info.a_name}"} for tg, info, d in plan],
        "strength": settings.strength,
        "sample_rate": out_sr,
        "channels": int(out.shape[0]),
        "stereo": "mid-gain" if analysis.mel.shape[0] > 1 else "mono",
        "duration_s": out.shape[-1] / out_sr,
        "input_duration_s": audio.shape[-1] / in_sr,
        "device": str(dev),
        "notes": notes,
        "reconstruction": asdict(recon),
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
    }
    if keep_mels:
        summary["_mels"] = {"input": mid.cpu(), "output": mid_out.cpu()}
    return summary


# --------------------------------------------------------------------------- batches

AUDIO_SUFFIXES = gaudio.READABLE_EXTENSIONS


def expand_inputs(inputs: Iterable[str | Path]) -> list[Path]:
    """Files as given, and the audio files (by extension) inside given folders, recursively,
    in sorted order. A missing path is kept so that its conversion reports it."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*")
                           if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                raise GenreshiftError(f"{p}: folder holds no audio files "
                                      f"({' '.join(AUDIO_SUFFIXES)})")
            out.extend(found)
        else:
            out.append(p)
    return out


def batch_output_path(src: Path, outdir: Path, label: str, fmt: str | None,
                      taken: set[Path]) -> Path:
    """``OUTDIR/<stem>.<label>.<ext>``; a stem seen twice (same name in two folders) gets
    ``-2``, ``-3`` ... so no output overwrites another of the same batch."""
    ext = fmt or "wav"
    base = f"{src.stem}.{label}"
    path = outdir / f"{base}.{ext}"
    n = 2
    while path in taken:
        path = outdir / f"{base}-{n}.{ext}"
        n += 1
    taken.add(path)
    return path


def default_output_path(src: Path, label: str, fmt: str | None) -> Path:
    """Next to the input: ``song.jazz.wav`` (the format defaults to WAV)."""
    return src.with_name(f"{src.stem}.{label}.{fmt or 'wav'}")


def target_label(targets: Sequence[Target]) -> str:
    return "+".join(t.genre for t in targets)


def describe_models(models: ModelSet) -> list[dict]:
    """Rows for `genreshift genres`: target genre, checkpoint, trained direction, steps."""
    rows = []
    for genre, infos in models.targets().items():
        for m in infos:
            src = m.a_name if genre in m.b_genres and m.b_name != REST else m.b_name
            rows.append({"genre": genre, "model": str(m.path), "from": src,
                         "steps": m.steps})
    return rows

