//! [`DockerRuntime`]: drydock's [`Runtime`] on one Docker Engine (the master's host).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bollard::Docker;
use bollard::container::LogOutput;
use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::models::{
    ContainerConfig, ContainerCreateBody, ContainerInspectResponse, ContainerStateStatusEnum, EndpointSettings,
    HostConfig, Mount, MountType, NetworkCreateRequest, NetworkingConfig, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CommitContainerOptionsBuilder, CreateContainerOptionsBuilder, CreateImageOptionsBuilder,
    ListContainersOptionsBuilder, ListImagesOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    LogsOptionsBuilder, RemoveContainerOptionsBuilder, RemoveImageOptionsBuilder, RemoveVolumeOptions,
    ResizeExecOptionsBuilder, StopContainerOptionsBuilder, WaitContainerOptionsBuilder,
};
use drydock_core::runtime::{
    Availability, ExecOutput, LABEL_MACHINE, LABEL_WORKSPACE, MachineRuntime, MachineSpec, MachineStatus, NodeInfo,
    PROJECTS_PATH, Runtime, RuntimeError, RuntimeEvent, RuntimeInfo, RuntimeSpec, Terminal,
};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};

use crate::error::{engine, gone_or_going, not_found, reason, status};
use crate::events::{OwnDeaths, exit_reason, machine_deaths};
use crate::names::{
    check_instance_id, check_name_part, check_spec, container_name, label_filters, labels, network_name,
    snapshot_repository, volume_name,
};

/// How drydock runs workspaces on the engine.
#[derive(Debug, Clone)]
pub struct DockerSettings {
    /// How long a start waits for a missing image to be pulled (`runtime.pull_timeout`).
    pub pull_timeout: Duration,
    /// How long a stop lets a machine end by itself before the engine kills it.
    pub stop_timeout: Duration,
    /// How long after the last machine started every machine must still be running for the
    /// start to succeed: catches commands that fail at once (a typo, a missing file, a port
    /// taken). A machine that dies later is reported by [`Runtime::events`]. On this engine such
    /// a command ends 2–15 ms after its process started, before the engine's start call even
    /// returns; 20 ms after that return is a margin, not a guess.
    pub start_settle: Duration,
    /// A standby's mirror of /projects: a workspace whose volume does not exist yet gets
    /// these files when it is created. `<dir>/<ws>/` holds the files, `<dir>/<ws>.index.json`
    /// their owners, modes and times as the primary had them; both go once the volume has them.
    pub projects_seed: Option<PathBuf>,
}

impl Default for DockerSettings {
    fn default() -> Self {
        DockerSettings {
            pull_timeout: Duration::from_secs(120),
            stop_timeout: Duration::from_secs(3),
            start_settle: Duration::from_millis(20),
            projects_seed: None,
        }
    }
}

/// Where an engine's API is: `unix:///path` or `tcp://host:port`, the latter with TLS from a
/// directory holding `ca.pem`, `cert.pem` and `key.pem`.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub url: String,
    pub certs: Option<PathBuf>,
}

impl Endpoint {
    fn client(&self) -> Result<Docker, bollard::errors::Error> {
        const TIMEOUT_SECS: u64 = 120;
        if let Some(path) = self.url.strip_prefix("unix://") {
            return Docker::connect_with_socket(path, TIMEOUT_SECS, bollard::API_DEFAULT_VERSION);
        }
        match &self.certs {
            Some(dir) => Docker::connect_with_ssl(
                &self.url,
                &dir.join("key.pem"),
                &dir.join("cert.pem"),
                &dir.join("ca.pem"),
                TIMEOUT_SECS,
                bollard::API_DEFAULT_VERSION,
            ),
            None => Docker::connect_with_http(&self.url, TIMEOUT_SECS, bollard::API_DEFAULT_VERSION),
        }
    }
}

/// Workspaces as containers on one Docker Engine, reached like the `docker` CLI does
/// (`DOCKER_HOST`, else the local socket), at the API version both sides speak.
#[derive(Clone)]
pub struct DockerRuntime {
    pub(crate) docker: Docker,
    pub(crate) instance: String,
    node: String,
    pub(crate) settings: DockerSettings,
    own_deaths: Arc<OwnDeaths>,
    /// Held while a volume is created from a mirror, so that a start waits for the files.
    pub(crate) seeding: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for DockerRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerRuntime").field("instance", &self.instance).field("node", &self.node).finish()
    }
}

/// How long connecting may take before the engine counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long committing a machine to a snapshot image may take.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The terminal's shell: bash where the image has it, else sh.
const SHELL_PICKER: &str = "if command -v bash >/dev/null 2>&1; then exec bash; fi; exec sh";

/// Shells that, run without a script, only wait for their (never attached) TTY: they ignore
/// SIGTERM, so such a machine is stopped with SIGHUP, as a closed terminal would end it.
const SHELLS: &[&str] = &["sh", "bash", "ash", "dash", "zsh", "ksh", "mksh", "fish", "tcsh", "csh"];

impl DockerRuntime {
    /// Connects to the engine and negotiates the API version; fails with a clear reason when
    /// the engine does not answer.
    pub async fn connect(instance_id: &str, settings: DockerSettings) -> Result<Self, RuntimeError> {
        Self::connect_to(instance_id, settings, None).await
    }

