#!/usr/bin/env bash
# ThreadSanitizer over the thread-level tests of the sync primitives and the rings.
# Needs the nightly toolchain with rust-src (std is rebuilt with the sanitizer):
#   rustup component add --toolchain nightly rust-src
set -euo pipefail
cd "$(dirname "$0")/.."
target="$(rustc -vV | sed -n 's/^host: //p')"
export RUSTFLAGS="-Zsanitizer=thread"
export TSAN_OPTIONS="${TSAN_OPTIONS:-halt_on_error=1 second_deadlock_stack=1}"
exec cargo +nightly test -Zbuild-std --target "$target" --target-dir target/tsan --lib -- \
    --test-threads=1 sync:: queue::
