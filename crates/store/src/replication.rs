//! A whole copy of the database for a standby, and putting one in place while the standby
//! serves reads from it.
//!
//! The copy is backend-neutral (every column is `TEXT` or `BIGINT`): rows as JSON values,
//! read in one snapshot. Applying it replaces every replicated table in one guarded
//! transaction, so readers see the old copy or the new one, never a mix, and the open pool
//! stays valid (no file is swapped under it). Sessions are not replicated: a standby's
//! sessions are its own, kept across applies while their user still exists.

use std::collections::HashSet;

use drydock_core::Store;
use drydock_core::store::{StoreError, StoreResult};
use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use crate::sql::{SqlStore, other};

fn invalid(message: String) -> StoreError {
    StoreError::Other(message.into())
}

/// The tables a standby copies, parents before children (inserts go in this order, deletes
/// in the reverse). The schema's migration table is not among them: both sides must be at
/// the same schema version.
pub const REPLICATED_TABLES: &[&str] = &[
    "users",
    "permissions",
    "credentials",
    "workspaces",
    "stacks",
    "resource_overrides",
    "system_state",
    "backup_runs",
    "audit_events",
    "license_history",
];

/// Credentials of this kind stay where they were made.
const LOCAL_CREDENTIAL_KIND: &str = "session";

/// Parameters per insert statement, well under SQLite's and PostgreSQL's limits.
const PARAMS_PER_INSERT: usize = 4000;

/// One value of a row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Cell {
    Int(i64),
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnKind {
    Int,
    Text,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableCopy {
    pub name: String,
    pub columns: Vec<String>,
    pub kinds: Vec<ColumnKind>,
    pub rows: Vec<Vec<Option<Cell>>>,
}

/// Every replicated table's rows, of one moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseCopy {
    pub schema_version: i64,
    pub tables: Vec<TableCopy>,
}

impl DatabaseCopy {
    pub fn rows(&self) -> usize {
        self.tables.iter().map(|t| t.rows.len()).sum()
    }

    pub fn table(&self, name: &str) -> Option<&TableCopy> {
        self.tables.iter().find(|t| t.name == name)
    }
}

impl SqlStore {
    /// Reads every replicated table in one snapshot (REPEATABLE READ on PostgreSQL; one read
    /// transaction on SQLite's WAL), rows in a stable order so equal data gives equal copies.
    pub async fn copy_for_standby(&self) -> StoreResult<DatabaseCopy> {
        let schema_version = self.schema_status().await?.current;
        let mut tx = self.begin_snapshot().await?;
        let mut tables = Vec::with_capacity(REPLICATED_TABLES.len());
        for &name in REPLICATED_TABLES {
            let (columns, kinds) = self.columns_of(&mut tx, name).await?;
            let list = quoted_list(&columns);
            let only_shared =
                if name == "credentials" { format!(" WHERE kind <> '{LOCAL_CREDENTIAL_KIND}'") } else { String::new() };
            let sql = format!("SELECT {list} FROM {name}{only_shared} ORDER BY 1, 2, 3");
            let rows = sqlx::query(&sql).fetch_all(&mut *tx).await.map_err(other)?;
            let rows = rows.iter().map(|row| cells(row, &kinds)).collect::<Result<Vec<_>, _>>().map_err(other)?;
            tables.push(TableCopy { name: name.to_string(), columns, kinds, rows });
        }
        tx.commit().await.map_err(other)?;
        Ok(DatabaseCopy { schema_version, tables })
    }

