use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use drydock_core::Page;
use drydock_core::model::{BackupRun, MANAGE_SYSTEM};
use drydock_core::system::Maintenance;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::auth::authenticate;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, Caller};

#[derive(Serialize, ToSchema)]
pub struct Health {
    status: &'static str,
    version: &'static str,
}

/// Liveness: answers without credentials.
#[utoipa::path(get, path = "/api/health", tag = "system", security(()), responses((status = 200, body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok", version: drydock_core::VERSION })
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SystemState {
    /// `RUNNING`, `MAINTENANCE`, or `STANDBY` while this instance follows a primary.
    status: &'static str,
    /// The operators' message while in maintenance.
    message: Option<String>,
    /// A standby's following: present only on a standby.
    #[serde(flatten)]
    standby: Option<StandbyFields>,
}

/// How a standby follows its primary.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StandbyFields {
    /// The primary's URL.
    primary: String,
    /// Seconds between the newest data of the copy and now (null before the first sync).
    lag_seconds: Option<i64>,
    /// When the last sync landed.
    last_sync: Option<DateTime<Utc>>,
    /// Why the last attempt failed (null once a sync lands again).
    last_error: Option<String>,
    /// The last `drydock standby check`.
    last_check: Option<drydock_core::standby::CheckReport>,
}

/// What the instance is doing: answers without credentials.
#[utoipa::path(get, path = "/api/system/state", tag = "system", security(()), responses((status = 200, body = SystemState)))]
pub async fn state(State(state): State<AppState>) -> Json<SystemState> {
    let system = &state.drydock.system;
    let standby = state.settings.standby.as_ref().map(|s| {
        let follow = s.get();
        StandbyFields {
            lag_seconds: follow.lag_seconds(Utc::now()),
            primary: follow.primary,
            last_sync: follow.last_sync,
            last_error: follow.last_error,
            last_check: follow.last_check,
        }
    });
    let status = if standby.is_some() { "STANDBY" } else { system.status() };
    Json(SystemState { status, message: system.maintenance().map(|m| m.message), standby })
}

/// Turns maintenance on: `message` is what users see; with `stopWorkspaces` every running
/// workspace is stopped gracefully.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MaintenanceBody {
    /// Required; one line, at most 500 characters.
    message: Option<String>,
    #[serde(default)]
    stop_workspaces: bool,
}

/// Maintenance mode as administrators see it.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceState {
    /// `RUNNING` or `MAINTENANCE`.
    status: &'static str,
    message: Option<String>,
    /// When maintenance began.
    since: Option<DateTime<Utc>>,
    /// Who turned it on.
    by: Option<String>,
    /// Workspaces being stopped in the background (in the answer to the request that began it).
    #[serde(skip_serializing_if = "Option::is_none")]
    stopping_workspaces: Option<usize>,
}

impl MaintenanceState {
    fn of(maintenance: Option<Maintenance>, stopping_workspaces: Option<usize>) -> Self {
        match maintenance {
            Some(m) => MaintenanceState {
                status: "MAINTENANCE",
                message: Some(m.message),
                since: Some(m.since),
                by: Some(m.by),
                stopping_workspaces,
            },
            None => MaintenanceState { status: "RUNNING", message: None, since: None, by: None, stopping_workspaces },
        }
    }
}

/// Maintenance mode: who turned it on and when (needs `manageSystem`).
#[utoipa::path(get, path = "/api/system/maintenance", tag = "system",
    responses((status = 200, body = MaintenanceState), (status = 403, body = ErrorBody)))]
pub async fn maintenance(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<MaintenanceState>> {
    caller.require_system(MANAGE_SYSTEM)?;
    Ok(Json(MaintenanceState::of(state.drydock.system.maintenance(), None)))
}

/// Begin maintenance (needs `manageSystem`): users' workspace creates and starts are refused
/// with 503 and the message, the dashboard shows it to everyone; administrators are never
/// refused. While on, a new message replaces the old one.
#[utoipa::path(post, path = "/api/system/maintenance", tag = "system", request_body = MaintenanceBody,
    responses((status = 200, body = MaintenanceState), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn begin_maintenance(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<MaintenanceBody>,
) -> ApiResult<Json<MaintenanceState>> {
    let message = body.message.unwrap_or_default();
    let begun = state.drydock.system.begin_maintenance(&caller, &message, body.stop_workspaces).await?;
    Ok(Json(MaintenanceState::of(Some(begun.maintenance), Some(begun.stopping))))
}

/// End maintenance (needs `manageSystem`); 204 also when it was off.
#[utoipa::path(delete, path = "/api/system/maintenance", tag = "system",
    responses((status = 204), (status = 403, body = ErrorBody)))]
pub async fn end_maintenance(State(state): State<AppState>, caller: Caller) -> ApiResult<StatusCode> {
    state.drydock.system.end_maintenance(&caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Prometheus metrics. Needs a `manageSystem` holder unless `metrics.public` is set.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, content_type = "text/plain", body = String), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn metrics(State(state): State<AppState>, method: Method, headers: HeaderMap) -> ApiResult<Response> {
    if !state.settings.metrics_public {
        let caller = authenticate(&state, method.is_safe(), &headers, "").await?;
        caller.require_system(MANAGE_SYSTEM)?;
    }
    let users = state.drydock.users.count().await?;
    let mut gauges = vec![("drydock_users_total", "Users in the store.", users)];
    if let Some(standby) = &state.settings.standby {
        let follow = standby.get();
        // Without a copy yet, the lag is as large as it can be: an alert should fire.
        let lag = follow.lag_seconds(Utc::now()).map_or(u64::MAX, |s| s as u64);
        gauges.push(("drydock_standby_lag_seconds", "Age of the standby's newest copied data.", lag));
        let failing = u64::from(follow.last_error.is_some());
        gauges.push(("drydock_standby_sync_failing", "1 while the standby's last sync attempt failed.", failing));
    }
    let text = state.metrics.render(&gauges);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

/// Start a backup of the whole instance into the backup dir (needs `manageSystem`); it runs
/// in the background: the answer is its record, result `running`. 409 while one runs.
#[utoipa::path(post, path = "/api/system/backup", tag = "system",
    responses((status = 202, body = BackupRun), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn start_backup(State(state): State<AppState>, caller: Caller) -> ApiResult<(StatusCode, Json<BackupRun>)> {
    let run = state.drydock.backups.start(Some(&caller), "api").await?;
    Ok((StatusCode::ACCEPTED, Json(run)))
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct BackupsQuery {
    /// At most this many, newest first (default 30, at most 1000).
    max_items: Option<u32>,
}

/// The latest backups, newest first, with their archive, size and result (needs `manageSystem`).
#[utoipa::path(get, path = "/api/system/backups", tag = "system", params(BackupsQuery),
    responses((status = 200, body = [BackupRun]), (status = 403, body = ErrorBody)))]
pub async fn backups(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<BackupsQuery>,
) -> ApiResult<Json<Vec<BackupRun>>> {
    let limit = query.max_items.unwrap_or(Page::DEFAULT_MAX_ITEMS).clamp(1, Page::LIMIT_MAX_ITEMS);
    Ok(Json(state.drydock.backups.list(&caller, limit).await?))
}
