//! Building the parts from the config: logging, the store, the services.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use drydock_core::config::RuntimeKind;
use drydock_core::runtime::{Runtime, Unavailable};
use drydock_core::{Config, Store};
use drydock_docker::{DockerRuntime, DockerSettings, SwarmRuntime, SwarmSettings};
use drydock_ops::versions::{self, SCHEMA, Standing, VERSION};
use drydock_store::{StoreOptions, connect, describe_url, resolve_url};

use crate::instance::DataDir;

pub fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(level).unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// The database URL with a relative SQLite path resolved against the data dir.
pub fn database_url(dir: &DataDir, config: &Config) -> String {
    resolve_url(&config.database.url, &dir.root)
}

fn store_options(config: &Config) -> StoreOptions {
    StoreOptions {
        max_connections: config.database.max_connections,
        busy_timeout: config.database.busy_timeout.0,
        audit: config.audit.enabled,
    }
}

/// Opens the store and brings its schema up to date: for `init`, on its new empty database
/// (`upgrade` and `restore` migrate through `drydock-ops`). Refuses a schema newer than this
/// binary.
pub async fn open_store_migrating(dir: &DataDir, config: &Config) -> Result<Arc<dyn Store>> {
    let url = database_url(dir, config);
    let store = connect(&url, &store_options(config)).await?;
    let status =
        store.migrate().await.with_context(|| format!("cannot migrate the database {}", describe_url(&url)))?;
    if status.current > status.known {
        bail!(newer_schema(&url, status.current, status.known));
    }
    Ok(store)
}

/// Opens the store of an existing instance without changing it: the instance's version file
/// and its database's schema must be this binary's. An older instance is refused with the
/// way forward (`drydock upgrade`), a newer one as a downgrade.
pub async fn open_store(dir: &DataDir, config: &Config) -> Result<Arc<dyn Store>> {
    open_store_with(dir, config, store_options(config)).await
}

/// [`open_store`] for a standby: its audit log is the primary's copy, so what happens on the
/// standby itself (sign-ins) is logged by the server, not written to it.
pub async fn open_standby_store(dir: &DataDir, config: &Config) -> Result<Arc<dyn Store>> {
    open_store_with(dir, config, StoreOptions { audit: false, ..store_options(config) }).await
}

async fn open_store_with(dir: &DataDir, config: &Config, options: StoreOptions) -> Result<Arc<dyn Store>> {
    check_instance_version(dir)?;
    let url = database_url(dir, config);
    let store = connect(&url, &options).await?;
    let status = store
        .schema_status()
        .await
        .with_context(|| format!("cannot read the schema version of the database {}", describe_url(&url)))?;
    if status.current > status.known {
        bail!(newer_schema(&url, status.current, status.known));
    }
    if status.current < SCHEMA {
        bail!(
            "the database {} has schema version {}, older than this drydock {VERSION} needs ({SCHEMA}): \
             upgrade the instance first with `drydock upgrade --data-dir {}` (`--plan` shows what it does)",
            describe_url(&url),
            status.current,
            dir.root.display()
        );
    }
    Ok(store)
}

fn newer_schema(url: &str, current: i64, known: i64) -> String {
    format!(
        "the database {} has schema version {current}, newer than this drydock {VERSION} knows (up to {known}): \
         run the drydock version that last used it, or a newer one",
        describe_url(url)
    )
}

/// The instance's version file must name this binary's version: an older instance needs
/// `drydock upgrade`, a newer one a newer binary.
pub fn check_instance_version(dir: &DataDir) -> Result<()> {
    let version = dir.instance_version()?;
    if !versions::is_version(&version) {
        bail!(
            "{} holds '{version}', not a drydock version: the instance's version file is damaged",
            dir.version_file().display()
        );
    }
    match versions::standing(&version) {
        Standing::Current => Ok(()),
        Standing::Newer => bail!(
            "the instance in {} is at drydock {version}, newer than this drydock {VERSION}: \
             a downgrade is not possible; run drydock {version} or newer",
            dir.root.display()
        ),
        Standing::Upgradable => bail!(
            "the instance in {} is at drydock {version}; this drydock is {VERSION}: \
             upgrade it first with `drydock upgrade --data-dir {}` (`--plan` shows what it does)",
            dir.root.display(),
            dir.root.display()
        ),
        Standing::TooOld { first } => bail!(
            "the instance in {} is at drydock {version}; this drydock {VERSION} upgrades from {} only: \
             upgrade it to {first} first (with drydock {first}), then with `drydock upgrade`",
            dir.root.display(),
            versions::UPGRADES_FROM.join(", ")
        ),
        Standing::Unknown => bail!(
            "the instance in {} is at drydock {version}, a release this drydock {VERSION} does not know: \
             it upgrades from {} only",
            dir.root.display(),
            versions::UPGRADES_FROM.join(", ")
        ),
    }
}

/// What runs workspaces: the local Docker engine, or the Swarm it manages
/// (`runtime.kind`); the second value is the local engine, for backups of workspace files.
/// Without an engine the server still serves everything else, and every workspace start
/// says why it cannot run.
///
/// `projects_seed` is a promoted standby's copy of the workspaces' files: a workspace whose
/// volume does not exist yet gets them when it is created.
pub async fn open_runtime(
    dir: &DataDir,
    instance_id: &str,
    config: &Config,
    projects_seed: Option<std::path::PathBuf>,
) -> (Arc<dyn Runtime>, Option<DockerRuntime>) {
    let settings = DockerSettings { pull_timeout: config.runtime.pull_timeout.0, projects_seed, ..Default::default() };
    let opened = match config.runtime.kind {
        RuntimeKind::Docker => DockerRuntime::connect(instance_id, settings).await.map(|runtime| {
            tracing::info!(node = runtime.node(), "workspaces run on the Docker engine");
            (Arc::new(runtime.clone()) as Arc<dyn Runtime>, Some(runtime))
        }),
        RuntimeKind::Swarm => {
            let settings = SwarmSettings::from_config(&config.runtime, &dir.root, settings);
            SwarmRuntime::connect(instance_id, settings).await.map(|runtime| {
                tracing::info!(manager = runtime.manager_node(), "workspaces run on the Docker Swarm");
                let local = runtime.manager().clone();
                (Arc::new(runtime) as Arc<dyn Runtime>, Some(local))
            })
        }
    };
    opened.unwrap_or_else(|e| {
        tracing::warn!(error = %e, "workspaces cannot run");
        (Arc::new(Unavailable { reason: e.to_string() }), None)
    })
}

/// The instance as backup and restore see it.
pub fn ops_instance(dir: &DataDir, config: &Config) -> Result<drydock_ops::Instance> {
    let database = drydock_ops::database::Database::from_url(&database_url(dir, config))?;
    Ok(drydock_ops::Instance { dir: dir.clone(), config: config.clone(), database })
}
