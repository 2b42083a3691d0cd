//! `drydock-bench standby`: what a standby that follows a primary buys over the seed's
//! nightly backup, in three parts.
//!
//! 1. RPO and RTO of a failover, BENCH_RUNS times per backend: a fresh primary and a fresh
//!    standby (`drydock standby … --detach`, its own data dir and database) syncing every
//!    BENCH_INTERVAL; a writer creates users on the primary one after another (each
//!    acknowledgement's time kept) for 1.5 to 2.5 intervals (a deterministic sequence, so the
//!    kill falls at different points of the sync cycle); `drydock backup --no-projects` of
//!    the primary while the writer goes on; then SIGKILL of the primary. RPO = kill time −
//!    acknowledgement of the oldest acknowledged write missing on the promoted standby (0
//!    when none is). RTO = from running `drydock promote --yes` to the first write a user
//!    signed in on the standby's URL gets accepted (sign-in alone is served by a standby
//!    before any promotion, so its time is reported apart). Baseline, same run: the seed's
//!    recovery from that backup — `drydock restore` into a fresh data dir and `drydock start`
//!    — timed to the same first accepted write.
//! 2. Bytes moved by an incremental sync (SQLite primary): one workspace with BENCH_PROJECT_MB
//!    of project files; acting as the standby, `POST /api/replication/projects/{id}` with an
//!    empty index (everything), then with the index it returned after one file changed
//!    through exec (1 KiB appended), and once with nothing changed. Wire bytes both ways and
//!    times; the engine's read of the whole volume alone is timed as well.
//! 3. The database copy at 10,000 users (the audit-report seed: 10,000 users, 50,000
//!    workspaces): `GET /api/replication/snapshot` and its 304 path (`If-None-Match`),
//!    against `VACUUM INTO` a file (SQLite) / `pg_dump` (PostgreSQL) of the same database.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use drydock_docker::projects_sync::{DELTA_ENTRY, DeltaSummary, FileIndex};
use serde_json::{Value, json};

use crate::drydock_api::{Api, InstanceSweep, Workspaces, connect, engine_description};
use crate::instance::{ADMIN_NAME, ADMIN_PASSWORD, Backend, Instance, drydock_bin, drydock_version};
use crate::util::{
    code_version, date, env_u32, first_line, load_average, machine, max, median, run_checked, thousands,
};

const HELP: &str = "\
usage: drydock-bench standby

1. RPO and RTO: on SQLite and (when TEST_POSTGRES_URL is set) PostgreSQL, BENCH_RUNS times: a
   fresh primary, a fresh standby following it every BENCH_INTERVAL seconds, a writer creating
   users on the primary for 1.5 to 2.5 intervals, `drydock backup --no-projects`, SIGKILL of
   the primary, `drydock promote --yes`. RPO: kill time minus the acknowledgement of the
   oldest acknowledged write missing on the promoted standby. RTO: promote to the first write
   accepted from a signed-in user. Baseline: restore of that backup + start, to the same.
2. Incremental sync: a workspace with BENCH_PROJECT_MB of project files (SQLite primary);
   POST /api/replication/projects/{id} with an empty index, then with the returned index
   after one file changed (1 KiB appended, 3 times), then with nothing changed: wire bytes
   and times; the engine's read of the whole volume alone, for comparison.
3. The database copy: with 10,000 users and 50,000 workspaces seeded, GET
   /api/replication/snapshot (and its 304 path) against VACUUM INTO (SQLite) / pg_dump
   (PostgreSQL) of the same database, BENCH_REQUESTS times each after one warm-up.

environment:
  DRYDOCK_BIN        the drydock binary (default: target/release/drydock in the workspace)
  TEST_POSTGRES_URL  a PostgreSQL server URL (its database is used to create and drop ours)
  BENCH_RUNS         failovers per backend (default 10)
  BENCH_INTERVAL     the standby's sync interval in seconds (default 10)
  BENCH_PROJECT_MB   project files in the workspace of part 2, in MiB (default 1024)
  BENCH_REQUESTS     measured snapshot requests and dumps (default 5; the figure is their median)
  BENCH_PARTS        which parts to run, e.g. 1,3 (default 1,2,3)";

/// The seed's way to a copy elsewhere: the nightly backup, so up to a day of work lost.
const SEED_RPO_HOURS: u64 = 24;
/// The aims: RPO at most the interval, RTO under this.
const RTO_AIM: Duration = Duration::from_secs(10);
/// How long anything the benchmark waits for may take before the run is invalid.
const WAIT: Duration = Duration::from_secs(120);
/// Incremental rounds of part 2 (one file changed before each).
const CHANGE_ROUNDS: usize = 3;
/// The file part 2 changes, in the workspace (written by `backup::fill`).
const CHANGED_FILE: &str = "/projects/src/mod00/f00000.rs";

struct Settings {
    runs: u32,
    interval: u32,
    project_mb: u32,
    requests: u32,
    parts: Vec<u32>,
}

