//! Paired runs of the process-start and segment comparisons: ours and its baseline alternate one
//! operation at a time (which goes first swaps every pair), so both see the same phase of a
//! noisy machine and the same process state. Criterion measures one benchmark after the other,
//! seconds apart; on a host whose speed changes between runs that alone can move a ratio by
//! 1.5x (see README "Performance").
//!
//! Comparisons (same operations as `benches/segments.rs`):
//! - `fork_start`: `ProcessBuilder::fork_spawn` + `join` of a trivial child vs `fork` + `_exit` +
//!   `waitpid`;
//! - `spawn_start`: `Process::spawn` + `join` vs a bare re-exec of this binary
//!   (`std::process::Command`, `main` exits at once);
//! - `segment_4KiB`: `Segment::create` + `open` + drop vs the `shared_memory` crate's;
//! - `pool_start`: `Pool::new(2)` + `join` (both workers started, served and exited) vs two
//!   `Process::spawn`s of a no-op + both `join`s (as `benches/pool.rs`'s `pool_start`).
//!
//! Per round: each side's median, the ratio of those medians, and the median and quartiles of
//! the per-pair ratio; after the rounds, the median over rounds of the per-pair median.
//!
//! `cargo bench --bench paired [-- FILTER] [--rounds N]`. Without `--bench` on the command line
//! (`cargo test --benches`) it runs one short round of each, as a smoke test.

mod common;

use common::ops::{
    bare_fork, bare_reexec, ours_fork, ours_segment, ours_spawn, shared_memory_segment,
};
use std::time::Instant;

/// One comparison: ours and its baseline, and how many pairs make a round.
struct Comparison {
    name: &'static str,
    ours: fn(),
    baseline: fn(),
    baseline_name: &'static str,
    pairs: usize,
}

const COMPARISONS: &[Comparison] = &[
    Comparison {
        name: "fork_start",
        ours: ours_fork,
        baseline: bare_fork,
        baseline_name: "bare_fork",
        pairs: 2000,
    },
    Comparison {
        name: "spawn_start",
        ours: ours_spawn,
        baseline: bare_reexec,
        baseline_name: "bare_reexec",
        pairs: 150,
    },
    Comparison {
        name: "pool_start",
        ours: || multiproc::Pool::new(2).expect("pool").join(),
        baseline: two_bare_spawns,
        baseline_name: "2_bare_spawns",
        pairs: 150,
    },
    Comparison {
        name: "segment_4KiB",
        ours: || ours_segment(segment_name()),
        baseline: || shared_memory_segment(segment_name()),
        baseline_name: "shared_memory",
        pairs: 20_000,
    },
];

fn main() {
    common::start();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let benching = args.iter().any(|a| a == "--bench");
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .map(|n| n.parse().expect("--rounds N"))
        .unwrap_or(if benching { 5 } else { 1 });
    // The first argument that is neither a flag nor a flag's value (criterion's flags are
    // accepted and ignored, so `cargo bench -- --warm-up-time 1` runs this file too).
    let takes_value = |flag: &str| {
        matches!(
            flag,
            "--rounds" | "--warm-up-time" | "--measurement-time" | "--sample-size"
        )
    };
    let filter = args
        .iter()
        .enumerate()
        .find(|(i, a)| !a.starts_with("--") && (*i == 0 || !takes_value(&args[i - 1])))
        .map(|(_, a)| a.as_str());
    for c in COMPARISONS {
        if filter.is_some_and(|f| !c.name.contains(f)) {
            continue;
        }
        let pairs = if benching { c.pairs } else { c.pairs / 20 };
        let mut medians = Vec::with_capacity(rounds);
        for round in 1..=rounds {
            common::Watchdog::arm();
            let r = run_round(c, pairs);
            common::Watchdog::disarm();
            println!(
                "{}/{round}: ours {}  {} {}  ratio of medians {:.3}  per pair: median {:.3} \
                 (quartiles {:.3}-{:.3}), {pairs} pairs",
                c.name,
                format_ns(r.ours),
                c.baseline_name,
                format_ns(r.baseline),
                r.ours / r.baseline,
                r.ratio[1],
                r.ratio[0],
                r.ratio[2],
            );
            medians.push(r.ratio[1]);
        }
        println!(
            "{}: ours / {} per-pair median over {rounds} rounds: {:.3} (rounds {})",
            c.name,
            c.baseline_name,
            median(&mut medians.clone()),
            medians
                .iter()
                .map(|m| format!("{m:.3}"))
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
}

/// One round's figures: each side's median time in ns, and the per-pair ratio's quartiles.
struct Round {
    ours: f64,
    baseline: f64,
    ratio: [f64; 3],
}

fn noop(_: ()) {}

fn two_bare_spawns() {
    let children: Vec<_> = (0..2)
        .map(|_| multiproc::Process::spawn(noop, ()).expect("spawn"))
        .collect();
    for child in children {
        child.join().expect("join");
    }
}

fn run_round(c: &Comparison, pairs: usize) -> Round {
    let warm_up = (pairs / 10).max(1);
    for _ in 0..warm_up {
        (c.ours)();
        (c.baseline)();
    }
    let time = |f: fn()| {
        let start = Instant::now();
        f();
        start.elapsed().as_nanos() as f64
    };
    let (mut ours, mut baseline, mut ratio) = (vec![], vec![], vec![]);
    for i in 0..pairs {
        let (o, b) = if i % 2 == 0 {
            let o = time(c.ours);
            (o, time(c.baseline))
        } else {
            let b = time(c.baseline);
            (time(c.ours), b)
        };
        ours.push(o);
        baseline.push(b);
        ratio.push(o / b);
    }
    ratio.sort_by(f64::total_cmp);
    let quantile = |q: f64| ratio[((ratio.len() - 1) as f64 * q).round() as usize];
    Round {
        ours: median(&mut ours),
        baseline: median(&mut baseline),
        ratio: [quantile(0.25), quantile(0.5), quantile(0.75)],
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn format_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} us", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

fn segment_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| common::unique_name("paired"))
}
