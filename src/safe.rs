//! The marker for types that may live in memory shared between processes. It sits at the bottom
//! of the crate (below `sync` and `shm`): the primitives implement it, the handles require it.

/// Types that may be placed in shared memory and read by any process that maps it.
///
/// # Safety
///
/// Implementing this trait promises all of the following about `Self`:
/// - **Every bit pattern is a valid value.** A peer process can write anything into the segment;
///   reading it back must never be undefined behaviour. (Our primitives are made of atomics and
///   `Pod` data, and treat impossible states as errors.)
/// - **Position independent**: no pointers, references or addresses; the segment is mapped at a
///   different address in every process.
/// - **No meaningful `Drop`**: a value in shared memory is never dropped by the handles.
/// - **A stable layout** (`#[repr(C)]` or `#[repr(transparent)]`, or a primitive), so that
///   processes built from the same source agree on it.
/// - **`Sync`-safe across processes**: concurrent access from several processes goes only through
///   atomics or through a lock that grants exclusive access.
pub unsafe trait ShmSafe: Sync {}

macro_rules! impl_shm_safe {
    ($($t:ty),* $(,)?) => {
        // SAFETY: integers, floats and atomics of them are valid for every bit pattern, hold no
        // pointers, have no Drop and a fixed layout.
        $(unsafe impl ShmSafe for $t {})*
    };
}

impl_shm_safe!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    ()
);
impl_shm_safe!(
    std::sync::atomic::AtomicU8,
    std::sync::atomic::AtomicU16,
    std::sync::atomic::AtomicU32,
    std::sync::atomic::AtomicU64,
    std::sync::atomic::AtomicUsize,
    std::sync::atomic::AtomicI8,
    std::sync::atomic::AtomicI16,
    std::sync::atomic::AtomicI32,
    std::sync::atomic::AtomicI64,
    std::sync::atomic::AtomicIsize,
);

// SAFETY: an array of `ShmSafe` elements is contiguous, valid for every bit pattern of its
// elements, and has no pointers or Drop.
unsafe impl<T: ShmSafe, const N: usize> ShmSafe for [T; N] {}
