//! Disaster recovery: a standby instance follows a primary and can be promoted.
//!
//! The primary serves `/api/replication/…` ([`source::PrimarySource`]) to a standby holding
//! its replication token. The standby ([`follower::Follower`]) asks every interval who the
//! primary is (version, epoch), fetches a consistent snapshot of its database, config and
//! secrets when its digest changed, and what changed in the workspaces' `/projects`. A sync
//! is two steps, the database (with config and secrets) and then the files, so the
//! database's copy never waits for volumes to be read. Each step is staged whole under
//! `standby/incoming/` first, marked ready, then applied (the database in one transaction,
//! files by rename); a step cut off before the mark is thrown away, one cut off after it is
//! applied again at the next start. So the copy is always the last completed step.
//!
//! What lives in `<data-dir>/standby/`: `follow.json` (whom to follow; present while the
//! instance is a standby), `state.json` (how the following goes), `epoch` (raised by every
//! promotion), `promoted.json` (the last promotion), `projects/` (the copy of every
//! workspace's `/projects`, loaded into volumes after a promotion), `incoming/` (a sync
//! being staged).

pub mod check;
pub mod follower;
pub mod snapshot;
pub mod source;

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use drydock_core::standby::FollowState;
use serde::{Deserialize, Serialize};

use crate::error::{OpsError, Result};
use crate::instance::{DataDir, read_trimmed, write_atomic};

/// Where a standby keeps its copy of the workspaces' `/projects`.
pub const MIRROR_DIR: &str = "projects";

/// Whom a standby follows (`drydock standby --primary … --token-file …`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FollowSettings {
    pub primary: String,
    /// The file holding the primary's replication token (read at every sync).
    pub token_file: PathBuf,
    pub interval_secs: u64,
    /// Also copy the workspaces' images and snapshots.
    #[serde(default)]
    pub images: bool,
}

impl FollowSettings {
    pub fn interval(&self) -> Duration {
        Duration::from_secs(self.interval_secs.max(1))
    }
}

/// What the follower keeps between syncs, beside what it shows.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyncRecord {
    pub follow: FollowState,
    /// The digest of the last snapshot applied.
    pub digest: Option<String>,
    /// Per workspace, what its `/projects` copy was taken at (`status|updated`).
    #[serde(default)]
    pub projects: std::collections::BTreeMap<String, String>,
    /// The digest of the database rows last applied (what `standby check` compares).
    pub database_digest: Option<String>,
    /// Per workspace, the primary's time just before its files were last read.
    #[serde(default)]
    pub projects_read: std::collections::BTreeMap<String, DateTime<Utc>>,
    /// A database copy landed whose images (with `--images`) are not all here yet.
    #[serde(default)]
    pub images_pending: bool,
}

/// The last promotion of this instance.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Promotion {
    pub time: DateTime<Utc>,
    pub epoch: u64,
    /// The primary it followed until then.
    pub primary: String,
    /// The newest data of the copy it serves.
    pub data_time: Option<DateTime<Utc>>,
    /// Whether the first start as primary has stopped the lost primary's workspaces.
    #[serde(default)]
    pub settled: bool,
}

/// The standby's files in a data dir.
#[derive(Debug, Clone)]
pub struct StandbyDir {
    pub root: PathBuf,
}

