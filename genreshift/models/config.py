"""The frozen configs that rebuild each network, kept free of torch.

They live apart from the networks only so that the command line can build its options from
their fields without importing torch (which takes seconds); each network module re-exports its
config. A config is stored in every checkpoint as a plain dict (``to_dict``) and read back with
``from_dict``, which refuses keys it does not know (a file from a newer genreshift).
Field ``metadata["help"]`` is the command-line help.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from genreshift.errors import GenreshiftError

GENERATOR_VARIANTS = ("2d", "212d")

_C = TypeVar("_C", bound="_Config")


class _Config:
    """to_dict / from_dict shared by the frozen config dataclasses."""

    _what = "config"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[_C], d: dict[str, Any]) -> _C:
        unknown = set(d) - {f.name for f in fields(cls)}  # type: ignore[arg-type]
        if unknown:
            raise GenreshiftError(
                f"{cls._what} has unknown keys {sorted(unknown)}; it was written by a newer "
                "genreshift, upgrade to read it")
        try:
            return cls(**d)
        except TypeError as e:
            raise GenreshiftError(f"{cls._what} is malformed: {e}") from None


def _opt(default: Any, help: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, **meta})


@dataclass(frozen=True)
class GeneratorConfig(_Config):
    """Everything needed to rebuild a generator; stored in every converter checkpoint."""

    _what = "generator config"

    variant: str = _opt("212d", "generator design: 212d (2-D down/up around a 1-D core; fast "
                        "on CPU) or 2d (2-D U-Net)", choices=GENERATOR_VARIANTS)
    n_mels: int = _opt(128, "mel bands (taken from the data)", cli=False)
    channels: int = _opt(16, "width of the full-resolution stage; doubles per downsampling")
    n_down: int = _opt(2, "stride-2 downsamplings")
    n_res: int = _opt(6, "residual blocks in the bottleneck")
    # 128 keeps a generator at 1.2 M weights (4.9 MB in float32); the core holds most of
    # them but little of the compute (benchmarks/models_speed.py).
    core_channels: int = _opt(128, "width of the 1-D core (212d only)")
    residual: bool = _opt(True, "predict a bounded change to the input (output = input + "
                          "max_change * tanh(head)), zero at initialisation, instead of the "
                          "output itself")
    max_change: float = _opt(0.5, "largest change a residual generator makes to a log-mel bin, "
                             "in normalised units (0.5 = 30 dB of the 120 dB range)")

    # Files written before the residual option existed hold generators that predict the output
    # directly; their configs lack the key and must load as such.
    _LEGACY_DEFAULTS = {"residual": False}

    @classmethod
    def stored(cls, d: dict[str, Any]) -> GeneratorConfig:
        """The config of a file: ``from_dict`` with the values older files imply."""
        return cls.from_dict({**cls._LEGACY_DEFAULTS, **d})

    def __post_init__(self) -> None:
        problems = []
        if not 0.0 < self.max_change <= 2.0:
            problems.append("max_change must be in (0, 2]")
        if self.variant not in GENERATOR_VARIANTS:
            problems.append(f"variant must be one of {', '.join(GENERATOR_VARIANTS)}")
        if self.channels < 1 or self.n_res < 0 or self.core_channels < 1:
            problems.append("channels and core_channels must be >= 1, n_res >= 0")
        if not 1 <= self.n_down <= 4:
            problems.append("n_down must be in 1..4")
        elif self.n_mels % self.stride:
            problems.append(f"n_mels ({self.n_mels}) must be divisible by 2**n_down "
                            f"({self.stride})")
        if problems:
            raise GenreshiftError(f"invalid generator config: {'; '.join(problems)}")

    @property
    def stride(self) -> int:
        """Total down-sampling factor; frame counts are padded to a multiple of it."""
        return 2 ** self.n_down


@dataclass(frozen=True)
class DiscriminatorConfig(_Config):
    """Everything needed to rebuild a discriminator; stored in resume files."""

    _what = "discriminator config"

    n_mels: int = _opt(128, "mel bands (taken from the data)", cli=False)
    channels: int = _opt(32, "width of the first layer; doubles per layer up to 8x")
    n_layers: int = _opt(3, "stride-2 layers (3: 70x70-bin patches)")
    n_scales: int = _opt(1, "PatchGANs at 1, 1/2, 1/4, ... resolution")

    def __post_init__(self) -> None:
        if self.channels < 1 or not 1 <= self.n_layers <= 6 or not 1 <= self.n_scales <= 4:
            raise GenreshiftError("invalid discriminator config: need channels >= 1, n_layers "
                                  "in 1..6, n_scales in 1..4")
        if self.n_mels < self.min_frames:
            raise GenreshiftError(
                f"invalid discriminator config: {self.n_mels} mel bands are too few for "
                f"{self.n_layers} layers at {self.n_scales} scales (need {self.min_frames})")

    @property
    def min_frames(self) -> int:
        """Smallest input extent (frames or bands) that every scale accepts."""
        # Each stride-2 4x4 layer halves (floor), the two final 4x4 stride-1 layers take 3,
        # and each extra scale halves the input first.
        return 3 * 2 ** (self.n_layers + self.n_scales - 1)


@dataclass(frozen=True)
class ClassifierConfig(_Config):
    """Everything needed to rebuild and apply a classifier; stored in its checkpoint."""

    _what = "classifier config"

    n_mels: int = _opt(128, "mel bands (taken from the data)", cli=False)
    n_classes: int = _opt(10, "genres (taken from the data)", cli=False)
    channels: int = _opt(32, "first block's width; doubles per block up to 8x")
    n_blocks: int = _opt(4, "conv + pool blocks")
    dropout: float = _opt(0.3, "dropout before the last layer")
    frames: int = _opt(128, "window length in frames; whole clips are classified in such "
                       "windows")

    def __post_init__(self) -> None:
        problems = []
        if self.n_classes < 2:
            problems.append("n_classes must be >= 2 (train on at least two genres)")
        if self.channels < 1 or not 1 <= self.n_blocks <= 6:
            problems.append("need channels >= 1 and n_blocks in 1..6")
        if not 0.0 <= self.dropout < 1.0:
            problems.append("dropout must be in [0, 1)")
        if self.n_mels < self.min_frames or self.frames < self.min_frames:
            problems.append(f"n_mels and frames must be >= 2**n_blocks ({self.min_frames})")
        if problems:
            raise GenreshiftError(f"invalid classifier config: {'; '.join(problems)}")

    @property
    def min_frames(self) -> int:
        return 2 ** self.n_blocks
