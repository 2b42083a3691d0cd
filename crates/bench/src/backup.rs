//! `drydock-bench backup`: `drydock backup` and `drydock restore` of an instance whose
//! workspaces hold BENCH_TOTAL_MB of project files (20 workspaces by default), against
//! `tar | zstd` and `zstd -d | tar x` of the same files in the same run.
//!
//! The files are written straight into the workspaces' volumes on the host (the benchmark
//! runs as root next to the engine): a seeded mix of source-like text and incompressible
//! binaries, 1 KB to 256 KB each. The baseline archives the volumes' directories on the
//! host with GNU tar piped into the zstd CLI at its default level (3, the level drydock
//! uses) and unpacks into a temp dir; drydock reads and writes the same files through the
//! Engine API, hashes every entry, and adds the database, config and manifest. drydock's
//! restore includes its verification pass over the whole archive. Throughput is the project
//! bytes over the wall time of the whole command; every timed operation starts after `sync`.
//! The engine's own archive endpoints are timed too (one read of every volume, one write of
//! them from a tar file): the ceiling of anything that goes through the Engine API.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::drydock_api::{Api, InstanceSweep, Workspaces, connect, engine_description};
use crate::instance::{Backend, Instance, drydock_bin, drydock_version};
use crate::util::{code_version, date, env_u32, load_average, machine, median, run_checked};

const HELP: &str = "\
usage: drydock-bench backup

On a fresh SQLite instance with BENCH_WORKSPACES workspaces (busybox test image) whose
/projects volumes hold BENCH_TOTAL_MB of files together, times `drydock backup` against
`tar -cf - <the volumes' directories> | zstd` and `drydock restore` (into the wiped instance:
data dir removed, volumes removed) against `zstd -d | tar -xf -` into a temp dir, BENCH_RUNS
times each, taking turns. Prints a markdown table with the throughputs and their ratios.

environment:
  DRYDOCK_BIN        the drydock binary (default: target/release/drydock in the workspace)
  BENCH_WORKSPACES   workspaces (default 20)
  BENCH_TOTAL_MB     project files in all of them together, in MiB (default 1024)
  BENCH_RUNS         measured runs of each kind (default 3)";

/// The aim: at least this share of the baseline's throughput, both ways.
const AIM: f64 = 0.8;

