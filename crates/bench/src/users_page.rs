//! `drydock-bench users-page`: the server time of one page of the dashboard's user list
//! (`GET /admin/users`, 50 users a page) with 10,000 users in the store, against the same
//! data fetched with raw SQL from the bench process in the same run as the baseline, on
//! SQLite and, when `TEST_POSTGRES_URL` is set, on PostgreSQL.
//!
//! The users are written straight into the store between `drydock init` and
//! `drydock start` (the API would spend ~20 ms of argon2 on each); they all share one
//! precomputed password hash. Requests are sequential, one connection each; the server
//! time is what the server reports in its `Server-Timing: app;dur=<ms>` header.

use drydock_core::audit_log::{Actor, NewEvent, Target};
use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use chrono::Utc;
use drydock_core::{NewUser, Store};
use drydock_store::SqlStore;
use sqlx::Row;

use crate::http::{self, Response};
use crate::instance::{ADMIN_NAME, ADMIN_PASSWORD, Backend, Instance, drydock_bin, drydock_version};
use crate::util::{code_version, date, env_u32, load_average, machine, max, median, ms, percentile, thousands};

const HELP: &str = "\
usage: drydock-bench users-page

Seeds 10,000 users straight into the store of a fresh instance, then times, with the
administrator's session cookie, sequential requests for page 1 of GET /admin/users, a deep
page (?page=150), a search on the full page (?q=12) and the htmx fragment
GET /admin/users/table?q=12, each against the same data fetched with raw SQL from the
benchmark process (the baseline), on SQLite and, when TEST_POSTGRES_URL is set, on a fresh
database of that PostgreSQL server. Server time is the Server-Timing header's.
Prints a markdown table; fails only when a run is invalid (a non-200 answer, a page without
the expected user rows).

environment:
  DRYDOCK_BIN                the drydock binary (default: target/release/drydock in the workspace)
  TEST_POSTGRES_URL          a PostgreSQL server URL (its database is used to create and drop ours)
  BENCH_REQUESTS             measured requests of each kind (default 100)
  BENCH_WARMUP_REQUESTS      unmeasured requests of each kind just before (default 5; 0: none)";

/// The users seeded, besides the administrator.
const USERS: u32 = 10_000;
/// The dashboard's page size.
const PAGE_SIZE: u64 = 50;
/// The deep page asked for: rows 7,451 to 7,500 of 10,001.
const DEEP_PAGE: u64 = 150;
/// The search: "12" is in the names and e-mails of 299 of user00001…user10000.
const SEARCH: &str = "12";
/// The issue's aim: one page in under 50 ms of server time.
const AIM_MS: f64 = 50.0;

