//! `drydock backup`, `drydock backup verify` and `drydock restore`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::Utc;
use clap::{Args, Subcommand};
use drydock_core::BackupRun;
use drydock_core::audit_log::{Actor, NewEvent, Target};
use drydock_docker::{DockerRuntime, DockerSettings};
use drydock_ops::database::Database;
use drydock_ops::progress::Progress;
use drydock_ops::restore::DatabaseOf;
use drydock_ops::{BackupOptions, Instance, OpsError};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cmd::confirm;
use crate::config;
use crate::instance::DataDir;
use crate::wiring;

#[derive(Args, Debug)]
pub struct BackupArgs {
    #[command(subcommand)]
    command: Option<BackupCommand>,
    /// A directory for the archive (named drydock-backup-<version>-<time>.tar.zst), or its
    /// file name. Default: backup.dir of the config.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Also save the images and snapshots the workspaces use.
    #[arg(long)]
    images: bool,
    /// Leave out the workspaces' /projects.
    #[arg(long)]
    no_projects: bool,
}

#[derive(Subcommand, Debug)]
enum BackupCommand {
    /// Check an archive against its manifest; needs no instance.
    Verify {
        /// The archive.
        file: PathBuf,
    },
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// The archive to restore.
    file: PathBuf,
    /// Restore only this workspace's /projects, into the running instance.
    #[arg(long)]
    workspace: Option<String>,
    /// Do not ask before moving the current instance aside.
    #[arg(long)]
    yes: bool,
}

