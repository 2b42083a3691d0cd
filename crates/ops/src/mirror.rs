//! A standby's mirror of the primary's workspaces' `/projects`: plain directories, kept up to
//! date from the primary's delta tars (`DockerRuntime::projects_delta`).
//!
//! Under a mirror root `R`: `R/<ws>/…` the files, `R/<ws>.index.json` the primary's index as of
//! the last sync applied. A sync is staged first ([`stage_delta`], which also tells a cut-off
//! transfer by its missing summary), then applied with renames ([`apply_staged`]); applying
//! again after a crash midway finishes the job.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

pub use drydock_docker::projects_sync::{DELTA_ENTRY, DeltaSummary, FileIndex, FileKind, FileMeta};

use crate::error::{OpsError, Result};
use crate::instance::write_atomic;

/// Where a workspace's saved index lives: next to its mirror dir.
pub fn index_path(mirror_root: &Path, ws: &str) -> PathBuf {
    mirror_root.join(format!("{ws}.index.json"))
}

/// The index of a mirror dir from `lstat` (symlinks are not followed); a missing dir has an
/// empty index. Devices, fifos and sockets are left out, as the primary's delta leaves them.
pub fn index_of(dir: &Path) -> Result<FileIndex> {
    let mut index = FileIndex::new();
    match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(index),
        Err(e) => return Err(OpsError::Io { action: "read", path: dir.to_path_buf(), reason: e }),
        Ok(_) => {}
    }
    let mut stack: Vec<(PathBuf, String)> = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, rel)) = stack.pop() {
        for child in fs::read_dir(&path).map_err(OpsError::io("read", &path))? {
            let child = child.map_err(OpsError::io("read", &path))?;
            let name = child.file_name().to_string_lossy().to_string();
            let child_rel = if rel.is_empty() { name } else { format!("{rel}/{name}") };
            let child_path = child.path();
            let stat = fs::symlink_metadata(&child_path).map_err(OpsError::io("read", &child_path))?;
            let Some(meta) = drydock_docker::projects_sync::meta_of(&stat, &child_path)
                .map_err(OpsError::io("read", &child_path))?
            else {
                continue;
            };
            if meta.kind == FileKind::Dir {
                stack.push((child_path, child_rel.clone()));
            }
            index.insert(child_rel, meta);
        }
    }
    Ok(index)
}

/// Unpacks a delta tar into `staging` (created; it must not hold anything yet), keeping modes
/// and times (and owners when running as root). Refuses entries that are absolute, hold
/// `..`, or would land outside `staging` through a symlink. Returns the delta's summary; a
/// tar that does not end with it was cut off and is an error.
pub fn stage_delta(tar: impl Read, staging: &Path) -> Result<DeltaSummary> {
    fs::create_dir_all(staging).map_err(OpsError::io("create", staging))?;
    if fs::read_dir(staging).map_err(OpsError::io("read", staging))?.next().is_some() {
        return Err(OpsError::Refused(format!(
            "the staging dir {} is not empty: remove it before staging a delta",
            staging.display()
        )));
    }
    let bad =
        |entry: &str, why: String| OpsError::Step { step: format!("staging the delta entry {entry}"), reason: why };
    // Only root may give files away; as another user files keep the standby's owner (the
    // saved index keeps the primary's, for seeding).
    let as_root = std::os::unix::fs::lchown(staging, Some(0), Some(0)).is_ok();
    let mut archive = tar::Archive::new(tar);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_preserve_ownerships(as_root);
    archive.set_overwrite(true);
    // An entry named like the summary is the summary only when nothing follows it: a user's
    // file of that name is staged as a file once the next entry shows it was not the last.
    let mut pending: Option<(tar::Header, Vec<u8>)> = None;
    let entries = archive.entries().map_err(OpsError::step("reading the delta"))?;
    for entry in entries {
        let mut entry = entry.map_err(OpsError::step("reading the delta"))?;
        if let Some((header, data)) = pending.take() {
            stage_plain_file(staging, &header, &data, as_root)?;
        }
        let raw = entry.path().map_err(OpsError::step("reading the delta"))?.to_string_lossy().to_string();
        let rel = check_entry(&raw).map_err(|why| bad(&raw, why))?;
        if rel == DELTA_ENTRY {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).map_err(OpsError::step("reading the delta's summary"))?;
            pending = Some((entry.header().clone(), data));
            continue;
        }
        check_no_symlink_above(staging, &rel).map_err(|why| bad(&raw, why))?;
        let unpacked = entry.unpack_in(staging).map_err(|e| bad(&raw, with_causes(&e)))?;
        if !unpacked {
            return Err(bad(&raw, "it would land outside the staging dir".to_string()));
        }
        // tar makes a time of 0 into 1 (for tools that take 0 as unset); the index has 0.
        let header = entry.header();
        if header.mtime().ok() == Some(0) && !header.entry_type().is_symlink() && !header.entry_type().is_dir() {
            set_mtime(&staging.join(&rel), 0)?;
        }
    }
    let Some((_, data)) = pending else {
        return Err(OpsError::Step {
            step: "staging a delta".to_string(),
            reason: format!("incomplete delta: it ends without its summary ({DELTA_ENTRY}); the transfer was cut off"),
        });
    };
    serde_json::from_slice(&data).map_err(OpsError::step(format!("reading the delta's summary ({DELTA_ENTRY})")))
}

