"""deploy/kubernetes, checked offline (no cluster runs here): every manifest against the
Kubernetes schemas bundled by kubernetes-validate, the kustomization lists every file, and every
command line a container runs parses with the real CLI (cgsentry-sensor, cgsentry)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from collector.cli import build_parser as collector_parser
from sensor.agent.cli import build_parser as sensor_parser

DIR = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
KUBERNETES = ("1.30", "1.37")  # the oldest and newest minor versions checked
WORKLOADS = ("Deployment", "DaemonSet", "StatefulSet")


def documents() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted(DIR.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            out += [(path.name, d) for d in yaml.safe_load_all(path.read_text()) if d]
    return out


def containers(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = doc["spec"]["template"]["spec"]
    yield from spec.get("initContainers", []) + spec["containers"]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for _, d in documents() if d["kind"] == kind]


def test_kustomization_lists_every_manifest() -> None:
    k = yaml.safe_load((DIR / "kustomization.yaml").read_text())
    assert k["kind"] == "Kustomization"
    files = {p.name for p in DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(k["resources"]) == sorted(files)
    assert [i["name"] for i in k["images"]] == ["cgsentry"]


@pytest.mark.parametrize("version", KUBERNETES)
def test_every_manifest_is_valid_kubernetes(version: str) -> None:
    import kubernetes_validate

    for name, doc in documents():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as err:
            pytest.fail(f"{name}: {doc['kind']} {doc['metadata']['name']}: {err.message} at {list(err.path)}")


def test_the_pieces_are_there() -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in documents()}
    for needed in [("DaemonSet", "cgsentry-sensor"), ("Deployment", "cgsentry-collector"),
                   ("Service", "cgsentry-collector"), ("Service", "cgsentry-collector-headless"),
                   ("StatefulSet", "cgsentry-postgres"), ("Secret", "cgsentry-collector-pki"),
                   ("Secret", "cgsentry-sensor-pki"), ("Secret", "cgsentry-tokens"), ("Secret", "cgsentry-db"),
                   ("NetworkPolicy", "cgsentry-collector"), ("NetworkPolicy", "cgsentry-sensor"),
                   ("NetworkPolicy", "cgsentry-postgres"), ("PodDisruptionBudget", "cgsentry-collector")]:
        assert needed in kinds
    assert by_kind("Deployment")[0]["spec"]["replicas"] >= 2
    for doc in by_kind("Deployment") + by_kind("DaemonSet") + by_kind("StatefulSet"):
        for c in containers(doc):
            assert c["resources"]["requests"] and c["resources"]["limits"]["memory"], c["name"]
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_the_sensor_has_its_host_view_and_only_explained_capabilities() -> None:
    ds = by_kind("DaemonSet")[0]
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostPID"] is True and not spec.get("hostNetwork")
    sensor = next(containers(ds))
    ctx = sensor["securityContext"]
    assert not ctx.get("privileged") and "SYS_ADMIN" not in ctx["capabilities"]["add"]
    assert {"BPF", "PERFMON"} <= set(ctx["capabilities"]["add"])
    mounts = {m["mountPath"]: m for m in sensor["volumeMounts"]}
    paths = {v["name"]: v["hostPath"]["path"] for v in spec["volumes"] if "hostPath" in v}
    for host, readonly in (("/sys/kernel/tracing", True), ("/sys/fs/cgroup", False), ("/lib/modules", True),
                           ("/usr/src", True), ("/run", True), ("/var/lib/cgsentry", False)):
        mount = next(m for m in sensor["volumeMounts"] if paths.get(m["name"]) == host)
        assert bool(mount.get("readOnly")) is readonly, host
    assert "/var/lib/cgsentry" in mounts
    # every capability granted has a comment saying why, right above it
    lines = (DIR / "sensor.yaml").read_text().splitlines()
    added = [i for i, line in enumerate(lines) if re.fullmatch(r"\s+- [A-Z_]+", line)]
    assert len(added) == len(ctx["capabilities"]["add"])
    for i in added:
        assert lines[i - 1].strip().startswith("#"), f"sensor.yaml:{i + 1}: capability without a reason"


def _args(container: dict[str, Any]) -> list[str]:
    """The container's arguments with each $(VAR) replaced, failing on a variable it does not define."""
    env = {e["name"] for e in container.get("env", [])}
    out = []
    for arg in container["args"]:
        for var in re.findall(r"\$\((\w+)\)", arg):
            assert var in env, f"{container['name']}: $({var}) is not in its env"
        out.append(re.sub(r"\$\((\w+)\)", "node-1", arg) if "--db" not in out[-1:] else "postgresql://x@db/c")
    return out


def test_every_command_line_parses_with_the_real_cli() -> None:
    parsers = {"cgsentry-sensor": sensor_parser, "cgsentry": collector_parser}
    seen = set()
    for doc in by_kind("Deployment") + by_kind("DaemonSet"):
        for c in containers(doc):
            assert c["image"] == "cgsentry"  # kustomization's images: sets registry and tag
            program = c["command"][0]
            try:
                args = parsers[program]().parse_args(_args(c))
            except SystemExit:
                pytest.fail(f"{doc['metadata']['name']}: `{program} {' '.join(c['args'])}` does not parse")
            seen.add(program)
            mounted = [m["mountPath"] for m in c["volumeMounts"]]
            for option in ("tls_dir", "tokens", "ca", "cert", "key", "state_dir"):
                value = getattr(args, option, None)
                if value:  # every file a flag names is on a volume
                    assert any(str(value).startswith(p) for p in mounted), f"{program} --{option} {value}"
    assert seen == {"cgsentry-sensor", "cgsentry"}


def test_references_resolve() -> None:
    secrets = {d["metadata"]["name"] for d in by_kind("Secret")}
    workloads = [d for _, d in documents() if d["kind"] in WORKLOADS]
    labels = [d["spec"]["template"]["metadata"]["labels"] for d in workloads]
    for doc in workloads:
        spec = doc["spec"]["template"]["spec"]
        assert doc["spec"]["selector"]["matchLabels"].items() <= doc["spec"]["template"]["metadata"]["labels"].items()
        for v in spec.get("volumes", []):
            if "secret" in v:
                assert v["secret"]["secretName"] in secrets
        for c in containers(doc):
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] in secrets
            names = {m["name"] for m in c.get("volumeMounts", [])}
            assert names <= {v["name"] for v in spec.get("volumes", [])} | {
                t["metadata"]["name"] for t in doc["spec"].get("volumeClaimTemplates", [])}
    for svc in by_kind("Service"):
        target = next(d for d in workloads if svc["spec"]["selector"].items() <= d["spec"]["template"]["metadata"]
                      ["labels"].items())
        ports = {p["name"] for c in containers(target) for p in c.get("ports", [])}
        assert all(p["targetPort"] in ports for p in svc["spec"]["ports"])
    for policy in by_kind("NetworkPolicy") + by_kind("PodDisruptionBudget"):
        selector = policy["spec"].get("podSelector", policy["spec"].get("selector"))["matchLabels"]
        assert any(selector.items() <= lab.items() for lab in labels), policy["metadata"]["name"]
