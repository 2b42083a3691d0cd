//! The browser face. For now the page at `/`; the dashboard issue fills it with the
//! sign-in form and the pages every later feature adds to.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse};
use axum::routing::get;

use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/", get(index))
}

async fn index() -> impl IntoResponse {
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>drydock</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"></head>\
         <body><h1>drydock {}</h1><p>Sign in with <code>POST /api/auth/login</code> or the \
         <code>drydock</code> command line. The API is described at <a href=\"/swagger/\">/swagger/</a>.</p>\
         </body></html>",
        drydock_core::VERSION
    );
    (
        [(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"))],
        Html(page),
    )
}
