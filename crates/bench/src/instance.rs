//! The instance under test: a throwaway drydock instance made by the real binary
//! (`drydock init`, `drydock start --detach` on port 0, `drydock stop`), on SQLite or on a
//! fresh database of a PostgreSQL server. Whatever happens, the server is stopped, the
//! database dropped and the data dir removed (by `Drop` guards).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, ensure};
use tempfile::TempDir;

use crate::util::{random_hex, read_trimmed, run_checked, workspace_root};

/// The administrator's password in the throwaway instances.
pub const ADMIN_PASSWORD: &str = "bench-admin-password-1";
pub const ADMIN_NAME: &str = "admin";

pub enum Backend {
    Sqlite,
    /// The URL of a PostgreSQL server whose database lets us create and drop ours.
    Postgres(String),
}

impl Backend {
    /// SQLite, and PostgreSQL when `TEST_POSTGRES_URL` is set (else a note says it is skipped).
    pub fn from_env() -> Vec<Backend> {
        let mut backends = vec![Backend::Sqlite];
        match std::env::var("TEST_POSTGRES_URL") {
            Ok(url) if !url.is_empty() => backends.push(Backend::Postgres(url)),
            _ => eprintln!("note: TEST_POSTGRES_URL is not set: PostgreSQL is skipped"),
        }
        backends
    }

    pub fn label(&self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres(_) => "PostgreSQL",
        }
    }
}

/// A throwaway drydock instance. Dropping it stops its server, then (field order) drops its
/// PostgreSQL database, then removes its temp dir.
pub struct Instance {
    bin: PathBuf,
    data_dir: PathBuf,
    /// The only `DRYDOCK_*` variables the drydock processes see.
    env: Vec<(String, String)>,
    /// `drydock start` was run: the server may be up.
    started: bool,
    db: Option<PgDatabase>,
    tmp: TempDir,
}

impl Instance {
    pub fn create(bin: &Path, backend: &Backend) -> Result<Instance> {
        let tmp = tempfile::Builder::new().prefix("drydock-bench.").tempdir().context("cannot create a temp dir")?;
        let password_file = tmp.path().join("admin-password");
        std::fs::write(&password_file, format!("{ADMIN_PASSWORD}\n"))?;
        let mut env = Vec::new();
        let db = match backend {
            Backend::Sqlite => None,
            Backend::Postgres(server) => {
                let db = PgDatabase::create(server)?;
                env.push(("DRYDOCK_DATABASE__URL".to_string(), db.url.clone()));
                Some(db)
            }
        };
        Ok(Instance { bin: bin.to_path_buf(), data_dir: tmp.path().join("data"), env, started: false, db, tmp })
    }

    /// Sets a config key for the server through its environment variable (before `start`).
    pub fn set_config(&mut self, variable: &str, value: &str) {
        self.env.push((variable.to_string(), value.to_string()));
    }

