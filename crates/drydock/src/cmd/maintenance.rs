//! `drydock maintenance on|off|status`: maintenance mode, through the running server's API.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::client::{ApiFailure, Client};
use crate::cmd::user::Remote;
use crate::instance::DataDir;

#[derive(Subcommand, Debug)]
pub enum MaintenanceCommand {
    /// Turn maintenance on: users may not create or start workspaces (administrators may),
    /// and every dashboard page shows the message. While on, a new message replaces the old.
    On {
        /// What users are told (one line, at most 500 characters).
        #[arg(long)]
        message: String,
        /// Also stop every running workspace, gracefully, in the background.
        #[arg(long)]
        stop_workspaces: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Turn maintenance off.
    Off {
        #[command(flatten)]
        remote: Remote,
    },
    /// Whether maintenance is on, since when, by whom and with what message.
    Status {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
}

fn describe(state: &Value) -> String {
    if state["status"] != "MAINTENANCE" {
        return "maintenance is off".to_string();
    }
    let mut text = "maintenance is on".to_string();
    if let Some(since) = state["since"].as_str() {
        text.push_str(&format!(" since {since}"));
    }
    if let Some(by) = state["by"].as_str() {
        text.push_str(&format!(" (by {by})"));
    }
    format!("{text}: {}", state["message"].as_str().unwrap_or_default())
}

pub async fn run(dir: &DataDir, command: MaintenanceCommand) -> Result<ExitCode> {
    match command {
        MaintenanceCommand::On { message, stop_workspaces, json, remote } => {
            let client = Client::connect(dir, remote.url.as_deref())?;
            let body = json!({"message": message, "stopWorkspaces": stop_workspaces});
            let state: Value = client.send_json(Method::POST, "/api/system/maintenance", &body).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&state)?);
            } else {
                println!("{}", describe(&state));
                if stop_workspaces {
                    let n = state["stoppingWorkspaces"].as_u64().unwrap_or(0);
                    println!("stopping {n} running workspace(s) in the background");
                }
            }
        }
        MaintenanceCommand::Off { remote } => {
            let client = Client::connect(dir, remote.url.as_deref())?;
            client.send_no_content::<()>(Method::DELETE, "/api/system/maintenance", None).await?;
            println!("maintenance is off");
        }
        MaintenanceCommand::Status { json, remote } => {
            let client = Client::connect(dir, remote.url.as_deref())?;
            // Who and since when need manageSystem; anyone may see the public state.
            let state: Value = match client.get("/api/system/maintenance").await {
                Ok(state) => state,
                Err(e) if e.downcast_ref::<ApiFailure>().is_some_and(|f| f.status == StatusCode::FORBIDDEN) => {
                    client.get("/api/system/state").await?
                }
                Err(e) => return Err(e),
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&state)?);
            } else {
                println!("{}", describe(&state));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
