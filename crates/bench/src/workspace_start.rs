//! `drydock-bench workspace-start`: the time from `POST /api/workspace/{id}/runtime` to
//! RUNNING for a one-machine workspace (the busybox test image, 256 MB), against creating and
//! starting the same container with raw Engine API calls (bollard) in the same run; one at a
//! time, then 20 at once.
//!
//! The instance is a fresh one on SQLite made by the real release binary. drydock's time is
//! read on the workspace's `/events` stream, opened before the POST: from just before the
//! POST is sent to the moment the `status` event with `RUNNING` is read. The raw baseline's
//! runs from just before `create` to the first `inspect` that says the container runs.
//! Whatever happens, the workspaces are deleted through the API, the raw containers,
//! networks and volumes removed, the server stopped and the data dir removed (`Drop` guards),
//! and as a last resort every engine object labelled with the instance's id is removed.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use bollard::Docker;
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, Mount, MountType, NetworkCreateRequest, NetworkingConfig,
    VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, ListContainersOptionsBuilder, ListNetworksOptionsBuilder, ListVolumesOptionsBuilder,
    RemoveContainerOptionsBuilder, RemoveVolumeOptions,
};

use crate::drydock_api::{Api, InstanceSweep, MACHINE, START_TIMEOUT, Workspaces, connect, engine_description};
use crate::instance::{Backend, Instance, drydock_bin, drydock_version};
use crate::util::{code_version, date, env_u32, load_average, machine, max, median, ms, percentile, random_hex};

const HELP: &str = "\
usage: drydock-bench workspace-start

On a fresh SQLite instance, with the busybox test image (imported, no registry), times
POST /api/workspace/{id}/runtime until the workspace's /events stream says RUNNING for a
one-machine workspace, against creating and starting the same container with raw Engine API
calls (the baseline) in the same run: BENCH_RUNS starts one after the other (the workspace
stopped, the raw container removed between runs), then BENCH_CONCURRENCY workspaces started
at once, against as many raw create+starts at once, first on fresh workspaces (their
network and volume are created) and then again on the same, stopped workspaces.
Prints a markdown table; fails when any start fails or a run is otherwise invalid.

environment:
  DRYDOCK_BIN          the drydock binary (default: target/release/drydock in the workspace)
  DOCKER_HOST          the engine, as for the docker CLI (default: the local socket)
  BENCH_RUNS           sequential measured starts of each kind (default 20)
  BENCH_WARMUP_RUNS    unmeasured sequential starts of each kind before them (default 1; 0: none)
  BENCH_CONCURRENCY    workspaces (and raw containers) started at once (default 20)
  BENCH_MEMORY_MB      each machine's memory limit (default 256)";

/// The aim: drydock's median at most 10% over the raw engine's.
const AIM_OVERHEAD: f64 = 0.10;
/// The docker runtime's `start_settle`: a start waits until every machine has run this long.
const START_SETTLE_MS: f64 = 20.0;
/// Labels every raw object carries, so that the guard finds them: `drydock-bench.raw=<run>`.
const RAW_LABEL: &str = "drydock-bench.raw";

