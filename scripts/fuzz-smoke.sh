#!/usr/bin/env bash
# Runs every fuzz target for a short smoke time (default 60 s each; FUZZ_SECONDS overrides).
# Needs nightly and cargo-fuzz (`cargo install cargo-fuzz`). Exits non-zero on any finding.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${FUZZ_SECONDS:-60}"
for target in $(cargo +nightly fuzz list); do
    echo "== fuzz $target for ${secs}s"
    cargo +nightly fuzz run "$target" -- -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048
done
