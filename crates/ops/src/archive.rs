//! The backup archive: a tar stream compressed with zstd, written under a temporary name and
//! renamed only once complete and flushed, so a final name always holds a whole archive.
//! Every entry is hashed as it is written; the manifest with the hashes comes last.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use tar::{EntryType, Header};

use crate::error::{OpsError, Result};
use crate::manifest::{FORMAT_VERSION, MANIFEST_ENTRY, Manifest, ManifestEntry};
use crate::progress::Progress;

/// zstd's default level: what `zstd` without options does, the benchmark's baseline.
const COMPRESSION_LEVEL: i32 = 3;
/// At most this many problems are listed; the rest are counted.
const MAX_PROBLEMS: usize = 20;

type Encoder = zstd::stream::write::Encoder<'static, BufWriter<File>>;
pub type ArchiveReader = tar::Archive<zstd::stream::read::Decoder<'static, BufReader<File>>>;

/// zstd's worker threads: one a core, up to four (past that the engine's stream is slower).
fn compression_workers() -> u32 {
    std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1).clamp(1, 4)
}

/// Marks a temporary archive: `.<final name>.partial-<pid>`.
const PARTIAL_MARK: &str = ".partial-";

pub struct ArchiveWriter<'p> {
    builder: Option<tar::Builder<Encoder>>,
    entries: Vec<ManifestEntry>,
    temp: PathBuf,
    target: PathBuf,
    progress: &'p dyn Progress,
}

impl<'p> ArchiveWriter<'p> {
    /// Starts an archive that will be named `target` once finished.
    pub fn create(target: &Path, progress: &'p dyn Progress) -> Result<Self> {
        let dir = target.parent().unwrap_or(Path::new("."));
        let name = target.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        let temp = dir.join(format!(".{name}{PARTIAL_MARK}{}", std::process::id()));
        let file = crate::instance::create_private(&temp)?;
        let mut encoder = Encoder::new(BufWriter::with_capacity(1 << 20, file), COMPRESSION_LEVEL)
            .map_err(OpsError::io("compress", &temp))?;
        // Compression runs on worker threads while this one reads and hashes.
        encoder.multithread(compression_workers()).map_err(OpsError::io("compress", &temp))?;
        let mut builder = tar::Builder::new(encoder);
        builder.mode(tar::HeaderMode::Complete);
        Ok(ArchiveWriter { builder: Some(builder), entries: Vec::new(), temp, target: target.to_path_buf(), progress })
    }

    fn builder(&mut self) -> &mut tar::Builder<Encoder> {
        self.builder.as_mut().expect("the archive is open until finish")
    }

    /// Appends an entry: `header` gives its type, size, mode, owner and time; `data` exactly
    /// `header.size()` bytes for a regular file.
    pub fn append(&mut self, header: &mut Header, path: &str, data: impl Read) -> Result<()> {
        let write_error = OpsError::io("write", &self.temp);
        let kind = header.entry_type();
        let size = header.size().unwrap_or(0);
        let (size, sha256) = if kind.is_symlink() || kind.is_hard_link() {
            let target = header.link_name().ok().flatten().map(|t| t.to_string_lossy().to_string()).unwrap_or_default();
            return self.append_link(header, path, &target);
        } else if kind.is_file() || kind == EntryType::Continuous {
            let mut hashing = Hashing::new(data.take(size), self.progress);
            self.builder().append_data(header, path, &mut hashing).map_err(write_error)?;
            if hashing.bytes != size {
                return Err(OpsError::Step {
                    step: format!("archiving {path}"),
                    reason: format!(
                        "expected {size} bytes, read {} (the file changed while it was read)",
                        hashing.bytes
                    ),
                });
            }
            (size, hashing.finish())
        } else {
            header.set_size(0);
            self.builder().append_data(header, path, io::empty()).map_err(write_error)?;
            (0, hex::encode(Sha256::digest([])))
        };
        self.entries.push(ManifestEntry { path: path.to_string(), size, sha256 });
        Ok(())
    }

    /// Appends a symbolic or hard link; its hash is the target's.
    pub fn append_link(&mut self, header: &mut Header, path: &str, target: &str) -> Result<()> {
        header.set_size(0);
        let write_error = OpsError::io("write", &self.temp);
        self.builder().append_link(header, path, target).map_err(write_error)?;
        let sha256 = hex::encode(Sha256::digest(target.as_bytes()));
        self.entries.push(ManifestEntry { path: path.to_string(), size: 0, sha256 });
        Ok(())
    }

