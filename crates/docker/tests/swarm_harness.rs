//! The Swarm harness (`testing_swarm`) against the real engine: a two-node swarm whose services
//! run on the node they are constrained to and reach each other by name over an overlay
//! network, then a one-node swarm. It changes the engine itself (swarm init and leave), so it
//! is one test, in the nextest group `swarm`. Without what it needs (root, the engine, `ip`,
//! `nsenter`, `/bin/busybox`, an engine in no swarm) it says SKIPPED, except under `CI=true`,
//! where it fails.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use drydock_core::runtime::LABEL_INSTANCE;
use drydock_docker::testing::{self, InstanceGuard};
use drydock_docker::testing_swarm::{TestSwarm, WORKER_INSECURE_REGISTRY, docker};

const TIMEOUT: Duration = Duration::from_secs(60);

/// Why the test cannot run here, if it cannot.
fn missing() -> Option<String> {
    if !Path::new(testing::BUSYBOX).exists() {
        return Some(format!("{} is missing (install Debian's busybox-static)", testing::BUSYBOX));
    }
    for (tool, args) in [("ip", &["-V"][..]), ("nsenter", &["--version"][..]), ("docker", &["version"][..])] {
        match Command::new(tool).args(args).output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => return Some(format!("`{tool}` fails: {}", String::from_utf8_lossy(&out.stderr).trim())),
            Err(e) => return Some(format!("`{tool}` cannot run: {e}")),
        }
    }
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Uid:").map(|u| u.split_whitespace().next() == Some("0"))));
    if uid != Some(true) {
        return Some("not running as root (network namespaces, a second dockerd)".to_string());
    }
    // A swarm advertising 10.231.0.1 is one a crashed run of the harness left: it cleans it up.
    match docker(None, &["info", "--format", "{{.Swarm.LocalNodeState}} {{.Swarm.NodeAddr}}"], TIMEOUT) {
        Ok(state) if state.starts_with("inactive") || state == "active 10.231.0.1" => None,
        Ok(state) => Some(format!("the engine is already in a swarm ({state})")),
        Err(e) => Some(e),
    }
}

