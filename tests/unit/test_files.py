"""sensor/files.py: the one atomic write (temp file, fsync, rename, fsync of the directory)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sensor.files import atomic_write


def test_replaces_the_content_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "state.json"
    target.write_bytes(b"old, and longer than the new content")
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == ["state.json"]
    atomic_write(tmp_path / "fresh", b"")  # creates a missing file, empty content included
    assert (tmp_path / "fresh").read_bytes() == b""


def test_a_failed_rename_keeps_the_old_file_and_removes_the_temp_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "x.model"
    target.write_bytes(b"old")

    def refuse(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["x.model"]


def test_an_interrupt_while_writing_removes_the_temp_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(tmp_path / "x", b"data")
    assert os.listdir(tmp_path) == []


def test_the_file_then_its_directory_are_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[tuple[bool, int]] = []  # (is a directory, inode) per fsync, in order
    real_fsync = os.fsync

    def record(fd: int) -> None:
        st = os.fstat(fd)
        synced.append((stat.S_ISDIR(st.st_mode), st.st_ino))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", record)
    atomic_write(tmp_path / "f", b"data")
    assert synced == [(False, (tmp_path / "f").stat().st_ino), (True, tmp_path.stat().st_ino)]


def test_a_directory_that_cannot_be_fsynced_is_not_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_fsync = os.fsync

    def no_dir_sync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(22, "Invalid argument")  # EINVAL: some file systems cannot sync a directory
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", no_dir_sync)
    atomic_write(tmp_path / "f", b"data")
    assert (tmp_path / "f").read_bytes() == b"data"


def test_permissions_are_the_mode_less_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        atomic_write(tmp_path / "default", b"x")
        atomic_write(tmp_path / "private", b"x", mode=0o600)
        (tmp_path / "replaced").write_bytes(b"old")
        (tmp_path / "replaced").chmod(0o666)
        atomic_write(tmp_path / "replaced", b"new", mode=0o640)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "default").stat().st_mode) == 0o644  # as open(path, "w") gives
    assert stat.S_IMODE((tmp_path / "private").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "replaced").stat().st_mode) == 0o640


def test_a_missing_directory_is_an_oserror_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "missing" / "f", b"x")
    assert os.listdir(tmp_path) == []
