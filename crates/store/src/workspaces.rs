//! Workspaces in SQL: the rows, their JSON columns, and guarded writes.

use std::collections::BTreeMap;

use drydock_core::audit_log::NewEvent;
use drydock_core::store::{Admission, Conflict, StoreResult, Usage};
use drydock_core::workspace::{DOMAIN_WORKSPACE, Stack, Workspace, WorkspaceFilter, WorkspaceStatus};
use drydock_core::{Page, StoreError};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row, Transaction};

use crate::sql::{SqlStore, other};

const COLUMNS: &str = "w.id, w.owner_id, u.name AS namespace, w.name, w.config, w.status, w.runtime, w.attributes";
const FROM: &str = "FROM workspaces w JOIN users u ON u.id = w.owner_id";

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Other(format!("stored workspace {what} cannot be read: {e}").into())
}

fn workspace_from(row: &AnyRow) -> StoreResult<Workspace> {
    let config: String = row.try_get("config").map_err(other)?;
    let status: String = row.try_get("status").map_err(other)?;
    let runtime: Option<String> = row.try_get("runtime").map_err(other)?;
    let attributes: String = row.try_get("attributes").map_err(other)?;
    Ok(Workspace {
        id: row.try_get("id").map_err(other)?,
        owner_id: row.try_get("owner_id").map_err(other)?,
        namespace: row.try_get("namespace").map_err(other)?,
        config: serde_json::from_str(&config).map_err(|e| corrupt("config", e))?,
        status: WorkspaceStatus::parse(&status).ok_or_else(|| corrupt("status", &status))?,
        runtime: runtime.map(|r| serde_json::from_str(&r)).transpose().map_err(|e| corrupt("runtime", e))?,
        attributes: serde_json::from_str::<BTreeMap<String, String>>(&attributes)
            .map_err(|e| corrupt("attributes", e))?,
    })
}

fn unwritable(e: serde_json::Error) -> StoreError {
    StoreError::Other(Box::new(e))
}

fn millis(workspace: &Workspace, key: &str) -> i64 {
    workspace
        .attributes
        .get(key)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or(0, |t| t.timestamp_millis())
}

fn status_list(from: &[WorkspaceStatus]) -> String {
    from.iter().map(|s| format!("'{}'", s.as_str())).collect::<Vec<_>>().join(", ")
}

/// The statuses in which a workspace holds a runtime and its reserved memory.
const BUSY: &str = "('STARTING', 'RUNNING', 'STOPPING')";

/// A user's usage, read on the given connection (a guarded transaction's, to admit).
pub(crate) async fn usage_on(conn: &mut AnyConnection, user_id: &str) -> StoreResult<Usage> {
    let own = sqlx::query(&format!(
        "SELECT CAST(COUNT(*) AS BIGINT) AS workspaces, \
         CAST(COALESCE(SUM(CASE WHEN status IN {BUSY} THEN 1 ELSE 0 END), 0) AS BIGINT) AS runtimes, \
         CAST(COALESCE(SUM(CASE WHEN status IN {BUSY} THEN ram_mb ELSE 0 END), 0) AS BIGINT) AS ram_mb \
         FROM workspaces WHERE owner_id = $1"
    ))
    .bind(user_id)
    .fetch_one(&mut *conn)
    .await
    .map_err(other)?;
    let host: i64 = sqlx::query_scalar(&format!(
        "SELECT CAST(COALESCE(SUM(ram_mb), 0) AS BIGINT) FROM workspaces WHERE status IN {BUSY}"
    ))
    .fetch_one(&mut *conn)
    .await
    .map_err(other)?;
    let count = |column: &str| -> StoreResult<u64> { Ok(own.try_get::<i64, _>(column).map_err(other)?.max(0) as u64) };
    Ok(Usage {
        workspaces: count("workspaces")?,
        runtimes: count("runtimes")?,
        ram_mb: count("ram_mb")?,
        host_ram_mb: host.max(0) as u64,
    })
}

/// Moves a workspace to its new status (with runtime and attributes) if its status is one of
/// `from`, and sets the memory it holds when given; whether it did.
async fn transition_on(
    conn: &mut AnyConnection,
    w: &Workspace,
    from: &[WorkspaceStatus],
    ram_mb: Option<u64>,
) -> StoreResult<bool> {
    let sql = format!(
        "UPDATE workspaces SET status = $1, runtime = $2, attributes = $3, updated = $4, \
         ram_mb = COALESCE($5, ram_mb) WHERE id = $6 AND status IN ({})",
        status_list(from)
    );
    let done = sqlx::query(&sql)
        .bind(w.status.as_str())
        .bind(w.runtime.as_ref().map(serde_json::to_string).transpose().map_err(unwritable)?)
        .bind(serde_json::to_string(&w.attributes).map_err(unwritable)?)
        .bind(millis(w, "updated"))
        .bind(ram_mb.map(|r| i64::try_from(r).unwrap_or(i64::MAX)))
        .bind(w.id.as_str())
        .execute(&mut *conn)
        .await
        .map_err(other)?;
    Ok(done.rows_affected() == 1)
}