pub fn run(args: &[String]) -> Result<()> {
    if !crate::util::no_arguments(args, HELP)? {
        return Ok(());
    }
    let workspaces_n = env_u32("BENCH_WORKSPACES", 20, 1)?;
    let total_mb = env_u32("BENCH_TOTAL_MB", 1024, 1)?;
    let runs = env_u32("BENCH_RUNS", 3, 1)?;
    let bin = drydock_bin("backup")?;
    let drydock_version = drydock_version(&bin)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start tokio")?;
    let image = rt.block_on(drydock_docker::testing::busybox_image()).context("cannot make the busybox test image")?;
    let docker = rt.block_on(connect())?;
    let engine = rt.block_on(engine_description(&docker));
    let load_before = load_average();

    let mut sweep = InstanceSweep { instance_id: None };
    let mut instance = Instance::create(&bin, &Backend::Sqlite)?;
    instance.init()?;
    let instance_id = instance.instance_id()?;
    sweep.instance_id = Some(instance_id.clone());
    instance.set_config("DRYDOCK_LIMITS__USER__RUNTIMES", "-1");
    instance.set_config("DRYDOCK_LIMITS__USER__WORKSPACES", "-1");
    instance.set_config("DRYDOCK_LIMITS__WORKSPACE__START_CONCURRENCY", &workspaces_n.to_string());
    instance.start()?;
    let api = Api { url: instance.url()?, token: instance.admin_token()? };
    let mut workspaces = Workspaces { api: &api, ids: Vec::new() };

    // Each workspace started once makes its volume; then the files go in on the host.
    eprintln!("== {workspaces_n} workspaces with {total_mb} MiB of project files");
    let ids: Vec<String> = (0..workspaces_n)
        .map(|i| workspaces.create(&format!("bench-backup-{i:02}"), &image, 64 << 20))
        .collect::<Result<_>>()?;
    for id in &ids {
        api.start(id)?;
        api.stop(id)?;
    }
    let per_workspace = (u64::from(total_mb) << 20) / u64::from(workspaces_n);
    let mut volume_dirs = Vec::new();
    let mut bytes = 0;
    for (i, id) in ids.iter().enumerate() {
        let dir = volume_dir(&instance_id, id)?;
        bytes += fill(&dir, per_workspace, i as u64 + 1)?;
        volume_dirs.push(dir);
    }
    // The restores below bring the instance back on another port: forget this server's URL.
    let ids = std::mem::take(&mut workspaces.ids);
    drop(workspaces);
    instance.stop()?;
    eprintln!("   {bytes} bytes written");

    let scratch = tempfile::Builder::new().prefix("drydock-bench-backup.").tempdir()?;
    // The volumes as the helper container's upload takes them (`v/<workspace>/…`), once.
    let volume_tar = scratch.path().join("volumes.tar");
    helper_tar(&volume_dirs, &ids, &volume_tar)?;
    let engine_runtime = rt
        .block_on(drydock_docker::DockerRuntime::connect(&instance_id, Default::default()))
        .map_err(anyhow::Error::msg)?;
    let mut results = Results::default();
    for run in 0..runs {
        // Baseline backup, then drydock's; baseline restore, then drydock's.
        let base_archive = scratch.path().join("baseline.tar.zst");
        let took = timed(|| tar_zstd(&volume_dirs, &base_archive))?;
        results.base_backup.push(took);
        let out_dir = scratch.path().join(format!("drydock-{run}"));
        std::fs::create_dir_all(&out_dir)?;
        let out = out_dir.display().to_string();
        let took = timed(|| instance.cli("backup", &["--out", &out]).map(|_| ()))?;
        results.drydock_backup.push(took);
        let archive = only_file(&out_dir)?;
        let archive_arg = archive.display().to_string();
        let took = timed(|| instance.cli("backup", &["verify", &archive_arg]).map(|_| ()))?;
        results.drydock_verify.push(took);
        results.sizes = (file_size(&base_archive)?, file_size(&archive)?);

        // The engine's own archive endpoints, with no archive around them: what any reader
        // or writer of volumes through the Engine API pays.
        let took = timed(|| engine_download(&rt, &engine_runtime, &ids))?;
        results.engine_download.push(took);

        let unpacked = scratch.path().join("baseline-restore");
        let took = timed(|| zstd_untar(&base_archive, &unpacked))?;
        results.base_restore.push(took);
        std::fs::remove_dir_all(&unpacked)?;
        std::fs::remove_file(&base_archive)?;

        // drydock restores into the wiped instance: no data dir, no volumes.
        std::fs::remove_dir_all(instance.data_dir())?;
        rt.block_on(drydock_docker::testing::remove_instance_objects(&instance_id)).map_err(anyhow::Error::msg)?;
        let took = timed(|| instance.cli("restore", &[&archive_arg]).map(|_| ()))?;
        results.drydock_restore.push(took);
        let took = timed(|| engine_upload(&rt, &engine_runtime, &ids, &volume_tar))?;
        results.engine_upload.push(took);
        std::fs::remove_dir_all(&out_dir)?;
        eprintln!(
            "  run {run}: backup drydock {:.2} s, baseline {:.2} s; restore drydock {:.2} s, baseline {:.2} s",
            results.drydock_backup[run as usize].as_secs_f64(),
            results.base_backup[run as usize].as_secs_f64(),
            results.drydock_restore[run as usize].as_secs_f64(),
            results.base_restore[run as usize].as_secs_f64()
        );
    }
    // The restored instance is the one the guards clean up: its workspaces go through the API.
    instance.restart()?;
    let api = Api { url: instance.url()?, token: instance.admin_token()? };
    let mut workspaces = Workspaces { api: &api, ids };
    workspaces.delete_all()?;
    instance.stop()?;
    let header = format!(
        "- machine: {}\n- load average (1, 5, 15 min): {load_before} before the run, {} after it\n\
         - {drydock_version} ({}), SQLite; engine: {engine}; image `{image}`\n\
         - {workspaces_n} workspaces, {bytes} bytes of project files ({} MiB), {runs} runs of each kind, taking turns\n",
        machine(),
        load_average(),
        code_version(),
        bytes >> 20,
    );
    print!("{}", report(&header, bytes, &results));
    drop(sweep);
    Ok(())
}

#[derive(Default)]
struct Results {
    engine_download: Vec<Duration>,
    /// `drydock backup verify`: the pass a restore makes before it changes anything.
    drydock_verify: Vec<Duration>,
    engine_upload: Vec<Duration>,
    base_backup: Vec<Duration>,
    drydock_backup: Vec<Duration>,
    base_restore: Vec<Duration>,
    drydock_restore: Vec<Duration>,
    /// Archive sizes: baseline, drydock.
    sizes: (u64, u64),
}

