//! drydock's model and rules. No IO of its own: the world is reached through [`Store`]
//! and `Runtime`, both chosen once at start-up by the binary.

pub mod audit;
pub mod audit_log;
pub mod auth;
pub mod backups;
pub mod clock;
pub mod config;
pub mod error;
pub mod ids;
pub mod license;
pub mod licenses;
pub mod limits;
pub mod model;
pub mod nodes;
pub mod permissions;
pub mod runtime;
pub mod secret;
pub mod standby;
pub mod store;
pub mod system;
pub mod testing_hooks;
pub mod users;
pub mod validate;
pub mod workspace;

use std::sync::Arc;

pub use clock::{Clock, SystemClock};
pub use config::Config;
pub use error::{Error, Result};
pub use model::{BackupRun, Credential, CredentialKind, NewUser, Page, Permission, Principal, User};
pub use store::{Store, StoreError};

/// The services that hold drydock's rules, built once from a store and the config.
pub struct Drydock {
    pub users: users::Users,
    pub auth: auth::Auth,
    pub permissions: permissions::Permissions,
    pub workspaces: Arc<workspace::service::Workspaces>,
    pub limits: Arc<limits::ResourceLimits>,
    /// The instance's own state (maintenance mode); `load` it before serving.
    pub system: system::System,
    pub backups: backups::Backups,
    /// The audit log: listing, verifying, exporting, pruning.
    pub audit_log: audit_log::AuditLog,
    /// The audit report (`GET /api/audit`).
    pub audit_reports: audit::AuditReports,
    pub store: Arc<dyn Store>,
    /// The licensed seats (set by the license service; no cap until it loads).
    pub seats: Arc<license::SeatCap>,
    /// The license in force; `load` it before serving.
    pub licenses: licenses::Licenses,
    /// The Docker hosts workspaces run on.
    pub nodes: nodes::Nodes,
}

impl Drydock {
    pub fn new(
        store: Arc<dyn Store>,
        config: &Config,
        clock: Arc<dyn Clock>,
        runtime: Arc<dyn runtime::Runtime>,
    ) -> Self {
        let limits = Arc::new(limits::ResourceLimits::new(store.clone(), clock.clone(), &config.limits));
        let auth = auth::Auth::new(store.clone(), auth::AuthSettings::from_config(config), clock.clone());
        let maintenance = Arc::new(system::MaintenanceSwitch::default());
        let seats = Arc::new(license::SeatCap::new(None));
        let workspaces = Arc::new(workspace::service::Workspaces::new(
            store.clone(),
            clock.clone(),
            runtime,
            limits.clone(),
            workspace::service::WorkspaceSettings::from_config(config),
            maintenance.clone(),
        ));
        Drydock {
            users: users::Users::new(store.clone(), auth.cache_handle(), clock.clone(), seats.clone()),
            permissions: permissions::Permissions::new(store.clone(), auth.cache_handle(), clock.clone()),
            system: system::System::new(store.clone(), clock.clone(), maintenance, workspaces.clone()),
            backups: backups::Backups::new(store.clone(), clock.clone()),
            audit_log: audit_log::AuditLog::new(store.clone(), clock.clone(), &config.audit),
            licenses: licenses::Licenses::new(store.clone(), clock.clone(), seats.clone(), &config.license),
            audit_reports: audit::AuditReports::new(store.clone(), clock.clone()),
            nodes: nodes::Nodes::new(store.clone(), workspaces.clone(), clock.clone()),
            workspaces,
            limits,
            auth,
            store,
            seats,
        }
    }
}

/// The version of this build, as written to `drydock.ver`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
