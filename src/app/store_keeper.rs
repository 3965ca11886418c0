//! The state store's keeper: opens it in the background (retrying with backoff, so checks and
//! /metrics run from the first second), reloads history, marks medic ready, prunes, and
//! reopens a SQLite file deleted or replaced under medic.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::StoreConfig;
use crate::metrics::Metrics;
use crate::server::HandlerContext;
use crate::state::StateHandle;
use crate::store::{self, Store};
use crate::timefmt::now_ms;

/// What the keeper takes from the config at start (a reload does not change the store).
pub(super) struct KeeperSettings {
    /// How far back history is reloaded: an hour for the trend, more for a prediction's
    /// window.
    history_ms: i64,
    store_config: StoreConfig,
    redactor: crate::config::Redactor,
    history_size: usize,
    /// Whether every check's results are reloaded at start. Not with `--cluster.shard auto`:
    /// a replica owns nothing yet then, and loads its checks' results as they arrive.
    all_results: bool,
}

impl KeeperSettings {
    pub(super) fn of(config: &crate::config::Config) -> KeeperSettings {
        KeeperSettings {
            history_ms: history_window_ms(config),
            store_config: config.store.clone(),
            redactor: config.redactor.clone(),
            history_size: config.history_size,
            all_results: !config.cluster.is_auto(),
        }
    }
}

/// How far back a check's results are reloaded: an hour for the trend, more for a
/// prediction's window.
pub(super) fn history_window_ms(config: &crate::config::Config) -> i64 {
    config
        .predictions
        .iter()
        .map(|p| p.window.std().as_millis() as i64)
        .fold(crate::check_trend::TREND_WINDOW_MS, i64::max)
}

/// At most this many of a check's results are reloaded.
pub(super) fn reload_per_check(history_size: usize) -> usize {
    history_size.max(4096)
}

/// Opens the state store (retrying with backoff), reloads history into the state task, hands
/// the store to the writer, marks medic ready, then prunes old results every few minutes and
/// watches that a SQLite file is still the one opened. A file deleted or replaced under medic
/// makes it not ready until the store is reopened on the path and migrated.
pub(super) async fn open_store(
    settings: KeeperSettings,
    state: StateHandle,
    store_tx: watch::Sender<Option<Store>>,
    shared: Arc<HandlerContext>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let KeeperSettings {
        history_ms,
        store_config,
        redactor,
        history_size,
        all_results,
    } = settings;
    let mut reopening = false;
    loop {
        let Some(store) = open_with_retry(&store_config, &redactor, &metrics, &mut shutdown).await
        else {
            return;
        };
        // The history lives on in memory across a reopen; the new file starts from now.
        if !reopening {
            let history = all_results.then_some((history_ms, history_size));
            reload_history(&store, history, &state, &shared.heartbeats, &metrics).await;
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
    history: Option<(i64, usize)>,
    state: &StateHandle,
    heartbeats: &crate::checks::Heartbeats,
    metrics: &Metrics,
) {
    if let Some((history_ms, history_size)) = history {
        let since = now_ms() - history_ms;
        match store
            .load_results(since, reload_per_check(history_size))
            .await
        {
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
