//! The storage contract. Implementations live in the `store` crate (SQLite, PostgreSQL).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::audit::{HistoryEntry, ReportRows};
use crate::audit_log::{Anchor, Event, EventFilter, NewEvent};
use crate::limits::{Resource, ResourceOverride};
use crate::model::{BackupRun, Credential, CredentialKind, NewUser, Page, Permission, User, UserFilter};
use crate::workspace::{Stack, Workspace, WorkspaceFilter, WorkspaceStatus};

/// Why a guarded write was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conflict {
    /// A unique value (`field` is `name` or `email`) is held by another row.
    Taken { field: &'static str, value: String },
    /// The write would leave no user holding `manageSystem`.
    LastSystemAdmin,
    /// The user still owns these workspaces (by name).
    OwnsWorkspaces(Vec<String>),
    /// The workspace is not in a state that allows the change (its status now).
    WorkspaceStatus(String),
    /// The database could not take the write lock in time.
    Busy,
    /// A limit refused the change; the text says which (from the rule in `core::limits`).
    Limit(String),
    /// Every licensed seat is taken (the number of seats).
    Seats(u64),
}

/// What one user's workspaces hold now, and what all running workspaces reserve.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Workspaces the user owns, running or not.
    pub workspaces: u64,
    /// The user's workspaces that are starting, running or stopping.
    pub runtimes: u64,
    /// Memory those reserved when they were admitted.
    pub ram_mb: u64,
    /// Memory every starting, running or stopping workspace reserved (all users).
    pub host_ram_mb: u64,
}

/// A rule run on the usage inside the transaction that writes; `Err` refuses with its text.
pub type Admission<'a> = &'a (dyn Fn(&Usage) -> Result<(), String> + Send + Sync);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("conflict: {0:?}")]
    Conflict(Conflict),
    #[error("database error: {0}")]
    Other(Box<dyn std::error::Error + Send + Sync>),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A migration the store knows, for `version` and upgrade plans.
#[derive(Debug, Clone)]
pub struct SchemaStatus {
    /// Schema version recorded in the database (0 when empty).
    pub current: i64,
    /// Newest schema version this binary knows.
    pub known: i64,
}

/// Every write that changes what users or administrators made takes the event that records
/// it, and writes both in one transaction: no change without its event, no event without its
/// change. `Option` where some callers are drydock's own bookkeeping (a workspace reaching
/// RUNNING), which is not an audited action.
#[async_trait]
pub trait Store: Send + Sync {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    /// Applies pending migrations, each in its own transaction. Refuses a database whose
    /// schema is newer than this binary knows.
    async fn migrate(&self) -> StoreResult<SchemaStatus>;
    async fn schema_status(&self) -> StoreResult<SchemaStatus>;

    // Users. Uniqueness of name and e-mail is checked in the transaction that writes.
    /// With `seats`, refuses (`Conflict::Seats`) when that many users exist already.
    async fn create_user(
        &self,
        user: &NewUser,
        system_actions: &[String],
        seats: Option<u64>,
        event: &NewEvent,
    ) -> StoreResult<User>;
    async fn user(&self, id: &str) -> StoreResult<Option<User>>;
    async fn user_by_name(&self, name: &str) -> StoreResult<Option<User>>;
    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>>;
    /// The user whose name or e-mail is `login`, with their password hash.
    async fn user_for_login(&self, login: &str) -> StoreResult<Option<(User, String)>>;
    async fn list_users(&self, filter: &UserFilter, page: Page) -> StoreResult<(Vec<User>, u64)>;
    async fn count_users(&self) -> StoreResult<u64>;

    // The audit report.
    /// Every change of the license (`license_history`), oldest first.
    async fn license_history(&self) -> StoreResult<Vec<HistoryEntry>>;
    /// Every user's id and e-mail, and every workspace with every workspace permission on
    /// it (name, owner, holder, actions), read in one snapshot: a handful of queries
    /// whatever the number of users and workspaces.
    async fn report_rows(&self) -> StoreResult<ReportRows>;
    async fn set_password_hash(&self, user_id: &str, hash: &str, event: &NewEvent) -> StoreResult<()>;
    /// Changes the e-mail; its uniqueness is checked in the transaction that writes.
    async fn set_email(&self, user_id: &str, email: &str, event: &NewEvent) -> StoreResult<User>;
    /// Removes the user with their permissions, sessions and tokens; refuses to remove the
    /// last holder of `manageSystem`, or a user who owns workspaces.
    async fn delete_user(&self, user_id: &str, event: &NewEvent) -> StoreResult<()>;

    // Permissions.
    async fn permission(&self, user_id: &str, domain: &str, instance: Option<&str>) -> StoreResult<Option<Permission>>;
    /// Replaces the user's actions in the domain/instance; refuses to leave no `manageSystem`.
    async fn store_permission(&self, permission: &Permission, event: &NewEvent) -> StoreResult<()>;
    async fn remove_permission(
        &self,
        user_id: &str,
        domain: &str,
        instance: Option<&str>,
        event: &NewEvent,
    ) -> StoreResult<()>;
    /// Every permission stored in a domain (for `system`: the administrators).
    async fn permissions_in_domain(&self, domain: &str) -> StoreResult<Vec<Permission>>;
    /// Every permission on one instance of a domain (who may do what with one workspace).
    async fn permissions_on(&self, domain: &str, instance: &str) -> StoreResult<Vec<Permission>>;

