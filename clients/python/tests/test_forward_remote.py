"""OpenRemoteForward (`ssh -R`): sshd listens, each connection comes back
through tunneld to a real echo server here."""

from __future__ import annotations

import os
import shlex
import socket

from tunnel.v1 import tunnel_pb2, tunnel_pb2_grpc

from peers import IO_TIMEOUT, EchoServer, digest, round_trip
from support import RPC_TIMEOUT, Opened, listed, poll_until, run_exec


def open_remote(stub: tunnel_pb2_grpc.TunnelServiceStub, opened: Opened, target: EchoServer) -> tunnel_pb2.Tunnel:
    response = stub.OpenRemoteForward(
        tunnel_pb2.OpenRemoteForwardRequest(remote_port=0, local_host=target.host, local_port=target.port),
        timeout=RPC_TIMEOUT,
    )
    return opened.add(response.tunnel)


def test_round_trip_through_the_server_port(
    stub: tunnel_pb2_grpc.TunnelServiceStub, opened: Opened, echo: EchoServer
) -> None:
    tunnel = open_remote(stub, opened, echo)
    assert tunnel.kind == tunnel_pb2.TUNNEL_KIND_REMOTE
    assert tunnel.state == tunnel_pb2.TUNNEL_STATE_OPEN
    assert tunnel.remote.port != 0, "remote_port 0 must come back as the port sshd allocated"
    assert (tunnel.local.host, tunnel.local.port) == (echo.host, echo.port)

    # sshd listens on its loopback, which is this machine's.
    payload = os.urandom(1 << 20)
    reply = round_trip(tunnel.remote.host or "localhost", tunnel.remote.port, payload)
    assert reply == payload, f"sent {digest(payload)}, got {digest(reply)}"
    assert echo.accepted == 1

    t = poll_until(
        "the connection to be counted",
        lambda: t if (t := listed(stub, tunnel.id)) and t.counters.bytes_from_target == len(payload) else None,
    )
    assert t.counters.total_connections == 1
    assert t.counters.bytes_to_target == len(payload)


def test_reached_from_a_command_on_the_ssh_server(
    stub: tunnel_pb2_grpc.TunnelServiceStub, opened: Opened, echo: EchoServer
) -> None:
    # What `ssh -R` is for: a program on the server dials its own loopback.
    tunnel = open_remote(stub, opened, echo)
    client = (
        "import socket,sys\n"
        f"s = socket.create_connection(('localhost', {tunnel.remote.port}), timeout=10)\n"
        "s.sendall(sys.stdin.buffer.read()); s.shutdown(socket.SHUT_WR)\n"
        "while chunk := s.recv(65536): sys.stdout.buffer.write(chunk)\n"
    )
    payload = b"from the far side\n" * 100
    result = run_exec(stub, f"python3 -c {shlex.quote(client)}", stdin=payload)
    assert result.stderr == b""
    assert result.exit.code == 0
    assert result.stdout == payload


def test_close_stops_the_server_listening(
    stub: tunnel_pb2_grpc.TunnelServiceStub, opened: Opened, echo: EchoServer
) -> None:
    tunnel = open_remote(stub, opened, echo)
    host, port = tunnel.remote.host or "localhost", tunnel.remote.port
    assert round_trip(host, port, b"ping") == b"ping"

    closed = stub.Close(tunnel_pb2.CloseRequest(id=tunnel.id), timeout=RPC_TIMEOUT).tunnel
    assert closed.state == tunnel_pb2.TUNNEL_STATE_CLOSED
    assert closed.kind == tunnel_pb2.TUNNEL_KIND_REMOTE

    def refused() -> bool | None:
        try:
            with socket.create_connection((host, port), timeout=IO_TIMEOUT):
                return None
        except ConnectionRefusedError:
            return True

    poll_until("sshd to stop listening on the closed forward's port", refused)
    assert echo.accepted == 1
