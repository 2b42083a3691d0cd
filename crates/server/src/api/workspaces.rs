use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use drydock_core::Permission;
use drydock_core::workspace::{Workspace, WorkspaceConfig, WorkspaceStatus};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{page, paged};
use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, Caller, from_value};

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    max_items: Option<u32>,
    skip_count: Option<u64>,
    /// STOPPED, STARTING, RUNNING, STOPPING or ERROR.
    status: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CreateQuery {
    /// Also start it.
    #[serde(rename = "start-after-create", default)]
    start_after_create: bool,
    /// Make it from this stack; the body is then `{"name"}`.
    stack: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FromStack {
    name: String,
}

/// Create a workspace from Codenvy's config (fields drydock does not use are kept), or from a
/// stack with `?stack=<id>` and the body `{"name"}`; `?start-after-create=true` also starts it.
#[utoipa::path(post, path = "/api/workspace", tag = "workspaces", params(CreateQuery), request_body(content = Object, description = "Codenvy's workspace config"),
    responses((status = 201, body = Object), (status = 400, body = ErrorBody), (status = 409, description = "You already have a workspace of that name", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<CreateQuery>,
    ApiJson(body): ApiJson<serde_json::Value>,
) -> ApiResult<Response> {
    let workspaces = &state.drydock.workspaces;
    let mut workspace = match &q.stack {
        Some(stack) => {
            let FromStack { name } = from_value(body)?;
            workspaces.create_from_stack(&caller, stack, &name).await?
        }
        None => workspaces.create(&caller, from_value::<WorkspaceConfig>(body)?).await?,
    };
    if q.start_after_create {
        workspace = workspaces.start(&caller, &workspace.id, None, false).await?;
    }
    let location = HeaderValue::from_str(&format!("/api/workspace/{}", workspace.id)).map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(workspace)).into_response())
}

/// The workspaces the caller owns or holds `read` on (all of them for administrators).
#[utoipa::path(get, path = "/api/workspace", tag = "workspaces", params(ListQuery),
    responses((status = 200, body = Vec<Object>), (status = 400, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Response> {
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(WorkspaceStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request(
                Some("status"),
                format!("status '{s}' is not one of STOPPED, STARTING, RUNNING, STOPPING, ERROR"),
            )
        })?),
    };
    let (items, total) = state.drydock.workspaces.list(&caller, status, page(q.max_items, q.skip_count)?).await?;
    Ok(paged(items, total))
}

/// A workspace by id or `namespace:name`.
#[utoipa::path(get, path = "/api/workspace/{key}", tag = "workspaces", params(("key" = String, Path, description = "id or namespace:name")),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
pub async fn get(State(state): State<AppState>, caller: Caller, Path(key): Path<String>) -> ApiResult<Json<Workspace>> {
    Ok(Json(state.drydock.workspaces.get(&caller, &key).await?))
}

/// A new config (needs `configure`); it applies at the next start.
#[utoipa::path(put, path = "/api/workspace/{key}", tag = "workspaces", params(("key" = String, Path)), request_body = Object,
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    ApiJson(config): ApiJson<WorkspaceConfig>,
) -> ApiResult<Json<Workspace>> {
    Ok(Json(state.drydock.workspaces.update(&caller, &key, config).await?))
}

/// Delete a stopped workspace (needs `delete`; administrators may delete any).
#[utoipa::path(delete, path = "/api/workspace/{key}", tag = "workspaces", params(("key" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "It is running", body = ErrorBody)))]
pub async fn delete(State(state): State<AppState>, caller: Caller, Path(key): Path<String>) -> ApiResult<StatusCode> {
    state.drydock.workspaces.delete(&caller, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InstanceQuery {
    /// The workspace id.
    instance: String,
    /// The user whose access goes (for DELETE).
    user: Option<String>,
}

/// The caller's own actions on a workspace.
#[utoipa::path(get, path = "/api/permissions/workspace", tag = "permissions", params(InstanceQuery),
    responses((status = 200, body = Permission), (status = 404, body = ErrorBody)))]
pub async fn my_permission(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<InstanceQuery>,
) -> ApiResult<Json<Permission>> {
    Ok(Json(state.drydock.workspaces.my_permission(&caller, &q.instance).await?))
}

