//! The tour: every part of multiproc in one run, printing what it did and how long it took.
//!
//! ```sh
//! cargo run --release --example tour
//! ```

use multiproc::heap::{Dict, Heap, HeapRc, List};
use multiproc::sync::{LockError, Mutex, Semaphore};
use multiproc::{Array, Channel, Error, Process, Queue, Shared, Value};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

fn main() -> Result<(), Error> {
    multiproc::init();
    println!(
        "multiproc tour (pid {}, {} CPUs)\n",
        std::process::id(),
        multiproc::cpu_count()
    );
    values_and_arrays()?;
    named_objects()?;
    restaurant()?;
    robust_mutex()?;
    queues()?;
    heap_and_containers()?;
    failures()?;
    pool()?;
    println!("\ndone.");
    Ok(())
}

fn step(title: &str) {
    println!("== {title}");
}

// 1. Value and Array shared with children, zero copies.
fn count_to((counter, times): (Value<u64>, u64)) -> u32 {
    for _ in 0..times {
        *counter.lock().expect("lock") += 1;
    }
    multiproc::current_process().pid
}

fn negate(arr: Array<i32>) {
    for x in arr.lock().expect("lock").iter_mut() {
        *x = -*x;
    }
}

fn values_and_arrays() -> Result<(), Error> {
    step("Value and Array shared with child processes");
    let counter = Value::new(0u64)?;
    let start = Instant::now();
    let children: Vec<_> = (0..4)
        .map(|_| Process::spawn(count_to, (counter.clone(), 25_000)))
        .collect::<Result<_, _>>()?;
    let pids: Vec<u32> = children
        .into_iter()
        .map(|c| c.join())
        .collect::<Result<_, _>>()?;
    println!(
        "   4 children (pids {pids:?}) each added 25000 under the lock: counter = {} in {:.1?}",
        counter.get().expect("lock"),
        start.elapsed()
    );
    let arr = Array::from_slice(&(0..10).collect::<Vec<i32>>())?;
    Process::spawn(negate, arr.clone())?.join()?;
    println!(
        "   a child negated the array in place: {:?}",
        arr.to_vec().expect("lock")
    );
    Ok(())
}

// 2. Named objects: opened by name, type-checked.
fn read_named(name: String) -> u64 {
    Value::<u64>::open(&name)
        .map(|v| v.get().expect("lock"))
        .unwrap_or(0)
}

fn named_objects() -> Result<(), Error> {
    step("Named objects");
    let name = format!("multiproc-tour-{}", std::process::id());
    let v = Value::create(&name, 2026u64)?;
    let seen = Process::spawn(read_named, name.clone())?.join()?;
    println!("   created /dev/shm/{name}; a child opened it by name and read {seen}");
    match Value::<f32>::open(&name) {
        Err(Error::TypeMismatch { expected, found }) => {
            println!("   opening it as the wrong type fails: expected {expected}, found {found}")
        }
        other => println!("   unexpected: {other:?}"),
    }
    drop(v);
    println!(
        "   the creator dropped it: name removed = {}",
        !std::path::Path::new(&format!("/dev/shm/{name}")).exists()
    );
    Ok(())
}

// 3. The seed's restaurant: a semaphore of 3 seats, 8 customers.
#[repr(C)]
struct Restaurant {
    seats: Semaphore,
    seated: AtomicU32,
    most_seated: AtomicU32,
}
// SAFETY: only atomics and a Semaphore (itself ShmSafe): valid for any bits, no pointers, no Drop.
unsafe impl multiproc::ShmSafe for Restaurant {}

fn customer(r: Shared<Restaurant>) {
    r.seats.acquire();
    let now = r.seated.fetch_add(1, Ordering::SeqCst) + 1;
    r.most_seated.fetch_max(now, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(20));
    r.seated.fetch_sub(1, Ordering::SeqCst);
    r.seats.release().expect("release");
}

