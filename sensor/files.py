"""Atomic file replacement: the one way the project persists a whole file.

A reader (or a restart after a crash, even a power loss) sees the old file or the new one, never a
mix or an empty file: the bytes go to a temp file in the same directory, are flushed and fsync'd,
the temp file is renamed over the target, and the directory is fsync'd so the rename itself is on
disk. The temp file is this call's own (a unique name, created exclusively), so two writers of one
file at once (a CLI and the sensor) cannot interleave: the last rename wins whole.
"""

from __future__ import annotations

import errno
import os
import secrets
from contextlib import suppress
from pathlib import Path

# Linux returns these for fsync on a directory of a file system that cannot sync one; the rename
# is then as durable as that file system makes it, and refusing the write would help no one.
_DIR_FSYNC_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOTSUP})


def atomic_write(path: Path, data: bytes, mode: int = 0o666) -> None:
    """Replace ``path`` with ``data``: temp file in the same directory, write, fsync, rename,
    fsync the directory. The new file gets ``mode`` less the process umask (as ``open(path, "w")``
    does, so the default keeps the permissions a plain write had). The directory must exist.

    On any failure (including KeyboardInterrupt) the temp file is removed, ``path`` is left as it
    was, and the error propagates (OSError for I/O: the caller names the file and the remedy)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(directory: Path) -> None:
    """Make the renames and creations in ``directory`` durable (see the module docstring)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in _DIR_FSYNC_UNSUPPORTED:
            raise
    finally:
        os.close(fd)
