"""Kernel tier: BCC's compile of sensor/bpf/cgsentry.h agrees with the Python mirror (sensor/layout.py).

tests/unit/test_layout.py pins the mirror against itself and the header's #defines; this test
asks the real compiler. Each struct is declared as the value type of an array map; BCC turns
the compiled type into a ctypes ``Leaf`` class, whose size and field offsets are what clang laid
out. Only compiling is needed (nothing is attached), so it takes about a second.
"""

from __future__ import annotations

import ctypes
from typing import Any

import pytest

from sensor import layout as L
from sensor.bpf_loader import BPF_DIR, ProbeOptions, cflags

pytestmark = pytest.mark.kernel

STRUCTS = tuple(L.C_LAYOUT)


@pytest.fixture(scope="module")
def leaves() -> dict[str, Any]:
    from bcc import BPF  # the kernel tier only; production code imports bcc in bpf_loader alone

    text = '#include "cgsentry.h"\n' + "".join(
        f"BPF_ARRAY(layout_{name}, struct {name}, 1);\n" for name in STRUCTS)
    flags = [f for f in cflags(ProbeOptions()) if f.startswith("-D") and "HAVE_" not in f]
    bpf = BPF(text=text, cflags=[f"-I{BPF_DIR}", *flags])
    try:
        yield {name: bpf[f"layout_{name}"].Leaf for name in STRUCTS}
    finally:
        bpf.cleanup()


@pytest.mark.parametrize("name", STRUCTS)
def test_compiled_size_and_offsets_match_mirror(leaves: dict[str, Any], name: str) -> None:
    size, offsets = L.C_LAYOUT[name]
    leaf = leaves[name]
    assert ctypes.sizeof(leaf) == size, name
    for field, want in offsets.items():
        if hasattr(leaf, field):
            got = getattr(leaf, field).offset
        else:  # header fields live in the nested `struct hdr h` of each record
            got = leaf.h.offset + getattr(leaves["hdr"], field).offset
        assert got == want, f"{name}.{field}"


def test_struct_formats_cover_whole_records(leaves: dict[str, Any]) -> None:
    """The decoder's struct.Struct sizes equal the compiled record sizes (no trailing bytes unread)."""
    pairs = {L.OP_EXEC: "exec_rec", L.OP_FORK: "fork_rec", L.OP_EXIT: "exit_rec",
             L.OP_CONNECT: "net_rec", L.OP_ACCEPT: "net_rec", L.OP_LISTEN: "net_rec",
             L.OP_SYSCALL: "syscall_rec", L.OP_OPEN: "open_rec", L.OP_SYS: "sys_rec"}
    assert set(pairs) == set(L.OP_NAMES)
    for op, name in pairs.items():
        assert L.RECORD_SIZES[op] == ctypes.sizeof(leaves[name]), L.OP_NAMES[op]
    assert ctypes.sizeof(leaves["watch"]) == L.WATCH.size
    assert ctypes.sizeof(leaves["ban_key"]) == L.BAN_KEY.size
    assert ctypes.sizeof(leaves["prefix"]) == L.PREFIX.size
