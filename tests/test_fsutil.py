"""genreshift.fsutil: whole files or nothing, with the permissions open() would give."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from genreshift.fsutil import atomic_path, atomic_write_bytes, atomic_write_text, file_mode


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
