//! Shared harness of the benches: shared pages, forked children, a watchdog, raw futex calls,
//! and the bench `main`.
//!
//! Cross-process benches start one child per benchmark with `fork()` (the bench process is
//! single-threaded at that point) and measure with criterion's `iter_custom`: the child runs a
//! responder loop for the whole benchmark and the parent times `iters` operations against it.
//!
//! Never hangs: every `iter_custom` call arms [`Watchdog`] (SIGALRM kills the bench process with
//! a message if one call takes longer than [`WATCHDOG_SECS`]), and every child asks the kernel
//! for SIGKILL when the bench process dies (`PR_SET_PDEATHSIG`), so a stuck peer cannot outlive it.
//!
//! Not every bench file uses every helper.
#![allow(dead_code)]

pub mod ops;
pub mod pingpong;

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Seconds one `iter_custom` call (or one setup step) may take before the watchdog kills the run.
pub const WATCHDOG_SECS: u32 = 30;

/// Environment variable that makes a bench binary exit at once (the re-exec baseline).
pub const EXIT_AT_ONCE_VAR: &str = "MULTIPROC_BENCH_EXIT_AT_ONCE";

/// Size of a cache line (padding of shared indices).
pub const CACHE_LINE: usize = 128;

/// The `main` of every bench binary: answers the re-exec baseline, initialises the crate (so
/// `Process::spawn` children dispatch), installs the watchdog, then runs the given groups.
pub fn bench_main(groups: &[fn(&mut criterion::Criterion)]) {
    start();
    let mut c = criterion::Criterion::default().configure_from_args();
    for g in groups {
        g(&mut c);
    }
    c.final_summary();
}

/// The start of every bench `main`: answers the re-exec baseline, initialises the crate (so
/// `Process::spawn` children dispatch) and installs the watchdog.
pub fn start() {
    if std::env::var_os(EXIT_AT_ONCE_VAR).is_some() {
        // The bare re-exec baseline: the child does nothing at all.
        // SAFETY: `_exit` ends the process at once; nothing needs to run.
        unsafe { libc::_exit(0) };
    }
    // A child started by `Process::spawn` runs its entry here and exits.
    multiproc::init();
    Watchdog::install();
}

/// Kills the bench process if one measured step takes too long (SIGALRM with a message).
pub struct Watchdog;

impl Watchdog {
    /// Installs the SIGALRM handler (once, from `bench_main`).
    pub fn install() {
        extern "C" fn on_alarm(_: libc::c_int) {
            const MSG: &[u8] = b"\nbench watchdog: a step took too long (peer hung?), aborting\n";
            // SAFETY: `write` and `_exit` are async-signal-safe; MSG is a valid buffer.
            unsafe {
                libc::write(2, MSG.as_ptr().cast(), MSG.len());
                libc::_exit(3);
            }
        }
        // SAFETY: installing a handler that only calls async-signal-safe functions.
        unsafe {
            libc::signal(
                libc::SIGALRM,
                on_alarm as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }

    /// (Re)arms the watchdog: the process dies unless `arm` or `disarm` is called again within
    /// [`WATCHDOG_SECS`]. Call at the top of each `iter_custom` closure.
    pub fn arm() {
        // SAFETY: `alarm` has no memory-safety preconditions.
        unsafe { libc::alarm(WATCHDOG_SECS) };
    }

    /// Disarms the watchdog.
    pub fn disarm() {
        // SAFETY: `alarm` has no memory-safety preconditions.
        unsafe { libc::alarm(0) };
    }
}

/// A page-aligned `MAP_SHARED | MAP_ANONYMOUS` mapping, shared with children forked after it.
pub struct ShmPages {
    ptr: NonNull<u8>,
    len: usize,
}

impl ShmPages {
    /// Maps `len` zeroed bytes (rounded up to pages by the kernel), pre-faulted.
    pub fn new(len: usize) -> ShmPages {
        // SAFETY: anonymous shared mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        assert!(
            p != libc::MAP_FAILED,
            "mmap: {}",
            io::Error::last_os_error()
        );
        ShmPages {
            ptr: NonNull::new(p.cast()).expect("mmap returned null"),
            len,
        }
    }

    /// Base address.
    pub fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    /// A reference to a `T` at `offset` (zero-initialised memory must be a valid `T`, e.g.
    /// atomics or plain integers; the offset must be aligned for `T`).
    pub fn at<T>(&self, offset: usize) -> &T {
        assert!(offset + size_of::<T>() <= self.len);
        assert_eq!(offset % align_of::<T>(), 0);
        // SAFETY: in bounds and aligned (checked above); the mapping lives as long as `self`;
        // callers only use types for which all-zero bytes are valid and that are shared safely
        // (atomics, or data guarded by a process-shared lock).
        unsafe { &*self.ptr().add(offset).cast::<T>() }
    }
}

impl Drop for ShmPages {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `new` mapped; no reference outlives `self`.
        unsafe { libc::munmap(self.ptr().cast(), self.len) };
    }
}

