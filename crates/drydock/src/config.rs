//! Layered configuration: defaults < `drydock.toml` < `DRYDOCK_*` env < flags. Every key
//! has a default, so a key that has none is unknown, and unknown keys stop the program
//! with where they came from. Each value remembers its source, so a bad value is reported
//! with the file, variable or flag that set it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use drydock_core::Config;
use drydock_core::config::KEY_DOCS;
use toml::Value;
use toml::value::Table;

/// Environment variables that are not config keys.
const NOT_KEYS: &[&str] = &[
    "DRYDOCK_DATA_DIR",
    "DRYDOCK_TOKEN",
    "DRYDOCK_URL",
    "DRYDOCK_TOKEN_FILE",
    "DRYDOCK_FAIL_POINT",
    "DRYDOCK_PAUSE_POINT",
];

#[derive(Debug)]
pub struct Loaded {
    pub config: Config,
    /// Key path → where its value came from; keys not listed have their default.
    pub sources: BTreeMap<String, String>,
    /// Keys whose value came from a `*_FILE` variable: secrets, never written to a file.
    pub secret_keys: Vec<String>,
}

impl Loaded {
    pub fn source(&self, key: &str) -> String {
        self.sources.get(key).cloned().unwrap_or_else(|| "the default".into())
    }
}

pub fn config_path(data_dir: &Path) -> PathBuf {
    data_dir.join("drydock.toml")
}

/// Loads the config of the instance in `data_dir` (the file may be missing).
pub fn load(data_dir: &Path, flags: &[(&str, String)]) -> Result<Loaded> {
    load_from(data_dir, std::env::vars(), flags)
}

pub fn load_from(
    data_dir: &Path,
    env: impl Iterator<Item = (String, String)>,
    flags: &[(&str, String)],
) -> Result<Loaded> {
    let defaults = Value::try_from(Config::default()).context("cannot represent the default config")?;
    let Value::Table(defaults) = defaults else { bail!("the default config is not a table") };
    let mut merged = defaults.clone();
    let mut sources = BTreeMap::new();
    let mut secret_keys = Vec::new();

    let file = config_path(data_dir);
    if file.exists() {
        let text = std::fs::read_to_string(&file).with_context(|| format!("cannot read {}", file.display()))?;
        let table: Table = toml::from_str(&text).map_err(|e| anyhow!("{}: {}", file.display(), e.message()))?;
        let origin = file.display().to_string();
        merge_table(&defaults, &mut merged, &table, "", &origin, &mut sources)?;
    }

    let mut env: Vec<(String, String)> = env.filter(|(k, _)| k.starts_with("DRYDOCK_")).collect();
    env.sort();
    for (name, raw) in env {
        if NOT_KEYS.contains(&name.as_str()) {
            continue;
        }
        let (var, raw, secret) = match name.strip_suffix("_FILE") {
            Some(base) => {
                let value = std::fs::read_to_string(&raw)
                    .with_context(|| format!("{name}: cannot read the file {raw}"))?
                    .trim_end_matches(['\n', '\r'])
                    .to_string();
                (base.to_string(), value, true)
            }
            None => (name.clone(), raw, false),
        };
        let path: Vec<String> = var.trim_start_matches("DRYDOCK_").split("__").map(str::to_lowercase).collect();
        let key = path.join(".");
        let default = lookup(&defaults, &path)
            .filter(|v| !v.is_table())
            .ok_or_else(|| anyhow!("environment variable {name}: '{key}' is not a config key"))?;
        let value = parse_like(default, &raw).map_err(|e| anyhow!("environment variable {name}: {key} {e}"))?;
        set(&mut merged, &path, value);
        sources.insert(key.clone(), format!("environment variable {name}"));
        if secret {
            secret_keys.push(key);
        }
    }

    for (key, raw) in flags {
        let path: Vec<String> = key.split('.').map(str::to_string).collect();
        let default = lookup(&defaults, &path).ok_or_else(|| anyhow!("flag for {key}: not a config key"))?;
        let flag = format!("--{}", path.last().map(String::as_str).unwrap_or(key));
        let value = parse_like(default, raw).map_err(|e| anyhow!("flag {flag}: {key} {e}"))?;
        set(&mut merged, &path, value);
        sources.insert(key.to_string(), format!("flag {flag}"));
    }

    let config: Config = serde_path_to_error::deserialize(Value::Table(merged)).map_err(|e| {
        let key = e.path().to_string();
        let origin = sources.get(&key).cloned().unwrap_or_else(|| "the default".into());
        anyhow!("invalid value for {key} (from {origin}): {}", e.into_inner().message())
    })?;
    let loaded = Loaded { config, sources, secret_keys };
    validate(&loaded)?;
    Ok(loaded)
}

