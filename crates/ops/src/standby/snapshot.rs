//! What one snapshot of the primary carries, and how a standby puts its files in place.
//!
//! On the wire: JSON, zstd-compressed. The digest covers the database and the files (not
//! the time it was read), so an unchanged instance gives an unchanged digest and nothing
//! travels.

use std::collections::BTreeMap;
use std::fs;

use drydock_core::standby::Snapshot;
use drydock_store::replication::DatabaseCopy;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{OpsError, Result};
use crate::instance::{DataDir, write_atomic};

/// The config file's name in the data dir.
pub const CONFIG_FILE: &str = "drydock.toml";

/// Config sections that belong to the host, not the instance: a standby keeps its own.
pub const LOCAL_SECTIONS: &[&str] = &["server", "tls", "database", "log"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceCopy {
    pub database: DatabaseCopy,
    /// Data-dir files by relative path: the config and every secret.
    pub files: BTreeMap<String, String>,
}

impl InstanceCopy {
    /// The copy as it travels: serialized once, its digest taken from those bytes, and
    /// compressed only when the standby does not have it yet (`known`).
    pub fn encode(&self, known: Option<&str>) -> Result<Option<Snapshot>> {
        let json = serde_json::to_vec(self).map_err(OpsError::step("encoding the copy"))?;
        let digest = hex::encode(Sha256::digest(&json));
        if known == Some(digest.as_str()) {
            return Ok(None);
        }
        let bytes = zstd::encode_all(json.as_slice(), 3).map_err(OpsError::step("compressing the copy"))?;
        Ok(Some(Snapshot { bytes, digest }))
    }

    pub fn decode(bytes: &[u8]) -> Result<InstanceCopy> {
        let json = zstd::decode_all(bytes).map_err(OpsError::step("decompressing the primary's snapshot"))?;
        serde_json::from_slice(&json).map_err(OpsError::step("reading the primary's snapshot"))
    }

    /// The workspaces of the copy: id → `status|updated`, what their `/projects` copy is
    /// taken at.
    pub fn workspaces(&self) -> BTreeMap<String, String> {
        use drydock_store::replication::Cell;
        let Some(table) = self.database.table("workspaces") else { return BTreeMap::new() };
        let column = |name: &str| table.columns.iter().position(|c| c == name);
        let (Some(id), Some(status), Some(updated)) = (column("id"), column("status"), column("updated")) else {
            return BTreeMap::new();
        };
        let text = |cell: &Option<Cell>| match cell {
            Some(Cell::Text(t)) => t.clone(),
            Some(Cell::Int(i)) => i.to_string(),
            None => String::new(),
        };
        table
            .rows
            .iter()
            .map(|row| (text(&row[id]), format!("{}|{}", text(&row[status]), text(&row[updated]))))
            .collect()
    }
}

/// The files of the primary's data dir a standby copies: the config and the secrets.
pub fn instance_files(dir: &DataDir) -> Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    let config = dir.root.join(CONFIG_FILE);
    if config.exists() {
        files.insert(CONFIG_FILE.to_string(), fs::read_to_string(&config).map_err(OpsError::io("read", &config))?);
    }
    let secrets = dir.secrets_dir();
    if secrets.exists() {
        for entry in fs::read_dir(&secrets).map_err(OpsError::io("list", &secrets))? {
            let entry = entry.map_err(OpsError::io("list", &secrets))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if name.starts_with('.') || !entry.file_type().map(|t| t.is_file()).unwrap_or(false) {
                continue;
            }
            let text = fs::read_to_string(entry.path()).map_err(OpsError::io("read", &entry.path()))?;
            files.insert(format!("secrets/{name}"), text);
        }
    }
    Ok(files)
}

/// Puts the primary's files in the standby's data dir, each whole (temp file and rename):
/// the config with the standby's own host sections kept, and the secrets. A file the
/// primary no longer has is left alone: nothing on the standby is deleted by a sync.
pub fn apply_files(dir: &DataDir, files: &BTreeMap<String, String>) -> Result<()> {
    for (name, text) in files {
        if name == CONFIG_FILE {
            let path = dir.root.join(CONFIG_FILE);
            let own = fs::read_to_string(&path).unwrap_or_default();
            let merged = merge_config(text, &own)?;
            if merged != own {
                write_atomic(&path, merged.as_bytes(), 0o600)?;
            }
        } else if let Some(secret) = name.strip_prefix("secrets/") {
            if secret.is_empty() || secret.contains('/') || secret.starts_with('.') {
                return Err(OpsError::Refused(format!("the primary sent a file with a bad name: {name}")));
            }
            if dir.read_secret(secret).ok().as_deref() != Some(text.trim()) {
                dir.write_secret(secret, text.trim())?;
            }
        } else {
            return Err(OpsError::Refused(format!("the primary sent a file a standby does not take: {name}")));
        }
    }
    Ok(())
}

/// The primary's config with the standby's own [`LOCAL_SECTIONS`].
pub fn merge_config(primary: &str, own: &str) -> Result<String> {
    let mut merged: toml::Table =
        toml::from_str(primary).map_err(|e| OpsError::Refused(format!("the primary's config cannot be read: {e}")))?;
    let own: toml::Table = toml::from_str(own)
        .map_err(|e| OpsError::Refused(format!("this standby's {CONFIG_FILE} cannot be read: {e}")))?;
    for section in LOCAL_SECTIONS {
        merged.remove(*section);
        if let Some(value) = own.get(*section) {
            merged.insert((*section).to_string(), value.clone());
        }
    }
    toml::to_string(&merged).map_err(OpsError::step("writing the config"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keeps_the_standbys_host_sections() {
        let primary =
            "[server]\nlisten = \"0.0.0.0:80\"\n[database]\nurl = \"postgres://p/db\"\n[limits.user]\nworkspaces = 3\n";
        let own = "[server]\nlisten = \"127.0.0.1:9000\"\n[database]\nurl = \"sqlite://drydock.db\"\n[limits.user]\nworkspaces = 9\n";
        let merged: toml::Table = toml::from_str(&merge_config(primary, own).unwrap()).unwrap();
        assert_eq!(merged["server"]["listen"].as_str(), Some("127.0.0.1:9000"));
        assert_eq!(merged["database"]["url"].as_str(), Some("sqlite://drydock.db"));
        assert_eq!(merged["limits"]["user"]["workspaces"].as_integer(), Some(3));
        // A standby without a section of its own takes none of the primary's.
        let merged: toml::Table = toml::from_str(&merge_config(primary, "").unwrap()).unwrap();
        assert!(!merged.contains_key("database") && !merged.contains_key("server"));
    }
}
