//! Extractors that reject with our error shape: 400 naming the field, never 415 or 422.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use drydock_core::Principal;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// A JSON body. Needs `Content-Type: application/json`; unknown fields are refused by the
/// body types themselves (`deny_unknown_fields`) where the body is drydock's own.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if media_type(&req).as_deref() != Some("application/json") {
            return Err(ApiError::bad_request(None, "expected a JSON body with Content-Type: application/json"));
        }
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::bad_request(None, "the request body is empty; expected a JSON object"));
        }
        parse_json(&bytes).map(ApiJson)
    }
}

/// The request's media type (`Content-Type` without its parameters), lower case.
pub fn media_type(req: &Request) -> Option<String> {
    req.headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
}

/// The whole body, within the server's size limit (413 beyond it).
pub async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::payload_too_large()
        } else {
            ApiError::bad_request(None, format!("cannot read the request body: {rejection}"))
        }
    })
}

/// Parses JSON, naming the field that is wrong.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| naming_the_field(e, "invalid JSON body", "invalid value for"))
}

/// Reads a JSON value already parsed into a type, naming the field that is wrong.
pub fn from_value<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|e| naming_the_field(e, "invalid JSON body", "invalid value for"))
}

/// A 400 that names the field (or parameter) a deserialization error is about.
fn naming_the_field<E: std::fmt::Display>(e: serde_path_to_error::Error<E>, whole: &str, field: &str) -> ApiError {
    let path = e.path().to_string();
    let inner = e.into_inner();
    if path == "." {
        ApiError::bad_request(None, format!("{whole}: {inner}"))
    } else {
        ApiError::bad_request(Some(&path), format!("{field} '{path}': {inner}"))
    }
}

/// Query parameters, with errors that name the parameter.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| naming_the_field(e, "invalid query", "invalid query parameter"))
    }
}

/// The signed-in caller, put in the request by the authentication middleware.
#[derive(Clone)]
pub struct Caller(pub Arc<Principal>);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| ApiError::unauthorized("not signed in"))
    }
}

impl std::ops::Deref for Caller {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

/// The address of the client (the connection's peer), for the audit log; empty when the
/// server was not told (tests that call the router directly).
pub fn client_address(extensions: &axum::http::Extensions) -> String {
    extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|info| info.0.ip().to_string())
        .unwrap_or_default()
}

/// The client's address as an extractor.
pub struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientAddr(client_address(&parts.extensions)))
    }
}
