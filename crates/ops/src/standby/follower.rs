//! The standby's side: following the primary, one whole sync at a time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use drydock_core::VERSION;
use drydock_core::standby::{ImageRef, PrimaryStatus, StandbyState};
use drydock_docker::DockerRuntime;
use drydock_docker::projects_sync::DeltaSummary;
use futures::StreamExt;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::snapshot::{InstanceCopy, apply_files};
use super::{FollowSettings, StandbyDir, SyncRecord, read_json, write_json};
use crate::database::Database;
use crate::error::{OpsError, Result, fail_point};
use crate::instance::{DataDir, read_trimmed, write_atomic};
use crate::mirror;

const STATUS_TIMEOUT: Duration = Duration::from_secs(30);
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(600);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Files modified this close (in seconds) before the primary last read them may have
/// changed again unseen (the engine's times are whole seconds; clocks may differ slightly).
const RACY_SECONDS: i64 = 2;

/// Statuses in which a workspace's files may change: its copy is refreshed at every sync.
const ACTIVE: &[&str] = &["RUNNING", "STARTING", "STOPPING"];

/// A staged sync, written last: once it exists the sync is applied, even after a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Plan {
    /// The snapshot's digest, when a new snapshot is staged.
    digest: Option<String>,
    data_time: DateTime<Utc>,
    epoch: u64,
    /// Every workspace of the primary and what its copy is taken at.
    workspaces: BTreeMap<String, String>,
    /// Workspaces whose files were fetched.
    fetched: Vec<String>,
    /// Workspaces the primary no longer has.
    removed: Vec<String>,
}

/// What one sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    /// Nothing changed on the primary since the last sync.
    Unchanged,
    /// A new copy landed: the database (when it changed) and these workspaces' files.
    Applied { database: bool, workspaces: usize, bytes: u64 },
}

pub struct Follower {
    dir: DataDir,
    files: StandbyDir,
    settings: FollowSettings,
    database: Database,
    state: Arc<StandbyState>,
    client: reqwest::Client,
    /// Bumped after each sync that changed the copy, so the server reloads what it holds.
    applied: watch::Sender<u64>,
    /// The standby's engine, for `--images`.
    engine: Option<DockerRuntime>,
}

