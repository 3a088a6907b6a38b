"""The examples run as a user would run them, so they cannot rot; and the
installed package carries its type information."""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import tunnel.v1

from peers import EchoServer
from support import run_example, run_quickstart
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


def test_upload_copies_a_file_and_verifies_it(endpoints: Endpoints, tmp_path: Path) -> None:
    local = tmp_path / "local.bin"
    local.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    # The SSH server is this machine: the remote path is a local one too.
    remote = tmp_path / "remote copy.bin"
    proc = run_example("upload.py", "--addr", endpoints.tunneld_addr, str(local), str(remote))
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert f"uploaded {local.stat().st_size} bytes to {remote}, sha256 {digest}\n" in proc.stdout
    assert f"verified: {remote} on the host has sha256 {digest}\n" in proc.stdout
    assert remote.read_bytes() == local.read_bytes()


def test_upload_reports_a_digest_mismatch(endpoints: Endpoints, tmp_path: Path) -> None:
    # Written to /dev/null, the bytes are gone: the host's sha256sum sees an
    # empty file, which the example must notice and say.
    local = tmp_path / "local.bin"
    local.write_bytes(os.urandom(1024))
    digest = hashlib.sha256(local.read_bytes()).hexdigest()
    empty = hashlib.sha256(b"").hexdigest()
    proc = run_example("upload.py", "--addr", endpoints.tunneld_addr, str(local), "/dev/null")
    assert proc.returncode == 1, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.stderr == f"upload: sha256 mismatch: {local} is {digest}, /dev/null on the host is {empty}\n"


def test_upload_reports_a_failed_write(endpoints: Endpoints, tmp_path: Path) -> None:
    local = tmp_path / "local.bin"
    local.write_bytes(b"x")
    remote = tmp_path / "missing" / "file"
    proc = run_example("upload.py", "--addr", endpoints.tunneld_addr, str(local), str(remote))
    assert proc.returncode == 1, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.stderr.startswith(f"upload: writing {remote} on the default host: `cat > {remote}` exited with ")
    assert proc.stdout == ""


class _HttpServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    # A random body per server: the example must print what came back, not
    # anything it could make up.
    body = b""
    paths: list[str]


class _HttpHandler(http.server.BaseHTTPRequestHandler):
    server: _HttpServer

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[_HttpServer]:
    """An HTTP server on 127.0.0.1, from a thread, answering every GET with
    200 and a random hex body."""
    server = _HttpServer(("127.0.0.1", 0), _HttpHandler)
    server.body = os.urandom(32 * 1024).hex().encode()
    server.paths = []
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_socks_fetches_a_url_through_a_dynamic_forward(endpoints: Endpoints, http_server: _HttpServer) -> None:
    url = f"http://127.0.0.1:{http_server.server_address[1]}/through/socks?x=1"
    proc = run_example("socks.py", "--addr", endpoints.tunneld_addr, url)
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    out = proc.stdout
    opened = re.search(r"^opened (t-\S+): SOCKS proxy on 127\.0\.0\.1:(\d+)$", out, re.MULTILINE)
    assert opened, out
    assert int(opened[2]) != 0, "local_port 0 must come back as the bound port"
    assert "HTTP/1.0 200 OK\n" in out, out
    assert http_server.body.decode() in out, "the body did not come through intact"
    assert http_server.paths == ["/through/socks?x=1"]
    assert f"closed {opened[1]}: 1 connection(s)" in out, out
    # Closed: nothing listens on the proxy's port any more.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", int(opened[2])), timeout=5).close()


def test_socks_reports_a_refused_target(endpoints: Endpoints) -> None:
    # Nothing listens there: the SSH server cannot connect, and the proxy's
    # SOCKS5 reply says so.
    with socket.create_server(("127.0.0.1", 0)) as s:
        dead = s.getsockname()[1]
    proc = run_example("socks.py", "--addr", endpoints.tunneld_addr, f"http://127.0.0.1:{dead}/")
    assert proc.returncode == 1, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.stderr.startswith(f"socks: CONNECT 127.0.0.1:{dead}: "), proc.stderr
    assert re.search(r"^closed t-\S+: 1 connection\(s\)$", proc.stdout, re.MULTILINE), proc.stdout


def test_installed_package_is_typed() -> None:
    # PEP 561: mypy and editors read the .pyi beside the modules, and
    # py.typed marks the package as typed.
    package = Path(tunnel.v1.__file__).parent
    for name in ("tunnel_pb2.py", "tunnel_pb2.pyi", "tunnel_pb2_grpc.py", "tunnel_pb2_grpc.pyi"):
        assert (package / name).is_file(), f"{name} missing from the installed package at {package}"
    assert (package.parent / "py.typed").is_file()
