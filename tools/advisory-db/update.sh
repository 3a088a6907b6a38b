#!/usr/bin/env bash
# Refreshes the offline copy of RustSec's advisory database that
# scripts/audit.sh reads, from a git checkout or bare clone of
# rustsec/advisory-db (these machines cannot reach GitHub; a fetched
# snapshot or a clone made elsewhere will do):
#
#   tools/advisory-db/update.sh SOURCE_GIT_DIR [DEST]
#
# DEST (default target/tools/advisory-db, not committed) gets the
# advisories of the source's HEAD as plain files -- crates/ (one
# RUSTSEC-*.md per advisory, the part cargo-deny reads), rust/ (the
# toolchain's own advisories, a few KB, kept so the copy is whole) and the
# database's CC0 licence -- plus SOURCE, which records the commit and its
# date. scripts/audit.sh warns when that date is older than its limit, so
# the copy cannot go stale unnoticed.
#
# The copy is data from outside the project: it is kept beside the
# repository (shared/advisory-db, which every clone and CI see as
# ../shared/advisory-db), not committed here. See README.md, "Dependency audit".
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 SOURCE_GIT_DIR [DEST]" >&2
  exit 2
fi
src=$1
root="$(cd "$(dirname "$0")/../.." && pwd)"
dest=${2:-$root/target/tools/advisory-db}

git -C "$src" rev-parse --verify -q HEAD >/dev/null ||
  { echo "$src: not a git repository with a HEAD" >&2; exit 1; }
commit=$(git -C "$src" rev-parse HEAD)
date=$(git -C "$src" show -s --format=%cI HEAD)
for part in crates rust LICENSE.txt; do
  git -C "$src" cat-file -e "HEAD:$part" ||
    { echo "$src: HEAD has no $part: is this rustsec/advisory-db?" >&2; exit 1; }
done

# Unpack next to DEST and swap it in whole, so a failed run leaves the old
# copy as it was.
mkdir -p "$(dirname "$dest")"
tmp=$(mktemp -d "$dest.new.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
git -C "$src" archive --format=tar HEAD crates rust LICENSE.txt | tar -x -C "$tmp"
count=$(find "$tmp/crates" -name 'RUSTSEC-*.md' | wc -l)
[ "$count" -ge 100 ] || { echo "$src: only $count advisories under crates/" >&2; exit 1; }
cat > "$tmp/SOURCE" <<SRC
# RustSec advisory database, copied by tools/advisory-db/update.sh.
repository = "https://github.com/rustsec/advisory-db"
commit = "$commit"
date = "$date"
advisories = $count
SRC

rm -rf "$dest.old"
[ ! -e "$dest" ] || mv "$dest" "$dest.old"
mv "$tmp" "$dest"
rm -rf "$dest.old"
trap - EXIT
echo "advisory database at $dest: $count advisories, commit $commit of $date" >&2
