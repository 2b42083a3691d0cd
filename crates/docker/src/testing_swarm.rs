//! Docker Swarm for tests: a one-node swarm of the local engine, or the local engine as manager
//! plus a second engine, in a network namespace of its own on this machine, joined as a worker.
//! Everything is done with the `docker`, `ip`, `nsenter`, `kill` and `umount` commands, and
//! undone when the [`TestSwarm`] is dropped.
//!
//! A `TestSwarm` changes the engine itself, so only one exists at a time on a machine: each holds
//! the abstract Unix socket `@drydock-test-swarm` (gone with its process), and a second one
//! waits for it. The two-node swarm uses fixed names, so that what a crashed run left is found
//! and cleaned up before the next setup: the network namespace `ddswarm2`, the veth pair
//! `ddsw0` (host, 10.231.0.1/24) / `ddsw1` (namespace, 10.231.0.2/24), and the worker engine's
//! directory `/tmp/ddswarm2.<pid>` (its data and exec roots, socket, pidfile and log), and a
//! swarm of the local engine advertising 10.231.0.1.
//!
//! For test writers: where the kernel has no IPVS (as on the machine this was written on:
//! dockerd logs "Could not get ipvs family information"), a service's virtual IP does not
//! route, nor does the ingress routing mesh; services reach each other by name only with
//! `--endpoint-mode dnsrr` (the name then resolves to the tasks' own addresses, which route
//! across nodes over the overlay network). Removing a service takes the engine several seconds
//! to remove its containers.
//!
//! Setting up needs root. Nothing here is used by drydock itself.

use std::fs::{self, File};
use std::io::Read;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The network namespace of the worker engine.
pub const NETNS: &str = "ddswarm2";
/// The veth pair's ends: in the host's namespace and in the worker's.
const HOST_VETH: &str = "ddsw0";
const WORKER_VETH: &str = "ddsw1";
/// The manager's address in a two-node swarm (on `ddsw0`).
const MANAGER_ADDRESS: &str = "10.231.0.1";
/// The worker's address (on `ddsw1`).
const WORKER_ADDRESS: &str = "10.231.0.2";
/// Where the worker engine also listens, with TLS.
const WORKER_TLS_PORT: u16 = 2376;
/// The manager's address in a one-node swarm.
const LOCAL_ADDRESS: &str = "127.0.0.1";
/// The worker engine's directories are `/tmp/ddswarm2.<pid>` (short: the socket's path must
/// stay under the ~108 bytes of a Unix socket address).
const DIR_PREFIX: &str = "/tmp/ddswarm2.";
/// The abstract socket a `TestSwarm` holds while it exists.
const LOCK_NAME: &[u8] = b"drydock-test-swarm";

/// The registry address the worker engine of [`TestSwarm::two_nodes`] accepts over plain HTTP
/// (`--insecure-registry`), for tests that run a registry on the manager's address. The local
/// engine accepts plain HTTP only from 127.0.0.0/8 unless its own configuration says more.
pub const WORKER_INSECURE_REGISTRY: &str = "10.231.0.1:5000";

/// How long a `docker` command may take unless told otherwise.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `docker save | docker load` of one image may take.
const COPY_TIMEOUT: Duration = Duration::from_secs(300);
/// How long the worker engine may take to answer after it was started.
const ENGINE_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the worker may take to show `Ready` on the manager.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the worker engine has to stop on SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a second `TestSwarm` waits for the first one to go.
const LOCK_TIMEOUT: Duration = Duration::from_secs(300);
/// How often conditions are polled.
const POLL: Duration = Duration::from_millis(200);

/// A swarm a test made (or found), left and cleaned up when dropped.
#[derive(Debug)]
pub struct TestSwarm {
    manager_node: String,
    manager_address: String,
    /// Whether this swarm was made here (`swarm init` was run), so that drop leaves it.
    made: bool,
    worker: Option<Worker>,
    /// Held while the swarm exists: see the module's documentation.
    _lock: UnixListener,
}

/// The second engine of a two-node swarm.
#[derive(Debug)]
struct Worker {
    /// `/tmp/ddswarm2.<pid>`: data root `d`, exec root `e`, `docker.sock`, `dockerd.pid`,
    /// `dockerd.log`, `daemon.json`.
    dir: PathBuf,
    /// `unix://<dir>/docker.sock`.
    endpoint: String,
    /// Its node id, once it joined.
    node: Option<String>,
    /// Its dockerd, once started here.
    dockerd: Option<Child>,
}

