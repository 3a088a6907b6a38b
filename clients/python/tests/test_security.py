"""Tokens and TLS from Python: against a tunneld that requires a bearer token
(`testbed --token`) and one that serves mutual TLS (`testbed --tls`), the
calls a client makes with grpc's own credentials, and the example driven by
the environment variables tunnelctl reads."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2
from tunnel.v1 import tunnel_pb2, tunnel_pb2_grpc

from peers import EchoServer
from support import RPC_TIMEOUT, expect_status, health_check, run_exec, run_quickstart
from testbed import Endpoints, Testbed, TlsFiles

LIST = tunnel_pb2.ListRequest()


def bearer(token: str) -> tuple[tuple[str, str | bytes], ...]:
    """Per-call metadata carrying `token`."""
    return (("authorization", f"Bearer {token}"),)


def wrong_token(token: str) -> str:
    """A token of the right shape that tunneld does not know: the real one
    with its last character changed."""
    return token[:-1] + ("A" if token[-1] != "A" else "B")


# --- token ---------------------------------------------------------------


@pytest.fixture(scope="module")
def token_bed(token_testbed: Testbed) -> Endpoints:
    """The --token testbed's endpoints; `token` is set."""
    assert token_testbed.endpoints.token, "testbed --token printed no TUNNELD_TOKEN"
    return token_testbed.endpoints


@pytest.fixture(scope="module")
def token_bed_channel(token_bed: Endpoints) -> Iterator[grpc.Channel]:
    """A plaintext channel without credentials to the --token tunneld."""
    with grpc.insecure_channel(token_bed.tunneld_addr) as ch:
        yield ch


@pytest.fixture(scope="module")
def anonymous(token_bed_channel: grpc.Channel) -> tunnel_pb2_grpc.TunnelServiceStub:
    """A stub that sends no token unless a call adds it."""
    return tunnel_pb2_grpc.TunnelServiceStub(token_bed_channel)


@pytest.fixture(scope="module")
def authenticated(token_bed: Endpoints) -> Iterator[tunnel_pb2_grpc.TunnelServiceStub]:
    """A stub whose channel adds the token to every call: grpc's access-token
    call credentials over local (plaintext, loopback-only) credentials."""
    assert token_bed.token is not None
    credentials = grpc.composite_channel_credentials(
        grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP),
        grpc.access_token_call_credentials(token_bed.token),
    )
    with grpc.secure_channel(token_bed.tunneld_addr, credentials) as ch:
        yield tunnel_pb2_grpc.TunnelServiceStub(ch)


def test_no_token_is_unauthenticated_and_says_how_to_send_one(
    anonymous: tunnel_pb2_grpc.TunnelServiceStub,
) -> None:
    calls = {
        "List": lambda: anonymous.List(LIST, timeout=RPC_TIMEOUT),
        "GetInfo": lambda: anonymous.GetInfo(tunnel_pb2.GetInfoRequest(), timeout=RPC_TIMEOUT),
        "OpenLocalForward": lambda: anonymous.OpenLocalForward(
            tunnel_pb2.OpenLocalForwardRequest(remote_host="127.0.0.1", remote_port=9), timeout=RPC_TIMEOUT
        ),
        "Exec": lambda: list(anonymous.Exec(tunnel_pb2.ExecRequest(command="true"), timeout=RPC_TIMEOUT)),
    }
    for name, call in calls.items():
        message = expect_status(grpc.StatusCode.UNAUTHENTICATED, call)
        assert "requires a token" in message, f"{name}: {message}"
        assert '"authorization: Bearer <token>"' in message, f"{name}: {message}"


def test_token_in_call_metadata_is_accepted(anonymous: tunnel_pb2_grpc.TunnelServiceStub, token_bed: Endpoints) -> None:
    assert token_bed.token is not None
    listing = anonymous.List(LIST, timeout=RPC_TIMEOUT, metadata=bearer(token_bed.token))
    assert "default" in {h.name for h in listing.hosts}