    /// Connects to the engine at `endpoint` (the `DOCKER_HOST` default when `None`).
    pub async fn connect_to(
        instance_id: &str,
        settings: DockerSettings,
        endpoint: Option<&Endpoint>,
    ) -> Result<Self, RuntimeError> {
        check_instance_id(instance_id)?;
        let host = match endpoint {
            Some(endpoint) => endpoint.url.clone(),
            None => std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string()),
        };
        let unreachable =
            |why: String| RuntimeError::Engine(format!("the Docker engine at {host} is not reachable: {why}"));
        let docker = match endpoint {
            None => Docker::connect_with_defaults(),
            Some(endpoint) => endpoint.client(),
        }
        .map_err(|e| unreachable(e.to_string()))?;
        let docker = tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version())
            .await
            .map_err(|_| unreachable(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;
        let info = docker.info().await.map_err(|e| unreachable(e.to_string()))?;
        let node = info.name.filter(|n| !n.is_empty()).unwrap_or_else(|| "local".to_string());
        Ok(DockerRuntime {
            docker,
            instance: instance_id.to_string(),
            node,
            settings,
            own_deaths: Arc::default(),
            seeding: Arc::default(),
        })
    }

    pub fn instance_id(&self) -> &str {
        &self.instance
    }

    /// Removes a workspace's `/projects` volume and its snapshot images from this engine.
    pub(crate) async fn remove_volume_and_snapshots(&self, workspace_id: &str) -> Result<(), RuntimeError> {
        let filters = label_filters(&self.instance, Some(workspace_id));
        let options = ListVolumesOptionsBuilder::default().filters(&filters).build();
        let volumes = self.docker.list_volumes(Some(options)).await.map_err(engine)?;
        for volume in volumes.volumes.unwrap_or_default() {
            match self.docker.remove_volume(&volume.name, None::<RemoveVolumeOptions>).await {
                Ok(()) => {}
                Err(e) if gone_or_going(&e) => {}
                Err(e) => return Err(engine(e)),
            }
        }
        // The workspace's snapshots go with it: deleting a workspace frees what it used.
        let options = ListImagesOptionsBuilder::default().all(true).filters(&filters).build();
        for image in self.docker.list_images(Some(options)).await.map_err(engine)? {
            let options = RemoveImageOptionsBuilder::default().force(true).build();
            match self.docker.remove_image(&image.id, Some(options), None).await {
                Ok(_) => {}
                Err(e) if gone_or_going(&e) => {}
                Err(e) => return Err(engine(e)),
            }
        }
        Ok(())
    }

    /// Who the engine is: its id and its Swarm node id (engines made from one image share an
    /// id), to tell two endpoints of one engine apart.
    pub async fn engine_id(&self) -> Result<String, RuntimeError> {
        let info = self.docker.info().await.map_err(engine)?;
        let node = info.swarm.and_then(|s| s.node_id).unwrap_or_default();
        Ok(format!("{}/{node}", info.id.unwrap_or_default()))
    }

    /// The engine's host name (`docker info`'s `Name`): the node every machine runs on.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// This instance's containers, or one workspace's of them, running or not.
    pub(crate) async fn container_ids(&self, workspace: Option<&str>) -> Result<Vec<String>, RuntimeError> {
        let filters = label_filters(&self.instance, workspace);
        let options = ListContainersOptionsBuilder::default().all(true).filters(&filters).build();
        let list = self.docker.list_containers(Some(options)).await.map_err(engine)?;
        Ok(list.into_iter().filter_map(|c| c.id).collect())
    }

    /// The containers' details; containers removed meanwhile are left out.
    async fn inspect_all(&self, ids: &[String]) -> Result<Vec<ContainerInspectResponse>, RuntimeError> {
        let found = futures::future::try_join_all(ids.iter().map(|id| async move {
            match self.docker.inspect_container(id, None).await {
                Ok(c) => Ok(Some(c)),
                Err(e) if not_found(&e) => Ok(None),
                Err(e) => Err(engine(e)),
            }
        }))
        .await?;
        Ok(found.into_iter().flatten().collect())
    }

    fn machine_runtime(&self, c: &ContainerInspectResponse) -> Option<(String, MachineRuntime)> {
        let labels = c.config.as_ref()?.labels.as_ref()?;
        let workspace = labels.get(LABEL_WORKSPACE)?.clone();
        let name = labels.get(LABEL_MACHINE)?.clone();
        let state = c.state.clone().unwrap_or_default();
        let running = state.running.unwrap_or(false);
        let address = c
            .network_settings
            .as_ref()
            .and_then(|n| n.networks.as_ref())
            .and_then(|n| n.get(&network_name(&self.instance, &workspace)))
            .and_then(|e| e.ip_address.clone())
            .filter(|a| !a.is_empty());
        let exit_reason = if running {
            None
        } else if state.status == Some(ContainerStateStatusEnum::CREATED) {
            Some("created, not started".to_string())
        } else {
            Some(exit_reason(state.exit_code, state.oom_killed.unwrap_or(false), state.error.as_deref()))
        };
        let machine = MachineRuntime {
            name,
            container_id: c.id.clone().unwrap_or_default(),
            status: if running { MachineStatus::Running } else { MachineStatus::Stopped },
            node: self.node.clone(),
            node_id: None,
            address,
            published: BTreeMap::new(),
            exit_reason,
        };
        Some((workspace, machine))
    }

    /// Workspace id → its machines, sorted by name.
    fn group(&self, containers: &[ContainerInspectResponse]) -> BTreeMap<String, Vec<MachineRuntime>> {
        let mut by_workspace: BTreeMap<String, Vec<MachineRuntime>> = BTreeMap::new();
        for (workspace, machine) in containers.iter().filter_map(|c| self.machine_runtime(c)) {
            by_workspace.entry(workspace).or_default().push(machine);
        }
        for machines in by_workspace.values_mut() {
            machines.sort_by(|a, b| a.name.cmp(&b.name));
        }
        by_workspace
    }

    /// Stops (gracefully, when asked) and removes containers. Their deaths are drydock's own
    /// doing, so the event stream leaves them out.
    async fn remove_containers(&self, ids: &[String], graceful: bool) -> Result<(), RuntimeError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.own_deaths.claim(ids.iter().map(String::as_str));
        let stop_seconds = self.settings.stop_timeout.as_secs_f64().ceil() as i32;
        let results = futures::future::join_all(ids.iter().map(|id| async move {
            if graceful {
                let options = StopContainerOptionsBuilder::default().t(stop_seconds).build();
                if let Err(e) = self.docker.stop_container(id, Some(options)).await
                    && !gone_or_going(&e)
                {
                    tracing::warn!(container = %id, error = %e, "stopping a container failed; removing it by force");
                }
            }
            let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
            match self.docker.remove_container(id, Some(options)).await {
                Ok(()) => Ok(()),
                Err(e) if gone_or_going(&e) => Ok(()),
                Err(e) => Err(engine(e)),
            }
        }))
        .await;
        self.own_deaths.finish(ids.iter().map(String::as_str));
        results.into_iter().collect()
    }

    /// The image's entrypoint and command; pulls the image when the engine lacks it.
    async fn ensure_image(
        &self,
        image: &str,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<ImageCommand, RuntimeError> {
        let unavailable = |reason: String| RuntimeError::ImageUnavailable { image: image.to_string(), reason };
        match self.docker.inspect_image(image).await {
            Ok(found) => {
                progress(format!("image {image}: present"));
                return Ok(ImageCommand::of(found.config));
            }
            Err(e) if not_found(&e) => {}
            Err(e) if status(&e) == Some(400) => return Err(unavailable(reason(&e))),
            Err(e) => return Err(engine(e)),
        }
        progress(format!("image {image}: pulling"));
        let (repository, tag) = split_reference(image);
        let options = CreateImageOptionsBuilder::default().from_image(&repository).tag(&tag).build();
        // bollard's request timeout (2 minutes) must not cut a longer pull short.
        let docker = self.docker.clone().with_timeout(self.settings.pull_timeout + Duration::from_secs(5));
        let pull = docker.create_image(Some(options), None, None).try_for_each(|_| async { Ok(()) });
        match tokio::time::timeout(self.settings.pull_timeout, pull).await {
            Err(_) => {
                return Err(unavailable(format!("the pull did not finish within {:?}", self.settings.pull_timeout)));
            }
            Ok(Err(e)) => return Err(unavailable(reason(&e))),
            Ok(Ok(())) => {}
        }
        let pulled = self.docker.inspect_image(image).await.map_err(|e| unavailable(reason(&e)))?;
        progress(format!("image {image}: pulled"));
        Ok(ImageCommand::of(pulled.config))
    }

    /// Creates the workspace's network when missing; says whether it did.
    async fn ensure_network(&self, workspace: &str) -> Result<bool, RuntimeError> {
        let name = network_name(&self.instance, workspace);
        match self.docker.inspect_network(&name, None).await {
            Ok(_) => Ok(false),
            Err(e) if not_found(&e) => {
                let request = NetworkCreateRequest {
                    name,
                    driver: Some("bridge".to_string()),
                    labels: Some(labels(&self.instance, workspace, None)),
                    ..Default::default()
                };
                self.docker.create_network(request).await.map_err(engine)?;
                Ok(true)
            }
            Err(e) => Err(engine(e)),
        }
    }

    /// Creates the workspace's `/projects` volume when missing, from its mirror when
    /// `projects_seed` has one; says whether it made an empty one. A volume made from a
    /// mirror holds the user's files (the mirror is gone): it counts as one that existed, so
    /// a failed start keeps it.
    pub(crate) async fn ensure_volume(&self, workspace: &str) -> Result<bool, RuntimeError> {
        let seed_root = self.settings.projects_seed.as_deref().filter(|root| {
            // The seeding's own helper mounts the volume it just created: no waiting on itself.
            root.join(workspace).is_dir() && !crate::projects_sync::seeding(workspace)
        });
        let Some(seed_root) = seed_root else { return self.create_volume(workspace).await };
        let _seeding = self.seeding.lock().await;
        // Boxed: seeding mounts the volume through a helper, which comes back here.
        let seeded = Box::pin(self.seed_new_volume(workspace, seed_root)).await?;
        Ok(seeded == crate::projects_sync::Seeded::Empty)
    }

    /// Creates the workspace's `/projects` volume when missing; says whether it did.
    pub(crate) async fn create_volume(&self, workspace: &str) -> Result<bool, RuntimeError> {
        let name = volume_name(&self.instance, workspace);
        match self.docker.inspect_volume(&name).await {
            Ok(_) => Ok(false),
            Err(e) if not_found(&e) => {
                let request = VolumeCreateRequest {
                    name: Some(name),
                    labels: Some(labels(&self.instance, workspace, None)),
                    ..Default::default()
                };
                self.docker.create_volume(request).await.map_err(engine)?;
                Ok(true)
            }
            Err(e) => Err(engine(e)),
        }
    }

    fn container_body(
        &self,
        workspace: &str,
        machine: &MachineSpec,
        image: &str,
        command: &ImageCommand,
    ) -> ContainerCreateBody {
        let network = network_name(&self.instance, workspace);
        let memory = (machine.memory_bytes > 0).then(|| i64::try_from(machine.memory_bytes).unwrap_or(i64::MAX));
        let ports: Vec<String> = machine.ports.iter().map(|p| format!("{p}/tcp")).collect();
        ContainerCreateBody {
            image: Some(image.to_string()),
            hostname: Some(machine.name.clone()),
            env: Some(machine.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            cmd: machine.command.clone(),
            entrypoint: machine.entrypoint.clone(),
            exposed_ports: (!ports.is_empty()).then_some(ports),
            labels: Some(labels(&self.instance, workspace, Some(&machine.name))),
            // A command that would exit at once (a plain shell) keeps running on a TTY whose
            // stdin stays open; nobody attaches, so the master can go without taking it along.
            tty: Some(true),
            open_stdin: Some(true),
            attach_stdin: Some(false),
            attach_stdout: Some(false),
            attach_stderr: Some(false),
            stop_signal: command.stop_signal(machine),
            host_config: Some(HostConfig {
                memory,
                memory_swap: memory,
                init: Some(true),
                network_mode: Some(network.clone()),
                mounts: machine.projects.then(|| {
                    vec![Mount {
                        target: Some(PROJECTS_PATH.to_string()),
                        source: Some(volume_name(&self.instance, workspace)),
                        typ: Some(MountType::VOLUME),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network,
                    EndpointSettings { aliases: Some(vec![machine.name.clone()]), ..Default::default() },
                )])),
            }),
            ..Default::default()
        }
    }

    /// The error of a start whose machine stopped: its exit reason and its last output.
    async fn died_during_start(&self, machine: &str, container: &ContainerInspectResponse) -> RuntimeError {
        let state = container.state.clone().unwrap_or_default();
        let why = exit_reason(state.exit_code, state.oom_killed.unwrap_or(false), state.error.as_deref());
        let id = container.id.clone().unwrap_or_default();
        let options = LogsOptionsBuilder::default().stdout(true).stderr(true).tail("5").build();
        let logs: Vec<LogOutput> =
            self.docker.logs(&id, Some(options)).take(50).filter_map(|l| async { l.ok() }).collect().await;
        let mut output = String::new();
        for line in &logs {
            output.push_str(&String::from_utf8_lossy(line.as_ref()));
        }
        let output = output.trim();
        if output.is_empty() {
            RuntimeError::Engine(format!("machine {machine} stopped during start: {why}"))
        } else {
            let output: String = output.chars().take(500).collect();
            RuntimeError::Engine(format!("machine {machine} stopped during start: {why}; its last output: {output}"))
        }
    }

    async fn start_machines(
        &self,
        spec: &RuntimeSpec,
        order: &[&MachineSpec],
        made: &mut Made,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<RuntimeInfo, RuntimeError> {
        let workspace = spec.workspace_id.as_str();
        let mut commands: HashMap<String, ImageCommand> = HashMap::new();
        for machine in order {
            let image = spec.images.get(&machine.name).unwrap_or(&machine.image);
            if !commands.contains_key(image) {
                let command = self.ensure_image(image, progress).await?;
                commands.insert(image.clone(), command);
            }
        }

        made.network = self.ensure_network(workspace).await?;
        let network = network_name(&self.instance, workspace);
        progress(format!("network {network}: {}", if made.network { "created" } else { "exists" }));
        made.volume = self.ensure_volume(workspace).await?;
        let volume = volume_name(&self.instance, workspace);
        progress(format!("volume {volume}: {}", if made.volume { "created" } else { "exists" }));

        for machine in order {
            let m = machine.name.as_str();
            let image = spec.images.get(m).unwrap_or(&machine.image);
            let name = container_name(&self.instance, workspace, m);
            let body = self.container_body(workspace, machine, image, &commands[image]);
            let options = CreateContainerOptionsBuilder::default().name(&name).build();
            let created = self
                .docker
                .create_container(Some(options), body)
                .await
                .map_err(|e| RuntimeError::Engine(format!("machine {m}: {}", reason(&e))))?;
            made.containers.push(created.id.clone());
            self.own_deaths.claim([created.id.as_str()]);
            progress(format!("machine {m}: container {name} created from {image}"));
            self.docker
                .start_container(&created.id, None)
                .await
                .map_err(|e| RuntimeError::Engine(format!("machine {m} did not start: {}", reason(&e))))?;
            let started = self.docker.inspect_container(&created.id, None).await.map_err(engine)?;
            if !started.state.as_ref().and_then(|s| s.running).unwrap_or(false) {
                return Err(self.died_during_start(m, &started).await);
            }
            progress(format!("machine {m}: running"));
        }

        // Commands that fail at once end within moments: wait that long, ending early when a
        // machine stops, then check every machine.
        if !self.settings.start_settle.is_zero() && !made.containers.is_empty() {
            let waits = made.containers.iter().map(|id| {
                let options = WaitContainerOptionsBuilder::default().condition("not-running").build();
                let mut ended = self.docker.wait_container(id, Some(options)).boxed();
                async move { ended.next().await }.boxed()
            });
            let _ = tokio::time::timeout(self.settings.start_settle, futures::future::select_all(waits)).await;
        }
        // From this check on, a machine that dies is reported: before it, it fails the start.
        let checked = SystemTime::now();
        let containers = self.inspect_all(&made.containers).await?;
        for container in &containers {
            if !container.state.as_ref().and_then(|s| s.running).unwrap_or(false) {
                let machine = container
                    .config
                    .as_ref()
                    .and_then(|c| c.labels.as_ref())
                    .and_then(|l| l.get(LABEL_MACHINE))
                    .cloned()
                    .unwrap_or_default();
                return Err(self.died_during_start(&machine, container).await);
            }
        }
        let machines = self.group(&containers).remove(workspace).unwrap_or_default();
        if machines.len() != order.len() {
            return Err(RuntimeError::Engine("a machine's container was removed during the start".to_string()));
        }
        self.own_deaths.release(made.containers.iter().map(String::as_str), checked);
        Ok(RuntimeInfo { workspace_id: workspace.to_string(), machines, node: None })
    }

    /// Removes what a failed start made; what existed before stays.
    async fn roll_back(&self, workspace: &str, made: Made) {
        if let Err(e) = self.remove_containers(&made.containers, false).await {
            tracing::warn!(workspace, error = %e, "removing the containers of a failed start");
        }
        if made.network {
            let name = network_name(&self.instance, workspace);
            if let Err(e) = self.docker.remove_network(&name).await
                && !gone_or_going(&e)
            {
                tracing::warn!(workspace, error = %e, "removing the network of a failed start");
            }
        }
        if made.volume {
            let name = volume_name(&self.instance, workspace);
            if let Err(e) = self.docker.remove_volume(&name, None::<RemoveVolumeOptions>).await
                && !gone_or_going(&e)
            {
                tracing::warn!(workspace, error = %e, "removing the volume of a failed start");
            }
        }
    }

    /// The id of a machine's container when it runs, else `NotRunning`. Found by its labels,
    /// so that a Swarm task's container (named by Swarm) is found on its node's engine too.
    pub(crate) async fn running_container(&self, workspace: &str, machine: &str) -> Result<String, RuntimeError> {
        let not_running = || RuntimeError::NotRunning(format!("machine {machine} of workspace {workspace}"));
        if check_name_part("workspace id", workspace).is_err() || check_name_part("machine", machine).is_err() {
            return Err(not_running());
        }
        let mut filters = label_filters(&self.instance, Some(workspace));
        filters.entry("label".to_string()).or_default().push(format!("{LABEL_MACHINE}={machine}"));
        filters.insert("status".to_string(), vec!["running".to_string()]);
        let options = ListContainersOptionsBuilder::default().filters(&filters).build();
        let list = self.docker.list_containers(Some(options)).await.map_err(engine)?;
        list.into_iter().find_map(|c| c.id).ok_or_else(not_running)
    }

    /// An exec's exit code, once the engine has it (it may lag the end of the output a moment).
    async fn exec_exit_code(&self, exec_id: &str) -> Result<i64, RuntimeError> {
        for _ in 0..200 {
            let inspected = self.docker.inspect_exec(exec_id).await.map_err(engine)?;
            if inspected.running != Some(true)
                && let Some(code) = inspected.exit_code
            {
                return Ok(code);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Err(RuntimeError::Engine("the engine did not report the command's exit code".to_string()))
    }
}

/// What a start made, so that a failed start removes exactly that.
#[derive(Default)]
struct Made {
    containers: Vec<String>,
    network: bool,
    volume: bool,
}

/// An image's own entrypoint and command.
#[derive(Debug, Clone, Default)]
pub(crate) struct ImageCommand {
    entrypoint: Vec<String>,
    cmd: Vec<String>,
}

impl ImageCommand {
    pub(crate) fn of(config: Option<bollard::models::ImageConfig>) -> Self {
        let config = config.unwrap_or_default();
        ImageCommand { entrypoint: config.entrypoint.unwrap_or_default(), cmd: config.cmd.unwrap_or_default() }
    }

    /// The command line the engine will run, following its rules for overriding an image's
    /// entrypoint and command: a new entrypoint drops the image's command.
    fn effective(&self, machine: &MachineSpec) -> Vec<String> {
        let (entrypoint, cmd) = match &machine.entrypoint {
            Some(e) if !e.is_empty() => (e.clone(), machine.command.clone().unwrap_or_default()),
            Some(_) => (Vec::new(), machine.command.clone().unwrap_or_else(|| self.cmd.clone())),
            None => (self.entrypoint.clone(), machine.command.clone().unwrap_or_else(|| self.cmd.clone())),
        };
        entrypoint.into_iter().chain(cmd).collect()
    }

    /// `SIGHUP` for a machine whose command is a shell waiting on its TTY (it ignores
    /// SIGTERM); `None` keeps the image's stop signal.
    pub(crate) fn stop_signal(&self, machine: &MachineSpec) -> Option<String> {
        let argv = self.effective(machine);
        let waits_for_tty = argv.first().is_some_and(|program| {
            let program = program.rsplit('/').next().unwrap_or(program);
            SHELLS.contains(&program) && argv[1..].iter().all(|a| a.starts_with('-') && a != "-c")
        });
        waits_for_tty.then(|| "SIGHUP".to_string())
    }
}

/// An image reference as the pull API wants it: repository and tag (or digest).
pub(crate) fn split_reference(image: &str) -> (String, String) {
    if let Some((repository, digest)) = image.split_once('@') {
        return (repository.to_string(), digest.to_string());
    }
    let name_start = image.rfind('/').map_or(0, |i| i + 1);
    match image[name_start..].rfind(':') {
        Some(i) => (image[..name_start + i].to_string(), image[name_start + i + 1..].to_string()),
        None => (image.to_string(), "latest".to_string()),
    }
}

/// The machines in start order: every machine after the machines it depends on.
pub(crate) fn start_order(machines: &[MachineSpec]) -> Result<Vec<&MachineSpec>, RuntimeError> {
    let mut by_name: BTreeMap<&str, &MachineSpec> = BTreeMap::new();
    for machine in machines {
        if by_name.insert(machine.name.as_str(), machine).is_some() {
            return Err(RuntimeError::Engine(format!("machine {} is defined twice", machine.name)));
        }
    }
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        machine: &'a MachineSpec,
        by_name: &BTreeMap<&str, &'a MachineSpec>,
        marks: &mut HashMap<&'a str, Mark>,
        order: &mut Vec<&'a MachineSpec>,
    ) -> Result<(), RuntimeError> {
        match marks.get(machine.name.as_str()) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                return Err(RuntimeError::Engine(format!("machine {} depends on itself", machine.name)));
            }
            None => {}
        }
        marks.insert(&machine.name, Mark::Visiting);
        for dependency in &machine.depends_on {
            let Some(next) = by_name.get(dependency.as_str()) else {
                return Err(RuntimeError::Engine(format!(
                    "machine {} depends on {dependency}, which the workspace does not have",
                    machine.name
                )));
            };
            visit(next, by_name, marks, order)?;
        }
        marks.insert(&machine.name, Mark::Done);
        order.push(machine);
        Ok(())
    }
    let mut marks = HashMap::new();
    let mut order = Vec::with_capacity(machines.len());
    for machine in machines {
        visit(machine, &by_name, &mut marks, &mut order)?;
    }
    Ok(order)
}

#[async_trait]
impl Runtime for DockerRuntime {
    fn kind(&self) -> &'static str {
        "docker"
    }

    async fn start(
        &self,
        spec: &RuntimeSpec,
        progress: &(dyn Fn(String) + Send + Sync),
    ) -> Result<RuntimeInfo, RuntimeError> {
        let workspace = check_spec(spec)?;
        let order = start_order(&spec.machines)?;

        // Containers are disposable: what a died machine or an interrupted start left goes.
        let leftovers = self.container_ids(Some(workspace)).await?;
        if !leftovers.is_empty() {
            progress(format!("removing {} container(s) left from before", leftovers.len()));
            self.remove_containers(&leftovers, true).await?;
        }

        let mut made = Made::default();
        match self.start_machines(spec, &order, &mut made, progress).await {
            Ok(info) => {
                progress("ready".to_string());
                Ok(info)
            }
            Err(e) => {
                progress(format!("start failed: {e}"));
                self.roll_back(workspace, made).await;
                Err(e)
            }
        }
    }

    async fn stop(&self, workspace_id: &str) -> Result<(), RuntimeError> {
        let ids = self.container_ids(Some(workspace_id)).await?;
        self.remove_containers(&ids, true).await
    }

    async fn remove(&self, workspace_id: &str) -> Result<(), RuntimeError> {
        self.stop(workspace_id).await?;
        let filters = label_filters(&self.instance, Some(workspace_id));
        let options = ListNetworksOptionsBuilder::default().filters(&filters).build();
        for network in self.docker.list_networks(Some(options)).await.map_err(engine)? {
            let Some(id) = network.id else { continue };
            match self.docker.remove_network(&id).await {
                Ok(()) => {}
                Err(e) if gone_or_going(&e) => {}
                Err(e) => return Err(engine(e)),
            }
        }
        self.remove_volume_and_snapshots(workspace_id).await
    }

    async fn inspect(&self, workspace_id: &str) -> Result<Option<RuntimeInfo>, RuntimeError> {
        let ids = self.container_ids(Some(workspace_id)).await?;
        let containers = self.inspect_all(&ids).await?;
        Ok(self.group(&containers).remove(workspace_id).map(|machines| RuntimeInfo {
            workspace_id: workspace_id.to_string(),
            machines,
            node: None,
        }))
    }

    async fn list(&self) -> Result<Vec<RuntimeInfo>, RuntimeError> {
        let ids = self.container_ids(None).await?;
        let containers = self.inspect_all(&ids).await?;
        Ok(self
            .group(&containers)
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
        let container = self.running_container(workspace_id, machine).await?;
        let run = async {
            let options = CreateExecOptions {
                cmd: Some(command.to_vec()),
                attach_stdin: Some(false),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                tty: Some(false),
                ..Default::default()
            };
            let exec = self.docker.create_exec(&container, options).await.map_err(|e| match status(&e) {
                Some(409) => RuntimeError::NotRunning(format!("machine {machine} of workspace {workspace_id}")),
                _ => engine(e),
            })?;
            let start = StartExecOptions { detach: false, tty: false, output_capacity: None };
            let StartExecResults::Attached { mut output, .. } =
                self.docker.start_exec(&exec.id, Some(start)).await.map_err(engine)?
            else {
                return Err(RuntimeError::Engine("the engine ran the command detached".to_string()));
            };
            let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
            while let Some(chunk) = output.next().await {
                match chunk.map_err(engine)? {
                    LogOutput::StdOut { message } | LogOutput::Console { message } => {
                        stdout.extend_from_slice(&message)
                    }
                    LogOutput::StdErr { message } => stderr.extend_from_slice(&message),
                    LogOutput::StdIn { .. } => {}
                }
            }
            let exit_code = self.exec_exit_code(&exec.id).await?;
            Ok(ExecOutput {
                exit_code,
                stdout: String::from_utf8_lossy(&stdout).into_owned(),
                stderr: String::from_utf8_lossy(&stderr).into_owned(),
            })
        };
        tokio::time::timeout(timeout, run).await.map_err(|_| RuntimeError::Timeout(timeout))?
    }

    async fn terminal(
        &self,
        workspace_id: &str,
        machine: &str,
        cols: u16,
        rows: u16,
    ) -> Result<Terminal, RuntimeError> {
        let container = self.running_container(workspace_id, machine).await?;
        let options = CreateExecOptions {
            cmd: Some(vec!["/bin/sh".to_string(), "-c".to_string(), SHELL_PICKER.to_string()]),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            tty: Some(true),
            env: Some(vec!["TERM=xterm-256color".to_string()]),
            working_dir: Some(PROJECTS_PATH.to_string()),
            ..Default::default()
        };
        let exec = self.docker.create_exec(&container, options).await.map_err(|e| match status(&e) {
            Some(409) => RuntimeError::NotRunning(format!("machine {machine} of workspace {workspace_id}")),
            _ => engine(e),
        })?;
        let start = StartExecOptions { detach: false, tty: true, output_capacity: None };
        let StartExecResults::Attached { output, input } =
            self.docker.start_exec(&exec.id, Some(start)).await.map_err(engine)?
        else {
            return Err(RuntimeError::Engine("the engine ran the shell detached".to_string()));
        };
        let docker = self.docker.clone();
        let exec_id = exec.id.clone();
        let resize = move |cols: u16, rows: u16| {
            let docker = docker.clone();
            let exec_id = exec_id.clone();
            async move {
                let options = ResizeExecOptionsBuilder::default().w(i32::from(cols)).h(i32::from(rows)).build();
                docker.resize_exec(&exec_id, options).await.map_err(engine)
            }
            .boxed()
        };
        // The first resize can come before the engine has the shell's TTY; try a few times.
        let mut sized = resize(cols, rows).await;
        for _ in 0..20 {
            if sized.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
            sized = resize(cols, rows).await;
        }
        if let Err(e) = sized {
            tracing::debug!(error = %e, "sizing a new terminal");
        }
        let output = output.map(|chunk| chunk.map(|o| o.into_bytes().to_vec()).map_err(engine)).boxed();
        // The engine may report the exec running for a moment after its output closed.
        let (docker, exec_id) = (self.docker.clone(), exec.id.clone());
        let exit_code = async move {
            for _ in 0..40 {
                let state = docker.inspect_exec(&exec_id).await.ok()?;
                if state.running != Some(true) {
                    return state.exit_code;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            None
        }
        .boxed();
        Ok(Terminal { output, input, resize: Box::new(resize), exit_code })
    }

    async fn snapshot(&self, workspace_id: &str) -> Result<BTreeMap<String, String>, RuntimeError> {
        let ids = self.container_ids(Some(workspace_id)).await?;
        let containers = self.inspect_all(&ids).await?;
        let running: Vec<(String, String)> = self
            .group(&containers)
            .remove(workspace_id)
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m.status == MachineStatus::Running)
            .map(|m| (m.name, m.container_id))
            .collect();
        if running.is_empty() {
            return Err(RuntimeError::NotRunning(format!("workspace {workspace_id}")));
        }
        let tag = format!("snapshot-{}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
        let mut images = BTreeMap::new();
        for (machine, container) in running {
            let repository = snapshot_repository(&self.instance, workspace_id, &machine);
            let options = CommitContainerOptionsBuilder::default()
                .container(&container)
                .repo(&repository)
                .tag(&tag)
                .pause(true)
                .build();
            let config = ContainerConfig {
                labels: Some(labels(&self.instance, workspace_id, Some(&machine))),
                ..Default::default()
            };
            // A large machine takes long to commit; the engine answers only when it is done.
            let docker = self.docker.clone().with_timeout(COMMIT_TIMEOUT);
            docker.commit_container(options, config).await.map_err(engine)?;
            images.insert(machine, format!("{repository}:{tag}"));
        }
        Ok(images)
    }

    async fn memory_total(&self) -> Result<u64, RuntimeError> {
        let info = self.docker.info().await.map_err(engine)?;
        info.mem_total
            .and_then(|m| u64::try_from(m).ok())
            .filter(|m| *m > 0)
            .ok_or_else(|| RuntimeError::Engine("the engine does not report its memory".to_string()))
    }

    /// The one engine, as the only node: its machines' memory limits count as reserved.
    async fn nodes(&self) -> Result<Vec<NodeInfo>, RuntimeError> {
        let info = self.docker.info().await.map_err(engine)?;
        let ids = self.container_ids(None).await?;
        let containers = self.inspect_all(&ids).await?;
        let running = containers.iter().filter(|c| c.state.as_ref().and_then(|s| s.running).unwrap_or(false));
        let ram_reserved =
            running.clone().filter_map(|c| c.host_config.as_ref()?.memory).filter_map(|m| u64::try_from(m).ok()).sum();
        let mut workspaces: Vec<String> =
            running.filter_map(|c| c.config.as_ref()?.labels.as_ref()?.get(LABEL_WORKSPACE).cloned()).collect();
        workspaces.sort();
        workspaces.dedup();
        Ok(vec![NodeInfo {
            id: info.id.unwrap_or_default(),
            hostname: self.node.clone(),
            address: std::env::var("DOCKER_HOST").unwrap_or_else(|_| "unix:///var/run/docker.sock".to_string()),
            state: "ready".to_string(),
            availability: Availability::Active,
            manager: true,
            ram_total: info.mem_total.and_then(|m| u64::try_from(m).ok()).unwrap_or(0),
            ram_reserved,
            engine: true,
            workspaces,
        }])
    }

    async fn events(&self) -> Result<BoxStream<'static, RuntimeEvent>, RuntimeError> {
        self.docker.ping().await.map_err(engine)?;
        Ok(machine_deaths(self.docker.clone(), self.instance.clone(), self.own_deaths.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(name: &str, depends_on: &[&str]) -> MachineSpec {
        MachineSpec {
            name: name.to_string(),
            image: "img".to_string(),
            memory_bytes: 1 << 26,
            env: BTreeMap::new(),
            command: None,
            entrypoint: None,
            ports: vec![],
            depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
            dev: false,
            projects: true,
        }
    }

    #[test]
    fn dependencies_start_first() {
        let machines = vec![machine("app", &["db", "cache"]), machine("cache", &["db"]), machine("db", &[])];
        let order: Vec<&str> = start_order(&machines).unwrap().iter().map(|m| m.name.as_str()).collect();
        assert_eq!(order, ["db", "cache", "app"]);
        let cycle = vec![machine("a", &["b"]), machine("b", &["a"])];
        assert!(start_order(&cycle).is_err());
        assert!(start_order(&[machine("a", &["nope"])]).is_err());
        assert!(start_order(&[machine("a", &[]), machine("a", &[])]).is_err());
    }

    #[test]
    fn references() {
        assert_eq!(split_reference("busybox"), ("busybox".into(), "latest".into()));
        assert_eq!(split_reference("busybox:1.36"), ("busybox".into(), "1.36".into()));
        assert_eq!(split_reference("reg:5000/team/img"), ("reg:5000/team/img".into(), "latest".into()));
        assert_eq!(split_reference("reg:5000/img:v1"), ("reg:5000/img".into(), "v1".into()));
        assert_eq!(split_reference("img@sha256:abc"), ("img".into(), "sha256:abc".into()));
    }

    #[test]
    fn effective_command_follows_the_engine() {
        let image = ImageCommand { entrypoint: vec!["/entry".into()], cmd: vec!["/bin/sh".into()] };
        let mut m = machine("m", &[]);
        assert_eq!(image.effective(&m), ["/entry", "/bin/sh"]);
        m.command = Some(vec!["run".into()]);
        assert_eq!(image.effective(&m), ["/entry", "run"]);
        m.entrypoint = Some(vec!["/other".into()]);
        m.command = None;
        assert_eq!(image.effective(&m), ["/other"]);
        m.entrypoint = Some(vec![]);
        assert_eq!(image.effective(&m), ["/bin/sh"]);
    }
}
