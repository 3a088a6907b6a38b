#!/usr/bin/env bash
# Checks the deploy files (deploy/): `tunneld --check-config` on every
# shipped config, then the Go suite in deploy/verify, which renders
# deploy/k8s with `kubectl kustomize` and decodes every object strictly
# into the Kubernetes API types, runs `systemd-analyze verify` on the
# systemd unit, and passes the flags of the unit, the Dockerfile and the
# StatefulSet to `tunneld --check-config` with the configs they ship.
#
# Assumes tunneld built (`cargo build --workspace --bins`; TUNNELD_BIN
# overrides ${CARGO_TARGET_DIR:-target}/debug/tunneld), Go, kubectl and
# systemd-analyze on PATH. Modules come through the Go module proxy.
# Extra arguments go to `go test` (e.g. -v, -run TestUnit). Exits non-zero
# on any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TUNNELD_BIN="${TUNNELD_BIN:-${CARGO_TARGET_DIR:-target}/debug/tunneld}"
TUNNELD_BIN="$(realpath "$TUNNELD_BIN")"
export TUNNELD_BIN GOFLAGS="${GOFLAGS:-} -mod=readonly"
for tool in "$TUNNELD_BIN" go kubectl systemd-analyze; do
  command -v "$tool" >/dev/null || { echo "check-deploy.sh: $tool is missing" >&2; exit 1; }
done

echo "==> tunneld --check-config on the shipped configs" >&2
for config in deploy/*.toml deploy/container/*.toml deploy/k8s/*.toml; do
  "$TUNNELD_BIN" --check-config "$config"
done

echo "==> deploy/verify: kustomize + strict decoding, systemd-analyze verify, the deploy files' flags" >&2
cd deploy/verify
unformatted="$(gofmt -l .)"
if [ -n "$unformatted" ]; then
  echo "check-deploy.sh: not gofmt-formatted:" >&2
  echo "$unformatted" >&2
  exit 1
fi
go vet ./...
go test -count=1 "$@" ./...
