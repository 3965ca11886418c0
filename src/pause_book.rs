//! The pauses in force, as this replica knows them: what the recovery manager asks before it
//! starts a run. The API updates it right after each store write; a background task re-reads
//! the store every [`REFRESH_EVERY`], so pauses made on another replica, or before a restart,
//! hold here too, and pauses that ran out leave. The store stays the truth; this is its copy
//! in memory, so deciding a hold never waits for a query.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Mutex};
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::pause::{paused, Pause};
use crate::store::{Store, StoreError};
use crate::timefmt::now_ms;

/// How often the book re-reads the store.
pub const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// Cheap to clone: every clone is the same book.
#[derive(Clone)]
pub struct PauseBook {
    inner: Arc<Inner>,
}

struct Inner {
    active: watch::Sender<Arc<Vec<Pause>>>,
    metrics: Arc<Metrics>,
    /// Held across a store write and the book's update, and across a refresh's read and its
    /// update, so a refresh that read before a write cannot put back what the write changed.
    writing: Mutex<()>,
    /// True once the store's pauses were read: until then nobody knows what is paused, and
    /// the recovery manager starts nothing (a pause made before a restart must hold from the
    /// first second after it).
    loaded: watch::Sender<bool>,
}

impl PauseBook {
    pub fn new(metrics: Arc<Metrics>) -> PauseBook {
        metrics.recovery_pauses_active(0);
        PauseBook {
            inner: Arc::new(Inner {
                active: watch::Sender::new(Arc::new(Vec::new())),
                metrics,
                writing: Mutex::new(()),
                loaded: watch::Sender::new(false),
            }),
        }
    }

    /// Whether an active pause holds a run with these labels at `now_ms`.
    pub fn paused(&self, labels: &BTreeMap<String, String>, now_ms: i64) -> bool {
        paused(&self.inner.active.borrow(), labels, now_ms)
    }

    /// The pauses as last read or written, oldest first.
    pub fn active(&self) -> Vec<Pause> {
        self.inner.active.borrow().as_ref().clone()
    }

    /// Sees every change of the book (`changed().await`): a pause made, ended, run out, or
    /// learned from the store. The manager waits on it to release held triggers.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Vec<Pause>>> {
        self.inner.active.subscribe()
    }

    /// Waits until the store's pauses have been read once.
    pub async fn wait_loaded(&self) {
        let mut loaded = self.inner.loaded.subscribe();
        let _ = loaded.wait_for(|l| *l).await;
    }

    /// Writes a new pause to the store, then to the book.
    pub async fn create(&self, store: &Store, pause: Pause) -> Result<(), StoreError> {
        let _writing = self.inner.writing.lock().await;
        store.create_pause(&pause).await?;
        self.update(|list| list.push(pause));
        Ok(())
    }

    /// Ends a pause in the store, then in the book. `false` when no active pause has that id.
    pub async fn end(&self, store: &Store, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let _writing = self.inner.writing.lock().await;
        let ended = store.end_pause(id, now_ms).await?;
        self.update(|list| list.retain(|p| p.id != id));
        Ok(ended)
    }

    /// Replaces the book with what the store holds now.
    pub async fn refresh(&self, store: &Store, now_ms: i64) -> Result<(), StoreError> {
        let _writing = self.inner.writing.lock().await;
        let fresh = store.active_pauses(now_ms).await?;
        self.update(|list| *list = fresh);
        self.inner.loaded.send_replace(true);
        Ok(())
    }

    /// Applies `change`; subscribers hear of it only when the list is different.
    fn update(&self, change: impl FnOnce(&mut Vec<Pause>)) {
        let mut count = 0;
        let mut earliest = None;
        self.inner.active.send_if_modified(|current| {
            let mut next = current.as_ref().clone();
            change(&mut next);
            count = next.len();
            earliest = next.iter().map(|p| p.ends_ms).min();
            if next == **current {
                return false;
            }
            *current = Arc::new(next);
            true
        });
        self.inner.metrics.recovery_pauses_active(count);
        self.inner.metrics.pause_earliest_end(earliest);
    }

    /// Re-reads the store every [`REFRESH_EVERY`] and as soon as it (re)opens, until shutdown.
    /// A failed read keeps the pauses already known: a store outage must not lift a pause.
    pub fn spawn_refresher(
        &self,
        mut store: watch::Receiver<Option<Store>>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        let book = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REFRESH_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let current = store.borrow_and_update().clone();
                if let Some(current) = current {
                    if let Err(e) = book.refresh(&current, now_ms()).await {
                        book.inner.metrics.store_error(e.operation());
                        tracing::warn!(error = %e, "cannot read pauses from the state store; keeping the known ones");
                    }
                }
                tokio::select! {
                    _ = tick.tick() => {}
                    changed = store.changed() => if changed.is_err() { return },
                    _ = shutdown.changed() => return,
                }
            }
        }
        .instrument(tracing::info_span!("pause_refresher")))
    }
}

/// A pause id: 16 hex digits that two replicas making pauses at once do not share.
pub fn new_pause_id() -> String {
    crate::unique_id::unique_hex(now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::pause::PauseRequest;

    fn pause(id: &str, matcher: &str, now: i64) -> Pause {
        PauseRequest::parse(&[matcher.to_string()], "1h", "deploy")
            .unwrap()
            .into_pause(id.into(), now)
    }

    fn labels(chain: &str) -> BTreeMap<String, String> {
        [("chain".to_string(), chain.to_string())]
            .into_iter()
            .collect()
    }

    #[tokio::test]
    async fn the_book_follows_writes_and_the_store_and_says_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let url = Secret::new(format!("sqlite://{}/m.db", dir.path().display()));
        let store = Store::open(&url).await.unwrap();
        let metrics = Arc::new(Metrics::new());
        let book = PauseBook::new(metrics.clone());
        let mut changes = book.subscribe();
        let now = now_ms();

        book.create(&store, pause("a", r#"chain="web""#, now))
            .await
            .unwrap();
        assert!(changes.has_changed().unwrap());
        changes.borrow_and_update();
        assert!(book.paused(&labels("web"), now + 1));
        assert!(!book.paused(&labels("db"), now + 1));

        // Another replica's pause arrives with a refresh; a refresh with nothing new is quiet.
        let other = Store::open(&url).await.unwrap();
        other
            .create_pause(&pause("b", r#"chain="db""#, now))
            .await
            .unwrap();
        book.refresh(&store, now + 1).await.unwrap();
        assert!(changes.has_changed().unwrap());
        changes.borrow_and_update();
        assert!(book.paused(&labels("db"), now + 1));
        assert_eq!(book.active().len(), 2);
        book.refresh(&store, now + 2).await.unwrap();
        assert!(!changes.has_changed().unwrap(), "nothing changed");
        assert!(metrics
            .encode(crate::metrics::Format::PrometheusText)
            .contains("medic_recovery_pauses_active 2"));

        assert!(book.end(&store, "a", now + 3).await.unwrap());
        assert!(!book.end(&store, "a", now + 4).await.unwrap());
        assert!(changes.has_changed().unwrap());
        assert!(!book.paused(&labels("web"), now + 5));
        assert!(metrics
            .encode(crate::metrics::Format::PrometheusText)
            .contains("medic_recovery_pauses_active 1"));
    }
}
