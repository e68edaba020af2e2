"""Writing files so that a reader never sees half of one.

Every output of genreshift (audio, mel shards, manifests, reports, plots, corpus files) is
written to a temporary file next to its destination and renamed over it only when complete:
an interrupted or failed write leaves the old file (or none) and no temporary behind. The
result gets the permissions a plain ``open()`` would give (``mkstemp`` makes 0600 files).

A write that fails for a reason of the filesystem's (no space left, permission denied, a
read-only disk) raises a GenreshiftError of kind "output" naming the destination and the cause,
instead of an OSError that the CLI would show as a traceback.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

from genreshift.errors import GenreshiftError

# An OSError with no file name is blamed on the file being written only when it is one of
# these: what write(2), close(2) and fsync(2) report when the filesystem refuses the data.
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO, errno.EROFS, errno.EACCES,
                errno.EPERM}


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


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """``os.write`` until all of ``data`` is written: the one OS-level write under fsutil's
    writers and :func:`genreshift.audio.save_audio`, so that its errors keep their errno."""
    view = memoryview(data).cast("B")
    while view:
        n = os.write(fd, view)
        if n <= 0:  # a regular file never does this; do not spin if something else does
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        view = view[n:]


def write_error(path: Path, e: OSError) -> GenreshiftError:
    """The error to raise when writing ``path`` failed with ``e``: the path, the cause in the
    OS's words, and what to do."""
    folder = path.parent
    if e.errno == errno.ENOENT and not folder.is_dir():
        return GenreshiftError(f"{path}: cannot write it: folder {folder} does not exist; "
                               "create it first", kind="output")
    cause = (e.strerror or str(e)).lower()  # e.g. "no space left on device"
    if e.errno == errno.ENOENT:  # the folder is there: its filesystem (/proc) makes no files
        advice = f"files cannot be created in {folder}; choose another folder"
    elif e.errno == errno.ENOTDIR:
        advice = f"{folder} is not a folder; choose another output path"
    elif e.errno == errno.ENOSPC:
        advice = f"the disk holding {folder} is full; free some space or write to another disk"
    elif e.errno == errno.EDQUOT:
        advice = "the disk quota is used up; free some space or write to another disk"
    elif e.errno == errno.EFBIG:
        advice = ("the file is larger than the filesystem (or a limit set on this process) "
                  "allows; write it to another disk")
    elif e.errno in (errno.EACCES, errno.EPERM):
        advice = (f"files cannot be created in {folder}; choose a folder you can write to, "
                  "or change its permissions")
    elif e.errno == errno.EROFS:
        advice = f"{folder} is on a read-only filesystem; choose another folder"
    else:
        advice = "check the disk and try again"
    return GenreshiftError(f"{path}: cannot write it ({cause}); {advice}", kind="output")


def _about(e: BaseException, *paths: Path) -> bool:
    """Whether an error raised while ``paths`` were written is the filesystem refusing them
    (not, say, an input file that another part of the block failed to read)."""
    if not isinstance(e, OSError):
        return False
    names = {str(p) for p in paths}
    if e.filename is None:
        return e.errno in WRITE_ERRNOS
    return str(e.filename) in names


def check_writable(path: str | Path) -> None:
    """Fail now, rather than after the work, if ``path`` cannot be written: its folder must
    exist, be a folder and take a new file. This creates, writes one byte to and removes a
    temporary file there: ``os.access`` says yes to everything for root and knows nothing of
    read-only mounts or full disks."""
    path = Path(path)
    folder = path.parent
    try:
        mode = folder.stat().st_mode
    except FileNotFoundError:
        raise GenreshiftError(f"{path}: folder {folder} does not exist; create it first "
                              f"(mkdir -p {folder}) or choose another output path",
                              kind="output") from None
    except NotADirectoryError:
        raise GenreshiftError(f"{path}: part of {folder} is a file, not a folder; choose "
                              "another output path", kind="output") from None
    except OSError as e:
        raise write_error(path, e) from None
    if not stat.S_ISDIR(mode):
        raise GenreshiftError(f"{path}: {folder} is a file, not a folder; choose another "
                              "output path", kind="output")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
    except OSError as e:
        raise write_error(path, e) from None
    try:
        write_all(fd, b"\0")
    except OSError as e:
        raise write_error(path, e) from None
    finally:
        os.close(fd)
        Path(name).unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path, *, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path in ``path``'s folder to write; when the block ends without an
    exception it replaces ``path``, otherwise it is deleted. ``durable``: also fsync the file
    and its folder (for files whose loss after a crash would cost a rebuild).

    The filesystem refusing the data (no space, permission denied, ...), in the block or
    here, raises :func:`write_error`'s GenreshiftError; other exceptions pass unchanged."""
    path = Path(path)
    try:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise write_error(path, e) from None
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
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if _about(e, tmp, path):
            raise write_error(path, e) from None
        raise


def _write_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes, *, durable: bool = False) -> None:
    with atomic_path(path, durable=durable) as tmp:
        _write_file(tmp, data)


def atomic_write_text(path: str | Path, text: str, *, durable: bool = False) -> None:
    with atomic_path(path, durable=durable) as tmp:
        _write_file(tmp, text.encode("utf-8"))