impl TestSwarm {
    /// A one-node swarm of the local engine: `swarm init --advertise-addr 127.0.0.1` when the
    /// engine is in no swarm (and then left, with docker_gwbridge removed, on drop); an engine
    /// already a swarm manager is used as it is and left alone on drop.
    pub fn single_node() -> Result<TestSwarm, String> {
        let lock = lock()?;
        clean_leftovers();
        let state = swarm_state(None)?;
        if state.is_manager() {
            return Ok(TestSwarm {
                manager_node: state.node_id,
                manager_address: state.node_addr,
                made: false,
                worker: None,
                _lock: lock,
            });
        }
        if state.local_node_state != "inactive" {
            return Err(format!(
                "the local engine is in a swarm but not as a manager ({}): it cannot be a one-node test swarm",
                state.describe()
            ));
        }
        let mut swarm = TestSwarm {
            manager_node: String::new(),
            manager_address: LOCAL_ADDRESS.to_string(),
            made: true,
            worker: None,
            _lock: lock,
        };
        // From here on, dropping `swarm` undoes whatever was done.
        docker(
            None,
            &["swarm", "init", "--advertise-addr", LOCAL_ADDRESS, "--listen-addr", &format!("{LOCAL_ADDRESS}:2377")],
            COMMAND_TIMEOUT,
        )?;
        swarm.manager_node = swarm_state(None)?.node_id;
        Ok(swarm)
    }

    /// The local engine as manager (advertising 10.231.0.1) plus a second engine in its own
    /// network namespace joined as a worker, with the given images copied into it
    /// (docker save | docker load). Fails with a clear reason when the engine is already in
    /// a swarm or something cannot be set up. Everything is undone on drop, even after a
    /// partial setup: worker leaves and its dockerd is stopped (SIGTERM, wait up to 20 s,
    /// then SIGKILL), its data/exec root removed (unmount anything still mounted under them
    /// first), veth and netns deleted, manager leaves (--force), docker_gwbridge removed.
    ///
    /// The worker engine runs with the local engine's storage driver, `--iptables=false`,
    /// `--bridge=none` and `--insecure-registry 10.231.0.1:5000`
    /// ([`WORKER_INSECURE_REGISTRY`]). Both engines report the same host name: tell them apart
    /// by node id.
    pub fn two_nodes(images: &[&str]) -> Result<TestSwarm, String> {
        let lock = lock()?;
        clean_leftovers();
        let state = swarm_state(None)?;
        if state.local_node_state != "inactive" {
            return Err(format!(
                "the local engine is already in a swarm ({}): a two-node test swarm needs an engine in none \
                 (docker swarm leave --force)",
                state.describe()
            ));
        }
        let driver = docker(None, &["info", "--format", "{{.Driver}}"], COMMAND_TIMEOUT)?;
        let dir = PathBuf::from(format!("{DIR_PREFIX}{}", std::process::id()));
        let endpoint = format!("unix://{}", dir.join("docker.sock").display());
        let mut swarm = TestSwarm {
            manager_node: String::new(),
            manager_address: MANAGER_ADDRESS.to_string(),
            made: false,
            worker: Some(Worker { dir, endpoint, node: None, dockerd: None }),
            _lock: lock,
        };
        // From here on, dropping `swarm` undoes whatever was done.
        add_link()?;
        let worker = swarm.worker.as_mut().ok_or("no worker")?;
        worker.start(&driver)?;
        for image in images {
            copy_image(image, &worker.endpoint)?;
        }

        swarm.made = true;
        docker(
            None,
            &[
                "swarm",
                "init",
                "--advertise-addr",
                MANAGER_ADDRESS,
                "--listen-addr",
                &format!("{MANAGER_ADDRESS}:2377"),
            ],
            COMMAND_TIMEOUT,
        )?;
        swarm.manager_node = swarm_state(None)?.node_id;
        let token = docker(None, &["swarm", "join-token", "-q", "worker"], COMMAND_TIMEOUT)?;
        let worker = swarm.worker.as_mut().ok_or("no worker")?;
        docker(
            Some(&worker.endpoint),
            &[
                "swarm",
                "join",
                "--token",
                &token,
                "--advertise-addr",
                WORKER_ADDRESS,
                "--listen-addr",
                &format!("{WORKER_ADDRESS}:2377"),
                &format!("{MANAGER_ADDRESS}:2377"),
            ],
            COMMAND_TIMEOUT,
        )?;
        let node = swarm_state(Some(&worker.endpoint))?.node_id;
        worker.node = Some(node.clone());
        wait_for(&format!("the worker node {node} to be Ready on the manager"), READY_TIMEOUT, || {
            let status = docker(None, &["node", "inspect", &node, "--format", "{{.Status.State}}"], COMMAND_TIMEOUT)?;
            Ok((status == "ready").then_some(()).ok_or(format!("status {status}")))
        })?;
        Ok(swarm)
    }

