"""Real TCP peers for the forwards to carry: an echo server and a client
that checks every byte comes back."""

from __future__ import annotations

import hashlib
import socket
import socketserver
import threading
from typing import cast

# Bound on any single socket operation in the suite.
IO_TIMEOUT = 20.0


class _EchoHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock = cast(socket.socket, self.request)
        sock.settimeout(IO_TIMEOUT)
        server = cast(_EchoTCPServer, self.server)
        with server.lock:
            server.accepted += 1
        while data := sock.recv(65536):
            sock.sendall(data)
        # The peer half-closed: echo that too, so it reads to EOF.
        sock.shutdown(socket.SHUT_WR)


class _EchoTCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _EchoHandler)
        self.lock = threading.Lock()
        self.accepted = 0


class EchoServer:
    """A TCP echo server on 127.0.0.1 with a port from the OS, served from a
    thread: every connection gets back what it sends, then end-of-stream
    once it half-closes."""

    def __init__(self) -> None:
        self._server = _EchoTCPServer()
        self.host = "127.0.0.1"
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="echo", daemon=True
        )
        self._thread.start()

    @property
    def accepted(self) -> int:
        """Connections accepted so far."""
        with self._server.lock:
            return self._server.accepted

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(IO_TIMEOUT)


def round_trip(host: str, port: int, payload: bytes) -> bytes:
    """Connects, sends `payload` then half-closes (from a thread, so a large
    payload cannot deadlock against the echo), and returns every byte read
    until end-of-stream."""
    with socket.create_connection((host, port), timeout=IO_TIMEOUT) as sock:
        errors: list[BaseException] = []

        def send() -> None:
            try:
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)
            except BaseException as e:  # reported by the caller
                errors.append(e)

        sender = threading.Thread(target=send, name="round-trip-send", daemon=True)
        sender.start()
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        sender.join(IO_TIMEOUT)
        if errors:
            raise errors[0]
        return b"".join(chunks)


def digest(data: bytes) -> str:
    """A short fingerprint for assertion messages on large payloads."""
    return f"{len(data)} bytes sha256:{hashlib.sha256(data).hexdigest()[:16]}"


def can_bind(host: str, port: int) -> bool:
    """True when nothing listens on host:port any more (it can be bound)."""
    try:
        with socket.create_server((host, port)):
            return True
    except OSError:
        return False


def connect_and_expect_no_data(host: str, port: int) -> None:
    """Connects and expects the peer to end the connection without sending a
    byte: end-of-stream, or a reset (at connect or read, as timing falls)."""
    try:
        with socket.create_connection((host, port), timeout=IO_TIMEOUT) as sock:
            data = sock.recv(1)
    except ConnectionResetError:
        data = b""
    assert data == b"", f"expected no data, got {data!r}"
