"""Compile, attach and talk to the BPF programs — the only module that imports ``bcc``.

``bcc`` is imported lazily inside :meth:`BpfProbe.start`, so every other module (and this one)
imports on a machine without BCC. Low-level failures are translated here, once, into one-line
:class:`~sensor.errors.SensorError` messages that name the fix.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import operator
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Final

from sensor import layout as L
from sensor.errors import EX_OSERR, NotPrivileged, SensorError, Unavailable
from sensor.ringbuf import MmapRing, RingError
from sensor.sockseed import Listener, existing_sockets

log = logging.getLogger(__name__)

BPF_DIR: Final = Path(__file__).resolve().parent / "bpf"
SOURCE: Final = BPF_DIR / "sensor.c"
TRACEFS_ROOTS: Final = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))
SENSITIVE_SYSCALLS: Final = (
    "ptrace", "mount", "umount", "unshare", "setns", "memfd_create", "init_module",
    "finit_module", "bpf", "setuid", "setgid", "chmod", "fchmod", "fchmodat", "fchmodat2",
    "personality", "keyctl",
)
RawCallback = Callable[[bytes], None]
PROFILES: Final = ("full", "lean", "auto")  # auto: lean, and full only while a loaded rule needs it
# The lean profile's hooks: (function in sensor.c, program type name, attach type name), attached
# at the cgroup2 root through bpf_link so that they go away with the sensor, even on kill -9.
LEAN_HOOKS: Final = (
    ("lean_connect4", "CGROUP_SOCK_ADDR", "CGROUP_INET4_CONNECT"),
    ("lean_connect6", "CGROUP_SOCK_ADDR", "CGROUP_INET6_CONNECT"),
    ("lean_sendmsg4", "CGROUP_SOCK_ADDR", "CGROUP_UDP4_SENDMSG"),
    ("lean_sendmsg6", "CGROUP_SOCK_ADDR", "CGROUP_UDP6_SENDMSG"),
    ("lean_bind4", "CGROUP_SOCK", "CGROUP_INET4_POST_BIND"),
    ("lean_bind6", "CGROUP_SOCK", "CGROUP_INET6_POST_BIND"),
    ("lean_sockops", "SOCK_OPS", "CGROUP_SOCK_OPS"),
)
# What each profile sees, for the start banner and `doctor` (sensor.agent.cli prints it).
DETECTIONS: Final = {
    "full": {
        "exec (full argv from the kernel), fork, exit (with exit code)": True,
        "connect, accept, listen, bind: TCP, UDP, unix; each with its result": True,
        "sensitive file opens (rules on open)": True,
        "sensitive syscalls (ptrace, mount, setns, ...)": True,
        "per-image syscall profile (while an image learns it)": True,
    },
    "auto": {
        "lean while no loaded rule needs file opens or sensitive syscalls; full, at once, while one does": True,
    },
    "lean": {
        "exec, fork, exit (no exit code; argv read from /proc after the exec, so a process that exits "
        "within milliseconds has none, and a busybox applet run through /proc/self/exe is named 'exe')": True,
        "connect (TCP, UDP; attempt, outcome not known), accept, listen, UDP bind: v4 and v6": True,
        "unix-socket connects": False,
        "sensitive file opens (rules on open)": False,
        "sensitive syscalls (ptrace, mount, setns, ...)": False,
        "per-image syscall profile (while an image learns it)": True,
    },
}
_BPF_LINK_CREATE: Final = 28
_SYS_BPF: Final = 321  # x86_64


@dataclass(frozen=True)
class ProbeOptions:
    """What to compile in. ``ring_pages`` must be a power of two (BPF ring buffer rule).

    ``wake_batch`` records per CPU go up between reader wakeups (1: a wakeup per record, the lowest
    latency and the highest cost to the traced workload); the reader drains the ring at least every
    ``poll_ms`` milliseconds, which bounds how long a lone record waits.
    """

    ring_pages: int = 256
    syscall_profile: bool = True
    sensitive: bool = True
    max_sockets: int = 65536
    wake_batch: int = 64
    poll_ms: int = 10
    fork_records: bool = False  # forks are counted in the kernel; True also sends each one up
    profile: str = "full"  # "lean": no syscall tracepoint but the syscall profiler's (see LEAN_HOOKS)
    auto_full: bool = False  # profile "auto": start full (a loaded rule needs syscall tracepoints)

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise SensorError(f"profile {self.profile!r}: must be one of {', '.join(PROFILES)}", exit_code=64)
        if self.ring_pages < 1 or self.ring_pages & (self.ring_pages - 1):
            raise SensorError(f"ring_pages={self.ring_pages}: must be a power of two (1, 2, 4, ...)",
                              exit_code=64)
        if not 1 <= self.wake_batch <= 65536:
            raise SensorError(f"wake_batch={self.wake_batch}: must be 1..65536", exit_code=64)
        if not 1 <= self.poll_ms <= 1000:
            raise SensorError(f"poll_ms={self.poll_ms}: must be 1..1000 milliseconds", exit_code=64)


def tracefs_root() -> Path | None:
    """The mounted tracefs (``/sys/kernel/tracing`` first), or None (also when it cannot be read:
    tracefs is root-only, and a non-root doctor must still report rather than crash)."""
    for root in TRACEFS_ROOTS:
        try:
            if (root / "events").is_dir():
                return root
        except OSError:
            continue
    return None


def has_tracepoint(category: str, name: str) -> bool:
    root = tracefs_root()
    try:
        return root is not None and (root / "events" / category / name).is_dir()
    except OSError:
        return False


def prefix_masks(prefixes: list[tuple[str, int]]) -> dict[bytes, int]:
    """Each distinct prefix (truncated to PREFIX_LEN - 1 bytes) -> mask of its own modes and those
    of every shorter stored prefix it starts with, for the kernel's longest-prefix-match trie."""
    own: dict[bytes, int] = {}
    for text, mode in prefixes:
        raw = text.encode()[: L.PREFIX_LEN - 1]
        if raw:
            own[raw] = own.get(raw, 0) | (1 << mode)
    return {raw: functools.reduce(operator.or_, (m for other, m in own.items() if raw.startswith(other)), 0)
            for raw in own}


