#!/usr/bin/env python3
"""tunneld from Python in five steps: open a local forward (`ssh -L`), send
bytes through it, stream a command's output (`ssh host cmd`), list, close.

    python quickstart.py --target HOST:PORT [--addr 127.0.0.1:4522] [--host NAME] [--command CMD]

TARGET is a host:port as seen from the SSH server (an echo server makes the
round trip visible). tunneld's address comes from --addr, else
$TUNNELD_ADDR, else 127.0.0.1:4522; --target may also come from
$QUICKSTART_TARGET.

Credentials come from the environment, as tunnelctl reads them:

    TUNNELD_TOKEN            a token of tunneld's --token-file, sent as
                             "authorization: Bearer TOKEN"
    TUNNELD_TOKEN_FILE       else a file holding it on its first line
    TUNNELD_TLS_CA           PEM CA bundle that signed tunneld's certificate
                             (default: the system's roots)
    TUNNELD_TLS_CERT/_KEY    client certificate and key, for a tunneld with
                             --tls-client-ca
    TUNNELD_TLS_SERVER_NAME  the name to verify tunneld's certificate against,
                             when it is not the host of the address

Any TUNNELD_TLS_* variable, or an https:// address, selects TLS. Without TLS a
token is sent only to a loopback address or a unix socket.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import sys
from pathlib import Path

import grpc
from tunnel.v1 import tunnel_pb2, tunnel_pb2_grpc

# Every call has a deadline: a daemon that does not answer is an error, not a hang.
RPC_TIMEOUT = 10.0
EXEC_TIMEOUT = 60.0
IO_TIMEOUT = 10.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--addr", default=os.environ.get("TUNNELD_ADDR", "127.0.0.1:4522"), help="tunneld's API address"
    )
    parser.add_argument("--target", default=os.environ.get("QUICKSTART_TARGET"), help="HOST:PORT to forward to")
    parser.add_argument("--host", default="", help="SSH host name known to tunneld (default: its default host)")
    parser.add_argument("--command", default="uname -a", help="command to run on the SSH host")
    parser.add_argument("--message", default="hello through tunneld\n", help="bytes to send through the forward")
    args = parser.parse_args()
    if not args.target:
        parser.error("--target HOST:PORT (or QUICKSTART_TARGET) is required")
    return args


def token_from_env() -> str | None:
    """The bearer token: $TUNNELD_TOKEN, else the first line of the file
    $TUNNELD_TOKEN_FILE names that is neither blank nor a # comment (a bare
    token, or NAME:TOKEN as in tunneld's --token-file), else None."""
    if token := os.environ.get("TUNNELD_TOKEN", "").strip():
        return token
    path = os.environ.get("TUNNELD_TOKEN_FILE")
    if not path:
        return None
    lines = (line.strip() for line in Path(path).read_text().splitlines())
    first = next((line for line in lines if line and not line.startswith("#")), None)
    if first is None:
        raise ValueError(f"TUNNELD_TOKEN_FILE: {path} holds no token")
    name, sep, token = first.partition(":")
    return token if sep and re.fullmatch(r"[A-Za-z0-9._@-]+", name) else first


def connect(addr: str) -> grpc.Channel:
    """A channel to tunneld at `addr` (HOST:PORT, https://HOST:PORT or
    unix:/PATH) with the TLS settings and token the environment names."""
    token = token_from_env()
    ca, cert, key, server_name = (
        os.environ.get(f"TUNNELD_TLS_{name}") or None for name in ("CA", "CERT", "KEY", "SERVER_NAME")
    )
    use_tls = addr.startswith("https://") or any((ca, cert, key, server_name))
    addr = addr.removeprefix("https://").removeprefix("http://")

    if use_tls:
        if bool(cert) != bool(key):
            raise ValueError("TUNNELD_TLS_CERT and TUNNELD_TLS_KEY go together: set both or neither")
        credentials = grpc.ssl_channel_credentials(
            root_certificates=Path(ca).read_bytes() if ca else None,  # None: the system's roots
            private_key=Path(key).read_bytes() if key else None,
            certificate_chain=Path(cert).read_bytes() if cert else None,
        )
        if token:
            # Every call carries "authorization: Bearer TOKEN".
            credentials = grpc.composite_channel_credentials(credentials, grpc.access_token_call_credentials(token))
        options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
        return grpc.secure_channel(addr, credentials, options)

    if token:
        # grpc sends call credentials such as a token only over a secure
        # channel. Local credentials are plaintext like insecure_channel, but
        # the connection fails unless its far end is on this machine (a
        # loopback address or a unix socket), so the token never crosses a
        # network in the clear.
        kind = grpc.LocalConnectionType.UDS if addr.startswith("unix") else grpc.LocalConnectionType.LOCAL_TCP
        credentials = grpc.composite_channel_credentials(
            grpc.local_channel_credentials(kind), grpc.access_token_call_credentials(token)
        )
        return grpc.secure_channel(addr, credentials)

    return grpc.insecure_channel(addr)


