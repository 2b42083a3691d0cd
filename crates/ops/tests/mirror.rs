//! A standby's mirror of `/projects` against the real engine: deltas read from a primary
//! instance's volume, applied to a mirror dir, then the mirror loaded into a new volume of
//! another instance. Each instance has its own id and a guard that removes its objects even
//! when the test fails. Without an engine or `/bin/busybox` the test says SKIPPED, except
//! under `CI=true`, where it fails.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use drydock_core::runtime::{MachineSpec, Runtime, RuntimeSpec};
use drydock_docker::testing::{self, InstanceGuard};
use drydock_docker::{DockerRuntime, DockerSettings};
use drydock_ops::mirror::{self, DeltaSummary, FileIndex};
use futures::{StreamExt, TryStreamExt};

const WS: &str = "ws1";

/// What a volume holds, as the helper's tar says: path → (kind, mode, uid, gid, mtime, bytes).
type Snapshot = BTreeMap<String, (char, u32, u64, u64, u64, Vec<u8>)>;

async fn connect(test: &str, seed: Option<&Path>) -> Option<(DockerRuntime, InstanceGuard)> {
    let skip = |why: String| {
        if testing::required() {
            panic!("{test}: {why} (under CI=true the Docker engine and /bin/busybox are required)");
        }
        println!("SKIPPED {test}: {why}");
        None
    };
    if !Path::new(testing::BUSYBOX).exists() {
        return skip(format!("{} is missing (install Debian's busybox-static)", testing::BUSYBOX));
    }
    let instance = testing::test_instance_id();
    let settings = DockerSettings { projects_seed: seed.map(Path::to_path_buf), ..DockerSettings::default() };
    match DockerRuntime::connect(&instance, settings).await {
        Ok(runtime) => Some((runtime, InstanceGuard::new(&instance))),
        Err(e) => skip(e.to_string()),
    }
}

/// Bytes that do not repeat much, so that sizes are what they say.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

/// Writes files into the workspace's volume through a volumes helper.
async fn upload(runtime: &DockerRuntime, files: &[(&str, u32, u64, Vec<u8>)], dirs: &[&str]) {
    let mut builder = tar::Builder::new(Vec::new());
    for dir in dirs {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_mtime(1_600_000_000);
        h.set_size(0);
        builder.append_data(&mut h, format!("v/{WS}/{dir}/"), std::io::empty()).unwrap();
    }
    for (path, mode, uid, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(*mode);
        h.set_uid(*uid);
        h.set_gid(*uid);
        h.set_mtime(1_600_000_000);
        h.set_size(content.len() as u64);
        builder.append_data(&mut h, format!("v/{WS}/{path}"), content.as_slice()).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_mode(0o777);
    h.set_mtime(1_600_000_000);
    h.set_size(0);
    builder.append_link(&mut h, format!("v/{WS}/latest"), "src/main.rs").unwrap();
    let tar = Bytes::from(builder.into_inner().unwrap());
    let helper = runtime.volumes_helper(&[WS.to_string()]).await.unwrap();
    let result = helper.upload(futures::stream::once(async move { Ok(tar) }).boxed()).await;
    helper.remove().await;
    result.unwrap();
}

/// The workspace's volume as the engine has it.
async fn snapshot(runtime: &DockerRuntime) -> Snapshot {
    let helper = runtime.volumes_helper(&[WS.to_string()]).await.unwrap();
    let tar: Vec<Bytes> = helper.download().try_collect().await.unwrap();
    helper.remove().await;
    let tar = tar.concat();
    let mut archive = tar::Archive::new(tar.as_slice());
    let mut files = Snapshot::new();
    let prefix = format!("v/{WS}/");
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().trim_end_matches('/').to_string();
        let Some(rel) = path.strip_prefix(&prefix) else { continue };
        let h = entry.header().clone();
        let kind = match h.entry_type() {
            tar::EntryType::Directory => 'd',
            tar::EntryType::Symlink => 'l',
            _ => 'f',
        };
        let mut content = Vec::new();
        if kind == 'l' {
            content = entry.link_name_bytes().unwrap().to_vec();
        } else {
            std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
        }
        let row = (kind, h.mode().unwrap() & 0o7777, h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap(), content);
        files.insert(rel.to_string(), row);
    }
    files
}

