//! Helpers for tests against the real engine, for this crate's tests and the rest of the
//! suite: an image made without any registry, the engine objects of a test instance, and a
//! guard that removes them whatever the test's outcome. (Swarms for tests: `testing_swarm`.)
//!
//! Nothing here is used by drydock itself.

use std::collections::{BTreeSet, HashMap};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bollard::Docker;
use bollard::query_parameters::{
    CreateImageOptionsBuilder, KillContainerOptionsBuilder, ListContainersOptionsBuilder, ListImagesOptionsBuilder,
    ListNetworksOptionsBuilder, ListServicesOptionsBuilder, ListVolumesOptionsBuilder, RemoveContainerOptionsBuilder,
    RemoveImageOptionsBuilder, RemoveVolumeOptions,
};
use drydock_core::runtime::{LABEL_INSTANCE, RuntimeError};
use futures::TryStreamExt;

use crate::error::{engine, gone_or_going, not_found, status};
use crate::names::{check_name_part, container_name};

/// Where Debian's `busybox-static` puts its static binary.
pub const BUSYBOX: &str = "/bin/busybox";
/// The repository of the test image; each build of busybox gets its own tag.
pub const TEST_IMAGE_REPOSITORY: &str = "drydock-test-busybox";
/// The label of test images, for sweeping them: `drydock.test-image=busybox`.
pub const TEST_IMAGE_LABEL: &str = "drydock.test-image";
/// Test instance ids start so; real ones (`ids::instance_id`) never contain `-`, so sweeping
/// stale test objects never touches a real instance's.
pub const TEST_INSTANCE_PREFIX: &str = "t-";
/// Bumped when the image's layout changes, so that a new tag is built.
const ROOTFS_VERSION: u32 = 1;

/// A fresh instance id for one test: `t-` and ten random characters.
pub fn test_instance_id() -> String {
    format!("{TEST_INSTANCE_PREFIX}{}", drydock_core::ids::random_lower(10))
}

async fn client() -> Result<Docker, RuntimeError> {
    let unreachable =
        |e: bollard::errors::Error| RuntimeError::Engine(format!("the Docker engine is not reachable: {e}"));
    let docker = Docker::connect_with_defaults().map_err(unreachable)?;
    docker.negotiate_version().await.map_err(unreachable)
}

/// A client of the engine at `unix:///path` (another than the environment's, e.g. a test
/// swarm's worker).
async fn client_on(endpoint: &str) -> Result<Docker, RuntimeError> {
    let Some(path) = endpoint.strip_prefix("unix://") else {
        return Err(RuntimeError::Engine(format!("{endpoint}: only unix:///path endpoints are supported here")));
    };
    let unreachable = |e: bollard::errors::Error| {
        RuntimeError::Engine(format!("the Docker engine at {endpoint} is not reachable: {e}"))
    };
    let docker = Docker::connect_with_socket(path, 120, bollard::API_DEFAULT_VERSION).map_err(unreachable)?;
    docker.negotiate_version().await.map_err(unreachable)
}

/// An image holding Debian's static busybox (`/bin/busybox`) with a link per applet,
/// `/etc/passwd` with root, `/tmp`, `/root` and `/projects`; its command is `/bin/sh`. Made
/// without any registry by importing a root filesystem built in memory, once per busybox
/// build (a present image is reused); labelled `drydock.test-image=busybox`. Returns its name.
pub async fn busybox_image() -> Result<String, RuntimeError> {
    let binary = std::fs::read(BUSYBOX)
        .map_err(|e| RuntimeError::Engine(format!("cannot read {BUSYBOX} ({e}): install Debian's busybox-static")))?;
    if dynamically_linked(&binary) {
        return Err(RuntimeError::Engine(format!(
            "{BUSYBOX} is dynamically linked and cannot run alone in an image: install Debian's busybox-static"
        )));
    }
    let listed = Command::new(BUSYBOX)
        .arg("--list-full")
        .output()
        .map_err(|e| RuntimeError::Engine(format!("cannot run {BUSYBOX} --list-full: {e}")))?;
    let applets: Vec<String> = String::from_utf8_lossy(&listed.stdout)
        .lines()
        .map(|l| l.trim().trim_start_matches('/').to_string())
        .filter(|l| !l.is_empty() && !l.contains("..") && l != "bin/busybox")
        .collect();
    let mut hasher = DefaultHasher::new();
    (ROOTFS_VERSION, &binary, &applets).hash(&mut hasher);
    let tag = format!("{:016x}", hasher.finish());
    let image = format!("{TEST_IMAGE_REPOSITORY}:{tag}");

    let docker = client().await?;
    match docker.inspect_image(&image).await {
        Ok(_) => {
            remove_dangling_test_images(&docker).await?;
            return Ok(image);
        }
        Err(e) if not_found(&e) => {}
        Err(e) => return Err(engine(e)),
    }
    let rootfs = busybox_rootfs(&binary, &applets)
        .map_err(|e| RuntimeError::Engine(format!("building the busybox root filesystem: {e}")))?;
    let options = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(TEST_IMAGE_REPOSITORY)
        .tag(&tag)
        .changes(vec![
            r#"CMD ["/bin/sh"]"#.to_string(),
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            format!("LABEL {TEST_IMAGE_LABEL}=busybox"),
        ])
        .build();
    docker
        .create_image(Some(options), Some(bollard::body_full(rootfs.into())), None)
        .try_for_each(|_| async { Ok(()) })
        .await
        .map_err(engine)?;
    Ok(image)
}

