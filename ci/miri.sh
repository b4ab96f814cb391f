#!/usr/bin/env bash
# Miri over the logic that runs on plain memory: the rings (heap-backed regions), the sync
# primitives' state machines (threads + Miri's futex emulation), header/record parsing.
# Needs the nightly toolchain with the miri component:
#   rustup component add --toolchain nightly miri rust-src
# Tests that need real shared mappings, /proc of other processes or child processes are out of
# Miri's reach and are not listed. Isolation is disabled because owner liveness reads /proc.
set -euo pipefail
cd "$(dirname "$0")/.."
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-strict-provenance -Zmiri-disable-isolation}"
tests=(
    queue::mpmc::tests::fifo_over_many_laps_and_the_wrap
    queue::mpmc::tests::attach_validates_the_header
    queue::mpmc::tests::slot_layout_matches_repr_c
    queue::mpmc::tests::corrupted_state_gives_errors_not_panics
    queue::spsc::tests::single_and_batch_ops_match_a_model
    queue::spsc::tests::corrupted_state_gives_errors_not_panics
    sync::mutex::tests::contended_counter
    sync::mutex::tests::try_lock_and_timeout
    sync::mutex::tests::garbage_state_is_not_recoverable
    sync::condvar::tests::producer_consumer
    sync::semaphore::tests::timeout_try_and_bounded_over_release
    sync::event::tests::gating_and_timeout
    sync::barrier::tests::phases_one_leader_each
    sync::rwlock::tests::exclusion_under_contention
    sync::reentrant::tests::recursion_and_exclusion
    sys::proc::tests::parses_stat_with_odd_command_names
    process::record::tests::bootstrap_and_result_round_trip
    process::record::tests::garbage_and_truncated_records_are_refused
)
status=0
for t in "${tests[@]}"; do
    if cargo +nightly miri test --lib -q -- --exact "$t" >"target/miri-$t.log" 2>&1; then
        echo "ok      $t"
    else
        echo "FAILED  $t (see target/miri-$t.log)"
        status=1
    fi
done
exit $status
