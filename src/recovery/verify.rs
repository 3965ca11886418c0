//! Whether a step fixed it: the check is probed promptly after the action and its next
//! results are awaited as events from the state task. Nothing polls, and nothing here reads
//! the clock: the action's end comes in as `since_ms`, the deadline is a tokio timeout.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::checks::Prober;
use crate::config::{CheckSpec, Redactor};
use crate::status::Status;

/// One finished probe of a check, after thresholds, as the state task recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probed {
    pub status: Status,
    /// When the probe ran (unix ms).
    pub at_ms: i64,
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
    pub checks: BTreeMap<String, CheckSpec>,
    pub redactor: Redactor,
}

/// Pause between verification probes: prompt, without hammering the target.
const VERIFY_PAUSE: Duration = Duration::from_millis(200);

impl Verifier {
    /// Ok once `check` is healthy in a probe that ran after `since_ms` (the action's end),
    /// probing promptly; Err with the last status seen when `timeout` passes.
    pub async fn verify(
        &self,
        check: &str,
        since_ms: i64,
        timeout: Duration,
    ) -> Result<(), String> {
        let mut last = None;
        let verdict = tokio::time::timeout(timeout, self.until_healthy(check, since_ms, &mut last));
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
        mut since_ms: i64,
        last: &mut Option<String>,
    ) -> Result<(), String> {
        let (checks, others) = match self {
            Verifier::Live { checks, others } => (checks, others),
            Verifier::Direct(direct) => return direct.until_healthy(check, last).await,
        };
        // Heard before the probe is asked for, so that its result cannot be missed.
        let mut events = checks.probes(check).await;
        loop {
            if !checks.probe_now(check) {
                let others = others.borrow().clone();
                if others.checks.contains_key(check) {
                    return others.until_healthy(check, last).await;
                }
                return Err(format!("check {check} is not running"));
            }
            let Some(events) = events.as_mut() else {
                return Err(format!("check {check} is not configured"));
            };
            let probed = loop {
                if events.changed().await.is_err() {
                    return Err(format!("check {check} is not configured"));
                }
                match *events.borrow_and_update() {
                    Some(p) if p.at_ms > since_ms => break p,
                    _ => {}
                }
            };
            if probed.status == Status::Healthy {
                return Ok(());
            }
            since_ms = probed.at_ms;
            *last = Some(format!(
                "check {check} still {} after verify_timeout",
                probed.status
            ));
            tokio::time::sleep(VERIFY_PAUSE).await;
        }
    }
}

impl DirectChecks {
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

    /// A scheduler and state task in miniature: each asked-for probe is answered by the test.
    struct Fake {
        asked: AtomicUsize,
        events: Mutex<Option<watch::Sender<Option<Probed>>>>,
        scheduled: bool,
    }

    impl Fake {
        fn new(scheduled: bool) -> Arc<Fake> {
            Arc::new(Fake {
                asked: AtomicUsize::new(0),
                events: Mutex::new(None),
                scheduled,
            })
        }

        fn answer(&self, status: Status, at_ms: i64) {
            if let Some(tx) = self.events.lock().unwrap().as_ref() {
                tx.send_replace(Some(Probed { status, at_ms }));
            }
        }
    }

    impl LiveChecks for Fake {
        fn probe_now(&self, _check: &str) -> bool {
            self.asked.fetch_add(1, Ordering::SeqCst);
            self.scheduled
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
                *self.events.lock().unwrap() = Some(tx);
                Some(rx)
            })
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
            checks: fake.clone(),
            others,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn healthy_probe_after_the_action_verifies() {
        let fake = Fake::new(true);
        let verifier = live(&fake);
        let answer = async {
            tokio::task::yield_now().await;
            // A probe from before the action says nothing; the next one does.
            fake.answer(Status::Healthy, 999);
            tokio::time::sleep(Duration::from_millis(50)).await;
            fake.answer(Status::Healthy, 1001);
        };
        let (verdict, ()) =
            tokio::join!(verifier.verify("web", 1000, Duration::from_secs(5)), answer);
        assert_eq!(verdict, Ok(()));
        assert_eq!(fake.asked.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn still_critical_at_the_deadline_says_so() {
        let fake = Fake::new(true);
        let verifier = live(&fake);
        let answer = async {
            for i in 0..100 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                fake.answer(Status::Critical, 2000 + i);
            }
        };
        let started = tokio::time::Instant::now();
        let verdict = tokio::select! {
            v = verifier.verify("web", 1000, Duration::from_secs(2)) => v,
            () = answer => panic!("verification outlived its timeout"),
        };
        assert_eq!(
            verdict,
            Err("check web still critical after verify_timeout".to_string())
        );
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        // Asked again after each result, a pause apart.
        assert!(fake.asked.load(Ordering::SeqCst) > 3);
    }

    #[tokio::test(start_paused = true)]
    async fn never_probed_and_unknown_checks() {
        let fake = Fake::new(true);
        let verifier = live(&fake);
        assert_eq!(
            verifier.verify("web", 0, Duration::from_secs(1)).await,
            Err("check web not probed within verify_timeout".to_string())
        );
        assert_eq!(
            verifier.verify("db", 0, Duration::from_secs(1)).await,
            Err("check db is not configured".to_string())
        );
        let unscheduled = Fake::new(false);
        assert_eq!(
            live(&unscheduled)
                .verify("web", 0, Duration::from_secs(1))
                .await,
            Err("check web is not running".to_string())
        );
    }
}
