#!/usr/bin/env python3
"""Fetch a URL through a SOCKS proxy that tunneld opens (`ssh -D`): the
request leaves from the SSH server, which also resolves the name.

    python socks.py URL [--addr 127.0.0.1:4522] [--host NAME]

OpenDynamicForward listens on tunneld's machine (port 0: tunneld picks
one) and speaks SOCKS4, 4a and 5. This example is its own SOCKS5 client, in
a few lines of the standard library: CONNECT with the host as a name
(address type 3, resolved by the SSH server as with socks5h://), then a
plain HTTP/1.0 GET. It prints the status line and the body, and closes the
tunnel whatever happened. Only http:// URLs. Exits 0 once a response came
back (whatever its status), 1 when the proxy or the call failed, 2 on bad
arguments.

tunneld's address comes from --addr, else $TUNNELD_ADDR, else
127.0.0.1:4522; credentials (a token, TLS) from the environment variables
quickstart.py reads, through its connect().
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import sys
from urllib.parse import urlsplit

import grpc
from tunnel.v1 import tunnel_pb2, tunnel_pb2_grpc

# The script's own directory is on sys.path when it runs: the token and TLS
# handling lives in quickstart.py.
from quickstart import connect

RPC_TIMEOUT = 10.0
IO_TIMEOUT = 30.0

# SOCKS5 reply codes (RFC 1928, section 6).
SOCKS5_ERRORS = {
    1: "general failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}


class SocksError(Exception):
    """The proxy refused the CONNECT or did not speak SOCKS5."""


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise SocksError(f"the proxy closed the connection after {len(data)} of {n} bytes")
        data += chunk
    return bytes(data)


def socks5_connect(proxy: tuple[str, int], host: str, port: int) -> socket.socket:
    """A connection to host:port through the SOCKS5 proxy at `proxy`, ready
    for the application's bytes."""
    sock = socket.create_connection(proxy, timeout=IO_TIMEOUT)
    try:
        # Greeting: version 5, one method offered, 0 = no authentication.
        sock.sendall(b"\x05\x01\x00")
        if recv_exactly(sock, 2) != b"\x05\x00":
            raise SocksError("the proxy accepts no unauthenticated SOCKS5")
        # CONNECT (1) to a domain name (address type 3): length, name, port.
        name = host.encode("idna")
        sock.sendall(b"\x05\x01\x00\x03" + bytes([len(name)]) + name + struct.pack("!H", port))
        version, reply, _, address_type = recv_exactly(sock, 4)
        if version != 5 or reply != 0:
            raise SocksError(f"CONNECT {host}:{port}: {SOCKS5_ERRORS.get(reply, f'reply {reply}')}")
        # Skip the bound address (IPv4, a length-prefixed name or IPv6) and port.
        if address_type == 3:
            length = recv_exactly(sock, 1)[0]
        else:
            length = 16 if address_type == 4 else 4
        recv_exactly(sock, length + 2)
        return sock
    except BaseException:
        sock.close()
        raise


def http_get(sock: socket.socket, host: str, port: int, path: str) -> bytes:
    """Sends an HTTP/1.0 GET over `sock` and returns the whole response (the
    server closes the connection after it)."""
    request = f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n"
    sock.sendall(request.encode("ascii"))
    response = bytearray()
    while chunk := sock.recv(65536):
        response += chunk
    return bytes(response)


def fetch(stub: tunnel_pb2_grpc.TunnelServiceStub, url: str, host: str = "") -> None:
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"{url}: only http://HOST[:PORT]/PATH URLs")
    target_port = parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query

    # ssh -D 0: a SOCKS proxy on tunneld's machine, on a port tunneld picks.
    request = tunnel_pb2.OpenDynamicForwardRequest(host=host, local_port=0)
    tunnel = stub.OpenDynamicForward(request, timeout=RPC_TIMEOUT).tunnel
    print(f"opened {tunnel.id}: SOCKS proxy on {tunnel.local.host}:{tunnel.local.port}")
    try:
        with socks5_connect((tunnel.local.host, tunnel.local.port), parts.hostname, target_port) as sock:
            response = http_get(sock, parts.hostname, target_port, path)
        head, _, body = response.partition(b"\r\n\r\n")
        print(head.split(b"\r\n", 1)[0].decode("latin-1"))
        sys.stdout.flush()
        sys.stdout.buffer.write(body)
        sys.stdout.buffer.flush()
    finally:
        closed = stub.Close(tunnel_pb2.CloseRequest(id=tunnel.id), timeout=RPC_TIMEOUT).tunnel
        print(f"\nclosed {closed.id}: {closed.counters.total_connections} connection(s)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("url", help="http:// URL to fetch, as the SSH server reaches it")
    parser.add_argument(
        "--addr", default=os.environ.get("TUNNELD_ADDR", "127.0.0.1:4522"), help="tunneld's API address"
    )
    parser.add_argument("--host", default="", help="SSH host name known to tunneld (default: its default host)")
    args = parser.parse_args()
    try:
        channel = connect(args.addr)
    except (ValueError, OSError) as e:
        print(f"socks: {e}", file=sys.stderr)
        return 2
    with channel:
        try:
            fetch(tunnel_pb2_grpc.TunnelServiceStub(channel), args.url, args.host)
        except ValueError as e:
            print(f"socks: {e}", file=sys.stderr)
            return 2
        except (SocksError, OSError) as e:
            print(f"socks: {e}", file=sys.stderr)
            return 1
        except grpc.RpcError as e:
            print(f"socks: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
