//! `DockerRuntime` against the real engine. Each test has its own instance id and a guard
//! that removes everything labelled with it, even when the test fails. Without an engine or
//! `/bin/busybox` a test says SKIPPED, except under `CI=true`, where it fails.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drydock_core::runtime::{MachineSpec, MachineStatus, Runtime, RuntimeError, RuntimeEvent, RuntimeSpec};
use drydock_docker::names::{network_name, volume_name};
use drydock_docker::testing::{self, InstanceGuard};
use drydock_docker::{DockerRuntime, DockerSettings};
use futures::StreamExt;
use tokio::io::AsyncWriteExt;

const MB: u64 = 1 << 20;

struct Fixture {
    runtime: DockerRuntime,
    image: String,
    // Dropped last: removes what the test made.
    _guard: InstanceGuard,
}

impl Fixture {
    fn instance(&self) -> &str {
        self.runtime.instance_id()
    }
}

fn settings() -> DockerSettings {
    DockerSettings { pull_timeout: Duration::from_secs(20), ..DockerSettings::default() }
}

/// The runtime of a fresh test instance and the busybox image, or None when the test skips.
async fn fixture(test: &str) -> Option<Fixture> {
    let skip = |why: String| {
        if testing::required() {
            panic!("{test}: {why} (under CI=true the Docker engine and /bin/busybox are required)");
        }
        println!("SKIPPED {test}: {why}");
        None
    };
    if !std::path::Path::new(testing::BUSYBOX).exists() {
        return skip(format!("{} is missing (install Debian's busybox-static)", testing::BUSYBOX));
    }
    let instance = testing::test_instance_id();
    let runtime = match DockerRuntime::connect(&instance, settings()).await {
        Ok(runtime) => runtime,
        Err(e) => return skip(e.to_string()),
    };
    let guard = InstanceGuard::new(&instance);
    testing::sweep_stale_test_instances(Duration::from_secs(3600)).await.unwrap();
    let image = testing::busybox_image().await.unwrap();
    Some(Fixture { runtime, image, _guard: guard })
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

fn spec(workspace: &str, machines: Vec<MachineSpec>) -> RuntimeSpec {
    RuntimeSpec { workspace_id: workspace.to_string(), machines, images: BTreeMap::new(), node: None }
}

fn words(line: &[&str]) -> Vec<String> {
    line.iter().map(|w| w.to_string()).collect()
}

/// A progress callback and the lines it got.
fn recorder() -> (impl Fn(String) + Send + Sync, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    (move |line: String| sink.lock().unwrap().push(line), lines)
}

fn ignore(_: String) {}

/// Polls `check` until it gives a value, failing the test after `limit`.
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
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn exec(runtime: &DockerRuntime, ws: &str, machine: &str, line: &[&str]) -> drydock_core::runtime::ExecOutput {
    runtime.exec(ws, machine, &words(line), Duration::from_secs(20)).await.unwrap()
}

#[tokio::test]
async fn start_stop_start_keeps_projects_and_remove_leaves_nothing() {
    let f = fixture!("start_stop_start_keeps_projects_and_remove_leaves_nothing");
    let rt = &f.runtime;
    let ws = "wksp-one";
    let spec = spec(ws, vec![machine("dev", &f.image)]);

    let (progress, lines) = recorder();
    let info = rt.start(&spec, &progress).await.unwrap();
    assert_eq!(info.workspace_id, ws);
    assert_eq!(info.machines.len(), 1);
    let dev = &info.machines[0];
    assert_eq!((dev.name.as_str(), dev.status), ("dev", MachineStatus::Running));
    assert!(!dev.node.is_empty() && dev.node == rt.node());
    assert!(dev.address.is_some(), "{dev:?}");
    assert_eq!(dev.exit_reason, None);
    let lines = lines.lock().unwrap().clone();
    let network = network_name(f.instance(), ws);
    let volume = volume_name(f.instance(), ws);
    for expected in [
        format!("image {}: present", f.image),
        format!("network {network}: created"),
        format!("volume {volume}: created"),
        "machine dev: running".to_string(),
    ] {
        assert!(lines.contains(&expected), "{expected} missing from {lines:?}");
    }
    assert_eq!(lines.last().map(String::as_str), Some("ready"));

    // The image's command is a plain shell, which would exit at once without a TTY.
    let out = exec(rt, ws, "dev", &["sh", "-c", "echo kept > /projects/file; hostname"]).await;
    assert_eq!((out.exit_code, out.stdout.as_str(), out.stderr.as_str()), (0, "dev\n", ""));
    let now = rt.inspect(ws).await.unwrap().unwrap();
    assert_eq!(now.machines[0].status, MachineStatus::Running);

    let stopping = Instant::now();
    rt.stop(ws).await.unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(2), "a shell machine stops promptly: {:?}", stopping.elapsed());
    assert_eq!(rt.inspect(ws).await.unwrap(), None);
    let objects = testing::instance_objects(f.instance()).await.unwrap();
    assert!(objects.containers.is_empty(), "{objects:?}");
    assert_eq!((objects.networks, objects.volumes), (vec![network.clone()], vec![volume.clone()]));
    rt.stop(ws).await.unwrap();

    let (progress, lines) = recorder();
    rt.start(&spec, &progress).await.unwrap();
    assert!(lines.lock().unwrap().contains(&format!("network {network}: exists")));
    assert!(lines.lock().unwrap().contains(&format!("volume {volume}: exists")));
    let out = exec(rt, ws, "dev", &["cat", "/projects/file"]).await;
    assert_eq!((out.exit_code, out.stdout.as_str()), (0, "kept\n"));
    let listed = rt.list().await.unwrap();
    assert_eq!(listed.iter().map(|i| i.workspace_id.as_str()).collect::<Vec<_>>(), [ws]);

    rt.remove(ws).await.unwrap();
    let objects = testing::instance_objects(f.instance()).await.unwrap();
    assert!(objects.is_empty(), "{objects:?}");
    rt.remove(ws).await.unwrap();
    assert_eq!(rt.inspect(ws).await.unwrap(), None);
    assert!(rt.list().await.unwrap().is_empty());
}

