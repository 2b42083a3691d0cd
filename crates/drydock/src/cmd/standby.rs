//! `drydock standby …` and `drydock promote`: disaster recovery.
//!
//! - `standby token [--rotate]` (on the primary): the replication token, alone on stdout.
//! - `standby --primary URL --token-file FILE [--interval] [--images] [--listen] [--detach]`
//!   (on the standby's host): makes the data dir a standby of that primary (creating it when
//!   missing; an instance that is not a standby is moved aside first) and serves it.
//! - `standby check`: verifies the standby's copy and reports how old it is.
//! - `promote [--yes]`: the standby serves as the primary, at once.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::Utc;
use clap::{Args, Subcommand};
use drydock_core::config::HumanDuration;
use drydock_core::standby::{REPLICATION_TOKEN_SECRET, StandbyState};
use drydock_core::{VERSION, secret};
use drydock_ops::standby::follower::Follower;
use drydock_ops::standby::snapshot::{CONFIG_FILE, LOCAL_SECTIONS};
use drydock_ops::standby::{FollowSettings, StandbyDir, check};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::cmd::confirm;
use crate::cmd::start::{StartArgs, detach};
use crate::config;
use crate::instance::{DataDir, write_atomic};
use crate::wiring;

#[derive(Args, Debug)]
pub struct StandbyArgs {
    #[command(subcommand)]
    pub command: Option<StandbyCommand>,
    #[command(flatten)]
    pub follow: FollowArgs,
}