/// Polls until `check` gives a value; panics with its last reason after `timeout`.
fn wait<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return value,
            Err(e) if Instant::now() >= deadline => panic!("{what}: not within {timeout:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// The node a service's one task runs on, once it runs.
fn running_on(service: &str) -> String {
    wait(&format!("service {service} to run"), TIMEOUT, || {
        let tasks = docker(None, &["service", "ps", "-q", "--no-trunc", service], TIMEOUT)?;
        let task = tasks.lines().next().ok_or("no task yet")?;
        let state =
            docker(None, &["inspect", "--format", "{{.NodeID}} {{.Status.State}} {{.Status.Err}}", task], TIMEOUT)?;
        let mut parts = state.splitn(3, ' ');
        let (node, state, error) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        match state {
            "running" => Ok(node.to_string()),
            "failed" | "rejected" | "complete" | "shutdown" => panic!("service {service}'s task is {state}: {error}"),
            _ => Err(format!("task {task} is {state} {error}")),
        }
    })
}

/// The id of a service's container on the engine at `endpoint` (None: the local one).
fn container_of(service: &str, endpoint: Option<&str>) -> String {
    let filter = format!("label=com.docker.swarm.service.name={service}");
    let ids = docker(endpoint, &["ps", "-q", "--filter", &filter], TIMEOUT).unwrap();
    let ids: Vec<&str> = ids.lines().collect();
    assert_eq!(ids.len(), 1, "{service}'s containers on {endpoint:?}: {ids:?}");
    ids[0].to_string()
}

fn swarm_state() -> String {
    docker(None, &["info", "--format", "{{.Swarm.LocalNodeState}}"], TIMEOUT).unwrap()
}

fn has_gwbridge() -> bool {
    !docker(None, &["network", "ls", "-q", "--filter", "name=^docker_gwbridge$"], TIMEOUT).unwrap().is_empty()
}

#[tokio::test]
async fn two_nodes_then_one() {
    if let Some(why) = missing() {
        if testing::required() {
            panic!("two_nodes_then_one: {why} (under CI=true it must run)");
        }
        println!("SKIPPED two_nodes_then_one: {why}");
        return;
    }
    let started = Instant::now();
    let image = testing::busybox_image().await.unwrap();

    let swarm = TestSwarm::two_nodes(&[&image]).unwrap();
    println!("two-node swarm up after {:?}", started.elapsed());
    let manager = swarm.manager_node().to_string();
    let worker = swarm.worker_node().unwrap().to_string();
    let endpoint = swarm.worker_endpoint().unwrap().to_string();
    assert_ne!(manager, worker);
    assert_eq!(swarm.manager_address(), "10.231.0.1");
    assert_eq!(docker(Some(&endpoint), &["info", "--format", "{{.Swarm.NodeID}}"], TIMEOUT).unwrap(), worker);
    let registries =
        docker(Some(&endpoint), &["info", "--format", "{{json .RegistryConfig.IndexConfigs}}"], TIMEOUT).unwrap();
    assert!(registries.contains(&format!(r#""{WORKER_INSECURE_REGISTRY}""#)), "{registries}");
    assert!(docker(Some(&endpoint), &["image", "inspect", &image], TIMEOUT).is_ok(), "{image} copied to the worker");

    // Dropped before the swarm: the services go while it exists.
    let instance = testing::test_instance_id();
    let guard = InstanceGuard::new(&instance);
    let label = format!("{LABEL_INSTANCE}={instance}");
    let network = format!("{instance}-net");
    docker(None, &["network", "create", "--driver", "overlay", "--attachable", "--label", &label, &network], TIMEOUT)
        .unwrap();
    let services = [(format!("{instance}-m"), &manager), (format!("{instance}-w"), &worker)];
    for (name, node) in &services {
        let constraint = format!("node.id=={node}");
        docker(
            None,
            &[
                "service",
                "create",
                "--detach",
                "--no-resolve-image",
                "--name",
                name,
                "--label",
                &label,
                "--container-label",
                &label,
                "--network",
                &network,
                // No IPVS in this kernel: a service's virtual IP does not route; names resolve
                // to the tasks themselves with dnsrr.
                "--endpoint-mode",
                "dnsrr",
                "--restart-condition",
                "none",
                "--stop-grace-period",
                "1s",
                "--constraint",
                &constraint,
                &image,
                "sleep",
                "300",
            ],
            TIMEOUT,
        )
        .unwrap();
    }
    let objects = testing::instance_objects(&instance).await.unwrap();
    let mut listed = objects.services.clone();
    listed.sort();
    assert_eq!(listed, vec![services[0].0.clone(), services[1].0.clone()]);
    assert_eq!(objects.networks, vec![network.clone()]);

    for (name, node) in &services {
        assert_eq!(&running_on(name), *node, "{name} runs on its node");
    }
    let (on_manager, on_worker) = (&services[0].0, &services[1].0);
    let manager_container = container_of(on_manager, None);
    let worker_container = container_of(on_worker, Some(&endpoint));
    // Each engine runs only its own task.
    assert_eq!(docker(Some(&endpoint), &["ps", "-q", "--filter", &format!("name={on_manager}")], TIMEOUT).unwrap(), "");
    assert_eq!(docker(None, &["ps", "-q", "--filter", &format!("name={on_worker}")], TIMEOUT).unwrap(), "");
    for (endpoint, container, other) in
        [(None, &manager_container, on_worker), (Some(endpoint.as_str()), &worker_container, on_manager)]
    {
        wait(&format!("{container} to reach {other}"), Duration::from_secs(30), || {
            docker(endpoint, &["exec", container, "ping", "-c1", "-W2", other], TIMEOUT)
        });
    }
    let reached = started.elapsed();

    testing::remove_instance_objects(&instance).await.unwrap();
    testing::remove_instance_objects_on(&endpoint, &instance).await.unwrap();
    // The worker's agent removes its task's container once the service is gone.
    wait("the worker's task container to go", TIMEOUT, || match docker(Some(&endpoint), &["ps", "-aq"], TIMEOUT)? {
        ids if ids.is_empty() => Ok(()),
        ids => Err(format!("left: {ids}")),
    });
    assert!(testing::instance_objects(&instance).await.unwrap().is_empty());
    let on_worker_left = testing::instance_objects_on(&endpoint, &instance).await.unwrap();
    assert!(on_worker_left.is_empty(), "{on_worker_left:?}");
    drop(guard);
    let removed = started.elapsed();

    let worker_dir = endpoint.trim_start_matches("unix://").trim_end_matches("/docker.sock").to_string();
    drop(swarm);
    println!(
        "two-node part: reached after {reached:?}, services removed after {removed:?}, swarm gone after {:?}",
        started.elapsed()
    );
    assert_eq!(swarm_state(), "inactive");
    assert!(!has_gwbridge(), "docker_gwbridge is removed");
    assert!(!Path::new("/var/run/netns/ddswarm2").exists(), "the network namespace is deleted");
    assert!(!Path::new("/sys/class/net/ddsw0").exists(), "the veth pair is deleted");
    assert!(!Path::new(&worker_dir).exists(), "{worker_dir} is removed");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&worker_dir), "nothing stays mounted under {worker_dir}");

    let swarm = TestSwarm::single_node().unwrap();
    assert_eq!(swarm_state(), "active");
    assert_eq!(docker(None, &["info", "--format", "{{.Swarm.ControlAvailable}}"], TIMEOUT).unwrap(), "true");
    assert_eq!(swarm.manager_address(), "127.0.0.1");
    assert_eq!(docker(None, &["info", "--format", "{{.Swarm.NodeID}}"], TIMEOUT).unwrap(), swarm.manager_node());
    assert_eq!((swarm.worker_node(), swarm.worker_endpoint()), (None, None));
    drop(swarm);
    assert_eq!(swarm_state(), "inactive", "the swarm made by single_node is left");
    assert!(!has_gwbridge(), "docker_gwbridge is removed");
    println!("two_nodes_then_one took {:?}", started.elapsed());
}
