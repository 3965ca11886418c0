//! Running chains: one run per (chain, target) at a time, steps in order (or learned order),
//! each attempt recorded before its action, verified by re-probing the check, with escalation
//! to the next step on failure. The manager task owns the set of active runs; each run is a
//! task of its own.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tracing::Instrument;

use super::action::{
    self, ActionContext, ActionOutcome, Actions, AttemptResult, Rendered, TriedStep,
};
use super::chain::{self, SkipReason, StepState};
use super::lease::{self, Fenced, Heartbeat, LEASE};
use super::template::Values;
use crate::alertmanager::ReceivedAlert;
use crate::checks::Prober;
use crate::config::{ChainSpec, CheckSpec, RecoveryConfig, Redactor};
use crate::metrics::Metrics;
use crate::process_group;
use crate::scheduler::ProbeHandle;
use crate::state::StateHandle;
use crate::status::Status;
use crate::store::{AttemptEnd, AttemptStart, RunStart, Store};
use crate::timefmt::now_ms;

/// What started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TriggerKind {
    Check,
    Alert,
    Manual,
}

impl TriggerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerKind::Check => "check",
            TriggerKind::Alert => "alert",
            TriggerKind::Manual => "manual",
        }
    }
}

/// A request to heal something.
#[derive(Debug, Clone)]
pub struct Trigger {
    pub kind: TriggerKind,
    pub chain: String,
    /// Whose counters and cooldowns apply: `check:NAME`, `alert:FINGERPRINT`, `manual:LABELS`.
    pub subject: String,
    /// Which run this is: the subject, plus `@startsAt` for alerts.
    pub target: String,
    pub values: Values,
    /// The check that says whether a step fixed it.
    pub verify_check: Option<String>,
    /// The check's last message, or the alert's summary.
    pub message: String,
}

/// How a run ended, if it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    Recovered,
    Exhausted,
    Cancelled,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Recovered => "recovered",
            RunOutcome::Exhausted => "exhausted",
            RunOutcome::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunEnd {
    /// No step could run (all in cooldown or at max attempts); nothing was started.
    NothingToRun {
        next_possible_ms: Option<i64>,
    },
    /// Another run for the same subject is active (in this process or another replica).
    AlreadyRunning,
    /// The state store is unavailable: nothing runs that cannot be recorded.
    NoStore,
    Finished {
        outcome: RunOutcome,
    },
}

/// One line of a run's account, for `medic recover` and logs.
#[derive(Debug, Clone)]
pub enum StepReport {
    Skipped {
        step: String,
        reason: SkipReason,
    },
    WouldRun {
        step: String,
        action: String,
    },
    Ran {
        step: String,
        action: String,
        result: AttemptResult,
        message: String,
        seconds: f64,
    },
}

