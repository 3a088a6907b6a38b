#!/usr/bin/env bash
# Regenerates the Python stubs in src/tunnel/v1/ from ../../proto:
#   tunnel_pb2.py        messages            (protoc --python_out)
#   tunnel_pb2_grpc.py   gRPC client/server  (grpcio-tools --grpc_python_out)
#   tunnel_pb2.pyi       message types       (mypy-protobuf --mypy_out)
#   tunnel_pb2_grpc.pyi  gRPC stub types     (mypy-protobuf --mypy_grpc_out)
# with the pinned grpcio-tools (which bundles protoc) and mypy-protobuf of
# requirements-dev.txt, from the venv scripts/tools.sh makes. The output is
# deterministic: CI runs this and fails when `git diff` shows a change.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$here"

# The repository's venv, not whatever python comes first on PATH: the stubs
# must come from the pinned generator versions.
python="${PYTHON:-$root/target/tools/venv/bin/python}"
if [ ! -x "$python" ]; then
  echo "gen.sh: $python is missing: run scripts/tools.sh (or set PYTHON)" >&2
  exit 1
fi

# Refuse to generate with versions other than the pinned ones.
for pkg in grpcio-tools mypy-protobuf; do
  want="$(sed -n "s/^$pkg==//p" requirements-dev.txt)"
  have="$("$python" -c 'import sys
from importlib.metadata import version
print(version(sys.argv[1]))' "$pkg")"
  if [ "$want" != "$have" ]; then
    echo "gen.sh: $pkg $have is installed but requirements-dev.txt pins $want: run scripts/tools.sh" >&2
    exit 1
  fi
done

scripts="$("$python" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"
out=src
pkgdir="$out/tunnel/v1"

# Remove what an earlier run generated, so a file whose proto was removed goes too.
find "$out" \( -name '*_pb2.py' -o -name '*_pb2.pyi' -o -name '*_pb2_grpc.py' -o -name '*_pb2_grpc.pyi' \) -delete

# Paths are relative (-I ../../proto, proto files named from there), so
# nothing about this machine ends up in the output. grpc_tools.protoc adds
# the include path of the well-known types (google/protobuf/*.proto) itself.
protos=()
while IFS= read -r f; do protos+=("${f#../../proto/}"); done < <(find ../../proto -name '*.proto' | LC_ALL=C sort)

"$python" -m grpc_tools.protoc \
  -I ../../proto \
  --plugin=protoc-gen-mypy="$scripts/protoc-gen-mypy" \
  --plugin=protoc-gen-mypy_grpc="$scripts/protoc-gen-mypy_grpc" \
  --python_out="$out" \
  --grpc_python_out="$out" \
  --mypy_out="$out" \
  --mypy_grpc_out="$out" \
  "${protos[@]}"

for f in "$pkgdir"/tunnel_pb2.py "$pkgdir"/tunnel_pb2.pyi "$pkgdir"/tunnel_pb2_grpc.py "$pkgdir"/tunnel_pb2_grpc.pyi; do
  [ -s "$f" ] || { echo "gen.sh: $f was not generated" >&2; exit 1; }
done
echo "gen.sh: regenerated $pkgdir from ${protos[*]}" >&2
