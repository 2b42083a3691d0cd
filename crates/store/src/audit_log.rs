//! The audit log in SQL (`audit_events`) and the license history (`license_history`).
//!
//! Events are appended inside the guarded transaction of the change they record: the guard
//! (`BEGIN IMMEDIATE` on SQLite, an advisory lock on PostgreSQL) serializes appends, so each
//! event reads the chain's head and links to it without a race.

use chrono::{DateTime, Utc};
use drydock_core::audit::{HistoryEntry, LicenseChange};
use drydock_core::audit_log::{Anchor, Event, EventFilter, NewEvent};
use drydock_core::store::StoreResult;
use drydock_core::{Page, StoreError};
use sqlx::any::AnyArguments;
use sqlx::any::AnyRow;
use sqlx::query::Query;
use sqlx::{Any, Row, Transaction};

type AnyQuery<'q> = Query<'q, Any, AnyArguments<'q>>;

use crate::sql::{SqlStore, other, time};

/// The `system_state` row that holds the anchor of a pruned chain.
const ANCHOR: &str = "audit.anchor";
const EVENT_COLUMNS: &str = "seq, time, actor_id, actor_name, client, action, target_type, target_id, target_name, \
                             outcome, changes, prev_hash, hash";

fn event_from(row: &AnyRow) -> Result<Event, sqlx::Error> {
    Ok(Event {
        seq: row.try_get("seq")?,
        time: time(row.try_get("time")?),
        actor_id: row.try_get("actor_id")?,
        actor_name: row.try_get("actor_name")?,
        client: row.try_get("client")?,
        action: row.try_get("action")?,
        target_type: row.try_get("target_type")?,
        target_id: row.try_get("target_id")?,
        target_name: row.try_get("target_name")?,
        outcome: row.try_get("outcome")?,
        changes: row.try_get("changes")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

/// Binds an event's columns as `$1`…`$13`, in `EVENT_COLUMNS` order.
fn bind_event<'q>(query: AnyQuery<'q>, e: &Event) -> AnyQuery<'q> {
    query
        .bind(e.seq)
        .bind(e.time.timestamp_millis())
        .bind(e.actor_id.clone())
        .bind(e.actor_name.clone())
        .bind(e.client.clone())
        .bind(e.action.clone())
        .bind(e.target_type.clone())
        .bind(e.target_id.clone())
        .bind(e.target_name.clone())
        .bind(e.outcome.clone())
        .bind(e.changes.clone())
        .bind(e.prev_hash.clone())
        .bind(e.hash.clone())
}

/// `LIKE` pattern for "contains `part`", case-insensitive, `%` and `_` taken literally.
fn contains(part: &str) -> String {
    let escaped = part.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

fn change_columns(change: &LicenseChange) -> (&'static str, &str, &str) {
    match change {
        LicenseChange::FairSourceAccepted => ("fairSourceAccepted", "", ""),
        LicenseChange::PaidAdded { by_email, license_id } => ("paidAdded", license_id, by_email),
        LicenseChange::PaidExpired { license_id } => ("paidExpired", license_id, ""),
        LicenseChange::PaidRemoved { license_id } => ("paidRemoved", license_id, ""),
    }
}

impl SqlStore {
    /// Appends the event to the chain inside `tx`, which must be guarded; returns the new
    /// head. The head this process appended last is tried first, in one statement that inserts
    /// only if that row is still the chain's last; otherwise (another process appended, events
    /// were pruned, the database was restored) the head is read and the event linked to it.
    async fn append_in(&self, tx: &mut Transaction<'static, Any>, event: &NewEvent) -> StoreResult<Anchor> {
        if let Some(head) = self.cached_head() {
            let e = event.seal(head.seq + 1, &head.hash);
            let sql = format!(
                "INSERT INTO audit_events ({EVENT_COLUMNS}) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 \
                 WHERE EXISTS (SELECT 1 FROM audit_events WHERE seq = $14 AND hash = $12) \
                 AND NOT EXISTS (SELECT 1 FROM audit_events WHERE seq >= $1)"
            );
            let inserted = bind_event(sqlx::query(&sql), &e).bind(head.seq).execute(&mut **tx).await.map_err(other)?;
            if inserted.rows_affected() == 1 {
                return Ok(Anchor { seq: e.seq, hash: e.hash });
            }
        }
        let head = sqlx::query("SELECT seq, hash FROM audit_events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await
            .map_err(other)?;
        let head = match head {
            Some(row) => Anchor { seq: row.try_get("seq").map_err(other)?, hash: row.try_get("hash").map_err(other)? },
            None => Self::anchor_in(tx).await?,
        };
        let e = event.seal(head.seq + 1, &head.hash);
        let sql = format!(
            "INSERT INTO audit_events ({EVENT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
        );
        bind_event(sqlx::query(&sql), &e).execute(&mut **tx).await.map_err(other)?;
        Ok(Anchor { seq: e.seq, hash: e.hash })
    }

    /// Appends the event (when there is one and the log is on) and commits; the new head is
    /// remembered only once it is committed.
    pub(crate) async fn commit_with(
        &self,
        mut tx: Transaction<'static, Any>,
        event: Option<&NewEvent>,
    ) -> StoreResult<()> {
        let head = match event {
            Some(event) if self.audit_enabled() => Some(self.append_in(&mut tx, event).await?),
            _ => None,
        };
        let committed = tx.commit().await.map_err(other);
        if head.is_some() {
            self.remember_head(if committed.is_ok() { head } else { None });
        }
        committed
    }

    async fn anchor_in(tx: &mut Transaction<'static, Any>) -> StoreResult<Anchor> {
        let row = sqlx::query("SELECT value FROM system_state WHERE name = $1")
            .bind(ANCHOR)
            .fetch_optional(&mut **tx)
            .await
            .map_err(other)?;
        match row {
            Some(row) => {
                let text: String = row.try_get("value").map_err(other)?;
                serde_json::from_str(&text).map_err(|e| StoreError::Other(Box::new(e)))
            }
            None => Ok(Anchor::genesis()),
        }
    }

    pub(crate) async fn event_append(&self, event: &NewEvent) -> StoreResult<()> {
        let tx = self.begin_guarded().await?;
        self.commit_with(tx, Some(event)).await
    }

    pub(crate) async fn event_list(&self, filter: &EventFilter, page: Page) -> StoreResult<(Vec<Event>, u64)> {
        let mut conditions = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        let mut times: Vec<(usize, i64)> = Vec::new();
        let mut param = 0;
        let mut next = || {
            param += 1;
            param
        };
        if let Some(actor) = filter.actor.as_deref().filter(|a| !a.is_empty()) {
            texts.push(actor.to_string());
            conditions.push(format!("actor_name = ${}", next()));
        }
        if let Some(action) = filter.action.as_deref().filter(|a| !a.is_empty()) {
            if action.ends_with('.') {
                texts.push(format!("{}%", action.replace('%', "\\%").replace('_', "\\_")));
                conditions.push(format!("action LIKE ${} ESCAPE '\\'", next()));
            } else {
                texts.push(action.to_string());
                conditions.push(format!("action = ${}", next()));
            }
        }
        if let Some(target) = filter.target.as_deref().filter(|t| !t.is_empty()) {
            texts.push(contains(target));
            let n = next();
            conditions
                .push(format!("(lower(target_id) LIKE ${n} ESCAPE '\\' OR lower(target_name) LIKE ${n} ESCAPE '\\')"));
        }
        for (bound, op) in [(filter.since, ">="), (filter.until, "<")] {
            if let Some(t) = bound {
                let n = next();
                times.push((n, t.timestamp_millis()));
                conditions.push(format!("time {op} ${n}"));
            }
        }
        let filter_sql =
            if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };
        fn bind_all<'q>(sql: &'q str, texts: &'q [String], times: &[(usize, i64)]) -> AnyQuery<'q> {
            let mut q = sqlx::query(sql);
            for t in texts {
                q = q.bind(t.as_str());
            }
            for (_, ms) in times {
                q = q.bind(*ms);
            }
            q
        }
        let count_sql = format!("SELECT COUNT(*) AS n FROM audit_events{filter_sql}");
        let total: i64 = bind_all(&count_sql, &texts, &times)
            .fetch_one(self.pool())
            .await
            .map_err(other)?
            .try_get("n")
            .map_err(other)?;
        let n = texts.len() + times.len();
        let list_sql = format!(
            "SELECT {EVENT_COLUMNS} FROM audit_events{filter_sql} ORDER BY seq DESC LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let rows = bind_all(&list_sql, &texts, &times)
            .bind(i64::from(page.max_items))
            .bind(i64::try_from(page.skip_count).unwrap_or(i64::MAX))
            .fetch_all(self.pool())
            .await
            .map_err(other)?;
        let events = rows.iter().map(event_from).collect::<Result<Vec<_>, _>>().map_err(other)?;
        Ok((events, total.max(0) as u64))
    }

    pub(crate) async fn event_range(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<Event>> {
        let rows =
            sqlx::query(&format!("SELECT {EVENT_COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2"))
                .bind(after_seq)
                .bind(i64::from(limit))
                .fetch_all(self.pool())
                .await
                .map_err(other)?;
        rows.iter().map(event_from).collect::<Result<Vec<_>, _>>().map_err(other)
    }

    pub(crate) async fn event_anchor(&self) -> StoreResult<Anchor> {
        let mut tx = self.pool().begin().await.map_err(other)?;
        let anchor = Self::anchor_in(&mut tx).await?;
        tx.commit().await.map_err(other)?;
        Ok(anchor)
    }

    /// Deletes events older than `before`, keeping the last pruned one's hash as the anchor
    /// the kept chain starts from, and records the pruning as an event: all in one transaction.
    pub(crate) async fn event_prune(&self, before: DateTime<Utc>, event: &NewEvent) -> StoreResult<u64> {
        let mut tx = self.begin_guarded().await?;
        let last = sqlx::query("SELECT seq, hash FROM audit_events WHERE time < $1 ORDER BY seq DESC LIMIT 1")
            .bind(before.timestamp_millis())
            .fetch_optional(&mut *tx)
            .await
            .map_err(other)?;
        let Some(last) = last else { return Ok(0) };
        let anchor = Anchor { seq: last.try_get("seq").map_err(other)?, hash: last.try_get("hash").map_err(other)? };
        let done = sqlx::query("DELETE FROM audit_events WHERE seq <= $1")
            .bind(anchor.seq)
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        let text = serde_json::to_string(&anchor).map_err(|e| StoreError::Other(Box::new(e)))?;
        sqlx::query(
            "INSERT INTO system_state (name, value, updated) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated = excluded.updated",
        )
        .bind(ANCHOR)
        .bind(text)
        .bind(Utc::now().timestamp_millis())
        .execute(&mut *tx)
        .await
        .map_err(other)?;
        let event = event.clone().with("pruned", done.rows_affected()).with("throughSeq", anchor.seq);
        self.commit_with(tx, Some(&event)).await?;
        Ok(done.rows_affected())
    }

    /// Records a license change: the current license (`system_state` row `license`, replaced or
    /// removed), its history line and its event, in one transaction.
    pub(crate) async fn license_record(
        &self,
        license: Option<&str>,
        change: &HistoryEntry,
        event: &NewEvent,
    ) -> StoreResult<()> {
        let mut tx = self.begin_guarded().await?;
        let now = Utc::now().timestamp_millis();
        match license {
            Some(value) => sqlx::query(
                "INSERT INTO system_state (name, value, updated) VALUES ('license', $1, $2) \
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated = excluded.updated",
            )
            .bind(value)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(other)?,
            None => {
                sqlx::query("DELETE FROM system_state WHERE name = 'license'").execute(&mut *tx).await.map_err(other)?
            }
        };
        Self::history_insert(&mut tx, change).await?;
        self.commit_with(tx, Some(event)).await
    }

    /// Records the acceptance of Fair Source when the history is empty; whether it did.
    pub(crate) async fn license_accept(&self, change: &HistoryEntry, event: &NewEvent) -> StoreResult<bool> {
        let mut tx = self.begin_guarded().await?;
        let any = sqlx::query("SELECT 1 AS one FROM license_history LIMIT 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(other)?;
        if any.is_some() {
            return Ok(false);
        }
        Self::history_insert(&mut tx, change).await?;
        self.commit_with(tx, Some(event)).await?;
        Ok(true)
    }

    async fn history_insert(tx: &mut Transaction<'static, Any>, entry: &HistoryEntry) -> StoreResult<()> {
        let (kind, license_id, by_email) = change_columns(&entry.change);
        sqlx::query(
            "INSERT INTO license_history (seq, time, kind, license_id, by_email) \
             SELECT COALESCE(MAX(seq), 0) + 1, $1, $2, $3, $4 FROM license_history",
        )
        .bind(entry.time.timestamp_millis())
        .bind(kind)
        .bind(license_id)
        .bind(by_email)
        .execute(&mut **tx)
        .await
        .map_err(other)?;
        Ok(())
    }
}
