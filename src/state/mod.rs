//! The state task: the single owner of every check's health, history and trend. Probes send
//! their outcomes here; HTTP handlers ask questions here; nothing else holds domain state.

mod blocking;

pub use blocking::BlockedMap;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use crate::check_trend::{StatusCounts, Trend};
use crate::checks::{FailureReason, Outcome};
use crate::cluster::CriticalBook;
use crate::config::{CheckSpec, PredictionSpec};
use crate::dependencies::Graph;
use crate::metrics::Metrics;
use crate::predict::{Prediction, Predictor};
use crate::recovery::manager::{Event, RecoveryHandle};
use crate::recovery::trigger::{CheckIncident, Trigger};
use crate::recovery::verify::{ProbeEvents, Probed};
use crate::result_ring::{duration_micros, ResultRing};
use crate::status::Status;
use crate::store::{ResultRow, WriterHandle};
use crate::thresholds::{HealthState, Transition};
use crate::timefmt::{rfc3339_ms, unix_ms};
use crate::vocabulary::Subject;

/// Everything the state task can be told or asked.
#[derive(Debug)]
pub enum StateRequest {
    Outcome {
        check: Arc<str>,
        generation: u64,
        /// When the probe started, by the wall clock (records) and tokio's (verification).
        at: SystemTime,
        started: tokio::time::Instant,
        /// Asked for out of schedule (recovery verification, a heartbeat's ping): a critical
        /// result still asks for a run, but its coalescing is not a trigger worth counting.
        asked: bool,
        outcome: Outcome,
    },
    /// Replaces the set of checks and predictions; unchanged ones keep their history.
    Apply {
        checks: Vec<(Arc<CheckSpec>, u64)>,
        predictions: Vec<PredictionSpec>,
        history_size: usize,
        /// Who depends on whom (`depends_on`), for the config's every check.
        dependencies: Graph,
        /// Answered with the checks that arrived (new here, or changed): their history may be
        /// in the store, written by the replica that owned them before.
        done: oneshot::Sender<Vec<Arc<str>>>,
    },
    /// Every prediction's latest result.
    Predictions {
        reply: oneshot::Sender<Vec<Prediction>>,
    },
    /// Results from before this process started, oldest first (from the state store).
    LoadHistory { rows: Vec<ResultRow> },
    /// The latest statuses of dependencies another replica probes, from the state store.
    RemoteStatuses(BTreeMap<String, Status>),
    Health {
        reply: oneshot::Sender<HealthReport>,
    },
    Check {
        name: String,
        reply: oneshot::Sender<Option<CheckDetail>>,
    },
    /// What the status page shows: the named checks' details (unknown names left out) and
    /// every prediction with its recent samples. One round trip for a page of checks.
    Page {
        names: Vec<String>,
        reply: oneshot::Sender<PageData>,
    },
    /// A check's status after thresholds and the time of its latest probe.
    Status {
        name: String,
        reply: oneshot::Sender<Option<(Status, Option<i64>)>>,
    },
    /// Every probe of a check from now on, after thresholds (for verification); `None` when
    /// the check is not configured.
    Probes {
        name: String,
        reply: oneshot::Sender<Option<ProbeEvents>>,
    },
}

/// `/api/v1/health`.
#[derive(Debug, Clone)]
pub struct HealthReport {
    pub status: Status,
    pub summary: StatusCounts,
    pub checks: BTreeMap<String, CheckSummary>,
}

#[derive(Debug, Clone)]
pub struct CheckSummary {
    pub status: Status,
    pub kind: &'static str,
    pub enabled: bool,
    pub message: String,
    pub duration_seconds: Option<f64>,
    pub last_run: Option<String>,
    pub consecutive_failures: u32,
    /// The failing checks this one depends on (their roots): no run starts for it meanwhile.
    pub blocked_by: Vec<String>,
    /// Why the check fails: `flapping` when flap detection made it critical, else the reason
    /// of the latest failing probe (`timeout`, `status`, ...; `medic`: medic itself was out of
    /// fds, processes or memory) while the check is critical or unknown; null otherwise.
    pub reason: Option<&'static str>,
}

/// The status page's answer ([`StateRequest::Page`]).
#[derive(Debug, Clone, Default)]
pub struct PageData {
    pub checks: Vec<CheckDetail>,
    /// Each prediction's latest result and its newest samples (unix seconds, value).
    pub predictions: Vec<(Prediction, Vec<(f64, f64)>)>,
}

