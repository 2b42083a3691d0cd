//! `drydock workspace …` against a real server and the real Docker engine: create, list,
//! exec, stop, start with its progress, delete; a start that fails; a compose workspace;
//! snapshot and a restoring start; ssh with stdin piped.

mod common;

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use common::{Instance, docker_instance, text};
use drydock_docker::testing::instance_objects;
use serde_json::{Value, json};

/// Runs `drydock --data-dir DIR workspace ARGS…` (as the first administrator, through the
/// data dir); the global flag goes first so that it never lands in an exec's command.
fn workspace(dd: &Instance, args: &[&str]) -> Output {
    dd.command(&[]).arg("workspace").args(args).output().expect("drydock runs")
}

fn ok(out: Output, what: &str) -> Output {
    assert!(out.status.success(), "{what}: {}", text(&out));
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn create_list_exec_stop_start_delete() {
    let Some((mut dd, guard, image)) = docker_instance().await else { return };

    // Created and started from an image: the id on stdout, and it runs once the verb returns.
    let out = ok(workspace(&dd, &["create", "--image", &image, "devbox", "--memory", "256", "--start"]), "create");
    let id = stdout(&out).trim().to_string();
    assert!(id.starts_with("wksp-"), "{}", text(&out));

    let out = ok(workspace(&dd, &["list"]), "list");
    let table = stdout(&out);
    let row = table.lines().find(|l| l.starts_with("admin:devbox ")).unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells, ["admin:devbox", id.as_str(), "RUNNING", "dev"], "{table}");
    let out = ok(workspace(&dd, &["list", "--status", "running", "--json"]), "list --json");
    let listed: Vec<Value> = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((&listed[0]["id"], &listed[0]["status"]), (&json!(id), &json!("RUNNING")));
    let out = ok(workspace(&dd, &["list", "--status", "STOPPED"]), "list STOPPED");
    assert_eq!(stdout(&out).lines().count(), 1, "only the header: {}", text(&out));

    // exec: stdout, stderr and the exit code come through exactly; by name, namespace:name or id.
    let out = workspace(&dd, &["exec", "devbox", "--", "sh", "-c", "echo out; printf 'err\\n' >&2; exit 3"]);
    assert_eq!((stdout(&out).as_str(), stderr(&out).as_str(), out.status.code()), ("out\n", "err\n", Some(3)));
    let out =
        ok(workspace(&dd, &["exec", "admin:devbox", "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]), "exec");
    assert_eq!(stdout(&out).trim(), "268435456", "--memory is the machine's limit");
    ok(workspace(&dd, &["exec", &id, "--machine", "dev", "sh", "-c", "echo kept > /projects/file"]), "exec by id");
    let out = workspace(&dd, &["exec", "devbox", "--machine", "nope", "true"]);
    assert!(!out.status.success() && stderr(&out).contains("nope"), "{}", text(&out));
    let out = workspace(&dd, &["exec", "nothing-here", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no workspace 'nothing-here'"), "{}", text(&out));

    // stop, then start again with its progress; the file in /projects is there.
    let out = ok(workspace(&dd, &["stop", "devbox"]), "stop");
    assert!(stdout(&out).contains("admin:devbox is STOPPED"), "{}", text(&out));
    let out = workspace(&dd, &["exec", "devbox", "true"]);
    assert!(!out.status.success() && stderr(&out).contains("STOPPED"), "no exec when stopped: {}", text(&out));
    let out = ok(workspace(&dd, &["start", "devbox"]), "start");
    let progress = stderr(&out);
    assert!(progress.contains("STARTING: starting environment default"), "{progress}");
    assert!(progress.lines().count() >= 2, "progress messages as they come: {progress}");
    assert_eq!(stdout(&out).trim(), "workspace admin:devbox is RUNNING");
    let out = ok(workspace(&dd, &["exec", "devbox", "cat", "/projects/file"]), "exec after restart");
    assert_eq!(stdout(&out), "kept\n");
    let out = workspace(&dd, &["start", "devbox"]);
    assert!(!out.status.success() && stderr(&out).contains("RUNNING"), "already running: {}", text(&out));

    // delete: refused without a terminal unless --yes; refused by the server while it runs.
    let out = workspace(&dd, &["delete", "devbox"]);
    assert!(!out.status.success() && stderr(&out).contains("--yes"), "{}", text(&out));
    let out = ok(workspace(&dd, &["list", "--json"]), "list");
    assert_eq!(serde_json::from_str::<Vec<Value>>(&stdout(&out)).unwrap().len(), 1, "still there");
    let out = workspace(&dd, &["delete", "devbox", "--yes"]);
    assert!(!out.status.success(), "a running workspace is not deleted: {}", text(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "one line: {}", text(&out));
    ok(workspace(&dd, &["stop", &id]), "stop");
    let out = ok(workspace(&dd, &["delete", "devbox", "--yes"]), "delete");
    assert!(stdout(&out).contains("deleted workspace admin:devbox"), "{}", text(&out));
    let out = ok(workspace(&dd, &["list", "--json"]), "list");
    assert_eq!(stdout(&out).trim(), "[]");
    let left = instance_objects(guard.instance_id()).await.unwrap();
    assert!(left.is_empty(), "{left:?}");
    dd.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_start_that_fails_exits_with_the_error() {
    let Some((mut dd, guard, _image)) = docker_instance().await else { return };
    let out = ok(workspace(&dd, &["create", "--image", "drydock-test/no-such-image:never", "broken"]), "create");
    let id = stdout(&out).trim().to_string();
    let out = workspace(&dd, &["start", "broken"]);
    assert!(!out.status.success(), "{}", text(&out));
    let errors: Vec<String> = stderr(&out).lines().filter(|l| l.starts_with("error: ")).map(String::from).collect();
    assert_eq!(errors.len(), 1, "{}", text(&out));
    assert!(errors[0].contains("failed to start") && errors[0].contains("no-such-image"), "{}", text(&out));
    let out = ok(workspace(&dd, &["list", "--status", "ERROR"]), "list");
    assert!(stdout(&out).contains(&id), "{}", text(&out));
    let left = instance_objects(guard.instance_id()).await.unwrap();
    assert!(left.is_empty(), "nothing left behind: {left:?}");

    // Bad input is one line from the API, and a non-zero exit.
    let out = workspace(&dd, &["create", "--image", "busybox", "has space"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", text(&out));
    assert!(stderr(&out).contains("name"), "{}", text(&out));
    ok(workspace(&dd, &["delete", "broken", "--yes"]), "delete");
    dd.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_compose_workspace_from_a_file() {
    let Some((mut dd, _guard, image)) = docker_instance().await else { return };
    let compose = format!(
        "services:\n  app:\n    image: {image}\n    depends_on: [db]\n  db:\n    image: {image}\n    command: \"httpd -f -p 8080\"\n"
    );
    let config = json!({"name": "composed", "defaultEnv": "default", "environments": {"default": {
        "recipe": {"type": "compose", "contentType": "application/x-yaml", "content": compose}}}});
    let file = dd.data_dir().join("composed.json");
    std::fs::write(&file, config.to_string()).unwrap();
    let out = ok(workspace(&dd, &["create", "--file", file.to_str().unwrap(), "--start"]), "create --file");
    let id = stdout(&out).trim().to_string();

    let out = ok(workspace(&dd, &["list"]), "list");
    let row = stdout(&out).lines().find(|l| l.contains(&id)).map(String::from).unwrap_or_else(|| text(&out));
    assert_eq!(row.split_whitespace().collect::<Vec<_>>(), ["admin:composed", id.as_str(), "RUNNING", "app,db"]);

    // app reaches db by name (db's httpd may still be coming up: a few tries).
    let reach =
        "for i in 1 2 3 4 5 6 7 8 9 10; do wget -qO- http://db:8080/etc/hostname && exit 0; sleep 0.3; done; exit 1";
    let out = ok(workspace(&dd, &["exec", "composed", "--machine", "app", "--", "sh", "-c", reach]), "exec in app");
    assert!(!stdout(&out).trim().is_empty(), "{}", text(&out));
    let out = workspace(&dd, &["exec", "composed", "--machine", "app", "--timeout", "5", "--", "hostname"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    ok(workspace(&dd, &["stop", "composed"]), "stop");
    ok(workspace(&dd, &["delete", "admin:composed", "--yes"]), "delete");
    dd.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn snapshot_restore_and_ssh() {
    let Some((mut dd, _guard, image)) = docker_instance().await else { return };
    let out = ok(workspace(&dd, &["create", "--image", &image, "snappy", "--start"]), "create");
    let id = stdout(&out).trim().to_string();

    // ssh with stdin piped: what it reads goes to the shell, the output comes to stdout, and
    // the verb ends with the shell's exit code (0) when the shell exits.
    let out = ssh_piped(&dd, "snappy", b"echo hi-$((40+2))\nexit\n").await;
    assert!(out.status.success(), "{}", text(&out));
    assert!(stdout(&out).contains("hi-42"), "{}", text(&out));
    // Without `exit`: it ends once stdin has ended and the output has been quiet a moment.
    let out = ssh_piped(&dd, "snappy", b"echo bye-$((1+1))\n").await;
    assert!(out.status.success() && stdout(&out).contains("bye-2"), "{}", text(&out));
    // The shell's exit code is the verb's.
    let out = ssh_piped(&dd, "snappy", b"echo three\nexit 3\n").await;
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(stdout(&out).contains("three"), "{}", text(&out));
    let out = workspace(&dd, &["ssh", "snappy", "nope"]);
    assert!(!out.status.success() && stderr(&out).contains("nope"), "{}", text(&out));

    // A snapshot keeps what was written outside /projects; start --restore starts from it.
    ok(workspace(&dd, &["exec", "snappy", "sh", "-c", "echo snapped > /root/marker"]), "exec");
    let out = ok(workspace(&dd, &["snapshot", "snappy"]), "snapshot");
    let lines: Vec<String> = stdout(&out).lines().map(String::from).collect();
    assert_eq!(lines.len(), 1, "{}", text(&out));
    assert!(lines[0].starts_with("dev ") && lines[0].contains(&id), "{}", text(&out));
    ok(workspace(&dd, &["stop", "snappy"]), "stop");
    let out = ok(workspace(&dd, &["start", "snappy", "--restore"]), "start --restore");
    assert_eq!(stdout(&out).trim(), "workspace admin:snappy is RUNNING");
    let out = ok(workspace(&dd, &["exec", "snappy", "cat", "/root/marker"]), "exec after restore");
    assert_eq!(stdout(&out), "snapped\n");

    // Stopped: ssh says why, in one line.
    ok(workspace(&dd, &["stop", "snappy"]), "stop");
    let out = workspace(&dd, &["ssh", "snappy"]);
    assert!(!out.status.success() && stderr(&out).contains("STOPPED"), "{}", text(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", text(&out));
    ok(workspace(&dd, &["delete", "snappy", "--yes"]), "delete");
    dd.stop();
}

/// Runs `drydock workspace ssh WS` with `input` on its stdin (then closed); fails the test
/// unless it ends within 15 s.
async fn ssh_piped(dd: &Instance, ws: &str, input: &[u8]) -> Output {
    let mut child = dd
        .command(&[])
        .args(["workspace", "ssh", ws])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("drydock runs");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("ssh did not end: {}", text(&child.wait_with_output().unwrap()));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.wait_with_output().unwrap()
}
