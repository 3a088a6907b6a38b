"""mypy sees the installed package's messages and RPCs: mistakes in fields,
types and enum values are errors, not silent `Any`s."""

from __future__ import annotations

from pathlib import Path

from mypy import api as mypy_api

PROGRAM = """
import grpc
from tunnel.v1 import tunnel_pb2, tunnel_pb2_grpc

stub = tunnel_pb2_grpc.TunnelServiceStub(grpc.insecure_channel("127.0.0.1:4522"))
tunnel = stub.OpenLocalForward(tunnel_pb2.OpenLocalForwardRequest(remote_port=5432)).tunnel
reveal_type(tunnel)
for event in stub.Exec(tunnel_pb2.ExecRequest(command="true")):
    reveal_type(event.WhichOneof("event"))
tunnel_pb2.ExecRequest(comand="typo")
tunnel_pb2.OpenLocalForwardRequest(remote_port="5432")
tunnel.kind = "LOCAL"
stub.Close(tunnel_pb2.ListRequest())
"""


def test_mypy_sees_the_generated_types(tmp_path: Path) -> None:
    # The probe sits alone in a temporary directory with a config of its
    # own, so only the installed package can answer its imports.
    probe = tmp_path / "probe.py"
    probe.write_text(PROGRAM)
    config = tmp_path / "mypy.ini"
    config.write_text("[mypy]\n")
    stdout, stderr, status = mypy_api.run(
        ["--config-file", str(config), "--strict", "--cache-dir", str(tmp_path / "cache"), str(probe)]
    )
    assert status == 1, f"mypy must reject the program:\n{stdout}{stderr}"
    expected = [
        'Revealed type is "tunnel.v1.tunnel_pb2.Tunnel"',
        "Revealed type is \"Literal['stdout'] | Literal['stderr'] | Literal['exit'] | None\"",
        'Unexpected keyword argument "comand" for "ExecRequest"',
        'Argument "remote_port" to "OpenLocalForwardRequest" has incompatible type "str"; expected "int"',
        'Incompatible types in assignment (expression has type "str", variable has type "ValueType")',
        'has incompatible type "ListRequest"; expected "CloseRequest"',
    ]
    for line in expected:
        assert line in stdout, f"mypy did not say {line!r}:\n{stdout}"
    assert "Found 4 errors" in stdout, stdout
