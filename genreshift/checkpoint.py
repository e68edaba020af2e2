"""Checkpoint files: self-describing, versioned, checksummed, written atomically.

Every file is a plain dict (tensors, strings, numbers, lists, dicts) loaded with
``torch.load(weights_only=True)``::

    magic           "genreshift-checkpoint"
    format_version  FORMAT_VERSION (a reader refuses a newer one)
    kind            "converter" | "classifier"
    role            "inference" | "resume"
    model_config    GeneratorConfig / ClassifierConfig as a dict: what rebuilds the network
    mel_config      MelConfig as a dict: what the network's input means
    domains         converter: {"a": {"name", "genres"}, "b": {...}}; classifier: absent
    genres          classifier: class names in logit order; converter: absent
    gain            converter, optional: {"ab": g, "ba": g}, the residual gain each generator's
                    change is applied with (x + g (G(x) - x)); set on the validation split by
                    `genreshift train calibrate`, 1 where absent
    provenance      dataset, steps, date, git commit, genreshift and torch versions, train time
    state_dict      converter: {"g_ab": ..., "g_ba": ...}; classifier: {"classifier": ...}
    resume          resume files only: everything else a run needs to continue exactly
    sha256          digest of all of the above (detects a modified or corrupted file)

An inference file holds the generators (or the classifier) only. A resume file is the same dict
plus ``resume`` (discriminators, optimisers, schedulers, step, RNG states, image pools, the
training config), so a resume file can also be used for inference, never the other way round.

Conversion runs the networks as ONNX graphs under onnxruntime (importing torch costs seconds).
:func:`export_onnx` writes them next to an inference file ``X.pt``, which stays the source of
truth: ``X.onnx`` for a classifier; ``X.ab.onnx`` (generator a -> b) and ``X.ba.onnx`` for a
converter, for each direction whose target domain is not ``rest`` (a catch-all source, never a
target). Each graph carries the .pt's description as JSON in its ``metadata_props``
(:func:`read_onnx_header`), plus the SHA-256 of the .pt it came from, so that a graph left
behind when its .pt changed is refused rather than run. Reading .onnx files needs neither torch
nor the ``onnx`` package.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import genreshift
from genreshift.errors import GenreshiftError
from genreshift.models.config import ClassifierConfig, GeneratorConfig

if TYPE_CHECKING:
    import torch
    from torch import nn

    from genreshift.models.classifier import GenreClassifier
    from genreshift.models.generator import Generator
    from genreshift.spectral import MelConfig

# This module is imported by the torch-free conversion path (the .onnx headers, Domain), so
# torch, the networks and the mel code are imported inside the functions that need them.


def __getattr__(name: str) -> Any:
    # ``checkpoint.torch`` stayed an attribute when the import moved into the functions
    # (tests patch ``checkpoint.torch.save``); it loads torch only when asked for.
    if name == "torch":
        import torch

        return torch
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


MAGIC = "genreshift-checkpoint"
FORMAT_VERSION = 1
KINDS = ("converter", "classifier")
ROLES = ("inference", "resume")


# --------------------------------------------------------------------------- helpers


def unwrap(module: nn.Module) -> nn.Module:
    """The bare module under DistributedDataParallel / DataParallel / torch.compile wrappers.

    Saving a wrapped module would prefix every key with ``module.`` or ``_orig_mod.`` and tie
    the file to how it was trained.
    """
    from torch import nn

    while True:
        if isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            module = module.module
        elif hasattr(module, "_orig_mod") and isinstance(module._orig_mod, nn.Module):
            module = module._orig_mod
        else:
            return module


def cpu_state_dict(module: nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The unwrapped module's state dict as detached CPU tensors (floats cast to ``dtype``)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in unwrap(module).state_dict().items():
        v = v.detach().cpu()
        if dtype is not None and v.is_floating_point():
            v = v.to(dtype)
        out[k] = v.clone()
    return out


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """The commit of the genreshift source tree, or None outside a git checkout."""
    root = Path(genreshift.__file__).resolve().parent.parent
    try:
        res = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = res.stdout.strip()
    if res.returncode != 0 or not commit:
        return None
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain",
                            "--untracked-files=no"],
                           capture_output=True, text=True, timeout=10, check=False)
    return commit + ("-dirty" if dirty.stdout.strip() else "")


def provenance(dataset: str, steps: int, train_seconds: float = 0.0, **extra: Any) -> dict:
    """Where a model came from: written into every checkpoint, shown by the model card."""
    import torch

    return {
        "dataset": dataset,
        "steps": int(steps),
        "train_seconds": round(float(train_seconds), 1),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "genreshift_version": genreshift.__version__,
        "torch_version": torch.__version__.split("+")[0],
        **extra,
    }


def _digest(obj: Any, h: hashlib._Hash) -> None:
    """Feed a canonical encoding of ``obj`` (plain data and tensors) into ``h``."""
    # Without torch loaded nothing can be a tensor, and plain data must not pay for importing it.
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(b"T" + str(t.dtype).encode() + repr(tuple(t.shape)).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, Mapping):
        h.update(b"D" + struct.pack("<q", len(obj)))
        for k in sorted(obj, key=repr):
            _digest(k, h)
            _digest(obj[k], h)
    elif isinstance(obj, (list, tuple)):
        h.update((b"L" if isinstance(obj, list) else b"U") + struct.pack("<q", len(obj)))
        for v in obj:
            _digest(v, h)
    elif isinstance(obj, str):
        b = obj.encode()
        h.update(b"S" + struct.pack("<q", len(b)) + b)
    elif isinstance(obj, bytes):
        h.update(b"B" + struct.pack("<q", len(obj)) + obj)
    elif obj is None or isinstance(obj, (bool, int, float)):
        # repr distinguishes 1, 1.0, True; floats repr exactly (round-trip) in Python 3.
        h.update(b"P" + type(obj).__name__.encode() + repr(obj).encode())
    else:
        raise TypeError(f"checkpoints hold plain data and tensors only, got {type(obj).__name__}")


def content_digest(payload: Mapping) -> str:
    """SHA-256 of everything in a checkpoint dict except its ``sha256`` entry."""
    h = hashlib.sha256()
    _digest({k: v for k, v in payload.items() if k != "sha256"}, h)
    return h.hexdigest()


# --------------------------------------------------------------------------- write / read


def write_checkpoint(path: str | Path, payload: Mapping) -> Path:
    """Write a checkpoint dict atomically: a temporary file in the same folder, then rename.

    A crash or a full disk while writing leaves the previous file intact (never a torn one).
    ``payload`` needs ``kind``, ``role``, ``model_config``, ``mel_config``, ``provenance`` and
    ``state_dict``; the marker, format version and checksum are added here.
    """
    path = Path(path)
    missing = {"kind", "role", "model_config", "mel_config", "provenance", "state_dict"} - set(
        payload)
    if missing:
        raise ValueError(f"checkpoint payload lacks {sorted(missing)}")
    if payload["kind"] not in KINDS or payload["role"] not in ROLES:
        raise ValueError(f"bad kind/role {payload['kind']!r}/{payload['role']!r}")
    import torch

    obj = {"magic": MAGIC, "format_version": FORMAT_VERSION, **payload}
    obj["sha256"] = content_digest(obj)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | Path, *, kind: str | None = None,
                    role: str | None = None) -> dict:
    """Load and validate a checkpoint dict (on CPU).

    Refuses, with a GenreshiftError that says what to do: a missing or unreadable file, a file
    holding Python objects (``weights_only=True`` is the only way genreshift loads), a file
    that is not a genreshift checkpoint, one from a newer format version, one of another kind
    or role, and one whose content no longer matches its checksum.
    """
    path = Path(path)
    if not path.is_file():
        raise GenreshiftError(f"checkpoint {path} does not exist; check the path, or train one "
                              "with `genreshift train`")
    unreadable = (f"{path} is not a readable PyTorch checkpoint (truncated, corrupted or another "
                  "format){}; re-download or retrain it")
    if not zipfile.is_zipfile(path):  # torch.save has written zip archives since torch 1.6
        raise GenreshiftError(unreadable.format(""))
    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message is a paragraph; the line naming the refused class is what helps.
        lines = [ln[ln.index("Unsupported global"):].split(" was not")[0]
                 for ln in str(e).splitlines() if "Unsupported global" in ln]
        raise GenreshiftError(
            f"{path} holds Python objects other than tensors and plain data, so it is not a "
            "genreshift checkpoint (genreshift loads only with weights_only=True, because "
            f"unpickling objects can run code){': ' + lines[0] if lines else ''}") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise GenreshiftError(unreadable.format(f": {reason}")) from None
    if not isinstance(obj, dict) or obj.get("magic") != MAGIC:
        raise GenreshiftError(
            f"{path} is a PyTorch file but not a genreshift checkpoint (no '{MAGIC}' marker); "
            "pass a file written by `genreshift train`")
    version = obj.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise GenreshiftError(f"{path} has an invalid format_version {version!r}; the file is "
                              "damaged, re-download or retrain it")
    if version > FORMAT_VERSION:
        raise GenreshiftError(
            f"{path} was written by a newer genreshift (checkpoint format {version}; this "
            f"version {genreshift.__version__} reads up to {FORMAT_VERSION}); upgrade genreshift")
    if obj.get("sha256") != content_digest(obj):
        raise GenreshiftError(
            f"{path} was modified or corrupted after it was written (its content does not "
            "match its checksum); re-download or retrain it")
    if kind is not None and obj.get("kind") != kind:
        raise GenreshiftError(f"{path} is a {obj.get('kind')} checkpoint, but a {kind} "
                              "checkpoint is needed here")
    if role is not None and obj.get("role") != role:
        raise GenreshiftError(f"{path} is a{'n' if obj.get('role') == 'inference' else ''} "
                              f"{obj.get('role')} file, but a {role} file is needed here")
    return obj


def check_same_config(path: str | Path, what: str, stored: Mapping, expected: Mapping,
                      hint: str) -> None:
    """Raise a GenreshiftError listing the fields where ``stored`` and ``expected`` differ."""
    keys = sorted(set(stored) | set(expected))
    diffs = [f"{k}: {stored.get(k, '<absent>')!r} in the file vs {expected.get(k, '<absent>')!r}"
             for k in keys if stored.get(k, "<absent>") != expected.get(k, "<absent>")]
    if diffs:
        raise GenreshiftError(f"{path}: {what} does not match ({'; '.join(diffs)}); {hint}")


def _load_weights(path: Path, module: nn.Module, state: Mapping, name: str) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError) as e:
        raise GenreshiftError(
            f"{path}: the {name} weights do not fit the model config stored next to them "
            f"({str(e).splitlines()[0]}); the file is damaged or was assembled by hand") from None


# --------------------------------------------------------------------------- converters


@dataclass(frozen=True)
class Domain:
    """One side of a converter: how the user named it and the genres it covers."""

    name: str  # as given: "jazz", "rock,blues" or "rest"
    genres: tuple[str, ...]

    def to_dict(self) -> dict:
        return {"name": self.name, "genres": list(self.genres)}

    @classmethod
    def from_dict(cls, d: Mapping) -> Domain:
        return cls(name=str(d["name"]), genres=tuple(str(g) for g in d["genres"]))

    @property
    def label(self) -> str:
        """The genres joined by '+', for logs and file names."""
        return "+".join(self.genres) if len(self.genres) <= 3 else self.name


@dataclass
class Converter:
    """A loaded converter: both generators ready to run (eval mode), plus what they mean."""

    g_ab: Generator  # domain a -> domain b
    g_ba: Generator  # domain b -> domain a
    config: GeneratorConfig
    mel_config: MelConfig
    a: Domain
    b: Domain
    provenance: dict

    def generator_to(self, genre: str) -> Generator:
        """The generator whose output domain contains ``genre`` (or is named ``genre``)."""
        for dom, gen in ((self.b, self.g_ab), (self.a, self.g_ba)):
            if genre == dom.name or genre in dom.genres:
                return gen
        raise GenreshiftError(
            f"this converter maps between {self.a.name} ({', '.join(self.a.genres)}) and "
            f"{self.b.name} ({', '.join(self.b.genres)}); it cannot produce '{genre}'")


def converter_payload(*, g_ab: nn.Module, g_ba: nn.Module, config: GeneratorConfig,
                      mel_config: MelConfig, a: Domain, b: Domain, provenance: dict,
                      dtype: torch.dtype | None = None) -> dict:
    """The inference part of a converter checkpoint (``role`` is set by the caller)."""
    return {
        "kind": "converter",
        "role": "inference",
        "model_config": config.to_dict(),
        "mel_config": mel_config.to_dict(),
        "domains": {"a": a.to_dict(), "b": b.to_dict()},
        "provenance": dict(provenance),
        "state_dict": {"g_ab": cpu_state_dict(g_ab, dtype), "g_ba": cpu_state_dict(g_ba, dtype)},
    }


def save_converter(path: str | Path, *, g_ab: nn.Module, g_ba: nn.Module,
                   config: GeneratorConfig, mel_config: MelConfig, a: Domain, b: Domain,
                   provenance: dict, half: bool = False) -> Path:
    """Write a converter inference file (generators only).

    ``half`` stores the weights as float16, halving the file (the loader casts them back to
    float32; the generator's outputs move by ~1e-3 of the [-1, 1] range), for shipped models.
    """
    import torch

    payload = converter_payload(g_ab=g_ab, g_ba=g_ba, config=config, mel_config=mel_config,
                                a=a, b=b, provenance=provenance,
                                dtype=torch.float16 if half else None)
    return write_checkpoint(path, payload)


def _read_parts(path: Path, kind: str, pick: Any) -> tuple[dict, Any]:
    """The checkpoint of ``kind`` at ``path`` and ``pick(checkpoint)`` (its configs, names and
    weights); a missing entry or a bad config is an error naming the file."""
    ck = read_checkpoint(path, kind=kind)
    try:
        return ck, pick(ck)
    except (KeyError, TypeError) as e:
        raise GenreshiftError(f"{path}: {kind} checkpoint lacks {e}; the file is "
                              "damaged") from None
    except GenreshiftError as e:
        raise GenreshiftError(f"{path}: {e}") from None


def load_converter(path: str | Path, *, device: str | torch.device = "cpu") -> Converter:
    """Read a converter (inference or resume) file and return its generators in eval mode."""
    from genreshift.models.generator import Generator
    from genreshift.spectral import MelConfig

    path = Path(path)
    ck, (config, mel, a, b, states) = _read_parts(path, "converter", lambda ck: (
        GeneratorConfig.stored(ck["model_config"]), MelConfig.from_dict(ck["mel_config"]),
        Domain.from_dict(ck["domains"]["a"]), Domain.from_dict(ck["domains"]["b"]),
        (ck["state_dict"]["g_ab"], ck["state_dict"]["g_ba"])))
    if config.n_mels != mel.n_mels:
        raise GenreshiftError(f"{path}: generator expects {config.n_mels} mel bands but the "
                              f"mel config has {mel.n_mels}; the file is inconsistent")
    gens = []
    for name, state in zip(("g_ab", "g_ba"), states):
        g = Generator(config)
        _load_weights(path, g, state, name)
        gens.append(g.to(device).eval())
    return Converter(g_ab=gens[0], g_ba=gens[1], config=config, mel_config=mel, a=a, b=b,
                     provenance=dict(ck.get("provenance", {})))


MAX_GAIN = 8.0  # a calibrated residual gain beyond this is a damaged file or a wrong choice


def check_gain(value: Any, where: str) -> float:
    """A residual gain as a float, or a GenreshiftError naming ``where`` it came from."""
    try:
        g = float(value)
    except (TypeError, ValueError):
        g = float("nan")
    if not 0.0 < g <= MAX_GAIN:  # also refuses NaN
        raise GenreshiftError(f"{where}: residual gain {value!r} is not a number in (0, "
                              f"{MAX_GAIN:g}]; recalibrate the converter with `genreshift "
                              "train calibrate` or re-export it from its run")
    return g


def converter_gains(header: Mapping, where: str) -> dict[str, float]:
    """{"ab": g, "ba": g} of a converter's header (.pt or ONNX), 1.0 where none is stored."""
    stored = header.get("gain") or {}
    if not isinstance(stored, Mapping) or set(stored) - set(DIRECTIONS):
        raise GenreshiftError(f"{where}: the converter's 'gain' entry {stored!r} is not a "
                              "mapping of ab / ba to numbers; the file is damaged")
    return {d: check_gain(stored[d], f"{where} ({d})") if d in stored else 1.0
            for d in DIRECTIONS}


def set_converter_gain(path: str | Path, gains: Mapping[str, float],
                       calibration: Mapping | None = None) -> list[Path]:
    """Store residual gains in the converter inference file ``path`` (the other direction
    keeps its gain), with the measurements that chose them in ``provenance["calibration"]``,
    and rewrite its ONNX graphs (they carry the gain and the .pt's digest). Returns the
    files written."""
    path = Path(path)
    ck = read_checkpoint(path, kind="converter")
    if ck["role"] != "inference":
        raise GenreshiftError(f"{path} is a {ck['role']} file; calibrate an inference file "
                              f"(`genreshift train export {path} OUT.pt`)")
    merged = converter_gains(ck, str(path))
    for d, g in gains.items():
        if d not in DIRECTIONS:
            raise GenreshiftError(f"{path}: no generator direction '{d}' (ab or ba)")
        merged[d] = check_gain(g, f"{path} ({d})")
    payload = {k: v for k, v in ck.items() if k not in ("magic", "format_version", "sha256")}
    payload["gain"] = merged
    if calibration is not None:
        payload["provenance"] = {**ck.get("provenance", {}), "calibration": dict(calibration)}
    write_checkpoint(path, payload)
    return [path, *export_onnx(path)]


def export_inference(src: str | Path, dst: str | Path, *, half: bool = False) -> Path:
    """Write the inference file of a trained model (converter or classifier) to ``dst``.

    ``src`` is an inference or resume file; everything but the training state is copied
    (configs, genres, provenance), and ``half`` stores the weights as float16 — how the shipped
    models in checkpoints/ are made small. The source is validated like any load.
    """
    ck = read_checkpoint(src)
    payload = {k: v for k, v in ck.items()
               if k not in ("magic", "format_version", "sha256", "resume")}
    payload["role"] = "inference"
    if half:
        payload["state_dict"] = {
            net: {k: v.half() if v.is_floating_point() else v for k, v in weights.items()}
            for net, weights in ck["state_dict"].items()}
    out = write_checkpoint(dst, payload)
    # Prove the file loads into ready modules before anyone ships it.
    (load_converter if ck["kind"] == "converter" else load_classifier)(out)
    return out


# --------------------------------------------------------------------------- classifiers


@dataclass
class Classifier:
    """A loaded genre classifier (eval mode) and the genre names of its logits."""

    model: GenreClassifier
    config: ClassifierConfig
    mel_config: MelConfig
    genres: list[str]
    provenance: dict


def classifier_payload(*, model: nn.Module, config: ClassifierConfig, mel_config: MelConfig,
                       genres: list[str], provenance: dict,
                       dtype: torch.dtype | None = None) -> dict:
    return {
        "kind": "classifier",
        "role": "inference",
        "model_config": config.to_dict(),
        "mel_config": mel_config.to_dict(),
        "genres": list(genres),
        "provenance": dict(provenance),
        "state_dict": {"classifier": cpu_state_dict(model, dtype)},
    }


def save_classifier(path: str | Path, *, model: nn.Module, config: ClassifierConfig,
                    mel_config: MelConfig, genres: list[str], provenance: dict,
                    half: bool = False) -> Path:
    """Write a classifier inference file (see :func:`save_converter` for ``half``)."""
    import torch

    return write_checkpoint(path, classifier_payload(
        model=model, config=config, mel_config=mel_config, genres=genres,
        provenance=provenance, dtype=torch.float16 if half else None))


def load_classifier(path: str | Path, *, device: str | torch.device = "cpu") -> Classifier:
    """Read a classifier (inference or resume) file; the model is returned in eval mode."""
    from genreshift.models.classifier import GenreClassifier
    from genreshift.spectral import MelConfig

    path = Path(path)
    ck, (config, mel, genres, state) = _read_parts(path, "classifier", lambda ck: (
        ClassifierConfig.from_dict(ck["model_config"]), MelConfig.from_dict(ck["mel_config"]),
        [str(g) for g in ck["genres"]], ck["state_dict"]["classifier"]))
    if len(genres) != config.n_classes or config.n_mels != mel.n_mels:
        raise GenreshiftError(f"{path}: {len(genres)} genre names for {config.n_classes} "
                              f"classes, or {config.n_mels} vs {mel.n_mels} mel bands; the file "
                              "is inconsistent")
    model = GenreClassifier(config)
    _load_weights(path, model, state, "classifier")
    return Classifier(model=model.to(device).eval(), config=config, mel_config=mel,
                      genres=genres, provenance=dict(ck.get("provenance", {})))


# --------------------------------------------------------------------------- ONNX graphs

ONNX_MAGIC = "genreshift-onnx"
ONNX_FORMAT_VERSION = 1  # of the graph contract and its metadata, not of the .pt
ONNX_METADATA_KEY = "genreshift"
# The TorchScript exporter's opset 17 has every operator these networks use (GroupNorm becomes
# InstanceNormalization); ONNX's own GroupNormalization (opset 18) was redefined in opset 21.
ONNX_OPSET = 17
ONNX_INPUT = "mel"
ONNX_OUTPUTS = {"converter": "mel_out", "classifier": "logits"}
DIRECTIONS = ("ab", "ba")  # generator a -> b, generator b -> a
REST = "rest"  # the catch-all domain: a source, never a target
# Largest difference between the exported graph and the torch model accepted at export, in
# log-mel units ([-1, 1] = 120 dB) or logits; onnxruntime and torch differ by ~1e-6 (float32
# summation order), so anything near this is a broken export, not rounding.
EXPORT_TOLERANCE = 1e-3


def onnx_path(pt: str | Path, direction: str | None = None) -> Path:
    """Where the graph of ``pt`` goes: ``X.onnx`` (classifier) or ``X.{direction}.onnx``."""
    pt = Path(pt)
    stem = pt.name.removesuffix(".pt")
    return pt.with_name(f"{stem}.{direction}.onnx" if direction else f"{stem}.onnx")


def onnx_directions(domains: Mapping) -> list[str]:
    """The generators of a converter that conversion uses: those whose target is not 'rest'.

    ``domains`` is a header's ``{"a": {"name", "genres"}, "b": ...}``.
    """
    targets = {"ab": domains["b"]["name"], "ba": domains["a"]["name"]}
    return [d for d in DIRECTIONS if targets[d] != REST]


def _guess_source(path: Path) -> Path:
    """The .pt an ONNX file's name points to, for messages about a file that cannot be read."""
    for suffix in (*(f".{d}.onnx" for d in DIRECTIONS), ".onnx"):
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return path.with_name(path.name[:-len(suffix)] + ".pt")
    return path.with_suffix(".pt")


def _reexport_hint(pt: Path) -> str:
    return f"re-export it with `genreshift train export --onnx-only {pt}`"


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename (never a torn file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# The headers are read from the protobuf wire format directly: `import onnx` costs 2.5 s here
# and an onnxruntime session ~50 ms per file, while only ModelProto's top-level fields are
# needed (metadata_props is field 14, the graph is field 7; their numbers are frozen by the
# ONNX spec). The graph, which holds the weights, is skipped with a seek.
_ONNX_IR_VERSION, _ONNX_GRAPH, _ONNX_METADATA = 1, 7, 14


def _varint(f: BinaryIO) -> int:
    result = shift = 0
    while True:
        b = f.read(1)
        if not b:
            raise ValueError("file ends inside a field")
        result |= (b[0] & 0x7F) << shift
        if b[0] < 0x80:
            return result
        shift += 7
        if shift > 63:
            raise ValueError("malformed varint")


def _fields(f: BinaryIO, end: int) -> Any:
    """Yield (field number, wire type, value) of the protobuf message in ``f`` up to ``end``.

    A length-delimited value is yielded as (offset, length) and skipped unless the consumer
    reads it; other values are yielded as integers (or skipped bytes).
    """
    while f.tell() < end:
        key = _varint(f)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise ValueError("field number 0")
        if wire == 0:
            yield number, wire, _varint(f)
        elif wire in (1, 5):  # fixed 64 / 32 bit
            f.seek(8 if wire == 1 else 4, io.SEEK_CUR)
            yield number, wire, None
        elif wire == 2:
            length = _varint(f)
            start = f.tell()
            if start + length > end:
                raise ValueError("a field runs past the end of the file")
            yield number, wire, (start, length)
            f.seek(start + length)
        else:  # groups (3, 4) are not used by ONNX; 6, 7 do not exist
            raise ValueError(f"wire type {wire}")
    if f.tell() != end:
        raise ValueError("the last field runs past the end of the file")


def _onnx_layout(f: BinaryIO, size: int) -> tuple[dict[str, str], tuple[int, int] | None]:
    """The metadata_props of an ONNX ModelProto and the (offset, length) of its graph."""
    metadata: dict[str, str] = {}
    graph = None
    seen_ir_version = False
    for number, wire, value in _fields(f, size):
        if number == _ONNX_IR_VERSION and wire == 0:
            seen_ir_version = True
        elif number == _ONNX_GRAPH and wire == 2:
            graph = value
        elif number == _ONNX_METADATA and wire == 2:
            start, length = value
            entry = {}
            for n, w, v in _fields(f, start + length):
                if n in (1, 2) and w == 2:
                    entry[n] = f.read(v[1]).decode("utf-8")
            metadata[entry.get(1, "")] = entry.get(2, "")
    if not seen_ir_version or graph is None:
        raise ValueError("no ir_version or no graph: not an ONNX model")
    return metadata, graph


def _onnx_header(path: Path, metadata: Mapping[str, str]) -> dict:
    """The genreshift header in an ONNX file's metadata, validated (name, version, fields)."""
    raw = metadata.get(ONNX_METADATA_KEY)
    if raw is None:
        raise GenreshiftError(
            f"{path} is an ONNX model but not one genreshift exported (no '{ONNX_METADATA_KEY}' "
            "metadata); export the graphs of a model with `genreshift train export --onnx-only "
            "MODEL.pt`")
    pt_guess = _guess_source(path)
    try:
        header = json.loads(raw)
    except json.JSONDecodeError as e:
        raise GenreshiftError(f"{path}: its genreshift metadata is not valid JSON ({e}); the "
                              f"file is damaged, {_reexport_hint(pt_guess)}") from None
    if not isinstance(header, dict) or header.get("magic") != ONNX_MAGIC:
        raise GenreshiftError(f"{path}: its '{ONNX_METADATA_KEY}' metadata is not a genreshift "
                              f"ONNX header; {_reexport_hint(pt_guess)}")
    version = header.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise GenreshiftError(f"{path} has an invalid format_version {version!r}; the file is "
                              f"damaged, {_reexport_hint(pt_guess)}")
    if version > ONNX_FORMAT_VERSION:
        raise GenreshiftError(
            f"{path} was exported by a newer genreshift (ONNX format {version}; this version "
            f"{genreshift.__version__} reads up to {ONNX_FORMAT_VERSION}); upgrade genreshift, "
            f"or {_reexport_hint(pt_guess)} with this version")
    kind, direction = header.get("kind"), header.get("direction")
    required = {"kind", "model_config", "mel_config", "provenance", "sha256", "source",
                "graph_sha256"} | ({"domains", "direction"} if kind == "converter" else
                                   {"genres"})
    missing = sorted(required - set(header))
    if kind not in KINDS or missing or (kind == "converter" and direction not in DIRECTIONS):
        raise GenreshiftError(f"{path}: the genreshift header is incomplete (kind {kind!r}, "
                              f"direction {direction!r}, missing {missing}); "
                              f"{_reexport_hint(pt_guess)}")
    expected = onnx_path("X.pt", direction if kind == "converter" else None).name[1:]
    if not path.name.endswith(expected) or len(path.name) == len(expected):
        what = f"the {direction} generator of a converter" if kind == "converter" else \
            "a classifier"
        raise GenreshiftError(
            f"{path} holds {what}, so its name must end in '{expected}' next to its .pt (the "
            "name tells conversion which direction a graph runs); rename it back, or "
            f"{_reexport_hint(pt_guess)}")
    return header


def _onnx_source(path: Path, header: Mapping) -> Path:
    """The inference .pt that ``path`` was exported from (it sits next to it)."""
    return path.with_name(path.name[:-len(onnx_path(
        "X.pt", header.get("direction") if header["kind"] == "converter" else None).name[1:])]
        + ".pt")


def _check_source(path: Path, header: Mapping) -> None:
    """Refuse a graph whose .pt, where present next to it, is no longer the file it came from.

    A graph without its .pt is accepted: the header describes it fully.
    """
    pt = _onnx_source(path, header)
    try:
        size = pt.stat().st_size
    except FileNotFoundError:
        return
    source = header["source"]
    if not isinstance(source, Mapping) or size != source.get("bytes") \
            or _file_sha256(pt) != source.get("sha256"):
        raise GenreshiftError(
            f"{path} is out of date: {pt.name} next to it changed after the graph was exported "
            f"from it (the SHA-256 recorded in the graph no longer matches); {_reexport_hint(pt)}")


def _corrupt(path: Path, reason: str) -> GenreshiftError:
    pt = _guess_source(path)
    return GenreshiftError(f"{path} is not a readable ONNX model (truncated, corrupted or another "
                           f"format: {reason}); {_reexport_hint(pt)}")


def _missing_onnx(path: Path) -> GenreshiftError:
    return GenreshiftError(f"ONNX model {path} does not exist; export the graphs of a model with "
                           "`genreshift train export --onnx-only MODEL.pt`")


def read_onnx_header(path: str | Path, *, check_source: bool = True) -> dict:
    """The self-description of a genreshift ONNX file, read without torch or ``onnx``.

    The keys are those of the .pt it came from (``format_version`` — of the ONNX contract —,
    ``kind``, ``role``, ``model_config``, ``mel_config``, ``domains`` or ``genres``,
    ``provenance``, ``sha256`` — the .pt's content digest —, ``gain`` for converters), plus
    ``direction`` ("ab" / "ba", converters), ``source`` ({"file", "bytes", "sha256"} of the
    .pt file), ``graph_sha256`` and ``export`` (exporter, opset, versions). Only the metadata
    is read (the weights are skipped), but with ``check_source`` the .pt next to the file,
    where there is one, is hashed to refuse a stale graph. Raises a GenreshiftError naming
    the file and the fix for a missing, corrupt, foreign, newer, misnamed or stale file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            metadata, _ = _onnx_layout(f, os.fstat(f.fileno()).st_size)
    except (FileNotFoundError, IsADirectoryError):
        raise _missing_onnx(path) from None
    except OSError as e:
        raise GenreshiftError(f"{path} cannot be read ({e.strerror or e}); check its "
                              "permissions") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise _corrupt(path, str(e)) from None
    header = _onnx_header(path, metadata)
    if check_source:
        _check_source(path, header)
    return header


def load_onnx(path: str | Path, *, kind: str | None = None,
              check_source: bool = True) -> tuple[dict, bytes]:
    """The header and the whole model of a genreshift ONNX file, for onnxruntime.

    Like :func:`read_onnx_header`, and in addition the graph (weights included) is checked
    against the SHA-256 recorded at export, so a damaged file is refused before it runs; one
    read serves both the check and the session (``InferenceSession(data)``).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise _missing_onnx(path) from None
    except OSError as e:
        raise GenreshiftError(f"{path} cannot be read ({e.strerror or e}); check its "
                              "permissions") from None
    try:
        metadata, (start, length) = _onnx_layout(io.BytesIO(data), len(data))
    except (ValueError, UnicodeDecodeError) as e:
        raise _corrupt(path, str(e)) from None
    header = _onnx_header(path, metadata)
    if hashlib.sha256(memoryview(data)[start:start + length]).hexdigest() != \
            header["graph_sha256"]:
        raise GenreshiftError(
            f"{path} was modified or corrupted after it was exported (its graph does not match "
            f"its checksum); {_reexport_hint(_onnx_source(path, header))}")
    if kind is not None and header["kind"] != kind:
        raise GenreshiftError(f"{path} is a {header['kind']} graph, but a {kind} is needed here")
    if check_source:
        _check_source(path, header)
    return header, data


def _export_graph(module: nn.Module, kind: str, config: Any, header: dict) -> bytes:
    """Trace ``module`` to an ONNX model (bytes) whose metadata holds ``header``.

    The TorchScript exporter (``dynamo=False``) is used: it writes the same graph as the
    torch.export-based one (same operators, outputs within 1e-6) in 0.2-0.5 s instead of
    8-18 s per network here, which keeps `train export` and the tests fast. Tracing records
    no Python branch, so the example input takes the generator's no-padding path (frames a
    multiple of the stride, at least two bottleneck frames) and the graph requires such
    inputs; genreshift.inference.runtime pads as ``Generator.forward`` does.
    """
    import onnx
    import torch

    output = ONNX_OUTPUTS[kind]
    rng = torch.Generator().manual_seed(0)
    if kind == "converter":
        frames = 8 * config.stride
        axes = {ONNX_INPUT: {0: "batch", 2: "frames"}, output: {0: "batch", 2: "frames"}}
    else:
        frames = config.frames
        axes = {ONNX_INPUT: {0: "batch", 2: "frames"}, output: {0: "batch"}}
    example = torch.rand(1, config.n_mels, frames, generator=rng) * 2 - 1
    buf = io.BytesIO()
    with warnings.catch_warnings():
        # TracerWarnings about the input checks that become constants, and the exporter's
        # own deprecation notice: the choice is deliberate (see above).
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (example,), buf, dynamo=False,
                          opset_version=ONNX_OPSET, input_names=[ONNX_INPUT],
                          output_names=[output], dynamic_axes=axes, do_constant_folding=True)
    model = onnx.load_from_string(buf.getvalue())
    model.producer_name, model.producer_version = "genreshift", genreshift.__version__
    del model.metadata_props[:]
    plain = model.SerializeToString()
    _, (start, length) = _onnx_layout(io.BytesIO(plain), len(plain))
    header = {**header, "graph_sha256": hashlib.sha256(plain[start:start + length]).hexdigest()}
    model.metadata_props.add(key=ONNX_METADATA_KEY, value=json.dumps(header, sort_keys=True))
    onnx.checker.check_model(model)
    data = model.SerializeToString()
    _, (start, length) = _onnx_layout(io.BytesIO(data), len(data))
    if hashlib.sha256(data[start:start + length]).hexdigest() != header["graph_sha256"]:
        raise RuntimeError("protobuf serialised the same graph differently twice")
    return data


def _check_graph(path: Path, data: bytes, module: nn.Module, kind: str, config: Any) -> None:
    """Run the exported graph under onnxruntime on inputs unlike the tracing example (another
    batch size and length) and compare with the torch model."""
    import numpy as np
    import onnxruntime as ort
    import torch

    rng = torch.Generator().manual_seed(1)
    shape = (2, config.n_mels, 16 * config.stride) if kind == "converter" else \
        (3, config.n_mels, config.frames)
    x = torch.rand(*shape, generator=rng) * 2 - 1
    with torch.no_grad():
        ref = module(x).numpy()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run([ONNX_OUTPUTS[kind]], {ONNX_INPUT: x.numpy()})[0]
    err = float(np.max(np.abs(got - ref))) if got.shape == ref.shape else float("inf")
    scale = max(1.0, float(np.max(np.abs(ref))))
    if not err <= EXPORT_TOLERANCE * scale:
        raise GenreshiftError(
            f"{path}: the exported graph disagrees with the torch model (largest difference "
            f"{err:.3g}, shapes {got.shape} vs {ref.shape}); this is an exporter problem of "
            f"torch {torch.__version__}: the file was not written, please report it")


def export_onnx(src_pt: str | Path, *, check: bool = True) -> list[Path]:
    """Write the ONNX graphs of the inference file ``src_pt`` next to it; returns their paths.

    Classifier ``X.pt`` -> ``X.onnx``; converter ``X.pt`` -> ``X.ab.onnx`` / ``X.ba.onnx`` for
    each direction whose target domain is not ``rest``. Graphs are float32 (float16 weights of
    shipped files are cast up), with dynamic batch and frame axes: input ``mel`` [B, n_mels, T]
    float32, output ``mel_out`` [B, n_mels, T] (T a multiple of the generator's stride and at
    least twice it: the runtime pads as ``Generator.forward`` does) or ``logits`` [B, n_classes]
    (T >= 2**n_blocks). ``check`` runs each graph under onnxruntime against the torch model
    before writing it. A graph of a direction no longer exported is removed. Files are written
    atomically; needs torch, ``onnx`` and ``onnxruntime``.
    """
    import torch

    src = Path(src_pt)
    ck = read_checkpoint(src)
    if ck["role"] != "inference":
        raise GenreshiftError(
            f"{src} is a {ck['role']} file; ONNX graphs are exported from an inference file: "
            f"write one with `genreshift train export {src} OUT.pt` (which exports them too)")
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as e:
        raise GenreshiftError(f"exporting ONNX graphs needs the '{e.name}' package (a "
                              "dependency of genreshift): reinstall genreshift, or `pip install "
                              f"{e.name}`") from None
    header: dict[str, Any] = {
        "magic": ONNX_MAGIC, "format_version": ONNX_FORMAT_VERSION, "kind": ck["kind"],
        "role": "inference", "model_config": ck["model_config"],
        "mel_config": ck["mel_config"], "provenance": ck.get("provenance", {}),
        "sha256": ck["sha256"],
        "source": {"file": src.name, "bytes": src.stat().st_size,
                   "sha256": _file_sha256(src)},
        "export": {"exporter": "torch.onnx.export (TorchScript)", "opset": ONNX_OPSET,
                   "torch_version": torch.__version__.split("+")[0],
                   # no date: the same .pt always exports to the same bytes
                   "genreshift_version": genreshift.__version__},
    }
    jobs: list[tuple[str | None, nn.Module, Any]] = []
    if ck["kind"] == "converter":
        conv = load_converter(src)
        header["domains"] = {"a": conv.a.to_dict(), "b": conv.b.to_dict()}
        header["gain"] = converter_gains(ck, str(src))
        directions = onnx_directions(header["domains"])
        if not directions:
            raise GenreshiftError(f"{src}: both domains are named '{REST}', so no generator "
                                  "has a target genre; there is nothing to export")
        gens = {"ab": conv.g_ab, "ba": conv.g_ba}
        jobs = [(d, gens[d], conv.config) for d in directions]
    else:
        clf = load_classifier(src)
        header["genres"] = list(clf.genres)
        jobs = [(None, clf.model, clf.config)]
    written = []
    for direction, module, config in jobs:
        dst = onnx_path(src, direction)
        data = _export_graph(module, ck["kind"], config,
                             {**header, "direction": direction} if direction else header)
        if check:
            _check_graph(dst, data, module, ck["kind"], config)
        _write_atomic(dst, data)
        written.append(dst)
    if ck["kind"] == "converter":
        for d in set(DIRECTIONS) - {d for d, _, _ in jobs}:
            old = onnx_path(src, d)
            try:
                ours = read_onnx_header(old, check_source=False)["source"]["file"] == src.name
            except (GenreshiftError, KeyError, TypeError):
                ours = False  # not a graph of this file: leave it alone
            if ours:
                old.unlink()
    return written