    /// The manager's node id.
    pub fn manager_node(&self) -> &str {
        &self.manager_node
    }

    /// The worker's node id (two_nodes only).
    pub fn worker_node(&self) -> Option<&str> {
        self.worker.as_ref().and_then(|w| w.node.as_deref())
    }

    /// The worker engine's endpoint, `unix:///…/docker.sock` (two_nodes only).
    pub fn worker_endpoint(&self) -> Option<&str> {
        self.worker.as_ref().map(|w| w.endpoint.as_str())
    }

    /// The worker engine over TCP with TLS (two_nodes only): `tcp://10.231.0.2:2376`, and a
    /// directory holding the client's `ca.pem`, `cert.pem` and `key.pem` for it.
    pub fn worker_tls_endpoint(&self) -> Option<(String, PathBuf)> {
        self.worker.as_ref().map(|w| (format!("tcp://{WORKER_ADDRESS}:{WORKER_TLS_PORT}"), w.dir.join("client")))
    }

    /// The address other hosts reach the manager at (127.0.0.1 or 10.231.0.1).
    pub fn manager_address(&self) -> &str {
        &self.manager_address
    }
}

impl Drop for TestSwarm {
    fn drop(&mut self) {
        let mut failures = Vec::new();
        if let Some(worker) = self.worker.as_mut() {
            failures.extend(worker.remove());
            failures.extend(remove_link());
        }
        if self.made {
            failures.extend(leave_local_swarm());
        }
        for failure in failures {
            eprintln!("TestSwarm clean-up: {failure}");
        }
    }
}

/// Runs the `docker` CLI against the local engine (`None`: as the environment says, e.g.
/// `DOCKER_HOST`) or the given endpoint (`unix:///…`), and returns its trimmed output; an error
/// carries the command and what it wrote to stderr. Killed after `timeout`.
pub fn docker(endpoint: Option<&str>, args: &[&str], timeout: Duration) -> Result<String, String> {
    let mut command = Command::new("docker");
    command.args(args);
    command.stdin(Stdio::null());
    if let Some(endpoint) = endpoint {
        command.env("DOCKER_HOST", endpoint);
    }
    run(&mut command, timeout)
}

/// Runs a command to its end (killed after `timeout`): its trimmed stdout, or an error naming it
/// with its stderr.
fn run(command: &mut Command, timeout: Duration) -> Result<String, String> {
    let shown = {
        let args: Vec<_> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let host = command
            .get_envs()
            .find(|(k, _)| *k == "DOCKER_HOST")
            .and_then(|(_, v)| v)
            .map(|v| format!("DOCKER_HOST={} ", v.to_string_lossy()))
            .unwrap_or_default();
        format!("{host}{} {}", command.get_program().to_string_lossy(), args.join(" "))
    };
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("`{shown}` cannot run: {e}"))?;
    let stdout = read_all(child.stdout.take());
    let stderr = read_all(child.stderr.take());
    let status = wait_child(&mut child, timeout);
    let (stdout, stderr) = (stdout.join().unwrap_or_default(), stderr.join().unwrap_or_default());
    match status {
        Some(status) if status.success() => Ok(stdout),
        Some(status) => {
            Err(format!("`{shown}` failed ({status}): {}", if stderr.is_empty() { &stdout } else { &stderr }))
        }
        None => Err(format!("`{shown}` did not end within {timeout:?} and was killed: {stderr}")),
    }
}

/// Reads a pipe to its end on a thread of its own.
fn read_all<R: Read + Send + 'static>(pipe: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut text = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut text);
        }
        String::from_utf8_lossy(&text).trim().to_string()
    })
}