pub fn run(args: &[String]) -> Result<()> {
    if !crate::util::no_arguments(args, HELP)? {
        return Ok(());
    }
    let parts = match std::env::var("BENCH_PARTS") {
        Ok(v) if !v.trim().is_empty() => v
            .split(',')
            .map(|p| p.trim().parse::<u32>().ok().filter(|n| (1..=3).contains(n)))
            .collect::<Option<Vec<u32>>>()
            .with_context(|| format!("BENCH_PARTS={v}: a comma-separated list of 1, 2, 3"))?,
        _ => vec![1, 2, 3],
    };
    let settings = Settings {
        runs: env_u32("BENCH_RUNS", 10, 1)?,
        interval: env_u32("BENCH_INTERVAL", 10, 1)?,
        project_mb: env_u32("BENCH_PROJECT_MB", 1024, 1)?,
        requests: env_u32("BENCH_REQUESTS", 5, 1)?,
        parts,
    };
    let bin = drydock_bin("standby")?;
    let version = drydock_version(&bin)?;
    let load_before = load_average();
    let backends = Backend::from_env();

    let mut failovers = Vec::new();
    if settings.parts.contains(&1) {
        for backend in &backends {
            eprintln!("== part 1, {}: {} failovers, interval {} s", backend.label(), settings.runs, settings.interval);
            failovers.push(failover_runs(&bin, backend, &settings)?);
        }
    }
    let mut sync = None;
    if settings.parts.contains(&2) {
        eprintln!("== part 2: incremental sync of {} MiB of project files", settings.project_mb);
        sync = Some(incremental_sync(&bin, &settings)?);
    }
    let mut snapshots = Vec::new();
    if settings.parts.contains(&3) {
        for backend in &backends {
            eprintln!("== part 3, {}: the snapshot at 10,000 users", backend.label());
            snapshots.push(snapshot_costs(&bin, backend, &settings)?);
        }
    }
    let header = format!(
        "- machine: {}\n- load average (1, 5, 15 min): {load_before} before the run, {} after it\n- {version} ({})\n",
        machine(),
        load_average(),
        code_version()
    );
    print!("{}", report(&header, &settings, &failovers, sync.as_ref(), &snapshots));
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Part 1: RPO and RTO.

struct Failovers {
    label: String,
    runs: Vec<Failover>,
}

struct Failover {
    /// Seconds the writer was told to write before the backup and the kill.
    write_for: f64,
    acked: usize,
    missing: usize,
    /// Whether the writes on the standby are exactly the oldest ones (a prefix).
    prefix: bool,
    rpo: Duration,
    /// The standby's `lagSeconds` just before the kill.
    lag_at_kill: Option<i64>,
    /// `drydock promote --yes`, the whole command.
    promote: Duration,
    /// From promote's start to the first sign-in that succeeded (a standby serves sign-ins).
    first_login: Duration,
    /// From promote's start to the first accepted write: the RTO.
    rto: Duration,
    backup: Duration,
    /// From `drydock restore`'s start to the first accepted write on the restored instance.
    restore_rto: Duration,
    restore_cmd: Duration,
}

fn failover_runs(bin: &Path, backend: &Backend, settings: &Settings) -> Result<Failovers> {
    let mut runs = Vec::new();
    let mut label = backend.label().to_string();
    for run in 0..settings.runs {
        let (f, l) = failover(bin, backend, settings, run)?;
        label = l;
        eprintln!(
            "  run {run}: wrote {:.1} s, {} acked, {} missing, RPO {:.2} s; promote {:.2} s, sign-in {:.2} s, \
             RTO {:.2} s; backup {:.2} s, restore+start to first write {:.2} s",
            f.write_for,
            f.acked,
            f.missing,
            f.rpo.as_secs_f64(),
            f.promote.as_secs_f64(),
            f.first_login.as_secs_f64(),
            f.rto.as_secs_f64(),
            f.backup.as_secs_f64(),
            f.restore_rto.as_secs_f64()
        );
        runs.push(f);
    }
    Ok(Failovers { label, runs })
}

/// The writer's time for a run: 1.5 to 2.5 intervals along a golden-ratio sequence, so the
/// kill falls at well spread points of the sync cycle.
fn write_duration(interval: u32, run: u32) -> Duration {
    let frac = ((f64::from(run) + 1.0) * 0.618_033_988_75).fract();
    Duration::from_secs_f64(f64::from(interval) * (1.5 + frac))
}

fn failover(bin: &Path, backend: &Backend, settings: &Settings, run: u32) -> Result<(Failover, String)> {
    let scratch = tempfile::Builder::new().prefix("drydock-bench-standby.").tempdir()?;
    // Guards in drop order (last declared first): servers stop, then engine objects go.
    let mut sweeps = (InstanceSweep { instance_id: None }, InstanceSweep { instance_id: None });
    let mut primary = Instance::create(bin, backend)?;
    primary.init()?;
    sweeps.0.instance_id = Some(primary.instance_id()?);
    primary.start()?;
    let label = primary.label();
    let admin = Api { url: primary.url()?, token: primary.admin_token()? };
    let token = first_line(&primary.cli("standby token", &[])?.stdout);
    ensure!(token.starts_with("ddr_"), "`drydock standby token` printed '{token}', not a replication token");
    let token_file = scratch.path().join("replication-token");
    std::fs::write(&token_file, format!("{token}\n"))?;

    let mut standby = Instance::create(bin, backend)?;
    standby.follow(&admin.url, &token_file, &format!("{}s", settings.interval))?;
    sweeps.1.instance_id = Some(standby.instance_id()?);
    let standby_url = standby.url()?;
    wait_first_sync(&standby_url, WAIT)?;

    // The writer goes on through the backup until the kill.
    let write_for = write_duration(settings.interval, run);
    let stop = AtomicBool::new(false);
    let acks: Mutex<Vec<(String, Instant)>> = Mutex::new(Vec::new());
    let backup_dir = scratch.path().join("backup");
    std::fs::create_dir_all(&backup_dir)?;
    let backup_out = backup_dir.display().to_string();
    let (backup, lag_at_kill, killed_at) = std::thread::scope(|s| -> Result<(Duration, Option<i64>, Instant)> {
        let writer = s.spawn(|| writer(&admin, run, &stop, &acks));
        std::thread::sleep(write_for);
        let started = Instant::now();
        let backed_up = primary.cli("backup", &["--no-projects", "--out", &backup_out]);
        let backup = started.elapsed();
        let lag = standby_state(&standby_url).ok().and_then(|v| v["lagSeconds"].as_i64());
        stop.store(true, Ordering::SeqCst);
        let killed = primary.kill();
        let killed_at = Instant::now();
        let written = writer.join().map_err(|_| anyhow::anyhow!("the writer panicked"))?;
        backed_up?;
        killed?;
        written?;
        Ok((backup, lag, killed_at))
    })?;
    let acks = acks.into_inner().map_err(|_| anyhow::anyhow!("the writer panicked"))?;
    ensure!(!acks.is_empty(), "the writer had no write acknowledged");

    // Promote, and meanwhile sign in and write on the standby's URL until a write is taken.
    let began = Instant::now();
    let (promoted, (first_login, rto, session)) = std::thread::scope(|s| -> Result<_> {
        let promote = s.spawn(|| {
            let out = standby.cli("promote", &["--yes"]);
            (out, began.elapsed())
        });
        let first_write = first_write(&standby_url, began, &format!("rto-{run:03}"));
        let (out, took) = promote.join().map_err(|_| anyhow::anyhow!("the promote thread panicked"))?;
        let out = out?;
        ensure!(
            String::from_utf8_lossy(&out.stdout).contains("Promoted in"),
            "drydock promote said: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        Ok((took, first_write?))
    })?;

    // Which acknowledged writes the promoted standby has.
    let on_standby = Api { url: standby_url.clone(), token: session };
    let mut present = Vec::with_capacity(acks.len());
    for (name, _) in &acks {
        let (status, body) = on_standby.call("GET", &format!("/api/user/find?name={name}"), None)?;
        ensure!(status == 200 || status == 404, "GET /api/user/find?name={name} answered {status}: {body}");
        present.push(status == 200);
    }
    let missing = present.iter().filter(|p| !**p).count();
    let prefix = present.windows(2).all(|w| w[0] || !w[1]);
    let rpo = acks
        .iter()
        .zip(&present)
        .find(|(_, p)| !**p)
        .map(|((_, acked), _)| killed_at.saturating_duration_since(*acked))
        .unwrap_or_default();

    // The baseline: the seed's recovery of the same data from the backup just taken.
    let archive = only_file(&backup_dir)?;
    let mut restored = Instance::create(bin, backend)?;
    let began = Instant::now();
    restored.cli("restore", &[&archive.display().to_string(), "--yes"])?;
    restored.start()?;
    let restore_cmd = began.elapsed();
    let (_, restore_rto, _) = first_write(&restored.url()?, began, &format!("restore-{run:03}"))?;
    drop(restored);
    drop(standby);
    drop(primary);
    drop(sweeps);
    Ok((
        Failover {
            write_for: write_for.as_secs_f64(),
            acked: acks.len(),
            missing,
            prefix,
            rpo,
            lag_at_kill,
            promote: promoted,
            first_login,
            rto,
            backup,
            restore_rto,
            restore_cmd,
        },
        label,
    ))
}

/// Creates users on the primary one after another until told to stop; keeps each
/// acknowledged one with the time its answer came. Failures after the stop (the kill cut
/// the request) are expected.
fn writer(admin: &Api, run: u32, stop: &AtomicBool, acks: &Mutex<Vec<(String, Instant)>>) -> Result<()> {
    let mut i = 0u32;
    while !stop.load(Ordering::SeqCst) {
        let name = format!("w{run:03}u{i:05}");
        let body = json!({"name": name, "email": format!("{name}@example.com"), "password": "bench-password-1"});
        match admin.call("POST", "/api/user", Some(&body)) {
            Ok((201, _)) => acks.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.push((name, Instant::now())),
            _ if stop.load(Ordering::SeqCst) => break,
            Ok((status, v)) => bail!("POST /api/user on the primary answered {status}: {v}"),
            Err(e) => return Err(e.context("POST /api/user on the primary")),
        }
        i += 1;
    }
    Ok(())
}

fn standby_state(url: &str) -> Result<Value> {
    let (status, body) = crate::http::get_json(url, "/api/system/state", None)?;
    ensure!(status == 200, "GET /api/system/state answered {status}: {body}");
    Ok(serde_json::from_str(&body)?)
}

fn wait_first_sync(url: &str, wait: Duration) -> Result<()> {
    let deadline = Instant::now() + wait;
    loop {
        let state = standby_state(url)?;
        if !state["lastSync"].is_null() {
            return Ok(());
        }
        ensure!(Instant::now() < deadline, "the standby did not sync within {} s: {state}", wait.as_secs());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Signs in as the administrator and creates a user `name` with the session, retrying
/// until the write is accepted. Returns the times from `began` to the first successful
/// sign-in and to the accepted write, and the session token.
fn first_write(url: &str, began: Instant, name: &str) -> Result<(Duration, Duration, String)> {
    let deadline = began + WAIT;
    let login = json!({"username": ADMIN_NAME, "password": ADMIN_PASSWORD}).to_string();
    let user =
        json!({"name": name, "email": format!("{name}@example.com"), "password": "bench-password-1"}).to_string();
    let mut session: Option<String> = None;
    let mut first_login = None;
    let mut last = String::new();
    while Instant::now() < deadline {
        match &session {
            None => {
                if let Ok(r) = crate::http::request(
                    url,
                    "POST",
                    "/api/auth/login",
                    &[("Content-Type", "application/json"), ("Accept", "application/json")],
                    Some(&login),
                ) {
                    if r.status == 200 {
                        let v: Value = serde_json::from_str(&r.body).unwrap_or_default();
                        session = v["token"].as_str().map(str::to_string);
                        first_login.get_or_insert(began.elapsed());
                    }
                    last = format!("sign-in answered {}: {}", r.status, r.body);
                }
            }
            Some(token) => {
                let bearer = format!("Bearer {token}");
                let headers = [
                    ("Content-Type", "application/json"),
                    ("Accept", "application/json"),
                    ("Authorization", bearer.as_str()),
                ];
                if let Ok(r) = crate::http::request(url, "POST", "/api/user", &headers, Some(&user)) {
                    match r.status {
                        201 => {
                            let login_at = first_login.unwrap_or_default();
                            return Ok((login_at, began.elapsed(), token.clone()));
                        }
                        401 => session = None,
                        _ => {}
                    }
                    last = format!("POST /api/user answered {}: {}", r.status, r.body);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    bail!("no write was accepted at {url} within {} s; last: {last}", WAIT.as_secs())
}

fn only_file(dir: &Path) -> Result<PathBuf> {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)?.flatten().map(|e| e.path()).collect();
    ensure!(files.len() == 1, "expected one archive in {}, found {files:?}", dir.display());
    Ok(files[0].clone())
}

// ---------------------------------------------------------------------------------------
// Part 2: incremental sync.

struct Transfer {
    /// Request body bytes (the zstd-compressed index).
    sent: u64,
    /// Response bytes on the wire (head and chunk framing included).
    wire: u64,
    /// The tar's bytes.
    body: u64,
    took: Duration,
    /// Files and file bytes the summary says were carried.
    files: u64,
    file_bytes: u64,
}

struct SyncFigures {
    bytes: u64,
    files: usize,
    engine: String,
    full: Transfer,
    changed: Vec<Transfer>,
    unchanged: Transfer,
    /// The engine's read of the whole volume into nothing (one helper download).
    engine_read: Duration,
    /// A real standby on the same primary (not fatal when it fails: the figures are the wire's).
    follower: std::result::Result<FollowerCheck, String>,
}

fn incremental_sync(bin: &Path, settings: &Settings) -> Result<SyncFigures> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start tokio")?;
    let image = rt.block_on(drydock_docker::testing::busybox_image()).context("cannot make the busybox test image")?;
    let docker = rt.block_on(connect())?;
    let engine = rt.block_on(engine_description(&docker));
    let scratch = tempfile::Builder::new().prefix("drydock-bench-standby.").tempdir()?;
    let mut sweep = InstanceSweep { instance_id: None };
    let mut instance = Instance::create(bin, &Backend::Sqlite)?;
    instance.init()?;
    let instance_id = instance.instance_id()?;
    sweep.instance_id = Some(instance_id.clone());
    instance.start()?;
    let api = Api { url: instance.url()?, token: instance.admin_token()? };
    let mut workspaces = Workspaces { api: &api, ids: Vec::new() };
    let id = workspaces.create("bench-standby-sync", &image, 256 << 20)?;
    api.start(&id)?;
    let dir = crate::backup::volume_dir(&instance_id, &id)?;
    let bytes = crate::backup::fill(&dir, u64::from(settings.project_mb) << 20, 1)?;
    run_checked(&mut Command::new("sync"), "sync")?;
    eprintln!("   {bytes} bytes written into workspace {id}");
    let token = first_line(&instance.cli("standby token", &[])?.stdout);

    let path = format!("/api/replication/projects/{id}");
    let packed = scratch.path().join("delta.tar.zst");
    let full = post_delta(&api.url, &token, &path, &FileIndex::new(), &packed)?;
    let mut index = full.1.index.clone();
    let files = index.values().filter(|m| matches!(m.kind, drydock_docker::projects_sync::FileKind::File)).count();
    ensure!(full.0.files as usize == files, "the full transfer carried {} files of {files}", full.0.files);
    eprintln!("   full: {} bytes in {:.2} s", full.0.body, full.0.took.as_secs_f64());
    let mut changed = Vec::new();
    for round in 0..CHANGE_ROUNDS {
        let cmd = format!("head -c 1024 /dev/urandom >> {CHANGED_FILE}");
        let out = api.expect(
            "POST",
            &format!("/api/workspace/{id}/exec"),
            Some(&json!({"command": ["sh", "-c", cmd]})),
            200,
        )?;
        ensure!(out["exitCode"] == 0, "exec in the workspace failed: {out}");
        let (t, summary) = post_delta(&api.url, &token, &path, &index, &packed)?;
        ensure!(t.files == 1, "round {round}: one file changed but the delta carried {} files", t.files);
        eprintln!("   one file changed: {} bytes in {:.2} s", t.body, t.took.as_secs_f64());
        index = summary.index;
        changed.push(t);
    }
    let (unchanged, _) = post_delta(&api.url, &token, &path, &index, &packed)?;
    ensure!(unchanged.files == 0, "nothing changed but the delta carried {} files", unchanged.files);
    eprintln!("   nothing changed: {} bytes in {:.2} s", unchanged.body, unchanged.took.as_secs_f64());
    let runtime = rt
        .block_on(drydock_docker::DockerRuntime::connect(&instance_id, Default::default()))
        .map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    crate::backup::engine_download(&rt, &runtime, std::slice::from_ref(&id))?;
    let engine_read = started.elapsed();
    eprintln!("   the engine's read of the volume alone: {:.2} s", engine_read.as_secs_f64());
    eprintln!("   a real standby following the primary, for comparison");
    let follower =
        real_follower(bin, &api, &id, &token, settings.interval, scratch.path()).map_err(|e| format!("{e:#}"));
    workspaces.delete_all()?;
    drop(workspaces);
    instance.stop()?;
    drop(sweep);
    Ok(SyncFigures { bytes, files, engine, full: full.0, changed, unchanged, engine_read, follower })
}

/// What a real standby's syncs moved, from its log.
struct FollowerCheck {
    /// From `drydock standby --detach` to its first `lastSync`.
    first_sync: Duration,
    /// `bytes` of each "standby sync landed" line, in order (the first is the full copy).
    landed: Vec<u64>,
}

/// Runs `drydock standby` on the primary of part 2, waits for its first sync, changes one
/// file, and waits for two more syncs to land.
fn real_follower(bin: &Path, api: &Api, id: &str, token: &str, interval: u32, scratch: &Path) -> Result<FollowerCheck> {
    let token_file = scratch.join("replication-token");
    std::fs::write(&token_file, format!("{token}\n"))?;
    let mut sweep = InstanceSweep { instance_id: None };
    let mut standby = Instance::create(bin, &Backend::Sqlite)?;
    let began = Instant::now();
    standby.follow(&api.url, &token_file, &format!("{interval}s"))?;
    sweep.instance_id = Some(standby.instance_id()?);
    wait_first_sync(&standby.url()?, Duration::from_secs(900))?;
    let first_sync = began.elapsed();
    let log = standby.data_dir().join("drydock.log");
    let cmd = format!("head -c 1024 /dev/urandom >> {CHANGED_FILE}");
    let out =
        api.expect("POST", &format!("/api/workspace/{id}/exec"), Some(&json!({"command": ["sh", "-c", cmd]})), 200)?;
    ensure!(out["exitCode"] == 0, "exec in the workspace failed: {out}");
    let deadline = Instant::now() + Duration::from_secs(u64::from(interval) * 4) + WAIT;
    let landed = loop {
        let landed = landed_bytes(&log)?;
        if landed.len() >= 3 {
            break landed;
        }
        ensure!(Instant::now() < deadline, "the standby landed {} syncs, not 3, in time", landed.len());
        std::thread::sleep(Duration::from_millis(200));
    };
    standby.stop()?;
    drop(sweep);
    Ok(FollowerCheck { first_sync, landed })
}

/// The `bytes=` of each "standby sync landed" line of a log (colours stripped).
fn landed_bytes(log: &Path) -> Result<Vec<u64>> {
    let text = std::fs::read_to_string(log).with_context(|| format!("cannot read {}", log.display()))?;
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ … final byte in @..~
            for d in chars.by_ref() {
                if ('@'..='~').contains(&d) && d != '[' {
                    break;
                }
            }
        } else {
            plain.push(c);
        }
    }
    Ok(plain
        .lines()
        .filter(|l| l.contains("standby sync landed"))
        .filter_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("bytes=")).and_then(|b| b.parse().ok()))
        .collect())
}

/// One delta request as a standby makes it: the index zstd-compressed in the body, the tar
/// answer written to `tar` and its summary read from its last entry.
fn post_delta(
    url: &str,
    token: &str,
    path: &str,
    index: &FileIndex,
    packed: &Path,
) -> Result<(Transfer, DeltaSummary)> {
    let body = zstd(&serde_json::to_vec(index)?)?;
    let bearer = format!("Bearer {token}");
    let headers = [("Authorization", bearer.as_str()), ("Content-Type", "application/zstd")];
    // The answer is zstd-compressed: it is counted as it came.
    let mut out = std::io::BufWriter::new(std::fs::File::create(packed)?);
    let started = Instant::now();
    let r = raw_request(url, "POST", path, &headers, &body, &mut out)?;
    out.flush()?;
    let took = started.elapsed();
    drop(out);
    ensure!(r.status == 200, "POST {path} answered {}", r.status);
    let summary = delta_summary(packed)?;
    let transfer = Transfer {
        sent: body.len() as u64,
        wire: r.wire,
        body: r.body_bytes,
        took,
        files: summary.files,
        file_bytes: summary.bytes,
    };
    Ok((transfer, summary))
}

/// `zstd -3` of some bytes.
fn zstd(data: &[u8]) -> Result<Vec<u8>> {
    zstd::encode_all(data, 3).context("compressing the index")
}

/// The [`DeltaSummary`] of a zstd-compressed delta tar: its last entry, named [`DELTA_ENTRY`].
fn delta_summary(packed: &Path) -> Result<DeltaSummary> {
    let mut archive = tar::Archive::new(zstd::Decoder::new(std::fs::File::open(packed)?)?);
    let mut summary = None;
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.path()?.to_str() == Some(DELTA_ENTRY) {
            let mut json = Vec::new();
            entry.read_to_end(&mut json)?;
            summary = Some(serde_json::from_slice(&json).context("the delta's summary")?);
        }
    }
    summary.with_context(|| format!("the delta tar has no {DELTA_ENTRY}: it was cut off"))
}

// ---------------------------------------------------------------------------------------
// Binary HTTP: bodies of any bytes, answers streamed to a writer and counted.

struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
    /// Bytes read from the socket: head, body and chunk framing.
    wire: u64,
    /// Bytes of the body itself.
    body_bytes: u64,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

fn raw_request(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    sink: &mut dyn Write,
) -> Result<RawResponse> {
    let addr = base.strip_prefix("http://").context("not an http:// URL")?.trim_end_matches('/');
    let mut stream = TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(600)))?;
    stream.set_write_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    let _ = write!(head, "Content-Length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    let mut r = BufReader::with_capacity(256 << 10, Counting { inner: stream, count: 0 });
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("{method} {path}: not an HTTP answer: {line}"))?;
    let mut response_headers = Vec::new();
    loop {
        line.clear();
        ensure!(r.read_line(&mut line)? > 0, "{method} {path}: the answer's head was cut off");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((n, v)) = l.split_once(':') {
            response_headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let mut response = RawResponse { status, headers: response_headers, wire: 0, body_bytes: 0 };
    let chunked = response.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let length = response.header("content-length").and_then(|v| v.parse::<u64>().ok());
    if chunked {
        loop {
            line.clear();
            ensure!(r.read_line(&mut line)? > 0, "{method} {path}: the chunked answer was cut off");
            let size = u64::from_str_radix(line.trim().split(';').next().unwrap_or("").trim(), 16)
                .with_context(|| format!("{method} {path}: a chunk size '{}'", line.trim()))?;
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    line.clear();
                    if r.read_line(&mut line)? == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                break;
            }
            let copied = std::io::copy(&mut (&mut r).take(size), sink)?;
            ensure!(copied == size, "{method} {path}: a chunk was cut off");
            response.body_bytes += size;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    } else if let Some(length) = length {
        response.body_bytes = std::io::copy(&mut (&mut r).take(length), sink)?;
        ensure!(response.body_bytes == length, "{method} {path}: the answer was cut off");
    } else {
        response.body_bytes = std::io::copy(&mut r, sink)?;
    }
    response.wire = r.get_ref().count;
    Ok(response)
}

// ---------------------------------------------------------------------------------------
// Part 3: the database copy at 10,000 users.

struct SnapshotCosts {
    label: String,
    /// Seconds, sorted.
    full: Vec<f64>,
    not_modified: Vec<f64>,
    baseline: Vec<f64>,
    baseline_name: &'static str,
    compressed: u64,
    json: u64,
    baseline_size: u64,
    baseline_zstd: u64,
    /// The database's own size on disk (SQLite file) or `pg_database_size`.
    database_size: u64,
}

fn snapshot_costs(bin: &Path, backend: &Backend, settings: &Settings) -> Result<SnapshotCosts> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start tokio")?;
    let scratch = tempfile::Builder::new().prefix("drydock-bench-standby.").tempdir()?;
    let mut instance = Instance::create(bin, backend)?;
    instance.init()?;
    let db_url = instance.database_url();
    let store = rt
        .block_on(drydock_store::connect_sql(&db_url, &Default::default()))
        .with_context(|| format!("cannot open the instance's database {}", drydock_store::describe_url(&db_url)))?;
    let started = Instant::now();
    rt.block_on(crate::audit_report::seed(&store))?;
    eprintln!(
        "   seeded {} users and {} workspaces in {:.1} s",
        thousands(crate::audit_report::USERS as f64),
        thousands(crate::audit_report::WORKSPACES as f64),
        started.elapsed().as_secs_f64()
    );
    instance.start()?;
    let url = instance.url()?;
    let token = first_line(&instance.cli("standby token", &[])?.stdout);
    let bearer = format!("Bearer {token}");
    let snapshot_file = scratch.path().join("snapshot.zst");
    let (mut full, mut etag, mut compressed) = (Vec::new(), String::new(), 0);
    for i in 0..=settings.requests {
        let mut out = std::fs::File::create(&snapshot_file)?;
        let started = Instant::now();
        let r = raw_request(
            &url,
            "GET",
            "/api/replication/snapshot",
            &[("Authorization", bearer.as_str())],
            &[],
            &mut out,
        )?;
        let took = started.elapsed().as_secs_f64();
        ensure!(r.status == 200, "GET /api/replication/snapshot answered {}", r.status);
        etag = r.header("etag").context("the snapshot has no ETag")?.to_string();
        compressed = r.body_bytes;
        if i > 0 {
            full.push(took);
        }
    }
    let json_size =
        run_checked(Command::new("zstd").args(["-q", "-d", "-c"]).arg(&snapshot_file), "zstd -d")?.stdout.len() as u64;
    let mut not_modified = Vec::new();
    for i in 0..=settings.requests {
        let started = Instant::now();
        let r = raw_request(
            &url,
            "GET",
            "/api/replication/snapshot",
            &[("Authorization", bearer.as_str()), ("If-None-Match", etag.as_str())],
            &[],
            &mut std::io::sink(),
        )?;
        let took = started.elapsed().as_secs_f64();
        ensure!(r.status == 304, "GET /api/replication/snapshot with If-None-Match answered {}", r.status);
        if i > 0 {
            not_modified.push(took);
        }
    }
    // The baseline: a consistent copy of the same database by the database's own tool.
    let copy = scratch.path().join("copy");
    let mut baseline = Vec::new();
    let mut baseline_size = 0;
    let (baseline_name, database_size) = match backend {
        Backend::Sqlite => {
            let size = std::fs::metadata(instance.data_dir().join("drydock.db"))?.len();
            ("`VACUUM INTO` a file", size)
        }
        Backend::Postgres(_) => {
            let size: i64 = rt.block_on(
                sqlx::query_scalar::<_, i64>("SELECT pg_database_size(current_database())").fetch_one(store.pool()),
            )?;
            ("`pg_dump` (plain SQL) to a file", size as u64)
        }
    };
    for i in 0..=settings.requests {
        let _ = std::fs::remove_file(&copy);
        let started = Instant::now();
        match backend {
            Backend::Sqlite => {
                let sql = format!("VACUUM INTO '{}'", copy.display());
                rt.block_on(sqlx::query(&sql).execute(store.pool())).context("VACUUM INTO")?;
            }
            Backend::Postgres(_) => {
                run_checked(Command::new("pg_dump").arg("--dbname").arg(&db_url).arg("-f").arg(&copy), "pg_dump")?;
            }
        }
        let took = started.elapsed().as_secs_f64();
        baseline_size = std::fs::metadata(&copy)?.len();
        if i > 0 {
            baseline.push(took);
        }
    }
    let packed = scratch.path().join("copy.zst");
    run_checked(Command::new("zstd").args(["-q", "-3", "-f", "-o"]).arg(&packed).arg(&copy), "zstd")?;
    let baseline_zstd = std::fs::metadata(&packed)?.len();
    let mut label = instance.label();
    if matches!(backend, Backend::Sqlite) {
        let version: String = rt.block_on(sqlx::query_scalar("SELECT sqlite_version()").fetch_one(store.pool()))?;
        label = format!("{label} {version}");
    }
    rt.block_on(store.pool().close());
    instance.stop()?;
    for v in [&mut full, &mut not_modified, &mut baseline] {
        v.sort_by(f64::total_cmp);
    }
    eprintln!(
        "   snapshot {:.0} ms ({} bytes), 304 {:.0} ms; baseline {:.0} ms ({} bytes)",
        median(&full) * 1e3,
        compressed,
        median(&not_modified) * 1e3,
        median(&baseline) * 1e3,
        baseline_size
    );
    Ok(SnapshotCosts {
        label,
        full,
        not_modified,
        baseline,
        baseline_name,
        compressed,
        json: json_size,
        baseline_size,
        baseline_zstd,
        database_size,
    })
}

