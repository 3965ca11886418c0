//! Wiring for `medic run`: load the config, start the state task, scheduler, recovery and HTTP
//! server, reload on SIGHUP or `POST /-/reload`, drain on SIGINT/SIGTERM. [`run`] reads as the
//! list of these steps; each lives in a function (or a module) of its own.

mod check_set;
mod live_checks;
mod membership;
mod reload;
mod store_keeper;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::check_change::Change;
use crate::checks::{Heartbeats, Prober};
use crate::cluster::{ClusterView, CriticalBook, Members, Ownership};
use crate::config::Sharding;
use crate::config::{Config, ConfigSource, Overrides};
use crate::discovery::Discovery;
use crate::metrics::Metrics;
use crate::pause_book::PauseBook;
use crate::recovery::action::Actions;
use crate::recovery::engine::Engine;
use crate::recovery::manager::{self, RecoveryHandle};
use crate::recovery::verify::{DirectChecks, Verifier};
use crate::scheduler::Scheduler;
use crate::server::web_security::WebSecurity;
use crate::server::{self, HandlerContext, ReloadRequest};
use crate::state::{self, StateHandle};
use crate::store::{self, Store};
use crate::timefmt::now_ms;
use check_set::CheckSet;
use live_checks::Scheduled;
use reload::{load_web_config, Running};

/// What `medic run` takes from the command line beyond the config overrides.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `--web.config.file`.
    pub web_config: Option<PathBuf>,
    /// `--web.max-connections`.
    pub max_connections: usize,
    /// `--web.external-url`.
    pub external_url: Option<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            web_config: None,
            max_connections: server::DEFAULT_MAX_CONNECTIONS,
            external_url: None,
        }
    }
}

/// Runs medic until SIGINT or SIGTERM.
pub async fn run(location: ConfigSource, overrides: Overrides, options: RunOptions) -> Result<()> {
    // Before any child exists: orphans of probes and steps are reparented to medic and reaped.
    crate::reaper::start();
    let (config, web) = load(&location, &overrides, &options)?;
    let metrics = Arc::new(Metrics::new());
    let listener = server::listen(&config.web.listen_address)
        .await
        .with_context(|| format!("cannot listen on {}", config.web.listen_address))?;
    let local = listener
        .local_addr()
        .context("reading the listen address")?;
    let (shutdown_tx, shutdown) = watch::channel(false);
    let critical = config.cluster.is_auto().then(CriticalBook::default);
    let (mut core, recovery_events) = Core::start(&metrics, critical.clone())?;
    let external_url = options.external_url.clone().unwrap_or_else(|| {
        crate::am_api::default_external_url(&local.to_string(), web.tls.is_some())
    });
    let owner = owner_name(&local.to_string());
    // Discovered lists and the cluster's members send their changes here.
    let (changes_tx, changes_rx) = mpsc::channel::<Change>(64);
    let owned = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let membership = critical.map(|book| {
        membership::start(
            identity(&config, &owner, &external_url),
            core.store.clone(),
            changes_tx.clone(),
            owned.clone(),
            book,
            metrics.clone(),
            shutdown.clone(),
        )
    });
    let cluster_view = membership.as_ref().map(|m| m.view.clone());
    let mut healing = Healing::start(
        &config,
        &core,
        &metrics,
        external_url,
        owner.clone(),
        cluster_view.clone(),
        &shutdown,
    )?
    .with_manager(&config, &core, recovery_events, &shutdown);
    if let Some(m) = membership {
        healing.tasks.extend(m.tasks);
    }
    let (checks, probed) = start_checks(
        &config,
        &owner,
        &mut core,
        &mut healing,
        &owned,
        &metrics,
        &shutdown,
    )
    .await;
    metrics.config_reloaded(true, now_ms() as f64 / 1000.0);
    let (serving, reload_rx) = Serving::start(
        listener,
        &config,
        web,
        &core,
        &healing,
        &metrics,
        &options,
        cluster_view,
        &shutdown,
    );
    log_started(&local, &config, probed, &checks, &serving);
    // Discovered lists send their changes where the cluster's members send theirs.
    let mut discovery = Discovery::new(changes_tx.clone(), metrics.clone());
    discovery.apply(&config.templates);
    let (running, core) = Running::new(
        location, overrides, &config, options, checks, core, &healing, &serving, metrics,
        discovery, owned,
    );
    // Its checks live on in the scheduler; what a reload compares was copied into `running`.
    drop(config);
    // Kept open for the life of the process, whether or not anything sends.
    let _changes_tx = changes_tx;
    let running = serve_until_stopped(running, reload_rx, changes_rx).await?;
    drain(shutdown_tx, running, core, healing, serving).await;
    tracing::info!("medic stopped");
    Ok(())
}

