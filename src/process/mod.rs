//! Starting functions in child processes.
pub(crate) mod handoff;
