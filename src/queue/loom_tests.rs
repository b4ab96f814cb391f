//! Loom models of both rings: every interleaving (up to the preemption bound) of 2-3 threads.
//!
//! Run: `RUSTFLAGS="--cfg multiproc_loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
//!       cargo test --lib --release queue::loom_tests`
//!
//! A lost wake-up shows up as a loom deadlock (an untimed futex wait nobody wakes); a value seen
//! twice, torn or invented fails an assertion; a concurrent access to a slot's value outside the
//! protocol fails loom's `UnsafeCell` check.

use super::mpmc::HeapMpmc;
use super::peer::{Env, Step};
use super::ring::Wait;
use super::spsc::HeapSpsc;
use super::{PopError, PushError};
use loom::sync::Arc;
use loom::sync::atomic::{AtomicBool, Ordering};
use loom::thread;

/// A model peer: thread id `me`, a shared table of who is dead, and an optional step at which
/// this peer stops as if killed.
#[derive(Clone)]
struct Model {
    me: u32,
    dead: Arc<[AtomicBool; 4]>,
    stop: Option<Step>,
    /// Whether sleepers on a full/empty ring re-check periodically (needed once peers die).
    recheck: bool,
}

impl Model {
    fn table() -> Arc<[AtomicBool; 4]> {
        Arc::new(std::array::from_fn(|_| AtomicBool::new(false)))
    }
    fn new(me: u32, dead: &Arc<[AtomicBool; 4]>) -> Self {
        Self {
            me,
            dead: dead.clone(),
            stop: None,
            recheck: false,
        }
    }
    /// A survivor in a model where peers die: sleeps re-check periodically.
    fn survivor(me: u32, dead: &Arc<[AtomicBool; 4]>) -> Self {
        Self {
            recheck: true,
            ..Self::new(me, dead)
        }
    }
    /// What the kernel would report once the thread is gone.
    fn die(&self) {
        self.dead[self.me as usize].store(true, Ordering::Release);
    }
}

impl Env for Model {
    fn me(&self) -> u32 {
        self.me
    }
    fn is_dead(&self, tid: u32) -> bool {
        self.dead
            .get(tid as usize)
            .is_some_and(|d| d.load(Ordering::Acquire))
    }
    fn process_identity(&self) -> u64 {
        u64::from(self.me)
    }
    fn process_dead(&self, id: u64) -> bool {
        self.is_dead(id as u32)
    }
    fn recheck(&self) -> Option<std::time::Duration> {
        self.recheck.then_some(std::time::Duration::from_millis(1))
    }
    fn survive(&self, at: Step) -> bool {
        self.stop != Some(at)
    }
}

/// Two blocking producers, one blocking consumer: each value exactly once, no lost wake-up.
fn two_producers_one_consumer(cap: usize) {
    loom::model(move || {
        let q = Arc::new(HeapMpmc::<u64>::new(cap));
        let dead = Model::table();
        let ps: Vec<_> = (1..=2u64)
            .map(|v| {
                let (q, env) = (q.clone(), Model::new(v as u32, &dead));
                thread::spawn(move || q.ring().push_in(&env, v, Wait::Until(None)).unwrap())
            })
            .collect();
        let env = Model::new(3, &dead);
        let a = q.ring().pop_in(&env, Wait::Until(None)).unwrap();
        let b = q.ring().pop_in(&env, Wait::Until(None)).unwrap();
        assert!((a, b) == (1, 2) || (a, b) == (2, 1), "{a} {b}");
        for p in ps {
            p.join().unwrap();
        }
    });
}

#[test]
fn mpmc_two_producers_cap1() {
    two_producers_one_consumer(1);
}

#[test]
fn mpmc_two_producers_cap2() {
    two_producers_one_consumer(2);
}

/// One producer, two blocking consumers, capacity 2.
#[test]
fn mpmc_two_consumers_cap2() {
    loom::model(|| {
        let q = Arc::new(HeapMpmc::<u64>::new(2));
        let dead = Model::table();
        let cs: Vec<_> = (1..=2u32)
            .map(|id| {
                let (q, env) = (q.clone(), Model::new(id, &dead));
                thread::spawn(move || q.ring().pop_in(&env, Wait::Until(None)).unwrap())
            })
            .collect();
        let env = Model::new(3, &dead);
        q.ring().push_in(&env, 10, Wait::Until(None)).unwrap();
        q.ring().push_in(&env, 20, Wait::Until(None)).unwrap();
        let mut got: Vec<u64> = cs.into_iter().map(|c| c.join().unwrap()).collect();
        got.sort();
        assert_eq!(got, [10, 20]);
    });
}

