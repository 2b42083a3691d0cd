//! [`SwarmRuntime`]: drydock's [`Runtime`] on Docker Swarm mode. The master's engine is a
//! Swarm manager; each machine of a workspace is a one-replica service that never restarts by
//! itself, on an attachable overlay network of its workspace.
//!
//! - **Placement**: the machines that mount `/projects` run on the workspace's node, the one
//!   holding its volume: drydock picks it at the first start (the ready, active node with the
//!   most unreserved memory) and constrains those services to it (`node.id==…`) from then on;
//!   the others go wherever Swarm finds room. A start whose node was drained (or paused, or
//!   is down) picks a node with room, copies the volume there through both nodes' engines,
//!   and only then constrains the services to it.
//! - **Memory**: each service reserves and is limited to its machine's memory, so Swarm's
//!   scheduler never overcommits a node; a task it cannot place is `NoRoom`.
//! - **Ports**: every server port is published in host mode on the machine's node (an
//!   engine-chosen port), which the master's proxy reaches at the node's address.
//! - **Node engines**: what Swarm does not proxy (exec, terminal, snapshots, moving files)
//!   goes to the node's own engine, from `runtime.nodes`; the manager's node uses the local
//!   engine unless listed. A node without one still runs workspaces, and what needs its
//!   engine says so.
//! - **Images**: with `runtime.registry`, images are tagged and pushed there from the
//!   manager's engine, and services name the registry's copy, so any node can pull it.
//!   Without one, every node must have the images it runs; a start on a node lacking one
//!   fails naming the node and the image.
//! - **Events**: Swarm has no event stream of task deaths across nodes: tasks are polled, and
//!   a task of a live service that stopped running is a death.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bollard::Docker;
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigPublishModeEnum, Limit, Mount, MountType, MountVolumeOptions,
    NetworkAttachmentConfig, NetworkCreateRequest, Node, NodeSpecAvailabilityEnum, NodeState, ResourceObject,
    ServiceSpec, ServiceSpecMode, ServiceSpecModeReplicated, Task, TaskSpec, TaskSpecContainerSpec, TaskSpecPlacement,
    TaskSpecResources, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum, TaskState,
};
use bollard::query_parameters::{
    DeleteNodeOptionsBuilder, ListNodesOptions, ListServicesOptionsBuilder, ListTasksOptionsBuilder,
    PushImageOptionsBuilder, TagImageOptionsBuilder, UpdateNodeOptionsBuilder,
};
use drydock_core::config::RuntimeConfig;
use drydock_core::runtime::{
    Availability, ExecOutput, LABEL_MACHINE, LABEL_WORKSPACE, MachineRuntime, MachineStatus, NodeInfo, PROJECTS_PATH,
    Runtime, RuntimeError, RuntimeEvent, RuntimeInfo, RuntimeSpec, Terminal,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};

use crate::error::{engine, gone_or_going, not_found, reason};
use crate::events::exit_reason;
use crate::names::{check_name_part, check_spec, container_name, label_filters, labels, network_name, volume_name};
use crate::runtime::{DockerRuntime, DockerSettings, Endpoint, ImageCommand, start_order};

/// How drydock runs workspaces on a swarm.
#[derive(Debug, Clone, Default)]
pub struct SwarmSettings {
    pub docker: DockerSettings,
    /// Node (id or host name) → its engine.
    pub engines: BTreeMap<String, Endpoint>,
    /// `host:port` of the registry nodes pull from.
    pub registry: Option<String>,
}

impl SwarmSettings {
    /// The Swarm settings of `runtime.*` (checked when the config was loaded); relative
    /// paths are relative to the data dir.
    pub fn from_config(config: &RuntimeConfig, data_root: &Path, docker: DockerSettings) -> SwarmSettings {
        let certs = Some(config.node_certs.trim()).filter(|c| !c.is_empty()).map(|c| data_root.join(c));
        let engines = config
            .node_endpoints()
            .unwrap_or_default()
            .into_iter()
            .map(|(node, url)| {
                let certs = url.starts_with("tcp://").then(|| certs.clone()).flatten();
                (node, Endpoint { url, certs })
            })
            .collect();
        let registry = Some(config.registry.trim().to_string()).filter(|r| !r.is_empty());
        SwarmSettings { docker, engines, registry }
    }

    /// The engines of every node `runtime.nodes` lists, connected; one that does not answer
    /// is an error naming it.
    pub async fn node_engines(&self, instance_id: &str) -> Result<Vec<DockerRuntime>, RuntimeError> {
        let mut engines = Vec::with_capacity(self.engines.len());
        for (node, endpoint) in &self.engines {
            let engine = DockerRuntime::connect_to(instance_id, self.docker.clone(), Some(endpoint))
                .await
                .map_err(|e| RuntimeError::Engine(format!("node {node}: {e}")))?;
            engines.push(engine);
        }
        Ok(engines)
    }
}

/// How often the event stream looks at the tasks.
const POLL_EVERY: Duration = Duration::from_millis(500);
/// How long a start waits for the engine to remove a workspace's earlier tasks.
const TASKS_GONE_WITHIN: Duration = Duration::from_secs(60);

/// Workspaces as services on a swarm whose manager is the local engine.
#[derive(Clone)]
pub struct SwarmRuntime {
    /// The manager's engine: services, networks and nodes are made here.
    manager: DockerRuntime,
    manager_node: String,
    settings: Arc<SwarmSettings>,
    /// Node id → its connected engine.
    engines: Arc<tokio::sync::Mutex<HashMap<String, DockerRuntime>>>,
    /// Services drydock is removing or still starting: their tasks' ends are not deaths.
    own: Arc<Mutex<HashMap<String, Instant>>>,
}

impl std::fmt::Debug for SwarmRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwarmRuntime").field("manager_node", &self.manager_node).finish()
    }
}

/// A node as placement sees it.
#[derive(Debug, Clone)]
struct NodeView {
    id: String,
    hostname: String,
    address: String,
    state: String,
    availability: Availability,
    manager: bool,
    /// A manager's address for joining (`host:2377`).
    manager_address: Option<String>,
    total: u64,
    reserved: u64,
}

