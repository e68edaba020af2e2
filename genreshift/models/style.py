"""Style statistics in the space of a trained genre classifier (reference mode).

The random 1-D filters of genreshift.models.gram match frame statistics of the log-mel but know
nothing about music. Here the style of a clip is read off the activations of the genre
classifier's first convolutional blocks (genreshift.models.classifier), a network trained to
tell genres apart, in the manner of image style transfer over VGG features:

- per block, the **Gram matrix** of the ReLU activations over channels, averaged over every
  (frequency, time) position: which learnt patterns occur together;
- per block, the **mean and standard deviation over time** of every (channel, frequency) cell,
  as in AdaIN-style losses: how strongly, and how steadily, each pattern sounds in each band
  (the classifier's convolutions keep frequency position, so these carry the timbre);
- the same activations **average-pooled over ~a beat and ~a bar** (``StyleConfig.scales_s``):
  the covariance over channels and the per-(channel, frequency) standard deviation of the
  pooled activations. What changes from beat to beat and bar to bar (a kick on one, a chord
  every bar, a steady pad) is the groove and long-range texture that frame statistics miss.

Every statistic is compared by its relative squared distance ||s - t||^2 / ||t||^2 (as
gram.style_loss), and the style loss is their mean: 0 is the reference's statistics exactly.

The classifier's weights are frozen; these are functions over it (STYLE.md 6). Shapes: a
log-mel batch is [batch, n_mels, frames] in [-1, 1]; the classifier sees it unchanged (not
level-centred: it was trained on absolute normalised log-mels, and reference mode scales the
reference to the song's loudness before analysis).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from genreshift.errors import GenreshiftError
from genreshift.models.classifier import GenreClassifier

__all__ = ["StyleConfig", "activations", "content_distance", "min_frames", "receptive_frames",
           "statistics", "statistics_chunked", "style_distance"]

_EPS = 1e-12


@dataclass(frozen=True)
class StyleConfig:
    """What the classifier style space measures."""

    # Conv blocks whose activations are used (of the classifier's n_blocks). Three: the fourth
    # block costs as much as the first three together on a 30 s window and, at 1/8 of the time
    # resolution, sees little that the pooled statistics below do not.
    blocks: int = 3
    # Time scales beyond the frame, in seconds, over which activations are pooled: ~a beat and
    # ~a bar at 120 bpm in 4/4. Fixed rather than tracked: a beat tracker's tempo octave errors
    # would make the same reference mean different things from run to run of a song.
    scales_s: tuple[float, ...] = (0.5, 2.0)

    def __post_init__(self) -> None:
        if self.blocks < 1:
            raise GenreshiftError(f"invalid StyleConfig {self}: blocks must be >= 1")
        if any(s <= 0 for s in self.scales_s):
            raise GenreshiftError(f"invalid StyleConfig {self}: scales must be > 0 s")

    def to_dict(self) -> dict:
        return asdict(self)


def _check(model: GenreClassifier, cfg: StyleConfig) -> None:
    if cfg.blocks > model.config.n_blocks:
        raise GenreshiftError(f"the style space uses {cfg.blocks} conv blocks; the classifier "
                              f"has {model.config.n_blocks}")


def receptive_frames(cfg: StyleConfig) -> int:
    """Frames each side of a position that the used blocks' 3x3 convolutions and 2x2 pools
    reach (a bound): windows cross-fade this far from their edges."""
    return 2 ** (cfg.blocks + 1)


def min_frames(cfg: StyleConfig) -> int:
    """The shortest log-mel the used blocks accept (one position after the last pool)."""
    return 2 ** cfg.blocks


def activations(model: GenreClassifier, mel: torch.Tensor, cfg: StyleConfig
                ) -> list[torch.Tensor]:
    """[batch, n_mels, frames] -> the output of each used block (conv, norm, ReLU, 2x2 max
    pool), [batch, C_b, F_b, T_b] with F_b, T_b = n_mels, frames // 2**(b + 1). After the
    pool, not before it: a quarter of the positions (the statistics and their gradients cost a
    quarter), and the max keeps each 2x2 cell's strongest response, which is what the next
    block sees."""
    _check(model, cfg)
    if mel.shape[-1] < min_frames(cfg):
        raise GenreshiftError(f"a log-mel of {mel.shape[-1]} frames is too short for the style "
                              f"space ({min_frames(cfg)} frames at least)")
    h = mel.unsqueeze(1)
    out: list[torch.Tensor] = []
    for layer in model.features:
        if isinstance(layer, nn.ReLU):
            h = F.relu(h)  # not in place: the pre-ReLU tensor may be needed for the gradient
        else:
            h = layer(h)
        if isinstance(layer, nn.MaxPool2d):
            out.append(h)
            if len(out) == cfg.blocks:
                break
    return out


def _pool_kernel(block: int, seconds: float, frames_per_second: float) -> int:
    """Positions of block ``block``'s output (2**(block + 1) frames each) in ``seconds``."""
    return max(1, round(seconds * frames_per_second / 2 ** (block + 1)))


