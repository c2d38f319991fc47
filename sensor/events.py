"""The one event/finding schema shared by every stage (stdlib only).

Every stage — decoders, enrichment, models, rules, recorder, exporter, collector — speaks these
frozen dataclasses. They serialise to plain dicts (``to_dict``/``from_dict``) for msgpack journals,
spools and model files; protobuf appears only at the gRPC boundary (collector/convert.py).

Times are wall-clock nanoseconds since the epoch (``time_ns``); the decoder converts the kernel's
monotonic ``ktime_ns`` once, so every later stage compares like with like.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Mapping

# Event kinds. DESIGN.md §4 names the first seven; ``open`` and ``sys`` carry the sensitive-file
# and sensitive-syscall events the rules need.
EXEC: Final = "exec"
EXIT: Final = "exit"
FORK: Final = "fork"
CONNECT: Final = "connect"
ACCEPT: Final = "accept"
LISTEN: Final = "listen"
SYSCALL: Final = "syscall"  # first time a (cgroup, syscall nr) pair is seen; count in ``count``
OPEN: Final = "open"  # open of a sensitive path (prefix-filtered in the kernel)
SYS: Final = "sys"  # a sensitive syscall (ptrace, mount, unshare, setns, ...), name in ``syscall``
KINDS: Final = (EXEC, EXIT, FORK, CONNECT, ACCEPT, LISTEN, SYSCALL, OPEN, SYS)
NETWORK_KINDS: Final = frozenset({CONNECT, ACCEPT, LISTEN})

HOST: Final = "host"  # container_id/container_name/image of processes outside any container

# Falco's priority names, most severe first.
PRIORITIES: Final = (
    "EMERGENCY", "ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFORMATIONAL", "DEBUG",
)

# Finding kinds produced by the behavioural models; rule hits use kind "rule".
NEW_PROCESS: Final = "new_process"
NEW_PARENT: Final = "new_parent"
NEW_LISTEN_PORT: Final = "new_listen_port"
NEW_OUTBOUND: Final = "new_outbound"
NEW_SYSCALL: Final = "new_syscall"
RATE_ANOMALY: Final = "rate_anomaly"
RULE: Final = "rule"
BANNED_PROCESS: Final = "banned_process"
FINDING_KINDS: Final = (
    NEW_PROCESS, NEW_PARENT, NEW_LISTEN_PORT, NEW_OUTBOUND, NEW_SYSCALL, RATE_ANOMALY, RULE,
    BANNED_PROCESS,
)

# Bits of ``Event.flags`` on an ``exec`` (on ``open`` it holds open(2)'s flags): how its argv
# was obtained and what its standard descriptors are.
ARGS_UNREAD: Final = 8  # the kernel could not read some argv (page not faulted in): entries empty
ARGS_FROM_PROC: Final = 16  # ... so args were read from /proc/PID/cmdline after the exec instead
# fd 0, 1 or 2 is a network socket: its endpoints are in saddr/sport/daddr/dport (also set on the
# connect of an interpreter that put the connected socket on its fd 0-2)
STDIO_SOCKET: Final = 32
# the name the process runs under is not the file executed: a multi-call binary's applet (``busybox
# nc``, ``exec -a nc /bin/ls`` where ls is busybox: exe then names the applet next to the binary, and
# ``path`` holds the file executed), or an argv[0] that names another program (``exec -a``)
NAME_MISMATCH: Final = 64
# drift: the file run is not part of the image. EXE_UPPER_LAYER: it is in the container's overlay
# upper layer (written or modified after the container started); EXE_FROM_MEMFD: an anonymous
# memory file; EXE_DELETED: its file was deleted (after or before the exec)
EXE_UPPER_LAYER: Final = 128
EXE_FROM_MEMFD: Final = 256
EXE_DELETED: Final = 512
# connect/accept/listen from a lean-profile socket hook: seen before the operation (ret is 0, the
# result is not known) and without the socket's descriptor
NET_HOOK: Final = 1024
# an exec session: the process, or an ancestor, was started by the container runtime in a running
# container and is not the container's init (docker/podman exec, CRI Exec/ExecSync: kubectl exec and
# exec probes); EXEC_TTY: that session's stdin was a terminal (``docker exec -t``). Set on every
# kind but ``open`` (whose flags are open(2)'s: O_NONBLOCK and O_DSYNC have these values there)
EXEC_SESSION: Final = 2048
EXEC_TTY: Final = 4096

# Response actions, weakest first.
ACTIONS: Final = ("none", "alert", "kill-process", "pause-container", "kill-container")


# Not frozen=True: a frozen dataclass sets each of its ~40 fields through object.__setattr__ in
# __init__, 6 µs per event against 0.9 µs here, and events are built at ring-buffer rate. Events
# are still values by convention: nothing mutates one it did not just build (the enricher fills
# fields of events it owns, see Enricher.enrich_owned); hashing stays field-based.
@dataclass(slots=True, unsafe_hash=True)
class Event:
    """One kernel observation, attributed to a process and (maybe) a container.

    Fields that do not apply to a kind keep their zero value ("" / 0 / ()). Network addresses are
    text (``"127.0.0.1"``, ``"::1"``); ``proto`` is ``"tcp"``/``"udp"``/``""``; ``family`` is
    ``"ipv4"``/``"ipv6"``/``"unix"``/``""``. ``ret`` is the syscall result (negative errno on
    failure) where the kind has one; ``exit_code`` is the process exit status for ``exit``.
    ``ancestry`` lists parent executables, nearest first (``ancestry[0]`` is the parent's exe).
    """

    kind: str
    time_ns: int
    pid: int = 0
    tid: int = 0
    ppid: int = 0
    uid: int = 0
    gid: int = 0
    comm: str = ""
    exe: str = ""
    args: tuple[str, ...] = ()
    cgroup_id: int = 0
    container_id: str = ""
    container_name: str = ""
    image: str = ""  # repo:tag as the runtime reports it
    image_id: str = ""  # image digest / id (sha256:...)
    runtime: str = ""  # docker, containerd, crio, podman, kubepods, host, unknown
    pexe: str = ""  # parent executable
    ancestry: tuple[str, ...] = ()
    # nearest ancestor the sensor has reported (kernel lineage): a child of fork-only processes
    # is adopted through it, since forks themselves are not sent (0: unknown)
    ancestor_pid: int = 0
    # network
    proto: str = ""
    family: str = ""
    saddr: str = ""
    sport: int = 0
    daddr: str = ""
    dport: int = 0
    ret: int = 0
    # process lifecycle
    exit_code: int = 0
    child_pid: int = 0
    # syscall profile / sensitive syscalls
    syscall: str = ""
    syscall_nr: int = -1
    count: int = 0
    sc_args: tuple[int, ...] = ()
    # files
    # open: the path; connect with family "unix": the socket path; exec with NAME_MISMATCH: the file run
    path: str = ""
    # open: open(2) flags; exec: ARGS_UNREAD, ARGS_FROM_PROC, STDIO_SOCKET, NAME_MISMATCH, EXE_*;
    # connect: STDIO_SOCKET, NET_HOOK; every kind but open: EXEC_SESSION, EXEC_TTY
    flags: int = 0
    # exec outcome
    killed: bool = False  # killed in the kernel at exec (banned process in enforce mode)
    truncated: bool = False  # argv longer than the kernel captures (64 entries, 4096 bytes): the rest is cut
    # Kubernetes and the image's repository digest, from a CRI runtime ("" / () elsewhere)
    pod: str = ""
    namespace: str = ""
    labels: tuple[tuple[str, str], ...] = ()  # the pod's labels, sorted by key
    image_digest: str = ""  # repo@sha256:... (image_id is the image's own id)

    @property
    def image_key(self) -> str:
        """The key a baseline is stored under: image digest, else repo:tag, else ``host``."""
        return self.image_id or self.image or HOST

    def to_dict(self) -> dict[str, Any]:
        """A plain dict with only non-default fields (compact msgpack)."""
        return {k: v for k, v in _fields_of(self) if v != _EVENT_DEFAULTS.get(k, _MISSING)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Event:
        """Inverse of :meth:`to_dict`; unknown keys are ignored (forward compatible), lists
        become tuples. Raises ``TypeError``/``ValueError`` on missing ``kind``/``time_ns``."""
        if "kind" not in data or "time_ns" not in data:
            raise ValueError("event record lacks 'kind' or 'time_ns'")
        fields = _EVENT_FIELDS
        kwargs: dict[str, Any] = {k: tuple(v) if type(v) is list else v for k, v in data.items() if k in fields}
        if "labels" in kwargs:  # pairs: hashable, as the event is
            kwargs["labels"] = tuple((str(p[0]), str(p[1])) for p in kwargs["labels"])
        return cls(**kwargs)

    def replace(self, **changes: Any) -> Event:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, slots=True)
class Finding:
    """A deviation or rule hit about one event, with the reasons an analyst needs.

    ``explanation`` is free-form but conventionally holds ``expected`` (nearest known items),
    ``seen``, ``learned_s`` (observed learning time), ``containers`` (how many contributed),
    ``score`` and ``threshold`` for rate anomalies. ``action`` is what policy decided
    (one of :data:`ACTIONS`); ``during_loss`` marks findings made while events were dropped.
    """

    kind: str
    rule: str
    priority: str
    output: str
    event: Event
    time_ns: int = 0
    source: str = "model"  # model | rule | policy
    tags: tuple[str, ...] = ()
    explanation: Mapping[str, Any] = field(default_factory=dict)
    action: str = "alert"
    mode: str = ""  # image mode when found: learn | alert | enforce
    during_loss: bool = False
    # the process's ancestors as the sensor's process table knew them when it was found, nearest
    # first: (pid, executable, argv) a level; ``ancestors_end`` says why the chain stops where it
    # does when that is not the top ("" for the top, or no process at all)
    ancestors: tuple[tuple[int, str, tuple[str, ...]], ...] = ()
    ancestors_end: str = ""

    @property
    def image_key(self) -> str:
        return self.event.image_key

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["event"] = self.event.to_dict()
        d["tags"] = list(self.tags)
        d["explanation"] = dict(self.explanation)
        d["ancestors"] = [[pid, exe, list(args)] for pid, exe, args in self.ancestors]
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        kwargs = {k: v for k, v in data.items() if k in _FINDING_FIELDS}
        kwargs["event"] = Event.from_dict(data["event"])
        kwargs["tags"] = tuple(data.get("tags", ()))
        kwargs["explanation"] = dict(data.get("explanation", {}))
        kwargs["ancestors"] = tuple((int(pid), str(exe), tuple(args)) for pid, exe, args in data.get("ancestors", ()))
        return cls(**kwargs)

    def replace(self, **changes: Any) -> Finding:
        return dataclasses.replace(self, **changes)


_MISSING: Final = object()
_EVENT_FIELDS: Final = frozenset(f.name for f in dataclasses.fields(Event))
_FINDING_FIELDS: Final = frozenset(f.name for f in dataclasses.fields(Finding))
_EVENT_DEFAULTS: Final[dict[str, Any]] = {
    f.name: f.default for f in dataclasses.fields(Event) if f.default is not dataclasses.MISSING
}


def _fields_of(ev: Event) -> list[tuple[str, Any]]:
    return [(name, getattr(ev, name)) for name in _EVENT_ORDER]


_EVENT_ORDER: Final = tuple(f.name for f in dataclasses.fields(Event))


# errnos the kernel keeps to itself (include/linux/errno.h): a syscall a signal interrupted before
# it finished, e.g. a connect whose caller gave up (``timeout 2 nc``), returns -ERESTARTSYS to the
# tracepoint although the process sees EINTR
_KERNEL_ERRNOS: Final = {512: "ERESTARTSYS", 513: "ERESTARTNOINTR", 514: "ERESTARTNOHAND", 516: "ERESTART_RESTARTBLOCK"}
_ERRNO_MEANING: Final = {"ECONNREFUSED": "refused", "ETIMEDOUT": "timed out", "EHOSTUNREACH": "host unreachable",
                         "ENETUNREACH": "network unreachable", "EINTR": "interrupted: its caller gave up",
                         "ERESTARTSYS": "interrupted: its caller gave up before an answer"}


def errno_name(ret: int) -> str:
    """A negative syscall result's errno name (ECONNREFUSED; the kernel's own ERESTARTSYS too);
    ``str(ret)`` for one with no name."""
    import errno

    return errno.errorcode.get(-ret) or _KERNEL_ERRNOS.get(-ret) or str(ret)


def failure_text(ret: int) -> str:
    """How a failed syscall reads in a finding: its errno name and, where one helps, what it means
    ("ECONNREFUSED, refused"; "ERESTARTSYS, interrupted: its caller gave up before an answer")."""
    name = errno_name(ret)
    meaning = _ERRNO_MEANING.get(name)
    return f"{name}, {meaning}" if meaning else name


def rfc3339(time_ns: int) -> str:
    """``time_ns`` (ns since the epoch, UTC) as RFC 3339 with nanoseconds: 2026-12-03T09:33:34.000000001Z.
    Every time the project prints or exports is written by this one function."""
    dt = datetime.fromtimestamp(time_ns // 1_000_000_000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{time_ns % 1_000_000_000:09d}Z"
