//! `--cluster.shard auto`: this replica's membership in the PostgreSQL store. One task renews
//! it every 2 s (in the store's clock) and reads the others every 0.5 s; when the live members
//! change it sends the new ownership on the checks' change channel, and `Running` re-applies
//! the checks.
//! A second task writes which checks this replica sees critical (for `confirm:`); a third, per
//! handover, fills the state task with the recent results of checks that arrived.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::check_change::Change;
use crate::cluster::{self, ClusterView, CriticalBook, Members, Ownership, RENEW_EVERY_MS};
use crate::metrics::Metrics;
use crate::state::StateHandle;
use crate::store::{Presence, Store};

/// A renewal that takes longer than this counts as failed: the next one is due.
const RENEW_TIMEOUT: Duration = Duration::from_millis(1_800);
/// How often the members are read: every renewal, and between renewals, so a member gone
/// (6 s without renewing) is seen within half a second instead of up to two.
const READ_EVERY: Duration = Duration::from_millis(500);
/// Reads per renewal: a renewal (write and read) every [`RENEW_EVERY_MS`], reads alone between.
const READS_PER_RENEWAL: u64 = RENEW_EVERY_MS as u64 / READ_EVERY.as_millis() as u64;
/// Members gone for longer than this leave the table.
const FORGET_AFTER_MS: i64 = 3_600_000;
/// Critical marks are written this often at most (they coalesce meanwhile).
const CRITICAL_EVERY: Duration = Duration::from_millis(200);

/// Who this replica is in the cluster.
#[derive(Debug, Clone)]
pub(super) struct Identity {
    pub(super) me: String,
    pub(super) location: Option<String>,
    pub(super) external_url: String,
    pub(super) replication: u32,
}

/// The membership's tasks and what they publish.
pub(super) struct Membership {
    pub(super) view: watch::Receiver<Arc<ClusterView>>,
    pub(super) tasks: Vec<JoinHandle<()>>,
}