/// Merges a table from the file into `merged`, refusing keys the defaults do not have and
/// values of the wrong type.
fn merge_table(
    defaults: &Table,
    merged: &mut Table,
    table: &Table,
    prefix: &str,
    origin: &str,
    sources: &mut BTreeMap<String, String>,
) -> Result<()> {
    for (k, v) in table {
        let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
        let Some(default) = defaults.get(k) else { bail!("{origin}: unknown key '{key}'") };
        match (default, v) {
            (Value::Table(d), Value::Table(t)) => {
                let Some(Value::Table(m)) = merged.get_mut(k) else { bail!("{origin}: '{key}' is not a table") };
                merge_table(d, m, t, &key, origin, sources)?;
            }
            (Value::Table(_), _) => bail!("{origin}: '{key}' must be a table ([{key}])"),
            (d, v) if d.type_str() != v.type_str() => {
                bail!("{origin}: {key} must be a {}, not a {}", d.type_str(), v.type_str())
            }
            _ => {
                merged.insert(k.clone(), v.clone());
                sources.insert(key, origin.to_string());
            }
        }
    }
    Ok(())
}

fn lookup<'a>(table: &'a Table, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let v = table.get(first)?;
    if rest.is_empty() { Some(v) } else { lookup(v.as_table()?, rest) }
}

fn set(table: &mut Table, path: &[String], value: Value) {
    if let Some((first, rest)) = path.split_first() {
        if rest.is_empty() {
            table.insert(first.clone(), value);
        } else if let Some(Value::Table(t)) = table.get_mut(first) {
            set(t, rest, value);
        }
    }
}

/// Parses a text value (from env or a flag) as the type of the key's default.
fn parse_like(default: &Value, raw: &str) -> Result<Value, String> {
    match default {
        Value::String(_) => Ok(Value::String(raw.to_string())),
        Value::Integer(_) => {
            raw.trim().parse().map(Value::Integer).map_err(|_| format!("must be an integer, not '{raw}'"))
        }
        Value::Boolean(_) => match raw.trim() {
            "true" | "1" | "yes" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" => Ok(Value::Boolean(false)),
            _ => Err(format!("must be true or false, not '{raw}'")),
        },
        // A list from the environment: comma-separated.
        Value::Array(_) => Ok(Value::Array(
            raw.split(',').map(str::trim).filter(|v| !v.is_empty()).map(|v| Value::String(v.to_string())).collect(),
        )),
        other => Err(format!("cannot be set here (a {})", other.type_str())),
    }
}

