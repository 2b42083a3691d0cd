//! Administration → Maintenance (`manageSystem`): whether maintenance mode is on, since when
//! and by whom; turn it on with a message (optionally stopping running workspaces), change
//! the message, turn it off.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use drydock_core::Error;
use drydock_core::model::MANAGE_SYSTEM;
use drydock_core::system::{MAX_MESSAGE_CHARS, Maintenance};
use serde::Deserialize;

use super::signin::NoFields;
use super::{Layout, PageError, Posted, Session, when};
use crate::AppState;

#[derive(Template)]
#[template(path = "maintenance.html")]
struct MaintenancePage {
    layout: Layout,
    csrf: String,
    on: Option<Maintenance>,
    since: String,
    message_value: String,
    message_error: Option<String>,
    max_chars: usize,
}

fn page_of(state: &AppState, session: &Session) -> Result<MaintenancePage, PageError> {
    session.caller.require_system(MANAGE_SYSTEM)?;
    let on = state.drydock.system.maintenance();
    Ok(MaintenancePage {
        layout: session.layout("admin"),
        csrf: session.csrf.clone(),
        since: on.as_ref().map(|m| when(m.since)).unwrap_or_default(),
        message_value: on.as_ref().map(|m| m.message.clone()).unwrap_or_default(),
        on,
        message_error: None,
        max_chars: MAX_MESSAGE_CHARS,
    })
}

pub async fn page(State(state): State<AppState>, session: Session) -> Result<Response, PageError> {
    let page = page_of(&state, &session)?;
    Ok(session.page(StatusCode::OK, &page))
}

#[derive(Deserialize)]
pub struct BeginForm {
    #[serde(default)]
    message: String,
    /// The checkbox: present when ticked.
    stop_workspaces: Option<String>,
}

pub async fn begin(State(state): State<AppState>, posted: Posted<BeginForm>) -> Result<Response, PageError> {
    let Posted { session, form } = posted;
    let stop = form.stop_workspaces.is_some();
    match state.drydock.system.begin_maintenance(&session.caller, &form.message, stop).await {
        Ok(begun) => {
            let flash = if stop {
                format!("Maintenance is on. Stopping {} running workspace(s).", begun.stopping)
            } else {
                "Maintenance is on.".to_string()
            };
            Ok(session.redirect("/admin/maintenance", &flash))
        }
        Err(Error::InvalidInput { message, .. }) => {
            let mut page = page_of(&state, &session)?;
            page.message_value = form.message;
            page.message_error = Some(message);
            Ok(session.page(StatusCode::BAD_REQUEST, &page))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn end(State(state): State<AppState>, posted: Posted<NoFields>) -> Result<Response, PageError> {
    let session = posted.session;
    state.drydock.system.end_maintenance(&session.caller).await?;
    Ok(session.redirect("/admin/maintenance", "Maintenance is off."))
}
