#!/usr/bin/env bash
# Runs every test of the workspace against a real OpenSSH sshd on loopback,
# installing what the tests need first. CI runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-deps.sh
# The end-to-end tests run the real binaries; build them first.
cargo build --workspace --bins --locked
cargo test --workspace --locked -- --color never
