//! The `multiproc` command end to end, against real segments made by this test and by child
//! processes killed while holding one (or its lock).

use multiproc::heap::Heap;
use multiproc::sync::{Barrier, Event, LockError, Mutex, ReentrantMutex, RwLock, Semaphore};
use multiproc::{
    Channel, JoinableChannel, JoinableQueue, Process, Queue, Segment, Shared, SpscQueue, Value,
};
use std::process::{Command, Output};
use std::sync::atomic::AtomicU32;
use std::time::{Duration, Instant};

multiproc::test_support!();

fn multiproc_cmd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_multiproc"))
        .args(args)
        .output()
        .expect("run the multiproc binary")
}

fn stdout(out: &Output) -> String {
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn prefix(tag: &str) -> String {
    format!("mp-cli-{tag}-{}-", std::process::id())
}

#[test]
fn ls_and_info_show_objects_and_raw_segments() {
    let p = prefix("ls");
    let value = Value::create(&format!("{p}value"), 5u64).unwrap();
    let _queue = Queue::<u32>::create(&format!("{p}queue"), 16).unwrap();
    let _raw = Segment::create(&format!("{p}raw"), 4096).unwrap();
    value.persist();

    let table = stdout(&multiproc_cmd(&["ls", &p]));
    let line = |suffix: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{p}{suffix} ")))
            .unwrap_or_else(|| panic!("no {suffix} in\n{table}"))
            .to_owned()
    };
    assert!(line("value").contains("Value<u64>"), "{table}");
    assert!(line("value").contains("yes"), "persisted: {table}");
    assert!(line("queue").contains("Queue"), "{table}");
    assert!(line("raw").contains("(raw)"), "{table}");
    assert!(line("raw").contains("4096"), "{table}");

    let json = stdout(&multiproc_cmd(&["ls", &p, "--json"]));
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(parsed.as_array().unwrap().len(), 3, "{json}");

    let info = stdout(&multiproc_cmd(&["info", &format!("{p}value")]));
    assert!(info.contains("type:        Value<u64>"), "{info}");
    let me = std::process::id();
    assert!(
        info.contains(&format!("creator:     pid {me} (running)")),
        "{info}"
    );
    let info_json = stdout(&multiproc_cmd(&["info", &format!("{p}value"), "--json"]));
    let parsed: serde_json::Value = serde_json::from_str(&info_json).unwrap();
    assert_eq!(parsed["creator_pid"], me);
    assert_eq!(parsed["persisted"], true);

    // `rm` removes the persisted name; the open handle keeps working.
    stdout(&multiproc_cmd(&["rm", &format!("{p}value")]));
    assert!(matches!(
        Value::<u64>::open(&format!("{p}value")),
        Err(multiproc::Error::NotFound { .. })
    ));
    assert_eq!(value.get().unwrap(), 5);
}

