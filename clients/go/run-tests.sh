#!/usr/bin/env bash
# The Go client's checks, as CI runs them: formatting, go vet, then every
# test, including the end-to-end suite in e2e/ against a real sshd and
# tunneld started by the repository's testbed binary.
#
# Assumes Go on PATH and the Rust binaries built (`cargo build --workspace
# --bins`; TUNNELD_TESTBED overrides target/debug/testbed). Modules come
# through the Go module proxy. Extra arguments go to `go test` (e.g. -v,
# -run TestExec). Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

unformatted="$(gofmt -l .)"
if [ -n "$unformatted" ]; then
  echo "run-tests.sh: not gofmt-formatted:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...
go test -count=1 "$@" ./...
