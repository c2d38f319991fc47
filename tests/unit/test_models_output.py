"""`model show`, `model diff` and `model accept`/`reject` speak one language: syscalls by name in
numeric order, labelled columns, structured JSON items, and a diff spelling that `accept` takes."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from bench.workloads import IMAGE_ID, fleet
from models import store
from models.baseline import ModelConfig
from models.engine import ModelEngine
from models.errors import ModelError
from sensor.events import Event
from tests.unit.model_cli import model_cli

CFG = ModelConfig(min_learn_s=60, stable_s=30)
NRS = (102, 10, 1, 0, 2)  # getuid, mprotect, write, read, open: "0, 1, 10, 102, 2" as strings


def learned_with_syscalls() -> ModelEngine:
    eng = ModelEngine(CFG, node="node-a")
    start = fleet(1, 1)[0].time_ns
    for nr in NRS:
        eng.handle(Event("syscall", start, syscall_nr=nr, container_id="0" * 64, image_id=IMAGE_ID,
                         runtime="docker"))
    for ev in fleet(3, 240):
        eng.handle(ev)
    return eng


@pytest.fixture()
def run(tmp_path: Path) -> object:
    return model_cli(learned_with_syscalls(), tmp_path)


def test_show_lists_syscalls_by_name_in_numeric_order_and_labels_uid(
        run: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("show", IMAGE_ID) == 0  # type: ignore[operator]
    lines = capsys.readouterr().out.splitlines()
    first = lines.index("  syscall (5):") + 1
    assert [ln.split("  (")[0].strip() for ln in lines[first:first + 5]] == [
        "read (nr 0)", "write (nr 1)", "open (nr 2)", "mprotect (nr 10)", "getuid (nr 102)"]
    assert any(ln.strip().startswith("/usr/sbin/httpd  uid 0  (count ") for ln in lines)


def test_show_json_items_are_structured(run: object, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("show", IMAGE_ID, "--json") == 0  # type: ignore[operator]
    items = json.loads(capsys.readouterr().out)["items"]
    httpd = next(i for i in items["process"] if i["exe"] == "/usr/sbin/httpd")
    assert httpd["kind"] == "process" and httpd["uid"] == 0 and httpd["count"] >= 3
    assert httpd["containers"] == 3 and httpd["nodes"] == ["node-a"]
    assert httpd["first_seen"].startswith("2023-11-14T") and httpd["last_seen"].endswith("Z")
    assert httpd["provenance"]["container"] == "web-0"
    assert [(i["nr"], i["name"]) for i in items["syscall"]] == [(0, "read"), (1, "write"), (2, "open"),
                                                                (10, "mprotect"), (102, "getuid")]
    assert items["outbound"][0]["address"] == "127.0.0.1" and items["outbound"][0]["port"] == 8080


def test_diff_spells_items_as_accept_takes_them(run: object, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    [a] = list(tmp_path.glob("*.model"))
    b = store.load(a, CFG)
    for dim, key in (("process", ("/usr/bin/wget", 0)), ("args", ("/bin/sleep", "1")), ("syscall", (102,))):
        b.profile.items[dim].pop(key)
    b_path = store.save(b, tmp_path_factory.mktemp("other"))
    assert run("diff", str(a), str(b_path)) == 1  # type: ignore[operator]
    lines = capsys.readouterr().out.splitlines()
    assert sorted(lines) == ["- args /bin/sleep 1", "- process /usr/bin/wget 0", "- syscall getuid"]
    # what diff prints, accept takes: each item goes back into B's store
    for line in lines:
        dim, *parts = shlex.split(line[2:])
        assert run("reject", IMAGE_ID, dim, *parts) == 0  # type: ignore[operator]
        assert run("accept", IMAGE_ID, dim, *parts) == 0  # type: ignore[operator]
    back = ModelEngine.open(tmp_path, CFG).images[IMAGE_ID]
    assert back.profile.known("args", ("/bin/sleep", "1")) and back.profile.known("syscall", (102,))


def test_accept_checks_the_item_shape(run: object) -> None:
    with pytest.raises(ModelError, match=r"a listen item is PROTO PORT \(2 part\(s\)\), got 1") as err:
        run("accept", IMAGE_ID, "listen", "tcp")  # type: ignore[operator]
    assert err.value.exit_code == 64
    with pytest.raises(ModelError, match="port must be a number"):
        run("accept", IMAGE_ID, "listen", "tcp", "http")  # type: ignore[operator]
    with pytest.raises(ModelError, match="a number or a syscall name"):
        run("accept", IMAGE_ID, "syscall", "notacall")  # type: ignore[operator]


def test_a_failed_connect_says_how_it_failed_in_words() -> None:
    from models.baseline import describe
    from rules.fields import FIELDS
    from sensor.events import failure_text

    assert failure_text(-111) == "ECONNREFUSED, refused" and failure_text(-110) == "ETIMEDOUT, timed out"
    # `timeout 2 nc` gives up on a connect nobody answers: the tracepoint sees the kernel's own errno
    assert failure_text(-512) == "ERESTARTSYS, interrupted: its caller gave up before an answer"
    assert failure_text(-9999) == "-9999"
    ev = Event("connect", 1, pid=5, exe="/bin/nc", daddr="127.0.0.1", dport=9, proto="tcp", family="ipv4",
               saddr="127.0.0.1", sport=40000, ret=-512)
    assert describe("outbound", ("127.0.0.1", 9, "tcp"), ev).endswith(
        "(127.0.0.1:40000->127.0.0.1:9 failed: ERESTARTSYS, interrupted: its caller gave up before an answer)")
    assert FIELDS["evt.res"].get(ev) == "ERESTARTSYS"
