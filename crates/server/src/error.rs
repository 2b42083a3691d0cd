//! The API's one error type. It owns its status code and its stable machine code; a 5xx
//! is logged with its cause and the client is told nothing internal.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use drydock_core::Error;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    retry_after: Option<u64>,
    /// The cause of a 5xx, for the log only.
    internal: Option<String>,
}

/// The body of every error response.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub message: String,
    pub code: String,
    /// The request field the error is about, for bad input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), field: None, retry_after: None, internal: None }
    }

    pub fn bad_request(field: Option<&str>, message: impl Into<String>) -> Self {
        ApiError { field: field.map(str::to_string), ..Self::new(StatusCode::BAD_REQUEST, "bad_request", message) }
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// Any other status with its own machine code (a 502 from the proxy, say).
    pub fn status_message(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self::new(status, code, message)
    }

    pub fn payload_too_large() -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body is larger than 1 MiB")
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        ApiError {
            internal: Some(cause.to_string()),
            ..Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error; the server log has details")
        }
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidInput { field, message } => ApiError::bad_request(Some(&field), message),
            Error::Unauthorized(m) => ApiError::unauthorized(m),
            Error::Forbidden(m) => ApiError::forbidden(m),
            Error::NotFound(m) => ApiError::not_found(m),
            Error::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            Error::Taken { field, message } => {
                ApiError { field: Some(field), ..ApiError::new(StatusCode::CONFLICT, "conflict", message) }
            }
            e @ Error::Throttled { retry_after_secs } => ApiError {
                retry_after: Some(retry_after_secs),
                ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", e.to_string())
            },
            Error::Unavailable(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", m),
            Error::Maintenance(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "maintenance", m),
            Error::Standby(m) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "standby", m),
            Error::Internal(cause) => ApiError::internal(error_chain(cause.as_ref())),
        }
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Some(cause) = &self.internal {
            tracing::error!(status = self.status.as_u16(), cause = %cause, "request failed");
        }
        let body = ErrorBody { message: self.message, code: self.code.to_string(), field: self.field };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