/// `/api/v1/checks/{name}`.
#[derive(Debug, Clone)]
pub struct CheckDetail {
    pub name: String,
    pub summary: CheckSummary,
    /// The check's labels (a discovered check's: its template's and its target's).
    pub labels: BTreeMap<String, String>,
    /// The template that made it from a discovered target, if one did.
    pub template: Option<String>,
    pub last_status: Option<Status>,
    pub interval_seconds: f64,
    pub timeout_seconds: f64,
    pub metadata: BTreeMap<String, Value>,
    pub trend: Trend,
    pub history: Vec<HistoryItem>,
}

#[derive(Debug, Clone)]
pub struct HistoryItem {
    pub time: String,
    pub status: Status,
    pub duration_seconds: f64,
    pub message: String,
}

struct CheckRecord {
    spec: Arc<CheckSpec>,
    generation: u64,
    health: HealthState,
    /// The history and the trend's samples.
    results: ResultRing,
    last: Option<LastProbe>,
    /// The latest failing probe's reason, while that probe is the latest or the check still
    /// fails.
    failure_reason: Option<FailureReason>,
    /// When the check last turned critical, while it is: the incident a run heals.
    critical_since_ms: Option<i64>,
    /// Whether the critical book was last told this check's latest result is critical.
    told_critical: bool,
}

/// When a probe ran and why: the wall clock for records, tokio's for verification (which
/// counts only probes that started after a step's action ended).
struct ProbeTime {
    at: SystemTime,
    started: tokio::time::Instant,
    asked: bool,
}

struct LastProbe {
    at_ms: i64,
    status: Status,
    duration_seconds: f64,
    message: String,
    /// In key order, as the outcome's map had them. A slice rather than the map: every check
    /// keeps one, and a map's node takes room for eleven entries where a probe has about four.
    metadata: Box<[(String, Value)]>,
}

impl LastProbe {
    /// Takes a newer probe's details, keeping the strings it already holds where they did not
    /// change. The probe's own allocations are short-lived; keeping them instead would leave
    /// thousands of small blocks, replaced every interval, scattered through the heap among
    /// the probes' buffers, and the allocator could hand little of it back.
    fn refresh(
        &mut self,
        at_ms: i64,
        status: Status,
        duration_seconds: f64,
        message: String,
        metadata: BTreeMap<String, Value>,
    ) {
        self.at_ms = at_ms;
        self.status = status;
        self.duration_seconds = duration_seconds;
        if self.message != message {
            self.message = message;
        }
        let same_keys = self.metadata.len() == metadata.len()
            && self
                .metadata
                .iter()
                .zip(&metadata)
                .all(|((a, _), (b, _))| a == b);
        if same_keys {
            for ((_, old), (_, new)) in self.metadata.iter_mut().zip(metadata) {
                if *old != new {
                    *old = new;
                }
            }
        } else {
            self.metadata = metadata.into_iter().collect();
        }
    }
}

impl CheckRecord {
    fn new(spec: Arc<CheckSpec>, generation: u64, history_size: usize) -> Self {
        let results = ResultRing::new(history_size, spec.interval.std().as_millis() as u64);
        CheckRecord {
            spec,
            generation,
            health: HealthState::default(),
            results,
            last: None,
            failure_reason: None,
            critical_since_ms: None,
            told_critical: false,
        }
    }

    fn summary(&self, blocked_by: &[String]) -> CheckSummary {
        CheckSummary {
            status: if self.spec.enabled {
                self.health.status
            } else {
                Status::Unknown
            },
            kind: self.spec.probe.kind(),
            enabled: self.spec.enabled,
            message: match (&self.last, self.spec.enabled) {
                (_, false) => "disabled".to_string(),
                (Some(last), true) => last.message.clone(),
                (None, true) => "not run yet".to_string(),
            },
            duration_seconds: self.last.as_ref().map(|l| l.duration_seconds),
            last_run: self.last.as_ref().map(|l| rfc3339_ms(l.at_ms)),
            consecutive_failures: self.health.consecutive_failures,
            blocked_by: blocked_by.to_vec(),
            reason: self.reason(),
        }
    }
}

