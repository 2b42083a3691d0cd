//! Nodes: the Docker hosts workspaces run on, for administrators (`manageSystem`). On Swarm
//! they can be drained (their workspaces stopped, to start elsewhere), activated, removed,
//! and new hosts added with the join command; a single engine is one node.

use std::sync::Arc;

use serde::Serialize;

use crate::audit_log::{NewEvent, Target};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::model::{MANAGE_SYSTEM, Page, Principal};
use crate::runtime::{Availability, NodeInfo, Runtime};
use crate::store::Store;
use crate::workspace::WorkspaceFilter;
use crate::workspace::service::{NODE_ATTRIBUTE, Workspaces, runtime_error};

/// A node as `GET /api/nodes` shows it (memory in bytes).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Node {
    pub id: String,
    pub hostname: String,
    pub address: String,
    pub state: String,
    pub availability: Availability,
    pub manager: bool,
    pub ram_total: u64,
    pub ram_reserved: u64,
    /// Whether the master has this node's engine (terminal, exec, snapshots, moving files).
    pub engine: bool,
    /// Workspaces with a machine running on the node.
    pub workspaces: Vec<NodeWorkspace>,
    /// Workspaces whose `/projects` the node holds (Swarm).
    pub files_of: Vec<NodeWorkspace>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeWorkspace {
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub status: String,
}

pub struct Nodes {
    store: Arc<dyn Store>,
    runtime: Arc<dyn Runtime>,
    workspaces: Arc<Workspaces>,
    clock: Arc<dyn Clock>,
}

impl Nodes {
    pub fn new(store: Arc<dyn Store>, workspaces: Arc<Workspaces>, clock: Arc<dyn Clock>) -> Self {
        Nodes { store, runtime: workspaces.runtime().clone(), workspaces, clock }
    }

    fn require(caller: &Principal) -> Result<()> {
        if caller.has_system(MANAGE_SYSTEM) {
            Ok(())
        } else {
            Err(Error::Forbidden("managing nodes needs the manageSystem permission".into()))
        }
    }

    /// Every node, with its memory and its workspaces.
    pub async fn list(&self, caller: &Principal) -> Result<Vec<Node>> {
        Self::require(caller)?;
        let infos = self.runtime.nodes().await.map_err(runtime_error)?;
        let (all, _) = self
            .store
            .list_workspaces(&WorkspaceFilter::default(), Page { max_items: u32::MAX, skip_count: 0 })
            .await?;
        let brief = |id: &str| {
            all.iter().find(|w| w.id == id).map(|w| NodeWorkspace {
                id: w.id.clone(),
                namespace: w.namespace.clone(),
                name: w.config.name.clone(),
                status: w.status.as_str().to_string(),
            })
        };
        Ok(infos
            .into_iter()
            .map(|info| {
                let workspaces = info.workspaces.iter().filter_map(|id| brief(id)).collect();
                let files_of = all
                    .iter()
                    .filter(|w| w.attributes.get(NODE_ATTRIBUTE) == Some(&info.id))
                    .filter_map(|w| brief(&w.id))
                    .collect();
                node(info, workspaces, files_of)
            })
            .collect())
    }

    async fn find(&self, caller: &Principal, name: &str) -> Result<Node> {
        let nodes = self.list(caller).await?;
        let matching: Vec<Node> = nodes
            .into_iter()
            .filter(|n| n.id == name || n.hostname == name || (name.len() >= 4 && n.id.starts_with(name)))
            .collect();
        match <[Node; 1]>::try_from(matching) {
            Ok([one]) => Ok(one),
            Err(none) if none.is_empty() => Err(Error::NotFound(format!("no node '{name}'"))),
            Err(many) => Err(Error::Conflict(format!(
                "'{name}' names {} nodes: use the node's id ({})",
                many.len(),
                many.iter().map(|n| n.id.as_str()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    fn event(&self, caller: &Principal, action: &str, node: &Node) -> NewEvent {
        NewEvent::new(self.clock.now(), caller.into(), action, Target::new("node", &node.id, &node.hostname))
    }

    /// Drains a node: it takes no new machines, its running workspaces are stopped
    /// gracefully (their next start moves their files to a node with room), then Swarm
    /// clears it. Returns the node and how many workspaces were stopped.
    pub async fn drain(&self, caller: &Principal, name: &str) -> Result<(Node, usize)> {
        let found = self.find(caller, name).await?;
        // Paused first: no new start lands on it while its workspaces stop.
        self.runtime.set_availability(&found.id, Availability::Pause).await.map_err(runtime_error)?;
        let reason = format!("node {} is drained", found.hostname);
        let mut stopped = 0;
        for workspace in &found.workspaces {
            if self.workspaces.stop_as_system(&workspace.id, "drain", &reason).await {
                stopped += 1;
            }
        }
        self.runtime.set_availability(&found.id, Availability::Drain).await.map_err(runtime_error)?;
        let event = self.event(caller, "node.drain", &found).with("stoppedWorkspaces", stopped);
        self.store.append_event(&event).await?;
        Ok((self.find(caller, &found.id).await?, stopped))
    }

    /// Lets a node take machines again.
    pub async fn activate(&self, caller: &Principal, name: &str) -> Result<Node> {
        let found = self.find(caller, name).await?;
        self.runtime.set_availability(&found.id, Availability::Active).await.map_err(runtime_error)?;
        self.store.append_event(&self.event(caller, "node.activate", &found)).await?;
        self.find(caller, &found.id).await
    }

    /// Takes a drained node out of the swarm; refused while it holds any workspace's files.
    pub async fn remove(&self, caller: &Principal, name: &str) -> Result<Node> {
        let found = self.find(caller, name).await?;
        if !found.files_of.is_empty() {
            let names: Vec<String> = found.files_of.iter().map(|w| format!("{}/{}", w.namespace, w.name)).collect();
            return Err(Error::Conflict(format!(
                "node {} still holds the files of {} workspace(s) ({}): drain it and start them elsewhere first",
                found.hostname,
                names.len(),
                names.join(", ")
            )));
        }
        self.runtime.remove_node(&found.id).await.map_err(runtime_error)?;
        self.store.append_event(&self.event(caller, "node.remove", &found)).await?;
        Ok(found)
    }

    /// What to run on a new host to add it as a node.
    pub async fn join_command(&self, caller: &Principal) -> Result<String> {
        Self::require(caller)?;
        self.runtime.join_command().await.map_err(runtime_error)
    }
}

fn node(info: NodeInfo, workspaces: Vec<NodeWorkspace>, files_of: Vec<NodeWorkspace>) -> Node {
    Node {
        id: info.id,
        hostname: info.hostname,
        address: info.address,
        state: info.state,
        availability: info.availability,
        manager: info.manager,
        ram_total: info.ram_total,
        ram_reserved: info.ram_reserved,
        engine: info.engine,
        workspaces,
        files_of,
    }
}
