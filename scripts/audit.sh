#!/usr/bin/env bash
# Audits the dependency tree with cargo-deny, as deny.toml sets it: known
# vulnerabilities (RustSec advisories), licences, banned crates and sources,
# for the workspace's Cargo.lock and fuzz/'s own. scripts/test.sh (so CI)
# runs it.
#
# Offline: these machines cannot reach GitHub, where RustSec's advisory
# database lives, so it reads a dated copy (tools/advisory-db/update.sh makes
# one), the first found of
#   $ADVISORY_DB                  if set
#   target/tools/advisory-db      a copy refreshed in this clone
#   ../shared/advisory-db         the copy kept beside the repository (CI)
# With none, the advisories are not checked and it says so loudly; the
# licences, bans and sources still are. A copy older than
# ADVISORY_DB_MAX_AGE_DAYS (default 30) is used, with a loud warning.
#
# Installs the pinned cargo-deny when `cargo deny` is missing or another
# version (as scripts/fuzz.sh does for cargo-fuzz), into cargo's own bin
# directory, so a machine that keeps it builds it once. Measured on a
# 2-core machine shared with other builds: 10 minutes wall, 4 minutes of
# CPU; the audit itself takes seconds.
set -euo pipefail

CARGO_DENY_VERSION=0.20.2
ADVISORY_DB_MAX_AGE_DAYS=${ADVISORY_DB_MAX_AGE_DAYS:-30}

cd "$(dirname "$0")/.."

if [[ "$(cargo deny --version 2>/dev/null || true)" != "cargo-deny $CARGO_DENY_VERSION" ]]; then
    echo "==> installing cargo-deny $CARGO_DENY_VERSION" >&2
    cargo install cargo-deny --version "$CARGO_DENY_VERSION" --locked
fi

warn() {
    printf '\n==> WARNING: %s\n' "$1" >&2
    shift
    printf '    %s\n' "$@" >&2
    printf '\n' >&2
}

db=${ADVISORY_DB:-}
if [[ -z $db ]]; then
    for candidate in target/tools/advisory-db ../shared/advisory-db; do
        if [[ -f $candidate/SOURCE ]]; then
            db=$candidate
            break
        fi
    done
fi

checks=(advisories bans licenses sources)
if [[ -z $db ]]; then
    warn "no advisory database: known vulnerabilities were NOT checked." \
        "Looked in \$ADVISORY_DB, target/tools/advisory-db and ../shared/advisory-db." \
        "Make one with tools/advisory-db/update.sh (README.md, \"Dependency audit\")."
    checks=(bans licenses sources)
else
    [[ -f $db/SOURCE && -d $db/crates ]] || { echo "$db: no SOURCE or crates/: not a copy made by tools/advisory-db/update.sh" >&2; exit 1; }
    field() { sed -n "s/^$1 = \"\\(.*\\)\"\$/\\1/p" "$db/SOURCE"; }
    commit=$(field commit)
    date=$(field date)
    age_days=$(( ($(date +%s) - $(date -d "$date" +%s)) / 86400 ))
    echo "==> advisory database: $db, commit ${commit:0:12} of $date ($age_days days old)" >&2
    if (( age_days > ADVISORY_DB_MAX_AGE_DAYS )); then
        warn "the advisory database is $age_days days old (limit $ADVISORY_DB_MAX_AGE_DAYS): advisories published since ${date%%T*} are not checked." \
            "Refresh it with tools/advisory-db/update.sh (README.md, \"Dependency audit\")."
    fi

    # cargo-deny reads a database only from a git repository, in a directory
    # named after its URL under db-path (deny.toml takes db-path from
    # TUNNELD_ADVISORY_DBS). The name below is cargo-deny's for RustSec's
    # default URL: check it when CARGO_DENY_VERSION changes (`cargo deny -L
    # debug check advisories` prints the path it opens). The commit carries
    # the copy's date; the freshness check is the one above, since
    # cargo-deny's own sees a repository made just now.
    dbs=$(mktemp -d)
    trap 'rm -rf "$dbs"' EXIT
    repo=$dbs/advisory-db-3157b0e258782691
    mkdir "$repo"
    cp -R "$db/crates" "$repo/"
    git -C "$repo" init -q
    git -C "$repo" add -A
    GIT_AUTHOR_DATE=$date GIT_COMMITTER_DATE=$date \
        git -C "$repo" -c user.name=audit -c user.email=audit@localhost -c commit.gpgsign=false \
        commit -q -m "rustsec/advisory-db $commit"
    export TUNNELD_ADVISORY_DBS=$dbs
fi

# cargo-deny reads every crate's manifest; fetch them first (crates.io is
# reachable), then keep cargo-deny and cargo offline.
status=0
for manifest in Cargo.toml fuzz/Cargo.toml; do
    echo "==> cargo deny: ${manifest%Cargo.toml}Cargo.lock" >&2
    cargo fetch --locked --manifest-path "$manifest" -q
    cargo deny --offline --locked --manifest-path "$manifest" --config deny.toml \
        check "${checks[@]}" || status=1
done
exit $status
