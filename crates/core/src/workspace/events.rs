//! Workspace events for whoever watches (the SSE stream of the API, the dashboard): a
//! start's progress, status changes and errors. Watching is not activity on a workspace.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::broadcast;

use super::WorkspaceStatus;

/// How many events a slow watcher may fall behind before it misses some.
const BACKLOG: usize = 256;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceEvent {
    pub workspace_id: String,
    /// `progress`, `status` or `error`.
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<WorkspaceStatus>,
    pub message: String,
    pub time: String,
}

pub struct EventBus {
    channels: Mutex<HashMap<String, broadcast::Sender<WorkspaceEvent>>>,
    /// Every workspace's status changes and errors, for lists that stay current (the
    /// dashboard's table); progress lines stay on the workspace's own channel.
    changes: broadcast::Sender<WorkspaceEvent>,
}

impl Default for EventBus {
    fn default() -> Self {
        EventBus { channels: Mutex::default(), changes: broadcast::channel(BACKLOG).0 }
    }
}

impl EventBus {
    pub fn publish(&self, event: WorkspaceEvent) {
        if event.kind != "progress" {
            // An error only means nobody watches.
            let _ = self.changes.send(event.clone());
        }
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = channels.get(&event.workspace_id)
            && sender.send(event.clone()).is_err()
        {
            // Nobody watches any more.
            channels.remove(&event.workspace_id);
        }
    }

    /// Status changes and errors of every workspace; the watcher filters what it may see.
    pub fn subscribe_changes(&self) -> broadcast::Receiver<WorkspaceEvent> {
        self.changes.subscribe()
    }

    pub fn subscribe(&self, workspace_id: &str) -> broadcast::Receiver<WorkspaceEvent> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels.entry(workspace_id.to_string()).or_insert_with(|| broadcast::channel(BACKLOG).0).subscribe()
    }
}
