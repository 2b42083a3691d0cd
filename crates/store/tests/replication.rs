//! A standby's copy of the database, on both backends: a copy applied to another database
//! holds the same rows; sessions stay where they were made; a copy that does not fit is
//! refused and changes nothing; every table of the schema is either replicated or known
//! to be local.

mod common;

use chrono::Utc;
use common::{postgres_store, sqlite_store};
use drydock_core::audit_log::{Actor, NewEvent, Target};
use drydock_core::model::{Credential, CredentialKind};
use drydock_core::{NewUser, Store};
use drydock_store::SqlStore;
use drydock_store::replication::{Cell, REPLICATED_TABLES};

fn new_user(name: &str) -> NewUser {
    NewUser {
        id: format!("user-{name}"),
        name: name.into(),
        email: format!("{name}@example.com"),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
        created: Utc::now(),
    }
}

fn event(action: &str, name: &str) -> NewEvent {
    NewEvent::new(Utc::now(), Actor::system(), action, Target::new("user", format!("user-{name}"), name))
}

fn credential(user: &str, kind: CredentialKind, id: &str) -> Credential {
    Credential {
        id: id.into(),
        user_id: format!("user-{user}"),
        kind,
        name: id.into(),
        digest: format!("digest-{id}"),
        created: Utc::now(),
        expires: None,
        last_used: None,
    }
}

async fn add_user(store: &SqlStore, name: &str) {
    store.create_user(&new_user(name), &["manageSystem".into()], None, &event("user.create", name)).await.unwrap();
}

async fn credential_ids(store: &SqlStore, user: &str, kind: CredentialKind) -> Vec<String> {
    let mut ids: Vec<String> =
        store.credentials_of(&format!("user-{user}"), kind).await.unwrap().into_iter().map(|c| c.id).collect();
    ids.sort();
    ids
}

async fn copy_lands_whole_and_keeps_local_sessions(primary: SqlStore, standby: SqlStore) {
    for name in ["ada", "bob", "cy"] {
        add_user(&primary, name).await;
    }
    primary
        .insert_credential(&credential("ada", CredentialKind::Token, "tok-ada"), &event("token.create", "ada"))
        .await
        .unwrap();
    primary
        .insert_credential(&credential("ada", CredentialKind::Session, "primary-session"), &event("auth.signin", "ada"))
        .await
        .unwrap();
    // The standby already holds an older copy, and sessions of its own.
    add_user(&standby, "ada").await;
    add_user(&standby, "gone").await;
    standby
        .insert_credential(&credential("ada", CredentialKind::Session, "standby-session"), &event("auth.signin", "ada"))
        .await
        .unwrap();
    standby
        .insert_credential(
            &credential("gone", CredentialKind::Session, "orphan-session"),
            &event("auth.signin", "gone"),
        )
        .await
        .unwrap();

    let copy = primary.copy_for_standby().await.unwrap();
    let credentials = copy.table("credentials").unwrap();
    assert_eq!(credentials.rows.len(), 1, "sessions are not copied: {credentials:?}");
    assert!(copy.rows() > 5);
    // The copy survives its trip as JSON.
    let copy: drydock_store::replication::DatabaseCopy =
        serde_json::from_slice(&serde_json::to_vec(&copy).unwrap()).unwrap();
    standby.apply_from_primary(&copy).await.unwrap();

    let again = standby.copy_for_standby().await.unwrap();
    assert_eq!(again, copy, "the standby holds exactly the primary's rows");
    assert_eq!(credential_ids(&standby, "ada", CredentialKind::Token).await, ["tok-ada"]);
    assert_eq!(credential_ids(&standby, "ada", CredentialKind::Session).await, ["standby-session"]);
    assert!(standby.user_by_name("gone").await.unwrap().is_none());
    // The copied chain continues on the standby once it writes (as after a promotion).
    add_user(&standby, "dee").await;
    let events = standby.audit_events_after(0, 1000).await.unwrap();
    for pair in events.windows(2) {
        assert_eq!(pair[1].seq, pair[0].seq + 1);
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }

    // A copy that does not fit is refused, and nothing changes.
    let before = standby.copy_for_standby().await.unwrap();
    let mut other_schema = copy.clone();
    other_schema.schema_version += 1;
    let refused = standby.apply_from_primary(&other_schema).await.unwrap_err().to_string();
    assert!(refused.contains("schema version"), "{refused}");
    let mut bad_value = copy.clone();
    bad_value.tables[0].rows[0][4] = Some(Cell::Text("not a time".into()));
    assert!(standby.apply_from_primary(&bad_value).await.is_err());
    let mut late_failure = copy.clone();
    let last = late_failure.tables.len() - 1;
    let width = late_failure.tables[last].columns.len();
    late_failure.tables[last].rows.push(vec![None; width]);
    assert!(standby.apply_from_primary(&late_failure).await.is_err(), "a NOT NULL column refuses the row");
    assert_eq!(standby.copy_for_standby().await.unwrap(), before, "a refused copy changed nothing");
}

/// The tables the migrations make: replicated, or the migrations' own.
async fn every_table_is_accounted_for(store: &SqlStore) {
    let sql = if store.backend() == "postgres" {
        "SELECT table_name::text AS name FROM information_schema.tables WHERE table_schema = current_schema()"
    } else {
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    };
    let rows: Vec<String> = sqlx::query_scalar(sql).fetch_all(store.pool()).await.unwrap();
    let mut unknown: Vec<&String> =
        rows.iter().filter(|t| !REPLICATED_TABLES.contains(&t.as_str()) && !t.contains("migrations")).collect();
    unknown.sort();
    assert!(unknown.is_empty(), "tables a standby would not copy: {unknown:?} (add them to REPLICATED_TABLES)");
}

#[tokio::test]
async fn sqlite_copy_for_a_standby() {
    let (primary, _a) = sqlite_store().await;
    let (standby, _b) = sqlite_store().await;
    every_table_is_accounted_for(&primary).await;
    copy_lands_whole_and_keeps_local_sessions(primary, standby).await;
}

#[tokio::test]
async fn postgres_copy_for_a_standby() {
    let Some((primary, _a)) = postgres_store("repl_primary").await else { return };
    let Some((standby, _b)) = postgres_store("repl_standby").await else { return };
    every_table_is_accounted_for(&primary).await;
    copy_lands_whole_and_keeps_local_sessions(primary, standby).await;
}

/// The copy is backend-neutral: a SQLite primary's copy lands in a PostgreSQL standby.
#[tokio::test]
async fn a_sqlite_copy_lands_in_postgres() {
    let (primary, _a) = sqlite_store().await;
    let Some((standby, _b)) = postgres_store("repl_cross").await else { return };
    for name in ["ada", "bob"] {
        add_user(&primary, name).await;
    }
    primary
        .insert_credential(&credential("bob", CredentialKind::Token, "tok-bob"), &event("token.create", "bob"))
        .await
        .unwrap();
    let copy = primary.copy_for_standby().await.unwrap();
    standby.apply_from_primary(&copy).await.unwrap();
    assert_eq!(standby.copy_for_standby().await.unwrap(), copy);
}