fn restaurant() -> Result<(), Error> {
    step("Semaphore: 8 customer processes, 3 seats");
    let r = Shared::new(Restaurant {
        seats: Semaphore::new(3),
        seated: AtomicU32::new(0),
        most_seated: AtomicU32::new(0),
    })?;
    let customers: Vec<_> = (0..8)
        .map(|_| Process::spawn(customer, r.clone()))
        .collect::<Result<_, _>>()?;
    for c in customers {
        c.join()?;
    }
    println!(
        "   most customers seated at once: {}",
        r.most_seated.load(Ordering::SeqCst)
    );
    Ok(())
}

// 4. A lock holder killed with SIGKILL: the next locker is told, and repairs.
fn hold_and_hang(m: Shared<Mutex<u64>>) {
    let mut guard = m.lock().expect("lock");
    *guard = u64::MAX; // a half-done update...
    std::thread::sleep(Duration::from_secs(60)); // ...and then killed
}

fn robust_mutex() -> Result<(), Error> {
    step("Robust mutex: the holder is killed with SIGKILL");
    let m = Shared::new(Mutex::new(7u64))?;
    let holder = Process::spawn(hold_and_hang, m.clone())?;
    while m.try_lock().is_ok() {
        std::thread::sleep(Duration::from_millis(1));
    }
    holder.kill()?;
    let killed = holder.pid();
    let start = Instant::now();
    match m.lock() {
        Err(LockError::OwnerDied(mut guard)) => {
            println!(
                "   pid {killed} died holding the lock; detected in {:.1?}; it left {:#x}",
                start.elapsed(),
                *guard
            );
            *guard = 7;
            guard.make_consistent();
            println!("   repaired the value and made the mutex consistent");
        }
        Ok(_) => println!("   unexpected: no owner death reported"),
        Err(e) => println!("   unexpected: {e}"),
    }
    println!(
        "   locks normally again: value = {}",
        *m.lock().expect("lock")
    );
    Ok(())
}

// 5. Queues: a producer child and this process as consumer.
const STREAM: u64 = 1_000_000;

fn stream_numbers(q: Queue<u64>) {
    for i in 0..STREAM {
        q.push(i).expect("queue closed");
    }
    q.close();
}

fn greet(ch: Channel<String>) {
    for word in ["hello", "from", "a child"] {
        ch.send(format!("{word} ({})", multiproc::current_process().pid))
            .expect("channel closed");
    }
    ch.close();
}

fn queues() -> Result<(), Error> {
    step("Queues: a producer child streams 1,000,000 u64 to this process");
    let q = Queue::<u64>::new(4096)?;
    let start = Instant::now();
    let producer = Process::spawn(stream_numbers, q.clone())?;
    let (mut n, mut sum) = (0u64, 0u64);
    while let Ok(v) = q.pop() {
        n += 1;
        sum += v;
    }
    let secs = start.elapsed().as_secs_f64();
    producer.join()?;
    println!(
        "   received {n} values (sum ok: {}) in {:.0} ms: {:.1} M values/s (including the spawn)",
        sum == STREAM * (STREAM - 1) / 2,
        secs * 1e3,
        n as f64 / secs / 1e6
    );
    let ch = Channel::<String>::new(4096)?;
    let child = Process::spawn(greet, ch.clone())?;
    let words: Vec<String> = std::iter::from_fn(|| ch.recv().ok()).collect();
    child.join()?;
    println!("   a Channel<String> carried: {words:?}");
    Ok(())
}

// 6. A shared heap: Manager-style containers with no server, zero-copy buffers.
fn tally((words, d): (List<String>, Dict<String, u64>)) {
    for w in words.iter().expect("list") {
        d.update(&w, |n| *n.get_or_insert(0) += 1).expect("update");
    }
}

fn sum_buffer((_heap, ch): (Heap, Channel<HeapRc<[u64]>>)) -> (u64, u64) {
    let buf = ch.recv().expect("recv");
    (buf.offset(), buf.iter().sum())
}

