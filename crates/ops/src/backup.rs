//! `drydock backup`: the whole instance into one archive while the server and the workspaces
//! run. The database is copied in one transaction (SQLite `VACUUM INTO`, PostgreSQL
//! `pg_dump`); the data dir's files follow, then every workspace's `/projects` read through
//! the Engine API, then (when asked) the images, then the manifest.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use drydock_core::Config;
use drydock_core::config::RuntimeKind;
use drydock_core::workspace::{WorkspaceFilter, spec};
use drydock_docker::{ByteStream, DockerRuntime, DockerSettings, HELPER_ROOT, SwarmSettings};
use drydock_store::{StoreOptions, connect};
use tokio::runtime::Handle;

use crate::archive::{ArchiveWriter, sweep_partials};
use crate::database::Database;
use crate::error::{OpsError, Result};
use crate::instance::DataDir;
use crate::manifest::{IMAGES_ENTRY, INSTANCE_PREFIX, Manifest, VOLUMES_PREFIX};
use crate::progress::Progress;

/// An instance as the operations see it: its data dir, its config, its database.
#[derive(Debug, Clone)]
pub struct Instance {
    pub dir: DataDir,
    pub config: Config,
    pub database: Database,
}

impl Instance {
    /// Where backups go unless told otherwise (`backup.dir`, relative to the data dir).
    pub fn backup_dir(&self) -> PathBuf {
        self.dir.root.join(&self.config.backup.dir)
    }

    /// The engines that may hold workspace volumes: the local one, and on Swarm the engine
    /// of every node in `runtime.nodes` (the same engine listed twice counts once).
    pub async fn volume_engines(&self, local: &DockerRuntime) -> Result<Vec<DockerRuntime>> {
        let mut engines = vec![local.clone()];
        if self.config.runtime.kind == RuntimeKind::Swarm {
            let settings = SwarmSettings::from_config(&self.config.runtime, &self.dir.root, DockerSettings::default());
            let nodes = settings
                .node_engines(local.instance_id())
                .await
                .map_err(OpsError::step("reaching the nodes' engines (runtime.nodes)"))?;
            let mut seen = BTreeSet::from([local.engine_id().await.map_err(OpsError::step("reading the engine"))?]);
            for engine in nodes {
                if seen.insert(engine.engine_id().await.map_err(OpsError::step("reading a node's engine"))?) {
                    engines.push(engine);
                }
            }
        }
        Ok(engines)
    }
}

#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// A directory for a new archive, or the archive's file name; the backup dir when unset.
    pub out: Option<PathBuf>,
    pub projects: bool,
    pub images: bool,
}

#[derive(Debug, Clone)]
pub struct BackupReport {
    pub path: PathBuf,
    /// The archive's size on disk.
    pub size: u64,
    pub manifest: Manifest,
}

/// `drydock-backup-<version>-<UTC time>.tar.zst`.
pub fn archive_name(version: &str, created: DateTime<Utc>) -> String {
    format!("drydock-backup-{version}-{}.tar.zst", created.format("%Y%m%dT%H%M%SZ"))
}

/// Whether a file name is one of the archives `backup` names.
pub fn is_archive_name(name: &str) -> bool {
    name.starts_with("drydock-backup-") && name.ends_with(".tar.zst")
}

