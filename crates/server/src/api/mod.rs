//! The JSON API under `/api`. Every route is registered through utoipa-axum, so the OpenAPI
//! document lists exactly what is served.

mod audit_log;
mod audit_report;
mod auth;
mod license;
mod nodes;
mod permissions;
mod replication;
mod resources;
mod stacks;
mod system;
mod terminal;
mod tokens;
mod users;
mod workspaces;

use axum::Json;
use axum::Router;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use drydock_core::Page;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::error::ApiError;

#[derive(OpenApi)]
#[openapi(
    info(title = "drydock", description = "Self-hosted developer workspaces: the HTTP API."),
    modifiers(&SecurityAddon),
    security(("bearer" = []), ("cookie" = [])),
    tags(
        (name = "auth", description = "Signing in and out"),
        (name = "users", description = "Users and their administration"),
        (name = "permissions", description = "Permissions in Codenvy's shape"),
        (name = "tokens", description = "Personal API tokens"),
        (name = "workspaces", description = "Workspaces in Codenvy's shapes"),
        (name = "resources", description = "Per-user resource limits (Codenvy's Resource API)"),
        (name = "system", description = "Health, state, maintenance mode and metrics"),
        (name = "nodes", description = "The Docker hosts workspaces run on"),
        (name = "audit", description = "The audit report and the audit log"),
        (name = "license", description = "The license: Fair Source or a signed paid license, seats, legality"),
        (name = "replication", description = "The primary's side of a standby's following (the replication token)"),
    )
)]
struct ApiDoc;

struct SecurityAddon;

impl Modify for SecurityAddon {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(crate::auth::SESSION_COOKIE))),
        );
    }
}

/// The API routes and their OpenAPI document.
pub fn router(state: AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let public = OpenApiRouter::new()
        .routes(routes!(auth::login))
        .routes(routes!(system::health))
        .routes(routes!(system::state))
        .routes(routes!(system::metrics));
    let signed_in = OpenApiRouter::new()
        .routes(routes!(auth::logout))
        .routes(routes!(users::me, users::create))
        .routes(routes!(users::find))
        .routes(routes!(users::get, users::change, users::remove))
        .routes(routes!(users::set_password))
        .routes(routes!(users::admin_list))
        .routes(routes!(users::admin_find))
        .routes(routes!(permissions::system_of_caller, permissions::revoke_system))
        .routes(routes!(permissions::store))
        .routes(routes!(tokens::create, tokens::list))
        .routes(routes!(tokens::revoke))
        .routes(routes!(workspaces::create, workspaces::list))
        .routes(routes!(workspaces::get, workspaces::update, workspaces::delete))
        .routes(routes!(workspaces::my_permission, workspaces::unshare))
        .routes(routes!(workspaces::all_permissions))
        .routes(routes!(workspaces::start, workspaces::stop))
        .routes(routes!(workspaces::events))
        .routes(routes!(workspaces::exec))
        .routes(routes!(terminal::terminal))
        .routes(routes!(workspaces::snapshot))
        .routes(routes!(stacks::list, stacks::create))
        .routes(routes!(stacks::delete))
        .routes(routes!(resources::store, resources::list, resources::reset_seed))
        .routes(routes!(resources::list_alias))
        .routes(routes!(resources::get, resources::reset))
        .routes(routes!(resources::effective))
        .routes(routes!(resources::used))
        .routes(routes!(resources::available))
        .routes(routes!(system::maintenance, system::begin_maintenance, system::end_maintenance))
        .routes(routes!(system::start_backup))
        .routes(routes!(system::backups))
        .routes(routes!(nodes::list))
        .routes(routes!(nodes::script))
        .routes(routes!(nodes::drain))
        .routes(routes!(nodes::activate))
        .routes(routes!(nodes::remove))
        .routes(routes!(audit_log::events))
        .routes(routes!(audit_log::export))
        .routes(routes!(audit_log::verify))
        .routes(routes!(license::show, license::install, license::remove))
        .routes(routes!(license::legality))
        .routes(routes!(audit_report::report))
        .route_layer(middleware::from_fn_with_state(state.clone(), crate::auth::require_caller));
    let replication = OpenApiRouter::new()
        .routes(routes!(replication::status))
        .routes(routes!(replication::snapshot))
        .routes(routes!(replication::projects))
        .routes(routes!(replication::images))
        .routes(routes!(replication::export_images))
        .layer(axum::extract::DefaultBodyLimit::max(replication::INDEX_BODY_LIMIT))
        .route_layer(middleware::from_fn_with_state(state.clone(), replication::require_token));
    OpenApiRouter::with_openapi(ApiDoc::openapi()).merge(public).merge(signed_in).merge(replication).split_for_parts()
}

/// `maxItems` and `skipCount` of a list request.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 1000 (default 30).
    pub max_items: Option<u32>,
    /// Items to skip (default 0).
    pub skip_count: Option<u64>,
}

pub fn page(max_items: Option<u32>, skip_count: Option<u64>) -> Result<Page, ApiError> {
    let max_items = max_items.unwrap_or(Page::DEFAULT_MAX_ITEMS);
    if !(1..=Page::LIMIT_MAX_ITEMS).contains(&max_items) {
        return Err(ApiError::bad_request(
            Some("maxItems"),
            format!("maxItems must be between 1 and {}", Page::LIMIT_MAX_ITEMS),
        ));
    }
    Ok(Page { max_items, skip_count: skip_count.unwrap_or(0) })
}

/// A page of a list, with the total in `X-Total-Count`.
pub fn paged<T: Serialize>(items: Vec<T>, total: u64) -> Response {
    let mut response = (StatusCode::OK, Json(items)).into_response();
    response.headers_mut().insert("x-total-count", HeaderValue::from(total));
    response
}
