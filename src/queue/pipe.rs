//! `Pipe`: two duplex [`Connection`]s, Python's `multiprocessing.Pipe()`, built from two
//! [`Channel`]s (one per direction).
//!
//! Each end also holds one socket of an `AF_UNIX` pair (its *liveness socket*), shared by the
//! end's clones and passed along with the end to children. Nobody ever writes on it: when
//! every holder of one end has dropped it or died, the kernel closes that socket and the other
//! end's socket reads end of file. A call that would block waits in [`PEER_CHECK`] slices and
//! looks for that end of file between them, so `recv` on an end whose peer is gone drains what
//! was sent and then fails with `Closed` (Python's `EOFError`) instead of blocking forever.

use super::Channel;
use super::error::{RecvError, SendError};
use crate::error::{Error, Result};
use crate::shm::handoff;
use crate::sys::socket;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a blocked call on a [`Connection`] checks whether the other end still has a
/// holder.
const PEER_CHECK: Duration = Duration::from_millis(10);

/// Makes pipes: [`Pipe::new`] returns the two ends of a duplex connection.
///
/// ```
/// let (parent, child) = multiproc::Pipe::new::<String>(4096)?;
/// child.send("hello".to_string()).unwrap();
/// assert!(parent.poll(std::time::Duration::ZERO));
/// assert_eq!(parent.recv().unwrap(), "hello");
/// parent.send("back".to_string()).unwrap();
/// assert_eq!(child.recv().unwrap(), "back");
/// # Ok::<(), multiproc::Error>(())
/// ```
///
/// Between processes: pass one end to a child.
///
/// ```rust,standalone_crate
/// use multiproc::{Connection, Pipe, Process};
///
/// fn echo(end: Connection<String>) {
///     while let Ok(msg) = end.recv() {
///         end.send(msg.to_uppercase()).unwrap();
///     }
/// }
///
/// fn main() -> Result<(), multiproc::Error> {
///     multiproc::init(); // first line of main: a spawned child runs its entry here
///     let (here, there) = Pipe::new::<String>(4096)?;
///     let child = Process::spawn(echo, there)?;
///     here.send("ping".to_string()).unwrap();
///     assert_eq!(here.recv().unwrap(), "PING");
///     here.close(); // the child's `recv` fails with `Closed` once it has drained
///     child.join()?;
///     Ok(())
/// }
/// ```
#[derive(Debug)]
pub struct Pipe;

impl Pipe {
    /// Two connected ends; each direction buffers up to `capacity_bytes` of encoded messages
    /// (see [`Channel`] for the largest message). Pass one end to a child in
    /// [`Process::spawn`](crate::Process::spawn) arguments.
    ///
    /// # Errors
    /// As [`Channel::new`].
    // Python's name for it; a pipe is its two ends, not a value of its own.
    #[allow(clippy::new_ret_no_self)]
    pub fn new<T: Serialize + DeserializeOwned>(
        capacity_bytes: usize,
    ) -> Result<(Connection<T>, Connection<T>)> {
        let a_to_b = Channel::new(capacity_bytes)?;
        let b_to_a = Channel::new(capacity_bytes)?;
        let (alive_a, alive_b) = socket::stream_pair().map_err(Error::Os)?;
        Ok((
            Connection {
                tx: a_to_b.clone(),
                rx: b_to_a.clone(),
                alive: Arc::new(alive_a),
            },
            Connection {
                tx: b_to_a,
                rx: a_to_b,
                alive: Arc::new(alive_b),
            },
        ))
    }
}

/// One end of a [`Pipe`]: sends to the other end and receives what it sends.
///
/// Dropping a connection does not close it (clones live in other processes); call
/// [`close`](Connection::close) to end both directions at once. But once no process holds the
/// other end any more (every holder dropped it, exited or was killed), a receive here drains
/// what it sent and then fails with `Closed`, and a send that would wait for room fails with
/// `Closed`, within about 10 ms, as Python's `EOFError` and `BrokenPipeError`. As in Python,
/// that needs the end given to a child to be dropped in the parent (and a forked child
/// inherits every end its parent held).
pub struct Connection<T> {
    tx: Channel<T>,
    rx: Channel<T>,
    /// This end's liveness socket (see the module docs): held, never written.
    alive: Arc<OwnedFd>,
}

