"""Artefacts derived from a learned baseline: a Docker/OCI seccomp profile from the learned
syscall set, and a Kubernetes NetworkPolicy from learned listening ports and egress."""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any

from models.baseline import ImageBaseline, ModelConfig
from models.errors import ModelError
from sensor import syscalls
from sensor.errors import EX_DATAERR

# What Docker's default seccomp profile (moby/profiles seccomp/default.json) denies a container with
# Docker's default capabilities: calls it never allows, and calls it allows only with a capability
# Docker does not grant by default (CAP_SYS_ADMIN, SYS_MODULE, SYS_PTRACE, SYS_TIME, SYS_BOOT, ...).
# An exported profile replaces Docker's, so a learned one of these (an attacker's mount or unshare
# while the image learned, say) would be allowed where Docker denies it: never exported unless the
# operator says so. Left out: calls Docker allows by argument (clone without namespace flags,
# socket by family, personality by value) and ptrace, allowed on kernels >= 4.8.
DOCKER_BLOCKED = frozenset((
    "_sysctl", "acct", "add_key", "bpf", "clock_settime", "clock_settime64", "create_module", "delete_module",
    "fanotify_init", "finit_module", "fsconfig", "fsmount", "fsopen", "fspick", "get_kernel_syms",
    "get_mempolicy", "init_module", "ioperm", "iopl", "kcmp", "kexec_file_load", "kexec_load", "keyctl",
    "lookup_dcookie", "mbind", "mount", "mount_setattr", "move_mount", "move_pages", "nfsservctl",
    "open_by_handle_at", "open_tree", "perf_event_open", "pidfd_getfd", "pivot_root", "process_madvise",
    "query_module", "quotactl", "quotactl_fd", "reboot", "request_key", "set_mempolicy",
    "set_mempolicy_home_node", "setdomainname", "sethostname", "setns", "settimeofday", "stime", "swapoff",
    "swapon", "sysfs", "syslog", "umount", "umount2", "unshare", "uselib", "userfaultfd", "ustat", "vhangup",
    "vm86", "vm86old",
))
DNS_PORT = 53

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


def check_learned(b: ImageBaseline, force: bool, min_learn_s: float = ModelConfig().min_learn_s) -> str:
    """"" if ``b`` learned long enough to export, else a warning with ``force`` and a ModelError
    (exit 65) without: a baseline of a few seconds would deny what the image has not done yet."""
    if b.learned_s() >= min_learn_s:
        return ""
    what = (f"{b.image or b.key}: learned for only {b.learned_s():.0f}s (less than {min_learn_s:.0f}s), so the "
            "export denies whatever the image has not done yet")
    if not force:
        raise ModelError(f"{what}; learn longer, or give --force to export it anyway", exit_code=EX_DATAERR)
    return what


def seccomp_profile(b: ImageBaseline, allow_blocked: bool = False) -> dict[str, Any]:
    """A seccomp profile allowing exactly the learned syscalls, plus what starting a container
    takes, minus what Docker's default profile blocks (DOCKER_BLOCKED) unless ``allow_blocked``;
    the comment names any learned call left out."""
    learned = {syscalls.name_of(int(k[0])) for k in b.profile.items["syscall"]}
    dropped = sorted(learned & DOCKER_BLOCKED) if not allow_blocked else []
    names = sorted((learned - set(dropped)) | set(_RUNTIME))
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}],
        "comment": f"learned by cgsentry for {b.image or b.key}: {len(learned)} syscalls over "
                   f"{b.learned_s():.0f}s observed on {len(b.profile.containers)} container(s), "
                   f"plus {len(set(_RUNTIME) - learned)} the container runtime needs to start it"
                   + (f"; left out, as Docker's default profile blocks them: {', '.join(dropped)}" if dropped else ""),
    }


def blocked_learned(b: ImageBaseline) -> list[str]:
    """The learned syscalls Docker's default profile blocks (what ``--allow-blocked`` lets through)."""
    return sorted({syscalls.name_of(int(k[0])) for k in b.profile.items["syscall"]} & DOCKER_BLOCKED)


def network_policy(b: ImageBaseline, name: str = "", labels: dict[str, str] | None = None) -> dict[str, Any]:
    """NetworkPolicy: ingress to learned listening ports, egress to learned endpoints, and DNS
    (UDP and TCP 53 to any address) when the image resolved names (connected to port 53): the
    cluster's DNS service address is rewritten to a DNS pod's before the policy is matched, so
    the learned service address would not let it through. Named by the image's repository and a
    hash of the whole image name, so two images (other registry, team or tag) never collide."""
    ports = sorted({(k[0], int(k[1])) for k in b.profile.items["listen"] if k[1]})
    ingress = [{"ports": [{"protocol": p.upper(), "port": port} for p, port in ports]}] if ports else []
    egress = []
    dns = False
    for proto, port, addr in sorted(b.profile.items["outbound"], key=repr):
        if int(port) == DNS_PORT:
            dns = True
            continue
        rule: dict[str, Any] = {"ports": [{"protocol": str(proto).upper(), "port": int(port)}]}
        try:
            net = ipaddress.ip_network(str(addr), strict=False)
            rule["to"] = [{"ipBlock": {"cidr": str(net)}}]
        except ValueError:
            pass
        egress.append(rule)
    if dns:
        egress.append({"ports": [{"protocol": "UDP", "port": DNS_PORT}, {"protocol": "TCP", "port": DNS_PORT}]})
    image = b.image or b.key
    repo = image.rsplit(":", 1)[0].rsplit("/", 1)[-1] if "@" not in image else image.split("@")[0].rsplit("/", 1)[-1]
    safe = "".join(c if c.isalnum() else "-" for c in repo).strip("-").lower()[:40].strip("-") or "image"
    digest = hashlib.sha256(image.encode()).hexdigest()[:10]
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": name or f"cgsentry-{safe}-{digest}",
                     "annotations": {"cgsentry.io/image": image,
                                     "cgsentry.io/learned-seconds": f"{b.learned_s():.0f}"}},
        "spec": {"podSelector": {"matchLabels": labels or {"app": safe}},
                 "policyTypes": ["Ingress", "Egress"], "ingress": ingress, "egress": egress},
    }