impl CheckRecord {
    /// `flapping` when flap detection holds the check critical; else, only while the check
    /// itself is critical or unknown, why its latest failing probe failed (`medic` when medic
    /// itself was short of something): a single failed probe under `failures_before_critical`
    /// is not why anything is down.
    fn reason(&self) -> Option<&'static str> {
        if !self.spec.enabled {
            return None;
        }
        if self.health.flapping {
            return Some("flapping");
        }
        self.failure_reason
            .filter(|_| matches!(self.health.status, Status::Critical | Status::Unknown))
            .map(FailureReason::as_str)
    }
}

impl CheckRecord {
    /// Runs a probe's status through the thresholds, and keeps when the check turned critical.
    fn observe(&mut self, status: Status, at_ms: i64) -> HealthChange {
        let was_flapping = self.health.flapping;
        let transition = self.health.observe(status, self.spec.thresholds());
        if self.health.status != Status::Critical {
            self.critical_since_ms = None;
        } else if self.critical_since_ms.is_none() {
            self.critical_since_ms = Some(at_ms);
        }
        HealthChange {
            transition,
            flapping_changed: was_flapping != self.health.flapping,
        }
    }

    /// Keeps a failing probe's reason, and drops it once the check no longer fails.
    fn note_failure_reason(&mut self, reason: Option<FailureReason>) {
        if reason.is_some() {
            self.failure_reason = reason;
        } else if !self.fails() {
            self.failure_reason = None;
        }
    }

    /// The failure reason the metrics show: only while the check is critical or unknown.
    fn current_failure_reason(&self) -> Option<FailureReason> {
        self.failure_reason.filter(|_| self.fails())
    }

    fn fails(&self) -> bool {
        matches!(self.health.status, Status::Critical | Status::Unknown)
    }

    /// A check its dependents wait for: enabled, and critical or unknown (not probed yet, or
    /// medic cannot tell). A disabled check was switched off on purpose and blocks nothing.
    fn blocks_dependents(&self) -> bool {
        self.spec.enabled && self.fails()
    }

    /// Keeps the probe as the check's latest.
    fn keep_last(
        &mut self,
        at_ms: i64,
        status: Status,
        duration_seconds: f64,
        message: String,
        metadata: BTreeMap<String, Value>,
    ) {
        match &mut self.last {
            Some(last) => last.refresh(at_ms, status, duration_seconds, message, metadata),
            None => {
                self.last = Some(LastProbe {
                    at_ms,
                    status,
                    duration_seconds,
                    message,
                    metadata: metadata.into_iter().collect(),
                })
            }
        }
    }
}

/// The handle others use to talk to the state task.
#[derive(Clone)]
pub struct StateHandle {
    tx: mpsc::Sender<StateRequest>,
    /// The checks a failing dependency blocks now, and their roots.
    blocked: watch::Receiver<Arc<BlockedMap>>,
}

impl StateHandle {
    /// The checks a failing dependency blocks now, with their roots, kept current.
    pub fn blocked(&self) -> watch::Receiver<Arc<BlockedMap>> {
        self.blocked.clone()
    }

    pub fn sender(&self) -> mpsc::Sender<StateRequest> {
        self.tx.clone()
    }

    /// Replaces the checks; returns those that arrived (new or changed).
    pub async fn apply(
        &self,
        checks: Vec<(Arc<CheckSpec>, u64)>,
        predictions: Vec<PredictionSpec>,
        history_size: usize,
        dependencies: Graph,
    ) -> Vec<Arc<str>> {
        let (done, wait) = oneshot::channel();
        let request = StateRequest::Apply {
            checks,
            predictions,
            history_size,
            dependencies,
            done,
        };
        if self.tx.send(request).await.is_ok() {
            wait.await.unwrap_or_default()
        } else {
            Vec::new()
        }
    }

    /// The latest statuses of dependencies another replica probes.
    pub async fn remote_statuses(&self, statuses: BTreeMap<String, Status>) {
        let _ = self.tx.send(StateRequest::RemoteStatuses(statuses)).await;
    }

    pub async fn load_history(&self, rows: Vec<ResultRow>) {
        let _ = self.tx.send(StateRequest::LoadHistory { rows }).await;
    }

