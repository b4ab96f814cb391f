//! Spawning from `cargo test` integration tests.
//!
//! A libtest binary runs its tests, not `main`, so a re-executed child must be steered to a
//! test that calls [`init`](super::init). `test_support!()` defines that test
//! (`__multiproc_child`) and, before `main`, marks the binary as running under libtest; spawn
//! then runs the child with `__multiproc_child --exact --nocapture --test-threads=1 -q`
//! (the way procspawn does it). The child's harness still prints its `running 1 test` line.

use super::registry::UNDER_LIBTEST;
use std::sync::atomic::Ordering;

/// Called before `main` by the `.init_array` entry of `test_support!()`: only stores flags and
/// makes two `membarrier` calls (no allocation, no I/O), since the Rust runtime is not set up yet.
#[doc(hidden)]
pub extern "C" fn __mark_libtest() {
    UNDER_LIBTEST.store(true, Ordering::Relaxed);
    // Before `main`, so still single-threaded: registering is cheap (see `init`).
    crate::sys::membarrier::register();
}

/// Makes [`Process::spawn`](crate::Process::spawn) work in a `cargo test` integration test file.
/// Invoke it once at the root of the file (not inside a module):
///
/// ```ignore
/// multiproc::test_support!();
///
/// #[test]
/// fn doubles() {
///     let p = multiproc::Process::spawn(|n: u32| n * 2, 21).unwrap();
///     assert_eq!(p.join().unwrap(), 42);
/// }
/// ```
///
/// It defines the test `__multiproc_child`, which calls [`init`](crate::init) (a spawned child
/// runs its entry there; in the parent it passes at once), and registers a constructor that
/// tells the launcher this binary runs under libtest.
#[macro_export]
macro_rules! test_support {
    () => {
        #[test]
        fn __multiproc_child() {
            $crate::init();
        }

        #[used]
        #[unsafe(link_section = ".init_array")]
        static __MULTIPROC_UNDER_LIBTEST: extern "C" fn() = $crate::process::__mark_libtest;
    };
}