fn refused(message: String) -> StoreError {
    StoreError::Conflict(Conflict::Limit(message))
}

impl SqlStore {
    async fn owner_has_name(
        tx: &mut Transaction<'static, Any>,
        owner_id: &str,
        name: &str,
        except_id: &str,
    ) -> StoreResult<bool> {
        let row = sqlx::query("SELECT 1 AS one FROM workspaces WHERE owner_id = $1 AND name = $2 AND id <> $3")
            .bind(owner_id)
            .bind(name)
            .bind(except_id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(other)?;
        Ok(row.is_some())
    }

    pub(crate) async fn ws_create(
        &self,
        w: &Workspace,
        owner_actions: &[String],
        admit: Admission<'_>,
        event: &NewEvent,
    ) -> StoreResult<()> {
        let mut tx = self.begin_guarded().await?;
        if Self::owner_has_name(&mut tx, &w.owner_id, &w.config.name, "").await? {
            return Err(StoreError::Conflict(Conflict::Taken { field: "name", value: w.config.name.clone() }));
        }
        admit(&usage_on(&mut tx, &w.owner_id).await?).map_err(refused)?;
        sqlx::query(
            "INSERT INTO workspaces (id, owner_id, name, config, status, runtime, attributes, created, updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(w.id.as_str())
        .bind(w.owner_id.as_str())
        .bind(w.config.name.as_str())
        .bind(serde_json::to_string(&w.config).map_err(unwritable)?)
        .bind(w.status.as_str())
        .bind(w.runtime.as_ref().map(serde_json::to_string).transpose().map_err(unwritable)?)
        .bind(serde_json::to_string(&w.attributes).map_err(unwritable)?)
        .bind(millis(w, "created"))
        .bind(millis(w, "updated"))
        .execute(&mut *tx)
        .await
        .map_err(other)?;
        sqlx::query("INSERT INTO permissions (user_id, domain_id, instance_id, actions) VALUES ($1, $2, $3, $4)")
            .bind(w.owner_id.as_str())
            .bind(DOMAIN_WORKSPACE)
            .bind(w.id.as_str())
            .bind(owner_actions.join(","))
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        self.commit_with(tx, Some(event)).await
    }

    pub(crate) async fn ws_get(&self, id: &str) -> StoreResult<Option<Workspace>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} {FROM} WHERE w.id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(other)?;
        row.as_ref().map(workspace_from).transpose()
    }

