//! Wiring for `medic run`: load the config, start the state task, scheduler and HTTP server,
//! reload on SIGHUP or `POST /-/reload`, drain on SIGINT/SIGTERM.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use crate::checks::Prober;
use crate::cluster::Shard;
use crate::config::WebConfigError;
use crate::config::{CheckSpec, Config, ConfigSource, Overrides, StoreConfig};
use crate::metrics::Metrics;
use crate::pause_book::PauseBook;
use crate::recovery::{
    self,
    action::Actions,
    engine::Engine,
    manager::RecoveryHandle,
    verify::{DirectChecks, LiveChecks, ProbeEvents, Verifier},
};
use crate::scheduler::{ProbeHandle, Scheduler};
use crate::server::web_security::WebSecurity;
use crate::server::{self, HandlerContext, ReloadRequest};
use crate::state::{self, StateHandle};
use crate::store::{self, Store};
use crate::timefmt::now_ms;

/// What `medic run` takes from the command line beyond the config overrides.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// `--web.config.file`.
    pub web_config: Option<PathBuf>,
    /// `--cluster.shard`.
    pub shard: Shard,
    /// `--web.max-connections`.
    pub max_connections: usize,
    /// `--web.external-url`.
    pub external_url: Option<String>,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            web_config: None,
            shard: Shard::default(),
            max_connections: server::DEFAULT_MAX_CONNECTIONS,
            external_url: None,
        }
    }
}

/// What recovery's verification asks of this process: prompt probes from the scheduler and
/// their results, after thresholds, from the state task.
struct Scheduled {
    state: StateHandle,
    probes: ProbeHandle,
}

impl LiveChecks for Scheduled {
    fn probe_now(&self, check: &str) -> bool {
        self.probes.probe_now(check)
    }

    fn probes(
        &self,
        check: &str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<ProbeEvents>> + Send + '_>> {
        let check = check.to_string();
        Box::pin(async move { self.state.probes(&check).await })
    }

    fn status(
        &self,
        check: &str,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Option<crate::status::Status>> + Send + '_>,
    > {
        let check = check.to_string();
        Box::pin(async move { self.state.status(&check).await.map(|(status, _)| status) })
    }
}

/// Hands the scheduler and the state task the checks and predictions of this replica's shard
/// (a prediction lives where its check is probed), and `others` the checks it verifies by
/// probing directly. Returns how many checks it probes. Without sharding nothing is copied: the
/// scheduler keeps the only long-lived copy of the checks.
async fn apply_config(
    config: &Config,
    shard: Shard,
    scheduler: &mut Scheduler,
    state: &StateHandle,
    others: &watch::Sender<Arc<DirectChecks>>,
) -> usize {
    let checks: Cow<'_, [CheckSpec]> = if shard.is_whole() {
        Cow::Borrowed(&config.checks)
    } else {
        Cow::Owned(
            config
                .checks
                .iter()
                .filter(|c| shard.owns(&c.name))
                .cloned()
                .collect(),
        )
    };
    let predictions = config
        .predictions
        .iter()
        .filter(|p| shard.owns(&p.check))
        .cloned()
        .collect();
    let applied = scheduler.apply(&checks, config.redactor.clone());
    state.apply(applied, predictions, config.history_size).await;
    others.send_replace(Arc::new(DirectChecks {
        prober: scheduler.prober(),
        checks: config
            .checks
            .iter()
            .filter(|c| !shard.owns(&c.name))
            .map(|c| (c.name.clone(), c.clone()))
            .collect(),
        redactor: config.redactor.clone(),
    }));
    checks.len()
}