    /// Sends the request `make` builds around a reply channel and waits for the answer; `None`
    /// once the state task is gone.
    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> StateRequest) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.tx.send(make(reply)).await.ok()?;
        answer.await.ok()
    }

    pub async fn health(&self) -> Option<HealthReport> {
        self.ask(|reply| StateRequest::Health { reply }).await
    }

    pub async fn predictions(&self) -> Option<Vec<Prediction>> {
        self.ask(|reply| StateRequest::Predictions { reply }).await
    }

    pub async fn status(&self, name: &str) -> Option<(Status, Option<i64>)> {
        let name = name.to_string();
        self.ask(|reply| StateRequest::Status { name, reply })
            .await
            .flatten()
    }

    /// Every probe of `name` from now on; `None` when it is not configured.
    pub async fn probes(&self, name: &str) -> Option<ProbeEvents> {
        let name = name.to_string();
        self.ask(|reply| StateRequest::Probes { name, reply })
            .await
            .flatten()
    }

    pub async fn page(&self, names: Vec<String>) -> Option<PageData> {
        self.ask(|reply| StateRequest::Page { names, reply }).await
    }

    pub async fn check(&self, name: &str) -> Option<CheckDetail> {
        let name = name.to_string();
        self.ask(|reply| StateRequest::Check { name, reply })
            .await
            .flatten()
    }
}

impl crate::am_api::CheckHealth for StateHandle {
    fn is_healthy<'a>(
        &'a self,
        check: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>> {
        Box::pin(async move { matches!(self.status(check).await, Some((Status::Healthy, _))) })
    }
}

/// Starts the state task. It ends when every sender is gone. Results go to `writer`, if any;
/// checks with `recovery:` trigger runs through `recovery`, if any.
pub fn spawn(
    metrics: Arc<Metrics>,
    writer: Option<WriterHandle>,
    recovery: Option<RecoveryHandle>,
    critical: Option<CriticalBook>,
) -> (StateHandle, tokio::task::JoinHandle<()>) {
    // Bounded: a flood of outcomes slows the probes down rather than growing memory.
    let (tx, rx) = mpsc::channel(4096);
    let task = StateTask {
        checks: BTreeMap::new(),
        metrics,
        writer,
        recovery,
        predictors: BTreeMap::new(),
        listeners: BTreeMap::new(),
        blocking: blocking::Blocking::default(),
        critical,
        remote: BTreeMap::new(),
    };
    let blocked = task.blocking.subscribe();
    let handle = tokio::spawn(task.run(rx).instrument(tracing::info_span!("state")));
    (StateHandle { tx, blocked }, handle)
}

struct StateTask {
    checks: BTreeMap<Arc<str>, CheckRecord>,
    metrics: Arc<Metrics>,
    writer: Option<WriterHandle>,
    recovery: Option<RecoveryHandle>,
    /// By prediction name.
    predictors: BTreeMap<String, Predictor>,
    /// Checks a recovery run is verifying: each of their probes is told as it is recorded.
    listeners: BTreeMap<Arc<str>, watch::Sender<Option<Probed>>>,
    /// Which checks a failing dependency blocks.
    blocking: blocking::Blocking,
    /// With `--cluster.shard auto`: tells the store which checks this replica sees critical.
    critical: Option<CriticalBook>,
    /// Dependencies another replica probes: their latest statuses, read from the store.
    remote: BTreeMap<String, Status>,
}

impl StateTask {
    async fn run(mut self, mut rx: mpsc::Receiver<StateRequest>) {
        while let Some(request) = rx.recv().await {
            self.handle(request);
        }
    }

