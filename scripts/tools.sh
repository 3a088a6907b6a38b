#!/usr/bin/env bash
# Installs the pinned tools that generate the client stubs and run the
# client suites into target/tools (idempotent; a second run only checks):
#   Go tools through the Go module proxy into target/tools/bin,
#   Python packages through pip into the venv target/tools/venv.
# Source it (`. scripts/tools.sh`) to get them on PATH; running it installs.
# Needs go and python3 (both preinstalled on the machines we use; Debian's
# golang-go and python3-venv otherwise).

# Versions: bump here, then run scripts/gen-clients.sh and commit the result.
PROTOC_GEN_GO_VERSION=v1.36.12       # google.golang.org/protobuf/cmd/protoc-gen-go
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2    # google.golang.org/grpc/cmd/protoc-gen-go-grpc
BUF_VERSION=v1.75.0                  # github.com/bufbuild/buf/cmd/buf
GRPCURL_VERSION=v1.9.4               # github.com/fullstorydev/grpcurl/cmd/grpcurl

tools_main() {
  # Options stay local to this function, so sourcing it leaves the caller's
  # shell as it was.
  local -
  set -euo pipefail
  local root
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  TOOLS_DIR="$root/target/tools"
  mkdir -p "$TOOLS_DIR/bin"

  command -v go >/dev/null 2>&1 || { echo "go is missing: install Go 1.24+ (Debian: golang-go)" >&2; return 1; }
  command -v python3 >/dev/null 2>&1 || { echo "python3 is missing" >&2; return 1; }

  go_tool protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
  go_tool protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"
  go_tool buf github.com/bufbuild/buf/cmd/buf "$BUF_VERSION"
  go_tool grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl "$GRPCURL_VERSION"

  local venv="$TOOLS_DIR/venv" reqs="$root/clients/python/requirements-dev.txt"
  if [ ! -x "$venv/bin/python" ]; then
    echo "==> creating the Python venv $venv" >&2
    python3 -m venv "$venv"
  fi
  # Reinstall only when the pinned requirements changed.
  if ! cmp -s "$reqs" "$venv/.installed-requirements"; then
    echo "==> installing Python tools from $reqs" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs"
    cp "$reqs" "$venv/.installed-requirements"
  fi

  export PATH="$TOOLS_DIR/bin:$venv/bin:$PATH"
  export TOOLS_DIR
  # grpcurl for the Rust e2e test that runs it.
  export GRPCURL="$TOOLS_DIR/bin/grpcurl"
}

# go_tool NAME MODULE VERSION: installs MODULE@VERSION as target/tools/bin/NAME
# unless that exact version is already there.
go_tool() {
  local name=$1 module=$2 version=$3
  local stamp="$TOOLS_DIR/bin/.$name-$version"
  if [ ! -x "$TOOLS_DIR/bin/$name" ] || [ ! -e "$stamp" ]; then
    echo "==> installing $name $version" >&2
    GOBIN="$TOOLS_DIR/bin" GOFLAGS=-mod=mod go install "$module@$version"
    rm -f "$TOOLS_DIR/bin/.$name-"*
    touch "$stamp"
  fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  tools_main
else
  tools_main || return 1
fi
