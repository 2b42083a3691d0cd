//! The instance's own state: maintenance mode. While it is on, users may not create or
//! start workspaces (503 with the operators' message); holders of `manageSystem` are never
//! refused. The state is kept in the store (so it survives restarts) and in memory (it is
//! read on every create and start, and by every dashboard page).

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit_log::{NewEvent, Target};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::model::{MANAGE_SYSTEM, Principal};
use crate::store::Store;
use crate::workspace::service::Workspaces;

/// The `system_state` name the maintenance state is stored under.
pub const MAINTENANCE_KEY: &str = "maintenance";
/// The longest maintenance message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 500;
/// `stoppedBy` of a workspace stopped when maintenance began.
pub const STOPPED_BY_MAINTENANCE: &str = "maintenance";
/// Workspaces stopped at once when maintenance begins with `stopWorkspaces`.
const STOP_CONCURRENCY: usize = 4;

/// Maintenance mode, while it is on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Maintenance {
    /// What users are told: on the dashboard's banner and in every refusal.
    pub message: String,
    /// When it began.
    pub since: DateTime<Utc>,
    /// The name of the administrator who turned it on (or last changed its message).
    pub by: String,
}

/// Whether the instance is in maintenance: one switch shared by the services that obey it.
#[derive(Debug, Default)]
pub struct MaintenanceSwitch(RwLock<Option<Maintenance>>);

impl MaintenanceSwitch {
    pub fn get(&self) -> Option<Maintenance> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, state: Option<Maintenance>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = state;
    }

    /// Refuses a workspace create or start by a user while maintenance is on;
    /// `manageSystem` holders pass.
    pub fn check(&self, caller: &Principal) -> Result<()> {
        if caller.has_system(MANAGE_SYSTEM) {
            return Ok(());
        }
        match self.get() {
            Some(m) => Err(Error::Maintenance(refusal(&m))),
            None => Ok(()),
        }
    }
}

/// What a refused user is told.
pub fn refusal(m: &Maintenance) -> String {
    format!("drydock is in maintenance: {}", m.message)
}

/// Maintenance that just began (or whose message changed).
#[derive(Debug, Clone)]
pub struct MaintenanceBegun {
    pub maintenance: Maintenance,
    /// Running and starting workspaces being stopped in the background (`stopWorkspaces`).
    pub stopping: usize,
}

pub struct System {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    switch: Arc<MaintenanceSwitch>,
    workspaces: Arc<Workspaces>,
    /// One change at a time, so the store and the memory agree.
    changes: tokio::sync::Mutex<()>,
}

