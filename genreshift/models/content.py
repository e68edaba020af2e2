"""What a listener hears as "the same song", measured on normalised log-mels: chroma and onsets.

Two differentiable features of a log-mel batch [B, n_mels, T] in [-1, 1] (the normalised
log power of ``MelConfig``):

- **chroma** [B, 12, T]: the mel powers mapped to the 12 pitch classes by one fixed matrix
  (``chroma_matrix``), each frame scaled to unit L2 norm. The matrix is librosa's chroma
  filterbank (which already down-weights the extreme octaves) composed with the mel
  filterbank's triangles, so a mel band contributes to the pitch classes of the FFT bins it
  covers: wide low bands spread evenly and carry little pitch, narrow mid bands carry a lot.
- **onset envelope** [B, T]: the mean over bands of the positive frame-to-frame rise of the
  log-mel (spectral flux in the log domain), the quantity librosa's onset strength uses.

``content_loss`` compares output and input by both, each with its own weight: mean absolute
difference of the normalised chroma, and of the onset envelopes. Both are 0 for identical input
and output; a transposition moves the chroma, a shifted or removed note moves the onsets. They
are losses and nothing else here has weights, so these are functions (STYLE.md 6).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from genreshift.spectral import MelConfig, mel_basis

__all__ = ["chroma", "chroma_matrix", "content_loss", "onset_envelope"]

CHROMA_EPS = 1e-4  # frames quieter than this (norm of the chroma power) count as silent


@lru_cache(maxsize=8)
def _chroma_matrix_np(cfg: MelConfig) -> np.ndarray:
    import librosa

    # The analysis's own filterbank, [n_mels, 1 + n_fft // 2]
    mel = mel_basis(cfg, np.float32).astype(np.float64)
    chroma_fb = librosa.filters.chroma(sr=cfg.sample_rate, n_fft=cfg.n_fft)  # [12, n_freq]
    m = chroma_fb @ mel.T  # [12, n_mels]: the pitch classes each mel band's bins belong to
    col = m.sum(axis=0, keepdims=True)
    m = np.divide(m, col, out=np.zeros_like(m), where=col > 0)  # each band: a distribution
    # A band spread evenly over the 12 classes says nothing about pitch: weight each band by
    # how far its distribution is from flat (0 for flat, 1 for a single class).
    peak = (m.max(axis=0) - 1.0 / 12) / (1.0 - 1.0 / 12)
    return (m * np.clip(peak, 0.0, 1.0)[None, :]).astype(np.float32)


def chroma_matrix(cfg: MelConfig) -> torch.Tensor:
    """float32 [12, n_mels]: mel powers -> pitch-class energy, for ``cfg``'s mel bands."""
    return torch.from_numpy(_chroma_matrix_np(cfg))


def _power(mel: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """Normalised log power [-1, 1] -> linear power (same shape)."""
    db = (mel.float() + 1.0) * 0.5 * (cfg.db_max - cfg.db_min) + cfg.db_min
    return torch.pow(10.0, db / 10.0)


def chroma(mel: torch.Tensor, cfg: MelConfig) -> torch.Tensor:
    """[B, n_mels, T] normalised log-mel -> [B, 12, T] chroma, unit L2 norm per frame (silent
    frames stay near 0)."""
    w = chroma_matrix(cfg).to(mel.device)
    c = torch.einsum("cm,bmt->bct", w, _power(mel, cfg))
    return c / c.norm(dim=1, keepdim=True).clamp_min(CHROMA_EPS)


def onset_envelope(mel: torch.Tensor) -> torch.Tensor:
    """[B, n_mels, T] normalised log-mel -> [B, T] mean positive rise per frame (frame 0: 0)."""
    rise = torch.relu(mel.float()[..., 1:] - mel.float()[..., :-1]).mean(dim=1)
    return torch.nn.functional.pad(rise, (1, 0))


def content_loss(out: torch.Tensor, ref: torch.Tensor, cfg: MelConfig, *,
                 chroma_weight: float = 1.0, onset_weight: float = 1.0
                 ) -> dict[str, torch.Tensor]:
    """How far ``out`` moved from ``ref`` (both [B, n_mels, T]) in pitch and in onsets.

    Returns {"chroma": mean |chroma(out) - chroma(ref)|, "onset": mean |onset(out) -
    onset(ref)| scaled by 1 / mean onset(ref) (so its size does not depend on how percussive
    the music is), "total": the weighted sum}. The reference's features carry no gradient.
    Computed in float32 even under autocast: linear power spans 12 decades.
    """
    with torch.autocast(out.device.type, enabled=False):
        return _content_loss(out.float(), ref.float(), cfg, chroma_weight, onset_weight)


def _content_loss(out: torch.Tensor, ref: torch.Tensor, cfg: MelConfig, chroma_weight: float,
                  onset_weight: float) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        c_ref = chroma(ref, cfg)
        o_ref = onset_envelope(ref)
        scale = o_ref.mean().clamp_min(1e-3)
    c = (chroma(out, cfg) - c_ref).abs().mean()
    o = (onset_envelope(out) - o_ref).abs().mean() / scale
    return {"chroma": c, "onset": o, "total": chroma_weight * c + onset_weight * o}