    fn handle(&mut self, request: StateRequest) {
        match request {
            StateRequest::Outcome {
                check,
                generation,
                at,
                started,
                asked,
                outcome,
            } => self.record(
                &check,
                generation,
                ProbeTime { at, started, asked },
                outcome,
            ),
            StateRequest::Apply {
                checks,
                predictions,
                history_size,
                dependencies,
                done,
            } => {
                let arrived = self.apply(checks, history_size);
                let (checks, remote) = (&self.checks, &self.remote);
                let changes = self
                    .blocking
                    .set_graph(dependencies, |c| blocks(checks, remote, c));
                // A check with dependencies exports whether it is blocked, 0 from the start.
                for check in self.blocking.graph().checks_with_dependencies() {
                    if self.checks.contains_key(check) && self.blocking.roots_of(check).is_empty() {
                        self.metrics.set_blocked(check, false);
                    }
                }
                self.blocking_changed(changes);
                // A removed check's listeners hear it close: "not configured".
                let checks = &self.checks;
                self.listeners.retain(|name, _| checks.contains_key(name));
                self.apply_predictions(predictions);
                let _ = done.send(arrived);
            }
            StateRequest::Predictions { reply } => {
                let _ = reply.send(
                    self.predictors
                        .values()
                        .filter_map(|p| p.last().cloned())
                        .collect(),
                );
            }
            StateRequest::RemoteStatuses(statuses) => self.remote_statuses(statuses),
            StateRequest::LoadHistory { rows } => {
                self.load_history(rows);
                self.send_census();
                // Statuses replayed from the store: every dependent is judged again.
                let graph = self.blocking.graph().clone();
                let (checks, remote) = (&self.checks, &self.remote);
                let changes = self
                    .blocking
                    .set_graph(graph, |c| blocks(checks, remote, c));
                self.blocking_changed(changes);
            }
            StateRequest::Health { reply } => {
                let _ = reply.send(self.health());
            }
            StateRequest::Check { name, reply } => {
                let _ = reply.send(self.detail(&name));
            }
            StateRequest::Page { names, reply } => {
                let _ = reply.send(PageData {
                    checks: names.iter().filter_map(|n| self.detail(n)).collect(),
                    predictions: self
                        .predictors
                        .values()
                        .filter_map(|p| p.last().map(|l| (l.clone(), p.series())))
                        .collect(),
                });
            }
            StateRequest::Status { name, reply } => {
                let answer = self
                    .checks
                    .get(name.as_str())
                    .map(|r| (r.health.status, r.last.as_ref().map(|l| l.at_ms)));
                let _ = reply.send(answer);
            }
            StateRequest::Probes { name, reply } => {
                let answer = self.checks.contains_key(name.as_str()).then(|| {
                    let listeners = self
                        .listeners
                        .entry(Arc::from(name.as_str()))
                        .or_insert_with(|| watch::channel(None).0);
                    listeners.subscribe()
                });
                let _ = reply.send(answer);
            }
        }
    }

    /// One probe's outcome, in order: thresholds, verifying runs, the failure reason, the
    /// results ring, metrics and log, recovery, the store, the last probe, predictions.
    fn record(&mut self, check: &str, generation: u64, time: ProbeTime, outcome: Outcome) {
        let Some(record) = self.checks.get_mut(check) else {
            return;
        };
        // An outcome from a probe of a config that has since been replaced says nothing about
        // the check as it is now.
        if record.generation != generation {
            return;
        }
        let at_ms = unix_ms(time.at);
        if let Some(book) = &self.critical {
            let critical = outcome.status == Status::Critical;
            if critical != record.told_critical {
                record.told_critical = critical;
                if let Some((name, _)) = self.checks.get_key_value(check) {
                    book.mark(name, critical, at_ms);
                }
            }
        }
        let Some(record) = self.checks.get_mut(check) else {
            return;
        };
        let blocked_before = record.blocks_dependents();
        let change = record.observe(outcome.status, at_ms);
        let blocks_now = record.blocks_dependents();
        if blocked_before != blocks_now {
            // Routes' `depends_on` wait on a failing dependency (critical or unknown).
            if let Some(recovery) = &self.recovery {
                let _ = recovery.send(Event::Failing {
                    check: check.to_string(),
                    failing: blocks_now,
                });
            }
            // Its dependents are judged first, so recovery hears them blocked before it hears
            // this check critical (the circuit breaker must not count them meanwhile).
            let (checks, remote) = (&self.checks, &self.remote);
            let changes = self
                .blocking
                .failing_changed(check, |c| blocks(checks, remote, c));
            self.blocking_changed(changes);
        }
        let Some(record) = self.checks.get_mut(check) else {
            return;
        };
        tell_listeners(
            &mut self.listeners,
            check,
            record.health.status,
            at_ms,
            &time,
        );
        record.note_failure_reason(outcome.reason);
        self.metrics
            .set_failure_reason(check, record.current_failure_reason());
        // At the results' precision, so the summary and the history's newest entry agree.
        let duration = f64::from(duration_micros(outcome.duration.as_secs_f64())) / 1e6;
        record
            .results
            .push(at_ms, outcome.status, duration, &outcome.message);
        self.metrics.observe_probe(
            check,
            &outcome,
            &record.health,
            change.changed(),
            at_ms as f64 / 1000.0,
        );
        log_status_change(check, record, change, &outcome.message);
        if let Some(recovery) = &self.recovery {
            tell_recovery(recovery, check, record, change, &outcome, at_ms, time.asked);
        }
        if let Some(writer) = &self.writer {
            store_result(writer, check, at_ms, &outcome, duration);
        }
        record.keep_last(
            at_ms,
            outcome.status,
            duration,
            outcome.message,
            outcome.metadata,
        );
        self.predict(check, at_ms, &outcome.measurements, duration);
    }

