//! Following a primary's workspaces' `/projects` from a standby: the primary sends, per
//! workspace, a tar of what changed since the standby's index ([`DockerRuntime::projects_delta`]);
//! the standby keeps the files in a plain directory, its mirror (drydock-ops' `mirror`). After
//! a failover, a workspace whose volume does not exist yet is created from its mirror
//! ([`DockerSettings::projects_seed`](crate::DockerSettings::projects_seed)).
//!
//! A delta tar holds the changed entries, named relative to the volume's root, then
//! [`DELTA_ENTRY`] last: a JSON [`DeltaSummary`]. A tar that does not end with it was cut off.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use drydock_core::runtime::RuntimeError;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use crate::names::{check_name_part, volume_name};
use crate::{ByteStream, DockerRuntime, HELPER_ROOT};

/// The name of a delta tar's last entry: its [`DeltaSummary`] as JSON.
pub const DELTA_ENTRY: &str = ".drydock-delta.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    File,
    Dir,
    Symlink,
}

/// What a sync compares of an entry. `size` is the file's length, 0 for directories and
/// symlinks (whose target is `link`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    pub kind: FileKind,
    pub size: u64,
    /// Unix seconds.
    pub mtime: i64,
    /// Permission bits (`& 0o7777`).
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// Relative '/'-separated paths (no leading "./" or "/"; the volume root itself is not an entry).
pub type FileIndex = BTreeMap<String, FileMeta>;

/// The last entry of a delta tar, named [`DELTA_ENTRY`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeltaSummary {
    /// Paths the standby has and the primary no longer has; a deleted directory stands for
    /// everything under it.
    pub deleted: Vec<String>,
    /// The primary's whole index.
    pub index: FileIndex,
    /// File bytes carried.
    pub bytes: u64,
    /// Files carried.
    pub files: u64,
}

/// How many bytes go to the consumer of a tar at once.
const CHUNK: usize = 64 * 1024;
/// Chunks queued between the thread writing a tar and its consumer.
const QUEUE: usize = 16;

/// What [`DockerRuntime::seed_new_volume`] found or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seeded {
    /// The volume was there: nothing changed.
    Existed,
    /// The mirror was gone meanwhile: an empty volume was made.
    Empty,
    /// The volume was made and holds the mirror's files.
    WithFiles,
}

tokio::task_local! {
    /// The workspace whose volume this task is seeding: its own helper's `ensure_volume`
    /// must neither wait for the seeding lock it holds nor seed again.
    static SEEDING: String;
}

/// Whether the current task is seeding this workspace's volume.
pub(crate) fn seeding(workspace: &str) -> bool {
    SEEDING.try_with(|w| w == workspace).unwrap_or(false)
}

