//! Shared segments across real child processes.

mod common;

use common::{is_dead, shm_exists, unique, watchdog};
use multiproc::{Array, Error, Process, Segment, Value};
use std::time::Duration;

multiproc::test_support!();

fn add_many((counter, times): (Value<u64>, u64)) {
    for _ in 0..times {
        *counter.lock().unwrap() += 1;
    }
}

#[test]
fn children_incrementing_a_value_under_its_lock_lose_nothing() {
    watchdog(60, || {
        let counter = Value::new(0u64).unwrap();
        let children: Vec<_> = (0..4)
            .map(|_| Process::spawn(add_many, (counter.clone(), 20_000)).unwrap())
            .collect();
        add_many((counter.clone(), 20_000));
        for c in children {
            c.join().unwrap();
        }
        assert_eq!(counter.get().unwrap(), 100_000);
    });
}

fn fill_part((array, part, parts): (Array<u32>, usize, usize)) {
    let mut guard = array.lock().unwrap();
    let chunk = guard.len() / parts;
    for (i, x) in guard[part * chunk..(part + 1) * chunk]
        .iter_mut()
        .enumerate()
    {
        *x = (part * chunk + i) as u32;
    }
}

#[test]
fn children_write_disjoint_parts_of_an_array() {
    watchdog(30, || {
        let array = Array::<u32>::zeroed(4 * 1024).unwrap();
        let children: Vec<_> = (0..4)
            .map(|p| Process::spawn(fill_part, (array.clone(), p, 4)).unwrap())
            .collect();
        for c in children {
            c.join().unwrap();
        }
        let expected: Vec<u32> = (0..4 * 1024).collect();
        assert_eq!(array.to_vec().unwrap(), expected);
    });
}

/// Opens `name` as a `Value<u64>` in the child and reports the error it got, as text.
fn open_and_report(name: String) -> String {
    match Value::<u64>::open(&name) {
        Ok(v) => format!("opened: {:?}", v.get().map_err(|_| ())),
        Err(Error::Corrupted(what)) => format!("corrupted: {what}"),
        Err(Error::TypeMismatch { expected, found }) => format!("mismatch: {expected} vs {found}"),
        Err(e) => format!("other: {e}"),
    }
}

#[test]
fn garbage_truncated_and_mistyped_segments_give_errors_in_a_child() {
    watchdog(30, || {
        // Garbage.
        let garbage = unique("garbage");
        let raw = Segment::create(&garbage, 8192).unwrap();
        for i in 0..8192 {
            // SAFETY: the mapping is 8192 bytes; only this test writes it.
            unsafe { raw.as_ptr().add(i).write((i as u8).wrapping_mul(31) ^ 0x5a) };
        }
        let report = Process::spawn(open_and_report, garbage.clone())
            .unwrap()
            .join()
            .unwrap();
        assert!(report.starts_with("corrupted"), "{report}");

        // Truncated after creation.
        let truncated = unique("trunc");
        let v = Value::create(&truncated, 1u64).unwrap();
        v.persist();
        drop(v);
        std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/dev/shm/{truncated}"))
            .unwrap()
            .set_len(100)
            .unwrap();
        let report = Process::spawn(open_and_report, truncated.clone())
            .unwrap()
            .join()
            .unwrap();
        Segment::unlink(&truncated).unwrap();
        assert!(report.starts_with("corrupted"), "{report}");

        // Wrong type.
        let mistyped = unique("mistyped");
        let _a = Array::create(&mistyped, &[1u8, 2, 3]).unwrap();
        let report = Process::spawn(open_and_report, mistyped)
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(report, "mismatch: Value<u64> vs Array<u8>");
    });
}

fn hold_forever((v, a): (Value<u64>, Array<u8>)) {
    v.set(1).unwrap();
    a.lock().unwrap()[0] = 1;
    std::thread::sleep(Duration::from_secs(60));
}

fn shm_names() -> Vec<String> {
    let entries = std::fs::read_dir("/dev/shm").unwrap();
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.retain(|n| !n.starts_with("mp-t-"));
    names.sort();
    names
}

