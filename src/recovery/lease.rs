//! A run's lease in the shared store, and fencing: a replica that cannot renew its lease stops
//! acting before the lease can lapse for anyone else.
//!
//! The timing, all measured from the start of the last successful renewal:
//! - the holder renews every [`HEARTBEAT`] (5 s), sooner after a failed try ([`RETRY`]);
//! - the holder fences itself (kills its running step, starts no other) once [`FENCE_SHARE`] of
//!   the [`LEASE`] passed without a renewal: 10 s;
//! - the lease lapses [`LEASE`] after it: 15 s;
//! - another replica takes the run over only [`TAKEOVER_MARGIN`] after that: 20 s.
//!
//! Clocks: the lease's end is written and compared in the store's clock only (see
//! `Store::clock_ms`), and the holder measures its side on its own monotonic clock from the
//! moment it *sent* the renewal, which is no later than the moment the store wrote it. So the
//! wall clocks of replicas may disagree by any amount; what is assumed is that the store's clock
//! and each replica's monotonic clock run at nearly the same rate (well within the 10 s between
//! fencing and takeover) and that the store's clock is not stepped forward by seconds.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::{sleep, sleep_until, Instant};
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::store::Store;

/// How long a run's lease lasts past its last renewal.
pub const LEASE: Duration = Duration::from_secs(15);
/// How often a live run renews its lease: three chances before it lapses.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// After a failed renewal the next try comes sooner: a short blip costs no fencing.
const RETRY: Duration = Duration::from_secs(1);
/// The share of the lease after which a holder that could not renew stops acting.
pub const FENCE_SHARE: Share = Share { parts: 2, of: 3 };
/// How long past a lapsed lease a replica waits before it takes the run over: the fenced holder
/// has this long, beyond the lease's last third, to have killed its step.
pub const TAKEOVER_MARGIN: Duration = Duration::from_secs(5);

/// A fraction of a duration, exact (no float rounding in the timing).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    pub parts: u32,
    pub of: u32,
}

impl Share {
    pub fn of(self, d: Duration) -> Duration {
        d * self.parts / self.of.max(1)
    }
}

/// What a holder does about its lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    KeepGoing,
    Stop,
}

/// Given the last successful renewal at `renewed` and `now` (both on a monotonic clock): keep
/// going while less than `share` of `lease` has passed, stop from then on.
pub fn verdict(renewed: Instant, now: Instant, lease: Duration, share: Share) -> Verdict {
    if now.saturating_duration_since(renewed) >= share.of(lease) {
        Verdict::Stop
    } else {
        Verdict::KeepGoing
    }
}

/// Why a holder stopped acting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fenced {
    /// No renewal succeeded for this long.
    Unrenewed(Duration),
    /// The store answered that the lease is no longer this run's (it lapsed, or a replica took
    /// the run over).
    Taken,
}

impl Fenced {
    /// The attempt's message.
    pub fn message(self) -> String {
        match self {
            Fenced::Unrenewed(d) => format!(
                "fenced: lost the state store for {}s; step killed",
                d.as_secs_f64().round()
            ),
            Fenced::Taken => "fenced: the run's lease is no longer held; step killed".into(),
        }
    }
}

/// What one renewal try gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    Held,
    Lost,
    Failed(String),
}

/// Renews a run's lease until dropped, independently of how long its current step takes, and
/// says when the run must stop acting.
pub struct LeaseKeeper {
    task: tokio::task::JoinHandle<()>,
    fenced: watch::Receiver<Option<Fenced>>,
}

impl LeaseKeeper {
    /// `renewed` is when the lease was taken: no later than when the store wrote it.
    pub fn start(store: Store, run_id: String, renewed: Instant, metrics: Arc<Metrics>) -> Self {
        let lease_ms = i64::try_from(LEASE.as_millis()).unwrap_or(i64::MAX);
        let run = run_id.clone();
        let renew = move || {
            let (store, run_id, metrics) = (store.clone(), run_id.clone(), metrics.clone());
            async move {
                // Bounded: a renewal stuck on a dead connection must not hold the next one.
                match tokio::time::timeout(HEARTBEAT, store.renew_lease(&run_id, lease_ms)).await {
                    Ok(Ok(true)) => Renewal::Held,
                    Ok(Ok(false)) => Renewal::Lost,
                    Ok(Err(e)) => {
                        metrics.store_error(e.operation());
                        Renewal::Failed(e.to_string())
                    }
                    Err(_) => {
                        metrics.store_error("write");
                        Renewal::Failed(format!("no answer within {}s", HEARTBEAT.as_secs()))
                    }
                }
            }
        };
        Self::with_renewal(run, renewed, renew)
    }