/// Starts renewing this replica's membership and writing its critical checks. `owned` is how
/// many checks it owns (kept by `Running`), reported at each renewal.
pub(super) fn start(
    identity: Identity,
    store: watch::Receiver<Option<Store>>,
    changes: mpsc::Sender<Change>,
    owned: Arc<AtomicUsize>,
    critical: CriticalBook,
    metrics: Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> Membership {
    let (view_tx, view) = watch::channel(Arc::new(ClusterView::joining(
        &identity.me,
        identity.location.clone(),
        identity.external_url.clone(),
        identity.replication,
        owned.clone(),
    )));
    let span = tracing::info_span!("membership", member = %identity.me);
    let renewer = Renewer {
        identity: identity.clone(),
        store: store.clone(),
        changes,
        owned,
        view: view_tx,
        metrics: metrics.clone(),
        met: false,
        renewals: 0,
        failing: false,
    };
    let renew = renewer.spawn(shutdown.clone(), span.clone());
    let write = tokio::spawn(
        write_critical(identity.me, store, critical, metrics, shutdown).instrument(span),
    );
    Membership {
        view,
        tasks: vec![renew, write],
    }
}

struct Renewer {
    identity: Identity,
    store: watch::Receiver<Option<Store>>,
    changes: mpsc::Sender<Change>,
    owned: Arc<AtomicUsize>,
    view: watch::Sender<Arc<ClusterView>>,
    metrics: Arc<Metrics>,
    /// Whether this life has met the store once (and cleared its previous life's marks).
    met: bool,
    /// Renewals that succeeded in this life. Members are acted on from the second: replicas
    /// started together register within one renewal of each other, and the first to register
    /// would otherwise take every check until the others appear (at 300,000 checks, a burst
    /// of work that starved its renewals and made it take them again). Reads between the
    /// first two renewals are not acted on either.
    renewals: u64,
    failing: bool,
}

impl Renewer {
    /// Runs the renewals on a thread and runtime of their own. On the shared runtime a renewal
    /// woke behind every probe task ready at that moment: on a machine short of CPU (three
    /// replicas of 100,000 checks on two cores) renewals lapsed, each replica took the others
    /// for dead, took their checks, and the extra work made it worse.
    fn spawn(self, shutdown: watch::Receiver<bool>, span: tracing::Span) -> JoinHandle<()> {
        tokio::task::spawn_blocking(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    tracing::error!(parent: &span, error = %e, "cannot start the membership's runtime; this replica stays out of the cluster");
                    return;
                }
            };
            runtime.block_on(self.run(shutdown).instrument(span));
        })
    }

    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(READ_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut ticks: u64 = 0;
        let mut attempts: u64 = 0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => break,
            }
            ticks += 1;
            let Some(store) = self.store.borrow().clone() else {
                continue;
            };
            if !self.met {
                match store.reset_member(&self.identity.me).await {
                    Ok(()) => self.met = true,
                    Err(e) => {
                        self.failed(&e.to_string(), e.operation());
                        continue;
                    }
                }
            }
            if !(ticks - 1).is_multiple_of(READS_PER_RENEWAL) {
                self.look(&store).await;
                continue;
            }
            self.renew(&store).await;
            attempts += 1;
            // About every five minutes, members long gone leave the table.
            if attempts.is_multiple_of(150) {
                if let Err(e) = store.forget_members(FORGET_AFTER_MS).await {
                    self.metrics.store_error(e.operation());
                }
            }
        }
        // Leaving on purpose: the others take the checks at their next renewal.
        let store = self.store.borrow().clone();
        if let Some(store) = store {
            match tokio::time::timeout(RENEW_TIMEOUT, store.leave(&self.identity.me)).await {
                Ok(Ok(())) => tracing::info!("left the cluster"),
                _ => tracing::warn!(
                    "could not leave the cluster; the others will see it gone in 6 s"
                ),
            }
            store.close_membership().await;
        }
    }

    /// One renewal: on success, the live members as the store's clock says, and a new
    /// ownership when they changed.
    async fn renew(&mut self, store: &Store) {
        let sent = Instant::now();
        let presence = Presence {
            id: &self.identity.me,
            location: self.identity.location.as_deref(),
            external_url: &self.identity.external_url,
            owned: self.owned.load(Ordering::Relaxed) as i64,
        };
        let (store_now, rows) =
            match tokio::time::timeout(RENEW_TIMEOUT, store.renew_member(&presence)).await {
                Ok(Ok(read)) => read,
                Ok(Err(e)) => return self.failed(&e.to_string(), e.operation()),
                Err(_) => return self.failed("timed out", "write"),
            };
        if self.failing {
            tracing::info!("membership renewed again");
            self.failing = false;
        }
        self.renewals += 1;
        self.apply(store_now, &rows, sent, true).await;
    }

    /// A read between renewals, so a member's death is acted on within [`READ_EVERY`] of being
    /// due rather than at the next renewal. Not while renewals fail (the renewal decides then)
    /// nor before the second renewal; a failed read waits for the next.
    async fn look(&mut self, store: &Store) {
        if self.failing || !self.settled() {
            return;
        }
        let sent = Instant::now();
        match tokio::time::timeout(RENEW_TIMEOUT, store.read_members()).await {
            Ok(Ok((store_now, rows))) => self.apply(store_now, &rows, sent, false).await,
            Ok(Err(e)) => self.metrics.store_error(e.operation()),
            Err(_) => self.metrics.store_error("read"),
        }
    }

    /// Publishes the members read at `sent` and, when they changed (from the second renewal
    /// on), sends the new ownership. `renewed`: the read came with this replica's own
    /// renewal, which is what fencing counts from.
    async fn apply(
        &mut self,
        store_now: i64,
        rows: &[cluster::MemberRow],
        sent: Instant,
        renewed: bool,
    ) {
        let live = cluster::live(rows, store_now);
        let current = self.view.borrow().clone();
        let same_members = current
            .ownership
            .ids()
            .eq(live.iter().map(|m| m.id.as_str()));
        let ownership = if same_members || !self.settled() {
            current.ownership.clone()
        } else {
            let members = Arc::new(
                Members::new(
                    &self.identity.me,
                    live.iter().map(|m| m.id.as_str()),
                    self.identity.replication,
                )
                .after(
                    &current.ownership,
                    |id| last_renewal(rows, id, store_now, sent),
                    sent - Duration::from_millis((cluster::GONE_AFTER_MS + RENEW_EVERY_MS) as u64),
                    live.iter().any(|m| m.id != self.identity.me && m.owned > 0),
                    sent,
                ),
            );
            tracing::info!(members = live.len(), ids = %live.iter().map(|m| m.id.as_str()).collect::<Vec<_>>().join(","), "cluster members changed");
            if !current.ownership.is_empty() {
                self.metrics.cluster_handover();
            }
            // Waits for room: an ownership change must not be lost.
            let _ = self.changes.send(Change::Ownership(members.clone())).await;
            members
        };
        self.metrics.cluster_members(live.len());
        self.view.send_replace(Arc::new(ClusterView {
            members: live,
            ownership,
            renewed_at: if renewed {
                Some(sent)
            } else {
                current.renewed_at
            },
            ..(*current).clone()
        }));
    }

    /// Whether this replica acts on the members it reads: from its second renewal on.
    fn settled(&self) -> bool {
        self.renewals >= 2
    }

    fn failed(&mut self, error: &str, operation: &'static str) {
        self.metrics.store_error(operation);
        if !self.failing {
            tracing::warn!(error, "cannot renew membership in the state store; probing what this replica owned, starting no run");
            self.failing = true;
        }
    }
}

