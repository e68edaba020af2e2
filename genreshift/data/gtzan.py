"""GTZAN (Tzanetakis & Cook, 2002): 1000 30-second clips, 10 genres, from a folder or `datasets`.

Sources, in the order they are recognised:

- a local folder in any common layout: the folder holding the genre folders itself,
  ``genres/<genre>/<genre>.000NN.wav`` (the tarball, ``.wav`` or the original ``.au``),
  ``Data/genres_original/<genre>/...`` (Kaggle), or any of these up to three levels down;
- a directory written by ``datasets.Dataset.save_to_disk`` (or a DatasetDict's);
- parquet files: one ``.parquet`` file, a glob such as ``data/*.parquet``, or a folder of them;
- a Hugging Face hub id such as ``marsyas/gtzan`` (needs the hub; fails clearly when offline).

With `datasets` the audio column is cast to ``Audio(decode=False)`` and the encoded bytes are
decoded with soundfile here: `datasets` >= 4 decodes audio through torchcodec, which genreshift
does not depend on.

Splits: by default the fault-filtered, artist-conditional split of Kereliuk et al. (2015) after
Sturm (443 train / 197 valid / 290 test), whose file lists come from
``torchaudio.datasets.gtzan``; clips in none of the lists (the 70 left out for faults and
repetitions) are excluded and counted. ``split="random"`` gives a seeded, stratified random split
instead.
"""

from __future__ import annotations

import contextlib
import functools
import glob as globlib
import re
import socket
from collections import deque
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from genreshift.data.clips import (
    ClipRef,
    ClipSet,
    assign_random_split,
    audio_files,
    genre_folders,
    is_hidden,
    relative_name,
)
from genreshift.errors import GenreshiftError

# GTZAN's genres, in its label order (the dataset's ClassLabel and torchaudio's list).
GTZAN_GENRES: tuple[str, ...] = ("blues", "classical", "country", "disco", "hiphop", "jazz",
                                 "metal", "pop", "reggae", "rock")


@functools.lru_cache(maxsize=1)
def filtered_split() -> dict[str, str]:
    """clip id -> split of the fault-filtered lists. They ship with torchaudio, which only
    this split needs: the `gtzan` extra (pip install 'genreshift[gtzan]') installs it, so a
    CPU-only install of genreshift itself does not depend on torchaudio's CUDA-linked wheel."""
    try:
        from torchaudio.datasets.gtzan import filtered_test, filtered_train, filtered_valid
    except (ImportError, OSError) as e:
        raise GenreshiftError(
            "GTZAN's fault-filtered split lists come from torchaudio, which could not be "
            f"imported ({str(e).splitlines()[0] if str(e) else type(e).__name__}); install "
            "it with pip install 'genreshift[gtzan]', or pass --split random") from None
    return {**{clip: "train" for clip in filtered_train},
            **{clip: "valid" for clip in filtered_valid},
            **{clip: "test" for clip in filtered_test}}

