//! The dashboard: server-rendered pages (askama, checked at compile time) with htmx for
//! in-place updates. Pages authenticate by the session cookie only; every form carries the
//! session's CSRF token (htmx sends it as `X-CSRF-Token` from the `hx-headers` of <body>).
//! No page runs an inline script: the Content-Security-Policy forbids them.

mod account;
mod admin;
mod audit;
mod license;
mod limits;
mod maintenance;
mod nodes;
mod signin;
mod standby;
mod workspaces;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use drydock_core::model::{MANAGE_SYSTEM, MANAGE_USERS, Via};
use drydock_core::{Error, Principal, secret};
use serde::de::DeserializeOwned;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::AppState;
pub use crate::auth::cookie;
use crate::auth::presented_secret;

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";
/// The terminal page's policy: the same, but xterm.js needs inline styles.
pub const TERMINAL_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";
const FLASH_COOKIE: &str = "drydock_flash";

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(signin::home))
        .route("/login", post(signin::login))
        .route("/logout", post(signin::logout))
        .route("/admin/users", get(admin::users).post(admin::create))
        .route("/admin/users/table", get(admin::table))
        .route("/admin/users/new", get(admin::new_user))
        .route("/admin/users/{id}", get(admin::details))
        .route("/admin/users/{id}/email", post(admin::email))
        .route("/admin/users/{id}/password", post(admin::password))
        .route("/admin/users/{id}/admin", post(admin::set_admin))
        .route("/admin/users/{id}/remove", get(admin::confirm_remove).post(admin::remove))
        .route("/admin/users/{id}/limits", post(limits::save))
        .route("/admin/users/{id}/limits/reset", post(limits::reset))
        .route("/admin/maintenance", get(maintenance::page).post(maintenance::begin))
        .route("/admin/maintenance/off", post(maintenance::end))
        .route("/admin/audit", get(audit::page))
        .route("/admin/license", get(license::page).post(license::install))
        .route("/admin/license/remove", post(license::remove))
        .route("/admin/nodes", get(nodes::page))
        .route("/admin/nodes/{node}/drain", get(nodes::confirm_drain).post(nodes::drain))
        .route("/admin/nodes/{node}/activate", post(nodes::activate))
        .route("/admin/nodes/{node}/remove", get(nodes::confirm_remove).post(nodes::remove))
        .route("/workspaces", post(workspaces::create))
        .route("/workspaces/table", get(workspaces::table))
        .route("/workspaces/events", get(workspaces::changes))
        .route("/workspaces/{id}/start", post(workspaces::start))
        .route("/workspaces/{id}/stop", post(workspaces::stop))
        .route("/workspaces/{id}/delete", get(workspaces::confirm_delete).post(workspaces::delete))
        .route("/workspaces/{id}/terminal", get(workspaces::terminal))
        .route("/workspaces/{id}", get(workspaces::details))
        .route("/workspaces/{id}/state", get(workspaces::state_fragment))
        .route("/workspaces/{id}/share", post(workspaces::share))
        .route("/workspaces/{id}/unshare", post(workspaces::unshare))
        .route("/standby", get(standby::page))
        .route("/account", get(account::page))
        .route("/account/password", post(account::password))
        .route("/account/tokens", post(account::create_token))
        .route("/account/tokens/{id}/revoke", post(account::revoke_token))
        .route("/static/{file}", get(static_file))
        .layer(SetResponseHeaderLayer::if_not_present(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP)))
}

/// What an error page said, so it can be drawn again inside the signed-in layout.
#[derive(Clone)]
struct ErrorPageInfo {
    status: StatusCode,
    title: &'static str,
    message: String,
}

