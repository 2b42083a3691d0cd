//! The primary's replication endpoints, which a standby polls: who the primary is, a
//! consistent snapshot of the instance (database, config, secrets), and what changed in a
//! workspace's `/projects`. They take the replication token (`drydock standby token`) as
//! `Authorization: Bearer`, never a user's credentials.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use drydock_core::standby::{ImageRef, PrimaryStatus, ReplicationSource};

use crate::AppState;
use crate::auth::presented_secret;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, body_bytes, client_address};

/// A workspace's index may list many files: it gets more room than other bodies.
pub const INDEX_BODY_LIMIT: usize = 256 << 20;

/// The source, when the token is right.
fn source(state: &AppState) -> Result<Arc<dyn ReplicationSource>, ApiError> {
    state.settings.replication.clone().ok_or_else(|| {
        ApiError::from(drydock_core::Error::Standby(
            "this instance is a standby: a standby follows its primary and serves no replication".into(),
        ))
    })
}

/// Refuses a request without the replication token now in `secrets/`.
pub async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let source = match source(&state) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    let token = presented_secret(request.headers()).map(|(t, _)| t).unwrap_or_default();
    if token.is_empty() || !source.accepts(&token) {
        tracing::warn!(client = %client_address(request.extensions()), "replication refused: wrong or missing token");
        return ApiError::unauthorized(
            "the replication token is missing or wrong (it may have been rotated): use the one \
             `drydock standby token` prints on the primary",
        )
        .into_response();
    }
    next.run(request).await
}

/// Who the primary is: version, schema, epoch.
#[utoipa::path(get, path = "/api/replication/status", tag = "replication", security(("bearer" = [])),
    responses((status = 200, body = PrimaryStatus), (status = 401, body = ErrorBody)))]
pub async fn status(State(state): State<AppState>) -> ApiResult<Json<PrimaryStatus>> {
    Ok(Json(source(&state)?.status().await?))
}

/// A consistent snapshot of the instance: zstd-compressed JSON, its digest as `ETag`; 304
/// when `If-None-Match` names the current digest.
#[utoipa::path(get, path = "/api/replication/snapshot", tag = "replication", security(("bearer" = [])),
    responses((status = 200, content_type = "application/zstd"), (status = 304), (status = 401, body = ErrorBody)))]
pub async fn snapshot(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    let known = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).map(|v| v.trim_matches('"'));
    match source(&state)?.snapshot(known).await? {
        None => Ok(StatusCode::NOT_MODIFIED.into_response()),
        Some(snapshot) => Ok((
            [
                (header::CONTENT_TYPE, "application/zstd".to_string()),
                (header::ETAG, format!("\"{}\"", snapshot.digest)),
            ],
            snapshot.bytes,
        )
            .into_response()),
    }
}

/// What changed in a workspace's `/projects`: the body is the standby's index of its copy
/// (zstd-compressed JSON); the answer a zstd-compressed tar of the changed entries, ending
/// with a summary.
#[utoipa::path(post, path = "/api/replication/projects/{workspace}", tag = "replication", security(("bearer" = [])),
    params(("workspace" = String, Path, description = "The workspace's id")),
    request_body(content = Vec<u8>, content_type = "application/zstd", description = "The standby's index of its copy"),
    responses((status = 200, content_type = "application/zstd"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn projects(
    State(state): State<AppState>,
    Path(workspace): Path<String>,
    request: Request,
) -> ApiResult<Response> {
    let body = body_bytes(request, &state).await?;
    let chunks = source(&state)?.projects_delta(&workspace, &body).await?;
    Ok(([(header::CONTENT_TYPE, "application/zstd")], Body::from_stream(chunks)).into_response())
}

/// The images the primary's workspaces use (for a standby run with `--images`).
#[utoipa::path(get, path = "/api/replication/images", tag = "replication", security(("bearer" = [])),
    responses((status = 200, body = Vec<ImageRef>), (status = 401, body = ErrorBody)))]
pub async fn images(State(state): State<AppState>) -> ApiResult<Json<Vec<ImageRef>>> {
    Ok(Json(source(&state)?.images().await?))
}

/// Some of those images as one `docker save` tar; the body names them.
#[utoipa::path(post, path = "/api/replication/images/export", tag = "replication", security(("bearer" = [])),
    request_body = Vec<String>,
    responses((status = 200, content_type = "application/x-tar"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn export_images(State(state): State<AppState>, ApiJson(names): ApiJson<Vec<String>>) -> ApiResult<Response> {
    let chunks = source(&state)?.export_images(&names).await?;
    Ok(([(header::CONTENT_TYPE, "application/x-tar")], Body::from_stream(chunks)).into_response())
}
