//! What `#[derive(ShmSafe)]` accepts and what it refuses at compile time.

use multiproc::ShmSafe;
use multiproc::sync::{Mutex, Semaphore};
use std::sync::atomic::{AtomicU32, AtomicU64};

#[derive(ShmSafe)]
#[repr(C)]
struct Plain {
    hits: AtomicU64,
    total: Mutex<[u64; 4]>,
    seats: Semaphore,
}

#[derive(ShmSafe)]
#[repr(C, align(64))]
struct Padded(AtomicU32, u8);

#[derive(ShmSafe)]
#[repr(transparent)]
struct Wrapper<T: ShmSafe>(T);

fn is_shm_safe<T: ShmSafe>() {}

#[test]
fn accepted_shapes() {
    is_shm_safe::<Plain>();
    is_shm_safe::<Padded>();
    is_shm_safe::<Wrapper<u64>>();
    is_shm_safe::<Wrapper<Plain>>();
}

#[test]
fn derived_struct_shared_between_handles() {
    let shared = multiproc::Shared::new(Plain {
        hits: AtomicU64::new(1),
        total: Mutex::new([0; 4]),
        seats: Semaphore::new(2),
    })
    .unwrap();
    shared
        .hits
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    assert_eq!(shared.hits.load(std::sync::atomic::Ordering::Relaxed), 2);
    shared.seats.try_acquire().unwrap();
}

#[test]
fn refused_shapes() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/compile_fail/*.rs");
}
