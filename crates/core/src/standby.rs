//! Disaster recovery: a standby instance follows a primary, and can be promoted.
//!
//! What the HTTP layer needs to know of it lives here: the standby's state as its follower
//! reports it ([`StandbyState`], shown by `GET /api/system/state` and the dashboard), and the
//! primary's side of replication ([`ReplicationSource`], implemented by `drydock-ops`), so the
//! server can serve both without doing any IO of its own.

use std::sync::RwLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::Result;

/// The name of the primary's replication token in `secrets/`.
pub const REPLICATION_TOKEN_SECRET: &str = "replication-token";

/// What refused writes say on a standby.
pub fn refusal(primary: &str) -> String {
    format!(
        "standby: this instance follows the primary {primary} and takes no changes; make them on the primary \
         (or promote this standby with `drydock promote`)"
    )
}

/// The last check of a standby's copy (`drydock standby check`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    pub time: DateTime<Utc>,
    pub ok: bool,
    /// What is wrong, one line each (empty when `ok`).
    pub problems: Vec<String>,
    /// The recovery point: how old the newest data of the copy was when checked, in seconds.
    pub rpo_seconds: Option<i64>,
    pub users: u64,
    pub workspaces: u64,
}

/// How a standby is following its primary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FollowState {
    /// The primary's URL.
    pub primary: String,
    /// When the last sync landed.
    pub last_sync: Option<DateTime<Utc>>,
    /// The time of the primary's data that sync carried (the lag is measured from it).
    pub data_time: Option<DateTime<Utc>>,
    /// Why the last attempt failed (cleared by the next sync that lands).
    pub last_error: Option<String>,
    /// The epoch of the primary followed.
    pub epoch: u64,
    pub last_check: Option<CheckReport>,
}

impl FollowState {
    /// Seconds between the newest data of the copy and `now`.
    pub fn lag_seconds(&self, now: DateTime<Utc>) -> Option<i64> {
        self.data_time.map(|t| (now - t).num_seconds().max(0))
    }
}

/// A standby's state while it follows, shared by the follower (which writes it) and the
/// HTTP layer (which shows it and refuses writes while it is set).
#[derive(Debug, Default)]
pub struct StandbyState(RwLock<FollowState>);

impl StandbyState {
    pub fn new(state: FollowState) -> Self {
        StandbyState(RwLock::new(state))
    }

    pub fn get(&self) -> FollowState {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn update(&self, change: impl FnOnce(&mut FollowState)) -> FollowState {
        let mut state = self.0.write().unwrap_or_else(|e| e.into_inner());
        change(&mut state);
        state.clone()
    }
}

/// Who the primary is, as a standby asks before each sync.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrimaryStatus {
    pub instance_id: String,
    pub version: String,
    pub schema_version: i64,
    /// Raised by every promotion: a standby never follows an instance of a lower epoch than
    /// its own.
    pub epoch: u64,
    pub backend: String,
    pub time: DateTime<Utc>,
}

/// One consistent copy of the instance (database, config, secrets), compressed, with a
/// digest of its content so an unchanged copy need not travel again.
pub struct Snapshot {
    pub bytes: Vec<u8>,
    pub digest: String,
}

/// An image the primary's workspaces use (their images and snapshots).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ImageRef {
    pub name: String,
    /// The engine's content id (`sha256:…`): the same image has the same id on every engine.
    pub id: String,
}

/// Bytes as they are read; an error ends the stream.
pub type Chunks = BoxStream<'static, std::io::Result<Vec<u8>>>;

/// The primary's side of replication.
#[async_trait]
pub trait ReplicationSource: Send + Sync {
    /// Whether `token` is the replication token in `secrets/` now (read each time, so a
    /// rotation holds at once).
    fn accepts(&self, token: &str) -> bool;
    async fn status(&self) -> Result<PrimaryStatus>;
    /// A snapshot, or `None` when its digest is `known` (nothing changed).
    async fn snapshot(&self, known: Option<&str>) -> Result<Option<Snapshot>>;
    /// A tar of what changed in a workspace's `/projects` against the standby's index
    /// (zstd-compressed JSON), ending with the summary entry; the tar is zstd-compressed.
    async fn projects_delta(&self, workspace: &str, known_index: &[u8]) -> Result<Chunks>;
    /// The images the workspaces use, for a standby run with `--images`.
    async fn images(&self) -> Result<Vec<ImageRef>>;
    /// Some of those images as one `docker save` tar.
    async fn export_images(&self, names: &[String]) -> Result<Chunks>;
}