#[test]
fn errors_are_messages_and_exit_codes() {
    let missing = format!("{}missing", prefix("err"));
    let out = multiproc_cmd(&["info", &missing]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no shared segment named"), "{err}");
    let out = multiproc_cmd(&["rm", &missing]);
    assert!(!out.status.success());
    let out = multiproc_cmd(&["info", "bad/name"]);
    assert!(!out.status.success());
}

/// Creates a named value, reports, then waits to be killed.
fn create_and_hang(name: String) {
    let _value = Value::create(&name, 1u32).unwrap();
    std::thread::sleep(Duration::from_secs(60));
}

#[test]
fn gc_removes_what_a_killed_creator_left() {
    let p = prefix("gc");
    let name = format!("{p}orphan");
    let child = Process::spawn(create_and_hang, name.clone()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Value::<u32>::open(&name).is_err() {
        assert!(Instant::now() < deadline, "the child never created {name}");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    assert!(child.join().is_err());

    let info = stdout(&multiproc_cmd(&["info", &name]));
    assert!(info.contains("(gone)"), "{info}");
    let dry = stdout(&multiproc_cmd(&["gc", &p, "--dry-run"]));
    assert!(dry.contains(&format!("would remove {name}")), "{dry}");
    assert!(Value::<u32>::open(&name).is_ok());
    let done = stdout(&multiproc_cmd(&["gc", &p]));
    assert!(done.contains(&format!("removed {name}")), "{done}");
    assert!(Value::<u32>::open(&name).is_err());
}

/// Takes the lock, keeps it (the guard is forgotten) and waits to be killed.
fn lock_and_hang(m: Shared<Mutex<u32>>) {
    std::mem::forget(m.lock().unwrap());
    std::thread::sleep(Duration::from_secs(60));
}

fn info_json(name: &str) -> serde_json::Value {
    let out = stdout(&multiproc_cmd(&["info", name, "--json"]));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn info_shows_a_mutex_owner_alive_then_dead() {
    let name = format!("{}mutex", prefix("owner"));
    let m = Shared::create(&name, Mutex::new(0u32)).unwrap();
    let free = stdout(&multiproc_cmd(&["info", &name]));
    assert!(free.contains("lock:        unlocked"), "{free}");

    let child = Process::spawn(lock_and_hang, m.clone()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(m.try_lock(), Err(LockError::WouldBlock)) {
        assert!(Instant::now() < deadline, "the child never took the lock");
        std::thread::sleep(Duration::from_millis(10));
    }
    let held = info_json(&name);
    assert_eq!(held["state"]["object"], "lock", "{held}");
    // The child runs its entry on a libtest thread: the tid is that thread's.
    assert_eq!(held["state"]["owner_pid"], child.pid(), "{held}");
    assert_eq!(held["state"]["owner_alive"], true, "{held}");
    let tid = held["state"]["owner_tid"].as_u64().unwrap();
    let text = stdout(&multiproc_cmd(&["info", &name]));
    assert!(
        text.contains(&format!(
            "held by tid {tid} of pid {} (running)",
            child.pid()
        )),
        "{text}"
    );

    child.kill().unwrap();
    assert!(child.join().is_err());
    let dead = info_json(&name);
    assert_eq!(dead["state"]["owner_alive"], false, "{dead}");
    assert_eq!(dead["state"]["owner_tid"], tid, "{dead}");
    assert_eq!(dead["state"]["consistency"], "consistent", "{dead}");
    // Inspecting changed nothing: the next locker is the one told of the death.
    match m.lock() {
        Err(LockError::OwnerDied(mut g)) => g.make_consistent(),
        other => panic!("expected OwnerDied, got {:?}", other.map(|_| ())),
    }
}

#[test]
fn info_shows_queues_sync_primitives_and_heaps() {
    let p = prefix("state");
    let n = |s: &str| format!("{p}{s}");

    let q = Queue::<u32>::create(&n("queue"), 16).unwrap();
    for i in 0..3 {
        q.push(i).unwrap();
    }
    q.close();
    let text = stdout(&multiproc_cmd(&["info", &n("queue")]));
    for line in ["length:      3", "capacity:    16", "closed:      yes"] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    let spsc = SpscQueue::<u64>::create(&n("spsc"), 8).unwrap();
    spsc.producer().unwrap().push(1).unwrap();
    let j = info_json(&n("spsc"));
    assert_eq!(
        (
            &j["state"]["object"],
            &j["state"]["len"],
            &j["state"]["capacity"]
        ),
        (&"queue".into(), &1.into(), &8.into()),
        "{j}"
    );
    let ch = Channel::<String>::create(&n("channel"), 1024).unwrap();
    ch.send("a".into()).unwrap();
    ch.send("b".into()).unwrap();
    let j = info_json(&n("channel"));
    assert_eq!(
        (&j["state"]["len"], &j["state"]["closed"]),
        (&2.into(), &false.into()),
        "{j}"
    );
    let jq = JoinableQueue::<u32>::create(&n("joinable"), 4).unwrap();
    jq.push(1).unwrap();
    jq.push(2).unwrap();
    // The values are in the queue under the name, the task count under `name-tasks`.
    assert_eq!(info_json(&n("joinable"))["state"]["len"], 2);
    assert_eq!(
        info_json(&n("joinable-tasks"))["state"]["unfinished_tasks"],
        2
    );
    let jc = JoinableChannel::<String>::create(&n("jchannel"), 256).unwrap();
    jc.put("one".to_string()).unwrap();
    let j = info_json(&n("jchannel-tasks"));
    assert_eq!(j["state"]["unfinished_tasks"], 1, "{j}");
    assert_eq!(info_json(&n("jchannel"))["state"]["len"], 1);

    let sem = Shared::create(&n("sem"), Semaphore::new(3)).unwrap();
    sem.acquire();
    assert!(stdout(&multiproc_cmd(&["info", &n("sem")])).contains("value:       2"));
    let ev = Shared::create(&n("event"), Event::new()).unwrap();
    assert_eq!(info_json(&n("event"))["state"]["set"], false);
    ev.set();
    assert_eq!(info_json(&n("event"))["state"]["set"], true);
    let _barrier = Shared::create(&n("barrier"), Barrier::new(3).unwrap()).unwrap();
    let j = info_json(&n("barrier"));
    assert_eq!(
        (&j["state"]["parties"], &j["state"]["waiting"]),
        (&3.into(), &0.into()),
        "{j}"
    );
    let rw = Shared::create(&n("rwlock"), RwLock::new(0u64)).unwrap();
    let read = rw.read().unwrap();
    assert!(stdout(&multiproc_cmd(&["info", &n("rwlock")])).contains("read-locked by 1"));
    drop(read);
    // A reader thread that exits holding: its hold is shown as a dead reader's.
    std::thread::scope(|s| {
        s.spawn(|| std::mem::forget(rw.read().unwrap()))
            .join()
            .unwrap()
    });
    let j = info_json(&n("rwlock"));
    assert_eq!(
        (&j["state"]["readers"], &j["state"]["dead_readers"]),
        (&1.into(), &1.into()),
        "{j}"
    );
    assert!(stdout(&multiproc_cmd(&["info", &n("rwlock")])).contains("dead readers: 1"));
    // A writer (freeing that slot) that exits holding: the writer lock's holder is gone.
    std::thread::scope(|s| {
        s.spawn(|| std::mem::forget(rw.write().unwrap()))
            .join()
            .unwrap()
    });
    let j = info_json(&n("rwlock"));
    assert_eq!(
        (&j["state"]["readers"], &j["state"]["gate_closed"]),
        (&0.into(), &true.into()),
        "{j}"
    );
    assert_eq!(j["state"]["writer"]["owner_alive"], false, "{j}");
    assert!(
        stdout(&multiproc_cmd(&["info", &n("rwlock")])).contains("the next locker gets OwnerDied")
    );
    let value = Value::create(&n("value"), 1u64).unwrap();
    let guard = value.lock().unwrap();
    let j = info_json(&n("value"));
    assert_eq!(j["state"]["owner_alive"], true, "{j}");
    drop(guard);
    assert_eq!(
        info_json(&n("value"))["state"]["owner_tid"],
        serde_json::Value::Null
    );
    let array = multiproc::Array::<u8>::create(&n("array"), &[0; 4]).unwrap();
    let guard = array.lock().unwrap();
    assert_eq!(
        info_json(&n("array"))["state"]["owner_pid"],
        std::process::id()
    );
    drop(guard);
    let re = Shared::create(&n("rlock"), ReentrantMutex::new(AtomicU32::new(0))).unwrap();
    let (outer, inner) = (re.lock().unwrap(), re.lock().unwrap());
    let j = info_json(&n("rlock"));
    assert_eq!(j["state"]["object"], "lock", "{j}");
    assert_eq!(j["state"]["owner_pid"], std::process::id(), "{j}");
    drop((inner, outer));

    let heap = Heap::create(&n("heap"), 1 << 20).unwrap();
    let _boxed = heap.alloc(7u64).unwrap();
    let stats = heap.stats().unwrap();
    let j = info_json(&n("heap"));
    assert_eq!(j["state"]["stats"]["objects"], stats.objects, "{j}");
    assert_eq!(j["state"]["stats"]["used"], stats.used, "{j}");
    let text = stdout(&multiproc_cmd(&["info", &n("heap")]));
    assert!(text.contains("objects:     1"), "{text}");
}

#[test]
fn info_on_a_scribbled_segment_says_corrupted() {
    let name = format!("{}queue", prefix("garbage"));
    let _q = Queue::<u32>::create(&name, 16).unwrap();
    // Overwrite the ring's header (the payload starts after the 256-byte segment header).
    let raw = Segment::open(&name).unwrap();
    raw.write_pod(256, &[0xA5u8; 128]).unwrap();
    let out = multiproc_cmd(&["info", &name]);
    assert!(!out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("corrupted"), "{err}");
}
