"""Exec: output streamed as it comes, stderr apart, exit status last, stdin,
env, the timeout field, and cancelling the stream."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from tunnel.v1 import tunnel_pb2, tunnel_pb2_grpc

from support import RPC_TIMEOUT, STREAM_TIMEOUT, poll_until, processes_matching, run_exec

# A cancelled call must end within this (it ends client-side at once; the
# daemon's side is checked separately).
CANCEL_LIMIT = 2.0


def test_stdout_and_exit_code(stub: tunnel_pb2_grpc.TunnelServiceStub) -> None:
    result = run_exec(stub, "echo hello; exit 3")
    assert result.stdout == b"hello\n"
    assert result.stderr == b""
    assert result.exit.WhichOneof("status") == "code"
    assert result.exit.code == 3


def test_stderr_is_separate(stub: tunnel_pb2_grpc.TunnelServiceStub) -> None:
    result = run_exec(stub, "echo out; echo err >&2; echo out2")
    assert result.stdout == b"out\nout2\n"
    assert result.stderr == b"err\n"
    assert result.exit.code == 0


def test_output_streams_before_the_command_ends(stub: tunnel_pb2_grpc.TunnelServiceStub, tmp_path: Path) -> None:
    # The command prints, then waits for a file only this test creates after
    # it has *received* that output: no timing involved. (The SSH server is
    # this machine, so both see the same file.)
    gate = tmp_path / "gate"
    command = f"echo first; while [ ! -e {gate} ]; do sleep 0.05; done; echo second"
    call = stub.Exec(tunnel_pb2.ExecRequest(command=command), timeout=STREAM_TIMEOUT)
    first = next(call)
    assert first.WhichOneof("event") == "stdout"
    assert first.stdout == b"first\n"
    gate.touch()
    rest = list(call)
    assert b"".join(e.stdout for e in rest) == b"second\n"
    assert rest[-1].WhichOneof("event") == "exit"
    assert rest[-1].exit.code == 0


def test_stdin_is_fed_byte_exact(stub: tunnel_pb2_grpc.TunnelServiceStub) -> None:
    payload = os.urandom(1 << 20) + bytes(range(256))
    result = run_exec(stub, "cat", stdin=payload)
    assert result.stdout == payload
    assert result.exit.code == 0


def test_empty_stdin_is_end_of_file(stub: tunnel_pb2_grpc.TunnelServiceStub) -> None:
    # `cat` would block forever on an open stdin; the call's deadline bounds it.
    result = run_exec(stub, "cat; echo done", timeout=RPC_TIMEOUT)
    assert result.stdout == b"done\n"


def test_env_is_exported_verbatim(stub: tunnel_pb2_grpc.TunnelServiceStub) -> None:
    env = {"GREETING": "hello world", "TRICKY": 'it\'s $HOME; `true` "q"\n2nd line'}
    result = run_exec(stub, 'printf "%s|%s" "$GREETING" "$TRICKY"', env=env)
    assert result.stdout.decode() == f"{env['GREETING']}|{env['TRICKY']}"


def test_signal_is_reported(stub: tunnel_pb2_grpc.TunnelServiceStub) -> None:
    result = run_exec(stub, "kill -TERM $$")
    assert result.exit.WhichOneof("status") == "signal"
    assert result.exit.signal == "TERM"


def test_timeout_field_ends_with_deadline_exceeded(stub: tunnel_pb2_grpc.TunnelServiceStub) -> None:
    request = tunnel_pb2.ExecRequest(
        command="echo before; sleep 30",
        timeout=duration_pb2.Duration(seconds=1),
    )
    call = stub.Exec(request, timeout=STREAM_TIMEOUT)
    received: list[tunnel_pb2.ExecResponse] = []
    started = time.monotonic()
    with pytest.raises(grpc.RpcError) as info:
        for event in call:
            received.append(event)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, info.value.details()
    assert time.monotonic() - started < 10, "the 1 s exec timeout was not enforced promptly"
    # The output received before the timeout is delivered first.
    assert b"".join(e.stdout for e in received) == b"before\n"


def test_cancel_ends_the_call_promptly_and_the_daemon_stays_healthy(
    stub: tunnel_pb2_grpc.TunnelServiceStub,
) -> None:
    call = stub.Exec(tunnel_pb2.ExecRequest(command="echo started; sleep 30"), timeout=STREAM_TIMEOUT)
    assert next(call).stdout == b"started\n"  # the command is running

    cancelled_at = time.monotonic()
    assert call.cancel()
    with pytest.raises(grpc.RpcError) as info:
        next(call)
    assert info.value.code() == grpc.StatusCode.CANCELLED
    assert call.code() == grpc.StatusCode.CANCELLED
    assert time.monotonic() - cancelled_at < CANCEL_LIMIT

    # The daemon is unaffected: more calls work right away.
    assert run_exec(stub, "echo still here", timeout=RPC_TIMEOUT).stdout == b"still here\n"
    stub.GetInfo(tunnel_pb2.GetInfoRequest(), timeout=RPC_TIMEOUT)


def test_cancel_ends_the_remote_command(stub: tunnel_pb2_grpc.TunnelServiceStub) -> None:
    # Cancelling closes the SSH channel, so the command's next write fails
    # and it ends (a silent command gets SIGTERM, but OpenSSH ignores signal
    # requests for root sessions, as CI runs; see tests/tests/e2e/exec.rs).
    marker = f"MARKER-{secrets.token_hex(8)}"
    command = f"while echo {marker}; do sleep 0.1; done"
    call = stub.Exec(tunnel_pb2.ExecRequest(command=command), timeout=STREAM_TIMEOUT)
    assert next(call).stdout.startswith(marker.encode())
    assert processes_matching(marker), "the command should be running"

    call.cancel()
    poll_until(
        f"the remote command ({marker}) to end after cancelling",
        lambda: True if not processes_matching(marker) else None,
    )