impl StandbyDir {
    pub fn of(dir: &DataDir) -> Self {
        StandbyDir { root: dir.root.join("standby") }
    }
    pub fn follow_file(&self) -> PathBuf {
        self.root.join("follow.json")
    }
    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }
    pub fn epoch_file(&self) -> PathBuf {
        self.root.join("epoch")
    }
    pub fn promoted_file(&self) -> PathBuf {
        self.root.join("promoted.json")
    }
    pub fn mirror(&self) -> PathBuf {
        self.root.join(MIRROR_DIR)
    }
    pub fn incoming(&self) -> PathBuf {
        self.root.join("incoming")
    }
    pub fn check_file(&self) -> PathBuf {
        self.root.join("check.json")
    }

    fn ensure(&self) -> Result<()> {
        std::fs::create_dir_all(&self.root).map_err(OpsError::io("create", &self.root))
    }

    /// Whom this instance follows; `None` unless it is a standby.
    pub fn follow(&self) -> Result<Option<FollowSettings>> {
        read_json(&self.follow_file())
    }

    pub fn set_follow(&self, settings: &FollowSettings) -> Result<()> {
        self.ensure()?;
        write_json(&self.follow_file(), settings)
    }

    pub fn record(&self) -> Result<SyncRecord> {
        Ok(read_json(&self.state_file())?.unwrap_or_default())
    }

    pub fn set_record(&self, record: &SyncRecord) -> Result<()> {
        self.ensure()?;
        write_json(&self.state_file(), record)
    }

    /// The instance's epoch: 0 until a promotion raises it.
    pub fn epoch(&self) -> Result<u64> {
        let path = self.epoch_file();
        if !path.exists() {
            return Ok(0);
        }
        read_trimmed(&path)?
            .parse()
            .map_err(|e| OpsError::Refused(format!("{} does not hold an epoch number: {e}", path.display())))
    }

    pub fn set_epoch(&self, epoch: u64) -> Result<()> {
        self.ensure()?;
        write_atomic(&self.epoch_file(), format!("{epoch}\n").as_bytes(), 0o644)
    }

    pub fn last_promotion(&self) -> Result<Option<Promotion>> {
        read_json(&self.promoted_file())
    }

    /// Makes this standby a primary: the epoch goes above both its own and its primary's,
    /// the promotion is recorded, and `follow.json` goes (last: until then a crash leaves a
    /// standby that can be promoted again).
    pub fn promote(&self) -> Result<Promotion> {
        let Some(follow) = self.follow()? else {
            return Err(OpsError::Refused("this instance is not a standby: there is nothing to promote".into()));
        };
        let record = self.record()?;
        if record.follow.last_sync.is_none() {
            return Err(OpsError::Refused(format!(
                "this standby has no copy yet (no sync from {} has completed): promoting it would serve an empty \
                 instance; see its lastError in `GET /api/system/state`",
                follow.primary
            )));
        }
        let epoch = self.epoch()?.max(record.follow.epoch) + 1;
        let promotion = Promotion {
            time: Utc::now(),
            epoch,
            primary: follow.primary,
            data_time: record.follow.data_time,
            settled: false,
        };
        self.set_epoch(epoch)?;
        write_json(&self.promoted_file(), &promotion)?;
        std::fs::remove_file(self.follow_file()).map_err(OpsError::io("remove", &self.follow_file()))?;
        Ok(promotion)
    }
}

impl StandbyDir {
    /// A promotion whose first start as primary has not yet stopped the lost primary's
    /// workspaces.
    pub fn unsettled_promotion(&self) -> Result<Option<Promotion>> {
        Ok(self.last_promotion()?.filter(|p| !p.settled))
    }

    pub fn mark_settled(&self, promotion: &Promotion) -> Result<()> {
        write_json(&self.promoted_file(), &Promotion { settled: true, ..promotion.clone() })
    }
}

/// Promotes a standby: a sync cut off midway is settled (applied when it was staged whole),
/// the epoch is raised, `follow.json` goes, and the promotion is an audit event.
pub async fn promote(
    dir: &DataDir,
    database: &crate::database::Database,
    follower: &follower::Follower,
) -> Result<Promotion> {
    follower.settle().await?;
    let promotion = StandbyDir::of(dir).promote()?;
    let event = drydock_core::audit_log::NewEvent::new(
        Utc::now(),
        drydock_core::audit_log::Actor::host_cli(),
        "system.promote",
        drydock_core::audit_log::Target::system(),
    )
    .with("formerPrimary", &promotion.primary)
    .with("epoch", promotion.epoch)
    .with("dataTime", promotion.data_time.map(|t| t.to_rfc3339()));
    database.record_event(&event).await?;
    Ok(promotion)
}

fn read_json<T: serde::de::DeserializeOwned>(path: &std::path::Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| OpsError::Refused(format!("{} cannot be read: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(OpsError::io("read", path)(e)),
    }
}

fn write_json<T: Serialize>(path: &std::path::Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(OpsError::step("encoding JSON"))?;
    write_atomic(path, &bytes, 0o600)
}
