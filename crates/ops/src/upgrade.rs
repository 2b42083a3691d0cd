//! `drydock upgrade`: an instance made by an older drydock, brought to this one.
//!
//! The rules ([`plan`]): an instance at this binary's version and schema has nothing to do;
//! one newer than the binary (version or schema) is refused, there is no downgrade; one whose
//! version is not in [`UPGRADES_FROM`] is refused, naming the release to upgrade to first.
//!
//! The steps ([`upgrade`]), each reported: maintenance on (through the running server's API,
//! or in the database when no server runs); a backup into the backup dir (unless skipped);
//! the server stopped; a copy of the database kept in the data dir (always: it is what a
//! failed migration is put back from); the migrations; the new `drydock.ver`; the server
//! started again if it ran before; maintenance off. A failure after the first change undoes
//! what was done, newest first: the database comes back from the copy (SQLite: the file
//! replaces the database, its `-wal`/`-shm` removed; PostgreSQL: the dump is loaded in one
//! transaction), the old version file is written back, maintenance ends and the server that
//! ran before runs again.

use std::fs::{self, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::Utc;
use drydock_core::audit_log::{Actor, NewEvent, Target};
use drydock_core::system::{MAINTENANCE_KEY, Maintenance};
use drydock_core::{BackupRun, Store};
use drydock_docker::DockerRuntime;
use drydock_store::describe_url;

use crate::backup::{BackupOptions, Instance, backup};
use crate::database::Database;
use crate::error::{OpsError, Result, fail_point};
use crate::instance::{process_is_drydock, read_trimmed, write_atomic};
use crate::progress::Progress;
use crate::versions::{self, SCHEMA, Standing, UPGRADES_FROM, VERSION};

/// The first schema with a place for maintenance mode (`system_state`).
pub const MAINTENANCE_SCHEMA: i64 = 5;
/// Who the stored maintenance state says turned it on.
pub const MAINTENANCE_BY: &str = "drydock upgrade";

/// One migration the upgrade would run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMigration {
    pub version: i64,
    pub name: &'static str,
}

/// One check of the plan and how it came out.
#[derive(Debug, Clone)]
pub struct Check {
    pub ok: bool,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The instance is at this binary's version and schema.
    NothingToDo,
    Upgrade,
    /// Why not; nothing changes.
    Refused(String),
}

/// What an upgrade of the instance would do, read from the instance as it is.
#[derive(Debug, Clone)]
pub struct Plan {
    pub instance_version: String,
    pub instance_schema: i64,
    pub backend: &'static str,
    pub database: String,
    pub checks: Vec<Check>,
    pub verdict: Verdict,
    /// The migrations that would run, oldest first.
    pub migrations: Vec<PlannedMigration>,
    /// The pid of the server running on the instance.
    pub server: Option<i32>,
    /// Where the backup would go; `None` with `--skip-backup`.
    pub backup_dir: Option<PathBuf>,
}

