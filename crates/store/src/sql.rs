//! The one SQL implementation of [`Store`], for SQLite and PostgreSQL alike.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use drydock_core::audit::{HistoryEntry, ReportRows};
use drydock_core::audit_log::{Anchor, Event, EventFilter, NewEvent};
use drydock_core::limits::{Resource, ResourceOverride};
use drydock_core::model::{BackupRun, DOMAIN_SYSTEM, MANAGE_SYSTEM, UserFilter};
use drydock_core::store::{Admission, Conflict, SchemaStatus, StoreResult, Usage};
use drydock_core::workspace::{Stack, Workspace, WorkspaceFilter, WorkspaceStatus};
use drydock_core::{Credential, CredentialKind, NewUser, Page, Permission, Store, StoreError, User};
use sqlx::AnyPool;
use sqlx::any::AnyRow;
use sqlx::error::ErrorKind;
use sqlx::{Any, AnyConnection, Executor, Row, Transaction};

use crate::Backend;
use crate::migrations::{MIGRATIONS_POSTGRES, MIGRATIONS_SQLITE, Migration};

/// A key for `pg_advisory_xact_lock`: guarded writes on PostgreSQL take it, so they run
/// one at a time, like `BEGIN IMMEDIATE` makes them on SQLite.
const GUARD_LOCK_KEY: i64 = 0x6472_7964_6f63;

pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// Off only when `audit.enabled = false` (then no event is written; the start says so).
    audit: bool,
    /// The chain's head as this process last appended it: a guess that saves a read, checked
    /// by the insert itself (see `append_in`).
    head: std::sync::Mutex<Option<Anchor>>,
}

pub(crate) fn other(e: sqlx::Error) -> StoreError {
    if let sqlx::Error::Database(db) = &e {
        // SQLite answers "database is locked" (SQLITE_BUSY, extended codes end in 5) once the
        // busy timeout has passed: a conflict the caller may retry, not a server fault.
        let code = db.code().map(|c| c.to_string()).unwrap_or_default();
        if code == "5" || code == "517" || code == "261" || db.message().contains("database is locked") {
            return StoreError::Conflict(Conflict::Busy);
        }
    }
    StoreError::Other(Box::new(e))
}

pub(crate) fn time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

fn user_from(row: &AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        email: row.try_get("email")?,
        aliases: Vec::new(),
        created: time(row.try_get("created")?),
    })
}

fn credential_from(row: &AnyRow) -> Result<Credential, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    Ok(Credential {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        kind: CredentialKind::parse(&kind)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown credential kind '{kind}'").into()))?,
        name: row.try_get("name")?,
        digest: row.try_get("digest")?,
        created: time(row.try_get("created")?),
        expires: row.try_get::<Option<i64>, _>("expires")?.map(time),
        last_used: row.try_get::<Option<i64>, _>("last_used")?.map(time),
    })
}

fn actions_to_text(actions: &[String]) -> String {
    actions.join(",")
}

fn actions_from_text(text: &str) -> Vec<String> {
    text.split(',').filter(|a| !a.is_empty()).map(str::to_string).collect()
}

/// `LIKE` pattern for "contains `part`", case-insensitive, with `%` and `_` taken literally.
fn contains_pattern(part: &str) -> String {
    let escaped = part.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
    format!("%{escaped}%")
}

const USER_COLUMNS: &str = "id, name, email, created";
const CREDENTIAL_COLUMNS: &str = "c.id, c.user_id, c.kind, c.name, c.digest, c.created, c.expires, c.last_used";

impl SqlStore {
    pub fn new(pool: AnyPool, backend: Backend) -> Self {
        SqlStore { pool, backend, audit: true, head: std::sync::Mutex::default() }
    }

    /// Turns writing audit events on or off (`audit.enabled`).
    pub fn with_audit(mut self, enabled: bool) -> Self {
        self.audit = enabled;
        self
    }

    pub(crate) fn audit_enabled(&self) -> bool {
        self.audit
    }

