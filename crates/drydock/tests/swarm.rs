//! drydock with `runtime.kind = "swarm"`, through the real server: the workspace story of
//! the docker runtime on a one-node swarm, two machines over the overlay, the node API and
//! CLI, drain and out-of-room refusals; then placement, a split workspace and a drain that
//! moves files on two nodes (a second engine in its own network namespace, joined as a
//! worker). These tests change the engine (swarm init and leave), so they run in nextest's
//! serialized `swarm` group.

mod common;

use common::workspace_story::{self, create, exec, settled, start};
use common::{ADMIN_PASSWORD, Backend, Instance, call, docker_image, text};
use drydock_docker::testing::InstanceGuard;
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