pub fn run(args: &[String]) -> Result<()> {
    if !crate::util::no_arguments(args, HELP)? {
        return Ok(());
    }
    let settings = Settings {
        runs: env_u32("BENCH_RUNS", 20, 1)?,
        warmup: env_u32("BENCH_WARMUP_RUNS", 1, 0)?,
        concurrency: env_u32("BENCH_CONCURRENCY", 20, 1)?,
        memory_mb: env_u32("BENCH_MEMORY_MB", 256, 8)?,
    };
    let bin = drydock_bin("workspace-start")?;
    let drydock_version = drydock_version(&bin)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start tokio")?;
    let image = rt
        .block_on(drydock_docker::testing::busybox_image())
        .context("cannot make the busybox test image (is the engine up, and Debian's busybox-static installed?)")?;
    let docker = rt.block_on(connect())?;
    let engine = rt.block_on(engine_description(&docker));
    eprintln!("image {image}; {engine}");
    let load_before = load_average();

    // Drop order is the reverse of declaration: the workspaces go (through the API) before
    // the server stops, and the sweep of the instance's engine objects comes after that.
    let raw = RawObjects::new(&rt, docker.clone())?;
    let mut sweep = InstanceSweep { instance_id: None };
    let mut instance = Instance::create(&bin, &Backend::Sqlite)?;
    instance.init()?;
    sweep.instance_id = Some(instance.instance_id()?);
    // One user starts them all at once: lift the per-user runtime limit and let every start
    // talk to the engine at once, as the raw baseline does (the defaults are 10 and 5).
    let concurrency = settings.concurrency.to_string();
    instance.set_config("DRYDOCK_LIMITS__USER__RUNTIMES", "-1");
    instance.set_config("DRYDOCK_LIMITS__WORKSPACE__START_CONCURRENCY", &concurrency);
    instance.start()?;
    let api = Api { url: instance.url()?, token: instance.admin_token()? };
    eprintln!("drydock is running at {}", api.url);
    let mut workspaces = Workspaces { api: &api, ids: Vec::new() };

    let memory_bytes = u64::from(settings.memory_mb) << 20;
    let sequential = bench_sequential(&rt, &raw, &mut workspaces, &image, memory_bytes, &settings)?;
    let concurrent = bench_concurrent(&rt, &raw, &mut workspaces, &image, memory_bytes, &settings)?;

    // The same clean-up as the guards', with its errors reported.
    workspaces.delete_all()?;
    rt.block_on(raw.remove_all())?;
    instance.stop()?;
    if let Some(id) = &sweep.instance_id {
        let left = rt.block_on(drydock_docker::testing::instance_objects(id)).map_err(anyhow::Error::msg)?;
        ensure!(left.is_empty(), "deleting the workspaces left engine objects behind: {left:?}");
    }
    let load = format!("{load_before} before the run, {} after it", load_average());
    let header = Header { drydock_version, engine, image, load, label: instance.label() };
    print!("{}", report(&settings, &header, &sequential, &concurrent));
    Ok(())
}

struct Settings {
    runs: u32,
    warmup: u32,
    concurrency: u32,
    memory_mb: u32,
}

// ---------------------------------------------------------------------------------------
// The raw baseline, through bollard

/// The raw baseline's objects, all labelled `drydock-bench.raw=<run>`; dropping it removes
/// every container, network and volume with that label.
struct RawObjects<'a> {
    rt: &'a tokio::runtime::Runtime,
    docker: Docker,
    run: String,
}

impl<'a> RawObjects<'a> {
    fn new(rt: &'a tokio::runtime::Runtime, docker: Docker) -> Result<Self> {
        Ok(RawObjects { rt, docker, run: random_hex(5)? })
    }

    fn labels(&self) -> HashMap<String, String> {
        HashMap::from([(RAW_LABEL.to_string(), self.run.clone())])
    }

    fn name(&self, what: &str) -> String {
        format!("drydock-bench-{}-{what}", self.run)
    }

    /// A bridge network and a volume, as drydock makes them for a workspace.
    async fn network_and_volume(&self, what: &str) -> Result<()> {
        let request = NetworkCreateRequest {
            name: self.name(what),
            driver: Some("bridge".to_string()),
            labels: Some(self.labels()),
            ..Default::default()
        };
        self.docker.create_network(request).await.context("raw: create network")?;
        let request = VolumeCreateRequest {
            name: Some(format!("{}-projects", self.name(what))),
            labels: Some(self.labels()),
            ..Default::default()
        };
        self.docker.create_volume(request).await.context("raw: create volume")?;
        Ok(())
    }

