//! `drydock workspace list|create|start|stop|delete|exec|snapshot|ssh`, through the running
//! server's API.
//!
//! A workspace is named by its id (`wksp-…`), by `namespace:name`, or by a plain name, which
//! means one of the caller's own (`<caller>:NAME`).

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::Subcommand;
use drydock_core::workspace::{WorkspaceConfig, spec};
use futures::{SinkExt, StreamExt};
use nix::sys::termios::{self, SetArg, Termios};
use reqwest::{Method, Response};
use serde_json::{Value, json};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::client::{Client, encode, is_not_found};
use crate::cmd::confirm;
use crate::cmd::user::Remote;
use crate::instance::DataDir;

/// How often a start (or stop) being waited for is also checked by a plain GET, in case the
/// event stream misses its end.
const POLL_EVERY: Duration = Duration::from_secs(2);
/// Workspaces asked for per page of the list.
const PAGE: usize = 100;
/// `ssh` with stdin at its end: how long the output must have been quiet before it closes.
const QUIET: Duration = Duration::from_secs(2);

#[derive(Subcommand, Debug)]
pub enum WorkspaceCommand {
    /// List your workspaces (and those shared with you; all of them for administrators).
    List {
        /// Only those in this status: STOPPED, STARTING, RUNNING, STOPPING or ERROR.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Create a workspace from a config file, or from an image (one machine, `dev`); prints its id.
    Create {
        /// A workspace config in Codenvy's JSON shape (`-` reads it from stdin).
        #[arg(long, required_unless_present = "image", conflicts_with = "image")]
        file: Option<PathBuf>,
        /// The image of the workspace's one machine (`dev`).
        #[arg(long, requires = "name")]
        image: Option<String>,
        /// The workspace's name (with --file: replaces the config's name).
        name: Option<String>,
        /// Memory of the machine in MiB (default: the server's runtime.machine_memory_mb).
        #[arg(long, requires = "image")]
        memory: Option<u64>,
        /// Start it too, and show the progress until it runs.
        #[arg(long)]
        start: bool,
        /// With --start: return once the start has begun.
        #[arg(long, requires = "start")]
        no_wait: bool,
        /// With --start: how long to wait for RUNNING, in seconds.
        #[arg(long, default_value_t = 300, requires = "start")]
        timeout: u64,
        #[command(flatten)]
        remote: Remote,
    },
    /// Start a workspace and show the progress until it runs or fails.
    Start {
        /// Id, namespace:name, or the name of one of yours.
        workspace: String,
        /// The environment to run (default: the config's defaultEnv).
        #[arg(long)]
        environment: Option<String>,
        /// Start from the latest snapshot (`drydock workspace snapshot`).
        #[arg(long)]
        restore: bool,
        /// Return once the start has begun.
        #[arg(long)]
        no_wait: bool,
        /// How long to wait for RUNNING, in seconds.
        #[arg(long, default_value_t = 300)]
        timeout: u64,
        #[command(flatten)]
        remote: Remote,
    },
    /// Stop a workspace: its containers go, its network and /projects stay.
    Stop {
        /// Id, namespace:name, or the name of one of yours.
        workspace: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// Delete a stopped workspace with its network and its /projects volume.
    Delete {
        /// Id, namespace:name, or the name of one of yours.
        workspace: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
        #[command(flatten)]
        remote: Remote,
    },
    /// Run a command in a running workspace, without a TTY; exits with the command's exit code.
    Exec {
        /// Id, namespace:name, or the name of one of yours.
        workspace: String,
        /// The machine (default: the dev machine).
        #[arg(long)]
        machine: Option<String>,
        /// How long the command may run, in seconds (server default: 60).
        #[arg(long)]
        timeout: Option<u64>,
        /// The command and its arguments (after `--` when they start with a dash).
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "COMMAND")]
        command: Vec<String>,
        #[command(flatten)]
        remote: Remote,
    },
    /// Commit every machine of a running workspace to an image; `start --restore` starts from it.
    Snapshot {
        /// Id, namespace:name, or the name of one of yours.
        workspace: String,
        #[command(flatten)]
        remote: Remote,
    },
    /// An interactive shell in a machine of a running workspace (over the terminal WebSocket).
    Ssh {
        /// Id, namespace:name, or the name of one of yours.
        workspace: String,
        /// The machine (default: the dev machine).
        machine: Option<String>,
        #[command(flatten)]
        remote: Remote,
    },
}

