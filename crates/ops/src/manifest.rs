//! What a backup holds, written as `manifest.json`, the archive's last entry: the versions it
//! came from, the instance it belongs to, and the size and SHA-256 of every other entry.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Raised when the archive's layout changes; a binary refuses formats newer than its own.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST_ENTRY: &str = "manifest.json";

/// Entries under this prefix are the data dir's files (config, secrets, version, instance id).
pub const INSTANCE_PREFIX: &str = "instance/";
/// The database: `database/drydock.db` (SQLite) or `database/drydock.sql` (PostgreSQL dump).
pub const SQLITE_ENTRY: &str = "database/drydock.db";
pub const POSTGRES_ENTRY: &str = "database/drydock.sql";
/// `volumes/<workspace id>/…`: the files of that workspace's `/projects`.
pub const VOLUMES_PREFIX: &str = "volumes/";
/// The images and snapshots the workspaces use, as one `docker save` tar.
pub const IMAGES_ENTRY: &str = "images/images.tar";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format: u32,
    pub drydock_version: String,
    pub schema_version: i64,
    pub instance_id: String,
    pub created: DateTime<Utc>,
    /// `sqlite` or `postgres`.
    pub database: String,
    /// The workspaces whose `/projects` the archive holds (empty with `--no-projects`).
    pub workspaces: Vec<String>,
    pub projects: bool,
    /// The images in `images/images.tar` (empty without `--images`).
    pub images: Vec<String>,
    pub entries: Vec<ManifestEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManifestEntry {
    pub path: String,
    pub size: u64,
    /// Of the entry's data; of the link target for links; of nothing for directories.
    pub sha256: String,
}

impl Manifest {
    /// The sum of the entries' sizes: what a restore writes.
    pub fn total_size(&self) -> u64 {
        self.entries.iter().map(|e| e.size).sum()
    }
}

/// The workspace an entry belongs to, and the path inside its `/projects`.
pub fn split_volume_entry(path: &str) -> Option<(&str, &str)> {
    let inside = path.strip_prefix(VOLUMES_PREFIX)?;
    Some(inside.split_once('/').unwrap_or((inside, ""))).filter(|(workspace, _)| !workspace.is_empty())
}
