//! The primary's side of replication: what `/api/replication/…` serves.

use async_trait::async_trait;
use chrono::Utc;
use drydock_core::Store;
use drydock_core::error::{Error, Result};
use drydock_core::standby::{Chunks, ImageRef, PrimaryStatus, REPLICATION_TOKEN_SECRET, ReplicationSource, Snapshot};
use drydock_docker::DockerRuntime;
use drydock_docker::projects_sync::{DELTA_ENTRY, DeltaSummary, FileIndex};
use drydock_store::{SqlStore, StoreOptions, connect_sql};
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use super::StandbyDir;
use super::snapshot::{InstanceCopy, instance_files};
use crate::backup::{Instance, images_in_use};
use crate::instance::DataDir;

/// Connections the replication endpoints may hold (they read one snapshot at a time).
const CONNECTIONS: u32 = 2;

pub struct PrimarySource {
    instance: Instance,
    dir: DataDir,
    store: SqlStore,
    runtime: Option<DockerRuntime>,
    /// One snapshot is read at a time: standbys polling at once wait for each other.
    reading: tokio::sync::Mutex<()>,
}

impl PrimarySource {
    pub async fn open(instance: Instance, runtime: Option<DockerRuntime>) -> crate::Result<Self> {
        let options = StoreOptions { max_connections: CONNECTIONS, ..Default::default() };
        let store = connect_sql(&instance.database.url(), &options)
            .await
            .map_err(crate::OpsError::step("opening the database for replication"))?;
        Ok(PrimarySource { dir: instance.dir.clone(), instance, store, runtime, reading: tokio::sync::Mutex::new(()) })
    }

    fn engine(&self) -> Result<&DockerRuntime> {
        self.runtime.as_ref().ok_or_else(|| {
            Error::Unavailable(
                "the primary's Docker engine is not reachable: its workspaces' files and images cannot be read".into(),
            )
        })
    }

    async fn copy(&self) -> Result<InstanceCopy> {
        let database = self.store.copy_for_standby().await?;
        let files = instance_files(&self.dir).map_err(internal)?;
        Ok(InstanceCopy { database, files })
    }
}

fn internal(e: crate::OpsError) -> Error {
    Error::Internal(Box::new(e))
}

#[async_trait]
impl ReplicationSource for PrimarySource {
    fn accepts(&self, token: &str) -> bool {
        let Ok(expected) = self.dir.read_secret(REPLICATION_TOKEN_SECRET) else { return false };
        // Compared as digests, so the time taken says nothing about the token.
        !expected.is_empty() && Sha256::digest(expected.as_bytes()) == Sha256::digest(token.as_bytes())
    }

    async fn status(&self) -> Result<PrimaryStatus> {
        Ok(PrimaryStatus {
            instance_id: self.dir.instance_id().map_err(internal)?,
            version: self.dir.instance_version().map_err(internal)?,
            schema_version: self.store.schema_status().await?.current,
            epoch: StandbyDir::of(&self.dir).epoch().map_err(internal)?,
            backend: self.store.backend().to_string(),
            time: Utc::now(),
        })
    }

    async fn snapshot(&self, known: Option<&str>) -> Result<Option<Snapshot>> {
        let _one = self.reading.lock().await;
        let copy = self.copy().await?;
        let known = known.map(str::to_string);
        // Serializing, hashing and compressing tens of megabytes is no work for the runtime's
        // workers.
        tokio::task::spawn_blocking(move || copy.encode(known.as_deref()).map_err(internal))
            .await
            .map_err(Error::internal)?
    }

    async fn projects_delta(&self, workspace: &str, known_index: &[u8]) -> Result<Chunks> {
        let runtime = self.runtime.as_ref().ok_or_else(|| {
            Error::Unavailable(
                "the primary's Docker engine is not reachable: its workspaces' files cannot be read".into(),
            )
        })?;
        let json = zstd::decode_all(known_index)
            .map_err(|e| Error::invalid("index", format!("the index is not zstd-compressed: {e}")))?;
        let known: FileIndex = serde_json::from_slice(&json)
            .map_err(|e| Error::invalid("index", format!("the index is not a file index: {e}")))?;
        let engine = |e: drydock_core::runtime::RuntimeError| Error::Unavailable(e.to_string());
        if !runtime.projects_volume_exists(workspace).await.map_err(engine)? {
            // Never started: its `/projects` is empty.
            let tar = empty_delta(known).and_then(|tar| zstd::encode_all(tar.as_slice(), DELTA_LEVEL));
            let tar = tar.map_err(Error::internal)?;
            return Ok(futures::stream::once(async move { Ok(tar) }).boxed());
        }
        let stream = runtime.projects_delta(workspace, &known).await.map_err(engine)?;
        Ok(compressed(stream))
    }

    async fn images(&self) -> Result<Vec<ImageRef>> {
        self.image_refs().await
    }

    async fn export_images(&self, names: &[String]) -> Result<Chunks> {
        // Only images the workspaces use leave the primary this way.
        let in_use = self.image_refs().await?;
        if let Some(name) = names.iter().find(|n| !in_use.iter().any(|i| &i.name == *n)) {
            return Err(Error::NotFound(format!("image {name} is not one the workspaces use")));
        }
        let stream = self.engine()?.save_images(names);
        Ok(stream.map_ok(|bytes| bytes.to_vec()).map_err(std::io::Error::other).boxed())
    }
}

impl PrimarySource {
    async fn image_refs(&self) -> Result<Vec<ImageRef>> {
        let engine = self.engine()?;
        let names = images_in_use(&self.instance, engine).await.map_err(internal)?;
        let mut refs = Vec::with_capacity(names.len());
        for name in names {
            if let Some(id) = engine.image_id(&name).await.map_err(|e| Error::Unavailable(e.to_string()))? {
                refs.push(ImageRef { name, id });
            }
        }
        Ok(refs)
    }
}

/// zstd level of the files' answers: fast, and most of what travels is source text.
const DELTA_LEVEL: i32 = 3;
/// Bytes compressed at a time.
const DELTA_CHUNK: usize = 256 << 10;

/// The delta tar as zstd, compressed on a blocking thread as the engine's stream comes; an
/// error of the stream ends the answer early, so the standby sees it cut off.
fn compressed(stream: drydock_docker::ByteStream) -> Chunks {
    let handle = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(8);
    tokio::task::spawn_blocking(move || {
        let reader = crate::backup::sync_reader(stream, &handle);
        let mut encoder = match zstd::stream::read::Encoder::new(reader, DELTA_LEVEL) {
            Ok(encoder) => encoder,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        loop {
            let mut chunk = vec![0u8; DELTA_CHUNK];
            match std::io::Read::read(&mut encoder, &mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    chunk.truncate(n);
                    if tx.blocking_send(Ok(chunk)).is_err() {
                        break;
                    }
                }
                Err(e) => {
                    let _ = tx.blocking_send(Err(e));
                    break;
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx).boxed()
}

/// The delta of a workspace without a volume: everything the standby holds is gone.
fn empty_delta(known: FileIndex) -> std::io::Result<Vec<u8>> {
    let summary = DeltaSummary { deleted: known.into_keys().collect(), index: FileIndex::new(), bytes: 0, files: 0 };
    let json = serde_json::to_vec(&summary).map_err(std::io::Error::other)?;
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(json.len() as u64);
    header.set_mode(0o600);
    header.set_mtime(Utc::now().timestamp().max(0) as u64);
    builder.append_data(&mut header, DELTA_ENTRY, json.as_slice())?;
    builder.into_inner()
}