    /// Replaces every replicated table with the copy's rows in one guarded transaction; the
    /// sessions made here stay. Refuses a copy of another schema version, or whose tables or
    /// columns are not this database's, and then changes nothing.
    pub async fn apply_from_primary(&self, copy: &DatabaseCopy) -> StoreResult<()> {
        let here = self.schema_status().await?.current;
        if copy.schema_version != here {
            return Err(invalid(format!(
                "the copy has schema version {}, this database {here}: both sides must run the same drydock",
                copy.schema_version
            )));
        }
        let mut tx = self.begin_guarded().await?;
        for &name in REPLICATED_TABLES {
            let table = copy.table(name).ok_or_else(|| invalid(format!("the copy lacks table {name}")))?;
            let (columns, kinds) = self.columns_of(&mut tx, name).await?;
            if table.columns != columns || table.kinds != kinds {
                return Err(invalid(format!("the copy's table {name} has other columns than this database's")));
            }
        }
        let sessions = self.local_sessions(&mut tx).await?;
        for &name in REPLICATED_TABLES.iter().rev() {
            sqlx::query(&format!("DELETE FROM {name}")).execute(&mut *tx).await.map_err(other)?;
        }
        for &name in REPLICATED_TABLES {
            if let Some(table) = copy.table(name) {
                insert_rows(&mut tx, table, &table.rows).await?;
            }
        }
        let users: HashSet<&str> = copy
            .table("users")
            .map(|t| {
                t.rows
                    .iter()
                    .filter_map(|r| match r.first() {
                        Some(Some(Cell::Text(id))) => Some(id.as_str()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let user_column = sessions.columns.iter().position(|c| c == "user_id");
        let kept: Vec<Vec<Option<Cell>>> = sessions
            .rows
            .iter()
            .filter(|row| match user_column.and_then(|i| row.get(i)) {
                Some(Some(Cell::Text(user))) => users.contains(user.as_str()),
                _ => false,
            })
            .cloned()
            .collect();
        insert_rows(&mut tx, &sessions, &kept).await?;
        tx.commit().await.map_err(other)?;
        // The chain's head is the copy's now.
        self.remember_head(None);
        Ok(())
    }

    /// Empties every replicated table and the sessions, in one guarded transaction: a
    /// database an instance left (after it was dumped aside) becomes a standby's, holding
    /// nothing until its first sync.
    pub async fn clear_replicated(&self) -> StoreResult<()> {
        let mut tx = self.begin_guarded().await?;
        for &name in REPLICATED_TABLES.iter().rev() {
            sqlx::query(&format!("DELETE FROM {name}")).execute(&mut *tx).await.map_err(other)?;
        }
        tx.commit().await.map_err(other)?;
        self.remember_head(None);
        Ok(())
    }

    /// The standby's own sessions, read inside the applying transaction.
    async fn local_sessions(&self, tx: &mut Transaction<'static, Any>) -> StoreResult<TableCopy> {
        let (columns, kinds) = self.columns_of(tx, "credentials").await?;
        let sql = format!("SELECT {} FROM credentials WHERE kind = $1", quoted_list(&columns));
        let rows = sqlx::query(&sql).bind(LOCAL_CREDENTIAL_KIND).fetch_all(&mut **tx).await.map_err(other)?;
        let rows = rows.iter().map(|row| cells(row, &kinds)).collect::<Result<Vec<_>, _>>().map_err(other)?;
        Ok(TableCopy { name: "credentials".into(), columns, kinds, rows })
    }

    /// A table's columns in their order, and whether each holds integers or text.
    async fn columns_of(
        &self,
        tx: &mut Transaction<'static, Any>,
        table: &str,
    ) -> StoreResult<(Vec<String>, Vec<ColumnKind>)> {
        let sql = if self.backend() == "postgres" {
            "SELECT column_name::text AS name, data_type::text AS type FROM information_schema.columns \
             WHERE table_name = $1 AND table_schema = current_schema() ORDER BY ordinal_position"
        } else {
            "SELECT name, type FROM pragma_table_info($1) ORDER BY cid"
        };
        let rows = sqlx::query(sql).bind(table).fetch_all(&mut **tx).await.map_err(other)?;
        let mut columns = Vec::with_capacity(rows.len());
        let mut kinds = Vec::with_capacity(rows.len());
        for row in &rows {
            let name: String = row.try_get("name").map_err(other)?;
            let kind: String = row.try_get("type").map_err(other)?;
            columns.push(name);
            kinds.push(if kind.to_ascii_uppercase().contains("INT") { ColumnKind::Int } else { ColumnKind::Text });
        }
        if columns.is_empty() {
            return Err(invalid(format!("this database has no table {table}")));
        }
        Ok((columns, kinds))
    }
}

fn quoted_list(columns: &[String]) -> String {
    columns.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(", ")
}

fn cells(row: &AnyRow, kinds: &[ColumnKind]) -> Result<Vec<Option<Cell>>, sqlx::Error> {
    kinds
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            Ok(match kind {
                ColumnKind::Int => row.try_get::<Option<i64>, _>(i)?.map(Cell::Int),
                ColumnKind::Text => row.try_get::<Option<String>, _>(i)?.map(Cell::Text),
            })
        })
        .collect()
}

/// Inserts rows in batches; a value of the wrong kind for its column is refused.
async fn insert_rows(
    tx: &mut Transaction<'static, Any>,
    table: &TableCopy,
    rows: &[Vec<Option<Cell>>],
) -> StoreResult<()> {
    let width = table.columns.len();
    let per_batch = (PARAMS_PER_INSERT / width.max(1)).max(1);
    let list = quoted_list(&table.columns);
    for batch in rows.chunks(per_batch) {
        let mut sql = format!("INSERT INTO {} ({list}) VALUES ", table.name);
        let mut n = 0;
        for (r, row) in batch.iter().enumerate() {
            if row.len() != width {
                return Err(invalid(format!("a row of {} has {} values, not {width}", table.name, row.len())));
            }
            sql.push_str(if r == 0 { "(" } else { ", (" });
            for c in 0..width {
                n += 1;
                sql.push_str(&format!("{}${n}", if c == 0 { "" } else { ", " }));
            }
            sql.push(')');
        }
        let mut query = sqlx::query(&sql);
        for row in batch {
            for (cell, kind) in row.iter().zip(&table.kinds) {
                query = match (kind, cell) {
                    (ColumnKind::Int, None) => query.bind(None::<i64>),
                    (ColumnKind::Int, Some(Cell::Int(v))) => query.bind(*v),
                    (ColumnKind::Text, None) => query.bind(None::<String>),
                    (ColumnKind::Text, Some(Cell::Text(v))) => query.bind(v.clone()),
                    _ => {
                        return Err(invalid(format!("a value of {} does not fit its column's type", table.name)));
                    }
                };
            }
        }
        query.execute(&mut **tx).await.map_err(other)?;
    }
    Ok(())
}
