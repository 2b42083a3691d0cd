//! `drydock-bench audit-report`: the audit report (`GET /api/audit`) of an instance with
//! 10,000 users and 50,000 workspaces, against the baseline of the same rows read with raw
//! SQL from the bench process in the same run, on SQLite and, when `TEST_POSTGRES_URL` is
//! set, on PostgreSQL.
//!
//! The rows are written straight into the database of a fresh `drydock init` instance with
//! multi-row INSERTs, shaped as the store writes them (through the API the 50,000 creates
//! would take minutes): each workspace owned by one user, who holds every action on it;
//! one in five also shared with one or two other users with partial permissions.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use chrono::{SecondsFormat, Utc};
use drydock_core::Store;
use drydock_core::workspace::{DOMAIN_WORKSPACE, WORKSPACE_ACTIONS, WorkspaceConfig};
use drydock_store::SqlStore;
use sqlx::Row;

use crate::http::{self, Response};
use crate::instance::{Backend, Instance, drydock_bin, drydock_version};
use crate::util::{code_version, date, env_u32, load_average, machine, max, median, ms, thousands};

const HELP: &str = "\
usage: drydock-bench audit-report

Seeds 10,000 users and 50,000 workspaces (each owned by one user; one in five shared with one
or two other users with partial permissions) straight into the database of a fresh instance,
starts the real release server, then times sequential GET /api/audit (the text report) and
GET /api/audit?format=json with the administrator's token, each request followed by the
baseline: the same rows read with raw SQL from the benchmark process. On SQLite and, when
TEST_POSTGRES_URL is set, on a fresh database of that PostgreSQL server. Prints a markdown
table; fails only when a run is invalid (a non-200 answer, a report without every user and
every workspace line).

environment:
  DRYDOCK_BIN                the drydock binary (default: target/release/drydock in the workspace)
  TEST_POSTGRES_URL          a PostgreSQL server URL (its database is used to create and drop ours)
  BENCH_REQUESTS             measured requests of each kind (default 5; the figure is their median)
  BENCH_WARMUP_REQUESTS      unmeasured requests of each kind just before (default 1; 0: none)";

/// Users seeded, besides the administrator.
pub(crate) const USERS: usize = 10_000;
pub(crate) const WORKSPACES: usize = 50_000;
/// One workspace in this many is shared.
const SHARED_ONE_IN: u64 = 5;
/// The aim: the report in under 2 s.
const AIM_MS: f64 = 2_000.0;
/// Partial permissions a shared workspace gives, in the store's (canonical) order.
const PARTIAL: [&str; 5] = ["read", "read,use", "read,use,run", "read,use,run,configure", "read,setPermissions"];

pub fn run(args: &[String]) -> Result<()> {
    if !crate::util::no_arguments(args, HELP)? {
        return Ok(());
    }
    let settings =
        Settings { requests: env_u32("BENCH_REQUESTS", 5, 1)?, warmup: env_u32("BENCH_WARMUP_REQUESTS", 1, 0)? };
    let bin = drydock_bin("audit-report")?;
    let drydock_version = drydock_version(&bin)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start tokio")?;
    let load_before = load_average();
    let mut results = Vec::new();
    for backend in &Backend::from_env() {
        eprintln!("== {}", backend.label());
        results.push(bench_backend(&rt, &bin, backend, &settings)?);
    }
    let load = format!("{load_before} before the run, {} after it", load_average());
    print!("{}", report(&settings, &drydock_version, &load, &results));
    Ok(())
}

struct Settings {
    requests: u32,
    warmup: u32,
}

struct BackendResult {
    label: String,
    seed_seconds: f64,
    seeded: Seeded,
    cases: Vec<CaseResult>,
}

struct CaseResult {
    label: &'static str,
    path: &'static str,
    bytes: usize,
    /// Milliseconds, sorted.
    server: Vec<f64>,
    client: Vec<f64>,
    raw: Vec<f64>,
    /// Milliseconds, sorted, from the server's log: its store read, and its assembly and
    /// rendering (empty when the log does not say).
    store_read: Vec<f64>,
    build: Vec<f64>,
}

/// What was written: the lines the report must have.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seeded {
    /// Users in the store (the administrator included).
    users: usize,
    /// Workspace lines: one per owned workspace, one per share.
    workspace_lines: usize,
    shares: usize,
}

