//! The audit report through the real server, on both backends: `GET /api/audit` for 0, 1
//! and several workspaces and for workspaces shared with partial permissions, its
//! Content-Disposition, `?format=json`, 403 for a user without `manageSystem`, 409 while a
//! report is being built, and `drydock audit` writing the same bytes to a file.
//!
//! The license history (the lines before `--- CURRENT STATE ---`) depends on the license
//! service; these tests check its format only, and the current state exactly.

mod common;

use std::io::BufRead;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use chrono::NaiveDateTime;
use common::{Backend, Instance, answer, call, small_workspace, text};
use reqwest::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const ALL: &str = "read, use, run, configure, setPermissions, delete";
const MARK: &str = "--- CURRENT STATE ---\n";

/// A 200 text report, downloaded as report_<time>.txt: its text.
async fn report(dd: &Instance, token: &str) -> String {
    let r = dd.req(Method::GET, "/api/audit").bearer_auth(token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()[CONTENT_TYPE], "text/plain; charset=utf-8");
    let disposition = r.headers()[CONTENT_DISPOSITION].to_str().unwrap().to_string();
    let name = disposition.strip_prefix("attachment; filename=").unwrap_or_else(|| panic!("{disposition}"));
    assert_report_name(name);
    r.text().await.unwrap()
}

/// `report_<dd-MM-yyyy_HH:mm:ss>.txt`
fn assert_report_name(name: &str) {
    let time = name.strip_prefix("report_").and_then(|n| n.strip_suffix(".txt"));
    let parsed = time.map(|t| NaiveDateTime::parse_from_str(t, "%d-%m-%Y_%H:%M:%S"));
    assert!(
        matches!(parsed, Some(Ok(_))) && time.is_some_and(|t| t.len() == 19),
        "{name} is not report_<dd-MM-yyyy_HH:mm:ss>.txt"
    );
}

/// The current state of a report (from `--- CURRENT STATE ---` on), after checking that
/// every history line before it has the format `yyyy MMM dd - HH:mm:ss: <event>.` and that
/// a blank line ends the history.
fn current_state(report: &str) -> &str {
    let at = report.find(MARK).unwrap_or_else(|| panic!("no current state in:\n{report}"));
    let history = report[..at].strip_suffix('\n').unwrap_or_else(|| panic!("no blank line before:\n{report}"));
    for line in history.lines() {
        let (time, event) = line.split_at_checked(22).unwrap_or_else(|| panic!("short history line {line:?}"));
        assert!(NaiveDateTime::parse_from_str(time, "%Y %b %d - %H:%M:%S").is_ok(), "history time of {line:?}");
        assert!(event.starts_with(": ") && event.ends_with('.') && event.len() > 3, "history event of {line:?}");
    }
    &report[at..]
}

fn state(lines: &[&str]) -> String {
    let mut out = MARK.to_string();
    for line in lines {
        out.push_str(line);
        out.push('\n');
    }
    out
}

async fn create_workspace(dd: &Instance, token: &str, name: &str) -> String {
    // Creating needs no engine: the image is only pulled when the workspace starts.
    let (status, ws) = call(dd, token, Method::POST, "/api/workspace", Some(small_workspace(name, "busybox"))).await;
    assert_eq!(status, StatusCode::CREATED, "{ws}");
    ws["id"].as_str().unwrap().to_string()
}

