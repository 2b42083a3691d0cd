use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use drydock_core::auth::TokenInfo;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Caller};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTokenBody {
    name: String,
}

#[derive(Serialize, ToSchema)]
pub struct NewToken {
    #[serde(flatten)]
    info: TokenInfo,
    /// The secret, shown this once.
    token: String,
}

/// Create a personal API token for the caller. The secret is in this answer only.
#[utoipa::path(post, path = "/api/token", tag = "tokens", request_body = NewTokenBody,
    responses((status = 201, body = NewToken), (status = 400, body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewTokenBody>,
) -> ApiResult<(StatusCode, Json<NewToken>)> {
    let (info, token) = state.drydock.auth.create_token(&caller, &body.name).await?;
    Ok((StatusCode::CREATED, Json(NewToken { info, token })))
}

/// The caller's tokens, without their secrets.
#[utoipa::path(get, path = "/api/token", tag = "tokens", responses((status = 200, body = Vec<TokenInfo>)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<TokenInfo>>> {
    Ok(Json(state.drydock.auth.tokens(&caller).await?))
}

/// Revoke one of the caller's tokens; it stops working at once.
#[utoipa::path(delete, path = "/api/token/{id}", tag = "tokens", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn revoke(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    state.drydock.auth.revoke_token(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