def has_task_storage() -> bool:
    """Task-local storage needs kernel BTF (``bpf_get_current_task_btf``) and 5.11+."""
    major, minor = (int(x) for x in re.findall(r"\d+", os.uname().release)[:2])
    return Path("/sys/kernel/btf/vmlinux").exists() and (major, minor) >= (5, 11)


def cflags(options: ProbeOptions) -> list[str]:
    """The exact -D/-I flags the programs are compiled with (shown by ``trace --dump-bpf``)."""
    flags = [
        f"-I{BPF_DIR}",
        f"-DRING_PAGES={options.ring_pages}",
        f"-DSYSCALL_PROFILE={int(options.syscall_profile)}",
        f"-DSENSITIVE={int(options.sensitive)}",
        f"-DMAX_SOCKETS={options.max_sockets}",
        f"-DWAKE_BATCH={options.wake_batch}",
        f"-DTASK_STORAGE={int(has_task_storage())}",
        f"-DFORK_RECORDS={int(options.fork_records)}",
        f"-DARGS_MAX={L.ARGS_MAX}",
        f"-DARGS_SIZE={L.ARGS_SIZE}",
        "-Wno-macro-redefined",
    ]
    if options.sensitive:
        flags += [f"-DHAVE_{n}=1" for n in SENSITIVE_SYSCALLS
                  if has_tracepoint("syscalls", f"sys_enter_{n}")]
    return flags


def source_text() -> str:
    """The BPF C sources, header first, as compiled."""
    return (BPF_DIR / "cgsentry.h").read_text() + "\n" + SOURCE.read_text()


def check_privileges() -> None:
    if os.geteuid() != 0:
        raise NotPrivileged("loading BPF programs needs root (or CAP_BPF+CAP_PERFMON): run with sudo")
    if tracefs_root() is None:
        raise Unavailable("tracefs is not mounted: mount -t tracefs nodev /sys/kernel/tracing")


def import_bcc() -> Any:
    try:
        import bcc
    except ImportError as err:
        raise Unavailable(
            "BCC python module not found: apt-get install python3-bpfcc (never pip's 'bcc'), "
            "and use Debian's python3 or a venv made with --system-site-packages") from err
    return bcc