/// Reads the instance (its version file, its database's schema) and says what an upgrade
/// would do. Changes nothing.
pub async fn plan(instance: &Instance, server: Option<i32>, skip_backup: bool) -> Result<Plan> {
    let dir = &instance.dir;
    let version = dir.instance_version()?;
    if !versions::is_version(&version) {
        return Err(OpsError::Refused(format!(
            "{} holds '{version}', not a drydock version: the instance's version file is damaged",
            dir.version_file().display()
        )));
    }
    // Opening a SQLite database that is not there would create an empty one.
    if let Database::Sqlite(path) = &instance.database
        && !path.is_file()
    {
        return Err(OpsError::Refused(format!(
            "the instance's database {} is missing: nothing to upgrade",
            path.display()
        )));
    }
    let database = describe_url(&instance.database.url());
    let schema = instance.database.schema_version().await?;
    let migrations: Vec<PlannedMigration> = instance
        .database
        .migrations()
        .iter()
        .filter(|m| m.version > schema)
        .map(|m| PlannedMigration { version: m.version, name: m.name })
        .collect();

    let mut checks = Vec::new();
    let mut refusal = None;
    let mut refuse = |checks: &mut Vec<Check>, text: String| {
        checks.push(Check { ok: false, text: text.clone() });
        refusal.get_or_insert(text);
    };
    let standing = versions::standing(&version);
    match standing {
        Standing::Current => {
            checks.push(Check { ok: true, text: format!("the instance is at drydock {version}, as this drydock is") })
        }
        Standing::Upgradable => checks.push(Check {
            ok: true,
            text: format!(
                "the instance is at drydock {version}: this drydock {VERSION} upgrades from {}",
                UPGRADES_FROM.join(", ")
            ),
        }),
        Standing::Newer => refuse(
            &mut checks,
            format!(
                "the instance is at drydock {version}, newer than this drydock {VERSION}: \
                 a downgrade is not possible; run drydock {version} or newer"
            ),
        ),
        Standing::TooOld { first } => refuse(
            &mut checks,
            format!(
                "the instance is at drydock {version}; this drydock {VERSION} upgrades from {} only: \
                 upgrade it to {first} first (with drydock {first}), then run this upgrade",
                UPGRADES_FROM.join(", ")
            ),
        ),
        Standing::Unknown => refuse(
            &mut checks,
            format!(
                "the instance is at drydock {version}, a release this drydock {VERSION} does not know \
                 (it knows {}); it upgrades from {} only",
                versions::RELEASES.iter().map(|r| r.version).collect::<Vec<_>>().join(", "),
                UPGRADES_FROM.join(", ")
            ),
        ),
    }
    if schema == 0 {
        refuse(
            &mut checks,
            format!(
                "the database {database} holds no drydock schema: is database.url (or DRYDOCK_DATABASE__URL) \
                 the instance's database?"
            ),
        );
    } else if schema > SCHEMA {
        refuse(
            &mut checks,
            format!(
                "the database {database} has schema version {schema}, newer than this drydock {VERSION} knows \
                 (up to {SCHEMA}): a downgrade is not possible; run the drydock version that last used it, or a newer one"
            ),
        );
    } else if schema == SCHEMA {
        checks.push(Check {
            ok: true,
            text: format!("the database {database} is at schema {schema}, as this drydock needs"),
        });
    } else {
        let expected = versions::release(&version).map(|r| r.schema);
        let note = match expected {
            Some(s) if s != schema => format!(" (drydock {version} itself runs on schema {s})"),
            _ => String::new(),
        };
        checks.push(Check {
            ok: true,
            text: format!(
                "the database {database} is at schema {schema}{note}; this drydock needs {SCHEMA}: {} migration(s) to run",
                migrations.len()
            ),
        });
    }
    let verdict = match refusal {
        Some(reason) => Verdict::Refused(reason),
        None if standing == Standing::Current && schema == SCHEMA => Verdict::NothingToDo,
        None => Verdict::Upgrade,
    };
    if verdict == Verdict::Upgrade {
        checks.push(Check {
            ok: true,
            text: match server {
                Some(pid) => format!("the server runs (pid {pid}): it is stopped for the migrations and started again"),
                None => "the server is not running: it stays stopped".to_string(),
            },
        });
    }
    Ok(Plan {
        instance_version: version,
        instance_schema: schema,
        backend: instance.database.backend(),
        database,
        checks,
        verdict,
        migrations,
        server,
        backup_dir: (!skip_backup).then(|| instance.backup_dir()),
    })
}

/// How maintenance went on through the running server's API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiMaintenance {
    /// Turned on now.
    On,
    /// It was on already (an administrator's own): the upgrade leaves it as it is.
    AlreadyOn,
    /// The running drydock has no maintenance mode (it is older than 0.2.0).
    NoApi,
}

/// The running server, as the binary reaches it: its API, stopping and starting it.
pub trait Server {
    /// The pid of the server running on the instance now.
    fn running(&self) -> Option<i32>;
    /// Turns maintenance on through the running server's API.
    fn begin_maintenance(&mut self, message: &str) -> impl Future<Output = Result<ApiMaintenance>>;
    /// Turns it off through the API of the server running now.
    fn end_maintenance(&mut self) -> impl Future<Output = Result<()>>;
    /// Stops the running server gracefully; remembers how it ran.
    fn stop(&mut self) -> impl Future<Output = Result<()>>;
    /// Starts the upgraded instance's server in the background; its URL.
    fn start(&mut self) -> impl Future<Output = Result<String>>;
    /// After a failed upgrade: starts the server that ran before with the binary it ran; its
    /// URL, or why it cannot.
    fn start_previous(&mut self) -> impl Future<Output = Result<String>>;
}

