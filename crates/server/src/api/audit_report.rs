use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use drydock_core::audit::{AuditReport, ReportFormat};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::AppState;
use crate::error::{ApiResult, ErrorBody};
use crate::extract::{ApiQuery, Caller};

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// `text` (the default: Codenvy's file) or `json`.
    format: Option<ReportFormat>,
}

/// The audit report (needs `manageSystem`): the license history, then the users and the
/// workspaces each owns or holds permissions in, in Codenvy's text format, downloaded as
/// `report_<dd-MM-yyyy_HH:mm:ss>.txt`; `?format=json` gives the same content as JSON.
/// One report at a time: 409 while another is being built.
#[utoipa::path(get, path = "/api/audit", tag = "audit", params(ReportQuery),
    responses(
        (status = 200, description = "The report",
            content((String = "text/plain"), (AuditReport = "application/json")),
            headers(("Content-Disposition" = String,
                description = "`attachment; filename=report_<dd-MM-yyyy_HH:mm:ss>.txt` (text only)"))),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ReportQuery>,
) -> ApiResult<Response> {
    let format = query.format.unwrap_or_default();
    // The paid license in force, once the license clock has run (so history and state agree).
    let paid = state.drydock.licenses.paid_state().await?;
    let file = state.drydock.audit_reports.file(&caller, paid, format).await?;
    let content_type = (header::CONTENT_TYPE, format.content_type().to_string());
    Ok(match format {
        ReportFormat::Json => ([content_type], file.body).into_response(),
        ReportFormat::Text => {
            let disposition = (header::CONTENT_DISPOSITION, format!("attachment; filename={}", file.file_name));
            ([content_type, disposition], file.body).into_response()
        }
    })
}
