//! The heap and its containers across real processes: children that change a Dict and a List
//! (the seeds' Manager program), zero-copy hand-over of a `HeapRc` through a Channel, reclaim
//! of references held by a killed process, and crash batteries: a child killed at every crash
//! point of alloc/free and of Dict/List/Cell changes leaves everything consistent for the others.

mod common;

use common::watchdog;
use multiproc::crash::{self, CrashAction};
use multiproc::heap::{Cell, Dict, Heap, HeapRc, List, RcHandle};
use multiproc::{Channel, Error, Process, Queue};
use std::time::Duration;

multiproc::test_support!();

fn seed_worker((d, l): (Dict<String, Option<String>>, List<i64>)) {
    d.insert(&"1".into(), &Some("1".into())).unwrap();
    d.insert(&"2".into(), &Some("2".into())).unwrap();
    d.insert(&"0.25".into(), &None).unwrap();
    let mut v = l.to_vec().unwrap();
    v.reverse();
    for (i, x) in v.into_iter().enumerate() {
        l.set(i, x).unwrap();
    }
}

/// Python's `manager.dict()` / `manager.list(range(10))` changed by a child, then read.
#[test]
fn a_child_changes_a_dict_and_a_list() {
    watchdog(30, || {
        let d = Dict::<String, Option<String>>::new().unwrap();
        let l = List::<i64>::new().unwrap();
        l.extend(0..10).unwrap();
        Process::spawn(seed_worker, (d.clone(), l.clone()))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(d.get(&"1".into()).unwrap(), Some(Some("1".into())));
        assert_eq!(d.get(&"0.25".into()).unwrap(), Some(None));
        assert_eq!(d.len().unwrap(), 3);
        assert_eq!(l.to_vec().unwrap(), (0..10).rev().collect::<Vec<_>>());
    });
}

fn counter_worker((d, n): (Dict<u64, u64>, u64)) {
    for i in 0..n {
        d.update(&(i % 8), |v| *v.get_or_insert(0) += 1).unwrap();
    }
}

/// `update` is atomic across processes (Python's `d[k] += 1` through a Manager loses updates).
#[test]
fn concurrent_updates_are_not_lost() {
    watchdog(60, || {
        let d = Dict::<u64, u64>::new().unwrap();
        let kids: Vec<_> = (0..3)
            .map(|_| Process::spawn(counter_worker, (d.clone(), 400)).unwrap())
            .collect();
        for k in kids {
            k.join().unwrap();
        }
        let total: u64 = d.values().unwrap().into_iter().sum();
        assert_eq!(total, 1200);
        d.heap().verify().unwrap();
    });
}

fn rc_reader_with_heap((_heap, ch): (Heap, Channel<HeapRc<[u8]>>)) -> (u64, u64) {
    let rc = ch.recv().unwrap();
    (rc.offset(), rc.iter().map(|&b| u64::from(b)).sum())
}

/// A 1 MiB shared buffer reaches another process through a Channel as an offset: the child
/// reads the same block (same offset, same bytes) and no copy of the payload is made.
#[test]
fn a_shared_buffer_travels_through_a_channel_without_a_copy() {
    watchdog(30, || {
        let heap = Heap::new(64 << 20).unwrap();
        let ch = Channel::<HeapRc<[u8]>>::new(4096).unwrap();
        // An anonymous heap reaches the child in its spawn arguments (with its fd); handles sent
        // later through the channel find it mapped there by its id.
        let child = Process::spawn(rc_reader_with_heap, (heap.clone(), ch.clone())).unwrap();
        let mut buf = heap.alloc_zeroed_slice::<u8>(1 << 20).unwrap();
        buf.iter_mut()
            .enumerate()
            .for_each(|(i, b)| *b = (i % 7) as u8);
        let expect: u64 = buf.iter().map(|&b| u64::from(b)).sum();
        let rc = buf.into_shared().unwrap();
        let off = rc.offset();
        ch.send(rc).unwrap();
        let (child_off, sum) = child.join().unwrap();
        assert_eq!((child_off, sum), (off, expect));
        assert_eq!(heap.stats().unwrap().objects, 0, "the last holder freed it");
        heap.verify().unwrap();
    });
}

