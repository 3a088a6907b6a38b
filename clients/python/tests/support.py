"""Helpers over the generated stubs: bounded calls, Exec collection, polling."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import grpc
import pytest
from grpc_health.v1 import health_pb2
from tunnel.v1 import tunnel_pb2, tunnel_pb2_grpc

# Deadline of every unary call.
RPC_TIMEOUT = 10.0
# Deadline of a whole streaming call (Exec, OpenAttached).
STREAM_TIMEOUT = 30.0
# How long a poll waits for something the daemon does asynchronously.
POLL_LIMIT = 10.0

T = TypeVar("T")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
# Bound on one run of an example.
EXAMPLE_TIMEOUT = 60.0
# The interpreter that runs the examples: run-tests.sh points this at a fresh
# venv holding nothing but `pip install ./clients/python`, which proves the
# package's declared dependencies are enough. `-W error` turns protobuf's
# gencode/runtime version warnings into failures.
EXAMPLE_PYTHON = [os.environ.get("QUICKSTART_PYTHON", sys.executable), "-W", "error"]


def run_example(name: str, *args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs examples/NAME ARGS as a user would. Its environment is this
    process's without any TUNNELD_* variable (a developer's token or TLS
    settings must not leak in), plus `env`."""
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("TUNNELD_")}
    child_env.update(env or {})
    return subprocess.run(
        [*EXAMPLE_PYTHON, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT,
        env=child_env,
    )


def run_quickstart(*args: str, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs examples/quickstart.py ARGS as a user would (see run_example)."""
    return run_example("quickstart.py", *args, env=env)


def poll_until(what: str, check: Callable[[], T | None], limit: float = POLL_LIMIT) -> T:
    """Calls `check` until it returns something other than None, at most
    `limit` seconds; fails naming `what` otherwise."""
    deadline = time.monotonic() + limit
    delay = 0.01
    while True:
        result = check()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {limit:.0f} s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def expect_status(code: grpc.StatusCode, call: Callable[[], object]) -> str:
    """Runs `call`, which must fail with `code`; returns the status message."""
    with pytest.raises(grpc.RpcError) as info:
        call()
    err = info.value
    assert err.code() == code, f"expected {code.name}, got {err.code().name}: {err.details()}"
    return err.details() or ""


@dataclass(frozen=True)
class ExecResult:
    """Everything one Exec call streamed."""

    stdout: bytes
    stderr: bytes
    exit: tunnel_pb2.ExitStatus
    events: list[tunnel_pb2.ExecResponse]


def run_exec(
    stub: tunnel_pb2_grpc.TunnelServiceStub,
    command: str,
    *,
    host: str = "",
    stdin: bytes = b"",
    env: Mapping[str, str] | None = None,
    timeout: float = STREAM_TIMEOUT,
) -> ExecResult:
    """Runs `command` to completion and checks the stream's shape: output
    events, then exactly one exit status, last."""
    request = tunnel_pb2.ExecRequest(host=host, command=command, stdin=stdin, env=env)
    events = list(stub.Exec(request, timeout=timeout))
    kinds = [e.WhichOneof("event") for e in events]
    assert kinds and kinds[-1] == "exit", f"the last message must be the exit status: {kinds}"
    assert kinds.count("exit") == 1, f"exactly one exit status: {kinds}"
    return ExecResult(
        stdout=b"".join(e.stdout for e in events if e.WhichOneof("event") == "stdout"),
        stderr=b"".join(e.stderr for e in events if e.WhichOneof("event") == "stderr"),
        exit=events[-1].exit,
        events=events,
    )


def health_check(channel: grpc.Channel, service: str) -> health_pb2.HealthCheckResponse:
    """grpc.health.v1.Health/Check for `service` ("" is the server as a whole)."""
    check = channel.unary_unary(
        "/grpc.health.v1.Health/Check",
        request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
        response_deserializer=health_pb2.HealthCheckResponse.FromString,
    )
    request = health_pb2.HealthCheckRequest(service=service)
    response: health_pb2.HealthCheckResponse = check(request, timeout=RPC_TIMEOUT)
    return response


def listed(stub: tunnel_pb2_grpc.TunnelServiceStub, tunnel_id: str) -> tunnel_pb2.Tunnel | None:
    """The tunnel `tunnel_id` as List reports it, or None when it is not open."""
    for t in stub.List(tunnel_pb2.ListRequest(), timeout=RPC_TIMEOUT).tunnels:
        if t.id == tunnel_id:
            return t
    return None


def processes_matching(marker: str) -> list[int]:
    """Pids of processes on this machine whose command line holds `marker`.
    The testbed's SSH server is on this machine, so this sees the commands
    Exec started there."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile, or not ours to read
            continue
        if marker.encode() in cmdline:
            pids.append(int(entry.name))
    return pids


class Opened:
    """Remembers tunnels so the `opened` fixture closes them after the test,
    pass or fail, and the session's shared tunneld starts each test clean."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    def add(self, tunnel: tunnel_pb2.Tunnel) -> tunnel_pb2.Tunnel:
        """Registers `tunnel` for closing and returns it."""
        self.ids.append(tunnel.id)
        return tunnel
