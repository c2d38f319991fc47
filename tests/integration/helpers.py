"""Shared helpers of the integration tier (imported by its test modules, never one test module
from another); the ``live`` collector fixture is in conftest.py."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.workloads import deviation, fleet
from collector.cli import main
from collector.store import SqlStore
from models.baseline import ModelConfig
from models.engine import ModelEngine
from sensor.events import Finding

FLEET_CFG = ModelConfig(min_learn_s=60, stable_s=30)


def finding(i: int, container: int = 0) -> Finding:
    ev = deviation("new_binary", 1_700_000_000_000_000_000 + i, i=container).pop()
    return Finding("new_process", "New Process", "WARNING", f"finding {i}", ev.replace(exe=f"/tmp/x{i}"),
                   time_ns=ev.time_ns)


def learned(containers: range, seconds: int = 200) -> ModelEngine:
    eng = ModelEngine(FLEET_CFG)
    for ev in fleet(max(containers) + 1, seconds):
        if int(ev.container_id[:2]) in containers:
            eng.handle(ev)
    return eng


def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of the ``cgsentry`` CLI in-process."""
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


_databases = itertools.count()


@contextlib.contextmanager
def backend_collector(request: Any, tmp_path: Path, tokens: dict[str, str],
                      prefix: str) -> Iterator[tuple[str, dict[str, str], SqlStore]]:
    """A live collector on SQLite or PostgreSQL (``request.param``), a token per ``tokens`` name
    (name -> role); yields (address, role -> token, store)."""
    from bench.pgserver import create_database
    from collector.auth import AuthConfig, TokenStore
    from collector.server import create_server

    url = str(tmp_path / "c.db") if request.param == "sqlite" else create_database(
        request.getfixturevalue("postgres_url"), f"{prefix}_{os.getpid()}_{next(_databases)}")
    store = SqlStore.open(url)
    token_store = TokenStore(tmp_path / "tokens")
    toks = {role: token_store.add(name, role) for name, role in tokens.items()}
    server, port = create_server("127.0.0.1:0", store, AuthConfig(token_store))
    try:
        yield f"127.0.0.1:{port}", toks, store
    finally:
        server.stop(0)
        store.close()
