#!/usr/bin/env bash
# The side-by-side benchmark of docs/BENCHMARKS.md: tunneld against OpenSSH's
# ssh client through one throwaway sshd on loopback, one cipher for both.
#   scripts/bench.sh                 # full run: several minutes, 2 cores busy
#   scripts/bench.sh --smoke         # seconds; fails on errors, never on speed
#   scripts/bench.sh --help          # every flag (sizes, repetitions, --skip)
# Release build of the bench; the bench itself builds a release tunneld
# (tests/src/binaries.rs) unless TUNNELD_BIN_DIR names prebuilt binaries.
# The table (Markdown) goes to stdout, progress to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/ensure-deps.sh
exec cargo run --release --locked --quiet -p tunneld-tests --bin bench -- "$@"