/// An error's message with its causes' (tar's errors say what failed, their cause why).
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        message = format!("{message}: {c}");
        cause = c.source();
    }
    message
}

/// The entry's path as a relative '/'-separated path, or why it is refused.
fn check_entry(raw: &str) -> std::result::Result<String, String> {
    let path = Path::new(raw);
    let mut parts = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => parts.push(part.to_string_lossy().to_string()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return Err("its path is absolute".to_string()),
            Component::ParentDir => return Err("its path holds '..'".to_string()),
        }
    }
    if parts.is_empty() {
        return Err("its path is empty".to_string());
    }
    Ok(parts.join("/"))
}

/// Refuses a path whose parent, in `root`, is reached through a symlink (or is no dir).
fn check_no_symlink_above(root: &Path, rel: &str) -> std::result::Result<(), String> {
    let mut at = root.to_path_buf();
    let parts: Vec<&str> = rel.split('/').collect();
    for part in &parts[..parts.len() - 1] {
        at.push(part);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => {
                return Err(format!("it goes through the symlink {}", at.display()));
            }
            Ok(m) if !m.is_dir() => return Err(format!("{} is not a directory", at.display())),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("cannot read {}: {e}", at.display())),
        }
    }
    Ok(())
}

/// A user's file named like the summary, staged at the volume's root.
fn stage_plain_file(staging: &Path, header: &tar::Header, data: &[u8], as_root: bool) -> Result<()> {
    let path = staging.join(DELTA_ENTRY);
    fs::write(&path, data).map_err(OpsError::io("write", &path))?;
    if as_root {
        let (uid, gid) = (header.uid().unwrap_or(0) as u32, header.gid().unwrap_or(0) as u32);
        std::os::unix::fs::lchown(&path, Some(uid), Some(gid)).map_err(OpsError::io("change the owner of", &path))?;
    }
    let mode = header.mode().unwrap_or(0o644) & 0o7777;
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).map_err(OpsError::io("set the mode of", &path))?;
    set_mtime(&path, header.mtime().unwrap_or(0) as i64)
}