def send_through(tunnel: tunnel_pb2.Tunnel, message: bytes) -> bytes:
    """Connects to the forward's local end, sends `message`, half-closes,
    and returns what came back."""
    with socket.create_connection((tunnel.local.host, tunnel.local.port), timeout=IO_TIMEOUT) as sock:
        sock.sendall(message)
        sock.shutdown(socket.SHUT_WR)
        reply = bytearray()
        while chunk := sock.recv(65536):
            reply += chunk
    return bytes(reply)


def run(stub: tunnel_pb2_grpc.TunnelServiceStub, args: argparse.Namespace) -> int:
    info = stub.GetInfo(tunnel_pb2.GetInfoRequest(), timeout=RPC_TIMEOUT)
    print(f"tunneld {info.version} (pid {info.pid}) at {args.addr}")

    # 1. ssh -L 0:TARGET — tunneld picks a free local port and returns it.
    target_host, _, target_port = args.target.rpartition(":")
    request = tunnel_pb2.OpenLocalForwardRequest(
        host=args.host, local_port=0, remote_host=target_host, remote_port=int(target_port)
    )
    tunnel = stub.OpenLocalForward(request, timeout=RPC_TIMEOUT).tunnel
    print(f"opened {tunnel.id}: {tunnel.local.host}:{tunnel.local.port} -> {tunnel.remote.host}:{tunnel.remote.port}")
    try:
        # 2. Bytes through the tunnel.
        reply = send_through(tunnel, args.message.encode())
        print(f"sent {len(args.message)} bytes, got back: {reply.decode(errors='replace')!r}")

        # 3. A command's output, streamed as it arrives; the exit status comes last.
        exit_code = -1
        call = stub.Exec(tunnel_pb2.ExecRequest(host=args.host, command=args.command), timeout=EXEC_TIMEOUT)
        for event in call:
            kind = event.WhichOneof("event")
            if kind == "stdout":
                sys.stdout.buffer.write(event.stdout)
                sys.stdout.flush()
            elif kind == "stderr":
                sys.stderr.buffer.write(event.stderr)
                sys.stderr.flush()
            elif kind == "exit":
                status = event.exit
                if status.WhichOneof("status") == "signal":
                    print(f"{args.command!r} killed by SIG{status.signal}")
                else:
                    exit_code = status.code
                    print(f"{args.command!r} exited with {exit_code}")

        # 4. Everything tunneld holds.
        listing = stub.List(tunnel_pb2.ListRequest(), timeout=RPC_TIMEOUT)
        for t in listing.tunnels:
            kind_name = tunnel_pb2.TunnelKind.Name(t.kind).removeprefix("TUNNEL_KIND_").lower()
            print(
                f"  {t.id} {kind_name} {t.local.host}:{t.local.port} -> {t.remote.host}:{t.remote.port}"
                f" connections={t.counters.total_connections}"
            )
        for h in listing.hosts:
            print(f"  host {h.name} {h.address} {tunnel_pb2.SshConnectionState.Name(h.state)}")
    finally:
        # 5. Close: the port is freed; the final counters come back.
        closed = stub.Close(tunnel_pb2.CloseRequest(id=tunnel.id), timeout=RPC_TIMEOUT).tunnel
        print(
            f"closed {closed.id}: {closed.counters.bytes_to_target} bytes out, "
            f"{closed.counters.bytes_from_target} bytes back"
        )
    return 0 if exit_code == 0 else 1


def main() -> int:
    args = parse_args()
    try:
        channel = connect(args.addr)
    except (ValueError, OSError) as e:
        print(f"quickstart: {e}", file=sys.stderr)
        return 2
    with channel:
        stub = tunnel_pb2_grpc.TunnelServiceStub(channel)
        try:
            return run(stub, args)
        except grpc.RpcError as e:
            print(f"quickstart: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
