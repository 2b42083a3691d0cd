//! `drydock restore`: an archive back into a data dir (and the engine), all or nothing.
//!
//! The archive is verified first. An instance already in the data dir is moved aside
//! (`<data-dir>.before-restore-<time>`), with a dump of its PostgreSQL database and the
//! current files of every workspace volume the restore replaces; if any step fails, all of
//! that is put back and the data dir is as it was.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use drydock_core::audit_log::{Actor, NewEvent, Target};
use drydock_docker::{DockerRuntime, DockerSettings, HELPER_ROOT};
use futures::StreamExt;
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::archive::{self, ArchiveReader};
use crate::backup::sync_reader;
use crate::database::Database;
use crate::error::{OpsError, Result, fail_point};
use crate::instance::{DataDir, write_atomic};
use crate::manifest::{IMAGES_ENTRY, INSTANCE_PREFIX, MANIFEST_ENTRY, Manifest, split_volume_entry};
use crate::progress::Progress;
use crate::versions::{self, Standing, VERSION};

/// How the restore finds the database of a data dir: the binary loads its config (file and
/// environment) and resolves `database.url`.
pub type DatabaseOf = Arc<dyn Fn(&Path) -> Result<Database> + Send + Sync>;

#[derive(Debug)]
pub struct RestoreReport {
    pub manifest: Manifest,
    /// Where the instance that was in the data dir went, if one was.
    pub aside: Option<PathBuf>,
    /// The schema migrations run after the restore (from, to), when the archive was older.
    pub migrated: Option<(i64, i64)>,
}

/// What the restore changed so far, to undo it in reverse when a later step fails.
#[derive(Default)]
struct Journal {
    /// Where what the restore replaces is kept: `<data-dir>.before-restore-<time>`.
    aside: Option<PathBuf>,
    /// The data dir as it was is `aside` now.
    data_moved: bool,
    /// The data dir existed, empty, before the restore.
    root_was_empty: bool,
    /// A SQLite file outside the data dir that was moved aside: (original, aside).
    moved_db: Option<(PathBuf, PathBuf)>,
    /// The PostgreSQL database's contents before the restore, and whether it was replaced.
    postgres: Option<(String, PathBuf)>,
    postgres_loaded: bool,
    /// Workspace volumes replaced, with their files before (none when there was no volume).
    volumes: Vec<(String, Option<PathBuf>)>,
}

/// A timestamp for names of things moved aside.
fn stamp() -> String {
    Utc::now().format("%Y%m%dT%H%M%SZ").to_string()
}

