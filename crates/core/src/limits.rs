//! Per-user resource limits, Codenvy's Resource API. Every user has the defaults of the
//! config (`limits.user.*`, `limits.workspace.idle_timeout`); an administrator may override
//! some of them for one user. The rules that admit a create or a start are here; they run
//! inside the store's transaction that writes (`Store::create_workspace`,
//! `Store::admit_start`), so concurrent requests cannot pass a limit together.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit_log::{NewEvent, Target};
use crate::clock::Clock;
use crate::config::LimitsConfig;
use crate::error::{Error, Result};
use crate::model::{MANAGE_SYSTEM, Page, Principal};
use crate::store::{Store, Usage};

pub const RAM: &str = "RAM";
pub const WORKSPACE: &str = "workspace";
pub const RUNTIME: &str = "runtime";
pub const TIMEOUT: &str = "timeout";
/// The amount that means "no limit".
pub const UNLIMITED: i64 = -1;

/// Units a type accepts, with their size in its default unit.
type Units = &'static [(&'static str, i64)];

/// Each type with its default unit and the units it accepts.
const TYPES: &[(&str, &str, Units)] = &[
    (RAM, "mb", &[("mb", 1), ("gb", 1024)]),
    (WORKSPACE, "item", &[("item", 1)]),
    (RUNTIME, "item", &[("item", 1)]),
    (TIMEOUT, "minute", &[("minute", 1)]),
];

/// One resource: a type, an amount (-1: unlimited) and its unit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resource {
    #[serde(rename = "type")]
    pub kind: String,
    pub amount: i64,
    /// Optional in requests (the type's default unit); always given in answers.
    #[serde(default)]
    pub unit: String,
}

impl Resource {
    fn new(kind: &str, amount: i64) -> Self {
        let unit = TYPES.iter().find(|(k, _, _)| *k == kind).map_or("", |(_, u, _)| u);
        Resource { kind: kind.to_string(), amount, unit: unit.to_string() }
    }
}

/// A user's override of the defaults (Codenvy's `FreeResourcesLimit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResourceOverride {
    pub account_id: String,
    pub resources: Vec<Resource>,
}

/// A user's limits (or usage) in the units the rules use; -1 is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub ram_mb: i64,
    pub workspaces: i64,
    pub runtimes: i64,
    /// Idle timeout in seconds (the config may say seconds; overrides say minutes).
    pub timeout_secs: i64,
}

impl Limits {
    pub fn from_config(config: &LimitsConfig) -> Self {
        let idle = config.workspace.idle_timeout.0.as_secs();
        Limits {
            ram_mb: config.user.ram.0,
            workspaces: config.user.workspaces,
            runtimes: config.user.runtimes,
            timeout_secs: if idle == 0 { UNLIMITED } else { i64::try_from(idle).unwrap_or(i64::MAX) },
        }
    }

    /// These limits with an override's amounts (already in default units) on top.
    pub fn with(mut self, resources: &[Resource]) -> Self {
        for r in resources {
            match r.kind.as_str() {
                RAM => self.ram_mb = r.amount,
                WORKSPACE => self.workspaces = r.amount,
                RUNTIME => self.runtimes = r.amount,
                TIMEOUT => self.timeout_secs = if r.amount < 0 { UNLIMITED } else { r.amount.saturating_mul(60) },
                _ => {}
            }
        }
        self
    }

    /// As the API shows them, each in its type's default unit.
    pub fn resources(&self) -> Vec<Resource> {
        let minutes = if self.timeout_secs < 0 { UNLIMITED } else { (self.timeout_secs + 59) / 60 };
        vec![
            Resource::new(RAM, self.ram_mb),
            Resource::new(WORKSPACE, self.workspaces),
            Resource::new(RUNTIME, self.runtimes),
            Resource::new(TIMEOUT, minutes),
        ]
    }
}

