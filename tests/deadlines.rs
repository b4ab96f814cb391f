//! The `_until(Instant)` forms: for every blocking call, a deadline already past returns at
//! once with the call's timeout, and one in the future waits at least until it. The locks are
//! held by a real child process.

mod common;

use common::watchdog;
use multiproc::queue::{PopError, PushError, RecvError, SendError};
use multiproc::sync::{
    Barrier, BarrierError, Condvar, Event, LockError, Mutex, ReentrantMutex, RwLock, Semaphore,
    SemaphoreError,
};
use multiproc::{
    Array, Channel, Error, JoinableChannel, JoinableQueue, Pipe, Pool, Process, Queue, Shared,
    ShmSafe, SpscQueue, Value,
};
use std::time::{Duration, Instant};

multiproc::test_support!();

/// How far in the future the waiting case sets its deadline.
const AHEAD: Duration = Duration::from_millis(30);
/// "At once", generously: a loaded machine may deschedule us for a while.
const AT_ONCE: Duration = Duration::from_millis(500);

/// Runs `call` with a deadline in the past, then one `AHEAD` in the future; `call` returns
/// whether it gave up (timed out). The first must give up within `AT_ONCE`, the second not
/// before its deadline.
fn check(what: &str, mut call: impl FnMut(Instant) -> bool) {
    let start = Instant::now();
    assert!(
        call(start - Duration::from_millis(50)),
        "{what}: past deadline did not time out"
    );
    let took = start.elapsed();
    assert!(took < AT_ONCE, "{what}: a past deadline waited {took:?}");
    let deadline = Instant::now() + AHEAD;
    assert!(call(deadline), "{what}: future deadline did not time out");
    let now = Instant::now();
    assert!(
        now >= deadline,
        "{what}: returned {:?} early",
        deadline - now
    );
}

#[repr(C)]
struct Locks {
    mutex: Mutex<u32>,
    reentrant: ReentrantMutex<u32>,
    rwlock: RwLock<u32>,
    held: Event,
    release: Event,
}
// SAFETY: in-place primitives only, `#[repr(C)]`, no pointers.
unsafe impl ShmSafe for Locks {}

/// Holds every lock (and the value's and array's) until told to let go.
fn holder((locks, value, array): (Shared<Locks>, Value<u64>, Array<u32>)) {
    let _m = locks.mutex.lock().unwrap();
    let _r = locks.reentrant.lock().unwrap();
    let _w = locks.rwlock.write().unwrap();
    let _v = value.lock().unwrap();
    let _a = array.lock().unwrap();
    locks.held.set();
    locks.release.wait();
}

#[test]
fn locks_held_by_a_child() {
    watchdog(60, || {
        let locks = Shared::new(Locks {
            mutex: Mutex::new(0),
            reentrant: ReentrantMutex::new(0),
            rwlock: RwLock::new(0),
            held: Event::new(),
            release: Event::new(),
        })
        .unwrap();
        let value = Value::new(0u64).unwrap();
        let array = Array::<u32>::from_slice(&[1, 2, 3]).unwrap();
        let mut child =
            Process::spawn(holder, (locks.clone(), value.clone(), array.clone())).unwrap();
        assert!(
            locks.held.wait_timeout(Duration::from_secs(20)),
            "child never took the locks"
        );

        fn timed_out<G>(r: Result<G, LockError<G>>) -> bool {
            matches!(r, Err(LockError::Timeout))
        }
        check("Mutex::lock_until", |d| {
            timed_out(locks.mutex.lock_until(d))
        });
        check("ReentrantMutex::lock_until", |d| {
            timed_out(locks.reentrant.lock_until(d))
        });
        check("RwLock::read_until", |d| {
            timed_out(locks.rwlock.read_until(d))
        });
        check("RwLock::write_until", |d| {
            timed_out(locks.rwlock.write_until(d))
        });
        check("Value::lock_until", |d| timed_out(value.lock_until(d)));
        check("Array::lock_until", |d| timed_out(array.lock_until(d)));
        check("Process::join_until", |d| {
            matches!(child.join_until(d), Err(Error::Timeout))
        });

        locks.release.set();
        // Now everything is free: a past deadline still succeeds when there is no wait.
        let past = Instant::now() - Duration::from_millis(50);
        let far = Instant::now() + Duration::from_secs(20);
        child.join_until(far).unwrap();
        assert!(locks.mutex.lock_until(past).is_ok());
        assert!(locks.reentrant.lock_until(far).is_ok());
        assert!(locks.rwlock.read_until(far).is_ok());
        assert!(locks.rwlock.write_until(far).is_ok());
        assert!(value.lock_until(far).is_ok());
        assert!(array.lock_until(far).is_ok());
    });
}

#[test]
fn semaphore_event_barrier_condvar() {
    watchdog(30, || {
        let sem = Semaphore::new(0);
        check("Semaphore::acquire_until", |d| {
            matches!(sem.acquire_until(d), Err(SemaphoreError::Timeout))
        });
        sem.release().unwrap();
        sem.acquire_until(Instant::now() - Duration::from_millis(50))
            .unwrap();

        let event = Event::new();
        check("Event::wait_until", |d| !event.wait_until(d));
        event.set();
        assert!(event.wait_until(Instant::now() - Duration::from_millis(50)));

        let barrier = Barrier::new(2).unwrap();
        check("Barrier::wait_until", |d| {
            let r = barrier.wait_until(d);
            barrier.reset();
            matches!(r, Err(BarrierError::Timeout))
        });

        let mutex = Mutex::new(0u32);
        let condvar = Condvar::new();
        check("Condvar::wait_until", |d| {
            let (_g, res) = condvar.wait_until(mutex.lock().unwrap(), d).unwrap();
            res.timed_out()
        });
        check("Condvar::wait_until_while", |d| {
            let (_g, res) = condvar
                .wait_until_while(mutex.lock().unwrap(), d, |v| *v == 0)
                .unwrap();
            res.timed_out()
        });
    });
}

