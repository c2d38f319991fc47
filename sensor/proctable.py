"""The sensor's own process table: pid -> (ppid, exe, args), for ancestry without kernel structs.

Seeded once at start — through psutil when the root is the real ``/proc``, else by reading
``<root>/<pid>/{stat,exe,cmdline}`` directly (``procfs_root`` is injectable, psutil-style, so tests
use a ``tmp_path`` tree) — then kept current from fork/exec/exit events. An exited process lingers
until ``linger`` further processes have exited, so events that race its exit (a child's exec read
from the ring buffer after the parent's exit) still resolve its ancestry. The table is bounded:
beyond ``max_size`` the oldest exited processes go first, then the oldest entries.

Ancestry is asked for on most events and changes rarely, so each process caches its own, valid
while the table's generation is unchanged. The generation moves only when a link in some chain
changes under a process that has children: it execs, gets its parent, or its pid leaves the table
or is reused. A chain that ends at a parent the table does not know yet is not cached.

Exec sessions (sensor/sessions.py): a process the container runtime starts in a running container,
other than its init, is marked (``EXEC_SESSION``, with ``EXEC_TTY`` when its stdin is a terminal) when
its exec is seen; its children inherit the mark, so everything the session runs carries it.
"""

from __future__ import annotations

import errno
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sensor.events import EXEC, EXEC_SESSION, EXEC_TTY, EXIT, FORK, Event
from sensor.sessions import is_container_init, started_by_runtime, stdin_is_tty

REAL_PROC: Final = Path("/proc")
DEPTH: Final = 8  # ancestry entries kept per process
_LIFECYCLE: Final = frozenset({FORK, EXEC, EXIT})
_PLUMBING: Final = ("runc", "crun", "youki", "runsc", "containerd-shim", "conmon", "docker-init", "docker-proxy")
_DEFAULT_PATH: Final = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")  # Docker's


@dataclass(slots=True)
class Proc:
    ppid: int
    exe: str
    args: tuple[str, ...] = ()
    has_children: bool = False  # it is in some process's cached chain: its changes reach that cache
    ancestry: tuple[str, ...] = ()  # cached; valid while generation == the table's
    generation: int = -1
    session: int = 0  # EXEC_SESSION | EXEC_TTY: in an exec session (inherited from its parent)
    prev_exe: str = ""  # what it ran before its latest exec ("" unknown)
    prev_args: tuple[str, ...] = ()  # ... and with which argv