#[derive(Debug, Clone)]
pub struct UpgradeOutcome {
    pub from: String,
    pub schema_from: i64,
    pub schema_to: i64,
    pub backup: Option<PathBuf>,
    /// The copy of the database from before the upgrade, when it is kept (with
    /// `--skip-backup` it is the only one).
    pub kept_copy: Option<PathBuf>,
    /// The URL of the server started again.
    pub url: Option<String>,
    pub warnings: Vec<String>,
}

/// How the upgrade stands with maintenance mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Maint {
    /// Not touched (it was on already, an administrator's own).
    #[default]
    Untouched,
    /// Turned on through the running server's API (it is stored in the database too).
    Api,
    /// Turned on in the database.
    Stored,
    /// To be stored once the database has a place for it (after the migrations).
    Pending,
}

/// What the upgrade changed so far, to undo it when a later step fails.
#[derive(Default)]
struct Journal {
    maintenance: Maint,
    /// The server that ran was stopped.
    stopped: bool,
    /// The copy of the database before the migrations, and its folder.
    copy: Option<(PathBuf, PathBuf)>,
    /// The migrations began: the database is to be put back.
    migrating: bool,
    version_written: bool,
    /// The upgraded server was started (or its start began).
    started: bool,
}

/// Upgrades the instance as `plan` (from [`plan`]) says. `runtime` reads the workspaces'
/// files for the backup (needed unless the backup is skipped); `say` reports each step.
pub async fn upgrade<S: Server>(
    instance: &Instance,
    plan: &Plan,
    server: &mut S,
    runtime: Option<&DockerRuntime>,
    progress: Arc<dyn Progress>,
    say: &dyn Fn(&str),
) -> Result<UpgradeOutcome> {
    match &plan.verdict {
        Verdict::Upgrade => {}
        Verdict::NothingToDo => {
            return Err(OpsError::Refused(format!("the instance is at drydock {VERSION} already: nothing to do")));
        }
        Verdict::Refused(reason) => return Err(OpsError::Refused(reason.clone())),
    }
    let _lock = UpgradeLock::take(&instance.dir.root)?;
    let mut journal = Journal::default();
    match steps(instance, plan, server, runtime, progress, say, &mut journal).await {
        Ok(outcome) => Ok(outcome),
        Err(e) if !journal.changed() => {
            Err(OpsError::Step { step: "upgrade".into(), reason: format!("{e}; nothing was changed") })
        }
        Err(e) => {
            say(&format!("the upgrade failed: {e}"));
            say("undoing it");
            let undone = undo(instance, plan, server, &mut journal, say).await;
            let reason = match undone {
                Ok(note) => format!(
                    "{e}; the upgrade was undone: the database is back at schema {} and drydock.ver says {} again{note}",
                    plan.instance_schema, plan.instance_version
                ),
                Err(u) => format!(
                    "{e}; undoing the upgrade failed too: {u}. The database as it was before is in {}, \
                     and drydock.ver said {}",
                    journal.copy.as_ref().map(|(_, f)| f.display().to_string()).unwrap_or_else(|| "the backup".into()),
                    plan.instance_version
                ),
            };
            Err(OpsError::Step { step: "upgrade".into(), reason })
        }
    }
}

impl Journal {
    fn changed(&self) -> bool {
        matches!(self.maintenance, Maint::Api | Maint::Stored) || self.stopped || self.copy.is_some()
    }
}

