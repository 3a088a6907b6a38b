#!/usr/bin/env bash
# Regenerates the Go stubs clients/go/tunnelv1/*.pb.go from proto/ with
# `buf generate` and the pinned local plugins in target/tools/bin
# (installed by `. scripts/tools.sh`). No protoc, no remote plugins.
# The output is committed; CI runs this and then `git diff --exit-code`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
bin="$root/target/tools/bin"
for tool in buf protoc-gen-go protoc-gen-go-grpc; do
  if [ ! -x "$bin/$tool" ]; then
    echo "gen.sh: $bin/$tool is missing; run '. scripts/tools.sh' first" >&2
    exit 1
  fi
done
# The pinned plugins first on PATH, so buf's `local:` plugins are exactly them.
export PATH="$bin:$PATH"
cd "$root"
# Stale stubs of a removed or renamed .proto must not survive.
rm -f clients/go/tunnelv1/*.pb.go
buf generate --template clients/go/buf.gen.yaml