/// Moves a staged delta into `mirror` (`R/<ws>`), deletes what the primary deleted, sets the
/// directories' modes and times, writes `R/<ws>.index.json` and removes `staging`.
/// Idempotent: run again after a crash midway, it finishes the job (entries already moved
/// are simply no longer in `staging`).
pub fn apply_staged(staging: &Path, summary: &DeltaSummary, mirror: &Path) -> Result<()> {
    let (root, ws) = match (mirror.parent(), mirror.file_name()) {
        (Some(root), Some(ws)) => (root.to_path_buf(), ws.to_string_lossy().to_string()),
        _ => return Err(OpsError::Refused(format!("{} cannot be a workspace's mirror dir", mirror.display()))),
    };
    fs::create_dir_all(mirror).map_err(OpsError::io("create", mirror))?;
    let trash = root.join(format!(".{ws}.replaced"));
    remove_any(&trash)?;

    // Entries: parents before children; a staged dir whose place is free moves whole.
    if staging.exists() {
        place_children(staging, mirror, &trash)?;
    }

    // Deepest first, so a dir is emptied before it goes (a deleted dir goes whole anyway).
    let mut deleted: Vec<&String> = summary.deleted.iter().collect();
    deleted.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    for rel in deleted {
        let rel = check_entry(rel).map_err(|why| OpsError::Refused(format!("the deleted path {rel}: {why}")))?;
        // Under a dir that became a file or symlink, it went with the dir; and a symlink
        // placed where the dir was must not be followed.
        if check_no_symlink_above(mirror, &rel).is_ok() {
            remove_any(&mirror.join(rel))?;
        }
    }

    // Renames into and out of directories changed their times; the primary's win.
    let dirs: Vec<(&String, &FileMeta)> = summary.index.iter().filter(|(_, m)| m.kind == FileKind::Dir).collect();
    let mut missing = HashSet::new();
    for (rel, meta) in dirs.into_iter().rev() {
        let path = mirror.join(rel);
        let stat = match fs::symlink_metadata(&path) {
            Ok(stat) if stat.is_dir() && check_no_symlink_above(mirror, rel).is_ok() => stat,
            // Not the mirror's to make up: check_mirror reports it.
            _ => {
                missing.insert(rel.clone());
                continue;
            }
        };
        if (u64::from(stat.uid()), u64::from(stat.gid())) != (meta.uid, meta.gid) {
            // Fails unless root; then the standby's owner stays, as for files.
            let _ = std::os::unix::fs::lchown(&path, Some(meta.uid as u32), Some(meta.gid as u32));
        }
        if stat.mode() & 0o7777 != meta.mode {
            fs::set_permissions(&path, fs::Permissions::from_mode(meta.mode))
                .map_err(OpsError::io("set the mode of", &path))?;
        }
        if stat.mtime() != meta.mtime {
            set_mtime(&path, meta.mtime)?;
        }
    }
    if !missing.is_empty() {
        tracing::warn!(workspace = ws, count = missing.len(), "directories of the primary missing from the mirror");
    }

    let json = serde_json::to_vec(&summary.index).map_err(OpsError::step("writing the mirror's index"))?;
    write_atomic(&index_path(&root, &ws), &json, 0o644)?;
    match fs::remove_dir_all(staging) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(OpsError::Io { action: "remove", path: staging.to_path_buf(), reason: e })
        }
        _ => Ok(()),
    }
}

/// Moves every entry of the staged dir `from` to the same name under `to` (a dir).
fn place_children(from: &Path, to: &Path, trash: &Path) -> Result<()> {
    let mut children: Vec<_> = fs::read_dir(from)
        .map_err(OpsError::io("read", from))?
        .map(|c| c.map(|c| c.file_name()))
        .collect::<io::Result<_>>()
        .map_err(OpsError::io("read", from))?;
    children.sort();
    for name in children {
        let (src, dst) = (from.join(&name), to.join(&name));
        let staged = match fs::symlink_metadata(&src) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(OpsError::Io { action: "read", path: src, reason: e }),
        };
        let there = match fs::symlink_metadata(&dst) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(OpsError::Io { action: "read", path: dst, reason: e }),
        };
        match there {
            // Merged: the mirror's dir keeps what the delta does not touch.
            Some(m) if staged.is_dir() && m.is_dir() => {
                place_children(&src, &dst, trash)?;
                // Its mode and time are set once everything is in place.
                fs::remove_dir(&src).map_err(OpsError::io("remove", &src))?;
                continue;
            }
            // A dir where a file or symlink goes (or the other way round): out of the way first,
            // as a rename cannot replace a dir with a file.
            Some(m) if m.is_dir() => {
                fs::rename(&dst, trash).map_err(OpsError::io("move aside", &dst))?;
                remove_any(trash)?;
            }
            Some(_) if staged.is_dir() => fs::remove_file(&dst).map_err(OpsError::io("remove", &dst))?,
            // A file or symlink is replaced by the rename itself.
            _ => {}
        }
        fs::rename(&src, &dst).map_err(OpsError::io("move into the mirror", &dst))?;
    }
    Ok(())
}

/// Removes a file, symlink or dir (recursively); a missing one is fine (also when a file
/// took the place of its parent dir).
fn remove_any(path: &Path) -> Result<()> {
    let result = match fs::symlink_metadata(path) {
        Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => return Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
    };
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(OpsError::Io { action: "remove", path: path.to_path_buf(), reason: e })
        }
        _ => Ok(()),
    }
}

