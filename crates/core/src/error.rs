use crate::store::{Conflict, StoreError};

/// Every way a request to drydock's services can fail. The server maps each variant to
/// one HTTP status; `Internal` is logged and never shown.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    InvalidInput { field: String, message: String },
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A unique value (a name, an e-mail) is held by another: a conflict about one field.
    #[error("{message}")]
    Taken { field: String, message: String },
    #[error("too many failed sign-ins for this account; try again in {retry_after_secs} s")]
    Throttled { retry_after_secs: u64 },
    #[error("{0}")]
    Unavailable(String),
    /// Refused because the instance is in maintenance mode; the text is the operators' message.
    #[error("{0}")]
    Maintenance(String),
    /// Refused because the instance is a standby: it follows a primary and takes no changes.
    #[error("{0}")]
    Standby(String),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Error::InvalidInput { field: field.to_string(), message: message.into() }
    }

    pub fn internal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Internal(Box::new(e))
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Error::NotFound(format!("{what} not found")),
            StoreError::Conflict(Conflict::Taken { field, value }) => {
                Error::Taken { field: field.to_string(), message: format!("{field} '{value}' is already taken") }
            }
            StoreError::Conflict(Conflict::LastSystemAdmin) => Error::Conflict(
                "refused: this is the last user holding manageSystem; grant it to another user first".to_string(),
            ),
            StoreError::Conflict(Conflict::OwnsWorkspaces(names)) => Error::Conflict(format!(
                "the user owns workspaces: {}; delete them first, or remove the user with their workspaces",
                names.join(", ")
            )),
            StoreError::Conflict(Conflict::WorkspaceStatus(status)) => {
                Error::Conflict(format!("the workspace is {status}; stop it first"))
            }
            StoreError::Conflict(Conflict::Limit(message)) => Error::Conflict(message),
            StoreError::Conflict(Conflict::Seats(seats)) => Error::Conflict(format!(
                "the license allows {seats} users (seats) and all {seats} are taken: remove a user or install a \
                 license with more seats"
            )),
            StoreError::Conflict(Conflict::Busy) => {
                Error::Conflict("the database is busy with a conflicting change; try again".to_string())
            }
            StoreError::Other(e) => Error::Internal(e),
        }
    }
}
