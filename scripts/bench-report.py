#!/usr/bin/env python3
"""Run the benches briefly and report: one table of operation / ours / raw limit / each peer /
ratios, as text, JSON (target/bench-report/report.json) and SVG (target/bench-report/report.svg).

Standard library only. Usage (from the repository root):

  python3 scripts/bench-report.py                 # run every bench + the Python comparison
  python3 scripts/bench-report.py --no-run        # only read what target/criterion holds
  python3 scripts/bench-report.py --bench queues  # run one bench file (repeatable)
  python3 scripts/bench-report.py --warm-up 1 --measurement 3 --skip-python

After the criterion benches it runs `benches/paired.rs` (ours and its baseline alternating one
operation at a time) and appends its per-pair ratios: on a machine whose speed changes between
benchmarks these are the steadier figures for process start and segments.

Results come from criterion's target/criterion/**/new/{benchmark,estimates}.json (the median of
the time per iteration) and from scripts/python_multiprocessing_bench.py's JSON. Rows whose
"ours" benchmark does not exist yet print "-".
"""

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CRITERION = os.path.join(ROOT, "target", "criterion")
OUT_DIR = os.path.join(ROOT, "target", "bench-report")
BENCHES = ["segments", "locks", "blocking", "queues", "heap", "pool"]
STAT = "median"  # or "best": the fastest sample (set by --stat)

# Peer columns of the table, in order: (key, header).
COLUMNS = [
    ("std", "std"),
    ("pthread", "pthread"),
    ("posix_sem", "posix_sem"),
    ("raw_sync", "raw_sync"),
    ("shared_memory", "shm_crate"),
    ("pipe", "pipe"),
    ("unix_socket", "unix_sock"),
    ("ipc_channel", "ipc_chan"),
    ("crossbeam", "crossbeam"),
    ("iceoryx2", "iceoryx2"),
    ("python", "python"),
]

