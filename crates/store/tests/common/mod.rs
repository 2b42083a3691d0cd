//! What the store's tests share: the suite's PostgreSQL server and a database of its own.
#![allow(dead_code)]

use drydock_core::Store;
use drydock_store::{SqlStore, connect_sql};

/// Drops the test's database even when the test fails.
pub struct DropDatabase {
    pub server: String,
    pub name: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let _ = std::process::Command::new("psql").args([self.server.as_str(), "-qAt", "-c", sql.as_str()]).output();
    }
}

pub fn postgres_url() -> Option<String> {
    match std::env::var("TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").as_deref() == Ok("true") => panic!("TEST_POSTGRES_URL is not set under CI=true"),
        _ => {
            eprintln!("SKIPPED: TEST_POSTGRES_URL is not set");
            None
        }
    }
}

/// A fresh database of its own on the suite's PostgreSQL (dropped with the guard), migrated.
pub async fn postgres_store(prefix: &str) -> Option<(SqlStore, DropDatabase)> {
    let server = postgres_url()?;
    let name = format!("{prefix}_{}", drydock_core::ids::random_lower(10));
    let admin = connect_sql(&server, &Default::default()).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(admin.pool()).await.unwrap();
    admin.pool().close().await;
    let guard = DropDatabase { server: server.clone(), name: name.clone() };
    let url = format!("{}/{name}", server.rsplit_once('/').unwrap().0);
    let store = connect_sql(&url, &Default::default()).await.unwrap();
    store.migrate().await.unwrap();
    Some((store, guard))
}

/// A fresh SQLite store in a temp dir, migrated.
pub async fn sqlite_store() -> (SqlStore, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("drydock.db").display());
    let store = connect_sql(&url, &Default::default()).await.unwrap();
    store.migrate().await.unwrap();
    (store, dir)
}
