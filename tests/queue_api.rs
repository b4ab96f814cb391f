//! The queue family's Python-shaped APIs across real child processes: raw bytes on channels
//! and pipes (`send_bytes`/`recv_bytes`/`recv_bytes_into`, mixed with typed messages), and the
//! serde `JoinableChannel` (`put`/`get`/`task_done`/`join`); the SPSC ends' blocking calls.

mod common;

use common::watchdog;
use multiproc::queue::{PopError, PushError, RecvError, SendError};
use multiproc::{Channel, Connection, JoinableChannel, Pipe, Process, SpscQueue};
use std::time::Duration;

multiproc::test_support!();

/// Echoes every message back as raw bytes, alternating `recv_bytes` and `recv_bytes_into`,
/// until the pipe closes; returns how many it echoed.
fn echo_bytes(end: Connection<String>) -> u64 {
    let mut buf = vec![0u8; 1 << 16];
    let mut n = 0u64;
    loop {
        let r = if n % 2 == 0 {
            end.recv_bytes()
        } else {
            end.recv_bytes_into(&mut buf).map(|len| buf[..len].to_vec())
        };
        match r {
            Ok(bytes) => end.send_bytes(&bytes).unwrap(),
            Err(RecvError::Closed) => return n,
            Err(e) => panic!("echo: {e}"),
        }
        n += 1;
    }
}

#[test]
fn bytes_echo_through_a_child() {
    watchdog(60, || {
        let (here, there) = Pipe::new::<String>(1 << 16).unwrap();
        let child = Process::spawn(echo_bytes, there).unwrap();
        let max = 65_536 - 8;
        let mut sent = 0;
        for len in [0usize, 1, 7, 8, 9, 255, 4096, 40_000, max] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
            here.send_bytes(&bytes).unwrap();
            assert_eq!(here.recv_bytes().unwrap(), bytes, "length {len}");
            sent += 1;
        }
        // Typed messages go through the child as their encoding and come back typed.
        for s in ["", "hello", "ünïcødé", &"x".repeat(10_000)] {
            here.send(s.to_string()).unwrap();
            assert_eq!(here.recv().unwrap(), s);
            sent += 1;
        }
        // Bytes that are a valid encoding are received typed; others fail to decode, and the
        // pipe goes on.
        here.send_bytes(&[2, b'o', b'k']).unwrap();
        assert_eq!(here.recv().unwrap(), "ok");
        here.send_bytes(&[200]).unwrap();
        assert!(matches!(here.recv(), Err(RecvError::Deserialize(_))));
        sent += 2;
        here.send("after".to_string()).unwrap();
        assert_eq!(here.recv().unwrap(), "after");
        sent += 1;
        assert!(matches!(
            here.send_bytes(&vec![0; max + 1]),
            Err(SendError::TooLarge { size, max: m, .. }) if size == max + 1 && m == max
        ));
        here.close();
        assert_eq!(child.join().unwrap(), sent);
    });
}

#[test]
fn recv_bytes_into_a_short_buffer_leaves_the_message() {
    watchdog(30, || {
        let ch = Channel::<u64>::new(256).unwrap();
        let mut small = [0u8; 4];
        assert_eq!(ch.try_recv_bytes_into(&mut small), Err(RecvError::Empty));
        assert_eq!(ch.try_recv_bytes(), Err(RecvError::Empty));
        ch.send_bytes(&[9; 10]).unwrap();
        assert_eq!(
            ch.recv_bytes_into(&mut small),
            Err(RecvError::BufferTooShort { needed: 10 })
        );
        assert_eq!(ch.len(), 1, "the message stays queued");
        let mut big = [0u8; 16];
        assert_eq!(ch.recv_bytes_into(&mut big), Ok(10));
        assert_eq!(&big[..10], &[9; 10]);
        // Fill the ring: try_send_bytes reports Full, a timed send Timeout.
        while ch.try_send_bytes(&[1; 40]).is_ok() {}
        assert!(matches!(
            ch.try_send_bytes(&[1; 40]),
            Err(SendError::Full(()))
        ));
        assert!(matches!(
            ch.send_bytes_timeout(&[1; 40], Duration::from_millis(10)),
            Err(SendError::Timeout(()))
        ));
        ch.close();
        assert!(matches!(ch.send_bytes(&[1]), Err(SendError::Closed(()))));
        while ch.try_recv_bytes().is_ok() {}
        assert_eq!(ch.recv_bytes(), Err(RecvError::Closed));
        assert_eq!(ch.recv_bytes_into(&mut big), Err(RecvError::Closed));
        assert_eq!(
            ch.recv_bytes_timeout(Duration::from_millis(10)),
            Err(RecvError::Closed)
        );
    });
}

