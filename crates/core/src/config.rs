//! The settings of an instance, as read from `drydock.toml`, env and flags (the layering
//! lives in the binary). Every key has a default and a line of documentation, so `init`
//! can write a complete, commented file.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub tls: TlsConfig,
    pub database: DatabaseConfig,
    pub auth: AuthConfig,
    pub runtime: RuntimeConfig,
    pub limits: LimitsConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub backup: BackupConfig,
    pub license: LicenseConfig,
    pub audit: AuditConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Write the audit log. Off only to measure what it costs: the start says it is off.
    pub enabled: bool,
    /// Events older than this are pruned (0s: kept forever).
    pub retention: HumanDuration,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig { enabled: true, retention: HumanDuration::secs(0) }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LicenseConfig {
    /// Users the Fair Source license allows (-1: no cap).
    pub free_seats: i64,
    /// Ed25519 public keys (base64) whose paid licenses are accepted.
    pub trusted_keys: Vec<String>,
    /// Days an expired paid license still applies before Fair Source does again.
    pub grace_days: u32,
}

impl Default for LicenseConfig {
    fn default() -> Self {
        LicenseConfig { free_seats: -1, trusted_keys: Vec::new(), grace_days: 15 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BackupConfig {
    /// Where backups are written, relative to the data dir.
    pub dir: String,
    /// When the server makes a backup (cron syntax, UTC); empty: never.
    pub schedule: String,
    /// How many archives in `dir` to keep after a scheduled backup (0: all).
    pub keep: u32,
    /// Scheduled backups include the images.
    pub images: bool,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig { dir: "backups".into(), schedule: String::new(), keep: 7, images: false }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// `docker`: one engine (the master's). `swarm`: the master's engine is a Swarm manager
    /// and workspaces run on its nodes.
    pub kind: RuntimeKind,
    pub machine_memory_mb: u64,
    pub pull_timeout: HumanDuration,
    /// Swarm: `NODE=ENDPOINT` pairs, the Engine API of each node (id or host name) for what
    /// Swarm does not proxy: `unix:///var/run/docker.sock` or `tcp://HOST:2376` (with TLS).
    pub nodes: Vec<String>,
    /// Swarm: a directory holding `ca.pem`, `cert.pem` and `key.pem` for `tcp://` endpoints
    /// (relative to the data dir).
    pub node_certs: String,
    /// Swarm: a registry (`host:port`) nodes pull images from and snapshots are pushed to;
    /// empty: none, every node must already have the images it runs.
    pub registry: String,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            kind: RuntimeKind::Docker,
            machine_memory_mb: 1024,
            pull_timeout: HumanDuration::secs(120),
            nodes: Vec::new(),
            node_certs: String::new(),
            registry: String::new(),
        }
    }
}

impl RuntimeConfig {
    /// The node endpoints of `nodes`: node → endpoint; a pair without `=` is named.
    pub fn node_endpoints(&self) -> Result<std::collections::BTreeMap<String, String>, String> {
        let mut endpoints = std::collections::BTreeMap::new();
        for pair in &self.nodes {
            let (node, endpoint) = pair
                .split_once('=')
                .map(|(n, e)| (n.trim(), e.trim()))
                .filter(|(n, e)| !n.is_empty() && !e.is_empty())
                .ok_or_else(|| format!("'{pair}' is not NODE=ENDPOINT (e.g. node2=tcp://10.0.0.2:2376)"))?;
            if !(endpoint.starts_with("unix://") || endpoint.starts_with("tcp://")) {
                return Err(format!("the endpoint of node {node}, '{endpoint}', is neither unix:// nor tcp://"));
            }
            if endpoints.insert(node.to_string(), endpoint.to_string()).is_some() {
                return Err(format!("node {node} is listed twice"));
            }
        }
        Ok(endpoints)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    Docker,
    Swarm,
}

/// Every user's default limits (an administrator may override them per user), what one
/// workspace may ask, and how much of the engine's memory running workspaces may reserve.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub user: UserLimitsConfig,
    pub workspace: WorkspaceLimitsConfig,
    pub host: HostLimitsConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UserLimitsConfig {
    /// Workspaces a user may have, running or not (-1: unlimited).
    pub workspaces: i64,
    /// Workspaces a user may run at once (-1: unlimited).
    pub runtimes: i64,
    /// Memory of a user's running workspaces together.
    pub ram: Megabytes,
}

impl Default for UserLimitsConfig {
    fn default() -> Self {
        UserLimitsConfig { workspaces: 30, runtimes: 10, ram: Megabytes(100 * 1024) }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct WorkspaceLimitsConfig {
    /// The most memory one workspace may ask for.
    pub ram: Megabytes,
    /// Idle time after which a running workspace is stopped (0s: never).
    pub idle_timeout: HumanDuration,
    /// How long before an idle stop its warning comes.
    pub idle_warning: HumanDuration,
    /// Starts that run at once; more wait in a queue.
    pub start_concurrency: u32,
}

impl Default for WorkspaceLimitsConfig {
    fn default() -> Self {
        WorkspaceLimitsConfig {
            ram: Megabytes(16 * 1024),
            idle_timeout: HumanDuration::secs(4 * 3600),
            idle_warning: HumanDuration::secs(5 * 60),
            start_concurrency: 5,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HostLimitsConfig {
    /// The memory workspaces run in (-1: the engine's total memory, asked at start-up).
    pub ram: Megabytes,
    /// The share of it, in percent, that running workspaces may reserve together.
    pub ram_percent: u32,
}

impl Default for HostLimitsConfig {
    fn default() -> Self {
        HostLimitsConfig { ram: Megabytes(-1), ram_percent: 90 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: String,
    pub public_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    pub cert: String,
    pub key: String,
}

#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DatabaseConfig {
    pub url: String,
    pub max_connections: u32,
    pub busy_timeout: HumanDuration,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub session_ttl: HumanDuration,
    pub token_ttl: HumanDuration,
    pub max_failed_logins: u32,
    pub failed_login_window: HumanDuration,
    pub lockout: HumanDuration,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    pub public: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub level: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig { listen: "127.0.0.1:8080".into(), public_url: String::new() }
    }
}

/// The URL may hold a password: Debug shows only where it points.
impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = match self.url.split_once("://") {
            Some((scheme, rest)) => format!("{scheme}://{}", rest.rsplit_once('@').map_or(rest, |(_, host)| host)),
            None => self.url.clone(),
        };
        f.debug_struct("DatabaseConfig")
            .field("url", &url)
            .field("max_connections", &self.max_connections)
            .field("busy_timeout", &self.busy_timeout)
            .finish()
    }
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig { url: "sqlite://drydock.db".into(), max_connections: 8, busy_timeout: HumanDuration::secs(5) }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            session_ttl: HumanDuration::secs(7 * 86400),
            token_ttl: HumanDuration::secs(90 * 86400),
            max_failed_logins: 5,
            failed_login_window: HumanDuration::secs(15 * 60),
            lockout: HumanDuration::secs(30),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { level: "info".into() }
    }
}

/// One line of documentation for every key, in the order `init` writes them.
pub const KEY_DOCS: &[(&str, &str)] = &[
    ("server.listen", "Address and port the master listens on. Without TLS, listen on loopback only."),
    ("server.public_url", "URL users reach the master at, when a proxy sits in front (empty: derived from listen)."),
    ("tls.cert", "PEM certificate chain for HTTPS (relative to the data dir). Empty: plain HTTP."),
    ("tls.key", "PEM private key for HTTPS (relative to the data dir)."),
    ("database.url", "sqlite://FILE (relative to the data dir) or postgres://USER:PASSWORD@HOST:PORT/DB."),
    ("database.max_connections", "Connections in the database pool."),
    ("database.busy_timeout", "How long a write waits for SQLite's lock before answering 409."),
    ("auth.session_ttl", "How long a sign-in session lasts (e.g. 12h, 7d)."),
    ("auth.token_ttl", "How long a personal API token lasts; 0s means it never expires."),
    ("auth.max_failed_logins", "Failed sign-ins for one account within the window before it is throttled."),
    ("auth.failed_login_window", "The window in which failed sign-ins are counted."),
    ("auth.lockout", "First throttling delay; it doubles with each further failure, up to the window."),
    ("runtime.kind", "docker: workspaces run on the master's Docker engine; swarm: on the nodes of its Swarm."),
    ("runtime.machine_memory_mb", "Memory of a workspace machine whose config names none, in MB (enforced by Docker)."),
    ("runtime.pull_timeout", "How long a start may wait for a missing image to be pulled."),
    (
        "runtime.nodes",
        "Swarm: each node's Engine API as NODE=ENDPOINT (unix:///var/run/docker.sock or tcp://HOST:2376).",
    ),
    ("runtime.node_certs", "Swarm: directory with ca.pem, cert.pem and key.pem for tcp:// node endpoints."),
    ("runtime.registry", "Swarm: registry host:port nodes pull images from and snapshots go to (empty: none)."),
    (
        "limits.user.workspaces",
        "Workspaces a user may have, running or not, unless overridden for them (-1: unlimited).",
    ),
    ("limits.user.runtimes", "Workspaces a user may run at once, unless overridden for them (-1: unlimited)."),
    ("limits.user.ram", "Memory of a user's running workspaces together, e.g. 100gb or 2048mb (-1: unlimited)."),
    ("limits.workspace.ram", "The most memory one workspace may ask for (all its machines together)."),
    (
        "limits.workspace.idle_timeout",
        "A running workspace with no activity this long is stopped (e.g. 240m; 0s: never).",
    ),
    ("limits.workspace.idle_warning", "How long before an idle stop the dashboard and the events warn."),
    ("limits.workspace.start_concurrency", "Workspace starts that run at once; more wait in a queue."),
    ("limits.host.ram", "Memory the workspaces run in, e.g. 64gb (-1: the engine's total memory)."),
    ("limits.host.ram_percent", "Share of that memory, in percent, running workspaces may reserve together."),
    ("metrics.public", "Serve /metrics without a token (otherwise a manageSystem holder's token is needed)."),
    ("log.level", "Log filter: error, warn, info, debug, trace, or a tracing directive."),
    ("backup.dir", "Where backups are written (relative to the data dir) when --out does not say."),
    ("backup.schedule", "When the server makes a backup, in cron syntax, UTC (e.g. \"0 3 * * *\"); empty: never."),
    ("backup.keep", "How many archives in backup.dir to keep; older ones go after a scheduled backup (0: all)."),
    ("backup.images", "Scheduled backups include the workspaces' images and snapshots."),
    ("license.free_seats", "Users the Fair Source license allows, without a paid license (-1: no cap)."),
    (
        "license.trusted_keys",
        "Ed25519 public keys (base64) whose signed licenses are accepted; in the environment, comma-separated.",
    ),
    ("license.grace_days", "Days an expired paid license still applies before Fair Source does again."),
    (
        "audit.enabled",
        "Write the audit log of who did what (turn off only to measure its cost; the start logs a warning).",
    ),
    ("audit.retention", "Audit events older than this are pruned, e.g. 365d (0s: kept forever)."),
];

/// An amount of memory in megabytes, written `2048mb`, `100gb` or a plain number of
/// megabytes; -1 means unlimited.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Megabytes(pub i64);

impl Megabytes {
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim().to_ascii_lowercase();
        if t == "-1" {
            return Ok(Megabytes(-1));
        }
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let n: i64 = digits.parse().map_err(|_| {
            format!("'{text}' is not an amount of memory: write it like 2048mb or 100gb (-1: unlimited)")
        })?;
        let mult = match unit.trim() {
            "" | "mb" | "m" => 1,
            "gb" | "g" => 1024,
            other => return Err(format!("'{text}' has an unknown unit '{other}': use mb or gb")),
        };
        n.checked_mul(mult).map(Megabytes).ok_or_else(|| format!("'{text}' is too large"))
    }

    /// `None` for unlimited.
    pub fn limit(self) -> Option<u64> {
        u64::try_from(self.0).ok()
    }
}

impl fmt::Display for Megabytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            -1 => write!(f, "-1"),
            n if n > 0 && n % 1024 == 0 => write!(f, "{}gb", n / 1024),
            n => write!(f, "{n}mb"),
        }
    }
}