fn bench_backend(
    rt: &tokio::runtime::Runtime,
    bin: &Path,
    backend: &Backend,
    settings: &Settings,
) -> Result<BackendResult> {
    let mut instance = Instance::create(bin, backend)?;
    instance.init()?;
    let db_url = instance.database_url();
    let store = rt
        .block_on(drydock_store::connect_sql(&db_url, &Default::default()))
        .with_context(|| format!("cannot open the instance's database {}", drydock_store::describe_url(&db_url)))?;
    let started = Instant::now();
    let seeded = rt.block_on(seed(&store))?;
    let seed_seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "seeded {} users, {} workspaces and {} shares in {seed_seconds:.1} s",
        thousands(USERS as f64),
        thousands(WORKSPACES as f64),
        thousands(seeded.shares as f64)
    );

    instance.start()?;
    let url = instance.url()?;
    let token = instance.admin_token()?;
    eprintln!("drydock is running at {url}");
    let mut cases = Vec::new();
    for (label, path) in [("text", "/api/audit"), ("JSON", "/api/audit?format=json")] {
        cases.push(bench_case(rt, &store, &url, &token, label, path, seeded, settings)?);
    }
    phases_from_log(&instance.data_dir().join("drydock.log"), &mut cases, settings);
    let mut label = instance.label();
    if matches!(backend, Backend::Sqlite) {
        let version: String =
            rt.block_on(sqlx::query("SELECT sqlite_version() AS v").fetch_one(store.pool()))?.try_get("v")?;
        label = format!("{label} {version}");
    }
    rt.block_on(store.pool().close());
    instance.stop()?;
    Ok(BackendResult { label, seed_seconds, seeded, cases })
}

/// A small deterministic mix (splitmix64): which workspaces are shared, with whom, how.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Inserts `rows` (each `columns` values) into `table` in multi-row INSERTs of `per` rows.
async fn insert_all(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    table: &str,
    columns: &[&str],
    rows: &[Vec<Value>],
) -> Result<()> {
    let per = 4_000 / columns.len();
    for chunk in rows.chunks(per) {
        let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
        let mut n = 0;
        for (i, _) in chunk.iter().enumerate() {
            sql.push_str(if i == 0 { "(" } else { ", (" });
            for c in 0..columns.len() {
                n += 1;
                let _ = write!(sql, "{}${n}", if c == 0 { "" } else { ", " });
            }
            sql.push(')');
        }
        let mut query = sqlx::query(&sql);
        for row in chunk {
            for value in row {
                query = match value {
                    Value::Text(t) => query.bind(t.as_str()),
                    Value::Int(i) => query.bind(*i),
                    Value::Null => query.bind(Option::<String>::None),
                };
            }
        }
        query.execute(&mut **tx).await.with_context(|| format!("cannot insert into {table}"))?;
    }
    Ok(())
}

enum Value {
    Text(String),
    Int(i64),
    Null,
}

