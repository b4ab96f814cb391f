//! A file descriptor passed to a spawned child as an argument.

use crate::shm::handoff;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::os::fd::{AsFd, OwnedFd};

/// An owned file descriptor that can be a [`Process::spawn`](crate::Process::spawn) argument:
/// the child receives its own descriptor for the same open file (a pipe end, a socket, a
/// memfd). It cannot be serialised anywhere else (that is an error).
///
/// The child's descriptor is `O_CLOEXEC`, and the inherited original is closed as soon as the
/// arguments are decoded, so grandchildren do not inherit it.
#[derive(Debug)]
pub struct FdArg(pub OwnedFd);

impl Serialize for FdArg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match handoff::export_fd(self.0.as_fd()) {
            Some(slot) => s.serialize_u32(slot),
            None => Err(serde::ser::Error::custom(
                "a file descriptor can only be sent as an argument of Process::spawn",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for FdArg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let slot = u32::deserialize(d)?;
        handoff::import_fd(slot)
            .map(FdArg)
            .map_err(|e| serde::de::Error::custom(format!("inherited fd slot {slot}: {e}")))
    }
}
