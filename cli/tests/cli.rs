//! The `multiproc` command end to end, against real segments made by this test and by a child
//! process killed while holding one.

use multiproc::{Process, Queue, Segment, Value};
use std::process::{Command, Output};
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
