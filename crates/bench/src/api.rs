//! `drydock-bench api`: authenticated `GET /api/user` throughput and p99 latency under wrk on
//! loopback, against unauthenticated `GET /api/health` measured in the same run as the
//! baseline, on SQLite and, when `TEST_POSTGRES_URL` is set, on PostgreSQL.
//!
//! Each backend gets a fresh instance made by the real release binary (`drydock init`, then
//! `drydock start --detach` on port 0), and a fresh database on PostgreSQL. Whatever happens,
//! the server is stopped, the database dropped and the data dir removed (by `Drop` guards).

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail, ensure};

use crate::http::get_json;
use crate::instance::{ADMIN_NAME, Backend, Instance, drydock_bin, drydock_version};
use crate::util::{code_version, date, env_u32, first_line, load_average, machine, run_checked, thousands};

const HELP: &str = "\
usage: drydock-bench api

Measures GET /api/health (no credentials: the baseline), then GET /api/user with the
administrator's Bearer token, each under wrk on loopback, on SQLite and, when
TEST_POSTGRES_URL is set, on a fresh database of that PostgreSQL server.
Prints a markdown table; fails only when a run is invalid (e.g. any non-2xx answer).

environment:
  DRYDOCK_BIN                the drydock binary (default: target/release/drydock in the workspace)
  TEST_POSTGRES_URL  a PostgreSQL server URL (its database is used to create and drop ours)
  BENCH_SECONDS              duration of each measured wrk run (default 10)
  BENCH_WARMUP_SECONDS       unmeasured wrk run before each measured one (default 2; 0: none)
  BENCH_THREADS              wrk threads, -t (default 2)
  BENCH_CONNECTIONS          wrk connections, -c (default 64)";

/// The aim for authenticated requests on SQLite.
const AIM_RATE: f64 = 10_000.0;
const AIM_RATIO: f64 = 0.5;

pub fn run(args: &[String]) -> Result<()> {
    if !crate::util::no_arguments(args, HELP)? {
        return Ok(());
    }
    let settings = Settings::from_env()?;
    let bin = drydock_bin("api")?;
    let wrk_version = wrk_version()?;
    let drydock_version = drydock_version(&bin)?;

    // Other work on the machine skews every figure, the baseline's too: say how busy it was.
    let load_before = load_average();
    let backends = Backend::from_env();

    let mut results = Vec::new();
    for backend in &backends {
        eprintln!("== {}", backend.label());
        results.push(bench_backend(&bin, backend, &settings)?);
    }

    let load = format!("{load_before} before the run, {} after it", load_average());
    print!("{}", report(&settings, &wrk_version, &drydock_version, &load, &results));
    Ok(())
}

struct Settings {
    seconds: u32,
    warmup_seconds: u32,
    threads: u32,
    connections: u32,
}

impl Settings {
    fn from_env() -> Result<Settings> {
        let s = Settings {
            seconds: env_u32("BENCH_SECONDS", 10, 1)?,
            warmup_seconds: env_u32("BENCH_WARMUP_SECONDS", 2, 0)?,
            threads: env_u32("BENCH_THREADS", 2, 1)?,
            connections: env_u32("BENCH_CONNECTIONS", 64, 1)?,
        };
        ensure!(
            s.connections >= s.threads,
            "BENCH_CONNECTIONS ({}) must be at least BENCH_THREADS ({}): wrk gives each thread its own connections",
            s.connections,
            s.threads
        );
        Ok(s)
    }

    fn describe(&self) -> String {
        let warmup = match self.warmup_seconds {
            0 => "no warm-up".to_string(),
            n => format!("after an unmeasured {n} s run of the same route"),
        };
        format!("`wrk -t{} -c{} -d{}s --latency`, {warmup}", self.threads, self.connections, self.seconds)
    }
}

/// One backend's figures.
struct BackendResult {
    label: String,
    health: WrkRun,
    user: WrkRun,
}

