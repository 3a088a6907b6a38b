#!/usr/bin/env bash
# The Python client's checks, as CI runs them:
#   1. installs the package into the tools venv (`pip install ./clients/python`,
#      as a user would), and into a fresh venv that gets nothing else, where
#      the example runs (its declared dependencies must be enough);
#   2. mypy --strict over examples/ and tests/ against the installed stubs,
#      and over the generated stubs themselves;
#   3. the pytest suite against a real sshd + tunneld (the testbed binary).
# Arguments go to pytest (e.g. `-k attached -x`).
#
# Assumes `. scripts/tools.sh` was sourced (its venv is active) and the Rust
# binaries are built (`cargo build --workspace --bins`). Exits non-zero on
# any failure.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"

python="${PYTHON:-python}"
# Never pip-install into a system Python.
if ! "$python" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)' 2>/dev/null; then
  echo "run-tests.sh: '$python' is not a venv's: source scripts/tools.sh first" >&2
  exit 1
fi
testbed="${TUNNELD_TESTBED:-$root/target/debug/testbed}"
if [ ! -x "$testbed" ]; then
  echo "run-tests.sh: $testbed is missing: run 'cargo build --workspace --bins' first" >&2
  exit 1
fi
# Caches go under target/, not into the source tree.
cache="$root/target/tools/python-cache"
mkdir -p "$cache"

echo "==> pip install ./clients/python" >&2
"$python" -m pip install --quiet --disable-pip-version-check "$here"

echo "==> a fresh venv holding only pip install ./clients/python, to run the example" >&2
fresh="$root/target/tools/python-fresh-venv"
"$python" -m venv --clear "$fresh"
"$fresh/bin/python" -m pip install --quiet --disable-pip-version-check "$here"
export QUICKSTART_PYTHON="$fresh/bin/python"

cd "$here"
echo "==> mypy --strict: examples/ and tests/ against the installed package" >&2
"$python" -m mypy --cache-dir "$cache/mypy"
echo "==> mypy --strict: the generated stubs themselves" >&2
"$python" -m mypy --strict --cache-dir "$cache/mypy" src/tunnel

echo "==> pytest" >&2
"$python" -m pytest -o cache_dir="$cache/pytest" "$@"
