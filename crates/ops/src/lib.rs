//! Operations on a whole drydock instance: backup, verify, restore and upgrade, and the data
//! directory they work on. The binary drives them; the server runs scheduled backups.
//!
//! An archive is `drydock-backup-<version>-<UTC time>.tar.zst`: a tar stream compressed with
//! zstd, holding `instance/…` (the data dir's files), `database/…` (a consistent copy of the
//! database), `volumes/<workspace>/…` (each workspace's `/projects`, file by file),
//! `images/images.tar` (with `--images`) and, last, `manifest.json` with the size and SHA-256
//! of every entry. It is written under a temporary name and renamed once complete and flushed.

pub mod archive;
pub mod backup;
pub mod database;
pub mod error;
pub mod instance;
pub mod manifest;
pub mod mirror;
pub mod progress;
pub mod restore;
pub mod retention;
pub mod standby;
pub mod upgrade;
pub mod versions;

pub use backup::{BackupOptions, BackupReport, Instance, backup};
pub use error::{OpsError, Result};
