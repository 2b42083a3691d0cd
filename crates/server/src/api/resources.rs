//! The Resource API: per-user limits in Codenvy's shapes. Overrides live under
//! `/api/resource/free` (with the seed's aliases); `/api/resource/{userId}` is a user's
//! effective limits, as Codenvy's code serves it, with `/used` and `/available`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use drydock_core::limits::{self, Resource, ResourceOverride};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{PageQuery, page, paged};
use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, Caller, parse_json};

/// A user's override: `accountId` (the seed's `userId` is accepted too) and the resources
/// that replace the defaults; types not named keep theirs.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OverrideBody {
    account_id: Option<String>,
    user_id: Option<String>,
    resources: Vec<Resource>,
}

/// Store (replace) a user's limits override (needs `manageSystem`).
#[utoipa::path(post, path = "/api/resource/free", tag = "resources", request_body = OverrideBody,
    responses((status = 201, body = ResourceOverride), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn store(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<OverrideBody>,
) -> ApiResult<(StatusCode, Json<ResourceOverride>)> {
    let user_id = body.account_id.or(body.user_id).unwrap_or_default();
    let stored = state.drydock.limits.set(&caller, &user_id, &body.resources).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// Every user's override (needs `manageSystem`).
#[utoipa::path(get, path = "/api/resource/free", tag = "resources", params(PageQuery),
    responses((status = 200, body = [ResourceOverride]), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Response> {
    let (items, total) = state.drydock.limits.overrides(&caller, page(q.max_items, q.skip_count)?).await?;
    Ok(paged(items, total))
}

/// The seed's name for the list of overrides.
#[utoipa::path(get, path = "/api/resource", tag = "resources", params(PageQuery),
    responses((status = 200, body = [ResourceOverride]), (status = 403, body = ErrorBody)))]
pub async fn list_alias(state: State<AppState>, caller: Caller, q: ApiQuery<PageQuery>) -> ApiResult<Response> {
    list(state, caller, q).await
}

/// One user's override; 404 when they have none (their own, or any with `manageSystem`).
#[utoipa::path(get, path = "/api/resource/free/{userId}", tag = "resources", params(("userId" = String, Path)),
    responses((status = 200, body = ResourceOverride), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> ApiResult<Json<ResourceOverride>> {
    Ok(Json(state.drydock.limits.override_of(&caller, &user_id).await?))
}

/// Back to the defaults (needs `manageSystem`).
#[utoipa::path(delete, path = "/api/resource/free/{userId}", tag = "resources", params(("userId" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn reset(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> ApiResult<StatusCode> {
    state.drydock.limits.reset(&caller, &user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ResetQuery {
    /// The user, when not in the body.
    user_id: Option<String>,
}

/// The user whose override goes (optional when `?userId=` names them).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ResetBody {
    user_id: Option<String>,
    account_id: Option<String>,
}

/// The seed's reset: the user in the body (`{"userId": …}`) or in `?userId=`.
#[utoipa::path(delete, path = "/api/resource/free", tag = "resources", params(ResetQuery), request_body = ResetBody,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn reset_seed(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ResetQuery>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let from_body = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let b: ResetBody = parse_json(&body)?;
        b.user_id.or(b.account_id)
    };
    let user_id = q.user_id.or(from_body).filter(|u| !u.is_empty()).ok_or_else(|| {
        ApiError::bad_request(Some("userId"), "userId is required: in the body ({\"userId\": …}) or as ?userId=")
    })?;
    state.drydock.limits.reset(&caller, &user_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A user's effective limits, each in its type's default unit (their own, or any with
/// `manageSystem`).
#[utoipa::path(get, path = "/api/resource/{userId}", tag = "resources", params(("userId" = String, Path)),
    responses((status = 200, body = [Resource]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn effective(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> ApiResult<Json<Vec<Resource>>> {
    let (limits, _) = state.drydock.limits.report(&caller, &user_id).await?;
    Ok(Json(limits.resources()))
}

/// What a user's workspaces hold now.
#[utoipa::path(get, path = "/api/resource/{userId}/used", tag = "resources", params(("userId" = String, Path)),
    responses((status = 200, body = [Resource]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn used(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> ApiResult<Json<Vec<Resource>>> {
    let (_, usage) = state.drydock.limits.report(&caller, &user_id).await?;
    Ok(Json(limits::used_resources(&usage)))
}

/// What is left of a user's limits (-1 where unlimited).
#[utoipa::path(get, path = "/api/resource/{userId}/available", tag = "resources", params(("userId" = String, Path)),
    responses((status = 200, body = [Resource]), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn available(
    State(state): State<AppState>,
    caller: Caller,
    Path(user_id): Path<String>,
) -> ApiResult<Json<Vec<Resource>>> {
    let (limits, usage) = state.drydock.limits.report(&caller, &user_id).await?;
    Ok(Json(limits::available_resources(&limits, &usage)))
}