/// Which checks this replica probes, applied to the scheduler and the state task, and the task
/// that follows the statuses of dependencies other replicas probe. Returns the set and how many
/// of its checks this replica probes.
async fn start_checks(
    config: &Config,
    owner: &str,
    core: &mut Core,
    healing: &mut Healing,
    owned: &std::sync::atomic::AtomicUsize,
    metrics: &Metrics,
    shutdown: &watch::Receiver<bool>,
) -> (CheckSet, usize) {
    let ownership: Arc<dyn Ownership> = match config.cluster.sharding {
        Sharding::Fixed(shard) => Arc::new(shard),
        // Nothing until the others are met in the store: they probe meanwhile.
        Sharding::Auto => Arc::new(Members::none(owner, config.cluster.replication)),
    };
    let checks = CheckSet::new(config, ownership);
    let probed = checks
        .apply(&mut core.scheduler, &core.state, &healing.others, false)
        .await
        .probed;
    owned.store(probed, std::sync::atomic::Ordering::Relaxed);
    metrics.cluster_owned_checks(probed);
    let remote = tokio::spawn(
        follow_remote_dependencies(
            checks.remote_dependencies(),
            core.store.clone(),
            core.state.clone(),
            shutdown.clone(),
        )
        .instrument(tracing::info_span!("remote_dependencies")),
    );
    healing.tasks.push(remote);
    (checks, probed)
}

/// Who this replica is to the others, with `--cluster.shard auto`.
fn identity(config: &Config, owner: &str, external_url: &str) -> membership::Identity {
    membership::Identity {
        me: owner.to_string(),
        location: config.cluster.location.clone(),
        external_url: external_url.to_string(),
        replication: config.cluster.replication,
    }
}

/// The one line that says medic is up, and with what.
fn log_started(
    local: &std::net::SocketAddr,
    config: &Config,
    probed: usize,
    checks: &CheckSet,
    serving: &Serving,
) {
    tracing::info!(
        address = %local,
        config = %config.source,
        checks = config.checks.len(),
        check_templates = config.templates.len(),
        probed,
        shard = %checks.ownership(),
        tls = serving.tls,
        basic_auth = serving.auth,
        version = env!("CARGO_PKG_VERSION"),
        "medic started"
    );
}

/// The config and `--web.config.file`, checked before any port is bound.
fn load(
    location: &ConfigSource,
    overrides: &Overrides,
    options: &RunOptions,
) -> Result<(Config, WebSecurity)> {
    let config = location
        .load(overrides)
        .map_err(|e| anyhow::anyhow!("invalid config {location}: {e}"))?;
    let web = load_web_config(options.web_config.as_deref())?;
    if matches!(location, ConfigSource::Builtin) {
        tracing::info!(
            "no config file given and no medic.yml here: running the built-in default config"
        );
    }
    Ok((config, web))
}

/// Checking: the store (opened later, in the background), its writer, the state task, the
/// scheduler and its prober.
struct Core {
    store_tx: watch::Sender<Option<Store>>,
    store: watch::Receiver<Option<Store>>,
    writer_task: JoinHandle<()>,
    state: StateHandle,
    state_task: JoinHandle<()>,
    recovery: RecoveryHandle,
    scheduler: Scheduler,
    prober: Arc<Prober>,
    heartbeats: Heartbeats,
}

impl Core {
    /// The core, and the recovery manager's event queue (the state task sends to it).
    fn start(
        metrics: &Arc<Metrics>,
        critical: Option<CriticalBook>,
    ) -> Result<(Core, mpsc::Receiver<manager::Event>)> {
        // The store opens in the background: checks and /metrics run from the first second
        // even when PostgreSQL is down; /-/ready waits for it.
        let (store_tx, store) = watch::channel::<Option<Store>>(None);
        let (writer, writer_task) = store::spawn_writer(store.clone(), metrics.clone());
        let (recovery, recovery_rx) = RecoveryHandle::channel();
        let (state, state_task) = state::spawn(
            metrics.clone(),
            Some(writer),
            Some(recovery.clone()),
            critical,
        );
        let prober = Arc::new(Prober::new().context("building the HTTP client")?);
        let heartbeats = prober.heartbeats();
        let scheduler = Scheduler::new(prober.clone(), state.sender());
        let core = Core {
            store_tx,
            store,
            writer_task,
            state,
            state_task,
            recovery,
            scheduler,
            prober,
            heartbeats,
        };
        Ok((core, recovery_rx))
    }
}

/// Healing: the pauses, the link to Alertmanager, the recovery engine and its manager.
struct Healing {
    pause_book: PauseBook,
    alertmanager: Arc<crate::am_api::Alertmanager>,
    engine: Arc<Engine>,
    /// Checks another shard probes, verified here by probing them directly; filled by
    /// `apply_config` before any run can start.
    others: watch::Sender<Arc<DirectChecks>>,
    /// The manager first: shutdown waits for its runs to record their end while checks can
    /// still verify.
    tasks: Vec<JoinHandle<()>>,
}

