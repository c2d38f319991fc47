"""The console's pieces without a server: the process tree, CSRF and origin checks, escaping."""

from __future__ import annotations

import pytest

from collector.auth import AuthConfig, Identity, TokenStore
from collector.console import templates
from collector.consoleviews import process_tree
from collector.errors import PermissionDenied, Unauthenticated
from collector.store import AlertRow
from collector.websession import COOKIE, Caller, Sessions, caller, check_csrf, require_role
from sensor.events import Event, Finding


def row(alert_id: int, exe: str, ancestry: tuple[str, ...], priority: str, t: int = 0) -> AlertRow:
    ev = Event("exec", t, pid=100 + alert_id, exe=exe, args=(exe, "-x"), ancestry=ancestry)
    return AlertRow(alert_id, Finding("rule", "R", priority, "out", ev, time_ns=t), 1, t, t, "open", "s", "n", "")


def test_the_most_severe_findings_branch_is_marked_and_no_other() -> None:
    tree = process_tree([row(1, "/bin/sh", ("/usr/sbin/nginx",), "WARNING"),
                         row(2, "/usr/bin/nc", ("/bin/sh", "/usr/sbin/nginx"), "CRITICAL", 5),
                         row(3, "/usr/bin/curl", ("/usr/sbin/nginx",), "NOTICE")]).to_dict()
    [nginx] = tree["children"]
    sh, curl = nginx["children"]
    [nc] = sh["children"]
    assert nginx["offending"] and sh["offending"] and nc["offending"] and not curl["offending"]
    assert (sh["findings"], nc["findings"], nc["pids"], nc["args"]) == ([1], [2], [102], "/usr/bin/nc -x")


def test_csrf_and_origin() -> None:
    session = Caller(Identity("a", "responder"), "tok", False)
    check_csrf(session, "tok", "", "h:1")
    check_csrf(session, "tok", "http://h:1", "h:1")
    for sent, origin in (("", ""), ("bad", ""), ("tok", "http://evil:1"), ("tok", "null")):
        with pytest.raises(PermissionDenied):
            check_csrf(session, sent, origin, "h:1")
    check_csrf(Caller(Identity("a", "responder"), "", True), "", "http://evil:1", "h:1")  # bearer: no cookie


def test_sessions_roles_and_tokens(tmp_path: object) -> None:
    from pathlib import Path

    tokens = TokenStore(Path(str(tmp_path)) / "t")
    viewer, sensor = tokens.add("v", "viewer"), tokens.add("s", "sensor")
    sessions = Sessions(AuthConfig(tokens))
    sid, s = sessions.login(viewer)
    who = caller(sessions, {}, {COOKIE: sid})
    assert who.ident.role == "viewer" and who.csrf == s.csrf and not who.by_bearer
    with pytest.raises(PermissionDenied):
        require_role(who, "responder")
    with pytest.raises(PermissionDenied):
        sessions.login(sensor)  # a sensor token is no analyst
    with pytest.raises(Unauthenticated):
        caller(sessions, {}, {COOKIE: "forged"})
    sessions.logout(sid)
    with pytest.raises(Unauthenticated):
        caller(sessions, {}, {COOKIE: sid})
    assert caller(sessions, {"authorization": f"Bearer {viewer}"}, {}).by_bearer


def test_templates_escape_markup_and_show_controls() -> None:
    hostile = "\x1b[2J<script>x()</script>\u202egnp.exe\nfake row"
    html = templates().from_string("<td>{{ v }}</td>").render(v=hostile)
    assert html == "<td>\\x1b[2J&lt;script&gt;x()&lt;/script&gt;\\u202egnp.exe\\x0afake row</td>"
