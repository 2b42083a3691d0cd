//! `drydock start` (foreground or `--detach`) and `drydock restart`.

use std::fs::OpenOptions;
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use drydock_core::{Drydock, SystemClock, VERSION};
use drydock_server::{AppState, Settings, TlsFiles};
use tokio::sync::watch;

use crate::cmd::init::{InitArgs, init_instance};
use crate::config::{self, Loaded};
use crate::instance::{DataDir, INITIAL_PASSWORD_SECRET, write_atomic};
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
        serve(dir, loaded).await?;
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn restart(dir: &DataDir, args: &RestartArgs) -> Result<ExitCode> {
    crate::cmd::stop::stop(dir).await?;
    run(dir, &StartArgs { listen: args.listen.clone(), detach: true }).await
}

/// Serves in this process until SIGTERM or SIGINT.
async fn serve(dir: &DataDir, loaded: Loaded) -> Result<()> {
    let config = loaded.config;
    wiring::init_logging(&config.log.level);
    let store = wiring::open_store(dir, &config).await?;
    if !config.audit.enabled {
        tracing::warn!("audit.enabled is false: no audit events are written while this server runs");
    }
    let instance_id = dir.instance_id()?;

    let addr: SocketAddr = config.server.listen.parse().context("server.listen")?;
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let tls = (!config.tls.cert.is_empty())
        .then(|| TlsFiles { cert: dir.root.join(&config.tls.cert), key: dir.root.join(&config.tls.key) });
    if tls.is_none() && !local.ip().is_loopback() {
        tracing::warn!(
            address = %local,
            "listening beyond loopback without TLS: passwords and tokens cross the network in clear; set tls.cert and tls.key"
        );
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let reachable = if local.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), local.port())
    } else {
        local
    };
    let local_url = format!("{scheme}://{reachable}");
    let public_url =
        if config.server.public_url.is_empty() { local_url.clone() } else { config.server.public_url.clone() };

    let (runtime, engine) = wiring::open_runtime(&instance_id, &config).await;
    let drydock = Arc::new(Drydock::new(store.clone(), &config, Arc::new(SystemClock), runtime));
    let instance = wiring::ops_instance(dir, &config)?;
    drydock.backups.set_runner(Arc::new(drydock_ops::backup::MasterBackups { instance, runtime: engine }));
    if let Err(e) = drydock.backups.mark_interrupted().await {
        tracing::warn!(error = %e, "cannot mark the backups the last master left running");
    }
    // Maintenance mode outlives restarts: it holds from the first request on.
    drydock.system.load().await.context("cannot read the instance's state (maintenance mode) from the database")?;
    // An instance upgraded from a release that kept no license history runs under Fair Source.
    drydock
        .licenses
        .accept_fair_source_if_new(drydock_core::audit_log::Actor::system())
        .await
        .context("cannot record the acceptance of the Fair Source license")?;
    // The licensed seats hold from the first request on.
    drydock.licenses.load().await.context("cannot read the installed license from the database")?;
    // Workspaces whose containers died, or whose start or stop was cut off, while no master
    // ran: put them right before serving.
    if let Err(e) = drydock.workspaces.reconcile().await {
        tracing::warn!(error = %e, "cannot reconcile workspaces with the engine");
    }
    let state = AppState::new(
        drydock,
        Settings {
            metrics_public: config.metrics.public,
            secure_cookies: tls.is_some(),
            session_ttl_secs: config.auth.session_ttl.0.as_secs() as i64,
            instance_id: instance_id.clone(),
            backup_schedule: (!config.backup.schedule.trim().is_empty())
                .then(|| drydock_core::backups::Schedule::parse(&config.backup.schedule))
                .transpose()
                .map_err(|e| anyhow::anyhow!("backup.schedule: {e}"))?,
        },
    );
    let pid = std::process::id();
    write_atomic(&dir.pid_file(), format!("{pid}\n").as_bytes(), 0o644)?;
    write_atomic(&dir.url_file(), format!("{local_url}\n").as_bytes(), 0o644)?;

    let (stop_jobs, jobs_stopped) = watch::channel(false);
    let jobs = drydock_server::spawn_background_jobs(state.clone(), jobs_stopped);
    tracing::info!(%local, instance = %instance_id, backend = store.backend(), version = VERSION, "drydock is serving");
    println!("drydock {VERSION} is running at {public_url} (pid {pid}, {} database)", store.backend());
    print_sign_in_hint(dir, &public_url);

    let result = drydock_server::serve(listener, tls, drydock_server::app(state), shutdown_signal()).await;
    let _ = stop_jobs.send(true);
    let _ = jobs.await;
    remove_run_files(dir, pid);
    tracing::info!("drydock stopped");
    result.map_err(Into::into)
}

fn print_sign_in_hint(dir: &DataDir, url: &str) {
    let initial = dir.secret_file(INITIAL_PASSWORD_SECRET);
    if initial.exists() {
        println!("Sign in at {url}/ as the administrator; the generated password is in {}", initial.display());
    } else {
        println!("Sign in at {url}/ with your account (API: POST {url}/api/auth/login)");
    }
}

/// Removes the pid and URL files, unless another server has written them since.
fn remove_run_files(dir: &DataDir, pid: u32) {
    let ours = std::fs::read_to_string(dir.pid_file()).map(|p| p.trim() == pid.to_string()).unwrap_or(false);
    if ours {
        let _ = std::fs::remove_file(dir.url_file());
        let _ = std::fs::remove_file(dir.pid_file());
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: stopping"),
    }
}

/// Starts the server as a background process and waits until it answers its health check.
async fn detach(dir: &DataDir, args: &StartArgs) -> Result<()> {
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
            print_sign_in_hint(dir, &url);
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
