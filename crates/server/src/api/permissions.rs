use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use drydock_core::Permission;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, Caller};

/// The caller's system permissions (`actions` is empty for a plain user).
#[utoipa::path(get, path = "/api/permissions/system", tag = "permissions",
    responses((status = 200, body = Permission), (status = 401, body = ErrorBody)))]
pub async fn system_of_caller(State(state): State<AppState>, caller: Caller) -> Json<Permission> {
    Json(state.drydock.permissions.system_of(&caller))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PermissionBody {
    user_id: String,
    domain_id: String,
    instance_id: Option<String>,
    actions: Vec<String>,
}

/// Grant a user actions in a domain, replacing what they had there. For `system`
/// (`manageSystem`, `manageUsers`) the caller needs `manageSystem`.
#[utoipa::path(post, path = "/api/permissions", tag = "permissions", request_body = PermissionBody,
    responses((status = 200, body = Permission), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn store(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<PermissionBody>,
) -> ApiResult<Json<Permission>> {
    if body.domain_id == drydock_core::workspace::DOMAIN_WORKSPACE {
        let instance = body
            .instance_id
            .ok_or_else(|| ApiError::bad_request(Some("instanceId"), "instanceId must be the workspace id"))?;
        let shared = state.drydock.workspaces.share(&caller, &instance, &body.user_id, &body.actions).await?;
        return Ok(Json(shared));
    }
    let permission = Permission {
        user_id: body.user_id,
        domain_id: body.domain_id,
        instance_id: body.instance_id,
        actions: body.actions,
    };
    Ok(Json(state.drydock.permissions.store(&caller, permission).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RevokeQuery {
    /// The user whose system permissions go.
    user: String,
}

/// Revoke a user's system permissions (needs `manageSystem`; never the last holder's).
#[utoipa::path(delete, path = "/api/permissions/system", tag = "permissions", params(RevokeQuery),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn revoke_system(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<RevokeQuery>,
) -> ApiResult<StatusCode> {
    state.drydock.permissions.remove_system(&caller, &q.user).await?;
    Ok(StatusCode::NO_CONTENT)
}