async fn steps<S: Server>(
    instance: &Instance,
    plan: &Plan,
    server: &mut S,
    runtime: Option<&DockerRuntime>,
    progress: Arc<dyn Progress>,
    say: &dyn Fn(&str),
    journal: &mut Journal,
) -> Result<UpgradeOutcome> {
    let dir = &instance.dir;
    let database = &instance.database;
    let mut warnings = Vec::new();
    let mut warn = |text: String, say: &dyn Fn(&str)| {
        say(&format!("warning: {text}"));
        warnings.push(text);
    };
    let message = format!(
        "drydock is being upgraded from {} to {VERSION}; creating and starting workspaces waits until it is done",
        plan.instance_version
    );
    let was_running = server.running().is_some();

    // 1. Maintenance on.
    if was_running {
        match server.begin_maintenance(&message).await? {
            ApiMaintenance::On => {
                journal.maintenance = Maint::Api;
                say("maintenance on (through the running server's API)");
            }
            ApiMaintenance::AlreadyOn => say("maintenance was on already: it stays on after the upgrade"),
            ApiMaintenance::NoApi => {
                journal.maintenance = Maint::Pending;
                warn(
                    format!(
                        "the running drydock {} has no maintenance mode: users can work until the server stops; \
                         maintenance is recorded in the database once it is migrated",
                        plan.instance_version
                    ),
                    say,
                );
            }
        }
    } else if plan.instance_schema >= MAINTENANCE_SCHEMA {
        if stored_maintenance(database).await?.is_some() {
            say("maintenance was on already: it stays on after the upgrade");
        } else {
            store_maintenance(database, Some(&message)).await?;
            journal.maintenance = Maint::Stored;
            say("maintenance on (in the database: the server is not running)");
        }
    } else {
        journal.maintenance = Maint::Pending;
        say(&format!(
            "maintenance: the server is not running, and schema {} has no place for it yet: \
             it is recorded in the database once migrated",
            plan.instance_schema
        ));
    }

    // 2. The backup, while the server still runs.
    let mut backup_path = None;
    let mut backup_run = None;
    if let Some(backup_dir) = &plan.backup_dir {
        say(&format!("backing up the instance into {}", backup_dir.display()));
        let options = BackupOptions { out: None, projects: true, images: false };
        let started = Utc::now();
        let report = backup(instance, runtime, &options, progress).await?;
        say(&format!("backup written: {}", report.path.display()));
        backup_run = Some(BackupRun {
            id: format!("backup-{}", drydock_core::ids::random_lower(12)),
            started,
            finished: Some(Utc::now()),
            trigger: "upgrade".into(),
            file: Some(report.path.display().to_string()),
            size: i64::try_from(report.size).ok(),
            result: "ok".into(),
            message: None,
        });
        backup_path = Some(report.path);
    } else {
        say("no backup (--skip-backup): only the database is copied before the migrations");
    }
    fail_point("upgrade-after-backup")?;

    // 3. The server stops.
    if was_running {
        say("stopping the server");
        journal.stopped = true;
        server.stop().await?;
    }

    // 4. The database as it is now, kept where a failed migration is put back from.
    let folder = dir.root.join(format!("before-upgrade-{}", Utc::now().format("%Y%m%dT%H%M%SZ")));
    fs::DirBuilder::new().recursive(true).mode(0o700).create(&folder).map_err(OpsError::io("create", &folder))?;
    let copy = folder.join(match database {
        Database::Sqlite(_) => "database.db",
        Database::Postgres(_) => "database.sql",
    });
    journal.copy = Some((folder.clone(), copy.clone()));
    database.snapshot(&copy).await?;
    sync_file(&copy)?;
    write_atomic(&folder.join("drydock.ver"), format!("{}\n", plan.instance_version).as_bytes(), 0o644)?;
    say(&format!("database copied to {} (put back if a step fails)", copy.display()));
    fail_point("upgrade-before-migrate")?;

    // 5. The migrations.
    let names: Vec<String> = plan.migrations.iter().map(|m| format!("{} {}", m.version, m.name)).collect();
    say(&format!("migrating the database: {}", if names.is_empty() { "none to run".into() } else { names.join(", ") }));
    journal.migrating = true;
    let reached = database.migrate().await?;
    if reached != SCHEMA {
        return Err(OpsError::Step {
            step: "migrating the database".into(),
            reason: format!("it reached schema {reached}, not {SCHEMA}"),
        });
    }
    say(&format!("database migrated: schema {} → {reached}", plan.instance_schema));
    let event = NewEvent::new(Utc::now(), Actor::host_cli(), "system.upgrade", Target::system())
        .changed("version", &plan.instance_version, VERSION)
        .changed("schema", plan.instance_schema, reached);
    database.record_event(&event).await?;
    // The backup's record goes in now: an older schema may have had no place for it.
    if let Some(run) = &backup_run
        && let Err(e) = record_backup_run(database, run).await
    {
        say(&format!("warning: the backup is not in the instance's backup history: {e}"));
    }
    fail_point("upgrade-after-migrate")?;
    if journal.maintenance == Maint::Pending {
        if stored_maintenance(database).await?.is_some() {
            journal.maintenance = Maint::Untouched;
        } else {
            store_maintenance(database, Some(&message)).await?;
            journal.maintenance = Maint::Stored;
            say("maintenance on (in the database, now that it has a place for it)");
        }
    }

    // 6. The version file.
    journal.version_written = true;
    write_atomic(&dir.version_file(), format!("{VERSION}\n").as_bytes(), 0o644)?;
    say(&format!("drydock.ver: {} → {VERSION}", plan.instance_version));
    fail_point("upgrade-after-version")?;

    // 7. The server again, if it ran.
    let mut url = None;
    if was_running {
        say("starting the server");
        journal.started = true;
        url = Some(server.start().await?);
        fail_point("upgrade-after-start")?;
    }

    // 8. Maintenance off. The upgrade is done by now: a failure here is a warning.
    if matches!(journal.maintenance, Maint::Api | Maint::Stored) {
        let ended = if was_running { server.end_maintenance().await } else { store_maintenance(database, None).await };
        match ended {
            Ok(()) => say("maintenance off"),
            Err(e) => warn(format!("maintenance is still on ({e}): turn it off with `drydock maintenance off`"), say),
        }
    }

    // The copy is the only one without a backup; with one, the archive holds the same.
    let kept_copy = if backup_path.is_some() {
        if let Err(e) = fs::remove_dir_all(&folder) {
            warn(format!("cannot remove {}: {e}", folder.display()), say);
        }
        None
    } else {
        Some(folder)
    };
    Ok(UpgradeOutcome {
        from: plan.instance_version.clone(),
        schema_from: plan.instance_schema,
        schema_to: reached,
        backup: backup_path,
        kept_copy,
        url,
        warnings,
    })
}

