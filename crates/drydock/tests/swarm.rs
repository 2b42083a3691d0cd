//! drydock with `runtime.kind = "swarm"`, through the real server: the workspace story of
//! the docker runtime on a one-node swarm, two machines over the overlay, the node API and
//! CLI, drain and out-of-room refusals; then placement, a split workspace and a drain that
//! moves files on two nodes (a second engine in its own network namespace, joined as a
//! worker). These tests change the engine (swarm init and leave), so they run in nextest's
//! serialized `swarm` group.

mod common;

use common::workspace_story::{self, create, exec, settled, start};
use common::{ADMIN_PASSWORD, Backend, Instance, call, docker_image, text};
use std::time::{Duration, Instant};

use drydock_docker::testing::InstanceGuard;
use drydock_docker::testing_registry::TestRegistry;
use drydock_docker::testing_swarm::TestSwarm;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const GIB: u64 = 1 << 30;

/// A started swarm instance and the guard of its engine objects.
async fn swarm_instance(backend: Backend, env: &[(&str, &str)]) -> Option<(Instance, InstanceGuard)> {
    let mut vars = vec![("DRYDOCK_RUNTIME__KIND", "swarm")];
    vars.extend_from_slice(env);
    let mut dd = Instance::init_with(backend, &vars)?;
    let id = std::fs::read_to_string(dd.data_dir().join("instance.id")).unwrap();
    let guard = InstanceGuard::new(id.trim());
    dd.start().await;
    Some((dd, guard))
}

/// SIGKILLs a machine's container, found by its labels (Swarm names it).
fn kill(instance: &str, ws: &str, machine: &str, docker_host: Option<&str>) {
    let mut ps = std::process::Command::new("docker");
    if let Some(host) = docker_host {
        ps.env("DOCKER_HOST", host);
    }
    let out = ps
        .args(["ps", "-q", "--filter", &format!("label=drydock.instance={instance}")])
        .args(["--filter", &format!("label=drydock.workspace={ws}")])
        .args(["--filter", &format!("label=drydock.machine={machine}")])
        .output()
        .unwrap();
    let id = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(!id.is_empty(), "no container of machine {machine} of {ws}");
    let mut killer = std::process::Command::new("docker");
    if let Some(host) = docker_host {
        killer.env("DOCKER_HOST", host);
    }
    assert!(killer.args(["kill", &id]).output().unwrap().status.success());
}

/// Two machines: `app` (the dev machine, with /projects) and `db`, which serves a page;
/// `db` goes without /projects when `split`, so Swarm may place it on any node.
fn two_machines(name: &str, image: &str, app_memory: u64, db_memory: u64, split: bool) -> Value {
    let compose = format!(
        "services:\n  app:\n    image: {image}\n    mem_limit: {app_memory}\n    depends_on: [db]\n  db:\n    image: {image}\n    \
         mem_limit: {db_memory}\n    command: [\"sh\", \"-c\", \"mkdir -p /tmp/www && echo db-$(hostname) > /tmp/www/index.html && \
         exec httpd -f -p 5432 -h /tmp/www\"]\n"
    );
    let db = if split { json!({"attributes": {"projects": "false"}}) } else { json!({}) };
    json!({"name": name, "defaultEnv": "default", "environments": {"default": {
        "recipe": {"type": "compose", "contentType": "application/x-yaml", "content": compose},
        "machines": {"app": {"attributes": {"dev": "true"}}, "db": db}}}})
}

