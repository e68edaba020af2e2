"""What a dataset is, before it becomes mel tensors: a list of clips, each with a genre and a split.

Every dataset reader (a GTZAN folder, a GTZAN `datasets` source, the synthetic corpus, any folder
of ``<genre>/<file>`` audio) produces a :class:`ClipSet`; :mod:`genreshift.data.tensors` turns a
ClipSet into mel shards. Keeping the readers this small is what lets one build routine serve them
all.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from genreshift.audio import READABLE_EXTENSIONS
from genreshift.errors import GenreshiftError

SPLITS = ("train", "valid", "test")
# Fractions for a random split. GTZAN's fault-filtered split is about 48/21/31; a random split of
# a clean corpus can afford a larger training share.
RANDOM_FRACTIONS = (0.70, 0.15, 0.15)
AUDIO_EXTENSIONS = READABLE_EXTENSIONS  # includes .au, how the GTZAN tarball ships its clips
_SPLIT_ALIASES = {"train": "train", "training": "train", "valid": "valid", "val": "valid",
                  "validation": "valid", "dev": "valid", "test": "test", "testing": "test",
                  "eval": "test"}


@dataclass(frozen=True)
class ClipRef:
    """One clip of a dataset: where its bytes come from, its genre and (once known) its split.

    Exactly one of ``path`` (a file on disk) and ``fetch`` (returns the encoded file's bytes, e.g.
    from a `datasets` row) is set. ``group`` ties clips that must share a split, such as every
    rendering of one tune in the synthetic corpus.
    """

    name: str  # unique in the set; a relative POSIX path such as "blues/blues.00000.wav"
    genre: str
    split: str | None = None
    path: Path | None = None
    fetch: Callable[[], bytes] | None = field(default=None, compare=False, repr=False)
    group: str | None = None


@dataclass
class ClipSet:
    """The clips of one dataset, ready to be turned into mel tensors."""

    kind: str  # "gtzan-folder", "gtzan-datasets", "synth", "folder"
    source: str  # what the user pointed at, for the manifest and messages
    clips: list[ClipRef]
    split_method: str  # "filtered", "metadata", "random"
    seed: int = 0
    excluded: list[str] = field(default_factory=list)  # found but in no split (filtered lists)

    @property
    def genres(self) -> list[str]:
        return sorted({c.genre for c in self.clips})


def is_hidden(name: str) -> bool:
    """Hidden files and macOS AppleDouble companions (``._blues.00000.wav``) are never data."""
    return name.startswith(".")


def audio_files(folder: Path) -> list[Path]:
    """Readable audio files directly in ``folder`` (not hidden, known extension), sorted."""
    return sorted(
        p for p in folder.iterdir()
        if not is_hidden(p.name) and p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file()
    )


def genre_folders(root: Path) -> list[Path]:
    """Visible sub-folders of ``root``, sorted: the genre folders of a folder dataset."""
    return sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden(p.name))


def normalise_split(value: str, where: str) -> str:
    """Map the usual spellings of a split name to train / valid / test."""
    key = value.strip().lower()
    if key not in _SPLIT_ALIASES:
        raise GenreshiftError(
            f"{where}: unknown split '{value}'; use train, valid (or val/validation) or test"
        )
    return _SPLIT_ALIASES[key]


def _split_sizes(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    """(train, valid, test) sizes for n items; valid and test get one item each once n >= 3."""
    n_valid = round(n * fractions[1])
    n_test = round(n * fractions[2])
    if n >= 3:
        n_valid, n_test = max(1, n_valid), max(1, n_test)
    elif n == 2:
        n_valid, n_test = 0, 1
    else:
        n_valid, n_test = 0, 0
    return n - n_valid - n_test, n_valid, n_test


def assign_random_split(
    clips: Iterable[ClipRef], seed: int, fractions: Sequence[float] = RANDOM_FRACTIONS,
) -> list[ClipRef]:
    """Give every clip a split at random, reproducibly for a given ``seed``.

    Clips with a ``group`` are split by group (all clips of a group land in one split, so no
    tune leaks from train into test); the groups are shuffled as one pool because a tune is
    rendered in every genre. Clips without a group are split per genre (stratified), so every
    genre keeps the same proportions in every split. The result does not depend on the order of
    ``clips``: items are sorted before shuffling.
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise GenreshiftError(f"the split seed must be a non-negative integer, not {seed!r}")
    clips = list(clips)
    rng = np.random.default_rng(seed)
    assignment: dict[str, str] = {}
    grouped = [c for c in clips if c.group is not None]
    if grouped:
        groups = sorted({c.group for c in grouped})  # type: ignore[type-var]
        order = rng.permutation(len(groups))
        n_train, n_valid, _ = _split_sizes(len(groups), fractions)
        for rank, idx in enumerate(order):
            split = "train" if rank < n_train else "valid" if rank < n_train + n_valid else "test"
            assignment[f"group:{groups[idx]}"] = split
    by_genre: dict[str, list[str]] = defaultdict(list)
    for c in clips:
        if c.group is None:
            by_genre[c.genre].append(c.name)
    for genre in sorted(by_genre):
        names = sorted(by_genre[genre])
        order = rng.permutation(len(names))
        n_train, n_valid, _ = _split_sizes(len(names), fractions)
        for rank, idx in enumerate(order):
            split = "train" if rank < n_train else "valid" if rank < n_train + n_valid else "test"
            assignment[f"clip:{names[idx]}"] = split
    return [
        replace(c, split=assignment[f"group:{c.group}" if c.group is not None
                                    else f"clip:{c.name}"])
        for c in clips
    ]


def relative_name(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` as a POSIX string (manifest entries are portable)."""
    return Path(os.path.relpath(path, root)).as_posix()