/// `close` wakes a popper blocked on an empty ring and a pusher blocked on a full one.
#[test]
fn mpmc_close_wakes_blocked() {
    loom::model(|| {
        let q = Arc::new(HeapMpmc::<u64>::new(1));
        let dead = Model::table();
        let (q1, e1) = (q.clone(), Model::new(1, &dead));
        let popper = thread::spawn(move || q1.ring().pop_in(&e1, Wait::Until(None)));
        let (q2, e2) = (q.clone(), Model::new(2, &dead));
        let pusher = thread::spawn(move || {
            let a = q2.ring().push_in(&e2, 5, Wait::Until(None));
            let b = q2.ring().push_in(&e2, 6, Wait::Until(None));
            (a, b)
        });
        q.ring().close();
        let popped = popper.join().unwrap();
        let (a, b) = pusher.join().unwrap();
        // Whatever got in before the close is either popped or still there; nothing is
        // duplicated, and every call returned.
        let mut left = Vec::new();
        while let Ok(v) = q.ring().pop_in(&Model::new(3, &dead), Wait::No) {
            left.push(v);
        }
        assert!(a.is_ok() || a == Err(PushError::Closed(5)));
        assert!(b.is_ok() || b == Err(PushError::Closed(6)));
        let mut pushed: Vec<u64> = [(a, 5), (b, 6)]
            .into_iter()
            .filter(|(r, _)| r.is_ok())
            .map(|(_, v)| v)
            .collect();
        let mut seen = left;
        match popped {
            Ok(v) => seen.push(v),
            Err(e) => assert_eq!(e, PopError::Closed),
        }
        pushed.sort();
        seen.sort();
        assert_eq!(pushed, seen);
    });
}

/// Runs a model in which a peer dies: survivors poll (timed waits return at once in the model,
/// then yield), which takes more branches per execution than loom's default allows.
fn model_with_deaths(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.max_branches = 100_000;
    b.check(f);
}

/// A producer stops (is killed) at `step` of its push while a survivor pushes and pops: the
/// survivor gets its own value, never the dead one's, and the ring is not wedged.
fn producer_stops_at(cap: usize, step: Step) {
    model_with_deaths(move || {
        let q = Arc::new(HeapMpmc::<u64>::new(cap));
        let dead = Model::table();
        let (qa, mut ea) = (q.clone(), Model::new(1, &dead));
        let a = thread::spawn(move || {
            ea.stop = Some(step);
            let res = qa.ring().try_push_step(&ea, 66);
            ea.die();
            res
        });
        let env = Model::survivor(2, &dead);
        q.ring().push_in(&env, 7, Wait::Until(None)).unwrap();
        let v = q.ring().pop_in(&env, Wait::Until(None)).unwrap();
        let a_res = a.join().unwrap();
        // A never returned from its push (it stopped after claiming a slot): its value must
        // never appear. With capacity 1 it may also have found the ring full and not claimed.
        assert!(
            matches!(a_res, Err(None) | Err(Some(PushError::Full(66)))),
            "{a_res:?}"
        );
        assert_eq!(v, 7);
        assert_eq!(q.ring().pop_in(&env, Wait::No), Err(PopError::Empty));
        // Not wedged: a full lap more goes through.
        for i in 0..cap as u64 {
            q.ring().push_in(&env, 100 + i, Wait::Until(None)).unwrap();
        }
        for i in 0..cap as u64 {
            assert_eq!(q.ring().pop_in(&env, Wait::Until(None)), Ok(100 + i));
        }
    });
}

