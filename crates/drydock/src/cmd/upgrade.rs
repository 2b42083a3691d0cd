//! `drydock upgrade [--yes] [--skip-backup] [--plan]`: the rules and steps live in
//! `drydock_ops::upgrade`; here are the printed plan, the question, and the running server
//! as the upgrade reaches it (its API, `drydock stop`, `drydock start --detach`).

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};

use anyhow::{Result, bail};
use clap::Args;
use drydock_docker::{DockerRuntime, DockerSettings};
use drydock_ops::OpsError;
use drydock_ops::upgrade::{self, ApiMaintenance, Check, Plan, Server, Verdict};
use drydock_ops::versions::{SCHEMA, VERSION};
use reqwest::Method;
use serde_json::{Value, json};

use crate::client::{Client, is_not_found};
use crate::cmd::backup::{TerminalProgress, open_instance};
use crate::cmd::confirm;
use crate::cmd::start::StartArgs;
use crate::instance::DataDir;

#[derive(Args, Debug)]
pub struct UpgradeArgs {
    /// Do not ask before upgrading.
    #[arg(long)]
    yes: bool,
    /// Make no backup first (a copy of the database is still kept in the data dir).
    #[arg(long)]
    skip_backup: bool,
    /// Print the checks and the steps the upgrade would take, and change nothing.
    #[arg(long)]
    plan: bool,
}

pub async fn run(dir: &DataDir, args: &UpgradeArgs) -> Result<ExitCode> {
    let instance = open_instance(dir)?;
    let mut plan = upgrade::plan(&instance, dir.running_pid(), args.skip_backup).await?;
    // The backup reads the workspaces' files through the engine: without it, no upgrade
    // unless the backup is skipped.
    let mut runtime = None;
    if plan.verdict == Verdict::Upgrade
        && let Some(backup_dir) = &plan.backup_dir
    {
        match DockerRuntime::connect(&dir.instance_id()?, DockerSettings::default()).await {
            Ok(r) => {
                plan.checks.push(Check {
                    ok: true,
                    text: format!(
                        "the backup goes into {}; the Docker engine ({}) reads the workspaces' files",
                        backup_dir.display(),
                        r.node()
                    ),
                });
                runtime = Some(r);
            }
            Err(e) => {
                let text = format!(
                    "the automatic backup reads the workspaces' /projects through the Docker engine: {e}; \
                     fix the engine, or pass --skip-backup (the database is still copied first)"
                );
                plan.checks.push(Check { ok: false, text: text.clone() });
                plan.verdict = Verdict::Refused(text);
            }
        }
    }
    print_checks(dir, &plan);
    match &plan.verdict {
        Verdict::NothingToDo => {
            println!("Nothing to do: the instance is at drydock {VERSION}, database schema {SCHEMA}.");
            return Ok(ExitCode::SUCCESS);
        }
        Verdict::Refused(reason) => bail!("cannot upgrade: {reason}"),
        Verdict::Upgrade => {}
    }
    print_steps(dir, &plan);
    if args.plan {
        println!("Nothing was changed (--plan).");
        return Ok(ExitCode::SUCCESS);
    }
    confirm(
        &format!(
            "Upgrade the instance in {} from drydock {} to {VERSION}{}?",
            dir.root.display(),
            plan.instance_version,
            if plan.server.is_some() { " (the server is stopped and started again)" } else { "" }
        ),
        args.yes,
    )?;

    let mut server = LocalServer { dir, previous: None };
    let progress = TerminalProgress::new();
    let say = |line: &str| println!("  {line}");
    let outcome = upgrade::upgrade(&instance, &plan, &mut server, runtime.as_ref(), progress.clone(), &say).await;
    progress.done();
    let outcome = outcome?;
    println!(
        "Upgraded the instance in {} from drydock {} (schema {}) to {VERSION} (schema {}).",
        dir.root.display(),
        outcome.from,
        outcome.schema_from,
        outcome.schema_to
    );
    if let Some(backup) = &outcome.backup {
        println!("  The backup from before the upgrade: {}", backup.display());
    }
    if let Some(copy) = &outcome.kept_copy {
        println!(
            "  The database from before the upgrade is kept in {} (no backup was made); \
             remove it once the upgraded instance runs well.",
            copy.display()
        );
    }
    match &outcome.url {
        Some(url) => println!("  drydock {VERSION} runs at {url}"),
        None => println!("  Start it with `drydock start --data-dir {}`", dir.root.display()),
    }
    for warning in &outcome.warnings {
        println!("  (warning: {warning})");
    }
    Ok(ExitCode::SUCCESS)
}

fn print_checks(dir: &DataDir, plan: &Plan) {
    println!(
        "Instance in {}: drydock {}, {} database {} at schema {}. This drydock: {VERSION}, schema {SCHEMA}.",
        dir.root.display(),
        plan.instance_version,
        plan.backend,
        plan.database,
        plan.instance_schema
    );
    println!("Checks:");
    for check in &plan.checks {
        println!("  [{}] {}", if check.ok { "ok" } else { "refused" }, check.text);
    }
}

