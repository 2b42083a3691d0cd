//! Who is asking: a Bearer token or the session cookie. Unsafe requests authenticated by
//! the cookie must carry the session's CSRF token in `X-CSRF-Token`; Bearer requests
//! need none, since a browser never adds that header by itself.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use drydock_core::model::Via;
use drydock_core::secret;

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Caller, client_address};

pub const SESSION_COOKIE: &str = "drydock_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The secret the request presents, and how.
pub fn presented_secret(headers: &HeaderMap) -> Option<(String, Via)> {
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let (scheme, token) = value.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then(|| (token.trim().to_string(), Via::Bearer));
    }
    cookie(headers, SESSION_COOKIE).map(|value| (value, Via::Cookie))
}

/// The value of one cookie of the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
}

/// Authenticates the request and checks the CSRF token of cookie requests.
pub async fn authenticate(
    state: &AppState,
    method_is_safe: bool,
    headers: &HeaderMap,
    client: &str,
) -> Result<Caller, ApiError> {
    let (secret, via) = presented_secret(headers).ok_or_else(|| {
        ApiError::unauthorized("not signed in: sign in at POST /api/auth/login or send Authorization: Bearer <token>")
    })?;
    let principal = state.drydock.auth.authenticate(&secret).await?.from_client(client);
    if via == Via::Cookie && !method_is_safe {
        let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).unwrap_or("");
        if sent != secret::csrf_token(&secret) {
            return Err(ApiError::forbidden("missing or wrong CSRF token (send it in the X-CSRF-Token header)"));
        }
    }
    Ok(Caller(principal))
}

/// Middleware for every route that needs a signed-in caller.
pub async fn require_caller(State(state): State<AppState>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    let safe = req.method().is_safe();
    let client = client_address(req.extensions());
    let caller = authenticate(&state, safe, req.headers(), &client).await?;
    if let Some((_, via)) = presented_secret(req.headers()) {
        req.extensions_mut().insert(via);
    }
    req.extensions_mut().insert(caller);
    Ok(next.run(req).await)
}

/// The `Set-Cookie` value for a new session, or for clearing it (`None`).
pub fn session_cookie(secret: Option<&str>, max_age_secs: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let value = match secret {
        Some(s) => format!("{SESSION_COOKIE}={s}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"),
        None => format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A WebSocket authenticated by the cookie must come from our own pages: browsers send
/// cookies on cross-site WebSocket handshakes, and the CSRF token cannot ride along.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (None, _) => true,
        (Some(origin), Some(host)) => {
            origin.split_once("://").is_some_and(|(_, rest)| rest.trim_end_matches('/') == host)
        }
        (Some(_), None) => false,
    }
}
