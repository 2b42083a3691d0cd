//! Administration → Nodes (`manageSystem`): the Docker hosts workspaces run on, with their
//! state, availability, memory, the workspaces running there and those whose files they
//! hold; Drain and Remove (after a confirmation), Activate, and the command that adds a host.
//! On a single engine the one node is listed and the actions say they need Swarm.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use drydock_core::Error;
use drydock_core::model::MANAGE_SYSTEM;
use drydock_core::nodes::{Node, NodeWorkspace};
use drydock_core::runtime::Availability;

use super::signin::NoFields;
use super::{Layout, PageError, Posted, Session, html, percent_encode};
use crate::AppState;

const GIB: f64 = (1u64 << 30) as f64;

struct WorkspaceLink {
    id: String,
    /// `namespace:name`, as the other pages name a workspace.
    key: String,
    status: String,
}

struct NodeRow {
    id: String,
    short_id: String,
    /// The id as a path segment.
    path: String,
    hostname: String,
    address: String,
    state: String,
    availability: &'static str,
    manager: bool,
    ram_reserved: u64,
    ram_total: u64,
    /// "3.0 of 16.0 GiB".
    memory: String,
    workspaces: Vec<WorkspaceLink>,
    files_of: Vec<WorkspaceLink>,
    can_drain: bool,
    can_activate: bool,
    can_remove: bool,
}

/// The confirmation before a Drain or a Remove.
struct ConfirmDialog {
    open: bool,
    /// `drain` or `remove`.
    action: &'static str,
    path: String,
    hostname: String,
    running: usize,
    csrf: String,
}

#[derive(Template)]
#[template(path = "nodes.html")]
struct NodesPage {
    layout: Layout,
    csrf: String,
    rows: Vec<NodeRow>,
    join_command: Option<String>,
    /// Why there is no join command (a single engine).
    join_error: Option<String>,
    /// Why the last action was refused.
    error: Option<String>,
    confirm: Option<ConfirmDialog>,
}

#[derive(Template)]
#[template(path = "node_confirm.html")]
struct ConfirmFragment {
    confirm: ConfirmDialog,
}

fn link(w: NodeWorkspace) -> WorkspaceLink {
    WorkspaceLink { key: format!("{}:{}", w.namespace, w.name), id: w.id, status: w.status }
}

fn row(node: Node) -> NodeRow {
    NodeRow {
        short_id: node.id.chars().take(12).collect(),
        path: percent_encode(&node.id),
        memory: format!("{:.1} of {:.1} GiB", node.ram_reserved as f64 / GIB, node.ram_total as f64 / GIB),
        can_drain: node.availability != Availability::Drain,
        can_activate: node.availability != Availability::Active,
        can_remove: node.availability == Availability::Drain,
        availability: node.availability.as_str(),
        id: node.id,
        hostname: node.hostname,
        address: node.address,
        state: node.state,
        manager: node.manager,
        ram_reserved: node.ram_reserved,
        ram_total: node.ram_total,
        workspaces: node.workspaces.into_iter().map(link).collect(),
        files_of: node.files_of.into_iter().map(link).collect(),
    }
}

async fn page_of(state: &AppState, session: &Session) -> Result<NodesPage, PageError> {
    session.caller.require_system(MANAGE_SYSTEM)?;
    let nodes = &state.drydock.nodes;
    let rows = nodes.list(&session.caller).await?.into_iter().map(row).collect();
    let (join_command, join_error) = match nodes.join_command(&session.caller).await {
        Ok(command) => (Some(command), None),
        Err(e @ (Error::Conflict(_) | Error::Unavailable(_))) => (None, Some(e.to_string())),
        Err(e) => return Err(e.into()),
    };
    Ok(NodesPage {
        layout: session.layout("admin"),
        csrf: session.csrf.clone(),
        rows,
        join_command,
        join_error,
        error: None,
        confirm: None,
    })
}

pub async fn page(State(state): State<AppState>, session: Session) -> Result<Response, PageError> {
    let page = page_of(&state, &session).await?;
    Ok(session.page(StatusCode::OK, &page))
}

/// The confirmation of a Drain or a Remove: a dialog for htmx, else the page with it open.
async fn confirm(state: &AppState, session: Session, node: &str, action: &'static str) -> Result<Response, PageError> {
    let mut page = page_of(state, &session).await?;
    let row = page
        .rows
        .iter()
        .find(|r| r.id == node || r.hostname == node)
        .ok_or_else(|| PageError::from(Error::NotFound(format!("no node '{node}'"))))?;
    let dialog = ConfirmDialog {
        open: !session.htmx,
        action,
        path: row.path.clone(),
        hostname: row.hostname.clone(),
        running: row.workspaces.len(),
        csrf: session.csrf.clone(),
    };
    if session.htmx {
        return Ok(html(StatusCode::OK, &ConfirmFragment { confirm: dialog }));
    }
    page.confirm = Some(dialog);
    Ok(session.page(StatusCode::OK, &page))
}

pub async fn confirm_drain(
    State(state): State<AppState>,
    session: Session,
    Path(node): Path<String>,
) -> Result<Response, PageError> {
    confirm(&state, session, &node, "drain").await
}

pub async fn confirm_remove(
    State(state): State<AppState>,
    session: Session,
    Path(node): Path<String>,
) -> Result<Response, PageError> {
    confirm(&state, session, &node, "remove").await
}

/// After an action: back to the page with its notice, or the page again with why it was
/// refused (a single engine, a node that still holds files, one that is gone).
async fn done(
    state: &AppState,
    session: &Session,
    result: drydock_core::Result<String>,
) -> Result<Response, PageError> {
    let (status, message) = match result {
        Ok(notice) => return Ok(session.redirect("/admin/nodes", &notice)),
        Err(e @ Error::Conflict(_)) => (StatusCode::CONFLICT, e.to_string()),
        Err(e @ Error::NotFound(_)) => (StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ Error::Unavailable(_)) => (StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
        Err(e) => return Err(e.into()),
    };
    let mut page = page_of(state, session).await?;
    page.error = Some(message);
    Ok(session.page(status, &page))
}

pub async fn drain(
    State(state): State<AppState>,
    Path(node): Path<String>,
    posted: Posted<NoFields>,
) -> Result<Response, PageError> {
    let session = posted.session;
    let result = state.drydock.nodes.drain(&session.caller, &node).await;
    let notice = result.map(|(n, stopped)| format!("Node {} drained; {stopped} workspace(s) stopped.", n.hostname));
    done(&state, &session, notice).await
}

pub async fn activate(
    State(state): State<AppState>,
    Path(node): Path<String>,
    posted: Posted<NoFields>,
) -> Result<Response, PageError> {
    let session = posted.session;
    let result = state.drydock.nodes.activate(&session.caller, &node).await;
    let notice = result.map(|n| format!("Node {} is active: it takes workspaces again.", n.hostname));
    done(&state, &session, notice).await
}

pub async fn remove(
    State(state): State<AppState>,
    Path(node): Path<String>,
    posted: Posted<NoFields>,
) -> Result<Response, PageError> {
    let session = posted.session;
    let result = state.drydock.nodes.remove(&session.caller, &node).await;
    let notice = result.map(|n| format!("Node {} removed; run `docker swarm leave` on it.", n.hostname));
    done(&state, &session, notice).await
}
