//! The `drydock` binary: clap verbs (one module each), config loading, and the wiring of
//! store, services and server. Admin verbs talk to the running server's API; only offline
//! work (init, start, backup, restore, upgrade) opens storage directly.

mod client;
mod cmd;
mod config;
mod instance;
mod serving;
mod wiring;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::instance::DataDir;

#[derive(Parser)]
#[command(name = "drydock", version, about = "Self-hosted developer workspaces on your own Docker hosts")]
struct Cli {
    /// The instance's data directory.
    #[arg(long, global = true, env = "DRYDOCK_DATA_DIR", default_value = "./drydock-data")]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new instance: data dir, config, secrets, database and the first administrator.
    Init(cmd::init::InitArgs),
    /// Run the server (initializing the instance first when the data dir holds none).
    Start(cmd::start::StartArgs),
    /// Stop the running server gracefully.
    Stop,
    /// Stop the server if it runs, then start it in the background.
    Restart(cmd::start::RestartArgs),
    /// Whether the server runs, where, and on what.
    Status(cmd::status::StatusArgs),
    /// The binary's version and the instance's.
    Version(cmd::status::VersionArgs),
    /// Manage users (through the running server).
    #[command(subcommand)]
    User(cmd::user::UserCommand),
    /// Manage your personal API tokens (through the running server).
    #[command(subcommand)]
    Token(cmd::token::TokenCommand),
    /// Per-user resource limits: list overrides, show, set, reset (through the running server).
    #[command(subcommand)]
    Limits(cmd::limits::LimitsCommand),
    /// Back up the instance while it runs: database, config, secrets, workspace files (and images).
    Backup(cmd::backup::BackupArgs),
    /// Restore an instance (or one workspace's files) from a backup archive.
    Restore(cmd::backup::RestoreArgs),
    /// Manage workspaces: list, create, start, stop, delete, exec, snapshot, ssh (through the running server).
    #[command(subcommand)]
    Workspace(cmd::workspace::WorkspaceCommand),
    /// Nodes (Docker hosts) workspaces run on: list, join-command, drain, activate, remove
    /// (through the running server).
    #[command(subcommand)]
    Node(cmd::node::NodeCommand),
    /// Upgrade the instance to this drydock: checks, maintenance, backup, migrations, restart
    /// (`--plan` shows what it would do).
    Upgrade(cmd::upgrade::UpgradeArgs),
    /// Licenses: keygen and issue (offline); show, install, remove (through the running server).
    #[command(subcommand)]
    License(cmd::license::LicenseCommand),
    /// Maintenance mode: on (users may not create or start workspaces), off, status (through the running server).
    #[command(subcommand)]
    Maintenance(cmd::maintenance::MaintenanceCommand),
    /// Download the audit report (license history, who owns and may use which workspace)
    /// from the running server into a file: `drydock audit [--out FILE]`.
    Audit(cmd::audit::AuditArgs),
    /// Disaster recovery: follow a primary as a standby (`--primary URL --token-file FILE`),
    /// `token` (on the primary), `check` (the standby's copy).
    Standby(cmd::standby::StandbyArgs),
    /// Promote the standby in this data dir: it serves as the primary at once.
    Promote(cmd::standby::PromoteArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let dir = DataDir::new(&cli.data_dir);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Init(args) => cmd::init::run(&dir, &args).await,
            Command::Start(args) => cmd::start::run(&dir, &args).await,
            Command::Stop => cmd::stop::run(&dir).await,
            Command::Restart(args) => cmd::start::restart(&dir, &args).await,
            Command::Status(args) => cmd::status::status(&dir, &args).await,
            Command::Version(args) => cmd::status::version(&dir, &args),
            Command::User(c) => cmd::user::run(&dir, c).await,
            Command::Token(c) => cmd::token::run(&dir, c).await,
            Command::Workspace(c) => cmd::workspace::run(&dir, c).await,
            Command::Limits(c) => cmd::limits::run(&dir, c).await,
            Command::Node(c) => cmd::node::run(&dir, c).await,
            Command::Backup(args) => cmd::backup::backup(&dir, &args).await,
            Command::Restore(args) => cmd::backup::restore(&dir, &args).await,
            Command::Maintenance(c) => cmd::maintenance::run(&dir, c).await,
            Command::License(c) => cmd::license::run(&dir, c).await,
            Command::Upgrade(args) => cmd::upgrade::run(&dir, &args).await,
            Command::Audit(args) => cmd::audit::run(&dir, args).await,
            Command::Standby(args) => cmd::standby::run(&dir, args).await,
            Command::Promote(args) => cmd::standby::promote(&dir, &args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