#[test]
fn anonymous_objects_leave_nothing_in_dev_shm_even_when_children_are_killed() {
    watchdog(30, || {
        let before = shm_names();
        let v = Value::new(0u64).unwrap();
        let a = Array::<u8>::zeroed(1 << 16).unwrap();
        let children: Vec<_> = (0..3)
            .map(|_| Process::spawn(hold_forever, (v.clone(), a.clone())).unwrap())
            .collect();
        while v.get().unwrap() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        for c in children {
            c.kill().unwrap();
            assert!(matches!(c.join(), Err(Error::ChildSignaled { signal: 9 })));
        }
        drop((v, a));
        assert_eq!(shm_names(), before);
    });
}

fn open_then_exit((name, kill_self): (String, bool)) -> u64 {
    let v = Value::<u64>::open(&name).unwrap();
    let seen = v.get().unwrap();
    if kill_self {
        // SAFETY: raising SIGKILL on ourselves has no memory-safety preconditions.
        unsafe { libc::raise(libc::SIGKILL) };
    }
    seen
}

#[test]
fn named_segments_are_unlinked_by_their_owner_only() {
    watchdog(30, || {
        let name = unique("owner");
        let owner = Value::create(&name, 77u64).unwrap();
        assert_eq!(
            Process::spawn(open_then_exit, (name.clone(), false))
                .unwrap()
                .join()
                .unwrap(),
            77
        );
        assert!(
            shm_exists(&name),
            "an opener exiting normally must not unlink"
        );
        let killed = Process::spawn(open_then_exit, (name.clone(), true))
            .unwrap()
            .join();
        assert!(
            matches!(killed, Err(Error::ChildSignaled { signal: 9 })),
            "{killed:?}"
        );
        assert!(
            shm_exists(&name),
            "an opener killed with SIGKILL must not unlink"
        );
        // A named handle passed to a child is an opener there too.
        Process::spawn(|v: Value<u64>| v.set(5).unwrap(), owner.clone())
            .unwrap()
            .join()
            .unwrap();
        assert!(shm_exists(&name));
        assert_eq!(owner.get().unwrap(), 5);
        drop(owner);
        assert!(!shm_exists(&name), "the owner unlinks on drop");
    });
}

fn race_to_create(name: String) -> u64 {
    let v = Value::open_or_create(&name, 0u64).unwrap();
    *v.lock().unwrap() += 1;
    v.persist();
    multiproc::current_process().pid as u64
}

#[test]
fn processes_racing_open_or_create_share_one_value() {
    watchdog(30, || {
        let name = unique("race");
        let children: Vec<_> = (0..6)
            .map(|_| Process::spawn(race_to_create, name.clone()).unwrap())
            .collect();
        for c in children {
            let pid = c.pid();
            c.join().unwrap();
            assert!(is_dead(pid));
        }
        let v = Value::<u64>::open(&name).unwrap();
        assert_eq!(v.get().unwrap(), 6);
        Segment::unlink(&name).unwrap();
    });
}

fn produce((q, n): (multiproc::Queue<u64>, u64)) {
    for i in 0..n {
        q.push(i).unwrap();
    }
}

#[test]
fn a_queue_carries_values_from_a_child() {
    watchdog(30, || {
        let q = multiproc::Queue::<u64>::new(64).unwrap();
        let child = Process::spawn(produce, (q.clone(), 10_000)).unwrap();
        let got: Vec<u64> = (0..10_000).map(|_| q.pop().unwrap()).collect();
        child.join().unwrap();
        assert_eq!(got, (0..10_000).collect::<Vec<_>>());
        assert!(matches!(
            multiproc::Queue::<u32>::open("mp-no-such-queue"),
            Err(Error::NotFound { .. })
        ));
    });
}

/// Takes the array's lock, scribbles half of it, and dies holding the lock.
fn die_mid_write(a: Array<u32>) {
    let mut guard = a.lock().unwrap();
    guard[0] = 0xdead;
    // SAFETY: raising SIGKILL on ourselves has no memory-safety preconditions.
    unsafe { libc::raise(libc::SIGKILL) };
}

#[test]
fn copy_from_slice_repairs_an_array_whose_writer_died() {
    watchdog(30, || {
        let a = Array::from_slice(&[1u32, 2, 3, 4]).unwrap();
        let child = Process::spawn(die_mid_write, a.clone()).unwrap();
        assert!(matches!(child.join(), Err(Error::ChildSignaled { .. })));
        // Every element is rewritten, so nothing half-updated remains: Ok, and consistent.
        a.copy_from_slice(&[5, 6, 7, 8]).unwrap();
        assert_eq!(a.lock().unwrap().to_vec(), [5, 6, 7, 8]);
    });
}