impl DockerRuntime {
    /// The entries of a workspace's `/projects` that differ from `known` (the standby's
    /// index), as a tar stream ending with [`DELTA_ENTRY`]. The engine's tar is read once
    /// and copied entry by entry, so a file growing meanwhile cannot break the tar: each entry
    /// has the size the engine gave it. A failure ends the stream with an error.
    pub async fn projects_delta(&self, workspace: &str, known: &FileIndex) -> Result<ByteStream, RuntimeError> {
        check_name_part("workspace id", workspace)?;
        if !self.projects_volume_exists(workspace).await? {
            return Err(RuntimeError::Engine(format!(
                "workspace {workspace} has no /projects volume ({}) on the engine",
                volume_name(&self.instance, workspace)
            )));
        }
        let helper = self.volumes_helper(&[workspace.to_string()]).await?;
        let download = helper.download();
        let (tx, rx) = mpsc::channel::<Result<Bytes, RuntimeError>>(QUEUE);
        let known = known.clone();
        let workspace = workspace.to_string();
        let handle = Handle::current();
        let writer = ChannelWriter::new(tx.clone());
        tokio::spawn(async move {
            let ws = workspace.clone();
            let written = tokio::task::spawn_blocking(move || {
                write_delta(StreamReader::new(download, handle), writer, &ws, &known).map(|_| ())
            })
            .await;
            helper.remove().await;
            let failure = match written {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(why) = failure {
                // The consumer may be gone already (that is how it says it stopped reading).
                let _ = tx
                    .send(Err(RuntimeError::Engine(format!("reading workspace {workspace}'s /projects: {why}"))))
                    .await;
            }
        });
        Ok(futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }).boxed())
    }

    /// Creates a workspace's volume from its mirror under `seed_root` (if it still has one)
    /// and removes the mirror. Called with the seeding lock held.
    pub(crate) async fn seed_new_volume(&self, workspace: &str, seed_root: &Path) -> Result<Seeded, RuntimeError> {
        let dir = seed_root.join(workspace);
        if self.projects_volume_exists(workspace).await? {
            if dir.exists() {
                tracing::warn!(
                    workspace,
                    mirror = %dir.display(),
                    "the workspace's volume exists already: its mirror is left as it is, unused"
                );
            }
            return Ok(Seeded::Existed);
        }
        // Seeded meanwhile by someone holding the lock before us: a plain creation.
        if !dir.is_dir() {
            let created = self.create_volume(workspace).await?;
            return Ok(if created { Seeded::Empty } else { Seeded::Existed });
        }
        let created = self.create_volume(workspace).await?;
        let index_file = seed_root.join(format!("{workspace}.index.json"));
        let upload = SEEDING.scope(workspace.to_string(), self.upload_mirror(workspace, &dir, &index_file)).await;
        if let Err(e) = upload {
            // Only the volume just made goes; the mirror stays for another try.
            if created {
                let name = volume_name(&self.instance, workspace);
                if let Err(removal) =
                    self.docker.remove_volume(&name, None::<bollard::query_parameters::RemoveVolumeOptions>).await
                {
                    tracing::warn!(workspace, volume = name, error = %removal, "removing a volume whose seeding failed");
                }
            }
            return Err(RuntimeError::Engine(format!(
                "seeding workspace {workspace}'s /projects from the mirror {}: {e}",
                dir.display()
            )));
        }
        // The files are in the volume: the mirror has done its job.
        if let Err(e) = fs::remove_dir_all(&dir) {
            tracing::warn!(workspace, mirror = %dir.display(), error = %e, "removing a mirror after seeding");
        }
        if let Err(e) = fs::remove_file(&index_file)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(workspace, file = %index_file.display(), error = %e, "removing a mirror's index after seeding");
        }
        tracing::info!(workspace, mirror = %dir.display(), "seeded the workspace's /projects from its mirror");
        Ok(Seeded::WithFiles)
    }

    /// Writes a mirror's files into the workspace's (existing) volume.
    async fn upload_mirror(&self, workspace: &str, dir: &Path, index_file: &Path) -> Result<(), RuntimeError> {
        let index: FileIndex = match fs::read(index_file) {
            Ok(json) => serde_json::from_slice(&json)
                .map_err(|e| RuntimeError::Engine(format!("reading {}: {e}", index_file.display())))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => FileIndex::new(),
            Err(e) => return Err(RuntimeError::Engine(format!("reading {}: {e}", index_file.display()))),
        };
        let helper = self.volumes_helper(&[workspace.to_string()]).await?;
        let (tx, rx) = mpsc::channel::<Result<Bytes, RuntimeError>>(QUEUE);
        let writer = ChannelWriter::new(tx.clone());
        let (dir, ws) = (dir.to_path_buf(), workspace.to_string());
        let writing = tokio::task::spawn_blocking(move || {
            let result = write_mirror_tar(writer, &dir, &ws, &index);
            if let Err(e) = &result {
                let _ = tx.blocking_send(Err(RuntimeError::Engine(e.to_string())));
            }
            result
        });
        let body: BoxStream<'static, Result<Bytes, io::Error>> =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })
                .map(|item| item.map_err(io::Error::other))
                .boxed();
        let uploaded = helper.upload(body).await;
        helper.remove().await;
        match (uploaded, writing.await) {
            (Ok(()), Ok(Ok(()))) => Ok(()),
            // The engine stopped reading: its reason, not the tar's "stopped reading".
            (Err(e), Ok(Err(tar))) if tar.kind() == io::ErrorKind::BrokenPipe => Err(e),
            // The tar's own error says more than the engine's "unexpected EOF".
            (_, Ok(Err(tar))) => Err(RuntimeError::Engine(tar.to_string())),
            (_, Err(panicked)) => Err(RuntimeError::Engine(panicked.to_string())),
            (Err(e), Ok(Ok(()))) => Err(e),
        }
    }

    /// Creates every workspace volume that has a mirror in
    /// [`projects_seed`](crate::DockerSettings::projects_seed) and no volume yet, from that
    /// mirror. Returns the workspaces seeded; when some fail, the others are seeded still and
    /// the error names each failure (and those seeded).
    pub async fn seed_all_projects(&self) -> Result<Vec<String>, RuntimeError> {
        let Some(root) = self.settings.projects_seed.clone() else { return Ok(Vec::new()) };
        let listing = match fs::read_dir(&root) {
            Ok(listing) => listing,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(RuntimeError::Engine(format!("reading the mirror dir {}: {e}", root.display()))),
        };
        let mut workspaces = Vec::new();
        for entry in listing {
            let entry = entry.map_err(|e| RuntimeError::Engine(format!("reading {}: {e}", root.display())))?;
            let name = entry.file_name().to_string_lossy().to_string();
            // Staging and other work dirs start with a dot; a workspace id never does.
            if entry.file_type().is_ok_and(|t| t.is_dir()) && check_name_part("workspace id", &name).is_ok() {
                workspaces.push(name);
            }
        }
        workspaces.sort();
        // One broken mirror does not keep the others from their volumes.
        let (mut seeded, mut failed) = (Vec::new(), Vec::new());
        for workspace in workspaces {
            let _seeding = self.seeding.lock().await;
            match self.seed_new_volume(&workspace, &root).await {
                Ok(Seeded::WithFiles) => seeded.push(workspace),
                Ok(_) => {}
                Err(e) => failed.push(e.to_string()),
            }
        }
        if failed.is_empty() {
            Ok(seeded)
        } else {
            let done = if seeded.is_empty() { String::new() } else { format!(" (seeded: {})", seeded.join(", ")) };
            Err(RuntimeError::Engine(format!("{}{done}", failed.join("; "))))
        }
    }
}

