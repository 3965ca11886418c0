//! Whether a step fixed it: the check is probed at once after the action and again every
//! 200 ms, whatever its interval, and its results are heard as events from the state task.
//! Any probe that started after the action ended counts, however early its result arrives.
//! Nothing here reads the clock: the action's end comes in as a tokio instant, the deadline is
//! a tokio timeout, so the timing is tested on paused time.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::checks::Prober;
use crate::config::{CheckSpec, Redactor};
use crate::status::Status;

/// One finished probe of a check, after thresholds, as the state task recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probed {
    pub status: Status,
    /// When the probe started (unix ms).
    pub at_ms: i64,
    /// When the probe started, by tokio's clock: compared with the action's end.
    pub started: Instant,
}

/// The probes of one check from the moment of asking (`None` until the first); closed when
/// the check is removed.
pub type ProbeEvents = watch::Receiver<Option<Probed>>;

/// What live verification needs from the scheduler and the state task. Implemented where the
/// process is wired together, so that recovery depends on neither.
pub trait LiveChecks: Send + Sync {
    /// Asks for a probe of `check` now; false when this process does not schedule it.
    fn probe_now(&self, check: &str) -> bool;
    /// Every probe of `check` from now on; `None` when it is not configured here.
    fn probes(&self, check: &str)
        -> Pin<Box<dyn Future<Output = Option<ProbeEvents>> + Send + '_>>;
    /// The check's status now (after thresholds); `None` when it is not configured here.
    fn status(&self, check: &str) -> Pin<Box<dyn Future<Output = Option<Status>> + Send + '_>>;
}

/// How a step's fix is checked.
pub enum Verifier {
    /// In `medic run`: ask the scheduler for prompt probes and hear their results.
    Live {
        checks: Arc<dyn LiveChecks>,
        /// Checks this replica does not schedule (another shard's, with `--cluster.shard`):
        /// verified by probing them directly. Replaced on reload.
        others: watch::Receiver<Arc<DirectChecks>>,
    },
    /// In `medic recover`: probe directly (raw status; no thresholds).
    Direct(DirectChecks),
}

/// Checks probed directly, outside the scheduler: raw status, no thresholds.
pub struct DirectChecks {
    pub prober: Arc<Prober>,
    pub checks: BTreeMap<String, Arc<CheckSpec>>,
    pub redactor: Redactor,
}

/// Time between verification probes: prompt, without hammering the target. A probe still
/// running when the next is due is followed by another at once (the scheduler's rule).
const VERIFY_PAUSE: Duration = Duration::from_millis(200);

impl Verifier {
    /// Ok once `check` is healthy in a probe that started at or after `since` (the action's
    /// end), probing at once and every [`VERIFY_PAUSE`]; Err with the last status seen when
    /// `timeout` passes.
    pub async fn verify(
        &self,
        check: &str,
        since: Instant,
        timeout: Duration,
    ) -> Result<(), String> {
        let mut last = None;
        let verdict = tokio::time::timeout(timeout, self.until_healthy(check, since, &mut last));
        match verdict.await {
            Ok(verdict) => verdict,
            Err(_) => {
                Err(last
                    .unwrap_or_else(|| format!("check {check} not probed within verify_timeout")))
            }
        }
    }

    /// Probes until healthy; every verdict short of that is left in `last`.
    async fn until_healthy(
        &self,
        check: &str,
        since: Instant,
        last: &mut Option<String>,
    ) -> Result<(), String> {
        let (checks, others) = match self {
            Verifier::Live { checks, others } => (checks, others),
            Verifier::Direct(direct) => return direct.until_healthy(check, last).await,
        };
        // Heard before the first probe is asked for, so that its result cannot be missed.
        let Some(mut events) = checks.probes(check).await else {
            // Not a check of this replica's shard: probed directly.
            let others = others.borrow().clone();
            if others.checks.contains_key(check) {
                return others.until_healthy(check, last).await;
            }
            return Err(format!("check {check} is not configured"));
        };
        let mut ask = tokio::time::interval(VERIFY_PAUSE);
        ask.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ask.tick() => {
                    if !checks.probe_now(check) {
                        let others = others.borrow().clone();
                        if others.checks.contains_key(check) {
                            return others.until_healthy(check, last).await;
                        }
                        return Err(format!("check {check} is not running"));
                    }
                }
                changed = events.changed() => {
                    if changed.is_err() {
                        return Err(format!("check {check} is not configured"));
                    }
                    let Some(probed) = *events.borrow_and_update() else {
                        continue;
                    };
                    if probed.started < since {
                        continue; // started before the fix was done: says nothing of it
                    }
                    if probed.status == Status::Healthy {
                        return Ok(());
                    }
                    *last = Some(format!(
                        "check {check} still {} after verify_timeout",
                        probed.status
                    ));
                }
            }
        }
    }
}

