//! The engine's event stream, turned into [`RuntimeEvent`]s, and what drydock knows about its
//! own stops so that they are not reported as deaths.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::models::EventMessage;
use bollard::query_parameters::EventsOptionsBuilder;
use drydock_core::runtime::{LABEL_INSTANCE, LABEL_MACHINE, LABEL_WORKSPACE, RuntimeEvent};
use futures::StreamExt;
use futures::stream::BoxStream;

use crate::error::not_found;

/// How long drydock remembers the containers whose deaths it accounts for itself: the engine
/// may deliver a `die` event after the call that caused it returned.
const MEMORY: Duration = Duration::from_secs(60);
/// Longer than any stop or start takes: a claim outlives an operation that was abandoned
/// (its future dropped) by this much at most.
const LONGEST_OPERATION: Duration = Duration::from_secs(15 * 60);

/// Containers whose deaths drydock accounts for itself, by id: those it is stopping or
/// removing (stop, remove, a failed start's clean-up), whose every death is its own doing, and
/// those a start is bringing up, whose deaths before the start's last check fail the start
/// (its error says why) and so are no event either.
#[derive(Default)]
pub struct OwnDeaths {
    entries: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    /// Deaths at or after this time are the machine's own (None: every death is drydock's).
    until: Option<SystemTime>,
    /// When the entry is forgotten.
    forget_at: Instant,
}

impl OwnDeaths {
    /// Every death of these containers is drydock's doing, from now on.
    pub fn claim<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        entries.retain(|_, entry| entry.forget_at > now);
        for id in ids {
            entries.insert(id.to_string(), Entry { until: None, forget_at: now + LONGEST_OPERATION });
        }
    }

    /// The operation on these containers ended; remember them for a while yet.
    pub fn finish<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            if let Some(entry) = entries.get_mut(id) {
                entry.forget_at = Instant::now() + MEMORY;
            }
        }
    }

    /// These containers run on their own from `since`: deaths from then on are reported.
    pub fn release<'a>(&self, ids: impl IntoIterator<Item = &'a str>, since: SystemTime) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            entries.insert(id.to_string(), Entry { until: Some(since), forget_at: Instant::now() + MEMORY });
        }
    }

    /// Whether a death of the container at `at` (the engine's time) is drydock's doing.
    pub fn covers(&self, id: &str, at: SystemTime) -> bool {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries
            .get(id)
            .is_some_and(|entry| entry.forget_at > Instant::now() && entry.until.is_none_or(|until| at < until))
    }
}

/// Why a machine is not running, in words: the exit code, the signal that killed it, or the
/// OOM killer; the engine's own error text (a failed start) is added when there is one.
pub fn exit_reason(exit_code: Option<i64>, oom_killed: bool, error: Option<&str>) -> String {
    let mut reason = if oom_killed {
        "killed (out of memory)".to_string()
    } else {
        match exit_code {
            // An init process (and a shell) reports a death by signal N as 128 + N.
            Some(code) if code > 128 && code <= 128 + 64 => {
                let signal = code - 128;
                match signal_name(signal) {
                    Some(name) => format!("killed by {name} (exit code {code})"),
                    None => format!("killed by signal {signal} (exit code {code})"),
                }
            }
            Some(code) => format!("exited with code {code}"),
            None => "stopped".to_string(),
        }
    };
    if let Some(error) = error.map(str::trim).filter(|e| !e.is_empty()) {
        reason.push_str(": ");
        reason.push_str(error);
    }
    reason
}

fn signal_name(signal: i64) -> Option<&'static str> {
    Some(match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        6 => "SIGABRT",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        15 => "SIGTERM",
        _ => return None,
    })
}

