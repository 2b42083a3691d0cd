//! `drydock-bench audit-overhead`: what writing the audit log costs on the authenticated write
//! path. Two instances of the same binary run side by side, one with the audit log on (the
//! default) and one with `audit.enabled = false`; the same sequence of user creations and
//! deletions (`POST /api/user`, `DELETE /api/user/{id}`) goes to each in turn, one request at
//! a time, interleaved so both see the same machine. The figure is the ratio of the medians.
//! On SQLite and, when `TEST_POSTGRES_URL` is set, on PostgreSQL.

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use serde_json::json;

use crate::drydock_api::Api;
use crate::instance::{Backend, Instance, drydock_bin, drydock_version};
use crate::util::{code_version, date, env_u32, load_average, machine, median, ms, percentile};

const HELP: &str = "\
usage: drydock-bench audit-overhead

On two fresh instances (SQLite, then PostgreSQL when TEST_POSTGRES_URL is set), one with the
audit log on and one with audit.enabled = false, creates and deletes BENCH_ROUNDS users
through the API, one request at a time, alternating between the instances. Reports the
median and p90 answer times of each path and the overhead of the audit log.

environment:
  DRYDOCK_BIN        the drydock binary (default: target/release/drydock in the workspace)
  TEST_POSTGRES_URL  a PostgreSQL server URL (its database is used to create and drop ours)
  BENCH_ROUNDS       users created and deleted on each instance (default 200)";

/// Unmeasured rounds first, so both servers have warm caches and connections.
const WARMUP_ROUNDS: usize = 10;

struct Path {
    creates: Vec<f64>,
    deletes: Vec<f64>,
}

struct Figures {
    backend: &'static str,
    on: Path,
    off: Path,
    events_on: u64,
    events_off: u64,
}

pub fn run(args: &[String]) -> Result<()> {
    if !crate::util::no_arguments(args, HELP)? {
        return Ok(());
    }
    let rounds = env_u32("BENCH_ROUNDS", 200, 10)? as usize;
    let bin = drydock_bin("audit-overhead")?;
    let version = drydock_version(&bin)?;
    let load_before = load_average();
    let mut all = Vec::new();
    for backend in &Backend::from_env() {
        eprintln!("== {}", backend.label());
        all.push(measure(&bin, backend, rounds)?);
    }
    let mut out = String::new();
    let _ = writeln!(out, "\n## drydock-bench audit-overhead, {}\n", date());
    let _ = writeln!(out, "- machine: {}", machine());
    let _ = writeln!(out, "- load average: {load_before} before the run, {} after it", load_average());
    let _ = writeln!(out, "- server: {version} ({}), default config; baseline: audit.enabled = false", code_version());
    let _ =
        writeln!(out, "- {rounds} users created then deleted on each instance, one request at a time, interleaved\n");
    let _ = writeln!(out, "| backend | path | audit on: median | p90 | audit off: median | p90 | overhead (medians) |");
    let _ = writeln!(out, "| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for f in &all {
        for (path, on, off) in [
            ("POST /api/user", &f.on.creates, &f.off.creates),
            ("DELETE /api/user/{id}", &f.on.deletes, &f.off.deletes),
        ] {
            let _ = writeln!(
                out,
                "| {} | {path} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:+.1}% |",
                f.backend,
                median(on),
                percentile(on, 90.0),
                median(off),
                percentile(off, 90.0),
                (median(on) / median(off) - 1.0) * 100.0
            );
        }
    }
    for f in &all {
        let _ = writeln!(
            out,
            "\n{}: {} audit events in the log with it on (the chain verified), {} with it off (those of `init`).",
            f.backend, f.events_on, f.events_off
        );
    }
    print!("{out}");
    Ok(())
}

/// One instance's server, ready for requests.
fn server(bin: &std::path::Path, backend: &Backend, audit: bool) -> Result<(Instance, Api)> {
    let mut instance = Instance::create(bin, backend)?;
    instance.init()?;
    if !audit {
        instance.set_config("DRYDOCK_AUDIT__ENABLED", "false");
    }
    instance.start()?;
    let api = Api { url: instance.url()?, token: instance.admin_token()? };
    Ok((instance, api))
}

fn round(api: &Api, name: &str, path: Option<&mut Path>) -> Result<()> {
    let body = json!({"name": name, "email": format!("{name}@example.com"), "password": "bench-password-1"});
    let t = Instant::now();
    let user = api.expect("POST", "/api/user", Some(&body), 201)?;
    let created = ms(t.elapsed());
    let id = user["id"].as_str().context("no user id")?.to_string();
    let t = Instant::now();
    api.expect("DELETE", &format!("/api/user/{id}"), None, 204)?;
    let deleted = ms(t.elapsed());
    if let Some(path) = path {
        path.creates.push(created);
        path.deletes.push(deleted);
    }
    Ok(())
}

/// Events in the instance's audit log (its chain must verify).
fn events(api: &Api) -> Result<u64> {
    let v = api.expect("GET", "/api/audit/verify", None, 200)?;
    ensure!(v["intact"] == true, "the audit chain does not verify: {v}");
    v["checked"].as_u64().context("no count in the verification")
}

fn measure(bin: &std::path::Path, backend: &Backend, rounds: usize) -> Result<Figures> {
    let (_on_instance, on) = server(bin, backend, true)?;
    let (_off_instance, off) = server(bin, backend, false)?;
    let before = (events(&on)?, events(&off)?);
    for i in 0..WARMUP_ROUNDS {
        round(&on, &format!("warm{i:04}"), None)?;
        round(&off, &format!("warm{i:04}"), None)?;
    }
    let mut with = Path { creates: Vec::new(), deletes: Vec::new() };
    let mut without = Path { creates: Vec::new(), deletes: Vec::new() };
    for i in 0..rounds {
        // Alternate which goes first, so neither always follows the other's work.
        let name = format!("bench{i:05}");
        if i % 2 == 0 {
            round(&on, &name, Some(&mut with))?;
            round(&off, &name, Some(&mut without))?;
        } else {
            round(&off, &name, Some(&mut without))?;
            round(&on, &name, Some(&mut with))?;
        }
    }
    let after = (events(&on)?, events(&off)?);
    let expected = 2 * (rounds + WARMUP_ROUNDS) as u64;
    ensure!(after.0 - before.0 == expected, "the audit log holds {} new events, not {expected}", after.0 - before.0);
    ensure!(after.1 == before.1, "audit.enabled = false still wrote {} events", after.1 - before.1);
    for v in [&mut with.creates, &mut with.deletes, &mut without.creates, &mut without.deletes] {
        v.sort_by(f64::total_cmp);
    }
    Ok(Figures { backend: backend.label(), on: with, off: without, events_on: after.0, events_off: after.1 })
}
