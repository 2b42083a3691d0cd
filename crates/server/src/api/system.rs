use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, Method, header};
use axum::response::{IntoResponse, Response};
use drydock_core::model::MANAGE_SYSTEM;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::authenticate;
use crate::error::{ApiResult, ErrorBody};

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
pub struct SystemState {
    /// `RUNNING` (later issues add `MAINTENANCE` and `STANDBY`).
    status: &'static str,
    message: Option<String>,
}

/// What the instance is doing: answers without credentials.
#[utoipa::path(get, path = "/api/system/state", tag = "system", security(()), responses((status = 200, body = SystemState)))]
pub async fn state() -> Json<SystemState> {
    Json(SystemState { status: "RUNNING", message: None })
}

/// Prometheus metrics. Needs a `manageSystem` holder unless `metrics.public` is set.
#[utoipa::path(get, path = "/metrics", tag = "system",
    responses((status = 200, content_type = "text/plain", body = String), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn metrics(State(state): State<AppState>, method: Method, headers: HeaderMap) -> ApiResult<Response> {
    if !state.settings.metrics_public {
        let caller = authenticate(&state, method.is_safe(), &headers).await?;
        caller.require_system(MANAGE_SYSTEM)?;
    }
    let users = state.drydock.users.count().await?;
    let text = state.metrics.render(&[("drydock_users_total", "Users in the store.", users)]);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}