/// Tests importing at once leave all but the last import untagged: removes those no container
/// uses (and none so new that its import may not have tagged it yet).
async fn remove_dangling_test_images(docker: &Docker) -> Result<(), RuntimeError> {
    let dangling = HashMap::from([
        ("dangling".to_string(), vec!["true".to_string()]),
        ("label".to_string(), vec![format!("{TEST_IMAGE_LABEL}=busybox")]),
    ]);
    let options = ListImagesOptionsBuilder::default().filters(&dangling).build();
    let settled = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64 - 60;
    for old in docker.list_images(Some(options)).await.map_err(engine)?.into_iter().filter(|i| i.created < settled) {
        // An image a container still uses stays: the engine refuses, and that is fine.
        let _ = docker.remove_image(&old.id, None::<bollard::query_parameters::RemoveImageOptions>, None).await;
    }
    Ok(())
}

/// Whether a 64-bit little-endian ELF binary names a program interpreter (needs shared
/// libraries); other binaries are taken as they are.
fn dynamically_linked(binary: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if binary.len() < 64 || &binary[..4] != b"\x7fELF" || binary[4] != 2 || binary[5] != 1 {
        return false;
    }
    let u16_at = |at: usize| u16::from_le_bytes([binary[at], binary[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(binary[0x20..0x28].try_into().unwrap_or_default()) as usize;
    let (size, count) = (u16_at(0x36), u16_at(0x38));
    (0..count).any(|i| {
        let at = phoff + i * size;
        binary.get(at..at + 4).is_some_and(|t| u32::from_le_bytes(t.try_into().unwrap_or_default()) == PT_INTERP)
    })
}

/// The root filesystem of [`busybox_image`] as a tar archive.
fn busybox_rootfs(binary: &[u8], applets: &[String]) -> std::io::Result<Vec<u8>> {
    let mut dirs: BTreeSet<String> =
        ["bin", "dev", "etc", "proc", "projects", "root", "sbin", "sys", "tmp", "usr", "usr/bin", "usr/sbin", "var"]
            .into_iter()
            .map(String::from)
            .collect();
    for applet in applets {
        let mut parent = applet.as_str();
        while let Some((up, _)) = parent.rsplit_once('/') {
            dirs.insert(up.to_string());
            parent = up;
        }
    }
    let mut tar = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h
    };
    for dir in &dirs {
        let mode = match dir.as_str() {
            "tmp" => 0o1777,
            "root" => 0o700,
            "projects" => 0o777,
            _ => 0o755,
        };
        tar.append_data(&mut header(tar::EntryType::Directory, mode, 0), format!("{dir}/"), std::io::empty())?;
    }
    tar.append_data(&mut header(tar::EntryType::Regular, 0o755, binary.len() as u64), "bin/busybox", binary)?;
    for (path, text) in [("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"), ("etc/group", "root:x:0:\n")] {
        tar.append_data(&mut header(tar::EntryType::Regular, 0o644, text.len() as u64), path, text.as_bytes())?;
    }
    for applet in applets {
        tar.append_link(&mut header(tar::EntryType::Symlink, 0o777, 0), applet, "/bin/busybox")?;
    }
    tar.into_inner()
}

fn instance_filter(instance_id: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![format!("{LABEL_INSTANCE}={instance_id}")])])
}