/// What a user's workspaces hold now, as resources (timeout: none is "used").
pub fn used_resources(usage: &Usage) -> Vec<Resource> {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    vec![
        Resource::new(RAM, n(usage.ram_mb)),
        Resource::new(WORKSPACE, n(usage.workspaces)),
        Resource::new(RUNTIME, n(usage.runtimes)),
        Resource::new(TIMEOUT, 0),
    ]
}

/// What is left of each limit (-1 where unlimited; never below 0).
pub fn available_resources(limits: &Limits, usage: &Usage) -> Vec<Resource> {
    let left = |limit: i64, used: u64| {
        if limit < 0 { UNLIMITED } else { (limit - i64::try_from(used).unwrap_or(i64::MAX)).max(0) }
    };
    let minutes = if limits.timeout_secs < 0 { UNLIMITED } else { (limits.timeout_secs + 59) / 60 };
    vec![
        Resource::new(RAM, left(limits.ram_mb, usage.ram_mb)),
        Resource::new(WORKSPACE, left(limits.workspaces, usage.workspaces)),
        Resource::new(RUNTIME, left(limits.runtimes, usage.runtimes)),
        Resource::new(TIMEOUT, minutes),
    ]
}

/// Checks an override's resources and brings each amount to its type's default unit.
pub fn normalize(resources: &[Resource]) -> Result<Vec<Resource>> {
    let mut out: Vec<Resource> = Vec::with_capacity(resources.len());
    for (i, r) in resources.iter().enumerate() {
        let field = format!("resources[{i}]");
        let Some((kind, default_unit, units)) = TYPES.iter().find(|(k, _, _)| *k == r.kind) else {
            return Err(Error::invalid(
                &format!("{field}.type"),
                format!("unknown resource type '{}'; known types: RAM, workspace, runtime, timeout", r.kind),
            ));
        };
        if out.iter().any(|o| o.kind == *kind) {
            return Err(Error::invalid(&format!("{field}.type"), format!("resource type '{kind}' is given twice")));
        }
        let unit = if r.unit.is_empty() { default_unit } else { r.unit.as_str() };
        let Some((_, size)) = units.iter().find(|(u, _)| u.eq_ignore_ascii_case(unit)) else {
            let known: Vec<&str> = units.iter().map(|(u, _)| *u).collect();
            return Err(Error::invalid(
                &format!("{field}.unit"),
                format!("unit '{unit}' does not fit type '{kind}'; use {}", known.join(" or ")),
            ));
        };
        if r.amount < UNLIMITED {
            return Err(Error::invalid(
                &format!("{field}.amount"),
                format!("amount {} is below -1 (-1 means unlimited)", r.amount),
            ));
        }
        let amount = if r.amount == UNLIMITED {
            UNLIMITED
        } else {
            r.amount
                .checked_mul(*size)
                .ok_or_else(|| Error::invalid(&format!("{field}.amount"), "amount is too large"))?
        };
        out.push(Resource::new(kind, amount));
    }
    Ok(out)
}

/// The rule for a new workspace: the owner's `workspace` limit.
pub fn admit_create(limits: &Limits, usage: &Usage) -> std::result::Result<(), String> {
    if limits.workspaces >= 0 && usage.workspaces >= limits.workspaces as u64 {
        return Err("You are not allowed to create more workspaces.".to_string());
    }
    Ok(())
}

/// What a start needs, for the rule that admits it.
#[derive(Debug, Clone)]
pub struct StartRequest {
    /// `owner/name`, as the refusal names it.
    pub label: String,
    pub ram_mb: u64,
    /// What running workspaces may reserve together on the engine (`None`: no guard).
    pub host_cap_mb: Option<u64>,
}