#[tokio::test]
async fn machines_reach_each_other_by_name() {
    let f = fixture!("machines_reach_each_other_by_name");
    let rt = &f.runtime;
    let ws = "wksp-two";
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
    // Listed dependent first: the runtime orders them.
    let (progress, lines) = recorder();
    let info = rt.start(&spec(ws, vec![app, web]), &progress).await.unwrap();
    assert_eq!(info.machines.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(), ["app", "web"]);
    assert!(info.machines.iter().all(|m| m.status == MachineStatus::Running && m.address.is_some()));
    assert_ne!(info.machines[0].address, info.machines[1].address);
    let lines = lines.lock().unwrap().clone();
    let position = |line: &str| lines.iter().position(|l| l == line).unwrap_or_else(|| panic!("{line}: {lines:?}"));
    assert!(position("machine web: running") < position("machine app: running"), "{lines:?}");

    let page = until("app to fetch web's page by name", Duration::from_secs(15), || async {
        let out = exec(rt, ws, "app", &["wget", "-qO-", "http://web:8080/"]).await;
        (out.exit_code == 0).then_some(out.stdout)
    })
    .await;
    assert_eq!(page, "hello from web\n");
    let out = exec(rt, ws, "web", &["ping", "-c1", "-W2", "app"]).await;
    assert_eq!(out.exit_code, 0, "{out:?}");
    rt.stop(ws).await.unwrap();
    assert_eq!(rt.inspect(ws).await.unwrap(), None);
}

#[tokio::test]
async fn exec_returns_output_exactly() {
    let f = fixture!("exec_returns_output_exactly");
    let rt = &f.runtime;
    let ws = "wksp-exec";
    rt.start(&spec(ws, vec![machine("dev", &f.image)]), &ignore).await.unwrap();

    let script = "printf 'out\\n'; printf 'err 1\\nerr 2' >&2; printf 'more out'; exit 3";
    let out = exec(rt, ws, "dev", &["sh", "-c", script]).await;
    assert_eq!(out.exit_code, 3);
    assert_eq!(out.stdout, "out\nmore out");
    assert_eq!(out.stderr, "err 1\nerr 2");

    let big = exec(rt, ws, "dev", &["sh", "-c", "head -c 200000 /dev/zero | tr '\\0' x"]).await;
    assert_eq!((big.exit_code, big.stdout.len()), (0, 200_000));

    let started = Instant::now();
    let slow = rt.exec(ws, "dev", &words(&["sleep", "10"]), Duration::from_millis(300)).await;
    assert_eq!(slow, Err(RuntimeError::Timeout(Duration::from_millis(300))));
    assert!(started.elapsed() < Duration::from_secs(5));

    let missing = rt.exec(ws, "nope", &words(&["true"]), Duration::from_secs(5)).await;
    assert!(matches!(missing, Err(RuntimeError::NotRunning(_))), "{missing:?}");
    let missing = rt.exec("wksp-none", "dev", &words(&["true"]), Duration::from_secs(5)).await;
    assert!(matches!(missing, Err(RuntimeError::NotRunning(_))), "{missing:?}");
}