impl System {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        switch: Arc<MaintenanceSwitch>,
        workspaces: Arc<Workspaces>,
    ) -> Self {
        System { store, clock, switch, workspaces, changes: tokio::sync::Mutex::new(()) }
    }

    /// Reads the stored state; called once at start-up, before serving. A stored state that
    /// cannot be read keeps the instance in maintenance (an administrator can end it).
    pub async fn load(&self) -> Result<()> {
        let _change = self.changes.lock().await;
        let state = match self.store.system_value(MAINTENANCE_KEY).await? {
            None => None,
            Some(text) => match serde_json::from_str::<Maintenance>(&text) {
                Ok(m) => Some(m),
                Err(e) => {
                    tracing::error!(error = %e, "the stored maintenance state cannot be read; staying in maintenance");
                    Some(Maintenance {
                        message: "maintenance (its message could not be read)".into(),
                        since: self.clock.now(),
                        by: "drydock".into(),
                    })
                }
            },
        };
        if let Some(m) = &state {
            tracing::info!(message = %m.message, by = %m.by, since = %m.since, "the instance is in maintenance");
        }
        self.switch.set(state);
        Ok(())
    }

    /// The maintenance state, while it is on.
    pub fn maintenance(&self) -> Option<Maintenance> {
        self.switch.get()
    }

    /// `RUNNING` or `MAINTENANCE`, as `GET /api/system/state` says.
    pub fn status(&self) -> &'static str {
        if self.switch.get().is_some() { "MAINTENANCE" } else { "RUNNING" }
    }

    /// Turns maintenance on with a message (needs `manageSystem`); while on, a new message
    /// replaces the old one and `since` stays. With `stop_workspaces`, every running or
    /// starting workspace is stopped gracefully in the background.
    pub async fn begin_maintenance(
        &self,
        caller: &Principal,
        message: &str,
        stop_workspaces: bool,
    ) -> Result<MaintenanceBegun> {
        caller.require_system(MANAGE_SYSTEM)?;
        let message = validate_message(message)?;
        let _change = self.changes.lock().await;
        let since = self.switch.get().map_or_else(|| self.clock.now(), |m| m.since);
        let maintenance = Maintenance { message, since, by: caller.user.name.clone() };
        let text = serde_json::to_string(&maintenance).map_err(Error::internal)?;
        // Read before anything changes, so a failure leaves the instance as it was.
        let busy = if stop_workspaces { self.workspaces.busy_ids().await? } else { Vec::new() };
        let event = NewEvent::new(self.clock.now(), caller.into(), "maintenance.on", Target::system())
            .with("message", &maintenance.message)
            .with("stopWorkspaces", busy.len());
        self.store.set_system_value(MAINTENANCE_KEY, Some(&text), Some(&event)).await?;
        self.switch.set(Some(maintenance.clone()));
        tracing::info!(by = %maintenance.by, message = %maintenance.message, stop_workspaces, "maintenance on");
        let stopping = busy.len();
        if stop_workspaces {
            self.stop_in_background(busy, &maintenance);
        }
        Ok(MaintenanceBegun { maintenance, stopping })
    }

    /// Turns maintenance off (needs `manageSystem`); returns the state that ended, if it was on.
    pub async fn end_maintenance(&self, caller: &Principal) -> Result<Option<Maintenance>> {
        caller.require_system(MANAGE_SYSTEM)?;
        let _change = self.changes.lock().await;
        let event = NewEvent::new(self.clock.now(), caller.into(), "maintenance.off", Target::system());
        self.store.set_system_value(MAINTENANCE_KEY, None, Some(&event)).await?;
        let ended = self.switch.get();
        self.switch.set(None);
        tracing::info!(by = %caller.user.name, "maintenance off");
        Ok(ended)
    }

    /// Stops the workspaces gracefully as the system, a few at a time, recording why.
    fn stop_in_background(&self, ids: Vec<String>, maintenance: &Maintenance) {
        let count = ids.len();
        let reason = format!("stopped for maintenance by {}: {}", maintenance.by, maintenance.message);
        let workspaces = self.workspaces.clone();
        tokio::spawn(async move {
            futures::stream::iter(ids)
                .for_each_concurrent(STOP_CONCURRENCY, |id| {
                    let (workspaces, reason) = (&workspaces, &reason);
                    async move {
                        workspaces.stop_as_system(&id, STOPPED_BY_MAINTENANCE, reason).await;
                    }
                })
                .await;
            tracing::info!(workspaces = count, "workspaces stopped for maintenance");
        });
    }
}

/// The message users see: required, one line, at most [`MAX_MESSAGE_CHARS`].
fn validate_message(message: &str) -> Result<String> {
    let message = message.trim();
    if message.is_empty() {
        return Err(Error::invalid("message", "message is required: what users see while maintenance is on"));
    }
    if message.chars().count() > MAX_MESSAGE_CHARS {
        return Err(Error::invalid("message", format!("message is longer than {MAX_MESSAGE_CHARS} characters")));
    }
    if message.chars().any(char::is_control) {
        return Err(Error::invalid("message", "message must be one line of text, without control characters"));
    }
    Ok(message.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_checked() {
        assert_eq!(validate_message("  back at 14:00 ").unwrap(), "back at 14:00");
        for bad in ["", "   ", "two\nlines", "nul\0", &"x".repeat(MAX_MESSAGE_CHARS + 1)] {
            match validate_message(bad) {
                Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "message"),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
        assert!(validate_message(&"é".repeat(MAX_MESSAGE_CHARS)).is_ok());
    }
}
