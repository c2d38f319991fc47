"""The console's other pages in a real browser: an image's baseline (items with provenance, versions,
a diff), what a mode switch will do (and that it does it), the sensors page, the audit log's
filters and the dashboard; hostile baseline items and sensor names stay text; a viewer cannot act.
Screenshots of each page go to the ``shots`` directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.workloads import IMAGE, IMAGE_ID
from tests.consolekit import EVIL_SENSOR, HOSTILE, ROOT, Stack, baseline_snapshot, open_page
from tests.waiting import wait_for


def no_script_ran(page: Any, dialogs: list[str]) -> None:
    assert page.evaluate("window.pwned") is None and dialogs == []


def test_an_images_baseline_its_provenance_and_the_diff_of_two_versions(browser: Any, stack: Stack,
                                                                         shots: Path) -> None:
    ctx, page, dialogs = open_page(browser, stack, "viewer")
    page.goto(f"{stack.url}/images")
    page.locator("#images tbody tr", has_text=IMAGE).locator("a.baseline-link").click()
    page.wait_for_selector("#items-process")
    assert page.inner_text("#image") == IMAGE
    processes = page.inner_text("#items-process")
    assert ROOT in processes and "/tmp/\\x1b[31mred\\x1b[0m<script>window.pwned=1</script>" in processes
    assert "\\u202egnp.exe" in processes  # the bidi override shown, not obeyed
    rule = page.inner_text("#items-rule")
    assert "Shell Spawned By Web Server" in rule and f"parent={ROOT}" in rule and "container=\\x1b[31mred" in rule
    assert "80" in page.inner_text("#items-listen") and "10.0.0.0/24" in page.inner_text("#items-outbound")
    assert "ptrace" in page.inner_text("#items-syscall")
    assert page.locator("#versions tbody tr").count() == 1
    no_script_ran(page, dialogs)
    page.screenshot(path=str(shots / "baseline.png"), full_page=True)

    stack.sensor.snapshots = [(IMAGE_ID, baseline_snapshot(1_700_000_000 * 10**9, extra=("/usr/bin/curl",)))]
    wait_for(lambda: len(stack.store.baseline_versions(IMAGE_ID)) == 2)
    page.reload()
    assert page.locator("#versions tbody tr").count() == 2
    assert "/usr/bin/curl" in page.inner_text("#items-process")  # now: the merged baseline
    page.select_option("#diff-a", "1")
    page.select_option("#diff-b", "2")
    page.click("#diff")
    page.wait_for_selector("#changes")
    added = page.locator("#changes tr.added")
    assert added.count() == 2 and page.locator("#changes tr.removed").count() == 0
    assert "/usr/bin/curl" in added.first.inner_text() + added.last.inner_text()
    assert "version 1 → version 2" in page.inner_text("#comparing")
    page.screenshot(path=str(shots / "baseline-diff.png"), full_page=True)
    page.click("a.view-version >> nth=1")  # version 1, from the versions table
    page.wait_for_selector("#items-process")
    assert "/usr/bin/curl" not in page.inner_text("#items-process") and "version 1" in page.inner_text("#showing")
    no_script_ran(page, dialogs)
    ctx.close()


def test_switching_a_mode_says_what_it_will_do_and_does_it(browser: Any, stack: Stack, shots: Path) -> None:
    stack.store.set_image(IMAGE, "alert", {"match": IMAGE, "default_action": "alert", "banned_processes": ["nc"]},
                          "ops")
    ctx, page, dialogs = open_page(browser, stack, "admin")
    page.goto(f"{stack.url}/images")
    row = page.locator("#images tbody tr", has_text=IMAGE)
    will = row.locator("output.effect")
    assert will.inner_text().startswith("alert: ") and "nothing is stopped" in will.inner_text()
    row.locator("select[name=mode]").select_option("learn")
    assert "rule and policy hits are still alerted on" in will.inner_text()
    row.locator("select[name=mode]").select_option("enforce")
    row.locator("select[name=action]").select_option("kill-container")
    assert "the container is killed" in will.inner_text() and "banned processes (nc)" in will.inner_text()
    row.locator("select[name=action]").select_option("pause-container")
    said = will.inner_text()
    assert "the container is paused" in said
    page.screenshot(path=str(shots / "images-switch.png"), full_page=True)
    row.locator("input[name=confirm]").check()
    row.locator("button.switch").click()
    page.wait_for_selector("#message")
    assert said in page.inner_text("#message")
    assert page.locator("#images tbody tr", has_text=IMAGE).locator("td.effect").inner_text() == said
    # what the sensor was sent decides a rule hit as the page said it would
    wait_for(lambda: any(p.get("mode") == "enforce" for _, p in stack.sensor.policies))
    [pushed] = [p for _, p in stack.sensor.policies if p.get("mode") == "enforce"]
    from rules.policy import PolicySet
    from tests.consolekit import attack

    pol = PolicySet.from_dict({"images": [pushed]}).images[0]
    assert pol.decide(attack(0)[2]) == "pause-container" and pushed["banned_processes"] == ["nc"]
    assert dialogs == []
    ctx.close()


def test_sensors_with_health_rates_drops_spool_and_hostile_names(browser: Any, stack: Stack, shots: Path) -> None:
    ctx, page, dialogs = open_page(browser, stack, "viewer")
    page.goto(f"{stack.url}/sensors")
    rows = page.locator("#sensors tbody tr")
    assert rows.count() == 2
    evil = page.locator("#sensors tbody tr", has_text="evil")
    assert evil.locator("td.sensor-id").inner_text() == "evil\\x1b]8;;http://x\\x07<script>window.pwned=2</script>"
    assert "node\\x1b[2J<b onmouseover=alert(3)>bold</b>" in evil.inner_text()
    assert evil.locator("td.health").inner_text() == "dropping" and evil.locator("td.eps").inner_text() == "7.0"
    assert evil.locator("td.drops").inner_text().startswith("3")
    one = page.locator("#sensors tbody tr", has_text="sensor-1")
    assert one.locator("td.health").inner_text() == "ok" and one.locator("td.collector").inner_text() == "this one"
    assert one.locator("td.spool").inner_text() == "2048 B"
    # events/s from two heartbeats' counters: the live table brings it in (marked *)
    wait_for(lambda: one.locator("td.eps").inner_text().endswith("*"))
    assert float(one.locator("td.eps").inner_text().rstrip("*")) > 0
    no_script_ran(page, dialogs)
    assert page.locator("b[onmouseover]").count() == 0 and EVIL_SENSOR not in page.content()
    page.screenshot(path=str(shots / "sensors.png"), full_page=True)
    ctx.close()


def test_the_audit_log_filtered_by_actor_action_target_and_time(browser: Any, stack: Stack, shots: Path) -> None:
    ctx, page, dialogs = open_page(browser, stack, "responder")
    page.click("a.incident-link")
    page.check("#confirm-pause")
    page.click("#pause")
    page.wait_for_selector("#message")
    stack.store.audit(HOSTILE, "pause", HOSTILE, HOSTILE, "ok")  # text from elsewhere, e.g. a sensor's answer
    page.goto(f"{stack.url}/audit")
    assert page.locator("#audit tbody tr").count() >= 2
    page.fill("input[name=actor]", "respond")
    page.fill("input[name=action]", "pause")
    page.fill("input[name=target]", stack.container_id[:12])
    page.click("#filter")
    page.wait_for_url("**/audit?*")
    rows = page.locator("#audit tbody tr")
    assert rows.count() == 1 and rows.first.locator("td.actor").inner_text() == "responder"
    assert rows.first.locator("td.target").inner_text() == stack.container_id
    page.screenshot(path=str(shots / "audit.png"), full_page=True)
    page.fill("input[name=since]", "2100-01-01T00:00")  # the browser's datetime-local value
    page.click("#filter")
    page.wait_for_url("**since=2100*")
    assert "Nothing audited matches" in page.inner_text("#audit")
    page.goto(f"{stack.url}/audit?action=pause")
    shown = page.inner_text("#audit")
    assert "\\x1b[31mred" in shown and "<script>window.pwned=1</script>" in shown
    no_script_ran(page, dialogs)
    ctx.close()


def test_the_dashboard_findings_by_priority_top_rules_images_and_open_incidents(browser: Any, stack: Stack,
                                                                              shots: Path) -> None:
    ctx, page, dialogs = open_page(browser, stack, "viewer")
    page.goto(f"{stack.url}/")
    assert page.locator("#chart rect.bar").count() == 3  # CRITICAL, WARNING, NOTICE in this hour
    assert page.locator("#chart rect.bar-critical").count() == 1
    assert "Reverse Shell" in page.inner_text("#top-rules") and IMAGE in page.inner_text("#top-images")
    assert page.inner_text("#incidents-open") == "1"
    page.click("#open-incidents a.incident-link")
    page.wait_for_selector("#tree")
    page.goto(f"{stack.url}/")
    page.screenshot(path=str(shots / "dashboard.png"), full_page=True)
    no_script_ran(page, dialogs)
    ctx.close()


def test_a_viewer_cannot_switch_modes_or_see_the_switch(browser: Any, stack: Stack) -> None:
    ctx, page, dialogs = open_page(browser, stack, "viewer")
    page.goto(f"{stack.url}/images")
    assert page.locator("form.mode-form").count() == 0 and page.locator("output.effect").count() == 0
    status = page.evaluate("""async (image) => {
        const csrf = document.querySelector("input[name=csrf]").value;
        const body = new URLSearchParams({csrf, image, mode: "enforce", action: "kill-container", confirm: "yes"});
        const r = await fetch("/images/mode", {method: "POST", body});
        return r.status;
    }""", IMAGE)
    assert status == 403 and stack.store.images()[0]["mode"] == ""
    assert not any(p.get("mode") == "enforce" for _, p in stack.sensor.policies) and dialogs == []
    ctx.close()
