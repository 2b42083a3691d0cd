//! Background work of the master: writing last-used times of sessions and tokens, removing
//! expired ones and audit events past their retention, following the engine's reports on
//! workspaces, stopping idle ones, the scheduled backups, and the license clock.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::AppState;

const FLUSH_EVERY: Duration = Duration::from_secs(30);
const PURGE_EVERY: Duration = Duration::from_secs(3600);
/// Idle workspaces are looked for this often (in memory; the idle timeout may be seconds in
/// tests, minutes in use).
const IDLE_CHECK_EVERY: Duration = Duration::from_secs(1);
/// The license clock: a paid license past its grace period gives way to Fair Source within
/// this long (it is an in-memory comparison until then).
const LICENSE_CHECK_EVERY: Duration = Duration::from_secs(10);

/// Runs until `stop` turns true, then writes what is pending once more.
pub fn spawn_background_jobs(state: AppState, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    let watcher = tokio::spawn(state.drydock.workspaces.clone().watch_runtime());
    tokio::spawn(async move {
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        let mut purge = tokio::time::interval(PURGE_EVERY);
        let mut idle = tokio::time::interval(IDLE_CHECK_EVERY);
        let mut license = tokio::time::interval(LICENSE_CHECK_EVERY);
        let schedule = state.settings.backup_schedule.clone();
        let mut next_backup = schedule.as_ref().and_then(|s| s.next_after(Utc::now()));
        loop {
            tokio::select! {
                _ = flush.tick() => {
                    if let Err(e) = state.drydock.auth.flush_last_used().await {
                        tracing::warn!(error = %e, "cannot record when sessions and tokens were last used");
                    }
                }
                _ = purge.tick() => {
                    match state.drydock.auth.purge_expired().await {
                        Ok(0) => {}
                        Ok(n) => tracing::info!(removed = n, "removed expired sessions and tokens"),
                        Err(e) => tracing::warn!(error = %e, "cannot remove expired sessions and tokens"),
                    }
                    if let Err(e) = state.drydock.audit_log.prune_expired().await {
                        tracing::warn!(error = %e, "cannot prune the audit log to its retention");
                    }
                }
                _ = idle.tick() => state.drydock.workspaces.check_idle().await,
                _ = license.tick() => {
                    if let Err(e) = state.drydock.licenses.tick().await {
                        tracing::warn!(error = %e, "cannot record the expiry of the paid license");
                    }
                }
                _ = until(next_backup) => {
                    if let Err(e) = state.drydock.backups.start(None, "schedule").await {
                        tracing::warn!(error = %e, "the scheduled backup did not start");
                    }
                    next_backup = schedule.as_ref().and_then(|s| s.next_after(Utc::now()));
                }
                _ = stop.changed() => break,
            }
        }
        watcher.abort();
        if let Err(e) = state.drydock.auth.flush_last_used().await {
            tracing::warn!(error = %e, "cannot record when sessions and tokens were last used");
        }
    })
}

/// Waits until `time` (forever when there is none).
async fn until(time: Option<DateTime<Utc>>) {
    match time {
        Some(time) => tokio::time::sleep((time - Utc::now()).to_std().unwrap_or_default()).await,
        None => std::future::pending().await,
    }
}
