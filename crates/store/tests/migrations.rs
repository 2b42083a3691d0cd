//! Migrations on real databases: an instance at an old schema, with data, is brought
//! forward and keeps its data; a schema newer than the binary is left alone; what the
//! latest schema added works on both backends.

use chrono::{DateTime, Utc};
use drydock_core::audit_log::{Actor, NewEvent, Target};
use drydock_core::{BackupRun, NewUser, Store};
use drydock_store::{MIGRATIONS_POSTGRES, MIGRATIONS_SQLITE, SqlStore, connect_sql};

mod common;
use common::{DropDatabase, postgres_url};

async fn old_instance_upgrades(store: SqlStore, known: i64) {
    // Schema 1 has no audit log: the old instance's user is written without its event.
    let store = store.with_audit(false);
    let status = store.migrate_to(1).await.unwrap();
    assert_eq!(status.current, 1);
    let user = NewUser {
        id: "user-old".into(),
        name: "old-timer".into(),
        email: "old@example.com".into(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        created: Utc::now(),
    };
    let event = NewEvent::new(Utc::now(), Actor::system(), "user.create", Target::system());
    store.create_user(&user, &["manageSystem".to_string()], None, &event).await.unwrap();
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

/// Schema 5: named system values and the backup history, on a migrated store.
async fn system_state_and_backup_runs(store: SqlStore) {
    store.migrate().await.unwrap();
    assert_eq!(store.system_value("maintenance").await.unwrap(), None);
    store.set_system_value("maintenance", Some(r#"{"message":"one"}"#), None).await.unwrap();
    store.set_system_value("maintenance", Some(r#"{"message":"two"}"#), None).await.unwrap();
    store.set_system_value("other", Some("x"), None).await.unwrap();
    assert_eq!(store.system_value("maintenance").await.unwrap().as_deref(), Some(r#"{"message":"two"}"#));
    store.set_system_value("maintenance", None, None).await.unwrap();
    store.set_system_value("maintenance", None, None).await.unwrap();
    assert_eq!(store.system_value("maintenance").await.unwrap(), None);
    assert_eq!(store.system_value("other").await.unwrap().as_deref(), Some("x"));

    let at = |ms: i64| DateTime::from_timestamp_millis(ms).unwrap();
    let running = |id: &str, started: i64| BackupRun {
        id: id.into(),
        started: at(started),
        finished: None,
        trigger: "schedule".into(),
        file: None,
        size: None,
        result: "running".into(),
        message: None,
    };
    for (id, started) in [("b-old", 1_000), ("b-new", 3_000), ("b-mid", 2_000)] {
        store.record_backup_run(&running(id, started), None).await.unwrap();
    }
    // Recorded again when it ends: the same row, updated.
    let done = BackupRun {
        finished: Some(at(2_500)),
        file: Some("drydock-backup-0.1.0-20240101T000000Z.tar.zst".into()),
        size: Some(123_456_789_012),
        result: "ok".into(),
        message: Some("3 workspaces".into()),
        ..running("b-mid", 2_000)
    };
    store.record_backup_run(&done, None).await.unwrap();
    let runs = store.backup_runs(10).await.unwrap();
    assert_eq!(runs.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(), ["b-new", "b-mid", "b-old"]);
    assert_eq!(runs[1], done);
    assert_eq!(runs[0], running("b-new", 3_000));
    assert_eq!(store.backup_runs(2).await.unwrap().len(), 2);
}

#[tokio::test]
async fn sqlite_system_state_and_backup_runs() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("drydock.db").display());
    system_state_and_backup_runs(connect_sql(&url, &Default::default()).await.unwrap()).await;
}

#[tokio::test]
async fn postgres_system_state_and_backup_runs() {
    let Some(server) = postgres_url() else { return };
    let name = format!("drydock_system_{}", drydock_core::ids::random_lower(10));
    let admin = connect_sql(&server, &Default::default()).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(admin.pool()).await.unwrap();
    let _drop = DropDatabase { server: server.clone(), name: name.clone() };
    let url = format!("{}/{name}", server.rsplit_once('/').unwrap().0);
    system_state_and_backup_runs(connect_sql(&url, &Default::default()).await.unwrap()).await;
}
