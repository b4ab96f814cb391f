//! Shared-memory segments and the owning handles that live in them.

mod safe;

pub use safe::ShmSafe;
