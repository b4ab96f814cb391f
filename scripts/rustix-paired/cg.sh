#!/bin/bash
# per-call user-space instructions: (Ir(n2) - Ir(n1)) / (n2 - n1)
# Build first: cargo build --release (in this folder). Needs valgrind.
export RUST_BACKTRACE=0
B="$(dirname "$0")/target/release/rustix-paired"
ir() { valgrind --tool=callgrind --callgrind-out-file=/dev/null "$B" "$1" "$2" "$3" 2>&1 | grep -o 'Collected : [0-9]*' | grep -o '[0-9]*'; }
for c in "$@"; do
  line="$c"
  for m in old new; do
    a=$(ir $c $m 200); b=$(ir $c $m 1200)
    line="$line $m=$(( (b - a) / 1000 ))"
  done
  echo "$line"
done
