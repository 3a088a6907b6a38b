"""List, Close, GetInfo and the standard health service."""

from __future__ import annotations

import re
import time

import grpc
from grpc_health.v1 import health_pb2
from tunnel.v1 import tunnel_pb2, tunnel_pb2_grpc

from peers import EchoServer
from support import RPC_TIMEOUT, Opened, expect_status, health_check, listed, run_exec
from testbed import Endpoints


def test_get_info_describes_the_running_daemon(stub: tunnel_pb2_grpc.TunnelServiceStub, endpoints: Endpoints) -> None:
    info = stub.GetInfo(tunnel_pb2.GetInfoRequest(), timeout=RPC_TIMEOUT)
    assert re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", info.version), info.version
    assert info.pid == endpoints.tunneld_pid
    assert info.HasField("started_at")
    started = info.started_at.ToDatetime().timestamp()
    assert 0 < time.time() - started < 24 * 3600, f"started_at {info.started_at.ToJsonString()} is not recent"


def test_list_reports_the_default_host(stub: tunnel_pb2_grpc.TunnelServiceStub, endpoints: Endpoints) -> None:
    run_exec(stub, "true")  # makes sure the SSH connection is up
    hosts = {h.name: h for h in stub.List(tunnel_pb2.ListRequest(), timeout=RPC_TIMEOUT).hosts}
    assert "default" in hosts, hosts
    default = hosts["default"]
    assert default.address.startswith(f"{endpoints.ssh_user}@"), default.address
    assert default.address.endswith(f":{endpoints.sshd_port}"), default.address
    assert default.state == tunnel_pb2.SSH_CONNECTION_STATE_CONNECTED, default
    assert default.HasField("connected_at")


def test_list_orders_tunnels_and_close_removes_one(
    stub: tunnel_pb2_grpc.TunnelServiceStub, opened: Opened, echo: EchoServer
) -> None:
    first = opened.add(
        stub.OpenLocalForward(
            tunnel_pb2.OpenLocalForwardRequest(remote_host=echo.host, remote_port=echo.port), timeout=RPC_TIMEOUT
        ).tunnel
    )
    second = opened.add(
        stub.OpenRemoteForward(
            tunnel_pb2.OpenRemoteForwardRequest(local_host=echo.host, local_port=echo.port), timeout=RPC_TIMEOUT
        ).tunnel
    )
    assert first.id != second.id

    listing = stub.List(tunnel_pb2.ListRequest(), timeout=RPC_TIMEOUT)
    ids = [t.id for t in listing.tunnels]
    assert first.id in ids and second.id in ids
    assert ids.index(first.id) < ids.index(second.id), f"oldest first: {ids}"
    by_id = {t.id: t for t in listing.tunnels}
    assert by_id[first.id].kind == tunnel_pb2.TUNNEL_KIND_LOCAL
    assert by_id[second.id].kind == tunnel_pb2.TUNNEL_KIND_REMOTE
    assert by_id[first.id].host == "default"
    assert by_id[first.id].HasField("created_at")
    hosts = {h.name: h for h in listing.hosts}
    assert hosts["default"].tunnels >= 2

    closed = stub.Close(tunnel_pb2.CloseRequest(id=first.id), timeout=RPC_TIMEOUT).tunnel
    assert closed.id == first.id
    assert closed.state == tunnel_pb2.TUNNEL_STATE_CLOSED
    assert listed(stub, first.id) is None
    assert listed(stub, second.id) is not None, "closing one tunnel leaves the others"

    # A closed id is unknown from then on.
    message = expect_status(
        grpc.StatusCode.NOT_FOUND,
        lambda: stub.Close(tunnel_pb2.CloseRequest(id=first.id), timeout=RPC_TIMEOUT),
    )
    assert first.id in message


def test_health_reports_serving(channel: grpc.Channel) -> None:
    for service in ("", "tunnel.v1.TunnelService"):
        response = health_check(channel, service)
        assert response.status == health_pb2.HealthCheckResponse.SERVING, f"service {service!r}"