/// Waits for a child to end, killing it after `timeout` (then None).
fn wait_child(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Polls `check` until it gives a value, or fails after `timeout` with its last reason.
fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<Result<T, String>, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let reason = match check() {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(reason)) => reason,
            Err(e) => return Err(format!("waiting for {what}: {e}")),
        };
        if Instant::now() >= deadline {
            return Err(format!("waiting for {what}: not within {timeout:?} (last: {reason})"));
        }
        thread::sleep(POLL);
    }
}

/// Takes the machine-wide test swarm lock, waiting for another `TestSwarm` to go.
fn lock() -> Result<UnixListener, String> {
    let address = SocketAddr::from_abstract_name(LOCK_NAME).map_err(|e| format!("the test swarm lock: {e}"))?;
    let mut announced = false;
    wait_for("another TestSwarm (holding the abstract socket @drydock-test-swarm) to go", LOCK_TIMEOUT, || {
        match UnixListener::bind_addr(&address) {
            Ok(listener) => Ok(Ok(listener)),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                if !announced {
                    eprintln!("TestSwarm: waiting for another TestSwarm to go");
                    announced = true;
                }
                Ok(Err(e.to_string()))
            }
            Err(e) => Err(format!("binding the test swarm lock: {e}")),
        }
    })
}

/// An engine's `docker info` `.Swarm`.
#[derive(Debug)]
struct SwarmState {
    local_node_state: String,
    node_id: String,
    node_addr: String,
    control_available: bool,
    error: String,
}

impl SwarmState {
    fn is_manager(&self) -> bool {
        self.local_node_state == "active" && self.control_available
    }

    fn describe(&self) -> String {
        let role = if self.control_available { "manager" } else { "worker" };
        let error = if self.error.is_empty() { String::new() } else { format!(", error: {}", self.error) };
        format!("state {}, {role} node {} at {}{error}", self.local_node_state, self.node_id, self.node_addr)
    }
}

fn swarm_state(endpoint: Option<&str>) -> Result<SwarmState, String> {
    let info = docker(endpoint, &["info", "--format", "{{json .Swarm}}"], COMMAND_TIMEOUT)?;
    let info: serde_json::Value =
        serde_json::from_str(&info).map_err(|e| format!("reading docker info's Swarm ({info}): {e}"))?;
    let text = |key: &str| info.get(key).and_then(|v| v.as_str()).unwrap_or_default().to_string();
    Ok(SwarmState {
        local_node_state: text("LocalNodeState"),
        node_id: text("NodeID"),
        node_addr: text("NodeAddr"),
        control_available: info.get("ControlAvailable").and_then(|v| v.as_bool()).unwrap_or(false),
        error: text("Error"),
    })
}

/// Makes the namespace `ddswarm2` and the veth pair between it and the host, addressed and up.
fn add_link() -> Result<(), String> {
    let ip = |args: &[&str]| run(Command::new("ip").args(args), COMMAND_TIMEOUT).map(|_| ());
    let prefixed = |address: &str| format!("{address}/24");
    ip(&["netns", "add", NETNS])?;
    ip(&["link", "add", HOST_VETH, "type", "veth", "peer", "name", WORKER_VETH])?;
    ip(&["link", "set", WORKER_VETH, "netns", NETNS])?;
    ip(&["addr", "add", &prefixed(MANAGER_ADDRESS), "dev", HOST_VETH])?;
    ip(&["link", "set", HOST_VETH, "up"])?;
    ip(&["-n", NETNS, "addr", "add", &prefixed(WORKER_ADDRESS), "dev", WORKER_VETH])?;
    ip(&["-n", NETNS, "link", "set", WORKER_VETH, "up"])?;
    ip(&["-n", NETNS, "link", "set", "lo", "up"])
}

/// Deletes the veth pair and the namespace, where they exist.
fn remove_link() -> Vec<String> {
    let mut failures = Vec::new();
    if Path::new("/sys/class/net").join(HOST_VETH).exists()
        && let Err(e) = run(Command::new("ip").args(["link", "del", HOST_VETH]), COMMAND_TIMEOUT)
    {
        failures.push(e);
    }
    if Path::new("/var/run/netns").join(NETNS).exists()
        && let Err(e) = run(Command::new("ip").args(["netns", "del", NETNS]), COMMAND_TIMEOUT)
    {
        failures.push(e);
    }
    failures
}