    /// `drydock <verb> --data-dir …`; `verb` may be several words (`standby token`).
    fn command(&self, verb: &str) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(verb.split_whitespace()).arg("--data-dir").arg(&self.data_dir);
        // Ours (DRYDOCK_BIN, TEST_POSTGRES_URL) are not config keys: drydock refuses them.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("DRYDOCK_") {
                cmd.env_remove(name);
            }
        }
        cmd.envs(self.env.iter().map(|(k, v)| (k, v))).stdin(Stdio::null());
        cmd
    }

    pub fn init(&self) -> Result<()> {
        let mut cmd = self.command("init");
        cmd.arg("--admin-name")
            .arg(ADMIN_NAME)
            .arg("--admin-password-file")
            .arg(self.tmp.path().join("admin-password"));
        run_checked(&mut cmd, "drydock init")?;
        Ok(())
    }

    pub fn start(&mut self) -> Result<()> {
        self.started = true;
        let mut cmd = self.command("start");
        cmd.args(["--listen", "127.0.0.1:0", "--detach"]);
        run_checked(&mut cmd, "drydock start --detach")?;
        Ok(())
    }

    pub fn url(&self) -> Result<String> {
        let url = read_trimmed(&self.data_dir.join("drydock.url"))?;
        ensure!(url.starts_with("http://"), "the server answers at {url}: this benchmark speaks plain HTTP only");
        Ok(url)
    }

    /// The administrator's API token, written by `drydock init`.
    pub fn admin_token(&self) -> Result<String> {
        read_trimmed(&self.data_dir.join("secrets").join("admin-token"))
    }

    /// The instance's id, written by `drydock init`: the `drydock.instance` label of its
    /// engine objects.
    pub fn instance_id(&self) -> Result<String> {
        read_trimmed(&self.data_dir.join("instance.id"))
    }

    /// The database the instance uses (the default config's SQLite file, or ours on PostgreSQL).
    pub fn database_url(&self) -> String {
        match &self.db {
            None => format!("sqlite://{}", self.data_dir.join("drydock.db").display()),
            Some(db) => db.url.clone(),
        }
    }

    /// "SQLite", or "PostgreSQL" with the server's version.
    pub fn label(&self) -> String {
        match &self.db {
            None => "SQLite".to_string(),
            Some(db) => format!("PostgreSQL {}", postgres_version(&db.server).unwrap_or_default()).trim().to_string(),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Runs another verb of the binary on this instance (`backup`, `restore`, …).
    pub fn cli(&self, verb: &str, args: &[&str]) -> Result<std::process::Output> {
        let mut cmd = self.command(verb);
        cmd.args(args);
        run_checked(&mut cmd, &format!("drydock {verb}"))
    }

    /// Starts the server again after a `stop`.
    pub fn restart(&mut self) -> Result<()> {
        self.start()
    }

    /// Makes this (uninitialized) instance a standby of `primary` and serves it:
    /// `drydock standby --primary … --token-file … --interval … --listen 127.0.0.1:0 --detach`.
    pub fn follow(&mut self, primary: &str, token_file: &Path, interval: &str) -> Result<()> {
        self.started = true;
        let mut cmd = self.command("standby");
        cmd.arg("--primary").arg(primary).arg("--token-file").arg(token_file);
        cmd.args(["--interval", interval, "--listen", "127.0.0.1:0", "--detach"]);
        run_checked(&mut cmd, "drydock standby --detach")?;
        Ok(())
    }

    /// SIGKILLs the server (the pid it wrote) and waits until it is gone: a crash, not a stop.
    pub fn kill(&mut self) -> Result<()> {
        let pid = read_trimmed(&self.data_dir.join("drydock.pid"))?;
        run_checked(Command::new("kill").args(["-KILL", &pid]), "kill -KILL")?;
        self.started = false;
        let proc_stat = PathBuf::from(format!("/proc/{pid}/stat"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            // Gone, or a zombie nobody reaped yet: either way it serves nothing.
            match std::fs::read_to_string(&proc_stat) {
                Err(_) => return Ok(()),
                Ok(stat) if stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')) => {
                    return Ok(());
                }
                Ok(_) => {}
            }
            ensure!(std::time::Instant::now() < deadline, "drydock (pid {pid}) is still alive 10 s after SIGKILL");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }

    pub fn stop(&mut self) -> Result<()> {
        run_checked(&mut self.command("stop"), "drydock stop")?;
        self.started = false;
        Ok(())
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        if !self.started {
            return;
        }
        if let Err(e) = self.stop() {
            eprintln!("warning: {e:#}");
            // Last resort: the pid the server wrote.
            if let Ok(pid) = read_trimmed(&self.data_dir.join("drydock.pid")) {
                eprintln!("killing drydock (pid {pid})");
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
        }
    }
}

/// A database of our own on a PostgreSQL server, dropped with the guard.
struct PgDatabase {
    server: String,
    name: String,
    url: String,
}

impl PgDatabase {
    fn create(server: &str) -> Result<PgDatabase> {
        let name = format!("bench_{}", random_hex(8)?);
        psql(server, &format!("CREATE DATABASE {name}"))?;
        let (base, query) = match server.split_once('?') {
            Some((base, query)) => (base, format!("?{query}")),
            None => (server, String::new()),
        };
        let base = base.rsplit_once('/').map(|(b, _)| b).unwrap_or(base);
        eprintln!("created the PostgreSQL database {name}");
        Ok(PgDatabase { server: server.to_string(), url: format!("{base}/{name}{query}"), name })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        match psql(&self.server, &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)) {
            Ok(_) => eprintln!("dropped the PostgreSQL database {}", self.name),
            Err(e) => eprintln!("warning: cannot drop the PostgreSQL database {}: {e:#}", self.name),
        }
    }
}

fn psql(server: &str, sql: &str) -> Result<String> {
    let out = run_checked(
        Command::new("psql").args([server, "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql]).stdin(Stdio::null()),
        &format!("psql -c '{sql}'"),
    )?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn postgres_version(server: &str) -> Result<String> {
    psql(server, "SHOW server_version").map(|v| v.split_whitespace().next().unwrap_or("").to_string())
}

/// The drydock binary: `DRYDOCK_BIN`, or the release build of this workspace (under
/// `CARGO_TARGET_DIR` when it is set).
pub fn drydock_bin(benchmark: &str) -> Result<PathBuf> {
    let bin = match std::env::var_os("DRYDOCK_BIN") {
        Some(b) if !b.is_empty() => PathBuf::from(b),
        _ => match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) if !dir.is_empty() => workspace_root().join(dir).join("release").join("drydock"),
            _ => workspace_root().join("target").join("release").join("drydock"),
        },
    };
    ensure!(
        bin.is_file(),
        "no drydock binary at {}: build it with `cargo build --release -p drydock`, set DRYDOCK_BIN, \
         or run `bash scripts/bench.sh {benchmark}`",
        bin.display()
    );
    Ok(bin)
}

/// `drydock --version`, e.g. "drydock 0.1.0".
pub fn drydock_version(bin: &Path) -> Result<String> {
    Ok(crate::util::first_line(&run_checked(Command::new(bin).arg("--version"), "drydock --version")?.stdout))
}
