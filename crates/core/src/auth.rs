//! Signing in and out, sessions, personal API tokens, and failed-login throttling.
//!
//! Sessions and tokens are random secrets stored as SHA-256 digests, so checking one is
//! one indexed lookup. Checked principals are cached in memory; every change that could
//! make a cached entry wrong (sign-out, revocation, user or permission change) empties the
//! cache at once, so revocation takes effect on the next request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use crate::audit_log::{Actor, NewEvent, Target};
use crate::clock::Clock;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::{Credential, CredentialKind, DOMAIN_SYSTEM, Principal, User};
use crate::secret::{self, SESSION_PREFIX, TOKEN_PREFIX};
use crate::store::Store;
use crate::{ids, validate};

/// The one message for a wrong name and a wrong password, so neither is revealed.
pub const BAD_LOGIN: &str = "wrong user name or password";
const NOT_SIGNED_IN: &str = "not signed in, or the session or token has expired or was revoked";
/// Last-used times are kept in memory and written at most this often per credential.
const LAST_USED_GRANULARITY_MS: i64 = 60_000;
const CACHE_MAX_ENTRIES: usize = 50_000;

#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub session_ttl: Duration,
    /// `None`: tokens do not expire.
    pub token_ttl: Option<Duration>,
    pub max_failed_logins: u32,
    pub failed_login_window: Duration,
    pub lockout: Duration,
}

impl AuthSettings {
    pub fn from_config(config: &Config) -> Self {
        let a = &config.auth;
        AuthSettings {
            session_ttl: a.session_ttl.0,
            token_ttl: (!a.token_ttl.0.is_zero()).then_some(a.token_ttl.0),
            max_failed_logins: a.max_failed_logins.max(1),
            failed_login_window: a.failed_login_window.0,
            lockout: a.lockout.0,
        }
    }
}

/// A personal API token as listed; the secret itself is shown only when it is created.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenInfo {
    pub id: String,
    pub name: String,
    pub created: DateTime<Utc>,
    pub expires: Option<DateTime<Utc>>,
    pub last_used: Option<DateTime<Utc>>,
}

impl From<&Credential> for TokenInfo {
    fn from(c: &Credential) -> Self {
        TokenInfo {
            id: c.id.clone(),
            name: c.name.clone(),
            created: c.created,
            expires: c.expires,
            last_used: c.last_used,
        }
    }
}

/// A new session: the secret goes to the cookie (and the response), never to a log.
pub struct NewSession {
    pub secret: String,
    pub csrf_token: String,
    pub user: User,
    pub expires: DateTime<Utc>,
}

struct CachedPrincipal {
    principal: Arc<Principal>,
    expires: Option<DateTime<Utc>>,
    last_marked_ms: AtomicI64,
}

/// Checked credentials by digest. The generation guards against a lookup that started
/// before an invalidation putting a stale entry back after it.
#[derive(Default)]
pub struct PrincipalCache {
    generation: AtomicU64,
    entries: RwLock<HashMap<[u8; 32], Arc<CachedPrincipal>>>,
}

impl PrincipalCache {
    pub fn invalidate(&self) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.clear();
    }

    fn get(&self, digest: &[u8; 32]) -> Option<Arc<CachedPrincipal>> {
        self.entries.read().unwrap_or_else(|e| e.into_inner()).get(digest).cloned()
    }

    fn insert(&self, generation: u64, digest: [u8; 32], entry: Arc<CachedPrincipal>) {
        let mut entries = self.entries.write().unwrap_or_else(|e| e.into_inner());
        if self.generation.load(Ordering::SeqCst) != generation {
            return;
        }
        if entries.len() >= CACHE_MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(digest, entry);
    }
}

#[derive(Default)]
struct Failures {
    times: Vec<DateTime<Utc>>,
}

pub struct Auth {
    store: Arc<dyn Store>,
    settings: AuthSettings,
    clock: Arc<dyn Clock>,
    cache: Arc<PrincipalCache>,
    failures: Mutex<HashMap<String, Failures>>,
    pending_last_used: Mutex<HashMap<String, DateTime<Utc>>>,
    /// A valid hash to verify against when the account does not exist, so a wrong name
    /// costs as much time as a wrong password.
    dummy_hash: String,
}

impl Auth {
    pub fn new(store: Arc<dyn Store>, settings: AuthSettings, clock: Arc<dyn Clock>) -> Self {
        Auth {
            store,
            settings,
            clock,
            cache: Arc::new(PrincipalCache::default()),
            failures: Mutex::new(HashMap::new()),
            pending_last_used: Mutex::new(HashMap::new()),
            dummy_hash: secret::hash_password(&ids::random_password()).unwrap_or_default(),
        }
    }