/// How a step's fix is checked.
pub enum Verifier {
    /// In `medic run`: ask the scheduler for prompt probes and read the state task's status.
    Live {
        state: StateHandle,
        probes: ProbeHandle,
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

impl DirectChecks {
    async fn verify(&self, check: &str, deadline: Instant) -> Result<(), String> {
        let spec = self
            .checks
            .get(check)
            .ok_or_else(|| format!("check {check} is not configured"))?;
        loop {
            let outcome = self.prober.probe(spec, &self.redactor).await;
            if outcome.status == Status::Healthy {
                return Ok(());
            }
            if Instant::now() + VERIFY_PAUSE >= deadline {
                return Err(format!(
                    "check {check} still {}: {}",
                    outcome.status, outcome.message
                ));
            }
            tokio::time::sleep(VERIFY_PAUSE).await;
        }
    }
}

/// Pause between verification probes: prompt, without hammering the target.
const VERIFY_PAUSE: Duration = Duration::from_millis(200);

impl Verifier {
    /// Ok once `check` is healthy, probing promptly; Err with the last status when
    /// `timeout` passes.
    async fn verify(&self, check: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        match self {
            Verifier::Live {
                state,
                probes,
                others,
            } => {
                let mut seen_after = now_ms();
                loop {
                    if !probes.probe_now(check) {
                        let others = others.borrow().clone();
                        if others.checks.contains_key(check) {
                            return others.verify(check, deadline).await;
                        }
                        return Err(format!("check {check} is not running"));
                    }
                    // Wait for a probe that finished after the action.
                    let status = loop {
                        match state.status(check).await {
                            Some((status, Some(at))) if at > seen_after => {
                                seen_after = at;
                                break status;
                            }
                            Some(_) => {}
                            None => return Err(format!("check {check} is not configured")),
                        }
                        if Instant::now() >= deadline {
                            return Err(format!("check {check} not probed within verify_timeout"));
                        }
                        tokio::time::sleep(Duration::from_millis(25)).await;
                    };
                    if status == Status::Healthy {
                        return Ok(());
                    }
                    if Instant::now() + VERIFY_PAUSE >= deadline {
                        return Err(format!("check {check} still {status} after verify_timeout"));
                    }
                    tokio::time::sleep(VERIFY_PAUSE).await;
                }
            }
            Verifier::Direct(direct) => direct.verify(check, deadline).await,
        }
    }
}

/// Set when the alert that started a run resolves: a waiting run then ends recovered.
#[derive(Default)]
pub struct Resolved {
    flag: AtomicBool,
    notify: Notify,
}

impl Resolved {
    pub fn resolve(&self) {
        self.flag.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    fn is_set(&self) -> bool {
        self.flag.load(Ordering::SeqCst)
    }
}

/// How a run is steered from outside.
pub struct RunControl<'a> {
    /// Decide and show, run and record nothing.
    pub dry_run: bool,
    /// Set when the triggering alert resolves.
    pub resolved: &'a Resolved,
    /// The step running now, for `in_progress` skip counts.
    pub current_step: &'a Mutex<String>,
    /// Turns true at shutdown (or Ctrl-C in `medic recover`).
    pub cancel: watch::Receiver<bool>,
}

/// What every run shares.
pub struct Engine {
    pub actions: Actions,
    pub metrics: Arc<Metrics>,
    pub verifier: Verifier,
    /// This process, as the owner of the runs it holds in the store.
    pub owner: String,
}

impl Engine {
    /// Runs `chain` for `trigger` to its end. `report` hears about every step.
    pub async fn run(
        &self,
        store: &Store,
        chain: &ChainSpec,
        trigger: &Trigger,
        control: &mut RunControl<'_>,
        report: &mut (dyn FnMut(StepReport) + Send),
    ) -> RunEnd {
        let RunControl {
            dry_run,
            resolved,
            current_step,
            cancel,
        } = control;
        let (dry_run, resolved, current_step) = (*dry_run, *resolved, *current_step);
        let name = &chain.name;
        let now = now_ms();
        // Counters reset after a healthy period of reset_after; the subject is unhealthy now.
        if !dry_run {
            match store.healthy_since(name, &trigger.subject).await {
                Ok(since) => {
                    let reset_ms = chain.reset_after.std().as_millis() as i64;
                    if chain::counters_reset_due(since, reset_ms, now) {
                        if let Err(e) = store.reset_counters(name, &trigger.subject, None).await {
                            self.metrics.store_error(e.operation());
                        }
                    }
                    if since.is_some() {
                        if let Err(e) = store.set_healthy_since(name, &trigger.subject, None).await
                        {
                            self.metrics.store_error(e.operation());
                        }
                    }
                }
                Err(e) => {
                    self.metrics.store_error(e.operation());
                    return RunEnd::NoStore;
                }
            }
        }
        let mut states = match store.step_states(name, &trigger.subject).await {
            Ok(s) => s,
            Err(e) => {
                self.metrics.store_error(e.operation());
                return RunEnd::NoStore;
            }
        };
        if !chain::could_any_run(chain, &states, now) {
            return RunEnd::NothingToRun {
                next_possible_ms: next_possible(chain, &states),
            };
        }
        let effectiveness: BTreeMap<String, f64> = store
            .effectiveness()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|((c, _), _)| c == name)
            .map(|((_, step), v)| (step, v))
            .collect();
        let order = chain::step_order(chain, &effectiveness);

        let run_id = new_run_id();
        let mut fencing_token = None;
        // Taken before the lease is: the holder's count of its lease starts no later than the
        // store's (see recovery::lease).
        let leased_at = tokio::time::Instant::now();
        if !dry_run {
            // The lease is in the store's clock, the one every replica compares it with.
            let store_now = match store.clock_ms().await {
                Ok(t) => t,
                Err(e) => {
                    self.metrics.store_error(e.operation());
                    return RunEnd::NoStore;
                }
            };
            let started = RunStart {
                id: &run_id,
                chain: name,
                target: &trigger.target,
                subject: &trigger.subject,
                trigger: trigger.kind.as_str(),
                started_ms: now,
                owner: &self.owner,
                lease_until_ms: store_now + LEASE.as_millis() as i64,
                labels_json: action::labels_json(&trigger.values.labels),
            };
            match store.begin_run(&started).await {
                Ok(Some(token)) => fencing_token = Some(token),
                Ok(None) => return RunEnd::AlreadyRunning,
                Err(e) => {
                    self.metrics.store_error(e.operation());
                    return RunEnd::NoStore;
                }
            }
            // Holding the run now, read the counters again: another process (a replica) may
            // have run and finished the same steps between the first read and here.
            match store.step_states(name, &trigger.subject).await {
                Ok(fresh) => states = fresh,
                Err(e) => {
                    self.metrics.store_error(e.operation());
                    let _ = store.discard_run(&run_id).await;
                    return RunEnd::NoStore;
                }
            }
            if !chain::could_any_run(chain, &states, now_ms()) {
                let _ = store.discard_run(&run_id).await;
                return RunEnd::NothingToRun {
                    next_possible_ms: next_possible(chain, &states),
                };
            }
            tracing::info!(run = %run_id, target = %trigger.target, trigger = trigger.kind.as_str(), "recovery run started");
        }
        // alertmanager: silence on run start (expired when the guard drops at run end)
        let silence = (!dry_run)
            .then(|| {
                self.actions
                    .alertmanager()?
                    .run_started(&run_id, chain, trigger)
            })
            .flatten();
        let heartbeat = (!dry_run).then(|| {
            Heartbeat::start(
                store.clone(),
                run_id.clone(),
                leased_at,
                self.metrics.clone(),
            )
        });
        // Set once the run could not renew its lease: it stops acting at once.
        let mut fenced: Option<Fenced> = None;

        let mut tried: Vec<TriedStep> = Vec::new();
        let mut outcome = RunOutcome::Exhausted;
        for &index in &order {
            let step = &chain.steps[index];
            if resolved.is_set() {
                outcome = RunOutcome::Recovered;
                break;
            }
            if *cancel.borrow() {
                outcome = RunOutcome::Cancelled;
                break;
            }
            if let Some(f) = heartbeat.as_ref().and_then(Heartbeat::fenced_now) {
                fenced = Some(f);
                outcome = RunOutcome::Cancelled;
                break;
            }
            let state = states.get(&step.name).copied().unwrap_or_default();
            if let Some(reason) = chain::skip_reason(step, state, now_ms()) {
                self.metrics
                    .recovery_skipped(name, &step.name, reason.as_str());
                report(StepReport::Skipped {
                    step: step.name.clone(),
                    reason,
                });
                continue;
            }
            *current_step.lock().unwrap_or_else(|p| p.into_inner()) = step.name.clone();
            let ctx = ActionContext {
                values: &trigger.values,
                trigger: trigger.kind.as_str(),
                target: &trigger.target,
                message: &trigger.message,
                tried: &tried,
                fencing_token,
                // alertmanager: an alert step names its run and the subject it resolves with
                run_id: &run_id,
                subject: &trigger.subject,
            };
            let rendered = action::render(step, name, &ctx);
            if dry_run {
                self.metrics
                    .recovery_skipped(name, &step.name, SkipReason::DryRun.as_str());
                report(StepReport::WouldRun {
                    step: step.name.clone(),
                    action: match &rendered {
                        Ok(r) => r.to_string(),
                        Err(e) => format!("would fail: {e}"),
                    },
                });
                continue;
            }

            let started_ms = now_ms();
            let start = AttemptStart {
                run_id: &run_id,
                chain: name,
                step: &step.name,
                subject: &trigger.subject,
                target: &trigger.target,
                trigger: trigger.kind.as_str(),
                started_ms,
            };
            let attempt_id = match store.begin_attempt(&start).await {
                Ok(id) => Some(id),
                Err(e) => {
                    self.metrics.store_error(e.operation());
                    None
                }
            };
            states.insert(
                step.name.clone(),
                StepState {
                    attempts: state.attempts.saturating_add(1),
                    last_attempt_ms: Some(started_ms),
                },
            );
            let started = Instant::now();
            let span = tracing::info_span!("step", step = %step.name);
            let (result, rendered_text) = async {
                match (&rendered, attempt_id) {
                    (Err(e), _) => (
                        ActionOutcome {
                            result: AttemptResult::Failure,
                            message: format!("not run: {e}"),
                            exit_code: None,
                            output: String::new(),
                        },
                        step.action.kind().to_string(),
                    ),
                    // Nothing runs that could not be recorded: after a crash its cooldown
                    // would be unknown.
                    (Ok(r), None) => (
                        ActionOutcome {
                            result: AttemptResult::Failure,
                            message: "not run: the state store could not record the attempt".into(),
                            exit_code: None,
                            output: String::new(),
                        },
                        r.to_string(),
                    ),
                    (Ok(r), Some(id)) => {
                        // The group goes into the record while the step runs: a medic killed
                        // mid-step ends it after its restart.
                        let (on_spawn, spawned) = oneshot::channel();
                        let work = async {
                            let (outcome, ()) = tokio::join!(
                                self.attempt(
                                    r,
                                    step.timeout.std(),
                                    chain,
                                    trigger,
                                    resolved,
                                    cancel,
                                    on_spawn
                                ),
                                record_group(store, id, spawned, &self.metrics),
                            );
                            outcome
                        };
                        let outcome = match &heartbeat {
                            // Fenced: the step's future is dropped inside guard, which kills
                            // its process group before anything else happens.
                            Some(hb) => hb.guard(work).await.unwrap_or_else(|f| {
                                fenced = Some(f);
                                ActionOutcome {
                                    result: AttemptResult::Failure,
                                    message: f.message(),
                                    exit_code: None,
                                    output: String::new(),
                                }
                            }),
                            None => work.await,
                        };
                        (outcome, r.to_string())
                    }
                }
            }
            .instrument(span)
            .await;
            let seconds = started.elapsed().as_secs_f64();
            let cancelled =
                (*cancel.borrow() && result.result != AttemptResult::Success) || fenced.is_some();
            if let Some(id) = attempt_id {
                let end = AttemptEnd {
                    finished_ms: now_ms(),
                    result: result.result.as_str(),
                    message: result.message.clone(),
                    exit_code: result.exit_code,
                    output: result.output.clone(),
                    duration_seconds: seconds,
                };
                if fenced.is_some() {
                    // The store is what was lost: wait for it, so that the record says what
                    // happened (it overrides "interrupted" from a replica that took over).
                    lease::when_store_back("the fenced attempt", || store.end_attempt(id, &end))
                        .await;
                } else if let Err(e) = store.end_attempt(id, &end).await {
                    self.metrics.store_error(e.operation());
                }
            }
            self.metrics
                .recovery_attempt(name, &step.name, result.result.as_str(), seconds);
            tracing::info!(
                step = %step.name,
                action = %rendered_text,
                result = result.result.as_str(),
                detail = %result.message,
                seconds,
                "recovery step finished"
            );
            // alertmanager: an alert step, like notify, fixes nothing
            let is_notify = step.action.fixes_nothing();
            // A notification fixes nothing: it is not learned from and never ends a run.
            if !cancelled && !is_notify && rendered.is_ok() && attempt_id.is_some() {
                match store
                    .learn(
                        name,
                        &step.name,
                        result.result == AttemptResult::Success,
                        now_ms(),
                    )
                    .await
                {
                    Ok(v) => self.metrics.recovery_effectiveness(name, &step.name, v),
                    Err(e) => self.metrics.store_error(e.operation()),
                }
            }
            report(StepReport::Ran {
                step: step.name.clone(),
                action: rendered_text,
                result: result.result,
                message: result.message.clone(),
                seconds,
            });
            tried.push(TriedStep {
                step: step.name.clone(),
                result: result.result.as_str().to_string(),
                message: result.message.clone(),
            });
            if cancelled {
                outcome = RunOutcome::Cancelled;
                break;
            }
            let fixed = result.result == AttemptResult::Success && !is_notify;
            if fixed || resolved.is_set() {
                if fixed {
                    let later = chain::steps_to_reset(chain, &order, index);
                    if !later.is_empty() {
                        if let Err(e) = store
                            .reset_counters(name, &trigger.subject, Some(&later))
                            .await
                        {
                            self.metrics.store_error(e.operation());
                        }
                    }
                }
                outcome = RunOutcome::Recovered;
                break;
            }
        }

        if dry_run {
            return RunEnd::Finished { outcome };
        }
        // No more renewals: the run is over, one way or the other.
        drop(heartbeat);
        let end_ms = now_ms();
        if fenced.is_some() {
            lease::when_store_back("the fenced run's end", || {
                store.end_run(&run_id, end_ms, outcome.as_str())
            })
            .await;
        } else if let Err(e) = store.end_run(&run_id, end_ms, outcome.as_str()).await {
            self.metrics.store_error(e.operation());
        }
        // alertmanager: expire the silence at run end
        if let Some(silence) = silence {
            silence.run_ended();
        }
        if outcome == RunOutcome::Recovered {
            if let Err(e) = store
                .set_healthy_since(name, &trigger.subject, Some(end_ms))
                .await
            {
                self.metrics.store_error(e.operation());
            }
        }
        self.metrics
            .recovery_run(name, trigger.kind.as_str(), outcome.as_str());
        tracing::info!(run = %run_id, outcome = outcome.as_str(), "recovery run ended");
        RunEnd::Finished { outcome }
    }

    /// Runs one action and, when it worked and there is a check to ask, verifies the fix.
    // One more than clippy likes: `on_spawn` is threaded through to the action unchanged.
    #[allow(clippy::too_many_arguments)]
    async fn attempt(
        &self,
        rendered: &Rendered,
        timeout: Duration,
        chain: &ChainSpec,
        trigger: &Trigger,
        resolved: &Resolved,
        cancel: &mut watch::Receiver<bool>,
        on_spawn: process_group::OnSpawn,
    ) -> ActionOutcome {
        let work = async {
            let mut outcome = self.actions.run(rendered, timeout, Some(on_spawn)).await;
            if outcome.result != AttemptResult::Success {
                return outcome;
            }
            // A notification reached people; there is nothing to verify.
            // alertmanager: so did an escalation
            if matches!(rendered, Rendered::Notify { .. } | Rendered::Alert(_)) {
                return outcome;
            }
            if let Some(check) = &trigger.verify_check {
                tokio::select! {
                    verdict = self.verifier.verify(check, chain.verify_timeout.std()) => {
                        match verdict {
                            Ok(()) => outcome.message = format!("{}; verified: {check} healthy", outcome.message),
                            Err(why) => {
                                outcome.result = AttemptResult::Failure;
                                outcome.message = format!("{}; not verified: {why}", outcome.message);
                            }
                        }
                    }
                    _ = resolved.notify.notified() => {
                        outcome.message = format!("{}; the alert resolved", outcome.message);
                    }
                }
            }
            outcome
        };
        tokio::select! {
            outcome = work => outcome,
            _ = cancel.wait_for(|c| *c) => ActionOutcome {
                result: AttemptResult::Failure,
                message: "cancelled: medic is shutting down".into(),
                exit_code: None,
                output: String::new(),
            },
        }
    }
}

/// The earliest time some step could run again, if any ever can without a reset.
fn next_possible(chain: &ChainSpec, states: &BTreeMap<String, StepState>) -> Option<i64> {
    chain
        .steps
        .iter()
        .filter_map(|step| {
            let state = states.get(&step.name).copied().unwrap_or_default();
            if state.attempts >= step.max_attempts {
                return None;
            }
            Some(state.last_attempt_ms.unwrap_or(0) + step.cooldown.std().as_millis() as i64)
        })
        .min()
}

/// Unique enough for run ids: time plus a per-process random sequence.
fn new_run_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::AtomicU64;
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(SEQUENCE.fetch_add(1, Ordering::Relaxed));
    h.write_u32(std::process::id());
    format!("{:x}-{:016x}", now_ms(), h.finish())
}