/// Undoes what [`steps`] did, newest first; returns a note on the server for the message.
async fn undo<S: Server>(
    instance: &Instance,
    plan: &Plan,
    server: &mut S,
    journal: &mut Journal,
    say: &dyn Fn(&str),
) -> Result<String> {
    let database = &instance.database;
    let mut first_error: Option<OpsError> = None;
    let mut note = |r: Result<()>| {
        if let Err(e) = r {
            tracing::error!(error = %e, "undoing a failed upgrade");
            first_error.get_or_insert(e);
        }
    };
    if journal.started && server.running().is_some() {
        say("stopping the upgraded server");
        note(server.stop().await);
    }
    if journal.migrating
        && let Some((_, copy)) = &journal.copy
    {
        say(&format!("putting the database back from {}", copy.display()));
        note(put_back(database, copy).await);
    }
    if journal.version_written {
        say(&format!("drydock.ver: back to {}", plan.instance_version));
        let text = format!("{}\n", plan.instance_version);
        note(write_atomic(&instance.dir.version_file(), text.as_bytes(), 0o644));
    }
    match journal.maintenance {
        Maint::Api if !journal.stopped => {
            say("maintenance off (through the running server's API)");
            note(server.end_maintenance().await);
        }
        // The database put back is from before the schema had a place for maintenance.
        Maint::Api | Maint::Stored if journal.migrating && plan.instance_schema < MAINTENANCE_SCHEMA => {}
        // Stored by the upgrade (or by the API into the database the copy was taken of).
        Maint::Api | Maint::Stored => {
            say("maintenance off (in the database)");
            note(store_maintenance(database, None).await);
        }
        Maint::Untouched | Maint::Pending => {}
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if let Some((folder, _)) = &journal.copy {
        let _ = fs::remove_dir_all(folder);
    }
    if !journal.stopped {
        return Ok(String::new());
    }
    say("starting the server that ran before");
    Ok(match server.start_previous().await {
        Ok(url) => format!("; the server runs again at {url}"),
        Err(e) => format!("; the server was stopped for the upgrade and could not be started again ({e})"),
    })
}

/// The database as it was: SQLite from the file copy, PostgreSQL from the dump.
async fn put_back(database: &Database, copy: &Path) -> Result<()> {
    match database {
        Database::Sqlite(path) => {
            let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            let temp = path.with_file_name(format!(".{name}.upgrade-undo"));
            fs::copy(copy, &temp).map_err(OpsError::io("copy", copy))?;
            sync_file(&temp)?;
            // The journal files belong to the migrated database: with the old file they would
            // be read as its own.
            for suffix in ["-wal", "-shm", "-journal"] {
                let side = PathBuf::from(format!("{}{suffix}", path.display()));
                match fs::remove_file(&side) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(OpsError::io("remove", &side)(e)),
                }
            }
            fs::rename(&temp, path).map_err(OpsError::io("rename", &temp))?;
            if let Some(parent) = path.parent() {
                fs::File::open(parent).and_then(|d| d.sync_all()).map_err(OpsError::io("flush", parent))?;
            }
            Ok(())
        }
        Database::Postgres(url) => {
            let (url, copy) = (url.clone(), copy.to_path_buf());
            tokio::task::spawn_blocking(move || Database::load_postgres(&url, &copy))
                .await
                .map_err(OpsError::step("loading the database"))?
        }
    }
}

