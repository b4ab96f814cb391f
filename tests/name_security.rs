//! Name security: squatted names, symlinks, foreign owners, loose modes, short files, read-only
//! openers. Each case gets its own documented error.

use multiproc::shm::ShmOptions;
use multiproc::{Error, Segment, Value};
use std::os::unix::fs::PermissionsExt;

fn unique(tag: &str) -> String {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "mp-sec-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn path(name: &str) -> String {
    format!("/dev/shm/{name}")
}

/// Removes the file at the end of a test, whatever happened.
struct Cleanup(String);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(path(&self.0));
    }
}

#[test]
fn squatted_name_is_already_exists_and_never_adopted() {
    let name = unique("squat");
    let _c = Cleanup(name.clone());
    std::fs::write(path(&name), vec![0xAA; 4096]).unwrap();
    std::fs::set_permissions(path(&name), PermissionsExt::from_mode(0o600)).unwrap();
    assert!(matches!(
        Value::create(&name, 1u32),
        Err(Error::AlreadyExists { .. })
    ));
    // open_or_create must not take the squatter's garbage for a value.
    assert!(matches!(
        Value::open_or_create(&name, 1u32),
        Err(Error::Corrupted(_))
    ));
    // And our failed create left the squatter's file as it was.
    assert_eq!(std::fs::read(path(&name)).unwrap(), vec![0xAA; 4096]);
}

#[test]
fn symlink_at_the_name_is_refused() {
    let name = unique("symlink");
    let target = unique("target");
    let _c = (Cleanup(name.clone()), Cleanup(target.clone()));
    let real = Value::create(&target, 5u64).unwrap();
    std::os::unix::fs::symlink(path(&target), path(&name)).unwrap();
    let err = Value::<u64>::open(&name).unwrap_err();
    assert!(
        matches!(
            err,
            Error::PermissionDenied {
                reason: "the name is a symbolic link"
            }
        ),
        "{err:?}"
    );
    // Creating over a symlink fails too, and never writes through it.
    assert!(matches!(
        Value::create(&name, 9u64),
        Err(Error::AlreadyExists { .. })
    ));
    assert_eq!(real.get().unwrap(), 5);
}

#[test]
fn segment_of_another_user_is_refused() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: changing a file's owner needs root");
        return;
    }
    let name = unique("foreign");
    let _c = Cleanup(name.clone());
    let v = Value::create(&name, 1u64).unwrap();
    v.persist();
    std::os::unix::fs::chown(path(&name), Some(65534), Some(65534)).unwrap();
    let err = Value::<u64>::open(&name).unwrap_err();
    assert!(
        matches!(
            err,
            Error::PermissionDenied {
                reason: "segment is owned by another user"
            }
        ),
        "{err:?}"
    );
    let opts = ShmOptions::new().allow_foreign(true);
    assert!(
        Segment::open_with(&name, &opts).is_ok(),
        "explicit opt-in opens it"
    );
}

#[test]
fn segment_writable_by_group_or_others_is_refused() {
    for mode in [0o620, 0o602, 0o666] {
        let name = unique("mode");
        let _c = Cleanup(name.clone());
        let v = Value::create(&name, 1u64).unwrap();
        std::fs::set_permissions(path(&name), PermissionsExt::from_mode(mode)).unwrap();
        let err = Value::<u64>::open(&name).unwrap_err();
        assert!(
            matches!(
                err,
                Error::PermissionDenied {
                    reason: "segment is writable by group or others"
                }
            ),
            "{mode:o}: {err:?}"
        );
        drop(v);
    }
}

#[test]
fn created_segments_are_private_to_the_user() {
    let name = unique("private");
    let _v = Value::create(&name, 1u64).unwrap();
    let mode = std::fs::metadata(path(&name)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn too_short_segment_is_corrupted() {
    let name = unique("short");
    let _c = Cleanup(name.clone());
    std::fs::write(path(&name), b"MPROCSEG").unwrap();
    std::fs::set_permissions(path(&name), PermissionsExt::from_mode(0o600)).unwrap();
    assert!(matches!(
        Value::<u64>::open(&name),
        Err(Error::Corrupted(_))
    ));
}

#[test]
fn read_only_opener_maps_without_write_permission() {
    let name = unique("ro");
    let seg = Segment::create(&name, 4096).unwrap();
    let ro = Segment::open_read_only(&name).unwrap();
    assert!(!ro.is_writable());
    let addr = ro.as_ptr() as usize;
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let line = maps
        .lines()
        .find(|l| usize::from_str_radix(l.split('-').next().unwrap(), 16).unwrap() == addr)
        .expect("mapping listed");
    assert!(
        line.split_whitespace().nth(1).unwrap().starts_with("r-"),
        "{line}"
    );
    drop(seg);
}
