//! The nodes workspaces run on (needs `manageSystem`): list, drain, activate, remove, and
//! the command that adds a host.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use drydock_core::nodes::Node;
use serde::Serialize;
use utoipa::ToSchema;

use crate::AppState;
use crate::api::{PageQuery, page, paged};
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiQuery, Caller};

/// Every node: `[{"id", "hostname", "address", "state", "availability", "ramTotal",
/// "ramReserved", "workspaces", …}]`, memory in bytes; the total is in `X-Total-Count`.
#[utoipa::path(get, path = "/api/nodes", tag = "nodes", params(PageQuery),
    responses((status = 200, body = Vec<Object>), (status = 403, body = ErrorBody)))]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> ApiResult<Response> {
    let page = page(query.max_items, query.skip_count)?;
    let nodes = state.drydock.nodes.list(&caller).await?;
    let total = nodes.len() as u64;
    let items: Vec<Node> = nodes
        .into_iter()
        .skip(usize::try_from(page.skip_count).unwrap_or(usize::MAX))
        .take(page.max_items as usize)
        .collect();
    Ok(paged(items, total))
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Drained {
    #[schema(value_type = Object)]
    node: Node,
    /// Workspaces stopped because they ran on the node.
    stopped_workspaces: usize,
}

/// Drain a node: it takes no new machines, its running workspaces are stopped gracefully,
/// and their next start moves their files to a node with room.
#[utoipa::path(post, path = "/api/nodes/{node}/drain", tag = "nodes", params(("node" = String, Path, description = "id or host name")),
    responses((status = 200, body = Drained), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn drain(
    State(state): State<AppState>,
    caller: Caller,
    Path(node): Path<String>,
) -> ApiResult<Json<Drained>> {
    let (node, stopped_workspaces) = state.drydock.nodes.drain(&caller, &node).await?;
    Ok(Json(Drained { node, stopped_workspaces }))
}

/// Let a node take machines again.
#[utoipa::path(post, path = "/api/nodes/{node}/activate", tag = "nodes", params(("node" = String, Path, description = "id or host name")),
    responses((status = 200, body = Object), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn activate(
    State(state): State<AppState>,
    caller: Caller,
    Path(node): Path<String>,
) -> ApiResult<Json<Node>> {
    Ok(Json(state.drydock.nodes.activate(&caller, &node).await?))
}

/// Take a drained node out of the swarm; refused while it holds a workspace's files.
#[utoipa::path(delete, path = "/api/nodes/{node}", tag = "nodes", params(("node" = String, Path, description = "id or host name")),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn remove(State(state): State<AppState>, caller: Caller, Path(node): Path<String>) -> ApiResult<StatusCode> {
    state.drydock.nodes.remove(&caller, &node).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct JoinCommand {
    /// Run this on the new host (with Docker installed) to add it as a node.
    command: String,
}

/// What to run on a new host to add it as a node (Codenvy served a script at this path).
#[utoipa::path(get, path = "/api/nodes/script", tag = "nodes",
    responses((status = 200, body = JoinCommand), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn script(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<JoinCommand>> {
    Ok(Json(JoinCommand { command: state.drydock.nodes.join_command(&caller).await? }))
}