    /// The keeper over any renewal (the store's, or a test's).
    pub fn with_renewal<F, Fut>(run: String, renewed: Instant, renew: F) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Renewal> + Send + 'static,
    {
        let (tx, fenced) = watch::channel(None);
        // Under the run's span (chain, target); the keeper's own lines name the run.
        let span = tracing::info_span!("lease");
        let task = tokio::spawn(keep(run, renewed, renew, tx).instrument(span));
        LeaseKeeper { task, fenced }
    }

    /// Whether the run has had to stop acting.
    pub fn fenced_now(&self) -> Option<Fenced> {
        *self.fenced.borrow()
    }

    /// Resolves once the run has to stop acting; never, while its lease is held.
    pub async fn fenced(&self) -> Fenced {
        let mut rx = self.fenced.clone();
        if let Ok(f) = rx.wait_for(Option::is_some).await {
            if let Some(f) = *f {
                return f;
            }
        }
        // The keeper ended without fencing: only when it was aborted, with its run.
        std::future::pending().await
    }

    /// Runs `work` unless the run is fenced first; then `work` is dropped at once, which kills a
    /// running step's process group (process_group's guard kills on drop).
    pub async fn guard<T>(&self, work: impl Future<Output = T>) -> Result<T, Fenced> {
        tokio::select! {
            biased;
            fenced = self.fenced() => Err(fenced),
            out = work => Ok(out),
        }
    }
}

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn keep<F, Fut>(
    run: String,
    mut renewed: Instant,
    mut renew: F,
    fenced: watch::Sender<Option<Fenced>>,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Renewal>,
{
    let mut next = renewed + HEARTBEAT;
    loop {
        let fence_at = renewed + FENCE_SHARE.of(LEASE);
        let attempt = async {
            sleep_until(next).await;
            let sent = Instant::now();
            (sent, renew().await)
        };
        tokio::select! {
            // A renewal due at the very moment of the fence is too late.
            biased;
            // Woken at the fence itself: that moment is the `now` of the verdict.
            _ = sleep_until(fence_at) => {
                if verdict(renewed, fence_at, LEASE, FENCE_SHARE) == Verdict::Stop {
                    let since = fence_at - renewed;
                    tracing::error!(run = %run, seconds = since.as_secs_f64(), "cannot renew the run's lease: fenced, the running step is killed and no other starts");
                    let _ = fenced.send(Some(Fenced::Unrenewed(since)));
                    return;
                }
            }
            (sent, renewal) = attempt => match renewal {
                Renewal::Held => {
                    renewed = sent;
                    next = sent + HEARTBEAT;
                }
                Renewal::Lost => {
                    tracing::error!(run = %run, "the run's lease is no longer held: fenced, the running step is killed and no other starts");
                    let _ = fenced.send(Some(Fenced::Taken));
                    return;
                }
                Renewal::Failed(error) => {
                    tracing::warn!(run = %run, %error, "cannot renew the run's lease");
                    // From when the renewal was sent: one that failed slowly is retried at
                    // once, while the lease is still worth saving.
                    next = sent + RETRY;
                }
            },
        }
    }
}

/// Pauses between tries to record a fenced run once the store is back: growing, and bounded in
/// number (about four minutes in all), so a store that never returns does not hold the run
/// forever.
const RECORD_BACKOFF: [Duration; 10] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(4),
    Duration::from_secs(8),
    Duration::from_secs(15),
    Duration::from_secs(30),
    Duration::from_secs(30),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(60),
];

