"""The networks as ONNX graphs under onnxruntime: what conversion runs, with no torch.

Importing torch costs ~3 s here, more than a short conversion; onnxruntime costs ~0.3 s. The
graphs are written by :func:`genreshift.checkpoint.export_onnx` next to the inference ``.pt``
files (the source of truth) and describe themselves like them (:func:`read_onnx_header`).

``OnnxGenerator`` and ``OnnxClassifier`` reproduce ``Generator.forward`` and
``genreshift.models.classifier.classify_clip`` exactly — the same padding, windows and
averaging — on numpy arrays; the torch and ONNX outputs differ by float32 rounding (~1e-6 of
the [-1, 1] log-mel range). Nothing is cached here: each object holds one session, and the
caller keeps the objects it wants to reuse.

Shapes: a log-mel batch is [B, n_mels, T] float32 in [-1, 1]; one clip is [n_mels, T].
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as _ort_state

from genreshift.checkpoint import ONNX_INPUT, ONNX_OUTPUTS, Domain, load_onnx
from genreshift.errors import GenreshiftError
from genreshift.models.config import ClassifierConfig, GeneratorConfig
from genreshift.spectral import MelConfig

__all__ = ["OnnxClassifier", "OnnxGenerator", "session_options", "split_windows"]


def session_options(threads: int | None = None, *, level: str = "all") -> ort.SessionOptions:
    """Options for a CPU session: ``threads`` intra-op threads (None: onnxruntime's default,
    one per physical core), operators run one after another (these graphs are a chain).

    Idle worker threads wait passively unless ``OMP_WAIT_POLICY=ACTIVE``: the policy genreshift
    sets for torch's OpenMP threads (genreshift/__init__.py), applied to onnxruntime's own pool,
    because spinning threads slow everything down on a shared CPU.
    """
    so = ort.SessionOptions()
    so.graph_optimization_level = _LEVELS[level]
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    # No arena: onnxruntime's grows to the largest batch it has run and keeps it (~200 MB
    # after classifying a 3-minute song); without it each run's buffers go back at its end.
    so.enable_cpu_mem_arena = False
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    spin = os.environ.get("OMP_WAIT_POLICY", "PASSIVE").strip().upper() == "ACTIVE"
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    so.log_severity_level = 3  # errors only: a conversion's output is not the place for ORT's notes
    return so


# onnxruntime's own exception types (plain Exception subclasses, not RuntimeError).
_ORT_ERRORS = (RuntimeError, ValueError, *(
    getattr(_ort_state, name) for name in ("Fail", "InvalidArgument", "InvalidProtobuf",
                                           "InvalidGraph", "NoSuchFile", "NoModel",
                                           "NotImplemented", "RuntimeException", "EPFail")
    if hasattr(_ort_state, name)))


# Graph optimisation per network, measured (one 256-frame generator window / 11 classifier
# windows of 128 frames, idle 2-core CPU, best of 5): the generator runs in 33-34 ms with the
# extended optimisations against 40-42 ms with all of them (the layout transformation of
# "all" slows its convolutions); the classifier in 71-81 ms with all, 89 with extended.
_LEVELS = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
           "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED}


def _session(path: Path, data: bytes, threads: int | None, level: str = "all"
             ) -> ort.InferenceSession:
    try:
        return ort.InferenceSession(data, sess_options=session_options(threads, level=level),
                                    providers=["CPUExecutionProvider"])
    except _ORT_ERRORS as e:
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise GenreshiftError(
            f"{path}: onnxruntime {ort.__version__} cannot load this graph ({first}); re-export "
            "it with this genreshift (`genreshift train export --onnx-only MODEL.pt`)") from None


def _configs(path: Path, header: dict, cls: type) -> tuple:
    try:
        config = (GeneratorConfig.stored if cls is GeneratorConfig else cls.from_dict)(
            header["model_config"])
        mel = MelConfig.from_dict(header["mel_config"])
    except GenreshiftError as e:
        raise GenreshiftError(f"{path}: {e}") from None
    except TypeError as e:
        raise GenreshiftError(f"{path}: malformed configs in the header ({e}); re-export the "
                              "graph (`genreshift train export --onnx-only MODEL.pt`)") from None
    if config.n_mels != mel.n_mels:
        raise GenreshiftError(f"{path}: the network expects {config.n_mels} mel bands but the "
                              f"mel config has {mel.n_mels}; the file is inconsistent")
    return config, mel


def _mels(x: np.ndarray, n_mels: int, ndim: int, what: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != ndim or x.shape[-2] != n_mels or x.shape[-1] < 1:
        want = "[batch, n_mels, frames]" if ndim == 3 else "[n_mels, frames]"
        raise ValueError(f"{what} expects {want} with n_mels={n_mels} and frames >= 1, got "
                         f"{x.shape}")
    return x


def _pad_frames(x: np.ndarray, total: int) -> np.ndarray:
    """Pad the last axis to ``total`` frames by repeating the last frame (torch's replicate)."""
    pad = total - x.shape[-1]
    if pad <= 0:
        return x
    return np.concatenate([x, np.repeat(x[..., -1:], pad, axis=-1)], axis=-1)


class OnnxGenerator:
    """One direction of a converter (``X.ab.onnx`` / ``X.ba.onnx``): [B, n_mels, T] -> same.

    Attributes: ``config`` (GeneratorConfig), ``mel_config`` (MelConfig), ``stride``,
    ``direction`` ("ab": domain a -> b), ``domains`` ({"a": Domain, "b": Domain}), ``source``
    and ``target`` (Domains), ``header`` (the file's full header), ``path``.
    """

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        self.path = Path(path)
        self.header, data = load_onnx(self.path, kind="converter")
        self.config, self.mel_config = _configs(self.path, self.header, GeneratorConfig)
        self.stride = self.config.stride
        self.direction: str = self.header["direction"]
        self.domains = {k: Domain.from_dict(self.header["domains"][k]) for k in ("a", "b")}
        self._session = _session(self.path, data, threads, "extended")

    @property
    def source(self) -> Domain:
        return self.domains[self.direction[0]]

    @property
    def target(self) -> Domain:
        return self.domains[self.direction[1]]

    def __call__(self, mel: np.ndarray) -> np.ndarray:
        """Converted log-mels [B, n_mels, T] float32 for ``mel`` [B, n_mels, T] (any T >= 1).

        The graph takes frame counts that are a multiple of the stride and at least two
        bottleneck frames; like ``Generator.forward``, shorter or ragged inputs are padded at
        the end by repeating the last frame, and the output is cropped back to T.
        """
        x = _mels(mel, self.config.n_mels, 3, "generator")
        frames, s = x.shape[-1], self.stride
        total = frames + max(-frames % s, 2 * s - frames)
        out = self._session.run([ONNX_OUTPUTS["converter"]],
                                {ONNX_INPUT: np.ascontiguousarray(_pad_frames(x, total))})[0]
        return np.ascontiguousarray(out[..., :frames])

    def __repr__(self) -> str:
        return f"OnnxGenerator({str(self.path)!r}, {self.source.name} -> {self.target.name})"


def split_windows(mel: np.ndarray, frames: int, hop: int | None = None) -> np.ndarray:
    """[n_mels, T] -> [n_windows, n_mels, frames] covering the whole clip.

    As ``genreshift.models.classifier.split_windows``: windows start every ``hop`` frames
    (default frames // 2), the last one aligned to the clip's end; a clip shorter than
    ``frames`` is one window, padded at the end by repeating its last frame.
    """
    if mel.ndim != 2:
        raise ValueError(f"expected [n_mels, frames], got {mel.shape}")
    hop = hop or max(1, frames // 2)
    total = mel.shape[-1]
    if total <= frames:
        return _pad_frames(mel, frames)[None]
    starts = list(range(0, total - frames + 1, hop))
    if starts[-1] != total - frames:
        starts.append(total - frames)
    return np.stack([mel[:, s:s + frames] for s in starts])


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float32) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class OnnxClassifier:
    """The genre classifier (``X.onnx``): log-mel windows -> genre logits, and whole clips ->
    probabilities. Attributes: ``genres`` (names in logit order), ``config``
    (ClassifierConfig), ``mel_config`` (MelConfig), ``header``, ``path``."""

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        self.path = Path(path)
        self.header, data = load_onnx(self.path, kind="classifier")
        self.config, self.mel_config = _configs(self.path, self.header, ClassifierConfig)
        self.genres = [str(g) for g in self.header["genres"]]
        if len(self.genres) != self.config.n_classes:
            raise GenreshiftError(f"{self.path}: {len(self.genres)} genre names for "
                                  f"{self.config.n_classes} classes; the file is inconsistent")
        self._session = _session(self.path, data, threads)

    def logits(self, windows: np.ndarray) -> np.ndarray:
        """Logits [B, n_classes] for windows [B, n_mels, T], T >= 2**n_blocks."""
        x = _mels(windows, self.config.n_mels, 3, "classifier")
        if x.shape[-1] < self.config.min_frames:
            raise ValueError(f"classifier needs at least {self.config.min_frames} frames, got "
                             f"{x.shape[-1]}")
        return self._session.run([ONNX_OUTPUTS["classifier"]],
                                 {ONNX_INPUT: np.ascontiguousarray(x)})[0]

    def window_probabilities(self, mels: np.ndarray, *, batch_size: int = 64,
                             hop: int | None = None) -> np.ndarray:
        """Genre probabilities [N, n_classes] for log-mels [N, n_mels, T] of any length T.

        As ``genreshift.models.classifier.window_probabilities``: each mel is cut into windows
        of ``config.frames`` (hop half a window, the last aligned to the end) and the
        per-window softmax probabilities are averaged. ``hop``: frames between window starts
        (default half a window).
        """
        mels = _mels(mels, self.config.n_mels, 3, "classifier")
        n = mels.shape[0]
        # [N, W, M, F]
        windows = np.stack([split_windows(m, self.config.frames, hop) for m in mels])
        per = windows.shape[1]
        flat = windows.reshape(n * per, *windows.shape[2:])
        probs = np.concatenate([_softmax(self.logits(flat[i:i + batch_size]))
                                for i in range(0, len(flat), batch_size)])
        return probs.reshape(n, per, -1).mean(axis=1, dtype=np.float32)

    def classify_clip(self, mel: np.ndarray, *, batch_size: int = 64,
                      hop: int | None = None) -> np.ndarray:
        """Genre probabilities [n_classes] for a whole clip's log-mel [n_mels, T]."""
        mel = _mels(mel, self.config.n_mels, 2, "classifier")
        return self.window_probabilities(mel[None], batch_size=batch_size, hop=hop)[0]

    def __repr__(self) -> str:
        return f"OnnxClassifier({str(self.path)!r}, genres={self.genres})"
