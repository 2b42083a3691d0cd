//! The subset of Docker Compose a workspace needs: per service `image`, `mem_limit`,
//! `environment`, `command`, `entrypoint`, `expose` and `depends_on`. Any other key is
//! refused with a 400 that names it, so a recipe never half-works.

use std::collections::BTreeMap;

use serde_norway::Value;

use crate::error::{Error, Result};

const FIELD: &str = "recipe.content";
pub const SERVICE_KEYS: &[&str] =
    &["image", "mem_limit", "environment", "command", "entrypoint", "expose", "depends_on"];

/// One compose service, as drydock uses it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Service {
    pub image: String,
    pub mem_limit: Option<u64>,
    pub environment: BTreeMap<String, String>,
    pub command: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub expose: Vec<u16>,
    pub depends_on: Vec<String>,
}

fn bad(message: String) -> Error {
    Error::invalid(FIELD, message)
}

/// Parses a compose file into its services, by name.
pub fn parse(content: &str) -> Result<BTreeMap<String, Service>> {
    let doc: Value =
        serde_norway::from_str(content).map_err(|e| bad(format!("the compose recipe is not valid YAML: {e}")))?;
    let top = doc.as_mapping().ok_or_else(|| bad("the compose recipe must be a mapping with 'services'".into()))?;
    let mut services = None;
    for (key, value) in top {
        match key.as_str() {
            Some("services") => services = Some(value),
            Some("version") => {}
            Some(other) => {
                return Err(bad(format!("compose key '{other}' is not supported (only 'services' and 'version')")));
            }
            None => return Err(bad("compose keys must be strings".into())),
        }
    }
    let services = services
        .and_then(Value::as_mapping)
        .ok_or_else(|| bad("the compose recipe needs a 'services' mapping".into()))?;
    if services.is_empty() {
        return Err(bad("the compose recipe defines no service".into()));
    }
    let mut out = BTreeMap::new();
    for (name, body) in services {
        let name = name.as_str().ok_or_else(|| bad("service names must be strings".into()))?.to_string();
        out.insert(name.clone(), service(&name, body)?);
    }
    for (name, s) in &out {
        if let Some(missing) = s.depends_on.iter().find(|d| !out.contains_key(*d)) {
            return Err(bad(format!("service '{name}' depends on '{missing}', which the recipe does not define")));
        }
    }
    Ok(out)
}

