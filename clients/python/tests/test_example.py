"""The example runs as a user would run it, so it cannot rot; and the
installed package carries its type information."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import tunnel.v1

from peers import EchoServer
from testbed import Endpoints

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"
EXAMPLE_TIMEOUT = 60.0
# The interpreter that runs the example: run-tests.sh points this at a fresh
# venv holding nothing but `pip install ./clients/python`, which proves the
# package's declared dependencies are enough. `-W error` turns protobuf's
# gencode/runtime version warnings into failures.
PYTHON = [os.environ.get("QUICKSTART_PYTHON", sys.executable), "-W", "error"]


def test_quickstart_runs_end_to_end(endpoints: Endpoints, echo: EchoServer) -> None:
    proc = subprocess.run(
        [
            *PYTHON,
            str(EXAMPLE),
            "--addr",
            endpoints.tunneld_addr,
            "--target",
            f"{echo.host}:{echo.port}",
            "--command",
            "echo from-exec; echo to-stderr >&2",
        ],
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT,
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
    proc = subprocess.run(
        [*PYTHON, str(EXAMPLE), "--addr", dead, "--target", f"{echo.host}:{echo.port}"],
        capture_output=True,
        text=True,
        timeout=EXAMPLE_TIMEOUT,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("quickstart: UNAVAILABLE"), proc.stderr


def test_installed_package_is_typed() -> None:
    # PEP 561: mypy and editors read the .pyi beside the modules, and
    # py.typed marks the package as typed.
    package = Path(tunnel.v1.__file__).parent
    for name in ("tunnel_pb2.py", "tunnel_pb2.pyi", "tunnel_pb2_grpc.py", "tunnel_pb2_grpc.pyi"):
        assert (package / name).is_file(), f"{name} missing from the installed package at {package}"
    assert (package.parent / "py.typed").is_file()