/// The rules for a start: the owner's `runtime` and `RAM` limits, then the host guard.
pub fn admit_start(limits: &Limits, usage: &Usage, start: &StartRequest) -> std::result::Result<(), String> {
    if limits.runtimes >= 0 && usage.runtimes >= limits.runtimes as u64 {
        return Err("You are not allowed to start more workspaces.".to_string());
    }
    if limits.ram_mb >= 0 && usage.ram_mb + start.ram_mb > limits.ram_mb as u64 {
        let available = (limits.ram_mb as u64).saturating_sub(usage.ram_mb);
        return Err(format!(
            "Workspace {} needs {}mb to start. Your account has {available}mb available and {}mb in use. \
             The workspace can't be started. Stop other workspaces or ask an administrator for more RAM.",
            start.label, start.ram_mb, usage.ram_mb
        ));
    }
    if let Some(cap) = start.host_cap_mb
        && usage.host_ram_mb + start.ram_mb > cap
    {
        return Err("Low RAM. Your workspace cannot be started until the system has more RAM available.".to_string());
    }
    Ok(())
}

/// The Resource API: defaults, per-user overrides, usage.
pub struct ResourceLimits {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    defaults: Limits,
    /// Effective limits by user, for the idle check that asks every second; a change of a
    /// user's override drops theirs.
    cache: Mutex<HashMap<String, Limits>>,
}

fn user_not_found(user_id: &str) -> Error {
    Error::NotFound(format!("user {user_id} not found"))
}

