//! Running chains: one run per (chain, target) at a time, steps in order (or learned order),
//! each attempt recorded before its action, verified by re-probing the check, with escalation
//! to the next step on failure. The manager task owns the set of active runs; each run is a
//! task of its own.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tracing::Instrument;

use super::action::{
    self, ActionContext, ActionOutcome, Actions, AttemptResult, Rendered, TriedStep,
};
use super::chain::{self, SkipReason};
use super::held::{Held, Offered};
use super::hold::{self, HoldReason, Load, OperatorHolds, Origin};
use super::lease::{self, Fenced, Heartbeat, LEASE};
use super::machine::{self, ActionResult, Decision, Mode, Signals, Verification};
use super::pause::{self, Pause};
use super::template::Values;
use crate::alertmanager::ReceivedAlert;
use crate::checks::Prober;
use crate::config::{ChainSpec, CheckSpec, RecoveryConfig, Redactor, StepSpec};
use crate::metrics::Metrics;
use crate::process_group;
use crate::scheduler::ProbeHandle;
use crate::state::StateHandle;
use crate::status::Status;
use crate::store::{
    AttemptEnd, AttemptStart, Begun, DecisionKind, DecisionRow, FleetLimits, RunStart, Store,
};
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
    /// Why and since when it was held back before it started, for the run's audit.
    pub held: Option<(HoldReason, i64)>,
    /// The check's probe interval, for check triggers: a trigger settles for two of them
    /// before it starts where the circuit breaker could open (0: no settling).
    pub interval_ms: i64,
}

impl Trigger {
    /// The labels pauses and maintenance windows match on: the trigger's (an alert's, or a
    /// check's `labels:`), plus `check` and `chain`. Manual runs match on the same.
    pub fn hold_labels(&self) -> BTreeMap<String, String> {
        let mut labels = self.values.labels.clone();
        if let Some(check) = &self.values.check {
            labels.insert("check".to_string(), check.clone());
        }
        labels.insert("chain".to_string(), self.chain.clone());
        labels
    }
}

