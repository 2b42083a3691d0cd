//! Workspaces: Codenvy's config shapes, compose recipes, and the model the API returns.

pub mod activity;
pub mod compose;
pub mod config;
pub mod events;
pub mod service;
pub mod spec;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use config::WorkspaceConfig;

pub const DOMAIN_WORKSPACE: &str = "workspace";
/// Codenvy's workspace actions, in the order they are printed.
pub const WORKSPACE_ACTIONS: &[&str] = &["read", "use", "run", "configure", "setPermissions", "delete"];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkspaceStatus {
    Stopped,
    Starting,
    Running,
    Stopping,
    Error,
}

impl WorkspaceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            WorkspaceStatus::Stopped => "STOPPED",
            WorkspaceStatus::Starting => "STARTING",
            WorkspaceStatus::Running => "RUNNING",
            WorkspaceStatus::Stopping => "STOPPING",
            WorkspaceStatus::Error => "ERROR",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::Stopped, Self::Starting, Self::Running, Self::Stopping, Self::Error]
            .into_iter()
            .find(|w| w.as_str() == s)
    }
}

/// A server of a running machine, reached through the master's proxy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerUrl {
    pub url: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineState {
    pub status: String,
    pub node: String,
    /// The Swarm node's id (host names need not be unique).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    #[serde(default)]
    pub servers: BTreeMap<String, ServerUrl>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceRuntime {
    pub active_env: String,
    pub machines: BTreeMap<String, MachineState>,
}

/// A workspace as the API returns it (Codenvy's shape).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Workspace {
    pub id: String,
    /// The owner's user name.
    pub namespace: String,
    #[serde(skip)]
    pub owner_id: String,
    pub config: WorkspaceConfig,
    pub status: WorkspaceStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runtime: Option<WorkspaceRuntime>,
    /// `created`, `updated` (RFC 3339), `errorMessage`, `stoppedBy`, …
    pub attributes: BTreeMap<String, String>,
}

/// A ready workspace template an administrator offers (Codenvy's stack shape; fields drydock
/// does not use are kept).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stack {
    #[serde(default)]
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The user id of the administrator who made it.
    #[serde(default)]
    pub creator: String,
    #[serde(default)]
    pub created: String,
    pub workspace_config: WorkspaceConfig,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Which workspaces a list shows.
#[derive(Debug, Clone, Default)]
pub struct WorkspaceFilter {
    /// Only those this user owns or holds `read` on; `None`: all (administrators).
    pub visible_to: Option<String>,
    /// Only those this user owns.
    pub owner: Option<String>,
    pub status: Option<WorkspaceStatus>,
}