fn rc_holder((rc, ch): (HeapRc<[u64]>, Channel<u64>)) {
    ch.send(rc[0]).unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

/// A process killed while holding a shared reference: `reclaim_dead` frees the block once every
/// live holder has dropped theirs.
#[test]
fn references_of_a_killed_process_are_reclaimed() {
    watchdog(30, || {
        let heap = Heap::new(1 << 20).unwrap();
        let rc = heap
            .alloc_slice(&[42u64; 16])
            .unwrap()
            .into_shared()
            .unwrap();
        let ch = Channel::<u64>::new(1024).unwrap();
        let mut child = Process::spawn(rc_holder, (rc.clone(), ch.clone())).unwrap();
        assert_eq!(ch.recv().unwrap(), 42);
        drop(rc);
        assert_eq!(heap.stats().unwrap().objects, 1, "the child still holds it");
        assert_eq!(heap.reclaim_dead().unwrap(), 0, "the child is alive");
        child.kill().unwrap();
        assert!(child.join_timeout(Duration::from_secs(5)).is_err());
        assert_eq!(heap.reclaim_dead().unwrap(), 1);
        assert_eq!(heap.stats().unwrap().objects, 0);
        heap.verify().unwrap();
    });
}

// ---------------------------------------------------------------------------------------------
// Crash batteries.

fn victim_died<R: serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug>(
    mut v: Process<R>,
) -> bool {
    match v.join_timeout(Duration::from_secs(20)) {
        Ok(_) => false,
        Err(Error::ChildSignaled { signal: 9 }) => true,
        Err(e) => panic!("victim: unexpected outcome {e}"),
    }
}

fn alloc_victim((heap, point, nth): (Heap, String, u64)) {
    crash::arm(&point, nth, CrashAction::Kill);
    let mut held = Vec::new();
    for i in 0..40u64 {
        held.push(
            heap.alloc_slice(&vec![i; 1 + (i as usize * 7) % 300])
                .unwrap(),
        );
        if i % 3 == 0 {
            held.swap_remove((i as usize * 5) % held.len());
        }
    }
}

const HEAP_POINTS: &[&str] = &[
    "heap.alloc.after_intent",
    "heap.alloc.after_apply",
    "heap.free.after_intent",
    "heap.free.after_apply",
    "heap.apply.mid",
];

/// A child SIGKILLed at each step of alloc and free: the next locker completes its intent, the
/// heap verifies, and the survivors allocate and free as before.
#[test]
fn battery_heap_alloc_free() {
    watchdog(240, || {
        for point in HEAP_POINTS {
            for nth in [1, 4, 17] {
                let heap = Heap::new(4 << 20).unwrap();
                let keep = heap.alloc(7u64).unwrap();
                let died = victim_died(
                    Process::spawn(alloc_victim, (heap.clone(), point.to_string(), nth)).unwrap(),
                );
                assert!(died, "{point} #{nth} was never reached");
                heap.verify()
                    .unwrap_or_else(|e| panic!("{point} #{nth}: {e}"));
                let before = heap.stats().unwrap();
                let more: Vec<_> = (0..50).map(|i| heap.alloc(i as u64).unwrap()).collect();
                assert_eq!(*keep, 7);
                assert!(more.iter().enumerate().all(|(i, b)| **b == i as u64));
                drop(more);
                assert_eq!(heap.stats().unwrap().objects, before.objects);
                heap.verify().unwrap();
            }
        }
    });
}

fn named_victim(heap: Heap) {
    crash::arm("heap.named.before_publish", 1, CrashAction::Kill);
    let _ = heap.find_or_construct("counter", || std::sync::atomic::AtomicU64::new(5));
}

/// A child SIGKILLed after building a named object but before publishing it: the name stays
/// unpublished (nothing half-built is ever found), the heap verifies, and the name can be made.
#[test]
fn battery_heap_named_before_publish() {
    watchdog(60, || {
        let heap = Heap::new(4 << 20).unwrap();
        assert!(victim_died(
            Process::spawn(named_victim, heap.clone()).unwrap()
        ));
        heap.verify().unwrap();
        assert!(
            heap.find::<std::sync::atomic::AtomicU64>("counter")
                .is_err()
        );
        let made = heap
            .find_or_construct("counter", || std::sync::atomic::AtomicU64::new(9))
            .unwrap();
        assert_eq!(made.load(std::sync::atomic::Ordering::Relaxed), 9);
        heap.verify().unwrap();
    });
}

fn last_holder_victim(heap: Heap) {
    let shared = heap
        .alloc_slice(&[7u64; 64])
        .unwrap()
        .into_shared()
        .unwrap();
    crash::arm("heap.rc.last_release", 1, CrashAction::Kill);
    drop(shared);
}

/// A child SIGKILLed between releasing the last reference of a shared block and freeing it:
/// that one block leaks (nobody can tell a dead releaser from a slow one, so nobody frees it for
/// it), the heap verifies, and everyone else allocates and frees as before.
#[test]
fn battery_heap_rc_last_release() {
    watchdog(60, || {
        let heap = Heap::new(4 << 20).unwrap();
        let before = heap.stats().unwrap().objects;
        assert!(victim_died(
            Process::spawn(last_holder_victim, heap.clone()).unwrap()
        ));
        heap.verify().unwrap();
        heap.reclaim_dead().unwrap();
        assert!(heap.stats().unwrap().objects <= before + 1);
        let more: Vec<_> = (0..50).map(|i| heap.alloc(i as u64).unwrap()).collect();
        assert!(more.iter().enumerate().all(|(i, b)| **b == i as u64));
        drop(more);
        heap.verify().unwrap();
    });
}

/// The containers of one heap a victim changes, and the crash point it arms.
type VictimArgs = (Dict<u64, String>, List<u64>, Cell<Vec<u64>>, String, u64);

fn dict_victim((d, l, c, point, nth): VictimArgs) {
    crash::arm(&point, nth, CrashAction::Kill);
    for round in 1..=20u64 {
        for k in 0..16u64 {
            d.insert(&k, &format!("{k}:{round}")).unwrap();
            if k % 5 == 0 {
                d.remove(&(k + 100)).unwrap();
                d.insert(&(k + 100), &format!("{k}:{round}")).unwrap();
            }
        }
        l.push(round).unwrap();
        if round % 4 == 0 {
            l.insert(0, round).unwrap();
            l.remove(0).unwrap();
        }
        c.update(|v| v.push(round)).unwrap();
    }
}

const CONTAINER_POINTS: &[&str] = &[
    "heap.dict.after_intent",
    "heap.dict.apply.mid",
    "heap.dict.after_apply",
    "heap.list.before_commit",
    "heap.cell.before_commit",
    "heap.cell.after_commit",
    "heap.alloc.after_intent",
    "heap.free.after_apply",
];

/// A child SIGKILLed in the middle of Dict/List/Cell changes: every key holds a value some
/// complete insert wrote (never garbage), the list is a prefix of what was pushed, the cell one
/// of the values it was set to, and the heap verifies.
#[test]
fn battery_containers() {
    watchdog(300, || {
        for point in CONTAINER_POINTS {
            for nth in [1, 7, 15] {
                let d = Dict::<u64, String>::new().unwrap();
                let l = List::<u64>::in_heap(d.heap(), "list").unwrap();
                let c = Cell::in_heap(d.heap(), "cell", Vec::<u64>::new()).unwrap();
                let died = victim_died(
                    Process::spawn(
                        dict_victim,
                        (d.clone(), l.clone(), c.clone(), point.to_string(), nth),
                    )
                    .unwrap(),
                );
                assert!(died, "{point} #{nth} was never reached");
                let pairs: Vec<(u64, String)> = d.iter().unwrap().collect();
                assert_eq!(pairs.len(), d.len().unwrap(), "{point} #{nth}");
                for (k, v) in &pairs {
                    let (vk, round) = v.split_once(':').expect("a complete value");
                    let base = if *k >= 100 { k - 100 } else { *k };
                    assert_eq!(vk.parse::<u64>().unwrap(), base, "{point} #{nth}");
                    assert!((1..=20).contains(&round.parse::<u64>().unwrap()));
                }
                let list = l.to_vec().unwrap();
                assert!(
                    list.iter().enumerate().all(|(i, &x)| x == i as u64 + 1),
                    "{list:?}"
                );
                let cell = c.get().unwrap();
                assert!(
                    cell.iter().enumerate().all(|(i, &x)| x == i as u64 + 1),
                    "{cell:?}"
                );
                d.heap()
                    .verify()
                    .unwrap_or_else(|e| panic!("{point} #{nth}: {e}"));
                // Survivors carry on.
                d.insert(&1, &"1:99".into()).unwrap();
                l.push(list.len() as u64 + 1).unwrap();
                c.update(|v| v.push(v.len() as u64 + 1)).unwrap();
                assert_eq!(d.get(&1).unwrap().as_deref(), Some("1:99"));
                d.heap().verify().unwrap();
            }
        }
    });
}

// ---------------------------------------------------------------------------------------------
// Random-kill soak.

fn soak_runs() -> u64 {
    std::env::var("MULTIPROC_SOAK_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30)
}

/// Hammers a Dict (values `"k:n"` whose `n` only grows per key), a List it only pushes the
/// counter onto, and the heap (boxes of its own), until killed.
fn soak_worker((d, l, heap, seed): (Dict<u64, String>, List<u64>, Heap, u64)) {
    let mut rng = common::Rng(seed | 1);
    let mut boxes = Vec::new();
    for n in 1.. {
        let k = rng.below(32);
        match rng.below(6) {
            0 => drop(d.remove(&k).unwrap()),
            1 => l.push(n).map(drop).unwrap(),
            2 => {
                boxes.push(
                    heap.alloc_slice(&vec![n; 1 + rng.below(600) as usize])
                        .unwrap(),
                );
                if boxes.len() > 8 {
                    boxes.swap_remove(rng.below(8) as usize);
                }
            }
            _ => {
                d.update(&k, |v| *v = Some(format!("{k}:{n}"))).unwrap();
            }
        }
    }
}

/// Two workers change one heap's Dict, List and blocks; one is SIGKILLed at a random moment,
/// then the other. Every run: the heap verifies, every value is a complete one, the list holds
/// only pushed counters, and a fresh process can use everything.
#[test]
fn soak_random_kills() {
    watchdog(300, || {
        let mut rng = common::Rng(0x5eed_1234);
        for run in 0..soak_runs() {
            let heap = Heap::new(16 << 20).unwrap();
            let d = Dict::<u64, String>::in_heap(&heap, "d").unwrap();
            let l = List::<u64>::in_heap(&heap, "l").unwrap();
            let mut kids: Vec<_> = (0..2)
                .map(|i| {
                    Process::spawn(
                        soak_worker,
                        (d.clone(), l.clone(), heap.clone(), run * 2 + i),
                    )
                    .unwrap()
                })
                .collect();
            for kid in &mut kids {
                std::thread::sleep(Duration::from_micros(2000 + rng.below(30_000)));
                kid.kill().unwrap();
                assert!(matches!(
                    kid.join_timeout(Duration::from_secs(10)),
                    Err(Error::ChildSignaled { signal: 9 })
                ));
            }
            heap.verify().unwrap_or_else(|e| panic!("run {run}: {e}"));
            for (k, v) in d.iter().unwrap() {
                let (vk, n) = v
                    .split_once(':')
                    .unwrap_or_else(|| panic!("run {run}: {v:?}"));
                assert_eq!(vk.parse::<u64>().unwrap(), k, "run {run}");
                assert!(n.parse::<u64>().is_ok(), "run {run}: {v:?}");
            }
            assert!(l.to_vec().unwrap().iter().all(|&x| x > 0), "run {run}");
            // The dead workers' boxes leak (owned by nobody); everything else carries on.
            d.insert(&1000, &"1000:1".into()).unwrap();
            l.push(1).unwrap();
            heap.alloc_slice(&[1u8; 5000]).unwrap();
            heap.verify().unwrap();
        }
    });
}

fn open_and_add((name, who): (String, u64)) -> u64 {
    let d = Dict::<u64, u64>::open_or_create(&name).unwrap();
    // Whoever created the name would remove it on exit: keep it for the others.
    d.heap().persist();
    d.insert(&who, &(who * 10)).unwrap();
    d.update(&u64::MAX, |n| *n.get_or_insert(0) += 1).unwrap();
    assert!(matches!(
        Dict::<String, u64>::open(&name),
        Err(Error::TypeMismatch { .. })
    ));
    d.heap().segment().len() as u64
}

/// Processes that race to `open_or_create` one named Dict all get the same one (one creates the
/// heap and its root, the others open them), and a wrong type is refused in every process.
#[test]
fn named_dict_open_or_create_race() {
    watchdog(60, || {
        let name = common::unique("heapdict");
        let kids: Vec<_> = (0..4)
            .map(|i| Process::spawn(open_and_add, (name.clone(), i)).unwrap())
            .collect();
        let d = Dict::<u64, u64>::open_or_create(&name).unwrap();
        d.heap().persist();
        for k in kids {
            k.join().unwrap();
        }
        assert_eq!(d.get(&u64::MAX).unwrap(), Some(4));
        for i in 0..4 {
            assert_eq!(d.get(&i).unwrap(), Some(i * 10));
        }
        multiproc::Segment::unlink(&name).unwrap();
    });
}

/// The values the killed-writer test writes: `(k, round, k ^ round)`, all of one encoded size
/// (rounds near 2^60), so every write after the first goes in place.
fn checked_value(k: u64, round: u64) -> (u64, u64, u64) {
    (k, round, k ^ round)
}

fn is_whole(k: u64, v: (u64, u64, u64)) -> bool {
    v.0 == k && v.2 == k ^ v.1
}

const ROUND0: u64 = 1 << 60;

fn killed_writer((d, nth): (Dict<u64, (u64, u64, u64)>, u64)) {
    crash::arm("heap.dict.value.mid", nth, CrashAction::Kill);
    for round in ROUND0.. {
        for k in 0..16 {
            d.insert(&k, &checked_value(k, round)).unwrap();
        }
    }
}

/// Reads every key until the phase word reaches 2; returns (reads, reads during phase 1, after
/// the writer died). Panics (failing the test) on a value that is not whole.
fn lock_free_reader(d: Dict<u64, (u64, u64, u64)>) -> (u64, u64) {
    let phase = d
        .heap()
        .find::<std::sync::atomic::AtomicU64>("phase")
        .unwrap();
    let (mut reads, mut after) = (0, 0);
    loop {
        let p = phase.load(std::sync::atomic::Ordering::Acquire);
        if p >= 2 {
            return (reads, after);
        }
        for k in 0..16 {
            let v = d.get(&k).unwrap().expect("every key is present");
            assert!(is_whole(k, v), "key {k}: torn value {v:?}");
            reads += 1;
            after += u64::from(p == 1);
        }
    }
}

/// Readers in two processes read a `Dict` without its lock while a writer process is SIGKILLed
/// half-way through copying a value in place (its seqlock version left odd): they never see a
/// torn value, keep reading after the death (falling back to the lock, whose repair completes
/// the write), and afterwards every key holds a whole value.
#[test]
fn dict_readers_survive_a_killed_writer() {
    watchdog(120, || {
        for nth in [1, 40, 333] {
            let d = Dict::<u64, (u64, u64, u64)>::new().unwrap();
            let phase = d
                .heap()
                .find_or_construct("phase", || std::sync::atomic::AtomicU64::new(0))
                .unwrap();
            for k in 0..16 {
                d.insert(&k, &checked_value(k, ROUND0)).unwrap();
            }
            let readers: Vec<_> = (0..2)
                .map(|_| Process::spawn(lock_free_reader, d.clone()).unwrap())
                .collect();
            let writer = Process::spawn(killed_writer, (d.clone(), nth)).unwrap();
            assert!(
                victim_died(writer),
                "nth {nth}: the writer was never killed"
            );
            phase.store(1, std::sync::atomic::Ordering::Release);
            std::thread::sleep(Duration::from_millis(200));
            phase.store(2, std::sync::atomic::Ordering::Release);
            for r in readers {
                let (reads, after) = r.join().unwrap();
                assert!(
                    reads > 0 && after > 0,
                    "nth {nth}: {reads} reads, {after} after"
                );
            }
            for k in 0..16 {
                let v = d.get(&k).unwrap().unwrap();
                assert!(is_whole(k, v), "nth {nth}, key {k}: {v:?}");
            }
            d.heap().verify().unwrap();
        }
    });
}

/// Takes shared buffers from a queue as Pod handles, checks them, and sends back a buffer of its
/// own the same way.
fn handle_receiver((heap, rx, tx): (Heap, Queue<RcHandle>, Queue<RcHandle>)) -> Vec<u64> {
    let mut offsets = Vec::new();
    for i in 0..3u8 {
        let rc = HeapRc::<[u8]>::from_handle(rx.pop().unwrap()).unwrap();
        assert!(rc.len() == 1 << 20 && rc.iter().all(|&b| b == i));
        offsets.push(rc.offset());
    }
    // A handle of the wrong payload type is refused.
    let wrong = HeapRc::<[u64]>::from_handle(rx.pop().unwrap());
    assert!(
        matches!(wrong, Err(Error::TypeMismatch { .. })),
        "{wrong:?}"
    );
    let mine = heap
        .alloc_slice(&[7u32; 100])
        .unwrap()
        .into_shared()
        .unwrap();
    tx.push(mine.into_handle().unwrap()).unwrap();
    offsets
}

/// `HeapRc` through a `Queue` as a Pod `RcHandle`: the child sees the same blocks (same offsets,
/// no copy) and returns one of its own; every block is freed once nobody holds it.
#[test]
fn heap_rc_through_a_queue_as_a_pod_handle() {
    watchdog(60, || {
        let heap = Heap::new(64 << 20).unwrap();
        let (there, back) = (Queue::new(8).unwrap(), Queue::new(8).unwrap());
        let child =
            Process::spawn(handle_receiver, (heap.clone(), there.clone(), back.clone())).unwrap();
        let mut sent = Vec::new();
        for i in 0..3u8 {
            let rc = heap
                .alloc_slice(&vec![i; 1 << 20])
                .unwrap()
                .into_shared()
                .unwrap();
            sent.push(rc.offset());
            there.push(rc.clone().into_handle().unwrap()).unwrap();
            drop(rc); // the handle in the queue keeps the block
        }
        let wrong = heap.alloc(1u64).unwrap().into_shared().unwrap();
        there.push(wrong.into_handle().unwrap()).unwrap();
        let theirs = HeapRc::<[u32]>::from_handle(back.pop().unwrap()).unwrap();
        assert_eq!(child.join().unwrap(), sent);
        assert_eq!(&theirs[..3], &[7, 7, 7]);
        drop(theirs);
        // The child exited: its references are reclaimed. The u64 handle it refused stays in
        // flight (never decoded), so exactly that one object remains.
        heap.reclaim_dead().unwrap();
        assert_eq!(heap.stats().unwrap().objects, 1);
        heap.verify().unwrap();
    });
}