SPLIT_METHODS = ("filtered", "random")
# "blues.00000" or "blues.00000.wav": GTZAN's clip id is the name without its extension.
_CLIP_ID = re.compile(r"^(?P<id>(?P<genre>[a-z]+)\.\d{5})(?:\.[A-Za-z0-9]+)?$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_SEARCH_DEPTH = 3  # the layouts above put the genre folders at most this deep
_SEARCH_MAX_DIRS = 5000  # a user pointing at their home folder gets an answer, not a long scan
_HUB_TIMEOUT_S = 5.0
_LABEL_COLUMNS = ("genre", "label", "labels", "genre_name", "class")
_LAYOUT_HINT = (
    "expected genre folders (blues, classical, ...) holding files like blues.00000.wav, "
    "directly or under genres/ or Data/genres_original/"
)
_LOCAL_COPY_HINT = (
    "point --source at a local copy instead: a GTZAN folder (the extracted genres.tar.gz, or "
    "Kaggle's Data/genres_original), a directory written by Dataset.save_to_disk(), or parquet "
    "files (a .parquet file, a glob like 'data/*.parquet', or a folder of them)"
)


def clip_id(name: str) -> str | None:
    """GTZAN's id of a file name ('blues.00000.wav' -> 'blues.00000'), None when not one."""
    m = _CLIP_ID.match(name.rsplit("/", 1)[-1])
    return m.group("id") if m else None


def _gtzan_genre_folder(folder: Path) -> bool:
    """A folder named after a GTZAN genre holding at least one <genre>.NNNNN.* file."""
    if folder.name not in GTZAN_GENRES:
        return False
    prefix = folder.name + "."
    try:
        return any(
            not is_hidden(p.name) and p.name.startswith(prefix) and clip_id(p.name) is not None
            for p in folder.iterdir()
        )
    except OSError:
        return False


def _is_gtzan_root(folder: Path) -> bool:
    try:
        return any(_gtzan_genre_folder(g) for g in genre_folders(folder))
    except OSError:
        return False


def find_gtzan_root(path: str | Path) -> Path | None:
    """The folder that directly holds GTZAN's genre folders, searched breadth-first from ``path``
    up to three levels down; None when there is none. Two candidates at the same depth (two
    copies of GTZAN) are an error: the user must say which one."""
    path = Path(path)
    if not path.is_dir():
        return None
    queue: deque[tuple[Path, int]] = deque([(path, 0)])
    seen = 0
    while queue:
        depth = queue[0][1]
        level = []
        while queue and queue[0][1] == depth:
            level.append(queue.popleft()[0])
        found = [d for d in level if _is_gtzan_root(d)]
        if len(found) > 1:
            listed = ", ".join(str(d) for d in found)
            raise GenreshiftError(
                f"{path}: holds more than one GTZAN copy ({listed}); point --source at one of them"
            )
        if found:
            return found[0]
        if depth >= _SEARCH_DEPTH:
            break
        for d in level:
            try:
                children = genre_folders(d)
            except OSError:
                continue
            for child in children:
                seen += 1
                if seen > _SEARCH_MAX_DIRS:
                    return None
                queue.append((child, depth + 1))
    return None


def assign_filtered_split(clips: list[ClipRef]) -> tuple[list[ClipRef], list[str]]:
    """Give each clip its fault-filtered split; returns (kept clips, names of excluded clips)."""
    kept, excluded = [], []
    for c in clips:
        cid = clip_id(c.name)
        split = filtered_split().get(cid) if cid else None
        if split is None:
            excluded.append(c.name)
        else:
            kept.append(replace(c, split=split))
    if not kept:
        example = clips[0].name if clips else "(none)"
        raise GenreshiftError(
            f"none of the {len(clips)} clips is in GTZAN's fault-filtered split lists (file names "
            f"like blues.00000.wav are needed; the first is '{example}'); pass --split random to "
            "split them at random instead"
        )
    return kept, excluded


def _split(clips: list[ClipRef], split: str, seed: int) -> tuple[list[ClipRef], list[str]]:
    if split == "filtered":
        return assign_filtered_split(clips)
    if split == "random":
        return assign_random_split(clips, seed), []
    raise GenreshiftError(f"unknown split method '{split}'; choose one of "
                          f"{', '.join(SPLIT_METHODS)}")


# ---------------------------------------------------------------------------------------------
# local folder


def folder_clips(root: Path) -> list[ClipRef]:
    """Every audio file in the genre folders of a GTZAN root (genre = folder name)."""
    clips = []
    for folder in genre_folders(root):
        for path in audio_files(folder):
            clips.append(ClipRef(name=relative_name(path, root), genre=folder.name, path=path))
    return clips


def gtzan_folder(path: str | Path, *, split: str = "filtered", seed: int = 0) -> ClipSet:
    """The clips of a GTZAN folder in any common layout (see the module docstring)."""
    path = Path(path)
    root = find_gtzan_root(path)
    if root is None:
        if path.is_dir() and not any(not is_hidden(p.name) for p in path.iterdir()):
            raise GenreshiftError(f"{path}: folder is empty; {_LAYOUT_HINT}")
        raise GenreshiftError(f"{path}: no GTZAN clips found; {_LAYOUT_HINT}")
    clips, excluded = _split(folder_clips(root), split, seed)
    return ClipSet(kind="gtzan-folder", source=str(root.resolve()), clips=clips, split_method=split,
                   seed=seed, excluded=excluded)


# ---------------------------------------------------------------------------------------------
# Hugging Face datasets


def _hub_reachable(endpoint: str, timeout: float = _HUB_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the hub opens: `datasets` itself retries for half a minute
    before it gives up, which is no way to learn that a machine is offline."""
    url = urlparse(endpoint)
    host = url.hostname or "huggingface.co"
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def _quiet_datasets() -> Iterator[None]:
    """`datasets` draws no progress bars of its own meanwhile (ours is enough)."""
    import datasets

    was = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was:
            datasets.enable_progress_bars()


def _as_dataset(obj: Any, where: str) -> Any:
    """A Dataset from a Dataset or DatasetDict (all its splits; GTZAN gets its own split)."""
    import datasets

    if isinstance(obj, datasets.DatasetDict):
        parts = [obj[k] for k in sorted(obj)]
        if not parts:
            raise GenreshiftError(f"{where}: the dataset has no splits, so no clips")
        return parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    if isinstance(obj, datasets.Dataset):
        return obj
    raise GenreshiftError(f"{where}: not a map-style dataset ({type(obj).__name__})")


def _load_from_disk(path: Path) -> Any:
    import datasets

    try:
        with _quiet_datasets():
            return _as_dataset(datasets.load_from_disk(str(path)), str(path))
    except GenreshiftError:
        raise
    except Exception as e:  # noqa: BLE001 - datasets raises many types; all mean "unreadable"
        raise GenreshiftError(
            f"{path}: looks like a saved dataset but cannot be loaded ({type(e).__name__}: {e}); "
            "re-save it with Dataset.save_to_disk()"
        ) from None


def _load_parquet(files: list[str], where: str) -> Any:
    import datasets

    try:
        with _quiet_datasets():
            return _as_dataset(datasets.Dataset.from_parquet(files), where)
    except GenreshiftError:
        raise
    except Exception as e:  # noqa: BLE001
        raise GenreshiftError(
            f"{where}: cannot read the parquet file(s) ({type(e).__name__}: {e}); check that they "
            "are complete parquet files of one dataset"
        ) from None


def _load_hub(hub_id: str) -> Any:
    import datasets

    endpoint = datasets.config.HF_ENDPOINT
    offline = bool(datasets.config.HF_HUB_OFFLINE)
    if not offline and not _hub_reachable(endpoint):
        raise GenreshiftError(
            f"'{hub_id}' is not a local file or folder, so it was taken as a Hugging Face hub id, "
            f"but the hub ({endpoint}) cannot be reached from this machine; {_LOCAL_COPY_HINT}"
        )
    try:
        with _quiet_datasets():
            return _as_dataset(datasets.load_dataset(hub_id), hub_id)
    except GenreshiftError:
        raise
    except Exception as e:  # noqa: BLE001
        why = "HF_HUB_OFFLINE is set and no cached copy exists" if offline \
            else f"{type(e).__name__}: {e}"
        raise GenreshiftError(
            f"could not load '{hub_id}' from the Hugging Face hub ({why}); {_LOCAL_COPY_HINT}"
        ) from None


def _audio_column(ds: Any, where: str) -> str:
    import datasets

    for name, feature in ds.features.items():
        if isinstance(feature, datasets.Audio):
            return name
    if "audio" in ds.features:
        return "audio"
    raise GenreshiftError(
        f"{where}: no audio column (columns: {', '.join(ds.column_names)}); expected an Audio "
        "feature or a column 'audio' of {{bytes, path}}"
    )


def _label_names(ds: Any, audio_col: str) -> list[str | None]:
    """Each row's genre from a label column, when the dataset has one that names genres."""
    import datasets

    for name, feature in ds.features.items():
        if isinstance(feature, datasets.ClassLabel):
            return [feature.int2str(int(v)) if v is not None and v >= 0 else None
                    for v in ds[name]]
    for name in _LABEL_COLUMNS:
        if name in ds.features and name != audio_col:
            feature = ds.features[name]
            dtype = getattr(feature, "dtype", "")
            if dtype in ("string", "large_string"):
                return [str(v) if v is not None else None for v in ds[name]]
            if dtype.startswith("int"):
                # No names stored: GTZAN's own label order, which the hub copies follow
                # (alphabetical, blues = 0 ... rock = 9). Used only when the file name is silent.
                return [GTZAN_GENRES[int(v)] if v is not None and 0 <= int(v) < 10 else None
                        for v in ds[name]]
    return [None] * len(ds)


def datasets_clips(ds: Any, where: str) -> list[ClipRef]:
    """ClipRefs for the rows of a `datasets` Dataset; the bytes are fetched only when needed."""
    import datasets
    import pyarrow.compute as pc

    audio_col = _audio_column(ds, where)
    try:
        ds = ds.cast_column(audio_col, datasets.Audio(decode=False))
    except Exception as e:  # noqa: BLE001
        raise GenreshiftError(
            f"{where}: column '{audio_col}' does not hold audio files ({type(e).__name__}: {e})"
        ) from None
    # Paths straight from Arrow: reading them through rows would read every clip's bytes.
    paths = pc.struct_field(ds.with_format("arrow")[audio_col], "path").to_pylist()
    files = ds["file"] if "file" in ds.features and ds.features["file"].dtype == "string" \
        else [None] * len(ds)
    labels = _label_names(ds, audio_col)
    audio_only = ds.select_columns([audio_col])

    def fetcher(i: int, path: str | None):
        def fetch() -> bytes:
            value = audio_only[i][audio_col]
            if value.get("bytes") is not None:
                return value["bytes"]
            if path and Path(path).is_file():
                return Path(path).read_bytes()
            raise GenreshiftError(
                f"{where}: row {i} ({path or 'no path'}) holds no audio bytes and its file is not "
                "on this machine; save the dataset with the audio embedded"
            )
        return fetch

    clips, used = [], set()
    for i in range(len(ds)):
        path = paths[i] or files[i]
        base = Path(path).name if path else None
        cid = clip_id(base) if base else None
        genre = labels[i]
        if genre is None and cid is not None:
            genre = cid.split(".", 1)[0]
        if genre is None:
            raise GenreshiftError(
                f"{where}: cannot tell the genre of row {i} ({base or 'no file name'}): no genre "
                "label column and no GTZAN file name like blues.00000.wav"
            )
        stem = base or f"row{i:05d}.wav"
        name = f"{genre}/{stem}"
        if name in used:  # two rows with one file name: keep both, apart
            name = f"{genre}/row{i:05d}-{stem}"
        used.add(name)
        clips.append(ClipRef(name=name, genre=genre, fetch=fetcher(i, path)))
    return clips


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file()
    )


def _parquet_files(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.rglob("*.parquet")
                  if not any(is_hidden(part) for part in p.relative_to(folder).parts))


def gtzan_clips(source: str | Path, *, split: str = "filtered", seed: int = 0) -> ClipSet:
    """The clips of GTZAN from any supported source (see the module docstring), split.

    Raises GenreshiftError with what to do for a missing source, an unknown layout, an offline
    hub, or a dataset without audio or genre labels.
    """
    if split not in SPLIT_METHODS:
        raise GenreshiftError(
            f"unknown split method '{split}'; choose one of {', '.join(SPLIT_METHODS)}"
        )
    text = str(source)
    path = Path(text).expanduser()
    if any(ch in text for ch in "*?["):
        files = sorted(globlib.glob(str(path), recursive=True))
        files = [f for f in files if f.endswith(".parquet")]
        if not files:
            raise GenreshiftError(f"{text}: the pattern matches no .parquet files")
        return _from_datasets(_load_parquet(files, text), text, "gtzan-datasets", split, seed)
    if path.is_file():
        if path.suffix.lower() != ".parquet":
            raise GenreshiftError(
                f"{path}: is a file; give a GTZAN folder, a saved dataset folder, or parquet files"
            )
        return _from_datasets(_load_parquet([str(path)], text), text, "gtzan-datasets", split,
                              seed)
    if path.is_dir():
        if _is_saved_dataset(path):
            return _from_datasets(_load_from_disk(path), text, "gtzan-datasets", split, seed)
        if find_gtzan_root(path) is None:
            parquet = _parquet_files(path)
            if parquet:
                return _from_datasets(_load_parquet(parquet, text), text, "gtzan-datasets", split,
                                      seed)
        return gtzan_folder(path, split=split, seed=seed)
    if path.exists():
        raise GenreshiftError(f"{path}: not a regular file or folder")
    if _HUB_ID.match(text) and not text.startswith((".", "~")):
        return _from_datasets(_load_hub(text), text, "gtzan-hub", split, seed)
    raise GenreshiftError(f"{text}: no such file or folder; check the path")


def _from_datasets(ds: Any, where: str, kind: str, split: str, seed: int) -> ClipSet:
    clips = datasets_clips(ds, where)
    if not clips:
        raise GenreshiftError(f"{where}: the dataset has no rows, so no clips")
    clips, excluded = _split(clips, split, seed)
    return ClipSet(kind=kind, source=where, clips=clips, split_method=split, seed=seed,
                   excluded=excluded)