def test_token_as_channel_credentials_is_accepted_by_every_kind_of_call(
    authenticated: tunnel_pb2_grpc.TunnelServiceStub, token_bed: Endpoints, echo: EchoServer
) -> None:
    info = authenticated.GetInfo(tunnel_pb2.GetInfoRequest(), timeout=RPC_TIMEOUT)
    assert info.pid == token_bed.tunneld_pid
    # A server stream.
    result = run_exec(authenticated, "echo authenticated")
    assert result.stdout == b"authenticated\n"
    assert result.exit.code == 0
    # A mutating call and its undo.
    tunnel = authenticated.OpenLocalForward(
        tunnel_pb2.OpenLocalForwardRequest(remote_host=echo.host, remote_port=echo.port), timeout=RPC_TIMEOUT
    ).tunnel
    try:
        assert tunnel.id in {t.id for t in authenticated.List(LIST, timeout=RPC_TIMEOUT).tunnels}
    finally:
        authenticated.Close(tunnel_pb2.CloseRequest(id=tunnel.id), timeout=RPC_TIMEOUT)


def test_wrong_token_is_refused_without_echoing_it(
    anonymous: tunnel_pb2_grpc.TunnelServiceStub, token_bed: Endpoints
) -> None:
    assert token_bed.token is not None
    wrong = wrong_token(token_bed.token)
    message = expect_status(
        grpc.StatusCode.UNAUTHENTICATED, lambda: anonymous.List(LIST, timeout=RPC_TIMEOUT, metadata=bearer(wrong))
    )
    assert "not accepted" in message, message
    assert wrong not in message and token_bed.token not in message, message


def test_authorization_must_use_the_bearer_scheme(
    anonymous: tunnel_pb2_grpc.TunnelServiceStub, token_bed: Endpoints
) -> None:
    assert token_bed.token is not None
    message = expect_status(
        grpc.StatusCode.UNAUTHENTICATED,
        lambda: anonymous.List(LIST, timeout=RPC_TIMEOUT, metadata=(("authorization", f"Basic {token_bed.token}"),)),
    )
    assert '"Bearer <token>"' in message, message


def test_health_needs_no_token(token_bed_channel: grpc.Channel) -> None:
    # Load balancers and supervisors probe health without credentials.
    for service in ("", "tunnel.v1.TunnelService"):
        response = health_check(token_bed_channel, service)
        assert response.status == health_pb2.HealthCheckResponse.SERVING, f"service {service!r}"


def test_example_sends_the_token_from_the_environment(token_bed: Endpoints, echo: EchoServer) -> None:
    assert token_bed.token is not None
    args = ("--addr", token_bed.tunneld_addr, "--target", f"{echo.host}:{echo.port}", "--command", "echo with-token")
    proc = run_quickstart(*args, env={"TUNNELD_TOKEN": token_bed.token})
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "with-token\n" in proc.stdout
    assert "exited with 0" in proc.stdout

    proc = run_quickstart(*args)
    assert proc.returncode == 1, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.stderr.startswith("quickstart: UNAUTHENTICATED: this tunneld requires a token"), proc.stderr


def test_example_reads_a_token_file(token_bed: Endpoints, echo: EchoServer, tmp_path: Path) -> None:
    assert token_bed.token is not None
    # A line of tunneld's own --token-file (NAME:TOKEN), after a comment.
    token_file = tmp_path / "token"
    token_file.write_text(f"# for the quickstart\n\nci:{token_bed.token}\n")
    token_file.chmod(0o600)
    args = ("--addr", token_bed.tunneld_addr, "--target", f"{echo.host}:{echo.port}")
    proc = run_quickstart(*args, env={"TUNNELD_TOKEN_FILE": str(token_file)})
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"


# --- mutual TLS ----------------------------------------------------------


@pytest.fixture(scope="module")
def tls_bed(tls_testbed: Testbed) -> Endpoints:
    """The --tls testbed's endpoints; `tls` is set."""
    assert tls_testbed.endpoints.tls is not None, "testbed --tls printed no TUNNELD_TLS_CA"
    return tls_testbed.endpoints


