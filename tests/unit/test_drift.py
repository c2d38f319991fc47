"""Drift: a program that is not part of the image is flagged at exec, wherever it lies, without
learning (issue 21 item 1). procfs, the container root and its overlay upper dir are tmp_path trees."""

from __future__ import annotations

import os
from pathlib import Path

from rules.engine import RuleEngine, default_rule_files
from rules.fields import FIELDS
from rules.loader import load_files
from sensor.events import EXE_DELETED, EXE_FROM_MEMFD, EXE_UPPER_LAYER, Event
from sensor.procfacts import ProcFacts, root_upperdir

MOUNTINFO = ("120 69 0:50 / / rw,relatime master:3 - overlay overlay rw,lowerdir=/l/A:/l/B,upperdir={upper},"
             "workdir=/w\n121 120 0:53 / /proc rw,nosuid - proc proc rw\n")


def container(tmp_path: Path) -> tuple[Path, Path, Path]:
    """procfs with pids 10-13 in one container whose root is ``root`` and upper layer ``upper``."""
    root, upper, procfs = tmp_path / "root", tmp_path / "upper", tmp_path / "proc"
    for d in (root / "bin", root / "var" / "www", upper / "var" / "www", upper / "bin"):
        d.mkdir(parents=True)
    for pid in (10, 11, 12, 13):
        (procfs / str(pid)).mkdir(parents=True)
        (procfs / str(pid) / "mountinfo").write_text(MOUNTINFO.format(upper=upper))
        os.symlink(root, procfs / str(pid) / "root")
    return root, upper, procfs


def exec_ev(pid: int, exe: str) -> Event:
    return Event("exec", 1, pid=pid, comm=exe.rsplit("/", 1)[-1][:15], exe=exe, args=(exe,), cgroup_id=77,
                 container_id="d" * 64, runtime="docker", image="web:1", image_id="sha256:web")


def test_root_upperdir_reads_the_overlay_at_slash() -> None:
    assert root_upperdir(MOUNTINFO.format(upper="/var/lib/docker/overlay2/x/diff")) == "/var/lib/docker/overlay2/x/diff"
    assert root_upperdir("1 0 8:1 / / rw - ext4 /dev/sda1 rw\n") == ""


def test_an_executable_written_after_start_is_drift_wherever_it_lies(tmp_path: Path) -> None:
    root, upper, procfs = container(tmp_path)
    (upper / "var" / "www" / "shell.cgi").write_bytes(b"#!/bin/sh")  # dropped in the web root
    (upper / "bin" / "ls").write_bytes(b"\x7fELF evil")  # copied over /bin/ls
    os.symlink("/memfd:x (deleted)", procfs / "12" / "exe")
    os.symlink("/var/www/gone (deleted)", procfs / "13" / "exe")
    facts = ProcFacts(procfs)
    web = facts.exec_event(exec_ev(10, "/var/www/shell.cgi"), "sha256:web", True)
    over = facts.exec_event(exec_ev(11, "/bin/ls"), "sha256:web", True)
    assert web.flags & EXE_UPPER_LAYER and over.flags & EXE_UPPER_LAYER
    assert facts.exec_event(exec_ev(12, "/dev/fd/3"), "sha256:web", True).flags & EXE_FROM_MEMFD
    assert facts.exec_event(exec_ev(13, "/var/www/gone"), "sha256:web", True).flags & EXE_DELETED
    hits = {f.rule for f in RuleEngine(load_files(default_rule_files())).handle(web)}
    assert "Drift Executable Not Part of Image" in hits
    assert FIELDS["proc.is_exe_upper_layer"].get(over)
    assert FIELDS["proc.is_exe_from_memfd"].get(facts.exec_event(exec_ev(12, "/dev/fd/3"), "sha256:web", True))


def test_a_link_left_by_a_later_exec_of_the_same_pid_is_not_this_execs(tmp_path: Path) -> None:
    """sh -c '/x/fileless ...': the shell's pid execs the helper, which fexecve's a memfd, before the
    sensor reads the shell's exec: /proc/PID/exe then names the memfd, which is the later exec's
    (that one has its own event, named /dev/fd/N), not the shell's."""
    root, upper, procfs = container(tmp_path)
    os.symlink("/memfd:depth (deleted)", procfs / "12" / "exe")
    os.symlink("/srv/payload (deleted)", procfs / "13" / "exe")
    facts = ProcFacts(procfs)
    for pid in (12, 13):
        assert not facts.exec_event(exec_ev(pid, "/bin/sh"), "sha256:web", True).flags & (EXE_FROM_MEMFD | EXE_DELETED)
    assert facts.exec_event(exec_ev(12, "/dev/fd/3"), "sha256:web", True).flags & EXE_FROM_MEMFD
    assert facts.exec_event(exec_ev(13, "/dev/fd/4"), "sha256:web", True).flags & EXE_DELETED
    assert facts.exec_event(exec_ev(13, "/srv/payload"), "sha256:web", True).flags & EXE_DELETED


def test_the_images_own_programs_are_not_drift(tmp_path: Path) -> None:
    root, upper, procfs = container(tmp_path)
    (root / "bin" / "sh").write_bytes(b"\x7fELF sh")  # the image's (lower layer, seen through root)
    (root / "bin" / "rm").write_bytes(b"\x7fELF rm")
    facts = ProcFacts(procfs)
    for pid, exe in ((10, "/bin/sh"), (11, "/bin/rm")):
        ev = facts.exec_event(exec_ev(pid, exe), "sha256:web", True)
        assert not ev.flags & (EXE_UPPER_LAYER | EXE_FROM_MEMFD | EXE_DELETED), exe
        assert not {f.rule for f in RuleEngine(load_files(default_rule_files())).handle(ev)} & {
            "Drift Executable Not Part of Image"}
    assert facts.stats()["exec_drift"] == 0