/// A throwaway CA, a server certificate for the worker's address and a client certificate,
/// made with the `openssl` CLI: `<dir>/server-{cert,key}.pem`, `<dir>/client/{ca,cert,key}.pem`.
fn make_certificates(dir: &Path) -> Result<(), String> {
    let client = dir.join("client");
    fs::create_dir_all(&client).map_err(|e| format!("creating {}: {e}", client.display()))?;
    let at = |name: &str| dir.join(name).display().to_string();
    let ca = client.join("ca.pem").display().to_string();
    let (cert, key) = (client.join("cert.pem").display().to_string(), client.join("key.pem").display().to_string());
    fs::write(dir.join("server.ext"), format!("subjectAltName=IP:{WORKER_ADDRESS}\nextendedKeyUsage=serverAuth\n"))
        .map_err(|e| e.to_string())?;
    fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").map_err(|e| e.to_string())?;
    let steps: [Vec<String>; 5] = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=drydock-test-ca", "-keyout"]
            .iter()
            .map(|a| a.to_string())
            .chain([at("ca-key.pem"), "-out".into(), ca.clone()])
            .collect(),
        ["req", "-newkey", "rsa:2048", "-nodes", "-subj", &format!("/CN={WORKER_ADDRESS}"), "-keyout"]
            .iter()
            .map(|a| a.to_string())
            .chain([at("server-key.pem"), "-out".into(), at("server.csr")])
            .collect(),
        ["x509", "-req", "-days", "2", "-CAcreateserial", "-in"]
            .iter()
            .map(|a| a.to_string())
            .chain([at("server.csr"), "-CA".into(), ca.clone(), "-CAkey".into(), at("ca-key.pem")])
            .chain(["-out".into(), at("server-cert.pem"), "-extfile".into(), at("server.ext")])
            .collect(),
        ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=drydock", "-keyout"]
            .iter()
            .map(|a| a.to_string())
            .chain([key, "-out".into(), at("client.csr")])
            .collect(),
        ["x509", "-req", "-days", "2", "-CAcreateserial", "-in"]
            .iter()
            .map(|a| a.to_string())
            .chain([at("client.csr"), "-CA".into(), ca.clone(), "-CAkey".into(), at("ca-key.pem")])
            .chain(["-out".into(), cert, "-extfile".into(), at("client.ext")])
            .collect(),
    ];
    for step in steps {
        let out = Command::new("openssl").args(&step).output().map_err(|e| format!("running openssl: {e}"))?;
        if !out.status.success() {
            return Err(format!("openssl {}: {}", step[0], String::from_utf8_lossy(&out.stderr)));
        }
    }
    Ok(())
}

