//! Who may do what with a workspace, and its life in the store. Every route checks its
//! action: `read` to see, `run` to start/stop/snapshot, `use` for terminal, exec and
//! proxy, `configure` to update, `delete` to delete, `setPermissions` to share. A caller
//! without `read` is told the workspace does not exist. Administrators (`manageSystem`) may
//! list, read, stop and delete any workspace by their role; that power is never stored as a
//! workspace permission.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;

use super::activity::{self, ActivityLog};
use super::config::WorkspaceConfig;
use super::events::{EventBus, WorkspaceEvent};
use super::{
    DOMAIN_WORKSPACE, MachineState, ServerUrl, Stack, WORKSPACE_ACTIONS, Workspace, WorkspaceFilter, WorkspaceRuntime,
    WorkspaceStatus, spec,
};
use crate::audit_log::{Actor, NewEvent, Target};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::ids;
use crate::limits::{self, ResourceLimits, StartRequest};
use crate::model::{MANAGE_SYSTEM, Page, Permission, Principal};
use crate::runtime::{
    ExecOutput, MachineStatus, Runtime, RuntimeError, RuntimeEvent, RuntimeInfo, RuntimeSpec, Terminal,
};
use crate::store::{Conflict, Store, StoreError};
use crate::system::MaintenanceSwitch;

pub const READ: &str = "read";
pub const USE: &str = "use";
pub const RUN: &str = "run";
pub const CONFIGURE: &str = "configure";
pub const SET_PERMISSIONS: &str = "setPermissions";
pub const DELETE: &str = "delete";
/// The attribute that records the latest snapshot: machine name → image, as JSON.
pub const SNAPSHOT_ATTRIBUTE: &str = "snapshot";
/// The attribute recording the node that holds the workspace's `/projects` (Swarm).
pub const NODE_ATTRIBUTE: &str = "node";

#[derive(Debug, Clone)]
pub struct WorkspaceSettings {
    /// Memory of a machine whose config names none.
    pub default_machine_memory: u64,
    /// The most memory one workspace may ask for, in MB (`None`: no limit).
    pub max_workspace_ram_mb: Option<u64>,
    /// The memory workspaces run in, in MB (`None`: ask the engine).
    pub host_ram_mb: Option<u64>,
    /// The share of it running workspaces may reserve together.
    pub host_ram_percent: u32,
    /// Starts that run at once; more wait in a queue.
    pub start_concurrency: usize,
    /// How long before an idle stop its warning comes.
    pub idle_warning: Duration,
}

impl WorkspaceSettings {
    pub fn from_config(config: &crate::Config) -> Self {
        WorkspaceSettings {
            default_machine_memory: config.runtime.machine_memory_mb.saturating_mul(1 << 20),
            max_workspace_ram_mb: config.limits.workspace.ram.limit(),
            host_ram_mb: config.limits.host.ram.limit(),
            host_ram_percent: config.limits.host.ram_percent,
            start_concurrency: config.limits.workspace.start_concurrency.max(1) as usize,
            idle_warning: config.limits.workspace.idle_warning.0,
        }
    }
}

/// A workspace with what the caller may do with it.
pub struct Access {
    pub workspace: Workspace,
    pub actions: Vec<String>,
    /// The caller holds `manageSystem` (may read, stop and delete any workspace).
    pub admin: bool,
}

impl Access {
    /// Checks one action; administrators pass for `read`, `run` (stop only: callers decide)
    /// and `delete` by their role.
    pub fn require(&self, action: &str) -> Result<()> {
        let by_role = self.admin && matches!(action, READ | DELETE);
        if by_role || self.actions.iter().any(|a| a == action) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!("this needs the workspace permission '{action}'")))
        }
    }
}

pub struct Workspaces {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    runtime: Arc<dyn Runtime>,
    limits: Arc<ResourceLimits>,
    events: EventBus,
    settings: WorkspaceSettings,
    /// Starts that may talk to the engine at once (`start_concurrency`).
    start_slots: tokio::sync::Semaphore,
    /// Admitted starts waiting for a slot.
    queued: AtomicUsize,
    /// The engine's memory in MB, once known.
    engine_ram_mb: Mutex<Option<u64>>,
    /// When each running workspace was last used, for the idle timeout.
    activity: ActivityLog,
    /// Maintenance mode: users' creates and starts are refused while it is on.
    maintenance: Arc<MaintenanceSwitch>,
}

fn not_found(key: &str) -> Error {
    Error::NotFound(format!("workspace {key} not found"))
}

