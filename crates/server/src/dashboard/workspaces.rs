//! The Workspaces page (signed in, `/`): the caller's workspaces with their status kept
//! current (the table reloads when the server-sent `/workspaces/events` says a status
//! changed; watching is not activity), create from a stack (or an image while no stack is
//! offered), start, stop, delete with confirmation. A workspace's page follows its own
//! events (`/api/workspace/{id}/events`): status, and the start's progress as a log.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use drydock_core::workspace::service::{Access, DELETE, RUN, SET_PERMISSIONS, USE};
use drydock_core::workspace::{Stack, WORKSPACE_ACTIONS, Workspace, WorkspaceConfig, WorkspaceStatus};
use drydock_core::{Error, Page};
use serde::Deserialize;

use super::signin::NoFields;
use super::{Layout, PageError, Posted, Session, html, when};
use crate::AppState;

pub struct WorkspaceRow {
    id: String,
    key: String,
    status: &'static str,
    error: Option<String>,
    /// The idle stop is near: when it comes.
    idle_stop: Option<String>,
    machines: String,
    can_start: bool,
    can_use: bool,
    can_stop: bool,
    can_delete: bool,
}

#[derive(Template)]
#[template(path = "workspaces.html")]
struct WorkspacesPage {
    layout: Layout,
    csrf: String,
    rows: Vec<WorkspaceRow>,
    stacks: Vec<Stack>,
    create_error: Option<String>,
    form_name: String,
    form_image: String,
    form_stack: String,
}

#[derive(Template)]
#[template(path = "workspaces_table.html")]
struct WorkspacesTable {
    csrf: String,
    rows: Vec<WorkspaceRow>,
}

#[derive(Template)]
#[template(path = "delete_workspace.html")]
struct DeleteDialog {
    open: bool,
    id: String,
    key: String,
    csrf: String,
}

fn key(w: &Workspace) -> String {
    format!("{}:{}", w.namespace, w.config.name)
}

async fn rows(state: &AppState, session: &Session) -> Result<Vec<WorkspaceRow>, PageError> {
    let workspaces = &state.drydock.workspaces;
    let (list, _) = workspaces.list(&session.caller, None, Page { max_items: 1000, skip_count: 0 }).await?;
    // During maintenance users are offered no Start (the banner says why).
    let may_start_now = workspaces.maintenance_check(&session.caller).is_ok();
    let mut rows = Vec::with_capacity(list.len());
    for w in list {
        let access = workspaces.access(&session.caller, &w.id).await?;
        let may = |action: &str| access.require(action).is_ok();
        let stopped = matches!(w.status, WorkspaceStatus::Stopped | WorkspaceStatus::Error);
        let machines = match &w.runtime {
            Some(runtime) => runtime.machines.keys().cloned().collect::<Vec<_>>().join(", "),
            None => w
                .config
                .environments
                .get(&w.config.default_env)
                .map(|e| e.machines.keys().cloned().collect::<Vec<_>>().join(", "))
                .unwrap_or_default(),
        };
        let idle = workspaces.idle_state(&w.id).await.filter(|i| i.warning);
        rows.push(WorkspaceRow {
            idle_stop: idle.and_then(|i| i.stop_at).map(when),
            id: w.id.clone(),
            key: key(&w),
            status: w.status.as_str(),
            error: w.attributes.get("errorMessage").filter(|_| w.status == WorkspaceStatus::Error).cloned(),
            machines,
            can_start: stopped && may(RUN) && may_start_now,
            can_use: w.status == WorkspaceStatus::Running && may(USE),
            can_stop: matches!(w.status, WorkspaceStatus::Running | WorkspaceStatus::Starting)
                && (may(RUN) || access.admin),
            can_delete: stopped && may(DELETE),
        });
    }
    Ok(rows)
}

pub async fn page(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    create_error: Option<String>,
    form: CreateForm,
) -> Result<Response, PageError> {
    let page = WorkspacesPage {
        layout: session.layout("workspaces"),
        csrf: session.csrf.clone(),
        rows: rows(state, session).await?,
        stacks: state.drydock.workspaces.stacks().await?,
        create_error,
        form_name: form.name,
        form_image: form.image,
        form_stack: form.stack,
    };
    Ok(session.page(status, &page))
}