impl NodeView {
    fn of(node: &Node) -> Option<NodeView> {
        let id = node.id.clone()?;
        let description = node.description.clone().unwrap_or_default();
        let status = node.status.clone().unwrap_or_default();
        let availability = match node.spec.as_ref().and_then(|s| s.availability) {
            Some(NodeSpecAvailabilityEnum::PAUSE) => Availability::Pause,
            Some(NodeSpecAvailabilityEnum::DRAIN) => Availability::Drain,
            _ => Availability::Active,
        };
        Some(NodeView {
            id,
            hostname: description.hostname.unwrap_or_default(),
            address: status.addr.unwrap_or_default(),
            state: status.state.map(|s| s.to_string()).unwrap_or_else(|| "unknown".to_string()),
            availability,
            manager: node.manager_status.is_some(),
            manager_address: node.manager_status.as_ref().and_then(|m| m.addr.clone()),
            total: description.resources.and_then(|r| r.memory_bytes).and_then(|m| u64::try_from(m).ok()).unwrap_or(0),
            reserved: 0,
        })
    }

    fn takes_machines(&self) -> bool {
        self.state == NodeState::READY.to_string() && self.availability == Availability::Active
    }

    fn free(&self) -> u64 {
        self.total.saturating_sub(self.reserved)
    }

