#!/usr/bin/env bash
# Regenerates every client stub from proto/ (Rust's come from cargo build):
#   clients/python/src/tunnel/v1/  grpcio-tools + mypy-protobuf (.pyi)
#   clients/go/tunnelv1/           buf generate with protoc-gen-go(-grpc)
# Tools are the pinned ones of scripts/tools.sh, installed on first use.
# Commit what changes; CI (scripts/check-clients.sh) fails on any drift.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/tools.sh

clients/python/gen.sh
clients/go/gen.sh
