//! `drydock-bench limits-race`: many starts at once against a small `runtime` limit. One user
//! owns BENCH_REQUESTS stopped workspaces and may run BENCH_LIMIT at once; every start is
//! sent together (threads released by a barrier). Exactly BENCH_LIMIT must be admitted (200)
//! and the rest refused (409), and exactly those must reach RUNNING; any other answer, or a
//! count off by one, fails the run. The answer times are set against the same number of
//! reads of the same workspaces sent together (`GET /api/workspace/{id}`) in the same run:
//! what admitting a start in one serialized transaction costs over a plain read.
//! On SQLite and, when `TEST_POSTGRES_URL` is set, on PostgreSQL.

use std::fmt::Write as _;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::json;

use crate::drydock_api::{Api, InstanceSweep, Workspaces, connect, engine_description};
use crate::instance::{Backend, Instance, drydock_bin, drydock_version};
use crate::util::{code_version, date, env_u32, load_average, machine, max, median, ms, percentile};

const HELP: &str = "\
usage: drydock-bench limits-race

On a fresh instance (SQLite, then PostgreSQL when TEST_POSTGRES_URL is set), one user with a
runtime limit owns BENCH_REQUESTS stopped one-machine workspaces (the busybox test image,
64 MB); all their starts are sent at once. Exactly the limit must be admitted and reach
RUNNING, the rest refused with 409. Reports requests, admitted, refused and the limit, and
the answer times against as many reads of the same workspaces sent at once.

environment:
  DRYDOCK_BIN        the drydock binary (default: target/release/drydock in the workspace)
  TEST_POSTGRES_URL  a PostgreSQL server URL (its database is used to create and drop ours)
  BENCH_REQUESTS     starts sent at once (default 100)
  BENCH_LIMIT        the user's runtime limit (default 10)";

const USER: &str = "racer";
const USER_PASSWORD: &str = "racer-password-1";

struct Figures {
    backend: &'static str,
    requests: usize,
    admitted: usize,
    refused: usize,
    running: usize,
    /// Answer times of the starts and of the reads, in ms, sorted.
    starts: Vec<f64>,
    reads: Vec<f64>,
}

pub fn run(args: &[String]) -> Result<()> {
    if !crate::util::no_arguments(args, HELP)? {
        return Ok(());
    }
    let requests = env_u32("BENCH_REQUESTS", 100, 2)? as usize;
    let limit = env_u32("BENCH_LIMIT", 10, 1)? as usize;
    ensure!(limit < requests, "BENCH_LIMIT ({limit}) must be below BENCH_REQUESTS ({requests})");
    let bin = drydock_bin("limits-race")?;
    let version = drydock_version(&bin)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start tokio")?;
    let image = rt
        .block_on(drydock_docker::testing::busybox_image())
        .context("cannot make the busybox test image (is the engine up, and Debian's busybox-static installed?)")?;
    let engine = rt.block_on(async { anyhow::Ok(engine_description(&connect().await?).await) })?;
    let load_before = load_average();
    let mut all = Vec::new();
    for backend in &Backend::from_env() {
        eprintln!("== {}", backend.label());
        all.push(race(&bin, backend, &image, requests, limit)?);
    }
    let mut out = String::new();
    let _ = writeln!(out, "\n## drydock-bench limits-race, {}\n", date());
    let _ = writeln!(out, "- machine: {}", machine());
    let _ = writeln!(out, "- load average: {load_before} before the run, {} after it", load_average());
    let _ = writeln!(out, "- server: {version} ({}), default config but the user's limit", code_version());
    let _ = writeln!(out, "- engine: {engine}; image `{image}`, one machine of 64 MB a workspace");
    let _ =
        writeln!(out, "- {requests} starts at once against runtime = {limit}; baseline: {requests} reads at once\n");
    let _ = writeln!(out, "| backend | requests | admitted (200) | refused (409) | limit | RUNNING after |");
    let _ = writeln!(out, "| --- | ---: | ---: | ---: | ---: | ---: |");
    for f in &all {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {limit} | {} |",
            f.backend, f.requests, f.admitted, f.refused, f.running
        );
    }
    let _ = writeln!(out, "\n| backend | answer times | median | p90 | max |");
    let _ = writeln!(out, "| --- | --- | ---: | ---: | ---: |");
    for f in &all {
        for (what, v) in [("starts (admission)", &f.starts), ("reads (baseline)", &f.reads)] {
            let _ = writeln!(
                out,
                "| {} | {what} | {:.1} ms | {:.1} ms | {:.1} ms |",
                f.backend,
                median(v),
                percentile(v, 90.0),
                max(v)
            );
        }
        let _ = writeln!(
            out,
            "\n{}: median start answer / median read answer {:.2}.",
            f.backend,
            median(&f.starts) / median(&f.reads)
        );
    }
    print!("{out}");
    Ok(())
}

