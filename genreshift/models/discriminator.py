"""PatchGAN discriminators on log-mel windows, optionally at several scales.

A PatchGAN scores overlapping time-frequency patches (70x70 bins for three layers) rather than
the whole window, so it judges local texture — the timbre and articulation that make a genre —
and works on any window length. With ``n_scales > 1`` further copies look at the window
average-pooled by 2, 4, ... (pix2pixHD), which widens the context without deeper networks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genreshift.models.config import DiscriminatorConfig
from genreshift.models.generator import instance_norm

__all__ = ["Discriminator", "DiscriminatorConfig", "PatchDiscriminator"]


class PatchDiscriminator(nn.Module):
    """[B, 1, F, T] -> patch logits [B, 1, F', T'] (LSGAN: no sigmoid)."""

    def __init__(self, channels: int, n_layers: int) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(1, channels, 4, stride=2, padding=1), nn.LeakyReLU(0.2, inplace=True)]
        ch = channels
        for i in range(1, n_layers):
            nxt = channels * min(2 ** i, 8)
            layers += [nn.Conv2d(ch, nxt, 4, stride=2, padding=1),
                       instance_norm(nxt), nn.LeakyReLU(0.2, inplace=True)]
            ch = nxt
        nxt = channels * min(2 ** n_layers, 8)
        layers += [nn.Conv2d(ch, nxt, 4, stride=1, padding=1),
                   instance_norm(nxt), nn.LeakyReLU(0.2, inplace=True),
                   nn.Conv2d(nxt, 1, 4, stride=1, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Discriminator(nn.Module):
    """Multi-scale PatchGAN: log-mel [B, n_mels, T] -> list of patch logits, one per scale."""

    def __init__(self, config: DiscriminatorConfig) -> None:
        super().__init__()
        self.config = config
        self.scales = nn.ModuleList(
            PatchDiscriminator(config.channels, config.n_layers) for _ in range(config.n_scales))

    def forward(self, mel: torch.Tensor) -> list[torch.Tensor]:
        if mel.dim() != 3 or mel.shape[1] != self.config.n_mels:
            raise ValueError(f"discriminator expects [batch, {self.config.n_mels}, frames], "
                             f"got {tuple(mel.shape)}")
        if mel.shape[-1] < self.config.min_frames:
            raise ValueError(f"discriminator needs windows of at least {self.config.min_frames} "
                             f"frames, got {mel.shape[-1]}")
        x = mel.unsqueeze(1)
        outs = []
        for i, d in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outs.append(d(x))
        return outs