# One row per operation. kind "time": lower is better, cells show time per operation;
# kind "items"/"bytes": cells show throughput (criterion's time is per item / per message of
# `size` bytes). "limit" is the raw hardware/OS limit; "peers" maps a column to a benchmark id;
# "target" is the goal as (base: "limit" or a column, op, factor) on the row's metric.
ROWS = [
    dict(op="u64 round trip, busy-poll (Queue)", kind="time",
         ours="roundtrip_u64/ours_queue_busy", limit="roundtrip_u64/raw_atomic",
         peers={"iceoryx2": "roundtrip_u64/iceoryx2"}, target=("limit", "<=", 2.0)),
    dict(op="u64 round trip, busy-poll (Queue) vs a line per direction", kind="time",
         ours="roundtrip_u64/ours_queue_busy", limit="roundtrip_u64/raw_atomic_two_lines",
         peers={}, target=None),
    dict(op="u64 round trip, busy-poll (SpscQueue)", kind="time",
         ours="roundtrip_u64/ours_spsc_busy", limit="roundtrip_u64/raw_atomic",
         peers={"iceoryx2": "roundtrip_u64/iceoryx2"}, target=None),
    dict(op="u64 round trip, blocking", kind="time",
         ours="roundtrip_u64/ours_queue_blocking", limit="roundtrip_u64/raw_futex",
         peers={"pipe": "roundtrip_u64/pipe", "unix_socket": "roundtrip_u64/unix_socket",
                "ipc_channel": "roundtrip_u64/ipc_channel",
                "python": "roundtrip_u64/python_queue"},
         target=("limit", "<=", 1.15)),
    dict(op="Pipe round trip (u64)", kind="time",
         ours="roundtrip_u64/ours_pipe", limit="roundtrip_u64/raw_futex",
         peers={"pipe": "roundtrip_u64/pipe", "unix_socket": "roundtrip_u64/unix_socket",
                "ipc_channel": "roundtrip_u64/ipc_channel",
                "python": "roundtrip_u64/python_pipe"}),
    dict(op="Event ping-pong", kind="time",
         ours="pingpong_blocking/ours_event", limit="pingpong_blocking/raw_futex",
         peers={"posix_sem": "pingpong_blocking/posix_sem", "pipe": "pingpong_blocking/pipe",
                "raw_sync": "pingpong_blocking/raw_sync_event"},
         target=("limit", "<=", 1.15)),
    dict(op="Semaphore ping-pong", kind="time",
         ours="pingpong_blocking/ours_semaphore", limit="pingpong_blocking/raw_futex",
         peers={"posix_sem": "pingpong_blocking/posix_sem", "pipe": "pingpong_blocking/pipe",
                "raw_sync": "pingpong_blocking/raw_sync_event"},
         target=("limit", "<=", 1.15)),
    dict(op="Barrier(2) round", kind="time",
         ours="barrier_2proc/ours", limit=None,
         peers={"pthread": "barrier_2proc/pthread_barrier", "python": "barrier_2proc/python"}),
    dict(op="Mutex lock+unlock, uncontended", kind="time",
         ours="mutex_uncontended/ours", limit="mutex_uncontended/std_mutex",
         peers={"std": "mutex_uncontended/std_mutex",
                "pthread": "mutex_uncontended/pthread_robust",
                "raw_sync": "mutex_uncontended/raw_sync", "python": "mutex_uncontended/python"},
         target=("std", "<=", 1.3)),
    dict(op="Value += 1 under its lock", kind="time",
         ours="value_lock/ours", limit="mutex_uncontended/std_mutex",
         peers={"std": "mutex_uncontended/std_mutex",
                "pthread": "mutex_uncontended/pthread_robust", "python": "value_lock/python"}),
    dict(op="Mutex increment, 2 procs contending", kind="time",
         ours="mutex_contended_2proc/ours", limit=None,
         peers={"std": "mutex_contended_2proc/std_mutex_2threads",
                "pthread": "mutex_contended_2proc/pthread_robust",
                "raw_sync": "mutex_contended_2proc/raw_sync"},
         target=("raw_sync", "<=", 1.0)),
    dict(op="Segment create+open+close 4 KiB", kind="time",
         ours="segment_4KiB/ours", limit=None,
         peers={"shared_memory": "segment_4KiB/shared_memory"},
         target=("shared_memory", "<=", 1.0)),
    dict(op="Named Shared<u64> create+open+close", kind="time",
         ours="segment_4KiB/ours_typed", limit=None,
         peers={"shared_memory": "segment_4KiB/shared_memory"}),
    dict(op="Anonymous segment 4 KiB", kind="time",
         ours="segment_4KiB/ours_anonymous", limit=None, peers={}),
    dict(op="Process spawn+join (re-exec)", kind="time",
         ours="process_start/ours_spawn", limit="process_start/bare_reexec",
         peers={"python": "process_start/python_spawn"}, target=("limit", "<=", 1.2)),
    dict(op="Process start+join (fork)", kind="time",
         ours="process_start/ours_fork", limit="process_start/bare_fork",
         peers={"python": "process_start/python_fork"}, target=("limit", "<=", 1.2)),
    dict(op="Process start+join (fork), same-state bare fork", kind="time",
         ours="process_start/ours_fork", limit="process_start/bare_fork_after",
         peers={}, target=("limit", "<=", 1.2)),
    dict(op="SpscQueue one-way u64", kind="items",
         ours="throughput_u64/ours_spsc", limit="throughput_u64/raw_ring",
         peers={"crossbeam": "throughput_u64/crossbeam_array_queue"},
         target=("limit", ">=", 0.75)),
    dict(op="SpscQueue one-way u64, batches of 64", kind="items",
         ours="throughput_u64/ours_spsc_batch", limit="throughput_u64/raw_ring",
         peers={"crossbeam": "throughput_u64/crossbeam_array_queue"}),
    dict(op="Queue (MPMC) one-way u64", kind="items",
         ours="throughput_u64/ours_queue", limit="throughput_u64/raw_ring",
         peers={"crossbeam": "throughput_u64/crossbeam_array_queue"}),
    # Pool (benches/pool.rs; 2 workers, as the Python rows). Times per task unless said.
    dict(op="Pool.map, 10^6 trivial tasks (per task)", kind="time",
         ours="pool_map_1e6/ours", limit=None,
         peers={"python": "pool_map_1e6/python"}, target=("python", "<=", 0.2)),
    dict(op="Pool.apply_async, one task each (per task)", kind="time",
         ours="pool_apply_async/ours", limit=None,
         peers={"python": "pool_apply_async/python"}, target=("python", "<=", 0.05)),
    dict(op="Pool.apply round trip, idle pool", kind="time",
         ours="pool_apply/ours", limit="pool_apply/unix_socket",
         peers={"python": "pool_apply/python", "procspawn": "pool_apply/procspawn"},
         target=("abs", "<=", 10e3)),
    dict(op="Pool ~1 ms CPU tasks (per task) vs rayon (limit)", kind="time",
         ours="pool_cpu_1ms/ours", limit="pool_cpu_1ms/rayon",
         peers={}, target=("limit", "<=", 1 / 0.95)),
    dict(op="Pool: 63 short tasks queued behind a 100 ms one (time until done)", kind="time",
         ours="pool_behind_long/ours", limit=None,
         peers={"python": "pool_behind_long/python"}, target=("python", "<=", 1.0)),
    dict(op="Pool(2) start + join vs 2 bare spawns (limit)", kind="time",
         ours="pool_start/ours", limit="pool_start/bare_spawn",
         peers={"python": "pool_start/python_spawn", "procspawn": "pool_start/procspawn"},
         target=("limit", "<=", 1.2)),
    dict(op="Pool max_tasks_per_child: longest gap between results vs one worker start",
         kind="time", ours="pool_recycle/gap", limit="pool_recycle/worker_start",
         peers={}, target=("limit", "<=", 1.0)),
]
for group, label in (("dict_u64", "Dict<u64, u64>"), ("dict_serde", "Dict<String, Vec<u32>>")):
    for op, verb, goal in (("get", "get", 150 if group == "dict_u64" else 1000),
                           ("insert", "insert", 300 if group == "dict_u64" else 1000)):
        ROWS.append(dict(op=f"{label} {verb}, uncontended", kind="time",
                         ours=f"{group}/ours_{op}", limit=None,
                         peers={"std": f"{group}/std_{op}", "python": f"{group}/python_{op}"},
                         target=("abs", "<=", goal)))
