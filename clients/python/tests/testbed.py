"""Runs the repository's `testbed` binary: a throwaway sshd and a tunneld
against it (tests/src/bin/testbed.rs, the one fixture every suite shares).

The binary prints shell-quoted ``KEY=VALUE`` lines, then ``READY``; with
``--token`` its tunneld requires a bearer token (printed as TUNNELD_TOKEN),
with ``--tls`` it serves TLS and requires a client certificate (the CA, a
client certificate and key, and the server name to verify are printed). It is
started *without* ``--no-stdin`` and with a pipe as its stdin, so it also
stops by itself if this process dies without tearing it down (the pipe
closes); the normal way out is SIGTERM.
"""

from __future__ import annotations

import os
import queue
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import grpc

# Bounds on the binary's start (sshd and tunneld both ready) and stop.
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0

REPO_ROOT = Path(__file__).resolve().parents[3]


def testbed_path() -> Path:
    """``$TUNNELD_TESTBED``, else ``<repo>/target/debug/testbed``."""
    env = os.environ.get("TUNNELD_TESTBED")
    return Path(env) if env else REPO_ROOT / "target" / "debug" / "testbed"


class TestbedError(RuntimeError):
    """The testbed could not be started; the message says why and what to do."""


@dataclass(frozen=True)
class TlsFiles:
    """What a client needs to reach a ``--tls`` testbed (mutual TLS)."""

    ca: Path
    cert: Path
    key: Path
    server_name: str

    def channel_credentials(self, *, client_cert: bool = True) -> grpc.ChannelCredentials:
        """Credentials trusting the testbed's CA, presenting the client
        certificate unless `client_cert` is false."""
        if not client_cert:
            return grpc.ssl_channel_credentials(root_certificates=self.ca.read_bytes())
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca.read_bytes(),
            private_key=self.key.read_bytes(),
            certificate_chain=self.cert.read_bytes(),
        )

    def channel_options(self) -> list[tuple[str, str]]:
        """The certificate is for a name, the address an IP: verify the name."""
        return [("grpc.ssl_target_name_override", self.server_name)]


@dataclass(frozen=True)
class Endpoints:
    """What the testbed printed: where tunneld and its sshd are."""

    tunneld_addr: str
    tunneld_pid: int
    # The file tunneld's stderr (its log) goes to, removed with the testbed.
    tunneld_log: Path
    sshd_port: int
    ssh_user: str
    ssh_identity: str
    ssh_known_hosts: str
    # Set when the testbed was started with --token: the bearer token its
    # tunneld accepts.
    token: str | None = None
    # Set when it was started with --tls: PEM files of the CA that signed
    # tunneld's certificate and of a client certificate (signed by the CA
    # tunneld checks clients against) with its key, and the name tunneld's
    # certificate is valid for.
    tls: TlsFiles | None = None


class Testbed:
    """A running testbed process. Use as a context manager, or call stop()."""

    __test__ = False  # not a pytest test class despite its name

    def __init__(self, log_path: Path, args: Sequence[str] = ()) -> None:
        """Starts ``testbed ARGS`` (e.g. ``--token``, ``--tls``) and waits for
        READY; its stderr goes to `log_path`."""
        binary = testbed_path()
        if not os.access(binary, os.X_OK):
            raise TestbedError(
                f"testbed binary {binary} is missing or not executable: "
                "build it with `cargo build --workspace --bins` at the repository root, "
                "or point TUNNELD_TESTBED at it"
            )
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "wb")
        self._tunneld_log: Path | None = None
        self.proc = subprocess.Popen(
            [str(binary), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        try:
            self.endpoints = self._read_endpoints()
            self._tunneld_log = self.endpoints.tunneld_log
        except BaseException:
            self.stop()
            raise

    def _read_endpoints(self) -> Endpoints:
        assert self.proc.stdout is not None
        lines: queue.Queue[str | None] = queue.Queue()
        stdout = self.proc.stdout

        def pump() -> None:
            # Owns stdout until EOF (the process exited and nothing is left).
            with stdout:
                for raw in stdout:
                    lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
            lines.put(None)

        threading.Thread(target=pump, name="testbed-stdout", daemon=True).start()

        values: dict[str, str] = {}
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = lines.get(timeout=max(remaining, 0.0))
            except queue.Empty:
                raise TestbedError(
                    f"testbed printed no READY within {READY_TIMEOUT:.0f} s; its log:\n{self.log_tail()}"
                ) from None
            if line is None:
                code = self.proc.wait(timeout=STOP_TIMEOUT)
                raise TestbedError(f"testbed exited with status {code} before READY; its log:\n{self.log_tail()}")
            if line == "READY":
                break
            key, sep, raw_value = line.partition("=")
            if sep:
                # Values are quoted for a POSIX shell when they need it.
                parts = shlex.split(raw_value)
                values[key] = parts[0] if parts else ""
        try:
            tls = None
            if "TUNNELD_TLS_CA" in values:
                tls = TlsFiles(
                    ca=Path(values["TUNNELD_TLS_CA"]),
                    cert=Path(values["TUNNELD_TLS_CERT"]),
                    key=Path(values["TUNNELD_TLS_KEY"]),
                    server_name=values["TUNNELD_TLS_SERVER_NAME"],
                )
            return Endpoints(
                tunneld_addr=values["TUNNELD_ADDR"],
                tunneld_pid=int(values["TUNNELD_PID"]),
                tunneld_log=Path(values["TUNNELD_LOG"]),
                sshd_port=int(values["SSHD_PORT"]),
                ssh_user=values["SSH_USER"],
                ssh_identity=values["SSH_IDENTITY"],
                ssh_known_hosts=values["SSH_KNOWN_HOSTS"],
                token=values.get("TUNNELD_TOKEN"),
                tls=tls,
            )
        except (KeyError, ValueError) as e:
            raise TestbedError(f"testbed printed {values!r}, missing or bad {e}") from e

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the testbed's stderr (its own and sshd's
        messages) and of tunneld's log."""
        self._log.flush()
        parts = []
        logs = [("testbed", self.log_path)]
        if self._tunneld_log is not None:  # known once the testbed printed it
            logs.append(("tunneld", self._tunneld_log))
        for name, path in logs:
            try:
                text = path.read_text("utf-8", "replace")
            except OSError as e:
                text = f"(unreadable: {e})"
            parts.append(f"--- {name}: {path}\n" + "\n".join(text.splitlines()[-lines:]))
        return "\n".join(parts)

    def stop(self) -> None:
        """SIGTERM and end of stdin, wait up to STOP_TIMEOUT, then SIGKILL.
        Idempotent."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        # Closing stdin too: after SIGTERM the testbed stops sshd and tunneld
        # but its process only exits once its (blocking) stdin read returns.
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT)
        self._log.close()

    def __enter__(self) -> Testbed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
