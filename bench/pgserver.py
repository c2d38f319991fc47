"""A throwaway PostgreSQL server from Debian's packages: a temp dir, a Unix socket, no TCP.
Used by the integration tests (tests/integration/conftest.py) and the collector ingest benchmark."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator


def server_bin() -> Path | None:
    """Debian's newest /usr/lib/postgresql/<version>/bin, else the directory of ``pg_ctl`` on PATH
    (other distributions, source builds), provided ``initdb`` sits beside it; None if neither."""
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    return next((d for d in candidates if (d / "pg_ctl").exists() and (d / "initdb").exists()), None)


PG_BIN = server_bin()
PORT = 5499


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a private cluster; yields its URL (database ``postgres``); removes it on exit."""
    if PG_BIN is None:
        raise FileNotFoundError("PostgreSQL server binaries missing (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="cgsentry-pg-"))
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"]),
                   check=True, capture_output=True)
    subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"), "-o",
                                 f"-k {sock} -c listen_addresses='' -p {PORT}", "start"]), check=True,
                   capture_output=True)
    try:
        yield f"postgresql://postgres@/postgres?host={sock}&port={PORT}"
    finally:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"]),
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def create_database(url: str, name: str) -> str:
    """A fresh database on the server at ``url``; returns its URL."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.replace("/postgres?", f"/{name}?", 1)
