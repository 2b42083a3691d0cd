//! The instance's life on the command line: init, start (foreground and detached), stop,
//! status, and every way a start can be refused.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::{ADMIN_PASSWORD, Backend, Instance, answer, text};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

#[tokio::test]
async fn init_creates_a_complete_instance_once() {
    let mut dd =
        Instance::new(Backend::Sqlite, &[("DRYDOCK_AUTH__SESSION_TTL", "12h"), ("DRYDOCK_METRICS__PUBLIC", "true")])
            .unwrap();
    let out = dd.cli(&["init", "--admin-name", "root", "--admin-email", "root@example.com"]);
    assert!(out.status.success(), "{}", text(&out));
    let printed = stdout(&out);
    let password = printed.lines().find_map(|l| l.trim().strip_prefix("password:")).unwrap().trim().to_string();
    assert!(password.len() >= 16);

    let dir = dd.data_dir().to_path_buf();
    let kept = std::fs::read_to_string(dir.join("secrets/initial-admin-password")).unwrap();
    assert_eq!(kept.trim(), password);
    for secret in ["initial-admin-password", "admin-token"] {
        let mode = std::fs::metadata(dir.join("secrets").join(secret)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{secret}");
    }
    assert_eq!(std::fs::metadata(dir.join("secrets")).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::read_to_string(dir.join("drydock.ver")).unwrap().trim(), env!("CARGO_PKG_VERSION"));
    let id = std::fs::read_to_string(dir.join("instance.id")).unwrap();
    assert!(id.trim().len() >= 8 && id.trim().chars().all(|c| c.is_ascii_alphanumeric()));
    // drydock.toml: every setting, commented, with the env overrides written in.
    let toml = std::fs::read_to_string(dir.join("drydock.toml")).unwrap();
    assert!(toml.contains("session_ttl = \"12h\"") && toml.contains("public = true"), "{toml}");
    assert!(toml.contains("listen = \"127.0.0.1:8080\"") && toml.contains("# "));

    // A second init refuses and says what to do instead.
    let again = dd.cli(&["init"]);
    assert!(!again.status.success());
    assert!(text(&again).contains("already holds a drydock instance") && text(&again).contains("drydock start"));
    assert_eq!(std::fs::read_to_string(dir.join("instance.id")).unwrap(), id, "nothing changed");

    // The generated password signs in; it never reaches the log.
    let out = dd.cli(&["start", "--detach", "--listen", "127.0.0.1:0"]);
    assert!(out.status.success(), "{}", text(&out));
    dd.url = std::fs::read_to_string(dir.join("drydock.url")).unwrap().trim().to_string();
    dd.token_for("root", &password).await;
    let r = dd.req(Method::GET, "/metrics").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "metrics.public from the env at init");
    assert!(dd.cli(&["stop"]).status.success());
    let log = std::fs::read_to_string(dir.join("drydock.log")).unwrap();
    assert!(!log.contains(&password) && !log.contains("dds_") && !log.contains("ddt_"), "{log}");
}

