use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use drydock_core::User;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::AppState;
use crate::auth::session_cookie;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiJson, Caller, ClientAddr};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The user's name or e-mail.
    username: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoginResponse {
    /// The session secret; also set as the `drydock_session` cookie. Usable as a Bearer token.
    token: String,
    /// Send this in `X-CSRF-Token` on unsafe requests authenticated by the cookie.
    csrf_token: String,
    expires: DateTime<Utc>,
    user: User,
}

/// Sign in with a name or e-mail and a password.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", security(()), request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 400, body = ErrorBody),
              (status = 401, description = "Wrong name or password", body = ErrorBody),
              (status = 429, description = "Too many failures; see Retry-After", body = ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    ApiJson(body): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let session = state.drydock.auth.login(&body.username, &body.password, &client).await?;
    let cookie = session_cookie(Some(&session.secret), state.settings.session_ttl_secs, state.settings.secure_cookies);
    let body = LoginResponse {
        token: session.secret,
        csrf_token: session.csrf_token,
        expires: session.expires,
        user: session.user,
    };
    Ok(([(header::SET_COOKIE, cookie)], Json(body)).into_response())
}

/// Sign out: ends the session the request is made with.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", responses((status = 204), (status = 401, body = ErrorBody)))]
pub async fn logout(State(state): State<AppState>, caller: Caller) -> ApiResult<Response> {
    state.drydock.auth.logout(&caller).await?;
    let cookie = session_cookie(None, 0, state.settings.secure_cookies);
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}
