//! The serving process (`start`, `standby`): one listener, and behind it the application
//! of the instance's role. A primary serves everything and runs the background jobs. A
//! standby serves reads from its copy while its follower syncs it, and is rebuilt after
//! each sync (config and caches come from the new copy); a promotion (SIGUSR1, sent by
//! `drydock promote`) turns it into the primary in the same process and on the same
//! address, at once.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::Request;
use drydock_core::audit_log::Actor;
use drydock_core::runtime::Unavailable;
use drydock_core::standby::{FollowState, StandbyState};
use drydock_core::{Drydock, SystemClock, VERSION};
use drydock_ops::standby::follower::Follower;
use drydock_ops::standby::source::PrimarySource;
use drydock_ops::standby::{FollowSettings, StandbyDir};
use drydock_server::{AppState, Settings, TlsFiles};
use tokio::sync::watch;
use tower::ServiceExt;

use crate::config::{self, Loaded};
use crate::instance::{DataDir, INITIAL_PASSWORD_SECRET, write_atomic};
use crate::wiring;

/// The application behind the listener; replaced whole when the instance changes role or
/// a standby's copy changes.
#[derive(Clone, Default)]
struct AppSwitch(Arc<RwLock<Router>>);

impl AppSwitch {
    fn set(&self, app: Router) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = app;
    }

    fn current(&self) -> Router {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The router the listener serves: each request goes to the application of the moment.
    fn router(&self) -> Router {
        let switch = self.clone();
        Router::new().fallback_service(tower::service_fn(move |request: Request| {
            let app = switch.current();
            async move { app.oneshot(request).await }
        }))
    }
}

/// Background jobs of a primary, and how to stop them.
struct Jobs {
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

impl Jobs {
    async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.handle.await;
    }
}

