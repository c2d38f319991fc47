"""Process facts the kernel record cannot carry, read from procfs while the process still runs.

The BPF programs read only tracepoint arguments and helpers (DESIGN principle 2), so some facts
about a process come from ``/proc/<pid>`` in user space, once per event that needs them:

- **argv the kernel could not read.** A string whose page was not faulted in yet cannot be read
  by BPF (it may not sleep to fault it in); the record marks it (``ARGS_UNREAD``) and the command
  line is read from ``/proc/<pid>/cmdline``, which after the exec holds the new image's argv. It
  is used only where it agrees with every entry the kernel did read, and is marked
  ``ARGS_FROM_PROC``; if the process is gone first, ``ARGS_UNREAD`` stays and the entries stay
  empty.
- **One identity per executable.** ``/bin/sh`` and ``/usr/bin/sh`` are one file where ``/usr`` is
  merged (``/bin -> usr/bin``), and a baseline that learned one would call the other new. The
  directory part of an exec'd path is resolved inside the process's own root (its symlinks
  followed, as the kernel did); the file name is kept, since busybox applets are symlinks to one
  binary and their names are what tells them apart. Resolutions are cached per image and
  directory: an image's file system layout is the same in all its containers, and a process that
  exits before its directory was resolved still gets the image's answer.
- **Reverse shells by what they are.** A shell or interpreter whose stdin, stdout or stderr is a
  TCP/UDP socket at exec, whoever set that up (``nc -e``, python's ``os.dup2`` then ``sh -i``, a
  socket inherited from a parent): the event gets ``STDIO_SOCKET`` and the socket's endpoints,
  looked up by inode in the process's own ``/proc/<pid>/net/{tcp,udp}{,6}``. What this misses: a
  relay that keeps the socket and gives the shell a pty or pipes (python's ``pty.spawn``); the
  relaying process is then the one with the socket, and it is not a shell.
- **The source of a connect.** connect(2) carries only the destination; the local address and
  port are the socket's, read the same way by the descriptor the record carries (``sc_args[0]``).
  An interpreter whose fd 0, 1 or 2 is that very socket by the time the record is read (it
  dup2()ed it there: python's reverse shell before ``pty.spawn``) gets ``STDIO_SOCKET`` on the
  connect: best effort, since the dup2 may come after the read.

- **Multi-call binaries by the applet they run.** busybox and toybox pick what to run from argv[0]
  (``busybox`` itself: from argv[1]), so ``busybox nc``, ``/bin/nc -> busybox``, busybox's
  hard links and ``exec -a nc /bin/ls`` (ls being busybox) all run nc. The file run is a multi-call
  binary when it is one of the image's busybox/toybox (same device and inode, read through
  ``/proc/<pid>/exe`` against ``/proc/<pid>/root``; cached per image and path); then the event's
  name (comm) is the applet's and its exe is the applet's path next to the binary, as a symlink
  would spell it, so rules, baselines and bans see one name however it was started. When that name
  is not the file's, or argv[0] names another program than the file run (``exec -a``), the event
  gets ``NAME_MISMATCH`` and, where exe was renamed, ``path`` holds the file run.

- **Drift: a program that is not part of the image.** At each exec in a container, the file run
  is looked for in the container's overlay upper layer (``upperdir`` of its root mount in
  ``/proc/<pid>/mountinfo``, a host path; cached per cgroup): there only if it was written or
  modified after the container started, wherever it lies (``EXE_UPPER_LAYER``). An exec from an
  anonymous memory file (``/memfd:``, also behind ``/dev/fd/N``) is ``EXE_FROM_MEMFD``, one whose
  file is already deleted ``EXE_DELETED``. Costs two readlinks and one lstat per exec (the
  mount table is read once per container); nothing about a file is remembered, since it can be
  replaced after its first run. Misses: a binary dropped into a volume or bind mount (not the
  overlay), and roots that are not overlay (the upper layer is then unknown: no flag).

Shell checks and connect sources are looked up for container processes only: their cost (a few
readlinks, one read of the namespace's socket table) is paid where findings are made.

A process that is gone before its exec is read (a short ``true``; every pid of a replayed
journal) costs one failed lstat: its other facts are not tried one by one. What belongs to a
file rather than to the process (a directory's resolution, multi-call identity) stays cached
per image, learned from the process or, when it is gone, its parent; a parent whose root cannot
be read is not asked again for a second of event time. Drift's name check in the upper layer
needs no process and is made for a gone one too.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sensor import layout as L
from sensor.events import (
    ARGS_FROM_PROC,
    ARGS_UNREAD,
    EXE_DELETED,
    EXE_FROM_MEMFD,
    EXE_UPPER_LAYER,
    NAME_MISMATCH,
    STDIO_SOCKET,
    Event,
)
from sensor.proctable import REAL_PROC, resolve_in_root

INTERPRETERS: Final = re.compile(
    r"(?:sh|ash|bash|dash|zsh|ksh|mksh|csh|tcsh|fish|busybox|python[0-9.]*|perl[0-9.]*|ruby[0-9.]*|php[0-9.]*|node(?:js)?|lua[0-9.]*"
    r"|tclsh[0-9.]*|irb|pwsh|awk|gawk|mawk|nawk)")
_OPAQUE: Final = ("/proc/", "/dev/fd/", "/memfd:")  # paths that do not name a directory entry
_SOCKET: Final = re.compile(r"socket:\[(\d+)\]")
_TABLES: Final = (("tcp", "tcp", "ipv4"), ("tcp6", "tcp", "ipv6"), ("udp", "udp", "ipv4"), ("udp6", "udp", "ipv6"))
_MAPPED_V4: Final = bytes(10) + b"\xff\xff"
# A parent whose root could not be read (gone too, or a replayed journal's) is not asked again
# for this long of event time: its pid is unlikely to be reused by then.
PARENT_RETRY_NS: Final = 1_000_000_000
MULTICALL: Final = frozenset({"busybox", "toybox"})  # binaries that run the program argv[0] names
_MULTICALL_PATHS: Final = tuple(f"{d}/{n}" for d in ("/bin", "/usr/bin", "/sbin", "/usr/sbin")
                                for n in sorted(MULTICALL))


def applet_name(args: tuple[str, ...]) -> str:
    """The program a multi-call binary runs for this argv: argv[0]'s base name (a login shell's
    leading "-" dropped), or argv[1]'s when argv[0] is the binary itself (``busybox nc``); "" if
    argv says nothing (``busybox`` alone, ``busybox --list``)."""
    if not args:
        return ""
    name = args[0].rsplit("/", 1)[-1].lstrip("-")
    if name in MULTICALL:
        nxt = args[1].rsplit("/", 1)[-1] if len(args) > 1 else ""
        return nxt if nxt and not nxt.startswith("-") else ""
    return name


@dataclass(frozen=True)
class SocketEnds:
    """An inet socket's protocol and both endpoints, as the kernel's socket tables list them."""

    proto: str  # tcp | udp
    family: str  # ipv4 | ipv6
    saddr: str
    sport: int
    daddr: str
    dport: int


def proc_addr(hex_addr: str) -> bytes:
    """/proc/net/tcp prints each 32-bit word of an address as a host-order hex number."""
    words = [bytes.fromhex(hex_addr[i:i + 8]) for i in range(0, len(hex_addr), 8)]
    if sys.byteorder == "little":
        words = [w[::-1] for w in words]
    return b"".join(words)


def addr_text(raw: bytes) -> str:
    """Text of a 4- or 16-byte address; IPv4-mapped IPv6 (dual-stack sockets) prints as IPv4."""
    if len(raw) == 4:
        return socket.inet_ntop(socket.AF_INET, raw)
    if raw[:12] == _MAPPED_V4:
        return socket.inet_ntop(socket.AF_INET, raw[12:])
    return socket.inet_ntop(socket.AF_INET6, raw)


def inet_socket(pid_dir: Path, inode: int) -> SocketEnds | None:
    """The inet socket with this inode in the process's network namespace; None if not one."""
    want = str(inode)
    for table, proto, family in _TABLES:
        try:
            text = (pid_dir / "net" / table).read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        for line in text.splitlines()[1:]:
            cols = line.split()
            if len(cols) < 10 or cols[9] != want:
                continue
            try:
                (laddr, lport), (raddr, rport) = cols[1].split(":"), cols[2].split(":")
                return SocketEnds(proto, family, addr_text(proc_addr(laddr)), int(lport, 16),
                                  addr_text(proc_addr(raddr)), int(rport, 16))
            except ValueError:
                return None
    return None


