"""Replies bounded by the transport, end to end (issue 16 item 5): `ListAlerts` pages by size with
a cursor the CLI follows, and no single alert, listed, shown or watched, is bigger than a message
may be — one that would be is sent shortened, saying so."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import grpc
import pytest

from bench.workloads import deviation
from collector.convert import alert_query, pb, rpc
from collector.server import MAX_MESSAGE_BYTES
from collector.store import SqlStore
from sensor.events import Finding
from tests.integration.helpers import run


def big(i: int, size: int) -> Finding:
    ev = deviation("new_binary", 1_700_000_000_000_000_000 + i, i=i).pop()
    return Finding("new_process", "New Process", "WARNING", f"finding {i} " + "o" * size, ev, time_ns=ev.time_ns)


def number(a: pb.Alert) -> int:
    return int(a.finding.output.split()[1])


def stub_of(address: str, token: str) -> tuple[Any, list[tuple[str, str]]]:
    channel = grpc.insecure_channel(address, options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
    return rpc.AnalystStub(channel), [("authorization", f"Bearer {token}")]


def test_listing_pages_by_size_and_the_cursor_gets_every_alert(live: Any) -> None:
    address, toks, store = live
    for i in range(5):  # 5 x 0.9 MiB: more than one 4 MiB message holds
        store.ingest("s1", "n", i + 1, [big(i, 900 << 10)])
    analyst, md = stub_of(address, toks["viewer"])
    seen: list[int] = []
    cursor, pages = "", 0
    while True:
        page = analyst.ListAlerts(alert_query(cursor=cursor), metadata=md, timeout=30)
        assert 1 <= len(page.alerts) <= 3 and page.ByteSize() < MAX_MESSAGE_BYTES
        seen += [number(a) for a in page.alerts]
        pages, cursor = pages + 1, page.next_cursor
        if not cursor:
            break
    assert pages >= 2 and seen == [4, 3, 2, 1, 0]  # newest first, each once
    small = analyst.ListAlerts(alert_query(max_bytes=100_000), metadata=md, timeout=30)
    assert [number(a) for a in small.alerts] == [4] and small.next_cursor  # one cut alert per small page
    assert "characters cut" in small.alerts[0].finding.output and small.alerts[0].ByteSize() < 100_000
    for query, message in ((alert_query(max_bytes=-1), "max_bytes -1"), (alert_query(cursor="x:y"), "cursor")):
        with pytest.raises(grpc.RpcError) as info:
            analyst.ListAlerts(query, metadata=md, timeout=30)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in (info.value.details() or "")


@pytest.mark.parametrize("form", ["--json", "--falco", "table"])
def test_the_cli_follows_the_cursor(live: Any, capsys: Any, form: str) -> None:
    address, toks, store = live
    for i in range(5):
        store.ingest("s1", "n", i + 1, [big(i, 900 << 10)])
    flags = [] if form == "table" else [form]
    rc, out, err = run(capsys, "--server", address, "--token", toks["viewer"], "alerts", "list", *flags)
    assert rc == 0 and err == ""
    if form == "--json":
        assert [r["output"].split()[1] for r in json.loads(out)] == ["4", "3", "2", "1", "0"]
    elif form == "--falco":
        assert [json.loads(line)["output"].split()[1] for line in out.splitlines()] == ["4", "3", "2", "1", "0"]
    else:
        assert len(out.splitlines()) == 1 + 5
    rc, out, _ = run(capsys, "--server", address, "--token", toks["viewer"], "alerts", "list", "--json",
                     "--limit", "4")
    assert rc == 0 and len(json.loads(out)) == 4


def huge_node_alert(store: SqlStore, seq: int) -> None:
    """An alert whose message passes gRPC's 4 MiB: a 3.5 MB node name (what an older collector took
    from a sensor's hello) and a 0.9 MiB finding, each within what the store checks."""
    store.ingest("s1", "N" * (3_500_000), seq, [big(seq, 900 << 10)])


def test_an_alert_bigger_than_a_message_is_listed_and_shown_shortened(live: Any) -> None:
    address, toks, store = live
    huge_node_alert(store, 1)
    analyst, md = stub_of(address, toks["viewer"])
    [alert] = analyst.ListAlerts(pb.AlertQuery(), metadata=md, timeout=30).alerts
    assert number(alert) == 1 and alert.ByteSize() < MAX_MESSAGE_BYTES
    assert alert.node.startswith("NNNN") and "characters cut: the alert is" in alert.node
    shown = analyst.GetAlert(pb.AlertId(id=alert.id), metadata=md, timeout=30)
    assert shown.ByteSize() < MAX_MESSAGE_BYTES and "characters cut" in shown.node


def test_a_watch_sends_an_alert_bigger_than_a_message_shortened(live: Any) -> None:
    address, toks, store = live
    analyst, md = stub_of(address, toks["viewer"])
    stream = analyst.WatchAlerts(pb.AlertQuery(), metadata=md, timeout=60)
    got: list[pb.Alert] = []
    failed: list[grpc.StatusCode] = []

    def read() -> None:
        try:
            for alert in stream:
                got.append(alert)
        except grpc.RpcError as err:
            failed.append(err.code())

    threading.Thread(target=read, daemon=True).start()
    seq = 0
    while not got and not failed and seq < 100:  # the watch starts when the server runs it: add until seen
        seq += 1
        store.ingest("s1", "n", seq, [big(seq, 10)])
        time.sleep(0.2)
    huge_node_alert(store, 1000)
    store.ingest("s1", "n", 1001, [big(1001, 10)])  # and the watch goes on after it
    deadline = time.monotonic() + 20
    while not failed and 1001 not in [number(a) for a in got] and time.monotonic() < deadline:
        time.sleep(0.05)
    stream.cancel()
    assert not failed, failed
    [cut] = [a for a in got if number(a) == 1000]
    assert cut.ByteSize() < MAX_MESSAGE_BYTES and "characters cut: the alert is" in cut.node
    assert number(got[-1]) == 1001
