//! The data drydock keeps, in the shapes the API returns (camelCase, Codenvy's names).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A user as the API shows it. The password hash never leaves the store through this type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: String,
    pub name: String,
    pub email: String,
    /// Codenvy's user shape carries aliases; drydock has none yet.
    pub aliases: Vec<String>,
    pub created: DateTime<Utc>,
}

/// A user about to be stored, with the password already hashed.
#[derive(Debug, Clone)]
pub struct NewUser {
    pub id: String,
    pub name: String,
    pub email: String,
    pub password_hash: String,
    pub created: DateTime<Utc>,
}

/// Codenvy's permission shape. System permissions have `domainId: "system"` and no instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Permission {
    pub user_id: String,
    pub domain_id: String,
    pub instance_id: Option<String>,
    pub actions: Vec<String>,
}

pub const DOMAIN_SYSTEM: &str = "system";
pub const MANAGE_SYSTEM: &str = "manageSystem";
pub const MANAGE_USERS: &str = "manageUsers";
/// The system actions drydock knows, in the order it prints them.
pub const SYSTEM_ACTIONS: &[&str] = &[MANAGE_SYSTEM, MANAGE_USERS];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialKind {
    /// Made by signing in; revoked by signing out or a password change.
    Session,
    /// A personal API token, made and revoked by its owner.
    Token,
}

impl CredentialKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Session => "session",
            CredentialKind::Token => "token",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "session" => Some(CredentialKind::Session),
            "token" => Some(CredentialKind::Token),
            _ => None,
        }
    }
}

/// A session or API token as stored: only the SHA-256 digest of the secret is kept.
#[derive(Debug, Clone)]
pub struct Credential {
    pub id: String,
    pub user_id: String,
    pub kind: CredentialKind,
    pub name: String,
    pub digest: String,
    pub created: DateTime<Utc>,
    pub expires: Option<DateTime<Utc>>,
    pub last_used: Option<DateTime<Utc>>,
}

/// How the caller proved who they are; unsafe requests by cookie also need the CSRF token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Cookie,
    Bearer,
}

/// The signed-in caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: User,
    pub system_actions: Vec<String>,
    pub credential_id: String,
    pub credential_kind: CredentialKind,
    /// The address the request came from (empty when not over the network); set per request.
    pub client: String,
}

impl Principal {
    /// The same principal, for a request from `client` (the cached one has no address).
    pub fn from_client(self: std::sync::Arc<Self>, client: &str) -> std::sync::Arc<Self> {
        if self.client == client {
            return self;
        }
        std::sync::Arc::new(Principal { client: client.to_string(), ..(*self).clone() })
    }

    pub fn has_system(&self, action: &str) -> bool {
        self.system_actions.iter().any(|a| a == action)
    }

    pub fn require_system(&self, action: &str) -> crate::Result<()> {
        if self.has_system(action) {
            Ok(())
        } else {
            Err(crate::Error::Forbidden(format!("this needs the system permission '{action}'")))
        }
    }
}

/// `maxItems` / `skipCount` of a list request.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    pub max_items: u32,
    pub skip_count: u64,
}

impl Page {
    pub const DEFAULT_MAX_ITEMS: u32 = 30;
    pub const LIMIT_MAX_ITEMS: u32 = 1000;
}

impl Default for Page {
    fn default() -> Self {
        Page { max_items: Self::DEFAULT_MAX_ITEMS, skip_count: 0 }
    }
}

/// A filter on the user list: parts of the name or e-mail, matched case-insensitively.
/// `text` matches either the name or the e-mail.
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    pub name_part: Option<String>,
    pub email_part: Option<String>,
    pub text: Option<String>,
}

/// One backup: recorded when it starts (`result` "running") and again when it ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackupRun {
    pub id: String,
    pub started: DateTime<Utc>,
    pub finished: Option<DateTime<Utc>>,
    /// What started it: `manual`, `schedule`, `api` or `upgrade`.
    pub trigger: String,
    /// The archive, once it has a name.
    pub file: Option<String>,
    /// The archive's size in bytes.
    pub size: Option<i64>,
    /// `running`, `ok` or `failed`.
    pub result: String,
    /// Why it failed, or what it noted.
    pub message: Option<String>,
}
