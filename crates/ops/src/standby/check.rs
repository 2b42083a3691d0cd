//! `drydock standby check`: the seed's "test the secondary". It verifies the standby's
//! copy without changing it: the database opens at this binary's schema, is sound
//! (SQLite's integrity check) and holds exactly the rows of the last sync (their digest),
//! its audit chain verifies, and every workspace's `/projects` copy matches the primary's
//! index; then it reports how old the copy is (the recovery point).

use std::sync::Arc;

use chrono::Utc;
use drydock_core::audit_log::AuditLog;
use drydock_core::config::AuditConfig;
use drydock_core::standby::CheckReport;
use drydock_core::{Page, Store, SystemClock};
use drydock_store::replication::DatabaseCopy;
use drydock_store::{SqlStore, StoreOptions, connect_sql};
use sha2::{Digest, Sha256};

use super::{StandbyDir, read_json, write_json};
use crate::database::Database;
use crate::error::{OpsError, Result};
use crate::instance::DataDir;
use crate::mirror;
use crate::versions::SCHEMA;

/// The digest of a database copy, as recorded when it is applied and checked against.
pub fn database_digest(copy: &DatabaseCopy) -> Result<String> {
    let json = serde_json::to_vec(copy).map_err(OpsError::step("encoding the copy"))?;
    Ok(hex::encode(Sha256::digest(&json)))
}

/// Checks the copy, records the report in `standby/check.json` (the running standby shows
/// it), and returns it.
pub async fn check(dir: &DataDir, database: &Database) -> Result<CheckReport> {
    let files = StandbyDir::of(dir);
    let record = files.record()?;
    let mut problems = Vec::new();
    if record.follow.last_sync.is_none() {
        problems.push("no sync has completed yet".to_string());
    }
    let store = Arc::new(
        connect_sql(&database.url(), &StoreOptions::default()).await.map_err(OpsError::step("opening the database"))?,
    );
    let checked = check_database(&store, record.database_digest.as_deref()).await;
    store.pool().close().await;
    let (users, workspaces, db_problems) = checked.map_err(OpsError::step("checking the database"))?;
    problems.extend(db_problems);
    let mirror = files.mirror();
    for ws in record.projects.keys() {
        problems.extend(mirror::check_mirror(&mirror, ws)?);
    }
    let report = CheckReport {
        time: Utc::now(),
        ok: problems.is_empty(),
        problems,
        rpo_seconds: record.follow.lag_seconds(Utc::now()),
        users,
        workspaces,
    };
    write_json(&files.check_file(), &report)?;
    Ok(report)
}

/// Users, workspaces, and what is wrong with the database.
async fn check_database(
    store: &Arc<SqlStore>,
    expected_digest: Option<&str>,
) -> std::result::Result<(u64, u64, Vec<String>), drydock_core::StoreError> {
    let mut found = Vec::new();
    let schema = store.schema_status().await?.current;
    if schema != SCHEMA {
        found.push(format!("the database has schema version {schema}, this drydock needs {SCHEMA}"));
    }
    if store.backend() == "sqlite" {
        let answer: String = sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(store.pool())
            .await
            .map_err(|e| drydock_core::StoreError::Other(Box::new(e)))?;
        if answer != "ok" {
            found.push(format!("SQLite's integrity check: {answer}"));
        }
    }
    let copy = store.copy_for_standby().await?;
    match (expected_digest, database_digest(&copy)) {
        (Some(want), Ok(have)) if want != have => {
            found.push("the database's rows differ from the last sync's (changed since it was applied)".to_string())
        }
        (_, Err(e)) => found.push(e.to_string()),
        _ => {}
    }
    let log = AuditLog::new(store.clone(), Arc::new(SystemClock), &AuditConfig::default());
    match log.verify_chain().await {
        Ok(v) => {
            if let Some(broken) = v.broken {
                found.push(format!("the audit chain breaks at event {}: {}", broken.seq, broken.reason));
            }
        }
        Err(e) => found.push(format!("the audit chain cannot be verified: {e}")),
    }
    let users = store.list_users(&Default::default(), Page { max_items: 1, skip_count: 0 }).await?.1;
    let workspaces = copy.table("workspaces").map(|t| t.rows.len() as u64).unwrap_or(0);
    Ok((users, workspaces, found))
}

/// The last check's report, if one was made.
pub fn last_check(files: &StandbyDir) -> Option<CheckReport> {
    read_json(&files.check_file()).ok().flatten()
}
