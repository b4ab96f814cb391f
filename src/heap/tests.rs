use super::*;
use crate::sync::Mutex as ShmMutex;
use std::sync::atomic::AtomicU64;

#[test]
fn alloc_free_reuse_and_stats() {
    let heap = Heap::new(1 << 20).unwrap();
    let s0 = heap.stats().unwrap();
    assert_eq!((s0.used, s0.objects), (0, 0));
    let a = heap.alloc(7u64).unwrap();
    let b = heap.alloc_slice(&[1u32, 2, 3]).unwrap();
    assert_eq!(*a, 7);
    assert_eq!(&*b, &[1, 2, 3]);
    let s1 = heap.stats().unwrap();
    assert_eq!(s1.objects, 2);
    assert_eq!(s1.used, 128);
    heap.verify().unwrap();
    let off = a.offset();
    drop(a);
    assert_eq!(heap.stats().unwrap().objects, 1);
    let c = heap.alloc(9u64).unwrap();
    assert_eq!(c.offset(), off, "a freed block of the same class is reused");
    drop((b, c));
    let s2 = heap.stats().unwrap();
    assert_eq!((s2.used, s2.objects), (0, 0));
    heap.verify().unwrap();
}

#[test]
fn full_is_an_error_and_the_heap_stays_usable() {
    let heap = Heap::new(64 << 10).unwrap();
    let mut held = Vec::new();
    let err = loop {
        match heap.alloc_zeroed_slice::<u8>(4000) {
            Ok(b) => held.push(b),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, Error::HeapFull { requested: 4000 }),
        "{err:?}"
    );
    assert!(!held.is_empty());
    assert!(matches!(
        heap.alloc_zeroed_slice::<u8>(1 << 30),
        Err(Error::HeapFull { .. })
    ));
    held.pop();
    heap.alloc_zeroed_slice::<u8>(4000).unwrap();
    heap.verify().unwrap();
}

#[test]
fn too_small_or_misaligned_is_a_clear_error() {
    assert!(matches!(Heap::new(100), Err(Error::InvalidSize { .. })));
    #[derive(Clone, Copy)]
    #[repr(C, align(64))]
    struct Big([u8; 64]);
    // SAFETY: a byte array with no padding is Zeroable and Pod.
    unsafe impl bytemuck::Zeroable for Big {}
    // SAFETY: as above.
    unsafe impl bytemuck::Pod for Big {}
    let heap = Heap::new(1 << 20).unwrap();
    assert!(matches!(
        heap.alloc(Big([0; 64])),
        Err(Error::InvalidSize { .. })
    ));
}

#[test]
fn large_blocks_come_back_zeroed_after_a_punch() {
    let heap = Heap::new(8 << 20).unwrap();
    let before = heap.alloc_slice(&[0x11u8; 8000]).unwrap();
    let mut b = heap.alloc_zeroed_slice::<u8>(1 << 20).unwrap();
    let after = heap.alloc_slice(&[0x22u8; 8000]).unwrap();
    b.fill(0xab);
    let off = b.offset();
    drop(b);
    // The punched range is exactly inside the freed block: the neighbours keep their bytes.
    assert!(before.iter().all(|&x| x == 0x11) && after.iter().all(|&x| x == 0x22));
    // The block goes back to its free list with its pages punched out: reading them gives 0.
    let b = heap.alloc_slice(&[0u8; 0]).unwrap();
    drop(b);
    // Same class as `b`: its block again, from the free list, not written by the allocation.
    let c = HeapBox::<[u8]>::with_bytes(&heap, &[], 1 << 20).unwrap();
    assert_eq!(c.offset(), off);
    assert!(c[4096..].iter().all(|&x| x == 0));
    heap.verify().unwrap();
}

#[test]
fn named_objects_are_found_and_type_checked() {
    let heap = Heap::new(1 << 20).unwrap();
    let c = heap
        .find_or_construct("counter", || AtomicU64::new(5))
        .unwrap();
    c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let again = heap
        .find_or_construct("counter", || AtomicU64::new(100))
        .unwrap();
    assert_eq!(again.load(std::sync::atomic::Ordering::Relaxed), 6);
    let found = heap.find::<AtomicU64>("counter").unwrap();
    assert_eq!(found.load(std::sync::atomic::Ordering::Relaxed), 6);
    assert!(matches!(
        heap.find::<u32>("counter"),
        Err(Error::TypeMismatch { .. })
    ));
    assert!(matches!(
        heap.find::<u64>("nope"),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        heap.find::<u64>(""),
        Err(Error::InvalidName { .. })
    ));
    let m = heap.find_or_construct("m", || ShmMutex::new(1u64)).unwrap();
    *m.lock().unwrap() += 1;
    assert_eq!(*heap.find::<ShmMutex<u64>>("m").unwrap().lock().unwrap(), 2);
    heap.verify().unwrap();
}

#[test]
fn shared_handles_count_references_and_free_on_last_drop() {
    let heap = Heap::new(1 << 20).unwrap();
    let rc = heap
        .alloc_slice(&[5u64; 100])
        .unwrap()
        .into_shared()
        .unwrap();
    let rc2 = rc.clone();
    assert_eq!(heap.stats().unwrap().objects, 1);
    let bytes = postcard::to_allocvec(&rc).unwrap();
    drop(rc);
    let decoded: HeapRc<[u64]> = postcard::from_bytes(&bytes).unwrap();
    assert_eq!(decoded.offset(), rc2.offset());
    assert_eq!(decoded.len(), 100);
    drop(rc2);
    assert_eq!(
        heap.stats().unwrap().objects,
        1,
        "the decoded handle still holds it"
    );
    assert!(
        postcard::from_bytes::<HeapRc<[u32]>>(&postcard::to_allocvec(&decoded).unwrap()).is_err()
    );
    drop(decoded);
    // The failed decode above left one reference in flight: the block stays (documented leak).
    assert_eq!(heap.stats().unwrap().objects, 1);
    let rc = heap.alloc(1u8).unwrap().into_shared().unwrap();
    let bytes = postcard::to_allocvec(&rc).unwrap();
    let back: HeapRc<u8> = postcard::from_bytes(&bytes).unwrap();
    drop((rc, back));
    assert_eq!(heap.stats().unwrap().objects, 1);
    heap.verify().unwrap();
}

