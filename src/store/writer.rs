//! The batched writer: check results reach the store through a bounded queue and are written
//! one transaction per batch, off the probe path. While the store is down the writer keeps a
//! bounded backlog, counts errors, retries with backoff and writes the backlog when it is back.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::Instrument;

use super::{Backend, ResultRow, Store};
use crate::metrics::Metrics;

/// Results held while the store is unreachable; past this the oldest are dropped (and counted).
pub const MAX_BACKLOG: usize = 100_000;
/// Rows per transaction.
const BATCH: usize = 2000;
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// A PostgreSQL server is not hammered while it is down.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A local SQLite file is cheap to retry: once a full disk has room again, the backlog should
/// be on it within seconds, not half a minute.
const MAX_BACKOFF_SQLITE: Duration = Duration::from_secs(2);

/// The wait before the next write after one more failure.
fn next_backoff(current: Duration, backend: Backend) -> Duration {
    let cap = match backend {
        Backend::Sqlite => MAX_BACKOFF_SQLITE,
        Backend::Postgres => MAX_BACKOFF,
    };
    (current * 2).min(cap)
}
/// At shutdown, how long the last flush may take.
const FINAL_FLUSH: Duration = Duration::from_secs(5);

/// Where the state task sends results; never blocks.
#[derive(Clone)]
pub struct WriterHandle {
    tx: mpsc::Sender<ResultRow>,
    metrics: Arc<Metrics>,
}

impl WriterHandle {
    pub fn submit(&self, row: ResultRow) {
        if self.tx.try_send(row).is_err() {
            self.metrics.store_results_dropped(1);
        }
    }
}

/// Starts the writer. It writes once `store` holds a store, and ends (after a last flush) when
/// every [`WriterHandle`] is gone.
pub fn spawn_writer(
    store: watch::Receiver<Option<Store>>,
    metrics: Arc<Metrics>,
) -> (WriterHandle, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(16_384);
    let task = tokio::spawn(
        run(rx, store, metrics.clone()).instrument(tracing::info_span!("store_writer")),
    );
    (WriterHandle { tx, metrics }, task)
}

async fn run(
    mut rx: mpsc::Receiver<ResultRow>,
    mut store: watch::Receiver<Option<Store>>,
    metrics: Arc<Metrics>,
) {
    let mut backlog: VecDeque<ResultRow> = VecDeque::new();
    let mut incoming = Vec::with_capacity(BATCH);
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut backoff = FLUSH_EVERY;
    let mut retry_at = Instant::now();
    let mut failing = false;
    loop {
        tokio::select! {
            n = rx.recv_many(&mut incoming, BATCH) => {
                if n == 0 {
                    break;
                }
                let overflow = (backlog.len() + incoming.len()).saturating_sub(MAX_BACKLOG);
                if overflow > 0 {
                    // The oldest results are the least useful; they go first.
                    let from_backlog = overflow.min(backlog.len());
                    backlog.drain(..from_backlog);
                    incoming.drain(..overflow - from_backlog);
                    metrics.store_results_dropped(overflow as u64);
                }
                backlog.extend(incoming.drain(..));
                metrics.store_backlog(backlog.len());
                continue;
            }
            _ = tick.tick() => {}
            changed = store.changed() => {
                if changed.is_err() {
                    break;
                }
                retry_at = Instant::now();
            }
        }
        if backlog.is_empty() || Instant::now() < retry_at {
            continue;
        }
        let Some(current) = store.borrow().clone() else {
            continue;
        };
        let before = backlog.len();
        match flush(&current, &mut backlog, &metrics).await {
            // `flush` succeeds only once every row it held is in a committed transaction, on a
            // connection with no error behind it: only then is the claim below true.
            Ok(()) => {
                if failing {
                    tracing::info!(
                        written = before,
                        "state store writes recovered; backlog written"
                    );
                    failing = false;
                }
                backoff = FLUSH_EVERY;
            }
            Err(e) => {
                metrics.store_error(e.operation());
                if !failing {
                    tracing::warn!(error = %e, backlog = backlog.len(), "state store write failed; keeping results and retrying");
                    failing = true;
                }
                retry_at = Instant::now() + backoff;
                backoff = next_backoff(backoff, current.backend());
            }
        }
        metrics.store_backlog(backlog.len());
    }
    // Shutdown: one last attempt, bounded in time.
    while let Ok(row) = rx.try_recv() {
        backlog.push_back(row);
    }
    let current = store.borrow().clone();
    match current {
        Some(current) => {
            match tokio::time::timeout(FINAL_FLUSH, flush(&current, &mut backlog, &metrics)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    metrics.store_error(e.operation());
                    tracing::warn!(error = %e, lost = backlog.len(), "final state store write failed");
                }
                Err(_) => tracing::warn!(lost = backlog.len(), "final state store write timed out"),
            }
        }
        None if !backlog.is_empty() => {
            tracing::warn!(
                lost = backlog.len(),
                "no state store open at shutdown; results not written"
            );
        }
        None => {}
    }
    // What never reached the store is counted as dropped, like the backlog's overflow.
    metrics.store_results_dropped(backlog.len() as u64);
    metrics.store_backlog(backlog.len());
}

/// Writes the backlog front to back in batches; what was written leaves the backlog.
async fn flush(
    store: &Store,
    backlog: &mut VecDeque<ResultRow>,
    metrics: &Metrics,
) -> Result<(), super::StoreError> {
    while !backlog.is_empty() {
        let n = backlog.len().min(BATCH);
        // Written straight from the ring: rows leave it only once the transaction committed.
        store
            .insert_results(&backlog.make_contiguous()[..n])
            .await?;
        backlog.drain(..n);
        metrics.store_results_written(n);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_cap_that_is_short_for_a_local_file() {
        let mut b = FLUSH_EVERY;
        for _ in 0..20 {
            b = next_backoff(b, Backend::Sqlite);
        }
        assert_eq!(b, MAX_BACKOFF_SQLITE);
        assert_eq!(
            next_backoff(FLUSH_EVERY, Backend::Sqlite),
            Duration::from_millis(400)
        );
        let mut b = FLUSH_EVERY;
        for _ in 0..20 {
            b = next_backoff(b, Backend::Postgres);
        }
        assert_eq!(b, MAX_BACKOFF);
    }
}