    /// The body drydock's runtime sends for a one-machine workspace of the busybox image
    /// (`container_body` in the docker crate): TTY and open stdin, no attach, `SIGHUP` as the
    /// stop signal (the image's command is a shell), memory and memory+swap, `Init`, the
    /// network with the machine's name as alias, the volume at `/projects`.
    fn body(&self, network: &str, image: &str, memory_bytes: u64) -> ContainerCreateBody {
        let network = self.name(network);
        let memory = Some(i64::try_from(memory_bytes).unwrap_or(i64::MAX));
        ContainerCreateBody {
            image: Some(image.to_string()),
            hostname: Some(MACHINE.to_string()),
            env: Some(Vec::new()),
            labels: Some(self.labels()),
            tty: Some(true),
            open_stdin: Some(true),
            attach_stdin: Some(false),
            attach_stdout: Some(false),
            attach_stderr: Some(false),
            stop_signal: Some("SIGHUP".to_string()),
            host_config: Some(HostConfig {
                memory,
                memory_swap: memory,
                init: Some(true),
                network_mode: Some(network.clone()),
                mounts: Some(vec![Mount {
                    target: Some("/projects".to_string()),
                    source: Some(format!("{network}-projects")),
                    typ: Some(MountType::VOLUME),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network,
                    EndpointSettings { aliases: Some(vec![MACHINE.to_string()]), ..Default::default() },
                )])),
            }),
            ..Default::default()
        }
    }

    /// Creates and starts a container on the network (and volume) `network`, and inspects it
    /// until it runs; with `fresh`, creates that network and volume first. Returns the time
    /// taken and the container's id.
    async fn create_and_start(
        &self,
        container: &str,
        network: &str,
        fresh: bool,
        image: &str,
        memory_bytes: u64,
    ) -> Result<(Duration, String)> {
        let started = Instant::now();
        if fresh {
            self.network_and_volume(network).await?;
        }
        let options = CreateContainerOptionsBuilder::default().name(&self.name(container)).build();
        let created = self
            .docker
            .create_container(Some(options), self.body(network, image, memory_bytes))
            .await
            .context("raw: create container")?;
        self.docker.start_container(&created.id, None).await.context("raw: start container")?;
        loop {
            let inspected = self.docker.inspect_container(&created.id, None).await.context("raw: inspect")?;
            let state = inspected.state.unwrap_or_default();
            if state.running == Some(true) {
                return Ok((started.elapsed(), created.id));
            }
            ensure!(
                started.elapsed() < START_TIMEOUT
                    && state.status != Some(bollard::models::ContainerStateStatusEnum::EXITED),
                "raw: container {container} did not run: {:?}",
                state.status
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        let options = RemoveContainerOptionsBuilder::default().force(true).v(true).build();
        self.docker.remove_container(id, Some(options)).await.context("raw: remove container")
    }

    /// Every container, network and volume with this run's label.
    async fn remove_all(&self) -> Result<()> {
        let filters = HashMap::from([("label".to_string(), vec![format!("{RAW_LABEL}={}", self.run)])]);
        let mut first_error: Option<anyhow::Error> = None;
        let containers = self
            .docker
            .list_containers(Some(ListContainersOptionsBuilder::default().all(true).filters(&filters).build()))
            .await?;
        for id in containers.into_iter().filter_map(|c| c.id) {
            if let Err(e) = self.remove_container(&id).await {
                first_error.get_or_insert(e);
            }
        }
        let networks =
            self.docker.list_networks(Some(ListNetworksOptionsBuilder::default().filters(&filters).build())).await?;
        for id in networks.into_iter().filter_map(|n| n.id) {
            if let Err(e) = self.docker.remove_network(&id).await {
                first_error.get_or_insert(e.into());
            }
        }
        let volumes =
            self.docker.list_volumes(Some(ListVolumesOptionsBuilder::default().filters(&filters).build())).await?;
        for volume in volumes.volumes.unwrap_or_default() {
            if let Err(e) = self.docker.remove_volume(&volume.name, None::<RemoveVolumeOptions>).await {
                first_error.get_or_insert(e.into());
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for RawObjects<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.rt.block_on(self.remove_all()) {
            eprintln!("warning: removing the raw baseline's objects: {e:#}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// The measurements

struct Sequential {
    /// Milliseconds, sorted.
    drydock: Vec<f64>,
    raw: Vec<f64>,
}

fn bench_sequential(
    rt: &tokio::runtime::Runtime,
    raw: &RawObjects,
    workspaces: &mut Workspaces,
    image: &str,
    memory_bytes: u64,
    settings: &Settings,
) -> Result<Sequential> {
    eprintln!("== {} sequential starts of each kind ({} unmeasured first)", settings.runs, settings.warmup);
    let id = workspaces.create("bench-seq", image, memory_bytes)?;
    rt.block_on(raw.network_and_volume("seq"))?;
    let (mut drydock, mut raw_ms) = (Vec::new(), Vec::new());
    // drydock and the raw engine take turns, so that both meet the same moments of the machine.
    for run in 0..settings.warmup + settings.runs {
        let measured = run >= settings.warmup;
        let took = api_start(workspaces.api, &id)?;
        workspaces.api.stop(&id)?;
        let (raw_took, container) =
            rt.block_on(raw.create_and_start(&format!("seq-{run}"), "seq", false, image, memory_bytes))?;
        rt.block_on(raw.remove_container(&container))?;
        eprintln!(
            "  {} {run}: drydock {:.1} ms, raw {:.1} ms",
            if measured { "run" } else { "warm-up" },
            ms(took),
            ms(raw_took)
        );
        if measured {
            drydock.push(ms(took));
            raw_ms.push(ms(raw_took));
        }
    }
    // Free their networks for the concurrent part (the engine's address pools are small).
    workspaces.delete(&id)?;
    rt.block_on(raw.remove_all())?;
    sort(&mut drydock);
    sort(&mut raw_ms);
    Ok(Sequential { drydock, raw: raw_ms })
}

fn api_start(api: &Api, id: &str) -> Result<Duration> {
    let took = api.start(id)?;
    let status = api.status(id)?;
    ensure!(status == "RUNNING", "workspace {id} is {status} after its RUNNING event");
    Ok(took)
}

struct Batch {
    /// From the first start sent to the last RUNNING, in milliseconds.
    wall: f64,
    /// Each item's time, sorted.
    items: Vec<f64>,
}

struct Concurrent {
    /// Fresh workspaces (network and volume created) against raw starts that create theirs.
    first: (Batch, Batch),
    /// The same workspaces, stopped, started again, against raw starts on existing ones.
    again: (Batch, Batch),
}

fn bench_concurrent(
    rt: &tokio::runtime::Runtime,
    raw: &RawObjects,
    workspaces: &mut Workspaces,
    image: &str,
    memory_bytes: u64,
    settings: &Settings,
) -> Result<Concurrent> {
    let n = settings.concurrency as usize;
    eprintln!("== {n} starts at once");
    // The engine's default address pools hold about 30 bridge networks: the raw baseline's
    // and drydock's are not kept at the same time (see BENCHMARKS.md).
    let first_raw = raw_batch(rt, raw, n, "c1", true, image, memory_bytes)?;
    eprintln!("  raw, with network and volume: {}", first_raw.describe());
    let again_raw = raw_batch(rt, raw, n, "c2", false, image, memory_bytes)?;
    eprintln!("  raw, existing network and volume: {}", again_raw.describe());
    rt.block_on(raw.remove_all())?;

    let ids: Vec<String> =
        (0..n).map(|i| workspaces.create(&format!("bench-c{i:02}"), image, memory_bytes)).collect::<Result<_>>()?;
    let api = workspaces.api;
    let first_drydock = api_batch(api, &ids)?;
    eprintln!("  drydock, fresh workspaces: {}", first_drydock.describe());
    stop_all(api, &ids)?;
    let again_drydock = api_batch(api, &ids)?;
    eprintln!("  drydock, stopped workspaces: {}", again_drydock.describe());
    stop_all(api, &ids)?;
    Ok(Concurrent { first: (first_drydock, first_raw), again: (again_drydock, again_raw) })
}

impl Batch {
    fn describe(&self) -> String {
        format!(
            "wall {:.0} ms, per-item median {:.0} ms, max {:.0} ms",
            self.wall,
            median(&self.items),
            max(&self.items)
        )
    }
}

/// Starts every workspace at once, each from its own thread with its event stream already
/// open; fails when any start fails (all are waited for first, and all failures named).
fn api_batch(api: &Api, ids: &[String]) -> Result<Batch> {
    let barrier = Barrier::new(ids.len());
    let batch_start = std::sync::Mutex::new(None::<Instant>);
    let results: Vec<Result<(Instant, Duration)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ids
            .iter()
            .map(|id| {
                let barrier = &barrier;
                let batch_start = &batch_start;
                scope.spawn(move || -> Result<(Instant, Duration)> {
                    let events = api.watch(id);
                    // Every thread reaches the barrier, even one that could not watch.
                    let mut events = match events {
                        Ok(e) => e,
                        Err(e) => {
                            barrier.wait();
                            return Err(e);
                        }
                    };
                    let took = api.timed_start(id, &mut events, Some(barrier))?;
                    let start = Instant::now() - took;
                    let mut first = batch_start.lock().unwrap_or_else(|e| e.into_inner());
                    *first = Some(first.map_or(start, |f: Instant| f.min(start)));
                    Ok((Instant::now(), took))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a start thread panicked"))))
            .collect()
    });
    let first = batch_start.into_inner().unwrap_or_else(|e| e.into_inner());
    collect_batch(results, first, "drydock")
}

fn stop_all(api: &Api, ids: &[String]) -> Result<()> {
    let results: Vec<Result<()>> = std::thread::scope(|scope| {
        let handles: Vec<_> = ids.iter().map(|id| scope.spawn(move || api.stop(id))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("a stop thread panicked"))))
            .collect()
    });
    for r in results {
        r?;
    }
    Ok(())
}

/// Creates and starts `n` raw containers at once (each on its own network and volume, made
/// in the same call when `fresh`); removes them afterwards.
fn raw_batch(
    rt: &tokio::runtime::Runtime,
    raw: &RawObjects,
    n: usize,
    tag: &str,
    fresh: bool,
    image: &str,
    memory_bytes: u64,
) -> Result<Batch> {
    let batch_start = Instant::now();
    let results: Vec<Result<(Instant, Duration, String)>> = rt.block_on(async {
        let tasks = (0..n).map(|i| {
            let network = format!("c{i:02}");
            let container = format!("{tag}-{i:02}");
            async move {
                let (took, id) = raw.create_and_start(&container, &network, fresh, image, memory_bytes).await?;
                Ok((Instant::now(), took, id))
            }
        });
        join_all(tasks).await
    });
    let mut ids = Vec::new();
    let timed = results
        .into_iter()
        .map(|r| {
            r.map(|(end, took, id)| {
                ids.push(id);
                (end, took)
            })
        })
        .collect();
    let batch = collect_batch(timed, Some(batch_start), "raw");
    let removed: Vec<Result<()>> = rt.block_on(join_all(ids.iter().map(|id| raw.remove_container(id))));
    let batch = batch?;
    for r in removed {
        r?;
    }
    Ok(batch)
}

/// Runs futures concurrently on the current task (bollard's client is shared; the engine
/// does the work), in order of the input.
async fn join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut pending: Vec<_> = futures.into_iter().map(Box::pin).map(Some).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for (slot, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        *output = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => done = false,
                }
            }
        }
        if done { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
    })
    .await;
    outputs.into_iter().map(|o| o.expect("every future finished")).collect()
}

fn collect_batch(results: Vec<Result<(Instant, Duration)>>, first: Option<Instant>, what: &str) -> Result<Batch> {
    let total = results.len();
    let mut failures = Vec::new();
    let mut items = Vec::new();
    let mut last = None::<Instant>;
    for (i, r) in results.into_iter().enumerate() {
        match r {
            Ok((end, took)) => {
                items.push(ms(took));
                last = Some(last.map_or(end, |l| l.max(end)));
            }
            Err(e) => failures.push(format!("#{i}: {e:#}")),
        }
    }
    ensure!(
        failures.is_empty(),
        "{what}: {} of {total} concurrent starts failed (zero failures are required):\n{}",
        failures.len(),
        failures.join("\n")
    );
    let (Some(first), Some(last)) = (first, last) else { bail!("{what}: no start was timed") };
    sort(&mut items);
    Ok(Batch { wall: ms(last.duration_since(first)), items })
}

// ---------------------------------------------------------------------------------------
// Figures and the report

fn sort(v: &mut [f64]) {
    v.sort_by(f64::total_cmp);
}

struct Header {
    drydock_version: String,
    engine: String,
    image: String,
    load: String,
    label: String,
}

fn report(settings: &Settings, h: &Header, s: &Sequential, c: &Concurrent) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n## drydock-bench workspace-start, {}\n", date());
    let _ = writeln!(out, "- machine: {}", machine());
    let _ = writeln!(out, "- load average (1, 5, 15 min): {}", h.load);
    let _ = writeln!(
        out,
        "- server: {} ({}), on 127.0.0.1, default config, {}",
        h.drydock_version,
        code_version(),
        h.label
    );
    let _ = writeln!(out, "- engine: {}; image `{}`", h.engine, h.image);
    let _ = writeln!(
        out,
        "- one machine `{MACHINE}`, {} MB; drydock: POST …/runtime to the RUNNING event on `/events`; \
         raw: create + start + inspect until running",
        settings.memory_mb
    );
    let _ = writeln!(
        out,
        "- sequential: {} measured runs of each kind, taking turns, after {} unmeasured; \
         concurrent: {} at once\n",
        settings.runs, settings.warmup, settings.concurrency
    );
    let _ = writeln!(out, "| sequential | median | p90 | max |");
    let _ = writeln!(out, "| --- | ---: | ---: | ---: |");
    let row = |out: &mut String, label: &str, v: &[f64], plus: f64| {
        let _ = writeln!(
            out,
            "| {label} | {:.1} ms | {:.1} ms | {:.1} ms |",
            median(v) + plus,
            percentile(v, 90.0) + plus,
            max(v) + plus
        );
    };
    row(&mut out, "drydock", &s.drydock, 0.0);
    row(&mut out, "raw Engine API", &s.raw, 0.0);
    row(&mut out, &format!("raw + {START_SETTLE_MS} ms (`start_settle`)"), &s.raw, START_SETTLE_MS);
    let ratio = median(&s.drydock) / median(&s.raw);
    let ratio_settled = median(&s.drydock) / (median(&s.raw) + START_SETTLE_MS);
    let _ = writeln!(
        out,
        "\nRatio of medians: drydock / raw {ratio:.2}; drydock / (raw + {START_SETTLE_MS} ms) {ratio_settled:.2}.\n"
    );
    let _ =
        writeln!(out, "| {} at once | wall time of the batch | per-item median | per-item max |", settings.concurrency);
    let _ = writeln!(out, "| --- | ---: | ---: | ---: |");
    let batch_row = |out: &mut String, label: &str, b: &Batch| {
        let _ = writeln!(out, "| {label} | {:.0} ms | {:.0} ms | {:.0} ms |", b.wall, median(&b.items), max(&b.items));
    };
    batch_row(&mut out, "drydock, fresh workspaces (network and volume made)", &c.first.0);
    batch_row(&mut out, "raw, network + volume + container", &c.first.1);
    batch_row(&mut out, "drydock, the same workspaces started again", &c.again.0);
    batch_row(&mut out, "raw, container on an existing network and volume", &c.again.1);
    let _ = writeln!(
        out,
        "\nConcurrent ratios (drydock / raw): fresh: wall {:.2}, per-item median {:.2}; again: wall {:.2}, \
         per-item median {:.2}. Failures: none (any fails the run).",
        c.first.0.wall / c.first.1.wall,
        median(&c.first.0.items) / median(&c.first.1.items),
        c.again.0.wall / c.again.1.wall,
        median(&c.again.0.items) / median(&c.again.1.items)
    );
    let met = ratio <= 1.0 + AIM_OVERHEAD;
    let _ = writeln!(
        out,
        "\nAim (sequential median at most {:.0}% over the raw engine, zero failures): {} \
         (overhead {:+.0}%; {:+.0}% over raw + {START_SETTLE_MS} ms).",
        AIM_OVERHEAD * 100.0,
        if met { "met" } else { "NOT met" },
        (ratio - 1.0) * 100.0,
        (ratio_settled - 1.0) * 100.0
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(median(&v), 10.0);
        assert_eq!(percentile(&v, 90.0), 18.0);
        assert_eq!(max(&v), 20.0);
    }

    #[test]
    fn joins_futures_in_order() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let out = rt.block_on(join_all((0..3u64).map(|i| async move {
            tokio::time::sleep(Duration::from_millis(30 - 10 * i)).await;
            i
        })));
        assert_eq!(out, [0, 1, 2]);
    }
}