pub async fn table(State(state): State<AppState>, session: Session) -> Result<Response, PageError> {
    Ok(html(StatusCode::OK, &WorkspacesTable { csrf: session.csrf.clone(), rows: rows(&state, &session).await? }))
}

#[derive(Deserialize, Default)]
pub struct CreateForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    image: String,
    #[serde(default)]
    stack: String,
}

/// Creates a workspace (from the chosen stack, else from an image) and starts it.
pub async fn create(State(state): State<AppState>, posted: Posted<CreateForm>) -> Result<Response, PageError> {
    let Posted { session, form } = posted;
    let workspaces = &state.drydock.workspaces;
    let made = if !form.stack.is_empty() {
        workspaces.create_from_stack(&session.caller, &form.stack, form.name.trim()).await
    } else {
        match image_config(form.name.trim(), form.image.trim()) {
            Ok(config) => workspaces.create(&session.caller, config).await,
            Err(e) => Err(e),
        }
    };
    let started = match made {
        Ok(w) => workspaces.start(&session.caller, &w.id, None, false).await,
        Err(e) => Err(e),
    };
    match started {
        Ok(w) => Ok(session.redirect("/", &format!("Workspace {} is starting.", key(&w)))),
        Err(e @ (Error::InvalidInput { .. } | Error::Taken { .. } | Error::NotFound(_) | Error::Maintenance(_))) => {
            let status = match e {
                Error::Taken { .. } => StatusCode::CONFLICT,
                Error::Maintenance(_) => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::BAD_REQUEST,
            };
            page(&state, &session, status, Some(e.to_string()), form).await
        }
        Err(e) => Err(e.into()),
    }
}

/// A one-machine workspace from an image, for when no stack is offered.
fn image_config(name: &str, image: &str) -> Result<WorkspaceConfig, Error> {
    if image.is_empty() {
        return Err(Error::invalid("image", "give the image the workspace runs"));
    }
    let config = serde_json::json!({"name": name, "defaultEnv": "default", "environments": {"default": {
        "recipe": {"type": "dockerimage", "location": image}, "machines": {"dev": {}}}}});
    serde_json::from_value(config).map_err(Error::internal)
}

pub async fn start(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<NoFields>,
) -> Result<Response, PageError> {
    let session = posted.session;
    let w = state.drydock.workspaces.start(&session.caller, &id, None, false).await?;
    Ok(session.redirect("/", &format!("Workspace {} is starting.", key(&w))))
}

pub async fn stop(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<NoFields>,
) -> Result<Response, PageError> {
    let session = posted.session;
    let w = state.drydock.workspaces.get(&session.caller, &id).await?;
    state.drydock.workspaces.stop(&session.caller, &id).await?;
    Ok(session.redirect("/", &format!("Workspace {} stopped.", key(&w))))
}

pub async fn confirm_delete(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let w = state.drydock.workspaces.get(&session.caller, &id).await?;
    let dialog = DeleteDialog { open: !session.htmx, id: w.id.clone(), key: key(&w), csrf: session.csrf.clone() };
    if session.htmx {
        return Ok(html(StatusCode::OK, &dialog));
    }
    // Without htmx: the dialog alone, open, as a page of its own.
    Ok(session.page(StatusCode::OK, &dialog))
}

pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<NoFields>,
) -> Result<Response, PageError> {
    let session = posted.session;
    let w = state.drydock.workspaces.delete(&session.caller, &id).await?;
    Ok(session.redirect("/", &format!("Workspace {} deleted.", key(&w))))
}

#[derive(Template)]
#[template(path = "terminal.html")]
struct TerminalPage {
    layout: Layout,
    id: String,
    key: String,
    machine: String,
    machine_query: String,
}

#[derive(Deserialize)]
pub struct TerminalQuery {
    machine: Option<String>,
}

