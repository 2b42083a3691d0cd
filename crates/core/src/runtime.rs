//! The contract between drydock's rules and whatever runs workspaces: the Docker Engine of
//! the master's host and Docker Swarm (crate `docker`). Core never talks to an engine
//! itself; it hands a [`RuntimeSpec`] to a [`Runtime`] and reads back [`RuntimeInfo`].
//!
//! Every engine object a runtime makes belongs to one instance and one workspace and is
//! named and labelled so (see DESIGN.md): containers `drydock-<instance>-<ws>-<machine>`,
//! network `drydock-<instance>-<ws>`, volume `drydock-<instance>-<ws>-projects`, each with
//! the labels `drydock.instance`, `drydock.workspace` and (containers) `drydock.machine`.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde::Serialize;
use tokio::io::AsyncWrite;

pub const LABEL_INSTANCE: &str = "drydock.instance";
pub const LABEL_WORKSPACE: &str = "drydock.workspace";
pub const LABEL_MACHINE: &str = "drydock.machine";
/// Where every machine of a workspace finds the workspace's persistent files.
pub const PROJECTS_PATH: &str = "/projects";

/// One machine to run, resolved from the workspace's config.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineSpec {
    pub name: String,
    pub image: String,
    /// Enforced by the engine.
    pub memory_bytes: u64,
    pub env: BTreeMap<String, String>,
    /// Replaces the image's command when set.
    pub command: Option<Vec<String>>,
    /// Replaces the image's entrypoint when set.
    pub entrypoint: Option<Vec<String>>,
    /// Container ports the machine serves (its servers and compose `expose`).
    pub ports: Vec<u16>,
    /// Machines that must be started before this one.
    pub depends_on: Vec<String>,
    /// The dev machine: where the terminal and exec go by default.
    pub dev: bool,
    /// Whether the machine mounts the workspace's `/projects` (all do unless the config says
    /// `"projects": "false"`). On Swarm, the machines that do run on the node of the volume;
    /// the others go wherever Swarm finds room.
    pub projects: bool,
}

/// What to run for one workspace: its machines, in any order (the runtime follows `depends_on`).
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeSpec {
    pub workspace_id: String,
    pub machines: Vec<MachineSpec>,
    /// Start from these images (machine name → image) instead: a snapshot restore.
    pub images: BTreeMap<String, String>,
    /// The node that holds the workspace's `/projects` (Swarm), as the last start recorded it;
    /// `None` before the first start, and always on a single engine.
    pub node: Option<String>,
}

impl RuntimeSpec {
    /// The memory the machines that mount `/projects` ask for together: what must fit on
    /// the workspace's node.
    pub fn projects_memory(&self) -> u64 {
        self.machines.iter().filter(|m| m.projects).map(|m| m.memory_bytes).sum()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MachineStatus {
    Running,
    /// The container exists but is not running (it exited or was killed).
    Stopped,
}

/// A machine as the engine has it now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MachineRuntime {
    pub name: String,
    pub container_id: String,
    pub status: MachineStatus,
    /// The node (engine host name) the machine runs on.
    pub node: String,
    /// The node's Swarm id (host names need not be unique); `None` on a single engine.
    pub node_id: Option<String>,
    /// The machine's address on its workspace network.
    pub address: Option<String>,
    /// Where the master reaches a container port when not at `address` (Swarm publishes
    /// ports on the machine's node): port → `host:port`.
    pub published: BTreeMap<u16, String>,
    /// Why it is not running, when the engine says (exit code, OOM).
    pub exit_reason: Option<String>,
}

impl MachineRuntime {
    /// Where the master reaches the machine's container `port`: `host:port`.
    pub fn reach(&self, port: u16) -> Option<String> {
        match self.published.get(&port) {
            Some(published) => Some(published.clone()),
            None => self.address.as_ref().map(|a| format!("{a}:{port}")),
        }
    }
}

/// A workspace's runtime as the engine has it now.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeInfo {
    pub workspace_id: String,
    pub machines: Vec<MachineRuntime>,
    /// The node that holds the workspace's `/projects` (Swarm; `None` on a single engine).
    pub node: Option<String>,
}