#[test]
fn mpmc_producer_stops_after_claim_cap1() {
    producer_stops_at(1, Step::Claimed);
}
/// A producer stops after publishing, before moving the tail: its value is delivered exactly
/// once, the survivor's push finds the next slot, and the ring is not wedged.
#[test]
fn mpmc_producer_stops_after_publishing_cap2() {
    model_with_deaths(|| {
        let q = Arc::new(HeapMpmc::<u64>::new(2));
        let dead = Model::table();
        let (qa, mut ea) = (q.clone(), Model::new(1, &dead));
        let a = thread::spawn(move || {
            ea.stop = Some(Step::Published);
            let res = qa.ring().try_push_step(&ea, 66);
            ea.die();
            res
        });
        let env = Model::survivor(2, &dead);
        q.ring().push_in(&env, 7, Wait::Until(None)).unwrap();
        assert_eq!(a.join().unwrap(), Err(None));
        let mut got = [
            q.ring().pop_in(&env, Wait::Until(None)).unwrap(),
            q.ring().pop_in(&env, Wait::Until(None)).unwrap(),
        ];
        got.sort();
        assert_eq!(got, [7, 66]);
        assert_eq!(q.ring().pop_in(&env, Wait::No), Err(PopError::Empty));
        for i in 0..2 {
            q.ring().push_in(&env, 100 + i, Wait::Until(None)).unwrap();
        }
        for i in 0..2 {
            assert_eq!(q.ring().pop_in(&env, Wait::Until(None)), Ok(100 + i));
        }
    });
}
#[test]
fn mpmc_producer_stops_after_copy_cap1() {
    producer_stops_at(1, Step::Copied);
}
#[test]
fn mpmc_producer_stops_after_claim_cap2() {
    producer_stops_at(2, Step::Claimed);
}
#[test]
fn mpmc_producer_stops_after_copy_cap2() {
    producer_stops_at(2, Step::Copied);
}

/// A consumer stops at `step` of a pop on a full ring while a survivor pushes behind it and
/// then drains: the survivor is not wedged and loses at most the value the dead one claimed.
fn consumer_stops_at(step: Step) {
    model_with_deaths(move || {
        let q = Arc::new(HeapMpmc::<u64>::new(1));
        let dead = Model::table();
        let env = Model::survivor(2, &dead);
        q.ring().push_in(&env, 1, Wait::Until(None)).unwrap();
        let (q1, mut e1) = (q.clone(), Model::new(1, &dead));
        let c1 = thread::spawn(move || {
            e1.stop = Some(step);
            let r = q1.ring().try_pop_step(&e1);
            e1.die();
            r
        });
        q.ring().push_in(&env, 2, Wait::Until(None)).unwrap();
        let mut got = Vec::new();
        while let Ok(v) = q.ring().pop_in(&env, Wait::No) {
            got.push(v);
        }
        match c1.join().unwrap() {
            Err(None) => assert!(got == [2] || got.is_empty(), "{got:?}"), // lost its claim
            Ok(v) => assert_eq!((v, &got[..]), (1, &[2][..])),
            Err(Some(e)) => panic!("{e}"),
        }
    });
}

#[test]
fn mpmc_consumer_stops_after_claim() {
    consumer_stops_at(Step::Claimed);
}
#[test]
fn mpmc_consumer_stops_after_copy() {
    consumer_stops_at(Step::Copied);
}

/// SPSC: batches and blocking single ops across a capacity-2 ring, in order, no lost wake-up.
#[test]
fn spsc_batches_and_blocking() {
    loom::model(|| {
        let q = Arc::new(HeapSpsc::<u64>::new(2));
        let dead = Model::table();
        let (q1, e1) = (q.clone(), Model::new(1, &dead));
        let producer = thread::spawn(move || {
            let r = q1.ring();
            let mut p = r.producer_in(&e1).unwrap();
            let n = p.push_slice_in(&e1, &[1, 2, 3]).unwrap();
            for v in (n as u64 + 1)..=3 {
                p.push_in(v, Wait::Until(None)).unwrap();
            }
            r.close();
        });
        let e2 = Model::survivor(2, &dead);
        let r = q.ring();
        let mut c = r.consumer_in(&e2).unwrap();
        let mut got = Vec::new();
        let mut buf = [0; 2];
        loop {
            match c.pop_in(Wait::Until(None)) {
                Ok(v) => got.push(v),
                Err(PopError::Closed) => break,
                Err(e) => panic!("{e}"),
            }
            if let Ok(n) = c.pop_into_in(&e2, &mut buf) {
                got.extend(&buf[..n]);
            }
        }
        assert_eq!(got, [1, 2, 3]);
        producer.join().unwrap();
    });
}

/// SPSC: a second producer is refused while the first lives, whatever the interleaving.
#[test]
fn spsc_second_producer_refused() {
    loom::model(|| {
        let q = Arc::new(HeapSpsc::<u64>::new(1));
        let dead = Model::table();
        let (q1, e1) = (q.clone(), Model::new(1, &dead));
        let t = thread::spawn(move || q1.ring().producer_in(&e1).map(|_p| ()).is_ok());
        let e2 = Model::survivor(2, &dead);
        let mine = q.ring().producer_in(&e2).map(std::mem::forget).is_ok();
        let theirs = t.join().unwrap();
        // Both may succeed only one after the other (the first dropped its endpoint).
        assert!(mine || theirs);
    });
}