/// Backs up the instance. `runtime` is needed for projects and images.
pub async fn backup(
    instance: &Instance,
    runtime: Option<&DockerRuntime>,
    options: &BackupOptions,
    progress: Arc<dyn Progress>,
) -> Result<BackupReport> {
    let created = Utc::now();
    let version = instance.dir.instance_version()?;
    let target = target_path(instance, options.out.as_deref(), &version, created)?;
    let needs_engine = options.projects || options.images;
    let runtime = match (needs_engine, runtime) {
        (true, None) => {
            return Err(OpsError::Refused(
                "the Docker engine is not reachable, so the workspaces' /projects cannot be read: \
                 fix the engine, or back up the rest with --no-projects"
                    .into(),
            ));
        }
        (true, Some(r)) => Some(r.clone()),
        (false, _) => None,
    };
    let images = match (&runtime, options.images) {
        (Some(r), true) => images_in_use(instance, r).await?,
        _ => Vec::new(),
    };
    // On Swarm the volumes are on the nodes: each is read through the engine that holds it.
    let mut volumes: Vec<(DockerRuntime, Vec<String>)> = Vec::new();
    if let (Some(local), true) = (&runtime, options.projects) {
        let mut seen = BTreeSet::new();
        for engine in instance.volume_engines(local).await? {
            let held =
                engine.workspaces_with_projects().await.map_err(OpsError::step("listing the workspaces' volumes"))?;
            let new: Vec<String> = held.into_iter().filter(|w| seen.insert(w.clone())).collect();
            if !new.is_empty() {
                volumes.push((engine, new));
            }
        }
    }
    let schema_version = instance.database.schema_version().await?;
    let mut manifest = Manifest {
        format: crate::manifest::FORMAT_VERSION,
        drydock_version: version,
        schema_version,
        instance_id: instance.dir.instance_id()?,
        created,
        database: instance.database.backend().to_string(),
        workspaces: Vec::new(),
        projects: options.projects,
        images: images.clone(),
        entries: Vec::new(),
    };

    let db_copy = target.with_file_name(format!(".drydock-database-{}.tmp", std::process::id()));
    progress.step("database");
    instance.database.snapshot(&db_copy).await?;
    let _remove_copy = RemoveOnDrop(db_copy.clone());

    let instance = instance.clone();
    let handle = Handle::current();
    let task = tokio::task::spawn_blocking(move || -> Result<BackupReport> {
        let mut archive = ArchiveWriter::create(&target, progress.as_ref())?;
        progress.step("config and secrets");
        append_instance_files(&mut archive, &instance)?;
        archive.append_file(instance.database.entry(), &db_copy)?;
        for (engine, workspaces) in &volumes {
            let read = append_volumes(&mut archive, engine, workspaces, progress.as_ref(), &handle)?;
            manifest.workspaces.extend(read);
        }
        manifest.workspaces.sort();
        if let (Some(runtime), false) = (&runtime, images.is_empty()) {
            progress.step("images");
            append_images(&mut archive, runtime, &images, &target, &handle)?;
        }
        crate::error::pause_point("backup-before-manifest");
        crate::error::fail_point("backup-before-manifest")?;
        let (size, manifest) = archive.finish(manifest)?;
        Ok(BackupReport { path: target, size, manifest })
    });
    task.await.map_err(OpsError::step("backup"))?
}

fn target_path(instance: &Instance, out: Option<&Path>, version: &str, created: DateTime<Utc>) -> Result<PathBuf> {
    let name = archive_name(version, created);
    let (dir, file) = match out {
        None => (instance.backup_dir(), None),
        Some(out) if out.is_dir() || out.as_os_str().to_string_lossy().ends_with('/') => (out.to_path_buf(), None),
        Some(out) => (
            out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf(),
            Some(out.to_path_buf()),
        ),
    };
    fs::create_dir_all(&dir).map_err(OpsError::io("create", &dir))?;
    sweep_partials(&dir);
    let target = match file {
        Some(file) => file,
        // Two backups in one second: the second gets a suffix.
        None => (1..)
            .map(
                |n| if n == 1 { dir.join(&name) } else { dir.join(name.replace(".tar.zst", &format!("-{n}.tar.zst"))) },
            )
            .find(|p| !p.exists())
            .expect("some suffix is free"),
    };
    if target.exists() {
        return Err(OpsError::Refused(format!(
            "{} exists already: a backup never replaces another; choose another --out",
            target.display()
        )));
    }
    Ok(target)
}