    /// New statuses of dependencies probed elsewhere: the dependents of those whose failing
    /// changed are judged again.
    fn remote_statuses(&mut self, statuses: BTreeMap<String, Status>) {
        let failing =
            |s: Option<&Status>| s.is_none_or(|s| matches!(s, Status::Critical | Status::Unknown));
        let flipped: Vec<String> = statuses
            .keys()
            .chain(self.remote.keys())
            .filter(|c| failing(statuses.get(*c)) != failing(self.remote.get(*c)))
            .cloned()
            .collect();
        self.remote = statuses;
        for check in flipped {
            if let Some(recovery) = &self.recovery {
                if !self.checks.contains_key(check.as_str()) {
                    let failing = blocks(&self.checks, &self.remote, &check);
                    let _ = recovery.send(Event::Failing {
                        check: check.clone(),
                        failing,
                    });
                }
            }
            let (checks, remote) = (&self.checks, &self.remote);
            let changes = self
                .blocking
                .failing_changed(&check, |c| blocks(checks, remote, c));
            self.blocking_changed(changes);
        }
    }

    /// Dependents blocked, freed or blocked by other roots: exported, logged, and told to
    /// recovery (which holds their runs).
    fn blocking_changed(&self, changes: Vec<blocking::Change>) {
        for change in changes {
            self.metrics
                .set_blocked(&change.check, !change.roots.is_empty());
            if change.roots.is_empty() {
                tracing::info!(check = %change.check, "check no longer blocked by a dependency");
            } else {
                tracing::info!(check = %change.check, blocked_by = %change.roots.join(","), "check blocked by a failing dependency");
            }
            if let Some(recovery) = &self.recovery {
                let _ = recovery.send(Event::Blocked {
                    check: change.check,
                    roots: change.roots,
                });
            }
        }
    }

    /// Replaces the checks (unchanged ones keep their state); returns those that arrived.
    fn apply(&mut self, checks: Vec<(Arc<CheckSpec>, u64)>, history_size: usize) -> Vec<Arc<str>> {
        let mut next = BTreeMap::new();
        let mut arrived = Vec::new();
        for (spec, generation) in checks {
            let name: Arc<str> = Arc::from(spec.name.as_str());
            let record = match self.checks.remove(&name) {
                Some(mut old) if *old.spec == *spec => {
                    old.generation = generation;
                    old.results.resize(history_size);
                    old
                }
                old => {
                    self.metrics.forget_check(&name);
                    self.metrics.set_status(&name, Status::Unknown, false);
                    if spec.template.is_some() {
                        self.metrics.set_check_labels(&name, spec.clone());
                    }
                    arrived.push(name.clone());
                    let mut record = CheckRecord::new(spec, generation, history_size);
                    // A changed check's verdict stands until its next probe says otherwise.
                    record.told_critical = old.is_some_and(|o| o.told_critical);
                    record
                }
            };
            next.insert(name, record);
        }
        for (name, gone) in &self.checks {
            self.metrics.forget_check(name);
            // Another replica probes it now: this one's verdict no longer counts.
            if let (Some(book), true) = (&self.critical, gone.told_critical) {
                book.mark(name, false, unix_ms(SystemTime::now()));
            }
        }
        self.checks = next;
        self.send_census();
        arrived
    }

    /// Tells recovery how many checks are enabled and which are critical: the circuit breaker
    /// and held triggers depend on it.
    fn send_census(&self) {
        let Some(recovery) = &self.recovery else {
            return;
        };
        let enabled = self.checks.values().filter(|r| r.spec.enabled).count();
        let critical = self
            .checks
            .iter()
            .filter(|(_, r)| r.spec.enabled && r.health.status == Status::Critical)
            .map(|(name, _)| name.to_string())
            .collect();
        let passing = self
            .checks
            .keys()
            .map(|name| name.to_string())
            .chain(self.remote.keys().cloned())
            .filter(|name| !blocks(&self.checks, &self.remote, name))
            .collect();
        let _ = recovery.send(Event::Census {
            enabled,
            critical,
            passing,
        });
    }

