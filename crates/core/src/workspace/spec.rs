//! From a workspace's config to what a runtime runs: its machines, resolved.

use std::collections::{BTreeMap, BTreeSet};

use super::compose;
use super::config::{RECIPE_COMPOSE, RECIPE_DOCKERIMAGE, WorkspaceConfig};
use crate::error::{Error, Result};
use crate::runtime::MachineSpec;

/// The machine name of a `dockerimage` environment that names none.
pub const DEFAULT_MACHINE: &str = "dev";

/// Checks a config as a whole: its name, its default environment, and every environment's
/// recipe and machines. Creating never checks that an image exists (it may be pulled at start).
pub fn validate(config: &WorkspaceConfig, default_memory: u64) -> Result<()> {
    super::config::validate_name(&config.name)?;
    if !config.environments.contains_key(&config.default_env) {
        return Err(Error::invalid(
            "defaultEnv",
            format!("defaultEnv '{}' is not one of the environments", config.default_env),
        ));
    }
    for env in config.environments.keys() {
        machines(config, env, default_memory)?;
    }
    for (i, command) in config.commands.iter().enumerate() {
        if command.name.trim().is_empty() {
            return Err(Error::invalid(&format!("commands[{i}].name"), "a command needs a name"));
        }
    }
    Ok(())
}

/// The memory machines ask for together, in whole megabytes (rounded up).
pub fn ram_mb(machines: &[MachineSpec]) -> u64 {
    machines.iter().map(|m| m.memory_bytes).sum::<u64>().div_ceil(1 << 20)
}

/// The machines of one environment, with memory, env, ports and the dev machine resolved.
pub fn machines(config: &WorkspaceConfig, env_name: &str, default_memory: u64) -> Result<Vec<MachineSpec>> {
    let env = config
        .environments
        .get(env_name)
        .ok_or_else(|| Error::invalid("environment", format!("the workspace has no environment '{env_name}'")))?;
    let field = format!("environments.{env_name}.recipe");
    let mut specs: Vec<MachineSpec> = match env.recipe.kind.as_str() {
        RECIPE_DOCKERIMAGE => {
            let image = env.recipe.location.as_deref().map(str::trim).filter(|l| !l.is_empty()).ok_or_else(|| {
                Error::invalid(&format!("{field}.location"), "a dockerimage recipe needs the image in 'location'")
            })?;
            if env.machines.len() > 1 {
                return Err(Error::invalid(
                    &format!("environments.{env_name}.machines"),
                    "a dockerimage recipe runs one machine; use a compose recipe for several",
                ));
            }
            let name = env.machines.keys().next().map_or(DEFAULT_MACHINE, String::as_str);
            vec![MachineSpec {
                name: name.to_string(),
                image: image.to_string(),
                memory_bytes: default_memory,
                env: BTreeMap::new(),
                command: None,
                entrypoint: None,
                ports: Vec::new(),
                depends_on: Vec::new(),
                dev: false,
                projects: true,
            }]
        }
        RECIPE_COMPOSE => {
            let content = env.recipe.content.as_deref().filter(|c| !c.trim().is_empty()).ok_or_else(|| {
                Error::invalid(&format!("{field}.content"), "a compose recipe needs the compose file in 'content'")
            })?;
            let services = compose::parse(content)?;
            if let Some(unknown) = env.machines.keys().find(|m| !services.contains_key(*m)) {
                return Err(Error::invalid(
                    &format!("environments.{env_name}.machines.{unknown}"),
                    format!("the compose recipe has no service '{unknown}'"),
                ));
            }
            services
                .into_iter()
                .map(|(name, s)| MachineSpec {
                    memory_bytes: s.mem_limit.unwrap_or(default_memory),
                    image: s.image,
                    env: s.environment,
                    command: s.command,
                    entrypoint: s.entrypoint,
                    ports: s.expose,
                    depends_on: s.depends_on,
                    dev: false,
                    projects: true,
                    name,
                })
                .collect()
        }
        other => {
            return Err(Error::invalid(
                &format!("{field}.type"),
                format!("recipe type '{other}' is not supported; use dockerimage or compose"),
            ));
        }
    };
    for spec in &mut specs {
        let name = spec.name.clone();
        crate::workspace::config::validate_name(&name).map_err(|_| {
            Error::invalid(&format!("machines.{name}"), "machine names may only contain letters, digits, - _ and .")
        })?;
        let Some(machine) = env.machines.get(&name) else { continue };
        if let Some(bytes) = machine.memory_limit_bytes(&name)? {
            spec.memory_bytes = bytes;
        }
        spec.projects = machine.mounts_projects(&name)?;
        spec.env.extend(machine.env.clone());
        for (server, config) in &machine.servers {
            let port = config.container_port(&format!("machines.{name}.servers.{server}.port"))?;
            if !spec.ports.contains(&port) {
                spec.ports.push(port);
            }
        }
    }
    let dev = dev_machine(config, env_name, &specs);
    for spec in &mut specs {
        spec.dev = Some(spec.name.as_str()) == dev.as_deref();
        if spec.dev && !spec.projects {
            return Err(Error::invalid(
                &format!("machines.{}.attributes.projects", spec.name),
                "the dev machine always holds /projects",
            ));
        }
    }
    check_dependencies(&specs)?;
    Ok(specs)
}