pub use super::machine::RunOutcome;

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
    /// The store held it back: a fleet-wide limit (replicas' runs count too).
    Held(HoldReason),
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
    /// What the store enforces across replicas when the run begins (none for manual runs).
    pub limits: FleetLimits,
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
    ///
    /// The engine only carries out what [`machine::Run`] decides: it reads the store, asks the
    /// machine, records before acting, runs the action, verifies, and feeds each result back.
    pub async fn run(
        &self,
        store: &Store,
        chain: &ChainSpec,
        trigger: &Trigger,
        control: &mut RunControl<'_>,
        report: &mut (dyn FnMut(StepReport) + Send),
    ) -> RunEnd {
        let mode = match (control.dry_run, chain.mode) {
            (true, _) => Mode::DryRun,
            (false, crate::config::RecoveryMode::Shadow) => Mode::Shadow,
            (false, crate::config::RecoveryMode::Active) => Mode::Act,
        };
        let mut run = match self.open(store, chain, trigger, mode).await {
            Ok(run) => run,
            Err(end) => return end,
        };
        let limits = control.limits;
        let mut holding = match self
            .hold(store, chain, trigger, &mut run, mode, limits)
            .await
        {
            Ok(holding) => holding,
            Err(end) => return end,
        };
        let mut carry = Carry {
            engine: self,
            store,
            chain,
            trigger,
            control,
            report,
            holding: &mut holding,
        };
        loop {
            let signals = carry.signals();
            match run.next(chain, signals, clock()) {
                Decision::Skip {
                    index,
                    reason,
                    until_ms,
                } => carry.skipped(index, reason, until_ms).await,
                Decision::WouldRun { index } => carry.would_run(index),
                Decision::Shadow { index } => carry.shadow(index).await,
                Decision::Act { index } => carry.act(&mut run, index).await,
                // Verification follows the action inside `act`; the machine asks for it only
                // while it waits there.
                Decision::Verify { .. } => {}
                Decision::End(end) => {
                    return match mode {
                        Mode::DryRun => RunEnd::Finished {
                            outcome: end.outcome,
                        },
                        Mode::Act | Mode::Shadow => {
                            self.close(store, chain, trigger, holding, end).await
                        }
                    }
                }
            }
        }
    }

    /// Before any step: counters reset after a healthy `reset_after`, the step states and the
    /// learned order; the machine opens the run only when some step could run now.
    async fn open(
        &self,
        store: &Store,
        chain: &ChainSpec,
        trigger: &Trigger,
        mode: Mode,
    ) -> Result<machine::Run, RunEnd> {
        let name = &chain.name;
        let now = clock();
        if mode == Mode::Act {
            let since = store
                .healthy_since(name, &trigger.subject)
                .await
                .map_err(|e| self.no_store(e))?;
            let preflight = machine::preflight(chain, since, now);
            if preflight.reset_counters {
                if let Err(e) = store.reset_counters(name, &trigger.subject, None).await {
                    self.metrics.store_error(e.operation());
                }
            }
            if preflight.clear_healthy_since {
                if let Err(e) = store.set_healthy_since(name, &trigger.subject, None).await {
                    self.metrics.store_error(e.operation());
                }
            }
        }
        let states = store
            .step_states(name, &trigger.subject)
            .await
            .map_err(|e| self.no_store(e))?;
        let effectiveness: BTreeMap<String, f64> = store
            .effectiveness()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|((c, _), _)| c == name)
            .map(|((_, step), v)| (step, v))
            .collect();
        let verifies = trigger.verify_check.is_some();
        machine::Run::open(chain, states, &effectiveness, mode, verifies, now).map_err(|n| {
            RunEnd::NothingToRun {
                next_possible_ms: n.next_possible_ms,
            }
        })
    }

    /// Takes the run in the store (one per subject, under a lease), then reads the counters
    /// again: a replica may have run the same steps between the first read and here.
    async fn hold(
        &self,
        store: &Store,
        chain: &ChainSpec,
        trigger: &Trigger,
        run: &mut machine::Run,
        mode: Mode,
        limits: FleetLimits,
    ) -> Result<Holding, RunEnd> {
        let mut holding = Holding {
            run_id: new_run_id(),
            fencing_token: None,
            heartbeat: None,
            fenced: None,
            tried: Vec::new(),
            silence: None,
        };
        if mode == Mode::DryRun {
            return Ok(holding);
        }
        let name = &chain.name;
        // Taken before the lease is: the holder's count of its lease starts no later than the
        // store's (see recovery::lease). The lease is in the store's clock, the one every
        // replica compares it with.
        let leased_at = tokio::time::Instant::now();
        let store_now = store.clock_ms().await.map_err(|e| self.no_store(e))?;
        let started = RunStart {
            id: &holding.run_id,
            chain: name,
            target: &trigger.target,
            subject: &trigger.subject,
            trigger: trigger.kind.as_str(),
            started_ms: clock(),
            owner: &self.owner,
            lease_until_ms: store_now + LEASE.as_millis() as i64,
            labels_json: action::labels_json(&trigger.values.labels),
        };
        match store.begin_run_within(&started, &limits).await {
            Ok(Begun::Started(token)) => holding.fencing_token = Some(token),
            Ok(Begun::AlreadyRunning) => return Err(RunEnd::AlreadyRunning),
            Ok(Begun::Held(reason)) => return Err(RunEnd::Held(reason)),
            Err(e) => return Err(self.no_store(e)),
        }
        let refreshed = match store.step_states(name, &trigger.subject).await {
            Ok(fresh) => run.refresh(chain, fresh, clock()),
            Err(e) => {
                let _ = store.discard_run(&holding.run_id).await;
                return Err(self.no_store(e));
            }
        };
        if let Err(n) = refreshed {
            let _ = store.discard_run(&holding.run_id).await;
            return Err(RunEnd::NothingToRun {
                next_possible_ms: n.next_possible_ms,
            });
        }
        tracing::info!(run = %holding.run_id, target = %trigger.target, trigger = trigger.kind.as_str(), "recovery run started");
        if let Some((reason, since_ms)) = trigger.held.filter(|(r, _)| *r != HoldReason::Settling) {
            let row = DecisionRow {
                run_id: &holding.run_id,
                at_ms: since_ms,
                step: None,
                kind: DecisionKind::Held,
                reason: Some(reason.as_str()),
                until_ms: None,
                attempt_id: None,
                detail: None,
            };
            record_decision(store, &self.metrics, row).await;
        }
        // Alertmanager: "someone is on it" while the run heals (not in shadow mode, which
        // changes nothing anywhere).
        if mode == Mode::Act {
            holding.silence = self
                .actions
                .alertmanager()
                .and_then(|am| am.run_started(&holding.run_id, chain, trigger));
        }
        holding.heartbeat = Some(Heartbeat::start(
            store.clone(),
            holding.run_id.clone(),
            leased_at,
            self.metrics.clone(),
        ));
        Ok(holding)
    }

    /// Ends the run in the store, resets the counters of the steps after the one that fixed
    /// it, and starts the subject's healthy period.
    async fn close(
        &self,
        store: &Store,
        chain: &ChainSpec,
        trigger: &Trigger,
        mut holding: Holding,
        end: machine::RunEnd,
    ) -> RunEnd {
        let name = &chain.name;
        let outcome = end.outcome;
        // No more renewals: the run is over, one way or the other.
        holding.heartbeat = None;
        if !end.reset_steps.is_empty() {
            if let Err(e) = store
                .reset_counters(name, &trigger.subject, Some(&end.reset_steps))
                .await
            {
                self.metrics.store_error(e.operation());
            }
        }
        let end_ms = clock();
        let run_id = &holding.run_id;
        if holding.fenced.is_some() {
            lease::when_store_back("the fenced run's end", || {
                store.end_run(run_id, end_ms, outcome.as_str())
            })
            .await;
        } else if let Err(e) = store.end_run(run_id, end_ms, outcome.as_str()).await {
            self.metrics.store_error(e.operation());
        }
        // Alertmanager: the run is over, whatever its outcome; an alert still firing reaches
        // people at once.
        if let Some(silence) = holding.silence.take() {
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

    fn no_store(&self, e: crate::store::StoreError) -> RunEnd {
        self.metrics.store_error(e.operation());
        RunEnd::NoStore
    }
}

/// What the engine holds while a run lasts, besides the machine's decisions.
struct Holding {
    run_id: String,
    fencing_token: Option<i64>,
    /// Renews the lease; `None` in a dry run and once the run ends.
    heartbeat: Option<Heartbeat>,
    /// Set once the run could not renew its lease: it stops acting at once.
    fenced: Option<Fenced>,
    /// What was tried so far, for notifications.
    tried: Vec<TriedStep>,
    /// The Alertmanager silence of an alert routed with `silence:`, while the run lasts.
    silence: Option<crate::am_api::SilenceGuard>,
}

/// One run being carried out: the IO side of each decision.
struct Carry<'a, 'c, 'r> {
    engine: &'a Engine,
    store: &'a Store,
    chain: &'a ChainSpec,
    trigger: &'a Trigger,
    control: &'a mut RunControl<'c>,
    report: &'a mut (dyn FnMut(StepReport) + Send + 'r),
    holding: &'a mut Holding,
}