    /// Appends a file from disk, keeping its mode and time.
    pub fn append_file(&mut self, path: &str, source: &Path) -> Result<()> {
        let file = File::open(source).map_err(OpsError::io("read", source))?;
        let meta = file.metadata().map_err(OpsError::io("read", source))?;
        let mut header = Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        self.append(&mut header, path, file)
    }

    /// Appends a directory entry, keeping its mode.
    pub fn append_dir(&mut self, path: &str, source: &Path) -> Result<()> {
        let meta = fs::metadata(source).map_err(OpsError::io("read", source))?;
        let mut header = Header::new_gnu();
        header.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
        self.append(&mut header, path, io::empty())
    }

    /// Writes the manifest (with every entry's hash) last, flushes, and renames the archive
    /// to its final name. Returns the archive's size and the manifest as written.
    pub fn finish(mut self, mut manifest: Manifest) -> Result<(u64, Manifest)> {
        manifest.format = FORMAT_VERSION;
        manifest.entries = std::mem::take(&mut self.entries);
        let json = serde_json::to_vec_pretty(&manifest).map_err(OpsError::step("writing the manifest"))?;
        let mut header = Header::new_gnu();
        header.set_size(json.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(manifest.created.timestamp().max(0) as u64);
        let temp = self.temp.clone();
        let mut builder = self.builder.take().expect("the archive is open until finish");
        builder.append_data(&mut header, MANIFEST_ENTRY, json.as_slice()).map_err(OpsError::io("write", &temp))?;
        let encoder = builder.into_inner().map_err(OpsError::io("write", &temp))?;
        let buffered = encoder.finish().map_err(OpsError::io("write", &temp))?;
        let file = buffered.into_inner().map_err(|e| OpsError::Io {
            action: "write",
            path: temp.clone(),
            reason: e.into_error(),
        })?;
        file.sync_all().map_err(OpsError::io("flush", &temp))?;
        let size = file.metadata().map_err(OpsError::io("read", &temp))?.len();
        drop(file);
        crate::error::fail_point("backup-before-rename")?;
        fs::rename(&temp, &self.target).map_err(OpsError::io("rename", &temp))?;
        if let Some(dir) = self.target.parent() {
            let _ = File::open(dir).and_then(|d| d.sync_all());
        }
        Ok((size, manifest))
    }
}

impl Drop for ArchiveWriter<'_> {
    /// An archive that was not finished is removed: only whole archives keep a name.
    fn drop(&mut self) {
        if self.builder.is_some() || self.temp.exists() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Removes partial archives in `dir` whose writer is gone (killed mid-backup).
pub fn sweep_partials(dir: &Path) {
    let Ok(list) = fs::read_dir(dir) else { return };
    for entry in list.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        let Some((_, pid)) = name.rsplit_once(PARTIAL_MARK) else { continue };
        let alive = pid.parse::<i32>().is_ok_and(crate::instance::process_is_drydock);
        if name.starts_with('.') && !alive {
            tracing::info!(file = %name, "removing a partial backup left by an interrupted run");
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// A new header with the old one's type, size, mode, owner and time, and no name yet: a
/// cloned ustar header would keep its old name prefix when the new name fits without one.
pub fn fresh_header(old: &Header) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(old.entry_type());
    header.set_size(old.size().unwrap_or(0));
    header.set_mode(old.mode().unwrap_or(0o644));
    header.set_uid(old.uid().unwrap_or(0));
    header.set_gid(old.gid().unwrap_or(0));
    header.set_mtime(old.mtime().unwrap_or(0));
    if let Ok(Some(name)) = old.username() {
        let _ = header.set_username(name);
    }
    if let Ok(Some(name)) = old.groupname() {
        let _ = header.set_groupname(name);
    }
    if let Ok(Some(target)) = old.link_name() {
        let _ = header.set_link_name(target);
    }
    header
}

/// A reader that hashes (and counts) what passes through it.
pub struct Hashing<'p, R> {
    inner: R,
    hasher: Sha256,
    pub bytes: u64,
    progress: &'p dyn Progress,
}

impl<'p, R: Read> Hashing<'p, R> {
    pub fn new(inner: R, progress: &'p dyn Progress) -> Self {
        Hashing { inner, hasher: Sha256::new(), bytes: 0, progress }
    }

    pub fn finish(self) -> String {
        hex::encode(self.hasher.finalize())
    }
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

pub fn open(path: &Path) -> Result<ArchiveReader> {
    let file = File::open(path).map_err(OpsError::io("open", path))?;
    let decoder = zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(1 << 20, file))
        .map_err(OpsError::io("read", path))?;
    Ok(tar::Archive::new(decoder))
}

/// The entry's path as written (long names included).
pub fn entry_path<R: Read>(entry: &tar::Entry<R>) -> String {
    entry.path().map(|p| p.to_string_lossy().to_string()).unwrap_or_default()
}

/// The size and hash of an entry, read to its end.
pub fn hash_entry<R: Read>(entry: &mut tar::Entry<R>, progress: &dyn Progress) -> io::Result<(u64, String)> {
    let kind = entry.header().entry_type();
    if kind.is_symlink() || kind.is_hard_link() {
        let target = entry.link_name()?.map(|t| t.to_string_lossy().to_string()).unwrap_or_default();
        return Ok((0, hex::encode(Sha256::digest(target.as_bytes()))));
    }
    let mut hashing = Hashing::new(entry, progress);
    io::copy(&mut hashing, &mut io::sink())?;
    Ok((hashing.bytes, hashing.finish()))
}

/// Reads the whole archive and checks it against its manifest. Returns the manifest when
/// everything matches; otherwise [`OpsError::Invalid`] listing what is wrong.
pub fn verify(path: &Path, progress: &dyn Progress) -> Result<Manifest> {
    let mut problems = Problems::default();
    let mut found: BTreeMap<String, (u64, String)> = BTreeMap::new();
    let mut manifest: Option<Manifest> = None;
    let mut archive = open(path)?;
    let read = (|| -> io::Result<()> {
        for entry in archive.entries()? {
            let mut entry = entry?;
            let name = entry_path(&entry);
            if manifest.is_some() {
                problems.push(format!("{name}: an entry after the manifest"));
            }
            if name == MANIFEST_ENTRY {
                let mut json = Vec::new();
                entry.read_to_end(&mut json)?;
                match serde_json::from_slice::<Manifest>(&json) {
                    Ok(m) => manifest = Some(m),
                    Err(e) => problems.push(format!("{MANIFEST_ENTRY}: cannot be read: {e}")),
                }
                continue;
            }
            let hashed = hash_entry(&mut entry, progress)?;
            if found.insert(name.clone(), hashed).is_some() {
                problems.push(format!("{name}: appears twice"));
            }
        }
        Ok(())
    })();
    if let Err(e) = read {
        problems.push(format!("the archive is truncated or damaged after {} entries: {e}", found.len()));
    }
    let Some(manifest) = manifest else {
        problems.push(format!("no {MANIFEST_ENTRY}: the archive is truncated or is not a drydock backup"));
        return Err(problems.into_error(path));
    };
    if manifest.format > FORMAT_VERSION {
        problems.push(format!(
            "archive format {} is newer than this drydock ({}) reads: use drydock {} or newer",
            manifest.format, FORMAT_VERSION, manifest.drydock_version
        ));
    }
    for expected in &manifest.entries {
        match found.remove(&expected.path) {
            None => problems.push(format!("{}: missing", expected.path)),
            Some((size, _)) if size != expected.size => {
                problems.push(format!("{}: {size} bytes, the manifest says {}", expected.path, expected.size))
            }
            Some((_, sha)) if sha != expected.sha256 => problems.push(format!("{}: checksum mismatch", expected.path)),
            Some(_) => {}
        }
    }
    for extra in found.keys() {
        problems.push(format!("{extra}: not in the manifest"));
    }
    if problems.is_empty() { Ok(manifest) } else { Err(problems.into_error(path)) }
}

#[derive(Default)]
struct Problems {
    list: Vec<String>,
    more: usize,
}

impl Problems {
    fn push(&mut self, problem: String) {
        if self.list.len() < MAX_PROBLEMS { self.list.push(problem) } else { self.more += 1 }
    }

    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn into_error(mut self, path: &Path) -> OpsError {
        if self.more > 0 {
            self.list.push(format!("… and {} more", self.more));
        }
        OpsError::Invalid { path: path.to_path_buf(), problems: self.list }
    }
}
