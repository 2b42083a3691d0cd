//! `drydock token create`: a personal API token for the account the CLI acts as.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::Client;
use crate::cmd::user::Remote;
use crate::instance::DataDir;

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create a token; the token alone goes to stdout (it is shown only this once).
    Create {
        name: String,
        #[command(flatten)]
        remote: Remote,
    },
}

pub async fn run(dir: &DataDir, command: TokenCommand) -> Result<ExitCode> {
    match command {
        TokenCommand::Create { name, remote } => {
            let client = Client::connect(dir, remote.url.as_deref())?;
            let token: Value = client.send_json(Method::POST, "/api/token", &json!({ "name": name })).await?;
            eprintln!(
                "created token '{}' ({}), expires {}",
                token["name"].as_str().unwrap_or(""),
                token["id"].as_str().unwrap_or(""),
                token["expires"].as_str().unwrap_or("never")
            );
            println!("{}", token["token"].as_str().unwrap_or(""));
        }
    }
    Ok(ExitCode::SUCCESS)
}