/// Sets a file's or dir's modification time (not through symlinks: only called on those).
fn set_mtime(path: &Path, mtime: i64) -> Result<()> {
    let time = if mtime >= 0 {
        UNIX_EPOCH + Duration::from_secs(mtime as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(mtime.unsigned_abs())
    };
    let file = fs::File::open(path).map_err(OpsError::io("open", path))?;
    file.set_modified(time).map_err(OpsError::io("set the time of", path))
}

/// The index saved by the last sync applied to the workspace's mirror, if any.
pub fn read_index(mirror_root: &Path, ws: &str) -> Result<Option<FileIndex>> {
    let path = index_path(mirror_root, ws);
    match fs::read(&path) {
        Ok(json) => serde_json::from_slice(&json)
            .map(Some)
            .map_err(|e| OpsError::Step { step: format!("reading {}", path.display()), reason: e.to_string() }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(OpsError::Io { action: "read", path, reason: e }),
    }
}

/// What is wrong with a workspace's mirror against its saved index: entries missing, of
/// another kind, or (files) of another size. Empty when it is sound.
pub fn check_mirror(mirror_root: &Path, ws: &str) -> Result<Vec<String>> {
    let Some(saved) = read_index(mirror_root, ws)? else {
        return Ok(vec![format!(
            "workspace {ws}: no index ({}): no sync of it has completed",
            index_path(mirror_root, ws).display()
        )]);
    };
    let actual = index_of(&mirror_root.join(ws))?;
    let kind = |k: FileKind| match k {
        FileKind::File => "a file",
        FileKind::Dir => "a directory",
        FileKind::Symlink => "a symlink",
    };
    let mut problems = Vec::new();
    for (path, want) in &saved {
        match actual.get(path) {
            None => problems.push(format!("workspace {ws}: {path} is missing")),
            Some(have) if have.kind != want.kind => problems.push(format!(
                "workspace {ws}: {path} is {}, the primary has {}",
                kind(have.kind),
                kind(want.kind)
            )),
            Some(have) if want.kind == FileKind::File && have.size != want.size => {
                problems.push(format!("workspace {ws}: {path} has {} bytes, the primary has {}", have.size, want.size))
            }
            Some(_) => {}
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    /// A primary's volume as a plain dir, and the standby's mirror root.
    struct Sides {
        _tmp: tempfile::TempDir,
        primary: PathBuf,
        root: PathBuf,
    }

    impl Sides {
        fn new() -> Self {
            let tmp = tempfile::tempdir().unwrap();
            let primary = tmp.path().join("primary");
            let root = tmp.path().join("mirrors");
            fs::create_dir_all(&primary).unwrap();
            fs::create_dir_all(&root).unwrap();
            Sides { primary, root, _tmp: tmp }
        }

        fn mirror(&self) -> PathBuf {
            self.root.join("ws1")
        }

        fn staging(&self) -> PathBuf {
            self.root.join(".staging-ws1")
        }

        /// The primary's dir as the volumes helper would send it: `v/ws1/…`.
        fn engine_tar(&self) -> Vec<u8> {
            let mut builder = tar::Builder::new(Vec::new());
            builder.follow_symlinks(false);
            builder.append_dir_all("v/ws1", &self.primary).unwrap();
            builder.into_inner().unwrap()
        }

        /// A delta against the mirror as it is.
        fn delta(&self) -> (Vec<u8>, DeltaSummary) {
            let known = index_of(&self.mirror()).unwrap();
            let mut out = Vec::new();
            let summary =
                drydock_docker::projects_sync::write_delta(self.engine_tar().as_slice(), &mut out, "ws1", &known)
                    .unwrap();
            (out, summary)
        }

        /// One whole sync; returns the summary.
        fn sync(&self) -> DeltaSummary {
            let (tar, _) = self.delta();
            let summary = stage_delta(tar.as_slice(), &self.staging()).unwrap();
            apply_staged(&self.staging(), &summary, &self.mirror()).unwrap();
            summary
        }

        fn assert_same(&self) {
            let primary = index_of(&self.primary).unwrap();
            assert_eq!(index_of(&self.mirror()).unwrap(), primary);
            assert_eq!(read_index(&self.root, "ws1").unwrap().unwrap(), primary);
            assert_eq!(check_mirror(&self.root, "ws1").unwrap(), Vec::<String>::new());
            for (path, meta) in &primary {
                if meta.kind == FileKind::File {
                    assert_eq!(fs::read(self.primary.join(path)).unwrap(), fs::read(self.mirror().join(path)).unwrap());
                }
            }
            assert!(!self.staging().exists());
        }
    }

    fn write(path: &Path, content: &str, mtime: i64) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
        set_mtime(path, mtime).unwrap();
    }

    /// A tar of raw entries (names written as given, even `..` or absolute ones).
    fn raw_tar(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (name, kind, content) in entries {
            let mut h = tar::Header::new_old();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_600_000_000);
            if kind.is_symlink() {
                h.set_link_name(content).unwrap();
                h.set_size(0);
                h.set_cksum();
                builder.append(&h, io::empty()).unwrap();
            } else {
                h.set_size(content.len() as u64);
                h.set_cksum();
                builder.append(&h, content.as_bytes()).unwrap();
            }
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn index_of_a_missing_dir_is_empty() {
        let sides = Sides::new();
        assert!(index_of(&sides.root.join("nope")).unwrap().is_empty());
        assert_eq!(read_index(&sides.root, "nope").unwrap(), None);
        assert_eq!(check_mirror(&sides.root, "nope").unwrap().len(), 1);
    }

    #[test]
    fn index_of_reads_kinds_modes_times_and_links() {
        let sides = Sides::new();
        write(&sides.primary.join("d/f.txt"), "hello", 1_600_000_000);
        fs::set_permissions(sides.primary.join("d/f.txt"), fs::Permissions::from_mode(0o640)).unwrap();
        symlink("d/f.txt", sides.primary.join("l")).unwrap();
        let index = index_of(&sides.primary).unwrap();
        assert_eq!(index.keys().collect::<Vec<_>>(), ["d", "d/f.txt", "l"]);
        let f = &index["d/f.txt"];
        assert_eq!((f.kind, f.size, f.mtime, f.mode), (FileKind::File, 5, 1_600_000_000, 0o640));
        assert_eq!(index["d"].kind, FileKind::Dir);
        assert_eq!(index["d"].size, 0);
        assert_eq!((index["l"].kind, index["l"].link.as_deref()), (FileKind::Symlink, Some("d/f.txt")));
    }

    #[test]
    fn syncs_carry_only_what_changed() {
        let sides = Sides::new();
        let p = &sides.primary;
        write(&p.join("a.txt"), "alpha", 1_600_000_000);
        write(&p.join("epoch"), "a time of 0", 0);
        write(&p.join("big.bin"), &"x".repeat(100_000), 1_600_000_000);
        write(&p.join("d/e.txt"), "echo", 1_600_000_000);
        write(&p.join("gone/deep/x"), "x", 1_600_000_000);
        write(&p.join("f"), "file that becomes a dir", 1_600_000_000);
        write(&p.join("g/child"), "dir that becomes a file", 1_600_000_000);
        symlink("a.txt", p.join("link")).unwrap();
        fs::set_permissions(p.join("d"), fs::Permissions::from_mode(0o750)).unwrap();
        set_mtime(&p.join("d"), 1_500_000_000).unwrap();

        let first = sides.sync();
        assert_eq!(first.files, 7);
        assert_eq!(first.bytes, index_of(p).unwrap().values().map(|m| m.size).sum::<u64>());
        assert!(first.deleted.is_empty());
        sides.assert_same();

        // Nothing changed: nothing carried.
        let (_, idle) = sides.delta();
        assert_eq!((idle.files, idle.bytes, idle.deleted.len()), (0, 0, 0));

        write(&p.join("a.txt"), "alpha, changed", 1_600_000_100);
        fs::remove_dir_all(p.join("gone")).unwrap();
        fs::remove_file(p.join("d/e.txt")).unwrap();
        write(&p.join("new.txt"), "new", 1_600_000_000);
        fs::remove_file(p.join("f")).unwrap();
        write(&p.join("f/inside"), "now a dir", 1_600_000_000);
        fs::remove_dir_all(p.join("g")).unwrap();
        write(&p.join("g"), "now a file", 1_600_000_000);
        fs::remove_file(p.join("link")).unwrap();
        symlink("new.txt", p.join("link")).unwrap();
        // A dir that becomes a symlink to a dir outside: what the dir held must go, not what
        // the symlink points at.
        let outside = sides.root.parent().unwrap().join("outside");
        write(&outside.join("deep/x"), "not the mirror's", 1_600_000_000);
        symlink(&outside, p.join("gone")).unwrap();

        let second = sides.sync();
        assert_eq!(second.files, 4, "a.txt, new.txt, f/inside, g");
        assert_eq!(
            second.bytes,
            ("alpha, changed".len() + "new".len() + "now a dir".len() + "now a file".len()) as u64
        );
        assert_eq!(second.deleted, ["d/e.txt", "g/child", "gone/deep"]);
        sides.assert_same();
        assert_eq!(fs::read_link(sides.mirror().join("link")).unwrap(), Path::new("new.txt"));
        assert_eq!(fs::read_link(sides.mirror().join("gone")).unwrap(), outside);
        assert!(outside.join("deep/x").exists());
        assert_eq!(fs::symlink_metadata(sides.mirror().join("d")).unwrap().mode() & 0o7777, 0o750);
    }

    #[test]
    fn hard_links_travel_with_their_file() {
        let sides = Sides::new();
        let engine_tar = |links: &[&str]| {
            let mut builder = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_600_000_000);
            h.set_size(5);
            builder.append_data(&mut h, "v/ws1/a", "hello".as_bytes()).unwrap();
            for link in links {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_uid(0);
                h.set_gid(0);
                h.set_mtime(1_600_000_000);
                h.set_size(0);
                builder.append_link(&mut h, format!("v/ws1/{link}"), "v/ws1/a").unwrap();
            }
            builder.into_inner().unwrap()
        };
        let sync = |tar: Vec<u8>| {
            let known = index_of(&sides.mirror()).unwrap();
            let mut delta = Vec::new();
            drydock_docker::projects_sync::write_delta(tar.as_slice(), &mut delta, "ws1", &known).unwrap();
            let summary = stage_delta(delta.as_slice(), &sides.staging()).unwrap();
            apply_staged(&sides.staging(), &summary, &sides.mirror()).unwrap();
            summary
        };
        let first = sync(engine_tar(&["b"]));
        assert_eq!(first.files, 1);
        assert_eq!(first.index["b"], first.index["a"]);
        let (a, b) = (sides.mirror().join("a"), sides.mirror().join("b"));
        assert_eq!(fs::metadata(&a).unwrap().ino(), fs::metadata(&b).unwrap().ino());
        assert_eq!(index_of(&sides.mirror()).unwrap(), first.index);
        // A new name for a file sent before cannot be carried (the tar is read once): it is
        // left out of the index rather than claimed.
        let second = sync(engine_tar(&["b", "c"]));
        assert_eq!(second.files, 0);
        assert!(!second.index.contains_key("c") && second.index.contains_key("b"));
        assert_eq!(check_mirror(&sides.root, "ws1").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn applying_twice_changes_nothing() {
        let sides = Sides::new();
        write(&sides.primary.join("d/a"), "a", 1_600_000_000);
        write(&sides.primary.join("b"), "b", 1_600_000_000);
        let (tar, _) = sides.delta();
        let summary = stage_delta(tar.as_slice(), &sides.staging()).unwrap();
        apply_staged(&sides.staging(), &summary, &sides.mirror()).unwrap();
        apply_staged(&sides.staging(), &summary, &sides.mirror()).unwrap();
        sides.assert_same();
    }

    #[test]
    fn applying_after_a_partial_apply_finishes_the_job() {
        let sides = Sides::new();
        let p = &sides.primary;
        write(&p.join("keep"), "keep", 1_600_000_000);
        write(&p.join("old/x"), "x", 1_600_000_000);
        write(&p.join("d/a"), "a", 1_600_000_000);
        sides.sync();

        fs::remove_dir_all(p.join("old")).unwrap();
        write(&p.join("d/a"), "a, changed", 1_600_000_100);
        write(&p.join("d/b"), "b", 1_600_000_000);
        write(&p.join("e/c"), "c", 1_600_000_000);
        let (tar, _) = sides.delta();
        let summary = stage_delta(tar.as_slice(), &sides.staging()).unwrap();
        // A kill midway: one file and one new dir moved, one deletion done, the rest not.
        fs::rename(sides.staging().join("d/a"), sides.mirror().join("d/a")).unwrap();
        fs::rename(sides.staging().join("e"), sides.mirror().join("e")).unwrap();
        fs::remove_dir_all(sides.mirror().join("old")).unwrap();
        apply_staged(&sides.staging(), &summary, &sides.mirror()).unwrap();
        sides.assert_same();
    }

    #[test]
    fn a_user_file_named_like_the_summary_is_kept() {
        let sides = Sides::new();
        write(&sides.primary.join(DELTA_ENTRY), "mine", 1_600_000_000);
        write(&sides.primary.join("z"), "z", 1_600_000_000);
        sides.sync();
        sides.assert_same();
    }

    #[test]
    fn a_cut_off_delta_is_refused() {
        let sides = Sides::new();
        write(&sides.primary.join("a"), &"a".repeat(10_000), 1_600_000_000);
        write(&sides.primary.join("b"), "b", 1_600_000_000);
        let (tar, _) = sides.delta();
        // Cut at the end of the first entry, in the middle of an entry, before the summary.
        let mut archive = tar::Archive::new(tar.as_slice());
        let first = archive.entries().unwrap().next().unwrap().unwrap();
        let boundary = first.raw_file_position() + first.size().div_ceil(512) * 512;
        let before_summary = tar.len() - 1024 - 512 - (idle_summary_len(&tar) as usize).div_ceil(512) * 512;
        for cut in [boundary as usize, before_summary, 0] {
            let staging = sides.root.join(format!(".staging-{cut}"));
            let e = stage_delta(&tar[..cut], &staging).unwrap_err().to_string();
            assert!(e.contains("incomplete delta"), "{cut}: {e}");
        }
        let e = stage_delta(&tar[..tar.len() / 2], &sides.root.join(".staging-half")).unwrap_err().to_string();
        assert!(e.contains("failed to write entire file"), "{e}");
        let without = raw_tar(&[("a", tar::EntryType::Regular, "a")]);
        let e = stage_delta(without.as_slice(), &sides.staging()).unwrap_err().to_string();
        assert!(e.contains("incomplete delta"), "{e}");
    }

    /// The size of a delta's last entry, its summary.
    fn idle_summary_len(tar: &[u8]) -> u64 {
        let mut archive = tar::Archive::new(tar);
        archive.entries().unwrap().map(|e| e.unwrap().size()).last().unwrap()
    }

    #[test]
    fn escaping_entries_are_refused() {
        let sides = Sides::new();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("../evil", raw_tar(&[("../evil", tar::EntryType::Regular, "x")])),
            ("a/../../evil", raw_tar(&[("a/../../evil", tar::EntryType::Regular, "x")])),
            ("/abs", raw_tar(&[("/abs", tar::EntryType::Regular, "x")])),
            (
                "s/x",
                raw_tar(&[
                    ("s", tar::EntryType::Symlink, sides.root.to_str().unwrap()),
                    ("s/x", tar::EntryType::Regular, "x"),
                ]),
            ),
        ];
        for (i, (entry, tar)) in cases.iter().enumerate() {
            let staging = sides.root.join(format!(".staging-{i}"));
            let e = stage_delta(tar.as_slice(), &staging).unwrap_err().to_string();
            assert!(e.contains(entry), "{entry}: {e}");
        }
        assert!(!sides.root.join("x").exists() && !sides.root.parent().unwrap().join("evil").exists());
    }

    #[test]
    fn staging_needs_an_empty_dir() {
        let sides = Sides::new();
        write(&sides.staging().join("left"), "over", 1);
        let (tar, _) = sides.delta();
        assert!(stage_delta(tar.as_slice(), &sides.staging()).unwrap_err().to_string().contains("not empty"));
    }

    #[test]
    fn check_mirror_names_missing_and_differing_files() {
        let sides = Sides::new();
        write(&sides.primary.join("a"), "a", 1_600_000_000);
        write(&sides.primary.join("b"), "b", 1_600_000_000);
        write(&sides.primary.join("c"), "c", 1_600_000_000);
        sides.sync();
        fs::remove_file(sides.mirror().join("a")).unwrap();
        fs::write(sides.mirror().join("b"), "bigger").unwrap();
        fs::remove_file(sides.mirror().join("c")).unwrap();
        fs::create_dir(sides.mirror().join("c")).unwrap();
        let problems = check_mirror(&sides.root, "ws1").unwrap();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("a is missing") && problems[1].contains("b has 6 bytes"), "{problems:?}");
        assert!(problems[2].contains("c is a directory"), "{problems:?}");
    }
}
