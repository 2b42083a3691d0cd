//! Names and labels of the engine objects of one instance (see DESIGN.md): containers
//! `drydock-<instance>-<ws>-<machine>`, network `drydock-<instance>-<ws>`, volume
//! `drydock-<instance>-<ws>-projects`, snapshot images `drydock-<instance>-<ws>-<machine>:snapshot-…`.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use drydock_core::runtime::{LABEL_INSTANCE, LABEL_MACHINE, LABEL_WORKSPACE, RuntimeError};

pub fn container_name(instance: &str, workspace: &str, machine: &str) -> String {
    format!("drydock-{instance}-{workspace}-{machine}")
}

pub fn network_name(instance: &str, workspace: &str) -> String {
    format!("drydock-{instance}-{workspace}")
}

pub fn volume_name(instance: &str, workspace: &str) -> String {
    format!("drydock-{instance}-{workspace}-projects")
}

/// The repository of a machine's snapshot images. Image repositories must be lower case with
/// single separators, so a name that is not already so is folded, and a short hash of the
/// exact name keeps two machines whose names fold alike apart.
pub fn snapshot_repository(instance: &str, workspace: &str, machine: &str) -> String {
    let exact = container_name(instance, workspace, machine);
    let mut folded = String::with_capacity(exact.len());
    for c in exact.chars() {
        if c.is_ascii_alphanumeric() {
            folded.push(c.to_ascii_lowercase());
        } else if !folded.ends_with('-') {
            folded.push('-');
        }
    }
    let folded = folded.trim_end_matches('-').to_string();
    if folded == exact {
        return folded;
    }
    let mut hasher = DefaultHasher::new();
    exact.hash(&mut hasher);
    format!("{folded}-{:08x}", hasher.finish() as u32)
}

/// The labels every object of a workspace carries; containers add their machine.
pub fn labels(instance: &str, workspace: &str, machine: Option<&str>) -> HashMap<String, String> {
    let mut labels = HashMap::from([
        (LABEL_INSTANCE.to_string(), instance.to_string()),
        (LABEL_WORKSPACE.to_string(), workspace.to_string()),
    ]);
    if let Some(machine) = machine {
        labels.insert(LABEL_MACHINE.to_string(), machine.to_string());
    }
    labels
}

/// Engine filters selecting this instance's objects, or one workspace's of them.
pub fn label_filters(instance: &str, workspace: Option<&str>) -> HashMap<String, Vec<String>> {
    let mut wanted = vec![format!("{LABEL_INSTANCE}={instance}")];
    if let Some(workspace) = workspace {
        wanted.push(format!("{LABEL_WORKSPACE}={workspace}"));
    }
    HashMap::from([("label".to_string(), wanted)])
}

/// The workspace id of a spec whose names can name engine objects and that has a machine.
pub(crate) fn check_spec(spec: &drydock_core::runtime::RuntimeSpec) -> Result<&str, RuntimeError> {
    let workspace = spec.workspace_id.as_str();
    check_name_part("workspace id", workspace)?;
    for machine in &spec.machines {
        check_name_part("machine", &machine.name)?;
    }
    if spec.machines.is_empty() {
        return Err(RuntimeError::Engine(format!("workspace {workspace} has no machine to start")));
    }
    Ok(workspace)
}

/// An instance id becomes part of every object name, image repositories included, so it is
/// lower case: letters, digits and `-`, starting with a letter or digit.
pub fn check_instance_id(id: &str) -> Result<(), RuntimeError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !id.starts_with('-')
        && !id.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::Engine(format!(
            "instance id '{id}' cannot name Docker objects: use 1 to 64 lower-case letters, digits and -"
        )))
    }
}

/// Workspace ids and machine names become parts of container names: letters, digits, `-`,
/// `_` and `.`, starting with a letter or digit.
pub fn check_name_part(what: &str, value: &str) -> Result<(), RuntimeError> {
    let ok = value.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && value.len() <= 128
        && value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(RuntimeError::Engine(format!(
            "{what} '{value}' cannot name Docker objects: use letters, digits, - _ and ."
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_contract() {
        assert_eq!(container_name("i1", "wksp-a", "dev"), "drydock-i1-wksp-a-dev");
        assert_eq!(network_name("i1", "wksp-a"), "drydock-i1-wksp-a");
        assert_eq!(volume_name("i1", "wksp-a"), "drydock-i1-wksp-a-projects");
        let l = labels("i1", "wksp-a", Some("dev"));
        assert_eq!(l["drydock.instance"], "i1");
        assert_eq!(l["drydock.workspace"], "wksp-a");
        assert_eq!(l["drydock.machine"], "dev");
        assert!(!labels("i1", "w", None).contains_key("drydock.machine"));
    }

    #[test]
    fn snapshot_repositories_are_valid_and_distinct() {
        assert_eq!(snapshot_repository("i1", "wksp-a", "dev"), "drydock-i1-wksp-a-dev");
        let upper = snapshot_repository("i1", "wksp-a", "Dev_1");
        let dotted = snapshot_repository("i1", "wksp-a", "dev.1");
        assert!(upper.starts_with("drydock-i1-wksp-a-dev-1-"), "{upper}");
        assert_ne!(upper, dotted);
        for repo in [upper, dotted] {
            assert!(repo.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'), "{repo}");
            assert!(!repo.contains("--"), "{repo}");
        }
    }

    #[test]
    fn ids_and_names_are_checked() {
        assert!(check_instance_id("ab12cd").is_ok());
        assert!(check_instance_id("t-ab12").is_ok());
        for bad in ["", "Ab", "a_b", "-a", "a b"] {
            assert!(check_instance_id(bad).is_err(), "{bad}");
        }
        assert!(check_name_part("machine", "dev_1.x-Y").is_ok());
        for bad in ["", "-dev", "a/b", "a b", ".a"] {
            assert!(check_name_part("machine", bad).is_err(), "{bad}");
        }
    }
}