/// The engine objects that carry an instance's label, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InstanceObjects {
    /// Containers, by name.
    pub containers: Vec<String>,
    /// Networks, by name.
    pub networks: Vec<String>,
    /// Volumes, by name.
    pub volumes: Vec<String>,
    /// Images, by their first tag (else id).
    pub images: Vec<String>,
    /// Swarm services, by name: only a swarm manager lists them; other engines have none.
    pub services: Vec<String>,
}

impl InstanceObjects {
    /// Whether there is no object at all.
    pub fn is_empty(&self) -> bool {
        self.containers.is_empty()
            && self.networks.is_empty()
            && self.volumes.is_empty()
            && self.images.is_empty()
            && self.services.is_empty()
    }
}

/// The engine's Swarm services matching `filters`; none where the engine is no swarm manager
/// (it answers 503 then).
async fn list_services(
    docker: &Docker,
    filters: &HashMap<String, Vec<String>>,
) -> Result<Vec<bollard::models::Service>, RuntimeError> {
    match docker.list_services(Some(ListServicesOptionsBuilder::default().filters(filters).build())).await {
        Ok(services) => Ok(services),
        Err(e) if status(&e) == Some(503) => Ok(Vec::new()),
        Err(e) => Err(engine(e)),
    }
}

/// Every container, network, volume, image and Swarm service labelled
/// `drydock.instance=<instance_id>` on the local engine (`DOCKER_HOST`, else the default socket).
pub async fn instance_objects(instance_id: &str) -> Result<InstanceObjects, RuntimeError> {
    objects_of(&client().await?, instance_id).await
}

/// [`instance_objects`] on the engine at `endpoint`, `unix:///path` (e.g. a test swarm's worker).
pub async fn instance_objects_on(endpoint: &str, instance_id: &str) -> Result<InstanceObjects, RuntimeError> {
    objects_of(&client_on(endpoint).await?, instance_id).await
}

async fn objects_of(docker: &Docker, instance_id: &str) -> Result<InstanceObjects, RuntimeError> {
    let filters = instance_filter(instance_id);
    let containers = docker
        .list_containers(Some(ListContainersOptionsBuilder::default().all(true).filters(&filters).build()))
        .await
        .map_err(engine)?
        .into_iter()
        .filter_map(|c| c.names.and_then(|n| n.into_iter().next()))
        .map(|n| n.trim_start_matches('/').to_string())
        .collect();
    let networks = docker
        .list_networks(Some(ListNetworksOptionsBuilder::default().filters(&filters).build()))
        .await
        .map_err(engine)?
        .into_iter()
        .filter_map(|n| n.name)
        .collect();
    let volumes = docker
        .list_volumes(Some(ListVolumesOptionsBuilder::default().filters(&filters).build()))
        .await
        .map_err(engine)?
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name)
        .collect();
    let images = docker
        .list_images(Some(ListImagesOptionsBuilder::default().all(true).filters(&filters).build()))
        .await
        .map_err(engine)?
        .into_iter()
        .map(|i| i.repo_tags.into_iter().next().unwrap_or(i.id))
        .collect();
    let services = list_services(docker, &filters).await?.into_iter().filter_map(|s| s.spec?.name).collect();
    Ok(InstanceObjects { containers, networks, volumes, images, services })
}

/// How long removing an instance's services waits for their containers to go.
const SERVICE_CONTAINERS_TIMEOUT: Duration = Duration::from_secs(30);
/// The label the engine puts on a Swarm task's container: its service's id.
const LABEL_SERVICE_ID: &str = "com.docker.swarm.service.id";

/// Removes every Swarm service, container, network, volume and image labelled
/// `drydock.instance=<instance_id>` on the local engine (`DOCKER_HOST`, else the default
/// socket): for test clean-up, and for the suite's sweep of what crashed tests left. Services
/// go first (listed where the engine is a swarm manager), then up to 30 s pass for their
/// containers on this engine to go before the rest is removed. Another engine of a swarm
/// removes its own tasks' containers once the services are gone; its other objects need
/// [`remove_instance_objects_on`].
pub async fn remove_instance_objects(instance_id: &str) -> Result<(), RuntimeError> {
    remove_objects(&client().await?, instance_id).await
}

/// [`remove_instance_objects`] on the engine at `endpoint`, `unix:///path` (e.g. a test swarm's
/// worker).
pub async fn remove_instance_objects_on(endpoint: &str, instance_id: &str) -> Result<(), RuntimeError> {
    remove_objects(&client_on(endpoint).await?, instance_id).await
}