/// `user00001` … `user10000` and 50,000 workspaces `ws-00001` … (each user owns five), in
/// one transaction.
pub(crate) async fn seed(store: &SqlStore) -> Result<Seeded> {
    use Value::{Int, Null, Text};
    let password_hash = drydock_core::secret::hash_password("bench-user-password-1").context("cannot hash")?;
    let now = Utc::now();
    let now_ms = now.timestamp_millis();
    let now_text = now.to_rfc3339_opts(SecondsFormat::Millis, true);
    let user_ids: Vec<String> = (0..USERS).map(|_| drydock_core::ids::user_id()).collect();
    let users: Vec<Vec<Value>> = user_ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let name = format!("user{:05}", i + 1);
            vec![
                Text(id.clone()),
                Text(format!("{name}@example.com")),
                Text(name),
                Text(password_hash.clone()),
                Int(now_ms),
            ]
        })
        .collect();

    let attributes = serde_json::json!({"created": now_text, "updated": now_text}).to_string();
    let owner_actions = WORKSPACE_ACTIONS.join(",");
    let mut workspaces = Vec::with_capacity(WORKSPACES);
    let mut permissions = Vec::with_capacity(WORKSPACES * 13 / 10);
    let mut shares = 0;
    for k in 0..WORKSPACES {
        let id = format!("wksp-{}", drydock_core::ids::random_lower(16));
        let owner = k % USERS;
        let name = format!("ws-{:05}", k + 1);
        // The shape a workspace of the API has: a one-machine dockerimage config, as the
        // store serializes it.
        let config: WorkspaceConfig = serde_json::from_value(serde_json::json!({
            "name": name, "defaultEnv": "default", "environments": {"default": {
                "recipe": {"type": "dockerimage", "location": "eclipse/ubuntu_jdk8"},
                "machines": {"dev": {"attributes": {"memoryLimitBytes": "2147483648"}}}}}}))?;
        workspaces.push(vec![
            Text(id.clone()),
            Text(user_ids[owner].clone()),
            Text(name),
            Text(serde_json::to_string(&config)?),
            Text("STOPPED".into()),
            Null,
            Text(attributes.clone()),
            Int(now_ms),
            Int(now_ms),
        ]);
        let permission = |user: &str, actions: &str| {
            vec![Text(user.to_string()), Text(DOMAIN_WORKSPACE.into()), Text(id.clone()), Text(actions.to_string())]
        };
        permissions.push(permission(&user_ids[owner], &owner_actions));
        let dice = mix(k as u64);
        if dice.is_multiple_of(SHARED_ONE_IN) {
            let with = 1 + (dice >> 8) % 2;
            for j in 0..with {
                // Another user than the owner, and than the first one shared with.
                let other = (owner + 1 + j as usize + ((dice >> 16) as usize % (USERS - 3))) % USERS;
                let actions = PARTIAL[((dice >> (24 + 4 * j)) % PARTIAL.len() as u64) as usize];
                permissions.push(permission(&user_ids[other], actions));
                shares += 1;
            }
        }
    }

    let mut tx = store.pool().begin().await?;
    insert_all(&mut tx, "users", &["id", "email", "name", "password_hash", "created"], &users).await?;
    let columns = ["id", "owner_id", "name", "config", "status", "runtime", "attributes", "created", "updated"];
    insert_all(&mut tx, "workspaces", &columns, &workspaces).await?;
    insert_all(&mut tx, "permissions", &["user_id", "domain_id", "instance_id", "actions"], &permissions).await?;
    tx.commit().await?;
    if store.backend() == "postgres" {
        // What autovacuum would have done by the time an instance has these rows.
        sqlx::query("ANALYZE").execute(store.pool()).await.context("ANALYZE")?;
    } else {
        // What SQLite's automatic checkpoints would have done by then: the rows are in the
        // database file, not in a 40 MB write-ahead log every read has to consult.
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(store.pool()).await.context("checkpoint")?;
    }
    Ok(Seeded { users: USERS + 1, workspace_lines: WORKSPACES + shares, shares })
}

#[allow(clippy::too_many_arguments)]
fn bench_case(
    rt: &tokio::runtime::Runtime,
    store: &SqlStore,
    url: &str,
    token: &str,
    label: &'static str,
    path: &'static str,
    seeded: Seeded,
    settings: &Settings,
) -> Result<CaseResult> {
    eprintln!("measuring GET {path} ({} warm-up, {} measured)", settings.warmup, settings.requests);
    let bearer = format!("Bearer {token}");
    let (mut server, mut client, mut raw) = (Vec::new(), Vec::new(), Vec::new());
    let mut bytes = 0;
    for i in 0..settings.warmup + settings.requests {
        let started = Instant::now();
        let r = http::request(url, "GET", path, &[("Authorization", bearer.as_str())], None)?;
        let elapsed = started.elapsed();
        check(&r, path, seeded)?;
        let (rows, raw_elapsed) = rt.block_on(raw_rows(store))?;
        ensure!(
            rows == seeded.users + WORKSPACES + seeded.shares,
            "the raw query read {rows} rows, not the {} seeded",
            seeded.users + WORKSPACES + seeded.shares
        );
        if i >= settings.warmup {
            server.push(server_time_ms(&r).with_context(|| format!("GET {path}"))?);
            client.push(ms(elapsed));
            raw.push(ms(raw_elapsed));
            bytes = r.body.len();
        }
    }
    for v in [&mut server, &mut client, &mut raw] {
        v.sort_by(f64::total_cmp);
    }
    eprintln!(
        "  server median {:.0} ms, client median {:.0} ms, raw SQL median {:.0} ms, {} bytes",
        median(&server),
        median(&client),
        median(&raw),
        thousands(bytes as f64)
    );
    Ok(CaseResult { label, path, bytes, server, client, raw, store_read: Vec::new(), build: Vec::new() })
}