impl Verifier {
    /// Asks for a probe of `check` soon, where this process schedules it (a block lifted:
    /// the check's next probe decides whether it still needs healing).
    pub fn probe_soon(&self, check: &str) {
        if let Verifier::Live { checks, .. } = self {
            checks.probe_now(check);
        }
    }

    /// Whether `check` is healthy now: its status in the state task, or one probe where this
    /// process does not schedule it. Asked between steps, so that no later step runs on a
    /// subject that is healthy again.
    pub async fn healthy_now(&self, check: &str) -> bool {
        let others = match self {
            Verifier::Live { checks, others } => match checks.status(check).await {
                Some(status) => return status == Status::Healthy,
                None => others.borrow().clone(),
            },
            Verifier::Direct(direct) => return direct.healthy_once(check).await,
        };
        others.healthy_once(check).await
    }
}

impl DirectChecks {
    async fn healthy_once(&self, check: &str) -> bool {
        match self.checks.get(check) {
            Some(spec) => self.prober.probe(spec, &self.redactor).await.status == Status::Healthy,
            None => false,
        }
    }

    async fn until_healthy(&self, check: &str, last: &mut Option<String>) -> Result<(), String> {
        let spec = self
            .checks
            .get(check)
            .ok_or_else(|| format!("check {check} is not configured"))?;
        loop {
            let outcome = self.prober.probe(spec, &self.redactor).await;
            if outcome.status == Status::Healthy {
                return Ok(());
            }
            *last = Some(format!(
                "check {check} still {}: {}",
                outcome.status, outcome.message
            ));
            tokio::time::sleep(VERIFY_PAUSE).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use super::*;

    /// A scheduler and state task in miniature, on paused time: every asked-for probe takes
    /// `probe_takes` and finds the target healthy from `healthy_from` on. Scheduled probes
    /// (the check's own interval) never come: the interval is far longer than any timeout.
    struct Fake {
        asked: AtomicUsize,
        events: Mutex<Option<watch::Sender<Option<Probed>>>>,
        scheduled: bool,
        healthy_from: Option<Instant>,
        probe_takes: Duration,
    }

    impl Fake {
        fn new(scheduled: bool, healthy_from: Option<Instant>, probe_takes: Duration) -> Arc<Fake> {
            Arc::new(Fake {
                asked: AtomicUsize::new(0),
                events: Mutex::new(None),
                scheduled,
                healthy_from,
                probe_takes,
            })
        }

        fn send(&self, status: Status, started: Instant) {
            if let Some(tx) = self.events.lock().unwrap().as_ref() {
                tx.send_replace(Some(Probed {
                    status,
                    at_ms: 0,
                    started,
                }));
            }
        }
    }

    /// Answers each probe_now with a probe of the fake target, as the scheduler would.
    struct Live(Arc<Fake>);

    impl LiveChecks for Live {
        fn probe_now(&self, _check: &str) -> bool {
            let fake = self.0.clone();
            fake.asked.fetch_add(1, Ordering::SeqCst);
            if fake.scheduled {
                tokio::spawn(async move {
                    let started = Instant::now();
                    tokio::time::sleep(fake.probe_takes).await;
                    let healthy = fake.healthy_from.is_some_and(|at| started >= at);
                    let status = if healthy {
                        Status::Healthy
                    } else {
                        Status::Critical
                    };
                    fake.send(status, started);
                });
            }
            self.0.scheduled
        }

        fn probes(
            &self,
            check: &str,
        ) -> Pin<Box<dyn Future<Output = Option<ProbeEvents>> + Send + '_>> {
            let known = check == "web";
            Box::pin(async move {
                if !known {
                    return None;
                }
                let (tx, rx) = watch::channel(None);
                *self.0.events.lock().unwrap() = Some(tx);
                Some(rx)
            })
        }

        fn status(
            &self,
            _check: &str,
        ) -> Pin<Box<dyn Future<Output = Option<Status>> + Send + '_>> {
            Box::pin(async { None })
        }
    }