    /// Merges stored results into checks' history and trend. A check that has not been probed
    /// since the start takes its status from replaying them through its thresholds.
    fn load_history(&mut self, rows: Vec<ResultRow>) {
        let mut by_check: BTreeMap<String, Vec<ResultRow>> = BTreeMap::new();
        for row in rows {
            by_check.entry(row.check.clone()).or_default().push(row);
        }
        for (name, rows) in by_check {
            // Predictions that have seen nothing live yet rebuild their models from the past.
            let mut rebuilt = Vec::new();
            for predictor in self
                .predictors
                .values_mut()
                .filter(|p| p.spec.check == name && p.last().is_none())
            {
                for r in &rows {
                    if let Some(v) = predictor.pick(&r.measurements, r.duration_seconds) {
                        predictor.observe(r.at_ms as f64 / 1000.0, v);
                    }
                }
                rebuilt.extend(predictor.last().cloned());
            }
            for prediction in &rebuilt {
                self.metrics.prediction(prediction);
            }
            let Some(record) = self.checks.get_mut(name.as_str()) else {
                continue;
            };
            if record.last.is_none() && record.spec.enabled {
                let thresholds = record.spec.thresholds();
                for r in &rows {
                    record.health.observe(r.status, thresholds);
                }
                if let Some(newest) = rows.last() {
                    record.last = Some(LastProbe {
                        at_ms: newest.at_ms,
                        status: newest.status,
                        duration_seconds: newest.duration_seconds,
                        message: newest.message.clone(),
                        metadata: Box::default(),
                    });
                }
                self.metrics
                    .set_status(&name, record.health.status, record.health.flapping);
            }
            record.results.merge_older(
                rows.into_iter()
                    .map(|r| (r.at_ms, r.status, r.duration_seconds, r.message)),
            );
        }
    }

    /// Feeds a check's measurements to the predictions that follow them.
    fn predict(
        &mut self,
        check: &str,
        at_ms: i64,
        measurements: &[crate::checks::Measurement],
        duration_seconds: f64,
    ) {
        for predictor in self
            .predictors
            .values_mut()
            .filter(|p| p.spec.check == check)
        {
            if let Some(value) = predictor.pick(measurements, duration_seconds) {
                let prediction = predictor.observe(at_ms as f64 / 1000.0, value);
                self.metrics.prediction(prediction);
            }
        }
    }

    fn apply_predictions(&mut self, specs: Vec<PredictionSpec>) {
        let mut next = BTreeMap::new();
        for spec in specs {
            let predictor = match self.predictors.remove(&spec.name) {
                Some(old) if *old.spec == spec => old,
                old => {
                    if let Some(old) = old {
                        self.metrics.forget_prediction(&old.spec);
                    }
                    Predictor::new(Arc::new(spec))
                }
            };
            next.insert(predictor.spec.name.clone(), predictor);
        }
        for old in self.predictors.values() {
            self.metrics.forget_prediction(&old.spec);
        }
        self.predictors = next;
    }

    fn health(&self) -> HealthReport {
        let mut summary = StatusCounts::default();
        let mut overall = Status::Healthy;
        let mut checks = BTreeMap::new();
        for (name, record) in &self.checks {
            let s = record.summary(self.blocking.roots_of(name));
            summary.add(s.status);
            // A disabled check is switched off on purpose; it must not fail a load balancer.
            if record.spec.enabled {
                overall = overall.worst(s.status);
            }
            checks.insert(name.to_string(), s);
        }
        HealthReport {
            status: overall,
            summary,
            checks,
        }
    }

    fn detail(&self, name: &str) -> Option<CheckDetail> {
        let record = self.checks.get(name)?;
        let now_ms = unix_ms(SystemTime::now());
        Some(CheckDetail {
            name: name.to_string(),
            summary: record.summary(self.blocking.roots_of(name)),
            labels: record.spec.labels.clone(),
            template: record.spec.template.clone(),
            last_status: record.last.as_ref().map(|l| l.status),
            interval_seconds: record.spec.interval.as_secs_f64(),
            timeout_seconds: record.spec.timeout.as_secs_f64(),
            metadata: record
                .last
                .as_ref()
                .map(|l| l.metadata.iter().cloned().collect())
                .unwrap_or_default(),
            trend: record.results.trend(now_ms),
            history: record
                .results
                .recent(usize::MAX)
                .map(|e| HistoryItem {
                    time: rfc3339_ms(e.at_ms),
                    status: e.status,
                    duration_seconds: e.duration_seconds,
                    message: e.message.to_string(),
                })
                .collect(),
        })
    }
}