async fn remove_objects(docker: &Docker, instance_id: &str) -> Result<(), RuntimeError> {
    let filters = instance_filter(instance_id);
    let mut first_error = None;
    let mut keep = |result: Result<(), bollard::errors::Error>| {
        if let Err(e) = result
            && !gone_or_going(&e)
        {
            first_error.get_or_insert(engine(e));
        }
    };
    let services: BTreeSet<String> = list_services(docker, &filters).await?.into_iter().filter_map(|s| s.id).collect();
    for id in &services {
        keep(docker.delete_service(id).await);
    }
    if !services.is_empty() {
        wait_for_service_containers(docker, &services).await?;
    }
    let containers = docker
        .list_containers(Some(ListContainersOptionsBuilder::default().all(true).filters(&filters).build()))
        .await
        .map_err(engine)?;
    for id in containers.into_iter().filter_map(|c| c.id) {
        let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        keep(docker.remove_container(&id, Some(options)).await);
    }
    let networks = docker
        .list_networks(Some(ListNetworksOptionsBuilder::default().filters(&filters).build()))
        .await
        .map_err(engine)?;
    for id in networks.into_iter().filter_map(|n| n.id) {
        // A worker sees the swarm's networks but only a manager removes them.
        match docker.remove_network(&id).await {
            Err(e) if crate::error::reason(&e).contains("not a swarm manager") => {}
            result => keep(result),
        }
    }
    let volumes = docker
        .list_volumes(Some(ListVolumesOptionsBuilder::default().filters(&filters).build()))
        .await
        .map_err(engine)?;
    for volume in volumes.volumes.unwrap_or_default() {
        keep(docker.remove_volume(&volume.name, None::<RemoveVolumeOptions>).await);
    }
    let images = docker
        .list_images(Some(ListImagesOptionsBuilder::default().all(true).filters(&filters).build()))
        .await
        .map_err(engine)?;
    for image in images {
        let options = RemoveImageOptionsBuilder::default().force(true).build();
        keep(docker.remove_image(&image.id, Some(options), None).await.map(|_| ()));
    }
    first_error.map_or(Ok(()), Err)
}