#[derive(Args, Debug, Clone, Default)]
pub struct FollowArgs {
    /// The primary's URL, e.g. https://drydock.example.com.
    #[arg(long)]
    pub primary: Option<String>,
    /// A file holding the primary's replication token (`drydock standby token` on the primary).
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// How often to sync, e.g. 10s, 1m.
    #[arg(long, default_value = "10s")]
    pub interval: String,
    /// Also copy the workspaces' images and snapshots.
    #[arg(long)]
    pub images: bool,
    /// Address to listen on (overrides server.listen).
    #[arg(long)]
    pub listen: Option<String>,
    /// Run in the background, logging to <data-dir>/drydock.log.
    #[arg(long)]
    pub detach: bool,
    /// Move an instance that is not a standby aside without asking.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Subcommand, Debug)]
pub enum StandbyCommand {
    /// On the primary: print the replication token (made when missing), alone on stdout.
    Token {
        /// Make a new token; standbys holding the old one are refused until given this one.
        #[arg(long)]
        rotate: bool,
    },
    /// On the standby: verify its copy (database, checksums, every workspace's files) and
    /// report how old it is; exits 1 when something is wrong.
    Check {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args, Debug)]
pub struct PromoteArgs {
    /// Promote without asking.
    #[arg(long)]
    pub yes: bool,
}

pub async fn run(dir: &DataDir, args: StandbyArgs) -> Result<ExitCode> {
    let f = &args.follow;
    let following = f.primary.is_some() || f.token_file.is_some() || f.images || f.listen.is_some() || f.detach;
    if args.command.is_some() && following {
        bail!("`standby token` and `standby check` take none of the following flags (--primary, --token-file, …)");
    }
    match args.command {
        Some(StandbyCommand::Token { rotate }) => token(dir, rotate),
        Some(StandbyCommand::Check { json }) => check_copy(dir, json).await,
        None => follow(dir, args.follow).await,
    }
}

fn token(dir: &DataDir, rotate: bool) -> Result<ExitCode> {
    if !dir.is_instance() {
        bail!("{} holds no drydock instance", dir.root.display());
    }
    let existing = dir.read_secret(REPLICATION_TOKEN_SECRET).ok().filter(|t| !t.is_empty());
    let token = match (existing, rotate) {
        (Some(token), false) => token,
        (had, _) => {
            let token = secret::new_secret("ddr_");
            dir.write_secret(REPLICATION_TOKEN_SECRET, &token)?;
            if had.is_some() {
                eprintln!(
                    "The replication token was rotated: standbys holding the old one are refused until given this one."
                );
            }
            token
        }
    };
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

async fn follow(dir: &DataDir, args: FollowArgs) -> Result<ExitCode> {
    let files = StandbyDir::of(dir);
    let settings = match (&args.primary, &args.token_file) {
        (Some(primary), Some(token_file)) => Some(follow_settings(primary, token_file, &args)?),
        (None, None) => None,
        _ => bail!("--primary and --token-file go together: the primary's URL and the file holding its token"),
    };
    match (&settings, dir.is_instance(), files.follow()?) {
        (None, true, Some(_)) => {}
        (None, _, _) => {
            bail!("{} is not a standby: name the primary with --primary URL --token-file FILE", dir.root.display())
        }
        (Some(settings), true, Some(_)) => files.set_follow(settings)?,
        (Some(settings), true, None) => {
            if let Some(pid) = dir.running_pid() {
                bail!(
                    "an instance runs in {} (pid {pid}): stop it first (`drydock stop`); it is then moved aside and \
                     the data dir becomes a standby",
                    dir.root.display()
                );
            }
            confirm(
                &format!(
                    "{} holds an instance that is not a standby: move it aside and make the data dir a standby of {}?",
                    dir.root.display(),
                    settings.primary
                ),
                args.yes,
            )?;
            // The fence goes with the data dir: a former primary (or a promoted standby) never
            // follows an instance older than itself.
            let epoch = files.epoch()?.max(files.record()?.follow.epoch);
            let local = move_aside(dir).await?;
            init_standby(dir, local.as_deref(), true).await?;
            if epoch > 0 {
                files.set_epoch(epoch)?;
            }
            files.set_follow(settings)?;
        }
        (Some(settings), false, _) => {
            init_standby(dir, None, false).await?;
            files.set_follow(settings)?;
        }
    }
    if let Some(pid) = dir.running_pid() {
        bail!(
            "drydock is already running in {} (pid {pid}): it follows the primary named now after `drydock restart`",
            dir.root.display()
        );
    }
    wiring::check_instance_version(dir)?;
    let start = StartArgs { listen: args.listen.clone(), detach: args.detach };
    let flags: Vec<(&'static str, String)> = args.listen.iter().map(|l| ("server.listen", l.clone())).collect();
    let loaded = config::load(&dir.root, &flags)?;
    if args.detach {
        detach(dir, &start).await?;
    } else {
        crate::serving::serve(dir, loaded, flags).await?;
    }
    Ok(ExitCode::SUCCESS)
}

fn follow_settings(primary: &str, token_file: &Path, args: &FollowArgs) -> Result<FollowSettings> {
    let primary = primary.trim().trim_end_matches('/').to_string();
    if !(primary.starts_with("http://") || primary.starts_with("https://")) || primary.len() < "http://x".len() {
        bail!("--primary '{primary}' is not an http:// or https:// URL");
    }
    let token_file = std::path::absolute(token_file).context("--token-file")?;
    let token = std::fs::read_to_string(&token_file)
        .with_context(|| format!("--token-file: cannot read {}", token_file.display()))?;
    if token.trim().is_empty() {
        bail!("--token-file: {} is empty; put the primary's `drydock standby token` in it", token_file.display());
    }
    let interval = HumanDuration::parse(&args.interval).map_err(|e| anyhow::anyhow!("--interval: {e}"))?;
    if interval.0 < Duration::from_secs(1) {
        bail!("--interval must be at least 1s");
    }
    Ok(FollowSettings { primary, token_file, interval_secs: interval.0.as_secs(), images: args.images })
}

/// Moves an instance that is not a standby aside: its data dir is renamed, with a dump of
/// its PostgreSQL database inside (the standby will write over that database). Returns the
/// host sections of its config, which the standby keeps.
async fn move_aside(dir: &DataDir) -> Result<Option<String>> {
    let loaded = config::load(&dir.root, &[])?;
    let instance = wiring::ops_instance(dir, &loaded.config)?;
    if let drydock_ops::database::Database::Postgres(_) = &instance.database {
        let dump = dir.root.join("database-before-standby.sql");
        instance.database.snapshot(&dump).await.context("cannot dump the database before moving the instance aside")?;
    }
    let own = std::fs::read_to_string(dir.root.join(CONFIG_FILE)).unwrap_or_default();
    let local = local_sections(&own)?;
    let name = dir.root.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_else(|| "drydock-data".into());
    let aside = dir.root.with_file_name(format!("{name}.before-standby-{}", Utc::now().format("%Y%m%dT%H%M%SZ")));
    std::fs::rename(&dir.root, &aside)
        .with_context(|| format!("cannot move {} aside to {}", dir.root.display(), aside.display()))?;
    println!(
        "Moved the instance {} aside to {} (its workspaces' volumes stay on the engine under its own instance id{}).",
        dir.root.display(),
        aside.display(),
        if matches!(instance.database, drydock_ops::database::Database::Postgres(_)) {
            "; its PostgreSQL database is dumped there as database-before-standby.sql"
        } else {
            ""
        }
    );
    Ok(Some(local))
}

/// The host sections of a config ([`LOCAL_SECTIONS`]), as TOML.
fn local_sections(config_text: &str) -> Result<String> {
    let table: toml::Table = toml::from_str(config_text).context("the config cannot be read")?;
    let local: toml::Table = table.into_iter().filter(|(key, _)| LOCAL_SECTIONS.contains(&key.as_str())).collect();
    Ok(toml::to_string(&local)?)
}

/// A new standby instance: its own id, an empty database at this binary's schema (the first
/// sync fills it). `reuse_database` allows a database with rows: the one of an instance just
/// moved aside (and dumped).
async fn init_standby(dir: &DataDir, config_text: Option<&str>, reuse_database: bool) -> Result<()> {
    std::fs::create_dir_all(&dir.root).with_context(|| format!("cannot create {}", dir.root.display()))?;
    let config_file = config::config_path(&dir.root);
    if let Some(text) = config_text {
        write_atomic(&config_file, text.as_bytes(), 0o600)?;
    }
    let loaded = config::load(&dir.root, &[])?;
    let store = wiring::open_store_migrating(dir, &loaded.config).await?;
    let users = store.count_users().await?;
    if users > 0 && reuse_database {
        // The instance moved aside was dumped first: its rows must not pass for the copy.
        wiring::ops_instance(dir, &loaded.config)?
            .database
            .with_store("emptying the database for the standby", async |store| store.clear_replicated().await)
            .await?;
    } else if users > 0 {
        bail!(
            "the database {} already holds {users} users: a new standby needs an empty database (its first sync \
             fills it); point database.url at one",
            drydock_store::describe_url(&wiring::database_url(dir, &loaded.config))
        );
    }
    let instance_id = crate::cmd::init::seal_instance(dir, &loaded)?;
    println!("Initialized drydock {VERSION} standby instance {instance_id} in {}", dir.root.display());
    Ok(())
}

async fn check_copy(dir: &DataDir, json: bool) -> Result<ExitCode> {
    let files = StandbyDir::of(dir);
    if files.follow()?.is_none() && files.last_promotion()?.is_none() {
        bail!("{} is not a standby: there is no copy to check", dir.root.display());
    }
    let loaded = config::load(&dir.root, &[])?;
    let instance = wiring::ops_instance(dir, &loaded.config)?;
    let report = check::check(dir, &instance.database).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let age = report.rpo_seconds.map(|s| format!("{s} s")).unwrap_or_else(|| "unknown (no sync yet)".into());
        if report.ok {
            println!(
                "The standby's copy is sound: {} users, {} workspaces; its newest data is {age} old (the recovery point).",
                report.users, report.workspaces
            );
        } else {
            println!("The standby's copy has {} problems:", report.problems.len());
            for problem in &report.problems {
                println!("  - {problem}");
            }
            println!("Its newest data is {age} old.");
        }
    }
    Ok(if report.ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

pub async fn promote(dir: &DataDir, args: &PromoteArgs) -> Result<ExitCode> {
    let files = StandbyDir::of(dir);
    let Some(follow) = files.follow()? else {
        bail!("{} is not a standby: there is nothing to promote", dir.root.display());
    };
    confirm(
        &format!(
            "Promote the standby in {} to serve as the primary instead of {}? Make sure the old primary stays down \
             (it can rejoin later as a standby).",
            dir.root.display(),
            follow.primary
        ),
        args.yes,
    )?;
    if files.record()?.follow.last_sync.is_none() {
        bail!(
            "the standby in {} has no copy yet (no sync from {} has completed): promoting it would serve an empty \
             instance; see its lastError in GET /api/system/state",
            dir.root.display(),
            follow.primary
        );
    }
    if let (Some(pid), Some(url)) = (dir.running_pid(), dir.running_url()) {
        let began = Instant::now();
        kill(Pid::from_raw(pid), Signal::SIGUSR1).with_context(|| format!("cannot signal the standby (pid {pid})"))?;
        let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build()?;
        loop {
            let state = client.get(format!("{url}/api/system/state")).send().await;
            if let Ok(response) = state
                && let Ok(body) = response.json::<serde_json::Value>().await
                && body["status"].as_str().is_some_and(|s| s != "STANDBY")
            {
                break;
            }
            if began.elapsed() > crate::serving::PROMOTE_TIMEOUT {
                bail!(
                    "the standby (pid {pid}) did not serve as the primary within {} s; see {}",
                    crate::serving::PROMOTE_TIMEOUT.as_secs(),
                    dir.log_file().display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let epoch = files.epoch()?;
        println!(
            "Promoted in {} ms: {url} serves as the primary (epoch {epoch}), with the data of the last sync.",
            began.elapsed().as_millis()
        );
        return Ok(ExitCode::SUCCESS);
    }
    // Not running: settle a sync cut off midway, and mark the data dir promoted.
    let loaded = config::load(&dir.root, &[])?;
    let instance = wiring::ops_instance(dir, &loaded.config)?;
    let (applied, _) = tokio::sync::watch::channel(0);
    let state = std::sync::Arc::new(StandbyState::default());
    let follower = Follower::new(dir.clone(), follow.clone(), instance.database.clone(), state, applied, None)?;
    let promotion = drydock_ops::standby::promote(dir, &instance.database, &follower).await?;
    println!(
        "Marked {} promoted (epoch {}): `drydock start` serves it as the primary, with the data of the last sync.",
        dir.root.display(),
        promotion.epoch
    );
    Ok(ExitCode::SUCCESS)
}
