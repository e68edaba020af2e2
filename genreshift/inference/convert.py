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

       out = x + strength * sum_i w_i * g_i * (G_i(x) - x),     sum_i w_i = 1

   so strength 0 gives the input back (reconstructed), strength 1 with one target is the full
   conversion, and ``jazz:0.6,rock:0.4`` mixes the two conversions' changes. g_i is the
   converter's calibrated residual gain (1 unless `genreshift train calibrate` stored one: a
   residual generator trained to keep content learns the direction of the change better than
   its size, and the gain is chosen on the validation split);
4. the pipeline gives the change the mid received to every channel (the stereo image is
   kept) and reconstructs from the input's own STFT (pipeline.run).

The networks run under onnxruntime from the ``.onnx`` files that ``train export`` writes next to
each ``.pt`` (inference/runtime.py), so trained mode never imports torch; a ``.pt`` without a
current ``.onnx``, or ``--device cuda``, runs with torch instead.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genreshift import audio as gaudio
from genreshift.errors import GenreshiftError
from genreshift.inference import DEFAULT_RHYTHM, RHYTHM_MODES, chunking
from genreshift.inference.pipeline import (
    Change,
    OutputOptions,
    ReconstructionConfig,
    Request,
    Song,
    Timings,
    resolve_device,
    run,
)
from genreshift.models.config import GeneratorConfig
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
        raise GenreshiftError(f"the generator window must be at least {MIN_WINDOW} frames "
                              "(~1.5 s)", kind="bad_option", option="window", value=window)
    return min(DEFAULT_OVERLAP, window // 3)

# The rhythm section (--rhythm): which mode is the default, and whether the converter then
# works on the song's harmonic layer or on the whole song (docs/DECISIONS.md, "Rhythm").
RHYTHM_LAYERS = ("harmonic", "song")
DEFAULT_RHYTHM_LAYER = "harmonic"

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


# Reference mode's style model in a model folder (`make default-models`): a genre classifier
# whose features were also trained on real recordings (`train classifier --real`), kept apart
# from classifier.pt so that source detection, and the classifier that judges conversions, stay
# as they were.
STYLE_MODEL_FILE = "style.pt"


def style_model_path(folder: str | Path | None = None) -> Path:
    """The classifier of reference mode's style space in ``folder`` (default: the default model
    folder): its style.pt, or its classifier.pt where there is no style.pt."""
    folder = default_models_dir() if folder is None else Path(folder)
    style_file = folder / STYLE_MODEL_FILE
    return style_file if style_file.is_file() else folder / "classifier.pt"


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
            raise GenreshiftError("empty genre; write e.g. jazz or jazz:0.6,rock:0.4",
                                  kind="bad_option", option="to", value=text)
        name, sep, weight = part.partition(":")
        name = name.strip().lower()
        try:
            w = float(weight) if sep else 1.0
        except ValueError:
            raise GenreshiftError(f"'{weight}' is not a number; write genre:weight, e.g. "
                                  "jazz:0.6,rock:0.4", kind="bad_option", option="to",
                                  value=text) from None
        if not math.isfinite(w) or w <= 0:
            raise GenreshiftError(f"the weight of {name} must be a positive number, got "
                                  f"{weight}", kind="bad_option", option="to", value=text)
        if any(t.genre == name for t in targets):
            raise GenreshiftError(f"{name} is named twice", kind="bad_option", option="to",
                                  value=text)
        targets.append(Target(name, w))
    total = sum(t.weight for t in targets)
    return [Target(t.genre, t.weight / total) for t in targets]


def check_strength(strength: float) -> float:
    if not (isinstance(strength, (int, float)) and 0.0 <= strength <= 1.0):
        raise GenreshiftError("choose a value from 0 (the input, reconstructed) to 1 (the "
                              "full conversion)", kind="bad_option", option="strength",
                              value=strength)
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
    mel_config: MelConfig = MelConfig()
    model_config: GeneratorConfig | None = None
    onnx: tuple[tuple[str, Path], ...] = ()  # (direction, file) of current ONNX exports
    gains: tuple[tuple[str, float], ...] = (("ab", 1.0), ("ba", 1.0))  # `train calibrate`

    @property
    def stride(self) -> int:
        return self.model_config.stride if self.model_config is not None else 1

    def gain(self, direction: str) -> float:
        """The residual gain of one generator: its change is applied as g (G(x) - x)."""
        return dict(self.gains).get(direction, 1.0)

    def onnx_file(self, direction: str) -> Path | None:
        return dict(self.onnx).get(direction)

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


def _model_info(path: Path, ck: dict, onnx: tuple[tuple[str, Path], ...] = ()) -> ModelInfo:
    from genreshift.checkpoint import Domain, converter_gains

    try:
        a, b = Domain.from_dict(ck["domains"]["a"]), Domain.from_dict(ck["domains"]["b"])
        mel = MelConfig.from_dict(ck["mel_config"])
        model = GeneratorConfig.stored(ck["model_config"])
    except (KeyError, TypeError) as e:
        raise GenreshiftError(f"{path}: converter checkpoint lacks {e}; the file is "
                              "damaged") from None
    steps = ck.get("provenance", {}).get("steps")
    return ModelInfo(path=path, a_name=a.name, a_genres=a.genres, b_name=b.name,
                     b_genres=b.genres, steps=int(steps) if steps is not None else None,
                     mel_config=mel, model_config=model, onnx=onnx,
                     gains=tuple(converter_gains(ck, str(path)).items()))


def onnx_exports(pt: Path) -> tuple[dict, tuple[tuple[str, Path], ...]] | None:
    """(header, ((direction, file), ...)) of the current ONNX exports of ``pt`` (direction ""
    for a classifier), or None when there are none, or one is stale or damaged: the .pt (the
    source of truth) is then read and run with torch."""
    from genreshift import checkpoint

    classifier = checkpoint.onnx_path(pt)
    try:
        if classifier.is_file():
            return checkpoint.read_onnx_header(classifier), (("", classifier),)
        header, files = None, []
        for d in checkpoint.DIRECTIONS:
            f = checkpoint.onnx_path(pt, d)
            if f.is_file():
                header = checkpoint.read_onnx_header(f)
                files.append((d, f))
        if header is None or {d for d, _ in files} != set(
                checkpoint.onnx_directions(header["domains"])):
            return None
        return header, tuple(files)
    except (GenreshiftError, KeyError, TypeError):
        return None


def _read_header(path: Path, kind: str | None = None) -> tuple[dict, tuple[tuple[str, Path], ...]]:
    """A .pt file's header and its current ONNX exports: read from the ONNX files when they
    are current (no torch needed), else from the .pt itself (torch.load)."""
    from genreshift import checkpoint

    found = onnx_exports(path)
    if found is not None:
        header, files = found
        if kind is not None and header.get("kind") != kind:
            raise GenreshiftError(f"{path} is a {header.get('kind')} checkpoint, but a {kind} "
                                  "checkpoint is needed here")
        return header, files
    return checkpoint.read_checkpoint(path, kind=kind), ()


def scan_models(models_dir: str | Path | None = None, *,
                model_files: Sequence[str | Path] = ()) -> ModelSet:
    """Read the headers of the checkpoints in ``models_dir`` (default: default_models_dir())
    and of the explicit ``model_files``. Explicit files must be valid converters; a bad file
    in the directory is skipped and reported in ``skipped``."""
    converters: list[ModelInfo] = []
    classifier: Path | None = None
    classifier_genres: tuple[str, ...] = ()
    skipped: list[str] = []
    for f in model_files:
        ck, onnx = _read_header(Path(f), kind="converter")
        converters.append(_model_info(Path(f), ck, onnx))
    origin = "option" if models_dir is not None else \
        "env" if os.environ.get(MODELS_ENV) else "default"
    folder: Path | None = None
    if not model_files:
        d = folder = Path(models_dir) if models_dir is not None else default_models_dir()
        if models_dir is not None and not d.is_dir():
            raise GenreshiftError(f"--models {d}: no such folder; give the folder that holds "
                                  "the converter checkpoints (*.pt)")
        for f in sorted(d.glob("*.pt")) if d.is_dir() else []:
            if f.name == STYLE_MODEL_FILE:  # reference mode's (torch only): not read here
                continue
            try:
                ck, onnx = _read_header(f)
                if ck.get("kind") == "converter":
                    converters.append(_model_info(f, ck, onnx))
            except GenreshiftError as e:
                skipped.append(str(e))
                continue
            if ck.get("kind") == "classifier" and classifier is None:
                classifier = f
                classifier_genres = tuple(str(g) for g in ck.get("genres", ()))
    else:
        d = Path(models_dir) if models_dir is not None else default_models_dir()
        cls = d / "classifier.pt"
        if cls.is_file():
            try:
                ck, _ = _read_header(cls, kind="classifier")
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


class _TorchGenerator:
    """A torch generator as a numpy function (a .pt without a current .onnx, or CUDA)."""

    def __init__(self, module: Any, device: str) -> None:
        self.module, self.device = module, device

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            y = self.module(torch.from_numpy(np.ascontiguousarray(x)).to(self.device))
        return y.float().cpu().numpy()


class _TorchClassifier:
    def __init__(self, loaded: Any, device: str) -> None:
        self.loaded, self.device = loaded, device
        self.genres = list(loaded.genres)
        self.mel_config = loaded.mel_config
        self.config = loaded.model.config

    def classify_clip(self, mel: np.ndarray, *, hop: int | None = None) -> np.ndarray:
        import torch

        from genreshift.models.classifier import classify_clip

        with torch.inference_mode():
            probs = classify_clip(self.loaded.model, torch.from_numpy(
                np.ascontiguousarray(mel)).to(self.device), hop=hop)
        return probs.float().cpu().numpy()


class ModelCache:
    """Loads each network once per process (the web app and batches reuse it): the ONNX
    export under onnxruntime on CPU where there is a current one, else torch."""

    def __init__(self, device: str = "cpu", threads: int | None = None) -> None:
        self.device = str(device)
        self.threads = threads  # onnxruntime intra-op threads (None: one per core)
        self._generators: dict[tuple[Path, str], Callable[[np.ndarray], np.ndarray]] = {}
        self._classifiers: dict[Path, Any] = {}

    def generator(self, info: ModelInfo, direction: str) -> Callable[[np.ndarray], np.ndarray]:
        key = (info.path, direction)
        if key not in self._generators:
            onnx = info.onnx_file(direction)
            if onnx is not None and self.device == "cpu":
                from genreshift.inference.runtime import OnnxGenerator

                self._generators[key] = OnnxGenerator(onnx, threads=self.threads)
            else:
                from genreshift.checkpoint import load_converter

                conv = load_converter(info.path, device=self.device)
                for d, g in (("ab", conv.g_ab), ("ba", conv.g_ba)):
                    self._generators[(info.path, d)] = _TorchGenerator(g, self.device)
        return self._generators[key]

    def classifier(self, path: Path) -> Any:
        """An object with ``genres``, ``mel_config`` and ``classify_clip(mel) -> probs``."""
        if path not in self._classifiers:
            found = onnx_exports(path) if self.device == "cpu" else None
            if found is not None:
                from genreshift.inference.runtime import OnnxClassifier

                self._classifiers[path] = OnnxClassifier(found[1][0][1], threads=self.threads)
            else:
                from genreshift.checkpoint import load_classifier

                self._classifiers[path] = _TorchClassifier(
                    load_classifier(path, device=self.device), self.device)
        return self._classifiers[path]


# Below this top probability the detected genre is reported as uncertain and not used to pick
# a converter (the `rest -> target` one applies to anything). On real recordings the classifier
# often spreads its probability over genres it was never shown music of; naming the top one
# there would be a guess stated as a fact.
UNCERTAIN_BELOW = 0.5


def detect_genre(classifier: Any, mel: np.ndarray, *, hop: int | None = None
                 ) -> tuple[str, float, dict[str, float]]:
    """(genre, probability, all probabilities) for a mid log-mel [n_mels, frames].

    ``hop``: frames between the classifier's windows; None is one window length (windows
    side by side). Training and evaluation overlap them by half; for a song's one decision
    that doubles the classifier's cost for no measured gain: the same accuracy (103 of 120
    synthetic test clips) and the same reported source on 92 of 93 clips (docs/DECISIONS.md,
    2026-12-01 fourth session)."""
    probs = classifier.classify_clip(mel, hop=hop or classifier.config.frames)
    k = int(np.argmax(probs))
    return (classifier.genres[k], float(probs[k]),
            {g: round(float(p), 4) for g, p in zip(classifier.genres, probs)})


def blend_fn(generators: Sequence[tuple[Callable[[np.ndarray], np.ndarray], float]],
             strength: float) -> Callable[[np.ndarray], np.ndarray]:
    """mel window [C, n_mels, w] -> x + strength * sum_i w_i (G_i(x) - x), in [-1, 1]."""

    def fn(x: np.ndarray) -> np.ndarray:
        delta = np.zeros_like(x)
        for g, w in generators:
            delta += np.float32(w) * (g(x) - x)
        return np.clip(x + np.float32(strength) * delta, -1.0, 1.0)

    return fn


def convert_mel(mel: np.ndarray, generators: Sequence[tuple[Callable, float]], *,
                strength: float = 1.0, stride: int = 4, window: int = DEFAULT_WINDOW,
                overlap: int = DEFAULT_OVERLAP, margin: int = DEFAULT_MARGIN,
                progress: bool = False) -> np.ndarray:
    """Blend of converters over a log-mel [C, n_mels, frames] of any length (windowed)."""
    if window < 3 * overlap or overlap <= 2 * margin:
        raise GenreshiftError(f"generator window {window}, overlap {overlap}, margin {margin}: "
                              "need window >= 3 x overlap and overlap > 2 x margin")
    mel = np.ascontiguousarray(mel, dtype=np.float32)
    if strength == 0.0:  # exactly the input (windowing would add rounding)
        return mel.copy()
    return chunking.apply_windowed(blend_fn(generators, strength), mel, window=window,
                                   overlap=overlap, margin=margin, pad_multiple=stride,
                                   progress=progress, desc="convert")


# --------------------------------------------------------------------------- the mode


@dataclass(frozen=True)
class TrainedSettings:
    """What a trained-mode conversion needs besides the files."""

    targets: tuple[Target, ...]
    strength: float = 1.0
    source: str | None = None  # --from; None: detect with the classifier
    window: int = DEFAULT_WINDOW
    overlap: int = DEFAULT_OVERLAP
    rhythm: str = DEFAULT_RHYTHM  # keep, replace or add (inference/rhythm.py)
    rhythm_layer: str = DEFAULT_RHYTHM_LAYER  # what the converter changes with replace / add
    seed: int = 0  # the groove's humanisation


def plan_targets(models: ModelSet, settings: TrainedSettings, source: str | None
                 ) -> list[tuple[Target, ModelInfo, str]]:
    return [(t, *choose_converter(models, t.genre, source)) for t in settings.targets]


def check_genres(models: ModelSet, settings: TrainedSettings) -> None:
    """Fail before any work on an unknown target or source genre."""
    if not models.converters:
        raise GenreshiftError(no_converters_message(models), kind="bad_model")
    available = models.targets()
    for t in settings.targets:
        if t.genre not in available:
            names = ", ".join(available) or "none"
            raise GenreshiftError(
                f"unknown target genre '{t.genre}'; available: {names} "
                "(`genreshift genres` lists them with their checkpoints)", kind="bad_option",
                option="to", value=t.genre)
    known = models.known_genres()
    if settings.source is not None and settings.source not in known:
        raise GenreshiftError(f"unknown genre; the models know {', '.join(sorted(known))}",
                              kind="bad_option", option="from", value=settings.source)
    if settings.source is None and models.classifier is None:
        sources = {m.path for t in settings.targets for m in available[t.genre]}
        if len(sources) > 1:
            raise GenreshiftError(
                "no genre classifier (classifier.pt) next to the converters to detect the "
                "source genre; say which genre the song is", kind="bad_option", option="from")


class TrainedMode:
    """Trained mode's change: detect the source genre, choose the converters, run their blend
    over windows of the mid log-mel."""

    name = "trained"

    def __init__(self, settings: TrainedSettings, *, models: ModelSet | None = None,
                 cache: ModelCache | None = None, device: str = "auto",
                 progress: bool = False) -> None:
        self.settings = settings
        self.models = models if models is not None else scan_models()
        self.device = resolve_device(device)
        self.cache = cache if cache is not None and cache.device == self.device \
            else ModelCache(self.device)
        self.progress = progress

    def check(self) -> None:
        check_strength(self.settings.strength)
        check_genres(self.models, self.settings)
        overlap_for(self.settings.window)
        if self.settings.rhythm not in RHYTHM_MODES:
            raise GenreshiftError(f"choose {', '.join(RHYTHM_MODES)}", kind="bad_option",
                                  option="rhythm", value=self.settings.rhythm)
        if self.settings.rhythm_layer not in RHYTHM_LAYERS:
            raise GenreshiftError(f"choose {', '.join(RHYTHM_LAYERS)}", kind="bad_option",
                                  option="rhythm-layer", value=self.settings.rhythm_layer)

    def change(self, song: Song, timings: Timings) -> Change:
        settings, models, cache = self.settings, self.models, self.cache
        # The source genre decides which converters apply, so the classifier runs first, on
        # the mid at its own analysis settings (shared with the converters' when they agree).
        clf = None
        if models.classifier is not None:
            with timings("models"):
                clf = cache.classifier(models.classifier)
        detected = None
        if clf is not None:
            with timings("mel"):
                clf_mid = song.mid(clf.mel_config)
            with timings("classify"):
                detected = detect_genre(clf, clf_mid)
        uncertain = (settings.source is None and detected is not None
                     and detected[1] < UNCERTAIN_BELOW)
        source = settings.source or (detected[0] if detected and not uncertain else None)

        plan = plan_targets(models, settings, source)
        first = plan[0][1]
        # strength 0 is the input itself, so there is no rhythm to change either
        rhythm_stage = (self._rhythm(song, timings)
                        if settings.rhythm != "keep" and settings.strength > 0 else None)
        conv_song = song
        if rhythm_stage is not None and rhythm_stage["layer"] == "harmonic":
            conv_song = Song(song.path, rhythm_stage["analysis"].harmonic, song.sr)
        mel_config = first.mel_config
        gens = []
        with timings("models"):
            for target, info, direction in plan:
                if info.mel_config != mel_config:
                    raise GenreshiftError(
                        f"{info.path} analyses audio differently from {first.path} (mel "
                        "settings); blend converters trained on the same settings")
                # the calibrated residual gain scales this converter's change (blend weight)
                gens.append((cache.generator(info, direction),
                             target.weight * info.gain(direction)))
        with timings("mel"):
            mid = conv_song.mid(mel_config)
        with timings("generator"):
            mid_out = convert_mel(mid[None], gens, strength=settings.strength,
                                  stride=max(info.stride for _, info, _ in plan),
                                  window=settings.window, overlap=settings.overlap,
                                  progress=self.progress)[0]
        notes = [f"the input is already {source}; the {t.genre} converter mostly leaves such "
                 "input alone" for t, _, _ in plan if source is not None and source == t.genre]
        info = {
            "source_genre": source,
            "source_given": settings.source is not None,
            "source_confidence": round(detected[1], 4) if detected else None,
            # "given", "detected", "uncertain" (top probability under UNCERTAIN_BELOW; the
            # best guess is in source_guess) or "unknown" (no classifier)
            "source_status": ("given" if settings.source is not None else "uncertain"
                              if uncertain else "detected" if detected else "unknown"),
            "source_guess": detected[0] if detected else None,
            "source_probabilities": detected[2] if detected else None,
            "targets": [{"genre": tg.genre, "weight": round(tg.weight, 4),
                         "model": str(m.path),
                         "direction": f"{m.a_name}->{m.b_name}" if d == "ab"
                         else f"{m.b_name}->{m.a_name}", "gain": m.gain(d),
                         "runtime": "onnxruntime" if m.onnx_file(d) is not None
                         and self.device == "cpu" else "torch"} for tg, m, d in plan],
            "strength": settings.strength,
            "device": self.device,
            "notes": notes,
            "rhythm": {"rhythm": "keep", "asked": "keep"},
        }
        if rhythm_stage is None:
            return Change(mel_config, mid, mid_out, info)
        return Change(mel_config, mid, mid_out, info,
                      source=None if conv_song is song else conv_song.audio,
                      post=self._rhythm_post(song, rhythm_stage, info, timings))

    def _rhythm(self, song: Song, timings: Timings) -> dict:
        from genreshift.inference import rhythm

        settings = self.settings
        with timings("rhythm"):
            analysis = rhythm.analyse_rhythm(song.audio, song.sr)
            groove = None
            if analysis.has_clear_beat:
                # Rendered now, before the converter and the reconstruction need their
                # memory. Only the kit is loaded (~11 MB of FluidR3_GM's 148), and kept.
                groove = rhythm.render_groove(
                    analysis, rhythm.groove_genre([(t.genre, t.weight) for t in settings.targets]),
                    song.sr, seed=settings.seed)
        layer = settings.rhythm_layer if analysis.has_clear_beat else "song"
        # add with a target without drums (classical) adds nothing: the song's own kit stays,
        # so the converter must change it too (measured: LSD to the truth 12.99 dB with only
        # the harmonic layer converted, 10.81 for the whole song; benchmarks/rhythm.py table 6)
        adds_nothing = settings.rhythm == "add" and groove is not None and not np.any(groove)
        if adds_nothing:
            layer = "song"
        # Whether the converted whole song is separated again for the mix: not when
        # apply_rhythm keeps it as it is (no clear beat, or nothing to add).
        resplit = layer == "song" and analysis.has_clear_beat and not adds_nothing
        return {"analysis": analysis, "layer": layer, "groove": groove, "resplit": resplit}

    def _rhythm_post(self, song: Song, stage: dict, info: dict, timings: Timings
                     ) -> Callable[[np.ndarray], np.ndarray]:
        """Mixes the reconstruction with the groove: with the converted harmonic layer, the
        song's own percussive layer is the one replaced or topped; with the converted whole
        song, the converted song is separated again (the beat grid stays the input's)."""
        from genreshift.inference import rhythm

        settings = self.settings

        def post(out: np.ndarray) -> np.ndarray:
            analysis = stage["analysis"]
            with timings("rhythm"):
                if stage["layer"] == "harmonic":
                    layers = (out, analysis.percussive)
                elif stage["resplit"]:
                    layers = rhythm.separate(out, song.sr)
                else:  # apply_rhythm keeps such a song as it is: nothing to separate
                    layers = (out, np.zeros_like(out))
                mixed, rinfo = rhythm.apply_rhythm(
                    song.audio, song.sr, settings.rhythm,
                    [(t.genre, t.weight) for t in settings.targets], seed=settings.seed,
                    analysis=analysis, layers=layers, strength=settings.strength,
                    limit=False,  # normalize_loudness limits the final mix
                    groove=stage["groove"])
            rinfo["converted_layer"] = stage["layer"]
            info["rhythm"] = rinfo
            if rinfo.get("reason") and rinfo["rhythm"] != settings.rhythm:
                info["notes"].append(f"--rhythm {settings.rhythm} not applied: "
                                     f"{rinfo['reason']}")
            return mixed

        return post


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
) -> dict:
    """Convert ``src`` to ``settings.targets`` and write ``dst``; returns the summary (source
    genre and confidence, the converters used, per-stage timings). A shorthand for
    pipeline.run with a trained-mode request."""
    request = Request(Path(src), OutputOptions(Path(dst), fmt, bit_depth, sr, force), settings,
                      recon, mono=mono, device=device, progress=progress)
    return run(request, models=models, cache=cache).summary


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
    """Rows for `genreshift genres`: target genre, checkpoint, trained direction, steps and
    the calibrated residual gain of the generator that produces the genre."""
    rows = []
    for genre, infos in models.targets().items():
        for m in infos:
            to_b = genre in m.b_genres and m.b_name != REST
            src = m.a_name if to_b else m.b_name
            rows.append({"genre": genre, "model": str(m.path), "from": src,
                         "steps": m.steps, "gain": m.gain("ab" if to_b else "ba")})
    return rows