async fn share(dd: &Instance, token: &str, workspace: &str, user: &Value, actions: &[&str]) {
    let body = json!({"userId": user["id"], "domainId": "workspace", "instanceId": workspace, "actions": actions});
    let (status, permission) = call(dd, token, Method::POST, "/api/permissions", Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{permission}");
}

async fn the_report(backend: Backend) {
    let Some(mut dd) = Instance::init(backend) else { return };
    dd.start().await;
    let admin = dd.admin_token();
    let alice = dd.create_user(&admin, "alice", "alice-password").await;
    let bob = dd.create_user(&admin, "bob", "bob-password").await;
    let carol = dd.create_user(&admin, "carol", "carol-password").await;
    let alice_token = dd.token_for("alice", "alice-password").await;
    let bob_token = dd.token_for("bob", "bob-password").await;

    // 403 without manageSystem, for the text and the JSON alike.
    for path in ["/api/audit", "/api/audit?format=json"] {
        let (status, body) = call(&dd, &alice_token, Method::GET, path, None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        assert_eq!(body["code"], "forbidden");
    }
    let (status, body) = call(&dd, &admin, Method::GET, "/api/audit?format=xml", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["field"], "format", "{body}");

    // No workspaces. The administrator's system rights never appear.
    let got = report(&dd, &admin).await;
    assert_eq!(
        current_state(&got),
        state(&[
            "Number of users: 4",
            "admin@localhost is owner of 0 workspaces and has permissions in 0 workspaces",
            "alice@example.com is owner of 0 workspaces and has permissions in 0 workspaces",
            "bob@example.com is owner of 0 workspaces and has permissions in 0 workspaces",
            "carol@example.com is owner of 0 workspaces and has permissions in 0 workspaces",
        ])
    );

    // One workspace.
    let beta = create_workspace(&dd, &alice_token, "beta").await;
    let got = report(&dd, &admin).await;
    let one = format!("   └ beta, is owner: true, permissions: [{ALL}]");
    assert_eq!(
        current_state(&got),
        state(&[
            "Number of users: 4",
            "admin@localhost is owner of 0 workspaces and has permissions in 0 workspaces",
            "alice@example.com is owner of 1 workspace and has permissions in 1 workspace",
            &one,
            "bob@example.com is owner of 0 workspaces and has permissions in 0 workspaces",
            "carol@example.com is owner of 0 workspaces and has permissions in 0 workspaces",
        ])
    );

    // Several, shared with partial permissions (given in no particular order).
    let alpha = create_workspace(&dd, &alice_token, "alpha").await;
    let tools = create_workspace(&dd, &bob_token, "tools").await;
    create_workspace(&dd, &admin, "admin-box").await;
    share(&dd, &alice_token, &beta, &bob, &["run", "read", "use"]).await;
    share(&dd, &alice_token, &alpha, &carol, &["read"]).await;
    share(&dd, &bob_token, &tools, &alice, &["use", "read"]).await;
    share(&dd, &bob_token, &tools, &carol, &["delete", "read", "setPermissions"]).await;
    let got = report(&dd, &admin).await;
    let expected = state(&[
        "Number of users: 4",
        "admin@localhost is owner of 1 workspace and has permissions in 1 workspace",
        &format!("   └ admin-box, is owner: true, permissions: [{ALL}]"),
        "alice@example.com is owner of 2 workspaces and has permissions in 3 workspaces",
        &format!("   └ alpha, is owner: true, permissions: [{ALL}]"),
        &format!("   └ beta, is owner: true, permissions: [{ALL}]"),
        "   └ tools, is owner: false, permissions: [read, use]",
        "bob@example.com is owner of 1 workspace and has permissions in 2 workspaces",
        &format!("   └ tools, is owner: true, permissions: [{ALL}]"),
        "   └ beta, is owner: false, permissions: [read, use, run]",
        "carol@example.com is owner of 0 workspaces and has permissions in 2 workspaces",
        "   └ alpha, is owner: false, permissions: [read]",
        "   └ tools, is owner: false, permissions: [read, setPermissions, delete]",
    ]);
    assert_eq!(current_state(&got), expected);

    // The same content as JSON.
    let r = dd.req(Method::GET, "/api/audit?format=json").bearer_auth(&admin).send().await.unwrap();
    assert!(r.headers()[CONTENT_TYPE].to_str().unwrap().starts_with("application/json"));
    let (status, json) = answer(r).await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(json["usersCount"], 4, "{json}");
    assert_eq!(json["license"], Value::Null, "{json}");
    assert!(json["history"].is_array(), "{json}");
    let emails: Vec<&str> = json["users"].as_array().unwrap().iter().map(|u| u["email"].as_str().unwrap()).collect();
    assert_eq!(emails, ["admin@localhost", "alice@example.com", "bob@example.com", "carol@example.com"]);
    assert_eq!(
        json["users"][2],
        json!({"email": "bob@example.com", "owned": 1, "workspaces": [
            {"name": "tools", "isOwner": true, "permissions": ["read", "use", "run", "configure", "setPermissions", "delete"]},
            {"name": "beta", "isOwner": false, "permissions": ["read", "use", "run"]},
        ]})
    );

    // The OpenAPI document lists the route with both content types.
    let (_, openapi) = answer(dd.req(Method::GET, "/api/openapi.json").send().await.unwrap()).await;
    let content = &openapi["paths"]["/api/audit"]["get"]["responses"]["200"]["content"];
    assert!(content["text/plain"].is_object() && content["application/json"].is_object(), "{content}");

    // `drydock audit --out FILE` writes the same bytes as the API; a report is of one moment,
    // and nothing changed since, so only the file name's time may differ.
    let out_dir = tempfile::tempdir().unwrap();
    let file = out_dir.path().join("audit.txt");
    let out = dd.cli(&["audit", "--out", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), file.display().to_string());
    assert_eq!(std::fs::read_to_string(&file).unwrap(), got, "drydock audit --out wrote another report");
    assert_eq!(only_files(out_dir.path()), ["audit.txt"], "no temp file is left");

    // Without --out: the server's file name, in the current directory.
    let cwd = tempfile::tempdir().unwrap();
    let out = dd.command(&["audit"]).current_dir(cwd.path()).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let written = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(written.parent(), Some(cwd.path()), "{}", written.display());
    let file_name = written.file_name().unwrap().to_str().unwrap();
    assert_report_name(file_name);
    assert_eq!(std::fs::read_to_string(&written).unwrap(), got);
    assert_eq!(only_files(cwd.path()), [file_name]);

    // The subcommand form, into a directory.
    let out = dd.cli(&["audit", "report", "--out", out_dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    let written = std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(written.parent(), Some(out_dir.path()));
    assert_eq!(std::fs::read_to_string(&written).unwrap(), got);

    // A user without manageSystem gets the server's refusal, and no file.
    let denied = out_dir.path().join("denied.txt");
    let out = dd
        .command(&["audit", "--out", denied.to_str().unwrap(), "--url", &dd.url])
        .env("DRYDOCK_TOKEN", &alice_token)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("manageSystem") && text(&out).contains("403"), "{}", text(&out));
    assert!(!denied.exists());

    dd.stop();
}

fn only_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_on_sqlite() {
    the_report(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_on_postgres() {
    the_report(Backend::Postgres).await;
}

/// A second report while one is being built: 409 with Codenvy's message. The first pauses
/// (`DRYDOCK_PAUSE_POINT=audit-report`) while it is being built; the server says so on its
/// stderr, which the test waits for, so the second request surely comes during the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_report_at_a_time() {
    let env = [("DRYDOCK_PAUSE_POINT", "audit-report")];
    let Some(mut dd) = Instance::init_with(Backend::Sqlite, &env) else { return };
    dd.start_with_stderr(Stdio::piped()).await;
    let stderr = dd.server.as_mut().unwrap().stderr.take().unwrap();
    let (paused_tx, paused_rx) = std::sync::mpsc::channel();
    // Reads the server's stderr to its end, so the server never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("paused at audit-report") {
                let _ = paused_tx.send(());
            }
        }
    });
    let admin = dd.admin_token();
    let first = tokio::spawn(dd.req(Method::GET, "/api/audit").bearer_auth(&admin).send());
    let paused = tokio::task::spawn_blocking(move || paused_rx.recv_timeout(Duration::from_secs(60))).await.unwrap();
    assert!(paused.is_ok(), "the first report did not reach its pause point within 60 s");

    let (status, body) = call(&dd, &admin, Method::GET, "/api/audit", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body, json!({"message": "Generating report is already in progress", "code": "conflict"}));
    let (status, body) = call(&dd, &admin, Method::GET, "/api/audit?format=json", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // The CLI says so too.
    let out = dd.cli(&["audit", "--out", dd.data_dir().join("second.txt").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(text(&out).contains("Generating report is already in progress (HTTP 409 Conflict)"), "{}", text(&out));
    assert!(!first.is_finished(), "the first report should still be paused");

    // The paused report never ends, so a graceful stop would wait for it forever: the server
    // is killed (the instance's own cleanup does it when the test fails first).
    first.abort();
    let mut server = dd.server.take().unwrap();
    server.kill().unwrap();
    server.wait().unwrap();
}