/// Error pages are rendered without knowing who asked; for a signed-in visitor they are
/// drawn again with the navigation, so a 403 or 404 is not a dead end.
pub async fn error_pages_with_layout(State(state): State<AppState>, req: Request, next: Next) -> Response {
    // Only the cookies are kept: an API request with a Bearer token copies nothing.
    let mut headers = HeaderMap::new();
    for cookie in req.headers().get_all(header::COOKIE) {
        headers.append(header::COOKIE, cookie.clone());
    }
    let response = next.run(req).await;
    let Some(info) = response.extensions().get::<ErrorPageInfo>().cloned() else { return response };
    let layout = match Session::from_headers(&state, &headers, "").await.ok().flatten() {
        Some(session) => session.layout(""),
        // Signed out: drawn again only to show the maintenance banner.
        None if state.drydock.system.maintenance().is_some() => Layout::signed_out(&state),
        None => return response,
    };
    let page = ErrorPage { layout, status: info.status.as_u16(), title: info.title, message: &info.message };
    let mut redrawn = html(info.status, &page);
    // The first drawing's other headers (its Content-Security-Policy, say) still apply.
    let own: Vec<_> = redrawn.headers().keys().cloned().collect();
    for (name, value) in response.headers() {
        if !own.contains(name) && name != header::CONTENT_LENGTH {
            redrawn.headers_mut().append(name.clone(), value.clone());
        }
    }
    redrawn
}

/// What the layout shows around every page.
pub struct Layout {
    pub user: Option<LayoutUser>,
    /// `workspaces`, `admin` or `account`: the current navigation entry.
    pub section: &'static str,
    pub flash: Option<String>,
    /// The maintenance message, shown to everyone while maintenance is on.
    pub banner: Option<String>,
    /// The license warning (grace period, a license that does not apply), shown to holders
    /// of `manageSystem` only.
    pub license_banner: Option<String>,
    /// On a standby: whom it follows and how far behind it is, shown to everyone.
    pub standby_banner: Option<String>,
}

pub struct LayoutUser {
    pub name: String,
    pub csrf: String,
    pub is_admin: bool,
    /// Holds `manageSystem` (may turn maintenance on and off).
    pub manages_system: bool,
}

impl Layout {
    pub fn signed_out(state: &AppState) -> Self {
        Layout {
            user: None,
            section: "",
            flash: None,
            banner: maintenance_banner(state),
            license_banner: None,
            standby_banner: standby_banner(state),
        }
    }

    /// Before anything is known of the instance (error pages rendered without the state).
    fn bare() -> Self {
        Layout { user: None, section: "", flash: None, banner: None, license_banner: None, standby_banner: None }
    }
}

fn maintenance_banner(state: &AppState) -> Option<String> {
    state.drydock.system.maintenance().map(|m| m.message)
}

/// "read-only copy of <primary>, N s behind", with the last error when there is one.
fn standby_banner(state: &AppState) -> Option<String> {
    let follow = state.settings.standby.as_ref()?.get();
    let behind = match follow.lag_seconds(Utc::now()) {
        Some(lag) => format!("{lag} s behind"),
        None => "no copy yet".to_string(),
    };
    let error = follow.last_error.map(|e| format!("; last error: {e}")).unwrap_or_default();
    Some(format!("this is a read-only copy of {} ({behind}{error}); changes are refused.", follow.primary))
}

/// The signed-in browser session of a page request.
pub struct Session {
    pub caller: Arc<Principal>,
    pub csrf: String,
    /// A message left by the previous request (a redirect after a change).
    pub flash: Option<String>,
    /// The request came from htmx and wants a fragment.
    pub htmx: bool,
    /// The maintenance message while maintenance is on.
    pub banner: Option<String>,
    /// The license warning, for a holder of `manageSystem`.
    pub license_banner: Option<String>,
    pub standby_banner: Option<String>,
}