/// When member `id` last renewed, on this replica's monotonic clock: its age by the store's
/// clock taken back from when the read was sent.
fn last_renewal(
    rows: &[cluster::MemberRow],
    id: &str,
    store_now: i64,
    sent: Instant,
) -> Option<Instant> {
    let row = rows.iter().find(|m| m.id == id)?;
    let age = u64::try_from(store_now.saturating_sub(row.renewed_ms)).unwrap_or(0);
    sent.checked_sub(Duration::from_millis(age))
}

/// Writes the checks this replica sees critical (and no longer critical) as they change.
async fn write_critical(
    me: String,
    store: watch::Receiver<Option<Store>>,
    book: CriticalBook,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = book.changed() => {}
            _ = shutdown.changed() => return,
        }
        // Marks that come together are written together.
        tokio::time::sleep(CRITICAL_EVERY).await;
        let Some(store) = store.borrow().clone() else {
            // Nothing to write to yet: the marks wait (one per check at most).
            continue;
        };
        let changes = book.take();
        if changes.is_empty() {
            continue;
        }
        if let Err(e) = store.set_critical(&me, &changes).await {
            metrics.store_error(e.operation());
            tracing::warn!(error = %e, "cannot record critical checks in the state store; retrying");
            book.put_back(changes);
            tokio::time::sleep(Duration::from_secs(1)).await;
            book.nudge();
        }
    }
}

/// Fills the state task with the recent results of checks that arrived at a handover, so
/// their history, trend and predictions go on from what the replica before wrote. One task
/// for the replica's life, fed each handover's arrivals: a burst of membership changes (three
/// replicas starting together) queues its names instead of starting overlapping loads, and a
/// check that has left again by the time its turn comes is skipped. Loads go in chunks, so a
/// large handover never holds all its rows at once.
pub(super) struct ArrivalLoader {
    tx: mpsc::UnboundedSender<Arrivals>,
}

/// One handover's arrivals, and who owns what after it.
struct Arrivals {
    names: Vec<Arc<str>>,
    since_ms: i64,
    owner: Arc<dyn Ownership>,
}

impl ArrivalLoader {
    /// Starts the loading task; it ends when the loader is dropped (after the chunk it is on).
    pub(super) fn start(
        store: watch::Receiver<Option<Store>>,
        per_check: usize,
        state: StateHandle,
        metrics: Arc<Metrics>,
    ) -> ArrivalLoader {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(
            load_arrivals(rx, store, per_check, state, metrics)
                .instrument(tracing::info_span!("handover_history")),
        );
        ArrivalLoader { tx }
    }

    /// Queues the history of `names`, results since `since_ms`; `owner` is the ownership now.
    pub(super) fn load(&self, names: Vec<Arc<str>>, since_ms: i64, owner: Arc<dyn Ownership>) {
        if !names.is_empty() {
            let _ = self.tx.send(Arrivals {
                names,
                since_ms,
                owner,
            });
        }
    }
}

/// Arrivals are loaded this many checks at a time.
const ARRIVALS_CHUNK: usize = 2048;

async fn load_arrivals(
    mut rx: mpsc::UnboundedReceiver<Arrivals>,
    store: watch::Receiver<Option<Store>>,
    per_check: usize,
    state: StateHandle,
    metrics: Arc<Metrics>,
) {
    let mut queue: std::collections::VecDeque<Arc<str>> = std::collections::VecDeque::new();
    // The oldest `since` of what is queued: a little more history never hurts.
    let mut since_ms = i64::MAX;
    let mut owner: Option<Arc<dyn Ownership>> = None;
    let mut loaded = (0usize, 0usize);
    loop {
        let next = if queue.is_empty() {
            if loaded.0 > 0 {
                tracing::info!(
                    checks = loaded.0,
                    results = loaded.1,
                    "history of checks taken over loaded from the state store"
                );
                loaded = (0, 0);
            }
            match rx.recv().await {
                Some(next) => Some(next),
                None => return,
            }
        } else {
            rx.try_recv().ok()
        };
        if let Some(next) = next {
            queue.extend(next.names);
            since_ms = since_ms.min(next.since_ms);
            owner = Some(next.owner);
            continue;
        }
        let (Some(current), Some(store)) = (owner.as_ref(), store.borrow().clone()) else {
            queue.clear();
            continue;
        };
        let take = queue.len().min(ARRIVALS_CHUNK);
        let names: Vec<String> = queue
            .drain(..take)
            .filter(|name| current.owns(name))
            .map(|name| name.to_string())
            .collect();
        if names.is_empty() {
            continue;
        }
        match store.load_results_of(&names, since_ms, per_check).await {
            Ok(rows) => {
                loaded.0 += names.len();
                loaded.1 += rows.len();
                state.load_history(rows).await;
            }
            Err(e) => {
                metrics.store_error(e.operation());
                tracing::warn!(error = %e, checks = names.len(), "cannot load the history of checks taken over");
            }
        }
        if queue.is_empty() {
            since_ms = i64::MAX;
        }
    }
}