// SAFETY: the mapping is plain shared memory; synchronisation is up to the users of `at`.
unsafe impl Send for ShmPages {}
// SAFETY: as above.
unsafe impl Sync for ShmPages {}

/// A forked child running a responder loop. Dropping it stops it: [`Child::finish`] semantics
/// (wait up to a grace period, then SIGKILL) and reaps it.
pub struct Child {
    pid: libc::pid_t,
    reaped: bool,
}

impl Child {
    /// Forks a child that runs `body` then exits with status 0 (101 if `body` panics). The
    /// child dies with SIGKILL if the bench process dies. Call only while the bench process
    /// is single-threaded (no live threads of ours).
    pub fn fork(body: impl FnOnce()) -> Child {
        Watchdog::arm();
        // SAFETY: the bench process is single-threaded here (see above), so the child may run
        // ordinary code.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: prctl/getppid/alarm have no memory-safety preconditions.
            unsafe {
                libc::alarm(0);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            }
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
            // SAFETY: `_exit` skips atexit handlers and buffers inherited from the parent.
            unsafe { libc::_exit(if r.is_ok() { 0 } else { 101 }) };
        }
        Child { pid, reaped: false }
    }

    /// The child's pid.
    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// Waits for the child to exit by itself for up to `grace`, then kills it; reaps it.
    /// Returns true if it exited by itself with status 0.
    pub fn finish(mut self, grace: Duration) -> bool {
        self.finish_inner(grace)
    }

    fn finish_inner(&mut self, grace: Duration) -> bool {
        if self.reaped {
            return true;
        }
        self.reaped = true;
        Watchdog::disarm();
        let deadline = Instant::now() + grace;
        let mut status = 0;
        loop {
            // SAFETY: waiting for our own child; `status` is a valid out pointer.
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if r == self.pid {
                return libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
            }
            if r < 0 || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        // SAFETY: killing and reaping our own child.
        unsafe {
            libc::kill(self.pid, libc::SIGKILL);
            libc::waitpid(self.pid, &mut status, 0);
        }
        false
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.finish_inner(Duration::from_millis(500));
    }
}

/// A unique name for a named segment of this bench process.
pub fn unique_name(tag: &str) -> String {
    // SAFETY: getpid has no preconditions.
    let pid = unsafe { libc::getpid() };
    format!("mpbench-{tag}-{pid}")
}

/// Raw shared futex wait (no `FUTEX_PRIVATE_FLAG`): sleeps while `*word == expected`.
pub fn futex_wait(word: &AtomicU32, expected: u32) {
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            std::ptr::null::<libc::timespec>(),
        );
    }
}