fn heap_and_containers() -> Result<(), Error> {
    step("Shared heap: Dict, List, zero-copy buffers");
    let words = List::<String>::new()?;
    words.extend(
        "the cat saw the dog and the bird"
            .split(' ')
            .map(str::to_owned),
    )?;
    let d = Dict::<String, u64>::new()?;
    let start = Instant::now();
    let children: Vec<_> = (0..3)
        .map(|_| Process::spawn(tally, (words.clone(), d.clone())))
        .collect::<Result<_, _>>()?;
    for c in children {
        c.join()?;
    }
    let mut counts: Vec<_> = d.iter()?.collect();
    counts.sort();
    println!(
        "   3 children counted the words of a shared List into a shared Dict in {:.1?}: {counts:?}",
        start.elapsed()
    );
    let heap = Heap::new(256 << 20)?; // 256 MiB at most; pages are taken only when touched
    let ch = Channel::<HeapRc<[u64]>>::new(4096)?;
    let child = Process::spawn(sum_buffer, (heap.clone(), ch.clone()))?;
    let mut buf = heap.alloc_zeroed_slice::<u64>(1 << 17)?; // 1 MiB
    buf.iter_mut().enumerate().for_each(|(i, x)| *x = i as u64);
    let shared = buf.into_shared()?;
    let sent = Instant::now();
    ch.send(shared.clone()).map_err(|_| Error::Closed)?;
    let (offset, sum) = child.join()?;
    println!(
        "   a 1 MiB buffer went to a child as an offset ({offset} = {}, no copy): sum {sum}, send+join {:.1?}",
        shared.offset(),
        sent.elapsed()
    );
    let stats = heap.stats()?;
    println!(
        "   heap: {} objects, {} KiB used, largest free block {} MiB",
        stats.objects,
        stats.used >> 10,
        stats.largest_free >> 20
    );
    Ok(())
}

// 7. Failures come back as values.
fn explode(n: u32) -> u32 {
    panic!("worker {n} gave up")
}

fn sleepy(_: ()) {
    std::thread::sleep(Duration::from_secs(60));
}

fn failures() -> Result<(), Error> {
    step("Failures are values");
    match Process::spawn(explode, 3)?.join() {
        Err(Error::ChildPanicked { message }) => println!("   a child panicked: {message:?}"),
        other => println!("   unexpected: {other:?}"),
    }
    let mut p = Process::builder().name("sleepy").spawn(sleepy, ())?;
    match p.join_timeout(Duration::from_millis(50)) {
        Err(Error::Timeout) => println!("   join_timeout on {:?} timed out after 50 ms", p.name()),
        other => println!("   unexpected: {other:?}"),
    }
    p.terminate()?;
    match p.join() {
        Err(Error::ChildSignaled { signal }) => {
            println!("   terminated it: killed by signal {signal}")
        }
        other => println!("   unexpected: {other:?}"),
    }
    Ok(())
}

// 7. A Pool: Python's Pool.map / apply_async / imap_unordered, surviving a worker's death.
fn square(x: u64) -> u64 {
    x * x
}

fn kill_self(_: ()) {
    // As the OOM killer would.
    std::process::abort();
}

fn pool() -> Result<(), Error> {
    step("Pool: map, apply_async, imap_unordered, a worker killed mid-task");
    let pool = multiproc::Pool::new(2)?;
    let t = Instant::now();
    let squares = match pool.map(square, 0..100_000u64) {
        Ok(v) => v,
        Err(e) => {
            println!("   map failed: {e}");
            return Ok(());
        }
    };
    println!(
        "   map of 100000 tasks on 2 workers: {:?} (sum {})",
        t.elapsed(),
        squares.iter().sum::<u64>()
    );
    let r = pool.apply_async(square, 12);
    println!("   apply_async(square, 12).get() = {:?}", r.get());
    let first: Vec<u64> = pool
        .imap_unordered(square, 1..=5u64)
        .filter_map(Result::ok)
        .collect();
    println!("   imap_unordered gave {first:?} (completion order)");
    let before = pool.pids();
    let died = pool.apply(kill_self, ());
    println!("   a task that kills its worker: {died:?}");
    let t = Instant::now();
    let answer = pool.apply(square, 7);
    let took = t.elapsed();
    // The replacement is a new process: give it a moment to be listed.
    let listed = Instant::now();
    while pool.pids().len() < pool.processes() && listed.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(1));
    }
    println!(
        "   the pool still answers: apply(square, 7) = {answer:?} ({took:?}); workers {before:?} -> {:?}",
        pool.pids()
    );
    Ok(())
}
