//! Lifecycle logging, Python's `multiprocessing.log_to_stderr()`.
//!
//! The crate reports what happens to processes and shared objects through the [`log`] facade
//! (target `multiproc`): a child started, ran its entry, exited (with its status), was joined,
//! terminated or killed; a lock's owner was found dead; a stale segment was removed. Nothing is
//! printed unless the program installs a logger: its own (`env_logger`, `tracing-log`, ...) or
//! the one-call [`log_to_stderr`], which prints `[LEVEL/ProcessName] message` lines to stderr, as
//! Python's does, and is passed on to children started with [`Process::spawn`](crate::Process)
//! (forked children inherit it anyway).
//!
//! ```no_run
//! fn main() -> Result<(), multiproc::Error> {
//!     multiproc::init();
//!     multiproc::log_to_stderr(log::LevelFilter::Info);
//!     multiproc::Process::builder().name("worker").spawn(|(): ()| (), ())?.join()?;
//!     // [INFO/MainProcess] started worker (pid 4242)
//!     // [INFO/worker] child process calling its entry
//!     // [INFO/worker] process exiting with exitcode 0
//!     // [INFO/MainProcess] worker (pid 4242) exited with exitcode 0
//!     Ok(())
//! }
//! ```

use log::{LevelFilter, Log, Metadata, Record};
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// The environment variable through which a spawned child learns the stderr logger's level.
pub(crate) const ENV: &str = "MULTIPROC_LOG";

/// Set once [`log_to_stderr`] installed [`StderrLogger`] in this process.
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// Prints every record as `[LEVEL/ProcessName] message` on stderr.
struct StderrLogger;

impl Log for StderrLogger {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let name = crate::current_process().name;
        // One write of the whole line, so lines of concurrent processes do not interleave; a
        // closed or full stderr is not worth failing for.
        let line = format!("[{}/{name}] {}\n", record.level(), record.args());
        let _ = std::io::stderr().lock().write_all(line.as_bytes());
    }

    fn flush(&self) {
        let _ = std::io::stderr().flush();
    }
}

/// Prints this crate's lifecycle records (and every other `log` record) at `level` and above to
/// stderr as `[LEVEL/ProcessName] message`; children spawned afterwards do the same. Returns
/// false, changing nothing, if the program already installed another logger.
pub fn log_to_stderr(level: LevelFilter) -> bool {
    if log::set_logger(&StderrLogger).is_err() && !INSTALLED.load(Ordering::Relaxed) {
        return false;
    }
    INSTALLED.store(true, Ordering::Relaxed);
    log::set_max_level(level);
    true
}

/// The `KEY=value` a spawned child gets so that it logs like its parent, if [`log_to_stderr`]
/// was called here.
pub(crate) fn child_env() -> Option<String> {
    INSTALLED
        .load(Ordering::Relaxed)
        .then(|| format!("{ENV}={}", log::max_level()))
}

/// In `init()`: installs the stderr logger if the parent passed one on.
pub(crate) fn inherit() {
    if let Some(level) =
        std::env::var_os(ENV).and_then(|v| v.to_str().and_then(|v| v.parse::<LevelFilter>().ok()))
    {
        log_to_stderr(level);
    }
}