class BpfProbe:
    """The compiled and attached sensor programs plus typed access to their maps."""

    def __init__(self, options: ProbeOptions | None = None) -> None:
        self.options = options or ProbeOptions()
        self._bpf: Any = None
        self._callback: RawCallback | None = None
        self._ring: MmapRing | None = None

    def start(self, callback: RawCallback) -> None:
        """Compile, attach every tracepoint, and open the ring buffer feeding ``callback``."""
        check_privileges()
        bcc = import_bcc()
        self._check_headers()
        self._callback = callback
        try:
            self._bpf = bcc.BPF(src_file=str(SOURCE).encode(),
                                cflags=cflags(self.options))
        except Exception as err:  # bcc raises bare Exception for compile/attach failures
            raise SensorError(f"cannot load BPF programs from {SOURCE}: {err} "
                              "(run `cgsentry-sensor doctor`)", exit_code=EX_OSERR) from err
        events = self._bpf[b"events"]
        try:
            self._ring = MmapRing(events.map_fd, events.max_entries)
        except RingError as err:
            self._bpf.cleanup()
            self._bpf = None
            raise SensorError(f"{err} (cgsentry needs BPF ring buffers: Linux 5.8 or later)",
                              exit_code=EX_OSERR) from err
        self._profiled: set[int] = set()
        self._links: list[int] = []
        self._bcc = bcc
        # what BCC attached at load: the syscall tracepoints the lean state takes off and full puts back
        self._syscall_tps = [bytes(k) for k in self._bpf.tracepoint_fds if bytes(k).startswith(b"syscalls:")]
        self.full = True
        if self.options.profile == "lean" or (self.options.profile == "auto" and not self.options.auto_full):
            try:
                self._go_lean(bcc)
            except SensorError:
                self.close()
                raise
        seed = existing_sockets()
        self.seed_sockets(seed.non_tcp)
        self.seed_listeners(seed.listeners)
        self._profile_attached = True
        self._set_profile_attached(False)  # attached only while some cgroup is profiled
        self.released_kb = release_compiler()

    def _go_lean(self, bcc: Any) -> None:
        """Detach every syscall tracepoint BCC attached at load (the syscall profiler's raw
        tracepoint is attached only while an image learns), then attach the socket hooks at the
        cgroup2 root. Each hook is a bpf_link: the kernel detaches it when the sensor's last fd
        to it closes, so a crashed sensor leaves no program behind on the root cgroup."""
        from sensor.containers import find_cgroup2_root

        for tp in [k for k in self._bpf.tracepoint_fds if bytes(k).startswith(b"syscalls:")]:
            self._bpf.detach_tracepoint(tp)
        self.full = False
        root = find_cgroup2_root()
        try:
            cg_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as err:
            raise SensorError(f"lean profile: cannot open the cgroup2 root {root}: {err.strerror}",
                              exit_code=EX_OSERR) from err
        try:
            for name, prog_type, attach in LEAN_HOOKS:
                attach_type = getattr(bcc.BPFAttachType, attach)
                try:
                    fn = self._bpf.load_func(name.encode(), getattr(bcc.BPF, prog_type),
                                             attach_type=-1 if prog_type == "SOCK_OPS" else attach_type)
                except Exception as err:  # bcc raises bare Exception when the verifier refuses
                    raise SensorError(f"lean profile: cannot load {name}: {str(err).splitlines()[-1:]} "
                                      "(run with --profile full)", exit_code=EX_OSERR) from err
                self._links.append(_link_create(fn.fd, cg_fd, attach_type, name, root))
        finally:
            os.close(cg_fd)

    def set_full(self, on: bool) -> bool:
        """Switch between the full state (syscall tracepoints) and the lean one (socket hooks) at
        run time, for the ``auto`` profile: never both at once, so no connect is reported twice.
        Returns whether anything changed. Records already in the ring keep their source's form."""
        if self.options.profile != "auto" or on == self.full or self._bpf is None:
            return False
        if on:
            for fd in self._links:  # the hooks go first: the syscall tracepoints take over
                os.close(fd)
            self._links = []
            for tp in self._syscall_tps:
                fn = b"tracepoint__" + tp.replace(b":", b"__")
                self._bpf.attach_tracepoint(tp=tp, fn_name=fn)
            self.full = True
        else:
            self._go_lean(self._bcc)
        return True

    @property
    def attached_syscall_tracepoints(self) -> list[str]:
        """The syscall tracepoints attached now (the lean profile's promise: none but the
        profiler's raw ``sys_enter`` while an image learns its syscalls)."""
        if self._bpf is None:
            return []
        names = [bytes(k).decode() for k in self._bpf.tracepoint_fds if bytes(k).startswith(b"syscalls:")]
        return names + (["raw_syscalls:sys_enter"] if self._profile_attached else [])

    @staticmethod
    def _check_headers() -> None:
        build = Path("/lib/modules") / os.uname().release / "build"
        if not build.exists():
            raise Unavailable(f"kernel headers missing: {build} does not exist "
                              "(apt-get install linux-headers-amd64 and link it; see scripts/host-setup)")

    def poll(self, timeout_ms: int | None = None) -> None:
        """Deliver ready records to the callback; returns after at most ``timeout_ms``
        (default: the options' poll interval). Records submitted without a wakeup (see
        ``wake_batch``) do not end the wait, so the ring is drained after it either way.
        The ring is read through mmap (sensor/ringbuf.py), not libbpf's per-record callbacks."""
        assert self._callback is not None and self._ring is not None  # noqa: S101 - type narrowing: set by open()
        self._ring.wait(self.options.poll_ms if timeout_ms is None else timeout_ms)
        self._ring.drain(self._callback)

    # -- maps ------------------------------------------------------------------------------
    def set_cgroup(self, cgroup_id: int, *, host: bool = False, profile: bool = False,
                   urgent: bool = False) -> None:
        """Classify a cgroup: host (no sensitive checks), profile its syscalls, and/or wake the
        reader for each of its records (urgent: its image is enforced)."""
        table = self._bpf[b"cgroups"]
        leaf = table.Leaf()
        leaf.flags = (L.CG_HOST if host else 0) | (L.CG_PROFILE if profile else 0) | (L.CG_URGENT if urgent else 0)
        table[table.Key(cgroup_id)] = leaf
        if profile:
            self._profiled.add(cgroup_id)
        else:
            self._profiled.discard(cgroup_id)
        self._sync_profile_slot(cgroup_id)

    def _sync_profile_slot(self, cgroup_id: int) -> None:
        """The profiler's prefilter: how many profiled cgroups share this cgroup's (id % 4096) slot."""
        if not self.options.syscall_profile:
            return
        slot = cgroup_id % L.PROFILE_SLOTS
        sharing = sum(1 for cg in self._profiled if cg % L.PROFILE_SLOTS == slot)
        self._bpf[b"profile_slots"][ctypes.c_int(slot)] = ctypes.c_uint32(sharing)
        self._set_profile_attached(bool(self._profiled))

    def _set_profile_attached(self, on: bool) -> None:
        """Attach the syscall profiler only while it has work: an attached raw_syscalls hook
        costs every syscall on the machine, profiled or not."""
        if not self.options.syscall_profile or on == self._profile_attached:
            return
        if on:
            self._bpf.attach_raw_tracepoint(tp=b"sys_enter", fn_name=b"raw_tracepoint__sys_enter")
        else:
            self._bpf.detach_raw_tracepoint(tp=b"sys_enter")
        self._profile_attached = on

    @property
    def profiling(self) -> bool:
        return self._profile_attached

    def seed_sockets(self, sockets: list[tuple[int, int, int]]) -> None:
        """Record (tgid, fd, protocol) of non-TCP sockets created before the programs attached."""
        table = self._bpf[b"sock_types"]
        for tgid, fd, proto in sockets:
            table[table.Key((tgid << 32) | fd)] = table.Leaf(proto)

    def seed_listeners(self, listeners: list[Listener]) -> None:
        """Give TCP listeners bound before the programs attached the bind record accept() reads
        its local port from."""
        table = self._bpf[b"bound"]
        for sock in listeners:
            leaf = table.Leaf()
            leaf.family, leaf.proto, leaf.sport = sock.family, 6, sock.port
            leaf.saddr[:] = list(sock.addr)
            table[table.Key((sock.tgid << 32) | sock.fd)] = leaf

    def forget_net_seen(self, cgroup_id: int) -> int:
        """Let the kernel report this cgroup's connect/accept endpoints again (the first-seen filter
        forgets them); returns how many it forgets. For a cgroup whose first records went out
        before userspace could attribute them, so nothing it reports only once is lost."""
        table = self._bpf[b"net_counts"]
        mine = [k for k in table if k.cgroup_id == cgroup_id]
        for key in mine:
            try:
                del table[key]
            except KeyError:
                pass
        return len(mine)

    def forget_cgroup(self, cgroup_id: int) -> None:
        table = self._bpf[b"cgroups"]
        try:
            del table[table.Key(cgroup_id)]
        except KeyError:
            pass
        self._profiled.discard(cgroup_id)
        self._sync_profile_slot(cgroup_id)

    def set_open_prefixes(self, prefixes: list[tuple[str, int]]) -> None:
        """Sensitive path prefixes as (prefix, PM_* mode); at most PREFIX_MAX, each < PREFIX_LEN.

        The kernel does one longest-prefix lookup, so each stored prefix carries the modes of
        every stored prefix of it (``/etc/`` on write and ``/etc/shadow`` on any access: a write
        to /etc/shadow still matches as a write)."""
        masks = prefix_masks(prefixes)
        if len(masks) > L.PREFIX_MAX:
            raise SensorError(f"{len(masks)} sensitive path prefixes; the kernel holds {L.PREFIX_MAX}")
        table = self._bpf[b"prefixes"]
        table.clear()
        for raw, mask in masks.items():
            key = table.Key()
            key.prefixlen, key.s = len(raw) * 8, raw
            table[key] = table.Leaf(mask)

    def ban_exec(self, cgroup_id: int, comm: str) -> None:
        """Kill processes whose comm is ``comm`` at exec in ``cgroup_id`` (0 = all non-host)."""
        table = self._bpf[b"banned"]
        table[self._ban_key(cgroup_id, comm)] = ctypes.c_uint32(9)

    def unban_exec(self, cgroup_id: int, comm: str) -> None:
        try:
            del self._bpf[b"banned"][self._ban_key(cgroup_id, comm)]
        except KeyError:
            pass

    def _ban_key(self, cgroup_id: int, comm: str) -> Any:
        key = self._bpf[b"banned"].Key()
        key.cgroup_id = cgroup_id
        key.comm = comm.encode()[:15]
        return key

    def read_syscall_counts(self) -> dict[tuple[int, int], int]:
        """(cgroup id, syscall nr) -> count since the pair was first seen, in one batch."""
        return {(k.cgroup_id, k.nr): v.value for k, v in self._bpf[b"syscall_counts"].items()}

    def read_kernel_counts(self) -> dict[tuple[int, int, bool], int]:
        """(cgroup id, opcode, ok) -> totals counted in the kernel, in one batch: connects and
        accepts (the first-seen filter's counters, summed over endpoints) and forks and exits
        (which are not sent as records at all; ok is always True)."""
        out: dict[tuple[int, int, bool], int] = {}
        for k, v in self._bpf[b"net_counts"].items():
            key = (int(k.cgroup_id), int(k.op), bool(k.ok))
            out[key] = out.get(key, 0) + int(v.value)
        for k, v in self._bpf[b"proc_counts"].items():
            out[(int(k.cgroup_id), int(k.op), True)] = int(v.value)
        return out

    def kernel_drops(self) -> tuple[dict[str, int], int]:
        """Failed ring-buffer reserves per record kind (ring full or not), summed over CPUs, and
        how many of them failed while the ring was under half full: not an overflow, so no ring
        size fixes those (a wrong consumer position, or the kernel's ring lock giving up; see
        count_drop in sensor.c; only indicative on rings under 1 MiB). One pass over the map."""
        table = self._bpf[b"drops"]
        per_kind, with_room = {}, 0
        for op, name in L.OP_NAMES.items():
            room = int(sum(table[ctypes.c_int(L.OP_MAX + op)]))
            per_kind[name] = int(sum(table[ctypes.c_int(op)])) + room
            with_room += room
        return per_kind, with_room

    def program_stats(self) -> dict[str, tuple[int, int]]:
        """Per loaded program, ``(run_time_ns, run_cnt)`` as the kernel counts them while the
        sysctl ``kernel.bpf_stats_enabled`` is 1 (both stay where they were while it is 0; the
        counting itself costs ~20 ns a run, so it is off by default). Read from the programs'
        fdinfo, which is what ``bpftool prog show`` prints; names are BCC's function names."""
        assert self._bpf is not None  # noqa: S101 - type narrowing: set by load()
        out = {}
        for name, fn in self._bpf.funcs.items():
            try:
                with open(f"/proc/self/fdinfo/{fn.fd}", encoding="ascii") as f:
                    info = dict(line.split(":", 1) for line in f if ":" in line)
            except OSError:
                continue
            out[name.decode()] = (int(info.get("run_time_ns", "0")), int(info.get("run_cnt", "0")))
        return out

    def close(self) -> None:
        """Detach every program and free the maps (idempotent)."""
        for fd in getattr(self, "_links", []):
            os.close(fd)
        self._links = []
        if self._ring is not None:
            self._ring.close()
            self._ring = None
        if self._bpf is not None:
            self._bpf.cleanup()
            self._bpf = None