/// Events for the manager.
#[derive(Debug)]
pub enum Event {
    Trigger(Trigger),
    /// The subject is healthy again (a check turned healthy).
    Healthy {
        chain: String,
        subject: String,
        at_ms: i64,
    },
    /// An Alertmanager notification: route every alert, answer what became of each.
    Notification {
        alerts: Vec<ReceivedAlert>,
        reply: oneshot::Sender<WebhookSummary>,
    },
    Apply(RecoveryConfig),
}

/// What became of a trigger the manager accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Handed to a run (which may still find every step in cooldown).
    Started,
    /// A run for the same target is in progress.
    Coalesced,
    /// No step can run again yet (cooldowns, max attempts).
    Blocked,
    /// The state store is not open: nothing runs unrecorded.
    NoStore,
    UnknownChain,
}

/// The webhook's answer: what was started, coalesced or unrouted.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct WebhookSummary {
    pub received: usize,
    pub started: Vec<AlertRef>,
    pub coalesced: Vec<AlertRef>,
    pub blocked: Vec<AlertRef>,
    pub resolved: Vec<AlertRef>,
    pub unrouted: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AlertRef {
    pub chain: String,
    pub fingerprint: String,
    pub alertname: String,
}

/// The handle triggers come in through; never blocks.
#[derive(Clone)]
pub struct RecoveryHandle {
    tx: mpsc::Sender<Event>,
}

