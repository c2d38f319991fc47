"""The protobuf boundary: dataclasses survive the wire unchanged, the committed generated code
matches the .proto, and the Falco export has Falco's shape."""

from __future__ import annotations

import json

import pytest

from collector.convert import (
    action_kind,
    event_from_pb,
    event_to_pb,
    finding_from_pb,
    finding_to_pb,
    pb,
    refused_message,
    status_value,
)
from collector.errors import InvalidArgument, ResourceExhausted, status_code
from collector.export import falco_json, rfc3339
from collector.proto import build
from sensor.events import CONNECT, EXEC, Event, Finding

CID = "0123456789ab" * 5 + "cdef"


def _exec_event() -> Event:
    return Event(EXEC, 1_700_000_000_123_456_789, pid=42, tid=42, ppid=1, uid=0, comm="nc",
                 exe="/bin/busybox", args=("nc", "-lp", "4444"), cgroup_id=99, container_id=CID,
                 container_name="web", image="cgsentry/busybox:latest", image_id="sha256:abc",
                 runtime="docker", pexe="/bin/sh", ancestry=("/bin/sh", "/bin/init"), truncated=True,
                 ancestor_pid=5, pod="web-1", namespace="payments", labels=(("app", "web"), ("tier", "front")),
                 image_digest="cgsentry/busybox@sha256:" + "d" * 64)


def test_event_round_trip_keeps_every_field_including_defaults() -> None:
    for ev in (_exec_event(), Event(CONNECT, 5, proto="tcp", family="ipv4", daddr="127.0.0.1", dport=80,
                                    ret=-111, sc_args=(1, 2, 3)), Event(EXEC, 7)):
        back = event_from_pb(pb.Event.FromString(event_to_pb(ev).SerializeToString()))
        assert back == ev
    assert event_from_pb(event_to_pb(Event(EXEC, 7))).syscall_nr == -1  # the "none" sentinel survives


def test_kubernetes_fields_reach_the_falco_form_and_the_alert_json() -> None:
    from collector.export import falco_json

    out = falco_json(Finding("rule", "R", "NOTICE", "o", _exec_event()))["output_fields"]
    assert (out["k8s.ns.name"], out["k8s.pod.name"], out["k8s.pod.labels"]) == ("payments", "web-1",
                                                                              "app:web, tier:front")
    assert out["container.image.digest"] == "sha256:" + "d" * 64
    assert "k8s.ns.name" not in falco_json(Finding("rule", "R", "NOTICE", "o", Event(EXEC, 1)))["output_fields"]


def test_finding_round_trip_keeps_explanation_and_flags() -> None:
    f = Finding("new_process", "New Process", "WARNING", "nc in web", _exec_event(), time_ns=123, source="model",
                tags=("drift", "T1059"), explanation={"expected": ["/bin/sh"], "learned_s": 30.5},
                action="pause-container", mode="enforce", during_loss=True,
                ancestors=((7, "/usr/sbin/nginx", ("nginx: worker process",)), (1, "/usr/bin/runc", ())),
                ancestors_end="parent pid 3 unknown to the sensor")
    assert finding_from_pb(pb.Finding.FromString(finding_to_pb(f).SerializeToString())) == f
    assert Finding.from_dict(f.to_dict()) == f  # the sensor's spool and the collector's store keep them too


def test_malformed_explanation_is_kept_raw_not_fatal() -> None:
    msg = finding_to_pb(Finding("rule", "R", "NOTICE", "o", Event(EXEC, 1)))
    msg.explanation_json = "{not json"
    assert finding_from_pb(msg).explanation == {"raw": "{not json"}


def test_action_and_status_names() -> None:
    assert action_kind("pause-container") == action_kind("pause") == pb.ACTION_KIND_PAUSE
    assert action_kind("kill") == pb.ACTION_KIND_KILL
    assert action_kind("dance") == pb.ACTION_KIND_UNSPECIFIED
    assert status_value("ack") == status_value("acknowledged") == pb.ALERT_STATUS_ACKNOWLEDGED
    assert status_value("suppress") == pb.ALERT_STATUS_SUPPRESSED
    assert status_value("bogus") == pb.ALERT_STATUS_UNSPECIFIED


def test_committed_generated_code_matches_the_proto(capsys: pytest.CaptureFixture[str]) -> None:
    assert build.main(["--check"]) == 0, capsys.readouterr().err


def test_falco_export_shape() -> None:
    f = Finding("rule", "Netcat Remote Code Execution in Container", "WARNING", "nc run", _exec_event(),
                time_ns=1_700_000_000_123_456_789, tags=("network",))
    out = falco_json(f, "node-1")
    assert json.loads(json.dumps(out)) == out  # plain JSON types only
    assert out["time"] == "2023-11-14T22:13:20.123456789Z" == rfc3339(f.time_ns)
    assert (out["priority"], out["source"], out["hostname"], out["tags"]) == ("Warning", "syscall", "node-1",
                                                                              ["network"])
    fields = out["output_fields"]
    assert fields["container.id"] == CID[:12] and fields["container.name"] == "web"
    assert (fields["container.image.repository"], fields["container.image.tag"]) == ("cgsentry/busybox", "latest")
    assert (fields["proc.pid"], fields["proc.exe"], fields["proc.cmdline"]) == (42, "/bin/busybox", "nc -lp 4444")


def test_falco_image_without_tag_and_registry_port() -> None:
    ev = Event(EXEC, 1, image="registry:5000/app")
    fields = falco_json(Finding("rule", "R", "NOTICE", "o", ev), "h")["output_fields"]
    assert (fields["container.image.repository"], fields["container.image.tag"]) == ("registry:5000/app", "")


def test_parse_since_rejects_nonsense() -> None:
    from collector.client import parse_since

    assert parse_since("") == 0
    assert parse_since("1700000000") == 1_700_000_000 * 10**9
    assert parse_since("2023-11-14T22:13:20Z") == 1_700_000_000 * 10**9
    with pytest.raises(InvalidArgument):
        parse_since("yesterday")


def test_a_refusal_carries_its_batch_and_a_bounded_reason() -> None:
    msg = refused_message(7, "batch 7 refused: " + "x" * 5000)
    assert msg.WhichOneof("body") == "refused" and msg.refused.seq == 7
    assert len(msg.refused.reason) < 2100 and msg.refused.reason.endswith("characters cut]")
    assert refused_message(1 << 63, "short").refused.reason == "short"


def test_resource_exhausted_has_its_status_code() -> None:
    import grpc

    assert status_code(ResourceExhausted("too many")) == grpc.StatusCode.RESOURCE_EXHAUSTED
