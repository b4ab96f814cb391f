//! What the containers share: immutable entries (serialised bytes in a block of their own, so an
//! update writes a new entry and commits it with one store), the containers' robust locks, and
//! the way a container names its root in a heap.

use super::Heap;
use super::alloc::{self, BLOCK_HEADER, State};
use crate::error::{Error, Result};
use crate::sync::{LockError, Mutex, MutexGuard};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Serialises `value` for an entry.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|e| Error::Serialization(e.to_string()))
}

/// Runs `f` on `value` serialised: on the stack when short (no allocation on hot paths).
pub(crate) fn encoded<T: Serialize + ?Sized, R>(
    value: &T,
    f: impl FnOnce(&[u8]) -> Result<R>,
) -> Result<R> {
    let mut buf = [0u8; 64];
    match postcard::to_slice(value, &mut buf) {
        Ok(bytes) => f(bytes),
        Err(_) => f(&encode(value)?),
    }
}

/// Deserialises an entry's bytes.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| Error::Serialization(e.to_string()))
}

/// Writes `parts` one after the other into a new block and returns the block (state `Alloc`,
/// word 2 = total length). Nobody else knows the block until the caller publishes it.
pub(crate) fn write(heap: &Heap, parts: &[&[u8]]) -> Result<u64> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let block = heap.alloc_block(len as u64, State::Alloc)?;
    let a = heap.arena();
    let mut at = block + BLOCK_HEADER;
    for part in parts {
        a.write_bytes(at, part)?;
        at += part.len() as u64;
    }
    a.store(block + 16, len as u64)?;
    Ok(block)
}

/// Entries up to this many bytes are copied out onto the stack.
const INLINE: usize = 64;

/// An entry's bytes, copied out: on the stack when short.
pub(crate) enum Bytes {
    Inline([u8; INLINE], usize),
    Heap(Vec<u8>),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Inline(b, n) => &b[..*n],
            Bytes::Heap(v) => v,
        }
    }
}

/// The bytes of entry `block`, checked to be an allocated block holding at most its capacity.
pub(crate) fn read(heap: &Heap, block: u64) -> Result<Bytes> {
    let a = heap.arena();
    let info = alloc::block(a, block)?;
    let len = a.load(block + 16)?;
    if info.state != State::Alloc || len > info.capacity() {
        return Err(Error::Corrupted(
            "container entry is not an allocated block",
        ));
    }
    if len <= INLINE as u64 {
        let mut b = [0u8; INLINE];
        a.read_into(block + BLOCK_HEADER, &mut b[..len as usize])?;
        Ok(Bytes::Inline(b, len as usize))
    } else {
        Ok(Bytes::Heap(a.read_bytes(block + BLOCK_HEADER, len)?))
    }
}

/// Frees entry `block` (0 is no entry). Errors are ignored by callers that already committed:
/// the block then stays allocated (a leak, never a double use).
pub(crate) fn free(heap: &Heap, block: u64) -> Result<()> {
    if block == 0 {
        return Ok(());
    }
    heap.free_block(block, &[State::Alloc])
}

/// Locks a container lock; on `OwnerDied` runs `repair` (which completes or drops the dead
/// holder's intent) and makes the lock consistent.
pub(crate) fn lock<'a>(
    m: &'a Mutex<()>,
    repair: impl FnOnce() -> Result<()>,
) -> Result<MutexGuard<'a, ()>> {
    match m.lock() {
        Ok(g) => Ok(g),
        Err(LockError::OwnerDied(mut g)) => {
            let repaired = repair();
            g.make_consistent();
            repaired.map(|()| g)
        }
        Err(LockError::NotRecoverable) => {
            Err(Error::Corrupted("a container lock is not recoverable"))
        }
        Err(other) => Err(other.into()),
    }
}

/// The root name containers use in a heap of their own.
pub(crate) const ROOT: &str = "root";

/// `Clone`, `Debug`, `Serialize` and `Deserialize` for a container handle `{ root, name }`: it
/// travels as its heap and its root's name, and is looked up (type-checked) again on arrival.
macro_rules! container_handle {
    ($ty:ident < $($g:ident),+ >) => {
        impl<$($g),+> Clone for $ty<$($g),+> {
            fn clone(&self) -> Self {
                $ty {
                    root: self.root.clone(),
                    name: self.name.clone(),
                }
            }
        }

        impl<$($g),+> std::fmt::Debug for $ty<$($g),+> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($ty)).field("name", &self.name).finish()
            }
        }

        impl<$($g),+> serde::Serialize for $ty<$($g),+> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                serde::Serialize::serialize(&(self.root.heap(), &self.name), s)
            }
        }

        impl<'de, $($g),+> serde::Deserialize<'de> for $ty<$($g),+> {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let (heap, name) =
                    <(super::Heap, String) as serde::Deserialize>::deserialize(d)?;
                let root = heap.find(&name).map_err(serde::de::Error::custom)?;
                Ok($ty { root, name })
            }
        }
    };
}

/// The constructors of a container `$ty` whose `in_heap(heap, name, ..)` makes or finds it, in
/// a heap of its own under [`ROOT`]: `new`, `create`, `open`, `open_or_create` and their `_with`
/// forms. `$what` names it in the docs; a new one is `$adj` and holds `$fresh`; `$mismatch` says
/// when `open` finds another type. A container made with a first value takes it as `$value`.
macro_rules! container_constructors {
    (
        $ty:ident,
        $what:literal,
        $adj:literal,
        $fresh:literal,
        $mismatch:literal
        $(, $value:ident: $vt:ty)?
    ) => {
        $crate::shm::object::shared_constructors! {
            $ty($($value: $vt)?);
            #[doc = concat!(
                "A new ", $adj, "anonymous ", $what,
                " (in a heap of its own), shared with the children it is passed to."
            )]
            with:
            /// The options apply to its heap's segment.
            fn new, new_with;
            #[doc = concat!("A new ", $adj, $what, " under `name` (a heap of its own in `/dev/shm`).")]
            with:
            /// The options apply to its heap's segment.
            fn create;
            #[doc = concat!("Opens the ", $what, " another process created under `name`.")]
            ///
            /// # Errors
            #[doc = concat!(
                "[`Error::NotFound`](crate::Error::NotFound), ",
                "[`Error::TypeMismatch`](crate::Error::TypeMismatch) if ", $mismatch, "."
            )]
            with:
            /// The options apply to its heap's segment.
            fn open(name, opts) => {
                let heap = super::Heap::open_with(name, opts)?;
                Ok($ty {
                    root: heap.find(super::entry::ROOT)?,
                    name: super::entry::ROOT.to_owned(),
                })
            };
            #[doc = concat!("Opens `name`, or creates it ", $fresh, " (race-safe).")]
            fn open_or_create;
        }

        /// The container in a heap of its own under `ROOT`: anonymous, or under `name` (opened
        /// instead if it exists and `open_existing`).
        fn make(
            name: Option<&str>,
            open_existing: bool,
            $($value: $vt,)?
            opts: &$crate::shm::ShmOptions,
        ) -> $crate::error::Result<Self> {
            let heap = super::Heap::make(name, open_existing, super::DEFAULT_MAX, opts)?;
            Self::in_heap(&heap, super::entry::ROOT $(, $value)?)
        }
    };
}
