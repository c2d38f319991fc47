"""`cgsentry-sensor model export` through the real CLI on a real model store: seccomp profiles
never allow what Docker's default profile blocks unless asked, NetworkPolicies are named per
image and let DNS out when the image resolved names, a baseline of seconds is refused without
--force, and ``-o -`` is stdout."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

from bench.workloads import IMAGE, IMAGE_ID, fleet
from models.baseline import ModelConfig
from models.engine import ModelEngine
from sensor.agent.cli import main
from sensor.events import Event

CFG = ModelConfig(min_learn_s=60, stable_s=30)
MOUNT, UNSHARE, PTRACE, READ = 165, 272, 101, 0  # x86_64 syscall numbers


def _store(tmp_path: Path, seconds: int, image: str = IMAGE, key: str = IMAGE_ID,
           extra: tuple[Event, ...] = ()) -> Path:
    """A model store holding one baseline of ``image`` learned for about ``seconds``."""
    eng = ModelEngine(CFG)
    evs = [e.replace(image=image, image_id=key) for e in fleet(1, seconds)]
    for nr in (READ, MOUNT, UNSHARE, PTRACE):  # first-seen syscall records while learning
        eng.handle(Event("syscall", evs[0].time_ns, syscall_nr=nr, container_id=evs[0].container_id,
                         image=image, image_id=key, runtime="docker"))
    for ev in sorted([*evs, *(e.replace(time_ns=evs[10].time_ns) for e in extra)], key=lambda e: e.time_ns):
        eng.handle(ev)  # the extra events while it learns
    eng.store_dir = tmp_path
    eng.save_all()
    return tmp_path


def _run(capsys: Any, store: Path, *argv: str) -> tuple[int, str, str]:
    rc = main(["model", "--store", str(store), "export", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_seccomp_export_leaves_out_what_docker_blocks_unless_allowed(tmp_path: Path, capsys: Any) -> None:
    store = _store(tmp_path, 120)
    rc, out, err = _run(capsys, store, IMAGE, "--seccomp", "-o", "-")
    names = set(json.loads(out)["syscalls"][0]["names"])
    assert rc == 0 and "read" in names and "ptrace" in names  # Docker allows ptrace on kernels >= 4.8
    assert not {"mount", "unshare"} & names
    assert err == (f"warning: {IMAGE}: left out mount, unshare, which Docker's default profile blocks "
                   "(give --allow-blocked to allow them)\n")
    assert "left out, as Docker's default profile blocks them: mount, unshare" in json.loads(out)["comment"]
    rc, out, err = _run(capsys, store, IMAGE, "--seccomp", "--allow-blocked")
    assert rc == 0 and err == "" and {"mount", "unshare"} <= set(json.loads(out)["syscalls"][0]["names"])
    target = tmp_path / "profile.json"
    rc, out, _ = _run(capsys, store, IMAGE, "--seccomp", "-o", str(target))
    assert rc == 0 and out == "" and "mount" not in json.loads(target.read_text())["syscalls"][0]["names"]


def test_a_baseline_of_seconds_is_refused_without_force(tmp_path: Path, capsys: Any) -> None:
    store = _store(tmp_path, 8)
    for kind in ("--seccomp", "--networkpolicy"):
        rc, out, err = _run(capsys, store, IMAGE, kind)
        assert rc == 65 and out == "" and err.count("\n") == 1
        assert err.startswith(f"cgsentry-sensor: {IMAGE}: learned for only ") and "give --force" in err
        rc, out, err = _run(capsys, store, IMAGE, kind, "--force")
        assert rc == 0 and out and err.startswith(f"warning: {IMAGE}: learned for only ")


def test_networkpolicies_are_named_per_image_and_let_dns_out(tmp_path: Path, capsys: Any) -> None:
    t = fleet(1, 1)[0]
    dns = Event("connect", 0, pid=50, comm="wget", exe="/usr/bin/wget", proto="udp", family="ipv4",
                daddr="10.96.0.10", dport=53, container_id=t.container_id, runtime="docker")
    docs = []
    for i, image in enumerate(("registry-a.example/team/web:1", "registry-b.example/other/web:1")):
        resolved = (dns.replace(image=image, image_id=f"sha256:{i}"),) if i == 0 else ()
        store = _store(tmp_path / str(i), 120, image, f"sha256:{i}", resolved)
        rc, out, err = _run(capsys, store, image, "--networkpolicy", "-o", "-")
        assert rc == 0 and err == ""
        docs.append(yaml.safe_load(out))
    a, b = docs
    assert a["metadata"]["name"] == "cgsentry-web-" + hashlib.sha256(b"registry-a.example/team/web:1").hexdigest()[:10]
    assert a["metadata"]["name"] != b["metadata"]["name"]
    assert {"ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]} in a["spec"]["egress"]
    assert not any(p["port"] == 53 for r in b["spec"]["egress"] for p in r["ports"])  # it never resolved names
    assert not any("to" in r for r in a["spec"]["egress"] if r["ports"][0]["port"] == 53)  # any DNS server