impl Follower {
    pub fn new(
        dir: DataDir,
        settings: FollowSettings,
        database: Database,
        state: Arc<StandbyState>,
        applied: watch::Sender<u64>,
        engine: Option<DockerRuntime>,
    ) -> Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(OpsError::step("making the HTTP client"))?;
        Ok(Follower { files: StandbyDir::of(&dir), dir, settings, database, state, client, applied, engine })
    }

    /// Syncs every interval until `stop` turns true. Failures are recorded (log and
    /// `lastError`); the last good copy stays.
    pub async fn run(&self, mut stop: watch::Receiver<bool>) {
        let mut ticks = tokio::time::interval(self.settings.interval());
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stop.changed() => break,
            }
            if *stop.borrow() {
                break;
            }
            // `drydock standby check` runs apart and leaves its report in a file.
            let check = super::check::last_check(&self.files);
            self.state.update(|s| s.last_check = check);
            match self.sync_once().await {
                Ok(SyncOutcome::Applied { database, workspaces, bytes }) => {
                    tracing::info!(database, workspaces, bytes, primary = %self.settings.primary, "standby sync landed")
                }
                Ok(SyncOutcome::Unchanged) => tracing::debug!("standby: nothing changed on the primary"),
                Err(e) => self.failed(&e),
            }
        }
    }

    fn failed(&self, e: &OpsError) {
        let message = e.to_string();
        tracing::warn!(primary = %self.settings.primary, error = %message, "standby sync failed; the last good copy stays");
        let follow = self.state.update(|s| s.last_error = Some(message));
        if let Ok(mut record) = self.files.record() {
            record.follow = follow;
            let _ = self.files.set_record(&record);
        }
    }

    /// One sync, then (with `--images`) the images a new database copy names.
    pub async fn sync_once(&self) -> Result<SyncOutcome> {
        let outcome = self.sync_copy().await?;
        if self.settings.images && self.files.record()?.images_pending {
            let token = self.token()?;
            self.sync_images(&token).await?;
            let mut record = self.files.record()?;
            record.images_pending = false;
            self.files.set_record(&record)?;
        }
        Ok(outcome)
    }

    /// Two whole steps, each staged, marked ready, then applied: the database (with the
    /// config and secrets), then the workspaces' files that changed.
    async fn sync_copy(&self) -> Result<SyncOutcome> {
        let incoming = self.files.incoming();
        if plan_file(&incoming).exists() {
            // A sync staged whole but cut off while applying: finish it first.
            self.apply_incoming().await?;
        }
        remove_dir(&incoming)?;
        let token = self.token()?;
        let status: PrimaryStatus = self.status(&token).await?;
        let record = self.files.record()?;
        self.check_primary(&status, &record)?;

        let snapshot = self.snapshot(&token, record.digest.as_deref()).await?;
        let copy = snapshot.as_ref().map(|(bytes, _)| InstanceCopy::decode(bytes)).transpose()?;
        let workspaces = match &copy {
            Some(copy) => copy.workspaces(),
            None => record.projects.clone(),
        };
        let mirror = self.files.mirror();
        let fetch: Vec<String> = workspaces
            .iter()
            .filter(|(ws, marker)| {
                let active = ACTIVE.contains(&marker.split('|').next().unwrap_or(""));
                active || record.projects.get(*ws) != Some(*marker) || !mirror::index_path(&mirror, ws).exists()
            })
            .map(|(ws, _)| ws.clone())
            .collect();
        let removed: Vec<String> = record.projects.keys().filter(|ws| !workspaces.contains_key(*ws)).cloned().collect();
        if copy.is_none() && fetch.is_empty() && removed.is_empty() {
            let follow = self.state.update(|s| {
                s.last_sync = Some(Utc::now());
                s.data_time = Some(status.time);
                s.last_error = None;
                s.epoch = status.epoch;
            });
            self.files.set_record(&SyncRecord { follow, ..record })?;
            return Ok(SyncOutcome::Unchanged);
        }

        // The database first, as a whole step of its own: its copy need not wait for the
        // workspaces' files, which take a read of each running volume.
        let mut outcome = SyncOutcome::Unchanged;
        if let Some((bytes, digest)) = snapshot {
            std::fs::create_dir_all(&incoming).map_err(OpsError::io("create", &incoming))?;
            write_atomic(&incoming.join("snapshot.zst"), &bytes, 0o600)?;
            drydock_core::testing_hooks::pause_point_async("standby-staged").await;
            let plan = Plan {
                digest: Some(digest),
                data_time: status.time,
                epoch: status.epoch,
                workspaces: record.projects.clone(),
                fetched: Vec::new(),
                removed: Vec::new(),
            };
            write_json(&plan_file(&incoming), &plan)?;
            outcome = self.apply_incoming().await?;
        }
        if fetch.is_empty() && removed.is_empty() {
            return Ok(outcome);
        }
        std::fs::create_dir_all(incoming.join("projects")).map_err(OpsError::io("create", &incoming))?;
        for ws in &fetch {
            self.stage_projects(&token, ws, record.projects_read.get(ws).copied(), &incoming).await?;
        }
        let plan =
            Plan { digest: None, data_time: status.time, epoch: status.epoch, workspaces, fetched: fetch, removed };
        write_json(&plan_file(&incoming), &plan)?;
        let files = self.apply_incoming().await?;
        Ok(match (outcome, files) {
            (SyncOutcome::Applied { .. }, SyncOutcome::Applied { workspaces, bytes, .. }) => {
                SyncOutcome::Applied { database: true, workspaces, bytes }
            }
            (_, files) => files,
        })
    }

    /// Before a promotion: applies a sync that was staged whole, or throws away one that was
    /// not, so the copy is the last completed sync.
    pub async fn settle(&self) -> Result<()> {
        let incoming = self.files.incoming();
        if plan_file(&incoming).exists() {
            self.apply_incoming().await?;
        }
        remove_dir(&incoming)
    }

    /// Applies the staged sync: database (one transaction), files, then each workspace's
    /// files; every step can run again after a crash.
    async fn apply_incoming(&self) -> Result<SyncOutcome> {
        let incoming = self.files.incoming();
        let plan: Plan =
            read_json(&plan_file(&incoming))?.ok_or_else(|| OpsError::Refused("the staged sync has no plan".into()))?;
        let snapshot = incoming.join("snapshot.zst");
        let database = snapshot.exists();
        let mut database_digest = None;
        if database {
            let bytes = std::fs::read(&snapshot).map_err(OpsError::io("read", &snapshot))?;
            let copy = InstanceCopy::decode(&bytes)?;
            self.database
                .with_store("applying the primary's database", async |store| {
                    store.apply_from_primary(&copy.database).await
                })
                .await?;
            fail_point("standby-apply")?;
            apply_files(&self.dir, &copy.files)?;
            database_digest = Some(super::check::database_digest(&copy.database)?);
        }
        let mirror = self.files.mirror();
        std::fs::create_dir_all(&mirror).map_err(OpsError::io("create", &mirror))?;
        let mut bytes = 0;
        for ws in &plan.fetched {
            let staging = incoming.join("projects").join(ws);
            let summary_path = incoming.join("projects").join(format!("{ws}.summary.json"));
            let Some(summary) = read_json::<DeltaSummary>(&summary_path)? else { continue };
            bytes += summary.bytes;
            if staging.exists() {
                mirror::apply_staged(&staging, &summary, &mirror.join(ws))?;
            }
        }
        for ws in &plan.removed {
            remove_dir(&mirror.join(ws))?;
            let index = mirror::index_path(&mirror, ws);
            if index.exists() {
                std::fs::remove_file(&index).map_err(OpsError::io("remove", &index))?;
            }
        }
        let mut record = self.files.record()?;
        if plan.digest.is_some() {
            record.digest = plan.digest.clone();
            record.database_digest = database_digest;
            record.images_pending = true;
        }
        record.projects = plan.workspaces.clone();
        record.projects_read.retain(|ws, _| plan.workspaces.contains_key(ws));
        for ws in &plan.fetched {
            record.projects_read.insert(ws.clone(), plan.data_time);
        }
        record.follow = self.state.update(|s| {
            s.last_sync = Some(Utc::now());
            s.data_time = Some(plan.data_time);
            s.last_error = None;
            s.epoch = plan.epoch;
        });
        self.files.set_record(&record)?;
        remove_dir(&incoming)?;
        self.applied.send_modify(|generation| *generation += 1);
        Ok(SyncOutcome::Applied { database, workspaces: plan.fetched.len(), bytes })
    }

    fn token(&self) -> Result<String> {
        let path = &self.settings.token_file;
        let token = read_trimmed(path)?;
        if token.is_empty() {
            return Err(OpsError::Refused(format!("the token file {} is empty", path.display())));
        }
        Ok(token)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.primary.trim_end_matches('/'))
    }

    async fn status(&self, token: &str) -> Result<PrimaryStatus> {
        let response = self
            .client
            .get(self.url("/api/replication/status"))
            .bearer_auth(token)
            .timeout(STATUS_TIMEOUT)
            .send()
            .await
            .map_err(|e| unreachable(&self.settings.primary, e))?;
        let response = refused(response).await?;
        response.json().await.map_err(OpsError::step("reading the primary's status"))
    }

    /// The seed's rule: a standby runs the primary's version. And it never follows an
    /// instance a promotion superseded.
    fn check_primary(&self, status: &PrimaryStatus, record: &SyncRecord) -> Result<()> {
        if status.version != VERSION {
            return Err(OpsError::Refused(format!(
                "version mismatch: the primary runs drydock {}, this standby {VERSION}; no change is applied until \
                 both run the same version (upgrade the older one); the last good copy stays",
                status.version
            )));
        }
        let own = self.files.epoch()?.max(record.follow.epoch);
        if status.epoch < own {
            return Err(OpsError::Refused(format!(
                "the instance at {} has epoch {}, lower than this standby's {own}: it is a former primary that a \
                 promotion superseded, and is not followed; point the standby at the current primary",
                self.settings.primary, status.epoch
            )));
        }
        Ok(())
    }

    /// The snapshot and its digest; `None` when it is the one applied last.
    async fn snapshot(&self, token: &str, known: Option<&str>) -> Result<Option<(Vec<u8>, String)>> {
        let mut request =
            self.client.get(self.url("/api/replication/snapshot")).bearer_auth(token).timeout(SNAPSHOT_TIMEOUT);
        if let Some(digest) = known {
            request = request.header(reqwest::header::IF_NONE_MATCH, format!("\"{digest}\""));
        }
        let response = request.send().await.map_err(|e| unreachable(&self.settings.primary, e))?;
        if response.status() == StatusCode::NOT_MODIFIED {
            return Ok(None);
        }
        let response = refused(response).await?;
        let digest = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim_matches('"').to_string())
            .ok_or_else(|| OpsError::Refused("the primary's snapshot came without its digest".into()))?;
        let bytes = response.bytes().await.map_err(OpsError::step("receiving the primary's snapshot"))?;
        Ok(Some((bytes.to_vec(), digest)))
    }

    /// Fetches what changed in a workspace's files against this standby's copy, and unpacks
    /// it under `incoming/projects/<ws>/`.
    async fn stage_projects(&self, token: &str, ws: &str, read: Option<DateTime<Utc>>, incoming: &Path) -> Result<()> {
        // The index saved with the copy (it keeps the primary's owners, which a standby not
        // running as root cannot set on its files); the copy itself when there is none.
        let (root, id) = (self.files.mirror(), ws.to_string());
        let mut index = tokio::task::spawn_blocking(move || match mirror::read_index(&root, &id)? {
            Some(index) => Ok(index),
            None => mirror::index_of(&root.join(&id)),
        })
        .await
        .map_err(OpsError::step("indexing the copy"))??;
        // The engine's archives carry whole seconds: a file written again in the second the
        // primary last read it looks unchanged. Such files are asked for again.
        if let Some(read) = read {
            let racy = read.timestamp() - RACY_SECONDS;
            index.retain(|_, meta| meta.mtime < racy);
        }
        let json = serde_json::to_vec(&index).map_err(OpsError::step("encoding the index"))?;
        let body = zstd::encode_all(json.as_slice(), 3).map_err(OpsError::step("compressing the index"))?;
        let mut response = self
            .client
            .post(self.url(&format!("/api/replication/projects/{ws}")))
            .bearer_auth(token)
            .body(body)
            .send()
            .await
            .map_err(|e| unreachable(&self.settings.primary, e))?;
        response = refused(response).await?;
        let tar = incoming.join("projects").join(format!("{ws}.tar.zst"));
        let mut file = tokio::fs::File::create(&tar).await.map_err(OpsError::io("create", &tar))?;
        let step = format!("receiving the files of workspace {ws}");
        while let Some(chunk) = response.chunk().await.map_err(OpsError::step(step.clone()))? {
            file.write_all(&chunk).await.map_err(OpsError::io("write", &tar))?;
        }
        file.sync_all().await.map_err(OpsError::io("write", &tar))?;
        drop(file);
        let staging = incoming.join("projects").join(ws);
        let summary_path = incoming.join("projects").join(format!("{ws}.summary.json"));
        let (tar_path, staging_path) = (tar.clone(), staging.clone());
        let summary = tokio::task::spawn_blocking(move || -> Result<DeltaSummary> {
            let file = std::fs::File::open(&tar_path).map_err(OpsError::io("open", &tar_path))?;
            let tar = zstd::stream::read::Decoder::new(file).map_err(OpsError::io("decompress", &tar_path))?;
            mirror::stage_delta(std::io::BufReader::new(tar), &staging_path)
        })
        .await
        .map_err(OpsError::step("unpacking the files"))?
        .map_err(|e| OpsError::Step { step: format!("the files of workspace {ws}"), reason: e.to_string() })?;
        write_json(&summary_path, &summary)?;
        std::fs::remove_file(&tar).map_err(OpsError::io("remove", &tar))?;
        Ok(())
    }
}