def fd_inode(pid_dir: Path, fd: int) -> int:
    """The socket inode behind one of the process's descriptors; 0 if it is not a socket (or gone)."""
    try:
        match = _SOCKET.fullmatch(os.readlink(pid_dir / "fd" / str(fd)))
    except OSError:
        return 0
    return int(match.group(1)) if match else 0


def fd_socket(pid_dir: Path, fd: int) -> SocketEnds | None:
    """The inet socket behind one of the process's descriptors; None if it is not one (or gone)."""
    inode = fd_inode(pid_dir, fd)
    return inet_socket(pid_dir, inode) if inode else None


_BY_DESCRIPTOR = ("/dev/fd/", "/proc/", "/memfd:", "memfd:")  # /proc/self/fd/N, /proc/self/exe too


def _same_file(real: str, filename: str, exe: str) -> bool:
    """Whether /proc/PID/exe's ``real`` link can be the file this exec ran: the exec's own
    ``filename`` names a descriptor (fexecve, where only the link tells what it was) or a memfd, or
    the link names the same file as ``exe`` (the path run, canonical) or ``filename``. Read after
    the event, the link may belong to a later exec of the same pid: that one has its own event."""
    if filename.startswith(_BY_DESCRIPTOR):
        return True
    path = real.removesuffix(" (deleted)")
    return path in (exe, filename) or path.rsplit("/", 1)[-1] in (exe.rsplit("/", 1)[-1], filename.rsplit("/", 1)[-1])