fn service(name: &str, body: &Value) -> Result<Service> {
    let map = body.as_mapping().ok_or_else(|| bad(format!("service '{name}' must be a mapping")))?;
    let mut s = Service::default();
    for (key, value) in map {
        let key = key.as_str().unwrap_or("");
        let what = format!("'{key}' of service '{name}'");
        match key {
            "image" => s.image = scalar(value).ok_or_else(|| bad(format!("{what} must be a string")))?,
            "mem_limit" => {
                s.mem_limit = Some(memory(value).ok_or_else(|| bad(format!("{what} must be a size like 512m or 1g")))?)
            }
            "environment" => {
                s.environment =
                    environment(value).ok_or_else(|| bad(format!("{what} must be a mapping or a list of KEY=value")))?
            }
            "command" => {
                s.command = Some(words(value).ok_or_else(|| bad(format!("{what} must be a string or a list")))?)
            }
            "entrypoint" => {
                s.entrypoint = Some(words(value).ok_or_else(|| bad(format!("{what} must be a string or a list")))?)
            }
            "expose" => s.expose = ports(value).ok_or_else(|| bad(format!("{what} must be a list of ports")))?,
            "depends_on" => {
                s.depends_on = names(value).ok_or_else(|| bad(format!("{what} must be a list of services")))?
            }
            other => {
                return Err(bad(format!(
                    "compose key '{other}' of service '{name}' is not supported (supported: {})",
                    SERVICE_KEYS.join(", ")
                )));
            }
        }
    }
    if s.image.is_empty() {
        return Err(bad(format!("service '{name}' needs an image")));
    }
    Ok(s)
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `512m`, `1g`, `1024k`, `536870912` (bytes), as Compose writes sizes.
pub fn memory(v: &Value) -> Option<u64> {
    let text = scalar(v)?.trim().to_lowercase();
    let text = text.strip_suffix('b').unwrap_or(&text);
    let (digits, mult) = match text.chars().last()? {
        'k' => (&text[..text.len() - 1], 1u64 << 10),
        'm' => (&text[..text.len() - 1], 1 << 20),
        'g' => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(mult).filter(|b| *b > 0)
}

fn environment(v: &Value) -> Option<BTreeMap<String, String>> {
    match v {
        Value::Mapping(m) => m
            .iter()
            .map(|(k, v)| Some((k.as_str()?.to_string(), if v.is_null() { String::new() } else { scalar(v)? })))
            .collect(),
        Value::Sequence(items) => items
            .iter()
            .map(|item| {
                let text = item.as_str()?;
                let (k, v) = text.split_once('=').unwrap_or((text, ""));
                Some((k.to_string(), v.to_string()))
            })
            .collect(),
        _ => None,
    }
}

fn words(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::String(s) => split_words(s),
        Value::Sequence(items) => items.iter().map(scalar).collect(),
        _ => None,
    }
}

/// Splits a command line into words as a shell would, honouring single and double quotes
/// and backslashes; `None` for an unterminated quote.
pub fn split_words(line: &str) -> Option<Vec<String>> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '\'' => break,
                        ch => word.push(ch),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next()? {
                        '"' => break,
                        '\\' => word.push(chars.next()?),
                        ch => word.push(ch),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next()?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Some(words)
}

fn ports(v: &Value) -> Option<Vec<u16>> {
    v.as_sequence()?
        .iter()
        .map(|p| {
            let text = scalar(p)?;
            let number = text.split('/').next()?;
            number.trim().parse::<u16>().ok().filter(|p| *p > 0)
        })
        .collect()
}

fn names(v: &Value) -> Option<Vec<String>> {
    match v {
        Value::Sequence(items) => items.iter().map(|i| i.as_str().map(str::to_string)).collect(),
        // The long form: `depends_on: {db: {condition: service_started}}`.
        Value::Mapping(m) => m.keys().map(|k| k.as_str().map(str::to_string)).collect(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_supported_keys() {
        let services = parse(
            "version: '3'\nservices:\n  dev:\n    image: busybox\n    mem_limit: 512m\n    environment:\n      A: 1\n      B:\n    \
             command: sh -c 'sleep 1000'\n    expose: ['8080', 9090/tcp]\n    depends_on: [db]\n  \
             db:\n    image: postgres\n    environment: [X=y, Z]\n    entrypoint: [\"/init\", \"--fast\"]\n",
        )
        .unwrap();
        let dev = &services["dev"];
        assert_eq!(dev.mem_limit, Some(512 << 20));
        assert_eq!(dev.environment["A"], "1");
        assert_eq!(dev.environment["B"], "");
        assert_eq!(dev.command.as_deref().unwrap(), ["sh", "-c", "sleep 1000"]);
        assert_eq!(dev.expose, [8080, 9090]);
        assert_eq!(dev.depends_on, ["db"]);
        let db = &services["db"];
        assert_eq!(db.environment["X"], "y");
        assert_eq!(db.entrypoint.as_deref().unwrap(), ["/init", "--fast"]);
    }

    #[test]
    fn refuses_what_it_does_not_support_naming_it() {
        for (yaml, named) in [
            ("services:\n  dev:\n    image: x\n    ports: ['80:80']\n", "'ports'"),
            ("services:\n  dev:\n    build: .\n", "'build'"),
            ("services:\n  dev:\n    image: x\nvolumes: {}\n", "'volumes'"),
            ("services:\n  dev:\n    image: x\n    depends_on: [db]\n", "'db'"),
            ("services:\n  dev:\n    mem_limit: 1g\n", "needs an image"),
            ("services: [", "not valid YAML"),
            ("services:\n  dev:\n    image: x\n    mem_limit: lots\n", "mem_limit"),
        ] {
            let e = parse(yaml).unwrap_err().to_string();
            assert!(e.contains(named), "{yaml}: {e}");
        }
    }

    #[test]
    fn sizes_and_words() {
        assert_eq!(memory(&Value::from("1g")), Some(1 << 30));
        assert_eq!(memory(&Value::from("1024K")), Some(1 << 20));
        assert_eq!(memory(&Value::from(2048)), Some(2048));
        assert_eq!(memory(&Value::from("0")), None);
        assert_eq!(split_words(r#"a "b c" 'd e' f\ g"#).unwrap(), ["a", "b c", "d e", "f g"]);
        assert_eq!(split_words("unterminated 'quote"), None);
    }
}