for via, label in (("queue_handle", "a HeapRc as a Pod RcHandle through a Queue"),
                   ("queue_handle_spin", "the same, receiver polling (no wake-up)"),
                   ("channel_heap_rc", "a HeapRc through a Channel")):
    ROWS.append(dict(op=f"1 MiB hand-over one way: {label}", kind="time",
                     ours=f"handover_1MiB_oneway/ours_{via}/1048576",
                     limit="handover_1MiB_oneway/memcpy/1048576",
                     peers={"Channel<Vec<u8>> (copies)":
                            "handover_1MiB_oneway/ours_channel_vec/1048576"},
                     target=("abs", "<=", 2000)))
for n in (1, 2):
    ROWS.append(dict(op=f"Dict<u64, u64> get with {n} reader(s) in all (processes / threads)",
                     kind="time", ours=f"dict_read_scaling/ours_get/{n}", limit=None,
                     peers={"std": f"dict_read_scaling/std_get/{n}"}))
for scenario, label in (("blocked", "waiter already blocked"), ("late", "locker arriving later")):
    for stat in ("p50", "p99"):
        ROWS.append(dict(op=f"Owner death detected, {label} ({stat})", kind="time",
                         ours=f"owner_death/ours_{scenario}_{stat}", limit=None,
                         peers={"pthread": f"owner_death/pthread_robust_{scenario}_{stat}"},
                         target=("abs", "<=", 10e6) if stat == "p99" else None))