/// Whether Swarm may place new machines on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Availability {
    Active,
    /// Runs what it runs; takes nothing new.
    Pause,
    /// Takes nothing and runs nothing.
    Drain,
}

impl Availability {
    pub fn as_str(self) -> &'static str {
        match self {
            Availability::Active => "active",
            Availability::Pause => "pause",
            Availability::Drain => "drain",
        }
    }
}

/// A node as the runtime sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInfo {
    pub id: String,
    pub hostname: String,
    /// The address the node is reached at (its Swarm address; the engine's host otherwise).
    pub address: String,
    /// `ready`, `down`, `unknown` or `disconnected`, as Swarm says.
    pub state: String,
    pub availability: Availability,
    pub manager: bool,
    /// Memory in bytes.
    pub ram_total: u64,
    /// Memory the machines on the node reserve, in bytes.
    pub ram_reserved: u64,
    /// Whether the master has this node's engine (terminal, exec, snapshots, moving files).
    pub engine: bool,
    /// Workspaces with a machine on the node.
    pub workspaces: Vec<String>,
}

/// Something the engine reports about a workspace while it runs.
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeEvent {
    /// A machine stopped without drydock asking: it exited, was killed or ran out of memory.
    MachineDied { workspace_id: String, machine: String, reason: String, oom: bool },
}

/// Output of a command run without a TTY, exactly as the command wrote it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExecOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// An interactive shell in a machine (a TTY): bytes out, bytes in, and resizing.
pub struct Terminal {
    pub output: BoxStream<'static, Result<Vec<u8>, RuntimeError>>,
    pub input: Pin<Box<dyn AsyncWrite + Send>>,
    pub resize: ResizeFn,
    /// The shell's exit code; await it once `output` has ended (`None`: unknown).
    pub exit_code: BoxFuture<'static, Option<i64>>,
}

/// Resizes a terminal's TTY to (columns, rows).
pub type ResizeFn = Box<dyn Fn(u16, u16) -> BoxFuture<'static, Result<(), RuntimeError>> + Send + Sync>;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RuntimeError {
    /// The image is not on the node and could not be pulled.
    #[error("image {image} is not available: {reason}")]
    ImageUnavailable { image: String, reason: String },
    /// No node has room for the workspace (Swarm).
    #[error("no node has room for this workspace: {0}")]
    NoRoom(String),
    /// Not possible now or here (a single engine has no nodes to drain, a manager node is
    /// not removed, a node's engine is not configured): the text says why.
    #[error("{0}")]
    Refused(String),
    /// No such node.
    #[error("no node '{0}'")]
    UnknownNode(String),
    /// The workspace, or the named machine of it, is not running.
    #[error("{0} is not running")]
    NotRunning(String),
    #[error("the command did not finish within {0:?}")]
    Timeout(Duration),
    /// The engine refused or failed; the text is the engine's reason.
    #[error("{0}")]
    Engine(String),
}

/// Runs workspaces. Implementations: one Docker Engine, and Docker Swarm (crate `docker`).
#[async_trait]
pub trait Runtime: Send + Sync {
    /// `docker` or `swarm`.
    fn kind(&self) -> &'static str;