/// One sync of the workspace from the primary into the mirror root.
async fn sync(primary: &DockerRuntime, root: &Path) -> DeltaSummary {
    let known: FileIndex = mirror::index_of(&root.join(WS)).unwrap();
    let stream = primary.projects_delta(WS, &known).await.unwrap();
    let tar: Vec<Bytes> = stream.try_collect().await.unwrap();
    let tar = tar.concat();
    let staging = root.join(format!(".staging-{WS}"));
    let summary = mirror::stage_delta(tar.as_slice(), &staging).unwrap();
    mirror::apply_staged(&staging, &summary, &root.join(WS)).unwrap();
    summary
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mirror_follows_a_volume_and_seeds_a_new_one() {
    let test = "a_mirror_follows_a_volume_and_seeds_a_new_one";
    let Some((primary, _primary_guard)) = connect(test, None).await else { return };
    testing::sweep_stale_test_instances(Duration::from_secs(3600)).await.unwrap();
    let image = testing::busybox_image().await.unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("standby/projects");

    // A volume the primary does not have is an error naming the workspace.
    let e = primary.projects_delta("nope", &FileIndex::new()).await.err().unwrap().to_string();
    assert!(e.contains("nope"), "{e}");

    // A few MB of files, some small ones, a private one owned by someone else, a symlink.
    let mut files: Vec<(&str, u32, u64, Vec<u8>)> = (0..4)
        .map(|i| (["big/a.bin", "big/b.bin", "big/c.bin", "big/d.bin"][i], 0o644, 0, noise(1 << 20, i as u64)))
        .collect();
    files.push(("src/main.rs", 0o644, 0, b"fn main() {}\n".to_vec()));
    files.push(("docs/old.txt", 0o644, 0, b"old\n".to_vec()));
    files.push(("secret.txt", 0o600, 1000, b"private\n".to_vec()));
    upload(&primary, &files, &["big", "src", "docs"]).await;

    let first = sync(&primary, &root).await;
    assert_eq!(first.files, 7);
    assert_eq!(first.bytes, 4 * (1 << 20) + 13 + 4 + 8);
    assert!(first.deleted.is_empty());
    assert_eq!(mirror::index_of(&root.join(WS)).unwrap(), first.index);
    assert_eq!(mirror::read_index(&root, WS).unwrap().as_ref(), Some(&first.index));
    assert_eq!(std::fs::read(root.join(WS).join("big/c.bin")).unwrap(), files[2].3);
    assert_eq!(first.index["secret.txt"].uid, 1000);

    // The workspace runs and changes one file, deletes one, adds one.
    let dev = MachineSpec {
        name: "dev".to_string(),
        image: image.clone(),
        memory_bytes: 64 << 20,
        env: BTreeMap::new(),
        command: None,
        entrypoint: None,
        ports: Vec::new(),
        depends_on: Vec::new(),
        dev: true,
        projects: true,
    };
    let spec = RuntimeSpec { workspace_id: WS.to_string(), machines: vec![dev], images: BTreeMap::new(), node: None };
    primary.start(&spec, &|_| {}).await.unwrap();
    let command = "echo 'fn main() { println!(); }' > /projects/src/main.rs && rm /projects/docs/old.txt \
                   && echo added > /projects/docs/new.txt";
    let words = ["sh", "-c", command].map(String::from);
    let out = primary.exec(WS, "dev", &words, Duration::from_secs(20)).await.unwrap();
    assert_eq!(out.exit_code, 0, "{out:?}");

    let second = sync(&primary, &root).await;
    assert_eq!(second.files, 2, "only the changed and the added file travel");
    assert_eq!(second.bytes, ("fn main() { println!(); }\n".len() + "added\n".len()) as u64);
    assert_eq!(second.deleted, ["docs/old.txt"]);
    assert_eq!(mirror::index_of(&root.join(WS)).unwrap(), second.index);
    assert_eq!(mirror::check_mirror(&root, WS).unwrap(), Vec::<String>::new());
    primary.stop(WS).await.unwrap();
    let volume = snapshot(&primary).await;
    assert_eq!(volume.len(), second.index.len());

    // A reader that stops midway: the helper container goes all the same.
    let mut stream = primary.projects_delta(WS, &FileIndex::new()).await.unwrap();
    assert!(!stream.next().await.unwrap().unwrap().is_empty());
    drop(stream);
    let mut left = usize::MAX;
    for _ in 0..100 {
        left = testing::instance_objects(primary.instance_id()).await.unwrap().containers.len();
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(left, 0, "the helper container of an abandoned delta is left");

    // Nothing changed since: an empty delta.
    let idle = sync(&primary, &root).await;
    assert_eq!((idle.files, idle.bytes, idle.deleted.len()), (0, 0, 0));

    // Promoted: the mirror becomes a new instance's volume, files, owners, modes and times.
    let Some((standby, _standby_guard)) = connect(test, Some(&root)).await else { return };
    assert_eq!(standby.seed_all_projects().await.unwrap(), [WS]);
    assert!(!root.join(WS).exists() && !root.join(format!("{WS}.index.json")).exists());
    assert_eq!(snapshot(&standby).await, volume);
    // Once made, it is an ordinary volume: seeding again finds nothing to do.
    assert!(standby.seed_all_projects().await.unwrap().is_empty());

    // A workspace started on the promoted instance gets its mirror's files first.
    std::fs::create_dir_all(root.join("ws3/src")).unwrap();
    std::fs::write(root.join("ws3/src/hello.txt"), "hello from the primary\n").unwrap();
    let spec3 = RuntimeSpec { workspace_id: "ws3".to_string(), ..spec.clone() };
    standby.start(&spec3, &|_| {}).await.unwrap();
    let words = ["cat", "/projects/src/hello.txt"].map(String::from);
    let out = standby.exec("ws3", "dev", &words, Duration::from_secs(20)).await.unwrap();
    assert_eq!((out.exit_code, out.stdout.as_str()), (0, "hello from the primary\n"), "{out:?}");
    assert!(!root.join("ws3").exists());
    standby.stop("ws3").await.unwrap();
    // A mirror of a workspace whose volume exists is left alone, and so is the volume.
    std::fs::create_dir_all(root.join("ws3/other")).unwrap();
    assert!(standby.seed_all_projects().await.unwrap().is_empty());
    assert!(root.join("ws3/other").is_dir());
    std::fs::remove_dir_all(root.join("ws3")).unwrap();

    // A broken mirror: its volume is not left behind, the mirror stays, and the error names
    // the workspace and the mirror.
    std::fs::create_dir_all(root.join("ws2/src")).unwrap();
    std::fs::write(root.join("ws2.index.json"), "not json").unwrap();
    let e = standby.seed_all_projects().await.err().unwrap().to_string();
    assert!(e.contains("ws2") && e.contains(&root.join("ws2").display().to_string()), "{e}");
    assert!(!standby.projects_volume_exists("ws2").await.unwrap());
    assert!(root.join("ws2/src").is_dir());
}
