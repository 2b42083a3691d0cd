//! Maintenance mode on the real Docker engine, through the real server, on both backends:
//! users' creates and starts are refused with 503 and the message, administrators pass,
//! `stopWorkspaces` stops running workspaces, the state is public and shown on every page,
//! it survives a restart, and the CLI turns it on, off and reports it.

mod common;

use std::time::{Duration, Instant};

use common::{
    ADMIN_PASSWORD, Backend, Instance, browser_like, call, docker_instance_with, sign_in, small_workspace, text,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const MESSAGE: &str = "Upgrading drydock; back at 14:00 UTC";

async fn create(dd: &Instance, token: &str, name: &str, image: &str) -> (StatusCode, Value) {
    call(dd, token, Method::POST, "/api/workspace", Some(small_workspace(name, image))).await
}

async fn create_ok(dd: &Instance, token: &str, name: &str, image: &str) -> String {
    let (status, ws) = create(dd, token, name, image).await;
    assert_eq!(status, StatusCode::CREATED, "{ws}");
    ws["id"].as_str().unwrap().to_string()
}

async fn start(dd: &Instance, token: &str, id: &str) -> (StatusCode, Value) {
    call(dd, token, Method::POST, &format!("/api/workspace/{id}/runtime"), None).await
}

/// Waits (with a deadline) until the workspace's status is `want`; returns the workspace.
async fn wait_status(dd: &Instance, token: &str, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, ws) = call(dd, token, Method::GET, &format!("/api/workspace/{id}"), None).await;
        if ws["status"] == want {
            return ws;
        }
        assert!(Instant::now() < deadline, "workspace {id} did not become {want}: {ws}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn public_state(dd: &Instance) -> Value {
    let r = dd.req(Method::GET, "/api/system/state").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.json().await.unwrap()
}

/// A refusal for maintenance: 503, code `maintenance`, with the operators' message.
fn assert_maintenance(answer: &(StatusCode, Value), message: &str) {
    assert_eq!(answer.0, StatusCode::SERVICE_UNAVAILABLE, "{}", answer.1);
    assert_eq!(answer.1["code"], "maintenance", "{}", answer.1);
    let text = answer.1["message"].as_str().unwrap_or_default();
    assert!(text.contains(message), "the refusal should carry {message:?}: {text:?}");
}

/// The maintenance banner of a dashboard page, if it has one.
fn banner(html: &str) -> Option<&str> {
    let at = html.find("id=\"maintenance-banner\"")?;
    let rest = &html[at..];
    Some(&rest[..rest.find("</p>")?])
}

async fn story(backend: Backend) {
    let Some((mut dd, _guard, image)) = docker_instance_with(backend, &[]).await else { return };
    let admin = dd.token_for("admin", ADMIN_PASSWORD).await;
    dd.create_user(&admin, "alice", "alice-password").await;
    let alice = dd.token_for("alice", "alice-password").await;

    // Off: the public state says RUNNING, and nobody is refused.
    assert_eq!(public_state(&dd).await, json!({"status": "RUNNING", "message": null}));
    let running = create_ok(&dd, &alice, "running", &image).await;
    let stopped = create_ok(&dd, &alice, "stopped", &image).await;
    assert_eq!(start(&dd, &alice, &running).await.0, StatusCode::OK);
    wait_status(&dd, &alice, &running, "RUNNING").await;
    let (status, stack) = call(
        &dd,
        &admin,
        Method::POST,
        "/api/stack",
        Some(
            json!({"name": "busybox", "description": "test", "workspaceConfig": small_workspace("from-stack", &image)}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{stack}");
    let stack = stack["id"].as_str().unwrap().to_string();

    // Only manageSystem may turn it on; bad input is 400 naming the field and changes nothing.
    let on = |message: &str, stop: bool| json!({"message": message, "stopWorkspaces": stop});
    let (status, _) = call(&dd, &alice, Method::POST, "/api/system/maintenance", Some(on(MESSAGE, false))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(&dd, &alice, Method::GET, "/api/system/maintenance", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let long = "x".repeat(501);
    let bad = [
        (json!({}), "message"),
        (json!({"message": ""}), "message"),
        (json!({"message": "   "}), "message"),
        (json!({"message": long}), "message"),
        (json!({"message": "two\nlines"}), "message"),
        (json!({"message": 7}), "message"),
        (json!({"message": MESSAGE, "stopWorkspaces": "yes"}), "stopWorkspaces"),
        (json!({"message": MESSAGE, "reason": "upgrade"}), "reason"),
    ];
    for (body, field) in bad {
        let (status, error) = call(&dd, &admin, Method::POST, "/api/system/maintenance", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
        let named = error["field"] == field || error["message"].as_str().unwrap_or_default().contains(field);
        assert!(named, "{body}: the error should name {field}: {error}");
    }
    assert_eq!(public_state(&dd).await["status"], "RUNNING", "a refused request changed the state");

    // On, stopping the running workspaces.
    let (status, state) = call(&dd, &admin, Method::POST, "/api/system/maintenance", Some(on(MESSAGE, true))).await;
    assert_eq!(status, StatusCode::OK, "{state}");
    assert_eq!(state["status"], "MAINTENANCE");
    assert_eq!(state["message"], MESSAGE);
    assert_eq!(state["by"], "admin");
    assert_eq!(state["stoppingWorkspaces"], 1, "{state}");
    assert!(state["since"].is_string(), "{state}");
    assert_eq!(public_state(&dd).await, json!({"status": "MAINTENANCE", "message": MESSAGE}));
    let (status, seen) = call(&dd, &admin, Method::GET, "/api/system/maintenance", None).await;
    assert_eq!((status, &seen["since"], &seen["by"]), (StatusCode::OK, &state["since"], &state["by"]));

    let ws = wait_status(&dd, &alice, &running, "STOPPED").await;
    assert_eq!(ws["attributes"]["stoppedBy"], "maintenance", "{ws}");
    let reason = ws["attributes"]["stopReason"].as_str().unwrap_or_default();
    assert!(reason.starts_with("stopped for maintenance by admin: ") && reason.contains(MESSAGE), "{reason}");

    // Users are refused: create, create from a stack, start, start after create.
    assert_maintenance(&create(&dd, &alice, "new", &image).await, MESSAGE);
    let from_stack =
        call(&dd, &alice, Method::POST, &format!("/api/workspace?stack={stack}"), Some(json!({"name": "stacked"})))
            .await;
    assert_maintenance(&from_stack, MESSAGE);
    let after =
        call(&dd, &alice, Method::POST, "/api/workspace?start-after-create=true", Some(small_workspace("new", &image)))
            .await;
    assert_maintenance(&after, MESSAGE);
    assert_maintenance(&start(&dd, &alice, &stopped).await, MESSAGE);
    assert_maintenance(&start(&dd, &alice, &running).await, MESSAGE);
    let (_, list) = call(&dd, &alice, Method::GET, "/api/workspace", None).await;
    assert_eq!(list.as_array().unwrap().len(), 2, "a refused create made a workspace: {list}");
    // A workspace the user may not see stays hidden (404, not 503).
    let hidden = create_ok(&dd, &admin, "hidden", &image).await;
    assert_eq!(start(&dd, &alice, &hidden).await.0, StatusCode::NOT_FOUND);
    // What is not a create or start goes on: reading, stopping, deleting.
    let (status, _) = call(&dd, &alice, Method::GET, &format!("/api/workspace/{stopped}"), None).await;
    assert_eq!(status, StatusCode::OK);

    // Administrators are never refused.
    let (status, ws) = start(&dd, &admin, &hidden).await;
    assert_eq!(status, StatusCode::OK, "{ws}");
    wait_status(&dd, &admin, &hidden, "RUNNING").await;
    let (status, _) = call(&dd, &admin, Method::DELETE, &format!("/api/workspace/{hidden}/runtime"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    wait_status(&dd, &admin, &hidden, "STOPPED").await;
    let (status, ws) = call(
        &dd,
        &admin,
        Method::POST,
        &format!("/api/workspace?stack={stack}"),
        Some(json!({"name": "admin-stacked"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{ws}");
    let admin_stacked = ws["id"].as_str().unwrap().to_string();

    // The dashboard shows the banner to everyone: on the sign-in page and once signed in.
    let page = dd.http.get(format!("{}/", dd.url)).send().await.unwrap().text().await.unwrap();
    let shown = banner(&page).expect("the sign-in page shows the maintenance banner");
    assert!(shown.contains(MESSAGE), "{shown}");
    let browser = browser_like();
    assert!(sign_in(&dd, &browser, "alice", "alice-password").await.status().is_redirection());
    let page = browser.get(format!("{}/", dd.url)).send().await.unwrap().text().await.unwrap();
    let shown = banner(&page).expect("the workspaces page shows the maintenance banner");
    assert!(shown.contains(MESSAGE) && !shown.contains("/admin/maintenance"), "{shown}");
    assert!(page.contains("data-workspace=\"alice:stopped\""), "the workspace is listed");
    assert!(!page.contains("start-workspace"), "a user is offered Start during maintenance");
    let page = browser.get(format!("{}/account", dd.url)).send().await.unwrap().text().await.unwrap();
    assert!(banner(&page).is_some_and(|b| b.contains(MESSAGE)), "the account page shows the banner");

    // It survives a restart.
    dd.stop();
    dd.start().await;
    assert_eq!(public_state(&dd).await, json!({"status": "MAINTENANCE", "message": MESSAGE}));
    assert_maintenance(&start(&dd, &alice, &stopped).await, MESSAGE);

    // DELETE ends it (204, also when it is already off); only manageSystem may.
    let (status, _) = call(&dd, &alice, Method::DELETE, "/api/system/maintenance", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    for _ in 0..2 {
        let (status, _) = call(&dd, &admin, Method::DELETE, "/api/system/maintenance", None).await;
        assert_eq!(status, StatusCode::NO_CONTENT);
    }
    assert_eq!(public_state(&dd).await, json!({"status": "RUNNING", "message": null}));
    let page = dd.http.get(format!("{}/", dd.url)).send().await.unwrap().text().await.unwrap();
    assert!(banner(&page).is_none(), "the banner stays after maintenance ended");
    let page = browser.get(format!("{}/", dd.url)).send().await.unwrap().text().await.unwrap();
    assert!(banner(&page).is_none() && page.contains("start-workspace"), "Start is offered again");
    let (status, ws) = start(&dd, &alice, &stopped).await;
    assert_eq!(status, StatusCode::OK, "{ws}");
    wait_status(&dd, &alice, &stopped, "RUNNING").await;

    // The CLI: on (a running workspace is stopped), status, off; a refused start meanwhile.
    let url = dd.url.clone();
    let cli = |args: &[&str]| {
        let out = dd.command(args).env("DRYDOCK_URL", &url).env("DRYDOCK_TOKEN", &admin).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let said = cli(&["maintenance", "on", "--message", "Moving to new disks", "--stop-workspaces"]);
    assert!(said.contains("maintenance is on") && said.contains("Moving to new disks"), "{said}");
    assert!(said.contains("stopping 1 running workspace(s)"), "{said}");
    assert_eq!(public_state(&dd).await, json!({"status": "MAINTENANCE", "message": "Moving to new disks"}));
    let ws = wait_status(&dd, &alice, &stopped, "STOPPED").await;
    assert_eq!(ws["attributes"]["stoppedBy"], "maintenance", "{ws}");
    assert_maintenance(&start(&dd, &alice, &stopped).await, "Moving to new disks");
    let status = cli(&["maintenance", "status"]);
    assert!(
        status.contains("maintenance is on since ") && status.contains("(by admin): Moving to new disks"),
        "{status}"
    );
    // `drydock status` of the instance says so too.
    let out = dd.cli(&["status"]);
    assert!(text(&out).contains("maintenance mode: on: Moving to new disks"), "{}", text(&out));
    let status: Value = serde_json::from_str(&cli(&["maintenance", "status", "--json"])).unwrap();
    assert_eq!((&status["status"], &status["message"]), (&json!("MAINTENANCE"), &json!("Moving to new disks")));
    // A user's token sees the public state.
    let out =
        dd.command(&["maintenance", "status"]).env("DRYDOCK_URL", &url).env("DRYDOCK_TOKEN", &alice).output().unwrap();
    assert!(out.status.success() && text(&out).contains("maintenance is on: Moving to new disks"), "{}", text(&out));
    // A refused change exits non-zero with the reason.
    let out = dd
        .command(&["maintenance", "on", "--message", ""])
        .env("DRYDOCK_URL", &url)
        .env("DRYDOCK_TOKEN", &admin)
        .output()
        .unwrap();
    assert!(!out.status.success() && text(&out).contains("message is required"), "{}", text(&out));
    assert!(cli(&["maintenance", "off"]).contains("maintenance is off"));
    assert!(cli(&["maintenance", "status"]).contains("maintenance is off"));
    assert_eq!(public_state(&dd).await["status"], "RUNNING");

    // Clean up: the engine has few networks.
    for (token, id) in [(&alice, &running), (&alice, &stopped), (&admin, &hidden), (&admin, &admin_stacked)] {
        let (status, body) = call(&dd, token, Method::DELETE, &format!("/api/workspace/{id}"), None).await;
        assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn maintenance_on_sqlite() {
    story(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn maintenance_on_postgres() {
    story(Backend::Postgres).await;
}