    /// Creates the workspace's network and `/projects` volume when missing, then creates and
    /// starts every machine, dependencies first, reporting progress lines. A failed start
    /// removes the containers it made and leaves no network or volume it created behind
    /// (a volume that already held files is kept).
    async fn start(
        &self,
        spec: &RuntimeSpec,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<RuntimeInfo, RuntimeError>;

    /// Stops and removes the workspace's containers; its network and volume stay.
    async fn stop(&self, workspace_id: &str) -> Result<(), RuntimeError>;

    /// Removes everything of the workspace: containers, network, `/projects` volume and snapshots.
    async fn remove(&self, workspace_id: &str) -> Result<(), RuntimeError>;

    /// The workspace's containers as the engine has them (None when it has none).
    async fn inspect(&self, workspace_id: &str) -> Result<Option<RuntimeInfo>, RuntimeError>;

    /// Every workspace of this instance that has containers on the engine.
    async fn list(&self) -> Result<Vec<RuntimeInfo>, RuntimeError>;

    /// Runs a command without a TTY in a running machine.
    async fn exec(
        &self,
        workspace_id: &str,
        machine: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError>;

    /// Opens an interactive shell with a TTY in a running machine.
    async fn terminal(&self, workspace_id: &str, machine: &str, cols: u16, rows: u16)
    -> Result<Terminal, RuntimeError>;

    /// Commits every running machine to a local image; returns machine name → image.
    async fn snapshot(&self, workspace_id: &str) -> Result<BTreeMap<String, String>, RuntimeError>;

    /// The engine's reports about this instance's machines, from now on.
    async fn events(&self) -> Result<BoxStream<'static, RuntimeEvent>, RuntimeError>;

    /// The memory workspaces run in, in bytes (one engine's, or a swarm's together).
    async fn memory_total(&self) -> Result<u64, RuntimeError>;

    /// Whether some node has room for the workspace now (`NoRoom` says why not). A single
    /// engine leaves that to the host guard.
    async fn check_room(&self, _spec: &RuntimeSpec) -> Result<(), RuntimeError> {
        Ok(())
    }

    /// The nodes workspaces run on.
    async fn nodes(&self) -> Result<Vec<NodeInfo>, RuntimeError>;

    /// Sets whether a node (id or unique host name) takes new machines.
    async fn set_availability(&self, _node: &str, _availability: Availability) -> Result<NodeInfo, RuntimeError> {
        Err(RuntimeError::Refused(SWARM_ONLY.to_string()))
    }

    /// Takes a node out of the swarm.
    async fn remove_node(&self, _node: &str) -> Result<(), RuntimeError> {
        Err(RuntimeError::Refused(SWARM_ONLY.to_string()))
    }

    /// What to run on a new host to add it as a node.
    async fn join_command(&self) -> Result<String, RuntimeError> {
        Err(RuntimeError::Refused(SWARM_ONLY.to_string()))
    }
}

/// Why node operations fail on a single engine.
pub const SWARM_ONLY: &str =
    "nodes are managed only with runtime.kind = \"swarm\"; this instance runs one Docker engine";

/// The runtime when no engine could be reached at start-up: every call says why.
pub struct Unavailable {
    pub reason: String,
}

#[async_trait]
impl Runtime for Unavailable {
    fn kind(&self) -> &'static str {
        "unavailable"
    }
    async fn start(&self, _: &RuntimeSpec, _: &(dyn Fn(String) + Send + Sync)) -> Result<RuntimeInfo, RuntimeError> {
        Err(RuntimeError::Engine(self.reason.clone()))
    }
    async fn stop(&self, _: &str) -> Result<(), RuntimeError> {
        Err(RuntimeError::Engine(self.reason.clone()))
    }
    async fn remove(&self, _: &str) -> Result<(), RuntimeError> {
        Err(RuntimeError::Engine(self.reason.clone()))
    }
    async fn inspect(&self, _: &str) -> Result<Option<RuntimeInfo>, RuntimeError> {
        Err(RuntimeError::Engine(self.reason.clone()))
    }
    async fn list(&self) -> Result<Vec<RuntimeInfo>, RuntimeError> {
        Err(RuntimeError::Engine(self.reason.clone()))
    }
    async fn exec(&self, _: &str, _: &str, _: &[String], _: Duration) -> Result<ExecOutput, RuntimeError> {
        Err(RuntimeError::Engine(self.reason.clone()))
    }
    async fn terminal(&self, _: &str, _: &str, _: u16, _: u16) -> Result<Terminal, RuntimeError> {
        Err(RuntimeError::Engine(self.reason.clone()))
    }
    async fn snapshot(&self, _: &str) -> Result<BTreeMap<String, String>, RuntimeError> {
        Err(RuntimeError::Engine(self.reason.clone()))
    }
    async fn memory_total(&self) -> Result<u64, RuntimeError> {
        Err(RuntimeError::Engine(self.reason.clone()))
    }
    async fn nodes(&self) -> Result<Vec<NodeInfo>, RuntimeError> {
        Err(RuntimeError::Engine(self.reason.clone()))
    }
    async fn events(&self) -> Result<BoxStream<'static, RuntimeEvent>, RuntimeError> {
        Err(RuntimeError::Engine(self.reason.clone()))
    }
}