pub async fn run(dir: &DataDir, command: WorkspaceCommand) -> Result<ExitCode> {
    match command {
        WorkspaceCommand::List { status, json, remote } => {
            let client = Client::connect(dir, remote.url.as_deref())?;
            let all = list_all(&client, status.as_deref()).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                println!("{:<40} {:<22} {:<9} MACHINES", "NAMESPACE:NAME", "ID", "STATUS");
                for ws in &all {
                    println!(
                        "{:<40} {:<22} {:<9} {}",
                        label(ws),
                        text(ws, "id"),
                        text(ws, "status"),
                        machine_names(ws).join(",")
                    );
                }
            }
        }
        WorkspaceCommand::Create { file, image, name, memory, start, no_wait, timeout, remote } => {
            let config = match (file, image) {
                (Some(file), _) => {
                    let mut config = read_config(&file)?;
                    if let Some(name) = name {
                        config["name"] = Value::String(name);
                    }
                    config
                }
                (None, Some(image)) => image_config(name.as_deref().unwrap_or_default(), &image, memory),
                (None, None) => bail!("give --file CONFIG.json or --image IMAGE NAME"),
            };
            let client = Client::connect(dir, remote.url.as_deref())?;
            let path = if start { "/api/workspace?start-after-create=true" } else { "/api/workspace" };
            let ws: Value = client.send_json(Method::POST, path, &config).await?;
            let id = text(&ws, "id").to_string();
            eprintln!("created workspace {} with id {id}", label(&ws));
            println!("{id}");
            if start {
                if ws["status"] == "STOPPED" {
                    // A server that does not start after create: start it here.
                    begin_start(&client, &ws, None, false, no_wait, timeout).await?;
                } else if !no_wait {
                    let events = open_events(&client, &id).await;
                    follow(&client, &ws, events, false, timeout).await?;
                }
                eprintln!("workspace {} is {}", label(&ws), if no_wait { "STARTING" } else { "RUNNING" });
            }
        }
        WorkspaceCommand::Start { workspace, environment, restore, no_wait, timeout, remote } => {
            let client = Client::connect(dir, remote.url.as_deref())?;
            let ws = resolve(&client, &workspace).await?;
            begin_start(&client, &ws, environment.as_deref(), restore, no_wait, timeout).await?;
            if no_wait {
                println!("workspace {} is STARTING", label(&ws));
            } else {
                println!("workspace {} is RUNNING", label(&ws));
            }
        }
        WorkspaceCommand::Stop { workspace, remote } => {
            let client = Client::connect(dir, remote.url.as_deref())?;
            let ws = resolve(&client, &workspace).await?;
            let id = text(&ws, "id");
            client.call(Method::DELETE, &format!("/api/workspace/{}/runtime", encode(id))).await?;
            // A workspace that was still starting stops once its start ends.
            let deadline = Instant::now() + Duration::from_secs(300);
            loop {
                let now: Value = client.get(&format!("/api/workspace/{}", encode(id))).await?;
                match now["status"].as_str() {
                    Some("STOPPED") => break,
                    Some("STOPPING" | "STARTING") if Instant::now() < deadline => {
                        tokio::time::sleep(Duration::from_millis(250)).await
                    }
                    other => bail!("workspace {} is {} after the stop", label(&ws), other.unwrap_or("unknown")),
                }
            }
            println!("workspace {} is STOPPED", label(&ws));
        }
        WorkspaceCommand::Delete { workspace, yes, remote } => {
            let client = Client::connect(dir, remote.url.as_deref())?;
            let ws = resolve(&client, &workspace).await?;
            let id = text(&ws, "id");
            confirm(
                &format!("Delete workspace {} ({id}) with its /projects volume and everything in it?", label(&ws)),
                yes,
            )?;
            client.call(Method::DELETE, &format!("/api/workspace/{}", encode(id))).await?;
            println!("deleted workspace {}", label(&ws));
        }
        WorkspaceCommand::Exec { workspace, machine, timeout, command, remote } => {
            let client = Client::connect(dir, remote.url.as_deref())?;
            let ws = resolve(&client, &workspace).await?;
            let mut body = json!({ "command": command });
            if let Some(machine) = machine {
                body["machine"] = json!(machine);
            }
            if let Some(timeout) = timeout {
                body["timeoutSeconds"] = json!(timeout);
            }
            let path = format!("/api/workspace/{}/exec", encode(text(&ws, "id")));
            let out: Value = client.send_json(Method::POST, &path, &body).await?;
            std::io::stdout().write_all(text(&out, "stdout").as_bytes()).context("cannot write stdout")?;
            std::io::stdout().flush().ok();
            std::io::stderr().write_all(text(&out, "stderr").as_bytes()).context("cannot write stderr")?;
            let code = out["exitCode"].as_i64().ok_or_else(|| anyhow!("the server's answer has no exitCode"))?;
            return Ok(ExitCode::from(u8::try_from(code).unwrap_or(255)));
        }
        WorkspaceCommand::Snapshot { workspace, remote } => {
            let client = Client::connect(dir, remote.url.as_deref())?;
            let ws = resolve(&client, &workspace).await?;
            let path = format!("/api/workspace/{}/snapshot", encode(text(&ws, "id")));
            let images: Value =
                client.call(Method::POST, &path).await?.json().await.context("cannot read the snapshot's images")?;
            let images = images.as_object().ok_or_else(|| anyhow!("the server's answer is not machine → image"))?;
            for (machine, image) in images {
                println!("{machine} {}", image.as_str().unwrap_or_default());
            }
        }
        WorkspaceCommand::Ssh { workspace, machine, remote } => {
            let client = Client::connect(dir, remote.url.as_deref())?;
            let ws = resolve(&client, &workspace).await?;
            // The remote shell's exit code is ours (255 when the server could not say).
            let code = ssh(&client, &ws, machine.as_deref()).await?;
            return Ok(ExitCode::from(code.map_or(255, |c| u8::try_from(c).unwrap_or(255))));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// An interactive shell over `GET /api/workspace/{key}/terminal`. With a terminal on stdin:
/// raw mode for the session (restored on the way out, errors too), its size at the start and
/// on every SIGWINCH. Keystrokes go as binary frames, output goes to stdout as it comes.
/// Ends when the shell does (the server closes the socket). Without a terminal, stdin is
/// copied as it comes; once it ends, the session closes after the output has been quiet for
/// [`QUIET`] (or when the shell ends first, e.g. on an `exit` read from stdin). Returns the
/// shell's exit code when it ended and the server said it (in the close frame); `Some(0)`
/// when the session was closed from this side after the quiet time.
async fn ssh(client: &Client, ws: &Value, machine: Option<&str>) -> Result<Option<i64>> {
    let tty = std::io::stdin().is_terminal();
    let mut query = Vec::new();
    if let Some(machine) = machine {
        query.push(format!("machine={}", encode(machine)));
    }
    if tty && let Some((cols, rows)) = window_size().await {
        query.push(format!("cols={cols}&rows={rows}"));
    }
    let mut path = format!("/api/workspace/{}/terminal", encode(text(ws, "id")));
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query.join("&"));
    }
    let socket = client.websocket(&path).await?;
    let _raw = if tty { Some(RawMode::enter()?) } else { None };
    let (mut to_server, mut from_server) = socket.split();

    // A thread, not tokio's stdin: a read blocked on the terminal must not hold the runtime
    // open at exit.
    let (keys_sender, mut keys) = mpsc::channel::<Vec<u8>>(16);
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buffer = [0u8; 4096];
        loop {
            match stdin.read(&mut buffer) {
                Ok(0) => return,
                Ok(n) => {
                    if keys_sender.blocking_send(buffer[..n].to_vec()).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    });
    let mut resized =
        if tty { Some(signal(SignalKind::window_change()).context("cannot watch SIGWINCH")?) } else { None };
    let mut stdin_open = true;
    let mut quiet_until = Instant::now();
    let mut stdout = std::io::stdout();
    let mut exit_code = Some(0);
    loop {
        tokio::select! {
            frame = from_server.next() => match frame {
                Some(Ok(Message::Binary(bytes))) => {
                    stdout.write_all(&bytes).and_then(|()| stdout.flush()).context("cannot write stdout")?;
                    quiet_until = Instant::now() + QUIET;
                }
                Some(Ok(Message::Text(t))) => {
                    stdout.write_all(t.as_bytes()).and_then(|()| stdout.flush()).context("cannot write stdout")?;
                    quiet_until = Instant::now() + QUIET;
                }
                Some(Ok(Message::Close(frame))) => {
                    exit_code = frame
                        .and_then(|f| serde_json::from_str::<Value>(&f.reason).ok())
                        .and_then(|v| v["exitCode"].as_i64());
                    break;
                }
                None => {
                    exit_code = None;
                    break;
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(anyhow::Error::new(e).context("the terminal's connection failed")),
            },
            bytes = keys.recv(), if stdin_open => match bytes {
                Some(bytes) => to_server.send(Message::Binary(bytes.into())).await.context("the terminal's connection failed")?,
                None => {
                    stdin_open = false;
                    quiet_until = quiet_until.max(Instant::now() + QUIET);
                }
            },
            Some(()) = async { resized.as_mut().expect("only polled with a terminal").recv().await }, if resized.is_some() => {
                if let Some((cols, rows)) = window_size().await {
                    let resize = json!({"type": "resize", "cols": cols, "rows": rows}).to_string();
                    to_server.send(Message::Text(resize.into())).await.context("the terminal's connection failed")?;
                }
            }
            () = tokio::time::sleep_until(quiet_until), if !stdin_open => break,
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(1), to_server.close()).await;
    Ok(exit_code)
}

/// The terminal's size as (columns, rows). There is no safe ioctl (and `unsafe` is forbidden
/// here), so `stty size` reads it from /dev/tty; else `COLUMNS` and `LINES`.
async fn window_size() -> Option<(u16, u16)> {
    if let Ok(tty) = std::fs::File::open("/dev/tty") {
        let out = tokio::process::Command::new("stty")
            .arg("size")
            .stdin(tty)
            .stderr(std::process::Stdio::null())
            .output()
            .await;
        if let Some(out) = out.ok().filter(|o| o.status.success()) {
            let size = String::from_utf8_lossy(&out.stdout);
            let mut parts = size.split_whitespace().map(|p| p.parse::<u16>().ok());
            if let (Some(Some(rows)), Some(Some(cols))) = (parts.next(), parts.next())
                && rows > 0
                && cols > 0
            {
                return Some((cols, rows));
            }
        }
    }
    let var = |name: &str| std::env::var(name).ok()?.trim().parse::<u16>().ok().filter(|&n| n > 0);
    Some((var("COLUMNS")?, var("LINES")?))
}

/// Stdin's terminal in raw mode while this lives; the previous mode comes back on drop.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter() -> Result<RawMode> {
        let stdin = std::io::stdin();
        let saved = termios::tcgetattr(&stdin).context("cannot read the terminal's mode")?;
        let mut raw = saved.clone();
        termios::cfmakeraw(&mut raw);
        termios::tcsetattr(&stdin, SetArg::TCSANOW, &raw).context("cannot put the terminal in raw mode")?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), SetArg::TCSADRAIN, &self.saved);
    }
}

