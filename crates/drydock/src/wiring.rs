//! Building the parts from the config: logging, the store, the services.

use std::sync::Arc;

use anyhow::{Context, Result, bail};
use drydock_core::runtime::{Runtime, Unavailable};
use drydock_core::{Config, Store, VERSION};
use drydock_docker::{DockerRuntime, DockerSettings};
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

/// Opens the store and brings its schema up to date; refuses a schema newer than this binary.
pub async fn open_store(dir: &DataDir, config: &Config) -> Result<Arc<dyn Store>> {
    let url = database_url(dir, config);
    let options =
        StoreOptions { max_connections: config.database.max_connections, busy_timeout: config.database.busy_timeout.0 };
    let store = connect(&url, &options).await?;
    let status =
        store.migrate().await.with_context(|| format!("cannot migrate the database {}", describe_url(&url)))?;
    if status.current > status.known {
        bail!(
            "the database {} has schema version {}, newer than this drydock {VERSION} knows (up to {}): \
             run the drydock version that last used it, or a newer one",
            describe_url(&url),
            status.current,
            status.known
        );
    }
    Ok(store)
}

/// The Docker Engine that runs workspaces (and the same engine for backups of their files).
/// Without one the server still serves everything else, and every workspace start says why
/// it cannot run.
pub async fn open_runtime(instance_id: &str, config: &Config) -> (Arc<dyn Runtime>, Option<DockerRuntime>) {
    let settings = DockerSettings { pull_timeout: config.runtime.pull_timeout.0, ..Default::default() };
    match DockerRuntime::connect(instance_id, settings).await {
        Ok(runtime) => {
            tracing::info!(node = runtime.node(), "workspaces run on the Docker engine");
            (Arc::new(runtime.clone()), Some(runtime))
        }
        Err(e) => {
            tracing::warn!(error = %e, "workspaces cannot run");
            (Arc::new(Unavailable { reason: e.to_string() }), None)
        }
    }
}

/// The instance as backup and restore see it.
pub fn ops_instance(dir: &DataDir, config: &Config) -> Result<drydock_ops::Instance> {
    let database = drydock_ops::database::Database::from_url(&database_url(dir, config))?;
    Ok(drydock_ops::Instance { dir: dir.clone(), config: config.clone(), database })
}
