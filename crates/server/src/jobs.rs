//! Background work of the master: writing last-used times of sessions and tokens, removing
//! expired ones, and following the engine's reports on workspaces.

use std::time::Duration;

use tokio::sync::watch;

use crate::AppState;

const FLUSH_EVERY: Duration = Duration::from_secs(30);
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// Runs until `stop` turns true, then writes what is pending once more.
pub fn spawn_background_jobs(state: AppState, mut stop: watch::Receiver<bool>) -> tokio::task::JoinHandle<()> {
    let watcher = tokio::spawn(state.drydock.workspaces.clone().watch_runtime());
    tokio::spawn(async move {
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        let mut purge = tokio::time::interval(PURGE_EVERY);
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
