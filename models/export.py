"""Artefacts derived from a learned baseline: a Docker/OCI seccomp profile from the learned
syscall set, and a Kubernetes NetworkPolicy from learned listening ports and egress."""

from __future__ import annotations

import ipaddress
from typing import Any

from models.baseline import ImageBaseline
from sensor import syscalls

# Not the image's behaviour but what starting it takes, allowed even if learning missed them
# (profiling starts with a container's first event, after these have run). A seccomp profile is
# loaded by the runtime (runc, crun) before it drops privileges, closes its descriptors and execs
# the entrypoint; on Docker 20.10 that needs the calls below, found by running a container under
# SCMP_ACT_LOG until the kernel logged nothing. The runtime is Go, whose scheduler, signals and
# garbage collector may run any of theirs in that window; the loader and libc of the entrypoint
# need theirs before its first instruction. tests/kernel/test_seccomp_export.py starts a container
# under an exported profile.
_RUNTIME = (
    # runc between seccomp and execve: descriptors, credentials, capabilities, working directory
    "capget", "capset", "chdir", "close", "close_range", "epoll_ctl", "epoll_pwait", "execve", "execveat",
    "faccessat", "faccessat2", "fchdir", "fcntl", "fstat", "fstatfs", "getcwd", "getdents64", "getegid",
    "geteuid", "getgid", "getpid", "getppid", "gettid", "getuid", "newfstatat", "openat", "prctl", "read",
    "readlink", "readlinkat", "setgid", "setgroups", "setresgid", "setresuid", "setuid", "statx", "write",
    # Go's runtime in that window: threads, futexes, preemption signals, memory
    "clone", "futex", "madvise", "mmap", "mprotect", "munmap", "nanosleep", "rt_sigaction", "rt_sigprocmask",
    "rt_sigreturn", "sched_yield", "sigaltstack", "tgkill",
    # the entrypoint's loader (glibc's access/pread64, musl's open) and libc, and every process's end
    "access", "arch_prctl", "brk", "exit", "exit_group", "getrandom", "open", "pread64", "prlimit64", "rseq",
    "set_robust_list", "set_tid_address", "uname",
)


def seccomp_profile(b: ImageBaseline) -> dict[str, Any]:
    """A seccomp profile allowing exactly the learned syscalls, plus what starting a container takes."""
    learned = {syscalls.name_of(int(k[0])) for k in b.profile.items["syscall"]}
    names = sorted(learned | set(_RUNTIME))
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}],
        "comment": f"learned by cgsentry for {b.image or b.key}: {len(learned)} syscalls over "
                   f"{b.learned_s():.0f}s observed on {len(b.profile.containers)} container(s), "
                   f"plus {len(set(_RUNTIME) - learned)} the container runtime needs to start it",
    }


def network_policy(b: ImageBaseline, name: str = "", labels: dict[str, str] | None = None) -> dict[str, Any]:
    """NetworkPolicy: ingress to learned listening ports, egress to learned endpoints."""
    ports = sorted({(k[0], int(k[1])) for k in b.profile.items["listen"] if k[1]})
    ingress = [{"ports": [{"protocol": p.upper(), "port": port} for p, port in ports]}] if ports else []
    egress = []
    for proto, port, addr in sorted(b.profile.items["outbound"], key=repr):
        rule: dict[str, Any] = {"ports": [{"protocol": str(proto).upper(), "port": int(port)}]}
        try:
            net = ipaddress.ip_network(str(addr), strict=False)
            rule["to"] = [{"ipBlock": {"cidr": str(net)}}]
        except ValueError:
            pass
        egress.append(rule)
    repo = (b.image or b.key).rsplit(":", 1)[0].rsplit("/", 1)[-1]
    safe = "".join(c if c.isalnum() else "-" for c in repo).strip("-").lower() or "image"
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name or f"cgsentry-{safe}",
                     "annotations": {"cgsentry.io/image": b.image or b.key,
                                     "cgsentry.io/learned-seconds": f"{b.learned_s():.0f}"}},
        "spec": {"podSelector": {"matchLabels": labels or {"app": safe}},
                 "policyTypes": ["Ingress", "Egress"], "ingress": ingress, "egress": egress},
    }
