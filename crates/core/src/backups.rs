//! Backups as the master runs them: on `backup.schedule`, or when an administrator asks;
//! one at a time, each recorded with its result. The work itself (database copy, volumes,
//! archive) is the binary's [`BackupRunner`]; this module holds the rules around it.

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use croner::Cron;

use crate::audit_log::{Actor, NewEvent, Target};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::model::{BackupRun, MANAGE_SYSTEM, Principal};
use crate::store::Store;

/// What a finished backup made.
#[derive(Debug, Clone)]
pub struct BackupOutcome {
    pub file: String,
    pub size: u64,
}

/// Makes one backup of the instance.
#[async_trait]
pub trait BackupRunner: Send + Sync {
    async fn run(&self) -> std::result::Result<BackupOutcome, String>;
}

/// A five-field cron schedule (`minute hour day month weekday`, UTC), or `@daily` and the like.
#[derive(Debug, Clone)]
pub struct Schedule(Cron);

impl Schedule {
    pub fn parse(text: &str) -> std::result::Result<Schedule, String> {
        Cron::from_str(text.trim()).map(Schedule).map_err(|e| format!("'{text}' is not a cron schedule: {e}"))
    }

    /// The first time after `after` the schedule names.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.0.find_next_occurrence(&after, false).ok()
    }
}

pub struct Backups {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    runner: OnceLock<Arc<dyn BackupRunner>>,
    busy: Arc<AtomicBool>,
}

/// Frees the one-at-a-time slot when the backup ends, however it ends.
struct Busy(Arc<AtomicBool>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

impl Backups {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Backups { store, clock, runner: OnceLock::new(), busy: Arc::default() }
    }

    /// Set once by the binary, which knows the data dir and the engine.
    pub fn set_runner(&self, runner: Arc<dyn BackupRunner>) {
        let _ = self.runner.set(runner);
    }

    /// Runs recorded as running when the master started did not finish here.
    pub async fn mark_interrupted(&self) -> Result<()> {
        for mut run in self.store.backup_runs(100).await? {
            if run.result == "running" {
                run.result = "failed".into();
                run.message = Some(
                    "unfinished in this database: the master stopped during the backup, \
                     or the database was restored from a copy this backup took"
                        .into(),
                );
                self.store.record_backup_run(&run, None).await?;
            }
        }
        Ok(())
    }

    /// Starts a backup in the background; returns its record (result `running`). An
    /// administrator's request needs `manageSystem`; a second one while one runs is 409.
    pub async fn start(&self, caller: Option<&Principal>, trigger: &str) -> Result<BackupRun> {
        if let Some(caller) = caller {
            caller.require_system(MANAGE_SYSTEM)?;
        }
        let runner = self.runner.get().cloned().ok_or_else(|| Error::Unavailable("backups cannot run here".into()))?;
        if self.busy.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            return Err(Error::Conflict("a backup is already running; wait for it to finish".into()));
        }
        let busy = Busy(self.busy.clone());
        let run = BackupRun {
            id: format!("backup-{}", crate::ids::random_lower(12)),
            started: self.clock.now(),
            finished: None,
            trigger: trigger.to_string(),
            file: None,
            size: None,
            result: "running".into(),
            message: None,
        };
        let actor = caller.map_or_else(Actor::system, Actor::from);
        let target = Target::new("backup", &run.id, trigger);
        let started = NewEvent::new(run.started, actor.clone(), "backup.start", target.clone());
        self.store.record_backup_run(&run, Some(&started)).await?;
        let (store, clock, mut record) = (self.store.clone(), self.clock.clone(), run.clone());
        tokio::spawn(async move {
            let _busy = busy;
            let outcome = runner.run().await;
            record.finished = Some(clock.now());
            match outcome {
                Ok(done) => {
                    tracing::info!(file = %done.file, size = done.size, trigger = %record.trigger, "backup written");
                    record.result = "ok".into();
                    record.file = Some(done.file);
                    record.size = i64::try_from(done.size).ok();
                }
                Err(message) => {
                    tracing::error!(error = %message, trigger = %record.trigger, "backup failed");
                    record.result = "failed".into();
                    record.message = Some(message);
                }
            }
            let mut ended = NewEvent::new(clock.now(), actor, "backup.finish", target)
                .with("file", &record.file)
                .with("size", record.size)
                .with("message", &record.message);
            if record.result != "ok" {
                ended = ended.failed();
            }
            if let Err(e) = store.record_backup_run(&record, Some(&ended)).await {
                tracing::error!(error = %e, "cannot record the backup's result");
            }
        });
        Ok(run)
    }

    /// Whether a backup runs now.
    pub fn running(&self) -> bool {
        self.busy.load(Ordering::SeqCst)
    }

    /// The latest runs, newest first.
    pub async fn list(&self, caller: &Principal, limit: u32) -> Result<Vec<BackupRun>> {
        caller.require_system(MANAGE_SYSTEM)?;
        Ok(self.store.backup_runs(limit).await?)
    }
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
}
