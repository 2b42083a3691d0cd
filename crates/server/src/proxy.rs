//! `/w/{workspace}/{machine}/{server}/…`: an authenticated HTTP and WebSocket reverse proxy
//! to a server of a running machine, so browsers never need to reach a node directly.
//!
//! The caller needs `use` on the workspace. drydock's own credentials never reach the
//! workspace (its session cookie and Bearer token are removed), since whoever runs code in
//! a shared workspace must not be able to take a visitor's session. Requests that change
//! something and come with the cookie need no CSRF token (the workspace's own pages cannot
//! know it); they must come from this origin, which SameSite=Lax cookies and the Origin
//! check below ensure.

use axum::body::Body;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message as ClientMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio_tungstenite::tungstenite::Message as MachineMessage;

use drydock_core::workspace::activity;

use crate::AppState;
use crate::auth::{SESSION_COOKIE, authenticate, same_origin};
use crate::error::{ApiError, ApiResult};

pub type HttpClient = Client<HttpConnector, Body>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Headers that belong to one hop and are never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

pub async fn forward(
    State(state): State<AppState>,
    Path(parts): Path<Vec<(String, String)>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    req: Request,
) -> ApiResult<Response> {
    let get = |name: &str| parts.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let (workspace, machine, server, rest) = (get("workspace"), get("machine"), get("server"), get("rest"));
    let caller = authenticate(&state, true, req.headers(), &crate::extract::client_address(req.extensions())).await?;
    if !req.method().is_safe() && !same_origin(req.headers()) {
        return Err(ApiError::forbidden("a change through the proxy must come from this site"));
    }
    let (workspace_id, address) =
        state.drydock.workspaces.server_address(&caller, &workspace, &machine, &server).await?;
    let path_and_query = match req.uri().query() {
        Some(q) => format!("/{rest}?{q}"),
        None => format!("/{rest}"),
    };
    let prefix = format!("/w/{workspace}/{machine}/{server}");
    if let Ok(upgrade) = upgrade {
        let url = format!("ws://{address}{path_and_query}");
        // Messages either way are activity on the workspace (pings are not).
        let workspaces = state.drydock.workspaces.clone();
        workspaces.record_session(&caller, &workspace_id, "proxy", true).await;
        return Ok(upgrade
            .on_upgrade(move |socket| async move {
                let touch = || workspaces.touch(&workspace_id, activity::PROXY);
                relay_websocket(socket, url, touch).await;
                workspaces.record_session(&caller, &workspace_id, "proxy", false).await;
            })
            .into_response());
    }
    let uri: Uri = format!("http://{address}{path_and_query}")
        .parse()
        .map_err(|_| ApiError::bad_request(None, "the proxied path is not valid"))?;
    let (mut head, body) = req.into_parts();
    let client_host = head.headers.get(header::HOST).cloned();
    clean_headers(&mut head.headers);
    if let Some(host) = client_host {
        head.headers.insert("x-forwarded-host", host);
    }
    head.headers.insert("x-forwarded-prefix", HeaderValue::from_str(&prefix).map_err(ApiError::internal)?);
    head.uri = uri;
    let upstream = state.proxy.request(Request::from_parts(head, body)).await.map_err(|e| {
        ApiError::status_message(
            StatusCode::BAD_GATEWAY,
            "bad_gateway",
            format!("the server '{server}' of machine {machine} does not answer: {e}"),
        )
    })?;
    let (mut head, body) = upstream.into_parts();
    for name in HOP_BY_HOP {
        head.headers.remove(*name);
    }
    Ok(Response::from_parts(head, Body::new(body)))
}

/// Removes hop-by-hop headers and drydock's own credentials before a request goes on.
fn clean_headers(headers: &mut HeaderMap) {
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_lowercase().starts_with("bearer "))
    {
        headers.remove(header::AUTHORIZATION);
    }
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty() && !pair.starts_with(&format!("{SESSION_COOKIE}=")))
        .map(str::to_string)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
    {
        headers.insert(header::COOKIE, v);
    }
    headers.remove(HeaderName::from_static("x-csrf-token"));
}

/// Copies WebSocket messages between the browser and the machine's server.
async fn relay_websocket(client: WebSocket, url: String, touch: impl Fn() + Send + Sync) {
    let machine = match tokio_tungstenite::connect_async(url.as_str()).await {
        Ok((socket, _)) => socket,
        Err(e) => {
            tracing::info!(%url, error = %e, "proxied WebSocket cannot connect");
            return;
        }
    };
    let (mut to_client, mut from_client) = client.split();
    let (mut to_machine, mut from_machine) = machine.split();
    let up = async {
        while let Some(Ok(message)) = from_client.next().await {
            let message = match message {
                ClientMessage::Text(t) => {
                    touch();
                    MachineMessage::Text(t.as_str().into())
                }
                ClientMessage::Binary(b) => {
                    touch();
                    MachineMessage::Binary(b)
                }
                ClientMessage::Ping(p) => MachineMessage::Ping(p),
                ClientMessage::Pong(p) => MachineMessage::Pong(p),
                ClientMessage::Close(_) => break,
            };
            if to_machine.send(message).await.is_err() {
                break;
            }
        }
        let _ = to_machine.close().await;
    };
    let down = async {
        while let Some(Ok(message)) = from_machine.next().await {
            let message = match message {
                MachineMessage::Text(t) => {
                    touch();
                    ClientMessage::Text(t.as_str().into())
                }
                MachineMessage::Binary(b) => {
                    touch();
                    ClientMessage::Binary(b)
                }
                MachineMessage::Ping(p) => ClientMessage::Ping(p),
                MachineMessage::Pong(p) => ClientMessage::Pong(p),
                MachineMessage::Close(_) | MachineMessage::Frame(_) => break,
            };
            if to_client.send(message).await.is_err() {
                break;
            }
        }
        let _ = to_client.close().await;
    };
    tokio::select! {
        () = up => {}
        () = down => {}
    }
}
