//! Crash injection for tests: named points in each primitive's protocol where a test can make
//! the process die (`_exit` or `SIGKILL`), to prove that survivors recover from a peer that
//! stops at that exact step.
//!
//! Compiled in only with the `crash-injection` feature (the crate's own tests enable it through
//! a dev-dependency on itself) in builds with debug assertions (`cargo test`); otherwise [`point`]
//! is an empty inline function, so release builds (benchmarks, `cargo test --release`) measure
//! exactly what users get, and [`arm`] panics to say so.

/// How an armed crash point kills the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashAction {
    /// `_exit(77)`: no destructors, no unwinding, like a process that calls `exit` mid-protocol.
    Exit,
    /// `SIGKILL` to itself: as abrupt as `kill -9`.
    Kill,
}

#[cfg(all(feature = "crash-injection", debug_assertions))]
mod armed {
    use super::CrashAction;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};

    static ARMED: AtomicBool = AtomicBool::new(false);
    static TARGET: Mutex<Option<(String, u64, CrashAction)>> = Mutex::new(None);

    /// Arms the point `name` to fire on its `nth` hit (1 = first) in this process.
    pub fn arm(name: &str, nth: u64, action: CrashAction) {
        *TARGET.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((name.to_owned(), nth.max(1), action));
        ARMED.store(true, Ordering::SeqCst);
    }

    /// A crash point: does nothing unless this is the armed point's nth hit. The disarmed path is
    /// one relaxed load and a branch, inlined, so measurements of builds with the feature stay
    /// close to builds without it.
    #[inline(always)]
    pub fn point(name: &'static str) {
        if ARMED.load(Ordering::Relaxed) {
            hit(name);
        }
    }

    #[cold]
    #[inline(never)]
    fn hit(name: &'static str) {
        let mut target = TARGET.lock().unwrap_or_else(|e| e.into_inner());
        let Some((armed, remaining, action)) = target.as_mut() else {
            return;
        };
        if armed != name {
            return;
        }
        *remaining -= 1;
        if *remaining == 0 {
            crate::sys::process::die_now(*action == CrashAction::Kill);
        }
    }
}

#[cfg(all(feature = "crash-injection", debug_assertions))]
pub use armed::{arm, point};

/// Whether crash points are compiled in.
pub const ENABLED: bool = cfg!(all(feature = "crash-injection", debug_assertions));

/// A crash point: compiled out (see the module docs).
#[cfg(not(all(feature = "crash-injection", debug_assertions)))]
#[inline(always)]
pub fn point(_name: &'static str) {}

/// Without crash points compiled in, arming one could never fire: say so instead of letting a
/// crash test pass vacuously.
#[cfg(not(all(feature = "crash-injection", debug_assertions)))]
pub fn arm(name: &str, _nth: u64, _action: CrashAction) {
    panic!(
        "crash point {name:?} cannot fire: crash points need the crash-injection feature and a debug build"
    );
}
