//! drydock through its HTTP API, for the benchmarks that drive workspaces: a small client,
//! the engine they run on, and guards that delete what a run made, whatever happens.

use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bollard::Docker;
use serde_json::{Value, json};

use crate::http::{self, EventStream};

/// How long one start may take before the run is invalid.
pub const START_TIMEOUT: Duration = Duration::from_secs(120);
/// The machine's name in the workspaces (and the raw containers' host name and alias).
pub const MACHINE: &str = "dev";

pub async fn connect() -> Result<Docker> {
    let docker = Docker::connect_with_defaults().context("the Docker engine is not reachable")?;
    docker.negotiate_version().await.context("the Docker engine is not reachable")
}

pub async fn engine_description(docker: &Docker) -> String {
    let version = docker.version().await.ok().and_then(|v| v.version).unwrap_or_else(|| "unknown".into());
    let info = docker.info().await.ok();
    let driver = info.as_ref().and_then(|i| i.driver.clone()).unwrap_or_else(|| "unknown".into());
    let cgroup =
        info.as_ref().and_then(|i| i.cgroup_version.as_ref()).map(|c| format!(", cgroup {c}")).unwrap_or_default();
    format!("Docker Engine {version} (storage driver {driver}{cgroup})")
}

pub struct Api {
    pub url: String,
    pub token: String,
}

impl Api {
    pub fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let bearer = format!("Bearer {}", self.token);
        let mut headers = vec![("Accept", "application/json"), ("Authorization", bearer.as_str())];
        let text = body.map(Value::to_string);
        if text.is_some() {
            headers.push(("Content-Type", "application/json"));
        }
        let r = http::request(&self.url, method, path, &headers, text.as_deref())?;
        let value = if r.body.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&r.body).unwrap_or(Value::String(r.body))
        };
        Ok((r.status, value))
    }

    pub fn expect(&self, method: &str, path: &str, body: Option<&Value>, status: u16) -> Result<Value> {
        let (got, value) = self.call(method, path, body)?;
        ensure!(got == status, "{method} {path} answered {got}, not {status}: {value}");
        Ok(value)
    }

    pub fn status(&self, id: &str) -> Result<String> {
        let w = self.expect("GET", &format!("/api/workspace/{id}"), None, 200)?;
        Ok(w["status"].as_str().unwrap_or("").to_string())
    }

    /// Starts a workspace and waits for RUNNING on its event stream: the time from just
    /// before the POST to the RUNNING event.
    pub fn start(&self, id: &str) -> Result<Duration> {
        let mut events = self.watch(id)?;
        self.timed_start(id, &mut events, None)
    }

    /// The event stream of a workspace, past its first event (the current status, STOPPED).
    pub fn watch(&self, id: &str) -> Result<EventStream> {
        let bearer = format!("Bearer {}", self.token);
        let path = format!("/api/workspace/{id}/events");
        let mut events = EventStream::open(&self.url, &path, &[("Authorization", bearer.as_str())])?;
        let first = events.next_event(Instant::now() + Duration::from_secs(30)).context("the first event")?;
        let status: Value = serde_json::from_str(&first.data).unwrap_or_default();
        ensure!(status["status"] == "STOPPED", "workspace {id} is not STOPPED before its start: {}", first.data);
        Ok(events)
    }

    /// The POST, then events until RUNNING (an ERROR fails); `barrier`: wait there first.
    pub fn timed_start(&self, id: &str, events: &mut EventStream, barrier: Option<&Barrier>) -> Result<Duration> {
        if let Some(barrier) = barrier {
            barrier.wait();
        }
        let started = Instant::now();
        let answer = self.expect("POST", &format!("/api/workspace/{id}/runtime"), None, 200)?;
        ensure!(answer["status"] == "STARTING", "POST …/runtime of {id} answered a workspace not STARTING: {answer}");
        let deadline = started + START_TIMEOUT;
        loop {
            let event = events.next_event(deadline).with_context(|| format!("workspace {id}: waiting for RUNNING"))?;
            let data: Value = serde_json::from_str(&event.data).unwrap_or_default();
            match data["status"].as_str() {
                Some("RUNNING") => return Ok(started.elapsed()),
                Some("ERROR") | Some("STOPPED") | Some("STOPPING") => {
                    bail!("workspace {id}: the start ended {}: {}", data["status"], data["message"])
                }
                _ => {}
            }
        }
    }

    pub fn stop(&self, id: &str) -> Result<()> {
        self.expect("DELETE", &format!("/api/workspace/{id}/runtime"), None, 204)?;
        let status = self.status(id)?;
        ensure!(status == "STOPPED", "workspace {id} is {status} after its stop, not STOPPED");
        Ok(())
    }
}

/// The workspaces the benchmark made; dropping it stops and deletes them through the API.
pub struct Workspaces<'a> {
    pub api: &'a Api,
    pub ids: Vec<String>,
}

impl Workspaces<'_> {
    pub fn create(&mut self, name: &str, image: &str, memory_bytes: u64) -> Result<String> {
        let config = json!({
            "name": name,
            "defaultEnv": "default",
            "environments": { "default": {
                "recipe": { "type": "dockerimage", "location": image },
                "machines": { MACHINE: { "attributes": { "memoryLimitBytes": memory_bytes.to_string() } } }
            } }
        });
        let w = self.api.expect("POST", "/api/workspace", Some(&config), 201)?;
        let id = w["id"].as_str().with_context(|| format!("POST /api/workspace: no id in {w}"))?.to_string();
        self.ids.push(id.clone());
        Ok(id)
    }

    /// Deletes a stopped workspace.
    pub fn delete(&mut self, id: &str) -> Result<()> {
        self.api.expect("DELETE", &format!("/api/workspace/{id}"), None, 204)?;
        self.ids.retain(|i| i != id);
        Ok(())
    }

    /// Stops (when needed) and deletes every workspace made; the first error is returned
    /// after trying them all.
    pub fn delete_all(&mut self) -> Result<()> {
        let mut first_error = None;
        for id in std::mem::take(&mut self.ids) {
            let _ = self.api.call("DELETE", &format!("/api/workspace/{id}/runtime"), None);
            if let Err(e) = self.api.expect("DELETE", &format!("/api/workspace/{id}"), None, 204) {
                eprintln!("warning: cannot delete workspace {id}: {e:#}");
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Workspaces<'_> {
    fn drop(&mut self) {
        if !self.ids.is_empty() {
            eprintln!("deleting the benchmark's {} workspace(s)", self.ids.len());
            let _ = self.delete_all();
        }
    }
}

/// Removes every engine object labelled with the instance's id, once the server is stopped:
/// what deleting the workspaces through the API could not.
pub struct InstanceSweep {
    pub instance_id: Option<String>,
}

impl Drop for InstanceSweep {
    fn drop(&mut self) {
        let Some(id) = self.instance_id.take() else { return };
        let outcome = std::thread::spawn(move || -> Result<(), String> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            rt.block_on(drydock_docker::testing::remove_instance_objects(&id)).map_err(|e| e.to_string())
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: removing the instance's engine objects: {e}"),
            Err(_) => eprintln!("warning: removing the instance's engine objects panicked"),
        }
    }
}