class ProcessTable:
    def __init__(self, procfs_root: Path = REAL_PROC, max_size: int = 65536, linger: int = 1024,
                 seed: bool = True) -> None:
        self.root = procfs_root
        self.max_size = max_size
        self._procs: OrderedDict[int, Proc] = OrderedDict()
        self._exited: OrderedDict[int, None] = OrderedDict()
        self._linger = linger
        self._generation = 0
        self.evicted = 0
        if seed:
            self.seed()

    def seed(self) -> int:
        """Load every process visible under the root now; returns how many the table holds."""
        procs = _seed_psutil() if self.root == REAL_PROC else _seed_files(self.root)
        for pid, proc in sorted(procs.items()):
            self._put(pid, proc)
        return len(self._procs)

    def __len__(self) -> int:
        return len(self._procs)

    def __contains__(self, pid: int) -> bool:
        return pid in self._procs

    def get(self, pid: int) -> Proc | None:
        return self._procs.get(pid)

    def ppid(self, pid: int) -> int:
        """Parent pid, 0 if the process is unknown."""
        proc = self._procs.get(pid)
        return proc.ppid if proc is not None else 0

    def exe(self, pid: int) -> str:
        proc = self._procs.get(pid)
        return proc.exe if proc is not None else ""

    def ancestry(self, pid: int, depth: int = DEPTH) -> tuple[str, ...]:
        """Executables of the parent, grandparent, ... nearest first.

        Stops at pid 0, at an unknown parent, after ``depth`` entries, or at a cycle (pids are
        reused, so a stale entry can point back into its own descendants).
        """
        proc = self._procs.get(pid)
        if proc is None:
            return ()
        if proc.generation == self._generation and depth == DEPTH:
            return proc.ancestry
        out, complete = self._walk(pid, proc, depth)
        if complete and depth == DEPTH:
            proc.ancestry, proc.generation = out, self._generation
        return out

    def _walk(self, pid: int, proc: Proc | None, depth: int) -> tuple[tuple[str, ...], bool]:
        """The chain, and whether it is final (False: it ends at a parent not in the table)."""
        out: list[str] = []
        procs = self._procs
        seen = {pid}
        while proc is not None and len(out) < depth:
            parent = proc.ppid
            if not parent or parent in seen:
                break
            seen.add(parent)
            proc = procs.get(parent)
            if proc is not None:
                proc.has_children = True  # in a chain now: its changes must reach the caches
                if not (out and out[-1] == proc.exe and _plumbing(proc.exe)):
                    out.append(proc.exe)
        return tuple(out), proc is not None or len(out) >= depth

    def ancestors(self, pid: int, depth: int = DEPTH,
                  parent_exe: str = "") -> tuple[tuple[tuple[int, str, tuple[str, ...]], ...], str]:
        """(pid, executable, argv) of the parent, grandparent, ... nearest first, for a finding
        (runtime plumbing included: an analyst sees the whole chain), and why it stops where it
        does: "" at the top (a parent pid 0) or for a process the table does not hold, else the
        reason in words (a parent the sensor never saw, a pid loop, the depth). ``parent_exe``:
        what the parent ran when the event happened (the event's pexe); a parent that has exec'd
        since (``sh -c 'x; sleep 30'`` execs its last command) is shown as it was then."""
        proc = self._procs.get(pid)
        out: list[tuple[int, str, tuple[str, ...]]] = []
        seen = {pid}
        while proc is not None:
            parent = proc.ppid
            if not parent:
                return tuple(out), ""
            if parent in seen:
                return tuple(out), f"pid {parent} again: a reused pid made a loop, the chain stops there"
            if len(out) >= depth:
                return tuple(out), f"more ancestors above; {depth} levels are kept"
            seen.add(parent)
            proc = self._procs.get(parent)
            if proc is None:
                return tuple(out), (f"parent pid {parent} unknown to the sensor: it ended before the sensor "
                                    "started, or before its exec record was read")
            if not out and parent_exe and proc.exe != parent_exe and proc.prev_exe == parent_exe:
                out.append((parent, proc.prev_exe, proc.prev_args))
            else:
                out.append((parent, proc.exe, proc.args))
        return tuple(out), ""

    def observe(self, ev: Event, with_ancestry: bool) -> tuple[int, str, tuple[str, ...], str, tuple[str, ...]]:
        """Apply an event to the table; its (ppid, exe, args, parent exe, ancestry) as the table sees them.

        A process first seen in a later record (forks stay in the kernel, which puts the parent and
        the nearest reported ancestor in every record's header) is adopted first. Without
        ``with_ancestry`` the event's own ancestry is returned unchanged.
        """
        procs, pid, kind = self._procs, ev.pid, ev.kind
        known = procs.get(pid)
        if known is None or ev.ppid and known.ppid and known.ppid != ev.ppid:  # the common case skips the call
            self.admit(ev)
        if kind in _LIFECYCLE:
            self.update(ev)
        proc = procs.get(pid)
        ppid = ev.ppid or (proc.ppid if proc is not None else 0)
        exe = ev.exe or (proc.exe if proc is not None else "")
        args = ev.args or (proc.args if proc is not None else ())  # a connect's command line is its process's
        if with_ancestry:
            ancestry = self.ancestry(pid)
            return ppid, exe, args, ancestry[0] if ancestry else "", ancestry
        parent = procs.get(ppid)
        return ppid, exe, args, parent.exe if parent is not None else "", ev.ancestry

    def admit(self, ev: Event) -> None:
        """Adopt the event's process from its header if the table does not know it yet, or knows
        its pid with another parent: the kernel put the parent in the header at the fork, so the
        pid was reused after a pid wrap. The table can still hold the pid's last owner when that
        one exited unseen (before the sensor attached, or a fork-only exit, which is not reported)
        or lingers after its exit."""
        if not ev.ppid or ev.kind == FORK:
            return
        known = self._procs.get(ev.pid)
        if known is not None and (known.ppid == ev.ppid or not known.ppid):
            return
        # A parent that never exec'd was never reported either; it runs the image of the
        # nearest reported ancestor.
        if ev.ppid not in self._procs and ev.ancestor_pid:
            self.adopt(ev.ppid, ev.ancestor_pid)
        self.adopt(ev.pid, ev.ppid)

    def update(self, ev: Event) -> None:
        """Apply a fork, exec or exit event; other kinds are ignored."""
        kind = ev.kind
        if kind == FORK:
            self._fork(ev)
        elif kind == EXEC:
            proc = self._procs.get(ev.pid)
            if proc is None:
                self._put(ev.pid, Proc(ev.ppid, ev.exe, ev.args, session=self.session(ev.ppid)))
                return
            if proc.has_children and proc.exe != ev.exe:
                self._generation += 1
            proc.prev_exe, proc.prev_args, proc.exe, proc.args = proc.exe, proc.args, ev.exe, ev.args
            if ev.ppid and not proc.ppid:
                proc.ppid, proc.generation = ev.ppid, -1
                if proc.has_children:
                    self._generation += 1
        elif kind == EXIT:
            self._exit(ev.pid)

    def _fork(self, ev: Event) -> None:
        # ev.pid is the forking process (tgid); ev.ppid is the forking *thread*, which differs
        # when a non-main thread forks — getppid() in the child returns the tgid.
        self.adopt(ev.child_pid, ev.pid or ev.ppid, ev.exe)

    def adopt(self, pid: int, ppid: int, exe: str = "") -> None:
        """A child first seen in a later record (forks stay in the kernel, which puts the parent in
        every record's header): until it execs it runs its parent's image."""
        parent = self._procs.get(ppid)
        if parent is None:
            self._put(pid, Proc(ppid, exe))
        else:
            self._put(pid, Proc(ppid, parent.exe, parent.args, session=parent.session))

    def session(self, pid: int) -> int:
        """The process's exec-session mark (EXEC_SESSION, EXEC_TTY); 0 outside sessions or unknown."""
        proc = self._procs.get(pid)
        return proc.session if proc is not None else 0

    def exec_session(self, pid: int, pexe: str, cgroup_dir: Path | None) -> int:
        """The session mark of an exec in a container, after :meth:`observe` applied it: inherited,
        or new when the runtime started the process (``pexe``, and it ran the runtime's image until
        now: the init re-exec'ing, an entrypoint's ``exec app``, is not) and it is not the init of
        its container (``cgroup_dir``: the container's cgroup directory; None if unknown). A new
        session's tty is its stdin at this exec. 0: the container's own tree."""
        proc = self._procs.get(pid)
        if proc is None:
            return 0
        if proc.session or not started_by_runtime(pexe) or (proc.prev_exe and not started_by_runtime(proc.prev_exe)):
            return proc.session
        if is_container_init(self.root, pid, cgroup_dir) is False:
            proc.session = EXEC_SESSION | (EXEC_TTY if stdin_is_tty(self.root, pid) else 0)
        return proc.session

    def _exit(self, pid: int) -> None:
        if pid not in self._procs:
            return
        self._exited[pid] = None
        while len(self._exited) > self._linger:
            gone, _ = self._exited.popitem(last=False)
            self._drop(gone)

    def _put(self, pid: int, proc: Proc) -> None:
        if pid in self._exited:  # pid reused after its linger began: the new process owns it
            del self._exited[pid]
        old = self._procs.get(pid)
        if old is not None and old.has_children:
            proc.has_children = True  # its children now point at the new process
            self._generation += 1
        self._procs[pid] = proc
        self._procs.move_to_end(pid)
        while len(self._procs) > self.max_size:
            if self._exited:
                gone, _ = self._exited.popitem(last=False)
                self._drop(gone)
            else:
                self._drop(next(iter(self._procs)))
            self.evicted += 1

    def _drop(self, pid: int) -> None:
        proc = self._procs.pop(pid, None)
        if proc is not None and proc.has_children:
            self._generation += 1