impl Carry<'_, '_, '_> {
    fn signals(&mut self) -> Signals {
        if self.holding.fenced.is_none() {
            self.holding.fenced = self
                .holding
                .heartbeat
                .as_ref()
                .and_then(Heartbeat::fenced_now);
        }
        Signals {
            resolved: self.control.resolved.is_set(),
            cancelled: *self.control.cancel.borrow(),
            fenced: self.holding.fenced.is_some(),
        }
    }

    async fn skipped(&mut self, index: usize, reason: SkipReason, until_ms: Option<i64>) {
        let step = &self.chain.steps[index];
        if !self.control.dry_run {
            record_decision(
                self.store,
                &self.engine.metrics,
                DecisionRow {
                    run_id: &self.holding.run_id,
                    at_ms: clock(),
                    step: Some(&step.name),
                    kind: DecisionKind::Skipped,
                    reason: Some(reason.as_str()),
                    until_ms,
                    attempt_id: None,
                    detail: None,
                },
            )
            .await;
        }
        self.engine
            .metrics
            .recovery_skipped(&self.chain.name, &step.name, reason.as_str());
        (self.report)(StepReport::Skipped {
            step: step.name.clone(),
            reason,
        });
    }

    fn would_run(&mut self, index: usize) {
        let step = &self.chain.steps[index];
        let action = match action::render(step, &self.chain.name, &self.context()) {
            Ok(r) => r.to_string(),
            Err(e) => format!("would fail: {e}"),
        };
        self.engine.metrics.recovery_skipped(
            &self.chain.name,
            &step.name,
            SkipReason::DryRun.as_str(),
        );
        (self.report)(StepReport::WouldRun {
            step: step.name.clone(),
            action,
        });
    }

    /// Shadow mode: the step that would run is recorded with result `shadow`; nothing runs.
    async fn shadow(&mut self, index: usize) {
        let chain = self.chain;
        let step = &chain.steps[index];
        let shown = match action::render(step, &chain.name, &self.context()) {
            Ok(r) => r.to_string(),
            Err(e) => format!("would fail: {e}"),
        };
        let message = format!("shadow: would run {shown}");
        let start = AttemptStart {
            run_id: &self.holding.run_id,
            chain: &chain.name,
            step: &step.name,
            subject: &self.trigger.subject,
            target: &self.trigger.target,
            trigger: self.trigger.kind.as_str(),
            started_ms: clock(),
        };
        match self.store.record_shadow_attempt(&start, &message).await {
            Ok(attempt_id) => {
                record_decision(
                    self.store,
                    &self.engine.metrics,
                    DecisionRow {
                        run_id: &self.holding.run_id,
                        at_ms: start.started_ms,
                        step: Some(&step.name),
                        kind: DecisionKind::Shadow,
                        reason: None,
                        until_ms: None,
                        attempt_id: Some(attempt_id),
                        detail: Some(&message),
                    },
                )
                .await
            }
            Err(e) => self.engine.metrics.store_error(e.operation()),
        }
        self.engine.metrics.recovery_shadow(&chain.name, &step.name);
        tracing::info!(step = %step.name, action = %shown, "shadow mode: step recorded, not run");
        (self.report)(StepReport::Ran {
            step: step.name.clone(),
            action: shown,
            result: AttemptResult::Shadow,
            message,
            seconds: 0.0,
        });
    }

    fn context(&self) -> ActionContext<'_> {
        ActionContext {
            values: &self.trigger.values,
            trigger: self.trigger.kind.as_str(),
            target: &self.trigger.target,
            message: &self.trigger.message,
            tried: &self.holding.tried,
            fencing_token: self.holding.fencing_token,
            run_id: &self.holding.run_id,
            subject: &self.trigger.subject,
        }
    }

    /// One attempt of step `index`: record it, run its action, verify the fix, and feed each
    /// result back to the machine. Nothing runs that could not be recorded: after a crash its
    /// cooldown would be unknown.
    async fn act(&mut self, run: &mut machine::Run, index: usize) {
        let chain = self.chain;
        let step = &chain.steps[index];
        *self
            .control
            .current_step
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = step.name.clone();
        let rendered = action::render(step, &chain.name, &self.context());
        let start = AttemptStart {
            run_id: &self.holding.run_id,
            chain: &chain.name,
            step: &step.name,
            subject: &self.trigger.subject,
            target: &self.trigger.target,
            trigger: self.trigger.kind.as_str(),
            started_ms: clock(),
        };
        let attempt_id = match self.store.begin_attempt(&start).await {
            Ok(id) => Some(id),
            Err(e) => {
                self.engine.metrics.store_error(e.operation());
                None
            }
        };
        let started = tokio::time::Instant::now();
        let span = tracing::info_span!("step", step = %step.name);
        let (outcome, shown) = async {
            match (&rendered, attempt_id) {
                (Err(e), _) => (
                    ActionOutcome::failure(format!("not run: {e}")),
                    step.action.kind().to_string(),
                ),
                (Ok(r), None) => (
                    ActionOutcome::failure("not run: the state store could not record the attempt"),
                    r.to_string(),
                ),
                (Ok(r), Some(id)) => (self.run_and_verify(run, r, id, index).await, r.to_string()),
            }
        }
        .instrument(span)
        .await;
        let ran = rendered.is_ok() && attempt_id.is_some();
        if !ran {
            run.action_finished(chain, ActionResult::NotRun, self.signals(), clock());
        }
        let seconds = started.elapsed().as_secs_f64();
        self.record_end(attempt_id, &outcome, seconds).await;
        self.learn_and_report(step, outcome, shown, seconds, ran)
            .await;
    }

    /// Runs the action (its group recorded while it runs) and, when the machine asks, the
    /// verification; both stop at shutdown and at a lost lease.
    async fn run_and_verify(
        &mut self,
        run: &mut machine::Run,
        rendered: &Rendered,
        attempt_id: i64,
        index: usize,
    ) -> ActionOutcome {
        let chain = self.chain;
        let step = &chain.steps[index];
        let (on_spawn, spawned) = oneshot::channel();
        let mut cancel = self.control.cancel.clone();
        let action = async {
            let (outcome, ()) = tokio::join!(
                until_cancelled(
                    &mut cancel,
                    self.engine
                        .actions
                        .run(rendered, step.timeout.std(), Some(on_spawn))
                ),
                record_group(self.store, attempt_id, spawned, &self.engine.metrics),
            );
            outcome
        };
        let mut outcome = self.fenced_or(action).await;
        let result = match outcome.result {
            AttemptResult::Success => ActionResult::Success,
            AttemptResult::Timeout => ActionResult::Timeout,
            AttemptResult::Failure | AttemptResult::Shadow => ActionResult::Failure,
        };
        if run
            .action_finished(chain, result, self.signals(), clock())
            .is_some()
        {
            return outcome;
        }
        let Some(check) = self.trigger.verify_check.clone() else {
            return outcome;
        };
        let resolved = self.control.resolved;
        let verifier = &self.engine.verifier;
        let timeout = chain.verify_timeout.std();
        let mut cancel = self.control.cancel.clone();
        let waiting = async {
            tokio::select! {
                verdict = verifier.verify(&check, timeout) => match verdict {
                    Ok(()) => (Verification::Healthy, format!("verified: {check} healthy")),
                    Err(why) => (Verification::NotHealthy, format!("not verified: {why}")),
                },
                _ = resolved.notify.notified() => (Verification::AlertResolved, "the alert resolved".to_string()),
                _ = cancel.wait_for(|c| *c) => (Verification::Interrupted, "cancelled: medic is shutting down".to_string()),
            }
        };
        let (found, note) = match self.holding.heartbeat.as_ref() {
            Some(hb) => hb.guard(waiting).await.unwrap_or_else(|f| {
                self.holding.fenced = Some(f);
                (Verification::Interrupted, f.message())
            }),
            None => waiting.await,
        };
        if let Some(end) = run.verified(chain, found) {
            outcome.result = end.result;
        }
        outcome.message = format!("{}; {note}", outcome.message);
        outcome
    }

    /// Runs `work` under the lease: when the run is fenced its future is dropped, which kills
    /// the step's process group before anything else happens.
    async fn fenced_or(
        &mut self,
        work: impl std::future::Future<Output = ActionOutcome>,
    ) -> ActionOutcome {
        match self.holding.heartbeat.as_ref() {
            Some(hb) => hb.guard(work).await.unwrap_or_else(|f| {
                self.holding.fenced = Some(f);
                ActionOutcome::failure(f.message())
            }),
            None => work.await,
        }
    }

    async fn record_end(&mut self, attempt_id: Option<i64>, outcome: &ActionOutcome, seconds: f64) {
        let Some(id) = attempt_id else {
            return;
        };
        let end = AttemptEnd {
            finished_ms: clock(),
            result: outcome.result.as_str(),
            message: outcome.message.clone(),
            exit_code: outcome.exit_code,
            output: outcome.output.clone(),
            duration_seconds: seconds,
        };
        let store = self.store;
        if self.holding.fenced.is_some() {
            // The store is what was lost: wait for it, so that the record says what happened
            // (it overrides "interrupted" from a replica that took over).
            lease::when_store_back("the fenced attempt", || store.end_attempt(id, &end)).await;
        } else if let Err(e) = store.end_attempt(id, &end).await {
            self.engine.metrics.store_error(e.operation());
        }
    }

    async fn learn_and_report(
        &mut self,
        step: &StepSpec,
        outcome: ActionOutcome,
        shown: String,
        seconds: f64,
        ran: bool,
    ) {
        let name = &self.chain.name;
        let metrics = &self.engine.metrics;
        metrics.recovery_attempt(name, &step.name, outcome.result.as_str(), seconds);
        tracing::info!(
            step = %step.name,
            action = %shown,
            result = outcome.result.as_str(),
            detail = %outcome.message,
            seconds,
            "recovery step finished"
        );
        let stopped = self.signals();
        let learns = ran
            && !is_notification(step)
            && !(stopped.fenced || (stopped.cancelled && outcome.result != AttemptResult::Success));
        if learns {
            let success = outcome.result == AttemptResult::Success;
            match self.store.learn(name, &step.name, success, clock()).await {
                Ok(v) => metrics.recovery_effectiveness(name, &step.name, v),
                Err(e) => metrics.store_error(e.operation()),
            }
        }
        (self.report)(StepReport::Ran {
            step: step.name.clone(),
            action: shown,
            result: outcome.result,
            message: outcome.message.clone(),
            seconds,
        });
        self.holding.tried.push(TriedStep {
            step: step.name.clone(),
            result: outcome.result.as_str().to_string(),
            message: outcome.message,
        });
    }
}

