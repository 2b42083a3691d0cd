//! Migrations on real databases: an instance at an old schema, with data, is brought
//! forward and keeps its data; a schema newer than the binary is left alone.

use chrono::Utc;
use drydock_core::{NewUser, Store};
use drydock_store::{MIGRATIONS_POSTGRES, MIGRATIONS_SQLITE, SqlStore, connect_sql};

async fn old_instance_upgrades(store: SqlStore, known: i64) {
    let status = store.migrate_to(1).await.unwrap();
    assert_eq!(status.current, 1);
    let user = NewUser {
        id: "user-old".into(),
        name: "old-timer".into(),
        email: "old@example.com".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        created: Utc::now(),
    };
    store.create_user(&user, &["manageSystem".to_string()]).await.unwrap();
    let status = store.migrate().await.unwrap();
    assert_eq!((status.current, status.known), (known, known));
    assert_eq!(store.user_by_name("old-timer").await.unwrap().unwrap().email, "old@example.com");
    // Running it again changes nothing.
    assert_eq!(store.migrate().await.unwrap().current, known);
}

#[tokio::test]
async fn sqlite_instance_at_schema_1_upgrades() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("drydock.db").display());
    let store = connect_sql(&url, &Default::default()).await.unwrap();
    old_instance_upgrades(store, MIGRATIONS_SQLITE.len() as i64).await;
}

#[tokio::test]
async fn postgres_instance_at_schema_1_upgrades() {
    let Some(server) = postgres_url() else { return };
    let name = format!("drydock_migrations_{}", drydock_core::ids::random_lower(10));
    let admin = connect_sql(&server, &Default::default()).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(admin.pool()).await.unwrap();
    let _drop = DropDatabase { server: server.clone(), name: name.clone() };
    let url = format!("{}/{name}", server.rsplit_once('/').unwrap().0);
    let store = connect_sql(&url, &Default::default()).await.unwrap();
    old_instance_upgrades(store, MIGRATIONS_POSTGRES.len() as i64).await;
}

/// Drops the test's database even when the test fails.
struct DropDatabase {
    server: String,
    name: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let _ = std::process::Command::new("psql").args([self.server.as_str(), "-qAt", "-c", sql.as_str()]).output();
    }
}

fn postgres_url() -> Option<String> {
    match std::env::var("TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").as_deref() == Ok("true") => panic!("TEST_POSTGRES_URL is not set under CI=true"),
        _ => {
            eprintln!("SKIPPED: TEST_POSTGRES_URL is not set");
            None
        }
    }
}
