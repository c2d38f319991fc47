"""Rule fields: Falco's names mapped onto :class:`sensor.events.Event`, each with a type.

Where Falco has a field with the same meaning we use its name, so analysts' habits and community
rules carry over. Network fields follow Falco's client/server convention: for ``connect`` the
server is the remote side, for ``accept``/``listen`` it is the local side; ``fd.dip``/``fd.dport``
(destination) are aliases of the server side.
"""

from __future__ import annotations

import operator
import os
from dataclasses import dataclass
from typing import Any, Callable, Final

from sensor.events import (
    ARGS_FROM_PROC,
    ARGS_UNREAD,
    EXE_DELETED,
    EXE_FROM_MEMFD,
    EXE_UPPER_LAYER,
    EXEC_SESSION,
    EXEC_TTY,
    NAME_MISMATCH,
    STDIO_SOCKET,
    Event,
    errno_name,
)

STR: Final = "str"
INT: Final = "int"
BOOL: Final = "bool"
STRS: Final = "strs"  # several values; an operator matches if it matches any of them

_EVT_TYPE: Final = {"exec": "execve", "fork": "clone", "exit": "procexit", "connect": "connect",
                    "accept": "accept", "listen": "listen", "open": "openat"}
# evt.type values -> event kinds (everything else is a sensitive syscall, kind "sys")
EVT_TYPE_KINDS: Final = {"execve": "exec", "execveat": "exec", "clone": "fork", "fork": "fork",
                         "vfork": "fork", "clone3": "fork", "procexit": "exit", "connect": "connect",
                         "accept": "accept", "accept4": "accept", "listen": "listen",
                         "bind": "listen", "open": "open", "openat": "open", "openat2": "open"}
_WRITE_FLAGS: Final = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    get: Callable[[Event], Any]
    doc: str = ""
    indexed: bool = False  # takes [N]: get(ev) returns a sequence, indexed at compile time
    attr: str = ""  # the Event attribute holding the value, when it is one: compiled rules read it inline
    keyed: bool = False  # takes [KEY]: get(ev) returns (key, value) pairs, looked up at compile time


def _attr(name: str, ftype: str, attr: str, doc: str = "", indexed: bool = False) -> Field:
    return Field(name, ftype, operator.attrgetter(attr), doc, indexed, attr)


def labels_text(labels: tuple[tuple[str, str], ...]) -> str:
    """Pod labels as Falco's k8s.pod.labels shows them: key:value, comma separated."""
    return ", ".join(f"{k}:{v}" for k, v in labels)


def evt_type(ev: Event) -> str:
    return _EVT_TYPE.get(ev.kind) or ev.syscall


def _res(ev: Event) -> str:
    if ev.ret >= 0:
        return "SUCCESS"
    return errno_name(ev.ret)


