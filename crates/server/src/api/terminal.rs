//! The browser terminal and `drydock workspace ssh`: a WebSocket to an interactive shell in
//! a machine. Binary (or plain text) frames from the client are keystrokes; a text frame
//! `{"type": "resize", "cols": N, "rows": M}` resizes the TTY; the shell's output comes back
//! as binary frames. When the shell ends, the server closes the socket with the shell's exit
//! code in the close frame's reason: `{"exitCode": N}`.

use axum::Extension;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use drydock_core::model::Via;
use drydock_core::runtime::Terminal;
use drydock_core::workspace::activity;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use utoipa::IntoParams;

use crate::AppState;
use crate::auth::same_origin;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiQuery, Caller};

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TerminalQuery {
    /// The machine (default: the dev machine).
    machine: Option<String>,
    cols: Option<u16>,
    rows: Option<u16>,
}

#[derive(Deserialize)]
struct Resize {
    #[serde(rename = "type")]
    kind: String,
    cols: u16,
    rows: u16,
}

/// An interactive shell in a machine over a WebSocket (needs `use`).
#[utoipa::path(get, path = "/api/workspace/{key}/terminal", tag = "workspaces", params(("key" = String, Path), TerminalQuery),
    responses((status = 101, description = "Switching to the WebSocket"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn terminal(
    State(state): State<AppState>,
    caller: Caller,
    via: Option<Extension<Via>>,
    headers: HeaderMap,
    Path(key): Path<String>,
    ApiQuery(q): ApiQuery<TerminalQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let upgrade = upgrade
        .map_err(|_| ApiError::bad_request(None, "the terminal is a WebSocket: connect with an Upgrade request"))?;
    if via.is_some_and(|Extension(v)| v == Via::Cookie) && !same_origin(&headers) {
        return Err(ApiError::forbidden(
            "a terminal opened with the session cookie must come from drydock's own pages",
        ));
    }
    let (cols, rows) = (q.cols.unwrap_or(80).max(1), q.rows.unwrap_or(24).max(1));
    let (workspace, machine, terminal) =
        state.drydock.workspaces.terminal(&caller, &key, q.machine.as_deref(), cols, rows).await?;
    let user = caller.user.name.clone();
    // The browser's terminal comes with the session cookie; `drydock workspace ssh` with a token.
    let kind = if via.is_some_and(|Extension(v)| v == Via::Cookie) { "terminal" } else { "ssh" };
    tracing::info!(%workspace, %machine, %user, kind, "terminal opened");
    let workspaces = state.drydock.workspaces.clone();
    workspaces.record_session(&caller, &workspace, kind, true).await;
    Ok(upgrade
        .on_upgrade(move |socket| async move {
            pump(socket, terminal, || workspaces.touch(&workspace, activity::TERMINAL)).await;
            tracing::info!(%workspace, %machine, %user, kind, "terminal closed");
            workspaces.record_session(&caller, &workspace, kind, false).await;
        })
        .into_response())
}

/// Copies keystrokes in and output out until either side ends; both are activity on the
/// workspace.
async fn pump(socket: WebSocket, terminal: Terminal, touch: impl Fn()) {
    let (mut to_client, mut from_client) = socket.split();
    let Terminal { mut output, mut input, resize, exit_code } = terminal;
    let outgoing = async {
        while let Some(Ok(bytes)) = output.next().await {
            touch();
            if to_client.send(Message::Binary(bytes.into())).await.is_err() {
                return;
            }
        }
        // The shell ended: its exit code rides in the close frame's reason.
        let reason = exit_code.await.map(|code| json!({ "exitCode": code }).to_string()).unwrap_or_default();
        let _ =
            to_client.send(Message::Close(Some(CloseFrame { code: close_code::NORMAL, reason: reason.into() }))).await;
    };
    let incoming = async {
        while let Some(Ok(message)) = from_client.next().await {
            touch();
            let written = match message {
                Message::Binary(bytes) => input.write_all(&bytes).await,
                Message::Text(text) => match serde_json::from_str::<Resize>(&text) {
                    Ok(r) if r.kind == "resize" => {
                        let _ = resize(r.cols.max(1), r.rows.max(1)).await;
                        Ok(())
                    }
                    _ => input.write_all(text.as_bytes()).await,
                },
                Message::Close(_) => return,
                _ => Ok(()),
            };
            if written.is_err() || input.flush().await.is_err() {
                return;
            }
        }
    };
    tokio::select! {
        () = outgoing => {}
        () = incoming => {}
    }
}
