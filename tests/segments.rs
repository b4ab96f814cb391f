//! Typed segments opened in one process: sharing, type checks, and hostile contents.

use multiproc::{Array, Error, Segment, Shared, Value};
use std::sync::atomic::{AtomicU64, Ordering};

fn unique(tag: &str) -> String {
    use std::sync::atomic::AtomicUsize;
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "mp-seg-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

#[test]
fn named_value_is_shared_between_handles() {
    let name = unique("value");
    let created = Value::create(&name, 7u64).unwrap();
    let opened = Value::<u64>::open(&name).unwrap();
    opened.set(99).unwrap();
    assert_eq!(created.get().unwrap(), 99);
    assert_eq!(opened.name(), Some(name.as_str()));
}

#[test]
fn wrong_type_is_a_type_mismatch_naming_both_types() {
    let name = unique("mismatch");
    let _v = Value::create(&name, 7u64).unwrap();
    match Value::<u32>::open(&name) {
        Err(Error::TypeMismatch { expected, found }) => {
            assert_eq!(expected, "Value<u32>");
            assert_eq!(found, "Value<u64>");
        }
        other => panic!("expected TypeMismatch, got {other:?}"),
    }
    assert!(matches!(
        Array::<u64>::open(&name),
        Err(Error::TypeMismatch { .. })
    ));
    assert!(matches!(
        Shared::<AtomicU64>::open(&name),
        Err(Error::TypeMismatch { .. })
    ));
}

#[test]
fn garbage_segment_is_corrupted() {
    let name = unique("garbage");
    let raw = Segment::create(&name, 4096).unwrap();
    for i in 0..4096 {
        // SAFETY: the mapping is 4096 bytes and only this test uses it.
        unsafe { raw.as_ptr().add(i).write((i * 7 + 3) as u8) };
    }
    assert!(matches!(
        Value::<u64>::open(&name),
        Err(Error::Corrupted(_))
    ));
}

#[test]
fn segment_never_initialised_is_corrupted_after_the_init_timeout() {
    let name = unique("uninit");
    let _raw = Segment::create(&name, 4096).unwrap();
    let start = std::time::Instant::now();
    assert!(matches!(
        Value::<u64>::open(&name),
        Err(Error::Corrupted(_))
    ));
    assert!(start.elapsed() >= std::time::Duration::from_millis(900));
}

#[test]
fn truncated_segments_are_corrupted() {
    for keep in [0u64, 16, 200, 260] {
        let name = unique("trunc");
        let v = Array::create(&name, &[1u64; 1000]).unwrap();
        v.persist();
        drop(v);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(format!("/dev/shm/{name}"))
            .unwrap();
        file.set_len(keep).unwrap();
        let res = Array::<u64>::open(&name);
        Segment::unlink(&name).unwrap();
        assert!(
            matches!(res, Err(Error::Corrupted(_))),
            "kept {keep} bytes: {res:?}"
        );
    }
}

#[test]
fn missing_names_are_not_found() {
    assert!(matches!(
        Value::<u8>::open(&unique("missing")),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn array_round_trips_and_locks() {
    let a = Array::from_slice(&[1.0f64, 2.0, 3.0]).unwrap();
    assert_eq!(a.len(), 3);
    for x in a.lock().unwrap().iter_mut() {
        *x = -*x;
    }
    assert_eq!(a.to_vec().unwrap(), [-1.0, -2.0, -3.0]);
    a.copy_from_slice(&[4.0, 5.0, 6.0]).unwrap();
    assert_eq!(a.clone().to_vec().unwrap(), [4.0, 5.0, 6.0]);
    // A length mismatch is an error, not a panic, and writes nothing.
    assert!(matches!(
        a.copy_from_slice(&[7.0]),
        Err(Error::InvalidSize { .. })
    ));
    assert_eq!(a.to_vec().unwrap(), [4.0, 5.0, 6.0]);
    assert!(matches!(
        Array::<u8>::zeroed(0),
        Err(Error::InvalidSize { .. })
    ));
}

#[test]
fn named_array_keeps_the_creators_length() {
    let name = unique("array");
    let a = Array::create(&name, &[5u32; 17]).unwrap();
    let b = Array::<u32>::open_or_create(&name, &[0; 3]).unwrap();
    assert_eq!(b.len(), 17);
    assert_eq!(b.to_vec().unwrap(), a.to_vec().unwrap());
}

#[test]
fn open_or_create_races_settle_on_one_object() {
    let name = unique("race");
    let handles: Vec<_> = (0..8u64)
        .map(|i| {
            let name = name.clone();
            std::thread::spawn(move || Shared::open_or_create(&name, AtomicU64::new(i)).unwrap())
        })
        .collect();
    let shared: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    shared[0].fetch_add(100, Ordering::SeqCst);
    let seen: Vec<u64> = shared.iter().map(|s| s.load(Ordering::SeqCst)).collect();
    assert!(seen.iter().all(|&v| v == seen[0] && v >= 100), "{seen:?}");
}

#[test]
fn anonymous_objects_are_not_in_dev_shm() {
    // Other tests of this binary create named segments concurrently; ignore theirs.
    let foreign = || -> Vec<String> {
        let entries = std::fs::read_dir("/dev/shm").unwrap();
        let names = entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned());
        names.filter(|n| !n.starts_with("mp-seg-")).collect()
    };
    let before = foreign();
    let _v = Value::new(1u8).unwrap();
    let _a = Array::<u8>::zeroed(1 << 20).unwrap();
    assert_eq!(foreign(), before);
}

#[test]
fn mutated_headers_and_sizes_only_ever_give_errors() {
    // A valid object's bytes, then random corruption and random lengths: whatever opens must be
    // usable, whatever does not must be an error; never a panic, a hang or a fault.
    let name = unique("mutate");
    let v = Value::create(&name, 0x0123_4567_89ab_cdefu64).unwrap();
    let original = std::fs::read(format!("/dev/shm/{name}")).unwrap();
    drop(v);
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut opened, mut refused) = (0, 0);
    for round in 0..3000 {
        let mut bytes = original.clone();
        for _ in 0..(next() % 4) {
            let at = (next() % bytes.len() as u64) as usize;
            bytes[at] = next() as u8;
        }
        let len = match round % 4 {
            0 => original.len(),
            1 => (next() % 600) as usize,
            2 => 256 + (next() % 64) as usize,
            _ => 4097 + (next() % 5000) as usize,
        };
        for outcome in multiproc::shm::__fuzz::open_bytes(&bytes, len) {
            match outcome {
                Ok(()) => opened += 1,
                Err(_) => refused += 1,
            }
        }
    }
    assert!(
        opened > 0 && refused > 0,
        "opened {opened}, refused {refused}"
    );
}
