//! Administration → License (`manageSystem`): the license that applies and its state, seats
//! used of seats licensed, expiry and grace period, what is not legal; install a paid license
//! (paste the signed document) and remove it.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use drydock_core::Error;
use drydock_core::licenses::{LicenseKind, LicenseView, PaidState};
use drydock_core::model::MANAGE_SYSTEM;
use serde::Deserialize;

use super::{Layout, PageError, Posted, Session, when};
use crate::AppState;

/// The installed paid license, as the page writes it.
struct PaidRow {
    id: String,
    licensee: String,
    seats: i64,
    issued: String,
    expires: String,
    grace_until: String,
    /// `active`, `grace`, `expired` or `untrusted` (the `data-state` of the status).
    state: &'static str,
    state_text: &'static str,
    installed: String,
    installed_by: String,
}

#[derive(Template)]
#[template(path = "license.html")]
struct LicensePage {
    layout: Layout,
    csrf: String,
    /// `paid` or `fair-source`.
    kind: &'static str,
    /// "3 of 5 used" or "3 users; no seat cap".
    seats_used: String,
    /// "5 seats" or "no seat cap".
    free_seats: String,
    grace_days: u32,
    paid: Option<PaidRow>,
    is_legal: bool,
    issues: Vec<String>,
    document_value: String,
    document_error: Option<String>,
}

fn cap(seats: Option<u64>) -> String {
    seats.map_or_else(|| "no seat cap".to_string(), |n| format!("{n} seats"))
}

fn page_of(session: &Session, view: LicenseView) -> LicensePage {
    let paid = view.paid.map(|p| {
        let (state, state_text) = match p.state {
            PaidState::Active => ("active", "active"),
            PaidState::Grace => ("grace", "expired, in its grace period"),
            PaidState::Expired => ("expired", "expired"),
            PaidState::Untrusted => ("untrusted", "not signed by a trusted key: it does not apply"),
        };
        PaidRow {
            id: p.id,
            licensee: p.licensee,
            seats: p.seats,
            issued: when(p.issued),
            expires: when(p.expires),
            grace_until: when(p.grace_until),
            state,
            state_text,
            installed: when(p.installed),
            installed_by: p.installed_by,
        }
    });
    LicensePage {
        layout: session.layout("admin"),
        csrf: session.csrf.clone(),
        kind: if view.kind == LicenseKind::Paid { "paid" } else { "fair-source" },
        seats_used: match view.seats {
            Some(n) => format!("{} of {n} used", view.users),
            None => format!("{} users; no seat cap", view.users),
        },
        free_seats: cap(view.free_seats),
        grace_days: view.grace_days,
        paid,
        is_legal: view.is_legal,
        issues: view.issues.into_iter().map(|i| i.message).collect(),
        document_value: String::new(),
        document_error: None,
    }
}

pub async fn page(State(state): State<AppState>, session: Session) -> Result<Response, PageError> {
    let view = state.drydock.licenses.show(&session.caller).await?;
    Ok(session.page(StatusCode::OK, &page_of(&session, view)))
}

#[derive(Deserialize)]
pub struct InstallForm {
    #[serde(default)]
    document: String,
}

pub async fn install(State(state): State<AppState>, posted: Posted<InstallForm>) -> Result<Response, PageError> {
    let Posted { session, form } = posted;
    match state.drydock.licenses.install(&session.caller, &form.document).await {
        Ok(view) => {
            let id = view.paid.as_ref().map(|p| p.id.clone()).unwrap_or_default();
            let mut flash = format!("License {id} installed.");
            if !view.is_legal {
                flash.push_str(" It has issues: see below.");
            }
            Ok(session.redirect("/admin/license", &flash))
        }
        Err(Error::InvalidInput { message, .. }) => {
            let view = state.drydock.licenses.show(&session.caller).await?;
            let mut page = page_of(&session, view);
            page.document_value = form.document;
            page.document_error = Some(message);
            Ok(session.page(StatusCode::BAD_REQUEST, &page))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct RemoveForm {
    /// The "I understand" checkbox: present when ticked.
    confirm: Option<String>,
}

pub async fn remove(State(state): State<AppState>, posted: Posted<RemoveForm>) -> Result<Response, PageError> {
    let Posted { session, form } = posted;
    session.caller.require_system(MANAGE_SYSTEM)?;
    if form.confirm.is_none() {
        return Err(PageError::Status(
            StatusCode::BAD_REQUEST,
            "Tick the box to confirm that the Fair Source license applies again.".into(),
        ));
    }
    let id = state.drydock.licenses.remove(&session.caller).await?;
    Ok(session.redirect("/admin/license", &format!("License {id} removed: the Fair Source license applies.")))
}
