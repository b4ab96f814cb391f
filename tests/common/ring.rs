//! The random-time SIGKILL soak every ring shares (`Queue`, `SpscQueue`, `Channel`): one shape,
//! run through [`SoakRing`], so each `crash_*` crate only names its ring.
//!
//! A run: a victim child produces or consumes (chosen at random) a stream of checked values,
//! and is SIGKILLed after a random delay (see `soak.rs`). A survivor thread here plays the
//! other role during and after the victim's life; once the victim is dead, this thread takes
//! the victim's role over (drains, or is the last producer), every value arrives in order,
//! untorn, at most the victim's in-flight one lost (`check_stream`), within 2 s; and the ring
//! still carries a value both ways.

use super::crash::SURVIVE;
use super::soak::*;
use multiproc::queue::{PopError, RecvError, SpscConsumer, SpscProducer};
use multiproc::{Channel, Process, Queue, Shared, SpscQueue};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How a blocking receive with a timeout ended.
pub enum Got {
    Value(Msg),
    Timeout,
    /// Any other error, in words.
    Failed(String),
}

/// A ring the soak drives: how to make one, take its ends, and move one value with a timeout.
pub trait SoakRing: Clone + Serialize + DeserializeOwned + Send + 'static {
    /// Printed and in every failure's context.
    const NAME: &'static str;
    /// Picks the soak's seed (see `soak_seed`).
    const TEST: u64;
    type Tx;
    type Rx;
    /// A small ring, so that producers block and (for the channel) records wrap.
    fn make() -> Self;
    /// The producing end (a role the caller holds until it drops it; for SPSC, also the role of
    /// a producer that died).
    fn tx(&self) -> Self::Tx;
    /// The consuming end, as [`tx`](Self::tx).
    fn rx(&self) -> Self::Rx;
    /// Pushes `m`, waiting at most `t`; the error in words.
    fn push(tx: &mut Self::Tx, m: Msg, t: Duration) -> Result<(), String>;
    /// Pops, waiting at most `t`.
    fn pop(rx: &mut Self::Rx, t: Duration) -> Got;
}

impl SoakRing for Queue<Msg> {
    const NAME: &'static str = "mpmc";
    const TEST: u64 = 7;
    type Tx = Self;
    type Rx = Self;
    fn make() -> Self {
        Queue::new(8).unwrap()
    }
    fn tx(&self) -> Self {
        self.clone()
    }
    fn rx(&self) -> Self {
        self.clone()
    }
    fn push(q: &mut Self, m: Msg, t: Duration) -> Result<(), String> {
        q.push_timeout(m, t).map_err(|e| format!("{e:?}"))
    }
    fn pop(q: &mut Self, t: Duration) -> Got {
        match q.pop_timeout(t) {
            Ok(m) => Got::Value(m),
            Err(PopError::Timeout) => Got::Timeout,
            Err(e) => Got::Failed(format!("{e:?}")),
        }
    }
}

impl SoakRing for SpscQueue<Msg> {
    const NAME: &'static str = "spsc";
    const TEST: u64 = 8;
    type Tx = SpscProducer<Msg>;
    type Rx = SpscConsumer<Msg>;
    fn make() -> Self {
        SpscQueue::new(8).unwrap()
    }
    fn tx(&self) -> SpscProducer<Msg> {
        self.producer()
            .expect("the producer role (free, or its holder dead)")
    }
    fn rx(&self) -> SpscConsumer<Msg> {
        self.consumer()
            .expect("the consumer role (free, or its holder dead)")
    }
    fn push(tx: &mut SpscProducer<Msg>, m: Msg, t: Duration) -> Result<(), String> {
        tx.push_timeout(m, t).map_err(|e| format!("{e:?}"))
    }
    fn pop(rx: &mut SpscConsumer<Msg>, t: Duration) -> Got {
        match rx.pop_timeout(t) {
            Ok(m) => Got::Value(m),
            Err(PopError::Timeout) => Got::Timeout,
            Err(e) => Got::Failed(format!("{e:?}")),
        }
    }
}

impl SoakRing for Channel<Msg> {
    const NAME: &'static str = "channel";
    const TEST: u64 = 9;
    type Tx = Self;
    type Rx = Self;
    fn make() -> Self {
        // About five records, so senders block and records wrap with SKIPs.
        Channel::new(128).unwrap()
    }
    fn tx(&self) -> Self {
        self.clone()
    }
    fn rx(&self) -> Self {
        self.clone()
    }
    fn push(ch: &mut Self, m: Msg, t: Duration) -> Result<(), String> {
        ch.send_timeout(m, t).map_err(|e| format!("{e:?}"))
    }
    fn pop(ch: &mut Self, t: Duration) -> Got {
        match ch.recv_timeout(t) {
            Ok(m) => Got::Value(m),
            Err(RecvError::Timeout) => Got::Timeout,
            Err(e) => Got::Failed(format!("{e:?}")),
        }
    }
}

