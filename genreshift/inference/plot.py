"""Spectrogram comparison figures: input, reference (reference mode), output and the change.

matplotlib with the Agg backend (no display needed); the PNG is written to a temporary file
beside the target and renamed, so a failed plot never leaves half a file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from genreshift.errors import GenreshiftError
from genreshift.fsutil import atomic_path
from genreshift.spectral import MelConfig


def check_plot_path(path: str | Path, force: bool) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise GenreshiftError(f"--plot {path}: plots are PNG images; give a name ending in .png")
    if path.exists() and not force:
        raise GenreshiftError(f"{path}: already exists; pass --force to overwrite it")
    if not path.parent.is_dir():
        raise GenreshiftError(f"--plot {path}: folder {path.parent} does not exist")
    return path


def _db(mel, cfg: MelConfig) -> np.ndarray:
    """Normalised log-mel [-1, 1] (numpy, or a torch tensor) -> dB for display."""
    m = mel.detach().float().cpu().numpy() if hasattr(mel, "detach") else \
        np.asarray(mel, dtype=np.float32)
    return (m + 1.0) / 2.0 * (cfg.db_max - cfg.db_min) + cfg.db_min


def plot_conversion(path: str | Path, *, input_mel: np.ndarray, output_mel: np.ndarray,
                    cfg: MelConfig, reference_mel: np.ndarray | None = None,
                    title: str = "") -> Path:
    """Write a PNG with the input, [reference,] output log-mels [n_mels, frames] and the
    output minus the input in dB. Returns the path written."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    path = Path(path)
    panels = [("input", _db(input_mel, cfg))]
    if reference_mel is not None:
        panels.append(("reference", _db(reference_mel, cfg)))
    out_db = _db(output_mel, cfg)
    panels.append(("output", out_db))
    diff = out_db - panels[0][1]
    fig, axes = plt.subplots(len(panels) + 1, 1, figsize=(10, 2.3 * (len(panels) + 1)),
                             constrained_layout=True)
    hop_s = cfg.hop_length / cfg.sample_rate
    for ax, (name, db) in zip(axes, panels):
        im = ax.imshow(db, origin="lower", aspect="auto", cmap="magma",
                       vmin=cfg.db_min, vmax=cfg.db_max,
                       extent=(0, db.shape[-1] * hop_s, 0, db.shape[0]))
        ax.set_title(name, loc="left", fontsize=9)
        ax.set_ylabel("mel band")
        fig.colorbar(im, ax=ax, label="dB")
    lim = max(1.0, float(np.percentile(np.abs(diff), 99)))
    im = axes[-1].imshow(diff, origin="lower", aspect="auto", cmap="coolwarm", vmin=-lim,
                         vmax=lim, extent=(0, diff.shape[-1] * hop_s, 0, diff.shape[0]))
    axes[-1].set_title("output - input", loc="left", fontsize=9)
    axes[-1].set_ylabel("mel band")
    axes[-1].set_xlabel("time (s)")
    fig.colorbar(im, ax=axes[-1], label="dB")
    if title:
        fig.suptitle(title, fontsize=10)
    _save_figure(fig, path)
    return path


BAR_METRICS = (("cnn_hit", "transfer (classifier)"), ("judge_hit", "transfer (feature judge)"),
               ("chroma", "chroma similarity"), ("onset_f", "onset F-measure"),
               ("lsd_db", "LSD to truth (dB)"))


def plot_evaluation(path: str | Path, reports: list[dict]) -> Path:
    """One PNG for `genreshift evaluate` reports (one per method): a bar group per metric
    (methods side by side, the reconstruction floor as a line) and, per method, the
    classifier's confusion matrix (judged genre vs target)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    if not reports:
        raise GenreshiftError("no evaluation reports to plot")
    path = Path(path)
    n = len(reports)
    fig, axes = plt.subplots(2, max(len(BAR_METRICS), n), figsize=(3.2 * max(5, n), 6.5),
                             constrained_layout=True, squeeze=False)
    methods = [r["method"] for r in reports]
    for ax, (key, name) in zip(axes[0], BAR_METRICS):
        vals = [r["overall"]["method"][key] for r in reports]
        ax.bar(range(n), vals, color="tab:blue")
        floor = reports[0]["overall"]["floor"][key]
        ax.axhline(floor, color="tab:red", linestyle="--", linewidth=1, label="floor")
        ax.set_xticks(range(n), methods, rotation=30, ha="right", fontsize=8)
        ax.set_title(name, fontsize=9)
    axes[0][0].legend(fontsize=8)
    for ax in axes[0][len(BAR_METRICS):]:
        ax.axis("off")
    for ax, r in zip(axes[1], reports):
        conf = r["confusion"]["cnn"]
        targets = sorted(conf)
        labels = sorted({lab for row in conf.values() for lab in row})
        m = np.array([[conf[t].get(lab, 0) for lab in labels] for t in targets], dtype=float)
        m = m / np.maximum(m.sum(axis=1, keepdims=True), 1)
        ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(targets)), targets, fontsize=7)
        ax.set_title(f"{r['method']}: judged vs target", fontsize=9)
    for ax in axes[1][n:]:
        ax.axis("off")
    _save_figure(fig, path)
    return path


def _save_figure(fig, path: Path) -> None:
    from matplotlib import pyplot as plt

    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=100, format="png")
    finally:
        plt.close(fig)