/// Writes one decision of the run's audit; a failure costs the audit line, not the run.
async fn record_decision(store: &Store, metrics: &Metrics, row: DecisionRow<'_>) {
    if let Err(e) = store.record_decision(&row).await {
        metrics.store_error(e.operation());
    }
}

/// The one clock of recovery: every decision gets `now` from here, at the edge.
fn clock() -> i64 {
    now_ms()
}

/// A notification or an escalation fixes nothing: it is neither verified nor learned from.
fn is_notification(step: &StepSpec) -> bool {
    step.action.fixes_nothing()
}

/// `work`, or a failure that says medic is shutting down.
async fn until_cancelled(
    cancel: &mut watch::Receiver<bool>,
    work: impl std::future::Future<Output = ActionOutcome>,
) -> ActionOutcome {
    tokio::select! {
        outcome = work => outcome,
        _ = cancel.wait_for(|c| *c) => ActionOutcome::failure("cancelled: medic is shutting down"),
    }
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
    /// A check turned critical, or stopped being critical (any check: the circuit breaker
    /// counts them all).
    CheckCritical {
        check: String,
        critical: bool,
    },
    /// Every enabled check and which of them are critical, after a (re)load.
    Census {
        enabled: usize,
        critical: Vec<String>,
    },
    /// The active pauses, whenever they change (made, ended, expired, or seen from the store).
    Pauses(Vec<Pause>),
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
    /// Held back by a limit, the open circuit, a maintenance window or a pause; it starts
    /// when the hold lifts if it still needs healing.
    Held(HoldReason),
}

