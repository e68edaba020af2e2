"""Training configs: frozen dataclasses, free of torch so the CLI can list their options fast.

Fields are of two sorts. Those that decide what is learned (steps, batch, learning rates, loss
weights, seed, ...) must stay the same when a run is resumed — the learning-rate schedule and
the random streams depend on them — and a resume with a different value is refused. The
``LOGISTICS`` fields (how often to checkpoint or log, which device, AMP) may change between the
sessions of one run. ``metadata["help"]`` is the command-line help.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from genreshift.errors import GenreshiftError
from genreshift.models.config import _Config, _opt

AMP_MODES = ("auto", "off", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")

# May differ between the sessions of a resumed run.
LOGISTICS = frozenset({
    "checkpoint_every", "val_every", "log_every", "sample_every", "val_windows", "val_frames",
    "amp", "device", "deterministic", "threads",
})


def _check_common(cfg: Any) -> list[str]:
    problems = []
    for name in ("steps", "batch_size", "checkpoint_every", "val_every", "log_every",
                 "sample_every"):
        if hasattr(cfg, name) and getattr(cfg, name) < 1:
            problems.append(f"{name} must be >= 1")
    if cfg.threads < 0:
        problems.append("threads must be >= 0")
    if cfg.amp not in AMP_MODES:
        problems.append(f"amp must be one of {', '.join(AMP_MODES)}")
    if cfg.device not in DEVICES:
        problems.append(f"device must be one of {', '.join(DEVICES)}")
    if not 0.0 <= cfg.decay_start <= 1.0:
        problems.append("decay_start must be in [0, 1]")
    return problems


@dataclass(frozen=True)
class TrainConfig(_Config):
    """A CycleGAN converter run (see genreshift.train.cyclegan)."""

    _what = "training config"

    steps: int = _opt(20_000, "optimisation steps in all")
    batch_size: int = _opt(4, "windows per domain per step (per process under torchrun)")
    frames: int = _opt(128, "training window length in frames")
    lr_g: float = _opt(2e-4, "generator learning rate (Adam)")
    lr_d: float = _opt(1e-4, "discriminator learning rate (Adam)")
    beta1: float = _opt(0.5, "Adam beta1")
    beta2: float = _opt(0.999, "Adam beta2")
    decay_start: float = _opt(0.5, "fraction of the steps after which the learning rates "
                              "decay linearly to 0")
    adversarial: float = _opt(1.0, "weight of the LSGAN generator loss")
    cycle: float = _opt(10.0, "weight of the cycle-consistency L1 loss")
    identity: float = _opt(5.0, "weight of the identity L1 loss")
    identity_until: int = _opt(0, "use the identity loss for the first N steps only "
                               "(0: throughout)")
    content_chroma: float = _opt(5.0, "weight of the chroma content loss between each "
                                 "generator's input and output (genreshift.models.content)")
    content_onset: float = _opt(1.0, "weight of the onset-envelope content loss between each "
                                "generator's input and output")
    paired: float = _opt(5.0, "weight of the paired L1 between a->b of a synthetic tune and the "
                         "same tune rendered in b (time-aligned renderings; unpaired windows, "
                         "e.g. GTZAN or real recordings, get none)")
    real_windows: int = _opt(2, "windows of real recordings (--real MELDIR) added to domain a's "
                             "batch every step (0: none; ignored without --real)")
    pool_size: int = _opt(50, "past fakes kept for the discriminators (0: none)")
    augment: bool = _opt(True, "augment training windows: random gain (+-6 dB) and a short "
                         "time mask (see genreshift.data.windows)")
    seed: int = _opt(0, "seed of initialisation, windows, augmentation and the pool")
    checkpoint_every: int = _opt(1000, "write the inference + resume files every N steps")
    val_every: int = _opt(1000, "validate on held-out windows every N steps (and at the end)")
    log_every: int = _opt(50, "TensorBoard scalars every N steps")
    sample_every: int = _opt(1000, "TensorBoard images and audio every N steps")
    val_windows: int = _opt(32, "held-out windows per domain for validation")
    val_frames: int = _opt(512, "validation window length in frames (also the audio samples)")
    amp: str = _opt("auto", "mixed precision: auto (bf16 or fp16 on CUDA, off on CPU), off, "
                    "bf16, fp16 (CUDA only)", choices=AMP_MODES)
    device: str = _opt("auto", "auto (CUDA if present), cpu or cuda", choices=DEVICES)
    deterministic: bool = _opt(False, "deterministic kernels (slower on CUDA)")
    threads: int = _opt(0, "CPU threads per process (0: torch's default, one per core; on a "
                        "busy shared machine 1 can be several times faster)")

    def __post_init__(self) -> None:
        problems = _check_common(self)
        if self.frames < 16 or self.val_frames < 16 or self.val_windows < 1:
            problems.append("frames and val_frames must be >= 16, val_windows >= 1")
        for name in ("adversarial", "cycle", "identity", "lr_g", "lr_d", "content_chroma",
                     "content_onset", "paired", "real_windows"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must be >= 0")
        if self.identity_until < 0 or self.pool_size < 0:
            problems.append("identity_until and pool_size must be >= 0")
        if problems:
            raise GenreshiftError(f"invalid training config: {'; '.join(problems)}")


@dataclass(frozen=True)
class ClassifierTrainConfig(_Config):
    """A genre-classifier run (see genreshift.train.classifier). The window length is the
    model's (ClassifierConfig.frames)."""

    _what = "classifier training config"

    steps: int = _opt(4000, "optimisation steps in all")
    batch_size: int = _opt(32, "windows per step (per process under torchrun)")
    lr: float = _opt(1e-3, "learning rate (AdamW)")
    weight_decay: float = _opt(1e-2, "AdamW weight decay")
    decay_start: float = _opt(0.3, "fraction of the steps after which the learning rate "
                              "decays linearly to 0")
    label_smoothing: float = _opt(0.1, "cross-entropy label smoothing")
    real_windows: int = _opt(0, "excerpts of real recordings (--real MELDIR) per step for the "
                             "contrastive term: each is drawn at two positions, which the "
                             "network must tell apart from the other excerpts' (0: none; "
                             "ignored without --real)")
    contrastive: float = _opt(1.0, "weight of the contrastive (InfoNCE) term on the real "
                              "excerpts, next to the genre cross-entropy")
    temperature: float = _opt(0.1, "temperature of the contrastive term's cosine similarities")
    augment: bool = _opt(True, "augment training windows: random gain (+-6 dB) and a short "
                         "time mask (see genreshift.data.windows)")
    seed: int = _opt(0, "seed of initialisation, windows and augmentation")
    checkpoint_every: int = _opt(500, "write the inference + resume files every N steps")
    val_every: int = _opt(500, "validate on held-out windows every N steps (and at the end)")
    log_every: int = _opt(50, "TensorBoard scalars every N steps")
    val_windows: int = _opt(64, "held-out windows per genre for validation")
    amp: str = _opt("auto", "mixed precision: auto, off, bf16, fp16 (CUDA only)",
                    choices=AMP_MODES)
    device: str = _opt("auto", "auto (CUDA if present), cpu or cuda", choices=DEVICES)
    deterministic: bool = _opt(False, "deterministic kernels (slower on CUDA)")
    threads: int = _opt(0, "CPU threads per process (0: torch's default, one per core; on a "
                        "busy shared machine 1 can be several times faster)")

    def __post_init__(self) -> None:
        problems = _check_common(self)
        if self.val_windows < 1:
            problems.append("val_windows must be >= 1")
        if not 0.0 <= self.label_smoothing < 1.0 or self.lr < 0 or self.weight_decay < 0:
            problems.append("need label_smoothing in [0, 1), lr and weight_decay >= 0")
        if self.real_windows < 0 or self.real_windows == 1:
            problems.append("real_windows must be 0 or >= 2 (the contrastive term needs "
                            "another excerpt to compare with)")
        if self.contrastive < 0 or self.temperature <= 0:
            problems.append("need contrastive >= 0 and temperature > 0")
        if problems:
            raise GenreshiftError(f"invalid classifier training config: {'; '.join(problems)}")