fn report(header: &str, bytes: u64, r: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## drydock-bench backup, {}\n", date());
    out.push_str(header);
    let _ = writeln!(out, "- archives: baseline {} bytes, drydock {} bytes\n", r.sizes.0, r.sizes.1);
    let _ = writeln!(out, "| | drydock | baseline | ratio (throughput) |");
    let _ = writeln!(out, "| --- | ---: | ---: | ---: |");
    let mib = bytes as f64 / f64::from(1 << 20);
    let mut ratios = Vec::new();
    let med = |v: &Vec<Duration>| {
        let mut s: Vec<f64> = v.iter().map(Duration::as_secs_f64).collect();
        s.sort_by(f64::total_cmp);
        median(&s)
    };
    for (label, command, base, ours) in [
        ("backup", "`tar -cf - … | zstd`", &r.base_backup, &r.drydock_backup),
        ("restore", "`zstd -d | tar -xf -`", &r.base_restore, &r.drydock_restore),
    ] {
        let (theirs, mine) = (med(base), med(ours));
        let ratio = theirs / mine;
        ratios.push(ratio);
        let _ = writeln!(
            out,
            "| {label} (median) | {mine:.2} s, {:.0} MiB/s | {theirs:.2} s, {:.0} MiB/s ({command}) | {ratio:.2} |",
            mib / mine,
            mib / theirs
        );
    }
    let verify = med(&r.drydock_verify);
    let _ = writeln!(
        out,
        "\n`drydock backup verify` of the archive, the pass a restore makes first (median): {verify:.2} s, {:.0} MiB/s.",
        mib / verify
    );
    let (down, up) = (med(&r.engine_download), med(&r.engine_upload));
    let _ = writeln!(
        out,
        "The engine's archive endpoints alone, the same files (median): reading every volume through one \
         `GET /containers/{{id}}/archive` into nothing {down:.2} s, {:.0} MiB/s; writing them through one \
         `PUT /containers/{{id}}/archive` from a tar file {up:.2} s, {:.0} MiB/s.",
        mib / down,
        mib / up
    );
    let met = ratios.iter().all(|r| *r >= AIM);
    let _ = writeln!(
        out,
        "\nAim: at least {AIM} of the baseline's throughput both ways: {}.",
        if met { "met" } else { "**not met**" }
    );
    out
}

/// Times one operation, after `sync`: the dirty pages the one before left are written out
/// first, so that no operation pays for another's writes.
fn timed(f: impl FnOnce() -> Result<()>) -> Result<Duration> {
    run_checked(&mut Command::new("sync"), "sync")?;
    let started = Instant::now();
    f()?;
    Ok(started.elapsed())
}

/// Where the engine keeps a workspace volume's files on this host.
pub(crate) fn volume_dir(instance: &str, workspace: &str) -> Result<PathBuf> {
    let name = drydock_docker::names::volume_name(instance, workspace);
    let out = run_checked(
        Command::new("docker").args(["volume", "inspect", "--format", "{{.Mountpoint}}", &name]),
        "docker volume inspect",
    )?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    ensure!(
        dir.is_dir(),
        "the volume {name} is not at {} on this host (the benchmark runs next to the engine, as root)",
        dir.display()
    );
    Ok(dir)
}