/// Runs medic until SIGINT or SIGTERM.
pub async fn run(location: ConfigSource, overrides: Overrides, options: RunOptions) -> Result<()> {
    let RunOptions {
        web_config,
        shard,
        max_connections,
        external_url,
    } = options;
    // Before any child exists: orphans of probes and steps are reparented to medic and reaped.
    crate::reaper::start();
    let config = location
        .load(&overrides)
        .map_err(|e| anyhow::anyhow!("invalid config {location}: {e}"))?;
    let web = load_web_config(web_config.as_deref())?;
    if matches!(location, ConfigSource::Builtin) {
        tracing::info!(
            "no config file given and no medic.yml here: running the built-in default config"
        );
    }

    let metrics = Arc::new(Metrics::new());
    let listener = server::listen(&config.web.listen_address)
        .await
        .with_context(|| format!("cannot listen on {}", config.web.listen_address))?;
    let local = listener
        .local_addr()
        .context("reading the listen address")?;

    // The store opens in the background: checks and /metrics run from the first second even
    // when PostgreSQL is down; /-/ready waits for it.
    let (store_tx, store_rx) = watch::channel::<Option<Store>>(None);
    let (writer, writer_task) = store::spawn_writer(store_rx.clone(), metrics.clone());
    let (recovery, recovery_rx) = RecoveryHandle::channel();
    let (state, state_task) = state::spawn(metrics.clone(), Some(writer), Some(recovery.clone()));
    let prober = Arc::new(Prober::new().context("building the HTTP client")?);
    let heartbeats = prober.heartbeats();
    // Filled by apply_config below, before any run can start.
    let (others_tx, others_rx) = watch::channel(Arc::new(DirectChecks {
        prober: prober.clone(),
        checks: BTreeMap::new(),
        redactor: config.redactor.clone(),
    }));
    let mut scheduler = Scheduler::new(prober, state.sender());
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    // The pauses in force, kept from the store (every replica's, and across restarts). The
    // recovery manager asks it before starting a run; the API writes through it.
    let pause_book = PauseBook::new(metrics.clone());
    let pause_refresher = pause_book.spawn_refresher(store_rx.clone(), shutdown_rx.clone());
    // Talking back to Alertmanager: one link per process, re-pointed on reload.
    let owner = owner_name(&local.to_string());
    let alertmanager = crate::am_api::Alertmanager::new(
        store_rx.clone(),
        metrics.clone(),
        owner.clone(),
        external_url.unwrap_or_else(|| {
            crate::am_api::default_external_url(&local.to_string(), web.tls.is_some())
        }),
        Some(Arc::new(state.clone())),
    );
    alertmanager
        .apply(&config)
        .context("building the Alertmanager client")?;
    let keeper_task = alertmanager.clone().spawn_keeper(shutdown_rx.clone());
    let engine = Arc::new(Engine {
        actions: Actions::new()
            .context("building the HTTP client for recovery")?
            .with_alertmanager(alertmanager.clone()),
        metrics: metrics.clone(),
        verifier: Verifier::Live {
            checks: Arc::new(Scheduled {
                state: state.clone(),
                probes: scheduler.probe_handle(),
            }),
            others: others_rx,
        },
        owner,
    });
    let manager_task = recovery::manager::spawn_manager(
        engine,
        config.recovery.clone(),
        store_rx.clone(),
        recovery_rx,
        shutdown_rx.clone(),
    );
    // The manager keeps its own copy of the pauses: the book tells it of every change, the
    // first time once the store's pauses are known (until then the manager starts nothing).
    let pause_forwarder = {
        let (book, recovery, mut shutdown) =
            (pause_book.clone(), recovery.clone(), shutdown_rx.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = book.wait_loaded() => {}
                _ = shutdown.changed() => return,
            }
            let mut changes = book.subscribe();
            loop {
                let pauses = changes.borrow_and_update().as_ref().clone();
                // A full queue is retried: a pause must never be missed.
                while recovery.send(recovery::manager::Event::Pauses(pauses.clone()))
                    == recovery::manager::Queued::Full
                {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                tokio::select! {
                    changed = changes.changed() => if changed.is_err() { return },
                    _ = shutdown.changed() => return,
                }
            }
        })
    };
    let probed = apply_config(&config, shard, &mut scheduler, &state, &others_tx).await;
    metrics.config_reloaded(true, now_ms() as f64 / 1000.0);

    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(8);
    let (webhook_tx, webhook_rx) = watch::channel(Arc::new(config.web.webhook.clone()));
    let tls = web.tls.is_some();
    let auth = web.requires_auth();
    let (web_tx, web_rx) = watch::channel(Arc::new(web));
    let shared = Arc::new(HandlerContext {
        state: state.clone(),
        metrics: metrics.clone(),
        reload: reload_tx,
        ready: Default::default(),
        not_ready_reason: Default::default(),
        store: store_rx.clone(),
        webhook: webhook_rx,
        recovery: recovery.clone(),
        pauses: pause_book.clone(),
        web: web_rx,
        heartbeats,
        probes: scheduler.probe_handle(),
    });
    let server_task = tokio::spawn(server::serve(
        listener,
        max_connections,
        shared.clone(),
        shutdown_rx.clone(),
    ));
    // Enough history for the trend (an hour) and for every prediction's window.
    let history_ms = config
        .predictions
        .iter()
        .map(|p| p.window.std().as_millis() as i64)
        .fold(crate::check_trend::TREND_WINDOW_MS, i64::max);
    let opener_task = tokio::spawn(open_store(
        history_ms,
        config.store.clone(),
        config.redactor.clone(),
        config.history_size,
        state.clone(),
        store_tx,
        shared.clone(),
        metrics.clone(),
        shutdown_rx,
    ));
    tracing::info!(
        address = %local,
        config = %config.source,
        checks = config.checks.len(),
        probed,
        shard = %shard,
        tls,
        basic_auth = auth,
        version = env!("CARGO_PKG_VERSION"),
        "medic started"
    );

    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut running = Running {
        location,
        overrides,
        store_config: config.store.clone(),
        listen_address: config.web.listen_address.clone(),
        scheduler,
        state,
        metrics,
        recovery,
        webhook: webhook_tx,
        web_config,
        web: web_tx,
        shard,
        others: others_tx,
        alertmanager,
    };
    // Its checks live on in the scheduler; what a reload compares was copied into `running`.
    drop(config);
    loop {
        tokio::select! {
            Some(reply) = reload_rx.recv() => {
                let result = running.reload().await;
                let _ = reply.send(result);
            }
            _ = hangup.recv() => {
                let _ = running.reload().await;
            }
            _ = interrupt.recv() => { tracing::info!("received SIGINT, shutting down"); break; }
            _ = terminate.recv() => { tracing::info!("received SIGTERM, shutting down"); break; }
        }
    }

    // Runs cancel first (recording it), while checks can still verify; then probes stop.
    let _ = shutdown_tx.send(true);
    let _ = manager_task.await;
    let _ = keeper_task.await;
    running.scheduler.stop();
    let _ = server_task.await;
    let _ = opener_task.await;
    let _ = pause_refresher.await;
    let _ = pause_forwarder.await;
    drop(running);
    drop(shared);
    // The state task ends when its last sender is gone, dropping the writer handle; the writer
    // then flushes what is left.
    let _ = state_task.await;
    let _ = writer_task.await;
    if let Some(store) = store_rx.borrow().clone() {
        store.close().await;
    }
    tracing::info!("medic stopped");
    Ok(())
}