def _plumbing(exe: str) -> bool:
    """A container runtime's own binary: runc forks and re-execs itself (runc, runc init, its
    [1:CHILD] and [2:INIT] stages) and shims nest, so one runtime start would fill the ancestry with
    the same name; consecutive repeats of these are shown once. A shell under a shell stays two."""
    name = exe.rsplit("/", 1)[-1]
    return name.startswith(_PLUMBING) or name in ("[runc]", "[exe]")


def _seed_psutil() -> dict[int, Proc]:
    import psutil

    out: dict[int, Proc] = {}
    for p in psutil.process_iter(["ppid", "exe", "cmdline", "name"], ad_value=None):
        info = p.info
        if info.get("ppid") is None:
            continue  # exited while we looked
        args = tuple(info.get("cmdline") or ())
        exe = exec_name(REAL_PROC, p.pid, info.get("exe") or "", args) or _unnamed(info.get("name") or "")
        out[p.pid] = Proc(int(info["ppid"]), exe, args)
    return out


def _unnamed(comm: str) -> str:
    """What a process whose binary cannot be read is called in ancestry: its comm, like ps does."""
    return f"[{comm}]" if comm else ""


def exec_name(root: Path, pid: int, exe: str, args: tuple[str, ...]) -> str:
    """The path a running process was exec'd by, as the exec tracepoint reports it for new ones.

    ``/proc/<pid>/exe`` resolves symlinks: a shell started as ``/bin/sh`` reads ``/bin/busybox``
    there, and a baseline learned from live execs would call a restarted sensor's view of the same
    process new. argv[0] keeps the name used; it wins when it names the same file in the
    process's own root (a bare name is looked up in the usual binary directories).
    """
    name = args[0] if args else ""
    if not exe or not name or name == exe:
        return exe
    base = root / str(pid)
    if name.startswith("/"):
        candidates: tuple[str, ...] = (name,)
    elif "/" not in name:
        candidates = tuple(f"{d.rstrip('/')}/{name}" for d in _search_path(base) if d.startswith("/"))
    else:
        return exe
    try:
        target = os.stat(base / "exe")
    except OSError:
        return exe
    for path in candidates:
        try:
            st = stat_in_root(base / "root", path)
        except OSError:
            continue
        # the first hit is what a shell would have run: the name stands only if it is this binary,
        # with its directory resolved as the live exec events' are (sensor/procfacts.py)
        if (st.st_dev, st.st_ino) != (target.st_dev, target.st_ino):
            return exe
        directory, _, file = path.rpartition("/")
        try:
            return f"{resolve_in_root(base / 'root', directory or '/').rstrip('/')}/{file}"
        except OSError:
            return path
    return exe


