"""Under CGSENTRY_REQUIRE_KERNEL=1 every missing prerequisite fails the test instead of skipping it,
including the PostgreSQL fixture's own check (which once could skip while the marker's passed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import bench.pgserver
import tests.prereqs as prereqs


def test_a_missing_prerequisite_skips_on_a_laptop_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prereqs, "REQUIRE", False)
    with pytest.raises(pytest.skip.Exception, match="postgres: no server"):
        prereqs.missing("postgres", "no server")
    monkeypatch.setattr(prereqs, "REQUIRE", True)
    with pytest.raises(pytest.fail.Exception, match="required by CGSENTRY_REQUIRE_KERNEL=1 but: no server"):
        prereqs.missing("postgres", "no server")


def test_the_postgres_check_is_the_servers_own_lookup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(bench.pgserver, "PG_BIN", None)
    assert "PostgreSQL server binaries" in (prereqs.postgres_missing() or "")
    monkeypatch.setattr(bench.pgserver, "PG_BIN", tmp_path)
    assert prereqs.postgres_missing() is None


def test_pg_ctl_on_path_is_used_when_initdb_is_beside_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(Path, "glob", lambda self, pattern: iter(()))
    for name in ("pg_ctl", "initdb"):
        (tmp_path / name).write_text("")
    monkeypatch.setattr(shutil, "which", lambda name: str(tmp_path / name))
    assert bench.pgserver.server_bin() == tmp_path
    (tmp_path / "initdb").unlink()  # a pg_ctl wrapper alone cannot start a throwaway cluster
    assert bench.pgserver.server_bin() is None