/// What a reload needs: the settings a reload cannot change and whom to tell about a new config.
/// Not the whole config: its checks live on in the scheduler, and a second copy of 10,000 of
/// them would be megabytes kept only to be dropped at the next reload.
struct Running {
    location: ConfigSource,
    overrides: Overrides,
    store_config: StoreConfig,
    listen_address: String,
    scheduler: Scheduler,
    state: StateHandle,
    metrics: Arc<Metrics>,
    recovery: RecoveryHandle,
    webhook: watch::Sender<Arc<crate::config::WebhookConfig>>,
    web_config: Option<PathBuf>,
    web: watch::Sender<Arc<WebSecurity>>,
    shard: Shard,
    others: watch::Sender<Arc<DirectChecks>>,
    alertmanager: Arc<crate::am_api::Alertmanager>,
}

impl Running {
    /// Loads the config again; a bad one changes nothing.
    async fn reload(&mut self) -> Result<(), String> {
        let now = now_ms() as f64 / 1000.0;
        // Both files apply together or not at all.
        let web = match load_web_config(self.web_config.as_deref()) {
            Ok(web) => web,
            Err(e) => {
                tracing::error!(error = %e, "config reload failed; keeping the old config");
                self.metrics.config_reloaded(false, now);
                return Err(e.to_string());
            }
        };
        match self.location.load(&self.overrides) {
            Ok(new) => {
                if new.store != self.store_config {
                    tracing::warn!("state changes need a restart; keeping the open state store");
                }
                if new.web.listen_address != self.listen_address {
                    tracing::warn!(
                        old = %self.listen_address,
                        new = %new.web.listen_address,
                        "web.listen_address changes need a restart; keeping the old address"
                    );
                }
                apply_config(
                    &new,
                    self.shard,
                    &mut self.scheduler,
                    &self.state,
                    &self.others,
                )
                .await;
                self.recovery.apply(new.recovery.clone()).await;
                if let Err(e) = self.alertmanager.apply(&new) {
                    tracing::error!(error = %e, "the new alertmanager: settings do not apply; keeping the old ones");
                }
                self.webhook.send_replace(Arc::new(new.web.webhook.clone()));
                // New certificates and users take effect for the next connection and request.
                self.web.send_replace(Arc::new(web));
                tracing::info!(checks = new.checks.len(), "config reloaded");
                self.store_config = new.store;
                self.listen_address = new.web.listen_address;
                self.metrics.config_reloaded(true, now);
                Ok(())
            }
            Err(errors) => {
                tracing::error!(error = %errors, "config reload failed; keeping the old config");
                self.metrics.config_reloaded(false, now);
                Err(errors.to_string())
            }
        }
    }
}

