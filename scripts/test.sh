#!/usr/bin/env bash
# Runs every test: the dependency audit, the Rust workspace (unit tests and
# the end-to-end suite, grpcurl included), the Python and Go client suites,
# the proto lint, the stubs' drift check and a bounded fuzz run of the
# parsers — against a real OpenSSH sshd on loopback. Installs what they need
# first (system packages via apt-get, pinned Go tools via the Go module
# proxy, Python packages via pip, cargo-deny and cargo-fuzz from crates.io).
# CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-deps.sh
. scripts/tools.sh

# Known vulnerabilities, licences, banned crates and sources of both
# lockfiles: seconds once cargo-deny is installed, and it stops the run
# before the long suites.
scripts/audit.sh

scripts/check-clients.sh

# The end-to-end tests and the client suites run the real binaries.
cargo build --workspace --bins --locked
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