    pub(crate) async fn ws_by_name(&self, namespace: &str, name: &str) -> StoreResult<Option<Workspace>> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} {FROM} WHERE u.name = $1 AND w.name = $2"))
            .bind(namespace)
            .bind(name)
            .fetch_optional(self.pool())
            .await
            .map_err(other)?;
        row.as_ref().map(workspace_from).transpose()
    }

    pub(crate) async fn ws_list(&self, filter: &WorkspaceFilter, page: Page) -> StoreResult<(Vec<Workspace>, u64)> {
        let mut conditions = Vec::new();
        let mut params: Vec<String> = Vec::new();
        if let Some(user) = &filter.visible_to {
            params.push(user.clone());
            let n = params.len();
            conditions.push(format!(
                "(w.owner_id = ${n} OR EXISTS (SELECT 1 FROM permissions p WHERE p.user_id = ${n} \
                 AND p.domain_id = '{DOMAIN_WORKSPACE}' AND p.instance_id = w.id \
                 AND (',' || p.actions || ',') LIKE '%,read,%'))"
            ));
        }
        if let Some(owner) = &filter.owner {
            params.push(owner.clone());
            conditions.push(format!("w.owner_id = ${}", params.len()));
        }
        if let Some(status) = filter.status {
            params.push(status.as_str().to_string());
            conditions.push(format!("w.status = ${}", params.len()));
        }
        let filter_sql =
            if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
        let count_sql = format!("SELECT COUNT(*) {FROM}{filter_sql}");
        let mut count = sqlx::query_scalar::<_, i64>(&count_sql);
        for p in &params {
            count = count.bind(p.as_str());
        }
        let total = count.fetch_one(self.pool()).await.map_err(other)?;
        let sql = format!(
            "SELECT {COLUMNS} {FROM}{filter_sql} ORDER BY u.name, w.name LIMIT ${} OFFSET ${}",
            params.len() + 1,
            params.len() + 2
        );
        let mut list = sqlx::query(&sql);
        for p in &params {
            list = list.bind(p.as_str());
        }
        let rows = list
            .bind(i64::from(page.max_items))
            .bind(i64::try_from(page.skip_count).unwrap_or(i64::MAX))
            .fetch_all(self.pool())
            .await
            .map_err(other)?;
        let items = rows.iter().map(workspace_from).collect::<StoreResult<Vec<_>>>()?;
        Ok((items, total.max(0) as u64))
    }

    pub(crate) async fn ws_update_config(&self, w: &Workspace, event: &NewEvent) -> StoreResult<()> {
        let mut tx = self.begin_guarded().await?;
        if Self::owner_has_name(&mut tx, &w.owner_id, &w.config.name, &w.id).await? {
            return Err(StoreError::Conflict(Conflict::Taken { field: "name", value: w.config.name.clone() }));
        }
        let done =
            sqlx::query("UPDATE workspaces SET name = $1, config = $2, attributes = $3, updated = $4 WHERE id = $5")
                .bind(w.config.name.as_str())
                .bind(serde_json::to_string(&w.config).map_err(unwritable)?)
                .bind(serde_json::to_string(&w.attributes).map_err(unwritable)?)
                .bind(millis(w, "updated"))
                .bind(w.id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(other)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("workspace"));
        }
        self.commit_with(tx, Some(event)).await
    }

    pub(crate) async fn ws_transition(
        &self,
        w: &Workspace,
        from: &[WorkspaceStatus],
        event: Option<&NewEvent>,
    ) -> StoreResult<bool> {
        let Some(event) = event else {
            let mut conn = self.pool().acquire().await.map_err(other)?;
            return transition_on(&mut conn, w, from, None).await;
        };
        let mut tx = self.begin_guarded().await?;
        if !transition_on(&mut tx, w, from, None).await? {
            return Ok(false);
        }
        self.commit_with(tx, Some(event)).await?;
        Ok(true)
    }

    pub(crate) async fn ws_admit_start(
        &self,
        w: &Workspace,
        from: &[WorkspaceStatus],
        ram_mb: u64,
        admit: Admission<'_>,
        event: &NewEvent,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_guarded().await?;
        admit(&usage_on(&mut tx, &w.owner_id).await?).map_err(refused)?;
        if !transition_on(&mut tx, w, from, Some(ram_mb)).await? {
            return Ok(false);
        }
        self.commit_with(tx, Some(event)).await?;
        Ok(true)
    }

    pub(crate) async fn ws_delete(&self, id: &str, from: &[WorkspaceStatus], event: &NewEvent) -> StoreResult<()> {
        let mut tx = self.begin_guarded().await?;
        let row = sqlx::query("SELECT status FROM workspaces WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(other)?
            .ok_or(StoreError::NotFound("workspace"))?;
        let status: String = row.try_get("status").map_err(other)?;
        if !from.iter().any(|s| s.as_str() == status) {
            return Err(StoreError::Conflict(Conflict::WorkspaceStatus(status)));
        }
        sqlx::query("DELETE FROM permissions WHERE domain_id = $1 AND instance_id = $2")
            .bind(DOMAIN_WORKSPACE)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        sqlx::query("DELETE FROM workspaces WHERE id = $1").bind(id).execute(&mut *tx).await.map_err(other)?;
        self.commit_with(tx, Some(event)).await
    }

    /// The names of the workspaces a user owns, inside a guarded transaction.
    pub(crate) async fn ws_owned_by(tx: &mut Transaction<'static, Any>, user_id: &str) -> StoreResult<Vec<String>> {
        let rows = sqlx::query("SELECT name FROM workspaces WHERE owner_id = $1 ORDER BY name")
            .bind(user_id)
            .fetch_all(&mut **tx)
            .await
            .map_err(other)?;
        rows.iter().map(|r| r.try_get::<String, _>("name").map_err(other)).collect()
    }
}

fn stack_from(row: &AnyRow) -> StoreResult<Stack> {
    let text: String = row.try_get("stack").map_err(other)?;
    serde_json::from_str(&text).map_err(|e| corrupt("stack", e))
}

impl SqlStore {
    pub(crate) async fn stack_create(&self, stack: &Stack, event: &NewEvent) -> StoreResult<()> {
        let mut tx = self.begin_guarded().await?;
        let taken = sqlx::query("SELECT 1 AS one FROM stacks WHERE name = $1")
            .bind(stack.name.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(other)?;
        if taken.is_some() {
            return Err(StoreError::Conflict(Conflict::Taken { field: "name", value: stack.name.clone() }));
        }
        let created = chrono::DateTime::parse_from_rfc3339(&stack.created).map_or(0, |t| t.timestamp_millis());
        sqlx::query("INSERT INTO stacks (id, name, stack, created) VALUES ($1, $2, $3, $4)")
            .bind(stack.id.as_str())
            .bind(stack.name.as_str())
            .bind(serde_json::to_string(stack).map_err(unwritable)?)
            .bind(created)
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        self.commit_with(tx, Some(event)).await
    }

    pub(crate) async fn stack_list(&self) -> StoreResult<Vec<Stack>> {
        let rows = sqlx::query("SELECT stack FROM stacks ORDER BY name").fetch_all(self.pool()).await.map_err(other)?;
        rows.iter().map(stack_from).collect()
    }

    pub(crate) async fn stack_get(&self, id: &str) -> StoreResult<Option<Stack>> {
        let row = sqlx::query("SELECT stack FROM stacks WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(other)?;
        row.as_ref().map(stack_from).transpose()
    }

    pub(crate) async fn stack_delete(&self, id: &str, event: &NewEvent) -> StoreResult<()> {
        let mut tx = self.begin_guarded().await?;
        let done = sqlx::query("DELETE FROM stacks WHERE id = $1").bind(id).execute(&mut *tx).await.map_err(other)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("stack"));
        }
        self.commit_with(tx, Some(event)).await
    }
}