/// `--web.config.file`, or plain HTTP without auth when there is none.
fn load_web_config(path: Option<&Path>) -> Result<WebSecurity, WebConfigError> {
    path.map_or_else(|| Ok(WebSecurity::default()), WebSecurity::load)
}

/// Opens the state store (retrying with backoff), reloads history into the state task, hands
/// the store to the writer, marks medic ready, then prunes old results every few minutes and
/// watches that a SQLite file is still the one opened. A file deleted or replaced under medic
/// makes it not ready until the store is reopened on the path and migrated.
#[allow(clippy::too_many_arguments)]
async fn open_store(
    history_ms: i64,
    store_config: StoreConfig,
    redactor: crate::config::Redactor,
    history_size: usize,
    state: StateHandle,
    store_tx: watch::Sender<Option<Store>>,
    shared: Arc<HandlerContext>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut reopening = false;
    loop {
        let Some(store) = open_with_retry(&store_config, &redactor, &metrics, &mut shutdown).await
        else {
            return;
        };
        // The history lives on in memory across a reopen; the new file starts from now.
        if !reopening {
            reload_history(
                &store,
                history_ms,
                history_size,
                &state,
                &shared.heartbeats,
                &metrics,
            )
            .await;
        }
        let _ = store_tx.send(Some(store.clone()));
        set_not_ready_reason(&shared, None);
        shared.ready.store(true, Ordering::SeqCst);
        if reopening {
            tracing::info!(backend = ?store.backend(), "state store reopened and migrated; ready again");
        } else {
            tracing::info!(backend = ?store.backend(), "state store ready");
        }
        let Some(change) = maintain(&store, &store_config, &metrics, &mut shutdown).await else {
            return;
        };
        // Writes now go to a file nobody can read: stop taking them and say so.
        shared.ready.store(false, Ordering::SeqCst);
        set_not_ready_reason(
            &shared,
            Some("the state store file was deleted or replaced; reopening it"),
        );
        metrics.store_error("replaced");
        let path = store
            .file_path()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        tracing::error!(
            path = %redactor.redact(&path),
            change = change.as_str(),
            "state store file was deleted or replaced under medic; reopening it"
        );
        // Results wait in the writer's backlog and recovery waits for the store meanwhile.
        let _ = store_tx.send(None);
        if change == store::FileChange::Deleted {
            // A replaced file is someone's deliberate choice (a restore); a deleted one is
            // still readable through the open connections, and what it holds is kept.
            match store.salvage_deleted().await {
                Ok(true) => tracing::warn!("the deleted state store was copied back to its path"),
                Ok(false) => tracing::warn!(
                    "the deleted state store could not be read any more; starting a new one"
                ),
                Err(e) => {
                    metrics.store_error(e.operation());
                    tracing::warn!(error = %e, "cannot copy the deleted state store back; starting a new one");
                }
            }
        }
        if tokio::time::timeout(Duration::from_secs(5), store.close())
            .await
            .is_err()
        {
            tracing::warn!("closing the old state store timed out");
        }
        if change == store::FileChange::Deleted {
            if let Some(path) = store.file_path() {
                remove_stale_sidecars(path);
            }
        }
        reopening = true;
    }
}

