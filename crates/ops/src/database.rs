//! A consistent copy of the database while the server writes to it, and putting one back.
//! SQLite: `VACUUM INTO` (one read transaction, a compact file). PostgreSQL: `pg_dump`, which
//! reads one snapshot, and `psql` loading it in one transaction, so a load lands whole or not
//! at all.

use std::path::{Path, PathBuf};
use std::process::Command;

use drydock_core::Store;
use drydock_core::audit_log::NewEvent;
use drydock_store::{Backend, SqlStore, StoreOptions, connect_sql, describe_url};

use crate::error::{OpsError, Result};
use crate::manifest::{POSTGRES_ENTRY, SQLITE_ENTRY};

#[derive(Debug, Clone)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Database {
    /// From a resolved `database.url` (a SQLite path already made absolute).
    pub fn from_url(url: &str) -> Result<Database> {
        let backend = Backend::from_url(url).map_err(|e| OpsError::Refused(e.to_string()))?;
        Ok(match backend {
            Backend::Sqlite => {
                let rest = url.trim_start_matches("sqlite://");
                Database::Sqlite(PathBuf::from(rest.split('?').next().unwrap_or(rest)))
            }
            Backend::Postgres => Database::Postgres(url.to_string()),
        })
    }

    pub fn backend(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "sqlite",
            Database::Postgres(_) => "postgres",
        }
    }

    /// The archive entry that holds this kind of database.
    pub fn entry(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => SQLITE_ENTRY,
            Database::Postgres(_) => POSTGRES_ENTRY,
        }
    }

    /// The URL to connect to (for SQLite, made from the file's path).
    pub fn url(&self) -> String {
        match self {
            Database::Sqlite(path) => format!("sqlite://{}", path.display()),
            Database::Postgres(url) => url.clone(),
        }
    }

    /// The migrations this binary carries for this kind of database.
    pub fn migrations(&self) -> &'static [drydock_store::Migration] {
        match self {
            Database::Sqlite(_) => drydock_store::MIGRATIONS_SQLITE,
            Database::Postgres(_) => drydock_store::MIGRATIONS_POSTGRES,
        }
    }

    /// Opens the database, does one piece of `work` (a failure of which is `step`'s), and
    /// closes it again: operations hold no connection between their steps.
    pub async fn with_store<T, E: std::fmt::Display>(
        &self,
        step: &str,
        work: impl AsyncFnOnce(&SqlStore) -> Result<T, E>,
    ) -> Result<T> {
        let store =
            connect_sql(&self.url(), &StoreOptions::default()).await.map_err(OpsError::step("opening the database"))?;
        let result = work(&store).await.map_err(OpsError::step(step));
        store.pool().close().await;
        result
    }

    /// Appends an audit event done by a command on the host (restore, upgrade).
    pub async fn record_event(&self, event: &NewEvent) -> Result<()> {
        self.with_store("recording the audit event", async |store| store.append_event(event).await).await
    }

    /// The schema version the database is at.
    pub async fn schema_version(&self) -> Result<i64> {
        let status = self.with_store("reading the schema version", async |store| store.schema_status().await).await?;
        Ok(status.current)
    }

    /// Applies the pending migrations; returns the schema version reached.
    pub async fn migrate(&self) -> Result<i64> {
        Ok(self.with_store("migrating the database", async |store| store.migrate().await).await?.current)
    }

    /// Writes a consistent copy of the database to `dest` while others may write to it.
    pub async fn snapshot(&self, dest: &Path) -> Result<()> {
        let _ = std::fs::remove_file(dest);
        match self {
            Database::Sqlite(_) => {
                let step = format!("copying the database {}", describe_url(&self.url()));
                let copy = dest.display().to_string();
                self.with_store(&step, async |store| {
                    sqlx::query("VACUUM INTO $1").bind(copy).execute(store.pool()).await
                })
                .await
                .map(|_| ())
            }
            Database::Postgres(url) => {
                let args = ["--no-owner", "--no-privileges", "--format=plain", "--file"];
                let mut command = pg_command("pg_dump", url);
                command.args(args).arg(dest);
                run(command, &format!("dumping {}", describe_url(url)))
            }
        }
    }

    /// Replaces the PostgreSQL database's contents with a dump, in one transaction.
    pub fn load_postgres(url: &str, dump: &Path) -> Result<()> {
        let mut command = pg_command("psql", url);
        command.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-c"]);
        command.arg("DROP SCHEMA public CASCADE; CREATE SCHEMA public;").arg("-f").arg(dump);
        run(command, &format!("loading the database into {}", describe_url(url)))
    }
}

/// A PostgreSQL client command for the URL, the password passed in the environment so that
/// it never shows in a process list.
fn pg_command(program: &str, url: &str) -> Command {
    let mut command = Command::new(program);
    let (url, password) = split_password(url);
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    command.arg("--dbname").arg(url);
    command
}

fn run(mut command: Command, step: &str) -> Result<()> {
    let output = command.output().map_err(|e| OpsError::Step {
        step: step.to_string(),
        reason: format!("cannot run {:?} (is the PostgreSQL client installed?): {e}", command.get_program()),
    })?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(OpsError::Step { step: step.to_string(), reason: stderr.trim().lines().take(5).collect::<Vec<_>>().join("; ") })
}

/// `postgres://user:secret@host/db` → (`postgres://user@host/db`, `secret`, percent-decoded).
fn split_password(url: &str) -> (String, Option<String>) {
    let Some((scheme, rest)) = url.split_once("://") else { return (url.to_string(), None) };
    let Some((credentials, host)) = rest.rsplit_once('@') else { return (url.to_string(), None) };
    let Some((user, password)) = credentials.split_once(':') else { return (url.to_string(), None) };
    (format!("{scheme}://{user}@{host}"), Some(percent_decode(password)))
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = text.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_leaves_the_url() {
        let (url, password) = split_password("postgres://dd:p%40ss:w@db.example:5432/drydock?sslmode=require");
        assert_eq!(url, "postgres://dd@db.example:5432/drydock?sslmode=require");
        assert_eq!(password.as_deref(), Some("p@ss:w"));
        assert_eq!(split_password("postgres://dd@db/x"), ("postgres://dd@db/x".to_string(), None));
    }
}