/// What the process serves with, whatever the role.
struct Serving {
    dir: DataDir,
    flags: Vec<(&'static str, String)>,
    instance_id: String,
    secure_cookies: bool,
    switch: AppSwitch,
}

/// Serves in this process until SIGTERM or SIGINT: as a standby while `standby/follow.json`
/// names a primary, else as the primary.
pub async fn serve(dir: &DataDir, loaded: Loaded, flags: Vec<(&'static str, String)>) -> Result<()> {
    let config = loaded.config;
    wiring::init_logging(&config.log.level);
    let instance_id = dir.instance_id()?;
    let addr: SocketAddr = config.server.listen.parse().context("server.listen")?;
    let listener = std::net::TcpListener::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    let tls = (!config.tls.cert.is_empty())
        .then(|| TlsFiles { cert: dir.root.join(&config.tls.cert), key: dir.root.join(&config.tls.key) });
    if tls.is_none() && !local.ip().is_loopback() {
        tracing::warn!(
            address = %local,
            "listening beyond loopback without TLS: passwords and tokens cross the network in clear; set tls.cert and tls.key"
        );
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    let reachable = if local.ip().is_unspecified() {
        SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), local.port())
    } else {
        local
    };
    let local_url = format!("{scheme}://{reachable}");
    let public_url =
        if config.server.public_url.is_empty() { local_url.clone() } else { config.server.public_url.clone() };
    let serving = Arc::new(Serving {
        dir: dir.clone(),
        flags,
        instance_id: instance_id.clone(),
        secure_cookies: tls.is_some(),
        switch: AppSwitch::default(),
    });

    let mut signals = Signals::new()?;
    let follow = StandbyDir::of(dir).follow()?;
    let (role, backend) = match &follow {
        Some(follow) => {
            let (store, standby_state) = serving.start_standby(&config, follow).await?;
            let backend = store.backend();
            (Role::Standby { follow: follow.clone(), store, state: standby_state }, backend)
        }
        None => serving.start_primary(&config).await.map(|(jobs, backend)| (Role::Primary(jobs), backend))?,
    };

    let pid = std::process::id();
    write_atomic(&dir.pid_file(), format!("{pid}\n").as_bytes(), 0o644)?;
    write_atomic(&dir.url_file(), format!("{local_url}\n").as_bytes(), 0o644)?;
    let role_name = if follow.is_some() { "standby" } else { "primary" };
    tracing::info!(%local, instance = %instance_id, role = role_name, backend, version = VERSION, "drydock is serving");
    match &follow {
        Some(f) => println!(
            "drydock {VERSION} is running at {public_url} (pid {pid}) as a standby of {}: read-only; promote it with `drydock promote`",
            f.primary
        ),
        None => {
            println!("drydock {VERSION} is running at {public_url} (pid {pid}, {backend} database)");
            print_sign_in_hint(dir, &public_url);
        }
    }

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut server = tokio::spawn(drydock_server::serve(listener, tls, serving.switch.router(), async move {
        let mut rx = shutdown_rx;
        let _ = rx.wait_for(|stop| *stop).await;
    }));
    // Until a signal ends the role, or the server stops by itself (it could not serve TLS).
    let ended = tokio::select! {
        jobs = serving.run_role(role, &config, &mut signals) => {
            let _ = shutdown_tx.send(true);
            if let Some(jobs) = jobs {
                jobs.stop().await;
            }
            (&mut server).await
        }
        ended = &mut server => ended,
    };
    let result = ended.context("the server task failed")?;
    remove_run_files(dir, pid);
    tracing::info!("drydock stopped");
    result.map_err(Into::into)
}

enum Role {
    Primary(Jobs),
    Standby { follow: FollowSettings, store: Arc<dyn drydock_core::Store>, state: Arc<StandbyState> },
}

impl Serving {
    /// Builds the primary's application (as `start` always did) and starts its jobs. The
    /// first start after a promotion stops the lost primary's workspaces here.
    async fn start_primary(&self, config: &drydock_core::Config) -> Result<(Jobs, &'static str)> {
        let dir = &self.dir;
        let store = wiring::open_store(dir, config).await?;
        if !config.audit.enabled {
            tracing::warn!("audit.enabled is false: no audit events are written while this server runs");
        }
        // A promoted standby's copy of /projects goes into each workspace's volume when it is
        // first needed (and in the background below).
        let mirror = StandbyDir::of(dir).mirror();
        let seed = mirror.exists().then_some(mirror);
        let (runtime, engine) = wiring::open_runtime(dir, &self.instance_id, config, seed.clone()).await;
        let drydock = Arc::new(Drydock::new(store.clone(), config, Arc::new(SystemClock), runtime));
        let instance = wiring::ops_instance(dir, config)?;
        let source = PrimarySource::open(instance.clone(), engine.clone())
            .await
            .context("cannot open the database for replication")?;
        drydock.backups.set_runner(Arc::new(drydock_ops::backup::MasterBackups { instance, runtime: engine.clone() }));
        if let Err(e) = drydock.backups.mark_interrupted().await {
            tracing::warn!(error = %e, "cannot mark the backups the last master left running");
        }
        // Maintenance mode outlives restarts: it holds from the first request on.
        drydock.system.load().await.context("cannot read the instance's state (maintenance mode) from the database")?;
        // An instance upgraded from a release that kept no license history runs under Fair Source.
        drydock
            .licenses
            .accept_fair_source_if_new(Actor::system())
            .await
            .context("cannot record the acceptance of the Fair Source license")?;
        // The licensed seats hold from the first request on.
        drydock.licenses.load().await.context("cannot read the installed license from the database")?;
        let standby = StandbyDir::of(dir);
        if let Some(promotion) = standby.unsettled_promotion()? {
            let stopped = drydock
                .workspaces
                .stop_after_failover(&promotion.primary)
                .await
                .context("cannot mark the lost primary's workspaces stopped")?;
            standby.mark_settled(&promotion)?;
            tracing::info!(workspaces = stopped, "the lost primary's workspaces are STOPPED here");
        }
        // Workspaces whose containers died, or whose start or stop was cut off, while no master
        // ran: put them right before serving.
        if let Err(e) = drydock.workspaces.reconcile().await {
            tracing::warn!(error = %e, "cannot reconcile workspaces with the engine");
        }
        if let (Some(engine), Some(_)) = (engine, seed) {
            tokio::spawn(async move {
                match engine.seed_all_projects().await {
                    Ok(seeded) if !seeded.is_empty() => {
                        tracing::info!(
                            workspaces = seeded.len(),
                            "the standby's copies of /projects are in the volumes"
                        )
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot load the standby's copies of /projects into volumes"),
                }
            });
        }
        let state = AppState::new(drydock, self.settings(config, None, Some(Arc::new(source)))?);
        self.switch.set(drydock_server::app(state.clone()));
        let (stop, stopped) = watch::channel(false);
        let handle = drydock_server::spawn_background_jobs(state, stopped);
        Ok((Jobs { stop, handle }, store.backend()))
    }

    /// Builds the standby's application over its copy; writes are refused.
    async fn start_standby(
        &self,
        config: &drydock_core::Config,
        follow: &FollowSettings,
    ) -> Result<(Arc<dyn drydock_core::Store>, Arc<StandbyState>)> {
        let store = wiring::open_standby_store(&self.dir, config).await?;
        let record = StandbyDir::of(&self.dir).record()?;
        let state = Arc::new(StandbyState::new(FollowState { primary: follow.primary.clone(), ..record.follow }));
        self.set_standby_app(config, store.clone(), state.clone()).await?;
        Ok((store, state))
    }

    async fn set_standby_app(
        &self,
        config: &drydock_core::Config,
        store: Arc<dyn drydock_core::Store>,
        state: Arc<StandbyState>,
    ) -> Result<()> {
        let reason = "this instance is a standby: workspaces run on the primary".to_string();
        let drydock = Arc::new(Drydock::new(store, config, Arc::new(SystemClock), Arc::new(Unavailable { reason })));
        drydock.system.load().await.context("cannot read the copy's maintenance state")?;
        drydock.licenses.load().await.context("cannot read the copy's license")?;
        let app = AppState::new(drydock, self.settings(config, Some(state), None)?);
        self.switch.set(drydock_server::app(app));
        Ok(())
    }

    fn settings(
        &self,
        config: &drydock_core::Config,
        standby: Option<Arc<StandbyState>>,
        replication: Option<Arc<dyn drydock_core::standby::ReplicationSource>>,
    ) -> Result<Settings> {
        Ok(Settings {
            metrics_public: config.metrics.public,
            secure_cookies: self.secure_cookies,
            session_ttl_secs: config.auth.session_ttl.0.as_secs() as i64,
            instance_id: self.instance_id.clone(),
            backup_schedule: (!config.backup.schedule.trim().is_empty())
                .then(|| drydock_core::backups::Schedule::parse(&config.backup.schedule))
                .transpose()
                .map_err(|e| anyhow::anyhow!("backup.schedule: {e}"))?,
            standby,
            replication,
        })
    }

    /// Runs the role until SIGTERM or SIGINT; a standby promoted meanwhile goes on as the
    /// primary. Returns the primary's jobs, to stop.
    async fn run_role(&self, role: Role, config: &drydock_core::Config, signals: &mut Signals) -> Option<Jobs> {
        let (follow, store, state) = match role {
            Role::Primary(jobs) => {
                signals.next(false).await;
                return Some(jobs);
            }
            Role::Standby { follow, store, state } => (follow, store, state),
        };
        let database = match wiring::ops_instance(&self.dir, config) {
            Ok(instance) => instance.database,
            Err(e) => {
                tracing::error!(error = %e, "cannot find the standby's database");
                signals.next(false).await;
                return None;
            }
        };
        let (applied_tx, mut applied) = watch::channel(0u64);
        let engine =
            if follow.images { wiring::open_runtime(&self.dir, &self.instance_id, config, None).await.1 } else { None };
        let follower = match Follower::new(
            self.dir.clone(),
            follow.clone(),
            database.clone(),
            state.clone(),
            applied_tx,
            engine,
        ) {
            Ok(f) => Arc::new(f),
            Err(e) => {
                tracing::error!(error = %e, "cannot follow the primary");
                signals.next(false).await;
                return None;
            }
        };
        loop {
            let (stop_following, following_stopped) = watch::channel(false);
            let task = tokio::spawn({
                let follower = follower.clone();
                async move { follower.run(following_stopped).await }
            });
            let promote = loop {
                tokio::select! {
                    changed = applied.changed() => {
                        if changed.is_err() { continue; }
                        // The copy changed: rebuild over it (its config may have changed too).
                        match config::load(&self.dir.root, &self.flags) {
                            Ok(loaded) => {
                                if let Err(e) = self.set_standby_app(&loaded.config, store.clone(), state.clone()).await {
                                    tracing::warn!(error = %e, "cannot reload the standby after a sync");
                                }
                            }
                            Err(e) => tracing::warn!(error = %e, "the synced config cannot be loaded; the standby keeps the last one"),
                        }
                    }
                    promote = signals.next(true) => break promote,
                }
            };
            let _ = stop_following.send(true);
            if !promote {
                let _ = task.await;
                return None;
            }
            // Promotion does not wait for a sync in flight: it is cut off, and the copy is the
            // last completed sync (a sync staged whole is applied first).
            task.abort();
            let _ = task.await;
            match self.promote(&follower, &database).await {
                Ok(jobs) => {
                    signals.next(false).await;
                    return Some(jobs);
                }
                Err(e) if StandbyDir::of(&self.dir).follow_file().exists() => {
                    // Not promoted: it goes on following.
                    tracing::error!(error = format!("{e:#}"), "the promotion failed; still a standby");
                    state.update(|s| s.last_error = Some(format!("the promotion failed: {e:#}")));
                }
                Err(e) => {
                    tracing::error!(
                        error = format!("{e:#}"),
                        "promoted, but cannot serve as the primary; serving the copy read-only: fix the cause and \
                         run `drydock restart`"
                    );
                    signals.next(false).await;
                    return None;
                }
            }
        }
    }

    /// Stops following and serves as the primary, with the data of the last completed sync.
    async fn promote(&self, follower: &Follower, database: &drydock_ops::database::Database) -> Result<Jobs> {
        let promotion = drydock_ops::standby::promote(&self.dir, database, follower).await?;
        let loaded = config::load(&self.dir.root, &self.flags)?;
        let (jobs, _) = self.start_primary(&loaded.config).await?;
        tracing::info!(epoch = promotion.epoch, former_primary = %promotion.primary, "promoted: serving as the primary");
        Ok(jobs)
    }
}

/// The signals a serving process obeys: SIGTERM and SIGINT stop it, SIGUSR1 promotes a
/// standby. Listened to from the start, so none is missed between waits.
struct Signals {
    term: tokio::signal::unix::Signal,
    usr1: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("cannot listen for SIGTERM")?,
            usr1: signal(SignalKind::user_defined1()).context("cannot listen for SIGUSR1")?,
        })
    }

    /// Waits for a stop (false) or, when `promotable`, a promotion (true). A SIGUSR1 to an
    /// instance that is not a standby is logged and ignored.
    async fn next(&mut self, promotable: bool) -> bool {
        loop {
            tokio::select! {
                _ = self.term.recv() => { tracing::info!("SIGTERM: stopping"); return false; }
                _ = tokio::signal::ctrl_c() => { tracing::info!("SIGINT: stopping"); return false; }
                _ = self.usr1.recv() => {
                    if promotable {
                        tracing::info!("SIGUSR1: promoting this standby");
                        return true;
                    }
                    tracing::warn!("SIGUSR1: this instance is not a standby; nothing to promote");
                }
            }
        }
    }
}

pub fn print_sign_in_hint(dir: &DataDir, url: &str) {
    let initial = dir.secret_file(INITIAL_PASSWORD_SECRET);
    if initial.exists() {
        println!("Sign in at {url}/ as the administrator; the generated password is in {}", initial.display());
    } else {
        println!("Sign in at {url}/ with your account (API: POST {url}/api/auth/login)");
    }
}

/// Removes the pid and URL files, unless another server has written them since.
fn remove_run_files(dir: &DataDir, pid: u32) {
    let ours = std::fs::read_to_string(dir.pid_file()).map(|p| p.trim() == pid.to_string()).unwrap_or(false);
    if ours {
        let _ = std::fs::remove_file(dir.url_file());
        let _ = std::fs::remove_file(dir.pid_file());
    }
}

/// How long `drydock promote` waits for the running standby to serve as the primary.
pub const PROMOTE_TIMEOUT: Duration = Duration::from_secs(60);