#[tokio::test]
async fn terminal_round_trip_and_resize() {
    let f = fixture!("terminal_round_trip_and_resize");
    let rt = &f.runtime;
    let ws = "wksp-term";
    rt.start(&spec(ws, vec![machine("dev", &f.image)]), &ignore).await.unwrap();
    let mut terminal = rt.terminal(ws, "dev", 80, 24).await.unwrap();
    let mut seen = String::new();
    async fn read_until(output: &mut drydock_core::runtime::Terminal, seen: &mut String, wanted: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !seen.contains(wanted) {
            match tokio::time::timeout_at(deadline, output.output.next()).await {
                Ok(Some(chunk)) => seen.push_str(&String::from_utf8_lossy(&chunk.unwrap())),
                Ok(None) => panic!("the terminal ended before {wanted:?}; it showed {seen:?}"),
                Err(_) => panic!("no {wanted:?} within 10s; the terminal showed {seen:?}"),
            }
        }
    }
    terminal.input.write_all(b"echo hi\n").await.unwrap();
    terminal.input.flush().await.unwrap();
    // The TTY echoes the typed line; the command's own output is `hi` on a line of its own.
    read_until(&mut terminal, &mut seen, "\nhi\r\n").await;

    (terminal.resize)(100, 40).await.unwrap();
    terminal.input.write_all(b"stty size; pwd\n").await.unwrap();
    terminal.input.flush().await.unwrap();
    read_until(&mut terminal, &mut seen, "40 100\r\n/projects\r\n").await;

    terminal.input.write_all(b"exit 5\n").await.unwrap();
    terminal.input.flush().await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(chunk) = terminal.output.next().await {
            if chunk.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the terminal's output ends when its shell exits");
    assert_eq!(terminal.exit_code.await, Some(5), "the shell's exit code");
    // The machine lives on.
    assert_eq!(rt.inspect(ws).await.unwrap().unwrap().machines[0].status, MachineStatus::Running);
}

#[tokio::test]
async fn memory_limit_is_enforced() {
    let f = fixture!("memory_limit_is_enforced");
    let rt = &f.runtime;
    let ws = "wksp-mem";
    let mut dev = machine("dev", &f.image);
    dev.memory_bytes = 48 * MB;
    rt.start(&spec(ws, vec![dev]), &ignore).await.unwrap();
    let read = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max";
    let out = exec(rt, ws, "dev", &["sh", "-c", read]).await;
    assert_eq!((out.exit_code, out.stdout.trim()), (0, (48 * MB).to_string().as_str()), "{out:?}");
}

#[tokio::test]
async fn out_of_memory_is_reported() {
    let f = fixture!("out_of_memory_is_reported");
    let rt = &f.runtime;
    let ws = "wksp-oom";
    let mut hog = machine("hog", &f.image);
    hog.memory_bytes = 32 * MB;
    // Waits for a word on a pipe, then fills a buffer far larger than its limit at once (a
    // slowly growing one can make the kernel thrash for a long while before the OOM killer).
    hog.command = Some(words(&[
        "sh",
        "-c",
        "mkfifo /tmp/go && read word < /tmp/go && dd if=/dev/zero of=/dev/null bs=200M count=1",
    ]));
    rt.start(&spec(ws, vec![hog]), &ignore).await.unwrap();
    let mut events = rt.events().await.unwrap();
    exec(rt, ws, "hog", &["sh", "-c", "echo go > /tmp/go"]).await;
    let event = tokio::time::timeout(Duration::from_secs(30), events.next()).await.expect("an event").unwrap();
    assert_eq!(
        event,
        RuntimeEvent::MachineDied {
            workspace_id: ws.to_string(),
            machine: "hog".to_string(),
            reason: "killed (out of memory)".to_string(),
            oom: true,
        }
    );
    let info = rt.inspect(ws).await.unwrap().unwrap();
    assert_eq!(info.machines[0].status, MachineStatus::Stopped);
    assert_eq!(info.machines[0].exit_reason.as_deref(), Some("killed (out of memory)"));
}

#[tokio::test]
async fn failed_starts_leave_nothing_behind() {
    let f = fixture!("failed_starts_leave_nothing_behind");
    // A machine that fails at once stops within milliseconds; a wide window keeps this test
    // sure of seeing it on a busy machine.
    let wide = DockerSettings { start_settle: Duration::from_secs(1), ..settings() };
    let rt = &DockerRuntime::connect(f.instance(), wide).await.unwrap();

    let started = Instant::now();
    let unknown = "drydock-no-such-image:never";
    let (progress, lines) = recorder();
    let result = rt.start(&spec("wksp-img", vec![machine("dev", unknown)]), &progress).await;
    match result {
        Err(RuntimeError::ImageUnavailable { image, reason }) => {
            assert_eq!(image, unknown);
            assert!(!reason.is_empty());
        }
        other => panic!("expected ImageUnavailable, got {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(25), "{:?}", started.elapsed());
    assert!(lines.lock().unwrap().contains(&format!("image {unknown}: pulling")));
    let objects = testing::instance_objects(f.instance()).await.unwrap();
    assert!(objects.is_empty(), "{objects:?}");

    // A command that does not exist: the machine stops at once, and the start says why.
    let mut broken = machine("dev", &f.image);
    broken.command = Some(words(&["/no/such/program"]));
    let result = rt.start(&spec("wksp-cmd", vec![broken]), &ignore).await;
    match result {
        Err(RuntimeError::Engine(message)) => {
            assert!(message.contains("machine dev stopped during start: exited with code 127"), "{message}");
            assert!(message.contains("/no/such/program"), "{message}");
        }
        other => panic!("expected an engine error, got {other:?}"),
    }
    let objects = testing::instance_objects(f.instance()).await.unwrap();
    assert!(objects.is_empty(), "{objects:?}");

    // A workspace that ran before keeps its network and its volume's files; the failed
    // start removes the containers it made, also those of machines that started fine.
    let ws = "wksp-kept";
    rt.start(&spec(ws, vec![machine("dev", &f.image)]), &ignore).await.unwrap();
    exec(rt, ws, "dev", &["sh", "-c", "echo precious > /projects/file"]).await;
    rt.stop(ws).await.unwrap();
    let mut failing = machine("late", &f.image);
    failing.command = Some(words(&["sh", "-c", "exit 3"]));
    failing.depends_on = vec!["dev".to_string()];
    let result = rt.start(&spec(ws, vec![machine("dev", &f.image), failing]), &ignore).await;
    match result {
        Err(RuntimeError::Engine(message)) => {
            assert!(message.contains("machine late stopped during start: exited with code 3"), "{message}")
        }
        other => panic!("expected an engine error, got {other:?}"),
    }
    let objects = testing::instance_objects(f.instance()).await.unwrap();
    assert!(objects.containers.is_empty(), "{objects:?}");
    assert_eq!(objects.networks, vec![network_name(f.instance(), ws)]);
    assert_eq!(objects.volumes, vec![volume_name(f.instance(), ws)]);
    rt.start(&spec(ws, vec![machine("dev", &f.image)]), &ignore).await.unwrap();
    let out = exec(rt, ws, "dev", &["cat", "/projects/file"]).await;
    assert_eq!(out.stdout, "precious\n");
}

#[tokio::test]
async fn a_machine_killed_from_outside_is_reported() {
    let f = fixture!("a_machine_killed_from_outside_is_reported");
    // A window wide enough that the failing start below surely fails.
    let wide = DockerSettings { start_settle: Duration::from_millis(500), ..settings() };
    let rt = &DockerRuntime::connect(f.instance(), wide).await.unwrap();
    rt.start(&spec("wksp-a", vec![machine("dev", &f.image)]), &ignore).await.unwrap();
    rt.start(&spec("wksp-b", vec![machine("dev", &f.image)]), &ignore).await.unwrap();
    // Read the events as they come, as the service does, not only when the test asks.
    let mut stream = rt.events().await.unwrap();
    let (sender, mut events) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(async move {
        while let Some(event) = stream.next().await {
            if sender.send(event).is_err() {
                break;
            }
        }
    });

    // drydock's own stop is no death, nor is a machine failing a start (the start's error
    // says so): the first event is the kill's.
    rt.stop("wksp-b").await.unwrap();
    let mut failing = machine("dev", &f.image);
    failing.command = Some(words(&["sh", "-c", "exit 3"]));
    assert!(rt.start(&spec("wksp-c", vec![failing]), &ignore).await.is_err());
    testing::kill_machine(f.instance(), "wksp-a", "dev").await.unwrap();
    let event = tokio::time::timeout(Duration::from_secs(15), events.recv()).await.expect("an event").unwrap();
    let RuntimeEvent::MachineDied { workspace_id, machine: died, reason, oom } = event;
    assert_eq!((workspace_id.as_str(), died.as_str(), oom), ("wksp-a", "dev", false));
    assert_eq!(reason, "killed by SIGKILL (exit code 137)");

    let info = rt.inspect("wksp-a").await.unwrap().unwrap();
    assert_eq!(info.machines[0].status, MachineStatus::Stopped);
    assert_eq!(info.machines[0].exit_reason.as_deref(), Some("killed by SIGKILL (exit code 137)"));
    let exec_stopped = rt.exec("wksp-a", "dev", &words(&["true"]), Duration::from_secs(5)).await;
    assert!(matches!(exec_stopped, Err(RuntimeError::NotRunning(_))), "{exec_stopped:?}");

    // Starting again replaces the dead container.
    let (progress, lines) = recorder();
    let info = rt.start(&spec("wksp-a", vec![machine("dev", &f.image)]), &progress).await.unwrap();
    assert_eq!(info.machines[0].status, MachineStatus::Running);
    assert!(lines.lock().unwrap().iter().any(|l| l.contains("left from before")));
    rt.remove("wksp-a").await.unwrap();
    rt.remove("wksp-b").await.unwrap();
    // Neither the replaced container nor the removals were reported.
    let more = tokio::time::timeout(Duration::from_millis(500), events.recv()).await;
    assert!(more.is_err(), "no further event: {more:?}");
    reader.abort();
}

#[tokio::test]
async fn snapshot_restores_files_outside_projects() {
    let f = fixture!("snapshot_restores_files_outside_projects");
    let rt = &f.runtime;
    let ws = "wksp-snap";
    let base = spec(ws, vec![machine("dev", &f.image)]);
    rt.start(&base, &ignore).await.unwrap();
    exec(rt, ws, "dev", &["sh", "-c", "echo from-snapshot > /etc/marker"]).await;
    let images = rt.snapshot(ws).await.unwrap();
    assert_eq!(images.keys().collect::<Vec<_>>(), ["dev"]);
    let image = &images["dev"];
    let prefix = format!("drydock-{}-{ws}-dev:snapshot-", f.instance());
    assert!(image.starts_with(&prefix) && image.len() == prefix.len() + 14, "{image}");
    let labels = testing::image_labels(image).await.unwrap().expect("the snapshot image exists");
    assert_eq!(labels.get("drydock.instance").map(String::as_str), Some(f.instance()));
    assert_eq!(labels.get("drydock.workspace").map(String::as_str), Some(ws));
    assert_eq!(labels.get("drydock.machine").map(String::as_str), Some("dev"));

    rt.stop(ws).await.unwrap();
    assert!(matches!(rt.snapshot(ws).await, Err(RuntimeError::NotRunning(_))));
    let mut restore = base.clone();
    restore.images = images.clone();
    rt.start(&restore, &ignore).await.unwrap();
    let out = exec(rt, ws, "dev", &["cat", "/etc/marker"]).await;
    assert_eq!((out.exit_code, out.stdout.as_str()), (0, "from-snapshot\n"));
    // Without the snapshot, the image's own file system again.
    rt.stop(ws).await.unwrap();
    rt.start(&base, &ignore).await.unwrap();
    let out = exec(rt, ws, "dev", &["cat", "/etc/marker"]).await;
    assert_ne!(out.exit_code, 0);
    // Removing the workspace removes its snapshots too.
    rt.remove(ws).await.unwrap();
    assert!(testing::image_labels(image).await.unwrap().is_none());
}

#[tokio::test]
async fn instances_do_not_see_each_other() {
    let f = fixture!("instances_do_not_see_each_other");
    let other_instance = testing::test_instance_id();
    let _other_guard = InstanceGuard::new(&other_instance);
    let other = DockerRuntime::connect(&other_instance, settings()).await.unwrap();
    let ws = "wksp-same";
    let mine = f.runtime.start(&spec(ws, vec![machine("dev", &f.image)]), &ignore).await.unwrap();
    let theirs = other.start(&spec(ws, vec![machine("dev", &f.image)]), &ignore).await.unwrap();
    assert_ne!(mine.machines[0].container_id, theirs.machines[0].container_id);

    let listed = f.runtime.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].machines[0].container_id, mine.machines[0].container_id);
    let listed = other.list().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].machines[0].container_id, theirs.machines[0].container_id);

    f.runtime.remove(ws).await.unwrap();
    assert_eq!(f.runtime.inspect(ws).await.unwrap(), None);
    let still = other.inspect(ws).await.unwrap().expect("the other instance's workspace is untouched");
    assert_eq!(still.machines[0].status, MachineStatus::Running);
    let objects = testing::instance_objects(&other_instance).await.unwrap();
    assert_eq!((objects.containers.len(), objects.networks.len(), objects.volumes.len()), (1, 1, 1));
    let out = exec(&other, ws, "dev", &["true"]).await;
    assert_eq!(out.exit_code, 0);
}