// ---------------------------------------------------------------------------------------
// The report.

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn sorted_secs(v: impl Iterator<Item = Duration>) -> Vec<f64> {
    let mut s: Vec<f64> = v.map(|d| d.as_secs_f64()).collect();
    s.sort_by(f64::total_cmp);
    s
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1 << 20))
}

fn report(
    header: &str,
    settings: &Settings,
    failovers: &[Failovers],
    sync: Option<&SyncFigures>,
    snapshots: &[SnapshotCosts],
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## drydock-bench standby, {}\n", date());
    out.push_str(header);
    if !failovers.is_empty() {
        let _ = writeln!(
            out,
            "\n### RPO and RTO: {} failovers per backend, interval {} s\n",
            settings.runs, settings.interval
        );
        let _ = writeln!(
            out,
            "| backend | RPO median | RPO max | RTO median | RTO max | seed: nightly backup | baseline: restore + start, median | max |"
        );
        let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        for f in failovers {
            let rpo = sorted_secs(f.runs.iter().map(|r| r.rpo));
            let rto = sorted_secs(f.runs.iter().map(|r| r.rto));
            let base = sorted_secs(f.runs.iter().map(|r| r.restore_rto));
            let _ = writeln!(
                out,
                "| {} | {:.2} s | {:.2} s | {:.2} s | {:.2} s | RPO up to {SEED_RPO_HOURS} h | {:.2} s | {:.2} s |",
                f.label,
                median(&rpo),
                max(&rpo),
                median(&rto),
                max(&rto),
                median(&base),
                max(&base)
            );
        }
        for f in failovers {
            let _ = writeln!(out, "\n{}, per run:\n", f.label);
            let _ = writeln!(
                out,
                "| run | writes for | acked | missing | RPO | standby lag at kill | promote | first sign-in | RTO (first write) | backup | restore + start | baseline RTO |"
            );
            let _ =
                writeln!(out, "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
            for (i, r) in f.runs.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "| {i} | {:.1} s | {} | {}{} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    r.write_for,
                    r.acked,
                    r.missing,
                    if r.prefix { "" } else { " (not the newest!)" },
                    secs(r.rpo),
                    r.lag_at_kill.map(|l| format!("{l} s")).unwrap_or_else(|| "?".into()),
                    secs(r.promote),
                    secs(r.first_login),
                    secs(r.rto),
                    secs(r.backup),
                    secs(r.restore_cmd),
                    secs(r.restore_rto)
                );
            }
        }
        let interval = f64::from(settings.interval);
        let rpo_met = failovers.iter().flat_map(|f| &f.runs).all(|r| r.rpo.as_secs_f64() <= interval);
        let rto_met = failovers.iter().flat_map(|f| &f.runs).all(|r| r.rto < RTO_AIM);
        let _ = writeln!(
            out,
            "\nAims: RPO at most the interval ({} s) in every run: {}; RTO under {} s in every run: {}.",
            settings.interval,
            if rpo_met { "met" } else { "**not met**" },
            RTO_AIM.as_secs(),
            if rto_met { "met" } else { "**not met**" }
        );
    }
    if let Some(s) = sync {
        let _ = writeln!(
            out,
            "\n### Incremental sync: one workspace, {} bytes ({}) in {} files, SQLite primary; engine: {}\n",
            s.bytes,
            mib(s.bytes),
            thousands(s.files as f64),
            s.engine
        );
        let _ = writeln!(out, "| request | index sent | answer (tar) | on the wire | files carried | time |");
        let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: |");
        let mut row = |label: &str, t: &Transfer| {
            let _ = writeln!(
                out,
                "| {label} | {} B | {} B | {} B | {} ({} B) | {} |",
                thousands(t.sent as f64),
                thousands(t.body as f64),
                thousands(t.wire as f64),
                t.files,
                thousands(t.file_bytes as f64),
                secs(t.took)
            );
        };
        row("empty index (full transfer)", &s.full);
        for (i, t) in s.changed.iter().enumerate() {
            row(&format!("one file changed (+1 KiB), round {}", i + 1), t);
        }
        row("nothing changed", &s.unchanged);
        let changed_wire = sorted_secs(s.changed.iter().map(|t| Duration::from_secs_f64(t.wire as f64)));
        let changed_sent = sorted_secs(s.changed.iter().map(|t| Duration::from_secs_f64(t.sent as f64)));
        let changed_took = sorted_secs(s.changed.iter().map(|t| t.took));
        let both = median(&changed_wire) + median(&changed_sent);
        let _ = writeln!(
            out,
            "\nOne file changed (median): {} bytes both ways (index up, tar down) against {} for the full transfer: \
             {:.5} of it ({:.0}× fewer). Time: {:.2} s against {:.2} s ({:.0}% of the full transfer's). \
             The engine's read of the whole volume alone (one helper download into nothing): {:.2} s — the \
             primary reads every byte through the engine to find the change.",
            thousands(both),
            thousands((s.full.wire + s.full.sent) as f64),
            both / (s.full.wire + s.full.sent) as f64,
            (s.full.wire + s.full.sent) as f64 / both,
            median(&changed_took),
            s.full.took.as_secs_f64(),
            median(&changed_took) / s.full.took.as_secs_f64() * 100.0,
            s.engine_read.as_secs_f64()
        );
        match &s.follower {
            Ok(f) => {
                let later: Vec<String> = f.landed[1..].iter().map(|b| thousands(*b as f64)).collect();
                let _ = writeln!(
                    out,
                    "\nA real standby on the same primary (`drydock standby --interval {} s`): its first sync landed \
                     {} bytes of files, {:.1} s after `drydock standby --detach`; the next syncs, one file changed \
                     before them: {} bytes (its log's `standby sync landed … bytes=`).",
                    settings.interval,
                    thousands(f.landed[0] as f64),
                    f.first_sync.as_secs_f64(),
                    later.join(", ")
                );
            }
            Err(e) => {
                let _ = writeln!(out, "\nThe real standby on the same primary failed: {e}");
            }
        }
    }
    if !snapshots.is_empty() {
        let _ = writeln!(
            out,
            "\n### The database copy at {} users and {} workspaces, {} requests each after one warm-up (medians)\n",
            thousands(crate::audit_report::USERS as f64),
            thousands(crate::audit_report::WORKSPACES as f64),
            settings.requests
        );
        let _ = writeln!(
            out,
            "| backend | database | `GET /api/replication/snapshot` | its size (zstd JSON) | 304 (`If-None-Match`) | baseline | baseline time | its size (zstd -3) | snapshot / baseline time |"
        );
        let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: |");
        for s in snapshots {
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} ms (max {:.0}) | {} ({} JSON) | {:.0} ms (max {:.0}) | {} | {:.0} ms (max {:.0}) | {} ({}) | {:.2} |",
                s.label,
                mib(s.database_size),
                median(&s.full) * 1e3,
                max(&s.full) * 1e3,
                mib(s.compressed),
                mib(s.json),
                median(&s.not_modified) * 1e3,
                max(&s.not_modified) * 1e3,
                s.baseline_name,
                median(&s.baseline) * 1e3,
                max(&s.baseline) * 1e3,
                mib(s.baseline_size),
                mib(s.baseline_zstd),
                median(&s.full) / median(&s.baseline)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_durations_spread_over_the_cycle() {
        let d: Vec<f64> = (0..10).map(|r| write_duration(10, r).as_secs_f64()).collect();
        assert!(d.iter().all(|s| (15.0..25.0).contains(s)));
        let mut phases: Vec<u32> = d.iter().map(|s| (s % 10.0) as u32).collect();
        phases.sort_unstable();
        phases.dedup();
        assert!(phases.len() >= 7, "{phases:?}");
    }
}
