use std::path::{Path, PathBuf};

/// What went wrong in an operation on an instance; each message says what to do where it can.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("cannot {action} {}: {reason}", path.display())]
    Io { action: &'static str, path: PathBuf, reason: std::io::Error },
    /// A precondition is not met (the server runs, a version does not fit, …); nothing changed.
    #[error("{0}")]
    Refused(String),
    /// The archive does not match its manifest, or cannot be read.
    #[error("{} is not a sound drydock backup:\n{}", path.display(), problems.join("\n"))]
    Invalid { path: PathBuf, problems: Vec<String> },
    /// A step failed; `step` says which.
    #[error("{step}: {reason}")]
    Step { step: String, reason: String },
}

pub type Result<T, E = OpsError> = std::result::Result<T, E>;

impl OpsError {
    pub fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> OpsError + use<> {
        let path = path.to_path_buf();
        move |reason| OpsError::Io { action, path, reason }
    }

    /// For `map_err`: the failure of a named step, with the cause's message.
    pub fn step<E: std::fmt::Display>(step: impl Into<String>) -> impl FnOnce(E) -> OpsError {
        let step = step.into();
        move |reason| OpsError::Step { step, reason: reason.to_string() }
    }
}

/// Fails at a named point when `DRYDOCK_FAIL_POINT` names it: how the tests prove that a
/// failure midway leaves the instance as it was. Never set in production.
pub fn fail_point(name: &str) -> Result<()> {
    drydock_core::testing_hooks::fail_point(name).map_err(|e| OpsError::Step { reason: e.to_string(), step: e.point })
}

pub use drydock_core::testing_hooks::pause_point;