/// Copies the changed entries of a tar of one workspace's volume as the volumes helper gives
/// it (`v/<ws>/…`) into a new tar, then the summary; returns the summary. What
/// [`DockerRuntime::projects_delta`] does, apart from the engine (tools and tests use it on
/// a tar of a plain directory).
pub fn write_delta(engine: impl Read, out: impl Write, workspace: &str, known: &FileIndex) -> io::Result<DeltaSummary> {
    let prefix = format!("{HELPER_ROOT}/{workspace}/");
    let mut archive = tar::Archive::new(engine);
    let mut out = tar::Builder::new(out);
    let mut index = FileIndex::new();
    let mut emitted: HashSet<String> = HashSet::new();
    let (mut bytes, mut files) = (0u64, 0u64);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.to_string_lossy().to_string();
        // `v/` and `v/<ws>/` themselves are the helper's, not entries of the volume.
        let Some(rel) = path.strip_prefix(&prefix).map(|p| p.trim_end_matches('/').to_string()) else { continue };
        if rel.is_empty() {
            continue;
        }
        let header = entry.header();
        let kind = header.entry_type();
        let base = |kind: FileKind, size: u64, link: Option<String>| -> io::Result<FileMeta> {
            Ok(FileMeta {
                kind,
                size,
                mtime: header.mtime()? as i64,
                mode: header.mode()? & 0o7777,
                uid: header.uid()?,
                gid: header.gid()?,
                link,
            })
        };
        if kind.is_hard_link() {
            // Another name of a file earlier in the tar: the same metadata as that file.
            let target = entry.link_name()?.map(|t| t.to_string_lossy().to_string()).unwrap_or_default();
            let target = target.strip_prefix(&prefix).unwrap_or(&target).to_string();
            let Some(meta) = index.get(&target).cloned() else {
                tracing::warn!(workspace, path = rel, target, "a hard link to a file not in the volume: left out");
                continue;
            };
            if known.get(&rel) == Some(&meta) {
                index.insert(rel, meta);
                continue;
            }
            if emitted.contains(&target) {
                let mut link = fresh_header(tar::EntryType::Link, &meta);
                out.append_link(&mut link, &rel, &target)?;
                emitted.insert(rel.clone());
                index.insert(rel, meta);
            } else {
                // Its content went in an earlier sync under the other name, and this tar is
                // read once: it cannot carry it. Left out of the index, so the standby does
                // not count it as present.
                tracing::warn!(
                    workspace,
                    path = rel,
                    target,
                    "a new hard link to an unchanged file cannot be carried: left out of the mirror"
                );
            }
            continue;
        }
        let meta = if kind.is_dir() {
            base(FileKind::Dir, 0, None)?
        } else if kind.is_symlink() {
            let link = entry.link_name()?.map(|t| t.to_string_lossy().to_string()).unwrap_or_default();
            base(FileKind::Symlink, 0, Some(link))?
        } else if kind.is_file() {
            base(FileKind::File, header.size()?, None)?
        } else {
            // Devices, fifos, sockets and tar's own extension entries: nothing a mirror keeps.
            continue;
        };
        let unchanged = known.get(&rel) == Some(&meta);
        index.insert(rel.clone(), meta.clone());
        if unchanged {
            continue;
        }
        match meta.kind {
            FileKind::Dir => {
                let mut h = fresh_header(tar::EntryType::Directory, &meta);
                out.append_data(&mut h, format!("{rel}/"), io::empty())?;
            }
            FileKind::Symlink => {
                let mut h = fresh_header(tar::EntryType::Symlink, &meta);
                out.append_link(&mut h, &rel, meta.link.as_deref().unwrap_or_default())?;
            }
            FileKind::File => {
                let mut h = fresh_header(tar::EntryType::Regular, &meta);
                h.set_size(meta.size);
                out.append_data(&mut h, &rel, &mut entry)?;
                bytes += meta.size;
                files += 1;
            }
        }
        emitted.insert(rel);
    }
    let summary = DeltaSummary { deleted: deleted_paths(known, &index), index, bytes, files };
    let json = serde_json::to_vec(&summary).map_err(io::Error::other)?;
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(json.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(chrono::Utc::now().timestamp().max(0) as u64);
    out.append_data(&mut h, DELTA_ENTRY, json.as_slice())?;
    let mut out = out.into_inner()?;
    out.flush()?;
    Ok(summary)
}

