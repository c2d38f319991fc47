"""Sensor identity under mutual TLS: a certificate from `cgsentry collector pki` is the sensor's
identity (CN), a sensor may only report as itself, and a client without a certificate or with one
from another CA is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
import pytest

from collector import pki
from collector.auth import AuthConfig, TokenStore
from collector.convert import pb, rpc
from collector.errors import CollectorError
from collector.server import TlsConfig, create_server
from collector.store import SqlStore


@pytest.fixture
def mtls(tmp_path: Path) -> Any:
    d = tmp_path / "pki"
    d.mkdir()
    pki.init_ca(d, [])
    pki.issue_sensor(d, "s1")
    store = SqlStore.open(str(tmp_path / "c.db"))
    tls = TlsConfig((d / "server.crt").read_bytes(), (d / "server.key").read_bytes(), (d / "ca.crt").read_bytes())
    server, port = create_server("127.0.0.1:0", store, AuthConfig(TokenStore(None), mtls=True), tls)
    yield d, port, store
    server.stop(0)
    store.close()


def _connect(port: int, ca: bytes, key: bytes | None, cert: bytes | None, sensor_id: str) -> Any:
    """Say hello as ``sensor_id``; the first reply (the welcome ack) or the RpcError code."""
    channel = grpc.secure_channel(f"127.0.0.1:{port}", grpc.ssl_channel_credentials(ca, key, cert))
    hello = pb.SensorMessage(hello=pb.Hello(node="n1", sensor_id=sensor_id, version="t"))
    stream = rpc.SensorLinkStub(channel).Connect(iter([hello]), timeout=5)
    try:
        return next(stream)
    except grpc.RpcError as err:
        return err.code()
    finally:
        stream.cancel()
        channel.close()


def test_sensor_certificate_is_its_identity(mtls: Any) -> None:
    d, port, store = mtls
    ca, key, cert = ((d / n).read_bytes() for n in ("ca.crt", "sensor-s1.key", "sensor-s1.crt"))
    reply = _connect(port, ca, key, cert, "s1")
    assert not isinstance(reply, grpc.StatusCode), reply
    assert reply.WhichOneof("body") == "ack"
    assert [s["sensor_id"] for s in store.sensors()] == ["s1"]


def test_sensor_claiming_another_id_is_refused(mtls: Any) -> None:
    d, port, store = mtls
    ca, key, cert = ((d / n).read_bytes() for n in ("ca.crt", "sensor-s1.key", "sensor-s1.crt"))
    assert _connect(port, ca, key, cert, "s2") == grpc.StatusCode.PERMISSION_DENIED
    assert store.sensors() == []


def test_sensor_without_valid_certificate_is_refused(mtls: Any, tmp_path: Path) -> None:
    d, port, store = mtls
    ca = (d / "ca.crt").read_bytes()
    # with a CA configured the server requires a client certificate: the TLS handshake fails
    assert _connect(port, ca, None, None, "s1") in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)
    rogue = tmp_path / "rogue"
    rogue.mkdir()
    pki.init_ca(rogue, [])
    pki.issue_sensor(rogue, "s1")  # right name, wrong CA
    key, cert = (rogue / "sensor-s1.key").read_bytes(), (rogue / "sensor-s1.crt").read_bytes()
    assert _connect(port, ca, key, cert, "s1") == grpc.StatusCode.UNAVAILABLE
    assert store.sensors() == []


@pytest.mark.parametrize("name", ["..", "-x", ".hidden", "a/b", "x" * 65, ""])
def test_certificate_names_are_checked_before_anything_is_issued(tmp_path: Path, name: str) -> None:
    """'..' once made sensor-...crt, and a 70-character name a cryptography traceback (CN <= 64)."""
    pki.init_ca(tmp_path, [])
    before = sorted(p.name for p in tmp_path.iterdir())
    for issue in (pki.issue_sensor, pki.issue_client):
        with pytest.raises(CollectorError, match="certificate name") as err:
            issue(tmp_path, name)
        assert err.value.exit_code == 65
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert pki.issue_client(tmp_path, "x" * 64).exists()
