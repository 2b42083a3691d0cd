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
    pub metrics: MetricsConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    pub machine_memory_mb: u64,
    pub pull_timeout: HumanDuration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig { machine_memory_mb: 1024, pull_timeout: HumanDuration::secs(120) }
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
    ("runtime.machine_memory_mb", "Memory of a workspace machine whose config names none, in MB (enforced by Docker)."),
    ("runtime.pull_timeout", "How long a start may wait for a missing image to be pulled."),
    ("metrics.public", "Serve /metrics without a token (otherwise a manageSystem holder's token is needed)."),
    ("log.level", "Log filter: error, warn, info, debug, trace, or a tracing directive."),
];

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
}