/// Checks values serde cannot: addresses, URLs, filters, pairs of settings.
fn validate(loaded: &Loaded) -> Result<()> {
    let c = &loaded.config;
    let bad = |key: &str, reason: String| anyhow!("invalid value for {key} (from {}): {reason}", loaded.source(key));
    c.server
        .listen
        .parse::<std::net::SocketAddr>()
        .map_err(|_| bad("server.listen", format!("'{}' is not an address like 127.0.0.1:8080", c.server.listen)))?;
    drydock_store::Backend::from_url(&c.database.url).map_err(|e| bad("database.url", e.to_string()))?;
    if c.database.max_connections == 0 {
        return Err(bad("database.max_connections", "must be at least 1".into()));
    }
    if c.tls.cert.is_empty() != c.tls.key.is_empty() {
        let key = if c.tls.cert.is_empty() { "tls.cert" } else { "tls.key" };
        return Err(bad(key, "tls.cert and tls.key must be set together".into()));
    }
    if c.auth.session_ttl.0.is_zero() {
        return Err(bad("auth.session_ttl", "must be longer than 0s".into()));
    }
    for (key, value) in
        [("limits.user.workspaces", c.limits.user.workspaces), ("limits.user.runtimes", c.limits.user.runtimes)]
    {
        if value < -1 {
            return Err(bad(key, format!("{value} is below -1 (-1 means unlimited)")));
        }
    }
    if c.limits.workspace.start_concurrency == 0 {
        return Err(bad("limits.workspace.start_concurrency", "must be at least 1".into()));
    }
    if !(1..=100).contains(&c.limits.host.ram_percent) {
        return Err(bad(
            "limits.host.ram_percent",
            format!("{} is not a percentage from 1 to 100", c.limits.host.ram_percent),
        ));
    }
    if c.limits.workspace.ram.0 == 0 || c.limits.host.ram.0 == 0 {
        let key = if c.limits.workspace.ram.0 == 0 { "limits.workspace.ram" } else { "limits.host.ram" };
        return Err(bad(key, "must be more than 0mb (-1: unlimited)".into()));
    }
    if !c.backup.schedule.trim().is_empty() {
        drydock_core::backups::Schedule::parse(&c.backup.schedule).map_err(|e| bad("backup.schedule", e))?;
    }
    if c.license.free_seats < -1 {
        return Err(bad("license.free_seats", format!("{} is below -1 (-1 means no cap)", c.license.free_seats)));
    }
    for key in &c.license.trusted_keys {
        drydock_core::license::parse_public_key(key).map_err(|e| bad("license.trusted_keys", e.to_string()))?;
    }
    let endpoints = c.runtime.node_endpoints().map_err(|e| bad("runtime.nodes", e))?;
    if endpoints.values().any(|e| e.starts_with("tcp://")) && c.runtime.node_certs.trim().is_empty() {
        return Err(bad(
            "runtime.nodes",
            "a tcp:// endpoint needs TLS: put ca.pem, cert.pem and key.pem in runtime.node_certs".into(),
        ));
    }
    if c.runtime.registry.contains("://") || c.runtime.registry.contains('/') {
        return Err(bad("runtime.registry", format!("'{}' is not host:port", c.runtime.registry)));
    }
    if c.backup.dir.trim().is_empty() {
        return Err(bad("backup.dir", "must name a directory".into()));
    }
    tracing_subscriber::EnvFilter::try_new(&c.log.level)
        .map_err(|e| bad("log.level", format!("'{}' is not a log filter: {e}", c.log.level)))?;
    Ok(())
}