impl Healing {
    fn start(
        config: &Config,
        core: &Core,
        metrics: &Arc<Metrics>,
        external_url: String,
        owner: String,
        cluster: Option<watch::Receiver<Arc<ClusterView>>>,
        shutdown: &watch::Receiver<bool>,
    ) -> Result<Healing> {
        let (others, others_rx) = watch::channel(Arc::new(DirectChecks {
            prober: core.prober.clone(),
            checks: BTreeMap::new(),
            redactor: config.redactor.clone(),
        }));
        // The pauses in force, kept from the store (every replica's, and across restarts).
        let pause_book = PauseBook::new(metrics.clone());
        let refresher = pause_book.spawn_refresher(core.store.clone(), shutdown.clone());
        // Talking back to Alertmanager: one link per process, re-pointed on reload.
        let alertmanager = crate::am_api::Alertmanager::new(
            core.store.clone(),
            metrics.clone(),
            owner.clone(),
            external_url,
            Some(Arc::new(core.state.clone())),
        );
        alertmanager
            .apply(config)
            .context("building the Alertmanager client")?;
        let keeper = alertmanager.clone().spawn_keeper(shutdown.clone());
        let engine = Arc::new(Engine {
            actions: Actions::new()
                .context("building the HTTP client for recovery")?
                .with_alertmanager(alertmanager.clone()),
            metrics: metrics.clone(),
            verifier: Verifier::Live {
                checks: Arc::new(Scheduled {
                    state: core.state.clone(),
                    probes: core.scheduler.probe_handle(),
                }),
                others: others_rx,
            },
            owner,
            blocked: core.state.blocked(),
            cluster,
        });
        Ok(Healing {
            pause_book,
            alertmanager,
            engine,
            others,
            tasks: vec![keeper, refresher],
        })
    }

    /// Starts the recovery manager, and the task that tells it of every change of the
    /// pauses, the first time once the store's pauses are known (until then it starts
    /// nothing).
    fn with_manager(
        mut self,
        config: &Config,
        core: &Core,
        events: mpsc::Receiver<manager::Event>,
        shutdown: &watch::Receiver<bool>,
    ) -> Healing {
        let manager = manager::spawn_manager(
            self.engine.clone(),
            config.recovery.clone(),
            core.store.clone(),
            events,
            shutdown.clone(),
        );
        self.tasks.insert(0, manager);
        let forwarder = forward_pauses(
            self.pause_book.clone(),
            core.recovery.clone(),
            shutdown.clone(),
        );
        self.tasks.push(tokio::spawn(
            forwarder.instrument(tracing::info_span!("pause_forwarder")),
        ));
        self
    }
}

/// How often the statuses of dependencies another replica probes are read from the store.
const REMOTE_DEPENDENCIES_EVERY: Duration = Duration::from_secs(2);

/// Reads, every two seconds, the latest statuses of the dependencies another replica probes
/// (`--cluster.shard`), so a check blocks here while its root fails there.
async fn follow_remote_dependencies(
    mut dependencies: watch::Receiver<Vec<String>>,
    store: watch::Receiver<Option<Store>>,
    state: StateHandle,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut every = tokio::time::interval(REMOTE_DEPENDENCIES_EVERY);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            changed = dependencies.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
        let checks = dependencies.borrow_and_update().clone();
        let Some(store) = store.borrow().clone() else {
            continue;
        };
        if checks.is_empty() {
            continue;
        }
        match store.latest_statuses(&checks).await {
            Ok(statuses) => state.remote_statuses(statuses).await,
            Err(e) => tracing::warn!(error = %e, "cannot read the statuses of remote dependencies"),
        }
    }
}

/// Tells the manager of every change of the pauses (a full queue is retried: a pause must
/// never be missed).
async fn forward_pauses(
    book: PauseBook,
    recovery: RecoveryHandle,
    mut shutdown: watch::Receiver<bool>,
) {
    tokio::select! {
        _ = book.wait_loaded() => {}
        _ = shutdown.changed() => return,
    }
    let mut changes = book.subscribe();
    loop {
        let pauses = changes.borrow_and_update().as_ref().clone();
        while recovery.send(manager::Event::Pauses(pauses.clone())) == manager::Queued::Full {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            _ = shutdown.changed() => return,
        }
    }
}

