"""Random convolutional features and Gram-matrix style statistics (reference mode).

In the manner of Ulyanov & Lebedev's audio texture synthesis: the frequency bins of a
spectrogram are the input channels and random, untrained 1-D filters slide along time. A bank
of filters per kernel width (a few frames up to a quarter second at the default widths) sees
both timbre and short rhythmic texture; the Gram matrix of the ReLU features, averaged over
time, is the style; the features themselves, frame by frame, are the content.

The filters are frozen random weights built from a seed (same seed, same filters); there is
nothing to train, so they are plain tensors made by a cached function rather than an
``nn.Module``. Losses and the Gram matrix are functions.

Shapes: a spectrogram is [batch, channels, frames]; the features of one kernel width are
[batch, filters, frames - width + 1] ("valid" convolution: no padding, because zero is a
real level in a normalised log-mel and padding would invent a fake one at the edges).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from genreshift.errors import GenreshiftError

# Keeps a relative loss finite when the target is all zeros (a features bank that is never
# active); far below any Gram norm of real music.
_EPS = 1e-12


@dataclass(frozen=True)
class FeatureConfig:
    """The random feature extractor: everything that defines its filters."""

    in_channels: int = 128
    widths: tuple[int, ...] = (3, 5, 11, 21)
    # Per width. On level-free log-mels (centre_level) 128 is enough: matching these Grams
    # moved the Grams of held-out filters (another seed) as far as its own (30 s generated
    # clips: 161 -> 8.8 held-out, 187 -> 9.5 own); 256 reached 8.5 at ~2x the cost.
    filters: int = 128
    seed: int = 0
    # Filter std; None is He initialisation, sqrt(2 / (in_channels * width)), which gives
    # every width features of the same size, so no width dominates the summed loss.
    std: float | None = None

    def __post_init__(self) -> None:
        if self.in_channels <= 0 or self.filters <= 0:
            raise GenreshiftError(f"invalid FeatureConfig {self}: channels and filters must be > 0")
        if not self.widths or any(w <= 0 for w in self.widths):
            raise GenreshiftError(f"invalid FeatureConfig {self}: widths must be positive")

    @property
    def max_width(self) -> int:
        return max(self.widths)

    def to_dict(self) -> dict:
        return asdict(self)


@functools.lru_cache(maxsize=4)
def random_filters(cfg: FeatureConfig, device: torch.device | str = "cpu",
                   dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, ...]:
    """One frozen filter bank [filters, in_channels, width] per width, drawn from cfg.seed.

    Drawn on the CPU with its own generator so the filters are the same on every device and do
    not disturb (or depend on) the global RNG.
    """
    gen = torch.Generator(device="cpu").manual_seed(cfg.seed)
    banks = []
    for width in cfg.widths:
        std = cfg.std if cfg.std is not None else math.sqrt(2.0 / (cfg.in_channels * width))
        w = torch.randn(cfg.filters, cfg.in_channels, width, generator=gen) * std
        banks.append(w.to(device=device, dtype=dtype))
    return tuple(banks)


def centre_level(x: torch.Tensor) -> torch.Tensor:
    """[..., channels, frames] minus its mean over channels and frames.

    On a log spectrogram that removes the overall level, so features (and Grams) of the
    result do not change when the recording is played louder or softer: a style is a pattern
    of relative levels. Without it the Gram distance between two clips is dominated by how
    loud each was, and an optimiser spends its effort on a level change that the final
    loudness match undoes.
    """
    return x - x.mean(dim=(-2, -1), keepdim=True)


def features(x: torch.Tensor, filters: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """[batch, channels, frames] -> ReLU features, one [batch, filters, frames - w + 1] per bank."""
    if x.shape[-1] < max(f.shape[-1] for f in filters):
        raise GenreshiftError(
            f"a spectrogram of {x.shape[-1]} frames is shorter than the widest random filter "
            f"({max(f.shape[-1] for f in filters)} frames); give a longer clip"
        )
    return [F.relu(F.conv1d(x, w)) for w in filters]


def gram_matrix(feats: torch.Tensor) -> torch.Tensor:
    """[batch, filters, n] -> [batch, filters, filters], divided by n.

    Dividing by the number of positions makes the Gram a time average, so clips of different
    lengths (a short reference, a long song) have comparable Grams.
    """
    return torch.matmul(feats, feats.transpose(-1, -2)) / feats.shape[-1]


def gram_matrices(x: torch.Tensor, filters: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """[batch, channels, frames] -> one Gram [batch, filters, filters] per filter bank."""
    return [gram_matrix(f) for f in features(x, filters)]


def gram_matrices_chunked(x: torch.Tensor, filters: Sequence[torch.Tensor], *,
                          chunk_frames: int = 8192) -> list[torch.Tensor]:
    """:func:`gram_matrices` of a long spectrogram, computed in pieces: same result (up to
    float rounding), memory bounded by ``chunk_frames``.

    A Gram is a sum over positions divided by their number, so it adds up over chunks. Each
    chunk carries ``width - 1`` extra frames so that every valid position is counted exactly
    once.
    """
    widest = max(f.shape[-1] for f in filters)
    frames = x.shape[-1]
    if frames <= chunk_frames:
        return gram_matrices(x, filters)
    if chunk_frames < 2 * widest:
        raise ValueError(f"chunk_frames {chunk_frames} must be >= 2 x the widest filter ({widest})")
    sums = [None] * len(filters)
    counts = [0] * len(filters)
    for start in range(0, frames, chunk_frames):
        for i, w in enumerate(filters):
            width = w.shape[-1]
            piece = x[..., start:min(frames, start + chunk_frames + width - 1)]
            if piece.shape[-1] < width:
                continue
            f = F.relu(F.conv1d(piece, w))
            s = torch.matmul(f, f.transpose(-1, -2))
            sums[i] = s if sums[i] is None else sums[i] + s
            counts[i] += f.shape[-1]
    return [s / n for s, n in zip(sums, counts)]


def content_loss_chunked(x: torch.Tensor, target: torch.Tensor,
                         filters: Sequence[torch.Tensor], *, chunk_frames: int = 8192
                         ) -> torch.Tensor:
    """content_loss(features(x), features(target)) of two long spectrograms [batch, channels,
    frames], computed in pieces of ``chunk_frames`` positions (memory bounded)."""
    per_bank = []
    for w in filters:
        width = w.shape[-1]
        num = den = 0.0
        for start in range(0, max(1, x.shape[-1] - width + 1), chunk_frames):
            stop = start + chunk_frames + width - 1
            fx = F.relu(F.conv1d(x[..., start:stop], w))
            ft = F.relu(F.conv1d(target[..., start:stop], w))
            num = num + (fx - ft).pow(2).sum(dim=(-2, -1))
            den = den + ft.pow(2).sum(dim=(-2, -1))
        per_bank.append((num / den.clamp_min(_EPS)).mean())
    return torch.stack(per_bank).mean()


def _relative_sq(a: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """||a - target||^2 / ||target||^2 over the last two axes, mean over the batch."""
    num = (a - target).pow(2).sum(dim=(-2, -1))
    den = target.pow(2).sum(dim=(-2, -1)).clamp_min(_EPS)
    return (num / den).mean()


def style_loss(grams: Sequence[torch.Tensor], target_grams: Sequence[torch.Tensor]
               ) -> torch.Tensor:
    """Mean over filter banks of the relative squared Gram distance ||G - A||^2 / ||A||^2.

    Relative, so it is independent of the filters' scale and of the loudness of the reference:
    0 is a perfect match, 1 is as far as an all-zero Gram. ``target_grams`` may have batch 1
    (one reference for a batch of songs).
    """
    if len(grams) != len(target_grams):
        raise ValueError(f"{len(grams)} Grams vs {len(target_grams)} targets")
    return torch.stack([_relative_sq(g, a) for g, a in zip(grams, target_grams)]).mean()


def content_loss(feats: Sequence[torch.Tensor], target_feats: Sequence[torch.Tensor]
                 ) -> torch.Tensor:
    """Mean over filter banks of the relative squared feature distance ||f - c||^2 / ||c||^2."""
    if len(feats) != len(target_feats):
        raise ValueError(f"{len(feats)} feature maps vs {len(target_feats)} targets")
    return torch.stack([_relative_sq(f, c) for f, c in zip(feats, target_feats)]).mean()
