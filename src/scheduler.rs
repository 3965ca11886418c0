//! Runs every enabled check on its own interval, each in its own task, so a slow or hanging
//! probe never delays another. Start times are spread by a hash of the name so thousands of
//! checks never fire in the same millisecond.

use std::collections::{hash_map::DefaultHasher, BTreeMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::checks::Prober;
use crate::config::{CheckSpec, Redactor};
use crate::state::Command;

struct Running {
    spec: Arc<CheckSpec>,
    generation: u64,
    probe_now: Arc<Notify>,
    task: Option<JoinHandle<()>>,
}

/// Lets others (recovery verification) ask for a probe right away.
#[derive(Clone, Default)]
pub struct ProbeHandle {
    notifiers: Arc<std::sync::RwLock<BTreeMap<String, Arc<Notify>>>>,
}

impl ProbeHandle {
    /// Asks for a probe of `check` now; false if it is not running (unknown or disabled).
    pub fn probe_now(&self, check: &str) -> bool {
        let notifiers = self.notifiers.read().unwrap_or_else(|p| p.into_inner());
        match notifiers.get(check) {
            Some(n) => {
                n.notify_one();
                true
            }
            None => false,
        }
    }
}

pub struct Scheduler {
    prober: Arc<Prober>,
    probes: ProbeHandle,
    events: mpsc::Sender<Command>,
    redactor: watch::Sender<Redactor>,
    running: BTreeMap<String, Running>,
    next_generation: u64,
}

impl Scheduler {
    pub fn new(prober: Arc<Prober>, events: mpsc::Sender<Command>) -> Self {
        Scheduler {
            prober,
            events,
            redactor: watch::channel(Redactor::default()).0,
            probes: ProbeHandle::default(),
            running: BTreeMap::new(),
            next_generation: 1,
        }
    }

    /// Brings the running set in line with `checks`: unchanged checks keep running undisturbed,
    /// changed ones restart, removed ones stop. Returns each check with its generation, which
    /// tags its outcomes so stale ones from a replaced task can be told apart.
    /// The prober its checks use, shared with whoever probes outside the schedule.
    pub fn prober(&self) -> Arc<Prober> {
        self.prober.clone()
    }

    pub fn apply(
        &mut self,
        checks: &[CheckSpec],
        redactor: Redactor,
    ) -> Vec<(Arc<CheckSpec>, u64)> {
        self.redactor.send_replace(redactor);
        self.prober.retain(checks);
        let window = spread_window(checks.len());
        let mut next = BTreeMap::new();
        let mut applied = Vec::with_capacity(checks.len());
        for spec in checks {
            let running = match self.running.remove(&spec.name) {
                Some(old) if *old.spec == *spec => old,
                old => {
                    if let Some(task) = old.and_then(|o| o.task) {
                        task.abort();
                    }
                    let generation = self.next_generation;
                    self.next_generation += 1;
                    let spec = Arc::new(spec.clone());
                    let probe_now = Arc::new(Notify::new());
                    let task = spec
                        .enabled
                        .then(|| self.start(spec.clone(), generation, probe_now.clone(), window));
                    Running {
                        spec,
                        generation,
                        probe_now,
                        task,
                    }
                }
            };
            applied.push((running.spec.clone(), running.generation));
            next.insert(spec.name.clone(), running);
        }
        for (_, old) in std::mem::take(&mut self.running) {
            if let Some(task) = old.task {
                task.abort();
            }
        }
        self.running = next;
        let notifiers = self
            .running
            .iter()
            .filter(|(_, r)| r.task.is_some())
            .map(|(name, r)| (name.clone(), r.probe_now.clone()))
            .collect();
        *self
            .probes
            .notifiers
            .write()
            .unwrap_or_else(|p| p.into_inner()) = notifiers;
        applied
    }

    pub fn probe_handle(&self) -> ProbeHandle {
        self.probes.clone()
    }

    /// Stops every check task; in-flight probes are dropped (their child processes killed).
    pub fn stop(&mut self) {
        for (_, r) in std::mem::take(&mut self.running) {
            if let Some(task) = r.task {
                task.abort();
            }
        }
    }

    fn start(
        &self,
        spec: Arc<CheckSpec>,
        generation: u64,
        probe_now: Arc<Notify>,
        window: Duration,
    ) -> JoinHandle<()> {
        let prober = self.prober.clone();
        let events = self.events.clone();
        let redactor = self.redactor.subscribe();
        let interval = spec.interval.std().max(Duration::from_millis(1));
        let offset = phase(&spec.name, window.min(interval));
        let span = tracing::info_span!("check", check = %spec.name);
        let name: Arc<str> = Arc::from(spec.name.as_str());
        tokio::spawn(
            async move {
                let mut next = Instant::now() + offset;
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep_until(next) => {}
                        _ = probe_now.notified() => {}
                    }
                    let at = SystemTime::now();
                    let current_redactor = redactor.borrow().clone();
                    // Boxed: the probe future is large, and inline it would sit in every idle
                    // task between probes (tens of kilobytes times thousands of checks).
                    let outcome = Box::pin(prober.probe(&spec, &current_redactor)).await;
                    tracing::debug!(status = %outcome.status, duration = outcome.duration.as_secs_f64(), result = %outcome.message, "probe finished");
                    let event = Command::Outcome {
                        check: name.clone(),
                        generation,
                        at,
                        outcome,
                    };
                    // The queue almost always has room. Waiting for room is boxed for the
                    // same reason as the probe: inline, the command and the send future would
                    // take a few hundred bytes in every idle task.
                    match events.try_send(event) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(event)) => {
                            if Box::pin(events.send(event)).await.is_err() {
                                return;
                            }
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => return,
                    }
                    // Missed ticks are skipped, not made up in a burst.
                    let now = Instant::now();
                    while next <= now {
                        next += interval;
                    }
                }
            }
            .instrument(span),
        )
    }
}

/// First runs spread over up to a second for small configs (results come quickly), and over
/// one millisecond per check for large ones, capped by each check's interval.
fn spread_window(checks: usize) -> Duration {
    Duration::from_millis((checks as u64).max(1000))
}

/// A stable offset within `window` derived from the check's name.
fn phase(name: &str, window: Duration) -> Duration {
    let mut hasher = DefaultHasher::new();
    name.hash(&mut hasher);
    let window_ns = window.as_nanos().max(1) as u64;
    Duration::from_nanos(hasher.finish() % window_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_stable_and_within_window() {
        let w = Duration::from_secs(10);
        assert_eq!(phase("a", w), phase("a", w));
        let phases: Vec<Duration> = (0..1000).map(|i| phase(&format!("check-{i}"), w)).collect();
        assert!(phases.iter().all(|p| *p < w));
        // Spread: no tenth of the window holds more than a fifth of the checks.
        let mut buckets = [0usize; 10];
        for p in &phases {
            buckets[(p.as_secs_f64() / 1.0) as usize] += 1;
        }
        assert!(buckets.iter().all(|b| *b < 200), "{buckets:?}");
    }

    #[test]
    fn spread_grows_with_the_number_of_checks() {
        assert_eq!(spread_window(3), Duration::from_secs(1));
        assert_eq!(spread_window(10_000), Duration::from_secs(10));
    }
}