for size, label in ((64, "64 B"), (4096, "4 KiB"), (1 << 20, "1 MiB")):
    ROWS.append(dict(op=f"Channel {label} messages", kind="bytes", size=size,
                     ours=f"message_bytes/ours_channel/{size}",
                     limit=f"message_bytes/memcpy/{size}",
                     peers={"raw copy ring (copy in + out limit)": f"message_bytes/raw_copy_ring/{size}",
                            "pipe": f"message_bytes/pipe/{size}",
                            "ipc_channel": f"message_bytes/ipc_channel/{size}"},
                     target=("limit", ">=", 0.8) if size == 1 << 20 else None))
    ROWS.append(dict(op=f"Channel send_bytes/recv_bytes_into {label} messages", kind="bytes",
                     size=size, ours=f"message_bytes/ours_send_bytes/{size}",
                     limit=f"message_bytes/memcpy/{size}",
                     peers={"raw copy ring (copy in + out limit)": f"message_bytes/raw_copy_ring/{size}",
                            "Channel<Bytes> send/recv": f"message_bytes/ours_channel/{size}",
                            "pipe": f"message_bytes/pipe/{size}"}))


def scaling_rows(results):
    """One row per producer count found in mpmc_scaling and per process count in
    mutex_scaling."""
    def counts(group):
        return sorted({int(k.rsplit("/", 1)[1]) for k in results if k.startswith(group + "/")})
    rows = [dict(op=f"Queue {n}P x {n}C threads/procs", kind="items",
                 ours=f"mpmc_scaling/ours_queue/{n}", limit=None,
                 peers={"crossbeam": f"mpmc_scaling/crossbeam_array_queue/{n}"})
            for n in counts("mpmc_scaling")]
    rows += [dict(op=f"Mutex increment, {n} procs", kind="time",
                  ours=f"mutex_scaling/ours/{n}", limit=None,
                  peers={"pthread": f"mutex_scaling/pthread_robust/{n}"})
             for n in counts("mutex_scaling")]
    return rows


# --- running ----------------------------------------------------------------------------------

