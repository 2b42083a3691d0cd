//! The instance's own state in SQL: named values (`system_state`) and the backup history
//! (`backup_runs`).

use drydock_core::audit_log::NewEvent;
use drydock_core::model::BackupRun;
use drydock_core::store::StoreResult;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::sql::{SqlStore, other, time};

fn backup_run_from(row: &AnyRow) -> Result<BackupRun, sqlx::Error> {
    Ok(BackupRun {
        id: row.try_get("id")?,
        started: time(row.try_get("started")?),
        finished: row.try_get::<Option<i64>, _>("finished")?.map(time),
        trigger: row.try_get("trigger")?,
        file: row.try_get("file")?,
        size: row.try_get("size")?,
        result: row.try_get("result")?,
        message: row.try_get("message")?,
    })
}

impl SqlStore {
    pub(crate) async fn system_get(&self, name: &str) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT value FROM system_state WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(other)?;
        row.map(|r| r.try_get::<String, _>("value")).transpose().map_err(other)
    }

    pub(crate) async fn system_set(
        &self,
        name: &str,
        value: Option<&str>,
        now_ms: i64,
        event: Option<&NewEvent>,
    ) -> StoreResult<()> {
        let mut tx =
            if event.is_some() { self.begin_guarded().await? } else { self.pool().begin().await.map_err(other)? };
        match value {
            Some(value) => sqlx::query(
                "INSERT INTO system_state (name, value, updated) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated = excluded.updated",
            )
            .bind(name)
            .bind(value)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(other)?,
            None => sqlx::query("DELETE FROM system_state WHERE name = $1")
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(other)?,
        };
        self.commit_with(tx, event).await
    }

    pub(crate) async fn backup_record(&self, run: &BackupRun, event: Option<&NewEvent>) -> StoreResult<()> {
        let mut tx =
            if event.is_some() { self.begin_guarded().await? } else { self.pool().begin().await.map_err(other)? };
        sqlx::query(
            "INSERT INTO backup_runs (id, started, finished, \"trigger\", file, size, result, message) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (id) DO UPDATE SET started = excluded.started, finished = excluded.finished, \
             \"trigger\" = excluded.\"trigger\", file = excluded.file, size = excluded.size, \
             result = excluded.result, message = excluded.message",
        )
        .bind(run.id.as_str())
        .bind(run.started.timestamp_millis())
        .bind(run.finished.map(|t| t.timestamp_millis()))
        .bind(run.trigger.as_str())
        .bind(run.file.as_deref())
        .bind(run.size)
        .bind(run.result.as_str())
        .bind(run.message.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(other)?;
        self.commit_with(tx, event).await
    }

    pub(crate) async fn backup_list(&self, limit: u32) -> StoreResult<Vec<BackupRun>> {
        let rows = sqlx::query(
            "SELECT id, started, finished, \"trigger\", file, size, result, message FROM backup_runs \
             ORDER BY started DESC, id DESC LIMIT $1",
        )
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await
        .map_err(other)?;
        rows.iter().map(backup_run_from).collect::<Result<Vec<_>, _>>().map_err(other)
    }
}
