//! `drydock user add|list|show|remove|passwd`, through the running server's API.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use drydock_core::ids;
use drydock_core::model::{MANAGE_SYSTEM, MANAGE_USERS};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, encode, is_not_found};
use crate::cmd::{confirm, password_from, prompt_password};
use crate::instance::DataDir;

#[derive(Args, Debug, Clone)]
pub struct Remote {
    /// URL of the drydock server (default: the one running from --data-dir); use with DRYDOCK_TOKEN.
    #[arg(long, env = "DRYDOCK_URL")]
    pub url: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create a user; without a password one is generated and printed.
    Add {
        name: String,
        #[arg(long)]
        email: String,
        #[arg(long, conflicts_with = "password_file")]
        password: Option<String>,
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Also grant manageSystem and manageUsers.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// List users, optionally those whose name or e-mail contains a part.
    List {
        #[arg(long)]
        search: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Show one user, by name or id.
    Show {
        user: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Remove a user with their sessions and tokens.
    Remove {
        user: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        /// Also stop and delete the workspaces the user owns (otherwise such a user is kept).
        #[arg(long)]
        delete_workspaces: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Set a user's password (asked on the terminal when no flag gives it).
    Passwd {
        user: String,
        #[arg(long, conflicts_with = "password_file")]
        password: Option<String>,
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// Your current password, needed when you change your own.
        #[arg(long)]
        current_password_file: Option<PathBuf>,
        #[command(flatten)]
        remote: Remote,
    },
}

pub async fn run(dir: &DataDir, command: UserCommand) -> Result<ExitCode> {
    match command {
        UserCommand::Add { name, email, password, password_file, admin, remote } => {
            let client = Client::connect(dir, remote.url.as_deref())?;
            let given = password_from(password.as_deref(), password_file.as_deref())?;
            let generated = given.is_none();
            let password = given.unwrap_or_else(ids::random_password);
            let user: Value = client
                .send_json(Method::POST, "/api/user", &json!({"name": name, "email": email, "password": password}))
                .await?;
            let id = user["id"].as_str().unwrap_or_default();
            if admin {
                let grant = json!({"userId": id, "domainId": "system", "instanceId": null,
                                   "actions": [MANAGE_SYSTEM, MANAGE_USERS]});
                let _: Value = client.send_json(Method::POST, "/api/permissions", &grant).await?;
            }
            println!(
                "created user {name} <{}> with id {id}{}",
                user["email"].as_str().unwrap_or(""),
                if admin { " (administrator)" } else { "" }
            );
            if generated {
                println!("password: {password}");
            }
        }
        UserCommand::List { search, json, remote } => {
            let client = Client::connect(dir, remote.url.as_deref())?;
            let users = list_all(&client, search.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&users)?);
            } else {
                println!("{:<24} {:<32} {:<22} CREATED", "NAME", "EMAIL", "ID");
                for u in &users {
                    println!(
                        "{:<24} {:<32} {:<22} {}",
                        u["name"].as_str().unwrap_or(""),
                        u["email"].as_str().unwrap_or(""),
                        u["id"].as_str().unwrap_or(""),
                        u["created"].as_str().unwrap_or("")
                    );
                }
            }
        }
        UserCommand::Show { user, json, remote } => {
            let client = Client::connect(dir, remote.url.as_deref())?;
            let u = resolve(&client, &user).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&u)?);
            } else {
                println!("name:    {}", u["name"].as_str().unwrap_or(""));
                println!("email:   {}", u["email"].as_str().unwrap_or(""));
                println!("id:      {}", u["id"].as_str().unwrap_or(""));
                println!("created: {}", u["created"].as_str().unwrap_or(""));
            }
        }
        UserCommand::Remove { user, yes, delete_workspaces, remote } => {
            let client = Client::connect(dir, remote.url.as_deref())?;
            let u = resolve(&client, &user).await?;
            let (name, email, id) =
                (u["name"].as_str().unwrap_or(""), u["email"].as_str().unwrap_or(""), u["id"].as_str().unwrap_or(""));
            let also =
                if delete_workspaces { ", sessions, tokens and workspaces" } else { " with their sessions and tokens" };
            confirm(&format!("Remove user {name} <{email}> ({id}){also}?"), yes)?;
            if delete_workspaces {
                let path = format!("/api/user/{}?workspaces=delete", encode(id));
                let answer: Value = client.send_json(Method::DELETE, &path, &json!({})).await?;
                let names: Vec<&str> = answer["deletedWorkspaces"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                println!(
                    "removed user {name} and their workspaces: {}",
                    if names.is_empty() { "none".into() } else { names.join(", ") }
                );
            } else {
                client.send_no_content::<()>(Method::DELETE, &format!("/api/user/{}", encode(id)), None).await?;
                println!("removed user {name}");
            }
        }
        UserCommand::Passwd { user, password, password_file, current_password_file, remote } => {
            let client = Client::connect(dir, remote.url.as_deref())?;
            let u = resolve(&client, &user).await?;
            let id = u["id"].as_str().unwrap_or_default().to_string();
            let me: Value = client.get("/api/user").await?;
            let own = me["id"].as_str() == Some(id.as_str());
            let current = match (own, current_password_file) {
                (false, _) => None,
                (true, Some(f)) => password_from(None, Some(&f))?,
                (true, None) => Some(prompt_password("Your current password: ")?),
            };
            let new = match password_from(password.as_deref(), password_file.as_deref())? {
                Some(p) => p,
                None => {
                    let p = prompt_password("New password: ")?;
                    if prompt_password("New password again: ")? != p {
                        bail!("the two passwords differ");
                    }
                    p
                }
            };
            let body = json!({"password": new, "currentPassword": current});
            client.send_no_content(Method::PUT, &format!("/api/user/{}/password", encode(&id)), Some(&body)).await?;
            println!("password of {} changed; their other sessions were ended", u["name"].as_str().unwrap_or(""));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A user by name, else by id.
pub(crate) async fn resolve(client: &Client, user: &str) -> Result<Value> {
    match client.get::<Value>(&format!("/api/user/find?name={}", encode(user))).await {
        Ok(u) => Ok(u),
        Err(e) if is_not_found(&e) => match client.get::<Value>(&format!("/api/user/{}", encode(user))).await {
            Ok(u) => Ok(u),
            Err(e) if is_not_found(&e) => bail!("no user is named or has the id '{user}'"),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    }
}

async fn list_all(client: &Client, search: Option<&str>) -> Result<Vec<Value>> {
    const PAGE: usize = 1000;
    let mut all = Vec::new();
    loop {
        let path = match search {
            Some(s) => format!("/api/admin/user/find?namePart={}&maxItems={PAGE}&skipCount={}", encode(s), all.len()),
            None => format!("/api/admin/user?maxItems={PAGE}&skipCount={}", all.len()),
        };
        let mut page: Vec<Value> = client.get(&path).await?;
        let done = page.len() < PAGE;
        all.append(&mut page);
        if done {
            return Ok(all);
        }
    }
}
