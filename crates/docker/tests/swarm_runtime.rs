//! `SwarmRuntime` against a real one-node swarm of the local engine (made by the test when
//! the engine is in none, and left afterwards). These tests change the engine itself, so
//! they run in nextest's serialized `swarm` group.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drydock_core::runtime::{
    Availability, MachineSpec, MachineStatus, Runtime, RuntimeError, RuntimeEvent, RuntimeSpec,
};
use drydock_docker::names::{network_name, volume_name};
use drydock_docker::testing::{self, InstanceGuard};
use drydock_docker::testing_registry::TestRegistry;
use drydock_docker::testing_swarm::TestSwarm;
use drydock_docker::{DockerSettings, SwarmRuntime, SwarmSettings};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

const MB: u64 = 1 << 20;

struct Fixture {
    runtime: SwarmRuntime,
    image: String,
    // Dropped before the swarm: removes what the test made.
    _guard: InstanceGuard,
    _swarm: TestSwarm,
}

impl Fixture {
    fn instance(&self) -> &str {
        self.runtime.manager().instance_id()
    }
}

async fn fixture(test: &str) -> Option<Fixture> {
    fixture_with(test, None).await
}

async fn fixture_with(test: &str, registry: Option<String>) -> Option<Fixture> {
    if !std::path::Path::new(testing::BUSYBOX).exists() || !std::path::Path::new("/var/run/docker.sock").exists() {
        let why = "no Docker engine or no /bin/busybox";
        assert!(!testing::required(), "{test}: {why} (required under CI=true)");
        println!("SKIPPED {test}: {why}");
        return None;
    }
    let swarm = TestSwarm::single_node().unwrap();
    let instance = testing::test_instance_id();
    let guard = InstanceGuard::new(&instance);
    let settings = SwarmSettings {
        docker: DockerSettings { pull_timeout: Duration::from_secs(20), ..DockerSettings::default() },
        registry,
        ..SwarmSettings::default()
    };
    let runtime = SwarmRuntime::connect(&instance, settings).await.unwrap();
    let image = testing::busybox_image().await.unwrap();
    Some(Fixture { runtime, image, _guard: guard, _swarm: swarm })
}

macro_rules! fixture {
    ($test:expr) => {
        match fixture($test).await {
            Some(f) => f,
            None => return,
        }
    };
}

fn machine(name: &str, image: &str) -> MachineSpec {
    MachineSpec {
        name: name.to_string(),
        image: image.to_string(),
        memory_bytes: 64 * MB,
        env: BTreeMap::new(),
        command: None,
        entrypoint: None,
        ports: Vec::new(),
        depends_on: Vec::new(),
        dev: false,
        projects: true,
    }
}

fn spec(workspace: &str, machines: Vec<MachineSpec>, node: Option<String>) -> RuntimeSpec {
    RuntimeSpec { workspace_id: workspace.to_string(), machines, images: BTreeMap::new(), node }
}

fn words(line: &[&str]) -> Vec<String> {
    line.iter().map(|w| w.to_string()).collect()
}

fn recorder() -> (impl Fn(String) + Send + Sync, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    (move |line: String| sink.lock().unwrap().push(line), lines)
}

async fn until<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn exec(runtime: &SwarmRuntime, ws: &str, machine: &str, line: &[&str]) -> drydock_core::runtime::ExecOutput {
    runtime.exec(ws, machine, &words(line), Duration::from_secs(20)).await.unwrap()
}

/// SIGKILLs a machine's container (named by Swarm, found by its labels).
fn kill(instance: &str, ws: &str, machine: &str) {
    let filter = |label: &str, value: &str| format!("label={label}={value}");
    let ids = std::process::Command::new("docker")
        .args(["ps", "-q", "--filter", &filter("drydock.instance", instance)])
        .args(["--filter", &filter("drydock.workspace", ws), "--filter", &filter("drydock.machine", machine)])
        .output()
        .unwrap();
    let id = String::from_utf8(ids.stdout).unwrap().trim().to_string();
    assert!(!id.is_empty(), "no container of machine {machine}");
    let killed = std::process::Command::new("docker").args(["kill", &id]).output().unwrap();
    assert!(killed.status.success(), "{killed:?}");
}

