"""ExecStream: stdin streamed from a request iterator, through the upload
example's functions (a file bigger than any SSH window, checked by digest),
and interleaved with the command's output line by line."""

from __future__ import annotations

import hashlib
import io
import os
import queue
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from tunnel.v1 import tunnel_pb2, tunnel_pb2_grpc

from support import STREAM_TIMEOUT
from upload import UploadError, remote_sha256, upload

# More than any single window of the SSH channel (2 MiB here) or of HTTP/2:
# the upload only completes if stdin keeps flowing as the command reads it.
# The odd tail makes the last chunk a short one.
UPLOAD_SIZE = 8 * 1024 * 1024 + 1234
# Lines the conversation test sends, each read back before the next.
LINES = 20


@pytest.mark.parametrize("size", [UPLOAD_SIZE, 0], ids=["8MiB", "empty"])
def test_upload_arrives_whole(stub: tunnel_pb2_grpc.TunnelServiceStub, tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    local_sha256 = hashlib.sha256(data).hexdigest()
    # The SSH server is this machine, logged in as this user: the path is
    # the host's and the test's at once.
    remote = tmp_path / "uploaded file with 'quotes' and spaces"

    sent = upload(stub, io.BytesIO(data), str(remote), timeout=STREAM_TIMEOUT)

    assert sent.size == size
    assert sent.sha256 == local_sha256
    assert remote_sha256(stub, str(remote), timeout=STREAM_TIMEOUT) == local_sha256
    # And the file itself, read without tunneld.
    assert hashlib.sha256(remote.read_bytes()).hexdigest() == local_sha256


def test_upload_to_a_missing_directory_says_why(stub: tunnel_pb2_grpc.TunnelServiceStub, tmp_path: Path) -> None:
    # The command fails before reading its stdin; the call still ends with
    # its exit status and stderr, not a hang or a transport error.
    remote = tmp_path / "no-such-dir" / "file"
    with pytest.raises(UploadError) as info:
        upload(stub, io.BytesIO(os.urandom(UPLOAD_SIZE)), str(remote), timeout=STREAM_TIMEOUT)
    message = str(info.value)
    assert message.startswith(f"writing {remote} on the default host: "), message
    # The shell's own words follow its exit code (bash and dash word it,
    # and number it, differently).
    assert re.search(r"exited with [1-9][0-9]*: .*no-such-dir", message), message


def test_stdin_and_stdout_interleave(stub: tunnel_pb2_grpc.TunnelServiceStub) -> None:
    # The request iterator is fed from a queue, so the test decides what to
    # send next after reading what came back; None ends the iterator, which
    # half-closes the call and ends the command's stdin.
    requests: queue.Queue[tunnel_pb2.ExecStreamRequest | None] = queue.Queue()

    def feed() -> Iterator[tunnel_pb2.ExecStreamRequest]:
        while (request := requests.get()) is not None:
            yield request

    requests.put(tunnel_pb2.ExecStreamRequest(start=tunnel_pb2.ExecStart(command="cat")))
    call = stub.ExecStream(feed(), timeout=STREAM_TIMEOUT)
    try:
        marker = secrets.token_hex(4)
        for i in range(LINES):
            line = f"line {i} of {LINES} ({marker})\n".encode()
            requests.put(tunnel_pb2.ExecStreamRequest(stdin=line))
            echoed = b""
            # The echo comes back while stdin is still open: nothing waits
            # for the whole input. Output may arrive in several chunks.
            while len(echoed) < len(line):
                event = next(call)
                assert event.WhichOneof("event") == "stdout", f"after {echoed!r}: {event}"
                echoed += event.stdout
            assert echoed == line
        requests.put(None)
        rest = list(call)
    finally:
        # Unblocks grpc's thread reading feed() and ends the call if the test
        # failed half-way (a no-op once the call has ended).
        requests.put(None)
        call.cancel()
    assert [e.WhichOneof("event") for e in rest] == ["exit"], rest
    assert rest[0].exit.WhichOneof("status") == "code" and rest[0].exit.code == 0
    assert call.code() == grpc.StatusCode.OK
