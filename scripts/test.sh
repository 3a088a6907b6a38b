#!/usr/bin/env bash
# Runs every test: the dependency audit, the Rust workspace (unit tests and
# the end-to-end suite, grpcurl included), the deploy files' checks, the
# Python and Go client suites, the proto lint, the stubs' drift check and a
# bounded fuzz run of the parsers — against a real OpenSSH sshd on
# loopback. Installs what they need first (system packages via apt-get,
# pinned Go tools via the Go module proxy, Python packages via pip,
# cargo-deny and cargo-fuzz from crates.io).
# CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-deps.sh --tests
. scripts/tools.sh

# sshd refuses `signal` requests on root's sessions (root logins skip its
# post-auth privilege separation), so the tests that send signals log in as
# this unprivileged account when they run as root, as CI does.
# Its password is `*` (no password works), not locked: sshd without PAM
# turns locked accounts away even for keys.
if [ "$(id -u)" -eq 0 ] && ! getent passwd tunneld-e2e >/dev/null; then
  echo "==> creating the unprivileged test account tunneld-e2e" >&2
  useradd --system --create-home --shell /bin/sh --password '*' tunneld-e2e
fi

# Known vulnerabilities, licences, banned crates and sources of both
# lockfiles: seconds once cargo-deny is installed, and it stops the run
# before the long suites.
scripts/audit.sh

scripts/check-clients.sh

# The end-to-end tests and the client suites run the real binaries.
cargo build --workspace --bins --locked
# The deploy files (systemd unit, Dockerfile, Kubernetes base) against the
# built tunneld: seconds once the Go modules are cached.
scripts/check-deploy.sh
cargo test --workspace --locked -- --color never
# The benchmark at smoke size (seconds), so it cannot rot; never judged on speed.
echo "==> benchmark smoke run" >&2
cargo run --locked -q -p tunneld-tests --bin bench -- --smoke > /dev/null

clients/python/run-tests.sh
clients/go/run-tests.sh
# Every parser a user or client reaches, for a bounded time each; replays
# the crashes kept as regression cases first.
echo "==> fuzzing the parsers" >&2
scripts/fuzz.sh
echo "==> all suites passed" >&2
