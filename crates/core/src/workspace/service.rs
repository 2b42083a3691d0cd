//! Who may do what with a workspace, and its life in the store. Every route checks its
//! action: `read` to see, `run` to start/stop/snapshot, `use` for terminal, exec and
//! proxy, `configure` to update, `delete` to delete, `setPermissions` to share. A caller
//! without `read` is told the workspace does not exist. Administrators (`manageSystem`) may
//! list, read, stop and delete any workspace by their role; that power is never stored as a
//! workspace permission.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::config::WorkspaceConfig;
use super::{DOMAIN_WORKSPACE, WORKSPACE_ACTIONS, Workspace, WorkspaceFilter, WorkspaceStatus, spec};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::ids;
use crate::model::{MANAGE_SYSTEM, Page, Permission, Principal};
use crate::store::{Conflict, Store, StoreError};

pub const READ: &str = "read";
pub const USE: &str = "use";
pub const RUN: &str = "run";
pub const CONFIGURE: &str = "configure";
pub const SET_PERMISSIONS: &str = "setPermissions";
pub const DELETE: &str = "delete";

#[derive(Debug, Clone)]
pub struct WorkspaceSettings {
    /// Memory of a machine whose config names none.
    pub default_machine_memory: u64,
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
    settings: WorkspaceSettings,
}

fn not_found(key: &str) -> Error {
    Error::NotFound(format!("workspace {key} not found"))
}

impl Workspaces {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, settings: WorkspaceSettings) -> Self {
        Workspaces { store, clock, settings }
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

    pub async fn create(&self, caller: &Principal, config: WorkspaceConfig) -> Result<Workspace> {
        spec::validate(&config, self.settings.default_machine_memory)?;
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
        self.store.create_workspace(&workspace, &all).await.map_err(name_taken)?;
        Ok(workspace)
    }

    pub async fn get(&self, caller: &Principal, key: &str) -> Result<Workspace> {
        Ok(self.access(caller, key).await?.workspace)
    }

    /// The caller's workspaces (owned and shared with them); all of them for administrators.
    pub async fn list(
        &self,
        caller: &Principal,
        status: Option<WorkspaceStatus>,
        page: Page,
    ) -> Result<(Vec<Workspace>, u64)> {
        let visible_to = (!caller.has_system(MANAGE_SYSTEM)).then(|| caller.user.id.clone());
        Ok(self.store.list_workspaces(&WorkspaceFilter { visible_to, status }, page).await?)
    }

    /// A new config; it applies at the next start.
    pub async fn update(&self, caller: &Principal, key: &str, config: WorkspaceConfig) -> Result<Workspace> {
        let access = self.access(caller, key).await?;
        access.require(CONFIGURE)?;
        spec::validate(&config, self.settings.default_machine_memory)?;
        let mut workspace = access.workspace;
        workspace.config = config;
        workspace
            .attributes
            .insert("updated".into(), self.clock.now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        self.store.update_workspace_config(&workspace).await.map_err(name_taken)?;
        Ok(workspace)
    }

    /// Deletes a stopped workspace from the store (its engine objects are the runtime's).
    pub async fn delete(&self, caller: &Principal, key: &str) -> Result<Workspace> {
        let access = self.access(caller, key).await?;
        access.require(DELETE)?;
        self.store.delete_workspace(&access.workspace.id, &[WorkspaceStatus::Stopped, WorkspaceStatus::Error]).await?;
        Ok(access.workspace)
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
        if self.store.user(user_id).await?.is_none() {
            return Err(Error::NotFound(format!("user {user_id} not found")));
        }
        let permission = Permission {
            user_id: user_id.to_string(),
            domain_id: DOMAIN_WORKSPACE.into(),
            instance_id: Some(access.workspace.id.clone()),
            actions,
        };
        self.store.store_permission(&permission).await?;
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
        self.store.remove_permission(user_id, DOMAIN_WORKSPACE, Some(&access.workspace.id)).await?;
        Ok(())
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
