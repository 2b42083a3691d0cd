//! `drydock start` (foreground or `--detach`) and `drydock restart`.

use std::fs::OpenOptions;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use drydock_core::VERSION;

use crate::cmd::init::{InitArgs, init_instance};
use crate::config;
use crate::instance::DataDir;
use crate::wiring;

const DETACH_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Args, Debug, Clone, Default)]
pub struct StartArgs {
    /// Address to listen on (overrides server.listen), e.g. 127.0.0.1:8080; port 0 picks one.
    #[arg(long)]
    pub listen: Option<String>,
    /// Run in the background, logging to <data-dir>/drydock.log; return once it answers.
    #[arg(long)]
    pub detach: bool,
}

#[derive(Args, Debug, Clone, Default)]
pub struct RestartArgs {
    /// Address to listen on (overrides server.listen).
    #[arg(long)]
    pub listen: Option<String>,
}

fn flags(listen: &Option<String>) -> Vec<(&'static str, String)> {
    listen.iter().map(|l| ("server.listen", l.clone())).collect()
}

pub async fn run(dir: &DataDir, args: &StartArgs) -> Result<ExitCode> {
    if !dir.is_instance() {
        println!("{} holds no drydock instance yet: initializing one with the defaults.", dir.root.display());
        init_instance(dir, &InitArgs::default()).await?;
    }
    if let Some(pid) = dir.running_pid() {
        bail!(
            "drydock is already running in {} (pid {pid}{}); stop it first with `drydock stop`",
            dir.root.display(),
            dir.running_url().map(|u| format!(", {u}")).unwrap_or_default()
        );
    }
    // start never changes an instance's schema: an older one needs `drydock upgrade`. Checked
    // here too so that `--detach` says so at once (the server checks the database itself).
    wiring::check_instance_version(dir)?;
    let loaded = config::load(&dir.root, &flags(&args.listen))?;
    if args.detach {
        detach(dir, args).await?;
    } else {
        crate::serving::serve(dir, loaded, flags(&args.listen)).await?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn restart(dir: &DataDir, args: &RestartArgs) -> Result<ExitCode> {
    crate::cmd::stop::stop(dir).await?;
    run(dir, &StartArgs { listen: args.listen.clone(), detach: true }).await
}

/// Starts the server as a background process and waits until it answers its health check.
pub(crate) async fn detach(dir: &DataDir, args: &StartArgs) -> Result<()> {
    let log_path = dir.log_file();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open the log file {}", log_path.display()))?;
    let mut command = std::process::Command::new(std::env::current_exe().context("cannot find the drydock binary")?);
    command.arg("start").arg("--data-dir").arg(&dir.root);
    if let Some(listen) = &args.listen {
        command.arg("--listen").arg(listen);
    }
    // Its own process group: a Ctrl-C on this terminal must not reach the server.
    command.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).process_group(0);
    let mut child = command.spawn().context("cannot start the server process")?;
    let pid = child.id() as i32;
    let deadline = Instant::now() + DETACH_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("drydock did not start ({status}); the end of {}:\n{}", log_path.display(), tail(&log_path, 15));
        }
        if dir.running_pid() == Some(pid)
            && let Some(url) = dir.running_url()
            && healthy(&url).await
        {
            println!("drydock {VERSION} is running at {url} (pid {pid}); log: {}", log_path.display());
            if !drydock_ops::standby::StandbyDir::of(dir).follow_file().exists() {
                crate::serving::print_sign_in_hint(dir, &url);
            }
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "drydock (pid {pid}) did not answer its health check within {} s; see {}",
                DETACH_TIMEOUT.as_secs(),
                log_path.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn healthy(url: &str) -> bool {
    let Ok(client) =
        reqwest::Client::builder().danger_accept_invalid_certs(true).timeout(Duration::from_secs(2)).build()
    else {
        return false;
    };
    client.get(format!("{url}/api/health")).send().await.is_ok_and(|r| r.status().is_success())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
