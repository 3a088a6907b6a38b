"""OpenLocalForward (`ssh -L`): bytes round-trip intact through tunneld and
sshd to a real echo server, counters follow, Close frees the port."""

from __future__ import annotations

import os
import socket
from concurrent.futures import ThreadPoolExecutor

from tunnel.v1 import tunnel_pb2, tunnel_pb2_grpc

from peers import IO_TIMEOUT, EchoServer, can_bind, connect_and_expect_no_data, digest, round_trip
from support import RPC_TIMEOUT, Opened, listed, poll_until


def open_local(stub: tunnel_pb2_grpc.TunnelServiceStub, opened: Opened, target: EchoServer) -> tunnel_pb2.Tunnel:
    response = stub.OpenLocalForward(
        tunnel_pb2.OpenLocalForwardRequest(local_port=0, remote_host=target.host, remote_port=target.port),
        timeout=RPC_TIMEOUT,
    )
    return opened.add(response.tunnel)


def test_round_trip_is_byte_exact(stub: tunnel_pb2_grpc.TunnelServiceStub, opened: Opened, echo: EchoServer) -> None:
    tunnel = open_local(stub, opened, echo)
    assert tunnel.kind == tunnel_pb2.TUNNEL_KIND_LOCAL
    assert tunnel.state == tunnel_pb2.TUNNEL_STATE_OPEN
    assert not tunnel.attached
    assert tunnel.local.host == "127.0.0.1"
    assert tunnel.local.port != 0, "local_port 0 must come back as the bound port"
    assert (tunnel.remote.host, tunnel.remote.port) == (echo.host, echo.port)

    payload = os.urandom(2 << 20)
    reply = round_trip(tunnel.local.host, tunnel.local.port, payload)
    assert reply == payload, f"sent {digest(payload)}, got {digest(reply)}"
    assert echo.accepted == 1

    # Counters are updated as the connection ends.
    def settled() -> tunnel_pb2.Tunnel | None:
        t = listed(stub, tunnel.id)
        assert t is not None
        done = t.counters.active_connections == 0 and t.counters.bytes_from_target == len(payload)
        return t if done else None

    counted = poll_until("the connection to be counted", settled)
    assert counted.counters.total_connections == 1
    assert counted.counters.failed_connections == 0
    assert counted.counters.bytes_to_target == len(payload)


def test_concurrent_connections_stay_apart(
    stub: tunnel_pb2_grpc.TunnelServiceStub, opened: Opened, echo: EchoServer
) -> None:
    tunnel = open_local(stub, opened, echo)
    payloads = [bytes([i]) * 1000 + os.urandom(64 << 10) for i in range(8)]
    with ThreadPoolExecutor(max_workers=len(payloads)) as pool:
        replies = list(pool.map(lambda p: round_trip(tunnel.local.host, tunnel.local.port, p), payloads))
    for sent, got in zip(payloads, replies, strict=True):
        assert got == sent, f"sent {digest(sent)}, got {digest(got)}"
    t = poll_until(
        "all connections to end",
        lambda: t if (t := listed(stub, tunnel.id)) and t.counters.active_connections == 0 else None,
    )
    assert t.counters.total_connections == len(payloads)


def test_close_frees_the_port(stub: tunnel_pb2_grpc.TunnelServiceStub, opened: Opened, echo: EchoServer) -> None:
    tunnel = open_local(stub, opened, echo)
    assert round_trip(tunnel.local.host, tunnel.local.port, b"ping") == b"ping"

    closed = stub.Close(tunnel_pb2.CloseRequest(id=tunnel.id), timeout=RPC_TIMEOUT).tunnel
    assert closed.id == tunnel.id
    assert closed.state == tunnel_pb2.TUNNEL_STATE_CLOSED
    assert closed.counters.total_connections == 1
    assert closed.counters.bytes_to_target == 4
    assert listed(stub, tunnel.id) is None

    # The port is free again: nothing accepts on it and it can be bound.
    with socket.socket() as s:
        s.settimeout(IO_TIMEOUT)
        assert s.connect_ex((tunnel.local.host, tunnel.local.port)) != 0
    assert can_bind(tunnel.local.host, tunnel.local.port), "Close returned but the port is still bound"


def test_a_refused_target_counts_as_failed(stub: tunnel_pb2_grpc.TunnelServiceStub, opened: Opened) -> None:
    # A port with nothing listening: bound then released by the OS.
    with socket.create_server(("127.0.0.1", 0)) as s:
        dead_port = s.getsockname()[1]
    response = stub.OpenLocalForward(
        tunnel_pb2.OpenLocalForwardRequest(remote_host="127.0.0.1", remote_port=dead_port),
        timeout=RPC_TIMEOUT,
    )
    tunnel = opened.add(response.tunnel)
    # The connection is accepted locally, then ended without a byte.
    connect_and_expect_no_data(tunnel.local.host, tunnel.local.port)
    t = poll_until(
        "the failed connection to be counted",
        lambda: t if (t := listed(stub, tunnel.id)) and t.counters.failed_connections == 1 else None,
    )
    assert t.state == tunnel_pb2.TUNNEL_STATE_OPEN, "one refused connection does not fail the tunnel"