    fn label(&self) -> String {
        format!("{} ({})", self.hostname, short(&self.id))
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn mib(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

/// A task that is still to run or runs.
fn live(task: &Task) -> bool {
    task.desired_state == Some(TaskState::RUNNING)
        && !matches!(
            task.status.as_ref().and_then(|s| s.state),
            Some(
                TaskState::COMPLETE
                    | TaskState::SHUTDOWN
                    | TaskState::FAILED
                    | TaskState::REJECTED
                    | TaskState::ORPHANED
                    | TaskState::REMOVE
            )
        )
}

fn task_state(task: &Task) -> Option<TaskState> {
    task.status.as_ref().and_then(|s| s.state)
}

fn task_error(task: &Task) -> String {
    let status = task.status.clone().unwrap_or_default();
    status.err.filter(|e| !e.is_empty()).or(status.message).unwrap_or_else(|| "no reason given".to_string())
}

fn task_label(task: &Task, key: &str) -> Option<String> {
    task.spec.as_ref()?.container_spec.as_ref()?.labels.as_ref()?.get(key).cloned()
}

impl SwarmRuntime {
    /// Connects to the local engine, which must be a Swarm manager.
    pub async fn connect(instance_id: &str, settings: SwarmSettings) -> Result<Self, RuntimeError> {
        let manager = DockerRuntime::connect(instance_id, settings.docker.clone()).await?;
        let info = manager.docker.info().await.map_err(engine)?;
        let swarm = info.swarm.unwrap_or_default();
        let active = swarm.local_node_state.map(|s| s.to_string()) == Some("active".to_string());
        if !active || swarm.control_available != Some(true) {
            return Err(RuntimeError::Engine(
                "runtime.kind = \"swarm\" needs the local Docker engine to be a Swarm manager: run \
                 `docker swarm init` on this host (or set runtime.kind = \"docker\")"
                    .to_string(),
            ));
        }
        Ok(SwarmRuntime {
            manager,
            manager_node: swarm.node_id.unwrap_or_default(),
            settings: Arc::new(settings),
            engines: Arc::default(),
            own: Arc::default(),
        })
    }

    fn docker(&self) -> &Docker {
        &self.manager.docker
    }

    fn instance(&self) -> &str {
        &self.manager.instance
    }

    /// The manager's engine (the local one).
    pub fn manager(&self) -> &DockerRuntime {
        &self.manager
    }

    /// The manager's node id.
    pub fn manager_node(&self) -> &str {
        &self.manager_node
    }

    /// Every node with the memory its live tasks reserve.
    async fn node_views(&self) -> Result<Vec<NodeView>, RuntimeError> {
        let mut views = self.nodes_unreserved().await?;
        let tasks =
            self.docker().list_tasks(None::<bollard::query_parameters::ListTasksOptions>).await.map_err(engine)?;
        for task in tasks.iter().filter(|t| live(t)) {
            let reserved = task
                .spec
                .as_ref()
                .and_then(|s| s.resources.as_ref())
                .and_then(|r| r.reservations.as_ref())
                .and_then(|r| r.memory_bytes)
                .and_then(|m| u64::try_from(m).ok())
                .unwrap_or(0);
            if let Some(view) = views.iter_mut().find(|v| Some(&v.id) == task.node_id.as_ref()) {
                view.reserved += reserved;
            }
        }
        Ok(views)
    }

    /// Every node, without what its tasks reserve: enough to name and reach a machine's node
    /// (an inspect, which every proxied request makes, needs no more).
    async fn nodes_unreserved(&self) -> Result<Vec<NodeView>, RuntimeError> {
        let nodes = self.docker().list_nodes(None::<ListNodesOptions>).await.map_err(engine)?;
        let mut views: Vec<NodeView> = nodes.iter().filter_map(NodeView::of).collect();
        views.sort_by(|a, b| a.hostname.cmp(&b.hostname).then(a.id.cmp(&b.id)));
        Ok(views)
    }

    /// The node a name means: an id, a unique id prefix, or a unique host name.
    fn find_node<'a>(views: &'a [NodeView], name: &str) -> Result<&'a NodeView, RuntimeError> {
        if let Some(exact) = views.iter().find(|v| v.id == name) {
            return Ok(exact);
        }
        let matching: Vec<&NodeView> =
            views.iter().filter(|v| v.hostname == name || (name.len() >= 4 && v.id.starts_with(name))).collect();
        match matching.as_slice() {
            [one] => Ok(one),
            [] => Err(RuntimeError::UnknownNode(name.to_string())),
            many => Err(RuntimeError::Refused(format!(
                "'{name}' names {} nodes ({}): use the node's id",
                many.len(),
                many.iter().map(|v| v.label()).collect::<Vec<_>>().join(", ")
            ))),
        }
    }

    /// The engine of a node, connected once: the endpoint listed for its id or host name,
    /// else the local engine for the manager's own node.
    async fn engine_for(&self, node_id: &str, what: &str) -> Result<DockerRuntime, RuntimeError> {
        let mut engines = self.engines.lock().await;
        if let Some(engine) = engines.get(node_id) {
            return Ok(engine.clone());
        }
        let hostname = match self.docker().inspect_node(node_id).await {
            Ok(node) => node.description.and_then(|d| d.hostname).unwrap_or_default(),
            Err(e) if not_found(&e) => return Err(RuntimeError::UnknownNode(node_id.to_string())),
            Err(e) => return Err(engine(e)),
        };
        let endpoint = self.settings.engines.get(node_id).or_else(|| self.settings.engines.get(&hostname));
        let connected = match endpoint {
            Some(endpoint) => {
                DockerRuntime::connect_to(self.instance(), self.settings.docker.clone(), Some(endpoint)).await?
            }
            None if node_id == self.manager_node => self.manager.clone(),
            None => {
                return Err(RuntimeError::Refused(format!(
                    "{what} needs the engine of node {hostname} ({}), which runtime.nodes does not list",
                    short(node_id)
                )));
            }
        };
        engines.insert(node_id.to_string(), connected.clone());
        Ok(connected)
    }

    async fn services(&self, workspace: Option<&str>) -> Result<Vec<bollard::models::Service>, RuntimeError> {
        let filters = label_filters(self.instance(), workspace);
        let options = ListServicesOptionsBuilder::default().filters(&filters).build();
        self.docker().list_services(Some(options)).await.map_err(engine)
    }

    /// The tasks of this instance's services (of one workspace), newest first.
    async fn tasks(&self, workspace: Option<&str>) -> Result<Vec<Task>, RuntimeError> {
        let services = self.services(workspace).await?;
        if services.is_empty() {
            return Ok(Vec::new());
        }
        // All tasks, then ours: a filter naming a service removed meanwhile fails the list.
        let ids: BTreeSet<String> = services.into_iter().filter_map(|s| s.id).collect();
        let all =
            self.docker().list_tasks(None::<bollard::query_parameters::ListTasksOptions>).await.map_err(engine)?;
        let mut tasks: Vec<Task> =
            all.into_iter().filter(|t| t.service_id.as_ref().is_some_and(|id| ids.contains(id))).collect();
        tasks.sort_by(|a, b| b.created_at.cmp(&a.created_at));
        Ok(tasks)
    }

    fn claim(&self, service: &str) {
        self.own.lock().unwrap_or_else(|e| e.into_inner()).insert(service.to_string(), Instant::now());
    }

    fn release(&self, service: &str) {
        self.own.lock().unwrap_or_else(|e| e.into_inner()).remove(service);
    }

    /// Removes a workspace's services and waits until their containers are gone from every
    /// node whose engine drydock has (so that its network can go, a new start finds the
    /// volume free, and the volume can be removed or moved).
    async fn remove_services(&self, workspace: &str) -> Result<usize, RuntimeError> {
        let services = self.services(Some(workspace)).await?;
        if services.is_empty() {
            return Ok(0);
        }
        let nodes: BTreeSet<String> =
            self.tasks(Some(workspace)).await?.into_iter().filter_map(|t| t.node_id).collect();
        for service in &services {
            let Some(name) = service.spec.as_ref().and_then(|s| s.name.clone()) else { continue };
            self.claim(&name);
            match self.docker().delete_service(&name).await {
                Ok(()) => {}
                Err(e) if gone_or_going(&e) => {}
                Err(e) => return Err(engine(e)),
            }
        }
        for node in nodes {
            // A node without an engine here is left to Swarm.
            let Ok(engine) = self.engine_for(&node, "waiting for its containers").await else { continue };
            let deadline = Instant::now() + TASKS_GONE_WITHIN;
            while !engine.container_ids(Some(workspace)).await?.is_empty() {
                if Instant::now() > deadline {
                    return Err(RuntimeError::Engine(format!(
                        "the containers of workspace {workspace} on node {} were not removed within \
                         {TASKS_GONE_WITHIN:?}",
                        short(&node)
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(services.len())
    }

    /// Creates the workspace's overlay network when missing; says whether it did.
    async fn ensure_network(&self, workspace: &str) -> Result<bool, RuntimeError> {
        let name = network_name(self.instance(), workspace);
        match self.docker().inspect_network(&name, None).await {
            Ok(_) => Ok(false),
            Err(e) if not_found(&e) => {
                let request = NetworkCreateRequest {
                    name,
                    driver: Some("overlay".to_string()),
                    attachable: Some(true),
                    labels: Some(labels(self.instance(), workspace, None)),
                    ..Default::default()
                };
                self.docker().create_network(request).await.map_err(engine)?;
                Ok(true)
            }
            Err(e) => Err(engine(e)),
        }
    }

    /// Removes the workspace's network; a network whose last tasks are still being torn down
    /// is tried again for a while.
    async fn remove_network(&self, workspace: &str) -> Result<(), RuntimeError> {
        let name = network_name(self.instance(), workspace);
        let deadline = Instant::now() + TASKS_GONE_WITHIN;
        loop {
            match self.docker().remove_network(&name).await {
                Ok(()) => return Ok(()),
                Err(e) if gone_or_going(&e) => return Ok(()),
                Err(e) if Instant::now() < deadline && reason(&e).contains("in use") => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => return Err(engine(e)),
            }
        }
    }

    /// The node that holds the workspace's `/projects` for this start: the recorded one when
    /// it takes machines; else a node with room, with the files copied there first.
    async fn projects_node(
        &self,
        spec: &RuntimeSpec,
        views: &[NodeView],
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<NodeView, RuntimeError> {
        let need = spec.projects_memory();
        let recorded = spec.node.as_deref().map(|id| views.iter().find(|v| v.id == id));
        if let Some(Some(node)) = recorded
            && node.takes_machines()
        {
            return Ok(node.clone());
        }
        let target = best_node(views, need, spec.node.as_deref())
            .ok_or_else(|| RuntimeError::NoRoom(room_detail(views, need)))?
            .clone();
        match recorded {
            None => progress(format!("node {}: chosen for the workspace's files", target.label())),
            Some(None) => {
                return Err(RuntimeError::Refused(format!(
                    "the workspace's files are on node {}, which is no longer in the swarm; restore them \
                     from a backup",
                    spec.node.as_deref().map(short).unwrap_or_default()
                )));
            }
            Some(Some(from)) => {
                progress(format!(
                    "node {} is {} ({}): moving the workspace's files to node {}",
                    from.label(),
                    from.availability.as_str(),
                    from.state,
                    target.label()
                ));
                self.move_projects(&spec.workspace_id, from, &target).await?;
                progress(format!("files copied to node {}", target.label()));
            }
        }
        Ok(target)
    }

    /// Copies a workspace's `/projects` from one node's engine to another's. The old volume
    /// stays until the workspace has started on the new node (see `start`).
    async fn move_projects(&self, workspace: &str, from: &NodeView, to: &NodeView) -> Result<(), RuntimeError> {
        let what = format!("moving workspace {workspace}'s files");
        let source = self.engine_for(&from.id, &what).await?;
        let target = self.engine_for(&to.id, &what).await?;
        if !source.projects_volume_exists(workspace).await? {
            return Ok(());
        }
        // The stopped workspace's containers on the old node may still be ending.
        source.wait_until_stopped(workspace, TASKS_GONE_WITHIN).await?;
        if target.projects_volume_exists(workspace).await? {
            return Err(RuntimeError::Refused(format!(
                "node {} already has a volume for workspace {workspace} (an older copy?): the files on \
                 node {} are not copied over it; remove that volume there, or activate node {} again",
                to.label(),
                from.label(),
                from.label()
            )));
        }
        let reader = source.volumes_helper(&[workspace.to_string()]).await?;
        let writer = match target.volumes_helper(&[workspace.to_string()]).await {
            Ok(writer) => writer,
            Err(e) => {
                reader.remove().await;
                return Err(e);
            }
        };
        let stream = reader.download().map_err(|e| std::io::Error::other(e.to_string())).boxed();
        let copied = writer.upload(stream).await;
        reader.remove().await;
        writer.remove().await;
        if let Err(e) = copied {
            // The half-written copy goes; the files stay where they were.
            if let Err(cleanup) = target.remove_projects_volume(workspace).await {
                tracing::warn!(workspace, error = %cleanup, "removing a half-copied volume");
            }
            return Err(RuntimeError::Engine(format!("copying the files of workspace {workspace}: {e}")));
        }
        Ok(())
    }

    /// The image a service names: the registry's copy (pushed there first) when there is a
    /// registry, else the image as configured.
    async fn service_image(
        &self,
        image: &str,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<String, RuntimeError> {
        let Some(registry) = &self.settings.registry else { return Ok(image.to_string()) };
        if image.starts_with(&format!("{registry}/")) {
            return Ok(image.to_string());
        }
        match self.docker().inspect_image(image).await {
            Ok(_) => {}
            // Not here: the nodes pull the registry's copy, if it has one.
            Err(e) if not_found(&e) => return Ok(in_registry(registry, image)),
            Err(e) => return Err(engine(e)),
        }
        progress(format!("image {image}: pushing to {registry}"));
        self.manager.push_to(registry, image).await
    }

    fn service_spec(
        &self,
        workspace: &str,
        machine: &drydock_core::runtime::MachineSpec,
        image: &str,
        node: &str,
        placement: Placement,
        command: &ImageCommand,
    ) -> ServiceSpec {
        let memory = (machine.memory_bytes > 0).then(|| i64::try_from(machine.memory_bytes).unwrap_or(i64::MAX));
        let mounts = machine.projects.then(|| {
            vec![Mount {
                target: Some(PROJECTS_PATH.to_string()),
                source: Some(volume_name(self.instance(), workspace)),
                typ: Some(MountType::VOLUME),
                volume_options: Some(MountVolumeOptions {
                    labels: Some(labels(self.instance(), workspace, None)),
                    ..Default::default()
                }),
                ..Default::default()
            }]
        });
        let ports: Vec<EndpointPortConfig> = machine
            .ports
            .iter()
            .map(|port| EndpointPortConfig {
                target_port: Some(i64::from(*port)),
                publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
                ..Default::default()
            })
            .collect();
        ServiceSpec {
            name: Some(container_name(self.instance(), workspace, &machine.name)),
            labels: Some(labels(self.instance(), workspace, Some(&machine.name))),
            task_template: Some(TaskSpec {
                container_spec: Some(TaskSpecContainerSpec {
                    image: Some(image.to_string()),
                    labels: Some(labels(self.instance(), workspace, Some(&machine.name))),
                    command: machine.entrypoint.clone(),
                    args: machine.command.clone(),
                    hostname: Some(machine.name.clone()),
                    env: Some(machine.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
                    tty: Some(true),
                    open_stdin: Some(true),
                    init: Some(true),
                    stop_signal: command.stop_signal(machine),
                    stop_grace_period: i64::try_from(self.settings.docker.stop_timeout.as_nanos()).ok(),
                    mounts,
                    ..Default::default()
                }),
                resources: Some(TaskSpecResources {
                    limits: Some(Limit { memory_bytes: memory, ..Default::default() }),
                    reservations: Some(ResourceObject { memory_bytes: memory, ..Default::default() }),
                    ..Default::default()
                }),
                restart_policy: Some(TaskSpecRestartPolicy {
                    condition: Some(TaskSpecRestartPolicyConditionEnum::NONE),
                    ..Default::default()
                }),
                placement: placement
                    .constraint(node)
                    .map(|constraint| TaskSpecPlacement { constraints: Some(vec![constraint]), ..Default::default() }),
                networks: Some(vec![NetworkAttachmentConfig {
                    target: Some(network_name(self.instance(), workspace)),
                    aliases: Some(vec![machine.name.clone()]),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            mode: Some(ServiceSpecMode {
                replicated: Some(ServiceSpecModeReplicated { replicas: Some(1) }),
                ..Default::default()
            }),
            // Names resolve to the machines' own addresses: no virtual IP (its IPVS balancing
            // is missing from some kernels, and one replica has nothing to balance).
            endpoint_spec: Some(bollard::models::EndpointSpec {
                mode: Some(bollard::models::EndpointSpecModeEnum::DNSRR),
                ports: (!ports.is_empty()).then_some(ports),
            }),
            ..Default::default()
        }
    }

    /// Waits until the service's task runs; a task that failed, was rejected or cannot be
    /// placed ends the wait with the reason.
    async fn wait_running(
        &self,
        service: &str,
        machine: &str,
        image: &str,
        views: &[NodeView],
    ) -> Result<Task, RuntimeError> {
        let within = self.settings.docker.pull_timeout + Duration::from_secs(30);
        let deadline = Instant::now() + within;
        let filters = HashMap::from([("service".to_string(), vec![service.to_string()])]);
        loop {
            let options = ListTasksOptionsBuilder::default().filters(&filters).build();
            let tasks = self.docker().list_tasks(Some(options)).await.map_err(engine)?;
            if let Some(task) = tasks.iter().max_by(|a, b| a.created_at.cmp(&b.created_at)) {
                let node = task
                    .node_id
                    .as_deref()
                    .map(|id| {
                        views.iter().find(|v| v.id == id).map(|v| v.label()).unwrap_or_else(|| short(id).to_string())
                    })
                    .unwrap_or_else(|| "(none yet)".to_string());
                match task_state(task) {
                    Some(TaskState::RUNNING) => return Ok(task.clone()),
                    Some(TaskState::PENDING) if task_error(task).contains("insufficient resources") => {
                        return Err(RuntimeError::NoRoom(format!("machine {machine}: {}", task_error(task))));
                    }
                    Some(TaskState::REJECTED | TaskState::FAILED) if task_error(task).contains("No such image") => {
                        let registry = match &self.settings.registry {
                            Some(r) => format!("the registry {r} does not have it either"),
                            None => "and no registry is set (runtime.registry)".to_string(),
                        };
                        return Err(RuntimeError::ImageUnavailable {
                            image: image.to_string(),
                            reason: format!("node {node} does not have it, {registry}"),
                        });
                    }
                    Some(
                        TaskState::REJECTED
                        | TaskState::FAILED
                        | TaskState::COMPLETE
                        | TaskState::SHUTDOWN
                        | TaskState::ORPHANED,
                    ) => {
                        let exit =
                            task.status.as_ref().and_then(|s| s.container_status.as_ref()).and_then(|c| c.exit_code);
                        let why = match exit {
                            Some(code) => exit_reason(Some(code), false, Some(&task_error(task))),
                            None => task_error(task),
                        };
                        return Err(RuntimeError::Engine(format!(
                            "machine {machine} stopped during start on node {node}: {why}"
                        )));
                    }
                    _ => {}
                }
            }
            if Instant::now() > deadline {
                return Err(RuntimeError::Engine(format!("machine {machine} was not running within {within:?}")));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The machines of the given tasks (the newest task of each service), as `RuntimeInfo`s.
    async fn infos(&self, tasks: Vec<Task>) -> Result<BTreeMap<String, Vec<MachineRuntime>>, RuntimeError> {
        let views = self.nodes_unreserved().await?;
        let mut seen = BTreeSet::new();
        let mut by_workspace: BTreeMap<String, Vec<MachineRuntime>> = BTreeMap::new();
        for task in tasks {
            let (Some(workspace), Some(machine)) =
                (task_label(&task, LABEL_WORKSPACE), task_label(&task, LABEL_MACHINE))
            else {
                continue;
            };
            if !seen.insert((workspace.clone(), machine.clone())) || task.desired_state != Some(TaskState::RUNNING) {
                continue;
            }
            let view = task.node_id.as_deref().and_then(|id| views.iter().find(|v| v.id == id));
            let running = task_state(&task) == Some(TaskState::RUNNING);
            let host = view.map(|v| v.address.clone()).unwrap_or_default();
            let published = task
                .status
                .as_ref()
                .and_then(|s| s.port_status.as_ref())
                .and_then(|p| p.ports.clone())
                .unwrap_or_default()
                .into_iter()
                .filter_map(|p| {
                    let target = u16::try_from(p.target_port?).ok()?;
                    Some((target, format!("{host}:{}", p.published_port?)))
                })
                .collect();
            let exit_reason = (!running).then(|| task_error(&task));
            by_workspace.entry(workspace).or_default().push(MachineRuntime {
                name: machine,
                container_id: task
                    .status
                    .as_ref()
                    .and_then(|s| s.container_status.as_ref())
                    .and_then(|c| c.container_id.clone())
                    .unwrap_or_default(),
                status: if running { MachineStatus::Running } else { MachineStatus::Stopped },
                node: view.map(|v| v.hostname.clone()).unwrap_or_default(),
                node_id: task.node_id.clone(),
                address: None,
                published,
                exit_reason,
            });
        }
        for machines in by_workspace.values_mut() {
            machines.sort_by(|a, b| a.name.cmp(&b.name));
        }
        Ok(by_workspace)
    }

    async fn start_services(
        &self,
        spec: &RuntimeSpec,
        made: &mut Made,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<RuntimeInfo, RuntimeError> {
        let workspace = spec.workspace_id.as_str();
        let order = start_order(&spec.machines)?;
        let views = self.node_views().await?;
        let node = self.projects_node(spec, &views, progress).await?;
        if spec.node.as_deref() != Some(node.id.as_str()) {
            made.moved_from = spec.node.clone();
            // Only a volume this start made goes if it fails; one that was there (files a
            // restore put on this node) stays.
            let existed = match self.engine_for(&node.id, "checking the node's volumes").await {
                Ok(engine) => engine.projects_volume_exists(workspace).await? && made.moved_from.is_none(),
                Err(_) => true,
            };
            if !existed {
                made.volume_on = Some(node.id.clone());
            }
        }
        made.network = self.ensure_network(workspace).await?;
        let network = network_name(self.instance(), workspace);
        progress(format!("network {network}: {}", if made.network { "created" } else { "exists" }));
        for machine in order {
            let m = machine.name.as_str();
            let configured = spec.images.get(m).unwrap_or(&machine.image);
            let image = self.service_image(configured, progress).await?;
            // The image's command decides the stop signal; an image only the nodes have
            // keeps its own.
            let command = match self.docker().inspect_image(&image).await {
                Ok(found) => ImageCommand::of(found.config),
                Err(_) => ImageCommand::default(),
            };
            let placement = Placement::of(machine, &node, spec.projects_memory());
            let service = self.service_spec(workspace, machine, &image, &node.id, placement, &command);
            let name = service.name.clone().unwrap_or_default();
            self.claim(&name);
            self.docker()
                .create_service(service, None)
                .await
                .map_err(|e| RuntimeError::Engine(format!("machine {m}: {}", reason(&e))))?;
            made.services.push(name.clone());
            let placed = match placement {
                Placement::On => format!("node {}", node.label()),
                Placement::NotOn => format!("any node but {}", node.label()),
                Placement::Anywhere => "any node".to_string(),
            };
            progress(format!("machine {m}: service {name} created from {image}, on {placed}"));
            let task = self.wait_running(&name, m, configured, &views).await?;
            let on = task.node_id.as_deref().and_then(|id| views.iter().find(|v| v.id == id)).map(|v| v.label());
            progress(format!("machine {m}: running on node {}", on.unwrap_or_default()));
        }
        // Commands that fail at once end within moments: look again after the settle time.
        tokio::time::sleep(self.settings.docker.start_settle).await;
        let tasks = self.tasks(Some(workspace)).await?;
        let machines = self.infos(tasks).await?.remove(workspace).unwrap_or_default();
        if let Some(stopped) = machines.iter().find(|m| m.status != MachineStatus::Running) {
            return Err(RuntimeError::Engine(format!(
                "machine {} stopped during start: {}",
                stopped.name,
                stopped.exit_reason.clone().unwrap_or_default()
            )));
        }
        for name in &made.services {
            self.release(name);
        }
        Ok(RuntimeInfo { workspace_id: workspace.to_string(), machines, node: Some(node.id.clone()) })
    }

    /// The node a workspace's machine runs on, and that node's engine.
    async fn machine_engine(&self, workspace: &str, machine: &str, what: &str) -> Result<DockerRuntime, RuntimeError> {
        let not_running = || RuntimeError::NotRunning(format!("machine {machine} of workspace {workspace}"));
        if check_name_part("workspace id", workspace).is_err() || check_name_part("machine", machine).is_err() {
            return Err(not_running());
        }
        let machines = self.inspect(workspace).await?.map(|i| i.machines).unwrap_or_default();
        let found = machines.into_iter().find(|m| m.name == machine && m.status == MachineStatus::Running);
        let node = found.and_then(|m| m.node_id).ok_or_else(not_running)?;
        self.engine_for(&node, what).await
    }
}

impl DockerRuntime {
    /// Waits until the workspace has no running container on this engine.
    async fn wait_until_stopped(&self, workspace: &str, within: Duration) -> Result<(), RuntimeError> {
        let deadline = Instant::now() + within;
        while self.workspaces_running().await?.iter().any(|w| w == workspace) {
            if Instant::now() > deadline {
                return Err(RuntimeError::Engine(format!(
                    "workspace {workspace}'s machines on node {} did not stop within {within:?}",
                    self.node()
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }
}

/// The name of an image's copy in the registry: `<registry>/<repository>:<tag>`.
fn in_registry(registry: &str, image: &str) -> String {
    let (repository, tag) = crate::runtime::split_reference(image);
    format!("{registry}/{repository}:{tag}")
}

impl DockerRuntime {
    /// Tags an image of this engine for the registry and pushes it there; its new name.
    pub(crate) async fn push_to(&self, registry: &str, image: &str) -> Result<String, RuntimeError> {
        let target = in_registry(registry, image);
        let (repository, tag) = crate::runtime::split_reference(&target);
        let options = TagImageOptionsBuilder::default().repo(&repository).tag(&tag).build();
        self.docker.tag_image(image, Some(options)).await.map_err(engine)?;
        let options = PushImageOptionsBuilder::default().tag(&tag).build();
        self.docker
            .push_image(&repository, Some(options), None)
            .try_for_each(|info| async move {
                match info.error_detail.and_then(|d| d.message) {
                    Some(message) => Err(bollard::errors::Error::DockerStreamError { error: message }),
                    None => Ok(()),
                }
            })
            .await
            .map_err(|e| RuntimeError::ImageUnavailable {
                image: image.to_string(),
                reason: format!("pushing it to the registry {registry}: {}", reason(&e)),
            })?;
        Ok(target)
    }
}

/// What a start made, for its clean-up when it fails.
#[derive(Debug, Default)]
struct Made {
    services: Vec<String>,
    network: bool,
    /// The node a first start (or a move) put the volume on.
    volume_on: Option<String>,
    /// The node a move copied the files from.
    moved_from: Option<String>,
}

/// Where a machine may run, relative to the workspace's node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// It mounts `/projects`: on the workspace's node.
    On,
    /// Without `/projects`, and the workspace's node keeps its room for the machines that
    /// have them: elsewhere.
    NotOn,
    Anywhere,
}

impl Placement {
    fn of(machine: &drydock_core::runtime::MachineSpec, node: &NodeView, projects_memory: u64) -> Placement {
        if machine.projects {
            Placement::On
        } else if node.free() < projects_memory.saturating_add(machine.memory_bytes) {
            Placement::NotOn
        } else {
            Placement::Anywhere
        }
    }

    fn constraint(self, node: &str) -> Option<String> {
        match self {
            Placement::On => Some(format!("node.id=={node}")),
            Placement::NotOn => Some(format!("node.id!={node}")),
            Placement::Anywhere => None,
        }
    }
}

/// The node with the most unreserved memory that takes machines and fits `need`; not `avoid`.
fn best_node<'a>(views: &'a [NodeView], need: u64, avoid: Option<&str>) -> Option<&'a NodeView> {
    views
        .iter()
        .filter(|v| v.takes_machines() && Some(v.id.as_str()) != avoid && v.free() >= need)
        .max_by_key(|v| v.free())
}

/// Why no node fits: what the workspace needs and what each node has free.
fn room_detail(views: &[NodeView], need: u64) -> String {
    let nodes: Vec<String> = views
        .iter()
        .map(|v| {
            if v.takes_machines() {
                format!("{} has {} MiB free of {} MiB", v.label(), mib(v.free()), mib(v.total))
            } else {
                format!("{} is {} ({})", v.label(), v.availability.as_str(), v.state)
            }
        })
        .collect();
    format!("the workspace needs {} MiB on one node; {}", mib(need), nodes.join("; "))
}

#[async_trait]
impl Runtime for SwarmRuntime {
    fn kind(&self) -> &'static str {
        "swarm"
    }

    async fn start(
        &self,
        spec: &RuntimeSpec,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<RuntimeInfo, RuntimeError> {
        let workspace = check_spec(spec)?;
        let leftovers = self.remove_services(workspace).await?;
        if leftovers > 0 {
            progress(format!("removed {leftovers} service(s) left from before"));
        }
        let mut made = Made::default();
        match self.start_services(spec, &mut made, progress).await {
            Ok(info) => {
                // Moved and running on the new node: the old copy goes now.
                if let Some(old) = &made.moved_from {
                    let removed = match self.engine_for(old, "removing the old copy of moved files").await {
                        Ok(engine) => engine.remove_projects_volume(workspace).await,
                        Err(e) => Err(e),
                    };
                    match removed {
                        Ok(()) => progress(format!("the old copy on node {} is removed", short(old))),
                        Err(e) => tracing::warn!(workspace, error = %e, "removing the old copy of moved files"),
                    }
                }
                progress("ready".to_string());
                Ok(info)
            }
            Err(e) => {
                progress(format!("start failed: {e}"));
                if let Err(cleanup) = self.remove_services(workspace).await {
                    tracing::warn!(workspace, error = %cleanup, "removing the services of a failed start");
                }
                if made.network
                    && let Err(cleanup) = self.remove_network(workspace).await
                {
                    tracing::warn!(workspace, error = %cleanup, "removing the network of a failed start");
                }
                // A first start (or a move) that failed leaves no volume on the node it chose:
                // the workspace's files stay where its recorded node says (a move's source
                // copy is still whole).
                if let Some(node) = &made.volume_on {
                    let removed = match self.engine_for(node, "removing the volume of a failed start").await {
                        Ok(engine) => engine.remove_projects_volume(workspace).await,
                        Err(e) => Err(e),
                    };
                    if let Err(cleanup) = removed {
                        tracing::warn!(workspace, error = %cleanup, "removing the volume of a failed start");
                    }
                }
                for name in &made.services {
                    self.release(name);
                }
                Err(e)
            }
        }
    }

    async fn stop(&self, workspace_id: &str) -> Result<(), RuntimeError> {
        self.remove_services(workspace_id).await.map(|_| ())
    }

    async fn remove(&self, workspace_id: &str) -> Result<(), RuntimeError> {
        let nodes: BTreeSet<String> =
            self.tasks(Some(workspace_id)).await?.into_iter().filter_map(|t| t.node_id).collect();
        self.remove_services(workspace_id).await?;
        self.remove_network(workspace_id).await?;
        // The volume (and snapshots) live on nodes: every node whose engine drydock has.
        let views = self.node_views().await?;
        for view in &views {
            match self.engine_for(&view.id, "removing the workspace's files").await {
                // Networks are the manager's; a node's engine holds the files and snapshots.
                Ok(engine) => engine.remove_volume_and_snapshots(workspace_id).await?,
                Err(e) if nodes.contains(&view.id) => return Err(e),
                Err(e) => tracing::debug!(node = %view.id, error = %e, "no engine to clean up on"),
            }
        }
        Ok(())
    }

    async fn inspect(&self, workspace_id: &str) -> Result<Option<RuntimeInfo>, RuntimeError> {
        let tasks = self.tasks(Some(workspace_id)).await?;
        Ok(self.infos(tasks).await?.remove(workspace_id).map(|machines| {
            let node = machines.iter().find_map(|m| m.node_id.clone());
            RuntimeInfo { workspace_id: workspace_id.to_string(), machines, node }
        }))
    }

    async fn list(&self) -> Result<Vec<RuntimeInfo>, RuntimeError> {
        let tasks = self.tasks(None).await?;
        Ok(self
            .infos(tasks)
            .await?
            .into_iter()
            .map(|(workspace_id, machines)| RuntimeInfo { workspace_id, machines, node: None })
            .collect())
    }

    async fn exec(
        &self,
        workspace_id: &str,
        machine: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        let engine = self.machine_engine(workspace_id, machine, "running a command").await?;
        engine.exec(workspace_id, machine, command, timeout).await
    }

    async fn terminal(
        &self,
        workspace_id: &str,
        machine: &str,
        cols: u16,
        rows: u16,
    ) -> Result<Terminal, RuntimeError> {
        let engine = self.machine_engine(workspace_id, machine, "the terminal").await?;
        engine.terminal(workspace_id, machine, cols, rows).await
    }

    async fn snapshot(&self, workspace_id: &str) -> Result<BTreeMap<String, String>, RuntimeError> {
        let machines = self.inspect(workspace_id).await?.map(|i| i.machines).unwrap_or_default();
        let nodes: BTreeSet<String> =
            machines.iter().filter(|m| m.status == MachineStatus::Running).filter_map(|m| m.node_id.clone()).collect();
        if nodes.is_empty() {
            return Err(RuntimeError::NotRunning(format!("workspace {workspace_id}")));
        }
        let mut images = BTreeMap::new();
        for node in nodes {
            let engine = self.engine_for(&node, "a snapshot").await?;
            for (machine, image) in engine.snapshot(workspace_id).await? {
                // In the registry, a restore can start the machine on any node.
                let image = match &self.settings.registry {
                    Some(registry) => engine.push_to(registry, &image).await?,
                    None => image,
                };
                images.insert(machine, image);
            }
        }
        Ok(images)
    }

    async fn events(&self) -> Result<BoxStream<'static, RuntimeEvent>, RuntimeError> {
        self.docker().ping().await.map_err(engine)?;
        let this = self.clone();
        let reported: BTreeSet<String> = BTreeSet::new();
        let stream = futures::stream::unfold((this, reported), |(this, mut reported)| async move {
            loop {
                tokio::time::sleep(POLL_EVERY).await;
                // A failed look is tried again: the stream ends only with the runtime.
                let tasks = match this.tasks(None).await {
                    Ok(tasks) => tasks,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot list the swarm's tasks; trying again");
                        continue;
                    }
                };
                let own: BTreeSet<String> = {
                    let mut own = this.own.lock().unwrap_or_else(|e| e.into_inner());
                    own.retain(|_, since| since.elapsed() < Duration::from_secs(600));
                    own.keys().cloned().collect()
                };
                let mut deaths = Vec::new();
                let mut newest = BTreeSet::new();
                for task in &tasks {
                    let (Some(workspace), Some(machine)) =
                        (task_label(task, LABEL_WORKSPACE), task_label(task, LABEL_MACHINE))
                    else {
                        continue;
                    };
                    if !newest.insert((workspace.clone(), machine.clone())) {
                        continue;
                    }
                    let service = container_name(this.instance(), &workspace, &machine);
                    let ended = matches!(
                        task_state(task),
                        Some(
                            TaskState::FAILED
                                | TaskState::COMPLETE
                                | TaskState::SHUTDOWN
                                | TaskState::REJECTED
                                | TaskState::ORPHANED
                        )
                    );
                    let Some(id) = task.id.clone() else { continue };
                    if ended && !own.contains(&service) && reported.insert(id) {
                        let exit =
                            task.status.as_ref().and_then(|s| s.container_status.as_ref()).and_then(|c| c.exit_code);
                        let error = task_error(task);
                        let oom = exit == Some(137) && error.contains("137");
                        deaths.push(RuntimeEvent::MachineDied {
                            workspace_id: workspace,
                            machine,
                            reason: exit_reason(exit, false, Some(&error)),
                            oom,
                        });
                    }
                }
                if !deaths.is_empty() {
                    return Some((futures::stream::iter(deaths), (this, reported)));
                }
            }
        })
        .flatten()
        .boxed();
        Ok(stream)
    }

    async fn memory_total(&self) -> Result<u64, RuntimeError> {
        let views = self.node_views().await?;
        let total: u64 = views.iter().filter(|v| v.state == NodeState::READY.to_string()).map(|v| v.total).sum();
        if total == 0 {
            return Err(RuntimeError::Engine("the swarm reports no memory on any ready node".to_string()));
        }
        Ok(total)
    }

    async fn check_room(&self, spec: &RuntimeSpec) -> Result<(), RuntimeError> {
        let views = self.node_views().await?;
        let need = spec.projects_memory();
        let recorded = spec.node.as_deref().and_then(|id| views.iter().find(|v| v.id == id));
        let node = match recorded {
            Some(node) if node.takes_machines() => Some(node).filter(|n| n.free() >= need),
            _ => best_node(&views, need, None),
        };
        let Some(node) = node else { return Err(RuntimeError::NoRoom(room_detail(&views, need))) };
        // The machines without /projects go where there is room; on the workspace's node
        // only beyond what its /projects machines need.
        for machine in spec.machines.iter().filter(|m| !m.projects) {
            let avoid = (Placement::of(machine, node, need) == Placement::NotOn).then_some(node.id.as_str());
            if best_node(&views, machine.memory_bytes, avoid).is_none() {
                return Err(RuntimeError::NoRoom(format!(
                    "machine {} needs {} MiB; {}",
                    machine.name,
                    mib(machine.memory_bytes),
                    room_detail(&views, machine.memory_bytes)
                )));
            }
        }
        Ok(())
    }

    async fn nodes(&self) -> Result<Vec<NodeInfo>, RuntimeError> {
        let views = self.node_views().await?;
        let tasks = self.tasks(None).await?;
        let mut infos = Vec::with_capacity(views.len());
        for view in views {
            let mut workspaces: Vec<String> = tasks
                .iter()
                .filter(|t| live(t) && t.node_id.as_deref() == Some(&view.id))
                .filter_map(|t| task_label(t, LABEL_WORKSPACE))
                .collect();
            workspaces.sort();
            workspaces.dedup();
            let engine = view.id == self.manager_node
                || self.settings.engines.contains_key(&view.id)
                || self.settings.engines.contains_key(&view.hostname);
            infos.push(NodeInfo {
                id: view.id,
                hostname: view.hostname,
                address: view.address,
                state: view.state,
                availability: view.availability,
                manager: view.manager,
                ram_total: view.total,
                ram_reserved: view.reserved,
                engine,
                workspaces,
            });
        }
        Ok(infos)
    }

    async fn set_availability(&self, node: &str, availability: Availability) -> Result<NodeInfo, RuntimeError> {
        let views = self.node_views().await?;
        let id = Self::find_node(&views, node)?.id.clone();
        let current = self.docker().inspect_node(&id).await.map_err(engine)?;
        let version = current.version.and_then(|v| v.index).unwrap_or(0);
        let mut spec = current.spec.unwrap_or_default();
        spec.availability = Some(match availability {
            Availability::Active => NodeSpecAvailabilityEnum::ACTIVE,
            Availability::Pause => NodeSpecAvailabilityEnum::PAUSE,
            Availability::Drain => NodeSpecAvailabilityEnum::DRAIN,
        });
        let options = UpdateNodeOptionsBuilder::default().version(i64::try_from(version).unwrap_or(0)).build();
        self.docker().update_node(&id, spec, options).await.map_err(engine)?;
        self.nodes().await?.into_iter().find(|n| n.id == id).ok_or_else(|| RuntimeError::UnknownNode(node.to_string()))
    }

    async fn remove_node(&self, node: &str) -> Result<(), RuntimeError> {
        let views = self.node_views().await?;
        let view = Self::find_node(&views, node)?;
        if view.manager {
            return Err(RuntimeError::Refused(format!(
                "node {} is a manager: demote it (docker node demote) before removing it",
                view.label()
            )));
        }
        if view.availability != Availability::Drain {
            return Err(RuntimeError::Refused(format!(
                "node {} is {}: drain it first (drydock node drain {})",
                view.label(),
                view.availability.as_str(),
                view.id
            )));
        }
        let options = DeleteNodeOptionsBuilder::default().force(true).build();
        self.docker().delete_node(&view.id, Some(options)).await.map_err(engine)?;
        self.engines.lock().await.remove(&view.id);
        Ok(())
    }

    async fn join_command(&self) -> Result<String, RuntimeError> {
        let swarm = self.docker().inspect_swarm().await.map_err(engine)?;
        let token = swarm
            .join_tokens
            .and_then(|t| t.worker)
            .ok_or_else(|| RuntimeError::Engine("the swarm has no worker join token".to_string()))?;
        let views = self.node_views().await?;
        let address = views
            .iter()
            .find(|v| v.id == self.manager_node)
            .and_then(|v| v.manager_address.clone())
            .ok_or_else(|| RuntimeError::Engine("the manager's address is unknown".to_string()))?;
        Ok(format!("docker swarm join --token {token} {address}"))
    }
}