/// Starts a workspace; unless `no_wait`, shows its progress until it runs and fails when
/// it does not. The events are watched before the start is asked for, so no progress is lost.
async fn begin_start(
    client: &Client,
    ws: &Value,
    environment: Option<&str>,
    restore: bool,
    no_wait: bool,
    timeout: u64,
) -> Result<()> {
    let id = text(ws, "id");
    let events = if no_wait { None } else { open_events(client, id).await };
    let mut query = Vec::new();
    if let Some(env) = environment {
        query.push(format!("environment={}", encode(env)));
    }
    if restore {
        query.push("restore=true".to_string());
    }
    let mut path = format!("/api/workspace/{}/runtime", encode(id));
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query.join("&"));
    }
    client.call(Method::POST, &path).await?;
    if no_wait {
        return Ok(());
    }
    // The stream's first event is the status from before the start.
    follow(client, ws, events, true, timeout).await
}

/// The workspace's event stream, or `None` (then only polling is used).
async fn open_events(client: &Client, id: &str) -> Option<mpsc::Receiver<Value>> {
    let response = client.call(Method::GET, &format!("/api/workspace/{}/events", encode(id))).await.ok()?;
    let (sender, receiver) = mpsc::channel(64);
    tokio::spawn(read_events(response, sender));
    Some(receiver)
}

