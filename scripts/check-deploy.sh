#!/usr/bin/env bash
# Checks the deploy files (deploy/): `tunneld --check-config` on every
# shipped config, then the Go suite in deploy/verify, which renders
# deploy/k8s with `kubectl kustomize` and decodes every object strictly
# into the Kubernetes API types, runs `systemd-analyze verify` on the
# systemd unit, passes the flags of the unit, the Dockerfile and the
# StatefulSet to `tunneld --check-config` with the configs they ship, and
# starts tunneld as the image and the pod start it (a generated
# certificate, key and token in place of the secrets) to run their health
# probes against it.
#
# Assumes tunneld and tunnelctl built (`cargo build --workspace --bins`;
# TUNNELD_BIN and TUNNELCTL_BIN override ${CARGO_TARGET_DIR:-target}/debug/),
# and Go, kubectl, systemd-analyze, openssl and ssh-keygen on PATH. Modules
# come through the Go module proxy.
# Extra arguments go to `go test` (e.g. -v, -run TestUnit). Exits non-zero
# on any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin="${CARGO_TARGET_DIR:-target}/debug"
TUNNELD_BIN="$(realpath "${TUNNELD_BIN:-$bin/tunneld}")"
TUNNELCTL_BIN="$(realpath "${TUNNELCTL_BIN:-$bin/tunnelctl}")"
export TUNNELD_BIN TUNNELCTL_BIN GOFLAGS="${GOFLAGS:-} -mod=readonly"
for tool in "$TUNNELD_BIN" "$TUNNELCTL_BIN" go kubectl systemd-analyze openssl ssh-keygen; do
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
