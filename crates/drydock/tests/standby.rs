//! Disaster recovery with real processes: a primary and a standby on loopback (separate data
//! dirs, ports and instance labels on the one engine). The story, on SQLite and PostgreSQL:
//! what the primary holds (users, limits, sharing, a workspace and its files) reaches the
//! standby within the interval; the standby serves reads and sign-ins and refuses writes; a
//! rotated token is refused and reported; the primary is SIGKILLed in the middle of writes,
//! the standby is promoted, users sign in, their data and files are there and their
//! workspace starts; the old primary rejoins as a standby of the new one and catches up.
//! Apart: a version mismatch stops applying, a restarted primary is followed again, a sync
//! killed halfway leaves the last good copy, one that fails while applying is applied again
//! at the next start, and a fenced standby refuses an older primary.

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use drydock_docker::testing::InstanceGuard;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(60);

/// Waits, with a deadline, until `probe` gives something.
async fn until<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn system_state(dd: &Instance) -> Value {
    dd.req(Method::GET, "/api/system/state").send().await.unwrap().json().await.unwrap()
}

async fn user_exists(dd: &Instance, token: &str, name: &str) -> bool {
    call(dd, token, Method::GET, &format!("/api/user/find?name={name}"), None).await.0 == StatusCode::OK
}

/// The primary's replication token, written to a file for the standby.
fn token_file(primary: &Instance, dir: &Path, rotate: bool) -> PathBuf {
    let args: &[&str] = if rotate { &["standby", "token", "--rotate"] } else { &["standby", "token"] };
    let out = primary.cli(args);
    assert!(out.status.success(), "{}", text(&out));
    let token = String::from_utf8(out.stdout).unwrap();
    assert_eq!(token.lines().count(), 1, "the token alone on stdout: {token:?}");
    let path = dir.join("replication-token");
    std::fs::write(&path, token).unwrap();
    path
}

async fn follow(standby: &mut Instance, primary_url: &str, token: &Path, extra: &[&str]) {
    let mut args = vec!["standby", "--primary", primary_url, "--token-file", token.to_str().unwrap()];
    args.extend(["--interval", "1s", "--listen", "127.0.0.1:0"]);
    args.extend(extra);
    standby.serve(&args, Stdio::null()).await;
}

async fn wait_synced_error(standby: &Instance, part: &str) -> Value {
    until(&format!("lastError with '{part}'"), async || {
        let state = system_state(standby).await;
        state["lastError"].as_str().is_some_and(|e| e.contains(part)).then_some(state)
    })
    .await
}

async fn wait_no_error(standby: &Instance) {
    until("a sync without error", async || {
        let state = system_state(standby).await;
        (state["lastError"].is_null() && !state["lastSync"].is_null()).then_some(())
    })
    .await
}

async fn exec(dd: &Instance, token: &str, id: &str, script: &str) -> String {
    let body = json!({"command": ["sh", "-c", script]});
    let (status, out) = call(dd, token, Method::POST, &format!("/api/workspace/{id}/exec"), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["exitCode"], 0, "{out}");
    out["stdout"].as_str().unwrap_or_default().to_string()
}

fn mirror_file(standby: &Instance, workspace: &str, file: &str) -> Option<String> {
    std::fs::read_to_string(standby.data_dir().join("standby/projects").join(workspace).join(file)).ok()
}

/// The instances moved aside next to a data dir: removed by the test (they live outside it).
fn moved_aside(dir: &Path) -> Vec<PathBuf> {
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&format!("{name}.before-standby-")))
        .collect()
}

