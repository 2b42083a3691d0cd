//! When each running workspace was last used, and how: terminal input and output, SSH
//! sessions (the terminal WebSocket), exec, proxy traffic to its servers, and its start.
//! Reading its status or its events is not activity. Kept in memory: it changes with every
//! keystroke, and a master that restarts counts from its restart (a later stop, never an
//! earlier one).

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};

pub const TERMINAL: &str = "terminal";
pub const EXEC: &str = "exec";
pub const PROXY: &str = "proxy";
pub const START: &str = "start";
/// Found running when the master started.
pub const RESTART: &str = "master restart";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activity {
    pub owner_id: String,
    pub at: DateTime<Utc>,
    pub kind: &'static str,
    /// The idle warning for this quiet spell was given.
    pub warned: bool,
}

/// The running workspaces' last activity, by workspace id.
#[derive(Default)]
pub struct ActivityLog {
    entries: Mutex<HashMap<String, Activity>>,
}

impl ActivityLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Activity>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A workspace starts being watched (its start, or found running at start-up).
    pub fn begin(&self, workspace_id: &str, owner_id: &str, at: DateTime<Utc>, kind: &'static str) {
        let activity = Activity { owner_id: owner_id.to_string(), at, kind, warned: false };
        self.lock().insert(workspace_id.to_string(), activity);
    }

    /// Records activity on a watched workspace; others (not running) are ignored.
    pub fn touch(&self, workspace_id: &str, at: DateTime<Utc>, kind: &'static str) {
        if let Some(a) = self.lock().get_mut(workspace_id) {
            a.at = at;
            a.kind = kind;
            a.warned = false;
        }
    }

    /// The workspace stopped: nothing more to watch.
    pub fn end(&self, workspace_id: &str) {
        self.lock().remove(workspace_id);
    }

    pub fn get(&self, workspace_id: &str) -> Option<Activity> {
        self.lock().get(workspace_id).cloned()
    }

    /// Every watched workspace, for the idle check.
    pub fn all(&self) -> Vec<(String, Activity)> {
        self.lock().iter().map(|(id, a)| (id.clone(), a.clone())).collect()
    }

    /// Marks the warning given, unless activity came in the meantime (then `false`).
    pub fn mark_warned(&self, workspace_id: &str, seen: DateTime<Utc>) -> bool {
        match self.lock().get_mut(workspace_id) {
            Some(a) if a.at == seen && !a.warned => {
                a.warned = true;
                true
            }
            _ => false,
        }
    }
}
