//! Resource limits in the dashboard: each limit with its source and a usage bar, on a
//! user's Administration page (with an editor) and on the Account page (your own).

use axum::extract::{Path, State};
use axum::response::Response;
use drydock_core::config::Megabytes;
use drydock_core::limits::{self, Resource};
use drydock_core::{Error, Principal};
use serde::Deserialize;

use super::admin::user_page;
use super::signin::NoFields;
use super::{PageError, Posted};
use crate::AppState;

/// One limit as a page shows it.
pub struct LimitRow {
    /// The resource type (`RAM`, `workspace`, `runtime`, `timeout`), also the row's id.
    pub kind: &'static str,
    pub label: &'static str,
    /// The form field that overrides it.
    pub field: &'static str,
    pub unit: String,
    /// The effective limit, as read ("unlimited" for -1).
    pub limit: String,
    /// `override` or `default`.
    pub source: &'static str,
    /// The override's amount, for the editor (empty: the default applies).
    pub override_value: String,
    /// What is used now (none for `timeout`).
    pub used: Option<i64>,
    /// The bar's maximum: the limit, when there is one and usage is counted.
    pub bar_max: Option<i64>,
}

const ROWS: [(&str, &str, &str); 4] = [
    (limits::RAM, "Memory of running workspaces", "ram"),
    (limits::WORKSPACE, "Workspaces", "workspaces"),
    (limits::RUNTIME, "Running workspaces", "runtimes"),
    (limits::TIMEOUT, "Idle timeout", "timeout"),
];

fn amount(resources: &[Resource], kind: &str) -> Option<i64> {
    resources.iter().find(|r| r.kind == kind).map(|r| r.amount)
}

/// A user's limits with their sources and usage (their own, or any for `manageSystem`).
pub async fn limit_rows(state: &AppState, caller: &Principal, user_id: &str) -> drydock_core::Result<Vec<LimitRow>> {
    let service = &state.drydock.limits;
    let (effective, usage) = service.report(caller, user_id).await?;
    let own = match service.override_of(caller, user_id).await {
        Ok(o) => o.resources,
        Err(Error::NotFound(_)) => Vec::new(),
        Err(e) => return Err(e),
    };
    let effective = effective.resources();
    let used = limits::used_resources(&usage);
    Ok(ROWS
        .iter()
        .map(|(kind, label, field)| {
            let limit = amount(&effective, kind).unwrap_or(limits::UNLIMITED);
            let used = (*kind != limits::TIMEOUT).then(|| amount(&used, kind).unwrap_or(0));
            LimitRow {
                kind,
                label,
                field,
                unit: effective.iter().find(|r| r.kind == *kind).map(|r| r.unit.clone()).unwrap_or_default(),
                limit: if limit < 0 { "unlimited".into() } else { limit.to_string() },
                source: if amount(&own, kind).is_some() { "override" } else { "default" },
                override_value: amount(&own, kind).map(|a| a.to_string()).unwrap_or_default(),
                bar_max: used.and(Some(limit)).filter(|l| *l >= 0),
                used,
            }
        })
        .collect())
}

#[derive(Deserialize)]
pub struct LimitsForm {
    #[serde(default)]
    ram: String,
    #[serde(default)]
    workspaces: String,
    #[serde(default)]
    runtimes: String,
    #[serde(default)]
    timeout: String,
}

/// The editor's fields as an override: an empty field keeps the default; `-1` or
/// `unlimited` lifts the limit; memory may be written `2gb`.
fn resources_from(form: &LimitsForm) -> Result<Vec<Resource>, String> {
    let mut resources = Vec::new();
    for (kind, label, field) in ROWS {
        let text = match field {
            "ram" => &form.ram,
            "workspaces" => &form.workspaces,
            "runtimes" => &form.runtimes,
            _ => &form.timeout,
        }
        .trim();
        if text.is_empty() {
            continue;
        }
        let amount = if text.eq_ignore_ascii_case("unlimited") {
            limits::UNLIMITED
        } else if kind == limits::RAM {
            Megabytes::parse(text).map_err(|e| format!("{label}: {e}"))?.0
        } else {
            text.parse().map_err(|_| format!("{label}: '{text}' is not a whole number (-1: unlimited)"))?
        };
        resources.push(Resource { kind: kind.to_string(), amount, unit: String::new() });
    }
    Ok(resources)
}

/// Saves the editor: the fields filled in become the user's override.
pub async fn save(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<LimitsForm>,
) -> Result<Response, PageError> {
    let Posted { session, form } = posted;
    let stored = match resources_from(&form) {
        Ok(r) if r.is_empty() => state.drydock.limits.reset(&session.caller, &id).await,
        Ok(r) => state.drydock.limits.set(&session.caller, &id, &r).await.map(|_| ()),
        Err(message) => Err(Error::invalid("limits", message)),
    };
    match stored {
        Ok(()) => Ok(session.redirect(&format!("/admin/users/{id}"), "Limits saved.")),
        Err(Error::InvalidInput { message, .. }) => {
            let mut page = user_page(&state, &session, &id).await?;
            page.limits_error = Some(message);
            Ok(session.page(axum::http::StatusCode::BAD_REQUEST, &page))
        }
        Err(e) => Err(e.into()),
    }
}

/// Back to the defaults.
pub async fn reset(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<NoFields>,
) -> Result<Response, PageError> {
    let session = posted.session;
    state.drydock.limits.reset(&session.caller, &id).await?;
    Ok(session.redirect(&format!("/admin/users/{id}"), "Limits are the defaults again."))
}
