//! drydock's [`Store`] on SQLite (the embedded default, WAL mode) and PostgreSQL.
//!
//! One implementation serves both through sqlx's `Any` driver: the SQL is the same on both
//! (`$1` placeholders, `TEXT` and `BIGINT` columns, times in epoch milliseconds). What
//! differs is kept in [`Backend`]: the migrations and how a guarded write transaction
//! begins (SQLite: `BEGIN IMMEDIATE` under a busy timeout; PostgreSQL: an advisory lock),
//! so checks of shared counts are serialized with the write they guard.

mod audit_log;
mod audit_report;
mod limits;
mod migrations;
pub mod replication;
mod sql;
mod system;
mod workspaces;

use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Once};
use std::time::Duration;

use drydock_core::Store;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor};

pub use migrations::{MIGRATIONS_POSTGRES, MIGRATIONS_SQLITE, Migration};
pub use sql::SqlStore;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// Picks the backend from the URL's scheme.
    pub fn from_url(url: &str) -> Result<Backend, ConnectError> {
        let scheme = url.split_once("://").map(|(s, _)| s).unwrap_or(url);
        match scheme {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            _ => Err(ConnectError::Scheme(scheme.to_string())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "database.url has the unsupported scheme '{0}': use sqlite://FILE or postgres://USER:PASSWORD@HOST:PORT/DB"
    )]
    Scheme(String),
    #[error("database.url is not a valid URL: {0}")]
    Url(String),
    #[error("cannot open the database {target}: {reason}")]
    Open { target: String, reason: String },
}

/// Settings for opening the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub max_connections: u32,
    pub busy_timeout: Duration,
    /// Write audit events (`audit.enabled`).
    pub audit: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { max_connections: 8, busy_timeout: Duration::from_secs(5), audit: true }
    }
}

/// Resolves a `sqlite://` URL whose path is relative against the data dir.
pub fn resolve_url(url: &str, data_dir: &Path) -> String {
    match url.strip_prefix("sqlite://") {
        Some(rest) => {
            let (path, query) = rest.split_once('?').map_or((rest, None), |(p, q)| (p, Some(q)));
            let path = Path::new(path);
            let abs = if path.is_absolute() { path.to_path_buf() } else { data_dir.join(path) };
            match query {
                Some(q) => format!("sqlite://{}?{q}", abs.display()),
                None => format!("sqlite://{}", abs.display()),
            }
        }
        None => url.to_string(),
    }
}

/// Where a URL points, without its password, for messages and logs.
pub fn describe_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) if scheme != "sqlite" => {
            let host = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
            let host = host.split('?').next().unwrap_or(host);
            format!("{scheme}://{host}")
        }
        _ => url.split('?').next().unwrap_or(url).to_string(),
    }
}

/// Opens the store the URL names (the file is created for SQLite). Does not migrate.
pub async fn connect(url: &str, options: &StoreOptions) -> Result<Arc<dyn Store>, ConnectError> {
    Ok(Arc::new(connect_sql(url, options).await?))
}

pub async fn connect_sql(url: &str, options: &StoreOptions) -> Result<SqlStore, ConnectError> {
    static DRIVERS: Once = Once::new();
    DRIVERS.call_once(sqlx::any::install_default_drivers);
    let backend = Backend::from_url(url)?;
    let target = describe_url(url);
    let url = match backend {
        Backend::Sqlite if !url.contains("mode=") => {
            format!("{url}{}mode=rwc", if url.contains('?') { "&" } else { "?" })
        }
        _ => url.to_string(),
    };
    let connect_options =
        AnyConnectOptions::from_str(&url).map_err(|e| ConnectError::Url(e.to_string()))?.disable_statement_logging();
    // One direct attempt first: the pool would retry an unreachable server until its
    // acquire timeout, and the operator wants the reason at once.
    let probe = sqlx::AnyConnection::connect_with(&connect_options)
        .await
        .map_err(|e| ConnectError::Open { target: target.clone(), reason: e.to_string() })?;
    let _ = probe.close().await;
    let busy_ms = options.busy_timeout.as_millis();
    let pool = AnyPoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .acquire_timeout(Duration::from_secs(15))
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    // WAL lets readers work during a write; NORMAL is durable in WAL mode
                    // except for the last commits on power loss.
                    conn.execute(
                        format!(
                            "PRAGMA busy_timeout = {busy_ms}; PRAGMA journal_mode = WAL; \
                             PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;"
                        )
                        .as_str(),
                    )
                    .await?;
                }
                Ok(())
            })
        })
        .connect_with(connect_options)
        .await
        .map_err(|e| ConnectError::Open { target: target.clone(), reason: e.to_string() })?;
    Ok(SqlStore::new(pool, backend).with_audit(options.audit))
}
