#!/usr/bin/env bash
# Fuzzing for CI: for each target, replay its committed seeds and regression
# inputs, then fuzz it for a bounded time on a scratch copy of its seeds.
# Fails on any crash or property failure, leaving the input in
# fuzz/artifacts/<target>/. See FUZZING.md.
#
#   FUZZ_SECONDS  seconds of fuzzing per target (default 40)
#   FUZZ_TARGETS  which targets (default: all of them)
#
# Runs on stable Rust, so without a sanitizer (`--sanitizer none`): Rust code
# with `#![forbid(unsafe_code)]` gains little from AddressSanitizer, and
# panics, overflows (debug assertions are on) and failed asserts are caught.
set -euo pipefail

cd "$(dirname "$0")"
seconds="${FUZZ_SECONDS:-40}"
targets="${FUZZ_TARGETS:-decoder command server_line hub cluster http_head cidr}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

echo "fuzz: building the targets"
cargo fuzz build --sanitizer none

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

# run TARGET LABEL ARGS...: runs the fuzzer, keeping its output in a log that
# is shown only if it fails.
run() {
    local target="$1" label="$2"
    shift 2
    local log="$scratch/$target.$label.log"
    if ! cargo fuzz run "$target" --sanitizer none "$@" >"$log" 2>&1; then
        tail -n 60 "$log"
        echo "fuzz: $target FAILED ($label); the input is in fuzz/artifacts/$target/" >&2
        echo "fuzz: FUZZING.md says how to minimise it and add a regression" >&2
        exit 1
    fi
    grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)' "$log" | tail -n 1 || true
}

for target in $targets; do
    mkdir -p "regressions/$target" "$scratch/$target"
    echo "fuzz: $target: replaying corpus/$target and regressions/$target"
    run "$target" replay "corpus/$target" "regressions/$target" -- -runs=0

    echo "fuzz: $target: fuzzing for ${seconds}s"
    cp -R "corpus/$target/." "$scratch/$target/"
    run "$target" fuzz "$scratch/$target" -- -max_total_time="$seconds"
done
echo "fuzz: all targets passed"