/// Whether `check` blocks its dependents now: enabled and critical or unknown, as probed here,
/// or as another replica last probed it (a dependency no one has probed yet is unknown).
fn blocks(
    checks: &BTreeMap<Arc<str>, CheckRecord>,
    remote: &BTreeMap<String, Status>,
    check: &str,
) -> bool {
    match checks.get(check) {
        Some(record) => record.blocks_dependents(),
        None => remote
            .get(check)
            .is_none_or(|s| matches!(s, Status::Critical | Status::Unknown)),
    }
}

/// What one probe changed in a check's health.
#[derive(Debug, Clone, Copy)]
struct HealthChange {
    transition: Option<Transition>,
    flapping_changed: bool,
}

impl HealthChange {
    /// Whether the status or the flapping mark changed: what is logged and counted.
    fn changed(self) -> bool {
        self.transition.is_some() || self.flapping_changed
    }
}

/// Tells the runs verifying `check` of its probe; forgets the channel once nobody listens.
fn tell_listeners(
    listeners: &mut BTreeMap<Arc<str>, watch::Sender<Option<Probed>>>,
    check: &str,
    status: Status,
    at_ms: i64,
    time: &ProbeTime,
) {
    let Some(sender) = listeners.get(check) else {
        return;
    };
    if sender.receiver_count() == 0 {
        listeners.remove(check);
    } else {
        sender.send_replace(Some(Probed {
            status,
            at_ms,
            started: time.started,
        }));
    }
}

/// Logs a change of status or of the flapping mark.
fn log_status_change(check: &str, record: &CheckRecord, change: HealthChange, message: &str) {
    if !change.changed() {
        return;
    }
    let from = change.transition.map_or(record.health.status, |t| t.from);
    let reason = if record.health.flapping {
        "flapping"
    } else {
        ""
    };
    tracing::info!(check, %from, to = %record.health.status, reason, result = %message, "check status changed");
}

/// Tells recovery what the probe means for it: a check entering or leaving critical (the
/// circuit breaker counts them), a critical probe asking for a run of the check's chain, or
/// a check healthy again.
fn tell_recovery(
    recovery: &RecoveryHandle,
    check: &str,
    record: &CheckRecord,
    change: HealthChange,
    outcome: &Outcome,
    at_ms: i64,
    asked: bool,
) {
    if let Some(t) = change.transition {
        if (t.from == Status::Critical) != (t.to == Status::Critical) {
            let _ = recovery.send(Event::CheckCritical {
                check: check.to_string(),
                critical: t.to == Status::Critical,
            });
        }
    }
    let Some(chain) = &record.spec.recovery else {
        return;
    };
    // An unknown probe knows nothing of the target (medic may be the one in trouble): it
    // never asks for a run, even while the check is still critical.
    if record.health.status == Status::Critical && outcome.status != Status::Unknown {
        // Every critical probe asks; the manager coalesces and decides.
        let _ = recovery.send(Event::Trigger(Trigger::for_check(CheckIncident {
            check,
            chain,
            labels: &record.spec.labels,
            message: &outcome.message,
            interval_ms: i64::try_from(record.spec.interval.std().as_millis()).unwrap_or(i64::MAX),
            since_ms: record.critical_since_ms.unwrap_or(at_ms),
            probed_ms: at_ms,
            prompted: asked,
        })));
    } else if change.transition.is_some_and(|t| t.to == Status::Healthy) {
        let _ = recovery.send(Event::Healthy {
            chain: chain.clone(),
            subject: Subject::Check(check.to_string()).to_string(),
            at_ms,
        });
    }
}

/// Hands the probe to the store's writer, which counts and drops it rather than wait when its
/// queue is full.
fn store_result(writer: &WriterHandle, check: &str, at_ms: i64, outcome: &Outcome, duration: f64) {
    writer.submit(ResultRow {
        check: check.to_string(),
        at_ms,
        status: outcome.status,
        duration_seconds: duration,
        message: outcome.message.clone(),
        measurements: outcome.measurements.clone(),
    });
}