fn race(bin: &std::path::Path, backend: &Backend, image: &str, requests: usize, limit: usize) -> Result<Figures> {
    // Drop order: the workspaces go before the server stops, the sweep comes last.
    let mut sweep = InstanceSweep { instance_id: None };
    let mut instance = Instance::create(bin, backend)?;
    instance.init()?;
    sweep.instance_id = Some(instance.instance_id()?);
    // Every admitted start may talk to the engine at once; the race is about admission.
    instance.set_config("DRYDOCK_LIMITS__WORKSPACE__START_CONCURRENCY", &limit.to_string());
    instance.start()?;
    let admin = Api { url: instance.url()?, token: instance.admin_token()? };
    let user = admin.expect(
        "POST",
        "/api/user",
        Some(&json!({"name": USER, "email": "racer@example.com", "password": USER_PASSWORD})),
        201,
    )?;
    let user_id = user["id"].as_str().context("no user id")?.to_string();
    let token = admin.expect(
        "POST",
        "/api/auth/login",
        Some(&json!({"username": USER, "password": USER_PASSWORD})),
        200,
    )?["token"]
        .as_str()
        .context("no token in the login answer")?
        .to_string();
    let limits = json!({"accountId": user_id, "resources": [{"type": "runtime", "amount": limit},
                                                           {"type": "workspace", "amount": -1}]});
    admin.expect("POST", "/api/resource/free", Some(&limits), 201)?;
    let api = Api { url: admin.url.clone(), token };
    let mut workspaces = Workspaces { api: &api, ids: Vec::new() };
    for i in 0..requests {
        workspaces.create(&format!("race-{i:03}"), image, 64 << 20)?;
    }
    let ids = workspaces.ids.clone();

    let reads = at_once(&api, &ids, "GET", "")?;
    ensure!(reads.iter().all(|(s, _)| *s == 200), "a read failed: {:?}", reads.iter().map(|r| r.0).collect::<Vec<_>>());
    let starts = at_once(&api, &ids, "POST", "/runtime")?;
    let admitted: Vec<&String> = ids.iter().zip(&starts).filter(|(_, (s, _))| *s == 200).map(|(id, _)| id).collect();
    let refused = starts.iter().filter(|(s, _)| *s == 409).count();
    ensure!(
        admitted.len() + refused == requests,
        "answers other than 200 and 409: {:?}",
        starts.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    ensure!(admitted.len() == limit, "{} starts were admitted against a limit of {limit}", admitted.len());
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut running = 0;
    for id in &admitted {
        loop {
            let status = api.status(id)?;
            if status == "RUNNING" {
                running += 1;
                break;
            }
            ensure!(status == "STARTING", "admitted workspace {id} is {status}, not RUNNING");
            ensure!(Instant::now() < deadline, "admitted workspace {id} did not reach RUNNING in 120 s");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let used = api.expect("GET", &format!("/api/resource/{user_id}/used"), None, 200)?;
    let in_use = used.as_array().and_then(|a| a.iter().find(|r| r["type"] == "runtime")).map(|r| r["amount"].clone());
    ensure!(in_use == Some(json!(limit)), "the user's runtime usage is {in_use:?}, not {limit}");

    workspaces.delete_all()?;
    instance.stop()?;
    let sort = |v: Vec<(u16, f64)>| {
        let mut t: Vec<f64> = v.into_iter().map(|(_, t)| t).collect();
        t.sort_by(f64::total_cmp);
        t
    };
    Ok(Figures {
        backend: backend.label(),
        requests,
        admitted: admitted.len(),
        refused,
        running,
        starts: sort(starts),
        reads: sort(reads),
    })
}

/// Sends one request per workspace, all released together; each answer's status and time.
fn at_once(api: &Api, ids: &[String], method: &str, suffix: &str) -> Result<Vec<(u16, f64)>> {
    let barrier = Barrier::new(ids.len());
    let results: Vec<Result<(u16, f64)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ids
            .iter()
            .map(|id| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let sent = Instant::now();
                    let (status, _) = api.call(method, &format!("/api/workspace/{id}{suffix}"), None)?;
                    Ok((status, ms(sent.elapsed())))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a request thread panicked"))))
            .collect()
    });
    results.into_iter().collect()
}
