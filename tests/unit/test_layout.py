"""The Python mirror of cgsentry.h: sizes and offsets pinned (the kernel tier checks BCC agrees)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sensor import layout as L

HEADER = Path(__file__).resolve().parents[2] / "sensor" / "bpf" / "cgsentry.h"


def test_record_sizes_match_c_layout_table() -> None:
    names = {L.OP_EXEC: "exec_rec", L.OP_FORK: "fork_rec", L.OP_EXIT: "exit_rec",
             L.OP_CONNECT: "net_rec", L.OP_SYSCALL: "syscall_rec", L.OP_OPEN: "open_rec",
             L.OP_SYS: "sys_rec"}
    for op, name in names.items():
        assert L.RECORD_SIZES[op] == L.C_LAYOUT[name][0], name
    assert L.HDR.size == 64


def test_constants_agree_with_header_text() -> None:
    text = HEADER.read_text()
    defines = dict(re.findall(r"#define (\w+) (\d+)", text))
    for name in ("ARGS_MAX", "ARGS_SIZE", "PATH_LEN", "UNIX_PATH_LEN", "PREFIX_MAX", "PREFIX_LEN", "PROFILE_SLOTS",
                 "CG_HOST", "CG_PROFILE", "CG_URGENT", "F_KILLED", "F_ARGS_TRUNC", "F_ARGS_FAULT",
                 "PM_WRITE", "PM_MEM"):
        assert int(defines[name]) == getattr(L, name), name
    ops = dict(re.findall(r"(OP_\w+) = (\d+)", text))
    for name, value in ops.items():
        assert getattr(L, name) == int(value), name


def test_net_offsets() -> None:
    # ret(8) fd(4) family(2) proto(2) sport(2) dport(2) pad(4) saddr(16) daddr(16) unix(64)
    offs = L.C_LAYOUT["net_rec"][1]
    assert offs["saddr"] == 64 + 24 and offs["unix_path"] == 64 + 56
    assert L.NET.size == 8 + 4 + 2 * 4 + 4 + 16 + 16 + L.UNIX_PATH_LEN


def test_wakeup_options_are_validated_and_compiled_in() -> None:
    from sensor.bpf_loader import ProbeOptions, cflags
    from sensor.errors import SensorError

    assert "-DWAKE_BATCH=8" in cflags(ProbeOptions(wake_batch=8))
    for bad in ({"wake_batch": 0}, {"poll_ms": 0}, {"poll_ms": 5000}):
        with pytest.raises(SensorError) as err:
            ProbeOptions(**bad)  # type: ignore[arg-type]
        assert err.value.exit_code == 64


def test_prefix_masks_fold_shorter_prefixes_into_longer_ones() -> None:
    """The kernel trie returns only the longest stored prefix, so its value must carry the modes
    of every stored prefix of it."""
    from sensor.bpf_loader import prefix_masks

    any_, write, mem = 1 << L.PM_ANY, 1 << L.PM_WRITE, 1 << L.PM_MEM
    masks = prefix_masks([("/etc/", L.PM_WRITE), ("/etc/shadow", L.PM_ANY), ("/proc/", L.PM_MEM),
                          ("/etc/", L.PM_WRITE), ("/" + "x" * 40, L.PM_ANY)])
    assert masks[b"/etc/"] == write
    assert masks[b"/etc/shadow"] == any_ | write
    assert masks[b"/proc/"] == mem
    assert masks[b"/" + b"x" * (L.PREFIX_LEN - 2)] == any_  # truncated to fit the key
    assert len(masks) == 4
