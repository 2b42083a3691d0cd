//! `backup.schedule` (cron syntax, UTC) and `backup.keep`: when the server backs up, and
//! which archives it keeps.

use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use croner::Cron;

use crate::backup::is_archive_name;

#[derive(Debug, Clone)]
pub struct Schedule(Cron);

impl Schedule {
    /// A five-field cron expression (`minute hour day month weekday`), or `@daily` and the like.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        Cron::from_str(text.trim()).map(Schedule).map_err(|e| format!("'{text}' is not a cron schedule: {e}"))
    }

    /// The first time after `after` the schedule names.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.0.find_next_occurrence(&after, false).ok()
    }
}

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
    fn schedules_parse_and_step() {
        let nightly = Schedule::parse("0 3 * * *").unwrap();
        let after = DateTime::parse_from_rfc3339("2026-11-30T10:00:00Z").unwrap().with_timezone(&Utc);
        assert_eq!(nightly.next_after(after).unwrap().to_rfc3339(), "2026-12-01T03:00:00+00:00");
        assert!(Schedule::parse("every day").is_err());
    }

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
