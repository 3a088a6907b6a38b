"""Watch: every host and open tunnel as they are, then `synced`, then changes."""

from __future__ import annotations

import grpc
from tunnel.v1 import tunnel_pb2, tunnel_pb2_grpc

from support import RPC_TIMEOUT, expect_status


def test_watch_starts_with_the_hosts_then_synced(stub: tunnel_pb2_grpc.TunnelServiceStub) -> None:
    stream = stub.Watch(tunnel_pb2.WatchRequest(), timeout=RPC_TIMEOUT)
    try:
        first = next(stream)
        assert first.WhichOneof("event") == "host", first
        assert first.host.name == "default", first
        assert first.HasField("time")
        # Other tests run against the same daemon: their tunnels may be
        # listed before `synced`, but nothing else may.
        for message in stream:
            event = message.WhichOneof("event")
            if event == "synced":
                break
            assert event in ("host", "tunnel"), message
    finally:
        stream.cancel()


def test_watching_an_unknown_tunnel_is_not_found(stub: tunnel_pb2_grpc.TunnelServiceStub) -> None:
    stream = stub.Watch(tunnel_pb2.WatchRequest(tunnel_id="t-999999"), timeout=RPC_TIMEOUT)
    try:
        message = expect_status(grpc.StatusCode.NOT_FOUND, lambda: next(stream))
        assert "t-999999" in message, message
    finally:
        stream.cancel()