fn print_steps(dir: &DataDir, plan: &Plan) {
    let mut steps: Vec<String> = Vec::new();
    steps.push(match plan.server {
        Some(_) => "maintenance on, through the running server's API (a drydock before 0.2.0 has none: then it \
                    is recorded in the database once migrated)"
            .to_string(),
        None => {
            "maintenance on, in the database (once it has a place for it), so the server comes up in it".to_string()
        }
    });
    steps.push(match &plan.backup_dir {
        Some(backup_dir) => format!("back up the instance into {}", backup_dir.display()),
        None => "no backup (--skip-backup)".to_string(),
    });
    if let Some(pid) = plan.server {
        steps.push(format!("stop the server (pid {pid})"));
    }
    steps.push(format!(
        "copy the database into {}/before-upgrade-<time>/, to put it back if a later step fails",
        dir.root.display()
    ));
    let migrations: Vec<String> = plan.migrations.iter().map(|m| format!("{} {}", m.version, m.name)).collect();
    steps.push(format!(
        "migrate the {} database: {}",
        plan.backend,
        if migrations.is_empty() { "none to run".to_string() } else { migrations.join(", ") }
    ));
    steps.push(format!("write drydock.ver: {} → {VERSION}", plan.instance_version));
    if plan.server.is_some() {
        steps.push("start the server again, in the background".to_string());
    }
    steps.push("maintenance off".to_string());
    println!("Steps:");
    for (n, step) in steps.iter().enumerate() {
        println!("  {}. {step}", n + 1);
    }
    println!(
        "A failure after maintenance is on undoes every step: the database and drydock.ver come back as they were."
    );
}

/// The failure of a step of the binary's, as the upgrade reports it.
fn failed(step: &'static str) -> impl FnOnce(anyhow::Error) -> OpsError {
    move |e| OpsError::Step { step: step.to_string(), reason: format!("{e:#}") }
}

/// The server that runs on the instance, reached on this host.
struct LocalServer<'a> {
    dir: &'a DataDir,
    /// How the server stopped for the upgrade ran.
    previous: Option<Previous>,
}

struct Previous {
    /// Its binary, while that is still on disk.
    exe: Option<PathBuf>,
    /// Its `--listen`, if it had one.
    listen: Option<String>,
}

impl Previous {
    fn of(pid: i32) -> Previous {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
            .ok()
            .filter(|p| !p.to_string_lossy().ends_with(" (deleted)") && p.is_file());
        let args: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| c.split(|b| *b == 0).map(|a| String::from_utf8_lossy(a).to_string()).collect())
            .unwrap_or_default();
        let listen = args.iter().enumerate().find_map(|(i, a)| match a.strip_prefix("--listen") {
            Some("") => args.get(i + 1).cloned(),
            Some(rest) => rest.strip_prefix('=').map(str::to_string),
            None => None,
        });
        Previous { exe, listen }
    }
}

impl Server for LocalServer<'_> {
    fn running(&self) -> Option<i32> {
        self.dir.running_pid()
    }

    async fn begin_maintenance(&mut self, message: &str) -> drydock_ops::Result<ApiMaintenance> {
        let client = Client::connect(self.dir, None).map_err(failed("reaching the server"))?;
        let state: Value = match client.get("/api/system/state").await {
            Ok(state) => state,
            Err(e) if is_not_found(&e) => return Ok(ApiMaintenance::NoApi),
            Err(e) => return Err(failed("reading the server's state")(e)),
        };
        if state["status"] == "MAINTENANCE" {
            return Ok(ApiMaintenance::AlreadyOn);
        }
        // drydock 0.1.0 answers the state (always RUNNING) but has no maintenance mode.
        let body = json!({"message": message, "stopWorkspaces": false});
        match client.send_json::<_, Value>(Method::POST, "/api/system/maintenance", &body).await {
            Ok(_) => Ok(ApiMaintenance::On),
            Err(e) if is_not_found(&e) => Ok(ApiMaintenance::NoApi),
            Err(e) => Err(failed("turning maintenance on")(e)),
        }
    }

    async fn end_maintenance(&mut self) -> drydock_ops::Result<()> {
        let client = Client::connect(self.dir, None).map_err(failed("reaching the server"))?;
        client
            .send_no_content::<()>(Method::DELETE, "/api/system/maintenance", None)
            .await
            .map_err(failed("turning maintenance off"))
    }

    async fn stop(&mut self) -> drydock_ops::Result<()> {
        if let Some(pid) = self.dir.running_pid()
            && self.previous.is_none()
        {
            self.previous = Some(Previous::of(pid));
        }
        crate::cmd::stop::stop(self.dir).await.map_err(failed("stopping the server"))
    }

    async fn start(&mut self) -> drydock_ops::Result<String> {
        let listen = self.previous.as_ref().and_then(|p| p.listen.clone());
        crate::cmd::start::run(self.dir, &StartArgs { listen, detach: true })
            .await
            .map_err(failed("starting the server"))?;
        self.dir
            .running_url()
            .ok_or_else(|| OpsError::Step { step: "starting the server".into(), reason: "it does not run".into() })
    }

    async fn start_previous(&mut self) -> drydock_ops::Result<String> {
        let previous = self.previous.as_ref().ok_or_else(|| OpsError::Refused("no server was stopped".into()))?;
        let Some(exe) = &previous.exe else {
            return Err(OpsError::Refused(
                "the binary it ran is no longer on disk: start it with the drydock it ran before".into(),
            ));
        };
        let mut command = tokio::process::Command::new(exe);
        command.arg("start").arg("--data-dir").arg(&self.dir.root).arg("--detach");
        if let Some(listen) = &previous.listen {
            command.arg("--listen").arg(listen);
        }
        // Test hooks of this binary are no config keys to another.
        command.env_remove("DRYDOCK_FAIL_POINT").env_remove("DRYDOCK_PAUSE_POINT").stdin(Stdio::null());
        let out = command
            .output()
            .await
            .map_err(|e| OpsError::Step { step: format!("starting {}", exe.display()), reason: e.to_string() })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(OpsError::Step {
                step: format!("starting {}", exe.display()),
                reason: stderr.trim().lines().last().unwrap_or("it exited with an error").to_string(),
            });
        }
        self.dir.running_url().ok_or_else(|| OpsError::Step {
            step: format!("starting {}", exe.display()),
            reason: "it does not run".into(),
        })
    }
}