impl Session {
    /// The session the cookie names; `None` when there is no valid one. A failure to check
    /// it (the database is gone) is an error, not a reason to ask for a sign-in.
    pub async fn from_headers(
        state: &AppState,
        headers: &HeaderMap,
        client: &str,
    ) -> Result<Option<Session>, PageError> {
        let Some((secret, Via::Cookie)) = presented_secret(headers) else { return Ok(None) };
        let caller = match state.drydock.auth.authenticate(&secret).await {
            Ok(caller) => caller.from_client(client),
            Err(Error::Unauthorized(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let license_banner = if caller.has_system(MANAGE_SYSTEM) { state.drydock.licenses.banner() } else { None };
        Ok(Some(Session {
            license_banner,
            caller,
            csrf: secret::csrf_token(&secret),
            flash: cookie(headers, FLASH_COOKIE).map(|v| percent_decode(&v)),
            htmx: headers.contains_key("hx-request"),
            banner: maintenance_banner(state),
            standby_banner: standby_banner(state),
        }))
    }

    pub fn is_admin(&self) -> bool {
        self.caller.has_system(MANAGE_USERS) || self.caller.has_system(MANAGE_SYSTEM)
    }

    pub fn layout(&self, section: &'static str) -> Layout {
        Layout {
            user: Some(LayoutUser {
                name: self.caller.user.name.clone(),
                csrf: self.csrf.clone(),
                is_admin: self.is_admin(),
                manages_system: self.caller.has_system(MANAGE_SYSTEM),
            }),
            section,
            flash: self.flash.clone(),
            banner: self.banner.clone(),
            license_banner: self.license_banner.clone(),
            standby_banner: self.standby_banner.clone(),
        }
    }

    /// A rendered page; the flash it showed is cleared.
    pub fn page(&self, status: StatusCode, template: &impl Template) -> Response {
        let mut response = html(status, template);
        if self.flash.is_some() {
            response.headers_mut().append(header::SET_COOKIE, flash_cookie(None));
        }
        response
    }

    /// After a change: a redirect (for htmx, `HX-Redirect`), with a message for the next page.
    pub fn redirect(&self, to: &str, flash: &str) -> Response {
        let mut response = if self.htmx {
            let mut r = StatusCode::OK.into_response();
            if let Ok(v) = HeaderValue::from_str(to) {
                r.headers_mut().insert("hx-redirect", v);
            }
            r
        } else {
            Redirect::to(to).into_response()
        };
        response.headers_mut().append(header::SET_COOKIE, flash_cookie(Some(flash)));
        response
    }
}

impl FromRequestParts<AppState> for Session {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let client = crate::extract::client_address(&parts.extensions);
        Session::from_headers(state, &parts.headers, &client).await?.ok_or(PageError::SignIn)
    }
}

/// A form post from a signed-in session, with its CSRF token checked (the `csrf` field, or
/// the `X-CSRF-Token` header htmx sends) before anything else is looked at.
pub struct Posted<T> {
    pub session: Session,
    pub form: T,
}

impl<T: DeserializeOwned> FromRequest<AppState> for Posted<T> {
    type Rejection = PageError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let client = crate::extract::client_address(req.extensions());
        let session = Session::from_headers(state, req.headers(), &client).await?.ok_or(PageError::SignIn)?;
        let header_token = req.headers().get("x-csrf-token").and_then(|v| v.to_str().ok()).map(str::to_string);
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| PageError::Status(e.status(), "the form could not be read".into()))?;
        let field_token = form_urlencoded::parse(&bytes).find(|(k, _)| k == "csrf").map(|(_, v)| v.into_owned());
        if header_token.or(field_token).as_deref() != Some(session.csrf.as_str()) {
            return Err(PageError::Status(
                StatusCode::FORBIDDEN,
                "This form is missing its security token or it is out of date. Reload the page and try again.".into(),
            ));
        }
        Ok(Posted { session, form: parse_form(&bytes)? })
    }
}

pub fn parse_form<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, PageError> {
    serde_urlencoded::from_bytes(bytes)
        .map_err(|e| PageError::Status(StatusCode::BAD_REQUEST, format!("The form is not complete: {e}.")))
}

pub fn parse_query<T: DeserializeOwned>(query: Option<&str>) -> Result<T, PageError> {
    serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| PageError::Status(StatusCode::BAD_REQUEST, format!("The address is not valid: {e}.")))
}