    pub(crate) fn cached_head(&self) -> Option<Anchor> {
        self.head.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn remember_head(&self, head: Option<Anchor>) {
        *self.head.lock().unwrap_or_else(|e| e.into_inner()) = head;
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn migrations(&self) -> &'static [Migration] {
        match self.backend {
            Backend::Sqlite => MIGRATIONS_SQLITE,
            Backend::Postgres => MIGRATIONS_POSTGRES,
        }
    }

    /// The user whose unique `column` holds `value`.
    async fn user_where(&self, column: &'static str, value: &str) -> StoreResult<Option<User>> {
        let row = sqlx::query(&format!("SELECT {USER_COLUMNS} FROM users WHERE {column} = $1"))
            .bind(value)
            .fetch_optional(&self.pool)
            .await
            .map_err(other)?;
        row.as_ref().map(user_from).transpose().map_err(other)
    }

    /// Begins a transaction that is serialized with every other guarded write.
    /// NotFound unless the user exists, read inside a guarded transaction.
    pub(crate) async fn require_user(tx: &mut Transaction<'static, Any>, user_id: &str) -> StoreResult<()> {
        let exists = sqlx::query("SELECT 1 AS one FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&mut **tx)
            .await
            .map_err(other)?;
        exists.map(|_| ()).ok_or(StoreError::NotFound("user"))
    }

    /// Begins a read-only transaction that sees one moment: SQLite reads one snapshot in a
    /// transaction (WAL); PostgreSQL needs REPEATABLE READ.
    pub(crate) async fn begin_snapshot(&self) -> StoreResult<Transaction<'static, Any>> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        if self.backend == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await
                .map_err(other)?;
        }
        Ok(tx)
    }