/// Reads server-sent events (`event:` and `data:` lines, a blank line after each) and sends
/// each one's data; comment lines (keep-alives) are skipped.
async fn read_events(mut response: Response, sender: mpsc::Sender<Value>) {
    let mut buffer: Vec<u8> = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        buffer.extend(chunk.iter().filter(|&&b| b != b'\r'));
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let block: Vec<u8> = buffer.drain(..end + 2).collect();
            let block = String::from_utf8_lossy(&block);
            let data: Vec<&str> = block
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if data.is_empty() {
                continue;
            }
            let Ok(event) = serde_json::from_str::<Value>(&data.join("\n")) else { continue };
            if sender.send(event).await.is_err() {
                return;
            }
        }
    }
}

/// Follows a starting workspace until it is RUNNING (Ok) or fails (the error's message):
/// its events as they come (progress printed on stderr), and a plain GET every few seconds
/// in case the stream ends or misses the end; gives up after `timeout` seconds.
async fn follow(
    client: &Client,
    ws: &Value,
    mut events: Option<mpsc::Receiver<Value>>,
    mut skip_first: bool,
    timeout: u64,
) -> Result<()> {
    let id = text(ws, "id");
    let name = label(ws);
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let mut poll = tokio::time::interval_at(Instant::now() + POLL_EVERY, POLL_EVERY);
    let mut last = "STARTING".to_string();
    loop {
        tokio::select! {
            event = async { events.as_mut().expect("only polled with a stream").recv().await }, if events.is_some() => {
                let Some(event) = event else {
                    events = None;
                    continue;
                };
                if std::mem::take(&mut skip_first) {
                    continue;
                }
                let message = text(&event, "message");
                match (event["kind"].as_str(), event["status"].as_str()) {
                    (_, Some("RUNNING")) => return Ok(()),
                    (_, Some("ERROR")) | (Some("error"), _) => bail!("workspace {name} failed to start: {message}"),
                    (_, Some("STOPPED")) => bail!("workspace {name} was stopped before it ran ({message})"),
                    (_, Some(status)) => {
                        last = status.to_string();
                        eprintln!("{status}: {message}");
                    }
                    _ => eprintln!("  {message}"),
                }
            }
            _ = poll.tick() => {
                let now: Value = client.get(&format!("/api/workspace/{}", encode(id))).await?;
                match now["status"].as_str() {
                    Some("RUNNING") => return Ok(()),
                    Some("ERROR") => {
                        let why = now["attributes"]["errorMessage"].as_str().unwrap_or("no reason given");
                        bail!("workspace {name} failed to start: {why}")
                    }
                    Some("STOPPED") => bail!("workspace {name} was stopped before it ran"),
                    Some(status) => last = status.to_string(),
                    None => {}
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                bail!(
                    "workspace {name} is still {last} after {timeout} s; the start goes on in the server \
                     (see `drydock workspace list`)"
                )
            }
        }
    }
}

/// A workspace by id, `namespace:name`, or a name of the caller's own.
async fn resolve(client: &Client, key: &str) -> Result<Value> {
    let get = |key: String| async move { client.get::<Value>(&format!("/api/workspace/{}", encode(&key))).await };
    if key.contains(':') {
        return get(key.to_string()).await.map_err(|e| not_found(e, key));
    }
    if key.starts_with("wksp-") {
        match get(key.to_string()).await {
            Err(e) if is_not_found(&e) => {}
            other => return other,
        }
    }
    let me: Value = client.get("/api/user").await?;
    let full = format!("{}:{key}", text(&me, "name"));
    get(full).await.map_err(|e| not_found(e, key))
}

fn not_found(e: anyhow::Error, key: &str) -> anyhow::Error {
    if is_not_found(&e) {
        anyhow!("no workspace '{key}' (give its id, namespace:name, or the name of one of yours)")
    } else {
        e
    }
}

async fn list_all(client: &Client, status: Option<&str>) -> Result<Vec<Value>> {
    let filter = status.map(|s| format!("&status={}", encode(&s.to_uppercase()))).unwrap_or_default();
    let mut all: Vec<Value> = Vec::new();
    loop {
        let path = format!("/api/workspace?maxItems={PAGE}&skipCount={}{filter}", all.len());
        let response = client.call(Method::GET, &path).await?;
        let total: Option<usize> =
            response.headers().get("x-total-count").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
        let page: Vec<Value> = response.json().await.context("cannot read the list of workspaces")?;
        let done = page.is_empty() || total.map_or(page.len() < PAGE, |t| all.len() + page.len() >= t);
        all.extend(page);
        if done {
            return Ok(all);
        }
    }
}

/// `namespace:name` of a workspace as the API returns it.
fn label(ws: &Value) -> String {
    format!("{}:{}", text(ws, "namespace"), ws["config"]["name"].as_str().unwrap_or(""))
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// The machines of a workspace: those running, else those its environment defines.
fn machine_names(ws: &Value) -> Vec<String> {
    if let Some(machines) = ws["runtime"]["machines"].as_object() {
        return machines.keys().cloned().collect();
    }
    let Ok(config) = serde_json::from_value::<WorkspaceConfig>(ws["config"].clone()) else { return Vec::new() };
    spec::machines(&config, &config.default_env, 0).map(|m| m.into_iter().map(|m| m.name).collect()).unwrap_or_default()
}

fn read_config(file: &std::path::Path) -> Result<Value> {
    let mut raw = String::new();
    if file.as_os_str() == "-" {
        std::io::stdin().read_to_string(&mut raw).context("cannot read the config from stdin")?;
    } else {
        raw = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    }
    let config: Value =
        serde_json::from_str(&raw).with_context(|| format!("{} is not a JSON workspace config", file.display()))?;
    if !config.is_object() {
        bail!("{} is not a JSON workspace config (an object)", file.display());
    }
    Ok(config)
}

/// A one-machine config: the image as a `dockerimage` recipe, the machine `dev`.
fn image_config(name: &str, image: &str, memory_mb: Option<u64>) -> Value {
    let mut machine = json!({});
    if let Some(mb) = memory_mb {
        machine["attributes"] = json!({ "memoryLimitBytes": (mb * 1024 * 1024).to_string() });
    }
    json!({"name": name, "defaultEnv": "default", "environments": {"default": {
        "recipe": {"type": "dockerimage", "location": image},
        "machines": {(spec::DEFAULT_MACHINE): machine}}}})
}