/// Raw shared futex wake of up to `n` waiters.
pub fn futex_wake(word: &AtomicU32, n: i32) {
    // SAFETY: `word` is a valid, aligned u32 for the duration of the call.
    unsafe {
        libc::syscall(libc::SYS_futex, word.as_ptr(), libc::FUTEX_WAKE, n);
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: comparable between processes (unlike `Instant`).
pub fn mono_ns() -> u64 {
    // SAFETY: an all-zero timespec is valid; clock_gettime only writes it.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: `ts` is a valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Criterion options that take a value (so the next argument is not a filter).
const VALUED_OPTIONS: [&str; 18] = [
    "-s",
    "--save-baseline",
    "-b",
    "--baseline",
    "--baseline-lenient",
    "--load-baseline",
    "-c",
    "--color",
    "--output-format",
    "--plotting-backend",
    "--sample-size",
    "--warm-up-time",
    "--measurement-time",
    "--nresamples",
    "--noise-threshold",
    "--confidence-level",
    "--significance-level",
    "--profile-time",
];

/// Whether a measurement outside criterion named `name` should run under this command line:
/// not with `--list`, and only if there is no filter or a filter is a substring of `name` (or
/// `name` of it). Criterion's filters are regexes; plain words behave the same here.
pub fn selected(name: &str) -> bool {
    let mut args = std::env::args().skip(1);
    let mut filters = Vec::new();
    while let Some(a) = args.next() {
        if a == "--list" {
            return false;
        }
        if a.starts_with('-') {
            if !a.contains('=') && VALUED_OPTIONS.contains(&a.as_str()) {
                args.next();
            }
            continue;
        }
        filters.push(a);
    }
    filters.is_empty()
        || filters
            .iter()
            .any(|f| name.contains(f.as_str()) || f.contains(name))
}

/// Whether criterion runs in test mode (`--test`: each bench once, as a smoke test).
pub fn test_mode() -> bool {
    std::env::args().any(|a| a == "--test")
}

/// Where the bench report's extra files go: `<target>/bench-report` (criterion's target dir:
/// `CARGO_TARGET_DIR`, else three levels above this executable, `target/release/deps/..`).
pub fn report_dir() -> std::path::PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.parent()?.to_path_buf())
        })
        .unwrap_or_else(|| "target".into());
    target.join("bench-report")
}

/// Fruitless rounds a [`Spin`] spins before it starts yielding the CPU.
pub const SPIN_LIMIT: u32 = 2000;

/// The busy-wait policy of every busy-polling loop in the benches (ours, baselines and peers
/// alike): spin with `spin_loop` hints, and after [`SPIN_LIMIT`] fruitless rounds yield the CPU
/// each round, so that on an oversubscribed machine a descheduled peer gets to run instead of
/// the spinner burning a whole time slice. With a core each, the peer answers long before the
/// limit and no yield happens.
pub struct Spin(u32);

impl Spin {
    /// A fresh waiter.
    #[inline]
    pub fn new() -> Spin {
        Spin(0)
    }

    /// One fruitless round.
    #[inline]
    pub fn wait(&mut self) {
        if self.0 < SPIN_LIMIT {
            self.0 += 1;
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }

    /// Progress was made: spin again before yielding.
    #[inline]
    pub fn reset(&mut self) {
        self.0 = 0;
    }
}

/// Busy-waits (with [`Spin`]) until `cond` holds.
#[inline]
pub fn spin_until(mut cond: impl FnMut() -> bool) {
    let mut spin = Spin::new();
    while !cond() {
        spin.wait();
    }
}

/// An anonymous pipe `(read, write)` as raw fds.
pub fn pipe() -> (libc::c_int, libc::c_int) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid out array of two ints.
    let r = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(r, 0, "pipe2: {}", io::Error::last_os_error());
    (fds[0], fds[1])
}

/// Closes a raw fd.
pub fn close(fd: libc::c_int) {
    // SAFETY: the caller owns `fd` and does not use it afterwards.
    unsafe { libc::close(fd) };
}

/// Writes all of `buf` to `fd`. Returns false on error (peer gone).
pub fn write_all(fd: libc::c_int, mut buf: &[u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: `buf` is a valid readable buffer of its length.
        let n = unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) };
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            return false;
        }
        buf = &buf[n as usize..];
    }
    true
}

