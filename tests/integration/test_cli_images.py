"""`cgsentry images mode|list|preview` through the real CLI against a live collector: modes
changed only where named, the enforce preview over stored alerts, would-enforce counts from the
first alert, workload policies (most specific first) and model parts not active yet."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import msgpack
import pytest

from bench.workloads import IMAGE, IMAGE_ID, deviation
from collector.store import SqlStore
from models import store as model_store
from sensor.agent.link import CollectorLink, LinkCallbacks, LinkConfig
from sensor.events import Finding
from sensor.spool import Spool
from tests.integration.helpers import learned, run
from tests.waiting import wait_for

Live = tuple[str, dict[str, str], SqlStore]


def _as(live: Live, role: str) -> list[str]:
    return ["--server", live[0], "--token", live[1][role]]


def _alert(t_s: float, container: int, exe: str = "/tmp/xmrig", rule: str = "New Process") -> Finding:
    """A model finding found in alert mode, ``t_s`` seconds ago, in container ``container``."""
    t = time.time_ns() - int(t_s * 1e9)
    ev = deviation("new_binary", t, i=container).pop()
    ev = ev.replace(exe=exe, comm=exe.rsplit("/", 1)[-1], args=(exe.rsplit("/", 1)[-1],))
    return Finding("new_process", rule, "WARNING", f"{exe} in web-{container}", ev, time_ns=t, mode="alert")


def test_mode_changes_only_what_it_is_given_and_prints_the_whole_policy(live: Live, capsys: Any) -> None:
    admin = _as(live, "admin")
    rc, out, err = run(capsys, *admin, "images", "mode", IMAGE, "alert", "--action", "pause", "--ban", "nc",
                       "--ban", "wget", "--force")
    assert rc == 0 and err == ""
    assert out.splitlines()[0] == f"{IMAGE}: mode alert, action pause-container, bans nc,wget  (set by operator admin)"
    rc, out, _ = run(capsys, *admin, "images", "mode", IMAGE, "enforce", "--json")  # only the mode named
    got = json.loads(out)
    assert rc == 0 and (got["mode"], got["action"], got["bans"]) == ("enforce", "pause-container", ["nc", "wget"])
    rc, out, _ = run(capsys, *admin, "images", "mode", IMAGE, "--action", "kill")  # mode kept too
    assert rc == 0 and out.startswith(f"{IMAGE}: mode enforce, action kill-container, bans nc,wget")
    rc, out, err = run(capsys, *admin, "images", "mode", IMAGE, "--action", "alert", "--no-bans")
    assert rc == 0 and out.startswith(f"{IMAGE}: mode enforce, action alert, bans -")
    assert err == ("cgsentry: warning: enforce with action alert enforces nothing: give --action pause, kill or "
                   "kill-process\n")
    rc, out, err = run(capsys, *admin, "images", "mode", IMAGE, "--ban", "nc")
    assert rc == 0 and "bans nc" in out and "enforces nothing but the bans" in err
    rc, out, _ = run(capsys, *_as(live, "viewer"), "audit", "list", "--json")
    assert [e["reason"] for e in json.loads(out)][:2] == ["default action alert; bans nc",
                                                          "default action alert; bans none"]


def test_preview_replays_stored_alerts_through_the_proposed_policy(live: Live, capsys: Any) -> None:
    store = live[2]
    store.ingest("sensor", "node", 1, [_alert(3600, 0), _alert(1800, 0, "/tmp/miner"),
                                       _alert(600, 1, "/usr/bin/nc"), _alert(30 * 86400, 2)])
    viewer = _as(live, "viewer")
    rc, out, err = run(capsys, *viewer, "images", "preview", IMAGE, "--action", "pause", "--since", "7d", "--json")
    got = json.loads(out)
    assert rc == 0 and err == "" and (got["mode"], got["action"], got["would"]) == (
        "enforce", "pause-container", {"pause-container": 2})
    assert [(a["container"], a["action"], a["effect"]) for a in got["alerts"]] == [
        ("web-0", "pause-container", "acted"),
        ("web-0", "pause-container", "not reached"),
        ("web-1", "pause-container", "acted")]  # the 30-day-old alert is before --since
    assert got["alerts"][0]["why"] == "default action pause-container"
    assert got["alerts"][1]["why"] == f"default action pause-container; container paused earlier by alert " \
                                      f"{got['alerts'][0]['alert']}"
    rc, out, _ = run(capsys, *viewer, "images", "preview", IMAGE, "--action", "alert", "--ban", "nc")
    lines = out.splitlines()
    assert rc == 0 and lines[0] == f"preview of {IMAGE}: mode enforce, action alert, bans nc; 3 alert(s) since 7d"
    assert lines[1].split()[:3] == ["WHEN", "ACTION", "EFFECT"]
    assert [line.split()[1:3] for line in lines[2:5]] == [["alert", "alert"], ["alert", "alert"],
                                                         ["kill-process", "acted"]]
    assert lines[4].endswith("web-1            Policy: banned process (banned process)")
    assert lines[5] == "would have done: 1 x kill-process"
    assert store.images() == [{"image": IMAGE, "mode": "", "policy": {}, "set_by": ""}]  # nothing was set
    rc, _, err = run(capsys, *viewer, "images", "preview", "cgsentry/nope:1")
    assert rc == 66 and err.count("\n") == 1 and "knows no such image" in err


def test_preview_of_a_workload_replays_only_the_alerts_of_the_pods_it_selects(live: Live, capsys: Any) -> None:
    def pod(f: Finding, namespace: str, labels: dict[str, str]) -> Finding:
        return f.replace(event=f.event.replace(namespace=namespace, pod=f"{namespace}-pod",
                                               labels=tuple(sorted(labels.items()))))

    live[2].ingest("sensor", "node", 1, [pod(_alert(600, 0), "payments", {"app": "web"}),
                                         pod(_alert(300, 1), "payments", {"app": "batch"}),
                                         pod(_alert(60, 2), "shop", {"app": "web"})])
    viewer = _as(live, "viewer")
    rc, out, err = run(capsys, *viewer, "images", "preview", IMAGE, "--action", "kill", "--namespace", "payments",
                       "--label", "app=web", "--json")
    got = json.loads(out)
    assert rc == 0 and err == "" and got["selector"] == f"{IMAGE} namespace=payments app=web"
    assert [(a["container"], a["action"], a["effect"]) for a in got["alerts"]] == [
        ("web-0", "kill-container", "acted")]
    rc, out, _ = run(capsys, *viewer, "images", "preview", IMAGE, "--action", "kill", "--namespace", "pay*")
    assert rc == 0 and out.splitlines()[0].startswith(f"preview of {IMAGE} namespace=pay*: mode enforce")
    assert "2 alert(s) since 7d" in out.splitlines()[0]
    rc, out, _ = run(capsys, *viewer, "images", "preview", IMAGE, "--json")  # the image's policy: all three
    assert rc == 0 and len(json.loads(out)["alerts"]) == 3


def test_would_enforce_counts_are_right_from_the_first_alert(live: Live, capsys: Any) -> None:
    store, admin = live[2], _as(live, "admin")
    assert run(capsys, *admin, "images", "mode", IMAGE, "alert", "--force")[0] == 0  # action alert
    store.ingest("sensor", "node", 1, [_alert(60, 0)])
    rc, out, _ = run(capsys, *admin, "images", "list", "--json")
    assert rc == 0 and json.loads(out)[0]["would_enforce"] == {}  # enforce with action alert would do nothing
    assert run(capsys, *admin, "images", "mode", IMAGE, "--action", "pause")[0] == 0
    rc, out, _ = run(capsys, *admin, "images", "list")
    assert rc == 0 and out.splitlines()[1].split()[:8] == [IMAGE, "alert", "operator", "admin", "pause-container",
                                                            "1", "1", "-"]
    store.ingest("sensor", "node", 2, [_alert(30, 0)])  # the same alert again: counted by occurrence
    rc, out, _ = run(capsys, *admin, "images", "list", "--json")
    assert json.loads(out)[0]["would_enforce"] == {"new_process:pause-container": 2}


def test_images_list_shows_workload_policies_most_specific_first(live: Live, capsys: Any) -> None:
    admin = _as(live, "admin")
    live[2].ingest("sensor", "node", 1, [_alert(60, 0)])  # the image is known from its alert
    for extra in ([IMAGE.split(":")[0] + ":*", "alert"],
                  [IMAGE, "enforce", "--namespace", "payments", "--label", "app=web", "--action", "kill"],
                  [IMAGE, "enforce", "--namespace", "payments", "--action", "pause"]):
        rc, out, _ = run(capsys, *admin, "images", "mode", *extra, "--force")
        assert rc == 0, out
    rc, out, _ = run(capsys, *admin, "images", "list", "--json")
    rows = {r["image"]: r for r in json.loads(out)}
    assert rc == 0 and sorted(rows) == ["cgsentry/busybox:*", IMAGE]  # workloads are not images
    assert [w["selector"] for w in rows[IMAGE]["workloads"]] == [
        f"{IMAGE} namespace=payments app=web", f"{IMAGE} namespace=payments", "cgsentry/busybox:*"]
    rc, out, _ = run(capsys, *admin, "images", "mode", IMAGE, "learn", "--force")  # the image itself now
    rc, out, _ = run(capsys, *admin, "images", "list")
    assert rc == 0
    notes = [n for n in out.split("\n\n", 1)[1].splitlines() if not n.startswith("cgsentry/busybox:*")]
    assert notes[0] == f"{IMAGE}: policies, most specific first (the first whose selector matches wins):"
    assert [n.strip().split(": mode")[0] for n in notes[1:5]] == [
        f"{IMAGE} namespace=payments app=web", f"{IMAGE} namespace=payments", IMAGE, "cgsentry/busybox:*"]
    assert "mode enforce, action kill-container" in notes[1]
    with pytest.raises(SystemExit) as info:
        run(capsys, *admin, "images", "mode", IMAGE, "enforce", "--label", "app")
    assert info.value.code == 64 and "'app': give a pod label as KEY=VALUE" in capsys.readouterr().err


def test_images_mode_and_list_say_which_model_parts_are_not_active(live: Live, capsys: Any, tmp_path: Path) -> None:
    server, toks, store = live
    eng = learned(range(0, 1), seconds=30)
    b = eng.images[IMAGE_ID]
    parts = b.inactive_parts()
    assert parts and parts[0]["part"] == "rate"
    payload = model_store.to_dict(b)
    snaps = [(IMAGE_ID, msgpack.packb(payload, use_bin_type=True), json.dumps(parts))]
    link = CollectorLink(LinkConfig(server, sensor_id="sensor", token=toks["sensor"], heartbeat_s=0.1,
                                    snapshot_s=0.1), Spool(tmp_path / "sp"),
                         callbacks=LinkCallbacks(snapshots=lambda: snaps,
                                                 container_images=lambda: {"a" * 64: IMAGE_ID})).start()
    wait_for(lambda: any(store.not_active().values()))
    link.close()
    rc, out, _ = run(capsys, *_as(live, "viewer"), "images", "list")
    assert rc == 0 and f"{IMAGE}: {parts[0]['text']} (sensor sensor)" in out.splitlines()
    rc, out, _ = run(capsys, *_as(live, "admin"), "images", "mode", IMAGE, "alert")
    # said for the mode just set, as the sensor's model says it (alert mode learns no windows)
    assert rc == 0 and out.splitlines()[1] == f"  {b.inactive_parts('alert')[0]['text']}"
    rc, out, _ = run(capsys, *_as(live, "viewer"), "images", "list", "--json")
    [row] = json.loads(out)
    assert [(p["part"], p["sensors"]) for p in row["not_active"]] == [("rate", ["sensor"])]


def test_a_workload_policy_reaches_sensors_as_a_selector(live: Live, capsys: Any, tmp_path: Path) -> None:
    from rules.policy import PolicySet

    server, toks, _ = live
    got: list[tuple[str, bytes]] = []
    rc, _, _ = run(capsys, *_as(live, "admin"), "images", "mode", IMAGE, "--action", "pause", "--force")
    assert rc == 0  # no mode: the sensors' lifecycle decides, the action is still sent on connect
    link = CollectorLink(LinkConfig(server, sensor_id="sensor", token=toks["sensor"]), Spool(tmp_path / "sp"),
                         callbacks=LinkCallbacks(on_policy=lambda image, payload: got.append((image, payload)))).start()
    try:
        wait_for(lambda: len(got) == 1)
        rc, _, _ = run(capsys, *_as(live, "admin"), "images", "mode", IMAGE, "enforce", "--namespace", "pay*",
                       "--label", "app=web", "--action", "kill", "--force")
        assert rc == 0
        wait_for(lambda: len(got) == 2)
    finally:
        link.close()
    # as the sensor reads a pushed policy (sensor.agent.daemon.on_policy): the key, then the payload
    policies = PolicySet.from_dict({"images": [{"match": image, **json.loads(payload)} for image, payload in got]})
    image_wide, workload = policies.images
    assert (image_wide.mode, image_wide.default_action, image_wide.match) == ("", "pause-container", IMAGE)
    assert (workload.mode, workload.default_action, workload.namespace, workload.labels) == (
        "enforce", "kill-container", "pay*", (("app", "web"),))
    assert policies.for_image(IMAGE, "", "payments", (("app", "web"), ("tier", "1"))) == workload
    assert policies.for_image(IMAGE, "", "payments", (("app", "db"),)) == image_wide
