"""U-Net generators on normalised log-mel spectrograms.

Two variants share the 2-D encoder and decoder and differ in the bottleneck ("core"):

- ``"2d"``: residual blocks of 2-D convolutions at the bottleneck (pix2pix / CycleGAN style).
- ``"212d"``: the 2-1-2-D design of CycleGAN-VC2 / MaskCycleGAN-VC. The bottleneck's
  [channels, mel bands] are folded into one channel axis, a stack of 1-D residual blocks runs
  along time, and the result is unfolded again. 1-D convolutions over a 32x shorter axis are far
  cheaper on a CPU than 2-D ones, and they see the whole frequency range at once, which suits
  timbre changes (instrumentation is what separates genres).

Both are fully convolutional: any number of frames is accepted (padded to a multiple of the
total stride, cropped back). Input and output are [batch, n_mels, frames] in [-1, 1].

``residual=True`` (the default for new models) makes the head predict a bounded change,
``output = clamp(input + max_change * tanh(head), -1, 1)``, with the head initialised to zero:
the untrained generator is the identity, and what it does not learn to change stays the song.
Models from before the option predict the output directly (``residual=False``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genreshift.models.config import GENERATOR_VARIANTS, GeneratorConfig

__all__ = ["VARIANTS", "Generator", "GeneratorConfig", "count_parameters", "instance_norm"]

VARIANTS = GENERATOR_VARIANTS


def instance_norm(ch: int) -> nn.Module:
    """Instance norm with a per-channel affine, for [B, C, *] inputs.

    GroupNorm with one group per channel computes exactly that (per sample and channel, over
    all other axes), and its CPU kernel is 4x faster than InstanceNorm2d's on a full-resolution
    30 s mel and ~500x faster than InstanceNorm1d's (which routes through batch norm).
    """
    return nn.GroupNorm(ch, ch)


def _act() -> nn.Module:
    # LeakyReLU rather than CycleGAN-VC2's GLU: GLU doubles every convolution's width, and the
    # point of this module is to be fast on a CPU.
    return nn.LeakyReLU(0.2, inplace=True)


class ResBlock2d(nn.Module):
    """x + IN(conv(act(IN(conv(x))))) on [B, C, F, T]."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(ch, ch, 3, padding=1), instance_norm(ch), _act(),
            nn.Conv2d(ch, ch, 3, padding=1), instance_norm(ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResBlock1d(nn.Module):
    """x + IN(conv(act(IN(conv(x))))) on [B, C, T]."""

    def __init__(self, ch: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(ch, ch, 3, padding=1), instance_norm(ch), _act(),
            nn.Conv1d(ch, ch, 3, padding=1), instance_norm(ch),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Core2d(nn.Module):
    """Bottleneck of the "2d" variant: [B, C, F', T'] -> same shape."""

    def __init__(self, ch: int, n_res: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*[ResBlock2d(ch) for _ in range(n_res)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class Core1d(nn.Module):
    """Bottleneck of the "212d" variant: [B, C, F', T'] -> [B, C*F', T'] -> 1-D blocks -> back."""

    def __init__(self, ch: int, bands: int, core: int, n_res: int) -> None:
        super().__init__()
        self.to_1d = nn.Sequential(
            nn.Conv1d(ch * bands, core, 1), instance_norm(core))
        self.blocks = nn.Sequential(*[ResBlock1d(core) for _ in range(n_res)])
        self.to_2d = nn.Sequential(
            nn.Conv1d(core, ch * bands, 1), instance_norm(ch * bands), _act())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, f, t = x.shape
        h = self.blocks(self.to_1d(x.reshape(b, c * f, t)))
        return self.to_2d(h).reshape(b, c, f, t)


class Generator(nn.Module):
    """U-Net generator: normalised log-mel [B, n_mels, T] -> [B, n_mels, T] in (-1, 1).

    Encoder: a 7x7 stem at full resolution, then ``n_down`` stride-2 4x4 convolutions, each
    doubling the width. Core: see the module docstring. Decoder: stride-2 4x4 transposed
    convolutions (4x4 with stride 2 covers every output pixel equally, so no checkerboard),
    each taking the decoder features concatenated with the encoder's at that resolution
    (the U-Net skips that carry the fine time-frequency detail the music keeps), then a 7x7
    head and tanh.
    """

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config
        c = config.channels
        widths = [c * 2 ** i for i in range(config.n_down + 1)]  # per resolution level
        self.stem = nn.Sequential(
            nn.Conv2d(1, c, 7, padding=3), instance_norm(c), _act())
        self.down = nn.ModuleList(
            nn.Sequential(nn.Conv2d(widths[i], widths[i + 1], 4, stride=2, padding=1),
                          instance_norm(widths[i + 1]), _act())
            for i in range(config.n_down)
        )
        bottom = widths[-1]
        if config.variant == "2d":
            self.core: nn.Module = Core2d(bottom, config.n_res)
        else:  # "212d"; the config has already rejected anything else
            self.core = Core1d(bottom, config.n_mels // config.stride, config.core_channels,
                               config.n_res)
        # up[i] goes from level i+1 to level i; all but the deepest take a skip concatenation.
        self.up = nn.ModuleList()
        for i in range(config.n_down):
            cin = widths[i + 1] * (1 if i == config.n_down - 1 else 2)
            self.up.append(nn.Sequential(
                nn.ConvTranspose2d(cin, widths[i], 4, stride=2, padding=1),
                instance_norm(widths[i]), _act()))
        self.head = nn.Conv2d(2 * c, 1, 7, padding=3)
        if config.residual:
            # Zero change at initialisation: the untrained generator returns its input, and
            # whatever training never asks it to change stays as it was.
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, T] (any T >= 1) -> [B, n_mels, T]."""
        if mel.dim() != 3 or mel.shape[1] != self.config.n_mels:
            raise ValueError(f"generator expects [batch, {self.config.n_mels}, frames], "
                             f"got {tuple(mel.shape)}")
        frames = mel.shape[-1]
        # Pad to a multiple of the stride, and to at least two bottleneck frames: instance norm
        # over a single time step is undefined in the 1-D core.
        stride = self.config.stride
        pad = max(-frames % stride, 2 * stride - frames)
        x = mel.unsqueeze(1)
        if pad:
            # Replicate, not reflect: reflect needs pad < frames, which a 1-frame input breaks.
            x = F.pad(x, (0, pad, 0, 0), mode="replicate")
        skips = [self.stem(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        h = self.core(skips[-1])
        for i in reversed(range(self.config.n_down)):
            if i != self.config.n_down - 1:
                h = torch.cat([h, skips[i + 1]], dim=1)
            h = self.up[i](h)
        out = torch.tanh(self.head(torch.cat([h, skips[0]], dim=1)))[:, 0, :, :frames]
        if self.config.residual:
            return (mel + self.config.max_change * out).clamp(-1.0, 1.0)
        return out


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
