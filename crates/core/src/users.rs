//! User administration: who may create, see, change and remove users.

use std::sync::Arc;

use crate::audit_log::{Actor, NewEvent, Target};
use crate::auth::PrincipalCache;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::license::SeatCap;
use crate::model::{CredentialKind, MANAGE_SYSTEM, MANAGE_USERS, NewUser, Page, Principal, User, UserFilter};
use crate::store::Store;
use crate::{ids, secret, validate};

/// What it takes to create a user.
#[derive(Debug, Clone)]
pub struct CreateUser {
    pub name: String,
    pub email: String,
    pub password: String,
}

pub struct Users {
    store: Arc<dyn Store>,
    cache: Arc<PrincipalCache>,
    clock: Arc<dyn Clock>,
    seats: Arc<SeatCap>,
}

impl Users {
    pub fn new(store: Arc<dyn Store>, cache: Arc<PrincipalCache>, clock: Arc<dyn Clock>, seats: Arc<SeatCap>) -> Self {
        Users { store, cache, clock, seats }
    }

    /// Creates a user (`manageUsers`), within the licensed seats: beyond them, 409 naming the
    /// seat count (checked in the transaction that inserts, so concurrent creations never
    /// exceed it).
    pub async fn create(&self, caller: &Principal, input: CreateUser) -> Result<User> {
        caller.require_system(MANAGE_USERS)?;
        self.insert(input, &[], caller.into()).await
    }

    /// Creates the first administrator, with both system actions. Used by `init` only.
    pub async fn bootstrap_admin(&self, input: CreateUser) -> Result<User> {
        self.insert(input, &[MANAGE_SYSTEM.to_string(), MANAGE_USERS.to_string()], Actor::host_cli()).await
    }

    async fn insert(&self, input: CreateUser, system_actions: &[String], actor: Actor) -> Result<User> {
        let name = input.name.trim().to_string();
        let email = input.email.trim().to_lowercase();
        validate::user_name(&name)?;
        validate::email(&email)?;
        validate::password("password", &input.password)?;
        let password = input.password;
        let password_hash = secret::blocking(move || secret::hash_password(&password)).await??;
        let user = NewUser { id: ids::user_id(), name, email, password_hash, created: self.clock.now() };
        let target = Target::new("user", &user.id, format!("{} <{}>", user.name, user.email));
        let event = NewEvent::new(user.created, actor, "user.create", target)
            .with("name", &user.name)
            .with("email", &user.email)
            .with("systemActions", system_actions);
        let seats = self.seats.get();
        Ok(self.store.create_user(&user, system_actions, seats, &event).await?)
    }

    /// Any signed-in user may look another up (to share a workspace with them, say).
    pub async fn get(&self, id: &str) -> Result<User> {
        self.store.user(id).await?.ok_or_else(|| Error::NotFound(format!("user {id} not found")))
    }

    pub async fn find_by_name(&self, name: &str) -> Result<User> {
        self.store.user_by_name(name.trim()).await?.ok_or_else(|| Error::NotFound(format!("no user is named '{name}'")))
    }

    pub async fn find_by_email(&self, email: &str) -> Result<User> {
        self.store
            .user_by_email(&email.trim().to_lowercase())
            .await?
            .ok_or_else(|| Error::NotFound(format!("no user has the e-mail '{email}'")))
    }

    pub async fn list(&self, caller: &Principal, filter: &UserFilter, page: Page) -> Result<(Vec<User>, u64)> {
        caller.require_system(MANAGE_USERS)?;
        Ok(self.store.list_users(filter, page).await?)
    }

    /// Changes a user's e-mail (`manageUsers`).
    pub async fn set_email(&self, caller: &Principal, id: &str, email: &str) -> Result<User> {
        caller.require_system(MANAGE_USERS)?;
        let email = email.trim().to_lowercase();
        validate::email(&email)?;
        let before = self.get(id).await?;
        let event = NewEvent::new(self.clock.now(), caller.into(), "user.update", Target::user(&before)).changed(
            "email",
            &before.email,
            &email,
        );
        let user = self.store.set_email(id, &email, &event).await.map_err(|e| match e {
            crate::StoreError::NotFound(_) => Error::NotFound(format!("user {id} not found")),
            e => e.into(),
        })?;
        self.cache.invalidate();
        Ok(user)
    }

    /// The system actions of every user who has any, by user id (the administrators).
    pub async fn system_actions(&self, caller: &Principal) -> Result<std::collections::HashMap<String, Vec<String>>> {
        caller.require_system(MANAGE_USERS)?;
        let all = self.store.permissions_in_domain(crate::model::DOMAIN_SYSTEM).await?;
        Ok(all.into_iter().map(|p| (p.user_id, p.actions)).collect())
    }

    pub async fn count(&self) -> Result<u64> {
        Ok(self.store.count_users().await?)
    }

    /// Removes a user with their sessions and tokens; the last `manageSystem` holder stays.
    pub async fn remove(&self, caller: &Principal, id: &str) -> Result<()> {
        caller.require_system(MANAGE_USERS)?;
        let user = self.get(id).await?;
        let event = NewEvent::new(self.clock.now(), caller.into(), "user.delete", Target::user(&user));
        self.store.delete_user(id, &event).await.map_err(|e| match e {
            crate::StoreError::NotFound(_) => Error::NotFound(format!("user {id} not found")),
            e => e.into(),
        })?;
        self.cache.invalidate();
        Ok(())
    }

    /// Sets a password. Users changing their own give their current password; a
    /// `manageUsers` holder may reset anyone else's. Other sessions of the user end.
    pub async fn set_password(
        &self,
        caller: &Principal,
        id: &str,
        new_password: &str,
        current_password: Option<&str>,
    ) -> Result<()> {
        let own = caller.user.id == id;
        if !own {
            caller.require_system(MANAGE_USERS)?;
        }
        let user = self.get(id).await?;
        validate::password("password", new_password)?;
        if own {
            let current = current_password
                .ok_or_else(|| {
                    Error::invalid("currentPassword", "currentPassword is required to change your own password")
                })?
                .to_string();
            let (_, hash) = self
                .store
                .user_for_login(&user.name)
                .await?
                .ok_or_else(|| Error::NotFound(format!("user {id} not found")))?;
            if !secret::blocking(move || secret::verify_password(&current, &hash)).await? {
                return Err(Error::Forbidden("currentPassword is wrong".into()));
            }
        }
        let password = new_password.to_string();
        let hash = secret::blocking(move || secret::hash_password(&password)).await??;
        // The password itself is never recorded: only that it changed, and by whom.
        let event = NewEvent::new(self.clock.now(), caller.into(), "user.update", Target::user(&user))
            .with("password", "changed")
            .with("otherSessionsEnded", true);
        self.store.set_password_hash(id, &hash, &event).await?;
        let keep = own.then_some(caller.credential_id.as_str());
        self.store.delete_credentials_of(id, CredentialKind::Session, keep).await?;
        self.cache.invalidate();
        Ok(())
    }
}