/// The victim child: takes its role, says it started, and loops it until killed.
fn victim<R: SoakRing>((ring, s, produce): (R, Shared<QSoak>, bool)) {
    let end = Instant::now() + VICTIM_LIFE;
    let mut seq = 0;
    if produce {
        let mut tx = ring.tx();
        s.started.store(1, Ordering::SeqCst);
        while Instant::now() < end {
            if R::push(&mut tx, msg(seq), Duration::from_secs(1)).is_ok() {
                seq += 1;
                s.done.store(seq, Ordering::SeqCst);
            }
        }
    } else {
        let mut rx = ring.rx();
        s.started.store(1, Ordering::SeqCst);
        while Instant::now() < end {
            if let Got::Value(m) = R::pop(&mut rx, Duration::from_millis(100)) {
                let v = check(m, "victim");
                assert_eq!(v, seq);
                seq += 1;
                s.done.store(seq, Ordering::SeqCst);
                s.last.store(v + 1, Ordering::SeqCst);
            }
        }
    }
}

/// Pops from `rx` until a pop times out that began after `stop()` held; returns the values,
/// checked.
fn drain<R: SoakRing>(
    rx: &mut R::Rx,
    slice: Duration,
    stop: impl Fn() -> bool,
    ctx: &str,
) -> Vec<u64> {
    let mut got = Vec::new();
    loop {
        // Read the flag *before* the pop: a pop that times out after the victim was seen dead
        // proves the ring drained. Read after it, the victim could push one more value between
        // the timeout and its death, and that value was left behind (the SPSC soak's one
        // failure in ~180 runs).
        let stopped = stop();
        match R::pop(rx, slice) {
            Got::Value(m) => got.push(check(m, ctx)),
            Got::Timeout if stopped => return got,
            Got::Timeout => {}
            Got::Failed(e) => panic!("{ctx}: pop: {e}"),
        }
    }
}

/// One run: see the module docs. Returns whether the dead consumer lost its in-flight value.
fn run<R: SoakRing>(rng: &mut super::Rng, ctx: &str) -> bool {
    let ring = R::make();
    let s = new_qsoak();
    let victim_produces = rng.below(2) == 0;
    let mut child =
        Process::spawn(victim::<R>, (ring.clone(), s.clone(), victim_produces)).unwrap();
    // The victim takes its role before the survivor takes the other one.
    super::wait_for("the victim's role", || {
        s.started.load(Ordering::SeqCst) != 0 || !child.is_alive()
    });
    let dead = Arc::new(AtomicBool::new(false));
    // The survivor plays the other role during and after the victim's life.
    let survivor = {
        let (ring, dead, ctx) = (ring.clone(), dead.clone(), ctx.to_owned());
        std::thread::spawn(move || {
            if victim_produces {
                let stop = || dead.load(Ordering::SeqCst);
                return drain::<R>(&mut ring.rx(), Duration::from_millis(20), stop, &ctx);
            }
            let mut tx = ring.tx();
            for v in 0..STREAM {
                let t0 = Instant::now();
                if let Err(e) = R::push(&mut tx, msg(v), SURVIVE) {
                    panic!("{ctx}: push {v}: {e} after {:?}", t0.elapsed());
                }
            }
            Vec::new()
        })
    };
    kill_after_random_delay(rng, &mut child, &s.started, ctx);
    dead.store(true, Ordering::SeqCst);
    let t0 = Instant::now();
    let mut got = Vec::new();
    if !victim_produces {
        // Take the dead consumer's role over while the survivor pushes the rest.
        got = drain::<R>(&mut ring.rx(), SHORT, || survivor.is_finished(), ctx);
    }
    got.extend(survivor.join().unwrap());
    assert!(
        t0.elapsed() < SURVIVE + SURVIVE,
        "{ctx}: took {:?}",
        t0.elapsed()
    );
    let lost = check_stream(&got, &s, victim_produces, ctx);
    // Still a working ring, with every role free again (the dead one's too).
    let sentinel = msg(1 << 40);
    R::push(&mut ring.tx(), sentinel, SURVIVE).unwrap_or_else(|e| panic!("{ctx}: {e}"));
    match R::pop(&mut ring.rx(), SURVIVE) {
        Got::Value(m) => assert_eq!(check(m, ctx), 1 << 40, "{ctx}"),
        Got::Timeout => panic!("{ctx}: the sentinel did not arrive"),
        Got::Failed(e) => panic!("{ctx}: sentinel: {e}"),
    }
    lost
}

/// The whole soak for ring `R`, under its watchdog.
pub fn ring_soak<R: SoakRing>() {
    soak_watchdog(|| {
        let mut lost = 0;
        soak(R::NAME, R::TEST, |rng, ctx| {
            lost += u64::from(run::<R>(rng, ctx))
        });
        println!(
            "{}: {lost} runs: the dead consumer had popped a value it had not yet recorded",
            R::NAME
        );
    });
}