#[test]
fn queues_channels_and_pipes() {
    watchdog(30, || {
        let q = Queue::<u64>::new(1).unwrap();
        check("Queue::pop_until", |d| {
            q.pop_until(d) == Err(PopError::Timeout)
        });
        q.push(1).unwrap();
        check("Queue::push_until", |d| {
            matches!(q.push_until(2, d), Err(PushError::Timeout(2)))
        });

        let spsc = SpscQueue::<u64>::new(1).unwrap();
        let mut tx = spsc.producer().unwrap();
        let mut rx = spsc.consumer().unwrap();
        check("SpscConsumer::pop_until", |d| {
            rx.pop_until(d) == Err(PopError::Timeout)
        });
        tx.push(1).unwrap();
        check("SpscProducer::push_until", |d| {
            matches!(tx.push_until(2, d), Err(PushError::Timeout(2)))
        });
        assert_eq!(
            rx.pop_until(Instant::now() - Duration::from_millis(50)),
            Ok(1)
        );

        let ch = Channel::<Vec<u8>>::new(64).unwrap();
        check("Channel::recv_until", |d| {
            ch.recv_until(d) == Err(RecvError::Timeout)
        });
        ch.send(vec![7; 40]).unwrap();
        check("Channel::send_until", |d| {
            matches!(ch.send_until(vec![8; 40], d), Err(SendError::Timeout(_)))
        });

        let jq = JoinableQueue::<u64>::new(1).unwrap();
        check("JoinableQueue::pop_until", |d| {
            jq.pop_until(d) == Err(PopError::Timeout)
        });
        jq.push(1).unwrap();
        check("JoinableQueue::push_until", |d| {
            matches!(jq.push_until(2, d), Err(PushError::Timeout(2)))
        });
        check("JoinableQueue::join_until", |d| {
            matches!(jq.join_until(d), Err(Error::Timeout))
        });
        jq.pop().unwrap();
        jq.task_done().unwrap();
        jq.join_until(Instant::now() - Duration::from_millis(50))
            .unwrap();

        let jc = JoinableChannel::<Vec<u8>>::new(64).unwrap();
        check("JoinableChannel::get_until", |d| {
            jc.get_until(d) == Err(RecvError::Timeout)
        });
        jc.put(vec![1; 40]).unwrap();
        check("JoinableChannel::put_until", |d| {
            matches!(jc.put_until(vec![2; 40], d), Err(SendError::Timeout(_)))
        });
        assert_eq!(
            jc.unfinished_tasks(),
            1,
            "a put that timed out is not a task"
        );
        check("JoinableChannel::join_until", |d| {
            matches!(jc.join_until(d), Err(Error::Timeout))
        });
        jc.get().unwrap();
        jc.task_done().unwrap();
        jc.join_until(Instant::now() - Duration::from_millis(50))
            .unwrap();

        let ch = Channel::<Vec<u8>>::new(64).unwrap();
        check("Channel::recv_bytes_until", |d| {
            ch.recv_bytes_until(d) == Err(RecvError::Timeout)
        });
        check("Channel::recv_bytes_into_until", |d| {
            ch.recv_bytes_into_until(&mut [0; 64], d) == Err(RecvError::Timeout)
        });
        ch.send_bytes(&[1; 40]).unwrap();
        check("Channel::send_bytes_until", |d| {
            matches!(
                ch.send_bytes_until(&[2; 40], d),
                Err(SendError::Timeout(()))
            )
        });

        let (a, b) = Pipe::new::<Vec<u8>>(64).unwrap();
        check("Connection::recv_until", |d| {
            a.recv_until(d) == Err(RecvError::Timeout)
        });
        check("Connection::poll_until", |d| !a.poll_until(d));
        a.send(vec![1; 40]).unwrap();
        check("Connection::send_until", |d| {
            matches!(a.send_until(vec![2; 40], d), Err(SendError::Timeout(_)))
        });
        check("Connection::send_timeout", |d| {
            let left = d.saturating_duration_since(Instant::now());
            matches!(
                a.send_timeout(vec![2; 40], left),
                Err(SendError::Timeout(_))
            )
        });
        assert_eq!(b.recv_until(Instant::now()), Ok(vec![1; 40]));
    });
}

/// A pool task that runs until the event is set.
fn wait_for_event(event: Shared<Event>) -> u32 {
    event.wait();
    7
}

#[test]
fn pool_results_and_iterators() {
    watchdog(60, || {
        let pool = Pool::new(2).unwrap();
        let go = Shared::new(Event::new()).unwrap();
        let r = pool.apply_async(wait_for_event, go.clone());
        check("AsyncResult::get_until", |d| r.get_until(d).is_none());
        check("AsyncResult::wait_until", |d| !r.wait_until(d));
        let mut it = pool.imap(wait_for_event, vec![go.clone()]);
        check("IMap::next_until", |d| {
            matches!(it.next_until(d), Err(Error::Timeout))
        });
        go.set();
        let far = Instant::now() + Duration::from_secs(30);
        assert_eq!(r.get_until(far).unwrap().unwrap(), 7);
        assert!(r.wait_until(far));
        assert_eq!(it.next_until(far).unwrap().unwrap().unwrap(), 7);
        assert!(it.next_until(far).unwrap().is_none());
    });
}