/// Waits (up to 30 s) until this engine has no container of the given services; says which
/// are left when they do not go (they are removed with the instance's other containers).
async fn wait_for_service_containers(docker: &Docker, services: &BTreeSet<String>) -> Result<(), RuntimeError> {
    let any_task = HashMap::from([("label".to_string(), vec![LABEL_SERVICE_ID.to_string()])]);
    let deadline = tokio::time::Instant::now() + SERVICE_CONTAINERS_TIMEOUT;
    loop {
        let left: Vec<String> = docker
            .list_containers(Some(ListContainersOptionsBuilder::default().all(true).filters(&any_task).build()))
            .await
            .map_err(engine)?
            .into_iter()
            .filter(|c| c.labels.as_ref().and_then(|l| l.get(LABEL_SERVICE_ID)).is_some_and(|s| services.contains(s)))
            .filter_map(|c| c.id)
            .collect();
        if left.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            eprintln!(
                "the containers {left:?} of removed services did not go within {SERVICE_CONTAINERS_TIMEOUT:?}: removing them"
            );
            for id in left {
                let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
                if let Err(e) = docker.remove_container(&id, Some(options)).await
                    && !gone_or_going(&e)
                {
                    return Err(engine(e));
                }
            }
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Removes the objects of test instances (ids starting `t-`) whose containers, networks,
/// images or Swarm services are older than `age`: what tests killed before their guards ran
/// left behind.
pub async fn sweep_stale_test_instances(age: Duration) -> Result<(), RuntimeError> {
    let docker = client().await?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
    let oldest = now - age.as_secs() as i64;
    let any_instance = HashMap::from([("label".to_string(), vec![LABEL_INSTANCE.to_string()])]);
    let mut stale = BTreeSet::new();
    let mut consider = |labels: Option<&HashMap<String, String>>, created: Option<i64>| {
        if let (Some(instance), Some(created)) = (labels.and_then(|l| l.get(LABEL_INSTANCE)), created)
            && instance.starts_with(TEST_INSTANCE_PREFIX)
            && created < oldest
        {
            stale.insert(instance.clone());
        }
    };
    let containers = docker
        .list_containers(Some(ListContainersOptionsBuilder::default().all(true).filters(&any_instance).build()))
        .await
        .map_err(engine)?;
    for c in &containers {
        consider(c.labels.as_ref(), c.created);
    }
    let networks = docker
        .list_networks(Some(ListNetworksOptionsBuilder::default().filters(&any_instance).build()))
        .await
        .map_err(engine)?;
    for n in &networks {
        let created =
            n.created.as_deref().and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok()).map(|c| c.timestamp());
        consider(n.labels.as_ref(), created);
    }
    let images = docker
        .list_images(Some(ListImagesOptionsBuilder::default().all(true).filters(&any_instance).build()))
        .await
        .map_err(engine)?;
    for i in &images {
        consider(Some(&i.labels), Some(i.created));
    }
    for service in list_services(&docker, &any_instance).await? {
        let created = service
            .created_at
            .as_deref()
            .and_then(|c| chrono::DateTime::parse_from_rfc3339(c).ok())
            .map(|c| c.timestamp());
        consider(service.spec.as_ref().and_then(|s| s.labels.as_ref()), created);
    }
    for instance in stale {
        remove_instance_objects(&instance).await?;
    }
    Ok(())
}

/// Kills a machine's container from outside drydock, as `docker kill` does (SIGKILL).
pub async fn kill_machine(instance_id: &str, workspace_id: &str, machine: &str) -> Result<(), RuntimeError> {
    check_name_part("workspace id", workspace_id)?;
    check_name_part("machine", machine)?;
    let docker = client().await?;
    let options = KillContainerOptionsBuilder::default().signal("SIGKILL").build();
    docker.kill_container(&container_name(instance_id, workspace_id, machine), Some(options)).await.map_err(engine)
}

/// An image's labels, or None when the engine has no such image.
pub async fn image_labels(image: &str) -> Result<Option<HashMap<String, String>>, RuntimeError> {
    let docker = client().await?;
    match docker.inspect_image(image).await {
        Ok(found) => Ok(Some(found.config.and_then(|c| c.labels).unwrap_or_default())),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(engine(e)),
    }
}

/// Removes everything labelled with its instance id when dropped, so a test cleans up even
/// when it fails (create it before the test makes anything).
#[derive(Debug)]
pub struct InstanceGuard {
    instance_id: String,
}

impl InstanceGuard {
    pub fn new(instance_id: &str) -> Self {
        InstanceGuard { instance_id: instance_id.to_string() }
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }
}

impl Drop for InstanceGuard {
    fn drop(&mut self) {
        // Drop cannot await, and may run inside a runtime: clean up on a thread of its own.
        let instance_id = self.instance_id.clone();
        let outcome = std::thread::spawn(move || -> Result<(), String> {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            runtime.block_on(remove_instance_objects(&instance_id)).map_err(|e| e.to_string())
        })
        .join();
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("cleaning up test instance {}: {e}", self.instance_id),
            Err(_) => eprintln!("cleaning up test instance {} panicked", self.instance_id),
        }
    }
}

/// Whether tests must fail, not skip, when the engine or busybox is missing (`CI=true`).
pub fn required() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn tells_static_from_dynamic_binaries() {
        if let Ok(own) = std::fs::read("/proc/self/exe") {
            // Test binaries link the C library dynamically.
            assert!(dynamically_linked(&own));
        }
        if let Ok(busybox) = std::fs::read(BUSYBOX) {
            assert!(!dynamically_linked(&busybox));
        }
        assert!(!dynamically_linked(b"#!/bin/sh\n"));
    }

    #[test]
    fn rootfs_holds_busybox_its_links_and_the_basics() {
        let applets = vec!["bin/sh".to_string(), "usr/local/bin/wget".to_string()];
        let tar = busybox_rootfs(b"binary", &applets).unwrap();
        let mut archive = tar::Archive::new(tar.as_slice());
        let mut entries = BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let path = entry.path().unwrap().to_string_lossy().trim_end_matches('/').to_string();
            let link = entry.link_name().unwrap().map(|l| l.to_string_lossy().into_owned());
            entries.insert(path, (entry.header().entry_type(), link, entry.header().mode().unwrap()));
        }
        assert_eq!(entries["bin/busybox"].0, tar::EntryType::Regular);
        assert_eq!(entries["usr/local/bin/wget"].1.as_deref(), Some("/bin/busybox"));
        assert_eq!(entries["usr/local"].0, tar::EntryType::Directory);
        assert_eq!(entries["tmp"].2, 0o1777);
        for path in ["etc/passwd", "etc/group", "projects", "root"] {
            assert!(entries.contains_key(path), "{path}");
        }
    }
}
