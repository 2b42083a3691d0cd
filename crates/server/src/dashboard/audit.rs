//! Administration → Audit log (`manageSystem`): the events with the API's filters, a page at
//! a time; the chain's verification on request; links to the exports.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use drydock_core::audit_log::{Event, EventFilter, Verification, parse_time};
use drydock_core::model::MANAGE_SYSTEM;
use drydock_core::{Error, Page};
use serde::Deserialize;

use super::{Layout, PageError, Session, when};
use crate::AppState;

const PER_PAGE: u32 = 50;

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AuditQuery {
    actor: String,
    action: String,
    target: String,
    since: String,
    until: String,
    page: u64,
    /// Present: check the chain and show the result.
    verify: Option<String>,
}

/// One event as a row.
struct Row {
    seq: i64,
    time: String,
    actor: String,
    client: String,
    action: String,
    target: String,
    failed: bool,
    changes: String,
}

impl From<Event> for Row {
    fn from(e: Event) -> Self {
        let target = if e.target_name.is_empty() { e.target_id } else { e.target_name };
        Row {
            seq: e.seq,
            time: e.time.format("%Y-%m-%d %H:%M:%S UTC").to_string(),
            actor: e.actor_name,
            client: e.client,
            action: e.action,
            target: format!("{} {target}", e.target_type).trim().to_string(),
            failed: e.outcome != "success",
            changes: if e.changes == "{}" { String::new() } else { e.changes },
        }
    }
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    q: AuditQuery,
    rows: Vec<Row>,
    total: u64,
    /// 1-based, for the reader.
    page_number: u64,
    pages: u64,
    previous: Option<String>,
    next: Option<String>,
    filter_error: Option<String>,
    verification: Option<Verification>,
    checked_at: String,
}

impl AuditQuery {
    fn filter(&self) -> Result<EventFilter, Error> {
        let text = |v: &str| (!v.trim().is_empty()).then(|| v.trim().to_string());
        let time = |field: &str, v: &str| text(v).map(|t| parse_time(field, &t)).transpose();
        Ok(EventFilter {
            actor: text(&self.actor),
            action: text(&self.action),
            target: text(&self.target),
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
        })
    }

    /// This query's link for another page.
    fn link(&self, page: u64) -> String {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in [
            ("actor", &self.actor),
            ("action", &self.action),
            ("target", &self.target),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if !v.is_empty() {
                query.append_pair(k, v);
            }
        }
        query.append_pair("page", &page.to_string());
        format!("/admin/audit?{}", query.finish())
    }
}

pub async fn page(
    State(state): State<AppState>,
    session: Session,
    Query(q): Query<AuditQuery>,
) -> Result<Response, PageError> {
    session.caller.require_system(MANAGE_SYSTEM)?;
    let log = &state.drydock.audit_log;
    let (rows, total, filter_error) = match q.filter() {
        Ok(filter) => {
            let page = Page { max_items: PER_PAGE, skip_count: q.page * u64::from(PER_PAGE) };
            match log.events(&session.caller, &filter, page).await {
                Ok((events, total)) => (events.into_iter().map(Row::from).collect(), total, None),
                Err(Error::InvalidInput { message, .. }) => (Vec::new(), 0, Some(message)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::InvalidInput { message, .. }) => (Vec::new(), 0, Some(message)),
        Err(e) => return Err(e.into()),
    };
    let verification = match q.verify {
        Some(_) => Some(log.verify(&session.caller).await?),
        None => None,
    };
    let pages = total.div_ceil(u64::from(PER_PAGE)).max(1);
    let page = AuditPage {
        layout: session.layout("admin"),
        total,
        page_number: q.page + 1,
        pages,
        previous: (q.page > 0).then(|| q.link(q.page - 1)),
        next: (q.page + 1 < pages).then(|| q.link(q.page + 1)),
        filter_error,
        verification,
        checked_at: when(chrono::Utc::now()),
        rows,
        q,
    };
    let status = if page.filter_error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    Ok(session.page(status, &page))
}