/// Fills all of `buf` from `fd`. Returns false on end of file or error.
pub fn read_exact(fd: libc::c_int, mut buf: &mut [u8]) -> bool {
    while !buf.is_empty() {
        // SAFETY: `buf` is a valid writable buffer of its length.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            return false;
        }
        buf = &mut std::mem::take(&mut buf)[n as usize..];
    }
    true
}

/// `iter_custom` body helper: arms the watchdog, times `f(iters)`.
#[inline]
pub fn timed(iters: u64, f: impl FnOnce(u64)) -> Duration {
    Watchdog::arm();
    let t = Instant::now();
    f(iters);
    t.elapsed()
}

/// Sets an atomic stop word and wakes futex waiters on it.
pub fn set_and_wake(word: &AtomicU32, v: u32) {
    word.store(v, Ordering::SeqCst);
    futex_wake(word, i32::MAX);
}

/// Control words of a contended run (see [`contended`]), each on its own cache line.
const CTL_GO: usize = 0;
const CTL_N: usize = CACHE_LINE;
const CTL_DONE: usize = 2 * CACHE_LINE;
/// `go` value telling the children to leave.
const CTL_STOP: u64 = u64::MAX;

/// Two parties hammer the same lock (see [`contended`]).
pub fn contended_2proc(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: &str,
    incr: impl Fn(),
    count: impl Fn() -> u64,
) {
    contended(g, id, None, 2, incr, count);
}

/// `procs` processes (the parent and `procs - 1` forked children) hammer the same lock; the
/// benchmark id is `name` or `name/<param>`. Each
/// `iter_custom` call tells every child to run `incr` `iters / procs` times while the parent
/// runs it for the rest, and the clock stops when all are done. One iteration = one increment
/// (`iters` in total). `count` reads the protected counter: the run checks it grew by exactly
/// `iters` (mutual exclusion held).
pub fn contended(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    param: Option<usize>,
    procs: usize,
    incr: impl Fn(),
    count: impl Fn() -> u64,
) {
    use std::sync::atomic::AtomicU64;
    assert!(procs >= 1);
    let ctl = ShmPages::new(4096);
    let go: &AtomicU64 = ctl.at(CTL_GO);
    let n: &AtomicU64 = ctl.at(CTL_N);
    let done: &AtomicU64 = ctl.at(CTL_DONE);
    let children: Vec<Child> = (1..procs)
        .map(|_| {
            Child::fork(|| {
                let mut seen = 0;
                loop {
                    let mut spin = Spin::new();
                    let gen_now = loop {
                        let v = go.load(Ordering::Acquire);
                        if v != seen {
                            break v;
                        }
                        spin.wait();
                    };
                    if gen_now == CTL_STOP {
                        break;
                    }
                    seen = gen_now;
                    for _ in 0..n.load(Ordering::Acquire) {
                        incr();
                    }
                    done.fetch_add(1, Ordering::AcqRel);
                }
            })
        })
        .collect();
    let others = (procs - 1) as u64;
    let mut generation = 0u64;
    let (id, label) = match param {
        Some(p) => (criterion::BenchmarkId::new(name, p), format!("{name}/{p}")),
        None => (
            criterion::BenchmarkId::from_parameter(name),
            name.to_string(),
        ),
    };
    g.bench_function(id, |b| {
        b.iter_custom(|iters| {
            let before = count();
            let each = iters / procs as u64;
            let t = timed(iters, |iters| {
                n.store(each, Ordering::Relaxed);
                generation += 1;
                go.store(generation, Ordering::Release);
                for _ in 0..iters - each * others {
                    incr();
                }
                spin_until(|| done.load(Ordering::Acquire) == generation * others);
            });
            assert_eq!(
                count() - before,
                iters,
                "{label}: lost increments (no mutual exclusion)"
            );
            t
        })
    });
    go.store(CTL_STOP, Ordering::Release);
    for child in children {
        assert!(
            child.finish(pingpong::GRACE),
            "{label}: contending child failed"
        );
    }
}