def run(cmd, **kw):
    print("+ " + " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, cwd=ROOT, **kw)


def run_benches(benches, warm_up, measurement, sample_size):
    cmd = ["cargo", "bench"]
    for b in benches:
        cmd += ["--bench", b]
    cmd += ["--", "--warm-up-time", str(warm_up), "--measurement-time", str(measurement),
            "--noplot"]
    if sample_size:
        cmd += ["--sample-size", str(sample_size)]
    log = os.path.join(OUT_DIR, "cargo-bench.log")
    with open(log, "w") as f:
        r = run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        sys.exit(f"cargo bench failed (exit {r.returncode}); see {log}")


PAIRED_TARGETS = {"fork_start": 1.2, "spawn_start": 1.2, "segment_4KiB": 1.0}


def run_paired(rounds):
    """Runs benches/paired.rs (output kept in paired.txt); {comparison: {...}} parsed from it."""
    r = run(["cargo", "bench", "--bench", "paired", "--", "--rounds", str(rounds)],
            capture_output=True, text=True)
    out = os.path.join(OUT_DIR, "paired.txt")
    with open(out, "w") as f:
        f.write(r.stdout)
    if r.returncode != 0:
        print(f"warning: the paired bench failed (exit {r.returncode})", file=sys.stderr)
        return {}
    return parse_paired(r.stdout)


def parse_paired(text):
    paired = {}
    for line in text.splitlines():
        # "fork_start/3: ours 204.47 us  bare_fork 171.88 us  ratio of medians ..."
        head, _, rest = line.partition(": ours ")
        if "/" in head and rest:
            name = head.split("/")[0]
            words = rest.split()
            paired.setdefault(name, {"baseline": words[2], "rounds": []})["rounds"].append(
                {"ours": " ".join(words[0:2]), "baseline": " ".join(words[3:5]),
                 "pair_median": float(rest.split("per pair: median ")[1].split()[0])})
        elif " per-pair median over " in line:
            name = line.split(":")[0]
            paired.setdefault(name, {"rounds": []})["median"] = float(
                line.split("rounds: ")[1].split()[0])
    return paired


def render_paired(paired):
    lines = ["", "Paired runs (benches/paired.rs: ours and the baseline alternate one operation "
             "at a time; ratio = ours/baseline time):"]
    for name, p in paired.items():
        tgt = PAIRED_TARGETS.get(name)
        verdict = "" if tgt is None or "median" not in p else (
            f"  {'ok' if p['median'] <= tgt else 'MISS'} <={tgt}x")
        per_round = " ".join(f"{r['pair_median']:.3f}" for r in p["rounds"])
        last = p["rounds"][-1] if p["rounds"] else None
        times = f" (last round: ours {last['ours']}, baseline {last['baseline']})" if last else ""
        lines.append(f"  {name} vs {p.get('baseline', '?')}: median over rounds "
                     f"{p.get('median', float('nan')):.3f}x, rounds {per_round}{times}{verdict}")
    return "\n".join(lines)


def run_python(seconds):
    out = os.path.join(OUT_DIR, "python.json")
    r = run([sys.executable, os.path.join(ROOT, "scripts", "python_multiprocessing_bench.py"),
             "--time", str(seconds), "--out", out], stdout=sys.stderr)
    if r.returncode != 0:
        print("warning: the Python comparison failed; no python column", file=sys.stderr)


# --- reading ----------------------------------------------------------------------------------

def read_criterion(since=None):
    """{full_id: {"ns": median ns per iteration, "throughput": {...} or None}}."""
    results = {}
    for dirpath, _, files in os.walk(CRITERION):
        if os.path.basename(dirpath) != "new" or "estimates.json" not in files:
            continue
        est_path = os.path.join(dirpath, "estimates.json")
        if since is not None and os.path.getmtime(est_path) < since:
            continue
        with open(os.path.join(dirpath, "benchmark.json")) as f:
            meta = json.load(f)
        with open(est_path) as f:
            est = json.load(f)
        best = None
        sample_path = os.path.join(dirpath, "sample.json")
        if os.path.exists(sample_path):
            with open(sample_path) as f:
                sample = json.load(f)
            best = min(t / i for t, i in zip(sample["times"], sample["iters"]) if i)
        median = est["median"]["point_estimate"]
        results[meta["full_id"]] = {"ns": best if STAT == "best" else median,
                                    "median_ns": median, "best_ns": best,
                                    "throughput": meta.get("throughput")}
    return results


def read_python():
    path = os.path.join(OUT_DIR, "python.json")
    if not os.path.exists(path):
        return {}, None
    with open(path) as f:
        data = json.load(f)
    res = {k: {"ns": v["min_ns"] if STAT == "best" else v["median_ns"], "median_ns": v["median_ns"],
               "best_ns": v["min_ns"], "throughput": None} for k, v in data["results"].items()}
    return res, {k: v for k, v in data.items() if k != "results"}


def read_owner_death(since=None):
    """The owner-death loop of benches/blocking.rs (p50/p99/max per lock and scenario), as
    results with ids owner_death/<lock>_<scenario>_<stat>."""
    path = os.path.join(OUT_DIR, "owner_death.json")
    if not os.path.exists(path) or (since is not None and os.path.getmtime(path) < since):
        return {}
    with open(path) as f:
        data = json.load(f)
    res = {}
    for k, v in data["results"].items():
        for stat in ("p50", "p99", "max"):
            ns = v[f"{stat}_ns"]
            res[f"{k}_{stat}"] = {"ns": ns, "median_ns": ns, "best_ns": ns, "throughput": None,
                                  "n": v["n"]}
    return res


def machine():
    def sh(cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None
    model = None
    for line in (sh(["lscpu"]) or "").splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    return {"cpu": model, "cpus": os.cpu_count(), "kernel": platform.release(),
            "rustc": sh(["rustc", "--version"]), "python": platform.python_version(),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


# --- the table --------------------------------------------------------------------------------

def metric(row, ns):
    """The row's metric from ns per iteration: ns (time), items/s, or bytes/s."""
    if ns is None:
        return None
    if row["kind"] == "time":
        return ns
    if row["kind"] == "items":
        return 1e9 / ns
    return row["size"] * 1e9 / ns


def fmt(row, v):
    if v is None:
        return "-"
    if row["kind"] == "time":
        for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
            if v >= scale:
                return f"{v / scale:.3g}{unit}"
        return f"{v:.3g}ns"
    if row["kind"] == "items":
        return f"{v / 1e9:.3g}G/s" if v >= 1e9 else f"{v / 1e6:.3g}M/s"
    for unit, scale in (("GB/s", 1e9), ("MB/s", 1e6), ("kB/s", 1e3)):
        if v >= scale:
            return f"{v / scale:.3g}{unit}"
    return f"{v:.3g}B/s"


def build(results):
    rows = []
    for spec in ROWS + scaling_rows(results):
        get = lambda bid: metric(spec, results[bid]["ns"]) if bid and bid in results else None
        ours = get(spec["ours"])
        limit = get(spec.get("limit"))
        peers = {col: get(bid) for col, bid in spec["peers"].items()}
        present = {c: v for c, v in peers.items() if v is not None}
        if spec["kind"] == "time":
            best_col = min(present, key=present.get) if present else None
        else:
            best_col = max(present, key=present.get) if present else None
        best = present.get(best_col)
        vs_limit = ours / limit if ours is not None and limit else None
        vs_best = ours / best if ours is not None and best else None
        verdict = None
        tgt = spec.get("target")
        if tgt and ours is not None:
            if tgt[0] == "abs":
                base = 1.0
            else:
                base = limit if tgt[0] == "limit" else peers.get(tgt[0])
            if base:
                r = ours / base
                verdict = (r <= tgt[2]) if tgt[1] == "<=" else (r >= tgt[2])
        rows.append({
            "operation": spec["op"], "kind": spec["kind"],
            "unit": {"time": "ns", "items": "items/s", "bytes": "bytes/s"}[spec["kind"]],
            "ours_id": spec["ours"], "ours": ours,
            "limit_id": spec.get("limit"), "limit": limit,
            "peers": {c: {"id": spec["peers"][c], "value": peers[c]} for c in peers},
            "best_peer": best_col, "ours_vs_limit": vs_limit, "ours_vs_best_peer": vs_best,
            "target": None if not tgt else (f"{tgt[1]}{fmt(spec, tgt[2])}" if tgt[0] == "abs"
                                            else f"{tgt[1]}{tgt[2]}x {tgt[0]}"),
            "target_met": verdict,
        })
    return rows


def render(rows):
    head = ["operation", "ours", "limit"] + [h for _, h in COLUMNS] + ["/limit", "/best", "target"]
    table = [head]
    for r in rows:
        spec = {"kind": r["kind"]}
        cells = [r["operation"], fmt(spec, r["ours"]), fmt(spec, r["limit"])]
        for key, _ in COLUMNS:
            p = r["peers"].get(key)
            cells.append(fmt(spec, p["value"]) if p else "")
        cells.append("-" if r["ours_vs_limit"] is None else f"{r['ours_vs_limit']:.2f}x")
        cells.append("-" if r["ours_vs_best_peer"] is None
                     else f"{r['ours_vs_best_peer']:.2f}x {r['best_peer']}")
        if r["target"] is None:
            cells.append("")
        elif r["target_met"] is None:
            cells.append(r["target"])
        else:
            cells.append(("ok " if r["target_met"] else "MISS ") + r["target"])
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = []
    for i, row in enumerate(table):
        lines.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w)
                               for j, (c, w) in enumerate(zip(row, widths))).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    lines.append("Time rows: time per operation, ratios are ours/other time (lower is better). "
                 "Throughput rows (M/s, B/s): ratios are ours/other throughput (higher is better).")
    lines.append("limit = the raw OS/hardware limit measured in the same run; /best = ours vs "
                 "the best peer of the row; '-' = not measured (yet).")
    return "\n".join(lines)


# --- the plot ---------------------------------------------------------------------------------

def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def color(name):
    if name.startswith("ours"):
        return "#e8710a"
    if name in ("raw_atomic", "raw_atomic_two_lines", "raw_futex", "raw_ring", "raw_copy_ring",
                "memcpy", "bare_fork", "bare_fork_after", "bare_reexec"):
        return "#7f7f7f"
    if name.startswith("python"):
        return "#2ca02c"
    return "#1f77b4"


def bar_panel(title, unit_fmt, bars, y0, width=900):
    """A horizontal log-scale bar chart. bars: [(label, series_name, value)]. Returns (svg, h)."""
    bars = [b for b in bars if b[2] and b[2] > 0]
    row_h, top, left, right = 22, 34, 280, 110
    h = top + row_h * max(len(bars), 1) + 30
    out = [f'<text x="10" y="{y0 + 20}" font-size="15" font-weight="bold">{esc(title)}</text>']
    if not bars:
        out.append(f'<text x="{left}" y="{y0 + top + 14}" font-size="12">no data</text>')
        return "\n".join(out), h
    lo = math.floor(math.log10(min(b[2] for b in bars)))
    hi = math.ceil(math.log10(max(b[2] for b in bars)))
    if hi == lo:
        hi += 1
    span = width - left - right

    def x(v):
        return left + span * (math.log10(v) - lo) / (hi - lo)

    for d in range(lo, hi + 1):
        gx = left + span * (d - lo) / (hi - lo)
        out.append(f'<line x1="{gx:.1f}" y1="{y0 + top - 4}" x2="{gx:.1f}" '
                   f'y2="{y0 + h - 26}" stroke="#ddd"/>')
        out.append(f'<text x="{gx:.1f}" y="{y0 + h - 12}" font-size="10" '
                   f'text-anchor="middle" fill="#555">{esc(unit_fmt(10.0 ** d))}</text>')
    for i, (label, series, v) in enumerate(bars):
        y = y0 + top + i * row_h
        out.append(f'<text x="{left - 6}" y="{y + 14}" font-size="12" '
                   f'text-anchor="end">{esc(label)}</text>')
        out.append(f'<rect x="{left}" y="{y + 3}" width="{max(x(v) - left, 1):.1f}" '
                   f'height="{row_h - 6}" fill="{color(series)}"/>')
        out.append(f'<text x="{x(v) + 4:.1f}" y="{y + 14}" font-size="11">'
                   f'{esc(unit_fmt(v))}</text>')
    return "\n".join(out), h


def size_label(n):
    for unit, scale in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} B"