/// The browser terminal: a shell in a machine (default: the dev machine), with xterm.js.
pub async fn terminal(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    uri: axum::http::Uri,
) -> Result<Response, PageError> {
    let query: TerminalQuery = super::parse_query(uri.query())?;
    let workspaces = &state.drydock.workspaces;
    let access = workspaces.access(&session.caller, &id).await?;
    access.require(USE)?;
    let machine = workspaces.running_machine(&access.workspace, query.machine.as_deref())?;
    let page = TerminalPage {
        layout: session.layout("workspaces"),
        id: access.workspace.id.clone(),
        key: key(&access.workspace),
        machine_query: super::percent_encode(&machine),
        machine,
    };
    let mut response = session.page(StatusCode::OK, &page);
    // xterm.js styles its rows with inline styles; scripts stay 'self' only.
    response
        .headers_mut()
        .insert(axum::http::header::CONTENT_SECURITY_POLICY, axum::http::HeaderValue::from_static(super::TERMINAL_CSP));
    Ok(response)
}

pub struct MachineRow {
    name: String,
    status: String,
    node: String,
    /// (server name, URL through the proxy)
    servers: Vec<(String, String)>,
}

pub struct PermissionRow {
    user_id: String,
    name: String,
    actions: String,
    owner: bool,
}

#[derive(Template)]
#[template(path = "workspace.html")]
struct WorkspacePage {
    layout: Layout,
    id: String,
    key: String,
    csrf: String,
    state: StateView,
    can_share: bool,
    permissions: Vec<PermissionRow>,
    all_actions: &'static [&'static str],
    share_error: Option<String>,
}

#[derive(Template)]
#[template(path = "workspace_state.html")]
struct WorkspaceState {
    state: StateView,
}

/// What the workspace page shows of its state, and reloads when it changes.
struct StateView {
    id: String,
    status: &'static str,
    error: Option<String>,
    machines: Vec<MachineRow>,
    can_use: bool,
    idle: Option<IdleView>,
}

struct IdleView {
    last: String,
    kind: &'static str,
    /// When it stops if nothing happens (none without an idle timeout).
    stop_at: Option<String>,
    /// The stop is near: shown as a warning.
    warning: bool,
}

async fn state_view(state: &AppState, access: &Access) -> StateView {
    let w = &access.workspace;
    let idle = state.drydock.workspaces.idle_state(&w.id).await.map(|i| IdleView {
        last: when(i.last_activity),
        kind: i.kind,
        stop_at: i.stop_at.map(when),
        warning: i.warning,
    });
    StateView {
        id: w.id.clone(),
        status: w.status.as_str(),
        error: error_of(w),
        machines: machine_rows(w),
        can_use: w.status == WorkspaceStatus::Running && access.require(USE).is_ok(),
        idle,
    }
}