impl Worker {
    /// Starts the worker's dockerd in the namespace and waits until it answers.
    fn start(&mut self, driver: &str) -> Result<(), String> {
        fs::create_dir(&self.dir).map_err(|e| format!("creating {}: {e}", self.dir.display()))?;
        // /etc/docker/daemon.json may set what the flags below set, which dockerd refuses.
        let config = self.dir.join("daemon.json");
        fs::write(&config, "{}\n").map_err(|e| format!("writing {}: {e}", config.display()))?;
        let log = File::create(self.dir.join("dockerd.log")).map_err(|e| format!("creating the dockerd log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| format!("the dockerd log: {e}"))?;
        let path = |name: &str| self.dir.join(name).display().to_string();
        make_certificates(&self.dir)?;
        // Not `ip netns exec`: it remounts /sys, and dockerd then finds no devices cgroup.
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/var/run/netns/{NETNS}"))
            .arg("dockerd")
            .args(["--config-file", &path("daemon.json")])
            .args(["--data-root", &path("d")])
            .args(["--exec-root", &path("e")])
            .args(["--pidfile", &path("dockerd.pid")])
            .args(["-H", &self.endpoint])
            .args(["-H", &format!("tcp://{WORKER_ADDRESS}:{WORKER_TLS_PORT}"), "--tlsverify"])
            .args(["--tlscacert", &path("client/ca.pem")])
            .args(["--tlscert", &path("server-cert.pem"), "--tlskey", &path("server-key.pem")])
            .args(["--iptables=false", "--bridge=none"])
            .args(["--storage-driver", driver])
            .args(["--insecure-registry", WORKER_INSECURE_REGISTRY])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let child = command.spawn().map_err(|e| format!("starting dockerd with nsenter: {e}"))?;
        let dockerd = self.dockerd.insert(child);
        let endpoint = self.endpoint.clone();
        let log = self.dir.join("dockerd.log");
        wait_for("the worker's dockerd to answer", ENGINE_START_TIMEOUT, || {
            if let Ok(Some(status)) = dockerd.try_wait() {
                return Err(format!("dockerd ended ({status}); its log ends:\n{}", log_tail(&log)));
            }
            Ok(docker(Some(&endpoint), &["info", "--format", "{{.ID}}"], Duration::from_secs(10)).map(|_| ()))
        })
        .map_err(|e| format!("{e}\n{}", log_tail(&log)))
    }

    /// Undoes everything of the worker: leaves the swarm, stops its dockerd and what it
    /// started, unmounts and removes its directory. Returns what failed.
    fn remove(&mut self) -> Vec<String> {
        let mut failures = Vec::new();
        let answers = docker(Some(&self.endpoint), &["info", "--format", "{{.ID}}"], Duration::from_secs(10)).is_ok();
        if answers {
            // Its containers go at once: leaving would stop each with its stop timeout.
            match docker(Some(&self.endpoint), &["ps", "-aq"], COMMAND_TIMEOUT) {
                Ok(ids) if !ids.is_empty() => {
                    let mut args = vec!["rm", "-f"];
                    args.extend(ids.lines());
                    if let Err(e) = docker(Some(&self.endpoint), &args, COMMAND_TIMEOUT) {
                        failures.push(e);
                    }
                }
                Ok(_) => {}
                Err(e) => failures.push(e),
            }
            match swarm_state(Some(&self.endpoint)) {
                Ok(state) if state.local_node_state == "inactive" => {}
                _ => {
                    if let Err(e) = docker(Some(&self.endpoint), &["swarm", "leave", "--force"], COMMAND_TIMEOUT) {
                        failures.push(e);
                    }
                }
            }
        }
        failures.extend(self.stop_dockerd());
        failures.extend(remove_dir(&self.dir));
        failures
    }

    /// SIGTERM to the worker's dockerd (the child started here, else the pid in its pidfile),
    /// up to 20 s to end, then SIGKILL.
    fn stop_dockerd(&mut self) -> Vec<String> {
        let mut failures = Vec::new();
        let pid = match &self.dockerd {
            Some(child) => Some(child.id()),
            None => fs::read_to_string(self.dir.join("dockerd.pid")).ok().and_then(|p| p.trim().parse().ok()),
        };
        // A pidfile's pid is only taken when that process is this worker's dockerd.
        let Some(pid) = pid.filter(|&pid| self.dockerd.is_some() || mentions(pid, &self.dir)) else {
            return failures;
        };
        let ended = |child: &mut Option<Child>| match child {
            Some(child) => matches!(child.try_wait(), Ok(Some(_)) | Err(_)),
            None => !alive(pid),
        };
        if ended(&mut self.dockerd) {
            return failures;
        }
        signal(pid, "TERM");
        let deadline = Instant::now() + STOP_TIMEOUT;
        while !ended(&mut self.dockerd) && Instant::now() < deadline {
            thread::sleep(POLL);
        }
        if !ended(&mut self.dockerd) {
            failures.push(format!(
                "the worker's dockerd (pid {pid}) did not end within {STOP_TIMEOUT:?} of SIGTERM: killed"
            ));
            signal(pid, "KILL");
            let deadline = Instant::now() + Duration::from_secs(5);
            while !ended(&mut self.dockerd) && Instant::now() < deadline {
                thread::sleep(POLL);
            }
        }
        failures
    }
}

/// The last lines of a log file.
fn log_tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Copies an image of the local engine into another: `docker save IMAGE | docker load`.
fn copy_image(image: &str, endpoint: &str) -> Result<(), String> {
    let mut save = Command::new("docker")
        .args(["save", image])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("`docker save {image}` cannot run: {e}"))?;
    let Some(saved) = save.stdout.take() else {
        let _ = save.kill();
        let _ = save.wait();
        return Err(format!("`docker save {image}`: no output"));
    };
    let loaded = run(Command::new("docker").env("DOCKER_HOST", endpoint).arg("load").stdin(saved), COPY_TIMEOUT);
    let mut save_error = String::new();
    if let Some(mut stderr) = save.stderr.take() {
        let _ = stderr.read_to_string(&mut save_error);
    }
    let saved = wait_child(&mut save, Duration::from_secs(10));
    match saved {
        Some(status) if status.success() => loaded.map(|_| ()),
        Some(status) => Err(format!("`docker save {image}` failed ({status}): {}", save_error.trim())),
        None => Err(format!("`docker save {image}` did not end")),
    }
}

/// Leaves the local engine's swarm (`--force`) when it is in one, and removes
/// `docker_gwbridge`, which leaving keeps.
fn leave_local_swarm() -> Vec<String> {
    let mut failures = Vec::new();
    let in_swarm = !matches!(swarm_state(None), Ok(s) if s.local_node_state == "inactive");
    if in_swarm && let Err(e) = docker(None, &["swarm", "leave", "--force"], COMMAND_TIMEOUT) {
        failures.push(e);
    }
    // Its last endpoints may take a moment to go with the swarm's containers.
    let removed = wait_for("docker_gwbridge to be removed", Duration::from_secs(20), || {
        if docker(None, &["network", "inspect", "docker_gwbridge", "--format", "{{.ID}}"], COMMAND_TIMEOUT).is_err() {
            return Ok(Ok(()));
        }
        Ok(docker(None, &["network", "rm", "docker_gwbridge"], COMMAND_TIMEOUT).map(|_| ()))
    });
    failures.extend(removed.err());
    failures
}

/// Cleans up what an earlier, crashed two-node swarm left: its worker engines' processes and
/// directories, the veth pair and namespace, and a local swarm advertising 10.231.0.1 (no other
/// swarm uses that address). Says what it finds.
fn clean_leftovers() {
    let dirs: Vec<PathBuf> = fs::read_dir("/tmp")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.to_string_lossy().starts_with(DIR_PREFIX) && p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    for dir in dirs {
        eprintln!("TestSwarm: cleaning up {}, left by an earlier run", dir.display());
        let endpoint = format!("unix://{}", dir.join("docker.sock").display());
        let mut worker = Worker { dir, endpoint, node: None, dockerd: None };
        for failure in worker.remove() {
            eprintln!("TestSwarm: cleaning up leftovers: {failure}");
        }
    }
    // A worker whose directory is gone may still run.
    let strays = processes_mentioning(DIR_PREFIX);
    if !strays.is_empty() {
        eprintln!("TestSwarm: killing leftover processes {strays:?}");
        kill_and_wait(&strays);
    }
    if Path::new("/sys/class/net").join(HOST_VETH).exists() || Path::new("/var/run/netns").join(NETNS).exists() {
        eprintln!("TestSwarm: removing the leftover veth {HOST_VETH} / network namespace {NETNS}");
        for failure in remove_link() {
            eprintln!("TestSwarm: cleaning up leftovers: {failure}");
        }
    }
    if let Ok(state) = swarm_state(None)
        && state.local_node_state != "inactive"
        && state.node_addr == MANAGER_ADDRESS
    {
        eprintln!("TestSwarm: leaving the leftover two-node test swarm ({})", state.describe());
        for failure in leave_local_swarm() {
            eprintln!("TestSwarm: cleaning up leftovers: {failure}");
        }
    }
}

/// Kills (SIGKILL) what still runs of a worker engine under `dir`, unmounts everything under
/// it, then removes it; a directory with something still mounted under it stays.
fn remove_dir(dir: &Path) -> Vec<String> {
    let mut failures = Vec::new();
    if !dir.exists() {
        return failures;
    }
    // Left only when dockerd was killed: its containers' processes, then containerd, its shims
    // and fuse-overlayfs.
    let containers: Vec<String> = fs::read_dir(dir.join("d/containers"))
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let in_containers = processes_in_containers(&containers);
    if !in_containers.is_empty() {
        failures.push(format!("killing processes left in the worker's containers: {in_containers:?}"));
        kill_and_wait(&in_containers);
    }
    let mut pattern = dir.display().to_string();
    pattern.push('/');
    let strays = processes_mentioning(&pattern);
    if !strays.is_empty() {
        failures.push(format!("killing processes the worker's dockerd left: {strays:?}"));
        kill_and_wait(&strays);
    }
    // A shim killed so leaves its socket, named by the SHA-256 of its containerd's socket,
    // namespace and container id.
    for id in &containers {
        let key = format!("{}/e/containerd/containerd.sock/moby/{id}", dir.display());
        let hash = run(Command::new("sh").args(["-c", r#"printf %s "$1" | sha256sum"#, "sh", &key]), COMMAND_TIMEOUT);
        let hash = hash.unwrap_or_default().split_whitespace().next().unwrap_or_default().to_string();
        let socket = Path::new("/run/containerd/s").join(&hash);
        if hash.len() == 64 && socket.exists() {
            let _ = fs::remove_file(socket);
        }
    }
    for mount in mounts_under(dir) {
        if run(Command::new("umount").arg(&mount), COMMAND_TIMEOUT).is_err()
            && let Err(e) = run(Command::new("umount").arg("-l").arg(&mount), COMMAND_TIMEOUT)
        {
            failures.push(e);
        }
    }
    let left = mounts_under(dir);
    if !left.is_empty() {
        failures.push(format!("{} kept: still mounted under it: {}", dir.display(), left.join(", ")));
        return failures;
    }
    if let Err(e) = fs::remove_dir_all(dir) {
        failures.push(format!("removing {}: {e}", dir.display()));
    }
    failures
}

/// The mount points at and under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.display().to_string();
    let inside = format!("{dir}/");
    let mut mounts: Vec<String> = fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape_mount)
        .filter(|m| *m == dir || m.starts_with(&inside))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.len()));
    mounts.dedup();
    mounts
}

