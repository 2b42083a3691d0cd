//! `drydock init`: a new instance in a data dir.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Args;
use drydock_core::audit_log::Actor;
use drydock_core::runtime::Unavailable;
use drydock_core::users::CreateUser;
use drydock_core::{Drydock, SystemClock, VERSION, ids, validate};
use drydock_store::describe_url;

use crate::cmd::password_from;
use crate::config;
use crate::instance::{ADMIN_TOKEN_SECRET, DataDir, INITIAL_PASSWORD_SECRET, write_atomic};
use crate::wiring;

#[derive(Args, Debug, Clone)]
pub struct InitArgs {
    /// Name of the first administrator.
    #[arg(long, default_value = "admin")]
    pub admin_name: String,
    /// E-mail of the first administrator.
    #[arg(long, default_value = "admin@localhost")]
    pub admin_email: String,
    /// Password of the first administrator (visible to other local users: prefer the file).
    #[arg(long, conflicts_with = "admin_password_file")]
    pub admin_password: Option<String>,
    /// File whose first line is the first administrator's password.
    #[arg(long)]
    pub admin_password_file: Option<PathBuf>,
}

impl Default for InitArgs {
    fn default() -> Self {
        InitArgs {
            admin_name: "admin".into(),
            admin_email: "admin@localhost".into(),
            admin_password: None,
            admin_password_file: None,
        }
    }
}

pub async fn run(dir: &DataDir, args: &InitArgs) -> Result<ExitCode> {
    init_instance(dir, args).await?;
    Ok(ExitCode::SUCCESS)
}

/// Creates the instance. Its version file is written last: until then the data dir is not
/// an instance, so a failed init can be run again.
pub async fn init_instance(dir: &DataDir, args: &InitArgs) -> Result<()> {
    if dir.is_instance() {
        bail!(
            "{} already holds a drydock instance (id {}): run it with `drydock start`, or choose another --data-dir",
            dir.root.display(),
            dir.instance_id().unwrap_or_else(|_| "unknown".into())
        );
    }
    let given = password_from(args.admin_password.as_deref(), args.admin_password_file.as_deref())?;
    let generated = given.is_none();
    let password = given.unwrap_or_else(ids::random_password);
    validate::user_name(&args.admin_name).context("--admin-name")?;
    validate::email(&args.admin_email).context("--admin-email")?;
    validate::password("password", &password).context("the administrator's password")?;

    std::fs::create_dir_all(&dir.root)
        .with_context(|| format!("cannot create the data directory {}", dir.root.display()))?;
    write_atomic(&dir.root.join(".write-test"), b"", 0o600)
        .with_context(|| format!("the data directory {} is not writable", dir.root.display()))?;
    let _ = std::fs::remove_file(dir.root.join(".write-test"));

    let loaded = config::load(&dir.root, &[])?;
    let store = wiring::open_store_migrating(dir, &loaded.config).await?;
    let users = store.count_users().await?;
    if users > 0 {
        bail!(
            "the database {} already holds {users} users of another instance: point database.url at an empty database",
            describe_url(&wiring::database_url(dir, &loaded.config))
        );
    }
    // init only creates the first administrator: it runs no workspace.
    let no_runtime = Arc::new(Unavailable { reason: "init runs no workspace".into() });
    let drydock = Drydock::new(store, &loaded.config, Arc::new(SystemClock), no_runtime);
    // The instance runs under Fair Source until a paid license is installed: accepted now.
    drydock.licenses.accept_fair_source_if_new(Actor::host_cli()).await?;
    let admin = drydock
        .users
        .bootstrap_admin(CreateUser {
            name: args.admin_name.clone(),
            email: args.admin_email.clone(),
            password: password.clone(),
        })
        .await?;
    let (_, token) =
        drydock.auth.issue_token(&admin.id, "drydock CLI on the master host", None, Actor::host_cli()).await?;
    dir.write_secret(ADMIN_TOKEN_SECRET, &token)?;
    if generated {
        dir.write_secret(INITIAL_PASSWORD_SECRET, &password)?;
    }
    let instance_id = seal_instance(dir, &loaded)?;

    println!("Initialized drydock {VERSION} instance {instance_id} in {}", dir.root.display());
    println!("  database:      {}", describe_url(&wiring::database_url(dir, &loaded.config)));
    println!("  administrator: {} <{}>", admin.name, admin.email);
    if generated {
        println!("  password:      {password}");
        println!(
            "                 (also kept in {}; change it after you sign in)",
            dir.secret_file(INITIAL_PASSWORD_SECRET).display()
        );
    }
    Ok(())
}

/// The last steps of making an instance: its config (when it has none yet), a new instance
/// id, and the version file, written last, which makes the data dir an instance.
pub fn seal_instance(dir: &DataDir, loaded: &config::Loaded) -> Result<String> {
    let config_file = config::config_path(&dir.root);
    if !config_file.exists() {
        write_atomic(&config_file, config::render(loaded)?.as_bytes(), 0o600)?;
    }
    let instance_id = ids::instance_id();
    write_atomic(&dir.instance_file(), format!("{instance_id}\n").as_bytes(), 0o644)?;
    write_atomic(&dir.version_file(), format!("{VERSION}\n").as_bytes(), 0o644)?;
    Ok(instance_id)
}