/// A 200 with every user and every workspace line (text), or the same counts (JSON).
fn check(r: &Response, path: &str, seeded: Seeded) -> Result<()> {
    ensure!(r.status == 200, "GET {path} answered {}, not 200:\n{:.2000}", r.status, r.body);
    if path.contains("format=json") {
        let report: serde_json::Value =
            serde_json::from_str(&r.body).with_context(|| format!("GET {path}: not JSON"))?;
        let users = report["users"].as_array().map(Vec::len).unwrap_or(0);
        let lines: usize = report["users"]
            .as_array()
            .map(|us| us.iter().map(|u| u["workspaces"].as_array().map(Vec::len).unwrap_or(0)).sum())
            .unwrap_or(0);
        ensure!(report["usersCount"] == seeded.users, "GET {path}: usersCount is {}", report["usersCount"]);
        ensure!(users == seeded.users, "GET {path}: {users} users, not {}", seeded.users);
        ensure!(lines == seeded.workspace_lines, "GET {path}: {lines} workspaces, not {}", seeded.workspace_lines);
        return Ok(());
    }
    let disposition = r.header("content-disposition").unwrap_or("");
    ensure!(disposition.starts_with("attachment; filename=report_"), "GET {path}: Content-Disposition {disposition:?}");
    let users_line = format!("Number of users: {}\n", seeded.users);
    ensure!(r.body.contains(&users_line), "GET {path}: no line {users_line:?}");
    let users = r.body.lines().filter(|l| l.contains(" is owner of ")).count();
    let lines = r.body.lines().filter(|l| l.starts_with("   └ ")).count();
    ensure!(users == seeded.users, "GET {path}: {users} user lines, not {}", seeded.users);
    ensure!(lines == seeded.workspace_lines, "GET {path}: {lines} workspace lines, not {}", seeded.workspace_lines);
    Ok(())
}

/// `app;dur=<ms>` of the `Server-Timing` header.
fn server_time_ms(r: &Response) -> Result<f64> {
    let header = r.header("server-timing").context("no Server-Timing header")?;
    header
        .split(',')
        .map(str::trim)
        .find_map(|metric| metric.strip_prefix("app;dur=").and_then(|d| d.parse().ok()))
        .with_context(|| format!("Server-Timing '{header}' has no app;dur="))
}

/// The baseline: the reads the report makes, with raw SQL on the benchmark's own pool to
/// the same database (sqlx's `Any` driver, as the server), every column decoded: the
/// license history, then in one transaction the users and every workspace with its
/// permissions. The rows read, and the time.
async fn raw_rows(store: &SqlStore) -> Result<(usize, Duration)> {
    let started = Instant::now();
    let mut rows = 0;
    for row in sqlx::query("SELECT seq, time, kind, license_id, by_email FROM license_history ORDER BY seq")
        .fetch_all(store.pool())
        .await?
    {
        let _: (i64, i64, String, String, String) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?, row.try_get(4)?);
        rows += 1;
    }
    let mut tx = store.pool().begin().await?;
    if store.backend() == "postgres" {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    }
    for row in sqlx::query("SELECT id, email FROM users").fetch_all(&mut *tx).await? {
        let _: (String, String) = (row.try_get("id")?, row.try_get("email")?);
        rows += 1;
    }
    for row in sqlx::query(
        "SELECT w.id AS workspace_id, w.name AS name, w.owner_id AS owner_id, \
         p.user_id AS user_id, p.actions AS actions \
         FROM workspaces w LEFT JOIN permissions p ON p.domain_id = $1 AND p.instance_id = w.id",
    )
    .bind(DOMAIN_WORKSPACE)
    .fetch_all(&mut *tx)
    .await?
    {
        let _: (String, String, String, Option<String>, Option<String>) = (
            row.try_get("workspace_id")?,
            row.try_get("name")?,
            row.try_get("owner_id")?,
            row.try_get("user_id")?,
            row.try_get("actions")?,
        );
        rows += 1;
    }
    tx.commit().await?;
    Ok((rows, started.elapsed()))
}