/// `Store::open` until it succeeds (`None` at shutdown), with backoff.
async fn open_with_retry(
    store_config: &StoreConfig,
    redactor: &crate::config::Redactor,
    metrics: &Metrics,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<Store> {
    let mut backoff = Duration::from_millis(250);
    loop {
        match Store::open(&store_config.url).await {
            Ok(store) => return Some(store),
            Err(e) => {
                metrics.store_error(e.operation());
                tracing::warn!(error = %redactor.redact(&e.to_string()), retry_in = ?backoff, "cannot open the state store; checks keep running");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => return None,
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// An hour of results feeds the trend, predictions their window; the history shows at most
/// `history_size`.
async fn reload_history(
    store: &Store,
    history_ms: i64,
    history_size: usize,
    state: &StateHandle,
    heartbeats: &crate::checks::Heartbeats,
    metrics: &Metrics,
) {
    let since = now_ms() - history_ms;
    match store.load_results(since, history_size.max(4096)).await {
        Ok(rows) => {
            tracing::info!(
                results = rows.len(),
                "history reloaded from the state store"
            );
            state.load_history(rows).await;
        }
        Err(e) => {
            metrics.store_error(e.operation());
            tracing::warn!(error = %e, "cannot reload history from the state store");
        }
    }
    match store.load_heartbeats().await {
        Ok(stored) => heartbeats.restore(stored),
        Err(e) => {
            metrics.store_error(e.operation());
            tracing::warn!(error = %e, "cannot reload heartbeats from the state store");
        }
    }
}

/// Prunes every [`PRUNE_EVERY`] and checks the SQLite file every [`FILE_CHECK_EVERY`] until the
/// file changes (returned) or shutdown (`None`).
async fn maintain(
    store: &Store,
    store_config: &StoreConfig,
    metrics: &Metrics,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<store::FileChange> {
    let mut check = tokio::time::interval(FILE_CHECK_EVERY);
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_prune = tokio::time::Instant::now();
    loop {
        if let Some(change) = store.file_change() {
            return Some(change);
        }
        if tokio::time::Instant::now() >= next_prune {
            let before = now_ms() - store_config.retention.std().as_millis() as i64;
            match store.prune(before, store_config.retention_results).await {
                Ok(0) => {}
                Ok(removed) => tracing::debug!(removed, "pruned old check results"),
                Err(e) => {
                    metrics.store_error(e.operation());
                    tracing::warn!(error = %e, "pruning the state store failed");
                }
            }
            next_prune = tokio::time::Instant::now() + PRUNE_EVERY;
        }
        tokio::select! {
            _ = check.tick() => {}
            _ = shutdown.changed() => return None,
        }
    }
}

/// A deleted database's `-wal` and `-shm` files belong to it, not to the file about to be
/// opened at its path (new, or copied back by `salvage_deleted`, which leaves no WAL): SQLite
/// would replay the old WAL's pages into it and corrupt it. Closing the old pool normally
/// removes them; this covers a close that did not finish. Nothing has opened the path since.
fn remove_stale_sidecars(path: &Path) {
    for suffix in ["-wal", "-shm"] {
        let mut sidecar = path.as_os_str().to_owned();
        sidecar.push(suffix);
        match std::fs::remove_file(&sidecar) {
            Ok(()) => {
                tracing::info!(file = %Path::new(&sidecar).display(), "removed the deleted state store's leftover file")
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(error = %e, "cannot remove the deleted state store's leftover file")
            }
        }
    }
}

fn set_not_ready_reason(shared: &HandlerContext, reason: Option<&'static str>) {
    *shared
        .not_ready_reason
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = reason;
}

/// How often a SQLite store's file is compared with the one opened.
const FILE_CHECK_EVERY: Duration = Duration::from_secs(2);
const PRUNE_EVERY: Duration = Duration::from_secs(300);

/// Who holds a run in the store: this host and address, stable across restarts so a restarted
/// medic recognises the runs its previous life left unfinished.
pub fn owner_name(listen: &str) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".to_string());
    format!("{host}/{listen}")
}