/// The engine's `die` events of this instance's containers from now on, as `MachineDied`;
/// `oom` events only mark the container so that its `die` says "out of memory" (a process
/// the OOM killer ended inside a machine that lives on is no death). Deaths drydock accounts
/// for itself ([`OwnDeaths`]) are left out. The stream ends when the engine's does (an engine
/// restart): the consumer subscribes again and reconciles.
pub fn machine_deaths(docker: Docker, instance: String, own: Arc<OwnDeaths>) -> BoxStream<'static, RuntimeEvent> {
    // `since` makes the subscription start now even though the request is only sent when the
    // stream is first polled.
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let since = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
    let filters = HashMap::from([
        ("type", vec!["container".to_string()]),
        ("event", vec!["die".to_string(), "oom".to_string()]),
        ("label", vec![format!("{LABEL_INSTANCE}={instance}")]),
    ]);
    let options = EventsOptionsBuilder::default().since(&since).filters(&filters).build();
    let engine_events = docker.events(Some(options)).boxed();
    struct State {
        docker: Docker,
        own: Arc<OwnDeaths>,
        oom_marked: HashSet<String>,
        engine_events: BoxStream<'static, Result<EventMessage, bollard::errors::Error>>,
    }
    let state = State { docker, own, oom_marked: HashSet::new(), engine_events };
    futures::stream::unfold(state, |mut state| async move {
        loop {
            let message = match state.engine_events.next().await {
                Some(Ok(message)) => message,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "the Docker engine's event stream failed");
                    return None;
                }
                None => return None,
            };
            let Some(actor) = message.actor else { continue };
            let Some(id) = actor.id else { continue };
            let attributes = actor.attributes.unwrap_or_default();
            match message.action.as_deref() {
                Some("oom") => {
                    // Only grows with containers that outlive an OOM kill inside them.
                    if state.oom_marked.len() > 10_000 {
                        state.oom_marked.clear();
                    }
                    state.oom_marked.insert(id);
                }
                Some("die") => {
                    let marked_oom = state.oom_marked.remove(&id);
                    let at = match (message.time_nano, message.time) {
                        (Some(nanos), _) => UNIX_EPOCH + Duration::from_nanos(nanos.max(0) as u64),
                        (None, Some(secs)) => UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64),
                        (None, None) => SystemTime::now(),
                    };
                    if state.own.covers(&id, at) {
                        continue;
                    }
                    let (Some(workspace_id), Some(machine)) =
                        (attributes.get(LABEL_WORKSPACE), attributes.get(LABEL_MACHINE))
                    else {
                        continue;
                    };
                    let mut exit_code = attributes.get("exitCode").and_then(|c| c.parse::<i64>().ok());
                    let mut oom = marked_oom;
                    match state.docker.inspect_container(&id, None).await {
                        Ok(container) => {
                            if let Some(s) = container.state {
                                oom |= s.oom_killed.unwrap_or(false);
                                exit_code = s.exit_code.or(exit_code);
                            }
                        }
                        Err(e) if not_found(&e) => {}
                        Err(e) => tracing::debug!(error = %e, "inspecting a container that died"),
                    }
                    return Some((
                        RuntimeEvent::MachineDied {
                            workspace_id: workspace_id.clone(),
                            machine: machine.clone(),
                            reason: exit_reason(exit_code, oom, None),
                            oom,
                        },
                        state,
                    ));
                }
                _ => {}
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons() {
        assert_eq!(exit_reason(Some(0), false, None), "exited with code 0");
        assert_eq!(exit_reason(Some(3), false, Some("")), "exited with code 3");
        assert_eq!(exit_reason(Some(137), false, None), "killed by SIGKILL (exit code 137)");
        assert_eq!(exit_reason(Some(137), true, None), "killed (out of memory)");
        assert_eq!(exit_reason(Some(127), false, Some("no such file")), "exited with code 127: no such file");
        assert_eq!(exit_reason(None, false, None), "stopped");
    }

    #[test]
    fn own_deaths() {
        let own = OwnDeaths::default();
        let now = SystemTime::now();
        let later = now + Duration::from_secs(5);
        own.claim(["stopping", "starting"]);
        assert!(own.covers("stopping", now) && own.covers("starting", later));
        own.finish(["stopping"]);
        assert!(own.covers("stopping", later));
        own.release(["starting"], now);
        assert!(own.covers("starting", now - Duration::from_secs(1)));
        assert!(!own.covers("starting", later));
        assert!(!own.covers("other", now));
    }
}
