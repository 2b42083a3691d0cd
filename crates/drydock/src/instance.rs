//! The data directory lives in `drydock-ops` (backup and restore work on it too).

pub use drydock_ops::instance::*;
