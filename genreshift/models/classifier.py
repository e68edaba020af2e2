"""A compact CNN genre classifier over log-mel windows.

Used twice: at conversion time to detect the source genre, and during/after training to judge
transfer (the share of converted windows it labels as the target genre). It is deliberately
small (a few hundred thousand weights) so that it runs alongside a conversion on a CPU.

Architecture: ``n_blocks`` of [3x3 conv, batch norm, ReLU, 2x2 max-pool], then the frequency
axis is averaged away and time is summarised by mean and max (mean: overall texture; max: short
events such as a snare or a horn stab), then dropout and a linear layer. The pooling makes the
network accept any window length.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from genreshift.models.config import ClassifierConfig

__all__ = ["ClassifierConfig", "GenreClassifier", "classify_clip", "split_windows",
           "window_probabilities"]


class GenreClassifier(nn.Module):
    """Log-mel windows [B, n_mels, T] (T >= 2**n_blocks) -> genre logits [B, n_classes]."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        blocks: list[nn.Module] = []
        cin = 1
        for i in range(config.n_blocks):
            cout = config.channels * min(2 ** i, 8)
            blocks += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                       nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            cin = cout
        self.features = nn.Sequential(*blocks)
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(2 * cin, config.n_classes)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        self.check_input(mel)
        return self.fc(self.dropout(self.embed(mel)))

    def check_input(self, mel: torch.Tensor) -> None:
        """Raise ValueError unless ``mel`` is [batch, n_mels, frames >= min_frames]."""
        if mel.dim() != 3 or mel.shape[1] != self.config.n_mels:
            raise ValueError(f"classifier expects [batch, {self.config.n_mels}, frames], "
                             f"got {tuple(mel.shape)}")
        if mel.shape[-1] < self.config.min_frames:
            raise ValueError(f"classifier needs at least {self.config.min_frames} frames, "
                             f"got {mel.shape[-1]}")

    def embed(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, T] -> [B, 2 * C], the pooled features the last layer reads (mean and
        max over time of the frequency-averaged last block). Shapes: see check_input."""
        h = self.features(mel.unsqueeze(1)).mean(dim=2)  # [B, C, T']
        return torch.cat([h.mean(dim=-1), h.amax(dim=-1)], dim=1)


def split_windows(mel: torch.Tensor, frames: int, hop: int | None = None) -> torch.Tensor:
    """[n_mels, T] -> [n_windows, n_mels, frames] covering the whole clip.

    Windows start every ``hop`` frames (default frames // 2); the last one is aligned to the
    clip's end so no frame is left out. A clip shorter than ``frames`` is one window, padded at
    the end by repeating its last frame.
    """
    if mel.dim() != 2:
        raise ValueError(f"expected [n_mels, frames], got {tuple(mel.shape)}")
    hop = hop or max(1, frames // 2)
    total = mel.shape[-1]
    if total <= frames:
        return F.pad(mel[None], (0, frames - total), mode="replicate")
    starts = list(range(0, total - frames + 1, hop))
    if starts[-1] != total - frames:
        starts.append(total - frames)
    return torch.stack([mel[:, s:s + frames] for s in starts])


@torch.no_grad()
def window_probabilities(model: GenreClassifier, mels: torch.Tensor, *,
                         batch_size: int = 64, hop: int | None = None) -> torch.Tensor:
    """Genre probabilities [N, n_classes] for log-mels [N, n_mels, T] of any length T.

    Each mel is cut into windows of the length the model was trained on
    (``model.config.frames``, hop of half a window, the last aligned to the end) and the
    per-window softmax probabilities are averaged, so a long excerpt is judged by its typical
    window rather than by one loud passage. ``hop``: frames between window starts (default
    half a window). Put the model in eval mode first (the checkpoint loader returns it so).
    """
    if mels.dim() != 3:
        raise ValueError(f"expected [N, n_mels, frames], got {tuple(mels.shape)}")
    n = mels.shape[0]
    # [N, W, M, F]
    windows = torch.stack([split_windows(m, model.config.frames, hop) for m in mels])
    per = windows.shape[1]
    device = next(model.parameters()).device
    flat = windows.reshape(n * per, *windows.shape[2:])
    probs = torch.cat([F.softmax(model(chunk.to(device)).float(), dim=-1)
                       for chunk in flat.split(batch_size)])
    return probs.reshape(n, per, -1).mean(dim=1).cpu()


def classify_clip(model: GenreClassifier, mel: torch.Tensor, *,
                  batch_size: int = 64, hop: int | None = None) -> torch.Tensor:
    """Genre probabilities [n_classes] for a whole clip's log-mel [n_mels, T]."""
    if mel.dim() != 2:
        raise ValueError(f"expected [n_mels, frames], got {tuple(mel.shape)}")
    return window_probabilities(model, mel[None], batch_size=batch_size, hop=hop)[0]
