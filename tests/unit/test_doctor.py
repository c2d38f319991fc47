"""doctor's tracefs check as a non-root user sees it: tracefs is root-only, and an unreadable
mount must be reported as such, not as a PermissionError traceback or as 'not mounted'."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensor import bpf_loader, doctor


def test_an_unreadable_tracefs_is_reported_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mounted = tmp_path / "tracing"
    (mounted / "events").mkdir(parents=True)
    monkeypatch.setattr(bpf_loader, "TRACEFS_ROOTS", (mounted,))
    assert doctor._tracefs().ok  # noqa: SLF001

    real_stat = Path.stat

    def denied(self: Path, *args: object, **kw: object) -> object:
        if str(self).startswith(str(mounted)):
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "stat", denied)
    check = doctor._tracefs()  # noqa: SLF001
    assert not check.ok and "mounted but not readable" in check.detail and "root" in check.fix
    assert not bpf_loader.has_tracepoint("sched", "sched_process_exec")
    monkeypatch.setattr(bpf_loader, "TRACEFS_ROOTS", (tmp_path / "absent",))
    assert doctor._tracefs().detail == "not mounted"  # noqa: SLF001