pub fn run(args: &[String]) -> Result<()> {
    if !crate::util::no_arguments(args, HELP)? {
        return Ok(());
    }
    let settings =
        Settings { requests: env_u32("BENCH_REQUESTS", 100, 1)?, warmup: env_u32("BENCH_WARMUP_REQUESTS", 5, 0)? };
    let bin = drydock_bin("users-page")?;
    let drydock_version = drydock_version(&bin)?;
    // The bench process's own database work (seeding, the baseline) runs here; the HTTP
    // requests are plain blocking I/O outside it.
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

/// One kind of request, and the raw SQL that fetches the same rows.
struct Case {
    label: &'static str,
    path: String,
    /// Sent with `HX-Request: true`, as htmx does.
    htmx: bool,
    search: Option<&'static str>,
    offset: u64,
}

fn cases() -> Vec<Case> {
    vec![
        Case { label: "page 1", path: "/admin/users".into(), htmx: false, search: None, offset: 0 },
        Case {
            label: "deep page",
            path: format!("/admin/users?page={DEEP_PAGE}"),
            htmx: false,
            search: None,
            offset: (DEEP_PAGE - 1) * PAGE_SIZE,
        },
        Case {
            label: "search, full page",
            path: format!("/admin/users?q={SEARCH}"),
            htmx: false,
            search: Some(SEARCH),
            offset: 0,
        },
        Case {
            label: "search, htmx fragment",
            path: format!("/admin/users/table?q={SEARCH}"),
            htmx: true,
            search: Some(SEARCH),
            offset: 0,
        },
    ]
}

/// One backend's figures.
struct BackendResult {
    label: String,
    seed_seconds: f64,
    cases: Vec<CaseResult>,
}

struct CaseResult {
    label: &'static str,
    path: String,
    rows: usize,
    total: u64,
    /// Milliseconds, sorted.
    server: Vec<f64>,
    client: Vec<f64>,
    raw: Vec<f64>,
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
    rt.block_on(seed(&store, matches!(backend, Backend::Postgres(_))))?;
    let seed_seconds = started.elapsed().as_secs_f64();
    eprintln!("seeded {} users in {seed_seconds:.1} s", thousands(f64::from(USERS)));

    instance.start()?;
    let url = instance.url()?;
    eprintln!("drydock is running at {url}");
    let cookie = format!("drydock_session={}", login(&url)?);

    let mut results = Vec::new();
    for case in cases() {
        results.push(bench_case(rt, &store, &url, &cookie, &case, settings)?);
    }
    let mut label = instance.label();
    if matches!(backend, Backend::Sqlite) {
        // The library the server links is the same build (one Cargo.lock, one workspace).
        let version: String =
            rt.block_on(sqlx::query("SELECT sqlite_version() AS v").fetch_one(store.pool()))?.try_get("v")?;
        label = format!("{label} {version}");
    }
    rt.block_on(store.pool().close());
    instance.stop()?;
    Ok(BackendResult { label, seed_seconds, cases: results })
}

/// `user00001` … `user10000`, e-mails `user00001@example.com` …, one argon2 hash for all,
/// through `Store::create_user` (one transaction each, as the API would make them).
async fn seed(store: &SqlStore, postgres: bool) -> Result<()> {
    let password_hash = drydock_core::secret::hash_password("bench-user-password-1").context("cannot hash")?;
    let created = Utc::now();
    for i in 1..=USERS {
        let name = format!("user{i:05}");
        let user = NewUser {
            id: drydock_core::ids::user_id(),
            email: format!("{name}@example.com"),
            name,
            password_hash: password_hash.clone(),
            created,
        };
        let event = NewEvent::new(created, Actor::host_cli(), "user.create", Target::new("user", &user.id, &user.name));
        store
            .create_user(&user, &[], None, &event)
            .await
            .with_context(|| format!("cannot create the user {}", user.name))?;
    }
    if postgres {
        // What autovacuum would have done by the time an instance has 10,000 users.
        sqlx::query("ANALYZE users").execute(store.pool()).await.context("ANALYZE users")?;
    }
    Ok(())
}

/// Signs the administrator in: the session token, the value of the `drydock_session` cookie.
fn login(url: &str) -> Result<String> {
    let body = serde_json::json!({ "username": ADMIN_NAME, "password": ADMIN_PASSWORD }).to_string();
    let r = http::request(
        url,
        "POST",
        "/api/auth/login",
        &[("Content-Type", "application/json"), ("Accept", "application/json")],
        Some(&body),
    )?;
    ensure!(r.status == 200, "POST /api/auth/login answered {}: {}", r.status, r.body);
    let v: serde_json::Value =
        serde_json::from_str(&r.body).with_context(|| format!("POST /api/auth/login: not JSON: {}", r.body))?;
    v["token"].as_str().map(str::to_string).with_context(|| format!("POST /api/auth/login: no token: {}", r.body))
}

fn bench_case(
    rt: &tokio::runtime::Runtime,
    store: &SqlStore,
    url: &str,
    cookie: &str,
    case: &Case,
    settings: &Settings,
) -> Result<CaseResult> {
    // What the page must show: the raw query's rows and total.
    let (expected, _) = rt.block_on(raw_page(store, case))?;
    ensure!(!expected.names.is_empty(), "{}: the raw query found no users: the page would show none", case.path);

    // Each request is followed at once by its baseline, so both see the same moment of the
    // machine (other work on it shifts both alike).
    eprintln!("measuring GET {} ({} warm-up, {} measured)", case.path, settings.warmup, settings.requests);
    let mut server = Vec::new();
    let mut client = Vec::new();
    let mut raw = Vec::new();
    for i in 0..settings.warmup + settings.requests {
        let started = Instant::now();
        let r = get_page(url, cookie, case)?;
        let elapsed = started.elapsed();
        check_page(&r, case, &expected)?;
        let (page, raw_elapsed) = rt.block_on(raw_page(store, case))?;
        ensure!(page == expected, "{}: the raw query answered differently between runs", case.path);
        if i >= settings.warmup {
            server.push(server_time_ms(&r).with_context(|| format!("GET {}", case.path))?);
            client.push(ms(elapsed));
            raw.push(ms(raw_elapsed));
        }
    }

    let mut result = CaseResult {
        label: case.label,
        path: case.path.clone(),
        rows: expected.names.len(),
        total: expected.total,
        server,
        client,
        raw,
    };
    for v in [&mut result.server, &mut result.client, &mut result.raw] {
        v.sort_by(f64::total_cmp);
    }
    eprintln!(
        "  server median {:.2} ms, p95 {:.2} ms; client median {:.2} ms; raw SQL median {:.2} ms",
        median(&result.server),
        p95(&result.server),
        median(&result.client),
        median(&result.raw)
    );
    Ok(result)
}

fn get_page(url: &str, cookie: &str, case: &Case) -> Result<Response> {
    let mut headers = vec![("Cookie", cookie), ("Accept", "text/html")];
    if case.htmx {
        headers.push(("HX-Request", "true"));
    }
    http::request(url, "GET", &case.path, &headers, None)
}

/// A 200 with the same rows (names, in order) and total as the raw query.
fn check_page(r: &Response, case: &Case, expected: &RawPage) -> Result<()> {
    let path = &case.path;
    ensure!(r.status == 200, "GET {path} answered {}, not 200:\n{}", r.status, r.body);
    ensure!(r.body.contains("data-user-name="), "GET {path}: no data-user-name= rows in the answer:\n{}", r.body);
    let names: Vec<&str> =
        r.body.split("data-user-name=\"").skip(1).map(|rest| rest.split('"').next().unwrap_or("")).collect();
    ensure!(
        names == expected.names,
        "GET {path}: the page shows the users {names:?}, the raw query found {:?}",
        expected.names
    );
    let total = format!("id=\"user-total\">{}<", expected.total);
    ensure!(r.body.contains(&total), "GET {path}: the page does not show the total {}", expected.total);
    if case.htmx {
        ensure!(!r.body.contains("<html"), "GET {path}: a whole page, not the fragment htmx asks for");
    }
    Ok(())
}

/// `app;dur=<ms>` of the `Server-Timing` header.
fn server_time_ms(r: &Response) -> Result<f64> {
    let header = r.header("server-timing").context("no Server-Timing header")?;
    parse_server_timing(header).with_context(|| format!("Server-Timing '{header}' has no app;dur="))
}

fn parse_server_timing(header: &str) -> Option<f64> {
    header.split(',').map(str::trim).find_map(|metric| {
        let mut params = metric.split(';').map(str::trim);
        if params.next()? != "app" {
            return None;
        }
        params.find_map(|p| p.strip_prefix("dur=")).and_then(|d| d.parse().ok())
    })
}

// ---------------------------------------------------------------------------------------
// The baseline: the same rows with raw SQL

#[derive(Debug, PartialEq, Eq)]
struct RawPage {
    names: Vec<String>,
    total: u64,
}

/// The count and the page, as the store asks for them, one after the other; timed.
async fn raw_page(store: &SqlStore, case: &Case) -> Result<(RawPage, Duration)> {
    let pool = store.pool();
    let started = Instant::now();
    let (total, rows) = match case.search {
        None => {
            let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM users").fetch_one(pool).await?.try_get("n")?;
            let rows = sqlx::query("SELECT id, name, email, created FROM users ORDER BY name LIMIT $1 OFFSET $2")
                .bind(PAGE_SIZE as i64)
                .bind(case.offset as i64)
                .fetch_all(pool)
                .await?;
            (total, rows)
        }
        Some(q) => {
            let pattern = format!("%{}%", q.to_lowercase());
            let total: i64 =
                sqlx::query("SELECT COUNT(*) AS n FROM users WHERE lower(name) LIKE $1 OR lower(email) LIKE $1")
                    .bind(pattern.as_str())
                    .fetch_one(pool)
                    .await?
                    .try_get("n")?;
            let rows = sqlx::query(
                "SELECT id, name, email, created FROM users WHERE lower(name) LIKE $1 OR lower(email) LIKE $1 \
                 ORDER BY name LIMIT $2 OFFSET $3",
            )
            .bind(pattern.as_str())
            .bind(PAGE_SIZE as i64)
            .bind(case.offset as i64)
            .fetch_all(pool)
            .await?;
            (total, rows)
        }
    };
    let mut names = Vec::with_capacity(rows.len());
    for row in &rows {
        // Decode every column, as the store does.
        let _id: String = row.try_get("id")?;
        let name: String = row.try_get("name")?;
        let _email: String = row.try_get("email")?;
        let _created: i64 = row.try_get("created")?;
        names.push(name);
    }
    let elapsed = started.elapsed();
    Ok((RawPage { names, total: u64::try_from(total).unwrap_or(0) }, elapsed))
}

// ---------------------------------------------------------------------------------------
// Figures and the report

fn p95(sorted: &[f64]) -> f64 {
    percentile(sorted, 95.0)
}

fn format_ms(v: f64) -> String {
    if v < 10.0 { format!("{v:.2} ms") } else { format!("{v:.1} ms") }
}

fn report(settings: &Settings, drydock_version: &str, load: &str, results: &[BackendResult]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## drydock-bench users-page, {}\n", date());
    let _ = writeln!(out, "- machine: {}", machine());
    let _ = writeln!(out, "- load average (1, 5, 15 min): {load}");
    let _ = writeln!(out, "- server: {drydock_version} ({}), on 127.0.0.1, default config", code_version());
    let _ = writeln!(
        out,
        "- data: {} users `user00001`…`user{USERS:05}` seeded straight into the store, plus `{ADMIN_NAME}`; \
         search `q={SEARCH}`",
        thousands(f64::from(USERS))
    );
    for r in results {
        let _ = writeln!(out, "  (seeding took {:.1} s on {})", r.seed_seconds, r.label);
    }
    let _ = writeln!(
        out,
        "- requests: {} of each kind, sequential, one connection each, after {} unmeasured; \
         signed in with the administrator's session cookie",
        settings.requests, settings.warmup
    );
    let _ = writeln!(
        out,
        "- server time: the `Server-Timing: app;dur=` header; client: from connect to the last byte read"
    );
    let _ = writeln!(
        out,
        "- baseline: the same COUNT(*) and page of rows with raw SQL from the benchmark process \
         (sqlx, same driver), right after each request\n"
    );
    let _ = writeln!(
        out,
        "| backend | request | rows (total) | server median | server p95 | server max | client median | \
         client p95 | raw SQL median | page / raw |"
    );
    let _ = writeln!(out, "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in results {
        for c in &r.cases {
            let _ = writeln!(
                out,
                "| {} | {}: `GET {}` | {} ({}) | {} | {} | {} | {} | {} | {} | {:.1} |",
                r.label,
                c.label,
                c.path,
                c.rows,
                thousands(c.total as f64),
                format_ms(median(&c.server)),
                format_ms(p95(&c.server)),
                format_ms(max(&c.server)),
                format_ms(median(&c.client)),
                format_ms(p95(&c.client)),
                format_ms(median(&c.raw)),
                median(&c.server) / median(&c.raw)
            );
        }
    }
    let all: Vec<(&str, &CaseResult)> =
        results.iter().flat_map(|r| r.cases.iter().map(move |c| (r.label.as_str(), c))).collect();
    if let Some((backend, worst)) = all.iter().max_by(|a, b| p95(&a.1.server).total_cmp(&p95(&b.1.server))) {
        let met = p95(&worst.server) < AIM_MS;
        let _ = writeln!(
            out,
            "\nAim (one page with {} users in under {AIM_MS:.0} ms of server time, judged on the p95 of every \
             request above): {} (worst p95: {} for {} on {backend}).",
            thousands(f64::from(USERS)),
            if met { "met" } else { "NOT met" },
            format_ms(p95(&worst.server)),
            worst.label
        );
        let over: Vec<String> = all
            .iter()
            .filter(|(_, c)| max(&c.server) >= AIM_MS)
            .map(|(b, c)| format!("{} on {b} ({})", c.label, format_ms(max(&c.server))))
            .collect();
        if !over.is_empty() {
            let _ = writeln!(out, "Single requests over {AIM_MS:.0} ms: {}.", over.join(", "));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_server_timing() {
        assert_eq!(parse_server_timing("app;dur=12.345"), Some(12.345));
        assert_eq!(parse_server_timing("db;dur=1, app; dur=2.5"), Some(2.5));
        assert_eq!(parse_server_timing("app"), None);
        assert_eq!(parse_server_timing("db;dur=1"), None);
    }

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(median(&v), 50.0);
        assert_eq!(p95(&v), 95.0);
        assert_eq!(max(&v), 100.0);
        assert_eq!(median(&[3.0]), 3.0);
        assert_eq!(p95(&[1.0, 2.0]), 2.0);
    }

    #[test]
    fn checks_pages() {
        let case = &cases()[3];
        let expected = RawPage { names: vec!["user00012".into(), "user00112".into()], total: 299 };
        let page = |status: u16, body: &str| Response { status, headers: Vec::new(), body: body.to_string() };
        let good = r#"<p><span id="user-total">299</span> users</p>
            <tr data-user-name="user00012"><td></td></tr><tr data-user-name="user00112"><td></td></tr>"#;
        check_page(&page(200, good), case, &expected).unwrap();
        assert!(check_page(&page(303, good), case, &expected).is_err());
        assert!(check_page(&page(200, &good.replace("299", "298")), case, &expected).is_err());
        assert!(check_page(&page(200, &good.replace("user00112", "user00113")), case, &expected).is_err());
        assert!(check_page(&page(200, "<html><p>Sign in</p></html>"), case, &expected).is_err());
        assert!(check_page(&page(200, &format!("<html>{good}</html>")), case, &expected).is_err());
    }

    #[test]
    fn the_search_matches_a_few_hundred_seeded_users() {
        let matching = (1..=USERS)
            .filter(|i| {
                let name = format!("user{i:05}");
                name.contains(SEARCH) || format!("{name}@example.com").contains(SEARCH)
            })
            .count();
        assert_eq!(matching, 299);
        let users_on_deep_page = (u64::from(USERS) + 1).saturating_sub((DEEP_PAGE - 1) * PAGE_SIZE);
        assert!(users_on_deep_page >= PAGE_SIZE);
    }
}
