"""Artefacts derived from a learned baseline: a Docker/OCI seccomp profile from the learned
syscall set, and a Kubernetes NetworkPolicy from learned listening ports and egress."""

from __future__ import annotations

import ipaddress
from typing import Any

from models.baseline import ImageBaseline
from sensor import syscalls

# Needed by every process to start and exit even if the window missed them.
_ALWAYS = ("execve", "exit", "exit_group", "rt_sigreturn", "brk", "mmap", "arch_prctl", "futex")


def seccomp_profile(b: ImageBaseline) -> dict[str, Any]:
    """A seccomp profile allowing exactly the learned syscalls (plus process start/exit)."""
    learned = {syscalls.name_of(int(k[0])) for k in b.profile.items["syscall"]}
    names = sorted(learned | set(_ALWAYS))
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}],
        "comment": f"learned by cgsentry for {b.image or b.key}: {len(learned)} syscalls over "
                   f"{b.learned_s():.0f}s observed on {len(b.profile.containers)} container(s)",
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
