//! Granting and revoking permissions in Codenvy's shape. This issue knows the `system`
//! domain; workspaces add theirs.

use std::sync::Arc;

use crate::audit_log::NewEvent;
use crate::auth::PrincipalCache;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::model::{DOMAIN_SYSTEM, MANAGE_SYSTEM, Permission, Principal, SYSTEM_ACTIONS};
use crate::store::Store;

pub struct Permissions {
    store: Arc<dyn Store>,
    cache: Arc<PrincipalCache>,
    clock: Arc<dyn Clock>,
}

impl Permissions {
    pub fn new(store: Arc<dyn Store>, cache: Arc<PrincipalCache>, clock: Arc<dyn Clock>) -> Self {
        Permissions { store, cache, clock }
    }

    /// The caller's own actions in the system domain (empty for a plain user).
    pub fn system_of(&self, caller: &Principal) -> Permission {
        Permission {
            user_id: caller.user.id.clone(),
            domain_id: DOMAIN_SYSTEM.into(),
            instance_id: None,
            actions: caller.system_actions.clone(),
        }
    }

    /// Another user's system actions, for those who administer users.
    pub async fn system_actions_of(&self, caller: &Principal, user_id: &str) -> Result<Vec<String>> {
        caller.require_system(crate::model::MANAGE_USERS)?;
        Ok(self.store.permission(user_id, DOMAIN_SYSTEM, None).await?.map(|p| p.actions).unwrap_or_default())
    }

    /// Stores a user's actions in a domain, replacing what they had there.
    pub async fn store(&self, caller: &Principal, permission: Permission) -> Result<Permission> {
        let permission = match permission.domain_id.as_str() {
            DOMAIN_SYSTEM => {
                caller.require_system(MANAGE_SYSTEM)?;
                if permission.instance_id.as_deref().is_some_and(|i| !i.is_empty()) {
                    return Err(Error::invalid("instanceId", "instanceId must be null for the system domain"));
                }
                Permission {
                    instance_id: None,
                    actions: canonical_actions(&permission.actions, SYSTEM_ACTIONS)?,
                    ..permission
                }
            }
            other => {
                return Err(Error::invalid(
                    "domainId",
                    format!("unknown domainId '{other}'; known domains: system, workspace"),
                ));
            }
        };
        let user = self
            .store
            .user(&permission.user_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("user {} not found", permission.user_id)))?;
        let before = self.store.permission(&user.id, DOMAIN_SYSTEM, None).await?.map(|p| p.actions);
        let event = NewEvent::permission(self.clock.now(), caller, &user, DOMAIN_SYSTEM, "", before, Some(&permission));
        self.store.store_permission(&permission, &event).await?;
        self.cache.invalidate();
        Ok(permission)
    }

    /// Revokes a user's system actions (their admin rights).
    pub async fn remove_system(&self, caller: &Principal, user_id: &str) -> Result<()> {
        caller.require_system(MANAGE_SYSTEM)?;
        let user =
            self.store.user(user_id).await?.ok_or_else(|| Error::NotFound(format!("user {user_id} not found")))?;
        let before = self.store.permission(user_id, DOMAIN_SYSTEM, None).await?.map(|p| p.actions);
        let event = NewEvent::permission(self.clock.now(), caller, &user, DOMAIN_SYSTEM, "", before, None);
        self.store.remove_permission(user_id, DOMAIN_SYSTEM, None, &event).await?;
        self.cache.invalidate();
        Ok(())
    }
}

/// Checks every action is known, drops duplicates, and orders them as `known` does.
pub(crate) fn canonical_actions(actions: &[String], known: &[&str]) -> Result<Vec<String>> {
    if actions.is_empty() {
        return Err(Error::invalid("actions", "actions must not be empty; to revoke, use DELETE"));
    }
    if let Some(unknown) = actions.iter().find(|a| !known.contains(&a.as_str())) {
        return Err(Error::invalid(
            "actions",
            format!("unknown action '{unknown}'; known actions: {}", known.join(", ")),
        ));
    }
    Ok(known.iter().filter(|k| actions.iter().any(|a| a == *k)).map(|k| k.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_checked_and_ordered() {
        let got =
            canonical_actions(&["manageUsers".into(), "manageSystem".into(), "manageUsers".into()], SYSTEM_ACTIONS)
                .unwrap();
        assert_eq!(got, vec!["manageSystem", "manageUsers"]);
        assert!(canonical_actions(&[], SYSTEM_ACTIONS).is_err());
        assert!(canonical_actions(&["root".into()], SYSTEM_ACTIONS).is_err());
    }
}
