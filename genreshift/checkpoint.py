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
    provenance      dataset, steps, date, git commit, genreshift and torch versions, train time
    state_dict      converter: {"g_ab": ..., "g_ba": ...}; classifier: {"classifier": ...}
    resume          resume files only: everything else a run needs to continue exactly
    sha256          digest of all of the above (detects a modified or corrupted file)

An inference file holds the generators (or the classifier) only. A resume file is the same dict
plus ``resume`` (discriminators, optimisers, schedulers, step, RNG states, image pools, the
training config), so a resume file can also be used for inference, never the other way round.
"""

from __future__ import annotations

import datetime as _dt
import functools
import hashlib
import os
import pickle
import struct
import subprocess
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

import genreshift
from genreshift.errors import GenreshiftError
from genreshift.models.classifier import GenreClassifier
from genreshift.models.config import ClassifierConfig, GeneratorConfig
from genreshift.models.generator import Generator
from genreshift.spectral import MelConfig

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
    while True:
        if isinstance(module, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            module = module.module
        elif hasattr(module, "_orig_mod") and isinstance(module._orig_mod, nn.Module):
            module = module._orig_mod
        else:
            return module


def cpu_state_dict(module: nn.Module, dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """The unwrapped module's state dict as detached CPU tensors (floats cast to ``dtype``)."""
    out = {}
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
    dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=10, check=False)
    return commit + ("-dirty" if dirty.stdout.strip() else "")


def provenance(dataset: str, steps: int, train_seconds: float = 0.0, **extra: Any) -> dict:
    """Where a model came from: written into every checkpoint, shown by the model card."""
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
    if isinstance(obj, torch.Tensor):
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
    payload = converter_payload(g_ab=g_ab, g_ba=g_ba, config=config, mel_config=mel_config,
                                a=a, b=b, provenance=provenance,
                                dtype=torch.float16 if half else None)
    return write_checkpoint(path, payload)


def load_converter(path: str | Path, *, device: str | torch.device = "cpu") -> Converter:
    """Read a converter (inference or resume) file and return its generators in eval mode."""
    path = Path(path)
    ck = read_checkpoint(path, kind="converter")
    try:
        config = GeneratorConfig.stored(ck["model_config"])
        mel = MelConfig.from_dict(ck["mel_config"])
        a, b = Domain.from_dict(ck["domains"]["a"]), Domain.from_dict(ck["domains"]["b"])
        states = ck["state_dict"]["g_ab"], ck["state_dict"]["g_ba"]
    except (KeyError, TypeError) as e:
        raise GenreshiftError(f"{path}: converter checkpoint lacks {e}; the file is "
                              "damaged") from None
    except GenreshiftError as e:
        raise GenreshiftError(f"{path}: {e}") from None
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
    return write_checkpoint(path, classifier_payload(
        model=model, config=config, mel_config=mel_config, genres=genres,
        provenance=provenance, dtype=torch.float16 if half else None))


def load_classifier(path: str | Path, *, device: str | torch.device = "cpu") -> Classifier:
    """Read a classifier (inference or resume) file; the model is returned in eval mode."""
    path = Path(path)
    ck = read_checkpoint(path, kind="classifier")
    try:
        config = ClassifierConfig.from_dict(ck["model_config"])
        mel = MelConfig.from_dict(ck["mel_config"])
        genres = [str(g) for g in ck["genres"]]
        state = ck["state_dict"]["classifier"]
    except (KeyError, TypeError) as e:
        raise GenreshiftError(f"{path}: classifier checkpoint lacks {e}; the file is "
                              "damaged") from None
    except GenreshiftError as e:
        raise GenreshiftError(f"{path}: {e}") from None
    if len(genres) != config.n_classes or config.n_mels != mel.n_mels:
        raise GenreshiftError(f"{path}: {len(genres)} genre names for {config.n_classes} "
                              f"classes, or {config.n_mels} vs {mel.n_mels} mel bands; the file "
                              "is inconsistent")
    model = GenreClassifier(config)
    _load_weights(path, model, state, "classifier")
    return Classifier(model=model.to(device).eval(), config=config, mel_config=mel,
                      genres=genres, provenance=dict(ck.get("provenance", {})))
