//! The audit log over HTTP (administrators): the events with filters, a streamed export, and
//! the chain's verification.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use drydock_core::audit_log::{CSV_HEADER, Event, EventFilter, Verification, parse_time};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{page, paged};
use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiQuery, Caller};

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// The actor's name (exact): a user name, `system` or `cli`.
    actor: Option<String>,
    /// An action (`user.create`), or a prefix ending in a dot (`workspace.`).
    action: Option<String>,
    /// Part of the target's id or name (a user's name or e-mail, a workspace's `namespace:name`).
    target: Option<String>,
    /// From this time on (RFC 3339, or a day `2026-11-30`).
    since: Option<String>,
    /// Before this time.
    until: Option<String>,
    /// Items per page, 1 to 1000 (default 30).
    max_items: Option<u32>,
    /// Items to skip (default 0).
    skip_count: Option<u64>,
}

impl EventsQuery {
    fn filter(&self) -> Result<EventFilter, ApiError> {
        let time = |field: &str, value: &Option<String>| -> Result<_, ApiError> {
            value
                .as_deref()
                .filter(|v| !v.trim().is_empty())
                .map(|v| parse_time(field, v))
                .transpose()
                .map_err(Into::into)
        };
        Ok(EventFilter {
            actor: self.actor.clone(),
            action: self.action.clone(),
            target: self.target.clone(),
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
        })
    }
}

/// Audit events, newest first, a page at a time (needs `manageSystem`); the number matching
/// is in `X-Total-Count`.
#[utoipa::path(get, path = "/api/audit/events", tag = "audit", params(EventsQuery),
    responses((status = 200, body = Vec<Event>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<EventsQuery>,
) -> ApiResult<Response> {
    let filter = q.filter()?;
    let (events, total) = state.drydock.audit_log.events(&caller, &filter, page(q.max_items, q.skip_count)?).await?;
    Ok(paged(events, total))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `jsonl` (one event a line, the default) or `csv`.
    format: Option<String>,
}

/// The whole audit log, oldest first, streamed as JSON Lines or CSV (needs `manageSystem`).
#[utoipa::path(get, path = "/api/audit/events/export", tag = "audit", params(ExportQuery),
    responses((status = 200, content_type = "application/jsonl", body = String), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    let csv = match q.format.as_deref().unwrap_or("jsonl") {
        "jsonl" => false,
        "csv" => true,
        other => {
            return Err(ApiError::bad_request(
                Some("format"),
                format!("format '{other}' is not known: use jsonl or csv"),
            ));
        }
    };
    // The first batch is read before answering, so a refusal is a status, not a cut stream.
    let first = state.drydock.audit_log.batch_after(&caller, i64::MIN).await?;
    let header_line = csv.then(|| format!("{CSV_HEADER}\r\n"));
    let lines = move |batch: &[Event]| -> String {
        batch
            .iter()
            .map(|e| {
                if csv {
                    format!("{}\r\n", e.csv_row())
                } else {
                    format!("{}\n", serde_json::to_string(e).unwrap_or_default())
                }
            })
            .collect()
    };
    let stream = futures::stream::unfold(Some((first, header_line)), move |next| {
        let (state, caller) = (state.clone(), caller.clone());
        async move {
            let (batch, header_line) = next?;
            let Some(last) = batch.last().map(|e| e.seq) else {
                return header_line.map(|h| (Ok::<_, std::io::Error>(h), None));
            };
            let mut chunk = header_line.unwrap_or_default();
            chunk.push_str(&lines(&batch));
            let following = match state.drydock.audit_log.batch_after(&caller, last).await {
                Ok(following) => Some((following, None)),
                Err(e) => {
                    // Headers are gone: the cut-off stream is the error; the log says why.
                    tracing::error!(error = %e, "the audit export stopped");
                    return Some((Err(std::io::Error::other("the audit export stopped")), None));
                }
            };
            Some((Ok(chunk), following))
        }
    });
    let (content_type, file) =
        if csv { ("text/csv; charset=utf-8", "audit-events.csv") } else { ("application/jsonl", "audit-events.jsonl") };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename={file}")),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}

/// Checks the audit log's hash chain from its oldest kept event (needs `manageSystem`): the
/// first event where it breaks, if any.
#[utoipa::path(get, path = "/api/audit/verify", tag = "audit",
    responses((status = 200, body = Verification), (status = 403, body = ErrorBody)))]
pub async fn verify(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Verification>> {
    Ok(Json(state.drydock.audit_log.verify(&caller).await?))
}