impl Serialize for Megabytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Megabytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Number(i64),
            Text(String),
        }
        match Written::deserialize(d)? {
            Written::Number(n) if n >= -1 => Ok(Megabytes(n)),
            Written::Number(n) => Err(serde::de::Error::custom(format!("{n} is below -1 (unlimited)"))),
            Written::Text(t) => Megabytes::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// A duration written the way people do: `30s`, `240m`, `4h`, `7d` (a plain number is seconds).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub const fn secs(s: u64) -> Self {
        HumanDuration(Duration::from_secs(s))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("'{text}' is not a duration: write a number and a unit, like 30s, 240m, 4h or 7d"))?;
        let mult = match unit {
            "" | "s" => 1,
            "m" => 60,
            "h" => 3600,
            "d" => 86400,
            _ => return Err(format!("'{text}' has an unknown unit '{unit}': use s, m, h or d")),
        };
        n.checked_mul(mult).map(HumanDuration::secs).ok_or_else(|| format!("'{text}' is too long"))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        match s {
            0 => write!(f, "0s"),
            s if s % 86400 == 0 => write!(f, "{}d", s / 86400),
            s if s % 3600 == 0 => write!(f, "{}h", s / 3600),
            s if s % 60 == 0 => write!(f, "{}m", s / 60),
            s => write!(f, "{s}s"),
        }
    }
}

impl fmt::Debug for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        HumanDuration::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(HumanDuration::parse("30s").unwrap(), HumanDuration::secs(30));
        assert_eq!(HumanDuration::parse("240m").unwrap(), HumanDuration::secs(14400));
        assert_eq!(HumanDuration::parse("7d").unwrap().to_string(), "7d");
        assert_eq!(HumanDuration::parse("90").unwrap().to_string(), "90s");
        assert!(HumanDuration::parse("abc").is_err());
        assert!(HumanDuration::parse("5w").is_err());
    }

    #[test]
    fn memory_amounts() {
        assert_eq!(Megabytes::parse("100gb").unwrap(), Megabytes(102_400));
        assert_eq!(Megabytes::parse("2048MB").unwrap(), Megabytes(2048));
        assert_eq!(Megabytes::parse("512").unwrap(), Megabytes(512));
        assert_eq!(Megabytes::parse("-1").unwrap().limit(), None);
        assert_eq!(Megabytes(16 * 1024).to_string(), "16gb");
        assert!(Megabytes::parse("5tb").is_err());
        assert!(Megabytes::parse("lots").is_err());
    }
}