    // Workspaces. Names are unique per owner, checked in the transaction that writes; the
    // owner's permission (every action) is stored with the workspace.
    /// `admit` sees the owner's usage in the transaction that inserts.
    async fn create_workspace(
        &self,
        workspace: &Workspace,
        owner_actions: &[String],
        admit: Admission<'_>,
        event: &NewEvent,
    ) -> StoreResult<()>;
    async fn workspace(&self, id: &str) -> StoreResult<Option<Workspace>>;
    async fn workspace_by_name(&self, namespace: &str, name: &str) -> StoreResult<Option<Workspace>>;
    async fn list_workspaces(&self, filter: &WorkspaceFilter, page: Page) -> StoreResult<(Vec<Workspace>, u64)>;
    /// Stores a new config (and name) and `updated`.
    async fn update_workspace_config(&self, workspace: &Workspace, event: &NewEvent) -> StoreResult<()>;
    /// Moves a workspace to a new status (with its runtime and attributes) only if its status
    /// is one of `from`; returns whether it did, so two requests cannot both start it.
    /// The event is written only when the transition happens.
    async fn transition_workspace(
        &self,
        workspace: &Workspace,
        from: &[WorkspaceStatus],
        event: Option<&NewEvent>,
    ) -> StoreResult<bool>;
    /// Like `transition_workspace` to STARTING, reserving `ram_mb` for the workspace while it
    /// is starting, running or stopping, if `admit` accepts the owner's usage: both in one
    /// transaction. `Ok(false)` when the status was not one of `from`.
    async fn admit_start(
        &self,
        workspace: &Workspace,
        from: &[WorkspaceStatus],
        ram_mb: u64,
        admit: Admission<'_>,
        event: &NewEvent,
    ) -> StoreResult<bool>;
    async fn usage(&self, user_id: &str) -> StoreResult<Usage>;
    /// Deletes a workspace and every permission on it; only when its status is one of `from`.
    async fn delete_workspace(&self, id: &str, from: &[WorkspaceStatus], event: &NewEvent) -> StoreResult<()>;

    // Resource limits: per-user overrides of the defaults.
    async fn resource_override(&self, user_id: &str) -> StoreResult<Option<Vec<Resource>>>;
    async fn resource_overrides(&self, page: Page) -> StoreResult<(Vec<ResourceOverride>, u64)>;
    /// Replaces the user's override.
    async fn store_resource_override(&self, user_id: &str, resources: &[Resource], event: &NewEvent)
    -> StoreResult<()>;
    async fn remove_resource_override(&self, user_id: &str, event: &NewEvent) -> StoreResult<()>;

    // Stacks. Names are unique, checked in the transaction that writes.
    async fn create_stack(&self, stack: &Stack, event: &NewEvent) -> StoreResult<()>;
    async fn stacks(&self) -> StoreResult<Vec<Stack>>;
    async fn stack(&self, id: &str) -> StoreResult<Option<Stack>>;
    async fn delete_stack(&self, id: &str, event: &NewEvent) -> StoreResult<()>;

    // Sessions and tokens.
    async fn insert_credential(&self, credential: &Credential, event: &NewEvent) -> StoreResult<()>;
    async fn credential_by_digest(&self, digest: &str) -> StoreResult<Option<(Credential, User)>>;
    async fn credentials_of(&self, user_id: &str, kind: CredentialKind) -> StoreResult<Vec<Credential>>;
    /// Removes one credential of the user; NotFound when the user has no such credential.
    async fn delete_credential(&self, user_id: &str, id: &str, event: &NewEvent) -> StoreResult<()>;
    /// Removes the user's credentials of one kind, except `keep` (the caller's own session).
    async fn delete_credentials_of(&self, user_id: &str, kind: CredentialKind, keep: Option<&str>) -> StoreResult<()>;
    async fn record_last_used(&self, uses: &[(String, DateTime<Utc>)]) -> StoreResult<()>;
    async fn delete_expired_credentials(&self, now: DateTime<Utc>) -> StoreResult<u64>;

    // The instance's own state: named values (JSON text) that survive restarts.
    async fn system_value(&self, name: &str) -> StoreResult<Option<String>>;
    /// Stores the value under the name, replacing any; `None` removes it.
    async fn set_system_value(&self, name: &str, value: Option<&str>, event: Option<&NewEvent>) -> StoreResult<()>;

    // Backup history.
    /// Inserts the run, or replaces the one with its id (a run is recorded when it starts
    /// and again when it ends).
    async fn record_backup_run(&self, run: &BackupRun, event: Option<&NewEvent>) -> StoreResult<()>;
    /// The latest runs, newest first.
    async fn backup_runs(&self, limit: u32) -> StoreResult<Vec<BackupRun>>;

    // The audit log (a hash chain) and the license history.
    /// Appends an event that records no change of its own (a failed sign-in, a terminal session).
    async fn append_event(&self, event: &NewEvent) -> StoreResult<()>;
    /// Events matching the filter, newest first, and how many match.
    async fn audit_events(&self, filter: &EventFilter, page: Page) -> StoreResult<(Vec<Event>, u64)>;
    /// Up to `limit` events after `after_seq`, oldest first (for verifying and exporting).
    async fn audit_events_after(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<Event>>;
    /// Where the kept chain starts (genesis until events are pruned).
    async fn audit_anchor(&self) -> StoreResult<Anchor>;
    /// Deletes events older than `before`, moving the anchor, and records it with `event`.
    async fn prune_audit_events(&self, before: DateTime<Utc>, event: &NewEvent) -> StoreResult<u64>;
    /// Replaces (`Some`) or removes (`None`) the installed license, with its history line and
    /// its event, in one transaction.
    async fn record_license_change(
        &self,
        license: Option<&str>,
        change: &HistoryEntry,
        event: &NewEvent,
    ) -> StoreResult<()>;
    /// Records that Fair Source was accepted, if the history is empty; whether it did.
    async fn accept_fair_source(&self, change: &HistoryEntry, event: &NewEvent) -> StoreResult<bool>;
}
