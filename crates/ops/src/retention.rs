//! `backup.keep`: which archives in the backup dir stay.

use std::fs;
use std::path::{Path, PathBuf};

use crate::backup::is_archive_name;

/// The archives in `dir`, oldest first (their names sort by time).
pub fn archives(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .map(|list| {
            list.flatten().filter(|e| is_archive_name(&e.file_name().to_string_lossy())).map(|e| e.path()).collect()
        })
        .unwrap_or_default();
    found.sort_by_key(|p| fs::metadata(p).and_then(|m| m.modified()).ok());
    found
}

/// Removes the oldest archives in `dir` beyond `keep` (0 keeps all); returns those removed.
pub fn prune(dir: &Path, keep: u32) -> Vec<PathBuf> {
    if keep == 0 {
        return Vec::new();
    }
    let all = archives(dir);
    let excess = all.len().saturating_sub(keep as usize);
    let mut removed = Vec::new();
    for path in all.into_iter().take(excess) {
        match fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            Err(e) => tracing::warn!(file = %path.display(), error = %e, "cannot remove an old backup"),
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prune_keeps_the_newest() {
        let dir = tempfile::tempdir().unwrap();
        for (i, name) in [
            "drydock-backup-0.2.0-20261101T000000Z.tar.zst",
            "drydock-backup-0.2.0-20261102T000000Z.tar.zst",
            "drydock-backup-0.2.0-20261103T000000Z.tar.zst",
        ]
        .iter()
        .enumerate()
        {
            let path = dir.path().join(name);
            fs::write(&path, b"x").unwrap();
            let time = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + i as u64);
            fs::File::options().write(true).open(&path).unwrap().set_modified(time).unwrap();
        }
        fs::write(dir.path().join("notes.txt"), b"mine").unwrap();
        let removed = prune(dir.path(), 2);
        assert_eq!(removed.len(), 1);
        assert!(removed[0].ends_with("drydock-backup-0.2.0-20261101T000000Z.tar.zst"));
        assert!(dir.path().join("notes.txt").exists());
        assert_eq!(archives(dir.path()).len(), 2);
    }
}