pub async fn backup(dir: &DataDir, args: &BackupArgs) -> Result<ExitCode> {
    if let Some(BackupCommand::Verify { file }) = &args.command {
        if args.out.is_some() || args.images || args.no_projects {
            bail!("`backup verify` takes only the archive: --out, --images and --no-projects are for making a backup");
        }
        return verify(file).await;
    }
    let instance = open_instance(dir)?;
    let options = BackupOptions { out: args.out.clone(), projects: !args.no_projects, images: args.images };
    let runtime = if options.projects || options.images { Some(connect_engine(dir).await?) } else { None };
    let started = Instant::now();
    let record = RunRecord::new(&instance).await;
    let progress = TerminalProgress::new();
    let report = drydock_ops::backup(&instance, runtime.as_ref(), &options, progress.clone()).await;
    progress.done();
    record.finish(&report).await;
    let report = report?;
    if args.out.is_none() {
        for removed in drydock_ops::retention::prune(&instance.backup_dir(), instance.config.backup.keep) {
            println!("Removed {} (backup.keep = {})", removed.display(), instance.config.backup.keep);
        }
    }
    let m = &report.manifest;
    println!(
        "Backup written: {} ({}, {} entries; {} workspace volume(s){}; database {} schema {}) in {:.1} s",
        report.path.display(),
        human_bytes(report.size),
        m.entries.len(),
        m.workspaces.len(),
        if m.images.is_empty() { String::new() } else { format!(", {} image(s)", m.images.len()) },
        m.database,
        m.schema_version,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

async fn verify(file: &Path) -> Result<ExitCode> {
    let progress = TerminalProgress::new();
    let result = drydock_ops::restore::verify(file, progress.clone()).await;
    progress.done();
    match result {
        Ok(m) => {
            println!(
                "{}: sound. drydock {} (schema {}), instance {}, made {}; {} entries, {} workspace volume(s), {} image(s), {} of data",
                file.display(),
                m.drydock_version,
                m.schema_version,
                m.instance_id,
                m.created.to_rfc3339(),
                m.entries.len(),
                m.workspaces.len(),
                m.images.len(),
                human_bytes(m.total_size())
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ OpsError::Invalid { .. }) => {
            eprintln!("{e}");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn restore(dir: &DataDir, args: &RestoreArgs) -> Result<ExitCode> {
    if !args.file.is_file() {
        bail!("{} is not a file", args.file.display());
    }
    if let Some(workspace) = &args.workspace {
        return restore_workspace(dir, &args.file, workspace).await;
    }
    let occupied = std::fs::read_dir(&dir.root).map(|mut d| d.next().is_some()).unwrap_or(false);
    if occupied && dir.running_pid().is_none() {
        confirm(
            &format!(
                "Restore {} into {}? The instance there now is moved aside to {}.before-restore-<time> first.",
                args.file.display(),
                dir.root.display(),
                dir.root.display()
            ),
            args.yes,
        )?;
    }
    let database_of: DatabaseOf = Arc::new(|root: &Path| {
        let loaded = config::load(root, &[]).map_err(|e| OpsError::Refused(format!("the restored config: {e:#}")))?;
        Database::from_url(&drydock_store::resolve_url(&loaded.config.database.url, root))
    });
    let progress = TerminalProgress::new();
    let report = drydock_ops::restore::restore(dir, &args.file, database_of, progress.clone()).await;
    progress.done();
    let report = report?;
    let m = &report.manifest;
    println!(
        "Restored instance {} (drydock {}, made {}) into {}: {} workspace volume(s), {} image(s)",
        m.instance_id,
        m.drydock_version,
        m.created.to_rfc3339(),
        dir.root.display(),
        m.workspaces.len(),
        m.images.len()
    );
    if let Some((from, to)) = report.migrated {
        println!("The database was migrated from schema {from} to {to} for drydock {}.", drydock_core::VERSION);
    }
    if let Some(aside) = &report.aside {
        println!("What was there before is kept in {}", aside.display());
    }
    println!("Start it with `drydock start --data-dir {}`", dir.root.display());
    Ok(ExitCode::SUCCESS)
}

/// One workspace's files into the running instance: the server says whether the workspace
/// exists and is stopped.
async fn restore_workspace(dir: &DataDir, file: &Path, workspace: &str) -> Result<ExitCode> {
    let client = crate::client::Client::connect(dir, None)?;
    let body: serde_json::Value = client
        .get(&format!("/api/workspace/{}", crate::client::encode(workspace)))
        .await
        .with_context(|| format!("workspace {workspace}"))?;
    let state = body["status"].as_str().unwrap_or("");
    if state != "STOPPED" {
        bail!(
            "workspace {workspace} is {state}: stop it first (`drydock workspace stop {workspace}`), then restore its files"
        );
    }
    let progress = TerminalProgress::new();
    let saved = drydock_ops::restore::restore_workspace(dir, file, workspace, progress.clone()).await;
    progress.done();
    let saved = saved?;
    println!("Restored the /projects of workspace {workspace} from {}", file.display());
    if let Some(saved) = saved {
        println!("Its files before the restore are kept in {}", saved.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// The run in the instance's backup history (`GET /api/system/backups`), recorded once it
/// ended (a record made before would be in the backup's own copy of the database), when the
/// database can be written; a backup goes on without it.
struct RunRecord {
    store: Option<Arc<dyn drydock_core::Store>>,
    run: BackupRun,
}

impl RunRecord {
    async fn new(instance: &Instance) -> RunRecord {
        let run = BackupRun {
            id: format!("backup-{}", drydock_core::ids::random_lower(12)),
            started: Utc::now(),
            finished: None,
            trigger: "manual".into(),
            file: None,
            size: None,
            result: "running".into(),
            message: None,
        };
        let url = wiring::database_url(&instance.dir, &instance.config);
        let store = drydock_store::connect(&url, &drydock_store::StoreOptions::default()).await.ok();
        RunRecord { store, run }
    }

    async fn finish(mut self, report: &drydock_ops::Result<drydock_ops::BackupReport>) {
        let Some(store) = &self.store else { return };
        self.run.finished = Some(Utc::now());
        match report {
            Ok(r) => {
                self.run.result = "ok".into();
                self.run.file = Some(r.path.display().to_string());
                self.run.size = i64::try_from(r.size).ok();
            }
            Err(e) => {
                self.run.result = "failed".into();
                self.run.message = Some(e.to_string());
            }
        }
        let mut event =
            NewEvent::new(Utc::now(), Actor::host_cli(), "backup.finish", Target::new("backup", &self.run.id, "cli"))
                .with("file", &self.run.file)
                .with("size", self.run.size)
                .with("message", &self.run.message);
        if self.run.result != "ok" {
            event = event.failed();
        }
        if let Err(e) = store.record_backup_run(&self.run, Some(&event)).await {
            eprintln!("note: the backup is not recorded in the instance's history: {e}");
        }
    }
}

/// The instance as the operations need it.
pub fn open_instance(dir: &DataDir) -> Result<Instance> {
    if !dir.is_instance() {
        bail!("{} holds no drydock instance", dir.root.display());
    }
    let loaded = config::load(&dir.root, &[])?;
    wiring::ops_instance(dir, &loaded.config)
}

async fn connect_engine(dir: &DataDir) -> Result<DockerRuntime> {
    let id = dir.instance_id()?;
    DockerRuntime::connect(&id, DockerSettings::default()).await.with_context(
        || "the workspaces' /projects are read through the Docker engine (use --no-projects to back up the rest)",
    )
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// A bar with the bytes done and the rate on a terminal; one line per step otherwise.
pub struct TerminalProgress {
    bar: Option<ProgressBar>,
}

impl TerminalProgress {
    pub fn new() -> Arc<TerminalProgress> {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg}: {bytes} ({bytes_per_sec}), {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Arc::new(TerminalProgress { bar })
    }

    pub fn done(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for TerminalProgress {
    fn step(&self, what: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(what.to_string()),
            None => eprintln!("{what}"),
        }
    }

    fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }
}