/// What the caller learns about an event it queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    Queued,
    /// The queue is full; the sender should retry later.
    Full,
}

impl RecoveryHandle {
    /// A handle and the receiver the manager will be started with.
    pub fn channel() -> (RecoveryHandle, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        (RecoveryHandle { tx }, rx)
    }

    /// Hands a reloaded config to the manager (waits for queue room).
    pub async fn apply(&self, config: RecoveryConfig) {
        let _ = self.tx.send(Event::Apply(config)).await;
    }

    pub fn send(&self, event: Event) -> Queued {
        match self.tx.try_send(event) {
            Ok(()) => Queued::Queued,
            Err(_) => Queued::Full,
        }
    }

    /// Routes a notification's alerts; `None` when the queue is full (answer 503, Alertmanager
    /// retries) or medic is stopping.
    pub async fn notify(&self, alerts: Vec<ReceivedAlert>) -> Option<WebhookSummary> {
        let (reply, answer) = oneshot::channel();
        if self.send(Event::Notification { alerts, reply }) == Queued::Full {
            return None;
        }
        answer.await.ok()
    }
}

struct Active {
    /// What started it: a `resolved` notification ends only the run its alert started.
    target: String,
    current_step: Arc<Mutex<String>>,
    resolved: Arc<Resolved>,
}