#[tokio::test]
async fn start_initializes_detaches_and_stops() {
    let dd = Instance::new(Backend::Sqlite, &[]).unwrap();
    let dir = dd.data_dir().to_path_buf();
    let out = dd.cli(&["start", "--detach", "--listen", "127.0.0.1:0"]);
    assert!(out.status.success(), "{}", text(&out));
    let printed = stdout(&out);
    assert!(printed.contains("initializing") && printed.contains("is running at http://127.0.0.1:"), "{printed}");
    assert!(printed.contains("password:") && printed.contains("Sign in"), "{printed}");

    let status = dd.cli(&["status", "--json"]);
    assert!(status.status.success(), "{}", text(&status));
    let status: Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(status["running"], true);
    assert_eq!(status["database"], "sqlite");
    let pid = status["pid"].as_i64().unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("drydock.pid")).unwrap().trim(), pid.to_string());

    // A second server on the same instance is refused.
    let second = dd.cli(&["start", "--listen", "127.0.0.1:0"]);
    assert!(!second.status.success() && text(&second).contains("already running"), "{}", text(&second));

    let stop = dd.cli(&["stop"]);
    assert!(stop.status.success() && stdout(&stop).contains("stopped"), "{}", text(&stop));
    assert!(!dir.join("drydock.pid").exists());
    let status = dd.cli(&["status"]);
    assert_eq!(status.status.code(), Some(3), "status exits 3 when stopped");
    assert!(stdout(&status).contains("stopped"));
    let again = dd.cli(&["stop"]);
    assert!(again.status.success() && stdout(&again).contains("not running"));

    // A stale pid file (its process is gone) is ignored.
    std::fs::write(dir.join("drydock.pid"), "999999999\n").unwrap();
    let status = dd.cli(&["status", "--json"]);
    assert_eq!(serde_json::from_slice::<Value>(&status.stdout).unwrap()["running"], false);
    let out = dd.cli(&["restart", "--listen", "127.0.0.1:0"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(dd.cli(&["stop"]).status.success());
}

#[tokio::test]
async fn bad_config_stops_start_naming_source_and_key() {
    let dd = Instance::init(Backend::Sqlite).unwrap();
    let file = dd.data_dir().join("drydock.toml");
    let good = std::fs::read_to_string(&file).unwrap();

    std::fs::write(&file, format!("{good}\n[extra]\nkey = 1\n")).unwrap();
    let out = dd.cli(&["start", "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("drydock.toml") && text(&out).contains("unknown key 'extra'"), "{}", text(&out));

    std::fs::write(&file, good.replace("max_connections = 8", "max_connections = \"eight\"")).unwrap();
    let out = dd.cli(&["start", "--listen", "127.0.0.1:0"]);
    assert!(text(&out).contains("database.max_connections") && text(&out).contains("integer"), "{}", text(&out));

    std::fs::write(&file, &good).unwrap();
    for (var, value, key) in [
        ("DRYDOCK_SERVER__PORT", "1", "server.port"),
        ("DRYDOCK_AUTH__SESSION_TTL", "soon", "auth.session_ttl"),
        ("DRYDOCK_DATABASE__URL", "mysql://x", "database.url"),
        ("DRYDOCK_LOG__LEVEL", "=;=", "log.level"),
    ] {
        let out = dd.command(&["start", "--listen", "127.0.0.1:0"]).env(var, value).output().unwrap();
        assert!(!out.status.success());
        let t = text(&out);
        assert!(t.contains(var) && t.contains(key), "{var}: {t}");
        assert_eq!(t.trim().lines().count(), 1, "one line: {t}");
    }
    let out = dd.cli(&["start", "--listen", "nowhere"]);
    assert!(text(&out).contains("--listen") && text(&out).contains("server.listen"), "{}", text(&out));
}

#[tokio::test]
async fn a_taken_port_and_an_unwritable_dir_are_one_line_errors() {
    let dd = Instance::init(Backend::Sqlite).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = dd.cli(&["start", "--listen", &addr]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("cannot listen on") && t.contains(&addr), "{t}");
    assert!(!dd.data_dir().join("drydock.pid").exists());
    let detached = dd.cli(&["start", "--detach", "--listen", &addr]);
    assert!(!detached.status.success() && text(&detached).contains("cannot listen on"), "{}", text(&detached));

    let file = tempfile::NamedTempFile::new().unwrap();
    let below_a_file = file.path().join("data");
    let out = std::process::Command::new(common::BIN)
        .args(["init", "--data-dir"])
        .arg(&below_a_file)
        .env_remove("DRYDOCK_DATA_DIR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(text(&out).contains("cannot create the data directory"), "{}", text(&out));
}

#[tokio::test]
async fn an_unreachable_postgres_is_one_line_and_leaves_no_instance() {
    let dd = Instance::new(
        Backend::Sqlite,
        &[("DRYDOCK_DATABASE__URL", "postgres://drydock:secret-pw@127.0.0.1:1/drydock")],
    )
    .unwrap();
    let out = dd.cli(&["init", "--admin-password", ADMIN_PASSWORD]);
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("cannot open the database postgres://127.0.0.1:1/drydock"), "{t}");
    assert!(!t.contains("secret-pw"), "the password is not shown: {t}");
    assert_eq!(t.trim().lines().count(), 1, "{t}");
    assert!(!dd.data_dir().join("drydock.ver").exists());
}

async fn bump_schema(dd: &Instance, url: &str) {
    let store = drydock_store::connect_sql(url, &Default::default()).await.unwrap();
    sqlx::query("INSERT INTO schema_migrations (version, name, applied) VALUES (999, 'from the future', 0)")
        .execute(store.pool())
        .await
        .unwrap();
    let _ = dd;
}

async fn newer_schema_is_refused(backend: Backend) {
    let Some(dd) = Instance::init(backend) else { return };
    let url = match &dd.db {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}", dd.sqlite_path().display()),
    };
    bump_schema(&dd, &url).await;
    let out = dd.cli(&["start", "--listen", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let t = text(&out);
    let known = drydock_store::MIGRATIONS_SQLITE.len();
    assert!(t.contains("schema version 999") && t.contains(&format!("up to {known}")), "{t}");
}

#[tokio::test]
async fn newer_schema_is_refused_sqlite() {
    newer_schema_is_refused(Backend::Sqlite).await;
}

#[tokio::test]
async fn newer_schema_is_refused_postgres() {
    newer_schema_is_refused(Backend::Postgres).await;
}

#[tokio::test]
async fn https_when_tls_is_configured() {
    let mut dd = Instance::init(Backend::Sqlite).unwrap();
    let dir = dd.data_dir().to_path_buf();
    let out = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost"])
        .args(["-keyout", dir.join("tls.key").to_str().unwrap(), "-out", dir.join("tls.crt").to_str().unwrap()])
        .output()
        .expect("openssl runs");
    assert!(out.status.success(), "{}", text(&out));
    dd.env.push(("DRYDOCK_TLS__CERT".into(), "tls.crt".into()));
    dd.env.push(("DRYDOCK_TLS__KEY".into(), "tls.key".into()));
    dd.start().await;
    assert!(dd.url.starts_with("https://"), "{}", dd.url);
    let r = dd.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["set-cookie"].to_str().unwrap().contains("; Secure"));
    let plain = dd.url.replace("https://", "http://");
    assert!(reqwest::get(format!("{plain}/api/health")).await.is_err(), "no plain HTTP on the TLS port");
    dd.stop();
}

#[tokio::test]
async fn sessions_expire_and_last_use_is_kept() {
    let mut dd = Instance::init_with(Backend::Sqlite, &[("DRYDOCK_AUTH__SESSION_TTL", "2s")]).unwrap();
    dd.start().await;
    let session = dd.token_for("admin", ADMIN_PASSWORD).await;
    let (_, token) = answer(
        dd.req(Method::POST, "/api/token").bearer_auth(&session).json(&json!({"name": "t"})).send().await.unwrap(),
    )
    .await;
    let token = token["token"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = dd.req(Method::GET, "/api/user").bearer_auth(&session).send().await.unwrap();
        if r.status() == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(Instant::now() < deadline, "the session never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The token lives on; its last use is recorded (written at the latest when the server stops).
    assert_eq!(dd.req(Method::GET, "/api/user").bearer_auth(&token).send().await.unwrap().status(), StatusCode::OK);
    dd.stop();
    dd.start().await;
    let (_, tokens) = answer(dd.req(Method::GET, "/api/token").bearer_auth(&token).send().await.unwrap()).await;
    let used = tokens.as_array().unwrap().iter().find(|t| t["name"] == "t").unwrap();
    assert!(used["lastUsed"].is_string(), "{tokens}");
    dd.stop();
}
