//! Process-shared synchronisation primitives.