struct Finished {
    chain: String,
    subject: String,
    end: RunEnd,
}

/// Bounded: a flood of triggers is refused (and retried by its sender) rather than queued forever.
const QUEUE: usize = 10_000;
/// How often runs abandoned by a crashed process (an expired lease) are looked for.
const ABANDONED_SWEEP: Duration = Duration::from_secs(5);
/// How long shutdown waits for runs to record their cancellation.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Starts the manager, the one owner of active runs, on the receiver from
/// [`RecoveryHandle::channel`].
pub fn spawn_manager(
    engine: Arc<Engine>,
    config: RecoveryConfig,
    store: watch::Receiver<Option<Store>>,
    events: mpsc::Receiver<Event>,
    shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let (done_tx, done_rx) = mpsc::channel(1024);
    let manager = Manager {
        engine,
        config,
        store,
        shutdown,
        active: HashMap::new(),
        blocked_until: HashMap::new(),
        tasks: tokio::task::JoinSet::new(),
        done_tx,
    };
    tokio::spawn(manager.run(events, done_rx))
}

struct Manager {
    engine: Arc<Engine>,
    config: RecoveryConfig,
    store: watch::Receiver<Option<Store>>,
    shutdown: watch::Receiver<bool>,
    /// Runs in progress, by (chain, target).
    active: HashMap<(String, String), Active>,
    /// By (chain, subject): no step can run before this time (from the last run's decision).
    blocked_until: HashMap<(String, String), i64>,
    tasks: tokio::task::JoinSet<()>,
    done_tx: mpsc::Sender<Finished>,
}