def _gram(a: torch.Tensor) -> torch.Tensor:
    """[B, C, F, T] -> [B, C, C], the channels' products averaged over positions."""
    flat = a.flatten(2)
    return torch.matmul(flat, flat.transpose(-1, -2)) / flat.shape[-1]


def statistics(acts: list[torch.Tensor], cfg: StyleConfig, frames_per_second: float
               ) -> dict[str, torch.Tensor]:
    """Style statistics of block activations (see the module docstring): name -> [batch, ...].

    A pooled scale is left out where the clip has fewer than two pooled positions at it, so a
    short reference and a long song keep the same names only where both are long enough;
    :func:`style_distance` compares the names both have.
    """
    stats: dict[str, torch.Tensor] = {}
    for b, a in enumerate(acts):
        stats[f"b{b}.gram"] = _gram(a)
        stats[f"b{b}.mean"] = a.mean(dim=-1)
        stats[f"b{b}.std"] = a.var(dim=-1, unbiased=False).add(_EPS).sqrt()
        for s in cfg.scales_s:
            k = _pool_kernel(b, s, frames_per_second)
            if k < 2 or a.shape[-1] < 2 * k:
                continue
            # [B, C, F, T] -> pooled over time, hop k/2
            p = F.avg_pool2d(a, kernel_size=(1, k), stride=(1, max(1, k // 2)))
            p = p - p.mean(dim=-1, keepdim=True)
            stats[f"b{b}.s{s:g}.cov"] = _gram(p)
            stats[f"b{b}.s{s:g}.std"] = p.pow(2).mean(dim=-1).add(_EPS).sqrt()
    return stats


def statistics_chunked(model: GenreClassifier, mel: torch.Tensor, cfg: StyleConfig,
                       frames_per_second: float, *, chunk_frames: int = 4096
                       ) -> dict[str, torch.Tensor]:
    """:func:`statistics` of a long log-mel [batch, n_mels, frames], computed in pieces of at
    most ``chunk_frames`` (memory bounded) and averaged, weighted by each piece's frames; each
    piece's statistics are taken on its own (a piece boundary is not a musical event, but it
    is rare: one per ~chunk_frames). Batch entries are averaged too (one target)."""
    frames = mel.shape[-1]
    n = max(1, round(frames / chunk_frames))
    bounds = [round(i * frames / n) for i in range(n + 1)]
    sums: dict[str, torch.Tensor] = {}
    weights: dict[str, float] = {}
    with torch.no_grad():
        for a, b in itertools.pairwise(bounds):
            st = statistics(activations(model, mel[..., a:b], cfg), cfg, frames_per_second)
            for k, v in st.items():
                v = v.mean(dim=0, keepdim=True) * (b - a)
                sums[k] = v if k not in sums else sums[k] + v
                weights[k] = weights.get(k, 0.0) + (b - a)
    return {k: v / weights[k] for k, v in sums.items()}


def _relative_sq(a: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    dims = tuple(range(1, a.dim()))
    num = (a - target).pow(2).sum(dim=dims)
    den = target.pow(2).sum(dim=dims).clamp_min(_EPS)
    return (num / den).mean()


def style_distance(stats: dict[str, torch.Tensor], targets: dict[str, torch.Tensor]
                   ) -> torch.Tensor:
    """Mean over the statistics both have of ||s - t||^2 / ||t||^2 (targets may have batch 1)."""
    names = [k for k in stats if k in targets]
    if not names:
        raise GenreshiftError("no style statistics in common between the song and the reference")
    return torch.stack([_relative_sq(stats[k], targets[k]) for k in names]).mean()


def content_distance(acts: list[torch.Tensor], target_acts: list[torch.Tensor]) -> torch.Tensor:
    """||A - A0||^2 / ||A0||^2 of the deepest used block's activations, frame by frame (the
    classifier-space counterpart of gram.content_loss)."""
    return _relative_sq(acts[-1], target_acts[-1])