/// The data dir's files, but for what is not the instance's state: the database (copied
/// apart), the run files, the log, backups, and what restores moved aside.
fn append_instance_files(archive: &mut ArchiveWriter, instance: &Instance) -> Result<()> {
    let root = &instance.dir.root;
    let mut skip: BTreeSet<PathBuf> = [
        instance.dir.pid_file(),
        instance.dir.url_file(),
        instance.dir.log_file(),
        instance.backup_dir(),
        instance.dir.restores_dir(),
    ]
    .into_iter()
    .collect();
    if let Database::Sqlite(db) = &instance.database {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            skip.insert(PathBuf::from(format!("{}{suffix}", db.display())));
        }
    }
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        let mut children: Vec<_> =
            fs::read_dir(&dir).map_err(OpsError::io("read", &dir))?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        children.sort();
        for path in children {
            let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            if skip.contains(&path) || name.contains(".partial-") || name.ends_with(".tmp") {
                continue;
            }
            let relative = path.strip_prefix(root).unwrap_or(&path).to_string_lossy().to_string();
            let meta = fs::symlink_metadata(&path).map_err(OpsError::io("read", &path))?;
            if meta.is_dir() {
                archive.append_dir(&format!("{INSTANCE_PREFIX}{relative}"), &path)?;
                stack.push(path);
            } else if meta.is_file() {
                archive.append_file(&format!("{INSTANCE_PREFIX}{relative}"), &path)?;
            }
        }
    }
    Ok(())
}

/// The workspaces' `/projects`, entry by entry as the engine sends them in one stream:
/// `v/<ws>/x` becomes `volumes/<ws>/x`, so a plain `tar` can pull one file out of a backup.
/// Returns the workspaces whose volume was there to read.
fn append_volumes(
    archive: &mut ArchiveWriter,
    runtime: &DockerRuntime,
    workspaces: &[String],
    progress: &dyn Progress,
    handle: &Handle,
) -> Result<Vec<String>> {
    let step = || "reading the workspaces' /projects".to_string();
    // A workspace deleted since the volumes were listed has no volume to read now; mounting it
    // would make an empty one.
    let present: Vec<String> = handle
        .block_on(async {
            let mut present = Vec::new();
            for workspace in workspaces {
                if runtime.projects_volume_exists(workspace).await? {
                    present.push(workspace.clone());
                }
            }
            Ok::<_, drydock_core::runtime::RuntimeError>(present)
        })
        .map_err(OpsError::step(step()))?;
    let helper = handle.block_on(runtime.volumes_helper(&present)).map_err(OpsError::step(step()))?;
    let result = (|| -> Result<()> {
        let mut tar = tar::Archive::new(sync_reader(helper.download(), handle));
        let entries = tar.entries().map_err(OpsError::step(step()))?;
        let mut current = String::new();
        for entry in entries {
            let entry = entry.map_err(OpsError::step(step()))?;
            let path = crate::archive::entry_path(&entry);
            // `v/` itself is the helper's, not a workspace's.
            let Some(inside) = helper_path(&path) else { continue };
            let workspace = inside.split('/').next().unwrap_or_default();
            if workspace != current {
                current = workspace.to_string();
                progress.step(&format!("workspace {current}"));
            }
            let mut header = crate::archive::fresh_header(entry.header());
            // The volume's root is `volumes/<ws>/`, as tar names a directory.
            let name = if inside.contains('/') {
                format!("{VOLUMES_PREFIX}{inside}")
            } else {
                format!("{VOLUMES_PREFIX}{inside}/")
            };
            let kind = header.entry_type();
            if kind.is_symlink() || kind.is_hard_link() {
                // Read through the entry: a long target lives in an extension header.
                let target = entry.link_name().map_err(OpsError::step(step()))?.unwrap_or_default();
                let target = target.to_string_lossy().to_string();
                let target = match (kind.is_hard_link(), helper_path(&target)) {
                    // A hard link names another file of the archive.
                    (true, Some(inside)) => format!("{VOLUMES_PREFIX}{inside}"),
                    _ => target,
                };
                archive.append_link(&mut header, &name, &target)?;
            } else {
                archive.append(&mut header, &name, entry)?;
            }
        }
        Ok(())
    })();
    handle.block_on(helper.remove());
    result.map(|()| present)
}

/// `v/<ws>/x` → `<ws>/x` (and `v/<ws>/` → `<ws>`); `None` for `v/` itself.
fn helper_path(path: &str) -> Option<&str> {
    let inside = path.strip_prefix(HELPER_ROOT)?.strip_prefix('/')?.trim_end_matches('/');
    (!inside.is_empty()).then_some(inside)
}

