//! A workspace's config in Codenvy's shape, as sent to `POST /api/workspace`.
//!
//! Configs come from Codenvy's world, so they are lenient where drydock's own bodies are
//! strict: every type keeps the fields drydock does not use (`extra`) and gives them back
//! unchanged; `memoryLimitBytes` may be a string or a number; `env`, `servers` and
//! `commands` are optional.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

pub const RECIPE_DOCKERIMAGE: &str = "dockerimage";
pub const RECIPE_COMPOSE: &str = "compose";
/// The agent that marks Codenvy's dev machine.
pub const WS_AGENT: &str = "org.eclipse.che.ws-agent";
pub const NAME_MAX: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceConfig {
    pub name: String,
    pub default_env: String,
    pub environments: BTreeMap<String, Environment>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<Command>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub recipe: Recipe,
    #[serde(default)]
    pub machines: BTreeMap<String, MachineConfig>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Recipe {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MachineConfig {
    /// Codenvy writes attribute values as strings; numbers are accepted and kept as given.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub servers: BTreeMap<String, ServerConfig>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerConfig {
    /// `8080/tcp`, `8080` or a number.
    pub port: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Command {
    pub name: String,
    pub command_line: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl MachineConfig {
    /// The memory limit the config asks for, if any; `memoryLimitBytes` may be a string.
    pub fn memory_limit_bytes(&self, machine: &str) -> Result<Option<u64>> {
        let field = format!("machines.{machine}.attributes.memoryLimitBytes");
        match self.attributes.get("memoryLimitBytes") {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n
                .as_u64()
                .filter(|b| *b > 0)
                .map(Some)
                .ok_or_else(|| Error::invalid(&field, "must be a positive number of bytes")),
            Some(Value::String(s)) => s
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|b| *b > 0)
                .map(Some)
                .ok_or_else(|| Error::invalid(&field, format!("'{s}' is not a positive number of bytes"))),
            Some(_) => Err(Error::invalid(&field, "must be a number of bytes")),
        }
    }

    /// Whether the machine mounts `/projects`: yes unless `attributes.projects` is `"false"`.
    pub fn mounts_projects(&self, machine: &str) -> Result<bool> {
        match self.attributes.get("projects") {
            None | Some(Value::Null) => Ok(true),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) if s == "true" => Ok(true),
            Some(Value::String(s)) if s == "false" => Ok(false),
            Some(other) => Err(Error::invalid(
                &format!("machines.{machine}.attributes.projects"),
                format!("must be \"true\" or \"false\", not {other}"),
            )),
        }
    }

    /// Whether the config marks this machine as the dev machine.
    pub fn marked_dev(&self) -> bool {
        let dev_attribute = matches!(self.attributes.get("dev"), Some(Value::String(s)) if s == "true")
            || matches!(self.attributes.get("dev"), Some(Value::Bool(true)));
        let has_agent = ["agents", "installers"].iter().any(|key| {
            self.extra
                .get(*key)
                .and_then(Value::as_array)
                .is_some_and(|list| list.iter().any(|a| a.as_str() == Some(WS_AGENT)))
        });
        dev_attribute || has_agent
    }
}

impl ServerConfig {
    /// The container port: `8080/tcp`, `8080` and `8080` as a number are all port 8080/tcp.
    pub fn container_port(&self, field: &str) -> Result<u16> {
        let text = match &self.port {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Err(Error::invalid(field, "port must be like 8080/tcp")),
        };
        let (number, proto) = text.split_once('/').unwrap_or((&text, "tcp"));
        if proto != "tcp" {
            return Err(Error::invalid(field, format!("port '{text}': only tcp ports can be served")));
        }
        number
            .trim()
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| Error::invalid(field, format!("port '{text}' is not a port number like 8080/tcp")))
    }
}

/// A workspace name: 1 to 100 of letters, digits, `-`, `_` and `.`, as Codenvy allowed.
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name.chars().count() > NAME_MAX {
        return Err(Error::invalid("name", format!("name must be 1 to {NAME_MAX} characters long")));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')) {
        return Err(Error::invalid("name", "name may only contain letters, digits, - _ and ."));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_fields_it_does_not_use() {
        let json = serde_json::json!({
            "name": "api-dev", "defaultEnv": "default", "description": "kept", "projects": [{"name": "p"}],
            "environments": {"default": {
                "recipe": {"type": "dockerimage", "location": "busybox", "extra": 1},
                "machines": {"dev": {"attributes": {"memoryLimitBytes": "536870912"},
                                      "agents": ["org.eclipse.che.ws-agent"], "source": {"x": 1}}}}},
            "commands": [{"name": "build", "commandLine": "make", "type": "custom", "attributes": {"a": "b"}}]
        });
        let config: WorkspaceConfig = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&config).unwrap(), json);
        let dev = &config.environments["default"].machines["dev"];
        assert_eq!(dev.memory_limit_bytes("dev").unwrap(), Some(536870912));
        assert!(dev.marked_dev());
    }

    #[test]
    fn memory_and_ports_accept_strings_and_numbers() {
        let m: MachineConfig =
            serde_json::from_value(serde_json::json!({"attributes": {"memoryLimitBytes": 1024}})).unwrap();
        assert_eq!(m.memory_limit_bytes("m").unwrap(), Some(1024));
        let m: MachineConfig =
            serde_json::from_value(serde_json::json!({"attributes": {"memoryLimitBytes": "lots"}})).unwrap();
        assert!(m.memory_limit_bytes("m").unwrap_err().to_string().contains("lots"));
        for port in [serde_json::json!("8080/tcp"), serde_json::json!("8080"), serde_json::json!(8080)] {
            let s = ServerConfig { port, protocol: None, extra: Map::new() };
            assert_eq!(s.container_port("p").unwrap(), 8080);
        }
        let s = ServerConfig { port: serde_json::json!("53/udp"), protocol: None, extra: Map::new() };
        assert!(s.container_port("p").is_err());
    }

    #[test]
    fn names() {
        assert!(validate_name("api-dev_1.0").is_ok());
        assert!(validate_name("").is_err());
        assert!(validate_name("has space").is_err());
        assert!(validate_name(&"x".repeat(101)).is_err());
    }
}