def root_upperdir(mountinfo: str) -> str:
    """The upper directory (a host path) of the overlay mounted at a process's ``/``, from its
    mountinfo; "" when its root is not an overlay."""
    upper = ""
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        cols = left.split()
        if not sep or len(cols) < 5 or cols[4] != "/":
            continue
        fstype, _, rest = right.partition(" ")
        upper = ""
        if fstype == "overlay":
            for opt in rest.split(" ", 1)[-1].split(","):
                if opt.startswith("upperdir="):
                    upper = opt[len("upperdir="):].replace("\\040", " ")
    return upper  # the last mount on / is the one the process sees


def _whiteout(st: os.stat_result) -> bool:
    """A 0/0 character device in an upper layer marks a file deleted there."""
    return st.st_mode & 0o170000 == 0o020000 and st.st_rdev == 0


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def within_limits(args: tuple[str, ...]) -> tuple[tuple[str, ...], bool]:
    """argv cut to what the kernel would have kept (ARGS_MAX entries, ARGS_SIZE bytes with NULs),
    and whether anything was cut."""
    out: list[str] = []
    room = L.ARGS_SIZE
    for arg in args[:L.ARGS_MAX]:
        raw = arg.encode("utf-8", "surrogateescape")
        if len(raw) + 1 > room:
            out.append(raw[:room].decode("utf-8", "replace"))
            return tuple(out), True
        out.append(arg)
        room -= len(raw) + 1
    return tuple(out), len(args) > L.ARGS_MAX


def agrees(kernel: tuple[str, ...], proc: tuple[str, ...], truncated: bool) -> bool:
    """Every entry the kernel did read (non-empty) is the same in procfs' argv at its place, and
    the counts match (procfs may be longer only where the kernel cut)."""
    if len(proc) < len(kernel) or (len(proc) > len(kernel) and not truncated and kernel):
        return False
    for i, k in enumerate(kernel):
        cut = truncated and i == len(kernel) - 1  # the kernel kept only this entry's head
        if k and not (proc[i].startswith(k) if cut else proc[i] == k):
            return False
    return True


