//! Every crash point in `src/` is named by a crash test under `tests/`.

mod common;

// ---- Every crash point in the sources is exercised ------------------------------------------

/// The text of every `.rs` file under `dir`, recursively.
fn sources_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                out.push((path, text));
            }
        }
    }
    out
}

/// Every crash point in `src/` (found by scanning the code, so a new point cannot be missed) is
/// named by a crash test in `tests/`.
#[test]
fn every_crash_point_is_in_the_battery() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let tests: Vec<String> = sources_under(&root.join("tests"))
        .into_iter()
        .map(|(_, text)| text)
        .collect();
    let mut n = 0;
    for (path, src) in sources_under(&root.join("src")) {
        // Points are named inline (`crash::point("..")`) or, around a blocking loop's sleep,
        // in a `wait::Points { registered: "..", woke: ".." }`.
        let parts = ["crash::point(\"", "registered: \"", "woke: \""]
            .into_iter()
            .flat_map(|p| src.split(p).skip(1));
        for part in parts {
            let name = &part[..part.find('"').unwrap()];
            n += 1;
            let quoted = format!("\"{name}\"");
            assert!(
                tests.iter().any(|t| t.contains(&quoted)),
                "crash point {name} ({}) is in no crash test",
                path.display()
            );
        }
    }
    assert!(n >= 60, "found only {n} crash points");
}
