//! Shared-memory segments and the owning handles that live in them.
//!
//! - [`Segment`]: raw bytes, named (`/dev/shm`) or anonymous (sealed memfd).
//! - [`Value`], [`Array`]: `Pod` data behind a robust lock, like Python's `Value` and `Array`.
//! - [`Shared`]: any [`ShmSafe`] type, e.g. an in-place [`sync`](crate::sync) primitive.

mod array;
mod cleanup;
pub(crate) mod handoff;
pub(crate) mod header;
mod inspect;
pub(crate) mod object;
mod pod_access;
mod segment;
mod shared;
mod value;

pub use crate::safe::ShmSafe;
pub use array::{Array, ArrayGuard};
pub use cleanup::{StaleSegment, remove_stale_segments, stale_segments};
pub use inspect::{LockState, ObjectState, SegmentInfo, list_segments, segment_info};
pub use segment::{MAX_NAME_LEN, MAX_SEGMENT_LEN, Segment, ShmOptions};
pub use shared::Shared;
pub use value::Value;

/// Entry points for the fuzz targets in `fuzz/` (not part of the public API).
#[doc(hidden)]
pub mod __fuzz {
    use super::object::Object;
    use super::{Array, Segment, ShmOptions, Value};
    use crate::error::{Error, Result};

    /// The bytes of a freshly created anonymous object, header and payload: a `Value<u64>`
    /// (`kind` 0), an `Array<u32>` (1) or an `Array<[u8; 3]>` (2) of `1 + elems % 64` elements.
    /// A starting point for mutations that pass every check but the ones they break.
    pub fn valid_bytes(kind: u8, elems: usize) -> Vec<u8> {
        let n = 1 + elems % 64;
        let segment = match kind % 3 {
            0 => Value::new(n as u64).map(|v| v.segment().clone()),
            1 => Array::<u32>::zeroed(n).map(|a| a.segment().clone()),
            _ => Array::<[u8; 3]>::zeroed(n).map(|a| a.segment().clone()),
        };
        let Ok(segment) = segment else {
            return Vec::new();
        };
        let mut bytes = vec![0; segment.len()];
        // SAFETY: the mapping is `segment.len()` bytes, as is `bytes`, and no other process or
        // thread knows this fresh anonymous segment.
        unsafe { std::ptr::copy_nonoverlapping(segment.as_ptr(), bytes.as_mut_ptr(), bytes.len()) };
        bytes
    }

    /// Puts `bytes` in an anonymous segment of `len` bytes (zero-padded or cut), opens it as
    /// each typed object, and touches what opened; returns each outcome. Must never panic, hang
    /// or fault, whatever the bytes.
    pub fn open_bytes(bytes: &[u8], len: usize) -> Vec<Result<()>> {
        let segment = match Segment::anonymous(len) {
            Ok(s) => s,
            Err(e) => return vec![Err(e)],
        };
        let n = bytes.len().min(segment.len());
        // SAFETY: the mapping is `segment.len()` bytes, `n` is at most that, and no other
        // process or thread knows this fresh anonymous segment.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), segment.as_ptr(), n) };
        let opts = ShmOptions::new().init_timeout(std::time::Duration::ZERO);
        vec![
            Object::from_segment(segment.clone(), &Value::<u64>::spec(), &opts)
                .and_then(Value::<u64>::from_object)
                .map(|v| drop(v.mutex().try_lock().map(|g| *g))),
            Object::from_segment(segment.clone(), &Array::<u32>::spec(), &opts)
                .and_then(Array::<u32>::from_object)
                .map(|a| {
                    drop(
                        a.try_lock()
                            .map(|g| g.iter().map(|&x| u64::from(x)).sum::<u64>()),
                    )
                }),
            Object::from_segment(segment, &Array::<[u8; 3]>::spec(), &opts)
                .and_then(Array::<[u8; 3]>::from_object)
                .map(|a| drop(a.try_lock().map(|g| g.len()))),
        ]
        .into_iter()
        .map(|r: Result<()>| r.map_err(|e: Error| e))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::__fuzz::{open_bytes, valid_bytes};
    use crate::Error;

    /// The fuzz target's starting points are what they claim: each opens as its own type only,
    /// and cut short it opens as none.
    #[test]
    fn valid_bytes_open_as_their_own_type_only() {
        for kind in 0..3u8 {
            let bytes = valid_bytes(kind, 5);
            let outcomes = open_bytes(&bytes, bytes.len());
            for (i, outcome) in outcomes.iter().enumerate() {
                if i == usize::from(kind) {
                    assert!(outcome.is_ok(), "kind {kind}: {outcome:?}");
                } else {
                    assert!(
                        matches!(outcome, Err(Error::TypeMismatch { .. })),
                        "kind {kind} opened as {i}: {outcome:?}"
                    );
                }
            }
            let cut = open_bytes(&bytes, bytes.len() - 1);
            assert!(cut.iter().all(Result::is_err), "kind {kind} cut: {cut:?}");
        }
    }
}
