#!/usr/bin/env bash
# Fuzzes every parser a user or an API client reaches (the targets under
# fuzz/, issue 16): replays the crashes kept in fuzz/regressions/<target>/,
# then runs each target for FUZZ_SECONDS (default 15). Fails if any target
# crashes, after running all of them; a new crash is left in
# fuzz/artifacts/<target>/ (keep it in fuzz/regressions/<target>/ once it is
# fixed).
#
# Needs the nightly toolchain (libFuzzer's instrumentation); installs the
# pinned cargo-fuzz when `cargo fuzz` is missing or another version.
#
# Built without a sanitizer (`-s none`): tunneld and tunnelctl forbid unsafe
# code, so AddressSanitizer would look only at their dependencies, for a
# slower build and a fifth of the executions a second. Panics, overflows
# (debug assertions are on), stack overflows, hangs (-timeout) and memory
# blow-ups (-rss_limit_mb) are still crashes.
#
# Time on a 2-core machine, measured: 6.5 minutes from a cold fuzz/target
# (4.5 of them building), 2 minutes once built (FUZZ_SECONDS x 7 targets,
# and the start of each).
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2
FUZZ_SECONDS=${FUZZ_SECONDS:-15}

cd "$(dirname "$0")/.."

if [[ "$(cargo fuzz --version 2>/dev/null || true)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

# The same options for the build and every run, so a run rebuilds nothing.
options=(--sanitizer none --debug-assertions)
# The build is most of the time: optimise less than cargo-fuzz's release
# profile (opt-level 3). The parsers still run at tens of thousands of
# inputs a second, and their coverage stops growing within seconds.
export CARGO_PROFILE_RELEASE_OPT_LEVEL=${CARGO_PROFILE_RELEASE_OPT_LEVEL:-1}
# Without a sanitizer, the panic hook is what prints a crash's stack.
export RUST_BACKTRACE=${RUST_BACKTRACE:-1}
targets=$(cargo +nightly fuzz list)

# The inputs a run grows go to a scratch directory, not the committed seeds.
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

cargo +nightly fuzz build "${options[@]}"

failed=()
summary=()
for target in $targets; do
    regressions=fuzz/regressions/$target
    if [[ -d $regressions ]] && [[ -n "$(ls -A "$regressions")" ]]; then
        echo "== $target: replaying $regressions"
        if ! cargo +nightly fuzz run "${options[@]}" "$target" "$regressions" -- -runs=0; then
            failed+=("$target (a case in $regressions)")
            continue
        fi
    fi

    echo "== $target: fuzzing for ${FUZZ_SECONDS}s"
    mkdir -p "$scratch/$target"
    log=$scratch/$target.log
    # libFuzzer logs every input it keeps: a run that passes shows only its
    # coverage and speed, one that crashes its report (the panic with its
    # backtrace, the input, and how to replay it).
    if cargo +nightly fuzz run "${options[@]}" "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$FUZZ_SECONDS" -timeout=10 -rss_limit_mb=2048 >"$log" 2>&1; then
        stats=$(grep -E '^#[0-9]+' "$log" | tail -n 1 | grep -oE '(cov|exec/s): [0-9]+' | paste -sd ' ' || true)
        summary+=("$target: $stats")
        echo "$stats"
    else
        grep -vE '^#[0-9]+[[:space:]]+(NEW|REDUCE|pulse|RELOAD)' "$log" | tail -n 150
        failed+=("$target")
    fi
done

echo
printf '%s\n' "${summary[@]}"
if ((${#failed[@]} > 0)); then
    printf 'fuzz: crashed: %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "fuzz: no crash in $(wc -w <<<"$targets") targets"