impl<T: Serialize + DeserializeOwned> Connection<T> {
    /// Sends `msg` to the other end, waiting while its buffer is full.
    ///
    /// # Errors
    /// `Closed(msg)` once either end closed; `TooLarge`, `Serialize`, `Corrupted`.
    pub fn send(&self, mut msg: T) -> std::result::Result<(), SendError<T>> {
        loop {
            match self.tx.send_timeout(msg, PEER_CHECK) {
                Err(SendError::Timeout(back)) if self.peer_gone() => {
                    return Err(SendError::Closed(back));
                }
                Err(SendError::Timeout(back)) => msg = back,
                other => return other,
            }
        }
    }

    /// Sends `msg` if there is room now, else `Full(msg)`.
    pub fn try_send(&self, msg: T) -> std::result::Result<(), SendError<T>> {
        self.tx.try_send(msg)
    }

    /// Like [`send`](Connection::send), giving up with `Timeout(msg)` after `timeout` (a
    /// full buffer the other end does not drain).
    pub fn send_timeout(&self, msg: T, timeout: Duration) -> std::result::Result<(), SendError<T>> {
        self.tx.send_timeout(msg, timeout)
    }

    /// Like [`send`](Connection::send), giving up with `Timeout(msg)` at `deadline`.
    pub fn send_until(&self, msg: T, deadline: Instant) -> std::result::Result<(), SendError<T>> {
        self.tx.send_until(msg, deadline)
    }

    /// Receives the next message from the other end, waiting while there is none.
    ///
    /// # Errors
    /// `Closed` once either end closed, or no process holds the other end any more, and
    /// everything sent before was received (Python's `EOFError`); `Deserialize`, `Corrupted`.
    pub fn recv(&self) -> std::result::Result<T, RecvError> {
        self.recv_deadline(None)
    }

    /// Like [`recv`](Connection::recv), giving up with `Timeout` after `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> std::result::Result<T, RecvError> {
        // A deadline past what `Instant` holds is no deadline.
        self.recv_deadline(Instant::now().checked_add(timeout))
    }

    /// Receives in [`PEER_CHECK`] slices until `deadline` (`None`: no limit), checking between
    /// slices whether the other end is gone.
    fn recv_deadline(&self, deadline: Option<Instant>) -> std::result::Result<T, RecvError> {
        loop {
            match self.rx.recv_timeout(slice(deadline)) {
                Err(RecvError::Timeout) => {}
                other => return other,
            }
            if self.peer_gone() {
                // Whatever the peer sent before it went is in the ring: drain it first.
                return match self.rx.try_recv() {
                    Err(RecvError::Empty) => Err(RecvError::Closed),
                    other => other,
                };
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(RecvError::Timeout);
            }
        }
    }

    /// Whether no process holds the other end any more: its liveness socket was closed
    /// everywhere, so ours reads end of file (nobody writes on these sockets, so "readable"
    /// can only be that). An error of `poll` counts as "still there".
    fn peer_gone(&self) -> bool {
        socket::poll(&[(self.alive.as_fd(), false)], 0)
            .is_ok_and(|r| r.first().is_some_and(|r| r.readable || r.hangup))
    }

    /// Like [`recv`](Connection::recv), giving up with `Timeout` at `deadline`.
    pub fn recv_until(&self, deadline: Instant) -> std::result::Result<T, RecvError> {
        self.rx.recv_until(deadline)
    }

    /// Receives a message if one is ready now, else `Empty`.
    pub fn try_recv(&self) -> std::result::Result<T, RecvError> {
        self.rx.try_recv()
    }

    /// Waits at most `timeout` (`Duration::ZERO`: not at all) until [`recv`](Connection::recv)
    /// would not block; returns whether it would not (a message is ready, the pipe closed, or
    /// no process holds the other end any more).
    pub fn poll(&self, timeout: Duration) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            let s = slice(deadline);
            if self.rx.poll(s) || self.peer_gone() {
                return true;
            }
            if s.is_zero() || deadline.is_some_and(|d| Instant::now() >= d) {
                return false;
            }
        }
    }

    /// Waits until `deadline` at the latest until [`recv`](Connection::recv) would not block;
    /// returns whether it would not.
    pub fn poll_until(&self, deadline: Instant) -> bool {
        self.rx.poll_until(deadline)
    }

    /// Closes both directions: the other end's receives drain and then fail with `Closed`, and
    /// sends from either end fail with `Closed`.
    pub fn close(&self) {
        self.tx.close();
        self.rx.close();
    }

    /// Whether the pipe was closed (by either end).
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed() || self.rx.is_closed()
    }
}

