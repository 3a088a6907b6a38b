#!/usr/bin/env python3
"""Upload a local file to an SSH host through tunneld, as
`ssh host 'cat > PATH' < FILE` would, then check it arrived intact.

    python upload.py FILE PATH [--addr 127.0.0.1:4522] [--host NAME] [--chunk-size BYTES]

FILE is streamed as the standard input of `cat > PATH` with ExecStream, in
chunks read as the call takes them (a file of any size, never all in memory);
then `sha256sum` runs on the host and its digest is compared with the one
computed locally while sending. Exits 0 when they match, 1 with a message
naming both digests when they do not (or when the upload failed), 2 on bad
arguments.

tunneld's address comes from --addr, else $TUNNELD_ADDR, else
127.0.0.1:4522; credentials (a token, TLS) from the environment variables
quickstart.py reads, through its connect().
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import grpc
from tunnel.v1 import tunnel_pb2, tunnel_pb2_grpc

# The script's own directory is on sys.path when it runs, and mypy checks
# both examples together: the token and TLS handling lives in one place.
from quickstart import connect

# Each stdin message carries this much. tunneld keeps about one message per
# call in memory and the proto recommends at most 1 MiB; gRPC flow control
# pauses the generator below whenever the SSH channel is not taking input.
CHUNK_SIZE = 256 * 1024
# Deadline of the whole upload (a file of any size: raise it for slow links).
UPLOAD_TIMEOUT = 600.0


class UploadError(Exception):
    """The upload or its check failed; the message says what and where."""


@dataclass(frozen=True)
class Uploaded:
    """What was sent: its size and SHA-256 (lowercase hex)."""

    size: int
    sha256: str


def stdin_requests(
    start: tunnel_pb2.ExecStart,
    source: BinaryIO,
    chunk_size: int = CHUNK_SIZE,
    on_chunk: Callable[[bytes], object] = lambda _: None,
) -> Iterator[tunnel_pb2.ExecStreamRequest]:
    """The messages of an ExecStream call that feeds `source` to a command:
    `start` first (the API requires it), then one `stdin` message per chunk,
    read only when gRPC asks for the next message, then `stdin_eof` (the
    command sees end-of-file, as when a pipe closes; ending the iterator
    would do the same)."""
    yield tunnel_pb2.ExecStreamRequest(start=start)
    while chunk := source.read(chunk_size):
        on_chunk(chunk)
        yield tunnel_pb2.ExecStreamRequest(stdin=chunk)
    yield tunnel_pb2.ExecStreamRequest(stdin_eof=True)


def upload(
    stub: tunnel_pb2_grpc.TunnelServiceStub,
    source: BinaryIO,
    remote_path: str,
    *,
    host: str = "",
    chunk_size: int = CHUNK_SIZE,
    timeout: float = UPLOAD_TIMEOUT,
) -> Uploaded:
    """Writes everything `source` holds to `remote_path` on `host` (empty:
    tunneld's default host) with `cat > PATH`, and returns the size and
    SHA-256 of what was sent. Raises UploadError when the command fails
    (a missing directory, no permission), grpc.RpcError when the call does."""
    digest = hashlib.sha256()
    size = 0

    def count(chunk: bytes) -> None:
        nonlocal size
        digest.update(chunk)
        size += len(chunk)

    command = f"cat > {shlex.quote(remote_path)}"
    start = tunnel_pb2.ExecStart(host=host, command=command)
    stderr = bytearray()
    exit_status: tunnel_pb2.ExitStatus | None = None
    # grpc reads the request iterator on a thread of its own, so the file is
    # sent while this loop waits for the command's output and exit status.
    for event in stub.ExecStream(stdin_requests(start, source, chunk_size, count), timeout=timeout):
        kind = event.WhichOneof("event")
        if kind == "stderr":
            stderr += event.stderr
        elif kind == "exit":
            exit_status = event.exit
        # `cat > PATH` prints nothing on stdout.
    if failure := describe_failure(exit_status, stderr):
        raise UploadError(f"writing {remote_path} on {host or 'the default host'}: `{command}` {failure}")
    return Uploaded(size=size, sha256=digest.hexdigest())


def remote_sha256(
    stub: tunnel_pb2_grpc.TunnelServiceStub, remote_path: str, *, host: str = "", timeout: float = UPLOAD_TIMEOUT
) -> str:
    """SHA-256 (lowercase hex) of `remote_path` on `host`, as the host's
    `sha256sum` computes it. Reading the file from stdin makes sha256sum
    print `HEX  -` whatever the path holds (it escapes some names)."""
    command = f"sha256sum < {shlex.quote(remote_path)}"
    request = tunnel_pb2.ExecRequest(host=host, command=command)
    stdout, stderr = bytearray(), bytearray()
    exit_status: tunnel_pb2.ExitStatus | None = None
    for event in stub.Exec(request, timeout=timeout):
        kind = event.WhichOneof("event")
        if kind == "stdout":
            stdout += event.stdout
        elif kind == "stderr":
            stderr += event.stderr
        elif kind == "exit":
            exit_status = event.exit
    if failure := describe_failure(exit_status, stderr):
        raise UploadError(f"checking {remote_path} on {host or 'the default host'}: `{command}` {failure}")
    fields = stdout.decode(errors="replace").split()
    if not fields or len(fields[0]) != 64:
        raise UploadError(f"`{command}` printed {bytes(stdout)!r}, not a SHA-256 digest")
    return fields[0].lower()


def describe_failure(status: tunnel_pb2.ExitStatus | None, stderr: bytes | bytearray) -> str | None:
    """None when a command exited 0, else how it failed and what it said."""
    said = stderr.decode(errors="replace").strip()
    if status is None:
        return "ended without an exit status"
    if status.WhichOneof("status") == "signal":
        return f"was killed by SIG{status.signal}" + (f": {said}" if said else "")
    if status.code != 0:
        return f"exited with {status.code}" + (f": {said}" if said else "")
    return None


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, help="local file to upload")
    parser.add_argument("path", help="where to write it on the SSH host (overwritten)")
    parser.add_argument(
        "--addr", default=os.environ.get("TUNNELD_ADDR", "127.0.0.1:4522"), help="tunneld's API address"
    )
    parser.add_argument("--host", default="", help="SSH host name known to tunneld (default: its default host)")
    parser.add_argument("--chunk-size", type=int, default=CHUNK_SIZE, help="bytes per stdin message")
    parser.add_argument("--timeout", type=float, default=UPLOAD_TIMEOUT, help="deadline of the upload, in seconds")
    args = parser.parse_args()
    if not 0 < args.chunk_size <= 1 << 20:
        parser.error("--chunk-size must be 1..1048576")
    return args


def main() -> int:
    args = parse_args()
    try:
        source = args.file.open("rb")
        channel = connect(args.addr)
    except (ValueError, OSError) as e:
        print(f"upload: {e}", file=sys.stderr)
        return 2
    with source, channel:
        stub = tunnel_pb2_grpc.TunnelServiceStub(channel)
        try:
            sent = upload(
                stub, source, args.path, host=args.host, chunk_size=args.chunk_size, timeout=args.timeout
            )
            print(f"uploaded {sent.size} bytes to {args.path}, sha256 {sent.sha256}")
            remote = remote_sha256(stub, args.path, host=args.host, timeout=args.timeout)
        except UploadError as e:
            print(f"upload: {e}", file=sys.stderr)
            return 1
        except grpc.RpcError as e:
            print(f"upload: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    if remote != sent.sha256:
        print(
            f"upload: sha256 mismatch: {args.file} is {sent.sha256}, {args.path} on the host is {remote}",
            file=sys.stderr,
        )
        return 1
    print(f"verified: {args.path} on the host has sha256 {remote}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
