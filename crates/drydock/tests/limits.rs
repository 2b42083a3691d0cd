//! Resource limits: the Resource API with the seed's aliases and its errors, each
//! enforcement rule with its message, the start queue, and races on both backends that
//! must not pass a limit.

mod common;

use std::time::{Duration, Instant};

use common::{ADMIN_PASSWORD, Backend, Instance, answer, call, docker_instance_with, settled};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn config(name: &str, image: &str, memory_mb: u64) -> Value {
    json!({"name": name, "defaultEnv": "default", "environments": {"default": {
        "recipe": {"type": "dockerimage", "location": image},
        "machines": {"dev": {"attributes": {"memoryLimitBytes": (memory_mb << 20).to_string()}}}}}})
}

async fn create(dd: &Instance, token: &str, body: Value) -> String {
    let (status, ws) = call(dd, token, Method::POST, "/api/workspace", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{ws}");
    ws["id"].as_str().unwrap().to_string()
}

async fn start(dd: &Instance, token: &str, id: &str) -> (StatusCode, Value) {
    call(dd, token, Method::POST, &format!("/api/workspace/{id}/runtime"), None).await
}

fn amount(resources: &Value, kind: &str) -> i64 {
    resources.as_array().unwrap().iter().find(|r| r["type"] == kind).unwrap()["amount"].as_i64().unwrap()
}

async fn used(dd: &Instance, token: &str, user_id: &str) -> Value {
    let (status, used) = call(dd, token, Method::GET, &format!("/api/resource/{user_id}/used"), None).await;
    assert_eq!(status, StatusCode::OK, "{used}");
    used
}

async fn set_limits(dd: &Instance, admin: &str, user_id: &str, resources: Value) {
    let body = json!({"accountId": user_id, "resources": resources});
    let (status, stored) = call(dd, admin, Method::POST, "/api/resource/free", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{stored}");
}

fn assert_refused(answer: &(StatusCode, Value), message: &str) {
    assert_eq!(answer.0, StatusCode::CONFLICT, "{}", answer.1);
    let text = answer.1["message"].as_str().unwrap_or_default();
    assert!(text.starts_with(message), "expected {message:?}, got {text:?}");
}

#[tokio::test]
async fn resource_api_forms_aliases_and_errors() {
    let Some(mut dd) = Instance::init(Backend::Sqlite) else { return };
    dd.start().await;
    let admin = dd.token_for("admin", ADMIN_PASSWORD).await;
    let alice = dd.create_user(&admin, "alice", "alice-password").await["id"].as_str().unwrap().to_string();
    let bob = dd.create_user(&admin, "bob", "bob-password").await["id"].as_str().unwrap().to_string();
    let alice_token = dd.token_for("alice", "alice-password").await;

    // Defaults from the config, in each type's default unit.
    let (status, limits) = call(&dd, &admin, Method::GET, &format!("/api/resource/{alice}"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        limits,
        json!([{"type": "RAM", "amount": 102400, "unit": "mb"}, {"type": "workspace", "amount": 30, "unit": "item"},
               {"type": "runtime", "amount": 10, "unit": "item"}, {"type": "timeout", "amount": 240, "unit": "minute"}])
    );
    let (status, _) = call(&dd, &admin, Method::GET, &format!("/api/resource/free/{alice}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no override yet");

    // Codenvy's code's form (accountId) and the seed's (userId); gb is converted to mb.
    let body = json!({"accountId": alice, "resources": [{"type": "RAM", "amount": 2, "unit": "gb"},
                                                         {"type": "workspace", "amount": 10}]});
    let (status, stored) = call(&dd, &admin, Method::POST, "/api/resource/free", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{stored}");
    assert_eq!(
        stored,
        json!({"accountId": alice, "resources": [{"type": "RAM", "amount": 2048, "unit": "mb"},
                                                 {"type": "workspace", "amount": 10, "unit": "item"}]})
    );
    let body = json!({"userId": bob, "resources": [{"type": "runtime", "amount": -1, "unit": "item"}]});
    let (status, _) = call(&dd, &admin, Method::POST, "/api/resource/free", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, limits) = call(&dd, &admin, Method::GET, &format!("/api/resource/{alice}"), None).await;
    assert_eq!((amount(&limits, "RAM"), amount(&limits, "workspace")), (2048, 10));
    assert_eq!((amount(&limits, "runtime"), amount(&limits, "timeout")), (10, 240), "types not named keep defaults");

    // Posting again replaces the override.
    let body = json!({"accountId": alice, "resources": [{"type": "timeout", "amount": 30}]});
    let (status, _) = call(&dd, &admin, Method::POST, "/api/resource/free", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, limits) = call(&dd, &admin, Method::GET, &format!("/api/resource/{alice}"), None).await;
    assert_eq!((amount(&limits, "RAM"), amount(&limits, "timeout")), (102400, 30));

    // The list, its alias, paging and the total.
    for path in ["/api/resource/free", "/api/resource"] {
        let r = dd.req(Method::GET, &format!("{path}?maxItems=1")).bearer_auth(&admin).send().await.unwrap();
        assert_eq!(r.headers()["x-total-count"], "2", "{path}");
        let (status, list) = answer(r).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list.as_array().unwrap().len(), 1, "{path}: {list}");
        assert_eq!(list[0]["accountId"], alice, "ordered by user name");
    }
    let (status, one) = call(&dd, &admin, Method::GET, &format!("/api/resource/free/{bob}"), None).await;
    assert_eq!((status, &one["resources"][0]["amount"]), (StatusCode::OK, &json!(-1)));

    // A user reads their own, not another's; only manageSystem changes them.
    let (status, _) = call(&dd, &alice_token, Method::GET, &format!("/api/resource/{alice}"), None).await;
    assert_eq!(status, StatusCode::OK);
    for path in [format!("/api/resource/{alice}/used"), format!("/api/resource/{alice}/available")] {
        let (status, list) = call(&dd, &alice_token, Method::GET, &path, None).await;
        assert_eq!((status, list.as_array().map(Vec::len)), (StatusCode::OK, Some(4)), "{path}");
    }
    let (_, available) = call(&dd, &alice_token, Method::GET, &format!("/api/resource/{alice}/available"), None).await;
    assert_eq!((amount(&available, "workspace"), amount(&available, "RAM")), (30, 102400));
    let (status, _) = call(&dd, &alice_token, Method::GET, &format!("/api/resource/{bob}"), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let body = json!({"accountId": alice, "resources": [{"type": "workspace", "amount": 99}]});
    let (status, _) = call(&dd, &alice_token, Method::POST, "/api/resource/free", Some(body)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Bad input: 400 naming what is wrong, and nothing changes.
    let bad = [
        (json!({"resources": [{"type": "RAM", "amount": 1}]}), "accountId"),
        (
            json!({"accountId": alice, "resources": [{"type": "RAM", "amount": 1}, {"type": "RAM", "amount": 2}]}),
            "resources[1].type",
        ),
        (json!({"accountId": alice, "resources": [{"type": "CPU", "amount": 1}]}), "resources[0].type"),
        (json!({"accountId": alice, "resources": [{"type": "RAM", "amount": 1, "unit": "item"}]}), "resources[0].unit"),
        (json!({"accountId": alice, "resources": [{"type": "workspace", "amount": -2}]}), "resources[0].amount"),
        (json!({"accountId": alice}), "resources"),
    ];
    for (body, field) in bad {
        let (status, error) = call(&dd, &admin, Method::POST, "/api/resource/free", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
        let named = error["field"] == field || error["message"].as_str().unwrap().contains(field);
        assert!(named, "{body}: the error should name {field}: {error}");
    }
    let (_, limits) = call(&dd, &admin, Method::GET, &format!("/api/resource/{alice}"), None).await;
    assert_eq!(amount(&limits, "timeout"), 30, "a refused override changed nothing");
    let body = json!({"accountId": "no-such-user", "resources": [{"type": "RAM", "amount": 1}]});
    let (status, _) = call(&dd, &admin, Method::POST, "/api/resource/free", Some(body)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&dd, &admin, Method::GET, "/api/resource/no-such-user", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Reset: by path, by the seed's body, by ?userId=; without an id 400.
    let (status, _) = call(&dd, &admin, Method::DELETE, &format!("/api/resource/free/{alice}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&dd, &admin, Method::GET, &format!("/api/resource/free/{alice}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&dd, &admin, Method::DELETE, "/api/resource/free", Some(json!({"userId": bob}))).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = call(&dd, &admin, Method::GET, &format!("/api/resource/free/{bob}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&dd, &admin, Method::DELETE, &format!("/api/resource/free?userId={bob}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, error) = call(&dd, &admin, Method::DELETE, "/api/resource/free", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    let (status, _) = call(&dd, &admin, Method::DELETE, "/api/resource/free/no-such-user", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // The CLI: set (gb, keeping what is not named), show, list, reset.
    let url = dd.url.clone();
    let cli = |args: &[&str]| {
        let out = dd.command(args).env("DRYDOCK_URL", &url).env("DRYDOCK_TOKEN", &admin).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", common::text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    cli(&["limits", "set", "alice", "--workspaces", "4"]);
    let set = cli(&["limits", "set", "alice", "--ram", "3gb", "--timeout", "-1"]);
    assert!(set.contains("RAM 3072 mb") && set.contains("workspace 4 item"), "{set}");
    let show = cli(&["limits", "show", "alice"]);
    let ram_line = show.lines().find(|l| l.starts_with("RAM")).unwrap();
    assert!(ram_line.contains("3072") && ram_line.contains("override"), "{show}");
    let runtime_line = show.lines().find(|l| l.starts_with("runtime")).unwrap();
    assert!(runtime_line.contains("10") && runtime_line.contains("default"), "{show}");
    assert!(show.lines().any(|l| l.starts_with("timeout") && l.contains("unlimited")), "{show}");
    let list = cli(&["limits", "list"]);
    assert!(list.lines().any(|l| l.starts_with("alice") && l.contains("3072")), "{list}");
    cli(&["limits", "reset", "alice"]);
    let (status, _) = call(&dd, &admin, Method::GET, &format!("/api/resource/free/{alice}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Reads a workspace's event stream until a line contains `text`.
async fn wait_for_event(mut events: reqwest::Response, text: &str) -> String {
    let mut seen = String::new();
    let read = async {
        while let Ok(Some(chunk)) = events.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains(text) {
                return;
            }
        }
    };
    let found = tokio::time::timeout(Duration::from_secs(60), read).await;
    assert!(found.is_ok() && seen.contains(text), "no event with {text:?} in:\n{seen}");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_are_enforced_with_their_messages() {
    // 2 GB of host memory (90%: 1843 MB for workspaces), at most 1 GB a workspace, and one
    // start at a time.
    let env = [
        ("DRYDOCK_LIMITS__HOST__RAM", "2gb"),
        ("DRYDOCK_LIMITS__WORKSPACE__RAM", "1gb"),
        ("DRYDOCK_LIMITS__WORKSPACE__START_CONCURRENCY", "1"),
    ];
    let Some((dd, _guard, image)) = docker_instance_with(Backend::Sqlite, &env).await else { return };
    let admin = dd.token_for("admin", ADMIN_PASSWORD).await;
    let alice = dd.create_user(&admin, "alice", "alice-password").await["id"].as_str().unwrap().to_string();
    let token = dd.token_for("alice", "alice-password").await;
    set_limits(
        &dd,
        &admin,
        &alice,
        json!([{"type": "workspace", "amount": 4}, {"type": "runtime", "amount": 2},
                                            {"type": "RAM", "amount": 1, "unit": "gb"}]),
    )
    .await;

    let a = create(&dd, &token, config("a", &image, 512)).await;
    let b = create(&dd, &token, config("b", &image, 512)).await;
    let c = create(&dd, &token, config("c", &image, 256)).await;
    let e = create(&dd, &token, config("e", "drydock-no-such-image:never", 256)).await;
    let refused = call(&dd, &token, Method::POST, "/api/workspace", Some(config("d", &image, 256))).await;
    assert_refused(&refused, "You are not allowed to create more workspaces.");

    // One workspace may not ask more than limits.workspace.ram, at create or update.
    let too_big = call(&dd, &token, Method::POST, "/api/workspace", Some(config("big", &image, 2048))).await;
    assert_refused(
        &too_big,
        "Workspace big needs 2048mb of RAM (environment default); one workspace may have at most 1024mb.",
    );
    let too_big = call(&dd, &token, Method::PUT, &format!("/api/workspace/{a}"), Some(config("a", &image, 1025))).await;
    assert_refused(&too_big, "Workspace a needs 1025mb of RAM");

    // Two starts with one slot: the second waits in the queue and says so; both run.
    let events = dd.req(Method::GET, &format!("/api/workspace/{b}/events")).bearer_auth(&token).send().await.unwrap();
    let (status, ws) = start(&dd, &token, &a).await;
    assert_eq!((status, ws["status"].as_str()), (StatusCode::OK, Some("STARTING")), "{ws}");
    let (status, _) = start(&dd, &token, &b).await;
    assert_eq!(status, StatusCode::OK);
    wait_for_event(events, "waiting in the start queue").await;
    assert_eq!(settled(&dd, &token, &a).await, "RUNNING");
    assert_eq!(settled(&dd, &token, &b).await, "RUNNING");
    let usage = used(&dd, &token, &alice).await;
    assert_eq!((amount(&usage, "RAM"), amount(&usage, "runtime"), amount(&usage, "workspace")), (1024, 2, 4));

    // runtime, then RAM, with Codenvy's messages.
    assert_refused(&start(&dd, &token, &c).await, "You are not allowed to start more workspaces.");
    set_limits(
        &dd,
        &admin,
        &alice,
        json!([{"type": "workspace", "amount": 4}, {"type": "runtime", "amount": 5},
                                            {"type": "RAM", "amount": 1024}]),
    )
    .await;
    assert_refused(
        &start(&dd, &token, &c).await,
        "Workspace alice/c needs 256mb to start. Your account has 0mb available and 1024mb in use.",
    );

    // Lowering a limit below the usage stops nothing.
    set_limits(&dd, &admin, &alice, json!([{"type": "RAM", "amount": 512}])).await;
    for id in [&a, &b] {
        let (_, ws) = call(&dd, &token, Method::GET, &format!("/api/workspace/{id}"), None).await;
        assert_eq!(ws["status"], "RUNNING");
    }
    assert_refused(&start(&dd, &token, &c).await, "Workspace alice/c needs 256mb to start. Your account has 0mb");

    // The host guard: 1024 MB reserved, the admin's 1 GB workspace would pass 1843 MB.
    let big = create(&dd, &admin, config("big", &image, 1024)).await;
    assert_refused(
        &start(&dd, &admin, &big).await,
        "Low RAM. Your workspace cannot be started until the system has more RAM available.",
    );

    // A stop gives the memory back; a failed start gives its reservation back.
    let (status, _) = call(&dd, &token, Method::DELETE, &format!("/api/workspace/{b}/runtime"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(settled(&dd, &token, &b).await, "STOPPED");
    call(&dd, &admin, Method::DELETE, &format!("/api/resource/free/{alice}"), None).await;
    let (status, _) = start(&dd, &token, &e).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(settled(&dd, &token, &e).await, "ERROR");
    let usage = used(&dd, &token, &alice).await;
    assert_eq!((amount(&usage, "RAM"), amount(&usage, "runtime")), (512, 1), "the failed start's 256 MB are back");
    let (status, _) = start(&dd, &token, &c).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(settled(&dd, &token, &c).await, "RUNNING");
    for id in [&a, &c] {
        call(&dd, &token, Method::DELETE, &format!("/api/workspace/{id}/runtime"), None).await;
        settled(&dd, &token, id).await;
    }
    assert_eq!(amount(&used(&dd, &token, &alice).await, "RAM"), 0);
}

/// Many requests at once against small limits, on one backend: exactly the limit passes.
async fn races(backend: Backend) {
    let env = [("DRYDOCK_LIMITS__WORKSPACE__START_CONCURRENCY", "10")];
    let Some((dd, _guard, image)) = docker_instance_with(backend, &env).await else { return };
    let admin = dd.token_for("admin", ADMIN_PASSWORD).await;
    let carol = dd.create_user(&admin, "carol", "carol-password").await["id"].as_str().unwrap().to_string();
    let token = dd.token_for("carol", "carol-password").await;

    // 20 creates at once against workspace = 5.
    set_limits(&dd, &admin, &carol, json!([{"type": "workspace", "amount": 5}])).await;
    let (dd_ref, token_ref) = (&dd, &token);
    let creates = (0..20).map(|i| {
        let body = config(&format!("c{i}"), &image, 64);
        async move { call(dd_ref, token_ref, Method::POST, "/api/workspace", Some(body)).await.0 }
    });
    let statuses = futures::future::join_all(creates).await;
    let created = statuses.iter().filter(|s| **s == StatusCode::CREATED).count();
    assert!(statuses.iter().all(|s| *s == StatusCode::CREATED || *s == StatusCode::CONFLICT), "{statuses:?}");
    assert_eq!(created, 5, "{statuses:?}");
    assert_eq!(amount(&used(&dd, &token, &carol).await, "workspace"), 5);
    let (_, list) = call(&dd, &token, Method::GET, "/api/workspace?maxItems=100", None).await;
    for ws in list.as_array().unwrap() {
        call(&dd, &token, Method::DELETE, &format!("/api/workspace/{}", ws["id"].as_str().unwrap()), None).await;
    }

    // 50 starts of stopped workspaces at once against runtime = 3.
    // (An override replaces the whole previous one.)
    set_limits(&dd, &admin, &carol, json!([{"type": "workspace", "amount": -1}, {"type": "runtime", "amount": 3}]))
        .await;
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(create(&dd, &token, config(&format!("s{i}"), &image, 64)).await);
    }
    let starts = ids.iter().map(|id| async { start(&dd, &token, id).await.0 });
    let statuses = futures::future::join_all(starts).await;
    assert!(statuses.iter().all(|s| *s == StatusCode::OK || *s == StatusCode::CONFLICT), "{statuses:?}");
    let admitted: Vec<&String> =
        ids.iter().zip(&statuses).filter(|(_, s)| **s == StatusCode::OK).map(|(i, _)| i).collect();
    assert_eq!(admitted.len(), 3, "{statuses:?}");
    // Done with them: deleting them frees their networks (the engine has few).
    for id in &admitted {
        assert_eq!(settled(&dd, &token, id).await, "RUNNING");
        call(&dd, &token, Method::DELETE, &format!("/api/workspace/{id}/runtime"), None).await;
        settled(&dd, &token, id).await;
        call(&dd, &token, Method::DELETE, &format!("/api/workspace/{id}"), None).await;
    }
    let ids: Vec<String> = ids.iter().filter(|id| !admitted.contains(id)).cloned().collect();

    // 10 starts at once whose memory together overshoots RAM = 200 MB: 64 MB each, 3 fit.
    set_limits(&dd, &admin, &carol, json!([{"type": "RAM", "amount": 200}, {"type": "workspace", "amount": -1}])).await;
    let starts = ids[..10].iter().map(|id| async { start(&dd, &token, id).await });
    let answers = futures::future::join_all(starts).await;
    let admitted: Vec<&String> =
        ids[..10].iter().zip(&answers).filter(|(_, a)| a.0 == StatusCode::OK).map(|(i, _)| i).collect();
    assert_eq!(admitted.len(), 3, "{answers:?}");
    for (status, body) in answers.iter().filter(|a| a.0 != StatusCode::OK) {
        assert_eq!(*status, StatusCode::CONFLICT);
        assert!(body["message"].as_str().unwrap().contains("needs 64mb to start"), "{body}");
    }
    assert_eq!(amount(&used(&dd, &token, &carol).await, "RAM"), 192);
    for id in &admitted {
        settled(&dd, &token, id).await;
        call(&dd, &token, Method::DELETE, &format!("/api/workspace/{id}/runtime"), None).await;
        settled(&dd, &token, id).await;
    }
    for id in &ids {
        call(&dd, &token, Method::DELETE, &format!("/api/workspace/{id}"), None).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn races_cannot_pass_limits_on_sqlite() {
    races(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn races_cannot_pass_limits_on_postgres() {
    races(Backend::Postgres).await;
}

/// A child process killed when the test ends, however it ends.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn idle_workspaces_stop_and_busy_ones_do_not() {
    let env = [("DRYDOCK_LIMITS__WORKSPACE__IDLE_TIMEOUT", "4s"), ("DRYDOCK_LIMITS__WORKSPACE__IDLE_WARNING", "2s")];
    let Some((dd, _guard, image)) = docker_instance_with(Backend::Sqlite, &env).await else { return };
    let admin = dd.token_for("admin", ADMIN_PASSWORD).await;
    let idle = create(&dd, &admin, config("idle", &image, 64)).await;
    let busy = create(&dd, &admin, config("busy", &image, 64)).await;
    let events =
        dd.req(Method::GET, &format!("/api/workspace/{idle}/events")).bearer_auth(&admin).send().await.unwrap();
    for id in [&idle, &busy] {
        assert_eq!(start(&dd, &admin, id).await.0, StatusCode::OK);
        assert_eq!(settled(&dd, &admin, id).await, "RUNNING");
    }

    // The busy one: an SSH session whose shell prints every second (terminal output).
    let mut ssh = dd
        .command(&["workspace", "ssh", &busy])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut input = ssh.stdin.take().unwrap();
    let _ssh = KillOnDrop(ssh);
    use std::io::Write;
    input.write_all(b"while true; do echo tick; sleep 1; done\n").unwrap();

    // The idle one stops, however often its status is read (reading is not activity).
    let deadline = Instant::now() + Duration::from_secs(30);
    let stopped = loop {
        let (_, ws) = call(&dd, &admin, Method::GET, &format!("/api/workspace/{idle}"), None).await;
        if ws["status"] == "STOPPED" {
            break ws;
        }
        assert!(Instant::now() < deadline, "the idle workspace did not stop: {ws}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(stopped["attributes"]["stoppedBy"], "idle timeout", "{stopped}");
    let reason = stopped["attributes"]["stopReason"].as_str().unwrap();
    assert!(reason.starts_with("stopped after 4s without activity (last: start at "), "{reason}");
    assert!(stopped["attributes"]["stopped"].is_string(), "{stopped}");
    let seen = wait_for_event(events, "stopped after 4s without activity").await;
    let warning = seen.find("event: warning").expect("a warning before the stop");
    assert!(warning < seen.find("stopped after").unwrap(), "{seen}");
    assert!(seen.contains("unless it is used"), "{seen}");
    // The audit log says who stopped it: drydock itself, for the idle timeout.
    let (_, stops) = call(&dd, &admin, Method::GET, "/api/audit/events?action=workspace.stop", None).await;
    let stop = &stops[0];
    assert_eq!(
        (stop["actorName"].as_str(), stop["targetId"].as_str()),
        (Some("system"), stopped["id"].as_str()),
        "{stops}"
    );
    assert_eq!(stop["changes"]["stoppedBy"], "idle timeout", "{stops}");

    // The busy one runs on, past its own timeout, with its activity shown.
    let until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < until {
        let (_, ws) = call(&dd, &admin, Method::GET, &format!("/api/workspace/{busy}"), None).await;
        assert_eq!(ws["status"], "RUNNING", "the busy workspace was stopped: {ws}");
        assert_eq!(ws["attributes"]["lastActivityKind"], "terminal", "{ws}");
        assert!(ws["attributes"]["idleStopAt"].is_string(), "{ws}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    call(&dd, &admin, Method::DELETE, &format!("/api/workspace/{busy}/runtime"), None).await;
    assert_eq!(settled(&dd, &admin, &busy).await, "STOPPED");
}
