#!/usr/bin/env python3
"""Time Python's multiprocessing on the operations the Rust benches measure.

Standard library only. Prints one line per operation and writes JSON that
scripts/bench-report.py merges as the "python" peer column. Operation names are
the Rust report's benchmark ids ("group/id"):

  roundtrip_u64/python_queue      int through two multiprocessing.Queue, there and back
  roundtrip_u64/python_pipe       int through a duplex multiprocessing.Pipe, there and back
  value_lock/python               with v.get_lock(): v.value += 1   (Value('Q'))
  mutex_uncontended/python        Lock().acquire(); release()
  barrier_2proc/python            one round of Barrier(2) between two processes
  process_start/python_fork       Process(target=noop).start(); join()  ('fork' context)
  process_start/python_spawn      the same with the 'spawn' context
  process_start/python_forkserver the same with the 'forkserver' context
  dict_u64/python_get             d[k] on a Manager().dict() of 1000 int keys
  dict_u64/python_insert          d[k] = v on it (replacing a present key)
  dict_serde/python_get           the same with str keys ("key-N") and a list of 8 ints
  dict_serde/python_insert
  pool_map_1e6/python             Pool(2).map(double, range(10**6)), time per task
  pool_apply_async/python         10**4 Pool(2).apply_async(double, (i,)), then every get(); per task
  pool_apply/python               one Pool(2).apply(double, (i,)) on an idle pool (round trip)
  pool_behind_long/python         after a map of 20,000 trivial tasks, apply_async of one 100 ms
                                  sleep then 63 of 1 ms: the time until the 63 are done
  pool_start/python_fork          Pool(2) then close(); join()  ('fork' context)
  pool_start/python_spawn         the same with the 'spawn' context

Usage: python3 scripts/python_multiprocessing_bench.py [--time SECONDS] [--out FILE]
"""

import argparse
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time

STOP = None


def measure(run, budget_s, batches=15):
    """Median ns per operation of `run(n)` (which performs n operations).

    Calibrates n so that one batch takes about budget_s / batches, then times `batches`
    batches and returns (median ns/op, min ns/op, total operations).
    """
    n = 1
    while True:
        t0 = time.perf_counter_ns()
        run(n)
        dt = time.perf_counter_ns() - t0
        if dt > 2e6 or n >= 1 << 24:
            break
        n *= 4
    per_op = dt / n
    target_ns = budget_s * 1e9 / batches
    n = max(1, int(target_ns / max(per_op, 1.0)))
    samples = []
    for _ in range(batches):
        t0 = time.perf_counter_ns()
        run(n)
        samples.append((time.perf_counter_ns() - t0) / n)
    return statistics.median(samples), min(samples), n * batches


# --- children (module level so that the 'spawn' context can import them) ---------------------

def queue_echo(inq, outq):
    while True:
        v = inq.get()
        if v is STOP:
            break
        outq.put(v)


def pipe_echo(conn):
    while True:
        v = conn.recv()
        if v is STOP:
            break
        conn.send(v)


def barrier_child(barrier, ctl):
    while True:
        n = ctl.recv()
        if n is STOP:
            break
        for _ in range(n):
            barrier.wait()
        ctl.send(n)


def noop():
    pass


def double(x):
    return x * 2


# --- benchmarks -------------------------------------------------------------------------------

def bench_queue(budget):
    inq, outq = mp.Queue(), mp.Queue()
    p = mp.Process(target=queue_echo, args=(inq, outq))
    p.start()

    def run(n):
        for i in range(n):
            inq.put(i)
            outq.get()

    try:
        return measure(run, budget)
    finally:
        inq.put(STOP)
        p.join(5)
        if p.is_alive():
            p.kill()


def bench_pipe(budget):
    parent, child = mp.Pipe()
    p = mp.Process(target=pipe_echo, args=(child,))
    p.start()

    def run(n):
        for i in range(n):
            parent.send(i)
            parent.recv()

    try:
        return measure(run, budget)
    finally:
        parent.send(STOP)
        p.join(5)
        if p.is_alive():
            p.kill()


def bench_value(budget):
    v = mp.Value("Q", 0)

    def run(n):
        for _ in range(n):
            with v.get_lock():
                v.value += 1

    return measure(run, budget)


def bench_lock(budget):
    lock = mp.Lock()

    def run(n):
        for _ in range(n):
            lock.acquire()
            lock.release()

    return measure(run, budget)


def bench_barrier(budget):
    barrier = mp.Barrier(2)
    parent, child = mp.Pipe()
    p = mp.Process(target=barrier_child, args=(barrier, child))
    p.start()

    def run(n):
        parent.send(n)
        for _ in range(n):
            barrier.wait(timeout=30)
        parent.recv()

    try:
        return measure(run, budget)
    finally:
        parent.send(STOP)
        p.join(5)
        if p.is_alive():
            p.kill()


def bench_process(method):
    ctx = mp.get_context(method)

    def bench(budget):
        def run(n):
            for _ in range(n):
                p = ctx.Process(target=noop)
                p.start()
                p.join()

        run(1)  # start the fork server, import the module in the first spawn
        return measure(run, budget, batches=7)

    return bench