def svg(results, info):
    def t(ns):
        return fmt({"kind": "time"}, ns)

    latency = []
    for gid in ("roundtrip_u64", "pingpong_blocking", "barrier_2proc"):
        for k in sorted(results, key=lambda k: results[k]["ns"]):
            if k.startswith(gid + "/"):
                name = k.split("/", 1)[1]
                latency.append((f"{name} ({gid})", name, results[k]["ns"]))
    items = [(k.split("/", 1)[1], k.split("/", 1)[1], 1e9 / v["ns"])
             for k, v in sorted(results.items()) if k.startswith("throughput_u64/")]
    items.sort(key=lambda b: -b[2])
    msgs = []
    for k, v in results.items():
        if k.startswith("message_bytes/"):
            _, name, size = k.split("/")
            msgs.append((f"{name} {size_label(int(size))}", name, int(size) * 1e9 / v["ns"], int(size)))
    msgs.sort(key=lambda b: (b[3], -b[2]))
    msgs = [m[:3] for m in msgs]

    panels, y = [], 50
    for title, f, bars in (
            ("Round trip between 2 processes (time, log scale; shorter is better)", t, latency),
            ("One-way u64 throughput (items/s, log scale; longer is better)",
             lambda v: fmt({"kind": "items"}, v), items),
            ("Message throughput by size (bytes/s, log scale; longer is better)",
             lambda v: fmt({"kind": "bytes"}, v), msgs)):
        s, h = bar_panel(title, f, bars, y)
        panels.append(s)
        y += h + 10
    sub = (f"{info.get('cpu') or '?'}, {info.get('cpus')} CPUs, Linux {info.get('kernel')}, "
           f"{info.get('date')}, load avg {info.get('loadavg_before', ['?'])[0]}. "
           "Orange: multiproc; grey: raw limit; blue: peers; green: Python.")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="900" height="{y}" '
            f'font-family="sans-serif">\n<rect width="100%" height="100%" fill="white"/>\n'
            f'<text x="10" y="22" font-size="17" font-weight="bold">multiproc benchmarks</text>\n'
            f'<text x="10" y="40" font-size="11" fill="#444">{esc(sub)}</text>\n'
            + "\n".join(panels) + "\n</svg>\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-run", action="store_true", help="do not run; report existing results")
    ap.add_argument("--bench", action="append", choices=BENCHES,
                    help="run only this bench file (repeatable; default all)")
    ap.add_argument("--warm-up", type=float, default=1.0, help="criterion warm-up s (default 1)")
    ap.add_argument("--measurement", type=float, default=3.0,
                    help="criterion measurement s (default 3)")
    ap.add_argument("--sample-size", type=int, default=0, help="criterion samples (default 100)")
    ap.add_argument("--skip-python", action="store_true", help="no Python comparison run")
    ap.add_argument("--paired-rounds", type=int, default=5,
                    help="rounds of benches/paired.rs (default 5; 0 skips it; so does --bench)")
    ap.add_argument("--python-time", type=float, default=1.5,
                    help="seconds per Python operation (default 1.5)")
    ap.add_argument("--stat", choices=["median", "best"], default="median",
                    help="median of the samples (default), or the best sample: less sensitive to "
                         "other load on the machine")
    args = ap.parse_args()
    global STAT
    STAT = args.stat

    os.makedirs(OUT_DIR, exist_ok=True)
    load_before = os.getloadavg()
    since = None
    if not args.no_run:
        started = time.time()
        benches = args.bench or BENCHES
        run_benches(benches, args.warm_up, args.measurement, args.sample_size)
        if not args.bench:
            since = started - 1  # only this run's results when everything ran
        if not args.skip_python:
            run_python(args.python_time)
    paired = {}
    if not args.no_run and args.paired_rounds > 0 and not args.bench:
        paired = run_paired(args.paired_rounds)
    elif os.path.exists(os.path.join(OUT_DIR, "paired.txt")):
        with open(os.path.join(OUT_DIR, "paired.txt")) as f:
            paired = parse_paired(f.read())
    results = read_criterion(since)
    results.update(read_owner_death(since))
    py, py_info = read_python()
    results.update(py)
    info = machine()
    info["loadavg_before"] = [round(x, 2) for x in load_before]
    info["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    if py_info:
        info["python_multiprocessing"] = py_info
    rows = build(results)
    text = render(rows)
    if paired:
        text += "\n" + render_paired(paired)
    info["statistic"] = STAT
    print(f"Machine: {info['cpu']}, {info['cpus']} CPUs, Linux {info['kernel']}, "
          f"{info['rustc']}, Python {info['python']}, {info['date']}; statistic: {STAT} "
          "(time per operation)")
    print(text)
    busy = max(load_before[0], info["loadavg_after"][0])
    if not args.no_run and busy > 0.5:
        print(f"\nwarning: the machine was busy with other work (load average up to {busy:.2f} "
              f"on {os.cpu_count()} CPUs): busy-polling round trips and throughputs suffer "
              "most when the two processes cannot each have a core.")
    with open(os.path.join(OUT_DIR, "report.json"), "w") as f:
        json.dump({"machine": info, "rows": rows, "paired": paired, "raw": results}, f, indent=2)
    with open(os.path.join(OUT_DIR, "report.txt"), "w") as f:
        f.write(text + "\n")
    with open(os.path.join(OUT_DIR, "report.svg"), "w") as f:
        f.write(svg(results, info))
    print(f"\nwrote {os.path.relpath(OUT_DIR, ROOT)}/report.json, report.txt, report.svg")


if __name__ == "__main__":
    main()
