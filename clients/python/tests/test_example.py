"""The example runs as a user would run it, so it cannot rot; and the
installed package carries its type information."""

from __future__ import annotations

import socket
from pathlib import Path

import tunnel.v1

from peers import EchoServer
from support import run_quickstart
from testbed import Endpoints


def test_quickstart_runs_end_to_end(endpoints: Endpoints, echo: EchoServer) -> None:
    proc = run_quickstart(
        "--addr",
        endpoints.tunneld_addr,
        "--target",
        f"{echo.host}:{echo.port}",
        "--command",
        "echo from-exec; echo to-stderr >&2",
    )
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    out = proc.stdout
    assert "sent 22 bytes, got back: 'hello through tunneld\\n'" in out, out
    assert "from-exec\n" in out
    assert "to-stderr" in proc.stderr
    assert "exited with 0" in out
    assert "closed t-" in out and "22 bytes out, 22 bytes back" in out, out
    assert echo.accepted == 1


def test_quickstart_reports_errors_as_statuses(echo: EchoServer) -> None:
    # Nothing listens there: UNAVAILABLE, a one-line message, exit 1.
    with socket.create_server(("127.0.0.1", 0)) as s:
        dead = f"127.0.0.1:{s.getsockname()[1]}"
    proc = run_quickstart("--addr", dead, "--target", f"{echo.host}:{echo.port}")
    assert proc.returncode == 1
    assert proc.stderr.startswith("quickstart: UNAVAILABLE"), proc.stderr


def test_installed_package_is_typed() -> None:
    # PEP 561: mypy and editors read the .pyi beside the modules, and
    # py.typed marks the package as typed.
    package = Path(tunnel.v1.__file__).parent
    for name in ("tunnel_pb2.py", "tunnel_pb2.pyi", "tunnel_pb2_grpc.py", "tunnel_pb2_grpc.pyi"):
        assert (package / name).is_file(), f"{name} missing from the installed package at {package}"
    assert (package.parent / "py.typed").is_file()
