//! Shared-memory segments and the owning handles that live in them.
//!
//! - [`Segment`]: raw bytes, named (`/dev/shm`) or anonymous (sealed memfd).
//! - [`Value`], [`Array`]: `Pod` data behind a robust lock, like Python's `Value` and `Array`.
//! - [`Shared`]: any [`ShmSafe`] type, e.g. an in-place [`sync`](crate::sync) primitive.

mod array;
mod cleanup;
pub(crate) mod header;
pub(crate) mod object;
mod safe;
mod segment;
mod shared;
mod value;

pub use array::{Array, ArrayGuard};
pub use cleanup::{StaleSegment, remove_stale_segments, stale_segments};
pub use safe::ShmSafe;
pub use segment::{MAX_NAME_LEN, MAX_SEGMENT_LEN, Segment, ShmOptions};
pub use shared::Shared;
pub use value::Value;