/// mountinfo escapes space, tab, newline and backslash as octal `\NNN`.
fn unescape_mount(field: &str) -> String {
    let mut out = String::new();
    let mut rest = field;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 4).and_then(|c| u8::from_str_radix(c, 8).ok());
        match code {
            Some(byte) => {
                out.push(byte as char);
                rest = &rest[at + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The pids of processes (not this one) with an argument containing `pattern`.
fn processes_mentioning(pattern: &str) -> Vec<u32> {
    pids().into_iter().filter(|&pid| cmdline(pid).iter().any(|arg| arg.contains(pattern))).collect()
}

/// Whether a process's arguments name `dir` or something under it.
fn mentions(pid: u32, dir: &Path) -> bool {
    let dir = dir.display().to_string();
    let inside = format!("{dir}/");
    cmdline(pid).iter().any(|arg| *arg == dir || arg.contains(&inside))
}

/// The pids of processes (not this one) in the cgroups of the given containers.
fn processes_in_containers(ids: &[String]) -> Vec<u32> {
    if ids.is_empty() {
        return Vec::new();
    }
    pids()
        .into_iter()
        .filter(|pid| {
            let cgroups = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            ids.iter().any(|id| cgroups.contains(id.as_str()))
        })
        .collect()
}

fn pids() -> Vec<u32> {
    let own = std::process::id();
    fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse().ok()))
                .filter(|&pid| pid != own)
                .collect()
        })
        .unwrap_or_default()
}

