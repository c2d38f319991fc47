"""Integration fixtures: a throwaway PostgreSQL server from Debian's packages (in a temp dir, on a
Unix socket only), and a live collector on port 0 with a token per role."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from bench.pgserver import throwaway_postgres
from collector.auth import AuthConfig, TokenStore
from collector.server import create_server
from collector.store import SqlStore
from tests.prereqs import missing, postgres_missing


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    reason = postgres_missing()
    if reason is not None:
        missing("postgres", reason)  # a failure under CGSENTRY_REQUIRE_KERNEL=1, like the marker
    with throwaway_postgres() as url:
        yield url


@pytest.fixture
def live(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], SqlStore]]:
    """A collector on 127.0.0.1:0 with a token per role: (address, {role: token}, its store)."""
    tokens = TokenStore(tmp_path / "tokens")
    toks = {r: tokens.add(r, r) for r in ("viewer", "responder", "admin", "sensor")}
    store = SqlStore.open(str(tmp_path / "c.db"))
    server, port = create_server("127.0.0.1:0", store, AuthConfig(tokens))
    yield f"127.0.0.1:{port}", toks, store
    server.stop(0)
