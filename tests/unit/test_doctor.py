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


def test_runtime_sockets_found_missing_and_not_a_runtime(tmp_path: Path) -> None:
    """Each socket the operator gave is listed: missing ones with the fix, one that is not a CRI
    runtime (here a plain unix socket that never speaks HTTP/2) with what went wrong; never fatal."""
    import socket as sk

    from sensor.runtimes import Socket

    listening = sk.socket(sk.AF_UNIX, sk.SOCK_STREAM)
    listening.bind(str(tmp_path / "mute.sock"))
    listening.listen(1)
    try:
        checks = doctor._runtime_sockets([Socket("cri", "containerd", str(tmp_path / "gone.sock")),
                                          Socket("cri", "crio", str(tmp_path / "mute.sock"))])
    finally:
        listening.close()
    by_detail = {c.detail.split(":")[0].split(" ")[0]: c for c in checks}
    gone = by_detail[str(tmp_path / "gone.sock")]
    assert not gone.ok and not gone.required and "missing" in gone.detail and "--cri-socket" in gone.fix
    mute = by_detail[str(tmp_path / "mute.sock")]
    assert not mute.ok and not mute.required and mute.fix.startswith("start crio")
    assert doctor.can_run(checks)  # runtimes are never required
