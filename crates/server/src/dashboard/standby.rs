//! The standby page (any signed-in user, on a standby): whom this instance follows, how far
//! behind it is, the last error and the last check of its copy. On a primary it says so.

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::Utc;
use drydock_core::standby::{CheckReport, FollowState};

use super::{Layout, PageError, Session, when};
use crate::AppState;

#[derive(Template)]
#[template(path = "standby.html")]
struct StandbyPage {
    layout: Layout,
    follow: Option<FollowState>,
    lag: String,
    last_sync: String,
    check: Option<CheckReport>,
    check_time: String,
}

pub async fn page(State(state): State<AppState>, session: Session) -> Result<Response, PageError> {
    let follow = state.settings.standby.as_ref().map(|s| s.get());
    let lag = follow
        .as_ref()
        .and_then(|f| f.lag_seconds(Utc::now()))
        .map(|s| format!("{s} s"))
        .unwrap_or_else(|| "no copy yet".into());
    let last_sync = follow.as_ref().and_then(|f| f.last_sync).map(when).unwrap_or_else(|| "never".into());
    let check = follow.as_ref().and_then(|f| f.last_check.clone());
    let check_time = check.as_ref().map(|c| when(c.time)).unwrap_or_default();
    let page = StandbyPage { layout: session.layout(""), follow, lag, last_sync, check, check_time };
    Ok(session.page(StatusCode::OK, &page))
}