fn sync_file(path: &Path) -> Result<()> {
    fs::File::open(path).and_then(|f| f.sync_all()).map_err(OpsError::io("flush", path))
}

/// The maintenance state stored in the database (schema 5 on).
async fn stored_maintenance(database: &Database) -> Result<Option<String>> {
    database.with_store("reading the maintenance state", async |store| store.system_value(MAINTENANCE_KEY).await).await
}

async fn record_backup_run(database: &Database, run: &BackupRun) -> Result<()> {
    database.with_store("recording the backup", async |store| store.record_backup_run(run, None).await).await
}

/// Stores maintenance on (with the message) or off, as the server would: it comes up in it.
async fn store_maintenance(database: &Database, message: Option<&str>) -> Result<()> {
    let value = match message {
        Some(message) => Some(
            serde_json::to_string(&Maintenance {
                message: message.to_string(),
                since: Utc::now(),
                by: MAINTENANCE_BY.to_string(),
            })
            .map_err(OpsError::step("writing the maintenance state"))?,
        ),
        None => None,
    };
    database
        .with_store("writing the maintenance state", async |store| {
            store.set_system_value(MAINTENANCE_KEY, value.as_deref(), None).await
        })
        .await
}

/// One upgrade at a time: `<data-dir>/.upgrade-lock.tmp` holds the pid of the one running; a
/// lock whose process is gone is stale and taken over. (Its `.tmp` keeps it out of backups.)
struct UpgradeLock(PathBuf);

impl UpgradeLock {
    fn take(root: &Path) -> Result<UpgradeLock> {
        let path = root.join(".upgrade-lock.tmp");
        for _ in 0..2 {
            match OpenOptions::new().write(true).create_new(true).mode(0o644).open(&path) {
                Ok(mut file) => {
                    let pid = std::process::id();
                    file.write_all(format!("{pid}\n").as_bytes()).map_err(OpsError::io("write", &path))?;
                    return Ok(UpgradeLock(path));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = read_trimmed(&path).ok().and_then(|p| p.parse::<i32>().ok());
                    if let Some(pid) = holder
                        && process_is_drydock(pid)
                    {
                        return Err(OpsError::Refused(format!(
                            "another upgrade of this instance runs (pid {pid}); wait for it to end"
                        )));
                    }
                    let _ = fs::remove_file(&path);
                }
                Err(e) => return Err(OpsError::io("create", &path)(e)),
            }
        }
        Err(OpsError::Refused(format!("cannot take {}: another upgrade may be starting", path.display())))
    }
}

impl Drop for UpgradeLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}
