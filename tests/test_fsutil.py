"""genreshift.fsutil: whole files or nothing, with the permissions open() would give."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest

from genreshift.errors import GenreshiftError
from genreshift.fsutil import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    check_writable,
    file_mode,
)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    file_mode.cache_clear()  # the mode is read once per process
    yield
    os.umask(old)
    file_mode.cache_clear()


def test_written_file_has_the_usual_permissions(tmp_path: Path, umask_022) -> None:
    atomic_write_text(tmp_path / "a.json", "{}")
    atomic_write_bytes(tmp_path / "b.bin", b"\0\1", durable=True)
    for name, content in (("a.json", b"{}"), ("b.bin", b"\0\1")):
        path = tmp_path / name
        assert path.read_bytes() == content
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half of the new")
        raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_disk_full_names_the_file_and_leaves_the_old_one(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "manifest.json"
    path.write_text("old")
    real = os.write

    def write(fd, data):  # the disk fills up: write(2) to any file fails with ENOSPC
        if fd > 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd, data)

    monkeypatch.setattr(os, "write", write)
    for writer, data in ((atomic_write_text, "new"), (atomic_write_bytes, b"new")):
        with pytest.raises(GenreshiftError) as e:
            writer(path, data)
        assert str(e.value).startswith(f"{path}: cannot write it (no space left on device)")
        assert e.value.kind == "output"
        assert path.read_text() == "old"
        assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_permission_denied_on_creation(tmp_path: Path, monkeypatch) -> None:
    real = os.open

    def refuse(name, *a, **k):  # the folder takes no new files
        if str(name).startswith(str(tmp_path)):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(name))
        return real(name, *a, **k)

    monkeypatch.setattr(os, "open", refuse)
    with pytest.raises(GenreshiftError, match=r"report\.json: cannot write it \(permission "
                                              r"denied\); files cannot be created in"):
        atomic_write_text(tmp_path / "report.json", "{}")
    with pytest.raises(GenreshiftError, match=r"\(permission denied\)"):
        check_writable(tmp_path / "report.json")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_other_errors_in_the_block_pass_unchanged(tmp_path: Path) -> None:
    # a missing input read while writing is the input's problem, not the output's
    with pytest.raises(FileNotFoundError), atomic_path(tmp_path / "out.bin") as tmp:
        tmp.write_bytes((tmp_path / "no-such-input").read_bytes())
    with pytest.raises(GenreshiftError, match="folder .*nowhere does not exist"):
        atomic_write_text(tmp_path / "nowhere" / "x.txt", "x")
    assert list(tmp_path.iterdir()) == []


def test_check_writable(tmp_path: Path) -> None:
    check_writable(tmp_path / "out.wav")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(GenreshiftError, match="does not exist"):
        check_writable(tmp_path / "missing" / "out.wav")
    (tmp_path / "f").write_text("")
    with pytest.raises(GenreshiftError, match="is a file, not a folder"):
        check_writable(tmp_path / "f" / "out.wav")
    with pytest.raises(GenreshiftError, match="part of .* is a file"):
        check_writable(tmp_path / "f" / "sub" / "out.wav")