@pytest.fixture(scope="module")
def tls_files(tls_bed: Endpoints) -> TlsFiles:
    assert tls_bed.tls is not None
    return tls_bed.tls


def test_mtls_with_a_client_certificate_works(tls_bed: Endpoints, tls_files: TlsFiles) -> None:
    with grpc.secure_channel(tls_bed.tunneld_addr, tls_files.channel_credentials(), tls_files.channel_options()) as ch:
        stub = tunnel_pb2_grpc.TunnelServiceStub(ch)
        assert stub.GetInfo(tunnel_pb2.GetInfoRequest(), timeout=RPC_TIMEOUT).pid == tls_bed.tunneld_pid
        assert "default" in {h.name for h in stub.List(LIST, timeout=RPC_TIMEOUT).hosts}
        assert run_exec(stub, "echo over-mtls").stdout == b"over-mtls\n"
        assert health_check(ch, "").status == health_pb2.HealthCheckResponse.SERVING


def test_tls_without_a_client_certificate_fails(tls_bed: Endpoints, tls_files: TlsFiles) -> None:
    credentials = tls_files.channel_credentials(client_cert=False)
    with grpc.secure_channel(tls_bed.tunneld_addr, credentials, tls_files.channel_options()) as ch:
        stub = tunnel_pb2_grpc.TunnelServiceStub(ch)
        expect_status(grpc.StatusCode.UNAVAILABLE, lambda: stub.List(LIST, timeout=RPC_TIMEOUT))
        # The handshake fails before any call is dispatched, health included.
        expect_status(grpc.StatusCode.UNAVAILABLE, lambda: health_check(ch, ""))


def test_tls_with_an_untrusted_server_certificate_fails(tls_bed: Endpoints, tls_files: TlsFiles) -> None:
    # The system's roots do not include the testbed's CA.
    credentials = grpc.ssl_channel_credentials(
        private_key=tls_files.key.read_bytes(), certificate_chain=tls_files.cert.read_bytes()
    )
    with grpc.secure_channel(tls_bed.tunneld_addr, credentials, tls_files.channel_options()) as ch:
        stub = tunnel_pb2_grpc.TunnelServiceStub(ch)
        expect_status(grpc.StatusCode.UNAVAILABLE, lambda: stub.List(LIST, timeout=RPC_TIMEOUT))


def test_plaintext_to_a_tls_tunneld_fails(tls_bed: Endpoints) -> None:
    with grpc.insecure_channel(tls_bed.tunneld_addr) as ch:
        stub = tunnel_pb2_grpc.TunnelServiceStub(ch)
        expect_status(grpc.StatusCode.UNAVAILABLE, lambda: stub.List(LIST, timeout=RPC_TIMEOUT))


def tls_env(tls: TlsFiles, *, client_cert: bool = True) -> dict[str, str]:
    """The variables testbed --tls printed, as tunnelctl and the example read them."""
    env = {"TUNNELD_TLS_CA": str(tls.ca), "TUNNELD_TLS_SERVER_NAME": tls.server_name}
    if client_cert:
        env |= {"TUNNELD_TLS_CERT": str(tls.cert), "TUNNELD_TLS_KEY": str(tls.key)}
    return env


def test_example_uses_mtls_from_the_environment(tls_bed: Endpoints, tls_files: TlsFiles, echo: EchoServer) -> None:
    args = ("--addr", tls_bed.tunneld_addr, "--target", f"{echo.host}:{echo.port}", "--command", "echo over-tls")
    proc = run_quickstart(*args, env=tls_env(tls_files))
    assert proc.returncode == 0, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert "over-tls\n" in proc.stdout
    assert "sent 22 bytes, got back: 'hello through tunneld\\n'" in proc.stdout, proc.stdout
    assert echo.accepted == 1

    proc = run_quickstart(*args, env=tls_env(tls_files, client_cert=False))
    assert proc.returncode == 1, f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    # grpc logs the failed handshake on stderr too; the example's line comes last.
    assert proc.stderr.splitlines()[-1].startswith("quickstart: UNAVAILABLE"), proc.stderr