/// The webhook's answer: what was started, coalesced or unrouted.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct WebhookSummary {
    pub received: usize,
    pub started: Vec<AlertRef>,
    pub coalesced: Vec<AlertRef>,
    pub blocked: Vec<AlertRef>,
    pub held: Vec<AlertRef>,
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
    trigger: Trigger,
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
        held: Held::new(MAX_HELD),
        critical: HashSet::new(),
        enabled_checks: 0,
        starts: VecDeque::new(),
        pauses: None,
        circuit_open: false,
        circuit_closed_ms: 0,
        windows_open: BTreeMap::new(),
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
    /// Triggers a hold keeps back, one per subject, oldest first.
    held: Held<Trigger>,
    /// Enabled checks that are critical now, and how many checks are enabled: the circuit.
    critical: HashSet<String>,
    enabled_checks: usize,
    /// When this process started its recent runs, for `max_runs` (the store decides for the
    /// fleet).
    starts: VecDeque<i64>,
    /// None until the store's pauses are known: nothing starts before.
    pauses: Option<Vec<Pause>>,
    circuit_open: bool,
    /// When the circuit last closed: a check trigger waits its settling time past it, so the
    /// checks recovering together have all been probed before anything is healed.
    circuit_closed_ms: i64,
    windows_open: BTreeMap<String, bool>,
}