/// `drydock.toml` with every key, its documentation and its value.
pub fn render(loaded: &Loaded) -> Result<String> {
    let Value::Table(values) = Value::try_from(&loaded.config)? else { bail!("config is not a table") };
    let mut out = String::from(
        "# drydock configuration. Every setting is listed with its current value.\n\
         # Precedence: defaults < this file < DRYDOCK_* environment variables < flags.\n\
         # An env variable names the key's path in upper case with __ between levels,\n\
         # e.g. DRYDOCK_DATABASE__URL; DRYDOCK_<KEY>_FILE reads the value from a file.\n",
    );
    let mut section = "";
    for (key, doc) in KEY_DOCS {
        let (sect, name) = key.rsplit_once('.').unwrap_or(("", key));
        if sect != section {
            out.push_str(&format!("\n[{sect}]\n"));
            section = sect;
        }
        let path: Vec<String> = key.split('.').map(str::to_string).collect();
        let value = lookup(&values, &path).ok_or_else(|| anyhow!("documented key {key} is not in the config"))?;
        out.push_str(&format!("# {doc}\n"));
        if loaded.secret_keys.iter().any(|k| k == key) {
            out.push_str(&format!("# (set from a *_FILE variable at run time; not written here)\n# {name} = \"\"\n"));
        } else {
            out.push_str(&format!("{name} = {value}\n"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Iterator<Item = (String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>().into_iter()
    }

    #[test]
    fn precedence_defaults_file_env_flags() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            config_path(dir.path()),
            "[server]\nlisten = \"127.0.0.1:9000\"\n[database]\nmax_connections = 3\n",
        )
        .unwrap();
        let l = load_from(dir.path(), env(&[("DRYDOCK_DATABASE__MAX_CONNECTIONS", "4")]), &[]).unwrap();
        assert_eq!(l.config.server.listen, "127.0.0.1:9000");
        assert_eq!(l.config.database.max_connections, 4);
        let l = load_from(dir.path(), env(&[]), &[("server.listen", "127.0.0.1:9001".into())]).unwrap();
        assert_eq!(l.config.server.listen, "127.0.0.1:9001");
        assert_eq!(l.source("server.listen"), "flag --listen");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let e = load_from(dir.path(), env(&[("DRYDOCK_SERVER__LISTN", "x")]), &[]).unwrap_err().to_string();
        assert!(e.contains("DRYDOCK_SERVER__LISTN") && e.contains("server.listn"), "{e}");
        let e = load_from(dir.path(), env(&[("DRYDOCK_AUTH__SESSION_TTL", "5w")]), &[]).unwrap_err().to_string();
        assert!(e.contains("auth.session_ttl") && e.contains("DRYDOCK_AUTH__SESSION_TTL"), "{e}");
        let e = load_from(dir.path(), env(&[("DRYDOCK_SERVER__LISTEN", "nowhere")]), &[]).unwrap_err().to_string();
        assert!(e.contains("server.listen") && e.contains("DRYDOCK_SERVER__LISTEN"), "{e}");
        std::fs::write(config_path(dir.path()), "[server]\nport = 1\n").unwrap();
        let e = load_from(dir.path(), env(&[]), &[]).unwrap_err().to_string();
        assert!(e.contains("drydock.toml") && e.contains("server.port"), "{e}");
        std::fs::write(config_path(dir.path()), "[database]\nmax_connections = \"many\"\n").unwrap();
        let e = load_from(dir.path(), env(&[]), &[]).unwrap_err().to_string();
        assert!(e.contains("database.max_connections") && e.contains("integer"), "{e}");
    }

    #[test]
    fn file_variables_are_read_and_not_rendered() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("url");
        std::fs::write(&secret, "postgres://u:hunter2@127.0.0.1:1/db\n").unwrap();
        let l = load_from(dir.path(), env(&[("DRYDOCK_DATABASE__URL_FILE", secret.to_str().unwrap())]), &[]).unwrap();
        assert_eq!(l.config.database.url, "postgres://u:hunter2@127.0.0.1:1/db");
        let text = render(&l).unwrap();
        assert!(!text.contains("hunter2"));
    }

    #[test]
    fn rendered_file_lists_every_key_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let l = load_from(dir.path(), env(&[("DRYDOCK_METRICS__PUBLIC", "true")]), &[]).unwrap();
        let text = render(&l).unwrap();
        for (key, _) in KEY_DOCS {
            let name = key.rsplit_once('.').unwrap().1;
            assert!(text.contains(&format!("\n{name} = ")), "{key} missing");
        }
        std::fs::write(config_path(dir.path()), &text).unwrap();
        let back = load_from(dir.path(), env(&[]), &[]).unwrap();
        assert_eq!(back.config, l.config);
        assert!(back.config.metrics.public);
        // Every key of the config is documented.
        let Value::Table(t) = Value::try_from(Config::default()).unwrap() else { panic!() };
        fn leaves(v: &Value) -> usize {
            v.as_table().map_or(1, |t| t.values().map(leaves).sum())
        }
        assert_eq!(t.values().map(leaves).sum::<usize>(), KEY_DOCS.len());
    }
}
