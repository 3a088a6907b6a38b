"""Generated Python client for tunneld's gRPC API (``proto/tunnel/``).

The modules keep the proto package as their import path::

    from tunnel.v1 import tunnel_pb2, tunnel_pb2_grpc
"""
