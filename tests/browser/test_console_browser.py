"""Triage end to end in a real browser: log in with a token, open the incident, see its process
tree, pause and resume the container, acknowledge, switch the image's mode; a viewer cannot act.
Screenshots of each page go to the ``shots`` directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.consolekit import ROOT, Stack, attack, open_page
from tests.waiting import wait_for


def test_triage_end_to_end(browser: Any, stack: Stack, shots: Path) -> None:
    ctx, page, dialogs = open_page(browser, stack, "admin")
    page.screenshot(path=str(shots / "incidents.png"), full_page=True)
    assert "CRITICAL" in page.inner_text("#incidents")
    page.click("a.incident-link")
    page.wait_for_selector("#tree")
    tree = page.inner_text("#tree")
    assert ROOT in tree and "/usr/bin/nc" in tree and "offending branch" in tree
    assert page.locator("#tree li.offending").count() == 3  # nginx > sh > nc
    assert "T1059.004" in page.inner_text("#mitre")
    page.screenshot(path=str(shots / "incident.png"), full_page=True)
    assert page.evaluate("window.pwned") is None and dialogs == []  # the hostile args stayed text

    page.check("#confirm-pause")
    page.click("#pause")
    page.wait_for_selector("#message")
    assert "pause" in page.inner_text("#message") and "done" in page.inner_text("#message")
    page.check("#confirm-unpause")
    page.click("#unpause")
    page.wait_for_selector("#message")
    assert stack.responder.done == [f"pause {stack.container_id}", f"unpause {stack.container_id}"]

    page.select_option("#status-select", "acknowledged")
    page.check("form[action$='/status'] input[name=confirm]")
    page.click("#set-status")
    page.wait_for_selector("#message")
    assert page.inner_text("#status") == "acknowledged"

    page.goto(f"{stack.url}/images")
    row = page.locator("#images tbody tr", has_text="cgsentry/busybox:latest")
    row.locator("select[name=mode]").select_option("enforce")
    row.locator("select[name=action]").select_option("pause-container")
    row.locator("input[name=confirm]").check()
    row.locator("button.switch").click()
    page.wait_for_selector("#message")
    assert "mode enforce" in page.inner_text("#message")
    assert page.locator("#images tbody tr", has_text="cgsentry/busybox:latest").locator("td.mode").inner_text() \
        == "enforce"
    page.screenshot(path=str(shots / "images.png"), full_page=True)
    for name in ("", "sensors", "audit", "alerts"):
        page.goto(f"{stack.url}/{name}")
        page.screenshot(path=str(shots / f"{name or 'dashboard'}.png"), full_page=True)
    actions = [(e["actor"], e["action"]) for e in stack.store.audit_entries()]
    assert ("admin", "pause") in actions and ("admin", "unpause") in actions
    assert ("admin", "incident acknowledged") in actions and ("admin", "image mode enforce") in actions
    assert dialogs == []
    ctx.close()


def test_the_incidents_table_updates_itself(browser: Any, stack: Stack) -> None:
    ctx, page, _ = open_page(browser, stack, "viewer")
    assert page.locator("#incidents tbody tr").count() == 1
    later = [f.replace(event=f.event.replace(container_id="1" * 64, container_name="db-1")) for f in attack(
        stack.store.list_alerts()[0].last_seen_ns + 1)]
    stack.store.ingest("sensor-1", "node", 99, later)
    page.wait_for_selector("#incidents tbody tr >> nth=1", timeout=15_000)  # the poll brought it in
    assert "db-1" in page.inner_text("#incidents")
    ctx.close()


def test_a_viewer_sees_no_actions_and_the_server_refuses_them(browser: Any, stack: Stack, shots: Path) -> None:
    ctx, page, dialogs = open_page(browser, stack, "viewer")
    page.click("a.incident-link")
    page.wait_for_selector("#tree")
    assert page.locator("#pause").count() == 0 and page.locator("#set-status").count() == 0
    assert "viewer" in page.inner_text("#whoami")
    # the forms are absent, but the server decides: a viewer's own POST (with its CSRF token) is refused
    status = page.evaluate("""async (cid) => {
        const csrf = document.querySelector("input[name=csrf]").value;
        const body = new URLSearchParams({csrf, container_id: cid, action: "pause", confirm: "yes"});
        const r = await fetch("/containers/action", {method: "POST", body});
        return r.status;
    }""", stack.container_id)
    assert status == 403
    page.goto(f"{stack.url}/images")
    assert page.locator("button.switch").count() == 0
    page.screenshot(path=str(shots / "viewer-images.png"), full_page=True)
    assert stack.responder.done == [] and dialogs == []
    wait_for(lambda: any(e["action"].startswith("refused web") for e in stack.store.audit_entries()))
    ctx.close()
