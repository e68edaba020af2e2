"""Audio datasets -> log-mel shards + ``manifest.json``: what training reads.

Layout of a mel directory::

    manifest.json                    the commit point; nothing else is trusted without it
    shards/<split>/<genre>-<id>.npy  float16 [n_mels, total_frames]: the clips of one genre and
                                     split, concatenated along time (np.load(mmap_mode="r"))
    .work/                           per-clip mels of a build in progress (removed when it ends)

``manifest.json`` holds the format version, the MelConfig, the dataset it came from and how it
was split, per clip (source file, genre, split, duration, frames, sha1 of the source bytes, shard
and frame offset), per shard (genre, split, shape) and per-mel-bin mean/std over the train split.

Why it is built this way:

- **Resumable and crash-safe.** Every clip's mel goes to ``.work/<config>/<sha1>.npy`` (written
  to a temporary name, then renamed), so an interrupted build keeps every clip it finished. Shards
  are written the same way under names that hash their contents, and the manifest is replaced
  last, atomically: a reader sees either the old complete set or the new one, never a half-written
  shard. Rebuilding into a finished directory reuses the clips whose checksums it already holds.
- **Parallel.** Decoding and the STFT run in a process pool, one torch thread per process (torch's
  own intra-op threads would only fight over the same cores).
- **Memory-light.** Bytes are read in the workers, at most two clips per worker are in flight, and
  shards are filled through a memory map, so RAM use does not grow with the dataset.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import multiprocessing
import os
import re
import shutil
import signal
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

import genreshift
from genreshift.audio import READABLE_EXTENSIONS, load_audio, load_audio_bytes
from genreshift.data import gtzan
from genreshift.data.clips import (
    SPLITS,
    ClipRef,
    ClipSet,
    assign_random_split,
    audio_files,
    genre_folders,
    is_hidden,
    normalise_split,
    relative_name,
)
from genreshift.errors import AudioError, GenreshiftError
from genreshift.fsutil import atomic_path, atomic_write_text
from genreshift.spectral import MelConfig, wav_to_mel

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST_KIND = "genreshift-mel"
MANIFEST = "manifest.json"
SHARD_DIR = "shards"
WORK_DIR = ".work"
LOCK_FILE = ".lock"
SHARD_DTYPE = np.float16  # 0.03 dB steps over the 120 dB range: far below audibility
SPLIT_CHOICES = ("auto", "filtered", "metadata", "random")
METADATA = "metadata.csv"
DEFAULT_MEL_CONFIG = MelConfig()  # frozen, so one shared default is safe
_IN_FLIGHT_PER_WORKER = 2  # enough to keep a worker busy, small enough to bound memory


# ---------------------------------------------------------------------------------------------
# reading a folder dataset


def folder_clipset(source: str | os.PathLike, *, split: str = "auto", seed: int = 0) -> ClipSet:
    """The clips of a folder dataset, each with a genre and a split.

    Recognised, in this order: the synthetic corpus (``metadata.csv`` with ``file_name`` and
    ``genre`` columns; its ``split`` column is used, or its ``tune`` column keeps all renderings
    of a tune in one split), GTZAN in any of its layouts (fault-filtered split), and any folder of
    ``<genre>/<file>.wav|flac|...`` (stratified random split). ``split`` is "auto" (the above),
    or forces "random" / "filtered" (GTZAN only) / "metadata" (synthetic corpus only).
    """
    if split not in SPLIT_CHOICES:
        raise GenreshiftError(f"unknown split '{split}'; choose one of {', '.join(SPLIT_CHOICES)}")
    root = Path(source).expanduser()
    if not root.exists():
        raise GenreshiftError(f"{root}: no such folder; check the path")
    if not root.is_dir():
        raise GenreshiftError(f"{root}: is a file; give the folder that holds the genre folders")
    if (root / METADATA).is_file():
        if split == "filtered":
            raise GenreshiftError(f"{root}: the filtered split exists only for GTZAN; this folder "
                                  f"has a {METADATA} (a synthetic corpus): use --split auto")
        return synth_clipset(root, split=split, seed=seed)
    gtzan_root = gtzan.find_gtzan_root(root)
    if gtzan_root is not None:
        if split == "metadata":
            raise GenreshiftError(f"{root}: --split metadata needs a {METADATA}; this is GTZAN")
        return gtzan.gtzan_folder(gtzan_root, split="random" if split == "random" else "filtered",
                                  seed=seed)
    if split in ("filtered", "metadata"):
        raise GenreshiftError(
            f"{root}: --split {split} needs "
            + ("GTZAN's file names" if split == "filtered" else f"a {METADATA}")
            + "; use --split random for this folder"
        )
    return generic_clipset(root, seed=seed)


def generic_clipset(root: Path, *, seed: int = 0) -> ClipSet:
    """``<root>/<genre>/*.<audio>``, split at random per genre."""
    visible = [p for p in root.iterdir() if not is_hidden(p.name)]
    if not visible:
        raise GenreshiftError(
            f"{root}: folder is empty; it should hold one folder of audio files per genre"
        )
    clips = []
    for folder in genre_folders(root):
        for path in audio_files(folder):
            clips.append(ClipRef(name=relative_name(path, root), genre=folder.name, path=path))
    if not clips:
        loose = [p for p in visible if p.is_file() and p.suffix.lower() in
                 READABLE_EXTENSIONS]
        where = (f"audio files lie directly in {root}; move them into one folder per genre "
                 f"({root}/<genre>/...)") if loose else (
            f"no audio files ({', '.join(sorted(READABLE_EXTENSIONS))}) in its genre folders")
        raise GenreshiftError(f"{root}: no clips found: {where}")
    return ClipSet(kind="folder", source=str(root.resolve()),
                   clips=assign_random_split(clips, seed),
                   split_method="random", seed=seed)


def synth_clipset(root: Path, *, split: str = "auto", seed: int = 0) -> ClipSet:
    """The synthetic corpus, from its ``metadata.csv`` (one row per rendering)."""
    meta = root / METADATA
    try:
        with open(meta, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise GenreshiftError(f"{meta}: cannot be read ({e}); re-render the corpus") from None
    missing = [c for c in ("file_name", "genre") if c not in columns]
    if missing:
        raise GenreshiftError(
            f"{meta}: no column(s) {', '.join(missing)} (has: {', '.join(columns) or 'none'}); "
            "it is not a genreshift corpus index"
        )
    if not rows:
        raise GenreshiftError(f"{meta}: lists no clips; re-render the corpus")
    use_column = "split" in columns and split in ("auto", "metadata")
    if split == "metadata" and "split" not in columns:
        raise GenreshiftError(f"{meta}: has no 'split' column; use --split auto or random")
    clips, tune_split, seen = [], {}, {}
    for line, row in enumerate(rows, start=2):
        rel = (row.get("file_name") or "").strip()
        genre = (row.get("genre") or "").strip()
        if not rel or not genre:
            raise GenreshiftError(f"{meta}, line {line}: empty file_name or genre")
        path = root / rel
        if not path.is_file():
            raise GenreshiftError(
                f"{meta}, line {line}: lists {rel}, which does not exist; re-render the corpus "
                "or remove the line"
            )
        if rel in seen:
            raise GenreshiftError(f"{meta}, line {line}: lists {rel} a second time (first on "
                                  f"line {seen[rel]}); remove the duplicate")
        seen[rel] = line
        tune = (row.get("tune") or "").strip() or None
        clip_split = None
        if use_column:
            clip_split = normalise_split(row.get("split") or "", f"{meta}, line {line}")
            if tune is not None:
                # Every rendering of a tune must share a split, or genre conversion is tested on
                # tunes it was trained on.
                first = tune_split.setdefault(tune, clip_split)
                if first != clip_split:
                    raise GenreshiftError(
                        f"{meta}, line {line}: tune '{tune}' is in both {first} and {clip_split}; "
                        "all renderings of a tune must share a split"
                    )
        clips.append(ClipRef(name=Path(rel).as_posix(), genre=genre, split=clip_split, path=path,
                             group=tune))
    method = "metadata"
    if not use_column:
        clips, method = assign_random_split(clips, seed), "random"
    return ClipSet(kind="synth", source=str(root.resolve()), clips=clips, split_method=method,
                   seed=seed)


# ---------------------------------------------------------------------------------------------
# per-clip work, in the worker processes


@dataclass(frozen=True)
class _Task:
    name: str
    path: str | None  # read and hashed by the worker, or
    data: bytes | None  # encoded bytes fetched in the parent (a `datasets` row)


class _ClipWorker:
    """Turns one clip into ``<workdir>/<sha1>.npy`` (float16 [n_mels, frames]) + ``.json``."""

    def __init__(self, cfg: MelConfig, workdir: Path, known: frozenset[str]):
        self.cfg = cfg
        self.workdir = workdir
        self.known = known  # checksums already in the finished shards: nothing to compute

    def __call__(self, task: _Task) -> dict[str, Any]:
        if task.data is not None:
            data = task.data
        else:
            data = _read_bytes(Path(task.path))
        checksum = hashlib.sha1(data).hexdigest()
        result = {"name": task.name, "checksum": checksum}
        if checksum in self.known:
            return {**result, "status": "reused"}
        meta_path = self.workdir / f"{checksum}.json"
        if meta_path.is_file() and (self.workdir / f"{checksum}.npy").is_file():
            try:
                meta = json.loads(meta_path.read_text())
                return {**result, "status": "resumed", "frames": int(meta["frames"]),
                        "duration": float(meta["duration"])}
            except (OSError, ValueError, KeyError):
                pass  # a damaged record: compute the clip again
        try:
            if task.path is not None and Path(task.path).suffix.lower() in READABLE_EXTENSIONS:
                audio, sr = load_audio(task.path, sr=self.cfg.sample_rate, mono=True)
            else:
                audio, sr = load_audio_bytes(data, task.path or task.name,
                                             sr=self.cfg.sample_rate, mono=True)
        except AudioError as e:
            return {**result, "status": "skipped", "reason": str(e)}
        with torch.inference_mode():
            mel = wav_to_mel(torch.from_numpy(audio[0]), self.cfg).numpy()
        mel16 = mel.astype(SHARD_DTYPE)
        duration = audio.shape[1] / sr
        _atomic_save_npy(self.workdir / f"{checksum}.npy", mel16)
        atomic_write_text(meta_path, json.dumps(
            {"name": task.name, "frames": int(mel16.shape[1]), "duration": duration}))
        return {**result, "status": "decoded", "frames": int(mel16.shape[1]),
                "duration": duration}


_worker: _ClipWorker | None = None


def _init_worker(cfg: dict, workdir: str, known: frozenset[str]) -> None:
    global _worker
    # Ctrl-C is the parent's to handle: it cancels the queue and lets the running clips finish,
    # instead of every worker printing its own traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(1)
    _worker = _ClipWorker(MelConfig.from_dict(cfg), Path(workdir), known)


def _run_task(task: _Task) -> dict[str, Any]:
    assert _worker is not None, "worker not initialised"
    return _worker(task)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except PermissionError:
        raise GenreshiftError(
            f"{path}: permission denied; make the dataset readable (chmod -R +r)"
        ) from None
    except FileNotFoundError:
        raise GenreshiftError(
            f"{path}: disappeared while the build was running; rerun it (finished clips are kept)"
        ) from None
    except OSError as e:
        raise GenreshiftError(f"{path}: cannot be read ({e.strerror or e})") from None


# ---------------------------------------------------------------------------------------------
# atomic files


def _atomic_save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.save(f, array)


@contextlib.contextmanager
def _locked(out: Path) -> Iterator[None]:
    """One build per mel directory at a time (advisory lock, released if the process dies)."""
    try:
        import fcntl
    except ImportError:  # Windows: no fcntl; builds there simply are not guarded
        yield
        return
    with open(out / LOCK_FILE, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GenreshiftError(
                f"{out}: another build is writing to this folder; wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------------
# the manifest


_CLIP_KEYS = ("source", "genre", "split", "duration", "frames", "checksum", "shard", "offset")
_MANIFEST_KEYS = ("format_version", "kind", "mel_config", "genres", "clips", "shards", "stats")


def load_manifest(meldir: str | os.PathLike, *, check_shards: bool = True) -> dict[str, Any]:
    """Read and validate ``<meldir>/manifest.json``.

    Raises GenreshiftError, saying what to do, for a missing folder or manifest, unreadable or
    malformed JSON, a manifest written by a newer genreshift, and (with ``check_shards``) a shard
    that is missing or does not have the shape the manifest records.
    """
    meldir = Path(meldir).expanduser()
    build_hint = f"build it with: genreshift data tensors --source DATASET --out {meldir}"
    if not meldir.is_dir():
        what = "is a file, not a mel folder" if meldir.exists() else "no such folder"
        raise GenreshiftError(f"{meldir}: {what}; {build_hint}")
    path = meldir / MANIFEST
    if not path.is_file():
        why = ("a build was interrupted; rerun the same command to finish it"
               if (meldir / WORK_DIR).is_dir() else build_hint)
        raise GenreshiftError(f"{meldir}: no {MANIFEST} here; {why}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise GenreshiftError(f"{path}: is corrupt or unreadable ({e}); rebuild: {build_hint}")\
            from None
    if not isinstance(manifest, dict) or manifest.get("kind") != MANIFEST_KIND:
        raise GenreshiftError(f"{path}: is not a genreshift mel manifest; {build_hint}")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise GenreshiftError(f"{path}: has no valid format_version; rebuild: {build_hint}")
    if version > FORMAT_VERSION:
        raise GenreshiftError(
            f"{path}: was written by a newer genreshift (format {version}; this one reads up to "
            f"{FORMAT_VERSION}); upgrade genreshift"
        )
    missing = [k for k in _MANIFEST_KEYS if k not in manifest]
    if missing:
        raise GenreshiftError(f"{path}: lacks {', '.join(missing)}; rebuild: {build_hint}")
    try:
        MelConfig.from_dict(manifest["mel_config"])
    except TypeError as e:
        raise GenreshiftError(f"{path}: bad mel_config ({e}); rebuild: {build_hint}") from None
    shards = manifest["shards"]
    for i, clip in enumerate(manifest["clips"]):
        if not isinstance(clip, dict) or any(k not in clip for k in _CLIP_KEYS):
            raise GenreshiftError(f"{path}: clip entry {i} is incomplete; rebuild: {build_hint}")
        if clip["shard"] not in shards:
            raise GenreshiftError(f"{path}: clip {clip['source']} names an unlisted shard; "
                                  f"rebuild: {build_hint}")
    if check_shards:
        for rel, info in shards.items():
            try:
                arr = np.load(meldir / rel, mmap_mode="r")
                ok = list(arr.shape) == list(info["shape"])
            except (OSError, ValueError):
                ok = False
            if not ok:
                raise GenreshiftError(
                    f"{meldir / rel}: shard missing or damaged; rerun genreshift data tensors "
                    "with the same --source and --out to rebuild it"
                )
    return manifest


# ---------------------------------------------------------------------------------------------
# the build


def config_id(cfg: MelConfig) -> str:
    """A short hash of everything that decides the values in a shard."""
    key = json.dumps({"mel": cfg.to_dict(), "dtype": np.dtype(SHARD_DTYPE).name,
                      "format": FORMAT_VERSION}, sort_keys=True)
    return hashlib.sha1(key.encode()).hexdigest()[:12]


def default_workers() -> int:
    """The cores this process may run on (the affinity mask, not the machine's total)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _safe_name(genre: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", genre) or "_"


def _previous_build(out: Path, cfg: MelConfig) -> dict[str, dict]:
    """Clips of a finished build in ``out`` by checksum, for reuse; checks it is compatible."""
    if not (out / MANIFEST).exists():
        return {}
    manifest = load_manifest(out, check_shards=False)
    old = MelConfig.from_dict(manifest["mel_config"])
    if old != cfg:
        diff = ", ".join(f"{k} {v} there, {getattr(cfg, k)} asked"
                         for k, v in old.to_dict().items() if getattr(cfg, k) != v)
        raise GenreshiftError(
            f"{out}: holds mel tensors made with other settings ({diff}); choose another output "
            "folder or delete this one"
        )
    reuse: dict[str, dict] = {}
    shapes: dict[str, tuple[int, ...] | None] = {}
    for clip in manifest["clips"]:
        shard = clip["shard"]
        if shard not in shapes:
            try:
                shapes[shard] = np.load(out / shard, mmap_mode="r").shape
            except (OSError, ValueError):
                shapes[shard] = None  # missing or damaged: those clips are decoded again
        shape = shapes[shard]
        if shape is not None and clip["offset"] + clip["frames"] <= shape[1]:
            reuse[clip["checksum"].removeprefix("sha1:")] = clip
    return reuse


def build_tensors(
    source: str | os.PathLike | ClipSet,
    out: str | os.PathLike,
    *,
    mel_config: MelConfig = DEFAULT_MEL_CONFIG,
    workers: int | None = None,
    split: str = "auto",
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Turn a dataset into mel shards + ``manifest.json`` in ``out``; return a summary.

    ``source`` is a folder (see :func:`folder_clipset`; ``split`` and ``seed`` choose how it is
    split) or a ready :class:`ClipSet` (e.g. from :func:`genreshift.data.gtzan.gtzan_clips`,
    already split). Clips that cannot be decoded are skipped with a warning and listed in the
    summary; any other problem raises GenreshiftError. Rerunning after an interruption, or on a
    finished directory, computes only the clips it does not hold yet (by sha1 of the source).

    Summary keys: out, manifest, dataset, source, split_method, genres, clips (in the manifest),
    decoded, reused, skipped (list of {name, reason}), excluded (count), splits
    ({split: {clips, frames, hours}}), workers, seconds.
    """
    start = time.perf_counter()
    clipset = source if isinstance(source, ClipSet) else folder_clipset(source, split=split,
                                                                         seed=seed)
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise GenreshiftError(f"{out}: is a file; give a folder for the mel tensors")
    src = Path(clipset.source)
    if src.exists() and out.resolve() == src.resolve():
        raise GenreshiftError(f"{out}: is the dataset folder itself; give another output folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise GenreshiftError(f"{out}: cannot create the folder ({e.strerror or e})") from None
    if not os.access(out, os.W_OK):
        raise GenreshiftError(f"{out}: not writable; choose another output folder")
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise GenreshiftError(f"--workers must be at least 1, got {workers}")

    with _locked(out):
        reuse = _previous_build(out, mel_config)
        workdir = out / WORK_DIR / config_id(mel_config)
        workdir.mkdir(parents=True, exist_ok=True)
        results = _compute_clips(clipset, mel_config, workdir, frozenset(reuse), workers, progress)
        manifest, summary = _pack(clipset, results, reuse, out, workdir, mel_config, progress)
        atomic_write_text(out / MANIFEST, dump_manifest(manifest), durable=True)
        _remove_stale(out, manifest)

    summary.update(out=str(out), manifest=str(out / MANIFEST), workers=workers,
                   seconds=round(time.perf_counter() - start, 2))
    return summary


def _pool_context() -> multiprocessing.context.BaseContext:
    """How worker processes start. Not plain fork: forking a process that runs threads (tqdm's
    monitor, Arrow's pools under `datasets`, whatever the caller runs) can deadlock the child.
    A fork server is a clean single-threaded process that imports torch once; its children start
    in milliseconds. Where there is none (Windows), spawn."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])  # effective only before the server first starts
        return ctx
    return multiprocessing.get_context("spawn")


def _tasks(clips: list[ClipRef]) -> Iterator[_Task]:
    for c in clips:
        if c.fetch is not None:
            yield _Task(c.name, None, c.fetch())
        else:
            yield _Task(c.name, str(c.path), None)


def _compute_clips(
    clipset: ClipSet, cfg: MelConfig, workdir: Path, known: frozenset[str], workers: int,
    progress: bool,
) -> dict[str, dict]:
    """Run every clip through a _ClipWorker (in a process pool when workers > 1)."""
    clips = sorted(clipset.clips, key=lambda c: c.name)
    workers = min(workers, len(clips))
    results: dict[str, dict] = {}
    bar = tqdm(total=len(clips), unit="clip", desc="mel", disable=not progress, dynamic_ncols=True)
    skipped = 0

    def record(r: dict) -> None:
        nonlocal skipped
        results[r["name"]] = r
        if r["status"] == "skipped":
            log.warning("skipping a clip that cannot be decoded: %s", r["reason"])
            skipped += 1
            bar.set_postfix(skipped=skipped, refresh=False)
        bar.update(1)

    with logging_redirect_tqdm(), bar:
        if workers == 1:
            worker = _ClipWorker(cfg, workdir, known)
            for task in _tasks(clips):
                record(worker(task))
            return results
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(),
                                   initializer=_init_worker,
                                   initargs=(cfg.to_dict(), str(workdir), known))
        pending: set[Future] = set()
        tasks = _tasks(clips)
        try:
            exhausted = False
            while True:
                while not exhausted and len(pending) < workers * _IN_FLIGHT_PER_WORKER:
                    task = next(tasks, None)
                    if task is None:
                        exhausted = True
                    else:
                        pending.add(pool.submit(_run_task, task))
                if not pending:
                    break
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    record(fut.result())
        except BaseException:
            # Finished clips are already on disk; drop the queue, let running clips end.
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    return results


def _pack(
    clipset: ClipSet, results: dict[str, dict], reuse: dict[str, dict], out: Path, workdir: Path,
    cfg: MelConfig, progress: bool,
) -> tuple[dict, dict]:
    """Write one shard per (genre, split) and return (manifest, summary)."""
    skipped = [{"name": r["name"], "reason": r["reason"]} for r in results.values()
               if r["status"] == "skipped"]
    kept = [c for c in sorted(clipset.clips, key=lambda c: c.name)
            if results[c.name]["status"] != "skipped"]
    if not kept:
        first = skipped[0]["reason"] if skipped else "no clips"
        raise GenreshiftError(f"{clipset.source}: no clip could be decoded (first: {first})")

    groups: dict[tuple[str, str], list[ClipRef]] = defaultdict(list)
    for c in kept:
        groups[(c.split, c.genre)].append(c)  # type: ignore[index]
    n_mels = cfg.n_mels
    total = np.zeros((2, n_mels))  # sum, sum of squares over the frames of the stats split
    stats_frames = 0
    stats_split = "train" if any(c.split == "train" for c in kept) else "all"
    clip_entries: list[dict] = []
    shard_entries: dict[str, dict] = {}
    open_old: dict[str, np.ndarray] = {}
    cid = config_id(cfg)

    def clip_mel(checksum: str) -> np.ndarray:
        """float16 [n_mels, frames] of a clip, from this build's work dir or the old shards."""
        if checksum in reuse:
            old = reuse[checksum]
            shard = old["shard"]
            if shard not in open_old:
                open_old[shard] = np.load(out / shard, mmap_mode="r")
            return open_old[shard][:, old["offset"]:old["offset"] + old["frames"]]
        return np.load(workdir / f"{checksum}.npy")

    bar = tqdm(total=len(groups), unit="shard", desc="pack", disable=not progress,
               dynamic_ncols=True)
    with bar:
        for (split, genre) in sorted(groups, key=lambda k: (SPLITS.index(k[0]), k[1])):
            members = groups[(split, genre)]
            info = []
            for c in members:
                r = results[c.name]
                frames = int(r["frames"]) if "frames" in r else int(reuse[r["checksum"]]["frames"])
                duration = float(r["duration"]) if "duration" in r else \
                    float(reuse[r["checksum"]]["duration"])
                info.append((c, r["checksum"], frames, duration))
            digest = hashlib.sha1(
                ("\n".join([cid] + [f"{c.name} {s}" for c, s, _, _ in info])).encode()
            ).hexdigest()[:16]
            rel = f"{SHARD_DIR}/{split}/{_safe_name(genre)}-{digest}.npy"
            path = out / rel
            n_frames = sum(f for _, _, f, _ in info)
            shape = (n_mels, n_frames)
            # Content-addressed: the same clips under the same settings give the same file.
            fresh = not _shard_ok(path, shape)
            if fresh:
                path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(path, durable=True) as tmp:
                    dest = np.lib.format.open_memmap(tmp, mode="w+", dtype=SHARD_DTYPE,
                                                     shape=shape)
                    offset = 0
                    for _, checksum, frames, _ in info:
                        mel = clip_mel(checksum)
                        if mel.shape != (n_mels, frames):
                            raise GenreshiftError(
                                f"{workdir}: the stored mel of a clip has shape {mel.shape}, "
                                f"expected {(n_mels, frames)}; delete {out / WORK_DIR} and rerun"
                            )
                        dest[:, offset:offset + frames] = mel
                        offset += frames
                    dest.flush()
                    del dest
            offset = 0
            shard = np.load(path, mmap_mode="r") if split == stats_split or \
                stats_split == "all" else None
            for c, checksum, frames, duration in info:
                entry = {"source": c.name, "genre": genre, "split": split,
                         "duration": round(duration, 4), "frames": frames,
                         "checksum": f"sha1:{checksum}", "shard": rel, "offset": offset}
                if c.group is not None:
                    entry["group"] = c.group
                clip_entries.append(entry)
                if shard is not None:
                    block = np.asarray(shard[:, offset:offset + frames], dtype=np.float64)
                    total[0] += block.sum(axis=1)
                    total[1] += np.square(block).sum(axis=1)
                    stats_frames += frames
                offset += frames
            del shard
            shard_entries[rel] = {"genre": genre, "split": split, "clips": len(info),
                                  "shape": list(shape), "dtype": np.dtype(SHARD_DTYPE).name}
            bar.update(1)
    open_old.clear()

    mean = total[0] / max(1, stats_frames)
    std = np.sqrt(np.maximum(total[1] / max(1, stats_frames) - mean**2, 0.0))
    splits = {}
    for s in SPLITS:
        entries = [e for e in clip_entries if e["split"] == s]
        splits[s] = {"clips": len(entries), "frames": sum(e["frames"] for e in entries),
                     "hours": round(sum(e["duration"] for e in entries) / 3600.0, 4)}
    genres = sorted({c.genre for c in kept})
    manifest = {
        "format_version": FORMAT_VERSION,
        "kind": MANIFEST_KIND,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "genreshift_version": genreshift.__version__,
        "dataset": {"kind": clipset.kind, "source": clipset.source,
                    "split_method": clipset.split_method, "seed": clipset.seed,
                    "skipped": skipped, "excluded": len(clipset.excluded)},
        "mel_config": cfg.to_dict(),
        "sample_rate": cfg.sample_rate,
        "layout": "n_mels x frames",
        "dtype": np.dtype(SHARD_DTYPE).name,
        "genres": genres,
        "splits": splits,
        "stats": {"split": stats_split, "frames": stats_frames,
                  "mean": [round(float(v), 6) for v in mean],
                  "std": [round(float(v), 6) for v in std]},
        "shards": shard_entries,
        "clips": clip_entries,
    }
    statuses = [r["status"] for r in results.values()]
    summary = {
        "dataset": clipset.kind,
        "source": clipset.source,
        "split_method": clipset.split_method,
        "genres": genres,
        "clips": len(clip_entries),
        "decoded": statuses.count("decoded"),
        "reused": statuses.count("reused") + statuses.count("resumed"),
        "skipped": skipped,
        "excluded": len(clipset.excluded),
        "splits": splits,
    }
    return manifest, summary


def dump_manifest(manifest: dict[str, Any]) -> str:
    """JSON with one line per clip and per shard: readable, diffable, still plain JSON."""
    parts = []
    for key, value in manifest.items():
        if key == "clips":
            body = ",\n".join(f"  {json.dumps(c)}" for c in value)
            text = f"[\n{body}\n ]" if value else "[]"
        elif key == "shards":
            body = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items())
            text = f"{{\n{body}\n }}" if value else "{}"
        else:
            text = json.dumps(value)
        parts.append(f" {json.dumps(key)}: {text}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def _shard_ok(path: Path, shape: tuple[int, int]) -> bool:
    try:
        arr = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return arr.shape == shape and arr.dtype == SHARD_DTYPE


def _remove_stale(out: Path, manifest: dict) -> None:
    """After the manifest is committed: drop shards it does not name, and the work dir."""
    keep = {(out / rel).resolve() for rel in manifest["shards"]}
    shard_root = out / SHARD_DIR
    if shard_root.is_dir():
        for p in shard_root.rglob("*"):
            if p.is_file() and (p.suffix in (".npy", ".tmp")) and p.resolve() not in keep:
                p.unlink(missing_ok=True)
        for d in sorted((p for p in shard_root.rglob("*") if p.is_dir()), reverse=True):
            with contextlib.suppress(OSError):
                d.rmdir()  # only succeeds when empty
    shutil.rmtree(out / WORK_DIR, ignore_errors=True)


def format_summary(summary: dict[str, Any]) -> str:
    """A few human lines for the CLI."""
    splits = ", ".join(f"{s} {v['clips']} ({v['hours'] * 60:.1f} min)"
                       for s, v in summary["splits"].items())
    n_genres = len(summary["genres"])
    lines = [
        (f"mel tensors in {summary['out']}: {summary['clips']} clips of {n_genres} "
         f"genre{'s' if n_genres != 1 else ''} ({', '.join(summary['genres'])})"),
        f"  split ({summary['split_method']}): {splits}",
        (f"  decoded {summary['decoded']}, reused {summary['reused']}, "
         f"skipped {len(summary['skipped'])} (cannot be decoded), "
         f"excluded {summary['excluded']} (in no split list); "
         f"{summary['seconds']:.1f} s on {summary['workers']} worker(s)"),
    ]
    lines += [f"  skipped: {s['name']}" for s in summary["skipped"]]
    return "\n".join(lines)