def _search_path(base: Path) -> list[str]:
    """The process's own PATH, in order (a shell finds a bare name in its first directory that
    has it: /usr/bin before /bin on Docker's default, which matters where /bin links to usr/bin)."""
    try:
        for entry in (base / "environ").read_bytes().split(b"\0"):
            if entry.startswith(b"PATH="):
                return entry[5:].decode("utf-8", "replace").split(":")
    except OSError:
        pass
    return list(_DEFAULT_PATH)


def _seed_files(root: Path) -> dict[int, Proc]:
    try:
        pids = [int(n) for n in os.listdir(root) if n.isdigit()]
    except OSError:
        return {}
    out: dict[int, Proc] = {}
    for pid in pids:
        proc = read_proc(root, pid)
        if proc is not None:
            out[pid] = proc
    return out


def stat_in_root(root: Path, path: str) -> os.stat_result:
    """``stat`` of ``path`` inside another root (a container's ``/proc/<pid>/root``), following its
    symlinks there. Walking through the magic link alone would resolve an absolute link target,
    such as busybox's ``/bin/sh -> /bin/busybox``, against the sensor's own root."""
    return os.stat(root / resolve_in_root(root, path).lstrip("/"))


def resolve_in_root(root: Path, path: str) -> str:
    """``path`` with every symlink in it followed inside ``root`` (absolute targets start again at
    ``root``, never the sensor's own ``/``), as an absolute path in that root: ``/bin`` where
    ``/bin -> usr/bin`` gives ``/usr/bin``. OSError if a component is missing or loops."""
    parts = [p for p in path.split("/") if p]
    done: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part in (".", ".."):
            if part == ".." and done:
                done.pop()
            continue
        try:
            target = os.readlink(root.joinpath(*done, part))
        except OSError as err:
            if err.errno != errno.EINVAL:  # EINVAL: not a link, an ordinary component
                raise
            done.append(part)
            continue
        hops += 1
        if hops > 40:
            raise OSError(errno.ELOOP, "too many levels of symbolic links", path)
        if target.startswith("/"):
            done = []
        parts = [p for p in target.split("/") if p] + parts
    return "/" + "/".join(done)


def read_proc(root: Path, pid: int) -> Proc | None:
    """One process from ``<root>/<pid>``; None if it is gone. exe "" for kernel threads/no access."""
    base = root / str(pid)
    try:
        stat = (base / "stat").read_text(encoding="utf-8", errors="replace")
        # comm may contain spaces and parentheses: the fields after the LAST ')' are fixed.
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return None
    try:
        exe = os.readlink(base / "exe")
    except OSError:
        exe = ""
    try:
        raw = (base / "cmdline").read_bytes()
        args = tuple(a.decode("utf-8", "replace") for a in raw.split(b"\0") if a)
    except OSError:
        args = ()
    comm = stat[stat.find("(") + 1:stat.rindex(")")]
    return Proc(ppid, exec_name(root, pid, exe, args) or _unnamed(comm), args)
