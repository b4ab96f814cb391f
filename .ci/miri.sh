#!/usr/bin/env bash
# Miri over the logic that runs on plain memory: the rings (heap-backed regions), the sync
# primitives' state machines (threads + Miri's futex emulation), header/record parsing.
# Needs the nightly toolchain with the miri component:
#   rustup component add --toolchain nightly miri rust-src
# Not listed, and why:
# - tests that need memfds, shared mappings or child processes (Miri cannot run them);
# - tests that assert wall-clock timing (Miri runs ~100x slower);
# - the rings' corruption tests: their scribbler writes padding bytes under a live `&Header`,
#   which Stacked Borrows forbids in the test's own writer (the fuzz targets cover them natively);
# - owner death: Miri's emulated thread ids are not in /proc, so under Miri owners are never
#   judged dead (sync/owner.rs); the death paths are covered by loom and the crash tests;
# - tests that only hit their watchdog because Miri is slow (the 4x4 exchanges, the contended
#   counter, owner-death timing; the condvar producer/consumer covers the contended mutex);
# - ReentrantMutex: Miri gives every thread the same emulated thread id, which is the owner key.
# The futex that lives in the low half of the mutex word is replaced by yielding under Miri (see
# sys/futex.rs: Miri models the kernel's 4-byte read as a Rust access). Isolation is disabled
# because owner liveness reads /proc.
set -euo pipefail
cd "$(dirname "$0")/.."
export MIRIFLAGS="${MIRIFLAGS:--Zmiri-strict-provenance -Zmiri-disable-isolation}"
tests=(
    queue::mpmc::tests::fifo_over_many_laps_and_the_wrap
    queue::mpmc::tests::attach_validates_the_header
    queue::mpmc::tests::slot_layout_matches_repr_c
    queue::spsc::tests::single_and_batch_ops_match_a_model
    sync::mutex::tests::garbage_state_is_not_recoverable
    sync::rwlock::tests::writer_preferred_over_new_readers
    sync::condvar::tests::producer_consumer
    sync::semaphore::tests::timeout_try_and_bounded_over_release
    sync::event::tests::gating_and_timeout
    sync::barrier::tests::phases_one_leader_each
    sys::proc::tests::parses_stat_with_odd_command_names
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
