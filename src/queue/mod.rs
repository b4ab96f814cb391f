//! Bounded rings between processes.
