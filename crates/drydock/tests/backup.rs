//! Backup and restore on real parts: the Docker engine, SQLite and PostgreSQL. A backup taken
//! while a workspace runs and writes restores into a wiped instance identically; damaged
//! archives, a restore while the server runs and failures midway change nothing; a killed
//! backup leaves no archive; one workspace's files come back alone.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{
    ADMIN_PASSWORD, Backend, Instance, call, docker_instance_with, psql, settled, small_workspace, text, tree,
};
use drydock_docker::testing::{image_labels, remove_instance_objects};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn start(dd: &Instance, token: &str, id: &str) {
    let (status, body) = call(dd, token, Method::POST, &format!("/api/workspace/{id}/runtime"), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(settled(dd, token, id).await, "RUNNING");
}

async fn stop(dd: &Instance, token: &str, id: &str) {
    let (status, body) = call(dd, token, Method::DELETE, &format!("/api/workspace/{id}/runtime"), None).await;
    assert!(status.is_success(), "{body}");
    assert_eq!(settled(dd, token, id).await, "STOPPED");
}

async fn sh(dd: &Instance, token: &str, id: &str, script: &str) -> String {
    let body = json!({"command": ["sh", "-c", script]});
    let (status, out) = call(dd, token, Method::POST, &format!("/api/workspace/{id}/exec"), Some(body)).await;
    assert_eq!(status, StatusCode::OK, "{out}");
    assert_eq!(out["exitCode"], 0, "{script}: {out}");
    out["stdout"].as_str().unwrap().to_string()
}

/// Every path, owner, mode, size, link target and checksum under /projects (but the log the
/// writer appends to during the backup).
const PROJECTS_STATE: &str = "cd /projects && find . ! -name live.log | sort && \
    find . -type f ! -name live.log | sort | xargs md5sum && ls -lnd . && ls -lnRA | grep -v live.log | grep -v '^total'";

const WRITE_FILES: &str = "mkdir -p /projects/app/target /projects/empty && \
    echo 'fn main() {}' > /projects/app/main.rs && printf 'target/\\n*.log\\n' > /projects/app/.gitignore && \
    head -c 300000 /dev/urandom > /projects/app/target/build.bin && ln -s main.rs /projects/app/link.rs && \
    ln /projects/app/main.rs /projects/app/hard.rs && \
    chmod 700 /projects/app/target && chown -R 1000:1000 /projects/app && \
    mkdir -p /projects/a/very/deep/tree/with/a/path/longer/than/one/hundred/characters/for/the/tar/format && \
    echo deep > /projects/a/very/deep/tree/with/a/path/longer/than/one/hundred/characters/for/the/tar/format/file.txt";

/// What the API says about users, limits, workspaces and permissions.
async fn api_state(dd: &Instance, admin: &str, workspaces: &[&str]) -> Value {
    let (_, users) = call(dd, admin, Method::GET, "/api/admin/user?maxItems=100", None).await;
    let (_, limits) = call(dd, admin, Method::GET, "/api/resource/free", None).await;
    let (_, listed) = call(dd, admin, Method::GET, "/api/workspace?maxItems=100", None).await;
    let mut listed: Vec<Value> = listed.as_array().unwrap().clone();
    for ws in &mut listed {
        // Status and runtime are what the engine holds now, not what the backup keeps.
        let o = ws.as_object_mut().unwrap();
        o.remove("status");
        o.remove("runtime");
        if let Some(attributes) = o.get_mut("attributes").and_then(|a| a.as_object_mut()) {
            attributes.retain(|k, _| k == "created");
        }
    }
    listed.sort_by_key(|w| w["id"].as_str().unwrap().to_string());
    let mut permissions = BTreeMap::new();
    for id in workspaces {
        let (_, p) = call(dd, admin, Method::GET, &format!("/api/permissions/workspace/all?instance={id}"), None).await;
        permissions.insert(id.to_string(), p);
    }
    json!({"users": users, "limits": limits, "workspaces": listed, "permissions": permissions})
}

fn backup(dd: &Instance, args: &[&str]) -> PathBuf {
    let mut all = vec!["backup"];
    all.extend_from_slice(args);
    let out = dd.cli(&all);
    assert!(out.status.success(), "backup failed: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let path = stdout.split("Backup written: ").nth(1).and_then(|r| r.split(" (").next()).expect("the archive's path");
    PathBuf::from(path)
}

fn empty_dir(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() { std::fs::remove_dir_all(path).unwrap() } else { std::fs::remove_file(path).unwrap() }
    }
}

fn instance_id(dd: &Instance) -> String {
    std::fs::read_to_string(dd.data_dir().join("instance.id")).unwrap().trim().to_string()
}

/// Removes what a backup would bring back: the data dir's files, the engine's objects of the
/// instance, and the tables of its PostgreSQL database.
async fn wipe(dd: &Instance, id: &str) {
    empty_dir(dd.data_dir());
    remove_instance_objects(id).await.unwrap();
    if let Some(db) = &dd.db {
        psql(&db.url, "DROP SCHEMA public CASCADE; CREATE SCHEMA public;");
    }
}

async fn round_trip(backend: Backend) {
    let Some((mut dd, guard, image)) = docker_instance_with(backend, &[]).await else { return };
    let id = instance_id(&dd);
    let admin = dd.admin_token();
    let alice = dd.create_user(&admin, "alice", "alice-password").await;
    let bob = dd.create_user(&admin, "bob", "bob-password-1").await;
    let alice_id = alice["id"].as_str().unwrap();
    let body = json!({"accountId": alice_id, "resources": [{"type": "workspace", "amount": 7, "unit": "item"}]});
    assert_eq!(call(&dd, &admin, Method::POST, "/api/resource/free", Some(body)).await.0, StatusCode::CREATED);
    let token = dd.token_for("alice", "alice-password").await;
    let (status, ws) = call(&dd, &token, Method::POST, "/api/workspace", Some(small_workspace("one", &image))).await;
    assert_eq!(status, StatusCode::CREATED, "{ws}");
    let one = ws["id"].as_str().unwrap().to_string();
    let (_, ws) = call(&dd, &token, Method::POST, "/api/workspace", Some(small_workspace("two", &image))).await;
    let two = ws["id"].as_str().unwrap().to_string();
    let share = json!({"userId": bob["id"], "domainId": "workspace", "instanceId": one, "actions": ["read", "use"]});
    assert_eq!(call(&dd, &token, Method::POST, "/api/permissions", Some(share)).await.0, StatusCode::OK);

    start(&dd, &token, &two).await;
    sh(&dd, &token, &two, "echo second > /projects/two.txt").await;
    stop(&dd, &token, &two).await;
    start(&dd, &token, &one).await;
    sh(&dd, &token, &one, WRITE_FILES).await;
    let (status, snapshot) = call(&dd, &token, Method::POST, &format!("/api/workspace/{one}/snapshot"), None).await;
    assert_eq!(status, StatusCode::OK, "{snapshot}");
    let snapshot_image = snapshot["dev"].as_str().unwrap().to_string();
    let files_before = sh(&dd, &token, &one, PROJECTS_STATE).await;
    let state_before = api_state(&dd, &admin, &[&one, &two]).await;

    // The backup runs while the workspace runs and a process in it writes.
    sh(&dd, &token, &one, "(while true; do echo line >> /projects/live.log; done) >/dev/null 2>&1 &").await;
    sh(&dd, &token, &one, "while [ ! -s /projects/live.log ]; do sleep 0.05; done").await;
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().display().to_string();
    let archive = backup(&dd, &["--out", &out, "--images"]);
    let name = archive.file_name().unwrap().to_string_lossy().to_string();
    assert!(name.starts_with("drydock-backup-0.") && name.ends_with("Z.tar.zst"), "{name}");
    let verified = dd.cli(&["backup", "verify", &archive.display().to_string()]);
    assert!(verified.status.success(), "{}", text(&verified));
    assert!(text(&verified).contains(&format!("instance {id}")), "{}", text(&verified));
    // A plain tar reads it: one file of a project comes out with standard tools.
    let listed = std::process::Command::new("tar").arg("--zstd").arg("-tf").arg(&archive).output().unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).to_string();
    for entry in ["instance/drydock.toml", "instance/secrets/admin-token", "manifest.json", "images/images.tar"] {
        assert!(listed.lines().any(|l| l == entry), "{entry} missing in:\n{listed}");
    }
    assert!(listed.contains(&format!("volumes/{one}/app/target/build.bin")), "the gitignored file is kept");

    stop(&dd, &token, &one).await;
    dd.stop();
    wipe(&dd, &id).await;
    assert!(image_labels(&snapshot_image).await.unwrap().is_none(), "the wipe removed the snapshot image");

    let out = dd.cli(&["restore", &archive.display().to_string()]);
    assert!(out.status.success(), "restore failed: {}", text(&out));
    assert_eq!(instance_id(&dd), id, "a restore keeps the instance id");
    assert!(image_labels(&snapshot_image).await.unwrap().is_some(), "--images brought the snapshot back");
    dd.start().await;
    assert_eq!(api_state(&dd, &admin, &[&one, &two]).await, state_before);
    let token = dd.token_for("alice", "alice-password").await;
    start(&dd, &token, &one).await;
    assert_eq!(sh(&dd, &token, &one, PROJECTS_STATE).await, files_before);
    let lines = sh(&dd, &token, &one, "wc -l < /projects/live.log").await;
    assert!(lines.trim().parse::<u32>().unwrap() > 0, "the live log was caught mid-write");
    start(&dd, &token, &two).await;
    assert_eq!(sh(&dd, &token, &two, "cat /projects/two.txt").await, "second\n");
    // The admin's password and bob's share came back too.
    dd.token_for("admin", ADMIN_PASSWORD).await;
    let bob_token = dd.token_for("bob", "bob-password-1").await;
    assert_eq!(call(&dd, &bob_token, Method::GET, &format!("/api/workspace/{one}"), None).await.0, StatusCode::OK);
    for ws in [&one, &two] {
        stop(&dd, &token, ws).await;
    }
    drop(guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn round_trip_on_sqlite() {
    round_trip(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn round_trip_on_postgres() {
    round_trip(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_archives_and_a_running_server_change_nothing() {
    let Some(mut dd) = Instance::init(Backend::Sqlite) else { return };
    let archive = backup(&dd, &["--no-projects"]);
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(&archive).unwrap();

    let truncated = dir.path().join("truncated.tar.zst");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let mut flipped_bytes = bytes.clone();
    let middle = flipped_bytes.len() / 2;
    flipped_bytes[middle] ^= 0x55;
    let flipped = dir.path().join("flipped.tar.zst");
    std::fs::write(&flipped, &flipped_bytes).unwrap();
    let not_an_archive = dir.path().join("notes.tar.zst");
    std::fs::write(&not_an_archive, b"just some text").unwrap();

    let before = tree(dd.data_dir());
    for (file, expected) in [(&truncated, "truncated"), (&flipped, ""), (&not_an_archive, "")] {
        let out = dd.cli(&["backup", "verify", &file.display().to_string()]);
        assert!(!out.status.success(), "verify passed a damaged archive");
        assert!(text(&out).contains("is not a sound drydock backup"), "{}", text(&out));
        assert!(text(&out).contains(expected), "{}", text(&out));
        let out = dd.cli(&["restore", &file.display().to_string(), "--yes"]);
        assert!(!out.status.success(), "restore took a damaged archive");
        assert_eq!(tree(dd.data_dir()), before, "a refused restore changes nothing");
    }
    let out = dd.cli(&["restore", &dir.path().join("missing.tar.zst").display().to_string(), "--yes"]);
    assert!(!out.status.success() && text(&out).contains("is not a file"), "{}", text(&out));

    // An archive from a newer drydock is refused.
    let newer = dir.path().join("newer.tar.zst");
    rewrite_manifest(&archive, &newer, |m| m["drydockVersion"] = json!("99.0.0"));
    let out = dd.cli(&["restore", &newer.display().to_string(), "--yes"]);
    assert!(text(&out).contains("newer than this drydock"), "{}", text(&out));
    // One from a release this one does not upgrade from is refused too, naming the way.
    let ancient = dir.path().join("ancient.tar.zst");
    rewrite_manifest(&archive, &ancient, |m| m["drydockVersion"] = json!("0.0.9"));
    let out = dd.cli(&["restore", &ancient.display().to_string(), "--yes"]);
    assert!(!out.status.success() && text(&out).contains("upgrade that to 0.1.0"), "{}", text(&out));
    assert_eq!(tree(dd.data_dir()), before, "a refused restore changes nothing");

    dd.start().await;
    let out = dd.cli(&["restore", &archive.display().to_string(), "--yes"]);
    assert!(!out.status.success(), "restore while running");
    assert!(text(&out).contains("drydock stop"), "{}", text(&out));
    dd.stop();
    let siblings: Vec<_> = std::fs::read_dir(dd.data_dir().parent().unwrap())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".before-restore-"))
        .filter(|e| e.file_name().to_string_lossy().starts_with(&*dd.data_dir().file_name().unwrap().to_string_lossy()))
        .collect();
    assert!(siblings.is_empty(), "nothing was moved aside");
}

/// Copies an archive with its manifest changed (and rehashed where needed).
fn rewrite_manifest(from: &Path, to: &Path, change: impl Fn(&mut Value)) {
    let decoded = zstd_decode(&std::fs::read(from).unwrap());
    let mut archive = tar::Archive::new(decoded.as_slice());
    let mut builder = tar::Builder::new(Vec::new());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_path_buf();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        if path == Path::new("manifest.json") {
            let mut manifest: Value = serde_json::from_slice(&data).unwrap();
            change(&mut manifest);
            data = serde_json::to_vec(&manifest).unwrap();
        }
        let mut header = entry.header().clone();
        header.set_size(data.len() as u64);
        builder.append_data(&mut header, &path, data.as_slice()).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let status = std::process::Command::new("zstd")
        .args(["-q", "-f", "-o"])
        .arg(to)
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            std::io::Write::write_all(child.stdin.as_mut().unwrap(), &tar)?;
            drop(child.stdin.take());
            child.wait()
        })
        .unwrap();
    assert!(status.success());
}

fn zstd_decode(bytes: &[u8]) -> Vec<u8> {
    let out = std::process::Command::new("zstd")
        .args(["-q", "-d", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            let mut stdin = child.stdin.take().unwrap();
            let input = bytes.to_vec();
            let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
            let out = child.wait_with_output()?;
            writer.join().unwrap()?;
            Ok(out)
        })
        .unwrap();
    out.stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_backup_leaves_no_archive() {
    let Some(dd) = Instance::init(Backend::Sqlite) else { return };
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().display().to_string();
    let earlier = backup(&dd, &["--no-projects", "--out", &out]);
    let earlier_bytes = std::fs::read(&earlier).unwrap();
    // Paused right before its manifest: the archive is half written.
    let mut child = KillOnDrop(
        dd.command(&["backup", "--no-projects", "--out", &out])
            .env("DRYDOCK_PAUSE_POINT", "backup-before-manifest")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    // The backup says when it reached the pause; reading its stderr waits for that.
    let stderr = std::io::BufReader::new(child.0.stderr.take().unwrap());
    let paused = std::io::BufRead::lines(stderr).map_while(Result::ok).any(|l| l.starts_with("paused at"));
    assert!(paused, "the backup ended instead of pausing");
    let partial = std::fs::read_dir(out_dir.path())
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().contains(".partial-"))
        .expect("the paused backup has a partial archive")
        .path();
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    let finals: Vec<String> = std::fs::read_dir(out_dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !n.starts_with('.'))
        .collect();
    assert_eq!(finals, vec![earlier.file_name().unwrap().to_string_lossy().to_string()], "no second archive");
    assert_eq!(std::fs::read(&earlier).unwrap(), earlier_bytes, "the earlier backup is untouched");
    // The next backup clears the partial file the killed one left.
    backup(&dd, &["--no-projects", "--out", &out]);
    assert!(!partial.exists(), "the stale partial archive was removed");
}

/// A paused backup is killed even when the test fails before it kills it itself.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn failure_midway_and_one_workspace(backend: Backend) {
    let Some((mut dd, guard, image)) = docker_instance_with(backend, &[]).await else { return };
    let admin = dd.admin_token();
    let (_, ws) = call(&dd, &admin, Method::POST, "/api/workspace", Some(small_workspace("one", &image))).await;
    let one = ws["id"].as_str().unwrap().to_string();
    let (_, ws) = call(&dd, &admin, Method::POST, "/api/workspace", Some(small_workspace("two", &image))).await;
    let two = ws["id"].as_str().unwrap().to_string();
    for ws in [&one, &two] {
        start(&dd, &admin, ws).await;
        sh(
            &dd,
            &admin,
            ws,
            "echo original > /projects/file.txt && mkdir -p /projects/src && echo code > /projects/src/a.rs",
        )
        .await;
    }
    let archive = backup(&dd, &[]);
    // Work after the backup: a user, changed and new files in both workspaces.
    dd.create_user(&admin, "carol", "carol-password").await;
    for ws in [&one, &two] {
        sh(&dd, &admin, ws, "echo changed > /projects/file.txt && echo new > /projects/new.txt").await;
    }

    // One workspace's files: refused while it runs, then brought back alone.
    let out = dd.cli(&["restore", &archive.display().to_string(), "--workspace", &one]);
    assert!(!out.status.success() && text(&out).contains("stop it first"), "{}", text(&out));
    stop(&dd, &admin, &one).await;
    let out = dd.cli(&["restore", &archive.display().to_string(), "--workspace", &one]);
    assert!(out.status.success(), "{}", text(&out));
    let saved = dd.data_dir().join("restores");
    assert_eq!(std::fs::read_dir(&saved).unwrap().count(), 1, "the files before the restore are kept");
    start(&dd, &admin, &one).await;
    assert_eq!(sh(&dd, &admin, &one, "cat /projects/file.txt; ls /projects").await, "original\nfile.txt\nsrc\n");
    assert_eq!(sh(&dd, &admin, &two, "cat /projects/file.txt /projects/new.txt").await, "changed\nnew\n");
    assert_eq!(call(&dd, &admin, Method::GET, "/api/user/find?name=carol", None).await.0, StatusCode::OK);
    // A failure midway through a one-workspace restore puts its files back.
    stop(&dd, &admin, &two).await;
    let out = dd
        .command(&["restore", &archive.display().to_string(), "--workspace", &two])
        .env("DRYDOCK_FAIL_POINT", "restore-workspace-after-upload")
        .output()
        .unwrap();
    assert!(!out.status.success() && text(&out).contains("put back as they were"), "{}", text(&out));
    start(&dd, &admin, &two).await;
    assert_eq!(sh(&dd, &admin, &two, "cat /projects/file.txt /projects/new.txt").await, "changed\nnew\n");

    // A whole restore that fails midway leaves the instance as it was.
    for ws in [&one, &two] {
        sh(&dd, &admin, ws, "echo latest > /projects/file.txt").await;
        stop(&dd, &admin, ws).await;
    }
    dd.stop();
    let files_before = tree(dd.data_dir());
    let out = dd
        .command(&["restore", &archive.display().to_string(), "--yes"])
        .env("DRYDOCK_FAIL_POINT", "restore-after-volumes")
        .output()
        .unwrap();
    assert!(!out.status.success(), "the injected failure fails the restore");
    assert!(text(&out).contains("put back as it was"), "{}", text(&out));
    assert_eq!(tree(dd.data_dir()), files_before, "the data dir is as it was");
    dd.start().await;
    assert_eq!(call(&dd, &admin, Method::GET, "/api/user/find?name=carol", None).await.0, StatusCode::OK);
    for ws in [&one, &two] {
        start(&dd, &admin, ws).await;
        assert_eq!(sh(&dd, &admin, ws, "cat /projects/file.txt").await, "latest\n", "the volume is as it was");
        stop(&dd, &admin, ws).await;
    }
    dd.stop();

    // The same restore without the failure: the backup's state, the old one moved aside.
    let out = dd.cli(&["restore", &archive.display().to_string(), "--yes"]);
    assert!(out.status.success(), "{}", text(&out));
    let aside = text(&out).split("kept in ").nth(1).unwrap().lines().next().unwrap().trim().to_string();
    let aside = PathBuf::from(aside);
    assert!(aside.join("drydock.toml").exists(), "the old instance is aside: {}", aside.display());
    assert!(aside.join("volumes-before-restore").join(format!("{one}.tar")).exists());
    if backend == Backend::Postgres {
        assert!(aside.join("database-before-restore.sql").exists(), "the old database was dumped aside");
    }
    dd.start().await;
    assert_eq!(call(&dd, &admin, Method::GET, "/api/user/find?name=carol", None).await.0, StatusCode::NOT_FOUND);
    start(&dd, &admin, &two).await;
    assert_eq!(sh(&dd, &admin, &two, "cat /projects/file.txt; ls /projects").await, "original\nfile.txt\nsrc\n");
    stop(&dd, &admin, &two).await;
    let _ = std::fs::remove_dir_all(&aside);
    drop(guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failure_midway_and_one_workspace_on_sqlite() {
    failure_midway_and_one_workspace(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failure_midway_and_one_workspace_on_postgres() {
    failure_midway_and_one_workspace(Backend::Postgres).await;
}

async fn backup_runs(dd: &Instance, token: &str) -> Vec<Value> {
    let (status, runs) = call(dd, token, Method::GET, "/api/system/backups", None).await;
    assert_eq!(status, StatusCode::OK, "{runs}");
    runs.as_array().unwrap().clone()
}

fn archives_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().to_string()).collect())
        .unwrap_or_default();
    names.retain(|n| n.starts_with("drydock-backup-") && n.ends_with(".tar.zst"));
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_backups_run_and_are_pruned_to_keep() {
    // Every two seconds (croner takes an optional seconds field), keeping two.
    let env = [("DRYDOCK_BACKUP__SCHEDULE", "*/2 * * * * *"), ("DRYDOCK_BACKUP__KEEP", "2")];
    let Some((dd, guard, _image)) = docker_instance_with(Backend::Sqlite, &env).await else { return };
    let admin = dd.admin_token();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let runs = backup_runs(&dd, &admin).await;
        let done: Vec<&Value> = runs.iter().filter(|r| r["trigger"] == "schedule" && r["result"] == "ok").collect();
        if done.len() >= 3 {
            for run in &done {
                assert!(run["size"].as_i64().unwrap() > 0, "{run}");
                assert!(run["file"].as_str().unwrap().contains("/backups/drydock-backup-"), "{run}");
                assert!(run["finished"].is_string(), "{run}");
            }
            break;
        }
        assert!(runs.iter().all(|r| r["result"] != "failed"), "a scheduled backup failed: {runs:?}");
        assert!(Instant::now() < deadline, "three scheduled backups did not run: {runs:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let kept = archives_in(&dd.data_dir().join("backups"));
    assert_eq!(kept.len(), 2, "backup.keep = 2 keeps two archives: {kept:?}");
    let newest = dd.data_dir().join("backups").join(kept.last().unwrap());
    let out = dd.cli(&["backup", "verify", &newest.display().to_string()]);
    assert!(out.status.success(), "{}", text(&out));
    drop(guard);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_backup_at_a_time_through_the_api() {
    // The first backup pauses before its manifest, so it is still running for the second.
    let env = [("DRYDOCK_PAUSE_POINT", "backup-before-manifest")];
    let Some(mut dd) = Instance::init_with(Backend::Sqlite, &env) else { return };
    dd.start().await;
    let admin = dd.admin_token();
    dd.create_user(&admin, "dave", "dave-password").await;
    let user = dd.token_for("dave", "dave-password").await;
    assert_eq!(call(&dd, &user, Method::POST, "/api/system/backup", None).await.0, StatusCode::FORBIDDEN);
    assert_eq!(call(&dd, &user, Method::GET, "/api/system/backups", None).await.0, StatusCode::FORBIDDEN);

    let (status, run) = call(&dd, &admin, Method::POST, "/api/system/backup", None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{run}");
    assert_eq!((run["result"].as_str(), run["trigger"].as_str()), (Some("running"), Some("api")), "{run}");
    let (status, refused) = call(&dd, &admin, Method::POST, "/api/system/backup", None).await;
    assert_eq!(status, StatusCode::CONFLICT, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("already running"), "{refused}");
    let runs = backup_runs(&dd, &admin).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["id"], run["id"]);
    // The paused server is killed when the instance is dropped; a manual backup is recorded.
    let mut cli = dd.command(&["backup", "--no-projects"]);
    cli.env_remove("DRYDOCK_PAUSE_POINT");
    let out = cli.output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let runs = backup_runs(&dd, &admin).await;
    let manual = runs.iter().find(|r| r["trigger"] == "manual").expect("the CLI's backup is in the history");
    assert_eq!(manual["result"], "ok", "{manual}");
}
