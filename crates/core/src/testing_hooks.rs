//! Test-only hooks, named points in the code where a test makes drydock fail or wait, through
//! the environment (`DRYDOCK_FAIL_POINT`, `DRYDOCK_PAUSE_POINT`). Never set in production: an
//! unset variable costs one environment read.

/// A failure injected at a named point by `DRYDOCK_FAIL_POINT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failure injected by DRYDOCK_FAIL_POINT")]
pub struct InjectedFailure {
    /// The point's name.
    pub point: String,
}

/// Fails at a named point when `DRYDOCK_FAIL_POINT` names it: how the tests prove that a
/// failure midway leaves the instance as it was.
pub fn fail_point(name: &str) -> Result<(), InjectedFailure> {
    match std::env::var("DRYDOCK_FAIL_POINT") {
        Ok(point) if point == name => Err(InjectedFailure { point: point.clone() }),
        _ => Ok(()),
    }
}

fn pauses_at(name: &str) -> bool {
    std::env::var("DRYDOCK_PAUSE_POINT").is_ok_and(|p| p == name)
}

/// Waits forever at a named point when `DRYDOCK_PAUSE_POINT` names it, after writing
/// `paused at <name>` to stderr: how the tests hold an operation midway, deterministically.
/// Blocks the thread; in async code use [`pause_point_async`].
pub fn pause_point(name: &str) {
    if pauses_at(name) {
        eprintln!("paused at {name} (DRYDOCK_PAUSE_POINT)");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(3600));
        }
    }
}

/// [`pause_point`] for async code: the wait happens on a blocking thread, so the runtime's
/// workers keep serving other requests. Returns at once when the point is not named.
pub async fn pause_point_async(name: &'static str) {
    if pauses_at(name) {
        let _ = tokio::task::spawn_blocking(move || pause_point(name)).await;
    }
}
