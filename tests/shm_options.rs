//! `ShmOptions` reach the segment through every typed constructor (`*_with`):
//! `allow_foreign` lets `open_with` accept a group-writable segment the default refuses,
//! `init_timeout` bounds how long `open_with` waits for a creator that never publishes, and
//! `populate` faults the pages in at creation (measured in a child process, where nothing else
//! maps shared memory meanwhile).

mod common;

use common::{unique, watchdog};
use multiproc::heap::{Cell, Dict, Heap, List};
use multiproc::shm::ShmOptions;
use multiproc::{
    Array, Channel, Error, JoinableChannel, JoinableQueue, Process, Queue, Segment, Shared,
    SpscQueue, Value,
};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

multiproc::test_support!();

/// The segments a named object of each kind keeps in `/dev/shm`.
fn files(name: &str, kind: &str) -> Vec<String> {
    match kind {
        "JoinableQueue" | "JoinableChannel" => vec![name.to_owned(), format!("{name}-tasks")],
        _ => vec![name.to_owned()],
    }
}

fn chmod(name: &str, mode: u32) {
    let path = format!("/dev/shm/{name}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A created object, kept alive while the test looks at it.
type Kept = Result<Box<dyn std::any::Any>, Error>;

/// One row per kind: creates it under a name with `create_with`, then opens it with `open`
/// (default options) and with `open_with`/`open_or_create_with` under `opts`.
struct Kind {
    name: &'static str,
    /// Creates the object (kept alive by the returned box) under the name.
    create: fn(&str, &ShmOptions) -> Kept,
    /// Opens it with the defaults.
    open: fn(&str) -> Result<(), Error>,
    /// Opens it with `opts`.
    open_with: fn(&str, &ShmOptions) -> Result<(), Error>,
    /// Opens or creates it with `opts`.
    open_or_create_with: fn(&str, &ShmOptions) -> Result<(), Error>,
}

macro_rules! kind {
    ($label:expr, $ty:ty, create: $create:expr, open_or_create: $ooc:expr) => {
        Kind {
            name: $label,
            create: |n, o| $create(n, o).map(|v: $ty| Box::new(v) as Box<dyn std::any::Any>),
            open: |n| <$ty>::open(n).map(drop),
            open_with: |n, o| <$ty>::open_with(n, o).map(drop),
            open_or_create_with: |n, o| $ooc(n, o).map(|_: $ty| ()),
        }
    };
}

fn kinds() -> Vec<Kind> {
    vec![
        kind!("Value", Value<u64>,
            create: |n, o| Value::create_with(n, 7u64, o),
            open_or_create: |n, o| Value::open_or_create_with(n, 8u64, o)),
        kind!("Shared", Shared<AtomicU64>,
            create: |n, o| Shared::create_with(n, AtomicU64::new(7), o),
            open_or_create: |n, o| Shared::open_or_create_with(n, AtomicU64::new(8), o)),
        kind!("Array", Array<u32>,
            create: |n, o| Array::create_with(n, &[1u32, 2, 3], o),
            open_or_create: |n, o| Array::open_or_create_with(n, &[4u32], o)),
        kind!("Queue", Queue<u64>,
            create: |n, o| Queue::create_with(n, 8, o),
            open_or_create: |n, o| Queue::open_or_create_with(n, 8, o)),
        kind!("SpscQueue", SpscQueue<u64>,
            create: |n, o| SpscQueue::create_with(n, 8, o),
            open_or_create: |n, o| SpscQueue::open_or_create_with(n, 8, o)),
        kind!("Channel", Channel<String>,
            create: |n, o| Channel::create_with(n, 256, o),
            open_or_create: |n, o| Channel::open_or_create_with(n, 256, o)),
        kind!("JoinableQueue", JoinableQueue<u64>,
            create: |n, o| JoinableQueue::create_with(n, 8, o),
            open_or_create: |n, o| JoinableQueue::open_or_create_with(n, 8, o)),
        kind!("JoinableChannel", JoinableChannel<String>,
            create: |n, o| JoinableChannel::create_with(n, 256, o),
            open_or_create: |n, o| JoinableChannel::open_or_create_with(n, 256, o)),
        kind!("Heap", Heap,
            create: |n, o| Heap::create_with(n, 1 << 20, o),
            open_or_create: |n, o| Heap::open_or_create_with(n, 1 << 20, o)),
        kind!("Dict", Dict<String, u64>,
            create: Dict::create_with,
            open_or_create: Dict::open_or_create_with),
        kind!("List", List<u64>,
            create: List::create_with,
            open_or_create: List::open_or_create_with),
        kind!("Cell", Cell<String>,
            create: |n, o| Cell::create_with(n, "seven".to_string(), o),
            open_or_create: |n, o| Cell::open_or_create_with(n, "eight".to_string(), o)),
    ]
}

#[test]
fn allow_foreign_reaches_every_open() {
    watchdog(60, || {
        for kind in kinds() {
            let name = unique(kind.name);
            let created = (kind.create)(&name, &ShmOptions::new()).unwrap();
            (kind.open)(&name).unwrap_or_else(|e| panic!("{}: plain open: {e}", kind.name));
            for file in files(&name, kind.name) {
                chmod(&file, 0o660);
            }
            let foreign = ShmOptions::new().allow_foreign(true);
            assert!(
                matches!((kind.open)(&name), Err(Error::PermissionDenied { .. })),
                "{}: the default open accepted a group-writable segment",
                kind.name
            );
            assert!(
                matches!(
                    (kind.open_or_create_with)(&name, &ShmOptions::new()),
                    Err(Error::PermissionDenied { .. })
                ),
                "{}: open_or_create_with(defaults) accepted a group-writable segment",
                kind.name
            );
            (kind.open_with)(&name, &foreign)
                .unwrap_or_else(|e| panic!("{}: open_with(allow_foreign): {e}", kind.name));
            (kind.open_or_create_with)(&name, &foreign).unwrap_or_else(|e| {
                panic!("{}: open_or_create_with(allow_foreign): {e}", kind.name)
            });
            drop(created);
        }
    });
}

#[test]
fn open_or_create_with_opens_what_exists() {
    watchdog(30, || {
        let name = unique("ooc");
        let v = Value::create_with(&name, 7u64, &ShmOptions::new()).unwrap();
        let again = Value::open_or_create_with(&name, 8u64, &ShmOptions::new()).unwrap();
        assert_eq!(again.get().unwrap(), 7);
        drop(v);
        let name = unique("ooc-cell");
        let c = Cell::create_with(&name, "seven".to_string(), &ShmOptions::new()).unwrap();
        let again =
            Cell::open_or_create_with(&name, "eight".to_string(), &ShmOptions::new()).unwrap();
        assert_eq!(again.get().unwrap(), "seven");
        drop(c);
    });
}

/// A creator that never publishes: a zeroed segment under the name (its header says "not
/// initialised yet"). `open_with` waits `init_timeout` for it, not the default 1 s.
#[test]
fn init_timeout_reaches_every_open() {
    const WAIT: Duration = Duration::from_millis(1600);
    watchdog(60, || {
        let threads: Vec<_> = kinds()
            .into_iter()
            .map(|kind| {
                std::thread::spawn(move || {
                    let name = unique(kind.name);
                    let _raw: Vec<Segment> = files(&name, kind.name)
                        .iter()
                        .map(|f| Segment::create(f, 1 << 16).unwrap())
                        .collect();
                    let opts = ShmOptions::new().init_timeout(WAIT);
                    let start = Instant::now();
                    let r = (kind.open_with)(&name, &opts);
                    let took = start.elapsed();
                    assert!(r.is_err(), "{}: opened an unpublished segment", kind.name);
                    assert!(
                        took >= WAIT,
                        "{}: gave up after {took:?}, before init_timeout {WAIT:?}",
                        kind.name
                    );
                    let start = Instant::now();
                    let r =
                        (kind.open_with)(&name, &ShmOptions::new().init_timeout(Duration::ZERO));
                    assert!(r.is_err());
                    let took = start.elapsed();
                    assert!(
                        took < WAIT,
                        "{}: init_timeout(0) waited {took:?}",
                        kind.name
                    );
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    });
}

/// `RssShmem` of this process, in KiB.
fn rss_shmem_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssShmem:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssShmem in /proc/self/status")
}

const BIG: usize = 8 << 20;

/// In a child: how many KiB of shared memory each constructor made resident, without and with
/// `populate`. Only constructors whose initialisation leaves most pages untouched are measured:
/// the rings (queues, channels) write their whole region at creation, so populating them
/// changes nothing visible; `Value`/`Shared` are one page.
fn resident_growth(_: ()) -> Vec<(String, u64, u64)> {
    fn grow<T>(make: impl Fn(&ShmOptions) -> Result<T, Error>, populate: bool) -> u64 {
        let before = rss_shmem_kib();
        let keep = make(&ShmOptions::new().populate(populate)).unwrap();
        let after = rss_shmem_kib();
        drop(keep);
        after.saturating_sub(before)
    }
    fn row<T>(label: &str, make: impl Fn(&ShmOptions) -> Result<T, Error>) -> (String, u64, u64) {
        (label.to_owned(), grow(&make, false), grow(&make, true))
    }
    let named = unique("populate");
    vec![
        row("Array::zeroed_with", |o| Array::<u8>::zeroed_with(BIG, o)),
        row("Array::create_zeroed_with", |o| {
            Array::<u8>::create_zeroed_with(&named, BIG, o)
        }),
        row("Heap::new_with", |o| Heap::new_with(BIG, o)),
        row("Heap::create_with", |o| Heap::create_with(&named, BIG, o)),
    ]
}

#[test]
fn populate_reaches_every_create() {
    watchdog(60, || {
        let rows = Process::spawn(resident_growth, ()).unwrap().join().unwrap();
        assert_eq!(rows.len(), 4);
        let big_kib = (BIG / 1024) as u64;
        for (label, plain, populated) in &rows {
            eprintln!("{label}: {plain} KiB resident plain, {populated} KiB populated");
        }
        for (label, plain, populated) in rows {
            assert!(
                populated >= big_kib * 9 / 10,
                "{label}: populate made only {populated} KiB resident"
            );
            assert!(
                plain < big_kib / 4,
                "{label}: without populate {plain} KiB were resident already"
            );
        }
    });
}
