#!/usr/bin/env bash
# The API's style and the stubs' freshness, as CI checks them:
#   1. buf lint over proto/ (rules in buf.yaml);
#   2. every stub regenerated from proto/ must equal what is committed.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/tools.sh

echo "==> buf lint" >&2
buf lint

echo "==> regenerating the client stubs" >&2
scripts/gen-clients.sh
if ! git diff --quiet -- clients/ || [ -n "$(git status --porcelain --untracked-files=all -- clients/)" ]; then
  echo "The committed client stubs differ from what proto/ generates:" >&2
  git status --short --untracked-files=all -- clients/ >&2
  git --no-pager diff --stat -- clients/ >&2
  echo "Run scripts/gen-clients.sh and commit the result." >&2
  exit 1
fi
echo "==> stubs match proto/" >&2