/// Writes about `target` bytes of files into `dir`; returns the bytes written.
pub(crate) fn fill(dir: &Path, target: u64, seed: u64) -> Result<u64> {
    let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let words: Vec<String> = (0..4000)
        .map(|_| {
            let len = 2 + rng.next() % 10;
            (0..len).map(|_| (b'a' + (rng.next() % 26) as u8) as char).collect()
        })
        .collect();
    let mut written = 0;
    let mut n = 0;
    while written < target {
        let size = (1024 + rng.next() % (255 * 1024)).min(target - written).max(1);
        let sub = dir.join(format!("src/mod{:02}", n % 16));
        std::fs::create_dir_all(&sub)?;
        let mut data = Vec::with_capacity(size as usize);
        if n % 4 == 3 {
            while (data.len() as u64) < size {
                data.extend_from_slice(&rng.next().to_le_bytes());
            }
        } else {
            while (data.len() as u64) < size {
                let word = &words[(rng.next() % words.len() as u64) as usize];
                data.extend_from_slice(word.as_bytes());
                data.push(if rng.next().is_multiple_of(9) { b'\n' } else { b' ' });
            }
        }
        data.truncate(size as usize);
        let ext = if n % 4 == 3 { "bin" } else { "rs" };
        std::fs::File::create(sub.join(format!("f{n:05}.{ext}")))?.write_all(&data)?;
        written += size;
        n += 1;
    }
    Ok(written)
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `tar -cf - -C /var/lib/docker/volumes <volume>/_data … | zstd`: each volume under its own name.
fn tar_zstd(dirs: &[PathBuf], archive: &Path) -> Result<()> {
    let mut tar = Command::new("tar");
    tar.arg("-cf").arg("-");
    for dir in dirs {
        let (parent, name) = volume_parts(dir)?;
        tar.arg("-C").arg(parent).arg(name);
    }
    let mut tar = tar.stdout(Stdio::piped()).spawn().context("cannot run tar")?;
    let stdout = tar.stdout.take().context("tar's output")?;
    let zstd = Command::new("zstd").args(["-q", "-3", "-f", "-o"]).arg(archive).stdin(stdout).status()?;
    ensure!(tar.wait()?.success() && zstd.success(), "tar | zstd failed");
    Ok(())
}

/// `/var/lib/docker/volumes/<name>/_data` → (`/var/lib/docker/volumes`, `<name>/_data`).
fn volume_parts(dir: &Path) -> Result<(PathBuf, PathBuf)> {
    let volume = dir.parent().context("a volume's directory has a parent")?;
    let parent = volume.parent().context("a volume's directory has a parent")?;
    Ok((parent.to_path_buf(), dir.strip_prefix(parent)?.to_path_buf()))
}

fn zstd_untar(archive: &Path, into: &Path) -> Result<()> {
    std::fs::create_dir_all(into)?;
    let mut zstd = Command::new("zstd").args(["-q", "-d", "-c"]).arg(archive).stdout(Stdio::piped()).spawn()?;
    let stdout = zstd.stdout.take().context("zstd's output")?;
    let tar = Command::new("tar").arg("-C").arg(into).arg("-xf").arg("-").stdin(stdout).status()?;
    ensure!(zstd.wait()?.success() && tar.success(), "zstd -d | tar x failed");
    Ok(())
}

fn only_file(dir: &Path) -> Result<PathBuf> {
    let files: Vec<PathBuf> = std::fs::read_dir(dir)?.flatten().map(|e| e.path()).collect();
    ensure!(files.len() == 1, "expected one archive in {}, found {files:?}", dir.display());
    Ok(files[0].clone())
}

fn file_size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)?.len())
}

/// The volumes' files as one tar shaped like the helper's (`v/<workspace>/…`).
fn helper_tar(dirs: &[PathBuf], ids: &[String], into: &Path) -> Result<()> {
    let mut tar = Command::new("tar");
    tar.arg("-cf").arg(into);
    for (dir, id) in dirs.iter().zip(ids) {
        let (parent, name) = volume_parts(dir)?;
        let from = name.display().to_string();
        tar.arg(format!("--transform=s,^{from},v/{id},")).arg("-C").arg(parent).arg(name);
    }
    run_checked(&mut tar, "tar of the volumes")?;
    Ok(())
}

/// Every volume through the helper's one download, into nothing.
pub(crate) fn engine_download(
    rt: &tokio::runtime::Runtime,
    runtime: &drydock_docker::DockerRuntime,
    ids: &[String],
) -> Result<()> {
    rt.block_on(async {
        let helper = runtime.volumes_helper(ids).await.map_err(anyhow::Error::msg)?;
        let mut stream = helper.download();
        let mut bytes = 0u64;
        let mut failed = None;
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            match chunk {
                Ok(chunk) => bytes += chunk.len() as u64,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        drop(stream);
        helper.remove().await;
        ensure!(failed.is_none(), "the engine's download failed: {failed:?}");
        ensure!(bytes > 0, "the engine's download was empty");
        Ok(())
    })
}

/// The tar file through the helper's one upload, over the volumes' own files.
fn engine_upload(
    rt: &tokio::runtime::Runtime,
    runtime: &drydock_docker::DockerRuntime,
    ids: &[String],
    tar: &Path,
) -> Result<()> {
    rt.block_on(async {
        let file = tokio::fs::File::open(tar).await?;
        let helper = runtime.volumes_helper(ids).await.map_err(anyhow::Error::msg)?;
        let result = helper.upload(futures::StreamExt::boxed(tokio_util::io::ReaderStream::new(file))).await;
        helper.remove().await;
        result.map_err(anyhow::Error::msg)
    })
}