impl ResourceLimits {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: &LimitsConfig) -> Self {
        ResourceLimits { store, clock, defaults: Limits::from_config(config), cache: Mutex::default() }
    }

    pub fn defaults(&self) -> Limits {
        self.defaults
    }

    /// A user's limits: the defaults with their override on top.
    pub async fn effective(&self, user_id: &str) -> Result<Limits> {
        if let Some(known) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(user_id) {
            return Ok(*known);
        }
        let own = self.store.resource_override(user_id).await?;
        let limits = own.map_or(self.defaults, |r| self.defaults.with(&r));
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(user_id.to_string(), limits);
        Ok(limits)
    }

    fn forget(&self, user_id: &str) {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).remove(user_id);
    }

    /// Stores (replaces) a user's override; types not named keep their defaults.
    pub async fn set(&self, caller: &Principal, user_id: &str, resources: &[Resource]) -> Result<ResourceOverride> {
        caller.require_system(MANAGE_SYSTEM)?;
        if user_id.is_empty() {
            return Err(Error::invalid("accountId", "accountId (or userId) is required"));
        }
        let resources = normalize(resources)?;
        let user = self.store.user(user_id).await?.ok_or_else(|| user_not_found(user_id))?;
        let before = self.store.resource_override(user_id).await?;
        let event = NewEvent::new(self.clock.now(), caller.into(), "limits.update", Target::user(&user)).changed(
            "resources",
            before,
            &resources,
        );
        self.store.store_resource_override(user_id, &resources, &event).await?;
        self.forget(user_id);
        Ok(ResourceOverride { account_id: user_id.to_string(), resources })
    }

    pub async fn overrides(&self, caller: &Principal, page: Page) -> Result<(Vec<ResourceOverride>, u64)> {
        caller.require_system(MANAGE_SYSTEM)?;
        Ok(self.store.resource_overrides(page).await?)
    }

    /// One user's override; 404 when they have none.
    pub async fn override_of(&self, caller: &Principal, user_id: &str) -> Result<ResourceOverride> {
        self.may_read(caller, user_id)?;
        let resources = self
            .store
            .resource_override(user_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("user {user_id} has no resource override")))?;
        Ok(ResourceOverride { account_id: user_id.to_string(), resources })
    }

    /// Back to the defaults; 404 for an unknown user.
    pub async fn reset(&self, caller: &Principal, user_id: &str) -> Result<()> {
        caller.require_system(MANAGE_SYSTEM)?;
        if user_id.is_empty() {
            return Err(Error::invalid("userId", "userId is required"));
        }
        let user = self.store.user(user_id).await?.ok_or_else(|| user_not_found(user_id))?;
        let before = self.store.resource_override(user_id).await?;
        let event = NewEvent::new(self.clock.now(), caller.into(), "limits.reset", Target::user(&user)).changed(
            "resources",
            before,
            Option::<Vec<Resource>>::None,
        );
        self.store.remove_resource_override(user_id, &event).await?;
        self.forget(user_id);
        Ok(())
    }

    /// A user's effective limits, their usage and what is left (their own, or any for
    /// `manageSystem`).
    pub async fn report(&self, caller: &Principal, user_id: &str) -> Result<(Limits, Usage)> {
        self.may_read(caller, user_id)?;
        if self.store.user(user_id).await?.is_none() {
            return Err(user_not_found(user_id));
        }
        Ok((self.effective(user_id).await?, self.store.usage(user_id).await?))
    }

    fn may_read(&self, caller: &Principal, user_id: &str) -> Result<()> {
        if caller.user.id == user_id {
            return Ok(());
        }
        caller.require_system(MANAGE_SYSTEM)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(workspaces: u64, runtimes: u64, ram_mb: u64, host_ram_mb: u64) -> Usage {
        Usage { workspaces, runtimes, ram_mb, host_ram_mb }
    }

    #[test]
    fn units_and_bad_input() {
        let r = |kind: &str, amount: i64, unit: &str| Resource { kind: kind.into(), amount, unit: unit.into() };
        let n = normalize(&[r(RAM, 2, "gb"), r(WORKSPACE, 10, ""), r(TIMEOUT, -1, "minute")]).unwrap();
        assert_eq!(n, vec![r(RAM, 2048, "mb"), r(WORKSPACE, 10, "item"), r(TIMEOUT, -1, "minute")]);
        let message = |e: Error| match e {
            Error::InvalidInput { field, message } => format!("{field}: {message}"),
            other => panic!("{other:?}"),
        };
        assert!(message(normalize(&[r("CPU", 1, "")]).unwrap_err()).starts_with("resources[0].type: unknown"));
        assert!(message(normalize(&[r(RAM, 1, ""), r(RAM, 2, "")]).unwrap_err()).contains("given twice"));
        assert!(message(normalize(&[r(RUNTIME, 1, "mb")]).unwrap_err()).starts_with("resources[0].unit"));
        assert!(message(normalize(&[r(RAM, -2, "")]).unwrap_err()).contains("below -1"));
    }

    #[test]
    fn admission_rules() {
        let limits = Limits { ram_mb: 4096, workspaces: 2, runtimes: 2, timeout_secs: 60 };
        assert!(admit_create(&limits, &usage(1, 0, 0, 0)).is_ok());
        assert_eq!(
            admit_create(&limits, &usage(2, 0, 0, 0)).unwrap_err(),
            "You are not allowed to create more workspaces."
        );
        let start = StartRequest { label: "alice/api".into(), ram_mb: 2048, host_cap_mb: Some(10_000) };
        assert!(admit_start(&limits, &usage(2, 1, 2048, 2048), &start).is_ok());
        assert_eq!(
            admit_start(&limits, &usage(2, 2, 0, 0), &start).unwrap_err(),
            "You are not allowed to start more workspaces."
        );
        let ram = admit_start(&limits, &usage(2, 1, 3072, 3072), &start).unwrap_err();
        assert!(
            ram.starts_with(
                "Workspace alice/api needs 2048mb to start. Your account has 1024mb available and 3072mb in use."
            ),
            "{ram}"
        );
        let host = admit_start(&limits, &usage(0, 0, 0, 9000), &start).unwrap_err();
        assert!(host.starts_with("Low RAM."), "{host}");
        let unlimited = Limits { ram_mb: -1, workspaces: -1, runtimes: -1, timeout_secs: -1 };
        assert!(
            admit_start(&unlimited, &usage(99, 99, 1 << 40, 0), &StartRequest { host_cap_mb: None, ..start }).is_ok()
        );
    }
}
