//! Crash injection for tests: named points in each primitive's protocol where a test can make
//! the process die (`_exit` or `SIGKILL`), to prove that survivors recover from a peer that
//! stops at that exact step.
//!
//! Compiled in only with the `crash-injection` feature (the crate's own tests enable it through
//! a dev-dependency on itself); otherwise [`point`] is an empty inline function.

/// How an armed crash point kills the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashAction {
    /// `_exit(77)`: no destructors, no unwinding, like a process that calls `exit` mid-protocol.
    Exit,
    /// `SIGKILL` to itself: as abrupt as `kill -9`.
    Kill,
}

#[cfg(feature = "crash-injection")]
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

    /// A crash point: does nothing unless this is the armed point's nth hit.
    #[inline]
    pub fn point(name: &'static str) {
        if !ARMED.load(Ordering::Relaxed) {
            return;
        }
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

#[cfg(feature = "crash-injection")]
pub use armed::{arm, point};

/// A crash point: compiled out without the `crash-injection` feature.
#[cfg(not(feature = "crash-injection"))]
#[inline(always)]
pub fn point(_name: &'static str) {}