/// Takes jobs until the channel closes, sends each job's result, marks it done.
fn worker((jobs, results): (JoinableChannel<Vec<u32>>, Channel<(usize, u64)>)) -> u64 {
    let mut taken = 0;
    while let Ok(job) = jobs.get() {
        let sum = job.iter().map(|&x| u64::from(x)).sum();
        results.send((job.len(), sum)).unwrap();
        taken += 1;
        jobs.task_done().unwrap();
    }
    taken
}

#[test]
fn joinable_channel_jobs_done_by_children() {
    const JOBS: u32 = 200;
    watchdog(60, || {
        let jobs = JoinableChannel::<Vec<u32>>::new(4096).unwrap();
        let results = Channel::<(usize, u64)>::new(1 << 16).unwrap();
        let workers: Vec<_> = (0..2)
            .map(|_| Process::spawn(worker, (jobs.clone(), results.clone())).unwrap())
            .collect();
        for n in 0..JOBS {
            jobs.put((0..n).collect()).unwrap();
        }
        jobs.join_timeout(Duration::from_secs(30))
            .expect("every job done");
        assert_eq!(jobs.unfinished_tasks(), 0);
        let mut seen = vec![false; JOBS as usize];
        for _ in 0..JOBS {
            let (len, sum) = results
                .try_recv()
                .expect("a result per job, sent before task_done");
            assert_eq!(sum, (len as u64) * (len as u64).saturating_sub(1) / 2);
            assert!(!seen[len], "job {len} done twice");
            seen[len] = true;
        }
        assert_eq!(results.try_recv(), Err(RecvError::Empty));
        jobs.close();
        let taken: u64 = workers.into_iter().map(|w| w.join().unwrap()).sum();
        assert_eq!(taken, u64::from(JOBS));
    });
}

/// Puts `n` messages and joins: returns only once the parent marked them all done.
fn producer_joins((q, n): (JoinableChannel<String>, u32)) -> u32 {
    for i in 0..n {
        q.put(format!("job {i}")).unwrap();
    }
    q.join();
    q.unfinished_tasks()
}

#[test]
fn joinable_channel_join_in_a_child_waits_for_task_done() {
    watchdog(60, || {
        let q = JoinableChannel::<String>::new(4096).unwrap();
        let mut child = Process::spawn(producer_joins, (q.clone(), 5)).unwrap();
        for i in 0..5 {
            assert_eq!(
                q.get_timeout(Duration::from_secs(20)).unwrap(),
                format!("job {i}")
            );
        }
        // Every job taken, none done: the child's join still waits.
        assert!(matches!(
            child.join_timeout(Duration::from_millis(200)),
            Err(multiproc::Error::Timeout)
        ));
        for _ in 0..5 {
            q.task_done().unwrap();
        }
        assert_eq!(child.join_timeout(Duration::from_secs(20)).unwrap(), 0);
    });
}

/// The SPSC ends' blocking calls: each returns at once when it need not wait (the try-first
/// path), sleeps and is woken by the other end when it must, and reports `Closed` at once.
#[test]
fn spsc_blocking_ends_wait_only_when_they_must() {
    watchdog(30, || {
        let q = SpscQueue::<u64>::new(2).unwrap();
        let mut tx = q.producer().unwrap();
        let mut rx = q.consumer().unwrap();
        tx.push(1).unwrap();
        tx.push(2).unwrap();
        assert_eq!(tx.try_push(3), Err(PushError::Full(3)));
        std::thread::scope(|s| {
            // A full ring: the push sleeps until the consumer takes a value.
            let pusher = s.spawn(|| tx.push(3));
            std::thread::sleep(Duration::from_millis(50));
            assert_eq!(rx.pop(), Ok(1));
            assert_eq!(pusher.join().unwrap(), Ok(()));
        });
        assert_eq!(rx.pop(), Ok(2));
        assert_eq!(rx.pop_timeout(Duration::from_millis(10)), Ok(3));
        std::thread::scope(|s| {
            // An empty ring: the pop sleeps until the producer pushes.
            let popper = s.spawn(|| rx.pop());
            std::thread::sleep(Duration::from_millis(50));
            tx.push(4).unwrap();
            assert_eq!(popper.join().unwrap(), Ok(4));
        });
        tx.push(5).unwrap();
        q.close();
        assert_eq!(tx.push(6), Err(PushError::Closed(6)));
        assert_eq!(rx.pop(), Ok(5));
        assert_eq!(rx.pop(), Err(PopError::Closed));
        assert_eq!(
            rx.pop_timeout(Duration::from_secs(5)),
            Err(PopError::Closed)
        );
    });
}