async fn nodes(dd: &Instance, token: &str) -> Vec<Value> {
    let (status, nodes) = call(dd, token, Method::GET, "/api/nodes", None).await;
    assert_eq!(status, StatusCode::OK, "{nodes}");
    nodes.as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_workspace_story_on_a_one_node_swarm() {
    let Some(image) = docker_image().await else { return };
    let swarm = TestSwarm::single_node().unwrap();
    let Some((mut dd, guard)) = swarm_instance(Backend::Sqlite, &[("DRYDOCK_LIMITS__WORKSPACE__RAM", "-1")]).await
    else {
        return;
    };
    let instance = guard.instance_id().to_string();

    // The story of the docker runtime, unchanged.
    workspace_story::files_in_projects_survive_a_stop(&dd, &instance, &image).await;

    // Two machines on the workspace's overlay reach each other by name; each shows its node.
    let admin = dd.token_for("admin", ADMIN_PASSWORD).await;
    let id = create(&dd, &admin, &two_machines("pair", &image, 128 << 20, 64 << 20, false)).await;
    let ws = start(&dd, &admin, &id).await;
    assert_eq!(ws["status"], "RUNNING", "{ws}");
    let node = swarm.manager_node().to_string();
    assert_eq!(ws["attributes"]["node"], node.as_str(), "{ws}");
    for machine in ["app", "db"] {
        assert_eq!(ws["runtime"]["machines"][machine]["nodeId"], node.as_str(), "{ws}");
        assert!(!ws["runtime"]["machines"][machine]["node"].as_str().unwrap().is_empty());
    }
    let (status, out) = exec(&dd, &admin, &id, &["wget", "-q", "-O", "-", "http://db:5432/"]).await;
    assert_eq!((status, out["stdout"].as_str()), (StatusCode::OK, Some("db-db\n")), "{out}");

    // The node API and CLI: the one node, its memory and its workspaces; admins only.
    let listed = nodes(&dd, &admin).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let one = &listed[0];
    assert_eq!(
        (one["id"].as_str(), one["state"].as_str(), one["availability"].as_str()),
        (Some(node.as_str()), Some("ready"), Some("active"))
    );
    assert!(one["ramReserved"].as_u64().unwrap() >= 192 << 20 && one["ramTotal"].as_u64().unwrap() > GIB, "{one}");
    assert_eq!(one["workspaces"][0]["name"], "pair", "{one}");
    for key in ["hostname", "address"] {
        assert!(!one[key].as_str().unwrap().is_empty(), "{one}");
    }
    dd.create_user(&admin, "carol", "carol-password").await;
    let carol = dd.token_for("carol", "carol-password").await;
    assert_eq!(call(&dd, &carol, Method::GET, "/api/nodes", None).await.0, StatusCode::FORBIDDEN);
    let out = dd.command(&["node", "list"]).env("DRYDOCK_TOKEN", &admin).env("DRYDOCK_URL", &dd.url).output().unwrap();
    assert!(out.status.success() && text(&out).contains(&node) && text(&out).contains("admin/pair"), "{}", text(&out));
    let out = dd
        .command(&["node", "join-command"])
        .env("DRYDOCK_TOKEN", &admin)
        .env("DRYDOCK_URL", &dd.url)
        .output()
        .unwrap();
    assert!(text(&out).starts_with("docker swarm join --token SWMTKN-"), "{}", text(&out));

    // Out of room: a workspace asking more memory than the node has is refused at once, the
    // detail for administrators only.
    let total = one["ramTotal"].as_u64().unwrap();
    let huge = two_machines("huge", &image, total, 64 << 20, false);
    let (status, made) = call(&dd, &carol, Method::POST, "/api/workspace", Some(huge)).await;
    assert_eq!(status, StatusCode::CREATED, "{made}");
    let huge_id = made["id"].as_str().unwrap().to_string();
    let path = format!("/api/workspace/{huge_id}/runtime");
    let (status, refused) = call(&dd, &carol, Method::POST, &path, None).await;
    assert_eq!(
        (status, refused["message"].as_str()),
        (StatusCode::CONFLICT, Some("The system is out of resources. Please contact your system admin."))
    );
    let own = create(&dd, &admin, &two_machines("huge", &image, total, 64 << 20, false)).await;
    let path = format!("/api/workspace/{own}/runtime");
    let (status, refused) = call(&dd, &admin, Method::POST, &path, None).await;
    let message = refused["message"].as_str().unwrap();
    assert!(
        status == StatusCode::CONFLICT && message.contains("out of resources") && message.contains("MiB free"),
        "{refused}"
    );
    assert_eq!(settled(&dd, &carol, &huge_id).await["status"], "STOPPED");

    // A killed machine is an ERROR; a killed master comes back to a RUNNING workspace.
    let kill_dev = |ws: String| {
        let instance = instance.clone();
        async move { kill(&instance, &ws, "dev", None) }
    };
    workspace_story::a_killed_machine_and_a_killed_master(&mut dd, &image, kill_dev).await;

    // Drain: the node's workspaces stop (by `drain`); with no other node, starts are refused
    // until it is active again.
    let admin = dd.token_for("admin", ADMIN_PASSWORD).await;
    let out = dd
        .command(&["node", "drain", &node, "--yes"])
        .env("DRYDOCK_TOKEN", &admin)
        .env("DRYDOCK_URL", &dd.url)
        .output()
        .unwrap();
    assert!(out.status.success() && text(&out).contains("workspace(s) stopped"), "{}", text(&out));
    let (_, ws) = call(&dd, &admin, Method::GET, &format!("/api/workspace/{id}"), None).await;
    assert_eq!(
        (ws["status"].as_str(), ws["attributes"]["stoppedBy"].as_str()),
        (Some("STOPPED"), Some("drain")),
        "{ws}"
    );
    assert_eq!(nodes(&dd, &admin).await[0]["availability"], "drain");
    let (status, refused) = call(&dd, &admin, Method::POST, &format!("/api/workspace/{id}/runtime"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("drain"), "{refused}");
    let (status, active) = call(&dd, &admin, Method::POST, &format!("/api/nodes/{node}/activate"), None).await;
    assert_eq!((status, active["availability"].as_str()), (StatusCode::OK, Some("active")), "{active}");
    assert_eq!(start(&dd, &admin, &id).await["status"], "RUNNING");
    let (_, events) = call(&dd, &admin, Method::GET, "/api/audit/events?action=node.drain", None).await;
    assert!(events.to_string().contains("node.drain"), "{events}");

    // Removing the only (manager) node is refused.
    let (status, refused) = call(&dd, &admin, Method::DELETE, &format!("/api/nodes/{node}"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    dd.stop();
    drop(guard);
    drop(swarm);
}

/// Removes an instance's objects from the worker's engine when dropped (the instance's
/// `InstanceGuard` covers the local engine).
struct WorkerGuard {
    endpoint: String,
    instance: String,
}

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        let (endpoint, instance) = (self.endpoint.clone(), self.instance.clone());
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(drydock_docker::testing::remove_instance_objects_on(&endpoint, &instance))
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("cleaning up test instance {} on the worker: {e}", self.instance),
            Err(_) => eprintln!("cleaning up test instance {} on the worker panicked", self.instance),
        }
    }
}

/// Removes an image tag from the local engine when dropped.
struct Untag(String);

impl Drop for Untag {
    fn drop(&mut self) {
        if let Err(e) = drydock_docker::testing_swarm::docker(None, &["rmi", &self.0], Duration::from_secs(30)) {
            eprintln!("removing the tag {}: {e}", self.0);
        }
    }
}

fn node_of(ws: &Value) -> String {
    ws["attributes"]["node"].as_str().unwrap_or_default().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn placement_a_split_workspace_and_a_drain_on_two_nodes() {
    let Some(image) = docker_image().await else { return };
    let swarm = TestSwarm::two_nodes(&[&image]).unwrap();
    let (manager, worker) = (swarm.manager_node().to_string(), swarm.worker_node().unwrap().to_string());
    let endpoint = swarm.worker_endpoint().unwrap().to_string();
    // The master reaches the worker's engine over TCP with TLS, as it would another host's.
    let (tls_url, certs) = swarm.worker_tls_endpoint().unwrap();
    let nodes_setting = format!("{worker}={tls_url}");
    let certs = certs.display().to_string();
    let env = [
        ("DRYDOCK_RUNTIME__NODES", nodes_setting.as_str()),
        ("DRYDOCK_RUNTIME__NODE_CERTS", certs.as_str()),
        ("DRYDOCK_LIMITS__WORKSPACE__RAM", "-1"),
    ];
    let Some((mut dd, guard)) = swarm_instance(Backend::Sqlite, &env).await else { return };
    let _worker_guard = WorkerGuard { endpoint: endpoint.clone(), instance: guard.instance_id().to_string() };
    let admin = dd.token_for("admin", ADMIN_PASSWORD).await;

    // Placement: each new workspace goes to the node with the most unreserved memory.
    let a = create(&dd, &admin, &workspace_story::config("first", &image)).await;
    let b = create(&dd, &admin, &workspace_story::config("second", &image)).await;
    let a_node = node_of(&start(&dd, &admin, &a).await);
    let b_node = node_of(&start(&dd, &admin, &b).await);
    let mut placed = [a_node.clone(), b_node.clone()];
    placed.sort();
    let mut both = [manager.clone(), worker.clone()];
    both.sort();
    assert_eq!(placed, both, "one workspace on each node");
    let listed = nodes(&dd, &admin).await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    for node in &listed {
        assert_eq!(node["workspaces"].as_array().unwrap().len(), 1, "{node}");
        assert_eq!(node["engine"], true, "{node}");
    }
    // The one on the worker: exec and the proxy go through the worker's engine and address.
    let (on_worker, on_manager) = if a_node == worker { (a.clone(), b.clone()) } else { (b.clone(), a.clone()) };
    let (status, out) =
        exec(&dd, &admin, &on_worker, &["sh", "-c", "echo moved-along > /projects/keep; hostname"]).await;
    assert_eq!((status, out["stdout"].as_str()), (StatusCode::OK, Some("dev\n")), "{out}");
    let serve = "mkdir -p /tmp/site && echo from-the-worker > /tmp/site/index.html && httpd -p 8080 -h /tmp/site";
    assert_eq!(exec(&dd, &admin, &on_worker, &["sh", "-c", serve]).await.0, StatusCode::OK);
    let page = format!("/w/{on_worker}/dev/web/index.html");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let r = dd.req(Method::GET, &page).bearer_auth(&admin).send().await.unwrap();
        if r.status() == StatusCode::OK {
            assert_eq!(r.text().await.unwrap(), "from-the-worker\n");
            break;
        }
        assert!(Instant::now() < deadline, "the proxy never reached the worker's machine: {}", r.status());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A backup reads each workspace's files through the engine of its node.
    let out = dd.cli(&["backup", "--out", &dd.data_dir().join("backups/").display().to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    let archive = String::from_utf8_lossy(&out.stdout)
        .split("Backup written: ")
        .nth(1)
        .unwrap()
        .split(" (")
        .next()
        .unwrap()
        .to_string();
    let entries = std::process::Command::new("tar").args(["--zstd", "-tf", &archive]).output().unwrap();
    let entries = String::from_utf8_lossy(&entries.stdout).to_string();
    assert!(entries.contains(&format!("volumes/{on_worker}/keep")), "the worker's files are in the backup");
    assert!(entries.contains(&format!("volumes/{on_manager}/")), "the manager's too");

    // A two-machine workspace split over the nodes: neither node has room for both machines'
    // reservations, so `db` (without /projects) goes to the other; they reach each other by name.
    let total = listed[0]["ramTotal"].as_u64().unwrap().min(listed[1]["ramTotal"].as_u64().unwrap());
    let big = (total / 2 + (1 << 30)) & !((1 << 20) - 1);
    let split = create(&dd, &admin, &two_machines("split", &image, big, big, true)).await;
    let ws = start(&dd, &admin, &split).await;
    assert_eq!(ws["status"], "RUNNING", "{ws}");
    let (app_node, db_node) =
        (ws["runtime"]["machines"]["app"]["nodeId"].clone(), ws["runtime"]["machines"]["db"]["nodeId"].clone());
    assert_ne!(app_node, db_node, "{ws}");
    let (status, out) = exec(&dd, &admin, &split, &["wget", "-q", "-O", "-", "http://db:5432/"]).await;
    assert_eq!((status, out["stdout"].as_str()), (StatusCode::OK, Some("db-db\n")), "{out}");
    let stop = call(&dd, &admin, Method::DELETE, &format!("/api/workspace/{split}/runtime"), None).await;
    assert_eq!(stop.0, StatusCode::NO_CONTENT);
    assert_eq!(settled(&dd, &admin, &split).await["status"], "STOPPED");
    let deleted = call(&dd, &admin, Method::DELETE, &format!("/api/workspace/{split}"), None).await;
    assert_eq!(deleted.0, StatusCode::NO_CONTENT, "{}", deleted.1);

    // A start on a node that lacks the image, with no registry: the error names both.
    let local_only = format!("{image}-manager-only");
    drydock_docker::testing_swarm::docker(None, &["tag", &image, &local_only], Duration::from_secs(30)).unwrap();
    let _untag = Untag(local_only.clone());
    let lacking = create(&dd, &admin, &common::small_workspace("lacking", &local_only)).await;
    let (status, _) = call(&dd, &admin, Method::POST, &format!("/api/nodes/{manager}/drain"), None).await;
    assert_eq!(status, StatusCode::OK);
    let ws = start(&dd, &admin, &lacking).await;
    let error = ws["attributes"]["errorMessage"].as_str().unwrap_or_default().to_string();
    assert!(ws["status"] == "ERROR" && error.contains(&local_only) && error.contains(&worker[..12]), "{ws}");
    assert!(error.contains("no registry is set"), "{error}");

    // With a registry, the manager pushes the image there and the worker pulls it.
    let mut registry = TestRegistry::start("127.0.0.1").unwrap();
    registry.serve_in_netns(drydock_docker::testing_swarm::NETNS).unwrap();
    dd.stop();
    dd.env.push(("DRYDOCK_RUNTIME__REGISTRY".to_string(), registry.address().to_string()));
    dd.start().await;
    let ws = start(&dd, &admin, &lacking).await;
    assert_eq!(ws["status"], "RUNNING", "{ws}");
    assert_eq!(ws["runtime"]["machines"]["dev"]["nodeId"], worker.as_str(), "{ws}");
    let stop = call(&dd, &admin, Method::DELETE, &format!("/api/workspace/{lacking}/runtime"), None).await;
    assert_eq!(stop.0, StatusCode::NO_CONTENT);
    assert_eq!(settled(&dd, &admin, &lacking).await["status"], "STOPPED");
    let deleted = call(&dd, &admin, Method::DELETE, &format!("/api/workspace/{lacking}"), None).await;
    assert_eq!(deleted.0, StatusCode::NO_CONTENT, "{}", deleted.1);
    let (status, _) = call(&dd, &admin, Method::POST, &format!("/api/nodes/{manager}/activate"), None).await;
    assert_eq!(status, StatusCode::OK);
    // The drain of the manager stopped the workspace there.
    let (_, ws) = call(&dd, &admin, Method::GET, &format!("/api/workspace/{on_manager}"), None).await;
    assert_eq!((ws["status"].as_str(), ws["attributes"]["stoppedBy"].as_str()), (Some("STOPPED"), Some("drain")));

    // Without the worker's engine, what needs it says so; the rest works.
    dd.stop();
    // `init` wrote the setting into drydock.toml: the environment empties it.
    dd.env.retain(|(k, _)| k != "DRYDOCK_RUNTIME__NODES");
    dd.env.push(("DRYDOCK_RUNTIME__NODES".to_string(), String::new()));
    dd.start().await;
    let (status, refused) = exec(&dd, &admin, &on_worker, &["true"]).await;
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(status == StatusCode::CONFLICT && message.contains("runtime.nodes"), "{refused}");
    assert_eq!(nodes(&dd, &admin).await.iter().filter(|n| n["engine"] == false).count(), 1);
    dd.stop();
    dd.env.retain(|(k, _)| k != "DRYDOCK_RUNTIME__NODES");
    dd.env.push(("DRYDOCK_RUNTIME__NODES".to_string(), nodes_setting.clone()));
    dd.start().await;

    // Drain the worker: its workspace stops; the worker cannot go while it holds the files;
    // the next start moves them to the manager, and then it can.
    let out = dd
        .command(&["node", "drain", &worker, "--yes"])
        .env("DRYDOCK_TOKEN", &admin)
        .env("DRYDOCK_URL", &dd.url)
        .output()
        .unwrap();
    assert!(out.status.success() && text(&out).contains("1 workspace(s) stopped"), "{}", text(&out));
    let (status, refused) = call(&dd, &admin, Method::DELETE, &format!("/api/nodes/{worker}"), None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("still holds the files"), "{refused}");
    let ws = start(&dd, &admin, &on_worker).await;
    assert_eq!((ws["status"].as_str(), node_of(&ws)), (Some("RUNNING"), manager.clone()), "{ws}");
    let (_, out) = exec(&dd, &admin, &on_worker, &["cat", "/projects/keep"]).await;
    assert_eq!(out["stdout"], "moved-along\n", "{out}");
    let left = drydock_docker::testing::instance_objects_on(&endpoint, guard.instance_id()).await.unwrap();
    let old_copy = format!("drydock-{}-{on_worker}-projects", guard.instance_id());
    assert!(!left.volumes.contains(&old_copy), "the old copy went once the new one held everything: {left:?}");
    let (status, _) = call(&dd, &admin, Method::DELETE, &format!("/api/nodes/{worker}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(nodes(&dd, &admin).await.len(), 1);
    dd.stop();
    drop(guard);
    drop(swarm);
}