def bench_manager_dict(kind, op):
    """Manager().dict() get or set, int keys/values or str keys with a list of 8 ints."""
    def bench(budget):
        with mp.Manager() as manager:
            d = manager.dict()
            if kind == "u64":
                keys = list(range(1000))
                value = 5
            else:
                keys = [f"key-{k}" for k in range(1000)]
                value = list(range(8))
            for k in keys:
                d[k] = value
            state = {"i": 0}

            def run(n):
                i = state["i"]
                for _ in range(n):
                    i = (i + 7) % 1000
                    if op == "get":
                        d[keys[i]]
                    else:
                        d[keys[i]] = value
                state["i"] = i

            return measure(run, budget)
    return bench


def repeat(run, per, times):
    """(median, min, ops) ns per unit of `times` timed calls of `run`, each `per` units."""
    samples = []
    for _ in range(times):
        t0 = time.perf_counter_ns()
        run()
        samples.append((time.perf_counter_ns() - t0) / per)
    return statistics.median(samples), min(samples), per * times


def bench_pool_map(budget):
    n = 10 ** 6
    with mp.Pool(2) as pool:
        pool.map(double, range(1000))
        return repeat(lambda: pool.map(double, range(n)), n, 5)


def bench_pool_apply_async(budget):
    n = 10 ** 4

    def run():
        pending = [pool.apply_async(double, (i,)) for i in range(n)]
        for i, r in enumerate(pending):
            assert r.get() == 2 * i

    with mp.Pool(2) as pool:
        run()
        return repeat(run, n, 5)


def bench_pool_apply(budget):
    with mp.Pool(2) as pool:
        def run(n):
            for i in range(n):
                pool.apply(double, (i,))

        return measure(run, budget)


def nap(ms):
    time.sleep(ms / 1000)
    return ms


def bench_pool_behind_long(budget):
    with mp.Pool(2) as pool:
        samples = []
        for _ in range(9):
            pool.map(double, range(20000))
            t0 = time.perf_counter_ns()
            long = pool.apply_async(nap, (100,))
            short = [pool.apply_async(nap, (1,)) for _ in range(63)]
            for r in short:
                r.get()
            samples.append(time.perf_counter_ns() - t0)
            long.get()
        return statistics.median(samples), min(samples), len(samples)


def bench_pool_start(method):
    ctx = mp.get_context(method)

    def bench(budget):
        def run(n):
            for _ in range(n):
                pool = ctx.Pool(2)
                pool.close()
                pool.join()

        run(1)
        return measure(run, budget, batches=7)

    return bench


BENCHES = [
    ("roundtrip_u64/python_queue", "Queue round trip (2 processes)", bench_queue),
    ("roundtrip_u64/python_pipe", "Pipe round trip (2 processes)", bench_pipe),
    ("value_lock/python", "Value += 1 under its lock", bench_value),
    ("mutex_uncontended/python", "Lock acquire+release, uncontended", bench_lock),
    ("barrier_2proc/python", "Barrier(2) round (2 processes)", bench_barrier),
    ("process_start/python_fork", "Process start+join (fork)", bench_process("fork")),
    ("process_start/python_spawn", "Process start+join (spawn)", bench_process("spawn")),
    ("process_start/python_forkserver", "Process start+join (forkserver)",
     bench_process("forkserver")),
    ("dict_u64/python_get", "Manager().dict() d[k], int", bench_manager_dict("u64", "get")),
    ("dict_u64/python_insert", "Manager().dict() d[k] = v, int",
     bench_manager_dict("u64", "set")),
    ("dict_serde/python_get", "Manager().dict() d[k], str -> list",
     bench_manager_dict("serde", "get")),
    ("dict_serde/python_insert", "Manager().dict() d[k] = v, str -> list",
     bench_manager_dict("serde", "set")),
    ("pool_map_1e6/python", "Pool(2).map of 10^6 trivial tasks, per task", bench_pool_map),
    ("pool_apply_async/python", "Pool(2).apply_async, one task each, per task",
     bench_pool_apply_async),
    ("pool_apply/python", "Pool(2).apply round trip, idle pool", bench_pool_apply),
    ("pool_behind_long/python", "63 short tasks queued behind a long one",
     bench_pool_behind_long),
    ("pool_start/python_fork", "Pool(2) start + close + join (fork)", bench_pool_start("fork")),
    ("pool_start/python_spawn", "Pool(2) start + close + join (spawn)",
     bench_pool_start("spawn")),
]


def fmt_ns(ns):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if ns >= scale:
            return f"{ns / scale:.3g} {unit}"
    return f"{ns:.3g} ns"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time", type=float, default=1.5,
                    help="seconds of measurement per operation (default 1.5)")
    ap.add_argument("--out", default="target/bench-report/python.json",
                    help="JSON output file (default target/bench-report/python.json)")
    ap.add_argument("--only", action="append", default=[],
                    help="run only ids containing this text (repeatable)")
    args = ap.parse_args()

    results = {}
    for key, label, bench in BENCHES:
        if args.only and not any(o in key for o in args.only):
            continue
        median, best, ops = bench(args.time)
        results[key] = {"operation": label, "median_ns": median, "min_ns": best, "ops": ops}
        print(f"{key:36} {label:36} {fmt_ns(median):>10}  (min {fmt_ns(best)})", flush=True)

    out = {
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "default_start_method": mp.get_start_method(),
        "cpus": os.cpu_count(),
        "results": results,
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
