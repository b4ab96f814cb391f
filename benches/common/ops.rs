//! The operations the process-start and segment benches time (`segments.rs` with criterion,
//! `paired.rs` interleaved): ours and their baselines, each one start-and-wait or one
//! create-open-close.

use super::EXIT_AT_ONCE_VAR;

/// The segment size of the segment benches.
pub const SEGMENT_LEN: usize = 4096;

/// The child's entry of the process start benches: nothing at all.
pub fn trivial(_: ()) {}

/// `fork` + `_exit` + `waitpid`: the floor of every fork start method.
pub fn bare_fork() {
    // SAFETY: the bench process is single-threaded; the child only calls `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        // SAFETY: leaving the child at once.
        unsafe { libc::_exit(0) };
    }
    let mut status = 0;
    // SAFETY: reaping our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    assert!(libc::WIFEXITED(status));
}

/// A re-exec of this binary through `std::process::Command`; its `main` exits at once.
pub fn bare_reexec() {
    let status = std::process::Command::new("/proc/self/exe")
        .env(EXIT_AT_ONCE_VAR, "1")
        .status()
        .expect("re-exec");
    assert!(status.success());
}

/// `Process::spawn` + `join` of [`trivial`].
pub fn ours_spawn() {
    multiproc::Process::spawn(trivial, ())
        .expect("spawn")
        .join()
        .expect("join");
}

/// The fork start method + `join` of [`trivial`].
pub fn ours_fork() {
    // SAFETY: the bench process is single-threaded (criterion runs benches on this thread, the
    // watchdog is a signal handler, and no helper thread of ours is alive here); the child runs
    // `trivial`, which touches nothing.
    unsafe { multiproc::Process::builder().fork_spawn(trivial, ()) }
        .expect("fork_spawn")
        .join()
        .expect("join");
}

/// `Segment::create` + `Segment::open` + drop of `name`.
pub fn ours_segment(name: &str) {
    let created = multiproc::Segment::create(name, SEGMENT_LEN).expect("create");
    let opened = multiproc::Segment::open(name).expect("open");
    drop(opened);
    drop(created); // the owner unlinks
}

/// The `shared_memory` crate's create + open + drop of `name`.
pub fn shared_memory_segment(name: &str) {
    let created = shared_memory::ShmemConf::new()
        .size(SEGMENT_LEN)
        .os_id(name)
        .create()
        .expect("create");
    let opened = shared_memory::ShmemConf::new()
        .os_id(name)
        .open()
        .expect("open");
    drop(opened);
    drop(created); // the owner unlinks
}
