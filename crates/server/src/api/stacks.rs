use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use drydock_core::workspace::Stack;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Caller};

/// The stacks offered: ready workspace templates.
#[utoipa::path(get, path = "/api/stack", tag = "workspaces", responses((status = 200, body = Vec<Object>)))]
pub async fn list(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<Vec<Stack>>> {
    Ok(Json(state.drydock.workspaces.stacks().await?))
}

/// Offer a stack (needs `manageSystem`): `{"name", "description", "workspaceConfig"}` in
/// Codenvy's shape; fields drydock does not use are kept.
#[utoipa::path(post, path = "/api/stack", tag = "workspaces", request_body = Object,
    responses((status = 201, body = Object), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(stack): ApiJson<Stack>,
) -> ApiResult<(StatusCode, Json<Stack>)> {
    Ok((StatusCode::CREATED, Json(state.drydock.workspaces.create_stack(&caller, stack).await?)))
}

/// Withdraw a stack (needs `manageSystem`); workspaces made from it stay.
#[utoipa::path(delete, path = "/api/stack/{id}", tag = "workspaces", params(("id" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    state.drydock.workspaces.delete_stack(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