/// Tries `write` until it works, with backoff; `false` if it never did.
pub async fn when_store_back<F, Fut, E>(what: &str, mut write: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    for pause in std::iter::once(Duration::ZERO).chain(RECORD_BACKOFF) {
        sleep(pause).await;
        match write().await {
            Ok(()) => return true,
            Err(error) => tracing::debug!(%error, "cannot record {what} yet"),
        }
    }
    tracing::error!("gave up recording {what}: the state store did not come back");
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    #[test]
    fn the_timing_fences_well_before_anyone_takes_over() {
        assert_eq!(FENCE_SHARE.of(LEASE), Duration::from_secs(10));
        assert!(
            HEARTBEAT + RETRY * 4 < FENCE_SHARE.of(LEASE),
            "a renewal and four retries before fencing"
        );
        assert_eq!(LEASE + TAKEOVER_MARGIN, Duration::from_secs(20));
    }

    #[tokio::test(start_paused = true)]
    async fn the_verdict_turns_at_the_share_of_the_lease() {
        let t = Instant::now();
        let lease = Duration::from_secs(15);
        let two_thirds = Share { parts: 2, of: 3 };
        assert_eq!(verdict(t, t, lease, two_thirds), Verdict::KeepGoing);
        let almost = t + Duration::from_millis(9_999);
        assert_eq!(verdict(t, almost, lease, two_thirds), Verdict::KeepGoing);
        let at = t + Duration::from_secs(10);
        assert_eq!(verdict(t, at, lease, two_thirds), Verdict::Stop);
        assert_eq!(
            verdict(t, t + Duration::from_secs(60), lease, two_thirds),
            Verdict::Stop
        );
        // A renewal "after" now (clock read in another order) is no lapse.
        assert_eq!(verdict(at, t, lease, two_thirds), Verdict::KeepGoing);
        let half = Share { parts: 1, of: 2 };
        assert_eq!(
            verdict(t, t + Duration::from_millis(7_500), lease, half),
            Verdict::Stop
        );
        assert_eq!(
            Fenced::Unrenewed(Duration::from_millis(10_004)).message(),
            "fenced: lost the state store for 10s; step killed"
        );
    }

    /// A step that notes when it is dropped (as process_group's guard kills on drop).
    struct Step(Arc<AtomicBool>);
    impl Drop for Step {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_renewal_that_hangs_cancels_the_step_ten_seconds_after_the_last_success() {
        let start = Instant::now();
        let tries = Arc::new(AtomicU32::new(0));
        let counted = tries.clone();
        // Two renewals work (at 5 s and 10 s); from the third on the store never answers.
        let hb = LeaseKeeper::with_renewal("r".into(), start, move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if n < 2 {
                    Renewal::Held
                } else {
                    std::future::pending().await
                }
            }
        });
        let dropped = Arc::new(AtomicBool::new(false));
        let step = Step(dropped.clone());
        let out = hb
            .guard(async move {
                let _step = step;
                sleep(Duration::from_secs(45)).await;
                "finished"
            })
            .await;
        assert_eq!(out, Err(Fenced::Unrenewed(Duration::from_secs(10))));
        assert_eq!(start.elapsed(), Duration::from_secs(20));
        assert!(dropped.load(Ordering::SeqCst), "the step was dropped");
        assert_eq!(
            hb.fenced_now(),
            Some(Fenced::Unrenewed(Duration::from_secs(10)))
        );
        assert_eq!(tries.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_renewals_are_retried_each_second_and_fence_at_ten() {
        let start = Instant::now();
        let tries = Arc::new(AtomicU32::new(0));
        let counted = tries.clone();
        let hb = LeaseKeeper::with_renewal("r".into(), start, move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { Renewal::Failed("connection refused".into()) }
        });
        let f = hb.fenced().await;
        assert_eq!(f, Fenced::Unrenewed(Duration::from_secs(10)));
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        // At 5 s, then every second up to 9 s.
        assert_eq!(tries.load(Ordering::SeqCst), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_blip_shorter_than_the_fence_costs_nothing() {
        let start = Instant::now();
        let tries = Arc::new(AtomicU32::new(0));
        let counted = tries.clone();
        // Fails at 5 s, 6 s, 7 s; works from 8 s on.
        let hb = LeaseKeeper::with_renewal("r".into(), start, move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            async move {
                if (0..3).contains(&n) {
                    Renewal::Failed("reset".into())
                } else {
                    Renewal::Held
                }
            }
        });
        let out = hb.guard(sleep(Duration::from_secs(120))).await;
        assert_eq!(out, Ok(()));
        assert_eq!(hb.fenced_now(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_taken_over_fences_at_once() {
        let start = Instant::now();
        let hb = LeaseKeeper::with_renewal("r".into(), start, || async { Renewal::Lost });
        let out = hb.guard(sleep(Duration::from_secs(45))).await;
        assert_eq!(out, Err(Fenced::Taken));
        assert_eq!(start.elapsed(), HEARTBEAT);
    }

    #[tokio::test(start_paused = true)]
    async fn recording_retries_with_backoff_until_the_store_is_back_and_gives_up() {
        let start = Instant::now();
        let mut left = 3;
        let ok = when_store_back("x", || {
            left -= 1;
            let r = if left > 0 { Err("down") } else { Ok(()) };
            async move { r }
        })
        .await;
        assert!(ok);
        assert_eq!(start.elapsed(), Duration::from_secs(3), "after 1 s and 2 s");
        let start = Instant::now();
        let never = when_store_back("x", || async { Err::<(), _>("down") }).await;
        assert!(!never);
        let total: Duration = RECORD_BACKOFF.iter().sum();
        assert_eq!(start.elapsed(), total);
        assert!(total < Duration::from_secs(300));
    }
}
