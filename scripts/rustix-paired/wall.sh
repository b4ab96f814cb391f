#!/bin/bash
# Wall time, old and new batches interleaved in one process (order alternating per round).
# Build first: cargo build --release (in this folder).
B="$(dirname "$0")/target/release/rustix-paired"
for c in futex_wake timed_wait membarrier fstat pread getpid gettid geteuid ppoll set_cloexec getrandom punch_hole waitid pidfd_signal0 sendrecv; do $B wall $c 201 2000; done
for c in memfd bootstrap pipe2 pidfd_open socketpair sendrecv_fd; do $B wall $c 201 500; done
for c in named_segment renameat2; do $B wall $c 201 100; done
