//! The test harness: real `drydock` processes on temp data dirs and port 0, against SQLite
//! or a real PostgreSQL (a database of its own per test, dropped at the end).
#![allow(dead_code)]

pub mod browser;
pub mod workspace_story;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, RequestBuilder, Response, StatusCode};
use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_drydock");
pub const ADMIN_PASSWORD: &str = "admin-password-1";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server of the suite (started by `.ci/run`). Under CI a missing server
/// fails the test; elsewhere the test says it skipped.
pub fn postgres_url() -> Option<String> {
    match std::env::var("TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("TEST_POSTGRES_URL is not set under CI=true: run the suite with `bash .ci/run`")
        }
        _ => {
            eprintln!("SKIPPED: TEST_POSTGRES_URL is not set (run the suite with `bash .ci/run`)");
            None
        }
    }
}

/// A database of its own on the suite's PostgreSQL, dropped when the guard goes.
pub struct PgDatabase {
    server: String,
    pub name: String,
    pub url: String,
}

impl PgDatabase {
    pub fn create(server: &str) -> PgDatabase {
        let name = format!("drydock_test_{}", drydock_core::ids::random_lower(12));
        psql(server, &format!("CREATE DATABASE {name}"));
        let base = server.rsplit_once('/').map(|(b, _)| b).unwrap_or(server);
        PgDatabase { server: server.to_string(), url: format!("{base}/{name}"), name }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        psql(&self.server, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
    }
}

pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql").args([url, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql]).output().expect("psql runs");
    assert!(out.status.success(), "psql {sql}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// One drydock instance: its data dir, its database, and its server process when started.
pub struct Instance {
    pub backend: Backend,
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    pub db: Option<PgDatabase>,
    pub server: Option<Child>,
    pub url: String,
    pub http: Client,
}

impl Instance {
    /// A fresh instance, initialized with a known administrator password. `None` when the
    /// backend is not available outside CI.
    pub fn init(backend: Backend) -> Option<Instance> {
        Self::init_with(backend, &[])
    }

    pub fn init_with(backend: Backend, env: &[(&str, &str)]) -> Option<Instance> {
        let instance = Self::new(backend, env)?;
        let out = instance.cli(&["init", "--admin-password", ADMIN_PASSWORD]);
        assert!(out.status.success(), "init failed: {}", text(&out));
        Some(instance)
    }

    /// An instance whose data dir is empty (not initialized).
    pub fn new(backend: Backend, env: &[(&str, &str)]) -> Option<Instance> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut vars: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let db = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => {
                let db = PgDatabase::create(&postgres_url()?);
                vars.push(("DRYDOCK_DATABASE__URL".into(), db.url.clone()));
                Some(db)
            }
        };
        let http = Client::builder().danger_accept_invalid_certs(true).build().unwrap();
        Some(Instance { backend, dir, env: vars, db, server: None, url: String::new(), http })
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args).arg("--data-dir").arg(self.dir.path());
        // Only this test's variables reach the binary: the harness's own DRYDOCK_* must not.
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("DRYDOCK_")) {
            cmd.env_remove(k);
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.stdin(Stdio::null());
        cmd
    }

    /// Runs a CLI verb to completion.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("drydock runs")
    }

    /// Starts the server in the foreground as a child process on port 0 and waits until it
    /// answers its health check.
    pub async fn start(&mut self) {
        self.start_with_stderr(Stdio::null()).await;
    }

    /// Like [`Instance::start`], with the server's stderr where the test wants it (piped, to
    /// wait for a line such as `paused at …`).
    pub async fn start_with_stderr(&mut self, stderr: Stdio) {
        self.serve(&["start", "--listen", "127.0.0.1:0"], stderr).await;
    }

    /// Runs a serving verb (`start`, `standby …`) in the foreground as a child process and
    /// waits until it answers its health check.
    pub async fn serve(&mut self, args: &[&str], stderr: Stdio) {
        let child = self.command(args).stdout(Stdio::null()).stderr(stderr).spawn().expect("drydock runs");
        let pid = child.id();
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.server.as_mut().unwrap().try_wait().unwrap() {
                panic!("drydock {} exited: {status}", args[0]);
            }
            let pid_ok =
                std::fs::read_to_string(self.data_dir().join("drydock.pid")).is_ok_and(|p| p.trim() == pid.to_string());
            if let (true, Ok(url)) = (pid_ok, std::fs::read_to_string(self.data_dir().join("drydock.url"))) {
                let url = url.trim().to_string();
                if self.http.get(format!("{url}/api/health")).send().await.is_ok_and(|r| r.status().is_success()) {
                    self.url = url;
                    return;
                }
            }
            assert!(Instant::now() < deadline, "drydock did not answer within 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the server with `drydock stop` and reaps it.
    pub fn stop(&mut self) {
        let out = self.cli(&["stop"]);
        assert!(out.status.success(), "stop failed: {}", text(&out));
        if let Some(mut child) = self.server.take() {
            let status = child.wait().unwrap();
            assert!(status.success(), "server exited with {status}");
        }
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("secrets/admin-token")).unwrap().trim().to_string()
    }

    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.url))
    }

    pub async fn login(&self, username: &str, password: &str) -> Response {
        self.req(Method::POST, "/api/auth/login")
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .unwrap()
    }

    /// Signs in and returns the session token (for Bearer use).
    pub async fn token_for(&self, username: &str, password: &str) -> String {
        let r = self.login(username, password).await;
        assert_eq!(r.status(), StatusCode::OK, "login of {username}");
        r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string()
    }

    pub async fn create_user(&self, token: &str, name: &str, password: &str) -> Value {
        let r = self
            .req(Method::POST, "/api/user")
            .bearer_auth(token)
            .json(&json!({"name": name, "email": format!("{name}@example.com"), "password": password}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED, "create {name}: {}", r.text().await.unwrap_or_default());
        r.json().await.unwrap()
    }

    pub fn sqlite_path(&self) -> PathBuf {
        self.data_dir().join("drydock.db")
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// Status and parsed JSON body of a response.
pub async fn answer(r: Response) -> (StatusCode, Value) {
    let status = r.status();
    let body = r.json::<Value>().await.unwrap_or(Value::Null);
    (status, body)
}

/// A client that keeps cookies and does not follow redirects, so statuses can be checked.
pub fn browser_like() -> Client {
    Client::builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

pub async fn sign_in(dd: &Instance, client: &Client, user: &str, password: &str) -> reqwest::Response {
    let page = client.get(format!("{}/", dd.url)).send().await.unwrap().text().await.unwrap();
    let csrf = field_value(&page, "csrf").expect("the sign-in form has a csrf field");
    client
        .post(format!("{}/login", dd.url))
        .form(&[("username", user), ("password", password), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap()
}

pub fn field_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &html[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].to_string())
}

/// The Docker test image, or `None` (the test skips) when there is no engine outside CI;
/// under `CI=true` a missing engine fails the test.
pub async fn docker_image() -> Option<String> {
    match drydock_docker::testing::busybox_image().await {
        Ok(image) => Some(image),
        Err(e) if drydock_docker::testing::required() => {
            panic!("this test needs Docker and /bin/busybox under CI=true: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: {e}");
            None
        }
    }
}

/// A started SQLite instance for Docker tests, a guard that removes its engine objects even
/// when the test fails, and the test image.
pub async fn docker_instance() -> Option<(Instance, drydock_docker::testing::InstanceGuard, String)> {
    docker_instance_with(Backend::Sqlite, &[]).await
}

/// Like [`docker_instance`], on a chosen backend and with config variables.
pub async fn docker_instance_with(
    backend: Backend,
    env: &[(&str, &str)],
) -> Option<(Instance, drydock_docker::testing::InstanceGuard, String)> {
    let image = docker_image().await?;
    let mut dd = Instance::init_with(backend, env)?;
    let id = std::fs::read_to_string(dd.data_dir().join("instance.id")).unwrap();
    let guard = drydock_docker::testing::InstanceGuard::new(id.trim());
    dd.start().await;
    Some((dd, guard, image))
}

/// An API call with a Bearer token: the status and the parsed JSON body.
pub async fn call(dd: &Instance, token: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = dd.req(method, path).bearer_auth(token);
    if let Some(body) = body {
        req = req.json(&body);
    }
    answer(req.send().await.unwrap()).await
}

/// A one-machine (`dev`, 128 MiB) workspace config on the image.
pub fn small_workspace(name: &str, image: &str) -> Value {
    json!({"name": name, "defaultEnv": "default", "environments": {"default": {
        "recipe": {"type": "dockerimage", "location": image},
        "machines": {"dev": {"attributes": {"memoryLimitBytes": "134217728"}}}}}})
}

/// Waits (with a deadline) until the workspace leaves STARTING and STOPPING; its status.
pub async fn settled(dd: &Instance, token: &str, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let (_, ws) = call(dd, token, Method::GET, &format!("/api/workspace/{id}"), None).await;
        let status = ws["status"].as_str().unwrap_or_default().to_string();
        if status != "STARTING" && status != "STOPPING" {
            return status;
        }
        assert!(Instant::now() < deadline, "workspace {id} did not settle: {ws}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every file under `dir` with its content, but SQLite's `-wal`/`-shm` side files and the log:
/// for "nothing changed" checks.
pub fn tree(dir: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let path = entry.path();
            let name = path.strip_prefix(dir).unwrap().display().to_string();
            if path.is_dir() {
                stack.push(path);
            } else if !name.ends_with("-shm") && !name.ends_with("-wal") && !name.starts_with("drydock.log") {
                out.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}