struct RemoveOnDrop(Vec<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

async fn failover_story(backend: Backend) {
    let Some(image) = docker_image().await else { return };
    let Some(mut primary) = Instance::init(backend) else { return };
    let primary_id = std::fs::read_to_string(primary.data_dir().join("instance.id")).unwrap();
    let _primary_objects = InstanceGuard::new(primary_id.trim());
    primary.start().await;
    let admin = primary.admin_token();

    // What users made on the primary: accounts, limits, a shared workspace with files.
    let ana = primary.create_user(&admin, "ana", "ana-password-1").await;
    let bob = primary.create_user(&admin, "bob", "bob-password-1").await;
    let ana_id = ana["id"].as_str().unwrap();
    let limits = json!({"accountId": ana_id, "resources": [{"type": "workspace", "amount": 5, "unit": "item"}]});
    assert_eq!(call(&primary, &admin, Method::POST, "/api/resource/free", Some(limits)).await.0, StatusCode::CREATED);
    let ana_token = primary.token_for("ana", "ana-password-1").await;
    let (status, ws) =
        call(&primary, &ana_token, Method::POST, "/api/workspace", Some(small_workspace("ana-dev", &image))).await;
    assert_eq!(status, StatusCode::CREATED, "{ws}");
    let ws = ws["id"].as_str().unwrap().to_string();
    let share = json!({"userId": bob["id"], "domainId": "workspace", "instanceId": ws, "actions": ["read", "use"]});
    assert_eq!(call(&primary, &ana_token, Method::POST, "/api/permissions", Some(share)).await.0, StatusCode::OK);
    call(&primary, &ana_token, Method::POST, &format!("/api/workspace/{ws}/runtime"), None).await;
    assert_eq!(settled(&primary, &ana_token, &ws).await, "RUNNING");
    exec(&primary, &ana_token, &ws, "mkdir -p /projects/src && echo v1 > /projects/src/hello.txt").await;

    // The standby: a new data dir of its own, following the primary.
    let tokens = tempfile::tempdir().unwrap();
    let token = token_file(&primary, tokens.path(), false);
    let Some(mut standby) = Instance::new(backend, &[]) else { return };
    follow(&mut standby, &primary.url, &token, &["--images"]).await;
    let standby_id = std::fs::read_to_string(standby.data_dir().join("instance.id")).unwrap();
    let _standby_objects = InstanceGuard::new(standby_id.trim());
    assert_ne!(standby_id, std::fs::read_to_string(primary.data_dir().join("instance.id")).unwrap());

    until("the first copy", async || user_exists(&standby, &admin, "ana").await.then_some(())).await;
    until("the workspace's files", async || (mirror_file(&standby, &ws, "src/hello.txt")? == "v1\n").then_some(()))
        .await;
    let state = system_state(&standby).await;
    assert_eq!((state["status"].as_str(), state["primary"].as_str()), (Some("STANDBY"), Some(primary.url.as_str())));
    assert!(state["lastError"].is_null() && state["lagSeconds"].as_i64().is_some_and(|l| l < 30), "{state}");

    // The images the workspaces use travel as `docker save` tars (here the standby's engine
    // is the primary's, so it already has them and none is sent).
    let secret = std::fs::read_to_string(&token).unwrap().trim().to_string();
    let images: Value = primary
        .req(Method::GET, "/api/replication/images")
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let image_ref =
        images.as_array().unwrap().iter().find(|i| i["name"] == image.as_str()).expect("the image is listed");
    assert!(image_ref["id"].as_str().unwrap().starts_with("sha256:"), "{images}");
    let export = primary.req(Method::POST, "/api/replication/images/export").bearer_auth(&secret);
    let saved = export.json(&json!([image])).send().await.unwrap();
    assert_eq!(saved.status(), StatusCode::OK);
    let saved = saved.bytes().await.unwrap();
    let mut archive = tar::Archive::new(saved.as_ref());
    let names: Vec<String> =
        archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
    assert!(names.iter().any(|n| n == "manifest.json"), "a docker save tar: {names:?}");
    let export = primary.req(Method::POST, "/api/replication/images/export").bearer_auth(&secret);
    let unknown = export.json(&json!(["drydock-no-such-image:1"])).send().await.unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);

    // Reads and sign-ins on the standby; its sessions are its own.
    let ana_on_standby = standby.token_for("ana", "ana-password-1").await;
    let (status, copy) = call(&standby, &ana_on_standby, Method::GET, &format!("/api/workspace/{ws}"), None).await;
    assert_eq!((status, copy["config"]["name"].as_str()), (StatusCode::OK, Some("ana-dev")), "{copy}");
    let (_, resources) = call(&standby, &admin, Method::GET, &format!("/api/resource/{ana_id}"), None).await;
    let workspaces = resources.as_array().unwrap().iter().find(|r| r["type"] == "workspace").unwrap();
    assert_eq!(workspaces["amount"], 5, "{resources}");
    let bob_on_standby = standby.token_for("bob", "bob-password-1").await;
    assert_eq!(
        call(&standby, &bob_on_standby, Method::GET, &format!("/api/workspace/{ws}"), None).await.0,
        StatusCode::OK
    );
    assert_eq!(call(&primary, &ana_on_standby, Method::GET, "/api/user", None).await.0, StatusCode::UNAUTHORIZED);
    let metrics = standby.req(Method::GET, "/metrics").bearer_auth(&admin).send().await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("drydock_standby_lag_seconds ") && metrics.contains("drydock_standby_sync_failing 0"),
        "{metrics}"
    );
    // Every write is refused.
    let new_user = json!({"name": "eve", "email": "eve@example.com", "password": "eve-password-1"});
    let (status, refused) = call(&standby, &admin, Method::POST, "/api/user", Some(new_user)).await;
    assert_eq!((status, refused["code"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("standby")), "{refused}");
    let start = format!("/api/workspace/{ws}/runtime");
    assert_eq!(call(&standby, &ana_on_standby, Method::POST, &start, None).await.0, StatusCode::SERVICE_UNAVAILABLE);
    let page = standby.http.get(format!("{}/", standby.url)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"standby-banner\""), "the sign-in page shows the banner");

    // Changes reach the standby within the interval.
    exec(&primary, &ana_token, &ws, "echo v2 > /projects/src/hello.txt && echo new > /projects/new.txt").await;
    primary.create_user(&admin, "cyd", "cyd-password-1").await;
    until("the change", async || user_exists(&standby, &admin, "cyd").await.then_some(())).await;
    until("the changed file", async || (mirror_file(&standby, &ws, "src/hello.txt")? == "v2\n").then_some(())).await;

    // A wrong or rotated token is refused by the primary; the standby says so and keeps its copy.
    let wrong = primary.req(Method::GET, "/api/replication/status").bearer_auth("ddr_wrong").send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let rotated = tempfile::tempdir().unwrap();
    let new_token = token_file(&primary, rotated.path(), true);
    wait_synced_error(&standby, "refused the replication token").await;
    assert!(user_exists(&standby, &admin, "cyd").await, "the last good copy stays");
    std::fs::copy(&new_token, &token).unwrap();
    wait_no_error(&standby).await;

    // The primary dies (SIGKILL) in the middle of writes, which run for seconds first.
    let writing = Arc::new(AtomicBool::new(true));
    let acknowledged = Arc::new(Mutex::new(Vec::<(String, Instant)>::new()));
    let began = Instant::now();
    let writer = tokio::spawn({
        let (url, admin, writing, acknowledged) =
            (primary.url.clone(), admin.clone(), writing.clone(), acknowledged.clone());
        async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
            for i in 0.. {
                if !writing.load(Ordering::SeqCst) {
                    break;
                }
                let name = format!("writer{i}");
                let body = json!({"name": name, "email": format!("{name}@example.com"), "password": "w-password-1"});
                match http.post(format!("{url}/api/user")).bearer_auth(&admin).json(&body).send().await {
                    Ok(r) if r.status() == StatusCode::CREATED => {
                        acknowledged.lock().unwrap().push((name, Instant::now()))
                    }
                    _ => break,
                }
            }
        }
    });
    // Writes go on for a few seconds of syncs; then a write the standby is seen to hold marks
    // the copy, and the primary dies while the writes go on.
    until("a few seconds of writes", async || (began.elapsed() > Duration::from_secs(3)).then_some(())).await;
    let mark = acknowledged.lock().unwrap().last().cloned().expect("writes were acknowledged");
    until("the mark on the standby", async || user_exists(&standby, &admin, &mark.0).await.then_some(())).await;
    let mut primary_process = primary.server.take().unwrap();
    primary_process.kill().unwrap();
    primary_process.wait().unwrap();
    writing.store(false, Ordering::SeqCst);
    writer.await.unwrap();
    let acknowledged = acknowledged.lock().unwrap().clone();

    // Promotion: the standby serves as the primary at once.
    let out = standby.cli(&["promote", "--yes"]);
    assert!(out.status.success() && text(&out).contains("Promoted"), "{}", text(&out));
    assert_eq!(system_state(&standby).await["status"], "RUNNING");
    let ana_token = standby.token_for("ana", "ana-password-1").await;
    // The copy is of one moment: every write acknowledged up to the mark is there, and the
    // writes it has are the oldest ones, without a hole (RPO is measured by the benchmark).
    let mut present = Vec::new();
    for (name, at) in &acknowledged {
        let there = user_exists(&standby, &admin, name).await;
        assert!(there || *at > mark.1, "{name} was acknowledged before the mark, and is missing");
        present.push(there);
    }
    assert!(present.windows(2).all(|w| w[0] || !w[1]), "the copy has a hole: {present:?}");
    let (_, copy) = call(&standby, &ana_token, Method::GET, &format!("/api/workspace/{ws}"), None).await;
    assert_eq!(copy["status"], "STOPPED", "the lost primary's workspace is stopped here: {copy}");
    assert_eq!(copy["attributes"]["stoppedBy"], "failover", "{copy}");
    call(&standby, &ana_token, Method::POST, &format!("/api/workspace/{ws}/runtime"), None).await;
    assert_eq!(settled(&standby, &ana_token, &ws).await, "RUNNING");
    assert_eq!(exec(&standby, &ana_token, &ws, "cat /projects/src/hello.txt /projects/new.txt").await, "v2\nnew\n");

    // The old primary comes back as a standby of the new one (its data moved aside first).
    let token = token_file(&standby, tokens.path(), false);
    follow(&mut primary, &standby.url, &token, &["--yes"]).await;
    let aside = RemoveOnDrop(moved_aside(primary.data_dir()));
    assert_eq!(aside.0.len(), 1, "the old primary's data dir was moved aside");
    let rejoined_id = std::fs::read_to_string(primary.data_dir().join("instance.id")).unwrap();
    let _rejoined_objects = InstanceGuard::new(rejoined_id.trim());
    standby.create_user(&admin, "dee", "dee-password-1").await;
    until("the rejoined standby to catch up", async || user_exists(&primary, &admin, "dee").await.then_some(())).await;
    let state = system_state(&primary).await;
    assert_eq!((state["status"].as_str(), state["primary"].as_str()), (Some("STANDBY"), Some(standby.url.as_str())));

    call(&standby, &ana_token, Method::DELETE, &format!("/api/workspace/{ws}/runtime"), None).await;
    primary.stop();
    standby.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_standby_follows_and_takes_over() {
    failover_story(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_standby_follows_and_takes_over() {
    failover_story(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_standby_mismatch_interruption_and_fencing() {
    mismatch_interruption_and_fencing(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_standby_mismatch_interruption_and_fencing() {
    mismatch_interruption_and_fencing(Backend::Postgres).await;
}

/// Version mismatch, a sync killed halfway, and fencing (no workspace: no engine needed).
async fn mismatch_interruption_and_fencing(backend: Backend) {
    let Some(mut primary) = Instance::init(backend) else { return };
    primary.start().await;
    let admin = primary.admin_token();
    let tokens = tempfile::tempdir().unwrap();
    let token = token_file(&primary, tokens.path(), false);
    let Some(mut standby) = Instance::new(backend, &[]) else { return };
    follow(&mut standby, &primary.url, &token, &[]).await;
    primary.create_user(&admin, "kept", "kept-password-1").await;
    until("the first copy", async || user_exists(&standby, &admin, "kept").await.then_some(())).await;

    // The dashboard on the standby: sign in, the Standby page, a form refused with 503.
    let browser = browser_like();
    let signed_in = sign_in(&standby, &browser, "kept", "kept-password-1").await;
    assert!(signed_in.status().is_redirection(), "signing in works on a standby: {}", signed_in.status());
    let page = browser.get(format!("{}/standby", standby.url)).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"standby-primary\"") && page.contains(&primary.url), "{page}");
    assert!(page.contains("id=\"standby-banner\""), "every page has the banner");
    let account = browser.get(format!("{}/account", standby.url)).send().await.unwrap().text().await.unwrap();
    let csrf = field_value(&account, "csrf").expect("the account page has forms");
    let refused = browser
        .post(format!("{}/account/tokens", standby.url))
        .form(&[("name", "laptop"), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(refused.text().await.unwrap().contains("standby"));

    // A primary at another version: nothing is applied, and the standby says why.
    let version_file = primary.data_dir().join("drydock.ver");
    let version = std::fs::read_to_string(&version_file).unwrap();
    std::fs::write(&version_file, "0.2.0\n").unwrap();
    let state = wait_synced_error(&standby, "version mismatch").await;
    assert!(state["lastError"].as_str().unwrap().contains("0.2.0"), "{state}");
    primary.create_user(&admin, "during", "during-password-1").await;
    let state = wait_synced_error(&standby, "version mismatch").await;
    assert!(!user_exists(&standby, &admin, "during").await, "no change applied while versions differ: {state}");
    std::fs::write(&version_file, version).unwrap();
    until("applying again", async || user_exists(&standby, &admin, "during").await.then_some(())).await;
    wait_no_error(&standby).await;

    // The primary restarts (on its address): the standby reports it gone, then resumes.
    primary.stop();
    wait_synced_error(&standby, "is not reachable").await;
    assert!(user_exists(&standby, &admin, "during").await, "the last good copy stays");
    let listen = primary.url.trim_start_matches("http://").to_string();
    primary.serve(&["start", "--listen", &listen], Stdio::null()).await;
    primary.create_user(&admin, "after", "after-password-1").await;
    until("following again", async || user_exists(&standby, &admin, "after").await.then_some(())).await;
    wait_no_error(&standby).await;

    // A sync killed after staging and before applying leaves the last good copy.
    standby.stop();
    primary.create_user(&admin, "late", "late-password-1").await;
    standby.env.push(("DRYDOCK_PAUSE_POINT".into(), "standby-staged".into()));
    let args = ["standby", "--listen", "127.0.0.1:0"];
    standby.serve(&args, Stdio::piped()).await;
    let mut child = standby.server.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let paused = tokio::task::spawn_blocking(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stderr).lines().map_while(Result::ok).any(|l| l.contains("paused at standby-staged"))
    });
    assert!(tokio::time::timeout(DEADLINE, paused).await.unwrap().unwrap(), "the sync paused after staging");
    child.kill().unwrap();
    child.wait().unwrap();
    standby.env.pop();
    let out = standby.cli(&["standby", "check", "--json"]);
    assert!(out.status.success(), "the copy is sound after the kill: {}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (report["ok"].as_bool(), report["users"].as_u64()),
        (Some(true), Some(4)),
        "admin, kept, during, after: {report}"
    );
    standby.serve(&args, Stdio::null()).await;
    until("the sync to resume", async || user_exists(&standby, &admin, "late").await.then_some(())).await;
    let state = until("the check in the state", async || {
        let state = system_state(&standby).await;
        (!state["lastCheck"].is_null()).then_some(state)
    })
    .await;
    assert_eq!(state["lastCheck"]["ok"], true, "{state}");

    // A sync that fails while applying (after its database, before its files) is applied
    // again, whole, at the next start.
    standby.stop();
    primary.create_user(&admin, "redo", "redo-password-1").await;
    standby.env.push(("DRYDOCK_FAIL_POINT".into(), "standby-apply".into()));
    standby.serve(&args, Stdio::null()).await;
    wait_synced_error(&standby, "failure injected").await;
    assert!(standby.data_dir().join("standby/incoming/plan.json").exists(), "the staged sync is kept");
    standby.stop();
    standby.env.pop();
    standby.serve(&args, Stdio::null()).await;
    wait_no_error(&standby).await;
    assert!(user_exists(&standby, &admin, "redo").await);
    assert!(!standby.data_dir().join("standby/incoming").exists(), "nothing staged is left");

    // Promoted, then pointed at the old primary by mistake: the fence holds.
    let out = standby.cli(&["promote", "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    standby.stop();
    follow(&mut standby, &primary.url, &token, &["--yes"]).await;
    let aside = RemoveOnDrop(moved_aside(standby.data_dir()));
    assert_eq!(aside.0.len(), 1, "the promoted instance was moved aside");
    if backend == Backend::Postgres {
        // The standby writes over that database: a dump of it is moved aside too.
        let dump = std::fs::read_to_string(aside.0[0].join("database-before-standby.sql")).unwrap();
        assert!(dump.contains("CREATE TABLE") && dump.contains("kept@example.com"));
    }
    wait_synced_error(&standby, "epoch 0, lower than this standby's 1").await;
    assert!(!user_exists(&standby, &admin, "kept").await, "nothing of the older primary was applied");
    standby.stop();
    primary.stop();
}
