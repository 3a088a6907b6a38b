"""OpenAttached (`ssh -N -L`/`-R`): a forward that lives as long as its
call, streaming `opened`, then each connection's open and close."""

from __future__ import annotations

import os
import socket

import grpc
from tunnel.v1 import tunnel_pb2, tunnel_pb2_grpc

from peers import IO_TIMEOUT, EchoServer, can_bind, connect_and_expect_no_data, round_trip
from support import RPC_TIMEOUT, STREAM_TIMEOUT, Opened, listed, poll_until


def echo_once(host: str, port: int, payload: bytes) -> int:
    """One connection through the forward; returns its local port (the peer
    tunneld reports), after checking the echo."""
    with socket.create_connection((host, port), timeout=IO_TIMEOUT) as sock:
        client_port: int = sock.getsockname()[1]
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    assert reply == payload
    return client_port


def test_local_events_and_cancel_closes_the_tunnel(
    stub: tunnel_pb2_grpc.TunnelServiceStub, opened: Opened, echo: EchoServer
) -> None:
    request = tunnel_pb2.OpenAttachedRequest(
        local=tunnel_pb2.OpenLocalForwardRequest(remote_host=echo.host, remote_port=echo.port)
    )
    call = stub.OpenAttached(request, timeout=STREAM_TIMEOUT)
    first = next(call)
    assert first.WhichOneof("event") == "opened", f"the first message must be `opened`: {first}"
    tunnel = opened.add(first.opened)
    assert tunnel.attached
    assert tunnel.kind == tunnel_pb2.TUNNEL_KIND_LOCAL
    assert tunnel.state == tunnel_pb2.TUNNEL_STATE_OPEN
    in_list = listed(stub, tunnel.id)
    assert in_list is not None and in_list.attached

    payload = os.urandom(100_000)
    client_port = echo_once(tunnel.local.host, tunnel.local.port, payload)

    event = next(call)
    assert event.WhichOneof("event") == "connection_opened", event
    assert event.connection_opened.connection_id == 1
    assert event.connection_opened.peer == f"127.0.0.1:{client_port}"

    event = next(call)
    assert event.WhichOneof("event") == "connection_closed", event
    closed = event.connection_closed
    assert closed.connection_id == 1
    assert closed.peer == f"127.0.0.1:{client_port}"
    assert (closed.bytes_to_target, closed.bytes_from_target) == (len(payload), len(payload))
    assert closed.error == ""
    assert closed.HasField("duration")

    # Going away closes the tunnel and frees its port.
    call.cancel()
    poll_until("the attached tunnel to leave List", lambda: True if listed(stub, tunnel.id) is None else None)
    poll_until(
        f"port {tunnel.local.port} to be freed",
        lambda: True if can_bind(tunnel.local.host, tunnel.local.port) else None,
    )


def test_remote_events(stub: tunnel_pb2_grpc.TunnelServiceStub, opened: Opened, echo: EchoServer) -> None:
    request = tunnel_pb2.OpenAttachedRequest(
        remote=tunnel_pb2.OpenRemoteForwardRequest(local_host=echo.host, local_port=echo.port)
    )
    call = stub.OpenAttached(request, timeout=STREAM_TIMEOUT)
    try:
        first = next(call)
        assert first.WhichOneof("event") == "opened", first
        tunnel = opened.add(first.opened)
        assert tunnel.attached
        assert tunnel.kind == tunnel_pb2.TUNNEL_KIND_REMOTE
        assert tunnel.remote.port != 0

        assert round_trip(tunnel.remote.host or "localhost", tunnel.remote.port, b"hello -R") == b"hello -R"
        event = next(call)
        assert event.WhichOneof("event") == "connection_opened", event
        assert event.connection_opened.connection_id == 1
        assert event.connection_opened.peer, "the originator sshd reports"
        event = next(call)
        assert event.WhichOneof("event") == "connection_closed", event
        assert event.connection_closed.bytes_to_target == len(b"hello -R")
        assert event.connection_closed.bytes_from_target == len(b"hello -R")
    finally:
        call.cancel()
    poll_until("the attached tunnel to leave List", lambda: True if listed(stub, tunnel.id) is None else None)


def test_close_ends_the_call_with_ok(stub: tunnel_pb2_grpc.TunnelServiceStub, opened: Opened, echo: EchoServer) -> None:
    request = tunnel_pb2.OpenAttachedRequest(
        local=tunnel_pb2.OpenLocalForwardRequest(remote_host=echo.host, remote_port=echo.port)
    )
    call = stub.OpenAttached(request, timeout=STREAM_TIMEOUT)
    tunnel = opened.add(next(call).opened)

    closed = stub.Close(tunnel_pb2.CloseRequest(id=tunnel.id), timeout=RPC_TIMEOUT).tunnel
    assert closed.state == tunnel_pb2.TUNNEL_STATE_CLOSED

    rest = list(call)  # ends without raising: status OK
    assert rest, "the call must report the closed tunnel"
    last = rest[-1]
    assert last.WhichOneof("event") == "state_changed", last
    assert last.state_changed.id == tunnel.id
    assert last.state_changed.state == tunnel_pb2.TUNNEL_STATE_CLOSED
    assert call.code() == grpc.StatusCode.OK


def test_a_refused_connection_reports_its_error(stub: tunnel_pb2_grpc.TunnelServiceStub, opened: Opened) -> None:
    with socket.create_server(("127.0.0.1", 0)) as s:
        dead_port: int = s.getsockname()[1]
    request = tunnel_pb2.OpenAttachedRequest(
        local=tunnel_pb2.OpenLocalForwardRequest(remote_host="127.0.0.1", remote_port=dead_port)
    )
    call = stub.OpenAttached(request, timeout=STREAM_TIMEOUT)
    try:
        tunnel = opened.add(next(call).opened)
        connect_and_expect_no_data(tunnel.local.host, tunnel.local.port)
        events = [next(call), next(call)]
        assert [e.WhichOneof("event") for e in events] == ["connection_opened", "connection_closed"]
        assert events[1].connection_closed.error, "a refused target must say why"
    finally:
        call.cancel()
