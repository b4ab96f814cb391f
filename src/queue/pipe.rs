//! `Pipe`: two duplex [`Connection`]s, Python's `multiprocessing.Pipe()`, built from two
//! [`Channel`]s (one per direction).

use super::Channel;
use super::error::{RecvError, SendError};
use crate::error::Result;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::{Duration, Instant};

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
        Ok((
            Connection {
                tx: a_to_b.clone(),
                rx: b_to_a.clone(),
            },
            Connection {
                tx: b_to_a,
                rx: a_to_b,
            },
        ))
    }
}

/// One end of a [`Pipe`]: sends to the other end and receives what it sends.
///
/// Dropping a connection does not close it (clones live in other processes); call
/// [`close`](Connection::close). A peer killed without closing is not noticed: use
/// [`recv_timeout`](Connection::recv_timeout) or [`poll`](Connection::poll) where that matters.
pub struct Connection<T> {
    tx: Channel<T>,
    rx: Channel<T>,
}

impl<T: Serialize + DeserializeOwned> Connection<T> {
    /// Sends `msg` to the other end, waiting while its buffer is full.
    ///
    /// # Errors
    /// `Closed(msg)` once either end closed; `TooLarge`, `Serialize`, `Corrupted`.
    pub fn send(&self, msg: T) -> std::result::Result<(), SendError<T>> {
        self.tx.send(msg)
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
    /// `Closed` once either end closed and everything sent before was received (Python's
    /// `EOFError`); `Deserialize`, `Corrupted`.
    pub fn recv(&self) -> std::result::Result<T, RecvError> {
        self.rx.recv()
    }

    /// Like [`recv`](Connection::recv), giving up with `Timeout` after `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> std::result::Result<T, RecvError> {
        self.rx.recv_timeout(timeout)
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
    /// would not block; returns whether it would not (a message is ready or the pipe closed).
    pub fn poll(&self, timeout: Duration) -> bool {
        self.rx.poll(timeout)
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
    /// Sends `bytes` to the other end as one message, as they are (Python's `send_bytes`), waiting
    /// while its buffer is full. See [`Channel::send_bytes`].
    pub fn send_bytes(&self, bytes: &[u8]) -> std::result::Result<(), SendError<()>> {
        self.tx.send_bytes(bytes)
    }

    /// Sends `bytes` if there is room now, else `Full(())`.
    pub fn try_send_bytes(&self, bytes: &[u8]) -> std::result::Result<(), SendError<()>> {
        self.tx.try_send_bytes(bytes)
    }

    /// Like [`send_bytes`](Connection::send_bytes), giving up with `Timeout(())` after `timeout`.
    pub fn send_bytes_timeout(
        &self,
        bytes: &[u8],
        timeout: Duration,
    ) -> std::result::Result<(), SendError<()>> {
        self.tx.send_bytes_timeout(bytes, timeout)
    }

    /// Like [`send_bytes`](Connection::send_bytes), giving up with `Timeout(())` at `deadline`.
    pub fn send_bytes_until(
        &self,
        bytes: &[u8],
        deadline: Instant,
    ) -> std::result::Result<(), SendError<()>> {
        self.tx.send_bytes_until(bytes, deadline)
    }

    /// Receives the next message's bytes as they are (Python's `recv_bytes`): a message the other end
    /// sent with [`send`](Connection::send) comes as its postcard encoding.
    pub fn recv_bytes(&self) -> std::result::Result<Vec<u8>, RecvError> {
        self.rx.recv_bytes()
    }

    /// Receives the next message's bytes if one is ready now, else `Empty`.
    pub fn try_recv_bytes(&self) -> std::result::Result<Vec<u8>, RecvError> {
        self.rx.try_recv_bytes()
    }

    /// Like [`recv_bytes`](Connection::recv_bytes), giving up with `Timeout` after `timeout`.
    pub fn recv_bytes_timeout(&self, timeout: Duration) -> std::result::Result<Vec<u8>, RecvError> {
        self.rx.recv_bytes_timeout(timeout)
    }

    /// Like [`recv_bytes`](Connection::recv_bytes), giving up with `Timeout` at `deadline`.
    pub fn recv_bytes_until(&self, deadline: Instant) -> std::result::Result<Vec<u8>, RecvError> {
        self.rx.recv_bytes_until(deadline)
    }

    /// Copies the next message's bytes into the front of `buf` and returns their length (Python's
    /// `recv_bytes_into`); `BufferTooShort { needed }` leaves a longer message in place.
    pub fn recv_bytes_into(&self, buf: &mut [u8]) -> std::result::Result<usize, RecvError> {
        self.rx.recv_bytes_into(buf)
    }

    /// Like [`recv_bytes_into`](Connection::recv_bytes_into) if a message is ready now, else `Empty`.
    pub fn try_recv_bytes_into(&self, buf: &mut [u8]) -> std::result::Result<usize, RecvError> {
        self.rx.try_recv_bytes_into(buf)
    }

    /// Like [`recv_bytes_into`](Connection::recv_bytes_into), giving up with `Timeout` after
    /// `timeout`.
    pub fn recv_bytes_into_timeout(
        &self,
        buf: &mut [u8],
        timeout: Duration,
    ) -> std::result::Result<usize, RecvError> {
        self.rx.recv_bytes_into_timeout(buf, timeout)
    }

    /// Like [`recv_bytes_into`](Connection::recv_bytes_into), giving up with `Timeout` at `deadline`.
    pub fn recv_bytes_into_until(
        &self,
        buf: &mut [u8],
        deadline: Instant,
    ) -> std::result::Result<usize, RecvError> {
        self.rx.recv_bytes_into_until(buf, deadline)
    }
}

impl<T> Clone for Connection<T> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            rx: self.rx.clone(),
        }
    }
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
        (&self.tx, &self.rx).serialize(s)
    }
}

impl<'de, T: Serialize + DeserializeOwned> Deserialize<'de> for Connection<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let (tx, rx) = <(Channel<T>, Channel<T>)>::deserialize(d)?;
        Ok(Self { tx, rx })
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
}
