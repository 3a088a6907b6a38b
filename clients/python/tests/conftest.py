"""Fixtures: one real sshd + tunneld for the session (the repository's
`testbed` binary), a channel and stub to it, echo peers, and a guard that
closes the tunnels a test opened even when the test fails. Two more
testbeds, started only when a test asks for them: one whose tunneld
requires a bearer token, one that serves mutual TLS.

A missing testbed binary is an error, never a skip."""

from __future__ import annotations

from collections.abc import Generator, Iterator

import grpc
import pytest
from tunnel.v1 import tunnel_pb2, tunnel_pb2_grpc

from peers import EchoServer
from support import RPC_TIMEOUT, Opened
from testbed import Endpoints, Testbed, TestbedError

# Bound on the channel becoming ready once tunneld printed its address.
CONNECT_TIMEOUT = 10.0


def run_testbed(tmp_path_factory: pytest.TempPathFactory, name: str, *args: str) -> Iterator[Testbed]:
    """Starts ``testbed ARGS``, yields it, stops it; a testbed that does not
    start fails the test."""
    log = tmp_path_factory.mktemp(name) / "testbed.log"
    try:
        bed = Testbed(log, args)
    except TestbedError as e:
        pytest.fail(str(e), pytrace=False)
    with bed:
        yield bed


@pytest.fixture(scope="session")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """The running testbed (sshd + tunneld), stopped at the end of the session."""
    yield from run_testbed(tmp_path_factory, "testbed")


@pytest.fixture(scope="session")
def token_testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """A testbed whose tunneld has a --token-file: every RPC but health needs
    ``authorization: Bearer <endpoints.token>``."""
    yield from run_testbed(tmp_path_factory, "token-testbed", "--token")


@pytest.fixture(scope="session")
def tls_testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Testbed]:
    """A testbed whose tunneld serves TLS and requires a client certificate
    signed by its --tls-client-ca (`endpoints.tls` holds the files)."""
    yield from run_testbed(tmp_path_factory, "tls-testbed", "--tls")


@pytest.fixture(scope="session")
def endpoints(testbed: Testbed) -> Endpoints:
    """Where tunneld and its sshd listen."""
    return testbed.endpoints


@pytest.fixture(scope="session")
def channel(endpoints: Endpoints) -> Iterator[grpc.Channel]:
    """A plaintext channel to tunneld, ready before the first test uses it."""
    with grpc.insecure_channel(endpoints.tunneld_addr) as ch:
        grpc.channel_ready_future(ch).result(timeout=CONNECT_TIMEOUT)
        yield ch


@pytest.fixture(scope="session")
def stub(channel: grpc.Channel) -> tunnel_pb2_grpc.TunnelServiceStub:
    """The generated TunnelService client."""
    return tunnel_pb2_grpc.TunnelServiceStub(channel)


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    """A TCP echo server on 127.0.0.1, a fresh one per test."""
    server = EchoServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def opened(stub: tunnel_pb2_grpc.TunnelServiceStub) -> Iterator[Opened]:
    """Register tunnels with `opened.add(t)`; they are closed at teardown
    (NOT_FOUND there means the test closed it itself)."""
    guard = Opened()
    yield guard
    for tunnel_id in guard.ids:
        try:
            stub.Close(tunnel_pb2.CloseRequest(id=tunnel_id), timeout=RPC_TIMEOUT)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.NOT_FOUND:
                raise


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failure, shows the end of the log of each testbed the test used
    (sshd's and tunneld's messages) beside the test's own output."""
    report: pytest.TestReport = yield
    if report.failed:
        for name, value in getattr(item, "funcargs", {}).items():
            if isinstance(value, Testbed):
                report.sections.append((f"{name} log (tail)", value.log_tail()))
    return report
