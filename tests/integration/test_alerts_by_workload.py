"""Alerts filtered by Kubernetes workload through the real CLI and a real collector: namespace,
pod and pod labels, on SQLite and PostgreSQL; labels with LIKE's own wildcards match literally."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any, Iterator

import pytest

from bench.pgserver import create_database
from collector.auth import AuthConfig, TokenStore
from collector.errors import InvalidArgument
from collector.server import create_server
from collector.store import SqlStore
from sensor.events import Event, Finding
from tests.integration.helpers import run

_names = itertools.count()


def pod_finding(i: int, namespace: str, pod: str, labels: dict[str, str]) -> Finding:
    ev = Event("exec", 1_700_000_000_000_000_000 + i, pid=100 + i, comm="nc", exe="/bin/nc", args=("nc", str(i)),
               container_id=f"{i:064x}", container_name="app", image="shop/web:1", runtime="kubepods",
               namespace=namespace, pod=pod, labels=tuple(sorted(labels.items())))
    return Finding("rule", "Network Tool Launched in Container", "NOTICE", f"nc {i}", ev, time_ns=ev.time_ns,
                   source="rule")


@pytest.fixture(params=["sqlite", "postgres"])
def collector(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str, SqlStore]]:
    url = str(tmp_path / "c.db") if request.param == "sqlite" else create_database(
        request.getfixturevalue("postgres_url"), f"workload_{os.getpid()}_{next(_names)}")
    store = SqlStore.open(url)
    tokens = TokenStore(tmp_path / "tokens")
    viewer = tokens.add("v", "viewer")
    server, port = create_server("127.0.0.1:0", store, AuthConfig(tokens))
    yield f"127.0.0.1:{port}", viewer, store
    server.stop(0)
    store.close()


def test_alerts_list_by_namespace_pod_and_label(collector: Any, capsys: Any) -> None:
    server, token, store = collector
    store.ingest("s1", "n1", 1, [
        pod_finding(1, "payments", "web-1", {"app": "web", "tier": "front"}),
        pod_finding(2, "payments", "db-1", {"app": "db"}),
        pod_finding(3, "default", "web-2", {"app": "web"}),
        pod_finding(4, "default", "odd-1", {"a_b": "x%y"}),
        pod_finding(5, "", "", {}),  # a Docker container: no workload
    ])

    def listed(*flags: str) -> list[str]:
        rc, out, err = run(capsys, "--server", server, "--token", token, "alerts", "list", "--json", *flags)
        assert rc == 0, err
        return sorted(a["output"] for a in json.loads(out))

    assert listed("--namespace", "payments") == ["nc 1", "nc 2"]
    assert listed("--namespace", "payments", "--label", "app=web") == ["nc 1"]
    assert listed("--label", "app=web") == ["nc 1", "nc 3"]
    assert listed("--label", "app=web", "--label", "tier=front") == ["nc 1"]
    assert listed("--pod", "web-2") == ["nc 3"]
    assert listed("--label", "a_b=x%y") == ["nc 4"]
    assert listed("--label", "a%b=x_y") == []  # % and _ are literal, not LIKE wildcards
    assert listed("--label", "app=we") == []  # a whole value, not a prefix
    [out] = json.loads(run(capsys, "--server", server, "--token", token, "alerts", "list", "--json",
                           "--pod", "web-1")[1])
    assert (out["namespace"], out["pod"], out["labels"]) == ("payments", "web-1", {"app": "web", "tier": "front"})
    assert out["falco"]["output_fields"]["k8s.pod.labels"] == "app:web, tier:front"
    with pytest.raises(SystemExit) as info:  # argparse's usage error: exit 64 and a usage line
        run(capsys, "--server", server, "--token", token, "alerts", "list", "--label", "app")
    assert info.value.code == 64 and "give a pod label as KEY=VALUE" in capsys.readouterr().err
    with pytest.raises(InvalidArgument, match="KEY=VALUE"):  # the store refuses it too (API and console)
        store.list_alerts(labels=("app",))
