//! Iterating over what a queue, channel or connection delivers, until it is closed: Python's
//! `for item in iter(q.get, STOP)`, with [`close`](super::Queue::close) as the sentinel.
//!
//! ```
//! let q = multiproc::Queue::<u64>::new(8)?;
//! for i in 0..3 {
//!     q.push(i).unwrap();
//! }
//! q.close(); // the producer is done: the consumer drains, then its loop ends
//! let got: Vec<u64> = q.iter().collect::<Result<_, _>>().unwrap();
//! assert_eq!(got, [0, 1, 2]);
//! # Ok::<(), multiproc::Error>(())
//! ```
//!
//! Items are `Result`s: a corrupted ring (or, for channels, a message that does not decode)
//! is reported, never skipped silently. After a `Closed` or `Corrupted` the iterator is done.

use super::error::{PopError, RecvError};
use super::handle::{Channel, Queue};
use super::pipe::Connection;
use bytemuck::Pod;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Blocking iterator over a [`Queue`]: see [`Queue::iter`].
#[derive(Debug)]
pub struct QueueIter<'a, T: Pod + Send> {
    queue: &'a Queue<T>,
    blocking: bool,
    done: bool,
}

impl<T: Pod + Send> Iterator for QueueIter<'_, T> {
    type Item = Result<T, PopError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let popped = if self.blocking {
            self.queue.pop()
        } else {
            self.queue.try_pop()
        };
        match popped {
            Ok(value) => Some(Ok(value)),
            Err(PopError::Closed | PopError::Empty) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl<T: Pod + Send> Queue<T> {
    /// Pops values, waiting for each, until the queue is closed and drained.
    pub fn iter(&self) -> QueueIter<'_, T> {
        QueueIter {
            queue: self,
            blocking: true,
            done: false,
        }
    }

    /// Pops the values there are now, without waiting.
    pub fn try_iter(&self) -> QueueIter<'_, T> {
        QueueIter {
            queue: self,
            blocking: false,
            done: false,
        }
    }
}

/// The receive a [`RecvIter`] repeats.
trait Receiver<T> {
    fn recv_blocking(&self) -> Result<T, RecvError>;
    fn recv_now(&self) -> Result<T, RecvError>;
}

impl<T: Serialize + DeserializeOwned> Receiver<T> for Channel<T> {
    fn recv_blocking(&self) -> Result<T, RecvError> {
        self.recv()
    }
    fn recv_now(&self) -> Result<T, RecvError> {
        self.try_recv()
    }
}

impl<T: Serialize + DeserializeOwned> Receiver<T> for Connection<T> {
    fn recv_blocking(&self) -> Result<T, RecvError> {
        self.recv()
    }
    fn recv_now(&self) -> Result<T, RecvError> {
        self.try_recv()
    }
}

/// Iterator over the messages of a [`Channel`] or [`Connection`]: see [`Channel::iter`].
pub struct RecvIter<'a, T> {
    source: &'a dyn Receiver<T>,
    blocking: bool,
    done: bool,
}

impl<T> std::fmt::Debug for RecvIter<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvIter")
            .field("blocking", &self.blocking)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<T> Iterator for RecvIter<'_, T> {
    type Item = Result<T, RecvError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let received = if self.blocking {
            self.source.recv_blocking()
        } else {
            self.source.recv_now()
        };
        match received {
            Ok(msg) => Some(Ok(msg)),
            Err(RecvError::Closed | RecvError::Empty) => {
                self.done = true;
                None
            }
            // The bad record was consumed: the next message may be fine.
            Err(e @ RecvError::Deserialize(_)) => Some(Err(e)),
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

impl<T: Serialize + DeserializeOwned> Channel<T> {
    /// Receives messages, waiting for each, until the channel is closed and drained.
    pub fn iter(&self) -> RecvIter<'_, T> {
        RecvIter {
            source: self,
            blocking: true,
            done: false,
        }
    }

    /// Receives the messages there are now, without waiting.
    pub fn try_iter(&self) -> RecvIter<'_, T> {
        RecvIter {
            source: self,
            blocking: false,
            done: false,
        }
    }
}

impl<T: Serialize + DeserializeOwned> Connection<T> {
    /// Receives messages from the other end, waiting for each, until the pipe is closed.
    pub fn iter(&self) -> RecvIter<'_, T> {
        RecvIter {
            source: self,
            blocking: true,
            done: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iterators_drain_until_closed_or_empty() {
        let q = Queue::<u32>::new(8).unwrap();
        q.push(1).unwrap();
        q.push(2).unwrap();
        assert_eq!(q.try_iter().map(Result::unwrap).collect::<Vec<_>>(), [1, 2]);
        q.push(3).unwrap();
        q.close();
        assert_eq!(q.iter().map(Result::unwrap).collect::<Vec<_>>(), [3]);

        let ch = Channel::<String>::new(1024).unwrap();
        ch.send("a".into()).unwrap();
        ch.send("b".into()).unwrap();
        let producer = {
            let ch = ch.clone();
            std::thread::spawn(move || {
                std::thread::sleep(std::time::Duration::from_millis(20));
                ch.send("c".into()).unwrap();
                ch.close();
            })
        };
        let got: Vec<String> = ch.iter().map(Result::unwrap).collect();
        producer.join().unwrap();
        assert_eq!(got, ["a", "b", "c"]);
    }
}
