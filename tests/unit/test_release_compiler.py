"""Which of BCC's compiler pages the sensor hands back after loading its programs."""

from __future__ import annotations

from sensor.bpf_loader import _clean_compiler_mappings

SMAPS = """\
7f0000000000-7f0000100000 r--p 00000000 fd:01 123 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
Size:               1024 kB
Private_Clean:       512 kB
Private_Dirty:         0 kB
7f0000100000-7f0000900000 r-xp 00100000 fd:01 123 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
Size:               8192 kB
Private_Dirty:         0 kB
7f0000900000-7f0000a00000 r--p 00900000 fd:01 123 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
Size:               1024 kB
Private_Dirty:       300 kB
7f0000a00000-7f0000a10000 rw-p 00a00000 fd:01 123 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
Private_Dirty:        64 kB
7f0001000000-7f0001800000 r-xp 00000000 fd:01 456 /usr/lib/x86_64-linux-gnu/libclang-cpp.so.14
Private_Dirty:         0 kB
7f0002000000-7f0002100000 r-xp 00000000 fd:01 789 /usr/lib/x86_64-linux-gnu/libc.so.6
Private_Dirty:         0 kB
"""


def test_only_clean_read_only_compiler_mappings_are_dropped() -> None:
    """Code and constants of LLVM and clang go; their writable data, a RELRO mapping (read-only
    now, but written by the dynamic linker: dropping it would bring back unrelocated bytes and
    crash the next compile) and every other library stay."""
    found = _clean_compiler_mappings(SMAPS)
    assert [(hex(a), dirty) for a, _, dirty in found] == [
        ("0x7f0000000000", False), ("0x7f0000100000", False), ("0x7f0000900000", True), ("0x7f0001000000", False)]
