//! Upgrades of real old instances: the fixtures `tests/fixtures/instance-<version>` (0.1.0 and
//! 0.2.0, each made by the drydock binary of that release; see their READMEs) loaded into a
//! temp data dir on SQLite and on PostgreSQL. `start` refuses them; `upgrade --plan` changes
//! nothing; `upgrade --yes` backs them up, migrates them and the new server serves everything
//! the old one held; downgrades and unsupported jumps are refused; a failure midway puts the
//! instance back as it was.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{Backend, Instance, answer, text, tree};
use drydock_store::connect_sql;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::Row;

/// The fixture instance made by drydock `version`.
fn fixture_dir(version: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(format!("instance-{version}"))
}

/// The fixtures' users and their passwords (the administrator's is from its `init`).
const USERS: &[(&str, &str)] = &[
    ("admin", "admin-password-1"),
    ("alice", "alice-password"),
    ("bob", "bob-password-1"),
    ("carol", "carol-password"),
];

/// A data dir holding the fixture made by drydock `version`: its files, and its database
/// loaded from the text dump for the backend. The instance id is made unique, so Docker
/// objects of parallel tests never meet (it lives in the data dir only). Returns the instance
/// and a guard that removes its engine objects.
async fn fixture(backend: Backend, version: &str) -> Option<(Instance, drydock_docker::testing::InstanceGuard)> {
    let source = fixture_dir(version);
    assert!(source.join("drydock.ver").is_file(), "no fixture {}", source.display());
    let dd = Instance::new(backend, &[])?;
    let dir = dd.data_dir();
    for file in ["drydock.ver", "drydock.toml"] {
        std::fs::copy(source.join(file), dir.join(file)).unwrap();
    }
    let id = drydock_core::ids::instance_id();
    std::fs::write(dir.join("instance.id"), format!("{id}\n")).unwrap();
    let secrets = dir.join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    set_mode(&secrets, 0o700);
    std::fs::copy(source.join("secrets/admin-token"), secrets.join("admin-token")).unwrap();
    set_mode(&secrets.join("admin-token"), 0o600);
    match &dd.db {
        None => {
            // As drydock 0.1.0 and 0.2.0 left it: a WAL-mode file (connect_sql sets WAL, as
            // they did).
            let dump = std::fs::read_to_string(source.join("sqlite.sql")).unwrap();
            let store = connect_sql(&db_url(&dd), &Default::default()).await.unwrap();
            sqlx::raw_sql(&dump).execute(store.pool()).await.unwrap();
            // Everything into the main file now: a later connection's close must not move
            // pages into it, or the byte-for-byte "nothing changed" checks would see that.
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(store.pool()).await.unwrap();
            store.pool().close().await;
        }
        Some(db) => {
            let dump = source.join("postgres.sql");
            let out = std::process::Command::new("psql")
                .args([db.url.as_str(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f"])
                .arg(&dump)
                .output()
                .unwrap();
            assert!(out.status.success(), "loading the fixture: {}", text(&out));
        }
    }
    Some((dd, drydock_docker::testing::InstanceGuard::new(&id)))
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn db_url(dd: &Instance) -> String {
    match &dd.db {
        Some(db) => db.url.clone(),
        None => format!("sqlite://{}", dd.sqlite_path().display()),
    }
}

/// The database's schema version, its tables, and every row of every table as text.
async fn database(dd: &Instance) -> (i64, BTreeMap<String, Vec<String>>) {
    let store = connect_sql(&db_url(dd), &Default::default()).await.unwrap();
    let pool = store.pool();
    let tables_sql = match dd.backend {
        Backend::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
        Backend::Postgres => {
            "SELECT CAST(table_name AS TEXT) AS name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name"
        }
    };
    let tables: Vec<String> =
        sqlx::query(tables_sql).fetch_all(pool).await.unwrap().iter().map(|r| r.get::<String, _>("name")).collect();
    let mut contents = BTreeMap::new();
    for table in tables {
        let rows = sqlx::query(&format!("SELECT * FROM {table}")).fetch_all(pool).await.unwrap();
        let mut lines: Vec<String> = rows
            .iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| match row.try_get::<Option<i64>, _>(i) {
                        Ok(v) => format!("{v:?}"),
                        Err(_) => format!("{:?}", row.try_get::<Option<String>, _>(i).unwrap()),
                    })
                    .collect::<Vec<_>>()
                    .join("|")
            })
            .collect();
        lines.sort();
        contents.insert(table, lines);
    }
    let schema: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
        .fetch_one(pool)
        .await
        .unwrap()
        .get("v");
    store.pool().close().await;
    (schema, contents)
}

fn version_file(dd: &Instance) -> String {
    std::fs::read_to_string(dd.data_dir().join("drydock.ver")).unwrap().trim().to_string()
}

fn set_version_file(dd: &Instance, version: &str) {
    std::fs::write(dd.data_dir().join("drydock.ver"), format!("{version}\n")).unwrap();
}

fn upgrade(dd: &Instance, args: &[&str], fail_point: Option<&str>) -> (bool, String) {
    let mut all = vec!["upgrade"];
    all.extend_from_slice(args);
    let mut command = dd.command(&all);
    if let Some(point) = fail_point {
        command.env("DRYDOCK_FAIL_POINT", point);
    }
    let out = command.output().unwrap();
    (out.status.success(), text(&out))
}

/// `start` refuses the instance (foreground and detached), with `expected` in what it says.
fn start_refused(dd: &Instance, expected: &[&str]) {
    for args in [&["start", "--listen", "127.0.0.1:0"][..], &["start", "--detach", "--listen", "127.0.0.1:0"]] {
        let out = dd.cli(args);
        let t = text(&out);
        assert!(!out.status.success(), "{args:?} started: {t}");
        for e in expected {
            assert!(t.contains(e), "{args:?}: no '{e}' in: {t}");
        }
        assert!(!dd.data_dir().join("drydock.pid").exists(), "no server ran");
    }
}

async fn call(dd: &Instance, token: &str, path: &str) -> (StatusCode, Value) {
    answer(dd.req(Method::GET, path).bearer_auth(token).send().await.unwrap()).await
}

/// What the fixture holds, as the upgraded server serves it.
async fn serves_the_fixture(dd: &Instance) {
    // The fixture administrator's CLI token signs in.
    let admin = dd.admin_token();
    let (status, me) = call(dd, &admin, "/api/user").await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["name"], "admin");
    let (_, users) = call(dd, &admin, "/api/admin/user?maxItems=100").await;
    let mut names: Vec<&str> = users.as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, ["admin", "alice", "bob", "carol"]);
    let mut tokens = BTreeMap::new();
    for (name, password) in USERS {
        tokens.insert(*name, dd.token_for(name, password).await);
    }

    // Workspaces: alice's two and the administrator's one, all stopped.
    let (_, all) = call(dd, &admin, "/api/workspace?maxItems=100").await;
    let mut listed: Vec<(String, String, String)> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            assert_eq!(w["status"], "STOPPED", "{w}");
            let name = w["config"]["name"].as_str().unwrap().to_string();
            (w["namespace"].as_str().unwrap().to_string(), name, w["id"].as_str().unwrap().to_string())
        })
        .collect();
    listed.sort();
    let names: Vec<(&str, &str)> = listed.iter().map(|(ns, n, _)| (ns.as_str(), n.as_str())).collect();
    assert_eq!(names, [("admin", "tools"), ("alice", "alpha"), ("alice", "beta")]);
    let alpha = listed.iter().find(|(_, n, _)| n == "alpha").unwrap().2.clone();
    let beta = listed.iter().find(|(_, n, _)| n == "beta").unwrap().2.clone();
    let (_, mine) = call(dd, &tokens["alice"], "/api/workspace").await;
    assert_eq!(mine.as_array().unwrap().len(), 2, "{mine}");

    // Permissions: alpha is shared with bob (read, use); beta is not; carol manages users.
    let (status, shared) = call(dd, &tokens["bob"], &format!("/api/workspace/{alpha}")).await;
    assert_eq!(status, StatusCode::OK, "{shared}");
    assert_eq!(call(dd, &tokens["bob"], &format!("/api/workspace/{beta}")).await.0, StatusCode::NOT_FOUND);
    let (_, bobs) = call(dd, &tokens["bob"], &format!("/api/permissions/workspace?instance={alpha}")).await;
    assert_eq!(bobs["actions"], serde_json::json!(["read", "use"]), "{bobs}");
    let (_, carols) = call(dd, &tokens["carol"], "/api/permissions/system").await;
    assert_eq!(carols["actions"], serde_json::json!(["manageUsers"]), "{carols}");

    // Limits: alice's override.
    let alice_id = users.as_array().unwrap().iter().find(|u| u["name"] == "alice").unwrap()["id"].clone();
    let (status, limits) = call(dd, &admin, &format!("/api/resource/free/{}", alice_id.as_str().unwrap())).await;
    assert_eq!(status, StatusCode::OK, "{limits}");
    let amounts: BTreeMap<String, i64> = limits["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["type"].as_str().unwrap().to_string(), r["amount"].as_i64().unwrap()))
        .collect();
    assert_eq!(amounts, BTreeMap::from([("RAM".to_string(), 4096), ("workspace".to_string(), 7)]));
    // The stack, and no maintenance left behind.
    let (_, stacks) = call(dd, &tokens["alice"], "/api/stack").await;
    assert_eq!(stacks.as_array().unwrap().iter().map(|s| s["name"].clone()).collect::<Vec<_>>(), ["busybox"]);
    let (_, state) = answer(dd.req(Method::GET, "/api/system/state").send().await.unwrap()).await;
    assert_eq!(state["status"], "RUNNING", "{state}");
}

