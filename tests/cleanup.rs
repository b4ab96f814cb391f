//! Stale-segment cleanup: creators killed at random points leave nothing behind once cleaned,
//! and cleanup never removes a persisted segment or one still in use.

mod common;

use common::{Rng, shm_exists, unique, watchdog};
use multiproc::shm::{remove_stale_segments, stale_segments};
use multiproc::{Array, Process, Value};
use std::time::Duration;

multiproc::test_support!();

/// Creates named objects under `prefix` as fast as it can, keeping them (never unlinking), until
/// it is killed.
fn create_forever(prefix: String) {
    for i in 0.. {
        let name = format!("{prefix}{}-{i}", std::process::id());
        if i % 2 == 0 {
            std::mem::forget(Value::create(&name, i as u64));
        } else {
            std::mem::forget(Array::create(&name, &[i as u8; 5000]));
        }
    }
}

fn leftovers(prefix: &str) -> Vec<String> {
    let entries = std::fs::read_dir("/dev/shm").unwrap();
    let names = entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
    names
        .filter(|n| n.starts_with(prefix) || (n.starts_with(".mp-tmp.") && n.contains(prefix)))
        .collect()
}

fn creators_killed(prefix: &str, count: usize, seed: u64) {
    let mut rng = Rng(seed);
    for _ in 0..count {
        let p = Process::spawn(create_forever, prefix.to_owned()).unwrap();
        std::thread::sleep(Duration::from_micros(rng.below(3000)));
        p.kill().unwrap();
        let _ = p.join();
    }
}

#[test]
fn cleanup_removes_everything_killed_creators_left() {
    let count = std::env::var("MULTIPROC_CLEANUP_CREATORS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    watchdog(600, move || {
        let prefix = format!("{}-", unique("stale"));
        creators_killed(&prefix, count, 0x5eed);
        let found = stale_segments(&prefix).unwrap();
        assert!(
            !found.is_empty(),
            "killed creators should have left segments behind"
        );
        remove_stale_segments(&prefix).unwrap();
        assert_eq!(leftovers(&prefix), Vec::<String>::new());
    });
}

fn hold(v: Value<u64>) {
    v.set(1).unwrap();
    std::thread::sleep(Duration::from_secs(30));
}

fn create_and_die((name, persist): (String, bool)) {
    let v = Value::create(&name, 0u64).unwrap();
    if persist {
        v.persist();
    }
    std::mem::forget(v);
    // SAFETY: raising SIGKILL on ourselves has no memory-safety preconditions.
    unsafe { libc::raise(libc::SIGKILL) };
}

#[test]
fn cleanup_keeps_persisted_and_in_use_segments() {
    watchdog(60, || {
        let prefix = format!("{}-", unique("keep"));
        let (persisted, in_use, stale) = (
            format!("{prefix}p"),
            format!("{prefix}u"),
            format!("{prefix}s"),
        );
        for (name, persist) in [(&persisted, true), (&in_use, false), (&stale, false)] {
            let _ = Process::spawn(create_and_die, (name.clone(), persist))
                .unwrap()
                .join();
        }
        // Another process still uses one of them.
        let user_handle = Value::<u64>::open(&in_use).unwrap();
        let user = Process::spawn(hold, user_handle.clone()).unwrap();
        drop(user_handle);
        while Value::<u64>::open(&in_use).unwrap().get().unwrap() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        let removed: Vec<String> = remove_stale_segments(&prefix)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(removed, vec![stale.clone()]);
        assert!(shm_exists(&persisted) && shm_exists(&in_use) && !shm_exists(&stale));
        user.kill().unwrap();
        let _ = user.join();
        let removed: Vec<String> = remove_stale_segments(&prefix)
            .unwrap()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(
            removed,
            vec![in_use.clone()],
            "no longer in use once its user died"
        );
        multiproc::Segment::unlink(&persisted).unwrap();
    });
}
