"""A throwaway PostgreSQL server from Debian's packages, in a temp dir, on a Unix socket only."""

from __future__ import annotations

from typing import Iterator

import pytest

from bench.pgserver import PG_BIN, throwaway_postgres


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if PG_BIN is None:
        pytest.skip("PostgreSQL server binaries missing")
    with throwaway_postgres() as url:
        yield url