/// The images as one `docker save` tar. The engine does not say its size first, so it is
/// spooled next to the archive, then appended.
fn append_images(
    archive: &mut ArchiveWriter,
    runtime: &DockerRuntime,
    images: &[String],
    target: &Path,
    handle: &Handle,
) -> Result<()> {
    let spool = target.with_file_name(format!(".drydock-images-{}.tmp", std::process::id()));
    let _remove = RemoveOnDrop(spool.clone());
    let mut file = fs::File::create(&spool).map_err(OpsError::io("create", &spool))?;
    let mut reader = sync_reader(runtime.save_images(images), handle);
    io::copy(&mut reader, &mut file).map_err(OpsError::step("saving the images"))?;
    drop(file);
    archive.append_file(IMAGES_ENTRY, &spool)
}

/// Images the workspaces are made from that the engine has, and the instance's snapshots.
pub(crate) async fn images_in_use(instance: &Instance, runtime: &DockerRuntime) -> Result<Vec<String>> {
    let store = connect(&database_url(&instance.database), &StoreOptions::default())
        .await
        .map_err(OpsError::step("opening the database"))?;
    let page = drydock_core::Page { max_items: u32::MAX, skip_count: 0 };
    let (workspaces, _) =
        store.list_workspaces(&WorkspaceFilter::default(), page).await.map_err(OpsError::step("listing workspaces"))?;
    let memory = instance.config.runtime.machine_memory_mb.saturating_mul(1 << 20);
    let mut wanted = BTreeSet::new();
    for workspace in &workspaces {
        for env in workspace.config.environments.keys() {
            for machine in spec::machines(&workspace.config, env, memory).unwrap_or_default() {
                wanted.insert(machine.image);
            }
        }
    }
    let mut images = Vec::new();
    for image in wanted {
        if runtime.has_image(&image).await.map_err(OpsError::step("inspecting images"))? {
            images.push(image);
        }
    }
    images.extend(runtime.instance_images().await.map_err(OpsError::step("listing snapshots"))?);
    images.sort();
    images.dedup();
    Ok(images)
}

fn database_url(database: &Database) -> String {
    match database {
        Database::Sqlite(path) => format!("sqlite://{}", path.display()),
        Database::Postgres(url) => url.clone(),
    }
}

/// The engine's byte stream as a blocking reader, for the archive's thread. A task reads
/// ahead into a queue of up to [`READ_AHEAD`] chunks, so the engine keeps producing while
/// the archive's thread hashes and compresses; the thread takes chunks off the queue without
/// entering the async runtime for each read.
pub(crate) fn sync_reader(stream: ByteStream, handle: &Handle) -> impl Read {
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<bytes::Bytes>>(READ_AHEAD);
    handle.spawn(async move {
        let mut stream = stream;
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            let failed = chunk.is_err();
            if tx.send(chunk.map_err(io::Error::other)).await.is_err() || failed {
                break;
            }
        }
    });
    QueueReader { rx, chunk: bytes::Bytes::new() }
}

/// Reads the chunks a task queues, in order, until the queue ends.
struct QueueReader {
    rx: tokio::sync::mpsc::Receiver<io::Result<bytes::Bytes>>,
    chunk: bytes::Bytes,
}

impl Read for QueueReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.chunk = chunk?,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// Chunks of the engine's stream read ahead (the engine sends up to 32 KiB a chunk).
const READ_AHEAD: usize = 512;

pub(crate) struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// The master's backups (on `backup.schedule` and through the API): into the backup dir,
/// with images when `backup.images` says so, then pruned to `backup.keep`.
pub struct MasterBackups {
    pub instance: Instance,
    pub runtime: Option<DockerRuntime>,
}

#[async_trait::async_trait]
impl drydock_core::backups::BackupRunner for MasterBackups {
    async fn run(&self) -> std::result::Result<drydock_core::backups::BackupOutcome, String> {
        let options = BackupOptions { out: None, projects: true, images: self.instance.config.backup.images };
        let progress: Arc<dyn Progress> = Arc::new(crate::progress::Logged);
        let report =
            backup(&self.instance, self.runtime.as_ref(), &options, progress).await.map_err(|e| e.to_string())?;
        for removed in crate::retention::prune(&self.instance.backup_dir(), self.instance.config.backup.keep) {
            tracing::info!(file = %removed.display(), keep = self.instance.config.backup.keep, "removed an old backup");
        }
        Ok(drydock_core::backups::BackupOutcome { file: report.path.display().to_string(), size: report.size })
    }
}
