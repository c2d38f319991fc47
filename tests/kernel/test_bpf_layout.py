"""Kernel tier: BCC's compile of sensor/bpf/cgsentry.h agrees with the Python mirror (sensor/layout.py).

tests/unit/test_layout.py pins the mirror against itself and the header's #defines; this test
asks the real compiler. Every ``sizeof``/``offsetof`` is compiled into the ``max_entries`` of a
throw-away array map (offsets +1, since a map cannot have 0 entries), so clang's own constant
evaluation is read back without attaching anything — about half a second.

Why not BCC's ctypes ``Leaf`` types: BCC 0.26 flattened the former ``char args[ARGS_MAX][ARG_LEN]``
to a one-dimensional ``char[ARGS_MAX]`` (340 bytes where clang laid out 1096); a comparison against
Leaf would test BCC's type printer, not the layout.
"""

from __future__ import annotations

from typing import Iterator

import pytest

from sensor import layout as L
from sensor.bpf_loader import BPF_DIR, ProbeOptions, cflags

pytestmark = pytest.mark.kernel

Compiled = dict[str, int]


def _program() -> str:
    lines = ['#include "cgsentry.h"']
    for name, (_size, offsets) in L.C_LAYOUT.items():
        lines.append(f"BPF_ARRAY(sz_{name}, u8, sizeof(struct {name}));")
        lines += [f"BPF_ARRAY(of_{name}__{f}, u8, __builtin_offsetof(struct {name}, {f}) + 1);"
                  for f in offsets]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def compiled() -> Iterator[Compiled]:
    from bcc import BPF  # kernel tier only; production code imports bcc in bpf_loader alone

    flags = [f for f in cflags(ProbeOptions()) if f.startswith("-DA")]  # ARGS_MAX, ARGS_SIZE
    bpf = BPF(text=_program(), cflags=[f"-I{BPF_DIR}", *flags])
    try:
        out: Compiled = {}
        for name, (_size, offsets) in L.C_LAYOUT.items():
            out[name] = bpf[f"sz_{name}"].max_entries
            for f in offsets:
                out[f"{name}.{f}"] = bpf[f"of_{name}__{f}"].max_entries - 1
        yield out
    finally:
        bpf.cleanup()


@pytest.mark.parametrize("name", tuple(L.C_LAYOUT))
def test_compiled_size_and_offsets_match_mirror(compiled: Compiled, name: str) -> None:
    size, offsets = L.C_LAYOUT[name]
    assert compiled[name] == size, f"sizeof(struct {name})"
    for field, want in offsets.items():
        assert compiled[f"{name}.{field}"] == want, f"offsetof(struct {name}, {field})"


def test_decoder_formats_span_whole_records(compiled: Compiled) -> None:
    """Each opcode's struct.Struct size equals the compiled record (no bytes unread or overrun)."""
    records = {L.OP_EXEC: "exec_rec", L.OP_FORK: "fork_rec", L.OP_EXIT: "exit_rec",
               L.OP_CONNECT: "net_rec", L.OP_ACCEPT: "net_rec", L.OP_LISTEN: "net_rec",
               L.OP_SYSCALL: "syscall_rec", L.OP_OPEN: "open_rec", L.OP_SYS: "sys_rec"}
    assert set(records) == set(L.OP_NAMES)
    for op, name in records.items():
        assert L.RECORD_SIZES[op] == compiled[name], L.OP_NAMES[op]
    assert (L.WATCH.size, L.BAN_KEY.size, L.PREFIX_KEY.size) == (
        compiled["watch"], compiled["ban_key"], compiled["prefix_key"])