impl Workspaces {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        runtime: Arc<dyn Runtime>,
        limits: Arc<ResourceLimits>,
        settings: WorkspaceSettings,
        maintenance: Arc<MaintenanceSwitch>,
    ) -> Self {
        Workspaces {
            store,
            clock,
            runtime,
            limits,
            events: EventBus::default(),
            start_slots: tokio::sync::Semaphore::new(settings.start_concurrency.max(1)),
            queued: AtomicUsize::new(0),
            engine_ram_mb: Mutex::new(None),
            activity: ActivityLog::default(),
            settings,
            maintenance,
        }
    }

    pub fn events(&self) -> &EventBus {
        &self.events
    }

    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    /// An audit event about a workspace, now.
    fn event(&self, actor: Actor, action: &str, workspace: &Workspace) -> NewEvent {
        NewEvent::new(self.clock.now(), actor, action, Target::workspace(workspace))
    }

    /// Records that a terminal, SSH or proxy session (`kind`) on a workspace opened or
    /// closed. A failure to record is logged, never fatal to the session.
    pub async fn record_session(&self, caller: &Principal, workspace_id: &str, kind: &str, opened: bool) {
        let name = match self.store.workspace(workspace_id).await {
            Ok(Some(w)) => format!("{}:{}", w.namespace, w.config.name),
            _ => String::new(),
        };
        let action = format!("{kind}.{}", if opened { "open" } else { "close" });
        let event =
            NewEvent::new(self.clock.now(), caller.into(), &action, Target::new("workspace", workspace_id, name))
                .with("session", &caller.credential_id);
        if let Err(e) = self.store.append_event(&event).await {
            tracing::error!(workspace = %workspace_id, error = %e, "cannot record a session in the audit log");
        }
    }

    fn now_text(&self) -> String {
        self.clock.now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    }

    fn emit(
        &self,
        workspace_id: &str,
        kind: &'static str,
        status: Option<WorkspaceStatus>,
        message: impl Into<String>,
    ) {
        self.events.publish(WorkspaceEvent {
            workspace_id: workspace_id.to_string(),
            kind,
            status,
            message: message.into(),
            time: self.now_text(),
        });
    }

    pub fn settings(&self) -> &WorkspaceSettings {
        &self.settings
    }

    /// The workspace by id or `namespace:name`, with the caller's actions on it. Without
    /// `read` (and not an administrator) the caller is told it does not exist.
    pub async fn access(&self, caller: &Principal, key: &str) -> Result<Access> {
        let found = match key.split_once(':') {
            Some((namespace, name)) => self.store.workspace_by_name(namespace, name).await?,
            None => self.store.workspace(key).await?,
        };
        let workspace = found.ok_or_else(|| not_found(key))?;
        let actions = self
            .store
            .permission(&caller.user.id, DOMAIN_WORKSPACE, Some(&workspace.id))
            .await?
            .map(|p| p.actions)
            .unwrap_or_default();
        let admin = caller.has_system(MANAGE_SYSTEM);
        if !admin && !actions.iter().any(|a| a == READ) {
            return Err(not_found(key));
        }
        Ok(Access { workspace, actions, admin })
    }

    /// Refuses a config one of whose environments asks more memory than one workspace may have.
    fn check_size(&self, config: &WorkspaceConfig) -> Result<()> {
        let Some(max) = self.settings.max_workspace_ram_mb else { return Ok(()) };
        for env in config.environments.keys() {
            let need = spec::ram_mb(&spec::machines(config, env, self.settings.default_machine_memory)?);
            if need > max {
                return Err(Error::Conflict(format!(
                    "Workspace {} needs {need}mb of RAM (environment {env}); one workspace may have at most {max}mb.",
                    config.name
                )));
            }
        }
        Ok(())
    }

    /// What running workspaces may reserve together, in MB: the configured host memory (or
    /// the engine's) times `ram_percent`. `None` when the engine cannot say (no guard then).
    async fn host_cap_mb(&self) -> Option<u64> {
        let total = match self.settings.host_ram_mb {
            Some(mb) => mb,
            None => {
                let known = *self.engine_ram_mb.lock().unwrap_or_else(|e| e.into_inner());
                match known {
                    Some(mb) => mb,
                    None => {
                        let mb = self.runtime.memory_total().await.ok()? >> 20;
                        *self.engine_ram_mb.lock().unwrap_or_else(|e| e.into_inner()) = Some(mb);
                        mb
                    }
                }
            }
        };
        Some(total.saturating_mul(u64::from(self.settings.host_ram_percent)) / 100)
    }

    /// Whether maintenance mode refuses the caller's creates and starts now (and why).
    pub fn maintenance_check(&self, caller: &Principal) -> Result<()> {
        self.maintenance.check(caller)
    }

    /// A new workspace owned by the caller (refused to users during maintenance).
    pub async fn create(&self, caller: &Principal, config: WorkspaceConfig) -> Result<Workspace> {
        self.maintenance.check(caller)?;
        spec::validate(&config, self.settings.default_machine_memory)?;
        self.check_size(&config)?;
        let now = self.clock.now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let workspace = Workspace {
            id: format!("wksp-{}", ids::random_lower(16)),
            namespace: caller.user.name.clone(),
            owner_id: caller.user.id.clone(),
            config,
            status: WorkspaceStatus::Stopped,
            runtime: None,
            attributes: BTreeMap::from([("created".to_string(), now.clone()), ("updated".to_string(), now)]),
        };
        let all: Vec<String> = WORKSPACE_ACTIONS.iter().map(|a| a.to_string()).collect();
        let owner_limits = self.limits.effective(&caller.user.id).await?;
        let admit = |usage: &crate::store::Usage| limits::admit_create(&owner_limits, usage);
        let event = self.event(caller.into(), "workspace.create", &workspace).with("name", &workspace.config.name);
        self.store.create_workspace(&workspace, &all, &admit, &event).await.map_err(name_taken)?;
        Ok(workspace)
    }

    // Stacks.

    /// The stacks offered (any signed-in user may read them).
    pub async fn stacks(&self) -> Result<Vec<Stack>> {
        Ok(self.store.stacks().await?)
    }

    /// Offers a new stack (needs `manageSystem`); its config is checked like a workspace's.
    pub async fn create_stack(&self, caller: &Principal, mut stack: Stack) -> Result<Stack> {
        caller.require_system(MANAGE_SYSTEM)?;
        super::config::validate_name(&stack.name)?;
        spec::validate(&stack.workspace_config, self.settings.default_machine_memory).map_err(|e| match e {
            Error::InvalidInput { field, message } => {
                Error::InvalidInput { field: format!("workspaceConfig.{field}"), message }
            }
            other => other,
        })?;
        stack.id = format!("stack-{}", ids::random_lower(16));
        stack.creator = caller.user.id.clone();
        stack.created = self.now_text();
        let event = NewEvent::new(
            self.clock.now(),
            caller.into(),
            "stack.create",
            Target::new("stack", &stack.id, &stack.name),
        );
        self.store.create_stack(&stack, &event).await.map_err(|e| match e {
            StoreError::Conflict(Conflict::Taken { value, .. }) => {
                Error::Taken { field: "name".into(), message: format!("a stack named '{value}' exists") }
            }
            e => e.into(),
        })?;
        Ok(stack)
    }

    pub async fn delete_stack(&self, caller: &Principal, id: &str) -> Result<()> {
        caller.require_system(MANAGE_SYSTEM)?;
        let name = self.store.stack(id).await?.map(|s| s.name).unwrap_or_default();
        let event = NewEvent::new(self.clock.now(), caller.into(), "stack.delete", Target::new("stack", id, name));
        self.store.delete_stack(id, &event).await.map_err(|e| match e {
            StoreError::NotFound(_) => Error::NotFound(format!("stack {id} not found")),
            e => e.into(),
        })
    }

    /// A new workspace from a stack's config, under the given name.
    pub async fn create_from_stack(&self, caller: &Principal, stack_id: &str, name: &str) -> Result<Workspace> {
        self.maintenance.check(caller)?;
        let stack =
            self.store.stack(stack_id).await?.ok_or_else(|| Error::NotFound(format!("stack {stack_id} not found")))?;
        let mut config = stack.workspace_config;
        config.name = name.to_string();
        self.create(caller, config).await
    }

    pub async fn get(&self, caller: &Principal, key: &str) -> Result<Workspace> {
        Ok(self.with_idle_state(self.access(caller, key).await?.workspace).await)
    }

    /// Adds a running workspace's idle clock to the attributes shown (never stored):
    /// `lastActivity`, `lastActivityKind` and, with an idle timeout, `idleStopAt`.
    async fn with_idle_state(&self, mut workspace: Workspace) -> Workspace {
        if let Some(idle) = self.idle_state(&workspace.id).await {
            workspace.attributes.insert("lastActivity".into(), text_time(idle.last_activity));
            workspace.attributes.insert("lastActivityKind".into(), idle.kind.into());
            if let Some(at) = idle.stop_at {
                workspace.attributes.insert("idleStopAt".into(), text_time(at));
            }
        }
        workspace
    }

    /// The caller's workspaces (owned and shared with them); all of them for administrators.
    pub async fn list(
        &self,
        caller: &Principal,
        status: Option<WorkspaceStatus>,
        page: Page,
    ) -> Result<(Vec<Workspace>, u64)> {
        let visible_to = (!caller.has_system(MANAGE_SYSTEM)).then(|| caller.user.id.clone());
        let (list, total) =
            self.store.list_workspaces(&WorkspaceFilter { visible_to, owner: None, status }, page).await?;
        let mut shown = Vec::with_capacity(list.len());
        for workspace in list {
            shown.push(self.with_idle_state(workspace).await);
        }
        Ok((shown, total))
    }

    /// The workspaces a user owns, for those who administer users.
    pub async fn owned_by(&self, caller: &Principal, user_id: &str) -> Result<Vec<Workspace>> {
        caller.require_system(crate::model::MANAGE_USERS)?;
        let filter = WorkspaceFilter { owner: Some(user_id.to_string()), ..Default::default() };
        Ok(self.store.list_workspaces(&filter, Page { max_items: u32::MAX, skip_count: 0 }).await?.0)
    }

    /// A new config; it applies at the next start.
    pub async fn update(&self, caller: &Principal, key: &str, config: WorkspaceConfig) -> Result<Workspace> {
        let access = self.access(caller, key).await?;
        access.require(CONFIGURE)?;
        spec::validate(&config, self.settings.default_machine_memory)?;
        self.check_size(&config)?;
        let mut workspace = access.workspace;
        let event =
            config_change(self.event(caller.into(), "workspace.update", &workspace), &workspace.config, &config);
        workspace.config = config;
        workspace
            .attributes
            .insert("updated".into(), self.clock.now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        self.store.update_workspace_config(&workspace, &event).await.map_err(name_taken)?;
        Ok(workspace)
    }

    /// Deletes a stopped workspace: its containers, network and `/projects` volume, then the
    /// workspace itself. 409 while it runs.
    pub async fn delete(&self, caller: &Principal, key: &str) -> Result<Workspace> {
        let access = self.access(caller, key).await?;
        access.require(DELETE)?;
        let workspace = access.workspace;
        if !matches!(workspace.status, WorkspaceStatus::Stopped | WorkspaceStatus::Error) {
            return Err(Error::Conflict(format!("the workspace is {}; stop it first", workspace.status.as_str())));
        }
        self.runtime.remove(&workspace.id).await.map_err(runtime_error)?;
        let event = self.event(caller.into(), "workspace.delete", &workspace);
        self.store.delete_workspace(&workspace.id, &[WorkspaceStatus::Stopped, WorkspaceStatus::Error], &event).await?;
        Ok(workspace)
    }

    /// Stops and deletes every workspace a user owns, before the user is removed (needs
    /// `manageUsers`); returns their names.
    pub async fn delete_all_owned_by(&self, caller: &Principal, user_id: &str) -> Result<Vec<String>> {
        caller.require_system(crate::model::MANAGE_USERS)?;
        let filter = WorkspaceFilter { owner: Some(user_id.to_string()), ..Default::default() };
        let (owned, _) = self.store.list_workspaces(&filter, Page { max_items: u32::MAX, skip_count: 0 }).await?;
        let mut deleted = Vec::new();
        for mut workspace in owned {
            if !matches!(workspace.status, WorkspaceStatus::Stopped | WorkspaceStatus::Error) {
                let from = workspace.status;
                workspace.status = WorkspaceStatus::Stopping;
                workspace.attributes.insert("stoppedBy".into(), caller.user.name.clone());
                let event =
                    self.event(caller.into(), "workspace.stop", &workspace).with("stoppedBy", &caller.user.name);
                if self.store.transition_workspace(&workspace, &[from], Some(&event)).await? {
                    self.finish_stop(workspace.clone()).await;
                }
            }
            self.runtime.remove(&workspace.id).await.map_err(runtime_error)?;
            let event = self.event(caller.into(), "workspace.delete", &workspace);
            let from = [WorkspaceStatus::Stopped, WorkspaceStatus::Error];
            self.store.delete_workspace(&workspace.id, &from, &event).await?;
            deleted.push(workspace.config.name);
        }
        Ok(deleted)
    }

    // Running.

    /// Starts a workspace: answers at once with the workspace in STARTING; the start goes on
    /// in the background and its progress, and the result, are events. Refused to users
    /// during maintenance (after the access checks: a hidden workspace stays hidden).
    pub async fn start(
        self: &Arc<Self>,
        caller: &Principal,
        key: &str,
        environment: Option<&str>,
        restore: bool,
    ) -> Result<Workspace> {
        let access = self.access(caller, key).await?;
        access.require(RUN)?;
        self.maintenance.check(caller)?;
        let mut workspace = access.workspace;
        let env = environment.unwrap_or(&workspace.config.default_env).to_string();
        let machines = spec::machines(&workspace.config, &env, self.settings.default_machine_memory)?;
        let images = if restore {
            let saved = workspace
                .attributes
                .get(SNAPSHOT_ATTRIBUTE)
                .ok_or_else(|| Error::Conflict("the workspace has no snapshot to restore".into()))?;
            serde_json::from_str::<BTreeMap<String, String>>(saved)
                .map_err(|e| Error::Internal(format!("the workspace's snapshot record cannot be read: {e}").into()))?
        } else {
            BTreeMap::new()
        };
        let from = [WorkspaceStatus::Stopped, WorkspaceStatus::Error];
        if !from.contains(&workspace.status) {
            return Err(Error::Conflict(format!("the workspace is {}", workspace.status.as_str())));
        }
        workspace.status = WorkspaceStatus::Starting;
        workspace.runtime = None;
        workspace.attributes.remove("errorMessage");
        workspace.attributes.insert("updated".into(), self.now_text());
        workspace.attributes.insert("startedBy".into(), caller.user.name.clone());
        // The owner's limits (not the caller's: a shared workspace runs on its owner's account).
        let owner_limits = self.limits.effective(&workspace.owner_id).await?;
        let request = StartRequest {
            label: format!("{}/{}", workspace.namespace, workspace.config.name),
            ram_mb: spec::ram_mb(&machines),
            host_cap_mb: self.host_cap_mb().await,
        };
        let spec = RuntimeSpec {
            workspace_id: workspace.id.clone(),
            machines,
            images,
            node: workspace.attributes.get(NODE_ATTRIBUTE).cloned(),
        };
        match self.runtime.check_room(&spec).await {
            Ok(()) => {}
            Err(RuntimeError::NoRoom(detail)) if caller.has_system(MANAGE_SYSTEM) => {
                return Err(Error::Conflict(format!("{OUT_OF_RESOURCES} {detail}")));
            }
            Err(RuntimeError::NoRoom(_)) => return Err(Error::Conflict(OUT_OF_RESOURCES.to_string())),
            Err(e) => return Err(runtime_error(e)),
        }
        let admit = |usage: &crate::store::Usage| limits::admit_start(&owner_limits, usage, &request);
        let event = self
            .event(caller.into(), "workspace.start", &workspace)
            .with("environment", &env)
            .with("restore", restore)
            .with("ramMb", request.ram_mb);
        if !self.store.admit_start(&workspace, &from, request.ram_mb, &admit, &event).await? {
            return Err(Error::Conflict("the workspace is being started or stopped by another request".into()));
        }
        self.emit(&workspace.id, "status", Some(WorkspaceStatus::Starting), format!("starting environment {env}"));
        let this = self.clone();
        let started = workspace.clone();
        tokio::spawn(async move { this.finish_start(started, env, spec).await });
        Ok(workspace)
    }

    async fn finish_start(&self, mut workspace: Workspace, env: String, spec: RuntimeSpec) {
        let id = workspace.id.clone();
        let progress = |line: String| self.emit(&id, "progress", None, line);
        // At most `start_concurrency` starts talk to the engine; the others wait their turn.
        let _slot = match self.start_slots.try_acquire() {
            Ok(slot) => slot,
            Err(_) => {
                let ahead = self.queued.fetch_add(1, Ordering::SeqCst);
                progress(format!(
                    "waiting in the start queue: {} start(s) running, {ahead} waiting before this one",
                    self.settings.start_concurrency
                ));
                let slot = self.start_slots.acquire().await;
                self.queued.fetch_sub(1, Ordering::SeqCst);
                let Ok(slot) = slot else { return };
                progress("left the start queue".to_string());
                slot
            }
        };
        // A stop that came while it waited ends it here.
        if let Ok(Some(now)) = self.store.workspace(&id).await
            && now.status != WorkspaceStatus::Starting
        {
            workspace.attributes = now.attributes;
            self.finish_stop(workspace).await;
            return;
        }
        let result = self.runtime.start(&spec, &progress).await;
        workspace.attributes.insert("updated".into(), self.now_text());
        match result {
            Ok(info) => {
                if let Some(node) = &info.node {
                    workspace.attributes.insert(NODE_ATTRIBUTE.into(), node.clone());
                }
                workspace.status = WorkspaceStatus::Running;
                workspace.runtime = Some(runtime_state(&workspace, &env, &info));
                match self.store.transition_workspace(&workspace, &[WorkspaceStatus::Starting], None).await {
                    Ok(true) => {
                        self.activity.begin(&id, &workspace.owner_id, self.clock.now(), activity::START);
                        self.emit(&id, "status", Some(WorkspaceStatus::Running), "running");
                    }
                    // A stop arrived while starting: it is finished here.
                    Ok(false) => self.finish_stop(workspace).await,
                    Err(e) => tracing::error!(workspace = %id, error = %e, "cannot record a started workspace"),
                }
            }
            Err(e) => {
                tracing::info!(workspace = %id, error = %e, "workspace start failed");
                if let Err(cleanup) = self.runtime.stop(&id).await {
                    tracing::warn!(workspace = %id, error = %cleanup, "cannot remove the containers of a failed start");
                }
                workspace.status = WorkspaceStatus::Error;
                workspace.runtime = None;
                workspace.attributes.insert("errorMessage".into(), e.to_string());
                let from = [WorkspaceStatus::Starting, WorkspaceStatus::Stopping];
                if let Err(store) = self.store.transition_workspace(&workspace, &from, None).await {
                    tracing::error!(workspace = %id, error = %store, "cannot record a failed start");
                }
                self.emit(&id, "error", Some(WorkspaceStatus::Error), e.to_string());
            }
        }
    }

    /// Stops a workspace and removes its containers; its network and `/projects` stay. The
    /// owner's `run` or an administrator's role. A workspace still starting stops as soon
    /// as its start ends.
    pub async fn stop(&self, caller: &Principal, key: &str) -> Result<()> {
        let access = self.access(caller, key).await?;
        if !access.admin {
            access.require(RUN)?;
        }
        let mut workspace = access.workspace;
        let from = match workspace.status {
            WorkspaceStatus::Stopped | WorkspaceStatus::Stopping => return Ok(()),
            other => other,
        };
        workspace.status = WorkspaceStatus::Stopping;
        workspace.attributes.insert("stoppedBy".into(), caller.user.name.clone());
        workspace.attributes.insert("stopReason".into(), format!("stopped by {}", caller.user.name));
        let event = self.event(caller.into(), "workspace.stop", &workspace).with("stoppedBy", &caller.user.name);
        if !self.store.transition_workspace(&workspace, &[from], Some(&event)).await? {
            return Err(Error::Conflict("the workspace is being started or stopped by another request".into()));
        }
        self.emit(&workspace.id, "status", Some(WorkspaceStatus::Stopping), format!("stopped by {}", caller.user.name));
        if from != WorkspaceStatus::Starting {
            self.finish_stop(workspace).await;
        }
        Ok(())
    }

    /// The ids of every workspace that is starting or running.
    pub async fn busy_ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        for status in [WorkspaceStatus::Starting, WorkspaceStatus::Running] {
            let filter = WorkspaceFilter { status: Some(status), ..Default::default() };
            let (list, _) = self.store.list_workspaces(&filter, Page { max_items: u32::MAX, skip_count: 0 }).await?;
            ids.extend(list.into_iter().map(|w| w.id));
        }
        Ok(ids)
    }

    /// Stops a starting or running workspace gracefully on the system's behalf (no caller),
    /// recording who (`stoppedBy`) and why (`stopReason`) as an idle stop does; a workspace
    /// still starting stops as soon as its start ends. Returns whether it stopped it.
    pub async fn stop_as_system(&self, id: &str, stopped_by: &str, reason: &str) -> bool {
        let mut workspace = match self.store.workspace(id).await {
            Ok(Some(w)) => w,
            Ok(None) => return false,
            Err(e) => {
                tracing::warn!(workspace = %id, error = %e, "cannot read a workspace to stop");
                return false;
            }
        };
        let from = workspace.status;
        if !matches!(from, WorkspaceStatus::Starting | WorkspaceStatus::Running) {
            return false;
        }
        workspace.status = WorkspaceStatus::Stopping;
        workspace.attributes.insert("stoppedBy".into(), stopped_by.into());
        workspace.attributes.insert("stopReason".into(), reason.into());
        let event = self
            .event(Actor::system(), "workspace.stop", &workspace)
            .with("stoppedBy", stopped_by)
            .with("reason", reason);
        match self.store.transition_workspace(&workspace, &[from], Some(&event)).await {
            Ok(true) => {
                tracing::info!(workspace = %id, %reason, "workspace stopped by the system");
                self.emit(id, "status", Some(WorkspaceStatus::Stopping), reason);
                if from != WorkspaceStatus::Starting {
                    self.finish_stop(workspace).await;
                }
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::warn!(workspace = %id, error = %e, "cannot stop a workspace");
                false
            }
        }
    }

    async fn finish_stop(&self, mut workspace: Workspace) {
        let id = workspace.id.clone();
        self.activity.end(&id);
        if let Err(e) = self.runtime.stop(&id).await {
            tracing::warn!(workspace = %id, error = %e, "cannot stop the workspace's containers");
        }
        workspace.status = WorkspaceStatus::Stopped;
        workspace.runtime = None;
        let now = self.now_text();
        workspace.attributes.insert("stopped".into(), now.clone());
        workspace.attributes.insert("updated".into(), now);
        let from = [WorkspaceStatus::Stopping, WorkspaceStatus::Starting];
        match self.store.transition_workspace(&workspace, &from, None).await {
            Ok(_) => self.emit(&id, "status", Some(WorkspaceStatus::Stopped), "stopped"),
            Err(e) => tracing::error!(workspace = %id, error = %e, "cannot record a stopped workspace"),
        }
    }

    /// Records activity on a running workspace (terminal traffic, exec, proxy traffic).
    pub fn touch(&self, workspace_id: &str, kind: &'static str) {
        self.activity.touch(workspace_id, self.clock.now(), kind);
    }

    /// A running workspace's last activity and, when its owner has an idle timeout, when it
    /// will stop if nothing happens.
    pub async fn idle_state(&self, workspace_id: &str) -> Option<IdleState> {
        let a = self.activity.get(workspace_id)?;
        let timeout = self.limits.effective(&a.owner_id).await.ok()?.timeout_secs;
        let stop_at = (timeout >= 0).then(|| a.at + chrono::Duration::seconds(timeout));
        let warning = stop_at.is_some_and(|at| {
            self.clock.now() + chrono::Duration::from_std(self.settings.idle_warning).unwrap_or_default() >= at
        });
        Some(IdleState { last_activity: a.at, kind: a.kind, stop_at, warning })
    }

    /// Stops the running workspaces that were idle for their owner's `timeout`, and warns
    /// `idle_warning` before. Called every second.
    pub async fn check_idle(&self) {
        let now = self.clock.now();
        let warning = chrono::Duration::from_std(self.settings.idle_warning).unwrap_or_default();
        for (id, a) in self.activity.all() {
            let Ok(limits) = self.limits.effective(&a.owner_id).await else { continue };
            if limits.timeout_secs < 0 {
                continue;
            }
            let stop_at = a.at + chrono::Duration::seconds(limits.timeout_secs);
            if now >= stop_at {
                self.stop_idle(&id, &a, limits.timeout_secs).await;
            } else if now + warning >= stop_at && self.activity.mark_warned(&id, a.at) {
                let message = format!(
                    "no activity since {} ({}): the workspace stops at {} unless it is used",
                    text_time(a.at),
                    a.kind,
                    text_time(stop_at)
                );
                self.emit(&id, "warning", None, message);
            }
        }
    }

    async fn stop_idle(&self, id: &str, a: &activity::Activity, timeout_secs: i64) {
        let mut workspace = match self.store.workspace(id).await {
            Ok(Some(w)) if w.status == WorkspaceStatus::Running => w,
            Ok(_) => return self.activity.end(id),
            Err(e) => return tracing::warn!(workspace = %id, error = %e, "cannot read an idle workspace"),
        };
        let reason = format!(
            "stopped after {} without activity (last: {} at {})",
            crate::config::HumanDuration::secs(timeout_secs.max(0) as u64),
            a.kind,
            text_time(a.at)
        );
        workspace.status = WorkspaceStatus::Stopping;
        workspace.attributes.insert("stoppedBy".into(), "idle timeout".into());
        workspace.attributes.insert("stopReason".into(), reason.clone());
        let event = self
            .event(Actor::system(), "workspace.stop", &workspace)
            .with("stoppedBy", "idle timeout")
            .with("reason", &reason);
        match self.store.transition_workspace(&workspace, &[WorkspaceStatus::Running], Some(&event)).await {
            Ok(true) => {
                tracing::info!(workspace = %id, %reason, "idle workspace stopped");
                self.emit(id, "status", Some(WorkspaceStatus::Stopping), reason);
                self.finish_stop(workspace).await;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(workspace = %id, error = %e, "cannot stop an idle workspace"),
        }
    }

    /// Runs a command without a TTY in a machine (default: the dev machine); needs `use`.
    pub async fn exec(
        &self,
        caller: &Principal,
        key: &str,
        machine: Option<&str>,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput> {
        let access = self.access(caller, key).await?;
        access.require(USE)?;
        let machine = self.running_machine(&access.workspace, machine)?;
        self.touch(&access.workspace.id, activity::EXEC);
        let output = self.runtime.exec(&access.workspace.id, &machine, command, timeout).await.map_err(runtime_error);
        // A long command is activity until it ends.
        self.touch(&access.workspace.id, activity::EXEC);
        output
    }

    /// Commits every machine of a running workspace to a local image (needs `run`); the
    /// next start with `restore` runs from them. Returns machine → image.
    pub async fn snapshot(&self, caller: &Principal, key: &str) -> Result<BTreeMap<String, String>> {
        let access = self.access(caller, key).await?;
        access.require(RUN)?;
        let mut workspace = access.workspace;
        if workspace.status != WorkspaceStatus::Running {
            return Err(Error::Conflict(format!("the workspace is {}, not RUNNING", workspace.status.as_str())));
        }
        let images = self.runtime.snapshot(&workspace.id).await.map_err(runtime_error)?;
        let record = serde_json::to_string(&images).map_err(Error::internal)?;
        workspace.attributes.insert(SNAPSHOT_ATTRIBUTE.into(), record);
        workspace.attributes.insert("snapshotCreated".into(), self.now_text());
        let event = self.event(caller.into(), "workspace.snapshot", &workspace).with("images", &images);
        if !self.store.transition_workspace(&workspace, &[WorkspaceStatus::Running], Some(&event)).await? {
            return Err(Error::Conflict("the workspace stopped while its snapshot was taken".into()));
        }
        self.emit(&workspace.id, "progress", None, format!("snapshot of {} machine(s) taken", images.len()));
        Ok(images)
    }

    /// Opens an interactive shell in a machine (default: the dev machine); needs `use`.
    pub async fn terminal(
        &self,
        caller: &Principal,
        key: &str,
        machine: Option<&str>,
        cols: u16,
        rows: u16,
    ) -> Result<(String, String, Terminal)> {
        let access = self.access(caller, key).await?;
        access.require(USE)?;
        let machine = self.running_machine(&access.workspace, machine)?;
        let terminal =
            self.runtime.terminal(&access.workspace.id, &machine, cols, rows).await.map_err(runtime_error)?;
        self.touch(&access.workspace.id, activity::TERMINAL);
        Ok((access.workspace.id, machine, terminal))
    }

    /// Where a server of a running machine listens, for the proxy, with the workspace's id;
    /// needs `use`.
    pub async fn server_address(
        &self,
        caller: &Principal,
        key: &str,
        machine: &str,
        server: &str,
    ) -> Result<(String, String)> {
        let access = self.access(caller, key).await?;
        access.require(USE)?;
        let workspace = access.workspace;
        let machine = self.running_machine(&workspace, Some(machine))?;
        self.touch(&workspace.id, activity::PROXY);
        let env = workspace.runtime.as_ref().map(|r| r.active_env.clone()).unwrap_or_default();
        let config = workspace
            .config
            .environments
            .get(&env)
            .and_then(|e| e.machines.get(&machine))
            .and_then(|m| m.servers.get(server))
            .ok_or_else(|| Error::NotFound(format!("machine {machine} has no server '{server}'")))?;
        let port = config.container_port(&format!("machines.{machine}.servers.{server}.port"))?;
        let info = self.runtime.inspect(&workspace.id).await.map_err(runtime_error)?;
        let address = info
            .and_then(|i| i.machines.into_iter().find(|m| m.name == machine))
            .and_then(|m| m.reach(port))
            .ok_or_else(|| Error::Conflict(format!("machine {machine} has no address the master reaches")))?;
        Ok((workspace.id, address))
    }

    /// The machine a terminal or exec goes to: the one named, else the dev machine.
    pub fn running_machine(&self, workspace: &Workspace, machine: Option<&str>) -> Result<String> {
        let runtime = match (&workspace.status, &workspace.runtime) {
            (WorkspaceStatus::Running, Some(runtime)) => runtime,
            _ => return Err(Error::Conflict(format!("the workspace is {}, not RUNNING", workspace.status.as_str()))),
        };
        match machine {
            Some(name) if runtime.machines.contains_key(name) => Ok(name.to_string()),
            Some(name) => Err(Error::NotFound(format!("the workspace has no machine '{name}'"))),
            None => {
                let specs =
                    spec::machines(&workspace.config, &runtime.active_env, self.settings.default_machine_memory)?;
                specs
                    .into_iter()
                    .find(|m| m.dev)
                    .map(|m| m.name)
                    .ok_or_else(|| Error::NotFound("no dev machine".into()))
            }
        }
    }

    /// After a promotion: the workspaces the lost primary ran are STOPPED here (their
    /// containers were on its host), recorded as stopped by `failover`; they start on this
    /// instance with the files of the last sync. Returns how many.
    pub async fn stop_after_failover(&self, primary: &str) -> Result<usize> {
        let reason = format!("failover: its machines ran on the lost primary {primary}");
        let mut stopped = 0;
        for status in [WorkspaceStatus::Starting, WorkspaceStatus::Running, WorkspaceStatus::Stopping] {
            let filter = WorkspaceFilter { status: Some(status), ..Default::default() };
            let (workspaces, _) =
                self.store.list_workspaces(&filter, Page { max_items: u32::MAX, skip_count: 0 }).await?;
            for mut workspace in workspaces {
                let from = workspace.status;
                self.activity.end(&workspace.id);
                workspace.status = WorkspaceStatus::Stopped;
                workspace.runtime = None;
                workspace.attributes.insert("stoppedBy".into(), "failover".into());
                workspace.attributes.insert("stopReason".into(), reason.clone());
                workspace.attributes.insert("updated".into(), self.now_text());
                let event = self
                    .event(Actor::system(), "workspace.stop", &workspace)
                    .changed("status", from.as_str(), WorkspaceStatus::Stopped.as_str())
                    .with("stoppedBy", "failover")
                    .with("reason", &reason);
                if self.store.transition_workspace(&workspace, &[from], Some(&event)).await? {
                    stopped += 1;
                }
            }
        }
        Ok(stopped)
    }

    /// Brings the store in line with the engine, at start-up: a workspace whose containers
    /// died is ERROR (with the reason) or STOPPED; a start or stop that was in flight is
    /// finished (stop) or rolled back (start); containers of deleted workspaces are removed.
    pub async fn reconcile(&self) -> Result<()> {
        let on_engine = self.runtime.list().await.map_err(runtime_error)?;
        for info in &on_engine {
            if self.store.workspace(&info.workspace_id).await?.is_none() {
                tracing::info!(workspace = %info.workspace_id, "removing the containers of a deleted workspace");
                if let Err(e) = self.runtime.remove(&info.workspace_id).await {
                    tracing::warn!(workspace = %info.workspace_id, error = %e, "cannot remove a deleted workspace's objects");
                }
            }
        }
        let busy = [WorkspaceStatus::Starting, WorkspaceStatus::Running, WorkspaceStatus::Stopping];
        for status in busy {
            let filter = WorkspaceFilter { status: Some(status), ..Default::default() };
            let (workspaces, _) =
                self.store.list_workspaces(&filter, Page { max_items: u32::MAX, skip_count: 0 }).await?;
            for workspace in workspaces {
                let info = on_engine.iter().find(|i| i.workspace_id == workspace.id);
                self.reconcile_one(workspace, info, None).await;
            }
        }
        Ok(())
    }

    async fn reconcile_one(&self, mut workspace: Workspace, info: Option<&RuntimeInfo>, reason: Option<String>) {
        let from = workspace.status;
        let all_running = info
            .is_some_and(|i| !i.machines.is_empty() && i.machines.iter().all(|m| m.status == MachineStatus::Running));
        if !(from == WorkspaceStatus::Running && all_running) {
            self.activity.end(&workspace.id);
        }
        match from {
            WorkspaceStatus::Running if all_running => {
                // Found running by a master that just started: its idle time counts from now.
                if self.activity.get(&workspace.id).is_none() {
                    self.activity.begin(&workspace.id, &workspace.owner_id, self.clock.now(), activity::RESTART);
                }
                return;
            }
            WorkspaceStatus::Running => {
                let reason = reason.unwrap_or_else(|| died_reason(info));
                if let Err(e) = self.runtime.stop(&workspace.id).await {
                    tracing::warn!(workspace = %workspace.id, error = %e, "cannot remove a dead workspace's containers");
                }
                workspace.status = WorkspaceStatus::Error;
                workspace.attributes.insert("errorMessage".into(), reason);
            }
            // A start or stop the master did not finish: roll the start back, finish the stop.
            _ => {
                if let Err(e) = self.runtime.stop(&workspace.id).await {
                    tracing::warn!(workspace = %workspace.id, error = %e, "cannot stop an interrupted workspace");
                }
                workspace.status = WorkspaceStatus::Stopped;
            }
        }
        workspace.runtime = None;
        workspace.attributes.insert("updated".into(), self.now_text());
        let id = workspace.id.clone();
        let status = workspace.status;
        let event = self
            .event(Actor::system(), "workspace.reconcile", &workspace)
            .changed("status", from.as_str(), status.as_str())
            .with("reason", workspace.attributes.get("errorMessage"));
        match self.store.transition_workspace(&workspace, &[from], Some(&event)).await {
            Ok(true) => {
                tracing::info!(workspace = %id, from = from.as_str(), to = status.as_str(), "reconciled");
                self.emit(
                    &id,
                    "status",
                    Some(status),
                    workspace.attributes.get("errorMessage").cloned().unwrap_or_default(),
                );
            }
            Ok(false) => {}
            Err(e) => tracing::error!(workspace = %id, error = %e, "cannot record a reconciled workspace"),
        }
    }

    /// Follows the engine's reports while the master runs: a machine of a running workspace
    /// that dies puts the workspace in ERROR with the reason, and its other containers go.
    pub async fn watch_runtime(self: Arc<Self>) {
        let mut events = match self.runtime.events().await {
            Ok(events) => events,
            Err(e) => {
                tracing::warn!(error = %e, "cannot follow the engine's events; statuses may lag");
                return;
            }
        };
        while let Some(event) = events.next().await {
            let RuntimeEvent::MachineDied { workspace_id, machine, reason, oom } = event;
            let Ok(Some(workspace)) = self.store.workspace(&workspace_id).await else { continue };
            if workspace.status != WorkspaceStatus::Running {
                continue;
            }
            let reason = if oom {
                format!("machine {machine} was killed: out of memory")
            } else {
                format!("machine {machine} stopped: {reason}")
            };
            tracing::info!(workspace = %workspace_id, %reason, "a machine died");
            self.reconcile_one(workspace, None, Some(reason)).await;
        }
    }

    // Sharing.

    /// The caller's own permission on a workspace.
    pub async fn my_permission(&self, caller: &Principal, key: &str) -> Result<Permission> {
        let access = self.access(caller, key).await?;
        Ok(Permission {
            user_id: caller.user.id.clone(),
            domain_id: DOMAIN_WORKSPACE.into(),
            instance_id: Some(access.workspace.id),
            actions: access.actions,
        })
    }

    /// Everyone's permissions on a workspace (needs `setPermissions`).
    pub async fn all_permissions(&self, caller: &Principal, key: &str) -> Result<Vec<Permission>> {
        let access = self.access(caller, key).await?;
        access.require(SET_PERMISSIONS)?;
        Ok(self.store.permissions_on(DOMAIN_WORKSPACE, &access.workspace.id).await?)
    }

    /// Grants a user actions on a workspace, replacing theirs (needs `setPermissions`). The
    /// owner always holds every action.
    pub async fn share(&self, caller: &Principal, key: &str, user_id: &str, actions: &[String]) -> Result<Permission> {
        let access = self.access(caller, key).await?;
        access.require(SET_PERMISSIONS)?;
        let actions = crate::permissions::canonical_actions(actions, WORKSPACE_ACTIONS)?;
        if user_id == access.workspace.owner_id {
            return Err(Error::Conflict("the owner always holds every action on their workspace".into()));
        }
        let user =
            self.store.user(user_id).await?.ok_or_else(|| Error::NotFound(format!("user {user_id} not found")))?;
        let permission = Permission {
            user_id: user_id.to_string(),
            domain_id: DOMAIN_WORKSPACE.into(),
            instance_id: Some(access.workspace.id.clone()),
            actions,
        };
        let event = self.permission_event(caller, &user, &access.workspace, Some(&permission)).await?;
        self.store.store_permission(&permission, &event).await?;
        Ok(permission)
    }

    /// Takes a user's actions on a workspace away (needs `setPermissions`, or it is the
    /// caller's own access).
    pub async fn unshare(&self, caller: &Principal, key: &str, user_id: &str) -> Result<()> {
        let access = self.access(caller, key).await?;
        if user_id != caller.user.id {
            access.require(SET_PERMISSIONS)?;
        }
        if user_id == access.workspace.owner_id {
            return Err(Error::Conflict("the owner always holds every action on their workspace".into()));
        }
        let user =
            self.store.user(user_id).await?.ok_or_else(|| Error::NotFound(format!("user {user_id} not found")))?;
        let event = self.permission_event(caller, &user, &access.workspace, None).await?;
        self.store.remove_permission(user_id, DOMAIN_WORKSPACE, Some(&access.workspace.id), &event).await?;
        Ok(())
    }

    /// A grant or revocation on a workspace as an audit event, naming the workspace.
    async fn permission_event(
        &self,
        caller: &Principal,
        user: &crate::User,
        workspace: &Workspace,
        after: Option<&Permission>,
    ) -> Result<NewEvent> {
        let before = self.store.permission(&user.id, DOMAIN_WORKSPACE, Some(&workspace.id)).await?.map(|p| p.actions);
        let event =
            NewEvent::permission(self.clock.now(), caller, user, DOMAIN_WORKSPACE, &workspace.id, before, after);
        Ok(event.with("workspace", format!("{}:{}", workspace.namespace, workspace.config.name)))
    }
}

/// A running workspace's idle clock, for the API and the dashboard.
#[derive(Debug, Clone, PartialEq)]
pub struct IdleState {
    pub last_activity: chrono::DateTime<chrono::Utc>,
    pub kind: &'static str,
    /// When it stops if nothing happens (`None`: its owner has no idle timeout).
    pub stop_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The stop is within `idle_warning`.
    pub warning: bool,
}

fn text_time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn died_reason(info: Option<&RuntimeInfo>) -> String {
    let reasons: Vec<String> = info
        .map(|i| {
            i.machines
                .iter()
                .filter(|m| m.status != MachineStatus::Running)
                .map(|m| {
                    format!("machine {}: {}", m.name, m.exit_reason.clone().unwrap_or_else(|| "not running".into()))
                })
                .collect()
        })
        .unwrap_or_default();
    if reasons.is_empty() { "its containers are gone".to_string() } else { reasons.join("; ") }
}

/// What the API shows of a running workspace: each machine's status, node and servers
/// (reached through the master's proxy).
fn runtime_state(workspace: &Workspace, env: &str, info: &RuntimeInfo) -> WorkspaceRuntime {
    let configured = workspace.config.environments.get(env).map(|e| &e.machines);
    let machines = info
        .machines
        .iter()
        .map(|m| {
            let servers = configured
                .and_then(|c| c.get(&m.name))
                .map(|c| {
                    c.servers
                        .keys()
                        .map(|s| (s.clone(), ServerUrl { url: format!("/w/{}/{}/{s}/", workspace.id, m.name) }))
                        .collect()
                })
                .unwrap_or_default();
            let status = match m.status {
                MachineStatus::Running => "RUNNING",
                MachineStatus::Stopped => "STOPPED",
            };
            let state =
                MachineState { status: status.into(), node: m.node.clone(), node_id: m.node_id.clone(), servers };
            (m.name.clone(), state)
        })
        .collect();
    WorkspaceRuntime { active_env: env.to_string(), machines }
}

/// What a user whose start no node has room for is told (administrators also get why).
pub const OUT_OF_RESOURCES: &str = "The system is out of resources. Please contact your system admin.";

/// Engine failures as the API reports them: a machine that is not running is a conflict,
/// a command that ran too long a timeout, anything else the engine's reason.
pub fn runtime_error(e: RuntimeError) -> Error {
    match e {
        RuntimeError::NotRunning(what) => Error::Conflict(format!("{what} is not running")),
        RuntimeError::Timeout(d) => Error::Conflict(format!("the command did not finish within {} s", d.as_secs())),
        RuntimeError::NoRoom(detail) => Error::Conflict(format!("{OUT_OF_RESOURCES} ({detail})")),
        RuntimeError::Refused(why) => Error::Conflict(why),
        RuntimeError::UnknownNode(node) => Error::NotFound(format!("no node '{node}'")),
        other => Error::Unavailable(format!("the workspace engine failed: {other}")),
    }
}

fn name_taken(e: StoreError) -> Error {
    match e {
        StoreError::Conflict(Conflict::Taken { value, .. }) => {
            Error::Taken { field: "name".into(), message: format!("you already have a workspace named '{value}'") }
        }
        e => e.into(),
    }
}

/// A config change as an audit event: the name before and after, and which top-level parts
/// changed (their values are not recorded: an environment variable may hold a secret).
fn config_change(event: NewEvent, before: &WorkspaceConfig, after: &WorkspaceConfig) -> NewEvent {
    let (old, new) =
        (serde_json::to_value(before).unwrap_or_default(), serde_json::to_value(after).unwrap_or_default());
    let mut changed: Vec<String> = Vec::new();
    if let (Some(old), Some(new)) = (old.as_object(), new.as_object()) {
        let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
        changed = keys.into_iter().filter(|k| k.as_str() != "name" && old.get(*k) != new.get(*k)).cloned().collect();
    }
    let event = if before.name != after.name { event.changed("name", &before.name, &after.name) } else { event };
    event.with("changedParts", changed)
}