impl Follower {
    /// Loads the primary's workspace images this standby's engine lacks (compared by id:
    /// an image present under another name is not sent again).
    async fn sync_images(&self, token: &str) -> Result<()> {
        let Some(engine) = &self.engine else {
            return Err(OpsError::Refused(
                "--images needs this standby's Docker engine, which is not reachable".into(),
            ));
        };
        let response = self
            .client
            .get(self.url("/api/replication/images"))
            .bearer_auth(token)
            .timeout(STATUS_TIMEOUT)
            .send()
            .await
            .map_err(|e| unreachable(&self.settings.primary, e))?;
        let images: Vec<ImageRef> =
            refused(response).await?.json().await.map_err(OpsError::step("reading the image list"))?;
        let mut missing = Vec::new();
        for image in images {
            if !engine.has_image(&image.id).await.map_err(OpsError::step("inspecting images"))? {
                missing.push(image.name);
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let mut response = self
            .client
            .post(self.url("/api/replication/images/export"))
            .bearer_auth(token)
            .json(&missing)
            .send()
            .await
            .map_err(|e| unreachable(&self.settings.primary, e))?;
        response = refused(response).await?;
        let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(8);
        let reader = tokio::spawn(async move {
            loop {
                let next = match response.chunk().await {
                    Ok(Some(chunk)) => Ok(chunk),
                    Ok(None) => break,
                    Err(e) => Err(std::io::Error::other(e)),
                };
                let failed = next.is_err();
                if tx.send(next).await.is_err() || failed {
                    break;
                }
            }
        });
        let loaded = engine.load_images(tokio_stream::wrappers::ReceiverStream::new(rx).boxed()).await;
        reader.abort();
        loaded.map_err(OpsError::step("loading the primary's images"))?;
        tracing::info!(images = missing.len(), "standby: images copied from the primary");
        Ok(())
    }
}

fn plan_file(incoming: &Path) -> PathBuf {
    incoming.join("plan.json")
}

fn remove_dir(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(OpsError::io("remove", path)(e)),
    }
}

fn unreachable(primary: &str, e: reqwest::Error) -> OpsError {
    OpsError::Refused(format!("the primary {primary} is not reachable: {e}"))
}

/// The primary's refusal, in its words.
async fn refused(response: reqwest::Response) -> Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    let message = body.get("message").and_then(|m| m.as_str()).unwrap_or("no reason given").to_string();
    Err(OpsError::Refused(match status {
        StatusCode::UNAUTHORIZED => format!("the primary refused the replication token ({message})"),
        _ => format!("the primary answered {status}: {message}"),
    }))
}
