//! The data directory of an instance: what lives where, and the safe ways to write it.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::error::{OpsError, Result};

pub const ADMIN_TOKEN_SECRET: &str = "admin-token";
pub const INITIAL_PASSWORD_SECRET: &str = "initial-admin-password";

#[derive(Debug, Clone)]
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    /// The data dir, made absolute so a detached server and its children agree on it.
    pub fn new(path: &Path) -> Self {
        let root = if path.is_absolute() {
            path.to_path_buf()
        } else {
            std::env::current_dir().map(|d| d.join(path)).unwrap_or_else(|_| path.to_path_buf())
        };
        DataDir { root }
    }

    pub fn version_file(&self) -> PathBuf {
        self.root.join("drydock.ver")
    }
    pub fn instance_file(&self) -> PathBuf {
        self.root.join("instance.id")
    }
    pub fn secrets_dir(&self) -> PathBuf {
        self.root.join("secrets")
    }
    pub fn secret_file(&self, name: &str) -> PathBuf {
        self.secrets_dir().join(name)
    }
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("drydock.pid")
    }
    /// Where the running server says which URL it answers at (it may have bound port 0).
    pub fn url_file(&self) -> PathBuf {
        self.root.join("drydock.url")
    }
    /// What `restore --workspace` moved aside: a workspace's files before the restore.
    pub fn restores_dir(&self) -> PathBuf {
        self.root.join("restores")
    }
    pub fn log_file(&self) -> PathBuf {
        self.root.join("drydock.log")
    }

    /// An instance exists once `init` has written its version file, which it does last.
    pub fn is_instance(&self) -> bool {
        self.version_file().exists()
    }

    pub fn instance_id(&self) -> Result<String> {
        read_trimmed(&self.instance_file())
    }

    pub fn instance_version(&self) -> Result<String> {
        read_trimmed(&self.version_file())
    }

    pub fn read_secret(&self, name: &str) -> Result<String> {
        read_trimmed(&self.secret_file(name))
    }

    pub fn write_secret(&self, name: &str, value: &str) -> Result<()> {
        let dir = self.secrets_dir();
        fs::create_dir_all(&dir).map_err(OpsError::io("create", &dir))?;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(OpsError::io("restrict", &dir))?;
        write_atomic(&self.secret_file(name), format!("{value}\n").as_bytes(), 0o600)
    }

    /// The pid in the pid file, when that process is alive and is a drydock; a pid file
    /// whose process is gone (or is something else now) is stale and ignored.
    pub fn running_pid(&self) -> Option<i32> {
        let pid: i32 = read_trimmed(&self.pid_file()).ok()?.parse().ok()?;
        process_is_drydock(pid).then_some(pid)
    }

    pub fn running_url(&self) -> Option<String> {
        self.running_pid()?;
        read_trimmed(&self.url_file()).ok()
    }
}

pub fn process_is_drydock(pid: i32) -> bool {
    if pid <= 0 || kill(Pid::from_raw(pid), None).is_err() {
        return false;
    }
    // A zombie has exited already; only its parent has not reaped it yet.
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    if status.lines().any(|l| l.starts_with("State:") && l.contains('Z')) {
        return false;
    }
    fs::read(format!("/proc/{pid}/cmdline")).map(|c| String::from_utf8_lossy(&c).contains("drydock")).unwrap_or(false)
}

pub fn read_trimmed(path: &Path) -> Result<String> {
    Ok(fs::read_to_string(path).map_err(OpsError::io("read", path))?.trim().to_string())
}

/// A new file only the owner may read (0600), replacing one of that name.
pub fn create_private(path: &Path) -> Result<fs::File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(OpsError::io("create", path))
}

/// Writes a file whole or not at all: a temp file in the same directory, fsynced, renamed.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(&tmp)?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(OpsError::io("write", path))
}