impl Manager {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<Event>,
        mut done_rx: mpsc::Receiver<Finished>,
    ) {
        let mut sweep = tokio::time::interval(ABANDONED_SWEEP);
        let initial = self.store.borrow().clone();
        set_effectiveness_gauges(&self.engine, &self.config, initial.as_ref()).await;
        let mut shutdown = self.shutdown.clone();
        loop {
            tokio::select! {
                Some(event) = events.recv() => self.handle(event).await,
                Some(done) = done_rx.recv() => self.finished(done),
                // A JoinSet keeps every finished task until it is joined: reap them as they
                // end, or each run ever started stays in memory.
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => {}
                changed = self.store.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    let current = self.store.borrow().clone();
                    if let Some(s) = current {
                        end_abandoned(&self.engine, &s).await;
                        set_effectiveness_gauges(&self.engine, &self.config, Some(&s)).await;
                    }
                }
                _ = sweep.tick() => {
                    let current = self.store.borrow().clone();
                    if let Some(s) = current {
                        end_abandoned(&self.engine, &s).await;
                    }
                }
                _ = shutdown.changed() => break,
            }
        }
        // Runs see the shutdown too: they cancel their action and record it.
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
    }

    async fn handle(&mut self, event: Event) {
        match event {
            Event::Trigger(trigger) => {
                self.accept(trigger);
            }
            Event::Healthy {
                chain,
                subject,
                at_ms,
            } => self.healthy(chain, subject, at_ms).await,
            Event::Notification { alerts, reply } => {
                let summary = self.route(alerts).await;
                let _ = reply.send(summary);
            }
            Event::Apply(new) => {
                for (name, old) in &self.config.chains {
                    for step in &old.steps {
                        let kept = new
                            .chains
                            .get(name)
                            .is_some_and(|c| c.steps.iter().any(|s| s.name == step.name));
                        if !kept {
                            self.engine.metrics.forget_step(name, &step.name);
                        }
                    }
                }
                self.config = new;
                self.blocked_until.clear();
                let current = self.store.borrow().clone();
                set_effectiveness_gauges(&self.engine, &self.config, current.as_ref()).await;
            }
        }
    }

    /// Starts a run for the trigger unless one is in progress or nothing could run.
    fn accept(&mut self, trigger: Trigger) -> Disposition {
        let Some(chain) = self.config.chains.get(&trigger.chain).cloned() else {
            tracing::warn!(chain = %trigger.chain, "trigger for an unknown chain ignored");
            return Disposition::UnknownChain;
        };
        // One run per subject: duplicates of the alert, and an alert about a check whose own
        // run is under way, are coalesced.
        let key = (trigger.chain.clone(), trigger.subject.clone());
        if let Some(run) = self.active.get(&key) {
            let step = run
                .current_step
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            self.engine.metrics.recovery_skipped(
                &trigger.chain,
                &step,
                SkipReason::InProgress.as_str(),
            );
            return Disposition::Coalesced;
        }
        if self
            .blocked_until
            .get(&key)
            .is_some_and(|until| now_ms() < *until)
        {
            return Disposition::Blocked;
        }
        let Some(store) = self.store.borrow().clone() else {
            tracing::warn!(chain = %trigger.chain, target = %trigger.target, "state store not open yet: recovery waits for it");
            return Disposition::NoStore;
        };
        let run = Active {
            target: trigger.target.clone(),
            current_step: Arc::new(Mutex::new(
                chain
                    .steps
                    .first()
                    .map(|s| s.name.clone())
                    .unwrap_or_default(),
            )),
            resolved: Arc::new(Resolved::default()),
        };
        let (current_step, resolved) = (run.current_step.clone(), run.resolved.clone());
        self.active.insert(key, run);
        let (engine, done_tx, cancel) = (
            self.engine.clone(),
            self.done_tx.clone(),
            self.shutdown.clone(),
        );
        let span =
            tracing::info_span!("recovery", chain = %trigger.chain, target = %trigger.target);
        self.tasks.spawn(
            async move {
                let mut control = RunControl {
                    dry_run: false,
                    resolved: &resolved,
                    current_step: &current_step,
                    cancel,
                };
                let end = engine
                    .run(&store, &chain, &trigger, &mut control, &mut |_| {})
                    .await;
                let _ = done_tx
                    .send(Finished {
                        chain: trigger.chain,
                        subject: trigger.subject,
                        end,
                    })
                    .await;
            }
            .instrument(span),
        );
        Disposition::Started
    }

    async fn healthy(&mut self, chain: String, subject: String, at_ms: i64) {
        self.blocked_until.remove(&(chain.clone(), subject.clone()));
        // alertmanager: resolve the subject's escalations
        if let Some(am) = self.engine.actions.alertmanager() {
            am.subject_healthy(&chain, &subject);
        }
        let current = self.store.borrow().clone();
        if let Some(s) = current {
            if let Err(e) = s.set_healthy_since(&chain, &subject, Some(at_ms)).await {
                self.engine.metrics.store_error(e.operation());
            }
        }
    }

    /// Routes each alert on its own labels and status; first matching route wins.
    async fn route(&mut self, alerts: Vec<ReceivedAlert>) -> WebhookSummary {
        let mut summary = WebhookSummary {
            received: alerts.len(),
            ..Default::default()
        };
        for alert in alerts {
            let status = if alert.firing { "firing" } else { "resolved" };
            let Some(route) = self.config.route(&alert.labels).cloned() else {
                self.engine.metrics.webhook_alert(status, false);
                summary.unrouted += 1;
                continue;
            };
            self.engine.metrics.webhook_alert(status, true);
            // An alert routed with verify_check is about that check: it shares the check's
            // counters, cooldowns and single active run, whichever replica's series fired it.
            let subject = match &route.verify_check {
                Some(check) => format!("check:{check}"),
                None => format!("alert:{}", alert.fingerprint),
            };
            let target = format!("alert:{}@{}", alert.fingerprint, alert.starts_at);
            let reference = AlertRef {
                chain: route.chain.clone(),
                fingerprint: alert.fingerprint.clone(),
                alertname: alert.labels.get("alertname").cloned().unwrap_or_default(),
            };
            if !alert.firing {
                tracing::info!(chain = %route.chain, fingerprint = %alert.fingerprint, "alert resolved");
                if let Some(run) = self
                    .active
                    .get(&(route.chain.clone(), subject.clone()))
                    .filter(|run| run.target == target)
                {
                    run.resolved.resolve();
                }
                self.healthy(route.chain.clone(), subject, now_ms()).await;
                summary.resolved.push(reference);
                continue;
            }
            let message = alert
                .annotations
                .get("summary")
                .or_else(|| alert.annotations.get("description"))
                .cloned()
                .unwrap_or_else(|| format!("alert {} firing", reference.alertname));
            let trigger = Trigger {
                kind: TriggerKind::Alert,
                chain: route.chain.clone(),
                subject,
                target,
                values: Values {
                    check: route
                        .verify_check
                        .clone()
                        .or_else(|| alert.labels.get("check").cloned()),
                    chain: route.chain.clone(),
                    labels: alert.labels,
                    annotations: alert.annotations,
                },
                verify_check: route.verify_check.clone(),
                message,
            };
            match self.accept(trigger) {
                Disposition::Started => summary.started.push(reference),
                Disposition::Coalesced => summary.coalesced.push(reference),
                Disposition::Blocked | Disposition::NoStore | Disposition::UnknownChain => {
                    summary.blocked.push(reference)
                }
            }
        }
        summary
    }

    fn finished(&mut self, done: Finished) {
        self.active
            .remove(&(done.chain.clone(), done.subject.clone()));
        let key = (done.chain, done.subject);
        match done.end {
            RunEnd::NothingToRun { next_possible_ms } => {
                self.blocked_until
                    .insert(key, next_possible_ms.unwrap_or(i64::MAX));
            }
            RunEnd::Finished {
                outcome: RunOutcome::Exhausted,
            } => {
                // The next trigger decides from the store; no cache.
                self.blocked_until.remove(&key);
            }
            _ => {}
        }
    }
}