/// Why a page cannot be shown: the visitor must sign in, or an error page with its status.
#[derive(Debug)]
pub enum PageError {
    SignIn,
    Status(StatusCode, String),
}

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        let status = match &e {
            Error::Unauthorized(_) => return PageError::SignIn,
            Error::InvalidInput { .. } => StatusCode::BAD_REQUEST,
            Error::Forbidden(_) => StatusCode::FORBIDDEN,
            Error::NotFound(_) => StatusCode::NOT_FOUND,
            Error::Conflict(_) | Error::Taken { .. } => StatusCode::CONFLICT,
            Error::Throttled { .. } => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable(_) | Error::Maintenance(_) | Error::Standby(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(cause) => {
                tracing::error!(cause = %cause, "page failed");
                return PageError::Status(StatusCode::INTERNAL_SERVER_ERROR, String::new());
            }
        };
        PageError::Status(status, e.to_string())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::SignIn => Redirect::to("/").into_response(),
            PageError::Status(status, message) => error_page(status, &message),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    layout: Layout,
    status: u16,
    title: &'a str,
    message: &'a str,
}

/// The error page: what happened, in words, and nothing internal.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    let (title, fallback) = match status.as_u16() {
        400 => ("Bad request", "The request was not valid."),
        401 => ("Not signed in", "Sign in to see this page."),
        403 => ("Not allowed", "Your account is not allowed to see this page."),
        404 => ("Not found", "There is nothing at this address."),
        409 => ("Conflict", "The change conflicts with the current state."),
        429 => ("Too many requests", "Too many requests; try again later."),
        503 => ("Unavailable", "drydock is not available right now."),
        _ => (
            "Something went wrong",
            "Something went wrong on the server. The administrators can find the details in its log.",
        ),
    };
    let message = if message.is_empty() || status.is_server_error() { fallback } else { message };
    let mut response = html(status, &ErrorPage { layout: Layout::bare(), status: status.as_u16(), title, message });
    response.extensions_mut().insert(ErrorPageInfo { status, title, message: message.to_string() });
    response
}

pub fn html(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(body) => {
            (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8"), (header::CACHE_CONTROL, "no-store")], body)
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot render a page");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

fn flash_cookie(message: Option<&str>) -> HeaderValue {
    let value = match message {
        Some(m) => format!("{FLASH_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax; Max-Age=60", percent_encode(m)),
        None => format!("{FLASH_COOKIE}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0"),
    };
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

pub fn percent_encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn percent_decode(text: &str) -> String {
    form_urlencoded::parse(format!("v={text}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
}

/// A time as people read it on a page.
pub fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// The vendored and own assets, embedded in the binary.
async fn static_file(Path(file): Path<String>) -> Response {
    let (body, content_type): (&'static [u8], &str) = match file.as_str() {
        "htmx.min.js" => (include_bytes!("../../static/htmx.min.js"), "text/javascript"),
        "htmx.LICENSE" => (include_bytes!("../../static/htmx.LICENSE"), "text/plain; charset=utf-8"),
        "app.js" => (include_bytes!("../../static/app.js"), "text/javascript"),
        "app.css" => (include_bytes!("../../static/app.css"), "text/css"),
        "terminal.js" => (include_bytes!("../../static/terminal.js"), "text/javascript"),
        "xterm.js" => (include_bytes!("../../static/xterm.js"), "text/javascript"),
        "xterm.css" => (include_bytes!("../../static/xterm.css"), "text/css"),
        "xterm.LICENSE" => (include_bytes!("../../static/xterm.LICENSE"), "text/plain; charset=utf-8"),
        "addon-fit.js" => (include_bytes!("../../static/addon-fit.js"), "text/javascript"),
        "addon-fit.LICENSE" => (include_bytes!("../../static/addon-fit.LICENSE"), "text/plain; charset=utf-8"),
        _ => return error_page(StatusCode::NOT_FOUND, "There is no such file."),
    };
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "public, max-age=300")], body).into_response()
}