/// One test, because each step needs the swarm and the engine serves one test at a time here.
#[tokio::test]
async fn workspaces_run_as_services_on_the_swarm() {
    let f = fixture!("workspaces_run_as_services_on_the_swarm");
    let rt = &f.runtime;
    let ws = "wksp-swarm";

    // Two machines on one overlay: web serves a port, app reaches it by name.
    let mut web = machine("web", &f.image);
    web.command = Some(words(&[
        "sh",
        "-c",
        "mkdir -p /tmp/www && echo \"hello from $GREETING\" > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www",
    ]));
    web.env.insert("GREETING".to_string(), "web".to_string());
    web.ports = vec![8080];
    let mut app = machine("app", &f.image);
    app.depends_on = vec!["web".to_string()];
    app.dev = true;
    let first = spec(ws, vec![app.clone(), web.clone()], None);
    rt.check_room(&first).await.unwrap();
    let (progress, lines) = recorder();
    let info = rt.start(&first, &progress).await.unwrap();
    let node = info.node.clone().expect("the node of /projects is recorded");
    assert_eq!(node, rt.manager_node());
    assert_eq!(info.machines.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["app", "web"]);
    for m in &info.machines {
        assert_eq!((m.status, m.node_id.as_deref()), (MachineStatus::Running, Some(node.as_str())), "{m:?}");
        assert!(!m.node.is_empty());
    }
    let lines = lines.lock().unwrap().clone();
    assert!(lines.contains(&format!("network {}: created", network_name(f.instance(), ws))), "{lines:?}");
    assert_eq!(lines.last().map(String::as_str), Some("ready"));

    let out = exec(rt, ws, "app", &["wget", "-q", "-O", "-", "http://web:8080/"]).await;
    assert_eq!((out.exit_code, out.stdout.as_str()), (0, "hello from web\n"), "{out:?}");
    let out = exec(rt, ws, "app", &["sh", "-c", "echo kept > /projects/file; hostname"]).await;
    assert_eq!((out.exit_code, out.stdout.as_str()), (0, "app\n"));

    // The master reaches the published port on the node.
    let web_now = info.machines.iter().find(|m| m.name == "web").unwrap();
    let reach = web_now.reach(8080).expect("web's port is published");
    let body = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(&reach).unwrap();
        stream.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        text
    })
    .await
    .unwrap();
    assert!(body.ends_with("hello from web\n"), "{body}");

    // A terminal on the dev machine.
    let mut terminal = rt.terminal(ws, "app", 80, 24).await.unwrap();
    terminal.input.write_all(b"echo term-$((40+2)); exit\n").await.unwrap();
    let mut seen = String::new();
    while let Some(chunk) = terminal.output.next().await {
        seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        if seen.contains("term-42") {
            break;
        }
    }
    assert!(seen.contains("term-42"), "{seen}");

    // A machine that dies is an event; one drydock stops is not.
    let mut events = rt.events().await.unwrap();
    kill(f.instance(), ws, "web");
    let died = tokio::time::timeout(Duration::from_secs(20), events.next()).await.unwrap().unwrap();
    let RuntimeEvent::MachineDied { workspace_id, machine: died_machine, .. } = died;
    assert_eq!((workspace_id.as_str(), died_machine.as_str()), (ws, "web"));

    rt.stop(ws).await.unwrap();
    assert_eq!(rt.inspect(ws).await.unwrap(), None);
    let objects = testing::instance_objects(f.instance()).await.unwrap();
    assert!(objects.containers.is_empty(), "{objects:?}");
    assert!(objects.volumes.contains(&volume_name(f.instance(), ws)), "{objects:?}");

    // Files survive a stop; the recorded node is used again.
    let again = spec(ws, vec![app.clone(), web.clone()], Some(node.clone()));
    rt.start(&again, &|_| {}).await.unwrap();
    let out = exec(rt, ws, "app", &["cat", "/projects/file"]).await;
    assert_eq!((out.exit_code, out.stdout.as_str()), (0, "kept\n"));
    assert_eq!(rt.list().await.unwrap().len(), 1);

    // Nodes: one, with the machines' memory reserved.
    let nodes = rt.nodes().await.unwrap();
    assert_eq!(nodes.len(), 1, "{nodes:?}");
    assert_eq!(nodes[0].id, node);
    assert!(nodes[0].ram_reserved >= 128 * MB && nodes[0].ram_total > nodes[0].ram_reserved, "{nodes:?}");
    assert_eq!(nodes[0].workspaces, [ws]);
    assert_eq!(rt.memory_total().await.unwrap(), nodes[0].ram_total);

    // Out of room: more memory than the node has.
    let mut huge = machine("dev", &f.image);
    huge.memory_bytes = nodes[0].ram_total * 2;
    let too_big = spec("wksp-huge", vec![huge], None);
    match rt.check_room(&too_big).await {
        Err(RuntimeError::NoRoom(detail)) => assert!(detail.contains("MiB free"), "{detail}"),
        other => panic!("expected NoRoom, got {other:?}"),
    }
    match rt.start(&too_big, &|_| {}).await {
        Err(RuntimeError::NoRoom(_)) => {}
        other => panic!("expected NoRoom, got {other:?}"),
    }

    // A paused node takes no new workspace.
    let paused = rt.set_availability(&node, Availability::Pause).await.unwrap();
    assert_eq!(paused.availability, Availability::Pause);
    let other = spec("wksp-other", vec![machine("dev", &f.image)], None);
    assert!(matches!(rt.check_room(&other).await, Err(RuntimeError::NoRoom(_))));
    rt.set_availability(&node, Availability::Active).await.unwrap();
    assert!(rt.join_command().await.unwrap().starts_with("docker swarm join --token SWMTKN-"));

    rt.remove(ws).await.unwrap();
    until("the instance's objects to go", Duration::from_secs(30), || async {
        testing::instance_objects(f.instance()).await.unwrap().is_empty().then_some(())
    })
    .await;
}

