"""Python mirror of sensor/bpf/cgsentry.h: opcodes, flags and record layouts.

Each record is a ``struct.Struct`` whose fields follow the C struct in order. Sizes and offsets
are pinned by tests/unit/test_layout.py (against these constants) and by
tests/kernel/test_bpf_layout.py (against what BCC actually compiles from the header).
"""

from __future__ import annotations

import struct
from typing import Final

ARGS_MAX: Final = 64  # argv entries captured per exec
ARGS_SIZE: Final = 4096  # argv bytes captured per exec, NULs included (the documented limit)
PATH_LEN: Final = 256
UNIX_PATH_LEN: Final = 64
PREFIX_MAX: Final = 64
PREFIX_LEN: Final = 32
PROFILE_SLOTS: Final = 4096  # sensor.c: syscall-profiler prefilter slots

OP_EXEC: Final = 1
OP_FORK: Final = 2
OP_EXIT: Final = 3
OP_CONNECT: Final = 4
OP_ACCEPT: Final = 5
OP_LISTEN: Final = 6
OP_SYSCALL: Final = 7
OP_OPEN: Final = 8
OP_SYS: Final = 9
OP_MAX: Final = 10
OP_NAMES: Final = {
    OP_EXEC: "exec", OP_FORK: "fork", OP_EXIT: "exit", OP_CONNECT: "connect",
    OP_ACCEPT: "accept", OP_LISTEN: "listen", OP_SYSCALL: "syscall", OP_OPEN: "open",
    OP_SYS: "sys",
}

CG_HOST: Final = 1
CG_PROFILE: Final = 2
CG_URGENT: Final = 4

F_KILLED: Final = 1
F_ARGS_TRUNC: Final = 2
F_NET_HOOK: Final = 16  # a lean-profile socket hook saw it before the operation: outcome unknown
F_EXIT_SIGNAL: Final = 4
F_ARGS_FAULT: Final = 8

PM_ANY: Final = 0
PM_WRITE: Final = 1
PM_MEM: Final = 2

# struct hdr: op pid tid uid gid flags ktime_ns cgroup_id comm[16] _reserved
HDR: Final = struct.Struct("<6IQQ16sII")
# old_pid argc args_len _pad filename; then args_len bytes of argv (the record is cut there)
EXEC: Final = struct.Struct(f"<IIII{PATH_LEN}s")  # after the header
FORK: Final = struct.Struct("<II")
EXIT: Final = struct.Struct("<iI")
# ret fd family proto sport dport _pad saddr daddr unix_path
NET: Final = struct.Struct(f"<qIHHHHI16s16s{UNIX_PATH_LEN}s")
SYSCALL: Final = struct.Struct("<II")
OPEN: Final = struct.Struct(f"<qII{PATH_LEN}s")
SYS: Final = struct.Struct("<qII4Q")
WATCH: Final = struct.Struct("<II")
BAN_KEY: Final = struct.Struct("<Q16s")
PREFIX_KEY: Final = struct.Struct(f"<I{PREFIX_LEN}s")
# cgroup_id comm[16] addr[16] op port proto ok _pad
NET_KEY: Final = struct.Struct("<Q16s16sIHHII")

RECORD_SIZES: Final = {  # sizeof each record struct
    OP_EXEC: HDR.size + EXEC.size + ARGS_SIZE,
    OP_FORK: HDR.size + FORK.size,
    OP_EXIT: HDR.size + EXIT.size,
    OP_CONNECT: HDR.size + NET.size,
    OP_ACCEPT: HDR.size + NET.size,
    OP_LISTEN: HDR.size + NET.size,
    OP_SYSCALL: HDR.size + SYSCALL.size,
    OP_OPEN: HDR.size + OPEN.size,
    OP_SYS: HDR.size + SYS.size,
}

# The fewest bytes a record of each opcode can have: an exec record is sent only as far as its argv.
MIN_RECORD_SIZES: Final = {**RECORD_SIZES, OP_EXEC: HDR.size + EXEC.size}

# C struct name -> (size, {field: offset}) as the C compiler must lay it out.
C_LAYOUT: Final = {
    "hdr": (64, {"op": 0, "pid": 4, "tid": 8, "uid": 12, "gid": 16, "flags": 20,
                 "ktime_ns": 24, "cgroup_id": 32, "comm": 40, "ppid": 56, "anc": 60}),
    "exec_rec": (RECORD_SIZES[OP_EXEC], {"old_pid": 64, "argc": 68, "args_len": 72, "filename": 80,
                                          "args": 80 + PATH_LEN}),
    "fork_rec": (72, {"parent_pid": 64, "child_pid": 68}),
    "exit_rec": (72, {"exit_code": 64}),
    "net_rec": (RECORD_SIZES[OP_CONNECT], {"ret": 64, "fd": 72, "family": 76, "proto": 78,
                                           "sport": 80, "dport": 82, "saddr": 88, "daddr": 104,
                                           "unix_path": 120}),
    "syscall_rec": (72, {"nr": 64}),
    "open_rec": (RECORD_SIZES[OP_OPEN], {"ret": 64, "flags": 72, "mode": 76, "path": 80}),
    "sys_rec": (112, {"ret": 64, "nr": 72, "args": 80}),
    "watch": (WATCH.size, {"flags": 0}),
    "ban_key": (BAN_KEY.size, {"cgroup_id": 0, "comm": 8}),
    "prefix_key": (PREFIX_KEY.size, {"prefixlen": 0, "s": 4}),
    "net_key": (NET_KEY.size, {"cgroup_id": 0, "comm": 8, "addr": 24, "op": 40, "port": 44, "proto": 46,
                               "ok": 48}),
}