/// A glibc `pthread_mutex_t` with `PTHREAD_PROCESS_SHARED` and `PTHREAD_MUTEX_ROBUST`, placed in
/// shared memory (the robust fallback design of DESIGN.md and the peer of our mutex).
pub struct PthreadRobustMutex {
    ptr: *mut libc::pthread_mutex_t,
}

impl PthreadRobustMutex {
    /// Initialises the mutex at `ptr` (suitably aligned, `size_of::<pthread_mutex_t>()` bytes of
    /// shared memory that outlive the returned value).
    pub fn init(ptr: *mut u8) -> PthreadRobustMutex {
        let ptr = ptr.cast::<libc::pthread_mutex_t>();
        assert_eq!(ptr as usize % align_of::<libc::pthread_mutex_t>(), 0);
        // SAFETY: `attr` is initialised by pthread_mutexattr_init before use; `ptr` points to
        // writable memory of the right size and alignment (caller contract, checked above).
        unsafe {
            let mut attr: libc::pthread_mutexattr_t = std::mem::zeroed();
            assert_eq!(libc::pthread_mutexattr_init(&mut attr), 0);
            assert_eq!(
                libc::pthread_mutexattr_setpshared(&mut attr, libc::PTHREAD_PROCESS_SHARED),
                0
            );
            assert_eq!(
                libc::pthread_mutexattr_setrobust(&mut attr, libc::PTHREAD_MUTEX_ROBUST),
                0
            );
            assert_eq!(libc::pthread_mutex_init(ptr, &attr), 0);
            libc::pthread_mutexattr_destroy(&mut attr);
        }
        PthreadRobustMutex { ptr }
    }

    /// Locks (making the state consistent if a previous owner died).
    #[inline]
    pub fn lock(&self) {
        // SAFETY: `ptr` is an initialised process-shared mutex (see `init`).
        let r = unsafe { libc::pthread_mutex_lock(self.ptr) };
        if r == libc::EOWNERDEAD {
            // SAFETY: as above; we own it now.
            unsafe { libc::pthread_mutex_consistent(self.ptr) };
        } else {
            debug_assert_eq!(r, 0);
        }
    }

    /// Locks and says whether the previous owner had died holding it (`EOWNERDEAD`, made
    /// consistent here).
    pub fn lock_owner_died(&self) -> bool {
        // SAFETY: `ptr` is an initialised process-shared mutex (see `init`).
        let r = unsafe { libc::pthread_mutex_lock(self.ptr) };
        if r == libc::EOWNERDEAD {
            // SAFETY: as above; we own it now.
            unsafe { libc::pthread_mutex_consistent(self.ptr) };
            return true;
        }
        assert_eq!(r, 0, "pthread_mutex_lock");
        false
    }

    /// Unlocks.
    #[inline]
    pub fn unlock(&self) {
        // SAFETY: `ptr` is an initialised mutex held by this thread.
        unsafe { libc::pthread_mutex_unlock(self.ptr) };
    }
}

/// The shape of every cross-process round-trip bench, for adding one in a few lines: forks a
/// child running `responder` (its answering loop, which must return once `stop` has run), times
/// `round_trip` once per iteration, then calls `stop` and reaps the child (asserting it exited
/// cleanly).
pub fn roundtrip(
    g: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: &str,
    responder: impl FnOnce(),
    mut round_trip: impl FnMut(),
    stop: impl FnOnce(),
) {
    let child = Child::fork(responder);
    g.bench_function(id, |b| {
        b.iter_custom(|iters| {
            timed(iters, |n| {
                for _ in 0..n {
                    round_trip();
                }
            })
        })
    });
    Watchdog::arm();
    stop();
    assert!(
        child.finish(pingpong::GRACE),
        "{id}: responder did not exit cleanly"
    );
}
