//! Resource limits in SQL: per-user overrides (JSON) and usage.

use drydock_core::audit_log::NewEvent;
use drydock_core::limits::{Resource, ResourceOverride};
use drydock_core::store::{StoreResult, Usage};
use drydock_core::{Page, StoreError};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::sql::{SqlStore, other};
use crate::workspaces::usage_on;

fn resources_from(row: &AnyRow) -> StoreResult<Vec<Resource>> {
    let text: String = row.try_get("resources").map_err(other)?;
    serde_json::from_str(&text)
        .map_err(|e| StoreError::Other(format!("stored resource override cannot be read: {e}").into()))
}

impl SqlStore {
    pub(crate) async fn limits_override(&self, user_id: &str) -> StoreResult<Option<Vec<Resource>>> {
        let row = sqlx::query("SELECT resources FROM resource_overrides WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(self.pool())
            .await
            .map_err(other)?;
        row.as_ref().map(resources_from).transpose()
    }

    pub(crate) async fn limits_overrides(&self, page: Page) -> StoreResult<(Vec<ResourceOverride>, u64)> {
        let total: i64 = sqlx::query_scalar("SELECT CAST(COUNT(*) AS BIGINT) FROM resource_overrides")
            .fetch_one(self.pool())
            .await
            .map_err(other)?;
        let rows = sqlx::query(
            "SELECT o.user_id, o.resources FROM resource_overrides o JOIN users u ON u.id = o.user_id \
             ORDER BY u.name LIMIT $1 OFFSET $2",
        )
        .bind(i64::from(page.max_items))
        .bind(i64::try_from(page.skip_count).unwrap_or(i64::MAX))
        .fetch_all(self.pool())
        .await
        .map_err(other)?;
        let items = rows
            .iter()
            .map(|row| {
                Ok(ResourceOverride {
                    account_id: row.try_get("user_id").map_err(other)?,
                    resources: resources_from(row)?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((items, total.max(0) as u64))
    }

    pub(crate) async fn limits_store(
        &self,
        user_id: &str,
        resources: &[Resource],
        now_ms: i64,
        event: &NewEvent,
    ) -> StoreResult<()> {
        let text = serde_json::to_string(resources).map_err(|e| StoreError::Other(Box::new(e)))?;
        let mut tx = self.begin_guarded().await?;
        Self::require_user(&mut tx, user_id).await?;
        sqlx::query("DELETE FROM resource_overrides WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        sqlx::query("INSERT INTO resource_overrides (user_id, resources, updated) VALUES ($1, $2, $3)")
            .bind(user_id)
            .bind(text)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        self.commit_with(tx, Some(event)).await
    }

    pub(crate) async fn limits_remove(&self, user_id: &str, event: &NewEvent) -> StoreResult<()> {
        let mut tx = self.begin_guarded().await?;
        sqlx::query("DELETE FROM resource_overrides WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        self.commit_with(tx, Some(event)).await
    }

    pub(crate) async fn limits_usage(&self, user_id: &str) -> StoreResult<Usage> {
        let mut conn = self.pool().acquire().await.map_err(other)?;
        usage_on(&mut conn, user_id).await
    }
}