/// The server logs each report's phases (`audit report generated … read_ms=N build_ms=N`);
/// they are read back for the measured requests of each case, in order. Without them the
/// table says n/a; the run stays valid.
fn phases_from_log(log: &Path, cases: &mut [CaseResult], settings: &Settings) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let phases: Vec<(f64, f64)> = text
        .lines()
        .filter(|l| l.contains("audit report generated"))
        .filter_map(|l| {
            let plain = strip_ansi(l);
            Some((field_ms(&plain, "read_ms=")?, field_ms(&plain, "build_ms=")?))
        })
        .collect();
    let per_case = (settings.warmup + settings.requests) as usize;
    if phases.len() != per_case * cases.len() {
        eprintln!(
            "note: {} report lines in {}, not {}: no phases",
            phases.len(),
            log.display(),
            per_case * cases.len()
        );
        return;
    }
    for (case, chunk) in cases.iter_mut().zip(phases.chunks(per_case)) {
        let measured = &chunk[settings.warmup as usize..];
        case.store_read = measured.iter().map(|p| p.0).collect();
        case.build = measured.iter().map(|p| p.1).collect();
        case.store_read.sort_by(f64::total_cmp);
        case.build.sort_by(f64::total_cmp);
    }
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn field_ms(line: &str, name: &str) -> Option<f64> {
    let rest = &line[line.find(name)? + name.len()..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

fn format_ms(v: f64) -> String {
    if v < 10.0 { format!("{v:.2} ms") } else { format!("{v:.0} ms") }
}

fn phase(sorted: &[f64]) -> String {
    if sorted.is_empty() { "n/a".into() } else { format_ms(median(sorted)) }
}

fn report(settings: &Settings, drydock_version: &str, load: &str, results: &[BackendResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## drydock-bench audit-report, {}\n", date());
    let _ = writeln!(out, "- machine: {}", machine());
    let _ = writeln!(out, "- load average (1, 5, 15 min): {load}");
    let _ = writeln!(out, "- server: {drydock_version} ({}), on 127.0.0.1, default config", code_version());
    for r in results {
        let _ = writeln!(
            out,
            "- data on {}: {} users (the administrator included), {} workspaces, {} shares \
             (report lines: {} workspace lines); seeding took {:.1} s",
            r.label,
            thousands(r.seeded.users as f64),
            thousands(WORKSPACES as f64),
            thousands(r.seeded.shares as f64),
            thousands(r.seeded.workspace_lines as f64),
            r.seed_seconds
        );
    }
    let _ = writeln!(
        out,
        "- requests: {} of each kind, sequential, one connection each, after {} unmeasured; the \
         administrator's Bearer token",
        settings.requests, settings.warmup
    );
    let _ = writeln!(
        out,
        "- server time: the `Server-Timing: app;dur=` header; client: from connect to the last byte read"
    );
    let _ = writeln!(
        out,
        "- baseline: the same rows (history, users, workspaces joined with their permissions) with \
         raw SQL from the benchmark process (sqlx, same driver), right after each request\n"
    );
    let _ = writeln!(
        out,
        "- phases: the server's log line of each report: its store read, and its assembly and \
         rendering (on a blocking thread)\n"
    );
    let _ = writeln!(
        out,
        "| backend | report | size | server median | server max | client median | store read | \
         assemble + render | raw SQL median | report / raw |"
    );
    let _ = writeln!(out, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in results {
        for c in &r.cases {
            let _ = writeln!(
                out,
                "| {} | {}: `GET {}` | {:.1} MB | {} | {} | {} | {} | {} | {} | {:.1} |",
                r.label,
                c.label,
                c.path,
                c.bytes as f64 / 1e6,
                format_ms(median(&c.server)),
                format_ms(max(&c.server)),
                format_ms(median(&c.client)),
                phase(&c.store_read),
                phase(&c.build),
                format_ms(median(&c.raw)),
                median(&c.server) / median(&c.raw)
            );
        }
    }
    let worst = results
        .iter()
        .flat_map(|r| r.cases.iter().map(move |c| (r.label.as_str(), c)))
        .max_by(|a, b| median(&a.1.client).total_cmp(&median(&b.1.client)));
    if let Some((backend, worst)) = worst {
        let met = median(&worst.client) < AIM_MS;
        let _ = writeln!(
            out,
            "\nAim (the report of {} users and {} workspaces in under 2 s, judged on the client median): {} \
             (slowest: {} for {} on {backend}).",
            thousands(USERS as f64),
            thousands(WORKSPACES as f64),
            if met { "met" } else { "NOT met" },
            format_ms(median(&worst.client)),
            worst.label
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_phases_of_a_log_line() {
        let line = "2026-11-30T13:51:09Z  INFO drydock_core::audit: audit report generated \u{1b}[3mread_ms\u{1b}[0m\u{1b}[2m=\u{1b}[0m412 build_ms=37";
        let plain = strip_ansi(line);
        assert_eq!(field_ms(&plain, "read_ms="), Some(412.0));
        assert_eq!(field_ms(&plain, "build_ms="), Some(37.0));
    }

    #[test]
    fn about_one_in_five_workspaces_is_shared_never_with_its_owner() {
        let shared = (0..WORKSPACES as u64).filter(|k| mix(*k).is_multiple_of(SHARED_ONE_IN)).count();
        assert!((9_000..11_000).contains(&shared), "{shared}");
        for k in 0..WORKSPACES {
            let dice = mix(k as u64);
            let owner = k % USERS;
            let others: Vec<usize> =
                (0..2).map(|j| (owner + 1 + j + ((dice >> 16) as usize % (USERS - 3))) % USERS).collect();
            assert!(!others.contains(&owner) && others[0] != others[1]);
        }
    }
}
