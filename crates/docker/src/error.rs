//! bollard's errors, turned into [`RuntimeError`]s that carry the engine's own reason.

use bollard::errors::Error;
use drydock_core::runtime::RuntimeError;

/// The engine's reason, without bollard's wrapping where the engine gave one.
pub fn reason(e: &Error) -> String {
    match e {
        Error::DockerResponseServerError { message, .. } => message.trim().to_string(),
        Error::DockerStreamError { error } => error.trim().to_string(),
        other => other.to_string(),
    }
}

pub fn engine(e: Error) -> RuntimeError {
    RuntimeError::Engine(reason(&e))
}

pub fn status(e: &Error) -> Option<u16> {
    match e {
        Error::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

pub fn not_found(e: &Error) -> bool {
    status(e) == Some(404)
}

/// What a removal may meet without failing: the object is gone, or already being removed.
pub fn gone_or_going(e: &Error) -> bool {
    match status(e) {
        Some(404) => true,
        Some(409) => reason(e).contains("already in progress"),
        _ => false,
    }
}