fn cmdline(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            raw.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect()
        })
        .unwrap_or_default()
}

/// Whether a process exists and is no zombie.
fn alive(pid: u32) -> bool {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z') | Some('X') | None)
}

fn signal(pid: u32, signal: &str) {
    let _ = run(Command::new("kill").args(["-s", signal, &pid.to_string()]), Duration::from_secs(10));
}

/// SIGKILL to each, then up to 5 s for them to go.
fn kill_and_wait(pids: &[u32]) {
    for &pid in pids {
        signal(pid, "KILL");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while pids.iter().any(|&pid| alive(pid)) && Instant::now() < deadline {
        thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mount_points() {
        assert_eq!(unescape_mount(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mount(r"/tmp/a\134b"), r"/tmp/a\b");
        assert_eq!(unescape_mount("/plain"), "/plain");
    }

    #[test]
    fn runs_commands_with_a_timeout() {
        assert_eq!(run(Command::new("sh").args(["-c", "echo ok"]), Duration::from_secs(10)).unwrap(), "ok");
        let failed = run(Command::new("sh").args(["-c", "echo why >&2; exit 3"]), Duration::from_secs(10)).unwrap_err();
        assert!(failed.contains("why"), "{failed}");
        let started = Instant::now();
        let slow = run(Command::new("sleep").arg("30"), Duration::from_millis(300)).unwrap_err();
        assert!(slow.contains("did not end"), "{slow}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
