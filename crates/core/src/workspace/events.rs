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

#[derive(Default)]
pub struct EventBus {
    channels: Mutex<HashMap<String, broadcast::Sender<WorkspaceEvent>>>,
}

impl EventBus {
    pub fn publish(&self, event: WorkspaceEvent) {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = channels.get(&event.workspace_id)
            && sender.send(event.clone()).is_err()
        {
            // Nobody watches any more.
            channels.remove(&event.workspace_id);
        }
    }

    pub fn subscribe(&self, workspace_id: &str) -> broadcast::Receiver<WorkspaceEvent> {
        let mut channels = self.channels.lock().unwrap_or_else(|e| e.into_inner());
        channels.entry(workspace_id.to_string()).or_insert_with(|| broadcast::channel(BACKLOG).0).subscribe()
    }
}