/// Writes a step's process group into its attempt's record once it is spawned (never, for
/// actions that spawn nothing).
async fn record_group(
    store: &Store,
    attempt: i64,
    spawned: oneshot::Receiver<process_group::GroupIdentity>,
    metrics: &Metrics,
) {
    if let Ok(group) = spawned.await {
        if let Err(e) = store.set_attempt_group(attempt, &group).await {
            metrics.store_error(e.operation());
        }
    }
}

async fn end_abandoned(engine: &Engine, store: &Store) {
    // Lapsed by the store's clock, and a margin past that: the holder, if it lives, fenced
    // itself well before (recovery::lease).
    let now = match store.clock_ms().await {
        Ok(now) => now,
        Err(e) => return engine.metrics.store_error(e.operation()),
    };
    let margin_ms = lease::TAKEOVER_MARGIN.as_millis() as i64;
    match store
        .end_abandoned_runs(now, &engine.owner, margin_ms)
        .await
    {
        Ok(ended) => {
            for (chain, trigger) in ended {
                tracing::warn!(
                    chain,
                    "a run abandoned by a stopped medic was ended as cancelled"
                );
                engine
                    .metrics
                    .recovery_run(&chain, &trigger, RunOutcome::Cancelled.as_str());
            }
        }
        Err(e) => engine.metrics.store_error(e.operation()),
    }
}

async fn set_effectiveness_gauges(engine: &Engine, config: &RecoveryConfig, store: Option<&Store>) {
    let learned = match store {
        Some(s) => s.effectiveness().await.unwrap_or_default(),
        None => BTreeMap::new(),
    };
    for (name, chain) in &config.chains {
        for step in &chain.steps {
            let value = learned
                .get(&(name.clone(), step.name.clone()))
                .copied()
                .unwrap_or(chain::UNTRIED_EFFECTIVENESS);
            engine
                .metrics
                .recovery_effectiveness(name, &step.name, value);
        }
    }
}
