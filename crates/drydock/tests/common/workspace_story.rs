//! The workspace story of the workspaces issue, run on both runtimes (`docker` by
//! `tests/workspaces.rs`, `swarm` by `tests/swarm.rs`): create, start with events, exec,
//! terminal, proxy, memory limit, sharing, stop, snapshot and restore, files that survive,
//! delete; and a killed machine and a killed master.

use std::time::{Duration, Instant};

use drydock_docker::testing::instance_objects;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{ADMIN_PASSWORD, Instance, answer};

pub fn config(name: &str, image: &str) -> Value {
    json!({"name": name, "defaultEnv": "default", "environments": {"default": {
        "recipe": {"type": "dockerimage", "location": image},
        "machines": {"dev": {"attributes": {"memoryLimitBytes": "268435456"},
                              "servers": {"web": {"port": "8080/tcp", "protocol": "http"}}}}}}})
}

pub async fn create(dd: &Instance, token: &str, body: &Value) -> String {
    let (status, ws) =
        answer(dd.req(Method::POST, "/api/workspace").bearer_auth(token).json(body).send().await.unwrap()).await;
    assert_eq!(status, StatusCode::CREATED, "{ws}");
    ws["id"].as_str().unwrap().to_string()
}

/// Waits until the workspace leaves STARTING/STOPPING; returns it.
pub async fn settled(dd: &Instance, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, ws) =
            answer(dd.req(Method::GET, &format!("/api/workspace/{id}")).bearer_auth(token).send().await.unwrap()).await;
        if !matches!(ws["status"].as_str(), Some("STARTING" | "STOPPING")) {
            return ws;
        }
        assert!(Instant::now() < deadline, "workspace {id} did not settle: {ws}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn start(dd: &Instance, token: &str, id: &str) -> Value {
    let (status, ws) =
        answer(dd.req(Method::POST, &format!("/api/workspace/{id}/runtime")).bearer_auth(token).send().await.unwrap())
            .await;
    assert_eq!((status, ws["status"].as_str()), (StatusCode::OK, Some("STARTING")), "{ws}");
    settled(dd, token, id).await
}

pub async fn exec(dd: &Instance, token: &str, id: &str, command: &[&str]) -> (StatusCode, Value) {
    let body = json!({ "command": command });
    answer(
        dd.req(Method::POST, &format!("/api/workspace/{id}/exec")).bearer_auth(token).json(&body).send().await.unwrap(),
    )
    .await
}