/// The image a workspace's service names.
fn service_image(instance: &str, ws: &str, machine: &str) -> String {
    let service = format!("drydock-{instance}-{ws}-{machine}");
    let out = std::process::Command::new("docker")
        .args(["service", "inspect", "--format", "{{.Spec.TaskTemplate.ContainerSpec.Image}}", &service])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// With a registry, images and snapshots go through it, so any node can pull them.
#[tokio::test]
async fn images_and_snapshots_go_through_the_registry() {
    let registry = match TestRegistry::start("127.0.0.1") {
        Ok(registry) => registry,
        Err(e) => {
            assert!(!testing::required(), "{e} (required under CI=true)");
            println!("SKIPPED: {e}");
            return;
        }
    };
    let f = fixture_with("images_and_snapshots_go_through_the_registry", Some(registry.address().to_string()))
        .await
        .unwrap_or_else(|| panic!("no swarm"));
    let rt = &f.runtime;
    let ws = "wksp-reg";
    let (progress, lines) = recorder();
    rt.start(&spec(ws, vec![machine("dev", &f.image)], None), &progress).await.unwrap();
    assert!(lines.lock().unwrap().contains(&format!("image {}: pushing to {}", f.image, registry.address())));
    let named = service_image(f.instance(), ws, "dev");
    assert_eq!(named, format!("{}/{}", registry.address(), f.image));
    assert!(registry.get("/v2/_catalog").unwrap().contains("drydock-test-busybox"));

    let images = rt.snapshot(ws).await.unwrap();
    let snapshot = images["dev"].clone();
    assert!(snapshot.starts_with(&format!("{}/drydock-{}-{ws}-dev:", registry.address(), f.instance())), "{snapshot}");
    assert!(registry.get("/v2/_catalog").unwrap().contains(&format!("drydock-{}-{ws}-dev", f.instance())));
    let mut restored = spec(ws, vec![machine("dev", &f.image)], None);
    restored.images = images;
    rt.start(&restored, &|_| {}).await.unwrap();
    assert_eq!(service_image(f.instance(), ws, "dev"), snapshot);

    rt.remove(ws).await.unwrap();
    // The registry's tags go with it, on drop.
}
