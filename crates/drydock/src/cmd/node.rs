//! `drydock node list|join-command|drain|activate|remove`: the Docker hosts workspaces run on,
//! through the running server's node API.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use reqwest::Method;
use serde_json::Value;

use crate::client::{Client, encode};
use crate::cmd::confirm;
use crate::cmd::user::Remote;
use crate::instance::DataDir;

#[derive(Subcommand, Debug)]
pub enum NodeCommand {
    /// Every node: state, availability, memory reserved and total, workspaces.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Print what to run on a new host (with Docker installed) to add it as a node.
    JoinCommand {
        #[command(flatten)]
        remote: Remote,
    },
    /// Stop the node's workspaces gracefully and take no new machines there; their next
    /// start moves their files to a node with room.
    Drain {
        /// The node's id or host name.
        node: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Let a drained or paused node take machines again.
    Activate {
        node: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Take a drained node out of the swarm (refused while it holds a workspace's files).
    Remove {
        node: String,
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        remote: Remote,
    },
}

fn gib(bytes: &Value) -> String {
    format!("{:.1}", bytes.as_f64().unwrap_or(0.0) / f64::from(1u32 << 30))
}

fn names(workspaces: &Value) -> String {
    let names: Vec<String> = workspaces
        .as_array()
        .map(|a| {
            a.iter()
                .map(|w| format!("{}/{}", w["namespace"].as_str().unwrap_or(""), w["name"].as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() { "-".to_string() } else { names.join(",") }
}

pub async fn run(dir: &DataDir, command: NodeCommand) -> Result<ExitCode> {
    match command {
        NodeCommand::List { json, remote } => {
            let client = Client::connect(dir, remote.url.as_deref())?;
            let nodes: Vec<Value> = client.get("/api/nodes?maxItems=1000").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&nodes)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<26} {:<16} {:<16} {:<8} {:<12} {:>16}  WORKSPACES",
                "ID", "HOSTNAME", "ADDRESS", "STATE", "AVAILABILITY", "RAM GiB (res/tot)"
            );
            for n in &nodes {
                let role = if n["manager"].as_bool() == Some(true) { " *" } else { "" };
                println!(
                    "{:<26} {:<16} {:<16} {:<8} {:<12} {:>16}  {}",
                    format!("{}{role}", n["id"].as_str().unwrap_or("")),
                    n["hostname"].as_str().unwrap_or(""),
                    n["address"].as_str().unwrap_or(""),
                    n["state"].as_str().unwrap_or(""),
                    n["availability"].as_str().unwrap_or(""),
                    format!("{}/{}", gib(&n["ramReserved"]), gib(&n["ramTotal"])),
                    names(&n["workspaces"])
                );
            }
        }
        NodeCommand::JoinCommand { remote } => {
            let client = Client::connect(dir, remote.url.as_deref())?;
            let answer: Value = client.get("/api/nodes/script").await?;
            println!("{}", answer["command"].as_str().unwrap_or(""));
        }
        NodeCommand::Drain { node, yes, remote } => {
            confirm(&format!("Drain node {node}, stopping the workspaces that run on it?"), yes)?;
            let client = Client::connect(dir, remote.url.as_deref())?;
            let path = format!("/api/nodes/{}/drain", encode(&node));
            let drained: Value = client.send_json(Method::POST, &path, &Value::Null).await?;
            println!(
                "node {} drained; {} workspace(s) stopped",
                drained["node"]["hostname"].as_str().unwrap_or(&node),
                drained["stoppedWorkspaces"].as_u64().unwrap_or(0)
            );
        }
        NodeCommand::Activate { node, remote } => {
            let client = Client::connect(dir, remote.url.as_deref())?;
            let path = format!("/api/nodes/{}/activate", encode(&node));
            let active: Value = client.send_json(Method::POST, &path, &Value::Null).await?;
            println!("node {} is active", active["hostname"].as_str().unwrap_or(&node));
        }
        NodeCommand::Remove { node, yes, remote } => {
            confirm(&format!("Remove node {node} from the swarm?"), yes)?;
            let client = Client::connect(dir, remote.url.as_deref())?;
            client.send_no_content::<()>(Method::DELETE, &format!("/api/nodes/{}", encode(&node)), None).await?;
            println!("node {node} removed; run `docker swarm leave` on it");
        }
    }
    Ok(ExitCode::SUCCESS)
}
