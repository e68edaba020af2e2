"""Writing files so that a reader never sees half of one.

Every output of genreshift (audio, mel shards, manifests, reports, plots, corpus files) is
written to a temporary file next to its destination and renamed over it only when complete:
an interrupted or failed write leaves the old file (or none) and no temporary behind. The
result gets the permissions a plain ``open()`` would give (``mkstemp`` makes 0600 files).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path


@lru_cache(maxsize=1)
def file_mode() -> int:
    """rw for everyone the umask allows: what ``open(path, "w")`` gives a new file. Read once
    per process: reading the umask means setting it, for the whole process, so doing it per
    file could race with another thread (the web app's workers) creating files meanwhile."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def fsync_path(path: Path) -> None:
    """Flush a file's (or, where the platform allows, a folder's) data to disk."""
    with contextlib.suppress(OSError):  # not every platform/filesystem can open a directory
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder to write; when the block ends without an
    exception it replaces ``path``, otherwise it is deleted. ``durable``: also fsync the file
    and its folder (for files whose loss after a crash would cost a rebuild)."""
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, file_mode())
        if durable:
            fsync_path(tmp)
        os.replace(tmp, path)
        if durable:
            fsync_path(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes, *, durable: bool = False) -> None:
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str, *, durable: bool = False) -> None:
    with atomic_path(path, durable=durable) as tmp:
        tmp.write_text(text, encoding="utf-8")