/// The dev machine: the one with the ws-agent or the attribute `dev: "true"`, else the only
/// machine, else the first by name.
fn dev_machine(config: &WorkspaceConfig, env_name: &str, specs: &[MachineSpec]) -> Option<String> {
    let env = &config.environments[env_name];
    let marked = specs.iter().find(|s| env.machines.get(&s.name).is_some_and(|m| m.marked_dev()));
    marked.or_else(|| specs.iter().min_by(|a, b| a.name.cmp(&b.name))).map(|s| s.name.clone())
}

/// Refuses dependency cycles, naming a machine in one.
fn check_dependencies(specs: &[MachineSpec]) -> Result<()> {
    let by_name: BTreeMap<&str, &MachineSpec> = specs.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut done = BTreeSet::new();
    for spec in specs {
        let mut path = BTreeSet::new();
        visit(spec, &by_name, &mut path, &mut done)?;
    }
    Ok(())
}

fn visit<'a>(
    spec: &'a MachineSpec,
    by_name: &BTreeMap<&str, &'a MachineSpec>,
    path: &mut BTreeSet<&'a str>,
    done: &mut BTreeSet<&'a str>,
) -> Result<()> {
    if done.contains(spec.name.as_str()) {
        return Ok(());
    }
    if !path.insert(spec.name.as_str()) {
        return Err(Error::invalid(
            "recipe.content",
            format!("service '{}' depends on itself through depends_on", spec.name),
        ));
    }
    for dep in &spec.depends_on {
        if let Some(next) = by_name.get(dep.as_str()) {
            visit(next, by_name, path, done)?;
        }
    }
    path.remove(spec.name.as_str());
    done.insert(spec.name.as_str());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: serde_json::Value) -> WorkspaceConfig {
        serde_json::from_value(json).unwrap()
    }

    const MB: u64 = 1 << 20;

    #[test]
    fn dockerimage_with_servers_and_memory() {
        let c = config(serde_json::json!({"name": "api-dev", "defaultEnv": "default", "environments": {"default": {
            "recipe": {"type": "dockerimage", "location": "busybox"},
            "machines": {"dev-machine": {"attributes": {"memoryLimitBytes": "536870912"}, "env": {"K": "v"},
                "servers": {"web": {"port": "8080/tcp", "protocol": "http"}}}}}}}));
        validate(&c, 1024 * MB).unwrap();
        let m = machines(&c, "default", 1024 * MB).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(
            (m[0].name.as_str(), m[0].memory_bytes, m[0].ports.as_slice(), m[0].dev),
            ("dev-machine", 512 * MB, &[8080u16][..], true)
        );
        assert_eq!(m[0].env["K"], "v");
    }

    #[test]
    fn compose_machines_and_the_dev_machine() {
        let c = config(serde_json::json!({"name": "two", "defaultEnv": "e", "environments": {"e": {
            "recipe": {"type": "compose", "contentType": "application/x-yaml",
                       "content": "services:\n  app:\n    image: busybox\n    depends_on: [db]\n  db:\n    image: busybox\n    mem_limit: 256m\n"},
            "machines": {"app": {"attributes": {"dev": "true"}}}}}}));
        let m = machines(&c, "e", 1024 * MB).unwrap();
        let app = m.iter().find(|s| s.name == "app").unwrap();
        let db = m.iter().find(|s| s.name == "db").unwrap();
        assert!(app.dev && !db.dev);
        assert_eq!((app.memory_bytes, db.memory_bytes), (1024 * MB, 256 * MB));
        // Without a mark, the first by name.
        let mut unmarked = c.clone();
        unmarked.environments.get_mut("e").unwrap().machines.clear();
        let m = machines(&unmarked, "e", MB).unwrap();
        assert!(m.iter().find(|s| s.name == "app").unwrap().dev);
    }

    #[test]
    fn machines_may_go_without_projects_but_the_dev_machine_not() {
        let recipe = serde_json::json!({"type": "compose",
            "content": "services:\n  app:\n    image: busybox\n  db:\n    image: busybox\n"});
        let c = config(serde_json::json!({"name": "two", "defaultEnv": "e", "environments": {"e": {
            "recipe": recipe, "machines": {"db": {"attributes": {"projects": "false"}}}}}}));
        let m = machines(&c, "e", MB).unwrap();
        let projects: Vec<(&str, bool)> = m.iter().map(|s| (s.name.as_str(), s.projects)).collect();
        assert_eq!(projects, [("app", true), ("db", false)]);
        let dev = config(serde_json::json!({"name": "two", "defaultEnv": "e", "environments": {"e": {
            "recipe": recipe, "machines": {"app": {"attributes": {"projects": false}}}}}}));
        let field = |e: Error| match e {
            Error::InvalidInput { field, .. } => field,
            other => panic!("{other}"),
        };
        assert_eq!(field(machines(&dev, "e", MB).unwrap_err()), "machines.app.attributes.projects");
        let bad = config(serde_json::json!({"name": "two", "defaultEnv": "e", "environments": {"e": {
            "recipe": recipe, "machines": {"db": {"attributes": {"projects": "no"}}}}}}));
        assert_eq!(field(machines(&bad, "e", MB).unwrap_err()), "machines.db.attributes.projects");
    }

    #[test]
    fn bad_configs_name_the_field() {
        let base = serde_json::json!({"name": "x", "defaultEnv": "default", "environments": {"default": {
            "recipe": {"type": "dockerimage", "location": "busybox"}}}});
        let mut no_env = base.clone();
        no_env["defaultEnv"] = "other".into();
        let mut bad_type = base.clone();
        bad_type["environments"]["default"]["recipe"]["type"] = "vagrant".into();
        let mut no_location = base.clone();
        no_location["environments"]["default"]["recipe"]["location"] = "".into();
        let mut bad_name = base.clone();
        bad_name["name"] = "has space".into();
        let mut unknown_machine = base.clone();
        unknown_machine["environments"]["default"]["recipe"] =
            serde_json::json!({"type": "compose", "content": "services:\n  a:\n    image: x\n"});
        unknown_machine["environments"]["default"]["machines"] = serde_json::json!({"b": {}});
        let mut cycle = base.clone();
        cycle["environments"]["default"]["recipe"] = serde_json::json!({"type": "compose",
            "content": "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n"});
        for (json, field) in [
            (no_env, "defaultEnv"),
            (bad_type, "recipe.type"),
            (no_location, "recipe.location"),
            (bad_name, "name"),
            (unknown_machine, "machines.b"),
            (cycle, "recipe.content"),
        ] {
            match validate(&config(json.clone()), MB) {
                Err(Error::InvalidInput { field: f, .. }) => assert!(f.ends_with(field), "{json}: {f}"),
                other => panic!("{json}: {other:?}"),
            }
        }
    }
}
