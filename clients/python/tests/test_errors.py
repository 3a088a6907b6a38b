"""Every failure is the gRPC status the proto documents, with a message
naming what is wrong; and a failed request disturbs nothing else."""

from __future__ import annotations

import socket

import grpc
from tunnel.v1 import tunnel_pb2, tunnel_pb2_grpc

from peers import EchoServer, round_trip
from support import RPC_TIMEOUT, STREAM_TIMEOUT, Opened, expect_status, run_exec

NOT_FOUND = grpc.StatusCode.NOT_FOUND
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT
ALREADY_EXISTS = grpc.StatusCode.ALREADY_EXISTS


def test_close_of_an_unknown_id_is_not_found(stub: tunnel_pb2_grpc.TunnelServiceStub) -> None:
    message = expect_status(
        NOT_FOUND, lambda: stub.Close(tunnel_pb2.CloseRequest(id="t-does-not-exist"), timeout=RPC_TIMEOUT)
    )
    assert "t-does-not-exist" in message


def test_an_unknown_host_is_not_found(stub: tunnel_pb2_grpc.TunnelServiceStub) -> None:
    message = expect_status(NOT_FOUND, lambda: run_exec(stub, "true", host="no-such-host"))
    assert "no-such-host" in message


def test_local_forward_to_remote_port_0_is_invalid(stub: tunnel_pb2_grpc.TunnelServiceStub) -> None:
    message = expect_status(
        INVALID_ARGUMENT,
        lambda: stub.OpenLocalForward(tunnel_pb2.OpenLocalForwardRequest(remote_port=0), timeout=RPC_TIMEOUT),
    )
    assert "port" in message


def test_remote_forward_to_local_port_0_is_invalid(stub: tunnel_pb2_grpc.TunnelServiceStub) -> None:
    message = expect_status(
        INVALID_ARGUMENT,
        lambda: stub.OpenRemoteForward(tunnel_pb2.OpenRemoteForwardRequest(local_port=0), timeout=RPC_TIMEOUT),
    )
    assert "port" in message


def test_a_taken_local_port_already_exists(stub: tunnel_pb2_grpc.TunnelServiceStub, echo: EchoServer) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port: int = taken.getsockname()[1]
        message = expect_status(
            ALREADY_EXISTS,
            lambda: stub.OpenLocalForward(
                tunnel_pb2.OpenLocalForwardRequest(local_port=port, remote_host=echo.host, remote_port=echo.port),
                timeout=RPC_TIMEOUT,
            ),
        )
    assert str(port) in message


def test_exec_of_an_empty_command_is_invalid(stub: tunnel_pb2_grpc.TunnelServiceStub) -> None:
    expect_status(INVALID_ARGUMENT, lambda: run_exec(stub, ""))


def test_exec_with_a_bad_env_name_is_invalid(stub: tunnel_pb2_grpc.TunnelServiceStub) -> None:
    message = expect_status(INVALID_ARGUMENT, lambda: run_exec(stub, "true", env={"NOT-A-NAME": "x"}))
    assert "NOT-A-NAME" in message


def test_attached_without_a_forward_is_invalid(stub: tunnel_pb2_grpc.TunnelServiceStub) -> None:
    expect_status(
        INVALID_ARGUMENT,
        lambda: list(stub.OpenAttached(tunnel_pb2.OpenAttachedRequest(), timeout=STREAM_TIMEOUT)),
    )


def test_attached_to_a_taken_port_already_exists(stub: tunnel_pb2_grpc.TunnelServiceStub) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port: int = taken.getsockname()[1]
        request = tunnel_pb2.OpenAttachedRequest(
            local=tunnel_pb2.OpenLocalForwardRequest(local_port=port, remote_port=22)
        )
        expect_status(ALREADY_EXISTS, lambda: list(stub.OpenAttached(request, timeout=STREAM_TIMEOUT)))


def test_a_failed_request_disturbs_no_open_tunnel(
    stub: tunnel_pb2_grpc.TunnelServiceStub, opened: Opened, echo: EchoServer
) -> None:
    tunnel = opened.add(
        stub.OpenLocalForward(
            tunnel_pb2.OpenLocalForwardRequest(remote_host=echo.host, remote_port=echo.port), timeout=RPC_TIMEOUT
        ).tunnel
    )
    expect_status(
        ALREADY_EXISTS,
        lambda: stub.OpenLocalForward(
            tunnel_pb2.OpenLocalForwardRequest(local_port=tunnel.local.port, remote_port=echo.port),
            timeout=RPC_TIMEOUT,
        ),
    )
    assert round_trip(tunnel.local.host, tunnel.local.port, b"still open") == b"still open"
