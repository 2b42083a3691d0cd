//! `drydock status` and `drydock version`.

use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use drydock_ops::versions::{self, SCHEMA, Standing, UPGRADES_FROM, VERSION};
use serde_json::json;

use crate::cmd::start::healthy;
use crate::config;
use crate::instance::DataDir;

/// Exit code of `status` when the server is not running (as LSB init scripts do).
const NOT_RUNNING: u8 = 3;

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
pub struct VersionArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

pub async fn status(dir: &DataDir, args: &StatusArgs) -> Result<ExitCode> {
    let pid = dir.running_pid();
    let url = dir.running_url();
    let answering = match &url {
        Some(u) => healthy(u).await,
        None => false,
    };
    let running = pid.is_some() && answering;
    // What the server says it is doing (RUNNING or MAINTENANCE, with the message): public.
    let state = match (&url, running) {
        (Some(u), true) => system_state(u).await,
        _ => None,
    };
    let instance = dir.is_instance();
    let backend = if instance {
        config::load(&dir.root, &[])
            .ok()
            .and_then(|l| drydock_store::Backend::from_url(&l.config.database.url).ok())
            .map(|b| b.name())
    } else {
        None
    };
    let report = json!({
        "running": running,
        "pid": pid,
        "url": url,
        "version": VERSION,
        "instanceVersion": dir.instance_version().ok(),
        "instanceId": dir.instance_id().ok(),
        "database": backend,
        "dataDir": dir.root.display().to_string(),
        "state": state,
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if !instance {
        println!("no drydock instance in {} (create one with `drydock init` or `drydock start`)", dir.root.display());
    } else {
        match (running, pid) {
            (true, Some(pid)) => println!("drydock is running (pid {pid}) at {}", url.as_deref().unwrap_or("?")),
            (false, Some(pid)) => println!("drydock (pid {pid}) is starting or not answering its health check"),
            _ => println!("drydock is stopped"),
        }
        println!("  data dir: {}", dir.root.display());
        println!("  instance: {}", dir.instance_id().unwrap_or_else(|_| "?".into()));
        println!("  version:  {VERSION} (instance {})", dir.instance_version().unwrap_or_else(|_| "?".into()));
        println!("  database: {}", backend.unwrap_or("?"));
        if let Some(state) = &state
            && state["status"] == "MAINTENANCE"
        {
            println!("  maintenance mode: on: {}", state["message"].as_str().unwrap_or(""));
        }
        if let Some(state) = &state
            && state["status"] == "STANDBY"
        {
            let lag = state["lagSeconds"].as_i64().map(|s| format!("{s} s behind")).unwrap_or("no copy yet".into());
            println!("  standby of:  {} ({lag})", state["primary"].as_str().unwrap_or("?"));
            if let Some(error) = state["lastError"].as_str() {
                println!("  last error:  {error}");
            }
        }
    }
    Ok(if running { ExitCode::SUCCESS } else { ExitCode::from(NOT_RUNNING) })
}

async fn system_state(url: &str) -> Option<serde_json::Value> {
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(std::time::Duration::from_secs(2))
        .build()
        .ok()?;
    client.get(format!("{url}/api/system/state")).send().await.ok()?.json().await.ok()
}

pub fn version(dir: &DataDir, args: &VersionArgs) -> Result<ExitCode> {
    let instance_version = dir.instance_version().ok();
    if args.json {
        let report = json!({
            "version": VERSION,
            "schema": SCHEMA,
            "upgradesFrom": UPGRADES_FROM,
            "instanceVersion": instance_version,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("drydock {VERSION} (database schema {SCHEMA})");
    println!("upgrades from: {}", UPGRADES_FROM.join(", "));
    let Some(version) = instance_version else {
        println!("no instance in {}", dir.root.display());
        return Ok(ExitCode::SUCCESS);
    };
    let hint = match versions::standing(&version) {
        _ if !versions::is_version(&version) => " (not a version: the version file is damaged)".to_string(),
        Standing::Current => String::new(),
        Standing::Upgradable => " (upgrade it with `drydock upgrade`; `--plan` shows the steps)".to_string(),
        Standing::Newer => format!(" (newer than this drydock: run drydock {version} or newer)"),
        Standing::TooOld { first } => format!(" (upgrade it to {first} first, with drydock {first})"),
        Standing::Unknown => " (a release this drydock does not know)".to_string(),
    };
    println!("instance in {}: {version}{hint}", dir.root.display());
    Ok(ExitCode::SUCCESS)
}