    pub fn cache_handle(&self) -> Arc<PrincipalCache> {
        self.cache.clone()
    }

    /// Who holds this session or token secret.
    pub async fn authenticate(&self, secret: &str) -> Result<Arc<Principal>> {
        let digest = secret::digest_bytes(secret);
        let now = self.clock.now();
        if let Some(entry) = self.cache.get(&digest) {
            if entry.expires.is_none_or(|e| e > now) {
                self.mark_used(&entry, now);
                return Ok(entry.principal.clone());
            }
            return Err(Error::Unauthorized(NOT_SIGNED_IN.into()));
        }
        let generation = self.cache.generation.load(Ordering::SeqCst);
        let (credential, user) = self
            .store
            .credential_by_digest(&hex::encode(digest))
            .await?
            .ok_or_else(|| Error::Unauthorized(NOT_SIGNED_IN.into()))?;
        if credential.expires.is_some_and(|e| e <= now) {
            return Err(Error::Unauthorized(NOT_SIGNED_IN.into()));
        }
        let system_actions =
            self.store.permission(&user.id, DOMAIN_SYSTEM, None).await?.map(|p| p.actions).unwrap_or_default();
        let entry = Arc::new(CachedPrincipal {
            principal: Arc::new(Principal {
                user,
                system_actions,
                credential_id: credential.id.clone(),
                credential_kind: credential.kind,
                client: String::new(),
            }),
            expires: credential.expires,
            last_marked_ms: AtomicI64::new(0),
        });
        self.mark_used(&entry, now);
        self.cache.insert(generation, digest, entry.clone());
        Ok(entry.principal.clone())
    }

    fn mark_used(&self, entry: &CachedPrincipal, now: DateTime<Utc>) {
        let ms = now.timestamp_millis();
        let last = entry.last_marked_ms.load(Ordering::Relaxed);
        if ms - last < LAST_USED_GRANULARITY_MS {
            return;
        }
        entry.last_marked_ms.store(ms, Ordering::Relaxed);
        let mut pending = self.pending_last_used.lock().unwrap_or_else(|e| e.into_inner());
        pending.insert(entry.principal.credential_id.clone(), now);
    }

    /// Writes the last-used times gathered since the previous flush.
    pub async fn flush_last_used(&self) -> Result<()> {
        let uses: Vec<(String, DateTime<Utc>)> = {
            let mut pending = self.pending_last_used.lock().unwrap_or_else(|e| e.into_inner());
            pending.drain().collect()
        };
        if !uses.is_empty() {
            self.store.record_last_used(&uses).await?;
        }
        Ok(())
    }

    /// Removes expired sessions and tokens from the store.
    pub async fn purge_expired(&self) -> Result<u64> {
        Ok(self.store.delete_expired_credentials(self.clock.now()).await?)
    }

    /// Signs in with a name or e-mail and a password, from the client at `client`. Throttled
    /// per account after too many failures: the caller gets `Throttled` without the password
    /// being checked. Every attempt is an audit event (the password never is).
    pub async fn login(&self, login: &str, password: &str, client: &str) -> Result<NewSession> {
        let login = login.trim().to_lowercase();
        let found = self.store.user_for_login(&login).await?;
        // Failures count per account, whether it was named by its name or its e-mail.
        let key = match &found {
            Some((user, _)) => user.id.clone(),
            None => format!("unknown:{login}"),
        };
        let target = match &found {
            Some((user, _)) => Target::user(user),
            None => Target::new("user", "", login.clone()),
        };
        let failure = |reason: &str| {
            NewEvent::new(self.clock.now(), Actor::anonymous(&login, client), "auth.signin", target.clone())
                .failed()
                .with("reason", reason)
        };
        if let Some(retry_after_secs) = self.throttled_for(&key) {
            self.store.append_event(&failure("throttled")).await?;
            return Err(Error::Throttled { retry_after_secs });
        }
        let (user, hash) = match found {
            Some((user, hash)) => (Some(user), hash),
            None => (None, self.dummy_hash.clone()),
        };
        let password = password.to_string();
        let ok = secret::blocking(move || secret::verify_password(&password, &hash)).await?;
        let user = match (user, ok) {
            (Some(user), true) => user,
            (found, _) => {
                self.record_failure(&key);
                let reason = if found.is_some() { "wrong password" } else { "no such user" };
                tracing::info!(client, reason, "a sign-in failed");
                self.store.append_event(&failure(reason)).await?;
                return Err(Error::Unauthorized(BAD_LOGIN.into()));
            }
        };
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
        let now = self.clock.now();
        let secret = secret::new_secret(SESSION_PREFIX);
        let expires = now + self.settings.session_ttl;
        let credential = Credential {
            id: ids::credential_id(),
            user_id: user.id.clone(),
            kind: CredentialKind::Session,
            name: "session".into(),
            digest: secret::digest(&secret),
            created: now,
            expires: Some(expires),
            last_used: Some(now),
        };
        let actor = Actor { id: user.id.clone(), name: user.name.clone(), client: client.to_string() };
        let event = NewEvent::new(now, actor, "auth.signin", Target::user(&user)).with("session", &credential.id);
        self.store.insert_credential(&credential, &event).await?;
        tracing::info!(user = %user.name, client, "signed in");
        Ok(NewSession { csrf_token: secret::csrf_token(&secret), secret, user, expires })
    }

