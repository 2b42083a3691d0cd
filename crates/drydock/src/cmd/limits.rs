//! `drydock limits list|show|set|reset`: per-user resource limits, through the running
//! server's Resource API.

use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::Subcommand;
use drydock_core::config::Megabytes;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, encode, is_not_found};
use crate::cmd::user::{Remote, resolve};
use crate::instance::DataDir;

#[derive(Subcommand, Debug)]
pub enum LimitsCommand {
    /// List the users whose limits are overridden, with the overridden values.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// A user's limits (and where each comes from), what they use and what is left.
    Show {
        user: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Override some of a user's limits; others keep their value (-1: unlimited).
    Set {
        user: String,
        /// Memory of the user's running workspaces together: 2048, 2048mb or 2gb.
        #[arg(long, allow_negative_numbers = true)]
        ram: Option<String>,
        /// Workspaces the user may have.
        #[arg(long, allow_negative_numbers = true)]
        workspaces: Option<i64>,
        /// Workspaces the user may run at once.
        #[arg(long, allow_negative_numbers = true)]
        runtimes: Option<i64>,
        /// Idle minutes after which the user's running workspace is stopped.
        #[arg(long, allow_negative_numbers = true)]
        timeout: Option<i64>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Give a user the default limits again.
    Reset {
        user: String,
        #[command(flatten)]
        remote: Remote,
    },
}

const TYPES: [&str; 4] = ["RAM", "workspace", "runtime", "timeout"];

fn amount_of(resources: &Value, kind: &str) -> Option<i64> {
    resources.as_array()?.iter().find(|r| r["type"] == kind)?["amount"].as_i64()
}

fn shown(amount: Option<i64>) -> String {
    match amount {
        None => "-".to_string(),
        Some(-1) => "unlimited".to_string(),
        Some(n) => n.to_string(),
    }
}

/// The user's override, or `None` when they have the defaults.
async fn override_of(client: &Client, id: &str) -> Result<Option<Value>> {
    match client.get::<Value>(&format!("/api/resource/free/{}", encode(id))).await {
        Ok(v) => Ok(Some(v)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

pub async fn run(dir: &DataDir, command: LimitsCommand) -> Result<ExitCode> {
    match command {
        LimitsCommand::List { json, remote } => {
            let client = Client::connect(dir, remote.url.as_deref())?;
            let mut all: Vec<Value> = Vec::new();
            loop {
                let mut page: Vec<Value> =
                    client.get(&format!("/api/resource/free?maxItems=1000&skipCount={}", all.len())).await?;
                let done = page.len() < 1000;
                all.append(&mut page);
                if done {
                    break;
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<24} {:>10} {:>10} {:>10} {:>10}",
                "USER", "RAM (mb)", "WORKSPACES", "RUNTIMES", "TIMEOUT (min)"
            );
            for o in &all {
                let id = o["accountId"].as_str().unwrap_or_default();
                let user: Value = client.get(&format!("/api/user/{}", encode(id))).await?;
                let r = &o["resources"];
                println!(
                    "{:<24} {:>10} {:>10} {:>10} {:>10}",
                    user["name"].as_str().unwrap_or(id),
                    shown(amount_of(r, "RAM")),
                    shown(amount_of(r, "workspace")),
                    shown(amount_of(r, "runtime")),
                    shown(amount_of(r, "timeout"))
                );
            }
        }
        LimitsCommand::Show { user, json, remote } => {
            let client = Client::connect(dir, remote.url.as_deref())?;
            let u = resolve(&client, &user).await?;
            let id = encode(u["id"].as_str().unwrap_or_default());
            let limits: Value = client.get(&format!("/api/resource/{id}")).await?;
            let used: Value = client.get(&format!("/api/resource/{id}/used")).await?;
            let available: Value = client.get(&format!("/api/resource/{id}/available")).await?;
            let own = override_of(&client, u["id"].as_str().unwrap_or_default()).await?;
            if json {
                let body = json!({"user": u["name"], "limits": limits, "used": used, "available": available,
                                  "override": own.map(|o| o["resources"].clone())});
                println!("{}", serde_json::to_string_pretty(&body)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!("limits of {}", u["name"].as_str().unwrap_or(""));
            println!("{:<10} {:>10} {:>10} {:>10} {:<7} SOURCE", "TYPE", "LIMIT", "USED", "AVAILABLE", "UNIT");
            for kind in TYPES {
                let unit = limits
                    .as_array()
                    .and_then(|a| a.iter().find(|r| r["type"] == kind))
                    .and_then(|r| r["unit"].as_str())
                    .unwrap_or("");
                let overridden = own.as_ref().and_then(|o| amount_of(&o["resources"], kind)).is_some();
                println!(
                    "{:<10} {:>10} {:>10} {:>10} {:<7} {}",
                    kind,
                    shown(amount_of(&limits, kind)),
                    if kind == "timeout" { "-".to_string() } else { shown(amount_of(&used, kind)) },
                    if kind == "timeout" { "-".to_string() } else { shown(amount_of(&available, kind)) },
                    unit,
                    if overridden { "override" } else { "default" }
                );
            }
        }
        LimitsCommand::Set { user, ram, workspaces, runtimes, timeout, remote } => {
            let ram = ram.map(|r| Megabytes::parse(&r).map_err(anyhow::Error::msg)).transpose()?;
            let given =
                [("RAM", ram.map(|r| r.0)), ("workspace", workspaces), ("runtime", runtimes), ("timeout", timeout)];
            if given.iter().all(|(_, v)| v.is_none()) {
                bail!("name at least one limit: --ram, --workspaces, --runtimes or --timeout");
            }
            let client = Client::connect(dir, remote.url.as_deref())?;
            let u = resolve(&client, &user).await?;
            let id = u["id"].as_str().unwrap_or_default();
            // The server replaces the whole override: keep the values not named here.
            let current = override_of(&client, id).await?;
            let mut resources = Vec::new();
            for (kind, value) in given {
                let amount = value.or_else(|| current.as_ref().and_then(|o| amount_of(&o["resources"], kind)));
                if let Some(amount) = amount {
                    resources.push(json!({"type": kind, "amount": amount}));
                }
            }
            let body = json!({"accountId": id, "resources": resources});
            let stored: Value = client.send_json(Method::POST, "/api/resource/free", &body).await?;
            let summary: Vec<String> = stored["resources"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|r| {
                            format!(
                                "{} {} {}",
                                r["type"].as_str().unwrap_or(""),
                                shown(r["amount"].as_i64()),
                                r["unit"].as_str().unwrap_or("")
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            println!("limits of {} overridden: {}", u["name"].as_str().unwrap_or(""), summary.join(", "));
        }
        LimitsCommand::Reset { user, remote } => {
            let client = Client::connect(dir, remote.url.as_deref())?;
            let u = resolve(&client, &user).await?;
            let path = format!("/api/resource/free/{}", encode(u["id"].as_str().unwrap_or_default()));
            client.send_no_content::<()>(Method::DELETE, &path, None).await?;
            println!("limits of {} are the defaults again", u["name"].as_str().unwrap_or(""));
        }
    }
    Ok(ExitCode::SUCCESS)
}