/// Paths of `known` the primary no longer has, leaving out those under a deleted directory.
fn deleted_paths(known: &FileIndex, index: &FileIndex) -> Vec<String> {
    let mut deleted: Vec<String> = Vec::new();
    let mut gone: HashSet<&str> = HashSet::new();
    for path in known.keys() {
        if index.contains_key(path) {
            continue;
        }
        let under_gone = path.match_indices('/').any(|(i, _)| gone.contains(&path[..i]));
        gone.insert(path);
        if !under_gone {
            deleted.push(path.clone());
        }
    }
    deleted
}

/// A tar header carrying an entry's metadata (path, size and link are set by the caller).
fn fresh_header(kind: tar::EntryType, meta: &FileMeta) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(0);
    h.set_mode(meta.mode);
    h.set_uid(meta.uid);
    h.set_gid(meta.gid);
    h.set_mtime(meta.mtime.max(0) as u64);
    h
}

/// A mirror dir as the helper's tar: `v/<ws>/…`, parents before children, with the owner,
/// mode and mtime of the saved index where it has the path (a non-root standby could not
/// keep owners on disk), else the file's own.
fn write_mirror_tar(out: ChannelWriter, dir: &Path, workspace: &str, index: &FileIndex) -> io::Result<()> {
    let mut out = tar::Builder::new(out);
    out.follow_symlinks(false);
    let mut stack: Vec<(PathBuf, String)> = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, rel)) = stack.pop() {
        let mut children: Vec<(PathBuf, String)> = fs::read_dir(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", path.display())))?
            .map(|child| {
                child.map(|c| {
                    let name = c.file_name().to_string_lossy().to_string();
                    let rel = if rel.is_empty() { name } else { format!("{rel}/{name}") };
                    (c.path(), rel)
                })
            })
            .collect::<io::Result<_>>()?;
        // Popped from the end: reversed, so the tar lists them in name order.
        children.sort_by(|a, b| b.1.cmp(&a.1));
        for (child, child_rel) in children {
            let stat = fs::symlink_metadata(&child)
                .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", child.display())))?;
            let own = meta_of(&stat, &child)?;
            let Some(own) = own else { continue };
            // The index's owner, mode and time when it describes this same kind of entry.
            let meta = match index.get(&child_rel) {
                Some(saved) if saved.kind == own.kind => {
                    FileMeta { uid: saved.uid, gid: saved.gid, mode: saved.mode, mtime: saved.mtime, ..own }
                }
                _ => own,
            };
            let name = format!("{HELPER_ROOT}/{workspace}/{child_rel}");
            match meta.kind {
                FileKind::Dir => {
                    let mut h = fresh_header(tar::EntryType::Directory, &meta);
                    out.append_data(&mut h, format!("{name}/"), io::empty())?;
                    stack.push((child, child_rel));
                }
                FileKind::Symlink => {
                    let mut h = fresh_header(tar::EntryType::Symlink, &meta);
                    out.append_link(&mut h, &name, meta.link.as_deref().unwrap_or_default())?;
                }
                FileKind::File => {
                    let file = fs::File::open(&child)
                        .map_err(|e| io::Error::new(e.kind(), format!("reading {}: {e}", child.display())))?;
                    let mut h = fresh_header(tar::EntryType::Regular, &meta);
                    h.set_size(meta.size);
                    out.append_data(&mut h, &name, Exactly::new(file, meta.size, &child))?;
                }
            }
        }
    }
    let mut out = out.into_inner()?;
    out.flush()
}

