"""The web console over real HTTP (uvicorn on port 0) against a live collector and a sensor link
in-process: log in, roles on every request, CSRF, headers, hostile text, actions reaching the
sensor and the audit."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator

import httpx
import pytest

from tests.consolekit import Stack, console_stack


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