/// Create, start (watching the events), exec, terminal, proxy, memory limit, sharing, stop,
/// snapshot and restore, files that survive, delete: nothing of it is left on the engine.
pub async fn files_in_projects_survive_a_stop(dd: &Instance, instance_id: &str, image: &str) {
    let admin = dd.token_for("admin", ADMIN_PASSWORD).await;
    let id = create(dd, &admin, &config("api-dev", image)).await;

    // Watch the events while it starts: the current status, progress, then RUNNING.
    let mut events =
        dd.req(Method::GET, &format!("/api/workspace/{id}/events")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let ws = start(dd, &admin, &id).await;
    assert_eq!(ws["status"], "RUNNING", "{ws}");
    let mut seen = String::new();
    while !seen.contains("\"status\":\"RUNNING\"") {
        let chunk =
            tokio::time::timeout(Duration::from_secs(10), events.chunk()).await.expect("events arrive").unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk.expect("the stream stays open")));
    }
    assert!(seen.contains("event: status") && seen.contains("\"status\":\"STOPPED\""), "{seen}");
    assert!(seen.contains("event: progress") && seen.contains("\"status\":\"STARTING\""), "{seen}");
    drop(events);
    assert_eq!(ws["runtime"]["machines"]["dev"]["status"], "RUNNING");
    assert_eq!(ws["runtime"]["machines"]["dev"]["servers"]["web"]["url"], format!("/w/{id}/dev/web/"));
    let (status, out) =
        exec(dd, &admin, &id, &["sh", "-c", "echo kept > /projects/file; echo out; echo err >&2; exit 3"]).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out, json!({"exitCode": 3, "stdout": "out\n", "stderr": "err\n"}));
    terminal_round_trip(dd, &admin, &id).await;
    proxy_to_a_server(dd, &admin, &id).await;
    let (_, memory) = exec(dd, &admin, &id, &["cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]).await;
    assert_eq!(memory["stdout"].as_str().unwrap().trim(), "268435456", "Docker enforces the memory limit");

    // Another user: nothing until shared, then exactly what was granted.
    let bob_user = dd.create_user(&admin, "bob", "bob-password").await;
    let bob = dd.token_for("bob", "bob-password").await;
    let share = |actions: Value| {
        let body = json!({"userId": bob_user["id"], "domainId": "workspace", "instanceId": id, "actions": actions});
        dd.req(Method::POST, "/api/permissions").bearer_auth(&admin).json(&body).send()
    };
    assert_eq!(exec(dd, &bob, &id, &["true"]).await.0, StatusCode::NOT_FOUND);
    assert_eq!(share(json!(["read"])).await.unwrap().status(), StatusCode::OK);
    assert_eq!(exec(dd, &bob, &id, &["true"]).await.0, StatusCode::FORBIDDEN);
    let stop_as =
        |token: &str| dd.req(Method::DELETE, &format!("/api/workspace/{id}/runtime")).bearer_auth(token).send();
    assert_eq!(stop_as(&bob).await.unwrap().status(), StatusCode::FORBIDDEN);
    assert_eq!(share(json!(["read", "use"])).await.unwrap().status(), StatusCode::OK);
    let (status, out) = exec(dd, &bob, &id, &["cat", "/projects/file"]).await;
    assert_eq!((status, out["stdout"].as_str()), (StatusCode::OK, Some("kept\n")));
    assert_eq!(stop_as(&bob).await.unwrap().status(), StatusCode::FORBIDDEN, "use is not run");

    let r = stop_as(&admin).await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let ws = settled(dd, &admin, &id).await;
    assert_eq!(ws["status"], "STOPPED");
    assert!(ws.get("runtime").is_none());
    let (status, _) = exec(dd, &admin, &id, &["true"]).await;
    assert_eq!(status, StatusCode::CONFLICT, "no exec in a stopped workspace");

    // A snapshot keeps what was written outside /projects; a restore starts from it.
    let r = dd
        .req(Method::POST, &format!("/api/workspace/{id}/runtime?restore=true"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT, "no snapshot yet");
    assert_eq!(start(dd, &admin, &id).await["status"], "RUNNING");
    exec(dd, &admin, &id, &["sh", "-c", "echo snapped > /root/marker"]).await;
    let (status, images) = answer(
        dd.req(Method::POST, &format!("/api/workspace/{id}/snapshot")).bearer_auth(&admin).send().await.unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{images}");
    assert!(images["dev"].as_str().unwrap().contains(&id), "{images}");
    dd.req(Method::DELETE, &format!("/api/workspace/{id}/runtime")).bearer_auth(&admin).send().await.unwrap();
    let r = dd
        .req(Method::POST, &format!("/api/workspace/{id}/runtime?restore=true"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(settled(dd, &admin, &id).await["status"], "RUNNING");
    let (_, out) = exec(dd, &admin, &id, &["cat", "/root/marker", "/projects/file"]).await;
    assert_eq!(out["stdout"], "snapped\nkept\n");
    dd.req(Method::DELETE, &format!("/api/workspace/{id}/runtime")).bearer_auth(&admin).send().await.unwrap();

    // Started again: the file is there.
    assert_eq!(start(dd, &admin, &id).await["status"], "RUNNING");
    let (_, out) = exec(dd, &admin, &id, &["cat", "/projects/file"]).await;
    assert_eq!(out["stdout"], "kept\n");
    let r = dd.req(Method::DELETE, &format!("/api/workspace/{id}")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT, "a running workspace is not deleted");

    // Deleted: nothing of it is left on the engine.
    dd.req(Method::DELETE, &format!("/api/workspace/{id}/runtime")).bearer_auth(&admin).send().await.unwrap();
    let r = dd.req(Method::DELETE, &format!("/api/workspace/{id}")).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    let left = instance_objects(instance_id).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
}

/// A machine killed from outside makes its workspace ERROR; a master killed and started
/// again finds the other workspace still RUNNING. `kill` kills a machine of a workspace.
pub async fn a_killed_machine_and_a_killed_master<K, F>(dd: &mut Instance, image: &str, kill: K)
where
    K: Fn(String) -> F,
    F: std::future::Future<Output = ()>,
{
    let admin = dd.token_for("admin", ADMIN_PASSWORD).await;
    let first = create(dd, &admin, &config("first", image)).await;
    let second = create(dd, &admin, &config("second", image)).await;
    assert_eq!(start(dd, &admin, &first).await["status"], "RUNNING");
    assert_eq!(start(dd, &admin, &second).await["status"], "RUNNING");

    // Killed from outside: the status says so, with the reason.
    kill(first.clone()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let ws = loop {
        let (_, ws) =
            answer(dd.req(Method::GET, &format!("/api/workspace/{first}")).bearer_auth(&admin).send().await.unwrap())
                .await;
        if ws["status"] != "RUNNING" {
            break ws;
        }
        assert!(Instant::now() < deadline, "the kill was not noticed: {ws}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(ws["status"], "ERROR", "{ws}");
    assert!(ws["attributes"]["errorMessage"].as_str().unwrap().contains("dev"), "{ws}");

    // The master dies (SIGKILL) and comes back: the running workspace is still RUNNING and works.
    let mut server = dd.server.take().unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
    dd.start().await;
    let admin = dd.token_for("admin", ADMIN_PASSWORD).await;
    let (_, ws) =
        answer(dd.req(Method::GET, &format!("/api/workspace/{second}")).bearer_auth(&admin).send().await.unwrap())
            .await;
    assert_eq!(ws["status"], "RUNNING", "{ws}");
    let (status, out) = exec(dd, &admin, &second, &["echo", "still here"]).await;
    assert_eq!((status, out["stdout"].as_str()), (StatusCode::OK, Some("still here\n")));
}

/// A shell over the terminal WebSocket: type a command, read its output; resize; and a
/// cookie-authenticated handshake from another site is refused.
pub async fn terminal_round_trip(dd: &Instance, token: &str, id: &str) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let url = format!("{}/api/workspace/{id}/terminal?cols=100&rows=30", dd.url.replace("http://", "ws://"));
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.expect("the terminal opens");
    socket.send(Message::Text(r#"{"type": "resize", "cols": 120, "rows": 40}"#.into())).await.unwrap();
    socket.send(Message::Binary(b"echo hi-$((40+2)); stty size\n".to_vec().into())).await.unwrap();
    let mut seen = String::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while !(seen.contains("hi-42") && seen.contains("40 120")) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, socket.next()).await {
            Ok(Some(Ok(Message::Binary(bytes)))) => seen.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(Some(Ok(_))) => {}
            other => panic!("terminal ended early ({other:?}); saw {seen:?}"),
        }
    }
    socket.close(None).await.unwrap();

    let session = dd.token_for("admin", ADMIN_PASSWORD).await;
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().insert("cookie", format!("drydock_session={session}").parse().unwrap());
    request.headers_mut().insert("origin", "http://evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("a cross-site terminal was not refused: {:?}", other.map(|(_, r)| r.status())),
    }
}

/// The proxy to busybox httpd in the machine: authenticated, and drydock's own credentials
/// never reach the workspace.
pub async fn proxy_to_a_server(dd: &Instance, token: &str, id: &str) {
    let script = "mkdir -p /projects/site/cgi-bin && echo served > /projects/site/index.html && \
                  printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho \"cookie=$HTTP_COOKIE auth=$HTTP_AUTHORIZATION prefix=$HTTP_X_FORWARDED_PREFIX method=$REQUEST_METHOD\"\\n' \
                  > /projects/site/cgi-bin/env && chmod +x /projects/site/cgi-bin/env && httpd -p 8080 -h /projects/site";
    let (status, out) = exec(dd, token, id, &["sh", "-c", script]).await;
    assert_eq!((status, out["exitCode"].as_i64()), (StatusCode::OK, Some(0)), "{out}");
    let base = format!("/w/{id}/dev/web");
    let deadline = Instant::now() + Duration::from_secs(10);
    let page = loop {
        let r = dd.req(Method::GET, &format!("{base}/index.html")).bearer_auth(token).send().await.unwrap();
        if r.status() == StatusCode::OK {
            break r.text().await.unwrap();
        }
        assert!(Instant::now() < deadline, "httpd never answered through the proxy: {}", r.status());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(page, "served\n");
    assert_eq!(
        dd.req(Method::GET, &format!("{base}/index.html")).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        dd.req(Method::GET, &format!("/w/{id}/dev/nope/")).bearer_auth(token).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    // What the workspace sees: no drydock credentials, the app's own cookies, the prefix.
    let session = dd.token_for("admin", ADMIN_PASSWORD).await;
    let r = dd
        .req(Method::POST, &format!("{base}/cgi-bin/env?x=1"))
        .header("cookie", format!("drydock_session={session}; app=1"))
        .header("origin", dd.url.as_str())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let seen = r.text().await.unwrap();
    assert!(
        seen.contains("cookie=app=1 auth= ")
            && seen.contains(&format!("prefix={base}"))
            && seen.contains("method=POST"),
        "{seen}"
    );
    assert!(!seen.contains("dds_") && !seen.contains("ddt_"), "{seen}");
    let r = dd
        .req(Method::POST, &format!("{base}/cgi-bin/env"))
        .header("cookie", format!("drydock_session={session}"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN, "cross-site changes through the proxy are refused");
}