/// Everyone's actions on a workspace (needs `setPermissions`).
#[utoipa::path(get, path = "/api/permissions/workspace/all", tag = "permissions", params(InstanceQuery),
    responses((status = 200, body = Vec<Permission>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn all_permissions(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<InstanceQuery>,
) -> ApiResult<Json<Vec<Permission>>> {
    Ok(Json(state.drydock.workspaces.all_permissions(&caller, &q.instance).await?))
}

/// Take a user's actions on a workspace away (needs `setPermissions`, or it is your own).
#[utoipa::path(delete, path = "/api/permissions/workspace", tag = "permissions", params(InstanceQuery),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn unshare(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<InstanceQuery>,
) -> ApiResult<StatusCode> {
    let user =
        q.user.ok_or_else(|| ApiError::bad_request(Some("user"), "give the user whose access goes in 'user'"))?;
    state.drydock.workspaces.unshare(&caller, &q.instance, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StartQuery {
    /// The environment to run (default: the config's defaultEnv).
    environment: Option<String>,
    /// Start from the latest snapshot.
    #[serde(default)]
    restore: bool,
}

/// Start a workspace (needs `run`): answers at once with the workspace in STARTING; follow
/// `/events` for the progress and the result.
#[utoipa::path(post, path = "/api/workspace/{key}/runtime", tag = "workspaces", params(("key" = String, Path), StartQuery),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    ApiQuery(q): ApiQuery<StartQuery>,
) -> ApiResult<Json<Workspace>> {
    Ok(Json(state.drydock.workspaces.start(&caller, &key, q.environment.as_deref(), q.restore).await?))
}

/// Stop a workspace (needs `run`; administrators may stop any): its containers go, its
/// network and `/projects` stay.
#[utoipa::path(delete, path = "/api/workspace/{key}/runtime", tag = "workspaces", params(("key" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn stop(State(state): State<AppState>, caller: Caller, Path(key): Path<String>) -> ApiResult<StatusCode> {
    state.drydock.workspaces.stop(&caller, &key).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Server-sent events of a workspace: a start's progress, status changes and errors.
#[utoipa::path(get, path = "/api/workspace/{key}/events", tag = "workspaces", params(("key" = String, Path)),
    responses((status = 200, content_type = "text/event-stream", body = String), (status = 404, body = ErrorBody)))]
pub async fn events(State(state): State<AppState>, caller: Caller, Path(key): Path<String>) -> ApiResult<Response> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;
    let workspaces = &state.drydock.workspaces;
    let workspace = workspaces.get(&caller, &key).await?;
    let receiver = workspaces.events().subscribe(&workspace.id);
    // The current status first, so a watcher never waits for a change to learn it.
    let first = Event::default().event("status").json_data(serde_json::json!({
        "workspaceId": workspace.id, "kind": "status", "status": workspace.status, "message": "current status"
    }));
    let rest = futures::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(event) => return Some((Event::default().event(event.kind).json_data(&event), receiver)),
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return None,
            }
        }
    });
    let stream = futures::StreamExt::chain(futures::stream::once(async { first }), rest);
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExecBody {
    command: Vec<String>,
    machine: Option<String>,
    timeout_seconds: Option<u64>,
}

/// Run a command without a TTY (needs `use`); output comes back exactly.
#[utoipa::path(post, path = "/api/workspace/{key}/exec", tag = "workspaces", params(("key" = String, Path)), request_body = ExecBody,
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn exec(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
    ApiJson(body): ApiJson<ExecBody>,
) -> ApiResult<Json<drydock_core::runtime::ExecOutput>> {
    if body.command.is_empty() {
        return Err(ApiError::bad_request(Some("command"), "command must name a program, e.g. [\"ls\", \"-l\"]"));
    }
    let timeout = std::time::Duration::from_secs(body.timeout_seconds.unwrap_or(60).clamp(1, 3600));
    let output = state.drydock.workspaces.exec(&caller, &key, body.machine.as_deref(), &body.command, timeout).await?;
    Ok(Json(output))
}

/// Commit every machine of a running workspace to a local image (needs `run`); start with
/// `?restore=true` to run from it. Answers machine → image.
#[utoipa::path(post, path = "/api/workspace/{key}/snapshot", tag = "workspaces", params(("key" = String, Path)),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn snapshot(
    State(state): State<AppState>,
    caller: Caller,
    Path(key): Path<String>,
) -> ApiResult<Json<std::collections::BTreeMap<String, String>>> {
    Ok(Json(state.drydock.workspaces.snapshot(&caller, &key).await?))
}