#[test]
fn open_checks_types() {
    let name = format!("mp-heap-unit-{}", std::process::id());
    let d = Dict::<String, u64>::create(&name).unwrap();
    d.insert(&"x".into(), &1).unwrap();
    assert!(matches!(
        Dict::<u64, u64>::open(&name),
        Err(Error::TypeMismatch { .. })
    ));
    assert!(matches!(
        List::<u64>::open(&name),
        Err(Error::TypeMismatch { .. })
    ));
    assert_eq!(
        Dict::<String, u64>::open(&name)
            .unwrap()
            .get(&"x".into())
            .unwrap(),
        Some(1)
    );
    assert!(matches!(
        crate::Value::<u64>::open(&name),
        Err(Error::TypeMismatch { .. })
    ));
}

#[test]
fn dict_operations() {
    let d = Dict::<u64, String>::new().unwrap();
    assert!(d.is_empty().unwrap());
    for i in 0..1000u64 {
        assert_eq!(d.insert(&i, &format!("v{i}")).unwrap(), None);
    }
    assert_eq!(d.len().unwrap(), 1000);
    assert_eq!(d.insert(&7, &"seven".into()).unwrap(), Some("v7".into()));
    assert_eq!(d.get(&7).unwrap(), Some("seven".into()));
    assert!(d.contains_key(&999).unwrap());
    assert!(!d.contains_key(&1000).unwrap());
    for i in (0..1000u64).step_by(2) {
        assert!(d.remove(&i).unwrap().is_some());
    }
    assert_eq!(d.remove(&0).unwrap(), None);
    assert_eq!(d.len().unwrap(), 500);
    let mut keys = d.keys().unwrap();
    keys.sort_unstable();
    assert_eq!(keys, (1..1000).step_by(2).collect::<Vec<_>>());
    assert_eq!(d.values().unwrap().len(), 500);
    d.update(&1, |v| *v = Some("one".into())).unwrap();
    d.update(&3, |v| *v = None).unwrap();
    assert_eq!(d.get(&1).unwrap(), Some("one".into()));
    assert_eq!(d.get(&3).unwrap(), None);
    {
        let g = d.lock().unwrap();
        let n = g.len();
        g.insert(&5000, &"a".into()).unwrap();
        assert_eq!(g.len(), n + 1);
        assert_eq!(g.get(&5000).unwrap(), Some("a".into()));
        g.remove(&5000).unwrap();
    }
    d.clear().unwrap();
    assert_eq!(d.len().unwrap(), 0);
    // Keys longer than the stack buffer of the lookup path.
    let long = Dict::<String, u8>::in_heap(d.heap(), "long").unwrap();
    let key = "k".repeat(300);
    long.insert(&key, &1).unwrap();
    assert_eq!(long.get(&key).unwrap(), Some(1));
    assert_eq!(long.get(&"k".repeat(299)).unwrap(), None);
    long.clear().unwrap();
    assert_eq!(
        d.heap().stats().unwrap().objects,
        4,
        "the two roots and their name entries remain"
    );
    d.heap().verify().unwrap();
}

#[test]
fn list_and_cell_operations() {
    let l = List::<u32>::new().unwrap();
    l.extend(0..10).unwrap();
    l.insert(0, 100).unwrap();
    assert_eq!(l.remove(1).unwrap(), 0);
    l.set(9, 90).unwrap();
    assert_eq!(l.get(9).unwrap(), Some(90));
    assert_eq!(l.get(10).unwrap(), None);
    assert!(l.set(10, 1).is_err());
    assert_eq!(l.pop().unwrap(), Some(90));
    assert_eq!(l.to_vec().unwrap(), vec![100, 1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(l.iter().unwrap().sum::<u32>(), 136);
    assert_eq!(l.len().unwrap(), 9);
    while l.pop().unwrap().is_some() {}
    assert!(l.is_empty().unwrap());

    let c = Cell::new((String::from("a"), 1u8)).unwrap();
    c.set(("b".into(), 2)).unwrap();
    assert_eq!(c.update(|v| std::mem::replace(&mut v.1, 3)).unwrap(), 2);
    assert_eq!(c.get().unwrap(), ("b".into(), 3));
    c.heap().verify().unwrap();
}

#[test]
fn hostile_bytes_are_errors() {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut detected = 0;
    for round in 0..200 {
        let n = 9 * (1 + round % 12);
        let bytes: Vec<u8> = (0..n)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng as u8
            })
            .collect();
        // Any outcome may be an error; what matters is no panic, hang or fault.
        detected += __fuzz::hostile(&bytes)
            .iter()
            .filter(|r| matches!(r, Err(Error::Corrupted(_))))
            .count();
    }
    // The writes do reach state the checks look at (the test is not vacuous).
    assert!(detected > 20, "only {detected} corruptions detected");
    // Untouched, the same heap is fine.
    assert!(__fuzz::hostile(&[]).iter().all(Result::is_ok));
}