fn machine_rows(w: &Workspace) -> Vec<MachineRow> {
    w.runtime
        .as_ref()
        .map(|r| {
            r.machines
                .iter()
                .map(|(name, m)| MachineRow {
                    name: name.clone(),
                    status: m.status.clone(),
                    node: m.node.clone(),
                    servers: m.servers.iter().map(|(s, u)| (s.clone(), u.url.clone())).collect(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn error_of(w: &Workspace) -> Option<String> {
    w.attributes.get("errorMessage").filter(|_| w.status == WorkspaceStatus::Error).cloned()
}

async fn workspace_page(
    state: &AppState,
    session: &Session,
    id: &str,
    share_error: Option<String>,
) -> Result<WorkspacePage, PageError> {
    let workspaces = &state.drydock.workspaces;
    let access = workspaces.access(&session.caller, id).await?;
    let can_share = access.require(SET_PERMISSIONS).is_ok();
    let mut permissions = Vec::new();
    if can_share {
        for p in workspaces.all_permissions(&session.caller, id).await? {
            let name = state.drydock.users.get(&p.user_id).await.map(|u| u.name).unwrap_or_else(|_| p.user_id.clone());
            permissions.push(PermissionRow {
                owner: p.user_id == access.workspace.owner_id,
                actions: p.actions.join(", "),
                user_id: p.user_id,
                name,
            });
        }
    }
    let w = &access.workspace;
    Ok(WorkspacePage {
        layout: session.layout("workspaces"),
        id: w.id.clone(),
        key: key(w),
        csrf: session.csrf.clone(),
        state: state_view(state, &access).await,
        can_share,
        permissions,
        all_actions: WORKSPACE_ACTIONS,
        share_error,
    })
}

/// A workspace's page: status, machines with their servers (links through the proxy) and
/// terminals, and sharing for those who may share it.
pub async fn details(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let page = workspace_page(&state, &session, &id, None).await?;
    Ok(session.page(StatusCode::OK, &page))
}

/// Server-sent events that tell the Workspaces page to reload its table: `change`, with
/// the id of a workspace the visitor can see whose status changed. Watching is not activity.
pub async fn changes(State(state): State<AppState>, session: Session) -> Response {
    use axum::response::IntoResponse;
    use axum::response::sse::{Event, KeepAlive, Sse};
    use tokio::sync::broadcast::error::RecvError;
    let receiver = state.drydock.workspaces.events().subscribe_changes();
    let stream = futures::stream::unfold((receiver, state, session), |(mut receiver, state, session)| async move {
        loop {
            let event = match receiver.recv().await {
                Ok(event) => event,
                // Missed some: a change of something, so reload.
                Err(RecvError::Lagged(_)) => {
                    return Some((Event::default().event("change").data(""), (receiver, state, session)));
                }
                Err(RecvError::Closed) => return None,
            };
            // Only the workspaces the visitor can see are told about (one query, and only
            // when a status changes).
            if state.drydock.workspaces.get(&session.caller, &event.workspace_id).await.is_ok() {
                let change = Event::default().event("change").data(event.workspace_id);
                return Some((change, (receiver, state, session)));
            }
        }
    });
    let stream = futures::StreamExt::map(stream, Ok::<_, std::convert::Infallible>);
    Sse::new(stream).keep_alive(KeepAlive::default()).into_response()
}

pub async fn state_fragment(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let access = state.drydock.workspaces.access(&session.caller, &id).await?;
    Ok(html(StatusCode::OK, &WorkspaceState { state: state_view(&state, &access).await }))
}

#[derive(Deserialize)]
pub struct ShareForm {
    #[serde(default)]
    user: String,
    #[serde(rename = "action-read")]
    read: Option<String>,
    #[serde(rename = "action-use")]
    use_: Option<String>,
    #[serde(rename = "action-run")]
    run: Option<String>,
    #[serde(rename = "action-configure")]
    configure: Option<String>,
    #[serde(rename = "action-setPermissions")]
    set_permissions: Option<String>,
    #[serde(rename = "action-delete")]
    delete: Option<String>,
}

pub async fn share(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<ShareForm>,
) -> Result<Response, PageError> {
    let Posted { session, form } = posted;
    let chosen = [
        ("read", &form.read),
        ("use", &form.use_),
        ("run", &form.run),
        ("configure", &form.configure),
        ("setPermissions", &form.set_permissions),
        ("delete", &form.delete),
    ];
    let actions: Vec<String> = chosen.iter().filter(|(_, on)| on.is_some()).map(|(a, _)| a.to_string()).collect();
    let result = match state.drydock.users.find_by_name(form.user.trim()).await {
        Ok(user) => state.drydock.workspaces.share(&session.caller, &id, &user.id, &actions).await.map(|_| user.name),
        Err(e) => Err(e),
    };
    match result {
        Ok(name) => Ok(session.redirect(&format!("/workspaces/{id}"), &format!("Shared with {name}."))),
        Err(e @ (Error::InvalidInput { .. } | Error::NotFound(_) | Error::Conflict(_))) => {
            let page = workspace_page(&state, &session, &id, Some(e.to_string())).await?;
            Ok(session.page(StatusCode::BAD_REQUEST, &page))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct UnshareForm {
    #[serde(default)]
    user: String,
}

pub async fn unshare(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<UnshareForm>,
) -> Result<Response, PageError> {
    let Posted { session, form } = posted;
    state.drydock.workspaces.unshare(&session.caller, &id, &form.user).await?;
    Ok(session.redirect(&format!("/workspaces/{id}"), "Access removed."))
}
