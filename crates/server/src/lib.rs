//! drydock's HTTP face: the JSON API under `/api` (with its OpenAPI document and Swagger
//! UI), `/metrics`, and the dashboard. Handlers are thin: they parse, call a service of
//! `drydock-core`, and shape the answer.

pub mod api;
pub mod auth;
mod dashboard;
pub mod error;
pub mod extract;
mod jobs;
pub mod metrics;
mod proxy;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, Uri};
use axum::middleware;
use drydock_core::Drydock;
use drydock_core::standby::{ReplicationSource, StandbyState};
use tower_http::set_header::SetResponseHeaderLayer;

pub use error::{ApiError, ApiResult};
pub use jobs::spawn_background_jobs;

/// Requests bodies above this are refused with 413.
pub const BODY_LIMIT: usize = 1 << 20;

/// What the handlers share. One `Arc`, so the several clones a request makes cost one
/// reference count each.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub drydock: Arc<Drydock>,
    pub metrics: metrics::Metrics,
    pub settings: Settings,
    /// The HTTP client of the proxy to machines' servers (it keeps connections alive).
    pub proxy: proxy::HttpClient,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The settings the HTTP layer needs, taken from the config at start-up.
#[derive(Clone)]
pub struct Settings {
    pub metrics_public: bool,
    /// Mark cookies `Secure` (the server speaks TLS).
    pub secure_cookies: bool,
    pub session_ttl_secs: i64,
    pub instance_id: String,
    /// When the master makes a backup by itself (`backup.schedule`).
    pub backup_schedule: Option<drydock_core::backups::Schedule>,
    /// Set on a standby while it follows its primary: writes are refused with 503.
    pub standby: Option<Arc<StandbyState>>,
    /// The primary's side of replication (`/api/replication/…`); none on a standby.
    pub replication: Option<Arc<dyn ReplicationSource>>,
}

impl AppState {
    pub fn new(drydock: Arc<Drydock>, settings: Settings) -> Self {
        AppState(Arc::new(Shared { drydock, metrics: metrics::Metrics::default(), settings, proxy: proxy::client() }))
    }
}

/// The whole application: API, OpenAPI and Swagger UI, metrics, dashboard.
pub fn app(state: AppState) -> Router {
    let (api, openapi) = api::router(state.clone());
    Router::new()
        .merge(api)
        .merge(utoipa_swagger_ui::SwaggerUi::new("/swagger").url("/api/openapi.json", openapi))
        .merge(dashboard::router())
        .route("/w/{workspace}/{machine}/{server}", axum::routing::any(proxy::forward))
        .route("/w/{workspace}/{machine}/{server}/{*rest}", axum::routing::any(proxy::forward))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), standby_gate))
        .layer(middleware::from_fn_with_state(state.clone(), dashboard::error_pages_with_layout))
        .layer(middleware::from_fn_with_state(state.clone(), metrics::track))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(SetResponseHeaderLayer::if_not_present(
            HeaderName::from_static("x-content-type-options"),
            HeaderValue::from_static("nosniff"),
        ))
        .with_state(state)
}

/// What a standby takes besides reads: signing in and out (its sessions are its own).
const STANDBY_WRITES: &[&str] = &["/api/auth/login", "/api/auth/logout", "/login", "/logout"];

/// On a standby, every request that could change something gets 503 "standby", except
/// signing in and out; reads pass.
async fn standby_gate(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Some(standby) = &state.settings.standby {
        let method = request.method();
        let reads = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        let path = request.uri().path();
        if !reads && !STANDBY_WRITES.contains(&path) {
            let message = drydock_core::standby::refusal(&standby.get().primary);
            return if path.starts_with("/api/") {
                ApiError::from(drydock_core::Error::Standby(message)).into_response()
            } else {
                dashboard::error_page(axum::http::StatusCode::SERVICE_UNAVAILABLE, &message)
            };
        }
    }
    next.run(request).await
}

/// Unknown API paths answer in the API's error shape; anything else gets the 404 page.
async fn not_found(method: Method, uri: Uri) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = uri.path();
    if path.starts_with("/api/") || path == "/api" || path == "/metrics" {
        ApiError::not_found(format!("no such route: {method} {path}")).into_response()
    } else {
        dashboard::error_page(axum::http::StatusCode::NOT_FOUND, "There is nothing at this address.")
    }
}

/// TLS files, when the server speaks HTTPS.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot load the TLS certificate {cert} and key {key}: {reason}")]
    Tls { cert: String, key: String, reason: String },
    #[error("the server stopped with an error: {0}")]
    Io(#[from] std::io::Error),
}

/// Serves the app on a bound listener until `shutdown` completes, then drains open
/// requests for up to 10 s.
pub async fn serve(
    listener: std::net::TcpListener,
    tls: Option<TlsFiles>,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    listener.set_nonblocking(true)?;
    let handle = axum_server::Handle::new();
    let on_shutdown = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        on_shutdown.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    match tls {
        Some(files) => {
            let _ = rustls::crypto::ring::default_provider().install_default();
            let config =
                axum_server::tls_rustls::RustlsConfig::from_pem_file(&files.cert, &files.key).await.map_err(|e| {
                    ServeError::Tls {
                        cert: files.cert.display().to_string(),
                        key: files.key.display().to_string(),
                        reason: e.to_string(),
                    }
                })?;
            axum_server::from_tcp_rustls(listener, config)?.handle(handle).serve(service).await?;
        }
        None => {
            axum_server::from_tcp(listener)?.handle(handle).serve(service).await?;
        }
    }
    Ok(())
}