/// Held triggers kept at most; past this the oldest is dropped (and logged).
const MAX_HELD: usize = 10_000;
/// How often holds are looked at again: windows close, pauses end, the rate window slides.
const REVIEW: Duration = Duration::from_secs(1);

impl Manager {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<Event>,
        mut done_rx: mpsc::Receiver<Finished>,
    ) {
        let mut sweep = tokio::time::interval(ABANDONED_SWEEP);
        let mut review = tokio::time::interval(REVIEW);
        review.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.register_chain_series(&BTreeMap::new());
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
                _ = review.tick() => self.review(),
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
            Event::CheckCritical { check, critical } => {
                if critical {
                    self.critical.insert(check);
                } else {
                    self.critical.remove(&check);
                }
                self.review();
            }
            Event::Census { enabled, critical } => {
                self.enabled_checks = enabled;
                self.critical = critical.into_iter().collect();
                self.review();
            }
            Event::Pauses(pauses) => {
                self.pauses = Some(pauses);
                self.review();
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
                let old = std::mem::replace(&mut self.config, new);
                self.register_chain_series(&old.chains);
                for window in &old.maintenance {
                    if !self
                        .config
                        .maintenance
                        .iter()
                        .any(|w| w.name == window.name)
                    {
                        self.engine.metrics.forget_maintenance(&window.name);
                        self.windows_open.remove(&window.name);
                    }
                }
                self.blocked_until.clear();
                self.review();
                let current = self.store.borrow().clone();
                set_effectiveness_gauges(&self.engine, &self.config, current.as_ref()).await;
            }
        }
    }

    /// Starts a run for the trigger unless one is in progress, nothing could run, or a hold
    /// keeps it back (then it waits, one per subject, until the hold lifts).
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
        // Held already: a resend or a further probe joins it, counted once.
        if let Some(reason) = self.held.reason(&key.0, &key.1) {
            let (chain, subject) = key;
            self.held.offer(&chain, &subject, reason, trigger, clock());
            return Disposition::Held(reason);
        }
        if self
            .blocked_until
            .get(&key)
            .is_some_and(|until| clock() < *until)
        {
            return Disposition::Blocked;
        }
        if self.store.borrow().is_none() {
            tracing::warn!(chain = %trigger.chain, target = %trigger.target, "state store not open yet: recovery waits for it");
            return Disposition::NoStore;
        }
        let settle = hold::settle_ms(trigger.interval_ms, self.enabled_checks);
        if settle > 0 && trigger.held.is_none() {
            self.hold(trigger, HoldReason::Settling);
            return Disposition::Held(HoldReason::Settling);
        }
        if let Some(reason) = self.hold_reason(&trigger, clock()) {
            self.hold(trigger, reason);
            return Disposition::Held(reason);
        }
        self.start(trigger, chain)
    }

    /// What holds `trigger` back now, if anything.
    fn hold_reason(&self, trigger: &Trigger, now_ms: i64) -> Option<HoldReason> {
        let labels = trigger.hold_labels();
        let operator = OperatorHolds {
            paused: self
                .pauses
                .as_ref()
                .is_none_or(|p| pause::paused(p, &labels, now_ms)),
            in_maintenance: self
                .config
                .maintenance
                .iter()
                .any(|w| w.holds(&labels, now_ms)),
        };
        let active_in_chain = self
            .active
            .keys()
            .filter(|(chain, _)| *chain == trigger.chain)
            .count();
        let load = Load {
            active: self.active.len(),
            active_in_chain,
            critical_checks: self.critical.len(),
            enabled_checks: self.enabled_checks,
        };
        let starts: Vec<i64> = self.starts.iter().copied().collect();
        let reason = hold::hold_reason(
            &self.config.limits,
            &trigger.chain,
            operator,
            load,
            &starts,
            Origin::Automatic,
            now_ms,
        );
        // Just closed: still open for a trigger until its checks have settled.
        let settle = hold::settle_ms(trigger.interval_ms, self.enabled_checks);
        let closing = settle > 0 && now_ms < self.circuit_closed_ms.saturating_add(settle);
        match reason {
            None | Some(HoldReason::Rate | HoldReason::Concurrency) if closing => {
                Some(HoldReason::CircuitOpen)
            }
            other => other,
        }
    }

    fn hold(&mut self, trigger: Trigger, reason: HoldReason) {
        if reason != HoldReason::Settling {
            self.engine.metrics.recovery_held(&trigger.chain, reason);
        }
        let (chain, subject) = (trigger.chain.clone(), trigger.subject.clone());
        match self.held.offer(&chain, &subject, reason, trigger, clock()) {
            Offered::Held => {
                tracing::info!(chain = %chain, subject = %subject, reason = reason.as_str(), "recovery held")
            }
            Offered::Coalesced => {}
            Offered::Evicted(old) => tracing::warn!(
                chain = %old.chain,
                subject = %old.subject,
                "too many held recovery triggers: the oldest was dropped"
            ),
        }
    }

    /// Looks at every hold again: gauges, then held triggers oldest first. One that no
    /// longer needs healing is dropped; one whose hold lifted starts; a shared limit (the
    /// circuit, the rate, concurrency) lets nothing younger overtake the oldest.
    fn review(&mut self) {
        let now = clock();
        let circuit = hold::circuit_open(
            self.config.limits.max_unhealthy,
            self.critical.len(),
            self.enabled_checks,
        );
        if circuit != self.circuit_open {
            tracing::warn!(
                open = circuit,
                critical = self.critical.len(),
                enabled = self.enabled_checks,
                "recovery circuit breaker changed"
            );
            self.circuit_open = circuit;
            if !circuit {
                self.circuit_closed_ms = now;
            }
        }
        self.engine.metrics.recovery_circuit_open(circuit);
        for window in &self.config.maintenance {
            let open = window.is_open(now);
            if self.windows_open.insert(window.name.clone(), open) != Some(open) {
                tracing::info!(window = %window.name, open, "maintenance window");
            }
            self.engine.metrics.maintenance_active(&window.name, open);
        }
        let within = self.config.limits.max_runs.map_or(0, |r| r.within_ms);
        while self.starts.front().is_some_and(|t| *t <= now - within) {
            self.starts.pop_front();
        }
        self.release_held(now);
        self.engine
            .metrics
            .recovery_held_now(self.held.len(), self.held.oldest_since_ms());
    }

    fn release_held(&mut self, now_ms: i64) {
        let waiting: Vec<(String, String)> = self
            .held
            .iter()
            .map(|e| (e.chain.clone(), e.subject.clone()))
            .collect();
        // Once the oldest is held by a shared limit, nothing younger may overtake it: the rest
        // are only told why they wait.
        let mut blocked: Option<HoldReason> = None;
        for (chain, subject) in waiting {
            let Some(entry) = self
                .held
                .iter()
                .find(|e| e.chain == chain && e.subject == subject)
            else {
                continue;
            };
            let trigger = &entry.item;
            let still_needed = self.config.chains.contains_key(&chain)
                && match (trigger.kind, &trigger.values.check) {
                    (TriggerKind::Check, Some(check)) => self.critical.contains(check),
                    _ => true,
                };
            if !still_needed {
                self.held.remove(&chain, &subject);
                tracing::info!(chain = %chain, subject = %subject, "held recovery dropped: no longer needed");
                continue;
            }
            let (held_for, since_ms) = (entry.reason, entry.since_ms);
            if held_for == HoldReason::Settling
                && now_ms < since_ms + hold::settle_ms(trigger.interval_ms, self.enabled_checks)
            {
                continue;
            }
            let reason = self.hold_reason(trigger, now_ms);
            let reason = match (reason, blocked) {
                (None, Some(shared)) => Some(shared),
                (reason, _) => reason,
            };
            let Some(reason) = reason else {
                if let Some(entry) = self.held.remove(&chain, &subject) {
                    let mut trigger = entry.item;
                    // Settled and free: started as if it had just come.
                    trigger.held = Some((entry.reason, entry.since_ms));
                    let _ = self.accept(trigger);
                }
                continue;
            };
            if reason != held_for {
                // Settled into a real hold, or held for another reason now: counted, as any
                // trigger held.
                self.engine.metrics.recovery_held(&chain, reason);
                self.held.set_reason(&chain, &subject, reason);
            }
            if !matches!(reason, HoldReason::Paused | HoldReason::Maintenance) {
                blocked.get_or_insert(reason);
            }
        }
    }

    /// Makes every chain's held and active series exist, and drops those of removed chains.
    fn register_chain_series(&self, old: &BTreeMap<String, Arc<ChainSpec>>) {
        for name in old.keys() {
            if !self.config.chains.contains_key(name) {
                self.engine.metrics.forget_chain(name);
            }
        }
        for name in self.config.chains.keys() {
            self.engine.metrics.recovery_chain(name);
        }
    }

    fn set_active_gauge(&self, chain: &str) {
        let n = self.active.keys().filter(|(c, _)| c == chain).count();
        self.engine.metrics.recovery_runs_active(chain, n);
    }

    fn start(&mut self, trigger: Trigger, chain: Arc<ChainSpec>) -> Disposition {
        let key = (trigger.chain.clone(), trigger.subject.clone());
        let Some(store) = self.store.borrow().clone() else {
            return Disposition::NoStore;
        };
        self.starts.push_back(clock());
        let limits = FleetLimits {
            max_concurrent_runs: self.config.limits.max_concurrent_runs,
            chain_max_concurrent_runs: self.config.limits.per_chain.get(&chain.name).copied(),
            max_runs: self.config.limits.max_runs,
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
        self.set_active_gauge(&chain.name);
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
                    limits,
                };
                let end = engine
                    .run(&store, &chain, &trigger, &mut control, &mut |_| {})
                    .await;
                let _ = done_tx.send(Finished { trigger, end }).await;
            }
            .instrument(span),
        );
        Disposition::Started
    }

    async fn healthy(&mut self, chain: String, subject: String, at_ms: i64) {
        self.blocked_until.remove(&(chain.clone(), subject.clone()));
        if self.held.remove(&chain, &subject).is_some() {
            tracing::info!(chain = %chain, subject = %subject, "held recovery dropped: healthy again");
        }
        // Alertmanager: the subject's escalations resolve.
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
                held: None,
                interval_ms: 0,
            };
            match self.accept(trigger) {
                Disposition::Started => summary.started.push(reference),
                Disposition::Coalesced => summary.coalesced.push(reference),
                Disposition::Held(_) => summary.held.push(reference),
                Disposition::Blocked | Disposition::NoStore | Disposition::UnknownChain => {
                    summary.blocked.push(reference)
                }
            }
        }
        summary
    }

    fn finished(&mut self, done: Finished) {
        let key = (done.trigger.chain.clone(), done.trigger.subject.clone());
        self.active.remove(&key);
        self.set_active_gauge(&key.0);
        match done.end {
            // The store held it for the fleet (another replica's runs count too).
            RunEnd::Held(reason) => self.hold(done.trigger, reason),
            // Nothing ran and nothing will change by trying again before the subject is
            // healthy: one shadow run per incident.
            RunEnd::Finished {
                outcome: RunOutcome::Shadow,
            } => {
                self.blocked_until.insert(key, i64::MAX);
            }
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
        // A run slot is free: the oldest held trigger may go.
        self.review();
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