class ProcFacts:
    """Completes exec and connect events from procfs (see the module doc); counts what it did.

    An exec's process is looked up at most once: the first lookup that finds its procfs directory
    gone (a short ``true`` read after its exit, or a replayed journal's pid) skips the others, and
    its parent's root stands in only where that root can be read. Paths are strings: a pathlib
    join costs more than the system call it names.
    """

    def __init__(self, procfs_root: Path = REAL_PROC, max_dirs: int = 16384) -> None:
        self.root = procfs_root
        self._proc = str(procfs_root).rstrip("/")
        self.max_dirs = max_dirs
        self._dirs: dict[tuple[str, str], str] = {}  # (image key, directory) -> resolved directory
        self._multi: dict[tuple[str, str], bool] = {}  # (image key, exe) -> a multi-call binary
        self._upper: dict[int, str] = {}  # cgroup id -> its root's overlay upper dir ("" if none)
        # cgroup id -> a pid of it last seen alive: a way into the container's root for a process
        # already gone (nc refused at once) whose parent is the runtime, outside the container
        self._members: dict[int, int] = {}
        # cgroup id -> the pids in it now (the enricher reads cgroup.procs), for when no member was seen
        self.members_of: Callable[[int], list[int]] | None = None
        self._live: dict[int, bool] = {}  # this exec's pids -> procfs directory there (one lstat each)
        self._roots: dict[int, str] = {}  # this exec's pids -> readable <pid>/root, or ""
        self._rootless: dict[int, int] = {}  # parent pid -> event time its root could not be read
        self._now = 0  # the time of the exec being completed (0: a lookup outside one)
        # CGSENTRY_DRIFT_CHECK=0 turns the drift check off, for bench/depth.py's A/B of its cost
        # per exec (not an operator setting: drift findings need it)
        self.drift_check = os.environ.get("CGSENTRY_DRIFT_CHECK", "1") != "0"
        self.drifted = 0
        self.renamed = 0
        self.args_from_proc = 0
        self.args_unread = 0
        self.stdio_sockets = 0
        self.sources = 0
        self.gone = 0

    def exec_event(self, ev: Event, image_key: str, container: bool, parent: int = 0) -> Event:
        """The exec with argv completed, its path's directory resolved and, in a container, a
        shell's socket stdio noted. ``parent`` (its parent's pid, if known) stands in for a
        process that exited before its directory was resolved. Returns ``ev`` itself when nothing
        changed."""
        self._forget(ev.time_ns)
        changes: dict[str, object] = {}
        if ev.flags & ARGS_UNREAD:
            changes.update(self._args(ev))
        exe = self._canonical(ev.pid, ev.exe, image_key, parent)
        if exe != ev.exe:
            changes["exe"] = exe
        changes.update(self._name(ev, exe, image_key, parent, changes.get("args", ev.args)))  # type: ignore[arg-type]
        exe = changes.get("exe", exe)  # type: ignore[assignment]
        if container and self.drift_check:
            drift = self._drift(ev, changes.get("path") or exe, parent)  # type: ignore[arg-type]
            if drift:
                changes["flags"] = changes.get("flags", ev.flags) | drift  # type: ignore[operator]
        if container and INTERPRETERS.fullmatch(exe.rsplit("/", 1)[-1] or ev.comm):
            changes.update(self._stdio(ev, changes.get("flags", ev.flags)))  # type: ignore[arg-type]
        if self._live.get(ev.pid) is False:
            self.gone += 1
        return ev.replace(**changes) if changes else ev

    def _forget(self, now_ns: int = 0) -> None:
        """Start a new lookup (at an exec's time, else 0): what was found about pids before may
        be stale now."""
        self._live.clear()
        self._roots.clear()
        self._now = now_ns

    def _pid_dir(self, pid: int) -> str | None:
        """``<proc>/<pid>`` while it is there; None once it is gone. One lstat per pid and exec:
        a gone process's other fields are not tried one by one."""
        live = self._live.get(pid)
        if live is None:
            live = _lstat(f"{self._proc}/{pid}") is not None
            self._live[pid] = live
        return f"{self._proc}/{pid}" if live else None

    def _root_of(self, pid: int, own: bool = True) -> str:
        """``<proc>/<pid>/root`` if it can be read (the process is there, and not a zombie); ""
        otherwise. One readlink per pid and exec; the exec's own process is first looked for
        (:meth:`_pid_dir`), a parent is not (its root is all that is asked of it)."""
        root = self._roots.get(pid)
        if root is None:
            root = ""
            if own:
                usable = self._pid_dir(pid) is not None
            else:  # a parent found rootless lately (by event time) is not asked again yet
                since = self._rootless.get(pid)
                usable = not self._now or since is None or abs(self._now - since) >= PARENT_RETRY_NS
            if usable:
                try:
                    os.readlink(f"{self._proc}/{pid}/root")
                    root = f"{self._proc}/{pid}/root"
                except OSError:
                    if not own and self._now:
                        if len(self._rootless) >= self.max_dirs:
                            self._rootless.clear()
                        self._rootless[pid] = self._now
            self._roots[pid] = root
        return root

    def _roots_of(self, pid: int, parent: int) -> list[str]:
        """The readable roots to look a file up in: the process's own, else its parent's."""
        own = self._root_of(pid)
        if own:
            return [own]
        other = self._root_of(parent, own=False) if parent and parent != pid else ""
        return [other] if other else []

    def connect_event(self, ev: Event) -> Event:
        """A successful (or in-progress) inet connect with its source address and port; by an
        interpreter whose stdin/stdout/stderr is that socket by now, also ``STDIO_SOCKET``."""
        if ev.sport or ev.family not in ("ipv4", "ipv6") or ev.ret not in (0, -115) or not ev.sc_args:
            return ev
        pid_dir = self.root / str(ev.pid)
        inode = fd_inode(pid_dir, ev.sc_args[0])
        ends = inet_socket(pid_dir, inode) if inode else None
        if ends is None or (ends.daddr, ends.dport) != (ev.daddr, ev.dport):
            return ev  # closed, or its number reused by another socket already
        self.sources += 1
        flags = ev.flags
        if INTERPRETERS.fullmatch(ev.exe.rsplit("/", 1)[-1] or ev.comm) and inode in (
                fd_inode(pid_dir, fd) for fd in (0, 1, 2)):
            # python's socket + os.dup2 onto 0-2 (then pty.spawn, or code run in-process): the
            # process that wired itself to the socket, caught if it did so before this is read
            flags |= STDIO_SOCKET
            self.stdio_sockets += 1
        return ev.replace(saddr=ends.saddr, sport=ends.sport, flags=flags)

    def _name(self, ev: Event, exe: str, image_key: str, parent: int, args: tuple[str, ...]) -> dict[str, object]:
        """The applet a multi-call binary runs (comm, exe, the file in ``path``), and whether the
        name differs from the file run (``NAME_MISMATCH``)."""
        directory, _, base = exe.rpartition("/")
        if not args or not directory or exe.startswith(_OPAQUE):
            return {}
        if ev.cgroup_id and self._root_of(ev.pid):  # alive: a way into its container's root later
            if len(self._members) >= self.max_dirs:
                self._members.clear()
            self._members[ev.cgroup_id] = ev.pid
        if self._is_multicall(ev.pid, exe, image_key, parent, ev.cgroup_id):
            name = applet_name(args) or base
            if name == base:
                return {}
            self.renamed += 1
            return {"comm": name[:15], "exe": f"{directory}/{name}", "path": exe,
                    "flags": ev.flags | NAME_MISMATCH}
        first = args[0].rsplit("/", 1)[-1].lstrip("-")
        if first and first != base and first[:15] != ev.comm:
            return {"flags": ev.flags | NAME_MISMATCH}  # exec -a: argv[0] is another program's name
        return {}

    def drift(self, ev: Event, exe: str, parent: int = 0) -> int:
        """EXE_* flags of an exec in a container: its file in the overlay's upper layer, a memfd,
        or deleted (see the module doc); 0 when it is the image's own (or cannot be told)."""
        self._forget()
        return self._drift(ev, exe, parent)

    def _drift(self, ev: Event, exe: str, parent: int) -> int:
        flags = 0
        pid_dir = self._pid_dir(ev.pid)
        real = ""
        if pid_dir is not None:
            try:
                real = os.readlink(pid_dir + "/exe")
            except OSError:
                pass
        if real and not _same_file(real, ev.exe, exe):
            real = ""  # the process exec'd again since (sh -c execs its command): a later image's link
        if ev.exe.startswith(("/memfd:", "memfd:")) or real.startswith("/memfd:"):
            flags |= EXE_FROM_MEMFD
        elif real.endswith(" (deleted)"):
            flags |= EXE_DELETED
        if not flags and exe.startswith("/") and not exe.startswith(_OPAQUE):
            upper = self._upperdir(ev.cgroup_id, ev.pid, parent)
            if upper and self._in_upper(upper, exe, ev.pid):
                flags |= EXE_UPPER_LAYER
        if flags:
            self.drifted += 1
        return flags

    def _in_upper(self, upper: str, exe: str, pid: int) -> bool:
        """Whether the file ``exe`` names is in the upper layer: present there and not a whiteout.
        Looked at on every exec, never remembered: a file can be replaced after its first run.
        ``exe``'s directory is already resolved (:meth:`canonical`), so only a symlink as its last
        part is followed, in the process's root; a process gone by now has its name checked."""
        st = _lstat(upper + exe)
        if st is not None and not stat.S_ISLNK(st.st_mode):
            return not _whiteout(st)  # written (or replaced) in the container under this name
        path = self._follow(exe, pid)
        target = st if path == exe else _lstat(upper + path)
        return target is not None and not _whiteout(target)

    def _follow(self, exe: str, pid: int) -> str:
        """``exe`` with a symlink as its last part followed in the process's root (absolute
        targets from that root); ``exe`` itself when it is no symlink or cannot be read."""
        if self._pid_dir(pid) is None:
            return exe
        root = f"{self._proc}/{pid}/root"
        try:
            link = os.readlink(root + exe)
        except OSError:
            return exe  # EINVAL: a file, the common case (one system call)
        target = link if link.startswith("/") else f"{exe.rpartition('/')[0]}/{link}"
        try:
            return resolve_in_root(Path(root), target)
        except OSError:
            return exe

    def _upperdir(self, cgroup_id: int, pid: int, parent: int) -> str:
        known = self._upper.get(cgroup_id)
        if known is not None:
            return known
        whos = [pid] if self._pid_dir(pid) is not None else []
        if parent and parent != pid and self._root_of(parent, own=False):
            whos.append(parent)
        for who in whos:
            try:
                with open(f"{self._proc}/{who}/mountinfo", encoding="utf-8", errors="replace") as f:
                    text = f.read()
            except OSError:
                continue
            upper = root_upperdir(text)
            if len(self._upper) >= self.max_dirs:
                self._upper.clear()
            self._upper[cgroup_id] = upper
            return upper
        return ""

    def multicall(self, pid: int, exe: str, image_key: str, parent: int = 0) -> bool:
        """Whether the file ``exe`` (as the process ran it) is the image's busybox or toybox: by
        name, else by device and inode (hard links, symlinks); cached per image and path."""
        self._forget()
        return self._is_multicall(pid, exe, image_key, parent)

    def _is_multicall(self, pid: int, exe: str, image_key: str, parent: int, cgroup_id: int = 0) -> bool:
        if exe.rsplit("/", 1)[-1] in MULTICALL:
            return True
        key = (image_key, exe)
        known = self._multi.get(key)
        if known is not None:
            return known
        found = self._multicall(pid, exe, parent, self._member(cgroup_id, pid) if cgroup_id else 0)
        if found is None:
            return False  # gone, and not seen before: the kernel's name stands
        if len(self._multi) >= self.max_dirs:
            self._multi.clear()
        self._multi[key] = found
        return found

    def _member(self, cgroup_id: int, pid: int) -> int:
        """Another live process of the cgroup (asked only when the image's answer is not cached):
        the last one seen alive, else one its cgroup.procs lists now; 0 if none."""
        member = self._members.get(cgroup_id, 0)
        if member and member != pid and self._root_of(member, own=False):
            return member
        if self.members_of is None or self._root_of(pid):
            return 0  # the process itself is there: it is looked at first anyway
        return next((p for p in self.members_of(cgroup_id) if p != pid), 0)

    def _multicall(self, pid: int, exe: str, parent: int, member: int = 0) -> bool | None:
        """Looked up in the process's own root, else another live process of its container
        (``member``), else its parent's (which may be the runtime's, outside the container)."""
        for who in dict.fromkeys(w for w in (pid, member, parent) if w):
            root = self._root_of(who, own=who == pid)
            if not root:
                continue
            try:
                st = os.stat(f"{self._proc}/{who}/exe") if who == pid else os.stat(
                    root + resolve_in_root(Path(root), exe))
            except OSError:
                continue
            for cand in _MULTICALL_PATHS:
                try:
                    other = os.stat(root + resolve_in_root(Path(root), cand))
                except OSError:
                    continue
                if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
                    return True
            return False
        return None

    def canonical(self, pid: int, path: str, image_key: str, parent: int = 0) -> str:
        """``path`` with its directory resolved in the process's root (cached per image); if the
        process is gone already (a short ``true``), in its parent's, which shares its mounts
        unless it changed them."""
        self._forget()
        return self._canonical(pid, path, image_key, parent)

    def _canonical(self, pid: int, path: str, image_key: str, parent: int) -> str:
        if not path.startswith("/") or path.startswith(_OPAQUE):
            return path
        directory, _, name = path.rpartition("/")
        key = (image_key, directory)
        resolved = self._dirs.get(key)
        if resolved is None:
            resolved = self._resolve(directory or "/", pid, parent)
            if resolved is None:
                return path  # gone before we looked, and the image's layout is not known yet
            if len(self._dirs) >= self.max_dirs:
                self._dirs.clear()
            self._dirs[key] = resolved
        return f"{resolved.rstrip('/')}/{name}"

    def _resolve(self, directory: str, pid: int, parent: int) -> str | None:
        for root in self._roots_of(pid, parent):
            try:
                return resolve_in_root(Path(root), directory)
            except OSError:
                continue
        return None

    def _args(self, ev: Event) -> dict[str, object]:
        pid_dir = self._pid_dir(ev.pid)
        raw = b""
        if pid_dir is not None:
            try:
                with open(pid_dir + "/cmdline", "rb") as f:
                    raw = f.read()
            except OSError:
                pass
        proc = tuple(a.decode("utf-8", "replace") for a in raw.split(b"\0")[:-1]) if raw else ()
        if not proc or not agrees(ev.args, proc, ev.truncated):
            self.args_unread += 1
            return {}
        self.args_from_proc += 1
        args, cut = within_limits(proc)
        return {"args": args, "truncated": cut, "flags": (ev.flags & ~ARGS_UNREAD) | ARGS_FROM_PROC}

    def _stdio(self, ev: Event, flags: int) -> dict[str, object]:
        if self._pid_dir(ev.pid) is None:
            return {}
        pid_dir = self.root / str(ev.pid)
        for fd in (0, 1, 2):
            ends = fd_socket(pid_dir, fd)
            if ends is not None:
                self.stdio_sockets += 1
                return {"flags": flags | STDIO_SOCKET, "proto": ends.proto, "family": ends.family,
                        "saddr": ends.saddr, "sport": ends.sport, "daddr": ends.daddr, "dport": ends.dport}
        return {}

    def stats(self) -> dict[str, int]:
        return {"args_from_proc": self.args_from_proc, "args_unread": self.args_unread, "applets_named": self.renamed,
                "exec_drift": self.drifted,
                "stdio_sockets": self.stdio_sockets, "connect_sources": self.sources, "exec_gone": self.gone}