/// An entry's metadata from `lstat`; `None` for what a mirror does not keep (devices,
/// fifos, sockets). Used for mirrors on the standby too.
pub fn meta_of(stat: &fs::Metadata, path: &Path) -> io::Result<Option<FileMeta>> {
    let file_type = stat.file_type();
    let (kind, size, link) = if file_type.is_dir() {
        (FileKind::Dir, 0, None)
    } else if file_type.is_symlink() {
        let target = fs::read_link(path)
            .map_err(|e| io::Error::new(e.kind(), format!("reading the link {}: {e}", path.display())))?;
        (FileKind::Symlink, 0, Some(target.to_string_lossy().to_string()))
    } else if file_type.is_file() {
        (FileKind::File, stat.len(), None)
    } else {
        return Ok(None);
    };
    Ok(Some(FileMeta {
        kind,
        size,
        mtime: stat.mtime(),
        mode: stat.mode() & 0o7777,
        uid: u64::from(stat.uid()),
        gid: u64::from(stat.gid()),
        link,
    }))
}

/// A file's first `size` bytes, failing when it is shorter: a tar entry must have the size
/// its header says.
struct Exactly<'p> {
    file: io::Take<fs::File>,
    left: u64,
    path: &'p Path,
}

impl<'p> Exactly<'p> {
    fn new(file: fs::File, size: u64, path: &'p Path) -> Self {
        Exactly { file: file.take(size), left: size, path }
    }
}

impl Read for Exactly<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        if n == 0 && self.left > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while being read", self.path.display()),
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A byte stream read from a blocking thread.
struct StreamReader {
    stream: ByteStream,
    handle: Handle,
    chunk: Bytes,
}

impl StreamReader {
    fn new(stream: ByteStream, handle: Handle) -> Self {
        StreamReader { stream, handle, chunk: Bytes::new() }
    }
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.handle.block_on(self.stream.next()) {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(io::Error::other(e.to_string())),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// Writes from a blocking thread into a channel, in chunks of [`CHUNK`] bytes.
struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, RuntimeError>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn new(tx: mpsc::Sender<Result<Bytes, RuntimeError>>) -> Self {
        ChannelWriter { tx, buf: Vec::with_capacity(CHUNK) }
    }

    fn send(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the reader of the tar stopped reading"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(kind: FileKind) -> FileMeta {
        FileMeta { kind, size: 0, mtime: 1, mode: 0o755, uid: 0, gid: 0, link: None }
    }

    #[test]
    fn deleted_paths_leave_out_what_a_deleted_dir_holds() {
        let known: FileIndex =
            ["a", "a/b", "a/b/c", "a-b", "d", "e"].iter().map(|p| (p.to_string(), meta(FileKind::Dir))).collect();
        let index: FileIndex = ["d"].iter().map(|p| (p.to_string(), meta(FileKind::Dir))).collect();
        assert_eq!(deleted_paths(&known, &index), ["a", "a-b", "e"]);
    }

    #[test]
    fn meta_serializes_lowercase_without_an_empty_link() {
        let json = serde_json::to_string(&meta(FileKind::Symlink)).unwrap();
        assert!(json.contains("\"symlink\"") && !json.contains("link\":"), "{json}");
    }
}
