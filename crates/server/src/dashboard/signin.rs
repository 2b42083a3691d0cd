//! `/`: the sign-in page for visitors, the workspaces page once signed in; sign-in and
//! sign-out by ordinary form posts.

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use drydock_core::{Error, ids};
use serde::Deserialize;

use super::{Layout, PageError, Posted, Session, cookie, html, parse_form};
use crate::AppState;
use crate::auth::session_cookie;
use crate::extract::ClientAddr;

/// The sign-in form is protected by a double-submit token: a cookie and a hidden field that
/// must match, so another site cannot sign a browser in to an account of its choosing.
const LOGIN_CSRF_COOKIE: &str = "drydock_login_csrf";

#[derive(Template)]
#[template(path = "signin.html")]
struct SignIn {
    layout: Layout,
    error: Option<String>,
    username: String,
    login_csrf: String,
}

pub async fn home(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    match Session::from_headers(&state, &headers, &client).await? {
        Some(session) => super::workspaces::page(&state, &session, StatusCode::OK, None, Default::default()).await,
        None => Ok(sign_in_page(&state, StatusCode::OK, None, String::new())),
    }
}

fn sign_in_page(state: &AppState, status: StatusCode, error: Option<String>, username: String) -> Response {
    let login_csrf = ids::random_lower(32);
    let layout = Layout::signed_out(state);
    let mut response = html(status, &SignIn { layout, error, username, login_csrf: login_csrf.clone() });
    let cookie = format!("{LOGIN_CSRF_COOKIE}={login_csrf}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
}

pub async fn login(
    State(state): State<AppState>,
    ClientAddr(client): ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, PageError> {
    let form: LoginForm = parse_form(&body)?;
    if form.csrf.is_empty() || cookie(&headers, LOGIN_CSRF_COOKIE).as_deref() != Some(form.csrf.as_str()) {
        let message = "The sign-in form expired. Please sign in again.".to_string();
        return Ok(sign_in_page(&state, StatusCode::BAD_REQUEST, Some(message), form.username));
    }
    match state.drydock.auth.login(&form.username, &form.password, &client).await {
        Ok(session) => {
            let mut response = Redirect::to("/").into_response();
            let cookie =
                session_cookie(Some(&session.secret), state.settings.session_ttl_secs, state.settings.secure_cookies);
            response.headers_mut().append(header::SET_COOKIE, cookie);
            Ok(response)
        }
        Err(e @ (Error::Unauthorized(_) | Error::Throttled { .. })) => {
            let status = if matches!(e, Error::Throttled { .. }) {
                StatusCode::TOO_MANY_REQUESTS
            } else {
                StatusCode::UNAUTHORIZED
            };
            Ok(sign_in_page(&state, status, Some(e.to_string()), form.username))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct NoFields {}

pub async fn logout(State(state): State<AppState>, posted: Posted<NoFields>) -> Result<Response, PageError> {
    state.drydock.auth.logout(&posted.session.caller).await?;
    let mut response = Redirect::to("/").into_response();
    response.headers_mut().append(header::SET_COOKIE, session_cookie(None, 0, state.settings.secure_cookies));
    Ok(response)
}