fn archive_in(output: &str) -> PathBuf {
    let line = output.lines().find_map(|l| l.trim().strip_prefix("backup written: ")).expect("the backup's path");
    PathBuf::from(line.trim())
}

async fn fixture_upgrades(backend: Backend) {
    let Some((mut dd, guard)) = fixture(backend, "0.1.0").await else { return };
    let version = dd.cli(&["version", "--json"]);
    let version: Value = serde_json::from_slice(&version.stdout).unwrap();
    assert_eq!(version["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(version["schema"], 6);
    assert_eq!(version["upgradesFrom"], serde_json::json!(["0.1.0", "0.2.0"]));
    assert_eq!(version["instanceVersion"], "0.1.0");
    let printed = text(&dd.cli(&["version"]));
    assert!(printed.contains("upgrades from: 0.1.0") && printed.contains("drydock upgrade"), "{printed}");

    // start does not touch an old instance; it names the way forward.
    let files = tree(dd.data_dir());
    let (schema, rows) = database(&dd).await;
    assert_eq!(schema, 4);
    start_refused(&dd, &["0.1.0", "drydock upgrade"]);

    // The plan: the checks, migration 5, the backup; nothing changes.
    let (ok, plan) = upgrade(&dd, &["--plan"], None);
    assert!(ok, "{plan}");
    for expected in ["schema 4", "5 system", "0.1.0 → 0.3.0", "back up the instance into", "Nothing was changed"] {
        assert!(plan.contains(expected), "no '{expected}' in the plan:\n{plan}");
    }
    assert!(!plan.contains("[refused]"), "{plan}");
    assert_eq!(tree(dd.data_dir()), files, "--plan changed files");
    assert_eq!(database(&dd).await, (schema, rows.clone()), "--plan changed the database");

    // Without --yes and without a terminal: refused, nothing changes.
    let (ok, out) = upgrade(&dd, &[], None);
    assert!(!ok && out.contains("--yes"), "{out}");
    assert_eq!(tree(dd.data_dir()), files);

    // The upgrade.
    let (ok, out) = upgrade(&dd, &["--yes"], None);
    assert!(ok, "{out}");
    for expected in ["maintenance", "migrating the database: 5 system", "drydock.ver: 0.1.0 → 0.3.0", "Upgraded"] {
        assert!(out.contains(expected), "no '{expected}' in:\n{out}");
    }
    let archive = archive_in(&out);
    assert!(archive.starts_with(dd.data_dir().join("backups")), "{}", archive.display());
    let name = archive.file_name().unwrap().to_string_lossy().to_string();
    assert!(name.starts_with("drydock-backup-0.1.0-"), "{name}");
    let verified = dd.cli(&["backup", "verify", &archive.display().to_string()]);
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(text(&verified).contains("drydock 0.1.0 (schema 4)"), "{}", text(&verified));
    assert_eq!(version_file(&dd), env!("CARGO_PKG_VERSION"));
    let (schema, after) = database(&dd).await;
    assert_eq!(schema, 6);
    assert!(after.contains_key("system_state") && after.contains_key("backup_runs"));
    assert_eq!(after["system_state"], Vec::<String>::new(), "maintenance is off again");
    assert_eq!(after["backup_runs"].len(), 1, "the upgrade's backup is in the history: {:?}", after["backup_runs"]);
    assert!(after["backup_runs"][0].contains("upgrade"), "{:?}", after["backup_runs"]);
    let upgraded = &after["audit_events"];
    assert!(
        upgraded.len() == 1 && upgraded[0].contains("system.upgrade") && upgraded[0].contains("\"cli\""),
        "{upgraded:?}"
    );
    for (table, before) in &rows {
        if table != "schema_migrations" {
            assert_eq!(&after[table], before, "{table} kept its rows");
        }
    }
    let leftovers: Vec<String> = std::fs::read_dir(dd.data_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("before-upgrade-") || n.contains("lock"))
        .collect();
    assert!(leftovers.is_empty(), "with a backup, the database copy goes: {leftovers:?}");

    // The upgraded instance serves what the old one held.
    dd.start().await;
    serves_the_fixture(&dd).await;
    dd.stop();

    // Again: nothing to do. The server left pages in SQLite's WAL that any later connection
    // may move into the main file, so the database is compared by its rows.
    let without_database = |dd: &Instance| {
        let mut files = tree(dd.data_dir());
        files.remove("drydock.db");
        files
    };
    let (files, rows) = (without_database(&dd), database(&dd).await);
    for args in [&["--yes"][..], &["--plan"]] {
        let (ok, out) = upgrade(&dd, args, None);
        assert!(ok && out.contains("Nothing to do"), "{out}");
    }
    assert_eq!(without_database(&dd), files);
    assert_eq!(database(&dd).await, rows);

    // The backup the upgrade made is a 0.1.0 one: restoring it migrates it as the upgrade did.
    let out = dd.cli(&["restore", &archive.display().to_string(), "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("migrated from schema 4 to 6"), "{}", text(&out));
    let aside = text(&out).split("kept in ").nth(1).unwrap().lines().next().unwrap().trim().to_string();
    assert_eq!(version_file(&dd), env!("CARGO_PKG_VERSION"));
    let (schema, restored) = database(&dd).await;
    assert_eq!(schema, 6);
    assert!(restored["audit_events"].iter().any(|e| e.contains("system.restore")), "{:?}", restored["audit_events"]);
    dd.start().await;
    serves_the_fixture(&dd).await;
    dd.stop();
    std::fs::remove_dir_all(aside).unwrap();
    drop(guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_upgrades_on_sqlite() {
    fixture_upgrades(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_upgrades_on_postgres() {
    fixture_upgrades(Backend::Postgres).await;
}

/// Text columns of the rows a query returns, `|`-joined, in its order.
async fn rows_of(dd: &Instance, sql: &str) -> Vec<String> {
    let store = connect_sql(&db_url(dd), &Default::default()).await.unwrap();
    let rows = sqlx::query(sql).fetch_all(store.pool()).await.unwrap();
    let lines =
        rows.iter().map(|row| (0..row.len()).map(|i| row.get::<String, _>(i)).collect::<Vec<_>>().join("|")).collect();
    store.pool().close().await;
    lines
}

/// The license history and the `license.accept` events (actor, target type).
async fn fair_source_accepted(dd: &Instance) -> (Vec<String>, Vec<String>) {
    let history = rows_of(dd, "SELECT kind, license_id, by_email FROM license_history ORDER BY seq").await;
    let events = rows_of(dd, "SELECT actor_name, target_type FROM audit_events WHERE action = 'license.accept'").await;
    (history, events)
}

/// The 0.2.0 fixture (schema 5, with a backup in its history) upgrades to schema 6: the audit
/// log begins with the upgrade, and the first start records the Fair Source acceptance.
async fn fixture_0_2_0_upgrades(backend: Backend) {
    let Some((mut dd, guard)) = fixture(backend, "0.2.0").await else { return };
    let version = dd.cli(&["version", "--json"]);
    let version: Value = serde_json::from_slice(&version.stdout).unwrap();
    assert_eq!(version["instanceVersion"], "0.2.0");

    // start does not touch it; it names the way forward.
    let files = tree(dd.data_dir());
    let (schema, rows) = database(&dd).await;
    assert_eq!(schema, 5);
    assert!(!rows.contains_key("audit_events") && !rows.contains_key("license_history"), "{:?}", rows.keys());
    let fixture_backups = rows["backup_runs"].clone();
    assert_eq!(fixture_backups.len(), 1, "the fixture's own backup: {fixture_backups:?}");
    assert!(fixture_backups[0].contains("\"manual\"") && fixture_backups[0].contains("\"ok\""), "{fixture_backups:?}");
    start_refused(&dd, &["0.2.0", "drydock upgrade"]);

    // The plan: migration 6 only, and the backup; nothing changes.
    let (ok, plan) = upgrade(&dd, &["--plan"], None);
    assert!(ok, "{plan}");
    for expected in ["schema 5", "6 audit", "0.2.0 → 0.3.0", "back up the instance into", "Nothing was changed"] {
        assert!(plan.contains(expected), "no '{expected}' in the plan:\n{plan}");
    }
    assert!(!plan.contains("5 system") && !plan.contains("[refused]"), "{plan}");
    assert_eq!(tree(dd.data_dir()), files, "--plan changed files");
    assert_eq!(database(&dd).await, (schema, rows.clone()), "--plan changed the database");

    // The upgrade, with its backup (a 0.2.0 one).
    let (ok, out) = upgrade(&dd, &["--yes"], None);
    assert!(ok, "{out}");
    for expected in ["maintenance", "migrating the database: 6 audit", "drydock.ver: 0.2.0 → 0.3.0", "Upgraded"] {
        assert!(out.contains(expected), "no '{expected}' in:\n{out}");
    }
    assert!(!out.contains("5 system"), "{out}");
    let archive = archive_in(&out);
    let name = archive.file_name().unwrap().to_string_lossy().to_string();
    assert!(name.starts_with("drydock-backup-0.2.0-"), "{name}");
    let verified = dd.cli(&["backup", "verify", &archive.display().to_string()]);
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(text(&verified).contains("drydock 0.2.0 (schema 5)"), "{}", text(&verified));
    assert_eq!(version_file(&dd), env!("CARGO_PKG_VERSION"));

    // Schema 6; every table kept its rows (the backup history gained the upgrade's backup).
    let (schema, after) = database(&dd).await;
    assert_eq!(schema, 6);
    for (table, before) in &rows {
        match table.as_str() {
            "schema_migrations" => {}
            "backup_runs" => {
                let added: Vec<&String> = after[table].iter().filter(|r| !before.contains(r)).collect();
                assert!(before.iter().all(|r| after[table].contains(r)), "{table} kept its rows: {:?}", after[table]);
                assert!(added.len() == 1 && added[0].contains("\"upgrade\""), "the upgrade's backup: {added:?}");
            }
            _ => assert_eq!(&after[table], before, "{table} kept its rows"),
        }
    }
    assert_eq!(after["system_state"], Vec::<String>::new(), "maintenance is off again");
    let events = "SELECT actor_name, action, target_type, outcome, changes FROM audit_events ORDER BY seq";
    let upgraded = rows_of(&dd, events).await;
    assert_eq!(upgraded.len(), 1, "{upgraded:?}");
    let (head, changes) = upgraded[0].rsplit_once('|').unwrap();
    assert_eq!(head, "cli|system.upgrade|system|success", "{upgraded:?}");
    let changes: Value = serde_json::from_str(changes).unwrap();
    assert_eq!(changes["version"], serde_json::json!({"before": "0.2.0", "after": env!("CARGO_PKG_VERSION")}));
    assert_eq!(changes["schema"], serde_json::json!({"before": 5, "after": 6}));
    assert_eq!(after["license_history"], Vec::<String>::new(), "no history before the first start");

    // The upgraded instance serves what the old one held, and its first start accepts the
    // Fair Source license: one history row, one event by drydock itself.
    dd.start().await;
    serves_the_fixture(&dd).await;
    let admin = dd.admin_token();
    let (_, backups) = call(&dd, &admin, "/api/system/backups?maxItems=10").await;
    let triggers: Vec<&str> = backups.as_array().unwrap().iter().map(|b| b["trigger"].as_str().unwrap()).collect();
    assert_eq!(triggers, ["upgrade", "manual"], "{backups}");
    let (status, license) = call(&dd, &admin, "/api/license").await;
    assert_eq!(status, StatusCode::OK, "{license}");
    assert_eq!(license["kind"], "FAIR_SOURCE", "{license}");
    assert_eq!(license["users"], 4, "{license}");
    let (_, chain) = call(&dd, &admin, "/api/audit/verify").await;
    assert_eq!(chain["intact"], true, "{chain}");
    dd.stop();
    let (history, events) = fair_source_accepted(&dd).await;
    assert_eq!(history.len(), 1, "{history:?}");
    assert!(history[0].starts_with("fairSourceAccepted|"), "{history:?}");
    assert_eq!(events, ["system|license"], "{events:?}");
    let log = rows_of(&dd, "SELECT action FROM audit_events ORDER BY seq").await;
    assert_eq!(log.first().map(String::as_str), Some("system.upgrade"), "the log begins with the upgrade: {log:?}");

    // Only the first start accepts it.
    dd.start().await;
    dd.stop();
    assert_eq!(fair_source_accepted(&dd).await, (history, events), "a second start records no acceptance");
    drop(guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_0_2_0_upgrades_on_sqlite() {
    fixture_0_2_0_upgrades(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_0_2_0_upgrades_on_postgres() {
    fixture_0_2_0_upgrades(Backend::Postgres).await;
}

async fn downgrades_and_jumps_are_refused(backend: Backend) {
    let Some((dd, guard)) = fixture(backend, "0.1.0").await else { return };
    let state = (tree(dd.data_dir()), database(&dd).await);
    let unchanged = |dd: &Instance, version: &str| {
        let mut files = state.0.clone();
        files.insert("drydock.ver".into(), format!("{version}\n").into_bytes());
        assert_eq!(tree(dd.data_dir()), files, "a refused upgrade changes nothing");
    };

    // An instance newer than the binary: no downgrade.
    set_version_file(&dd, "9.0.0");
    for args in [&["--yes"][..], &["--plan"]] {
        let (ok, out) = upgrade(&dd, args, None);
        assert!(!ok, "{out}");
        assert!(out.contains("newer than this drydock 0.3.0") && out.contains("downgrade"), "{out}");
        assert!(out.contains("run drydock 9.0.0 or newer"), "{out}");
    }
    unchanged(&dd, "9.0.0");
    start_refused(&dd, &["9.0.0", "newer than this drydock"]);

    // An unsupported jump: the intermediate release is named.
    set_version_file(&dd, "0.0.9");
    let (ok, out) = upgrade(&dd, &["--yes"], None);
    assert!(!ok, "{out}");
    assert!(out.contains("upgrades from 0.1.0, 0.2.0 only") && out.contains("upgrade it to 0.1.0 first"), "{out}");
    unchanged(&dd, "0.0.9");
    start_refused(&dd, &["0.0.9", "upgrade it to 0.1.0 first"]);

    // A damaged version file.
    set_version_file(&dd, "banana");
    let (ok, out) = upgrade(&dd, &["--plan"], None);
    assert!(!ok && out.contains("not a drydock version"), "{out}");

    // A database newer than the binary, whatever the version file says.
    set_version_file(&dd, "0.1.0");
    let store = connect_sql(&db_url(&dd), &Default::default()).await.unwrap();
    sqlx::query("INSERT INTO schema_migrations (version, name, applied) VALUES (999, 'from the future', 0)")
        .execute(store.pool())
        .await
        .unwrap();
    store.pool().close().await;
    let (ok, out) = upgrade(&dd, &["--yes"], None);
    assert!(!ok && out.contains("schema version 999") && out.contains("up to 6"), "{out}");
    assert_eq!(database(&dd).await.0, 999);
    assert_eq!(state.1.0, 4);

    // A database.url that points at no instance's database: nothing is created there.
    match backend {
        Backend::Sqlite => {
            let moved = dd.data_dir().join("elsewhere.db");
            std::fs::rename(dd.sqlite_path(), &moved).unwrap();
            let (ok, out) = upgrade(&dd, &["--yes"], None);
            assert!(!ok && out.contains("drydock.db is missing"), "{out}");
            assert!(!dd.sqlite_path().exists(), "no empty database was made");
        }
        Backend::Postgres => {
            let empty = common::PgDatabase::create(&common::postgres_url().unwrap());
            let out = dd.command(&["upgrade", "--yes"]).env("DRYDOCK_DATABASE__URL", &empty.url).output().unwrap();
            let t = text(&out);
            assert!(!out.status.success() && t.contains("holds no drydock schema"), "{t}");
        }
    }
    drop(guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downgrades_and_jumps_are_refused_on_sqlite() {
    downgrades_and_jumps_are_refused(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn downgrades_and_jumps_are_refused_on_postgres() {
    downgrades_and_jumps_are_refused(Backend::Postgres).await;
}

async fn a_failure_midway_rolls_back(backend: Backend) {
    let Some((mut dd, guard)) = fixture(backend, "0.1.0").await else { return };
    let files = tree(dd.data_dir());
    let rows = database(&dd).await;
    assert_eq!(rows.0, 4);

    // After the migrations (with a backup), and after the new version file (without one).
    for (point, args) in
        [("upgrade-after-migrate", &["--yes"][..]), ("upgrade-after-version", &["--yes", "--skip-backup"])]
    {
        let (ok, out) = upgrade(&dd, args, Some(point));
        assert!(!ok, "{point}: the injected failure fails the upgrade:\n{out}");
        assert!(out.contains("failure injected"), "{out}");
        assert!(
            out.contains("the upgrade was undone: the database is back at schema 4 and drydock.ver says 0.1.0 again"),
            "{point}: {out}"
        );
        assert!(out.contains("putting the database back"), "{out}");
        assert_eq!(version_file(&dd), "0.1.0", "{point}");
        assert_eq!(database(&dd).await, rows, "{point}: the database is as it was");
        // The data dir is as it was; the backup the upgrade made stays in backups/.
        let mut now = tree(dd.data_dir());
        now.retain(|name, _| !name.starts_with("backups/"));
        let mut before = files.clone();
        if backend == Backend::Sqlite {
            // Put back from the copy: the same rows (compared above), not the same bytes.
            assert!(now.remove("drydock.db").is_some() && before.remove("drydock.db").is_some());
        }
        assert_eq!(now, before, "{point}: the data dir is as it was");
        start_refused(&dd, &["0.1.0", "drydock upgrade"]);
    }

    // The instance put back upgrades, and serves.
    let (ok, out) = upgrade(&dd, &["--yes", "--skip-backup"], None);
    assert!(ok, "{out}");
    assert!(out.contains("is kept in"), "without a backup the database copy stays: {out}");
    let kept: Vec<PathBuf> = std::fs::read_dir(dd.data_dir())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("before-upgrade-"))
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    let copy = kept[0].join(if backend == Backend::Sqlite { "database.db" } else { "database.sql" });
    assert!(copy.is_file() && std::fs::read_to_string(kept[0].join("drydock.ver")).unwrap().trim() == "0.1.0");
    dd.start().await;
    serves_the_fixture(&dd).await;
    dd.stop();
    drop(guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_midway_rolls_back_on_sqlite() {
    a_failure_midway_rolls_back(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_midway_rolls_back_on_postgres() {
    a_failure_midway_rolls_back(Backend::Postgres).await;
}

/// A database behind its version file (e.g. put back by hand): start refuses it, naming
/// `drydock upgrade`, and the upgrade runs the missing migrations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_behind_its_version_file_is_upgraded() {
    let Some((mut dd, guard)) = fixture(Backend::Sqlite, "0.1.0").await else { return };
    set_version_file(&dd, env!("CARGO_PKG_VERSION"));
    let out = dd.cli(&["start", "--listen", "127.0.0.1:0"]);
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("schema version 4, older than") && t.contains("drydock upgrade"),
        "{t}"
    );
    let (ok, out) = upgrade(&dd, &["--yes", "--skip-backup"], None);
    assert!(ok && out.contains("5 system"), "{out}");
    assert_eq!(version_file(&dd), env!("CARGO_PKG_VERSION"));
    assert_eq!(database(&dd).await.0, 6);
    dd.start().await;
    serves_the_fixture(&dd).await;
    dd.stop();
    drop(guard);
}