_COMPILER_LIBS: Final = re.compile(r"/lib(LLVM|clang|clang-cpp)[^/]*\.so[^/]*$")
_MADV_DONTNEED: Final = 4


def release_compiler(smaps: Path = Path("/proc/self/smaps")) -> int:
    """Give the kernel back the compiler's pages once the programs are loaded; returns the KiB
    released. BCC keeps LLVM and clang mapped for the process's life, and their code pages alone
    were ~84 MB of the sensor's RSS. Only mappings that are not writable and hold no dirty page
    are dropped: the kernel reads their pages from the file again, identical, if anything runs
    there (a later compile in the same process does). A read-only mapping with dirty pages is
    relocated data (RELRO: written by the dynamic linker, then made read-only); dropping it would
    bring back unrelocated bytes, so it is kept. Then malloc gives back the heap the compilation
    freed."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    try:
        text = smaps.read_text()
    except OSError:
        return 0
    released = 0
    for start, end, dirty in _clean_compiler_mappings(text):
        if not dirty and libc.madvise(start, end - start, _MADV_DONTNEED) == 0:
            released += (end - start) // 1024
    libc.malloc_trim(0)
    return released


def _clean_compiler_mappings(smaps_text: str) -> list[tuple[int, int, bool]]:
    """(start, end, has dirty pages) of every non-writable mapping of LLVM or clang in smaps."""
    out: list[tuple[int, int, bool]] = []
    mapping = False  # whether the lines below belong to one of those mappings
    for line in smaps_text.splitlines():
        fields = line.split()
        if fields and "-" in fields[0] and ":" not in fields[0]:  # a mapping's header line
            mapping = len(fields) >= 6 and "w" not in fields[1] and bool(_COMPILER_LIBS.search(fields[5]))
            if mapping:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                out.append((start, end, False))
        elif mapping and fields[:1] in (["Private_Dirty:"], ["Shared_Dirty:"]) and int(fields[1]):
            out[-1] = (*out[-1][:2], True)
    return out


def _link_create(prog_fd: int, target_fd: int, attach_type: int, name: str, root: Path) -> int:
    """BPF_LINK_CREATE (5.7+): attach ``prog_fd`` to the cgroup ``target_fd``; returns the link fd.
    BCC 0.26 attaches cgroup programs with BPF_PROG_ATTACH, which outlives the process."""
    attr = (ctypes.c_uint32 * 16)(prog_fd, target_fd, attach_type, 0)
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.syscall(_SYS_BPF, _BPF_LINK_CREATE, ctypes.byref(attr), ctypes.sizeof(attr))
    if fd < 0:
        err = ctypes.get_errno()
        raise SensorError(f"lean profile: cannot attach {name} to {root}: {os.strerror(err)} "
                          "(needs Linux 5.7+ and cgroup v2; or run with --profile full)", exit_code=EX_OSERR)
    return int(fd)


def detect_features() -> dict[str, bool]:
    """Load tiny programs to prove ring buffer, bpf_send_signal and cgroup ids work here."""
    bcc = import_bcc()
    probes = {
        "ring_buffer": "BPF_RINGBUF_OUTPUT(rb, 1); int f(void *ctx) { void *p = rb.ringbuf_reserve(8);"
                       " if (p) rb.ringbuf_discard(p, 0); return 0; }",
        "send_signal": "int f(void *ctx) { if (bpf_get_current_pid_tgid() == 1) bpf_send_signal(0);"
                       " return 0; }",
        "cgroup_id": "int f(void *ctx) { return bpf_get_current_cgroup_id() == 0; }",
    }
    out = {}
    for name, text in probes.items():
        try:
            b = bcc.BPF(text=text)
            b.load_func("f", bcc.BPF.TRACEPOINT)
            b.cleanup()
            out[name] = True
        except Exception:  # noqa: BLE001 - any failure means "not supported here"
            out[name] = False
    return out
