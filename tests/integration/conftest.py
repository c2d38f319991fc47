"""A throwaway PostgreSQL server from Debian's packages, in a temp dir, on a Unix socket only."""

from __future__ import annotations

from typing import Iterator

import pytest

from bench.pgserver import throwaway_postgres
from tests.prereqs import missing, postgres_missing


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    reason = postgres_missing()
    if reason is not None:
        missing("postgres", reason)  # a failure under CGSENTRY_REQUIRE_KERNEL=1, like the marker
    with throwaway_postgres() as url:
        yield url
