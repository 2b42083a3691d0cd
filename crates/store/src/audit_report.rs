//! What the audit report reads: the license history (`license_history`) and, in one
//! snapshot, every user and every workspace with the workspace permissions on it. Three
//! queries whatever the size of the instance; no query per user or per workspace.

use chrono::{DateTime, Utc};
use drydock_core::audit::{HistoryEntry, LicenseChange, ReportRows, ReportUserRow, WorkspaceAccess};
use drydock_core::store::StoreResult;
use drydock_core::workspace::DOMAIN_WORKSPACE;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::sql::{SqlStore, other};

fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn history_entry_from(row: &AnyRow) -> Result<HistoryEntry, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    let license_id: String = row.try_get("license_id")?;
    let change = match kind.as_str() {
        "fairSourceAccepted" => LicenseChange::FairSourceAccepted,
        "paidAdded" => LicenseChange::PaidAdded { by_email: row.try_get("by_email")?, license_id },
        "paidExpired" => LicenseChange::PaidExpired { license_id },
        "paidRemoved" => LicenseChange::PaidRemoved { license_id },
        other => {
            let seq: i64 = row.try_get("seq")?;
            return Err(sqlx::Error::Decode(format!("license_history {seq}: unknown kind '{other}'").into()));
        }
    };
    Ok(HistoryEntry { time: time(row.try_get("time")?), change })
}

fn access_from(row: &AnyRow) -> Result<WorkspaceAccess, sqlx::Error> {
    let actions: Option<String> = row.try_get("actions")?;
    Ok(WorkspaceAccess {
        workspace_id: row.try_get("workspace_id")?,
        name: row.try_get("name")?,
        owner_id: row.try_get("owner_id")?,
        user_id: row.try_get("user_id")?,
        actions: actions.unwrap_or_default().split(',').filter(|a| !a.is_empty()).map(str::to_string).collect(),
    })
}

impl SqlStore {
    pub(crate) async fn audit_license_history(&self) -> StoreResult<Vec<HistoryEntry>> {
        let rows = sqlx::query("SELECT seq, time, kind, license_id, by_email FROM license_history ORDER BY seq")
            .fetch_all(self.pool())
            .await
            .map_err(other)?;
        rows.iter().map(history_entry_from).collect::<Result<Vec<_>, _>>().map_err(other)
    }

    pub(crate) async fn audit_report_rows(&self) -> StoreResult<ReportRows> {
        // One read transaction, so the users and the workspaces are of one moment.
        let mut tx = self.begin_snapshot().await?;
        let users = sqlx::query("SELECT id, email FROM users")
            .fetch_all(&mut *tx)
            .await
            .map_err(other)?
            .iter()
            .map(|row| Ok(ReportUserRow { id: row.try_get("id")?, email: row.try_get("email")? }))
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(other)?;
        // Every workspace at least once (LEFT JOIN), with each permission on it; served by
        // the index permissions_by_domain (domain_id, instance_id).
        let access = sqlx::query(
            "SELECT w.id AS workspace_id, w.name AS name, w.owner_id AS owner_id, \
             p.user_id AS user_id, p.actions AS actions \
             FROM workspaces w LEFT JOIN permissions p ON p.domain_id = $1 AND p.instance_id = w.id",
        )
        .bind(DOMAIN_WORKSPACE)
        .fetch_all(&mut *tx)
        .await
        .map_err(other)?
        .iter()
        .map(access_from)
        .collect::<Result<Vec<_>, _>>()
        .map_err(other)?;
        tx.commit().await.map_err(other)?;
        Ok(ReportRows { users, access })
    }
}