def _base(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _stdio_socket(ev: Event) -> bool:
    """An exec whose fd 0, 1 or 2 is a network socket, or a connect whose socket its interpreter put
    on fd 0-2 (sensor/procfacts.py): the socket's local end is in saddr/sport, remote in daddr/dport."""
    return ev.kind in ("exec", "connect") and bool(ev.flags & STDIO_SOCKET)


def _name_mismatch(ev: Event) -> bool:
    return ev.kind == "exec" and bool(ev.flags & NAME_MISMATCH)


def _exec_session(ev: Event) -> bool:
    """In an exec session (sensor/sessions.py); open events carry open(2)'s flags instead."""
    return ev.kind != "open" and bool(ev.flags & EXEC_SESSION)


def _tty(ev: Event) -> int:
    return 1 if ev.kind != "open" and ev.flags & EXEC_TTY else 0


def _exe_file(ev: Event) -> str:
    """The file an exec ran: its exe, unless exe names the applet a multi-call binary ran."""
    return ev.path if _name_mismatch(ev) and ev.path else ev.exe


def _server(ev: Event) -> tuple[str, int]:
    return (ev.daddr, ev.dport) if ev.kind in ("connect", "exec") else (ev.saddr, ev.sport)


def _client(ev: Event) -> tuple[str, int]:
    return (ev.saddr, ev.sport) if ev.kind in ("connect", "exec") else (ev.daddr, ev.dport)


def _fd_name(ev: Event) -> str:
    if ev.kind == "open" or ev.family == "unix":
        return ev.path
    if ev.kind in ("connect", "accept", "listen") or _stdio_socket(ev):
        (cip, cport), (sip, sport) = _client(ev), _server(ev)
        return f"{cip}:{cport}->{sip}:{sport}" if ev.kind != "listen" else f"{sip}:{sport}"
    return ""


def _fd_type(ev: Event) -> str:
    if ev.kind == "open":
        return "file"
    return ev.family if ev.kind != "exec" or _stdio_socket(ev) else ""


def _typechar(ev: Event) -> str:
    return {"file": "f", "ipv4": "4", "ipv6": "6", "unix": "u"}.get(_fd_type(ev), "")


def _cmdline(ev: Event) -> str:
    """comm and arguments (argv as given when its name is not the file's: ``busybox nc ...``,
    ``exec -a``); a command line the sensor could not get whole says so at its end."""
    if ev.args and _name_mismatch(ev):
        line = " ".join(ev.args)
    else:
        line = " ".join((ev.comm, *ev.args[1:])) if ev.args else ev.comm
    if ev.truncated:
        line += " [truncated]"
    if ev.kind == "exec" and ev.flags & ARGS_UNREAD and not ev.flags & ARGS_FROM_PROC:
        line += " [arguments unread]"
    return line


def _image_repo(ev: Event) -> str:
    image = ev.image.split("@", 1)[0]
    head, _, tail = image.rpartition(":")
    return head if head and "/" not in tail else image


def _image_tag(ev: Event) -> str:
    image = ev.image.split("@", 1)[0]
    head, _, tail = image.rpartition(":")
    return tail if head and "/" not in tail else ""


def _anames(ev: Event) -> tuple[str, ...]:
    return tuple(_base(a) for a in ev.ancestry)


def _fields() -> list[Field]:
    return [
        Field("evt.type", STR, evt_type, "execve, connect, accept, listen, openat, clone, procexit, "
              "or the sensitive syscall's name"),
        _attr("evt.time", INT, "time_ns", "epoch nanoseconds"),
        Field("evt.res", STR, _res, "SUCCESS or the errno name (ECONNREFUSED ...)"),
        _attr("evt.rawres", INT, "ret", "raw syscall result"),
        Field("evt.failed", BOOL, lambda e: e.ret < 0),
        Field("evt.is_open_write", BOOL, lambda e: e.kind == "open" and bool(e.flags & _WRITE_FLAGS)),
        Field("evt.is_open_read", BOOL, lambda e: e.kind == "open" and (e.flags & 3) != os.O_WRONLY),
        _attr("evt.arg.flags", INT, "flags", "open(2) flags"),
        _attr("evt.arg", INT, "sc_args", "syscall argument N", indexed=True),
        _attr("proc.name", STR, "comm"),
        _attr("proc.exe", STR, "exe"),
        _attr("proc.exepath", STR, "exe"),
        Field("proc.args", STR, lambda e: " ".join(e.args[1:])),
        Field("proc.cmdline", STR, _cmdline),
        _attr("proc.pid", INT, "pid"),
        _attr("proc.ppid", INT, "ppid"),
        Field("proc.pname", STR, lambda e: _base(e.pexe)),
        _attr("proc.pexe", STR, "pexe"),
        _attr("proc.pexepath", STR, "pexe"),
        Field("proc.aname", STRS, _anames, "ancestor names; [1] parent, [2] grandparent, ...",
              indexed=True),
        _attr("proc.aexe", STRS, "ancestry", "ancestor executables", indexed=True),
        _attr("proc.is_exe_killed", BOOL, "killed"),
        Field("proc.stdio_socket", BOOL, _stdio_socket, "the shell's or interpreter's stdin, stdout or stderr is "
              "a network socket, at exec or at its connect (remote end: fd.rip, fd.rport; both: fd.name)"),
        Field("proc.name_mismatch", BOOL, _name_mismatch, "the name it runs under is not the file run: a "
              "multi-call binary's applet (busybox nc), or an argv[0] naming another program (exec -a)"),
        Field("proc.is_exe_upper_layer", BOOL, lambda e: e.kind == "exec" and bool(e.flags & EXE_UPPER_LAYER),
              "the file run is in the container's overlay upper layer: written or modified after it started"),
        Field("proc.is_exe_from_memfd", BOOL, lambda e: e.kind == "exec" and (
            bool(e.flags & EXE_FROM_MEMFD) or e.exe.startswith(("/memfd:", "memfd:"))),
              "the file run is an anonymous memory file (memfd_create), also when exec'd by descriptor"),
        Field("proc.is_exe_deleted", BOOL, lambda e: e.kind == "exec" and bool(e.flags & EXE_DELETED),
              "the file run was already deleted when the sensor looked"),
        Field("proc.exe_file", STR, _exe_file, "the file run (/bin/busybox for busybox nc, whose proc.exe "
              "and proc.name name the applet)"),
        Field("proc.is_exec_session", BOOL, _exec_session, "started by the runtime in a running container, "
              "not its init, or a descendant of such a process: docker/podman exec, kubectl/crictl exec, exec "
              "probes (every event kind but file opens)"),
        Field("proc.tty", INT, _tty, "non-zero in an exec session whose stdin was a terminal (docker exec -t, "
              "kubectl exec -t). Falco's holds the terminal's device number; here it is 1"),
        _attr("proc.args_truncated", BOOL, "truncated", "argv longer than the sensor keeps (64 entries, 4096 bytes)"),
        _attr("user.uid", INT, "uid"),
        Field("user.name", STR, lambda e: "root" if e.uid == 0 else str(e.uid)),
        _attr("group.gid", INT, "gid"),
        Field("container.id", STR, lambda e: e.container_id[:12]),
        _attr("container.full_id", STR, "container_id"),
        _attr("container.name", STR, "container_name"),
        _attr("container.image", STR, "image"),
        Field("container.image.repository", STR, _image_repo),
        Field("container.image.tag", STR, _image_tag),
        _attr("container.image.id", STR, "image_id"),
        Field("container.image.digest", STR, lambda e: e.image_digest.rpartition("@")[2] or e.image_id,
              "the repository digest when the runtime knows it, else the image id"),
        _attr("k8s.ns.name", STR, "namespace", "Kubernetes namespace (CRI runtimes)"),
        _attr("k8s.pod.name", STR, "pod", "Kubernetes pod name"),
        Field("k8s.pod.labels", STR, lambda e: labels_text(e.labels),
              "the pod's labels as key:value, comma separated"),
        Field("k8s.pod.label", STR, operator.attrgetter("labels"), "one pod label: k8s.pod.label[app]",
              keyed=True, attr="labels"),
        Field("fd.name", STR, _fd_name),
        Field("fd.directory", STR, lambda e: e.path.rsplit("/", 1)[0] if e.kind == "open" else ""),
        Field("fd.filename", STR, lambda e: _base(e.path) if e.kind == "open" else ""),
        Field("fd.type", STR, _fd_type, "file, ipv4, ipv6, unix"),
        Field("fd.typechar", STR, _typechar),
        _attr("fd.l4proto", STR, "proto"),
        Field("fd.sip", STR, lambda e: _server(e)[0], "server IP"),
        Field("fd.sport", INT, lambda e: _server(e)[1], "server port"),
        Field("fd.cip", STR, lambda e: _client(e)[0], "client IP"),
        Field("fd.cport", INT, lambda e: _client(e)[1], "client port"),
        Field("fd.dip", STR, lambda e: _server(e)[0], "destination (server) IP"),
        Field("fd.dport", INT, lambda e: _server(e)[1], "destination (server) port"),
        Field("fd.lip", STR, lambda e: e.saddr),
        _attr("fd.lport", INT, "sport"),
        _attr("fd.rip", STR, "daddr"),
        _attr("fd.rport", INT, "dport"),
    ]


FIELDS: Final[dict[str, Field]] = {f.name: f for f in _fields()}