/// Raw bytes, as Python's `Connection.send_bytes`/`recv_bytes`/`recv_bytes_into`; they share
/// the pipe with typed messages (see [`Channel`'s bytes methods](Channel::send_bytes)).
///
/// ```
/// let (a, b) = multiproc::Pipe::new::<u32>(4096)?;
/// a.send_bytes(b"frame").unwrap();
/// assert_eq!(b.recv_bytes().unwrap(), b"frame");
/// b.send(300).unwrap();
/// let mut buf = [0u8; 8];
/// let n = a.recv_bytes_into(&mut buf).unwrap();
/// assert_eq!(&buf[..n], &[0xac, 0x02]); // 300 as a postcard varint
/// # Ok::<(), multiproc::Error>(())
/// ```
impl<T> Connection<T> {
    super::handle::bytes_methods!(" to the other end", " from the other end", tx, rx);
}

impl<T> Clone for Connection<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            rx: self.rx.clone(),
            alive: Arc::clone(&self.alive),
        }
    }
}

/// The next wait slice before `deadline` (`None`: no limit): at most [`PEER_CHECK`].
fn slice(deadline: Option<Instant>) -> Duration {
    deadline.map_or(PEER_CHECK, |d| {
        d.saturating_duration_since(Instant::now()).min(PEER_CHECK)
    })
}

impl<T> fmt::Debug for Connection<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("tx", &self.tx)
            .field("rx", &self.rx)
            .finish()
    }
}

impl<T> Serialize for Connection<T> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        // The liveness socket travels like a segment's fd: only as a spawn argument (the
        // channels of a pipe are anonymous, so they cannot travel any other way either).
        let slot = handoff::export_fd(self.alive.as_fd()).ok_or_else(|| {
            serde::ser::Error::custom(
                "a pipe's Connection can only be passed to a child as a Process::spawn argument",
            )
        })?;
        (&self.tx, &self.rx, slot).serialize(s)
    }
}

impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for Connection<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (tx, rx, slot) = <(Channel<T>, Channel<T>, u32)>::deserialize(d)?;
        let alive = handoff::import_fd(slot).map_err(|e| {
            serde::de::Error::custom(format!(
                "a Connection's inherited socket (slot {slot}): {e}"
            ))
        })?;
        Ok(Self {
            tx,
            rx,
            alive: Arc::new(alive),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_carry_messages_and_close_ends_both() {
        let (a, b) = Pipe::new::<Vec<u32>>(1024).unwrap();
        a.send(vec![1, 2]).unwrap();
        b.send(vec![3]).unwrap();
        assert_eq!(b.recv().unwrap(), vec![1, 2]);
        assert_eq!(a.recv().unwrap(), vec![3]);
        assert!(!a.poll(Duration::from_millis(5)));
        a.send(vec![4]).unwrap();
        a.close();
        assert!(b.is_closed());
        assert_eq!(b.recv().unwrap(), vec![4]);
        assert_eq!(b.recv(), Err(RecvError::Closed));
        assert!(matches!(b.send(vec![5]), Err(SendError::Closed(_))));
        assert_eq!(
            a.recv_timeout(Duration::from_millis(5)),
            Err(RecvError::Closed)
        );
    }

    #[test]
    fn dropping_every_holder_of_one_end_ends_the_other() {
        crate::testing::watchdog(30, || {
            let (a, b) = Pipe::new::<u32>(1024).unwrap();
            let b2 = b.clone();
            b.send(7).unwrap();
            drop(b);
            // A clone still holds the end: no end of file.
            assert_eq!(
                a.recv_timeout(Duration::from_millis(30)),
                Ok(7),
                "the message sent before is received"
            );
            assert_eq!(
                a.recv_timeout(Duration::from_millis(30)),
                Err(RecvError::Timeout)
            );
            assert!(!a.poll(Duration::from_millis(20)));
            b2.send(8).unwrap();
            drop(b2);
            // Drained first, then end of file, without a timeout.
            assert_eq!(a.recv(), Ok(8));
            let t = Instant::now();
            assert_eq!(a.recv(), Err(RecvError::Closed));
            assert!(t.elapsed() < Duration::from_secs(5));
            assert!(a.poll(Duration::from_secs(5)));
            assert_eq!(
                a.recv_timeout(Duration::from_secs(5)),
                Err(RecvError::Closed)
            );
            // Nobody will read what `a` sends: once the buffer is full, send fails.
            let mut sent = 0;
            let e = loop {
                match a.send(sent) {
                    Ok(()) => sent += 1,
                    Err(e) => break e,
                }
            };
            assert!(
                sent > 0 && matches!(e, SendError::Closed(_)),
                "{sent} {e:?}"
            );
        });
    }
}
