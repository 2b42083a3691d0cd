//! The license: show, install (the signed document as the body), remove, legality.

use axum::Json;
use axum::extract::{FromRequest, Request, State};
use axum::http::StatusCode;
use drydock_core::licenses::{Legality, LicenseView};

use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{Caller, body_bytes, media_type};

/// A license document as the request body, read raw: `text/plain` or `application/json`
/// (the document is JSON; a JSON string holding it is taken too). No content type is text.
pub struct LicenseDocument(pub String);

impl<S: Send + Sync> FromRequest<S> for LicenseDocument {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = match media_type(&req).as_deref() {
            None | Some("text/plain") => false,
            Some("application/json") => true,
            Some(other) => {
                return Err(ApiError::bad_request(
                    None,
                    format!(
                        "the body must be the license document with Content-Type text/plain or application/json, \
                         not {other}"
                    ),
                ));
            }
        };
        let bytes = body_bytes(req, state).await?;
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| ApiError::bad_request(Some("license"), "the license document is not UTF-8 text"))?;
        if is_json && let Ok(serde_json::Value::String(inner)) = serde_json::from_str(&text) {
            return Ok(LicenseDocument(inner));
        }
        Ok(LicenseDocument(text))
    }
}

/// The license that applies and its state: Fair Source or the installed paid license
/// (active, in its grace period, expired, untrusted), seats and users, and what is not legal
/// (needs `manageSystem`).
#[utoipa::path(get, path = "/api/license", tag = "license",
    responses((status = 200, body = LicenseView), (status = 403, body = ErrorBody)))]
pub async fn show(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<LicenseView>> {
    Ok(Json(state.drydock.licenses.show(&caller).await?))
}

/// Install a paid license (needs `manageSystem`): the body is the signed document, as
/// `drydock license issue` wrote it. It must be signed by a key in `license.trusted_keys`
/// and not past its grace period, otherwise 400 naming what is wrong and nothing changes.
/// It replaces an installed one. A license with fewer seats than there are users is
/// accepted (existing users keep working); the answer's `issues` say so.
#[utoipa::path(put, path = "/api/license", tag = "license",
    request_body(content((String = "text/plain"), (String = "application/json")),
        description = "The signed license document"),
    responses((status = 200, body = LicenseView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn install(
    State(state): State<AppState>,
    caller: Caller,
    LicenseDocument(document): LicenseDocument,
) -> ApiResult<Json<LicenseView>> {
    Ok(Json(state.drydock.licenses.install(&caller, &document).await?))
}

/// Remove the paid license (needs `manageSystem`): the Fair Source license applies again.
/// 404 when none is installed.
#[utoipa::path(delete, path = "/api/license", tag = "license",
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn remove(State(state): State<AppState>, caller: Caller) -> ApiResult<StatusCode> {
    state.drydock.licenses.remove(&caller).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Whether the instance is used as its license allows, in Codenvy's shape: `isLegal` and
/// the `issues` (`USER_LICENSE_EXCEEDED`, `LICENSE_EXPIRED` during the grace period,
/// `LICENSE_UNTRUSTED`, `LICENSE_INVALID`), each with a message. Any signed-in user.
#[utoipa::path(get, path = "/api/license/legality", tag = "license",
    responses((status = 200, body = Legality), (status = 401, body = ErrorBody)))]
pub async fn legality(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<Legality>> {
    Ok(Json(state.drydock.licenses.legality().await?))
}
