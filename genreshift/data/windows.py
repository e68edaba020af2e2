"""Training windows: fixed-length log-mel excerpts drawn from the shards of a mel directory.

``MelWindows(meldir, split="train", genres=["jazz", "rock"], frames=128)`` is a map-style
``torch.utils.data.Dataset`` of ``(float32 [n_mels, frames], genre index)`` pairs:

- An epoch has ``sum over clips of clip_frames // frames`` windows, so every clip contributes in
  proportion to its length. Clips shorter than one window are left out (with a warning).
- Item ``i`` belongs to a fixed clip; its start inside that clip is random, drawn from a generator
  seeded by ``(seed, epoch, i)``. The same seed, epoch and index always give the same window (and
  the same augmentation), whatever the DataLoader's worker count or order, so a resumed run sees
  the data it would have seen. Call :meth:`MelWindows.set_epoch` before each epoch for fresh
  positions (as with ``DistributedSampler.set_epoch``; with ``persistent_workers=True`` the
  workers keep their own copy, so create the DataLoader per epoch or leave the epoch fixed).
- Windows never cross clip boundaries, and a clip's windows stay in that clip's split.
- Shards are memory-mapped lazily, once per process (so per DataLoader worker); an item reads only
  its own ``n_mels x frames`` block.

Augmentation (``augment=True``), both in the normalised log-mel domain:

- **gain**: a uniform random gain in [-6, +6] dB, i.e. an offset of gain * 2 / (db_max - db_min)
  added to every bin above the silence floor (bins at -1 stay silent, as a gain would leave them),
  clamped to [-1, 1];
- **time mask**: with probability 0.5, one run of 1 to frames // 10 consecutive frames is set to
  silence (-1), a light SpecAugment that teaches the models not to lean on any single instant.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from genreshift.data.clips import SPLITS
from genreshift.data.tensors import load_manifest
from genreshift.errors import GenreshiftError
from genreshift.spectral import MelConfig

__all__ = ["GAIN_DB", "MASK_MAX_FRACTION", "MASK_PROBABILITY", "MelWindows", "load_manifest"]

log = logging.getLogger(__name__)

GAIN_DB = 6.0  # augmentation: random gain range, +- dB
MASK_PROBABILITY = 0.5  # augmentation: chance of one time mask per window
MASK_MAX_FRACTION = 0.1  # augmentation: longest mask, as a fraction of the window


class MelWindows(Dataset):
    """Random fixed-length windows of the clips of one split (see the module docstring).

    Attributes: ``genres`` (names; the index is the label), ``mel_config`` (from the manifest),
    ``clips`` (the manifest entries used, in label-then-name order), ``mean`` / ``std`` (float32
    [n_mels] per-bin statistics of the train split, for models that want them; not applied here),
    ``dropped_short`` (clips shorter than one window, left out).
    """

    def __init__(
        self,
        meldir: str | os.PathLike,
        *,
        split: str,
        genres: Sequence[str] | None = None,
        frames: int = 128,
        augment: bool = False,
        seed: int = 0,
    ) -> None:
        self.meldir = Path(meldir).expanduser()
        manifest = load_manifest(self.meldir)
        self.mel_config = MelConfig.from_dict(manifest["mel_config"])
        if split not in SPLITS:
            raise GenreshiftError(f"unknown split '{split}'; choose one of {', '.join(SPLITS)}")
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise GenreshiftError(
                f"window length must be a positive number of frames, not {frames}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise GenreshiftError(f"seed must be a non-negative integer, not {seed}")
        available = list(manifest["genres"])
        explicit = genres is not None
        genres = list(genres) if genres is not None else available
        if not genres:
            raise GenreshiftError("no genres asked for; name at least one, or pass None for all")
        unknown = [g for g in genres if g not in available]
        if unknown:
            raise GenreshiftError(
                f"{self.meldir}: unknown genre(s) {', '.join(map(repr, unknown))}; this mel folder "
                f"has: {', '.join(available)}"
            )
        if len(set(genres)) != len(genres):
            raise GenreshiftError(f"genre names repeat in {genres}; give each genre once")
        self.genres: list[str] = genres
        self.split = split
        self.frames = frames
        self.augment = augment
        self.seed = seed
        self._epoch = 0

        label = {g: i for i, g in enumerate(genres)}
        in_split = sorted(
            (c for c in manifest["clips"] if c["split"] == split and c["genre"] in label),
            key=lambda c: (label[c["genre"]], c["source"]),
        )
        if not in_split:
            counts = ", ".join(f"{s} {v['clips']}" for s, v in manifest["splits"].items())
            raise GenreshiftError(
                f"{self.meldir}: split '{split}' has no clips of {', '.join(genres)} "
                f"(clips per split: {counts})"
            )
        empty = [g for g in genres if not any(c["genre"] == g for c in in_split)]
        if empty and explicit:  # asked for by name: a model of that genre cannot be trained
            raise GenreshiftError(
                f"{self.meldir}: split '{split}' has no clips of {', '.join(empty)}; choose other "
                "genres or another split"
            )
        if empty:  # all genres by default: keep the labels, say which never occur
            log.warning("%s: split '%s' has no clips of %s", self.meldir, split, ", ".join(empty))
        usable = [c for c in in_split if c["frames"] >= frames]
        if not usable:
            longest = max(c["frames"] for c in in_split)
            hop_s = self.mel_config.hop_length / self.mel_config.sample_rate
            raise GenreshiftError(
                f"{self.meldir}: a window of {frames} frames ({frames * hop_s:.2f} s) is longer "
                f"than every clip of split '{split}' (the longest has {longest} frames, "
                f"{longest * hop_s:.2f} s); use a shorter window"
            )
        self.dropped_short = len(in_split) - len(usable)
        if self.dropped_short:
            log.warning("%s: %d clip(s) of split '%s' are shorter than %d frames and are left out",
                        self.meldir, self.dropped_short, split, frames)
        self.clips: list[dict] = usable
        shard_names = sorted({c["shard"] for c in usable})
        shard_index = {s: i for i, s in enumerate(shard_names)}
        self._shard_paths = [str(self.meldir / s) for s in shard_names]
        self._shard = np.array([shard_index[c["shard"]] for c in usable], dtype=np.int64)
        self._offset = np.array([c["offset"] for c in usable], dtype=np.int64)
        self._length = np.array([c["frames"] for c in usable], dtype=np.int64)
        self._label = np.array([label[c["genre"]] for c in usable], dtype=np.int64)
        self._ends = np.cumsum(np.maximum(1, self._length // frames))
        stats = manifest["stats"]
        self.mean = torch.tensor(stats["mean"], dtype=torch.float32)
        self.std = torch.tensor(stats["std"], dtype=torch.float32)
        self._maps: dict[int, np.ndarray] = {}
        self._maps_pid = os.getpid()

    def __len__(self) -> int:
        return int(self._ends[-1])

    def set_epoch(self, epoch: int) -> None:
        """Draw new window positions (and augmentations) for ``epoch``; deterministic per epoch."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        self._epoch = int(epoch)

    @property
    def labels(self) -> np.ndarray:
        """int64 [len(self)]: the genre index of every item, e.g. for a balanced sampler."""
        return np.repeat(self._label, np.diff(self._ends, prepend=0))

    def _map(self, shard: int) -> np.ndarray:
        if self._maps_pid != os.getpid():  # a forked DataLoader worker opens its own maps
            self._maps, self._maps_pid = {}, os.getpid()
        arr = self._maps.get(shard)
        if arr is None:
            arr = np.load(self._shard_paths[shard], mmap_mode="r")
            self._maps[shard] = arr
        return arr

    def locate(self, index: int) -> tuple[int, int, np.random.Generator]:
        """(clip number, window start inside that clip, the item's random generator after the
        start was drawn) of item ``index`` in the current epoch."""
        n = len(self)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"window index {index} out of range for {n} windows")
        clip = int(np.searchsorted(self._ends, index, side="right"))
        rng = np.random.default_rng((self.seed, self._epoch, index))
        start = int(rng.integers(0, self._length[clip] - self.frames + 1))
        return clip, start, rng

    def read(self, clip: int, start: int) -> torch.Tensor:
        """float32 [n_mels, frames]: the window of clip number ``clip`` at frame ``start``
        (clamped so that it stays inside the clip), unaugmented."""
        start = max(0, min(int(start), int(self._length[clip]) - self.frames))
        at = int(self._offset[clip]) + start
        block = self._map(int(self._shard[clip]))[:, at:at + self.frames]
        return torch.from_numpy(np.array(block, dtype=np.float32))

    def group(self, clip: int) -> str | None:
        """The tune (or other group) that clip number ``clip`` belongs to, if the data says."""
        return self.clips[clip].get("group")

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        clip, start, rng = self.locate(index)
        window = self.read(clip, start)
        if self.augment:
            window = self._augment(window, rng)
        return window, int(self._label[clip])

    def augment_window(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        """The augmentation of the module docstring, drawn from ``rng`` (in place on x)."""
        return self._augment(x, rng)

    def _augment(self, x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        cfg = self.mel_config
        offset = rng.uniform(-GAIN_DB, GAIN_DB) * 2.0 / (cfg.db_max - cfg.db_min)
        x = torch.where(x <= -1.0, x, (x + offset).clamp(-1.0, 1.0))
        if rng.random() < MASK_PROBABILITY:
            longest = max(1, int(self.frames * MASK_MAX_FRACTION))
            width = int(rng.integers(1, longest + 1))
            t0 = int(rng.integers(0, self.frames - width + 1))
            x[:, t0:t0 + width] = -1.0
        return x

    def __getstate__(self) -> dict:
        # Memory maps would be pickled as copies of the data; each process opens its own.
        state = self.__dict__.copy()
        state["_maps"] = {}
        return state

    def __repr__(self) -> str:
        return (f"MelWindows({str(self.meldir)!r}, split={self.split!r}, genres={self.genres}, "
                f"frames={self.frames}, augment={self.augment}, seed={self.seed}): "
                f"{len(self.clips)} clips, {len(self)} windows")
