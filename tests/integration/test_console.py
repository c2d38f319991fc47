"""The web console over real HTTP (uvicorn on port 0) against a live collector and a sensor link
in-process: log in, roles on every request, CSRF, headers, hostile text, actions reaching the
sensor and the audit."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from bench.workloads import IMAGE, IMAGE_ID
from tests.consolekit import EVIL_NODE, EVIL_SENSOR, HOSTILE, ROOT, Stack, attack, baseline_snapshot, console_stack
from tests.waiting import wait_for


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    with console_stack(tmp_path) as s:
        yield s


def login(s: Stack, role: str) -> tuple[httpx.Client, str]:
    """A browser-like client logged in as ``role``, and its CSRF token (from a page's form)."""
    c = httpx.Client(base_url=s.url)
    page = c.get("/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf
    r = c.post("/login", data={"token": s.tokens[role], "csrf": csrf.group(1)})
    assert r.status_code == 303 and r.headers["location"] == "/incidents"
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert s.tokens[role] not in cookie and s.tokens[role] not in r.headers["location"]
    token = re.search(r'name="csrf" value="([^"]+)"', c.get("/incidents").text)
    assert token
    return c, token.group(1)


def bearer(s: Stack, role: str) -> httpx.Client:
    return httpx.Client(base_url=s.url, headers={"Authorization": f"Bearer {s.tokens[role]}"})


def incident_id(s: Stack) -> int:
    return s.server.incidents.list_page().rows[0].id


def test_nothing_without_a_login(stack: Stack) -> None:
    c = httpx.Client(base_url=stack.url)
    assert c.get("/incidents").status_code == 303  # to /login
    assert c.get("/api/incidents").status_code == 401
    assert httpx.get(f"{stack.url}/api/incidents", headers={"Authorization": "Bearer nope"}).status_code == 401
    page = c.get("/login")
    r = c.post("/login", data={"token": "nope", "csrf": re.findall(r'name="csrf" value="([^"]+)"', page.text)[0]})
    assert r.status_code == 401 and "unknown token" in r.text
    fresh = httpx.Client(base_url=stack.url)  # no login-form cookie: a forged cross-site login
    assert fresh.post("/login", data={"token": stack.tokens["admin"], "csrf": "x"}).status_code == 403
    sensor_page = c.get("/login")
    csrf = re.findall(r'name="csrf" value="([^"]+)"', sensor_page.text)[0]
    assert c.post("/login", data={"token": stack.tokens["sensor"], "csrf": csrf}).status_code == 403


def test_pages_carry_a_csp_without_inline_script_and_escape_hostile_text(stack: Stack) -> None:
    c, _ = login(stack, "viewer")
    for path in ("/", "/incidents", f"/incidents/{incident_id(stack)}", "/alerts", "/images", "/sensors", "/audit"):
        r = c.get(path)
        assert r.status_code == 200, path
        assert "script-src 'self'" in r.headers["content-security-policy"]
        assert "unsafe-inline" not in r.headers["content-security-policy"]
        assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", r.text) is None, path  # no inline script
        assert "\x1b" not in r.text and "\u202e" not in r.text and "<script>window" not in r.text, path
        assert "<img src=x" not in r.text, path
    page = c.get(f"/incidents/{incident_id(stack)}").text
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page and "\\x1b[31m" in page and "\\u202e" in page
    api = bearer(stack, "viewer").get(f"/api/incidents/{incident_id(stack)}").json()
    assert "\x1b[31m" in api["findings"][0]["args"][2]  # JSON keeps the data; only display escapes it


def test_the_incident_page_has_its_tree_timeline_and_tags(stack: Stack) -> None:
    v = bearer(stack, "viewer").get(f"/api/incidents/{incident_id(stack)}").json()
    inc = v["incident"]
    assert (inc["count"], inc["distinct_findings"], inc["priority"], inc["action"]) == (4, 4, "CRITICAL",
                                                                                      "pause-container")
    assert len(v["findings"]) == 4 and "T1059.004" in inc["mitre"]
    [nginx] = v["tree"]["children"]
    assert nginx["exe"] == "/usr/sbin/nginx" and nginx["offending"]
    [sh] = nginx["children"]
    [nc] = sh["children"]
    assert sh["offending"] and nc["offending"] and nc["exe"] == "/usr/bin/nc" and len(nc["findings"]) == 3
    c, _ = login(stack, "viewer")
    page = c.get(f"/incidents/{incident_id(stack)}").text
    assert 'id="tree"' in page and "offending branch" in page and "10.0.0.9:4444" in page
    listed = bearer(stack, "viewer").get("/api/incidents", params={"priority": "CRITICAL", "q": "nginx"}).json()
    assert [i["id"] for i in listed["incidents"]] == [inc["id"]]
    assert bearer(stack, "viewer").get("/api/incidents", params={"status": "resolved"}).json()["incidents"] == []
    assert bearer(stack, "viewer").get("/api/incidents", params={"priority": "NOPE"}).status_code == 400


def test_a_viewer_cannot_act_by_page_or_api(stack: Stack) -> None:
    c, csrf = login(stack, "viewer")
    form = {"csrf": csrf, "container_id": stack.container_id, "action": "pause", "confirm": "yes"}
    r = c.post("/containers/action", data=form)
    assert r.status_code == 403 and "this needs responder" in r.text
    r = c.post(f"/incidents/{incident_id(stack)}/status", data={"csrf": csrf, "status": "resolved"})
    assert r.status_code == 403
    api = bearer(stack, "viewer")
    assert api.post("/api/containers/action", json={"container_id": stack.container_id,
                                                    "action": "kill"}).status_code == 403
    r = bearer(stack, "responder").post("/api/images/mode", json={"image": "x", "mode": "enforce"})
    assert r.status_code == 403
    assert stack.responder.done == []
    assert any(e["action"].startswith("refused web") for e in stack.store.audit_entries())


def test_state_changes_need_the_csrf_token_and_this_origin(stack: Stack) -> None:
    c, csrf = login(stack, "responder")
    form = {"container_id": stack.container_id, "action": "pause", "confirm": "yes"}
    assert c.post("/containers/action", data=form).status_code == 403
    assert c.post("/containers/action", data={**form, "csrf": "wrong"}).status_code == 403
    assert c.post("/containers/action", data={**form, "csrf": csrf},
                  headers={"Origin": "http://evil.example"}).status_code == 403
    assert c.post("/containers/action", data={**form, "csrf": csrf, "confirm": ""}).status_code == 400
    assert stack.responder.done == []
    r = c.post("/containers/action", data={**form, "csrf": csrf, "incident": str(incident_id(stack))})
    assert r.status_code == 303 and "done" in r.headers["location"]
    assert stack.responder.done == [f"pause {stack.container_id}"]
    assert c.post("/logout", data={"csrf": csrf}).status_code == 303
    assert c.get("/incidents").status_code == 303  # the session is gone


def test_responders_triage_and_admins_switch_modes(stack: Stack) -> None:
    api = bearer(stack, "responder")
    iid = incident_id(stack)
    r = api.post(f"/api/incidents/{iid}/status", json={"status": "acknowledged", "comment": "on it"})
    assert r.status_code == 200 and r.json()["status"] == "acknowledged"
    assert {a.status for a in stack.store.list_alerts()} == {"acknowledged"}
    r = api.post("/api/containers/action", json={"container_id": stack.container_id, "action": "unpause"})
    assert r.json()["ok"] is True and stack.responder.done == [f"unpause {stack.container_id}"]
    r = bearer(stack, "admin").post("/api/images/mode", json={"image": "cgsentry/busybox:latest",
                                                              "mode": "enforce", "action": "pause-container"})
    assert r.status_code == 200 and r.json()["mode"] == "enforce"
    audit = [(e["actor"], e["action"]) for e in stack.store.audit_entries()]
    assert ("responder", "incident acknowledged") in audit and ("admin", "image mode enforce") in audit
    assert ("responder", "unpause") in audit  # the sensor's answer, audited under who asked
    assert bearer(stack, "admin").post("/api/images/mode", json={"image": "x", "mode": "nope"}).status_code == 400


def test_with_a_ca_the_console_wants_a_client_certificate_as_grpc_does(tmp_path: Path) -> None:
    import ssl

    from collector import pki
    from collector.auth import AuthConfig, TokenStore
    from collector.incidents import Incidents
    from collector.sensorlink import Hub
    from collector.store import SqlStore
    from collector.webserver import WebTls, start_web

    d = tmp_path / "pki"
    pki.init_ca(d)
    client_crt = pki.issue_client(d, "alice")
    tokens = TokenStore(tmp_path / "tokens")
    token = tokens.add("alice", "viewer")
    store = SqlStore.open(str(tmp_path / "c.db"))
    web = start_web("127.0.0.1:0", Hub(store), Incidents(store), AuthConfig(tokens, mtls=True),
                    WebTls(str(d / "server.crt"), str(d / "server.key"), str(d / "ca.crt")))
    try:
        url, auth = f"https://127.0.0.1:{web.port}/api/incidents", {"Authorization": f"Bearer {token}"}
        bare = ssl.create_default_context(cafile=str(d / "ca.crt"))
        with pytest.raises(httpx.HTTPError):  # no client certificate: the handshake is refused
            httpx.get(url, headers=auth, verify=bare)
        ctx = ssl.create_default_context(cafile=str(d / "ca.crt"))
        ctx.load_cert_chain(str(client_crt), str(client_crt.with_suffix(".key")))
        r = httpx.get(url, headers=auth, verify=ctx)
        assert r.status_code == 200 and r.json()["incidents"] == []
        assert httpx.get(url, verify=ctx).status_code == 401  # the certificate alone gives no role
        login = httpx.get(f"https://127.0.0.1:{web.port}/login", verify=ctx)
        assert "Secure" in login.headers["set-cookie"]
    finally:
        web.stop()
        store.close()


def hostile_free(html: str) -> None:
    """Nothing an attacker chose reaches the page raw: no escape byte, no bidi override, no markup."""
    assert "\x1b" not in html and "\u202e" not in html and "\x07" not in html
    assert "<script>window" not in html and "<img src=x" not in html and "<b onmouseover" not in html


def test_the_baseline_with_provenance_its_versions_and_a_diff(stack: Stack) -> None:
    api = bearer(stack, "viewer")
    b = api.get("/api/images/baseline", params={"key": IMAGE_ID}).json()
    assert b["image"] == IMAGE and b["v"] == 0 and [v["version"] for v in b["versions"]] == [1]
    processes = {i["exe"]: i for i in b["items"]["process"]}
    assert set(processes) == {ROOT, "/tmp/" + HOSTILE}
    assert processes["/tmp/" + HOSTILE]["provenance"]["container"] == HOSTILE  # JSON keeps the data
    assert {(i["exe"], i["parent"]) for i in b["items"]["parent"]} >= {(ROOT, "/usr/bin/containerd-shim")}
    assert [(i["proto"], i["port"]) for i in b["items"]["listen"]] == [("tcp", 80)]
    assert [i["address"] for i in b["items"]["outbound"]] == ["10.0.0.0/24"]
    assert [i["name"] for i in b["items"]["syscall"]] == ["ptrace"]
    [rule] = b["items"]["rule"]
    assert rule["rule"] == "Shell Spawned By Web Server" and rule["provenance"]["parent"] == ROOT
    assert rule["nodes"] == ["node-1"]

    stack.sensor.snapshots = [(IMAGE_ID, baseline_snapshot(1_700_000_000 * 10**9, extra=("/usr/bin/curl",)))]
    wait_for(lambda: len(stack.store.baseline_versions(IMAGE_ID)) == 2)
    v2 = stack.store.baseline_versions(IMAGE_ID)[0]["time_ns"]
    # the same baseline again (every heartbeat resends it) and counts that grew make no version
    wait_for(lambda: stack.store.execute("SELECT MAX(time_ns) FROM snapshots").fetchone()[0] > v2)
    assert [v["version"] for v in stack.store.baseline_versions(IMAGE_ID)] == [2, 1]
    d = api.get("/api/images/baseline", params={"key": IMAGE_ID, "a": 1, "b": 2}).json()
    assert [i["exe"] for i in d["diff"]["process"]["added"]] == ["/usr/bin/curl"]
    assert [i["parent"] for i in d["diff"]["parent"]["added"]] == [ROOT]
    assert d["changed"] == 2 and all(not c["removed"] for c in d["diff"].values())
    back = api.get("/api/images/baseline", params={"key": IMAGE_ID, "a": 2, "b": 1}).json()
    assert [i["exe"] for i in back["diff"]["process"]["removed"]] == ["/usr/bin/curl"]
    now = api.get("/api/images/baseline", params={"key": IMAGE_ID, "a": 2}).json()  # b: the baseline now
    assert now["changed"] == 0
    assert api.get("/api/images/baseline", params={"key": IMAGE_ID, "v": 9}).status_code == 404
    assert api.get("/api/images/baseline", params={"key": "sha256:nope"}).status_code == 404
    assert api.get("/api/images/baseline").status_code == 400
    assert api.get("/api/images/baseline", params={"key": IMAGE_ID, "a": "x"}).status_code == 400

    c, _ = login(stack, "viewer")
    images = c.get("/images").text
    assert f'/images/baseline?key={IMAGE_ID.replace(":", "%3A")}' in images
    for params in ({"key": IMAGE_ID}, {"key": IMAGE_ID, "v": 1}, {"key": IMAGE_ID, "a": 1, "b": 2}):
        page = c.get("/images/baseline", params=params)
        assert page.status_code == 200
        hostile_free(page.text)
    page = c.get("/images/baseline", params={"key": IMAGE_ID}).text
    assert "&lt;script&gt;window.pwned=1&lt;/script&gt;" in page and "\\x1b[31m" in page and "\\u202e" in page
    assert "container=\\x1b[31mred" in page and "parent=/usr/sbin/nginx" in page
    assert "/usr/bin/curl" in c.get("/images/baseline", params={"key": IMAGE_ID, "a": 1, "b": 2}).text


def test_a_mode_switch_says_what_it_does_does_it_and_keeps_the_bans(stack: Stack) -> None:
    policy = {"match": IMAGE, "default_action": "alert", "banned_processes": ["nc"]}
    stack.store.set_image(IMAGE, "alert", policy, "ops")
    c, csrf = login(stack, "admin")
    page = c.get("/images").text
    assert "the container is paused" in page and "banned processes (nc) are killed at exec" in page
    assert "rule and policy hits are still alerted on" in page  # learn is not silence
    form = {"csrf": csrf, "image": IMAGE, "mode": "enforce", "action": "pause-container"}
    assert c.post("/images/mode", data=form).status_code == 400  # not confirmed
    r = c.post("/images/mode", data={**form, "confirm": "yes"})
    assert r.status_code == 303 and "the container is paused" in httpx.URL(r.headers["location"]).params["msg"]
    wait_for(lambda: any(p.get("mode") == "enforce" for _, p in stack.sensor.policies))
    [(image, pushed)] = [(i, p) for i, p in stack.sensor.policies if p.get("mode") == "enforce"]
    assert image == IMAGE and pushed["banned_processes"] == ["nc"] and pushed["default_action"] == "pause-container"
    from rules.policy import PolicySet

    pol = PolicySet.from_dict({"images": [pushed]}).images[0]
    reverse_shell = attack(0)[2]
    assert pol.decide(reverse_shell) == "pause-container"  # what the page said is what the sensor does
    assert pol.decide(reverse_shell, "learn") == "alert"  # a rule hit in learn mode: alerted, as it says
    r = bearer(stack, "admin").post("/api/images/mode", json={"image": IMAGE, "mode": "learn"})
    assert r.json()["effect"].startswith("learn: ") and stack.store.images()[0]["policy"]["banned_processes"] == ["nc"]


def test_sensors_health_rates_drops_spool_and_hostile_names(stack: Stack) -> None:
    api = bearer(stack, "viewer")

    def sensors() -> dict[str, dict[str, Any]]:
        return {s["sensor_id"]: s for s in api.get("/api/sensors").json()["sensors"]}

    wait_for(lambda: sensors()["sensor-1"]["events_per_s"] is not None)  # two heartbeats read
    one, evil = sensors()["sensor-1"], sensors()[EVIL_SENSOR]
    assert one["events_per_s_source"] == "counters" and one["events_per_s"] > 0
    assert (one["health"], one["drops"], one["spool_bytes"], one["node"]) == ("ok", 0, 2048, "node-1")
    assert one["connected"] and one["collector"] == ""  # one collector: which one says nothing
    assert (evil["health"], evil["drops"], evil["events_per_s"], evil["events_per_s_source"]) == (
        "dropping", 3, 7.0, "heartbeat")
    assert evil["node"] == EVIL_NODE
    c, _ = login(stack, "viewer")
    for path in ("/sensors", "/sensors/rows"):
        page = c.get(path).text
        hostile_free(page)
        assert "evil\\x1b]8;;http://x\\x07&lt;script&gt;window.pwned=2&lt;/script&gt;" in page
        assert "node\\x1b[2J&lt;b onmouseover=alert(3)&gt;bold&lt;/b&gt;" in page


def test_the_audit_log_by_actor_action_target_and_time(stack: Stack) -> None:
    import time

    t0 = time.time_ns()
    r = bearer(stack, "responder").post("/api/containers/action", json={"container_id": stack.container_id,
                                                                       "action": "pause"})
    assert r.json()["ok"]
    bearer(stack, "admin").post("/api/images/mode", json={"image": IMAGE, "mode": "alert"})
    api = bearer(stack, "viewer")

    def audit(**params: Any) -> list[tuple[str, str, str]]:
        r = api.get("/api/audit", params=params)
        assert r.status_code == 200, r.text
        return [(e["actor"], e["action"], e["target"]) for e in r.json()["audit"]]

    assert audit(actor="RESPOND") == [("responder", "pause", stack.container_id)]
    assert audit(action="image mode") == [("admin", "image mode alert", IMAGE)]
    assert audit(target=stack.container_id[:12]) == [("responder", "pause", stack.container_id)]
    assert audit(action="%") == [] and audit(actor="_") == []  # LIKE wildcards match literally
    assert len(audit(since=str(t0))) == 2 and audit(until=str(t0), action="pause") == []
    iso = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(t0 / 1e9 + 120))  # datetime-local: UTC, no zone
    assert audit(since=iso) == [] and len(audit(until=iso)) >= 2
    [newest] = api.get("/api/audit", params={"limit": 1}).json()["audit"]
    assert newest["action"] == "image mode alert"
    older = api.get("/api/audit", params={"limit": 1, "before": newest["id"]}).json()["audit"]
    assert older[0]["id"] < newest["id"]
    assert api.get("/api/audit", params={"since": "yesterday"}).status_code == 400
    assert api.get("/api/audit", params={"since": "2999-01-01T00:00"}).status_code == 400  # past 64-bit ns
    c, _ = login(stack, "viewer")
    page = c.get("/audit", params={"actor": "responder", "target": stack.container_id}).text
    assert stack.container_id in page and "image mode" not in page


def test_refused_actions_are_audited_once_per_actor_and_path_in_a_window(stack: Stack) -> None:
    c, csrf = login(stack, "viewer")
    form = {"csrf": csrf, "container_id": stack.container_id, "action": "kill", "confirm": "yes"}
    for _ in range(20):
        assert c.post("/containers/action", data=form).status_code == 403
    refused = [e for e in stack.store.audit_entries(1000) if e["action"].startswith("refused web")]
    assert [(e["actor"], e["action"]) for e in refused] == [("viewer", "refused web /containers/action")]
    assert c.post("/images/mode", data={"csrf": csrf, "image": IMAGE, "mode": "learn"}).status_code == 403
    assert len([e for e in stack.store.audit_entries(1000) if e["action"].startswith("refused web")]) == 2


def test_the_dashboard_counts_each_finding_in_its_hour(stack: Stack) -> None:
    from sensor.events import rfc3339

    hour = 3600 * 10**9
    t0 = min(a.first_seen_ns for a in stack.store.list_alerts())  # the attack's hour, whenever the test runs
    old = [f.replace(time_ns=t0 - 2 * hour, event=f.event.replace(container_id="2" * 64))
           for f in attack(t0 - 2 * hour)[:2]]
    again = [old[0].replace(time_ns=t0)]  # the same finding (one alert) two hours later
    ancient = [f.replace(time_ns=t0 - 48 * hour, rule="Old Rule") for f in attack(t0 - 48 * hour)[:1]]
    for seq, batch in enumerate((old, again, ancient), start=100):
        stack.store.ingest("sensor-1", "node-1", seq, batch)
    d = bearer(stack, "viewer").get("/api/dashboard").json()
    series = {s["hour"]: s for s in d["series"]}
    assert len(d["series"]) == 24
    this_hour = series[rfc3339(t0 // hour * hour)]
    two_ago = series[rfc3339((t0 // hour - 2) * hour)]
    assert this_hour["by_priority"] == {"CRITICAL": 1, "WARNING": 2, "NOTICE": 2}  # the attack and the repeat
    assert two_ago["by_priority"] == {"WARNING": 1, "NOTICE": 1} and sum(s["total"] for s in series.values()) == 7
    assert list(this_hour["by_priority"]) == ["CRITICAL", "WARNING", "NOTICE"]  # most severe first
    rules = {r["name"]: r["findings"] for r in d["top_rules"]}
    assert rules["Shell Spawned By Web Server"] == 3 and "Old Rule" not in rules  # 48 h ago: not in 24 h
    assert d["top_images"] == [{"name": IMAGE, "findings": 7}]
    assert stack.container_id in [i["container_id"] for i in d["open_incidents"]]
    assert d["incidents"]["open"] == len(d["open_incidents"]) and d["chart"]
    c, _ = login(stack, "viewer")
    page = c.get("/").text
    assert 'id="chart"' in page and "bar-critical" in page and 'class="incident-link"' in page
    assert re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page) is None and " style=" not in page


def test_events_per_second_from_successive_heartbeats() -> None:
    from collector.consoleviews import SensorRates

    r = SensorRates()
    assert r.rate("s", 1 * 10**9, 100) is None  # one heartbeat: no rate yet
    assert r.rate("s", 3 * 10**9, 500) == 200.0
    assert r.rate("s", 3 * 10**9, 500) == 200.0  # the same heartbeat read again changes nothing
    assert r.rate("s", 4 * 10**9, 20) is None  # the sensor restarted (its counter went down): start over
    assert r.rate("s", 6 * 10**9, 220) == 100.0
    assert r.rate("s", 7 * 10**9, None) is None and r.rate("other", 7 * 10**9, 5) is None  # no counter: no rate