    pub(crate) async fn begin_guarded(&self) -> StoreResult<Transaction<'static, Any>> {
        match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(other),
            Backend::Postgres => {
                let mut tx = self.pool.begin().await.map_err(other)?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(GUARD_LOCK_KEY)
                    .execute(&mut *tx)
                    .await
                    .map_err(other)?;
                Ok(tx)
            }
        }
    }

    /// Applies pending migrations up to `target` (all of them with `i64::MAX`), each in its
    /// own transaction; a schema newer than this binary is left alone and reported.
    pub async fn migrate_to(&self, target: i64) -> StoreResult<SchemaStatus> {
        self.ensure_migrations_table().await?;
        let status = self.schema_status().await?;
        if status.current > status.known {
            return Ok(status);
        }
        for m in self.migrations().iter().filter(|m| m.version > status.current && m.version <= target) {
            self.apply(m).await.map_err(other)?;
            tracing::info!(version = m.version, name = m.name, "applied migration");
        }
        self.schema_status().await
    }

    /// Applies one migration and records it, in one transaction.
    async fn apply(&self, m: &Migration) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let conn: &mut AnyConnection = &mut tx;
        conn.execute(m.sql).await?;
        sqlx::query("INSERT INTO schema_migrations (version, name, applied) VALUES ($1, $2, $3)")
            .bind(m.version)
            .bind(m.name)
            .bind(Utc::now().timestamp_millis())
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }

    async fn ensure_migrations_table(&self) -> StoreResult<()> {
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations \
             (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied BIGINT NOT NULL)",
        )
        .execute(&self.pool)
        .await
        .map_err(other)?;
        Ok(())
    }

    async fn current_version(&self) -> StoreResult<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
            .fetch_one(&self.pool)
            .await
            .map_err(other)?;
        row.try_get::<i64, _>("v").map_err(other)
    }

    /// Whether `user_id` holds manageSystem and nobody else does.
    async fn is_last_system_admin(tx: &mut Transaction<'static, Any>, user_id: &str) -> StoreResult<bool> {
        let rows = sqlx::query("SELECT user_id, actions FROM permissions WHERE domain_id = $1 AND instance_id = ''")
            .bind(DOMAIN_SYSTEM)
            .fetch_all(&mut **tx)
            .await
            .map_err(other)?;
        let mut holders = Vec::new();
        for row in &rows {
            let actions: String = row.try_get("actions").map_err(other)?;
            if actions_from_text(&actions).iter().any(|a| a == MANAGE_SYSTEM) {
                holders.push(row.try_get::<String, _>("user_id").map_err(other)?);
            }
        }
        Ok(holders.len() == 1 && holders[0] == user_id)
    }
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        self.backend.name()
    }

    async fn migrate(&self) -> StoreResult<SchemaStatus> {
        self.migrate_to(i64::MAX).await
    }

    async fn schema_status(&self) -> StoreResult<SchemaStatus> {
        self.ensure_migrations_table().await?;
        let known = self.migrations().iter().map(|m| m.version).max().unwrap_or(0);
        Ok(SchemaStatus { current: self.current_version().await?, known })
    }

    async fn create_user(
        &self,
        user: &NewUser,
        system_actions: &[String],
        seats: Option<u64>,
        event: &NewEvent,
    ) -> StoreResult<User> {
        let mut tx = self.begin_guarded().await?;
        if let Some(seats) = seats {
            let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM users")
                .fetch_one(&mut *tx)
                .await
                .map_err(other)?
                .try_get("n")
                .map_err(other)?;
            if n.max(0) as u64 >= seats {
                return Err(StoreError::Conflict(Conflict::Seats(seats)));
            }
        }
        for (field, column, value) in [("name", "name", &user.name), ("email", "email", &user.email)] {
            let taken = sqlx::query(&format!("SELECT 1 AS one FROM users WHERE {column} = $1"))
                .bind(value.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(other)?;
            if taken.is_some() {
                return Err(StoreError::Conflict(Conflict::Taken { field, value: value.clone() }));
            }
        }
        sqlx::query("INSERT INTO users (id, name, email, password_hash, created) VALUES ($1, $2, $3, $4, $5)")
            .bind(user.id.as_str())
            .bind(user.name.as_str())
            .bind(user.email.as_str())
            .bind(user.password_hash.as_str())
            .bind(user.created.timestamp_millis())
            .execute(&mut *tx)
            .await
            .map_err(|e| match &e {
                // The check above runs in the same serialized transaction, so this is only a
                // safety net; it still names the field.
                sqlx::Error::Database(db) if db.kind() == ErrorKind::UniqueViolation => {
                    let field = if db.message().contains("email") { "email" } else { "name" };
                    let value = if field == "email" { user.email.clone() } else { user.name.clone() };
                    StoreError::Conflict(Conflict::Taken { field, value })
                }
                _ => other(e),
            })?;
        if !system_actions.is_empty() {
            sqlx::query("INSERT INTO permissions (user_id, domain_id, instance_id, actions) VALUES ($1, $2, '', $3)")
                .bind(user.id.as_str())
                .bind(DOMAIN_SYSTEM)
                .bind(actions_to_text(system_actions))
                .execute(&mut *tx)
                .await
                .map_err(other)?;
        }
        self.commit_with(tx, Some(event)).await?;
        Ok(User {
            id: user.id.clone(),
            name: user.name.clone(),
            email: user.email.clone(),
            aliases: Vec::new(),
            created: time(user.created.timestamp_millis()),
        })
    }

    async fn user(&self, id: &str) -> StoreResult<Option<User>> {
        self.user_where("id", id).await
    }

    async fn user_by_name(&self, name: &str) -> StoreResult<Option<User>> {
        self.user_where("name", name).await
    }

    async fn user_by_email(&self, email: &str) -> StoreResult<Option<User>> {
        self.user_where("email", email).await
    }

    async fn user_for_login(&self, login: &str) -> StoreResult<Option<(User, String)>> {
        let row = sqlx::query(&format!(
            "SELECT {USER_COLUMNS}, password_hash FROM users WHERE name = $1 OR email = $1 \
             ORDER BY CASE WHEN name = $1 THEN 0 ELSE 1 END LIMIT 1"
        ))
        .bind(login)
        .fetch_optional(&self.pool)
        .await
        .map_err(other)?;
        match row {
            Some(row) => {
                let user = user_from(&row).map_err(other)?;
                let hash: String = row.try_get("password_hash").map_err(other)?;
                Ok(Some((user, hash)))
            }
            None => Ok(None),
        }
    }

    async fn list_users(&self, filter: &UserFilter, page: Page) -> StoreResult<(Vec<User>, u64)> {
        let mut conditions = Vec::new();
        let mut params = Vec::new();
        for (column, part) in [("name", &filter.name_part), ("email", &filter.email_part)] {
            if let Some(part) = part.as_deref().filter(|p| !p.is_empty()) {
                params.push(contains_pattern(part));
                conditions.push(format!("lower({column}) LIKE ${} ESCAPE '\\'", params.len()));
            }
        }
        if let Some(text) = filter.text.as_deref().filter(|p| !p.is_empty()) {
            params.push(contains_pattern(text));
            let n = params.len();
            conditions.push(format!("(lower(name) LIKE ${n} ESCAPE '\\' OR lower(email) LIKE ${n} ESCAPE '\\')"));
        }
        let filter_sql =
            if conditions.is_empty() { String::new() } else { format!(" WHERE {}", conditions.join(" AND ")) };

        let count_sql = format!("SELECT COUNT(*) AS n FROM users{filter_sql}");
        let mut count = sqlx::query(&count_sql);
        for p in &params {
            count = count.bind(p.as_str());
        }
        let total: i64 = count.fetch_one(&self.pool).await.map_err(other)?.try_get("n").map_err(other)?;

        let list_sql = format!(
            "SELECT {USER_COLUMNS} FROM users{filter_sql} ORDER BY name LIMIT ${} OFFSET ${}",
            params.len() + 1,
            params.len() + 2
        );
        let mut list = sqlx::query(&list_sql);
        for p in &params {
            list = list.bind(p.as_str());
        }
        let rows = list
            .bind(i64::from(page.max_items))
            .bind(i64::try_from(page.skip_count).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(other)?;
        let users = rows.iter().map(user_from).collect::<Result<Vec<_>, _>>().map_err(other)?;
        Ok((users, total.max(0) as u64))
    }

    async fn count_users(&self) -> StoreResult<u64> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await
            .map_err(other)?
            .try_get("n")
            .map_err(other)?;
        Ok(n.max(0) as u64)
    }

    async fn license_history(&self) -> StoreResult<Vec<HistoryEntry>> {
        self.audit_license_history().await
    }

    async fn report_rows(&self) -> StoreResult<ReportRows> {
        self.audit_report_rows().await
    }

    async fn set_password_hash(&self, user_id: &str, hash: &str, event: &NewEvent) -> StoreResult<()> {
        let mut tx = self.begin_guarded().await?;
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("user"));
        }
        self.commit_with(tx, Some(event)).await
    }

    async fn set_email(&self, user_id: &str, email: &str, event: &NewEvent) -> StoreResult<User> {
        let mut tx = self.begin_guarded().await?;
        let holder = sqlx::query("SELECT id FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(&mut *tx)
            .await
            .map_err(other)?;
        if let Some(row) = holder
            && row.try_get::<String, _>("id").map_err(other)? != user_id
        {
            return Err(StoreError::Conflict(Conflict::Taken { field: "email", value: email.to_string() }));
        }
        let done = sqlx::query("UPDATE users SET email = $1 WHERE id = $2")
            .bind(email)
            .bind(user_id)
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("user"));
        }
        self.commit_with(tx, Some(event)).await?;
        self.user(user_id).await?.ok_or(StoreError::NotFound("user"))
    }

    async fn delete_user(&self, user_id: &str, event: &NewEvent) -> StoreResult<()> {
        let mut tx = self.begin_guarded().await?;
        Self::require_user(&mut tx, user_id).await?;
        if Self::is_last_system_admin(&mut tx, user_id).await? {
            return Err(StoreError::Conflict(Conflict::LastSystemAdmin));
        }
        let owned = Self::ws_owned_by(&mut tx, user_id).await?;
        if !owned.is_empty() {
            return Err(StoreError::Conflict(Conflict::OwnsWorkspaces(owned)));
        }
        for table in ["credentials", "permissions", "resource_overrides"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                .bind(user_id)
                .execute(&mut *tx)
                .await
                .map_err(other)?;
        }
        sqlx::query("DELETE FROM users WHERE id = $1").bind(user_id).execute(&mut *tx).await.map_err(other)?;
        self.commit_with(tx, Some(event)).await
    }

    async fn permission(&self, user_id: &str, domain: &str, instance: Option<&str>) -> StoreResult<Option<Permission>> {
        let row =
            sqlx::query("SELECT actions FROM permissions WHERE user_id = $1 AND domain_id = $2 AND instance_id = $3")
                .bind(user_id)
                .bind(domain)
                .bind(instance.unwrap_or(""))
                .fetch_optional(&self.pool)
                .await
                .map_err(other)?;
        match row {
            Some(row) => Ok(Some(Permission {
                user_id: user_id.to_string(),
                domain_id: domain.to_string(),
                instance_id: instance.map(str::to_string),
                actions: actions_from_text(&row.try_get::<String, _>("actions").map_err(other)?),
            })),
            None => Ok(None),
        }
    }

    async fn store_permission(&self, permission: &Permission, event: &NewEvent) -> StoreResult<()> {
        let mut tx = self.begin_guarded().await?;
        let keeps_admin = permission.actions.iter().any(|a| a == MANAGE_SYSTEM);
        if permission.domain_id == DOMAIN_SYSTEM
            && !keeps_admin
            && Self::is_last_system_admin(&mut tx, &permission.user_id).await?
        {
            return Err(StoreError::Conflict(Conflict::LastSystemAdmin));
        }
        let instance = permission.instance_id.as_deref().unwrap_or("");
        sqlx::query("DELETE FROM permissions WHERE user_id = $1 AND domain_id = $2 AND instance_id = $3")
            .bind(permission.user_id.as_str())
            .bind(permission.domain_id.as_str())
            .bind(instance)
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        sqlx::query("INSERT INTO permissions (user_id, domain_id, instance_id, actions) VALUES ($1, $2, $3, $4)")
            .bind(permission.user_id.as_str())
            .bind(permission.domain_id.as_str())
            .bind(instance)
            .bind(actions_to_text(&permission.actions))
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        self.commit_with(tx, Some(event)).await
    }

    async fn remove_permission(
        &self,
        user_id: &str,
        domain: &str,
        instance: Option<&str>,
        event: &NewEvent,
    ) -> StoreResult<()> {
        let mut tx = self.begin_guarded().await?;
        if domain == DOMAIN_SYSTEM && Self::is_last_system_admin(&mut tx, user_id).await? {
            return Err(StoreError::Conflict(Conflict::LastSystemAdmin));
        }
        sqlx::query("DELETE FROM permissions WHERE user_id = $1 AND domain_id = $2 AND instance_id = $3")
            .bind(user_id)
            .bind(domain)
            .bind(instance.unwrap_or(""))
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        self.commit_with(tx, Some(event)).await
    }

    async fn permissions_in_domain(&self, domain: &str) -> StoreResult<Vec<Permission>> {
        let rows = sqlx::query("SELECT user_id, instance_id, actions FROM permissions WHERE domain_id = $1")
            .bind(domain)
            .fetch_all(&self.pool)
            .await
            .map_err(other)?;
        rows.iter()
            .map(|row| {
                let instance: String = row.try_get("instance_id")?;
                Ok(Permission {
                    user_id: row.try_get("user_id")?,
                    domain_id: domain.to_string(),
                    instance_id: (!instance.is_empty()).then_some(instance),
                    actions: actions_from_text(&row.try_get::<String, _>("actions")?),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(other)
    }

    async fn permissions_on(&self, domain: &str, instance: &str) -> StoreResult<Vec<Permission>> {
        let rows = sqlx::query(
            "SELECT user_id, actions FROM permissions WHERE domain_id = $1 AND instance_id = $2 ORDER BY user_id",
        )
        .bind(domain)
        .bind(instance)
        .fetch_all(&self.pool)
        .await
        .map_err(other)?;
        rows.iter()
            .map(|row| {
                Ok(Permission {
                    user_id: row.try_get("user_id")?,
                    domain_id: domain.to_string(),
                    instance_id: Some(instance.to_string()),
                    actions: actions_from_text(&row.try_get::<String, _>("actions")?),
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(other)
    }

    async fn create_workspace(
        &self,
        workspace: &Workspace,
        owner_actions: &[String],
        admit: Admission<'_>,
        event: &NewEvent,
    ) -> StoreResult<()> {
        self.ws_create(workspace, owner_actions, admit, event).await
    }

    async fn workspace(&self, id: &str) -> StoreResult<Option<Workspace>> {
        self.ws_get(id).await
    }

    async fn workspace_by_name(&self, namespace: &str, name: &str) -> StoreResult<Option<Workspace>> {
        self.ws_by_name(namespace, name).await
    }

    async fn list_workspaces(&self, filter: &WorkspaceFilter, page: Page) -> StoreResult<(Vec<Workspace>, u64)> {
        self.ws_list(filter, page).await
    }

    async fn update_workspace_config(&self, workspace: &Workspace, event: &NewEvent) -> StoreResult<()> {
        self.ws_update_config(workspace, event).await
    }

    async fn transition_workspace(
        &self,
        workspace: &Workspace,
        from: &[WorkspaceStatus],
        event: Option<&NewEvent>,
    ) -> StoreResult<bool> {
        self.ws_transition(workspace, from, event).await
    }

    async fn admit_start(
        &self,
        workspace: &Workspace,
        from: &[WorkspaceStatus],
        ram_mb: u64,
        admit: Admission<'_>,
        event: &NewEvent,
    ) -> StoreResult<bool> {
        self.ws_admit_start(workspace, from, ram_mb, admit, event).await
    }

    async fn usage(&self, user_id: &str) -> StoreResult<Usage> {
        self.limits_usage(user_id).await
    }

    async fn delete_workspace(&self, id: &str, from: &[WorkspaceStatus], event: &NewEvent) -> StoreResult<()> {
        self.ws_delete(id, from, event).await
    }

    async fn resource_override(&self, user_id: &str) -> StoreResult<Option<Vec<Resource>>> {
        self.limits_override(user_id).await
    }

    async fn resource_overrides(&self, page: Page) -> StoreResult<(Vec<ResourceOverride>, u64)> {
        self.limits_overrides(page).await
    }

    async fn store_resource_override(
        &self,
        user_id: &str,
        resources: &[Resource],
        event: &NewEvent,
    ) -> StoreResult<()> {
        self.limits_store(user_id, resources, Utc::now().timestamp_millis(), event).await
    }

    async fn remove_resource_override(&self, user_id: &str, event: &NewEvent) -> StoreResult<()> {
        self.limits_remove(user_id, event).await
    }

    async fn create_stack(&self, stack: &Stack, event: &NewEvent) -> StoreResult<()> {
        self.stack_create(stack, event).await
    }

    async fn stacks(&self) -> StoreResult<Vec<Stack>> {
        self.stack_list().await
    }

    async fn stack(&self, id: &str) -> StoreResult<Option<Stack>> {
        self.stack_get(id).await
    }

    async fn delete_stack(&self, id: &str, event: &NewEvent) -> StoreResult<()> {
        self.stack_delete(id, event).await
    }

    async fn insert_credential(&self, c: &Credential, event: &NewEvent) -> StoreResult<()> {
        let mut tx = self.begin_guarded().await?;
        sqlx::query(
            "INSERT INTO credentials (id, user_id, kind, name, digest, created, expires, last_used) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(c.id.as_str())
        .bind(c.user_id.as_str())
        .bind(c.kind.as_str())
        .bind(c.name.as_str())
        .bind(c.digest.as_str())
        .bind(c.created.timestamp_millis())
        .bind(c.expires.map(|t| t.timestamp_millis()))
        .bind(c.last_used.map(|t| t.timestamp_millis()))
        .execute(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.kind() == ErrorKind::ForeignKeyViolation => StoreError::NotFound("user"),
            _ => other(e),
        })?;
        self.commit_with(tx, Some(event)).await
    }

    async fn credential_by_digest(&self, digest: &str) -> StoreResult<Option<(Credential, User)>> {
        let row = sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS}, u.name AS user_name, u.email, u.created AS user_created \
             FROM credentials c JOIN users u ON u.id = c.user_id WHERE c.digest = $1"
        ))
        .bind(digest)
        .fetch_optional(&self.pool)
        .await
        .map_err(other)?;
        let Some(row) = row else { return Ok(None) };
        let credential = credential_from(&row).map_err(other)?;
        let user = User {
            id: credential.user_id.clone(),
            name: row.try_get("user_name").map_err(other)?,
            email: row.try_get("email").map_err(other)?,
            aliases: Vec::new(),
            created: time(row.try_get("user_created").map_err(other)?),
        };
        Ok(Some((credential, user)))
    }

    async fn credentials_of(&self, user_id: &str, kind: CredentialKind) -> StoreResult<Vec<Credential>> {
        let rows = sqlx::query(&format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM credentials c WHERE c.user_id = $1 AND c.kind = $2 ORDER BY c.created, c.id"
        ))
        .bind(user_id)
        .bind(kind.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(other)?;
        rows.iter().map(credential_from).collect::<Result<Vec<_>, _>>().map_err(other)
    }

    async fn delete_credential(&self, user_id: &str, id: &str, event: &NewEvent) -> StoreResult<()> {
        let mut tx = self.begin_guarded().await?;
        let done = sqlx::query("DELETE FROM credentials WHERE user_id = $1 AND id = $2")
            .bind(user_id)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(other)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("credential"));
        }
        self.commit_with(tx, Some(event)).await
    }

    async fn delete_credentials_of(&self, user_id: &str, kind: CredentialKind, keep: Option<&str>) -> StoreResult<()> {
        sqlx::query("DELETE FROM credentials WHERE user_id = $1 AND kind = $2 AND id <> $3")
            .bind(user_id)
            .bind(kind.as_str())
            .bind(keep.unwrap_or(""))
            .execute(&self.pool)
            .await
            .map_err(other)?;
        Ok(())
    }

    async fn record_last_used(&self, uses: &[(String, DateTime<Utc>)]) -> StoreResult<()> {
        let mut tx = self.pool.begin().await.map_err(other)?;
        for (id, at) in uses {
            sqlx::query("UPDATE credentials SET last_used = $1 WHERE id = $2")
                .bind(at.timestamp_millis())
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(other)?;
        }
        tx.commit().await.map_err(other)
    }

    async fn delete_expired_credentials(&self, now: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM credentials WHERE expires IS NOT NULL AND expires <= $1")
            .bind(now.timestamp_millis())
            .execute(&self.pool)
            .await
            .map_err(other)?;
        Ok(done.rows_affected())
    }

    async fn system_value(&self, name: &str) -> StoreResult<Option<String>> {
        self.system_get(name).await
    }

    async fn set_system_value(&self, name: &str, value: Option<&str>, event: Option<&NewEvent>) -> StoreResult<()> {
        self.system_set(name, value, Utc::now().timestamp_millis(), event).await
    }

    async fn record_backup_run(&self, run: &BackupRun, event: Option<&NewEvent>) -> StoreResult<()> {
        self.backup_record(run, event).await
    }

    async fn backup_runs(&self, limit: u32) -> StoreResult<Vec<BackupRun>> {
        self.backup_list(limit).await
    }

    async fn append_event(&self, event: &NewEvent) -> StoreResult<()> {
        self.event_append(event).await
    }

    async fn audit_events(&self, filter: &EventFilter, page: Page) -> StoreResult<(Vec<Event>, u64)> {
        self.event_list(filter, page).await
    }

    async fn audit_events_after(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<Event>> {
        self.event_range(after_seq, limit).await
    }

    async fn audit_anchor(&self) -> StoreResult<Anchor> {
        self.event_anchor().await
    }

    async fn prune_audit_events(&self, before: DateTime<Utc>, event: &NewEvent) -> StoreResult<u64> {
        self.event_prune(before, event).await
    }

    async fn record_license_change(
        &self,
        license: Option<&str>,
        change: &HistoryEntry,
        event: &NewEvent,
    ) -> StoreResult<()> {
        self.license_record(license, change, event).await
    }

    async fn accept_fair_source(&self, change: &HistoryEntry, event: &NewEvent) -> StoreResult<bool> {
        self.license_accept(change, event).await
    }
}