pub async fn restore(
    dir: &DataDir,
    archive_path: &Path,
    database_of: DatabaseOf,
    progress: Arc<dyn Progress>,
) -> Result<RestoreReport> {
    if let Some(pid) = dir.running_pid() {
        return Err(OpsError::Refused(format!(
            "drydock is running in {} (pid {pid}): stop it first with `drydock stop --data-dir {}`, then restore",
            dir.root.display(),
            dir.root.display()
        )));
    }
    progress.step("verifying the archive");
    let manifest = verify(archive_path, progress.clone()).await?;
    let from = &manifest.drydock_version;
    match versions::standing(from) {
        Standing::Current | Standing::Upgradable => {}
        Standing::Newer => {
            return Err(OpsError::Refused(format!(
                "the archive is from drydock {from}, newer than this drydock {VERSION}: restore it with drydock {from} or newer"
            )));
        }
        Standing::TooOld { first } => {
            return Err(OpsError::Refused(format!(
                "the archive is from drydock {from}; this drydock {VERSION} takes instances from {} only: \
                 restore it with drydock {from}, upgrade that to {first}, and back it up again",
                versions::UPGRADES_FROM.join(", ")
            )));
        }
        Standing::Unknown => {
            return Err(OpsError::Refused(format!(
                "the archive is from drydock {from}, a release this drydock {VERSION} does not know: it takes \
                 instances from {} only",
                versions::UPGRADES_FROM.join(", ")
            )));
        }
    }
    let runtime = if manifest.workspaces.is_empty() && manifest.images.is_empty() {
        None
    } else {
        let runtime = DockerRuntime::connect(&manifest.instance_id, DockerSettings::default()).await.map_err(|e| {
            OpsError::Refused(format!(
                "the archive holds workspace files or images, so the restore needs the Docker engine: {e}"
            ))
        })?;
        let running = runtime.workspaces_running().await.map_err(OpsError::step("listing running workspaces"))?;
        let clash: Vec<&String> = running.iter().filter(|w| manifest.workspaces.contains(w)).collect();
        if !clash.is_empty() {
            return Err(OpsError::Refused(format!(
                "workspaces of instance {} still run on the engine ({}): stop them before restoring their files",
                manifest.instance_id,
                clash.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        Some(runtime)
    };

    let mut journal = Journal::default();
    let result = apply(dir, archive_path, &manifest, runtime.as_ref(), database_of, progress, &mut journal).await;
    match result {
        Ok(migrated) => Ok(RestoreReport { manifest, aside: journal.aside.clone(), migrated }),
        Err(e) => {
            let undone = undo(dir, runtime.as_ref(), &mut journal).await;
            Err(OpsError::Step {
                step: "restore".into(),
                reason: match undone {
                    Ok(()) => format!("{e}; the instance was put back as it was"),
                    Err(u) => format!("{e}; putting the instance back failed too: {u}"),
                },
            })
        }
    }
}

/// Verifies on a blocking thread.
pub async fn verify(archive_path: &Path, progress: Arc<dyn Progress>) -> Result<Manifest> {
    let path = archive_path.to_path_buf();
    tokio::task::spawn_blocking(move || archive::verify(&path, progress.as_ref()))
        .await
        .map_err(OpsError::step("verifying"))?
}

async fn apply(
    dir: &DataDir,
    archive_path: &Path,
    manifest: &Manifest,
    runtime: Option<&DockerRuntime>,
    database_of: DatabaseOf,
    progress: Arc<dyn Progress>,
    journal: &mut Journal,
) -> Result<Option<(i64, i64)>> {
    let root = &dir.root;
    // An archive inside the data dir moves aside with it.
    let mut archive_path = archive_path.canonicalize().map_err(OpsError::io("open", archive_path))?;
    let canonical_root = root.canonicalize().unwrap_or_else(|_| root.clone());
    let occupied = fs::read_dir(root).map(|mut d| d.next().is_some()).unwrap_or(false);
    let stamp = stamp();
    let aside_path = PathBuf::from(format!("{}.before-restore-{stamp}", root.display()));
    if occupied {
        progress.step(&format!("moving the current instance aside to {}", aside_path.display()));
        let current_db = if dir.is_instance() { database_of(root).ok() } else { None };
        fs::rename(root, &aside_path).map_err(OpsError::io("move aside", root))?;
        journal.aside = Some(aside_path.clone());
        journal.data_moved = true;
        if let Ok(inside) = archive_path.strip_prefix(&canonical_root) {
            archive_path = aside_path.join(inside);
        }
        if let Some(Database::Postgres(url)) = current_db {
            dump_postgres_aside(&url, &aside_path, journal).await?;
        }
    } else {
        journal.root_was_empty = root.exists();
    }
    fs::create_dir_all(root).map_err(OpsError::io("create", root))?;

    if let Some(runtime) = runtime {
        for workspace in &manifest.workspaces {
            let saved =
                if runtime.projects_volume_exists(workspace).await.map_err(OpsError::step("inspecting volumes"))? {
                    let dest = aside_path.join(SAVED_VOLUMES).join(format!("{workspace}.tar"));
                    progress.step(&format!("saving the current files of workspace {workspace} to {}", dest.display()));
                    save_volume(runtime, workspace, &dest).await?;
                    journal.aside.get_or_insert_with(|| aside_path.clone());
                    Some(dest)
                } else {
                    None
                };
            journal.volumes.push((workspace.clone(), saved));
            runtime
                .remove_projects_volume(workspace)
                .await
                .map_err(OpsError::step(format!("replacing the volume of workspace {workspace}")))?;
        }
    }

    progress.step("restoring");
    let handle = Handle::current();
    let job = Extract {
        root: root.clone(),
        archive: archive_path.clone(),
        runtime: runtime.cloned(),
        workspaces: manifest.workspaces.clone(),
        stamp,
        progress: progress.clone(),
    };
    // The config comes first in the archive; the database's place depends on it.
    let owned_journal = std::mem::take(journal);
    let of = database_of.clone();
    let (extracted, returned) = tokio::task::spawn_blocking(move || {
        let mut journal = owned_journal;
        let result = job.run(&handle, of, &mut journal, None);
        (result, journal)
    })
    .await
    .map_err(OpsError::step("restoring"))?;
    *journal = returned;
    extracted?;
    fail_point("restore-after-extract")?;

    // An archive from an older drydock: bring its schema forward, as an upgrade would.
    let database = database_of(root)?;
    let mut migrated = None;
    let known = drydock_store::MIGRATIONS_SQLITE.len() as i64;
    if manifest.schema_version < known || versions::compare(&manifest.drydock_version, VERSION).is_lt() {
        progress.step("migrating the database");
        let status = database.migrate().await?;
        migrated = Some((manifest.schema_version, status));
        write_atomic(&dir.version_file(), format!("{VERSION}\n").as_bytes(), 0o644)?;
    }
    let archive = archive_path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let event = NewEvent::new(Utc::now(), Actor::host_cli(), "system.restore", Target::new("backup", "", archive))
        .with("created", manifest.created)
        .with("drydockVersion", &manifest.drydock_version)
        .with("migrated", migrated);
    database.record_event(&event).await?;
    Ok(migrated)
}

async fn dump_postgres_aside(url: &str, aside: &Path, journal: &mut Journal) -> Result<()> {
    let dump = aside.join("database-before-restore.sql");
    Database::Postgres(url.to_string()).snapshot(&dump).await?;
    journal.postgres = Some((url.to_string(), dump));
    Ok(())
}

/// Puts back what [`apply`] changed, newest first.
async fn undo(dir: &DataDir, runtime: Option<&DockerRuntime>, journal: &mut Journal) -> Result<()> {
    let mut first_error: Option<OpsError> = None;
    let mut note = |r: Result<()>| {
        if let Err(e) = r {
            tracing::error!(error = %e, "undoing a failed restore");
            first_error.get_or_insert(e);
        }
    };
    if let Some(runtime) = runtime {
        for (workspace, saved) in journal.volumes.drain(..).rev() {
            let removed =
                runtime.remove_projects_volume(&workspace).await.map_err(OpsError::step("removing a restored volume"));
            note(removed);
            if let Some(saved) = saved {
                note(load_volume(runtime, &workspace, &saved).await);
                let _ = fs::remove_file(&saved);
            }
        }
    }
    if let Some((url, dump)) = journal.postgres.take() {
        if journal.postgres_loaded {
            note(Database::load_postgres(&url, &dump));
        }
        let _ = fs::remove_file(&dump);
    }
    if let Some((original, aside)) = journal.moved_db.take() {
        note(fs::rename(&aside, &original).map_err(OpsError::io("move back", &aside)));
    }
    // Everything in the data dir now is this restore's own writing.
    if dir.root.exists() {
        note(fs::remove_dir_all(&dir.root).map_err(OpsError::io("remove the partial restore", &dir.root)));
    }
    if let Some(aside) = journal.aside.take() {
        let _ = fs::remove_dir_all(aside.join(SAVED_VOLUMES));
        if journal.data_moved {
            note(fs::rename(&aside, &dir.root).map_err(OpsError::io("move back", &aside)));
        } else {
            let _ = fs::remove_dir(&aside);
        }
    }
    if journal.root_was_empty {
        note(fs::create_dir_all(&dir.root).map_err(OpsError::io("create", &dir.root)));
    }
    first_error.map_or(Ok(()), Err)
}

/// The folder of the aside dir that holds the replaced volumes' files.
const SAVED_VOLUMES: &str = "volumes-before-restore";

/// The files of a workspace's volume, as the engine sends them, into a file.
pub async fn save_volume(runtime: &DockerRuntime, workspace: &str, dest: &Path) -> Result<()> {
    if let Some(parent) = dest.parent() {
        fs::create_dir_all(parent).map_err(OpsError::io("create", parent))?;
    }
    let helper = runtime
        .volumes_helper(&[workspace.to_string()])
        .await
        .map_err(OpsError::step(format!("reading workspace {workspace}")))?;
    let dest_owned = dest.to_path_buf();
    let handle = Handle::current();
    let stream = helper.download();
    let copied = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&dest_owned)
            .map_err(OpsError::io("create", &dest_owned))?;
        io::copy(&mut sync_reader(stream, &handle), &mut file).map_err(OpsError::io("write", &dest_owned))?;
        file.sync_all().map_err(OpsError::io("flush", &dest_owned))
    })
    .await
    .map_err(OpsError::step("saving a volume"))?;
    helper.remove().await;
    copied
}

/// Writes a file [`save_volume`] made back into the workspace's (new) volume.
pub async fn load_volume(runtime: &DockerRuntime, workspace: &str, source: &Path) -> Result<()> {
    let file = tokio::fs::File::open(source).await.map_err(OpsError::io("open", source))?;
    let helper = runtime
        .volumes_helper(&[workspace.to_string()])
        .await
        .map_err(OpsError::step(format!("writing workspace {workspace}")))?;
    let result = helper.upload(tokio_util::io::ReaderStream::new(file).boxed()).await;
    helper.remove().await;
    result.map_err(OpsError::step(format!("writing the files of workspace {workspace}")))
}

/// The second pass over the archive: every entry to its place.
struct Extract {
    root: PathBuf,
    archive: PathBuf,
    runtime: Option<DockerRuntime>,
    /// The workspaces whose volumes are written (all the archive holds, or the one asked for).
    workspaces: Vec<String>,
    stamp: String,
    progress: Arc<dyn Progress>,
}

/// The workspaces' files on their way to the engine, in one stream.
struct VolumeUpload {
    builder: tar::Builder<ChannelWriter>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Extract {
    /// Every entry to its place; with `only`, just that workspace's files.
    fn run(&self, handle: &Handle, database_of: DatabaseOf, journal: &mut Journal, only: Option<&str>) -> Result<()> {
        let mut archive: ArchiveReader = archive::open(&self.archive)?;
        let mut upload: Option<VolumeUpload> = None;
        let mut current_workspace = String::new();
        let read_error = |e: io::Error| OpsError::Step { step: "reading the archive".into(), reason: e.to_string() };
        for entry in archive.entries().map_err(read_error)? {
            let mut entry = entry.map_err(read_error)?;
            let name = archive::entry_path(&entry);
            let volume = split_volume_entry(&name).map(|(w, rest)| (w.to_string(), rest.to_string()));
            if let Some(only) = only
                && volume.as_ref().is_none_or(|(w, _)| w != only)
            {
                // Its files are together in the archive: once past them, nothing more is wanted.
                if upload.is_some() {
                    break;
                }
                continue;
            }
            if upload.is_some() && volume.is_none() {
                self.finish_upload(upload.take(), handle)?;
            }
            if let Some(relative) = name.strip_prefix(INSTANCE_PREFIX) {
                self.write_instance_entry(relative, &mut entry)?;
            } else if name.starts_with("database/") {
                self.write_database(&name, &mut entry, &database_of, journal, handle)?;
            } else if let Some((workspace, relative)) = volume {
                if upload.is_none() {
                    upload = Some(self.start_upload(handle)?);
                }
                let current = upload.as_mut().expect("started above");
                if current_workspace != workspace {
                    self.progress.step(&format!("workspace {workspace}"));
                    current_workspace = workspace.clone();
                }
                append_volume_entry(&mut current.builder, &workspace, &relative, &mut entry)
                    .map_err(OpsError::step(format!("restoring the files of workspace {workspace}")))?;
            } else if name == IMAGES_ENTRY {
                self.load_images(&mut entry, handle)?;
            } else if name != MANIFEST_ENTRY {
                tracing::warn!(entry = %name, "an entry this drydock does not know; left out");
            }
        }
        self.finish_upload(upload.take(), handle)?;
        fail_point("restore-after-volumes")
    }

    fn write_instance_entry(&self, relative: &str, entry: &mut tar::Entry<impl Read>) -> Result<()> {
        let relative = relative.trim_end_matches('/');
        if relative.is_empty() || relative.split('/').any(|p| p == ".." || p.is_empty()) {
            return Ok(());
        }
        let path = self.root.join(relative);
        let mode = entry.header().mode().unwrap_or(0o600) & 0o7777;
        if entry.header().entry_type().is_dir() {
            fs::create_dir_all(&path).map_err(OpsError::io("create", &path))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(OpsError::io("restrict", &path))?;
            return Ok(());
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data).map_err(OpsError::io("read from the archive", &path))?;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(OpsError::io("create", parent))?;
        }
        write_atomic(&path, &data, mode)
    }

    fn write_database(
        &self,
        name: &str,
        entry: &mut tar::Entry<impl Read>,
        database_of: &DatabaseOf,
        journal: &mut Journal,
        handle: &Handle,
    ) -> Result<()> {
        let database = database_of(&self.root)?;
        let expected = database.entry();
        if name != expected {
            return Err(OpsError::Refused(format!(
                "the archive holds {name}, but the restored config's database.url is {}: \
                 a backup restores onto the kind of database it came from",
                database.backend()
            )));
        }
        match &database {
            Database::Sqlite(path) => {
                if path.exists() {
                    // Outside the data dir (inside, it moved aside with it): keep it too.
                    let aside = PathBuf::from(format!("{}.before-restore-{}", path.display(), self.stamp));
                    fs::rename(path, &aside).map_err(OpsError::io("move aside", path))?;
                    journal.moved_db = Some((path.clone(), aside));
                }
                for suffix in ["-wal", "-shm", "-journal"] {
                    let _ = fs::remove_file(format!("{}{suffix}", path.display()));
                }
                copy_to_file(entry, path, self.progress.as_ref())
            }
            Database::Postgres(url) => {
                if journal.postgres.is_none() {
                    let aside = journal.aside.clone().unwrap_or_else(|| {
                        PathBuf::from(format!("{}.before-restore-{}", self.root.display(), self.stamp))
                    });
                    fs::create_dir_all(&aside).map_err(OpsError::io("create", &aside))?;
                    journal.aside.get_or_insert(aside.clone());
                    handle.block_on(dump_postgres_aside(url, &aside, journal))?;
                }
                let dump = self.root.join(".restore-database.sql");
                copy_to_file(entry, &dump, self.progress.as_ref())?;
                journal.postgres_loaded = true;
                let loaded = Database::load_postgres(url, &dump);
                let _ = fs::remove_file(&dump);
                loaded
            }
        }
    }

    fn start_upload(&self, handle: &Handle) -> Result<VolumeUpload> {
        let runtime = self
            .runtime
            .clone()
            .ok_or_else(|| OpsError::Refused("restoring workspace files needs the Docker engine".into()))?;
        let helper = handle
            .block_on(runtime.volumes_helper(&self.workspaces))
            .map_err(OpsError::step("creating the workspaces' volumes"))?;
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(UPLOAD_AHEAD);
        let task = handle.spawn(async move {
            let result = helper.upload(ReceiverStream::new(rx).boxed()).await;
            helper.remove().await;
            result.map_err(OpsError::step("writing the workspaces' files"))
        });
        let mut builder = tar::Builder::new(ChannelWriter::new(tx));
        builder.mode(tar::HeaderMode::Complete);
        Ok(VolumeUpload { builder, task })
    }

    fn finish_upload(&self, upload: Option<VolumeUpload>, handle: &Handle) -> Result<()> {
        let Some(upload) = upload else { return Ok(()) };
        let step = "restoring the workspaces' files";
        let written = upload.builder.into_inner().and_then(|mut w| w.flush());
        let uploaded = handle.block_on(upload.task).map_err(OpsError::step(step))?;
        uploaded?;
        written.map_err(OpsError::step(step))
    }

    fn load_images(&self, entry: &mut tar::Entry<impl Read>, handle: &Handle) -> Result<()> {
        let runtime =
            self.runtime.clone().ok_or_else(|| OpsError::Refused("loading images needs the Docker engine".into()))?;
        self.progress.step("images");
        let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
        let task = handle.spawn(async move { runtime.load_images(ReceiverStream::new(rx).boxed()).await });
        let mut writer = ChannelWriter::new(tx);
        let copied = io::copy(entry, &mut writer).and_then(|_| writer.flush());
        drop(writer);
        handle.block_on(task).map_err(OpsError::step("loading images"))?.map_err(OpsError::step("loading images"))?;
        copied.map(|_| ()).map_err(OpsError::step("loading images"))
    }
}

/// Re-creates the entry under `v/<workspace>/`, where the volume helper mounts the volume.
fn append_volume_entry(
    builder: &mut tar::Builder<ChannelWriter>,
    workspace: &str,
    relative: &str,
    entry: &mut tar::Entry<impl Read>,
) -> io::Result<()> {
    let relative = relative.trim_end_matches('/');
    let path = if relative.is_empty() {
        format!("{HELPER_ROOT}/{workspace}")
    } else {
        format!("{HELPER_ROOT}/{workspace}/{relative}")
    };
    let mut header = archive::fresh_header(entry.header());
    let kind = header.entry_type();
    if kind.is_symlink() || kind.is_hard_link() {
        let target = entry.link_name()?.map(|t| t.to_string_lossy().to_string()).unwrap_or_default();
        let target = match (kind.is_hard_link(), split_volume_entry(&target)) {
            (true, Some((w, inside))) => format!("{HELPER_ROOT}/{w}/{inside}"),
            _ => target,
        };
        return builder.append_link(&mut header, &path, target);
    }
    builder.append_data(&mut header, &path, entry)
}

fn copy_to_file(entry: &mut tar::Entry<impl Read>, path: &Path, progress: &dyn Progress) -> Result<()> {
    let temp = path.with_extension("restoring");
    let mut file = crate::instance::create_private(&temp)?;
    let mut counting = archive::Hashing::new(entry, progress);
    io::copy(&mut counting, &mut file).map_err(OpsError::io("write", &temp))?;
    file.sync_all().map_err(OpsError::io("flush", &temp))?;
    fs::rename(&temp, path).map_err(OpsError::io("rename", &temp))
}

/// A blocking writer feeding an async byte stream, in chunks.
struct ChannelWriter {
    tx: mpsc::Sender<io::Result<Bytes>>,
    buffer: Vec<u8>,
}

const CHUNK: usize = 1024 * 1024;
/// Chunks queued for the engine while the archive is read on.
const UPLOAD_AHEAD: usize = 16;

impl ChannelWriter {
    fn new(tx: mpsc::Sender<io::Result<Bytes>>) -> Self {
        ChannelWriter { tx, buffer: Vec::with_capacity(CHUNK) }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buffer, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the engine stopped reading"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

/// `restore --workspace`: one workspace's `/projects` from an archive, into an instance that
/// may be running; nothing else changes. The workspace must be stopped. Its current files are
/// kept in `<data-dir>/restores/` first; returns that file.
pub async fn restore_workspace(
    dir: &DataDir,
    archive_path: &Path,
    workspace: &str,
    progress: Arc<dyn Progress>,
) -> Result<Option<PathBuf>> {
    progress.step("verifying the archive");
    let manifest = verify(archive_path, progress.clone()).await?;
    if !manifest.workspaces.iter().any(|w| w == workspace) {
        return Err(OpsError::Refused(format!(
            "the archive holds no /projects of workspace {workspace} (it holds: {})",
            if manifest.workspaces.is_empty() { "none".to_string() } else { manifest.workspaces.join(", ") }
        )));
    }
    let instance_id = dir.instance_id()?;
    let runtime = DockerRuntime::connect(&instance_id, DockerSettings::default())
        .await
        .map_err(|e| OpsError::Refused(format!("restoring a workspace's files needs the Docker engine: {e}")))?;
    if runtime
        .workspaces_running()
        .await
        .map_err(OpsError::step("listing running workspaces"))?
        .iter()
        .any(|w| w == workspace)
    {
        return Err(OpsError::Refused(format!(
            "workspace {workspace} is running: stop it first, then restore its files"
        )));
    }
    let saved = if runtime.projects_volume_exists(workspace).await.map_err(OpsError::step("inspecting volumes"))? {
        let dest = dir.restores_dir().join(format!("{workspace}-before-restore-{}.tar", stamp()));
        progress.step(&format!("saving the current files to {}", dest.display()));
        save_volume(&runtime, workspace, &dest).await?;
        Some(dest)
    } else {
        None
    };
    let replace = async {
        runtime.remove_projects_volume(workspace).await.map_err(OpsError::step("replacing the volume"))?;
        progress.step(&format!("restoring the files of workspace {workspace}"));
        let job = Extract {
            root: dir.root.clone(),
            archive: archive_path.to_path_buf(),
            runtime: Some(runtime.clone()),
            workspaces: vec![workspace.to_string()],
            stamp: stamp(),
            progress: progress.clone(),
        };
        let handle = Handle::current();
        let only = workspace.to_string();
        let mut journal = Journal::default();
        let database_of: DatabaseOf =
            Arc::new(|_: &Path| Err(OpsError::Refused("only workspace files are restored".into())));
        tokio::task::spawn_blocking(move || job.run(&handle, database_of, &mut journal, Some(&only)))
            .await
            .map_err(OpsError::step("restoring"))??;
        fail_point("restore-workspace-after-upload")
    };
    if let Err(e) = replace.await {
        let undone = async {
            runtime.remove_projects_volume(workspace).await.map_err(OpsError::step("removing the restored volume"))?;
            match &saved {
                Some(saved) => load_volume(&runtime, workspace, saved).await,
                None => Ok(()),
            }
        };
        let reason = match undone.await {
            Ok(()) => format!("{e}; the workspace's files were put back as they were"),
            Err(u) => format!(
                "{e}; putting the files back failed too ({u}): they are in {}",
                saved.as_ref().map(|s| s.display().to_string()).unwrap_or_default()
            ),
        };
        return Err(OpsError::Step { step: format!("restoring workspace {workspace}"), reason });
    }
    Ok(saved)
}