    fn live(fake: &Arc<Fake>) -> Verifier {
        let prober = Arc::new(Prober::new().expect("prober"));
        let (_tx, others) = watch::channel(Arc::new(DirectChecks {
            prober,
            checks: BTreeMap::new(),
            redactor: Redactor::default(),
        }));
        Verifier::Live {
            checks: Arc::new(Live(fake.clone())),
            others,
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn a_fix_is_seen_at_once_whatever_the_interval() {
        // The target is healthy the moment the action ends; its probe answers in 8 ms; the
        // check's own interval (never reached here) is far longer than verify_timeout.
        let now = Instant::now();
        let fake = Fake::new(true, Some(now), 8 * MS);
        let started = Instant::now();
        let verdict = live(&fake).verify("web", now, Duration::from_secs(5)).await;
        assert_eq!(verdict, Ok(()));
        assert_eq!(
            started.elapsed(),
            8 * MS,
            "verified by the first prompt probe"
        );
        assert_eq!(fake.asked.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_fix_that_lands_later_is_seen_by_a_reprobe_every_200ms() {
        // Healthy half a second after the action: re-probes every 200 ms find it by 600 ms.
        let now = Instant::now();
        let fake = Fake::new(true, Some(now + 500 * MS), 8 * MS);
        let started = Instant::now();
        let verdict = live(&fake).verify("web", now, Duration::from_secs(5)).await;
        assert_eq!(verdict, Ok(()));
        assert_eq!(started.elapsed(), 608 * MS);
        assert_eq!(
            fake.asked.load(Ordering::SeqCst),
            4,
            "at 0, 200, 400 and 600 ms"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_probe_that_started_before_the_action_ended_says_nothing() {
        let fake = Fake::new(true, None, MS);
        let verifier = live(&fake);
        let before = Instant::now();
        tokio::time::advance(10 * MS).await;
        let action_end = Instant::now();
        let answer = async {
            tokio::task::yield_now().await;
            // A healthy result from a probe that began before the fix was done.
            fake.send(Status::Healthy, before);
        };
        let (verdict, ()) = tokio::join!(
            verifier.verify("web", action_end, Duration::from_millis(300)),
            answer
        );
        assert_eq!(
            verdict,
            Err("check web still critical after verify_timeout".to_string())
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_result_from_the_same_instant_as_the_actions_end_counts() {
        let action_end = Instant::now();
        // The prompt probe hangs; a result stamped with the action's very instant arrives.
        let scheduled = Fake::new(true, None, Duration::from_secs(60));
        let verifier = live(&scheduled);
        let answer = async {
            tokio::task::yield_now().await;
            scheduled.send(Status::Healthy, action_end);
        };
        let (verdict, ()) = tokio::join!(
            verifier.verify("web", action_end, Duration::from_secs(1)),
            answer
        );
        assert_eq!(verdict, Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn still_critical_at_the_deadline_says_so_after_probing_every_200ms() {
        let fake = Fake::new(true, None, 10 * MS);
        let started = Instant::now();
        let verdict = live(&fake)
            .verify("web", started, Duration::from_secs(2))
            .await;
        assert_eq!(
            verdict,
            Err("check web still critical after verify_timeout".to_string())
        );
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        let asked = fake.asked.load(Ordering::SeqCst);
        // At 0, 200, …, 1800 ms, and at 2000 ms when that tick beats the deadline.
        assert!((10..=11).contains(&asked), "asked {asked} times");
    }

    #[tokio::test(start_paused = true)]
    async fn never_probed_and_unknown_checks() {
        // Probes that never answer within the timeout (a hanging target).
        let fake = Fake::new(true, None, Duration::from_secs(60));
        let verifier = live(&fake);
        let now = Instant::now();
        assert_eq!(
            verifier.verify("web", now, Duration::from_secs(1)).await,
            Err("check web not probed within verify_timeout".to_string())
        );
        assert_eq!(
            verifier.verify("db", now, Duration::from_secs(1)).await,
            Err("check db is not configured".to_string())
        );
        let unscheduled = Fake::new(false, None, MS);
        assert_eq!(
            live(&unscheduled)
                .verify("web", now, Duration::from_secs(1))
                .await,
            Err("check web is not running".to_string())
        );
    }
}