/// The HTTP side: what handlers share, the server, and the store's keeper (which marks medic
/// ready).
struct Serving {
    shared: Arc<HandlerContext>,
    webhook: watch::Sender<Arc<crate::config::WebhookConfig>>,
    web: watch::Sender<Arc<WebSecurity>>,
    tls: bool,
    auth: bool,
    server_task: JoinHandle<()>,
    keeper_task: JoinHandle<()>,
}

impl Serving {
    #[allow(clippy::too_many_arguments)]
    fn start(
        listener: tokio::net::TcpListener,
        config: &Config,
        web: WebSecurity,
        core: &Core,
        healing: &Healing,
        metrics: &Arc<Metrics>,
        options: &RunOptions,
        cluster: Option<watch::Receiver<Arc<ClusterView>>>,
        shutdown: &watch::Receiver<bool>,
    ) -> (Serving, mpsc::Receiver<ReloadRequest>) {
        let (reload_tx, reload_rx) = mpsc::channel::<ReloadRequest>(8);
        let (webhook, webhook_rx) = watch::channel(Arc::new(config.web.webhook.clone()));
        let (tls, auth) = (web.tls.is_some(), web.requires_auth());
        let (web, web_rx) = watch::channel(Arc::new(web));
        let shared = Arc::new(HandlerContext {
            state: core.state.clone(),
            metrics: metrics.clone(),
            reload: reload_tx,
            ready: Default::default(),
            not_ready_reason: Default::default(),
            store: core.store.clone(),
            webhook: webhook_rx,
            recovery: core.recovery.clone(),
            pauses: healing.pause_book.clone(),
            web: web_rx,
            heartbeats: core.heartbeats.clone(),
            probes: core.scheduler.probe_handle(),
            cluster,
        });
        let server = server::serve(
            listener,
            options.max_connections,
            shared.clone(),
            shutdown.clone(),
        );
        let server_task = tokio::spawn(server.instrument(tracing::info_span!("http_server")));
        let keeper = store_keeper::open_store(
            store_keeper::KeeperSettings::of(config),
            core.state.clone(),
            core.store_tx.clone(),
            shared.clone(),
            metrics.clone(),
            shutdown.clone(),
        );
        let keeper_task = tokio::spawn(keeper.instrument(tracing::info_span!("store_keeper")));
        let serving = Serving {
            shared,
            webhook,
            web,
            tls,
            auth,
            server_task,
            keeper_task,
        };
        (serving, reload_rx)
    }
}

/// Reloads on SIGHUP and `POST /-/reload`, and applies changes of the set of checks, until
/// SIGINT or SIGTERM.
async fn serve_until_stopped(
    mut running: Running,
    mut reload_rx: mpsc::Receiver<ReloadRequest>,
    mut changes: mpsc::Receiver<Change>,
) -> Result<Running> {
    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    loop {
        tokio::select! {
            Some(reply) = reload_rx.recv() => {
                let result = running.reload().await;
                let _ = reply.send(result);
            }
            _ = hangup.recv() => {
                let _ = running.reload().await;
            }
            Some(change) = changes.recv() => running.change_checks(change).await,
            _ = interrupt.recv() => { tracing::info!("received SIGINT, shutting down"); break; }
            _ = terminate.recv() => { tracing::info!("received SIGTERM, shutting down"); break; }
        }
    }
    Ok(running)
}

/// Runs cancel first (recording it) while checks can still verify; then probes stop, then the
/// server and the store's keeper; the state task ends when its last sender is gone, and the
/// writer then flushes what is left.
async fn drain(
    shutdown: watch::Sender<bool>,
    mut running: Running,
    core: CoreTasks,
    healing: Healing,
    serving: Serving,
) {
    let _ = shutdown.send(true);
    let Healing {
        tasks,
        pause_book,
        alertmanager,
        engine,
        others,
    } = healing;
    for task in tasks {
        let _ = task.await;
    }
    running.stop_probing();
    let Serving {
        shared,
        server_task,
        keeper_task,
        ..
    } = serving;
    let _ = server_task.await;
    let _ = keeper_task.await;
    // Every holder of a state handle goes now (the engine's verifier, Alertmanager's health
    // questions, the handlers, the scheduler): the state task ends.
    drop((running, shared, pause_book, alertmanager, engine, others));
    let _ = core.state_task.await;
    let _ = core.writer_task.await;
    if let Some(store) = core.store.borrow().clone() {
        store.close().await;
    }
}

/// What of the core outlives the handing of the scheduler and state to `Running`: the tasks
/// shutdown waits for, and the store to close.
struct CoreTasks {
    state_task: JoinHandle<()>,
    writer_task: JoinHandle<()>,
    store: watch::Receiver<Option<Store>>,
}

/// Who holds a run in the store: this host and address, stable across restarts so a restarted
/// medic recognises the runs its previous life left unfinished.
pub fn owner_name(listen: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string());
    format!("{host}/{listen}")
}