fn bench_backend(bin: &Path, backend: &Backend, settings: &Settings) -> Result<BackendResult> {
    let mut instance = Instance::create(bin, backend)?;
    instance.init()?;
    instance.start()?;
    let url = instance.url()?;
    let token = instance.admin_token()?;
    eprintln!("drydock is running at {url}");

    // A benchmark of 401s is worthless: check that each route answers as it should first.
    let (status, body) = get_json(&url, "/api/health", None)?;
    ensure!(status == 200, "GET /api/health answered {status}: {body}");
    let (status, body) = get_json(&url, "/api/user", None)?;
    ensure!(status == 401, "GET /api/user without credentials answered {status}, not 401: {body}");
    let (status, body) = get_json(&url, "/api/user", Some(&token))?;
    ensure!(status == 200, "GET /api/user with the admin token answered {status}, not 200: {body}");
    let me: serde_json::Value =
        serde_json::from_str(&body).with_context(|| format!("GET /api/user: not JSON: {body}"))?;
    ensure!(me["name"] == ADMIN_NAME, "GET /api/user answered another user than '{ADMIN_NAME}': {body}");

    let health = measure(&url, "/api/health", None, settings)?;
    let user = measure(&url, "/api/user", Some(&token), settings)?;
    instance.stop()?;

    Ok(BackendResult { label: instance.label(), health, user })
}

/// An optional warm-up run, then the measured one; fails on any non-2xx answer.
fn measure(url: &str, path: &str, token: Option<&str>, settings: &Settings) -> Result<WrkRun> {
    if settings.warmup_seconds > 0 {
        eprintln!("warming up GET {path} for {} s", settings.warmup_seconds);
        let warmup = wrk(url, path, token, settings.warmup_seconds, settings)?;
        ensure!(warmup.non_2xx == 0, "GET {path}: {} non-2xx answers while warming up", warmup.non_2xx);
    }
    eprintln!("measuring GET {path} for {} s", settings.seconds);
    let run = wrk(url, path, token, settings.seconds, settings)?;
    ensure!(
        run.non_2xx == 0,
        "GET {path}: {} of {} answers were not 2xx or 3xx: the figures would not measure the route\n{}",
        run.non_2xx,
        run.requests,
        run.raw
    );
    ensure!(run.requests > 0, "GET {path}: wrk made no request\n{}", run.raw);
    if run.socket_errors > 0 {
        eprintln!("warning: GET {path}: wrk counted {} socket errors\n{}", run.socket_errors, run.raw);
    }
    eprintln!("  {:.0} requests/s, p99 {}", run.rate, format_latency(run.p99_micros));
    Ok(run)
}

// ---------------------------------------------------------------------------------------
// wrk

#[derive(Debug)]
struct WrkRun {
    rate: f64,
    p99_micros: f64,
    requests: u64,
    non_2xx: u64,
    socket_errors: u64,
    raw: String,
}

fn wrk(url: &str, path: &str, token: Option<&str>, seconds: u32, settings: &Settings) -> Result<WrkRun> {
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{}", settings.threads))
        .arg(format!("-c{}", settings.connections))
        .arg(format!("-d{seconds}s"))
        .arg("--latency");
    if let Some(token) = token {
        cmd.arg("-H").arg(format!("Authorization: Bearer {token}"));
    }
    cmd.arg(format!("{url}{path}")).stdin(Stdio::null());
    let out = run_checked(&mut cmd, &format!("wrk on {path}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    parse_wrk(&text).with_context(|| format!("cannot read wrk's output:\n{text}"))
}

fn parse_wrk(text: &str) -> Result<WrkRun> {
    let mut rate = None;
    let mut p99 = None;
    let mut requests = None;
    let mut non_2xx = 0;
    let mut socket_errors = 0;
    let mut in_distribution = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with("Latency Distribution") {
            in_distribution = true;
        } else if let Some(v) = line.strip_prefix("Requests/sec:") {
            rate = Some(v.trim().parse::<f64>().with_context(|| format!("Requests/sec '{v}'"))?);
        } else if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            non_2xx = v.trim().parse().with_context(|| format!("Non-2xx '{v}'"))?;
        } else if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            for part in v.split(',') {
                let n = part.split_whitespace().nth(1).unwrap_or("0");
                socket_errors += n.parse::<u64>().with_context(|| format!("Socket errors '{v}'"))?;
            }
        } else if in_distribution && let Some(v) = line.strip_prefix("99%") {
            p99 = Some(parse_duration_micros(v.trim())?);
        } else if let Some((n, rest)) = line.split_once(" requests in ")
            && rest.contains(" read")
        {
            requests = Some(n.trim().parse::<u64>().with_context(|| format!("request count '{n}'"))?);
        }
    }
    Ok(WrkRun {
        rate: rate.context("no Requests/sec line")?,
        p99_micros: p99.context("no 99% line in the latency distribution (is --latency given?)")?,
        requests: requests.context("no 'N requests in' line")?,
        non_2xx,
        socket_errors,
        raw: text.to_string(),
    })
}