# What a run stored before a field existed trained with: the content, paired and real-data
# terms came later, and their absence means they were off.
LEGACY_TRAIN_VALUES = {"content_chroma": 0.0, "content_onset": 0.0, "paired": 0.0,
                       "real_windows": 0, "contrastive": 1.0, "temperature": 0.1}


def changed_fields(stored: dict[str, Any], requested: dict[str, Any]) -> list[str]:
    """Names of the non-logistics fields whose values differ (for refusing a resume)."""
    stored = {**{k: v for k, v in LEGACY_TRAIN_VALUES.items() if k in requested}, **stored}
    return sorted(k for k in set(stored) | set(requested)
                  if k not in LOGISTICS and stored.get(k) != requested.get(k))


def refuse_changed(path: Any, stored: dict[str, Any], config: Any) -> None:
    """Raise a GenreshiftError naming the settings that differ from the run being resumed."""
    changed = changed_fields(stored, config.to_dict())
    if changed:
        detail = "; ".join(f"{k}: {stored.get(k)!r} in the run vs {getattr(config, k, None)!r} now"
                           for k in changed)
        raise GenreshiftError(
            f"{path}: cannot resume with different settings ({detail}); they shape the "
            "learning-rate schedule and the random streams. Resume without them, or start a new "
            "run in another --out")


def cli_fields(cls: type) -> list[Any]:
    """The dataclass fields the command line exposes as options."""
    return [f for f in fields(cls) if f.metadata.get("cli", True)]