    /// Seconds until the account may try again, when it is throttled now.
    fn throttled_for(&self, key: &str) -> Option<u64> {
        let now = self.clock.now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let record = failures.get_mut(key)?;
        let window = self.settings.failed_login_window;
        record.times.retain(|t| now.signed_duration_since(*t).to_std().is_ok_and(|age| age < window));
        let over = record.times.len().checked_sub(self.settings.max_failed_logins as usize)?;
        let last = *record.times.last()?;
        // The delay doubles with each failure past the limit, and never exceeds the window.
        let delay = self.settings.lockout.saturating_mul(1u32 << over.min(20)).min(window);
        let until = last + delay;
        (until > now).then(|| ((until - now).num_milliseconds().max(0) as u64).div_ceil(1000).max(1))
    }

    fn record_failure(&self, key: &str) {
        let now = self.clock.now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() > 100_000 {
            // A flood of distinct names: forget the oldest state rather than grow without bound.
            failures.clear();
        }
        failures.entry(key.to_string()).or_default().times.push(now);
    }

    /// Ends the caller's session (or, when called with a token, nothing but the token's cache).
    pub async fn logout(&self, caller: &Principal) -> Result<()> {
        if caller.credential_kind == CredentialKind::Session {
            let event = NewEvent::new(self.clock.now(), caller.into(), "auth.signout", Target::user(&caller.user))
                .with("session", &caller.credential_id);
            self.store.delete_credential(&caller.user.id, &caller.credential_id, &event).await?;
            self.cache.invalidate();
        }
        Ok(())
    }

    /// Creates a personal API token for the caller; the secret is returned once.
    pub async fn create_token(&self, caller: &Principal, name: &str) -> Result<(TokenInfo, String)> {
        validate::token_name(name)?;
        let expires = self.settings.token_ttl.map(|ttl| self.clock.now() + ttl);
        self.issue_token(&caller.user.id, name.trim(), expires, caller.into()).await
    }

    /// Issues a token for a user; `init` uses it without a caller (the actor is `cli`) to keep
    /// the first admin's CLI token.
    pub async fn issue_token(
        &self,
        user_id: &str,
        name: &str,
        expires: Option<DateTime<Utc>>,
        actor: Actor,
    ) -> Result<(TokenInfo, String)> {
        let secret = secret::new_secret(TOKEN_PREFIX);
        let credential = Credential {
            id: ids::credential_id(),
            user_id: user_id.to_string(),
            kind: CredentialKind::Token,
            name: name.to_string(),
            digest: secret::digest(&secret),
            created: self.clock.now(),
            expires,
            last_used: None,
        };
        let event =
            NewEvent::new(credential.created, actor, "token.create", Target::new("token", &credential.id, name))
                .with("user", user_id)
                .with("expires", expires);
        self.store.insert_credential(&credential, &event).await?;
        Ok((TokenInfo::from(&credential), secret))
    }

    pub async fn tokens(&self, caller: &Principal) -> Result<Vec<TokenInfo>> {
        let tokens = self.store.credentials_of(&caller.user.id, CredentialKind::Token).await?;
        Ok(tokens.iter().map(TokenInfo::from).collect())
    }

    /// Revokes one of the caller's tokens; another user's token id is "not found".
    pub async fn revoke_token(&self, caller: &Principal, id: &str) -> Result<()> {
        let tokens = self.store.credentials_of(&caller.user.id, CredentialKind::Token).await?;
        let Some(token) = tokens.iter().find(|t| t.id == id) else {
            return Err(Error::NotFound(format!("token {id} not found")));
        };
        let event =
            NewEvent::new(self.clock.now(), caller.into(), "token.revoke", Target::new("token", id, &token.name));
        self.store.delete_credential(&caller.user.id, id, &event).await?;
        self.cache.invalidate();
        Ok(())
    }
}