/// wrk's durations: a number and one of us, ms, s, m, h.
fn parse_duration_micros(v: &str) -> Result<f64> {
    let split =
        v.find(|c: char| !(c.is_ascii_digit() || c == '.')).with_context(|| format!("duration '{v}' has no unit"))?;
    let (number, unit) = v.split_at(split);
    let number: f64 = number.parse().with_context(|| format!("duration '{v}'"))?;
    let factor = match unit.trim() {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        "m" => 60e6,
        "h" => 3600e6,
        other => bail!("duration '{v}': unknown unit '{other}'"),
    };
    Ok(number * factor)
}

fn format_latency(micros: f64) -> String {
    if micros < 1000.0 { format!("{micros:.0} µs") } else { format!("{:.2} ms", micros / 1000.0) }
}

fn wrk_version() -> Result<String> {
    // `wrk -v` prints its version and usage, and exits 1.
    let out = Command::new("wrk").arg("-v").stdin(Stdio::null()).output().context(
        "cannot run wrk: install it (`apt-get install wrk`), or run `bash scripts/bench.sh api`, which does",
    )?;
    let text = [out.stdout, out.stderr].concat();
    let line = first_line(&text);
    // "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer"
    Ok(line.split(" Copyright").next().unwrap_or(&line).trim().to_string())
}

// ---------------------------------------------------------------------------------------
// The report

fn report(
    settings: &Settings,
    wrk_version: &str,
    drydock_version: &str,
    load: &str,
    results: &[BackendResult],
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## drydock-bench api, {}\n", date());
    let _ = writeln!(out, "- machine: {}; the server and wrk share them", machine());
    let _ = writeln!(out, "- load average (1, 5, 15 min): {load}");
    let _ = writeln!(out, "- server: {drydock_version} ({}), on 127.0.0.1, default config", code_version());
    let _ = writeln!(out, "- load: {wrk_version}, {}, on the same machine", settings.describe());
    let _ = writeln!(out, "- baseline: `GET /api/health` (no credentials) in the same run, on the same server\n");
    let _ = writeln!(out, "| backend | route | requests/s | p99 latency | ratio to health baseline |");
    let _ = writeln!(out, "| --- | --- | ---: | ---: | ---: |");
    for r in results {
        for (route, run) in [("`GET /api/health`", &r.health), ("`GET /api/user` (Bearer)", &r.user)] {
            let _ = writeln!(
                out,
                "| {} | {route} | {} | {} | {:.2} |",
                r.label,
                thousands(run.rate),
                format_latency(run.p99_micros),
                run.rate / r.health.rate
            );
        }
    }
    if let Some(sqlite) = results.first() {
        let ratio = sqlite.user.rate / sqlite.health.rate;
        let met = sqlite.user.rate >= AIM_RATE && ratio >= AIM_RATIO;
        let _ = writeln!(
            out,
            "\nAim (SQLite, authenticated): at least {} requests/s and {AIM_RATIO:.2} of the health baseline: {} \
             ({} requests/s, {ratio:.2}).",
            thousands(AIM_RATE),
            if met { "met" } else { "NOT met" },
            thousands(sqlite.user.rate)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "Running 10s test @ http://127.0.0.1:40000/api/user
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.02ms    1.10ms  25.31ms   80.00%
    Req/Sec    10.71k   612.33    12.01k    71.00%
  Latency Distribution
     50%    2.88ms
     75%    3.50ms
     90%    4.20ms
     99%  850.00us
  213123 requests in 10.00s, 60.12MB read
  Non-2xx or 3xx responses: 12
  Socket errors: connect 0, read 2, write 0, timeout 1
Requests/sec:  21312.30
Transfer/sec:      6.01MB
";

    #[test]
    fn parses_wrk_output() {
        let run = parse_wrk(SAMPLE).unwrap();
        assert_eq!(run.rate, 21312.30);
        assert_eq!(run.p99_micros, 850.0);
        assert_eq!(run.requests, 213123);
        assert_eq!(run.non_2xx, 12);
        assert_eq!(run.socket_errors, 3);
    }

    #[test]
    fn parses_durations_and_formats() {
        assert_eq!(parse_duration_micros("1.50ms").unwrap(), 1500.0);
        assert_eq!(parse_duration_micros("2.00s").unwrap(), 2e6);
        assert!(parse_duration_micros("3").is_err());
        assert_eq!(format_latency(12_345.0), "12.35 ms");
    }
}
