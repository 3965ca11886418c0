//! Carrying out one run: the engine asks [`machine::Run`] what to do, does it against the
//! store and the actions (recording before acting), and feeds each result back. It reads the
//! clock in two places, each handing `now` inward: once per decision, and when an action ends.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, watch};
use tracing::Instrument;

use super::action::{
    self, ActionContext, ActionOutcome, Actions, AttemptResult, Rendered, TriedStep,
};
use super::chain::{self, SkipReason};
use super::gate::HoldReason;
use super::lease::{self, Fenced, LeaseKeeper, LEASE};
use super::machine::{self, ActionResult, Decision, Mode, Signals, Verification};
use super::trigger::Trigger;
use super::verify::Verifier;
use crate::clock::Now;
use crate::config::{ChainSpec, StepSpec};
use crate::metrics::Metrics;
use crate::process_group;
use crate::store::{
    AttemptEnd, AttemptStart, Begun, DecisionKind, DecisionRow, FleetLimits, Incident, RunStart,
    Store,
};
use crate::timefmt::rfc3339_ms;
use crate::vocabulary::{SkippedStep, TriggerKind};

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
    /// `--cluster.shard auto`: this replica's membership is not current, or the check is
    /// another replica's now; its owner decides.
    NotOwned,
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
        /// The tail of what the action printed or answered.
        output: String,
    },
}

/// Set when the alert that started a run resolves: a waiting run then ends recovered. A
/// watch rather than a notification, so a resolution that comes before anyone waits is kept.
pub struct Resolved {
    flag: watch::Sender<bool>,
}

impl Default for Resolved {
    fn default() -> Self {
        Resolved {
            flag: watch::channel(false).0,
        }
    }
}

impl Resolved {
    pub fn resolve(&self) {
        self.flag.send_replace(true);
    }

    pub fn is_set(&self) -> bool {
        *self.flag.borrow()
    }

    /// Returns once resolved (at once if it already is).
    async fn wait(&self) {
        let mut flag = self.flag.subscribe();
        let _ = flag.wait_for(|resolved| *resolved).await;
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
    /// The checks a failing dependency blocks now: an escalation from a root's chain names
    /// the dependents it blocks.
    pub blocked: watch::Receiver<Arc<crate::dependencies::BlockedMap>>,
    /// The cluster as this replica sees it (`--cluster.shard auto`): a replica whose
    /// membership lapsed starts nothing, and one never starts a run for a check it does not
    /// own.
    pub cluster: Option<watch::Receiver<Arc<crate::cluster::ClusterView>>>,
}

impl Engine {
    /// Whether this replica may start a run for `trigger` now (always, outside a cluster).
    /// Alerts come to whichever replica Alertmanager picks: only a current membership counts
    /// for them; a check's run is started by its owner.
    fn may_start(&self, trigger: &Trigger) -> bool {
        let Some(cluster) = &self.cluster else {
            return true;
        };
        let check = match trigger.kind {
            TriggerKind::Check => trigger.verify_check.as_deref(),
            TriggerKind::Alert | TriggerKind::Manual => None,
        };
        cluster
            .borrow()
            .may_start(check, tokio::time::Instant::now())
    }

    /// How many replicas see the run's check critical now, for steps with `confirm:`. In a
    /// cluster: the live members whose latest result the store holds as critical, this
    /// replica counted when a critical probe of its own started the run (its mark may not be
    /// written yet). Outside one this replica is the only vantage point. `u32::MAX` when no
    /// step asks.
    async fn critical_replicas(&self, store: &Store, chain: &ChainSpec, trigger: &Trigger) -> u32 {
        if chain.steps.iter().all(|s| s.confirm.is_none()) {
            return u32::MAX;
        }
        let Some(check) = trigger.verify_check.as_deref() else {
            return 0;
        };
        if self.cluster.is_none() {
            return 1;
        }
        match store
            .critical_members(check, crate::cluster::GONE_AFTER_MS)
            .await
        {
            Ok(members) => {
                let mine = trigger.kind == TriggerKind::Check && !members.contains(&self.owner);
                u32::try_from(members.len()).unwrap_or(u32::MAX) + u32::from(mine)
            }
            Err(e) => {
                self.metrics.store_error(e.operation());
                0
            }
        }
    }

    /// Whether this replica's membership is current (always, outside a cluster): a run whose
    /// replica lost the store is fenced as one that lost its lease.
    fn standing(&self) -> bool {
        self.cluster
            .as_ref()
            .is_none_or(|c| c.borrow().standing(tokio::time::Instant::now()))
    }

    /// Runs `chain` for `trigger` to its end. `report` hears about every step.
    ///
    /// The engine only carries out what [`machine::Run`] decides: it reads the store, asks the
    /// machine, records before acting, runs the action, verifies, and feeds each result back
    /// with the time it came back at.
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
        if mode != Mode::DryRun && !self.may_start(trigger) {
            return RunEnd::NotOwned;
        }
        // Read before the store is: the lease's count starts no later than the store's.
        let opened = Now::read();
        let mut run = match self.open(store, chain, trigger, mode, opened).await {
            Ok(run) => run,
            Err(end) => return end,
        };
        let limits = control.limits;
        let mut holding = match self
            .hold(store, chain, trigger, &mut run, mode, limits, opened)
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
            now: opened,
            attempt: None,
        };
        let confirms = chain.steps.iter().any(|s| s.confirm.is_some());
        loop {
            carry.now = Now::read();
            carry.settle(&mut run).await;
            if confirms {
                run.confirmations(self.critical_replicas(store, chain, trigger).await);
            }
            let mut signals = carry.signals();
            if let Some(check) = carry.check_between_steps() {
                signals.healthy = self.verifier.healthy_now(check).await;
            }
            match run.next(chain, signals, carry.now.wall_ms) {
                Decision::Skip {
                    index,
                    reason,
                    until_ms,
                } => carry.skipped(index, reason, until_ms).await,
                Decision::WouldRun { index } => carry.would_run(index),
                Decision::Shadow { index } => carry.shadow(index).await,
                Decision::Act { index } => carry.act(index).await,
                Decision::Verify { index, deadline_ms } => carry.verify(index, deadline_ms).await,
                Decision::End(end) => {
                    let now = carry.now;
                    return match mode {
                        Mode::DryRun => RunEnd::Finished {
                            outcome: end.outcome,
                        },
                        Mode::Act | Mode::Shadow => {
                            self.close(store, chain, trigger, holding, end, now).await
                        }
                    };
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
        now: Now,
    ) -> Result<machine::Run, RunEnd> {
        let name = &chain.name;
        if mode == Mode::Act {
            let since = store
                .healthy_since(name, &trigger.subject)
                .await
                .map_err(|e| self.no_store(e))?;
            let preflight = machine::preflight(chain, since, now.wall_ms);
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
        let opening = machine::Opening {
            mode,
            verifies: trigger.verify_check.is_some(),
            critical_replicas: self.critical_replicas(store, chain, trigger).await,
        };
        match machine::Run::open_with(chain, states, &effectiveness, opening, now.wall_ms) {
            Ok(run) => Ok(run),
            Err(nothing) => {
                if mode == Mode::Act {
                    self.unavailable(store, chain, trigger, &nothing, now).await;
                }
                Err(RunEnd::NothingToRun {
                    next_possible_ms: nothing.next_possible_ms,
                })
            }
        }
    }

    /// An incident that finds nothing to try leaves a trace: a run with outcome `unavailable`
    /// and each step's reason, once per incident (the store decides, for every replica).
    /// Manual runs say so to the operator instead.
    async fn unavailable(
        &self,
        store: &Store,
        chain: &ChainSpec,
        trigger: &Trigger,
        nothing: &machine::NothingToRun,
        now: Now,
    ) {
        if trigger.kind == TriggerKind::Manual {
            return;
        }
        let run_id = new_run_id(now.wall_ms);
        let run = RunStart {
            id: &run_id,
            chain: &chain.name,
            target: &trigger.target,
            subject: &trigger.subject,
            trigger: trigger.kind.as_str(),
            started_ms: now.wall_ms,
            owner: &self.owner,
            lease_until_ms: now.wall_ms,
            labels_json: action::labels_json(&trigger.values.labels),
        };
        match store
            .record_unavailable_run(&run, &incident(trigger), &nothing.skips)
            .await
        {
            Ok(true) => {
                self.metrics
                    .recovery_run(&chain.name, trigger.kind, RunOutcome::Unavailable);
                let next = nothing
                    .next_possible_ms
                    .map_or_else(|| "after counters reset".to_string(), rfc3339_ms);
                let reasons: Vec<&str> = nothing.skips.iter().map(|s| s.reason.as_str()).collect();
                tracing::warn!(run = %run_id, target = %trigger.target, next_possible = %next, reasons = %reasons.join(","), "recovery unavailable: no step may run now (cooldown, max_attempts or unconfirmed)");
            }
            Ok(false) => {}
            Err(e) => self.metrics.store_error(e.operation()),
        }
    }

    /// Takes the run in the store (one per subject, under a lease), then reads the counters
    /// again: a replica may have run the same steps between the first read and here.
    #[allow(clippy::too_many_arguments)]
    async fn hold(
        &self,
        store: &Store,
        chain: &ChainSpec,
        trigger: &Trigger,
        run: &mut machine::Run,
        mode: Mode,
        limits: FleetLimits,
        now: Now,
    ) -> Result<Holding, RunEnd> {
        let mut holding = Holding::new(new_run_id(now.wall_ms));
        if mode == Mode::DryRun {
            return Ok(holding);
        }
        let name = &chain.name;
        // The lease is in the store's clock, the one every replica compares it with.
        let store_now = store.clock_ms().await.map_err(|e| self.no_store(e))?;
        let started = RunStart {
            id: &holding.run_id,
            chain: name,
            target: &trigger.target,
            subject: &trigger.subject,
            trigger: trigger.kind.as_str(),
            started_ms: now.wall_ms,
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
            Ok(fresh) => run
                .refresh(chain, fresh, now.wall_ms)
                .map_err(|n| RunEnd::NothingToRun {
                    next_possible_ms: n.next_possible_ms,
                }),
            Err(e) => Err(self.no_store(e)),
        };
        // What this incident's earlier runs tried, for an escalation's account.
        if refreshed.is_ok() && mode == Mode::Act {
            match store
                .incident_attempts(&incident(trigger), &holding.run_id)
                .await
            {
                Ok(tried) => holding.tried = tried,
                Err(e) => self.metrics.store_error(e.operation()),
            }
        }
        if let Err(end) = refreshed {
            // Taken but it cannot go on: given back, and nothing ran.
            let _ = store.discard_run(&holding.run_id).await;
            return Err(end);
        }
        tracing::info!(run = %holding.run_id, target = %trigger.target, trigger = trigger.kind.as_str(), "recovery run started");
        self.audit_held(store, trigger, &holding.run_id).await;
        // Alertmanager: "someone is on it" while the run heals (not in shadow mode, which
        // changes nothing anywhere).
        if mode == Mode::Act {
            holding.silence = self
                .actions
                .alertmanager()
                .filter(|_| trigger.kind == TriggerKind::Alert)
                .and_then(|am| am.run_started(&holding.run_id, chain, &trigger.values));
        }
        holding.lease = Some(LeaseKeeper::start(
            store.clone(),
            holding.run_id.clone(),
            now.mono,
            self.metrics.clone(),
        ));
        Ok(holding)
    }

    /// A trigger that waited behind a hold says so in its run's audit, with since when.
    async fn audit_held(&self, store: &Store, trigger: &Trigger, run_id: &str) {
        let Some((reason, since_ms)) = trigger.held.filter(|(r, _)| *r != HoldReason::Settling)
        else {
            return;
        };
        let detail = (!trigger.held_by.is_empty())
            .then(|| format!("blocked by {}", trigger.held_by.join(", ")));
        let row = DecisionRow {
            run_id,
            at_ms: since_ms,
            step: None,
            kind: DecisionKind::Held,
            reason: Some(reason.as_str()),
            until_ms: None,
            attempt_id: None,
            detail: detail.as_deref(),
        };
        record_decision(store, &self.metrics, row).await;
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
        now: Now,
    ) -> RunEnd {
        let name = &chain.name;
        let outcome = end.outcome;
        // No more renewals: the run is over, one way or the other.
        holding.lease = None;
        if !end.reset_steps.is_empty() {
            if let Err(e) = store
                .reset_counters(name, &trigger.subject, Some(&end.reset_steps))
                .await
            {
                self.metrics.store_error(e.operation());
            }
        }
        let end_ms = now.wall_ms;
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
        self.metrics.recovery_run(name, trigger.kind, outcome);
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
    lease: Option<LeaseKeeper>,
    /// Set once the run could not renew its lease: it stops acting at once.
    fenced: Option<Fenced>,
    /// What was tried for this incident so far, in earlier runs and this one, for
    /// notifications and escalations.
    tried: Vec<TriedStep>,
    /// The steps this run skipped, and until when.
    skipped: Vec<SkippedStep>,
    /// The checks the run's check blocks now (it is their root), read before each step.
    blocked_dependents: Vec<String>,
    /// The Alertmanager silence of an alert routed with `silence:`, while the run lasts.
    silence: Option<crate::am_api::SilenceGuard>,
}

impl Holding {
    fn new(run_id: String) -> Holding {
        Holding {
            run_id,
            fencing_token: None,
            lease: None,
            fenced: None,
            tried: Vec::new(),
            skipped: Vec::new(),
            blocked_dependents: Vec::new(),
            silence: None,
        }
    }
}

/// The attempt under way: begun by [`Carry::act`], its action's result (and then its
/// verification's) handed back to the machine by [`Carry::settle`] with the time it ended.
struct Attempt {
    index: usize,
    /// `None` when its start could not be recorded (then nothing ran).
    id: Option<i64>,
    /// When its action was rendered and recorded, for its duration.
    started: Now,
    /// What is shown of it: the rendered action, or its kind when it did not render.
    shown: String,
    outcome: ActionOutcome,
    /// Whether the action ran at all.
    ran: bool,
    /// When the action ended: verification counts only probes that started since.
    acted: Now,
    stage: Stage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The action ended; the machine has not heard of it yet.
    Acted,
    /// The machine asked for verification and is waiting for it.
    Verifying,
    /// Verification ended with this finding.
    Verified(Verification),
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
    /// The time of the decision being carried out.
    now: Now,
    attempt: Option<Attempt>,
}

impl<'a> Carry<'a, '_, '_> {
    fn signals(&mut self) -> Signals {
        if self.holding.fenced.is_none() {
            self.holding.fenced = self
                .holding
                .lease
                .as_ref()
                .and_then(LeaseKeeper::fenced_now);
        }
        Signals {
            resolved: self.control.resolved.is_set(),
            cancelled: *self.control.cancel.borrow(),
            fenced: self.holding.fenced.is_some() || !self.engine.standing(),
            healthy: false,
        }
    }

    /// Between steps, once a step ran: the check to ask whether the subject is healthy now.
    fn check_between_steps(&self) -> Option<&'a str> {
        if self.attempt.is_some() || self.holding.tried.is_empty() {
            return None;
        }
        self.trigger.verify_check.as_deref()
    }

    async fn skipped(&mut self, index: usize, reason: SkipReason, until_ms: Option<i64>) {
        let step = &self.chain.steps[index];
        if !self.control.dry_run {
            record_decision(
                self.store,
                &self.engine.metrics,
                DecisionRow {
                    run_id: &self.holding.run_id,
                    at_ms: self.now.wall_ms,
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
            .recovery_skipped(&self.chain.name, &step.name, reason);
        self.holding.skipped.push(SkippedStep {
            step: step.name.clone(),
            reason,
            until_ms,
        });
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
        self.engine
            .metrics
            .recovery_skipped(&self.chain.name, &step.name, SkipReason::DryRun);
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
        let start = self.attempt_start(index);
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
            output: String::new(),
        });
    }

    fn attempt_start(&self, index: usize) -> AttemptStart<'_> {
        AttemptStart {
            run_id: &self.holding.run_id,
            chain: &self.chain.name,
            step: &self.chain.steps[index].name,
            subject: &self.trigger.subject,
            target: &self.trigger.target,
            trigger: self.trigger.kind.as_str(),
            started_ms: self.now.wall_ms,
        }
    }

    fn context(&self) -> ActionContext<'_> {
        ActionContext {
            values: &self.trigger.values,
            trigger: self.trigger.kind.as_str(),
            target: &self.trigger.target,
            message: &self.trigger.message,
            tried: &self.holding.tried,
            skipped: &self.holding.skipped,
            blocked_dependents: &self.holding.blocked_dependents,
            fencing_token: self.holding.fencing_token,
            run_id: &self.holding.run_id,
            subject: &self.trigger.subject,
        }
    }

    /// One attempt of step `index`: record it, then run its action. Nothing runs that could
    /// not be recorded: after a crash its cooldown would be unknown.
    async fn act(&mut self, index: usize) {
        let chain = self.chain;
        let step = &chain.steps[index];
        *self
            .control
            .current_step
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = step.name.clone();
        self.holding.blocked_dependents = match self.trigger.dependent_check() {
            Some(check) => crate::dependencies::blocked_by(&self.engine.blocked.borrow(), check),
            None => Vec::new(),
        };
        let rendered = action::render(step, &chain.name, &self.context());
        let id = match self.store.begin_attempt(&self.attempt_start(index)).await {
            Ok(id) => Some(id),
            Err(e) => {
                self.engine.metrics.store_error(e.operation());
                None
            }
        };
        let span = tracing::info_span!("step", step = %step.name);
        let (outcome, shown, ran) = async {
            match (&rendered, id) {
                (Err(e), _) => (
                    ActionOutcome::failure(format!("not run: {e}")),
                    step.action.kind().to_string(),
                    false,
                ),
                (Ok(r), None) => (
                    ActionOutcome::failure("not run: the state store could not record the attempt"),
                    r.to_string(),
                    false,
                ),
                (Ok(r), Some(id)) => (self.run_action(r, id, index).await, r.to_string(), true),
            }
        }
        .instrument(span)
        .await;
        self.attempt = Some(Attempt {
            index,
            id,
            started: self.now,
            shown,
            outcome,
            ran,
            acted: Now::read(),
            stage: Stage::Acted,
        });
    }

    /// Runs the action, its group recorded while it runs; it stops at shutdown and at a lost
    /// lease.
    async fn run_action(
        &mut self,
        rendered: &Rendered,
        attempt_id: i64,
        index: usize,
    ) -> ActionOutcome {
        let step = &self.chain.steps[index];
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
        match self.holding.lease.as_ref() {
            // When the run is fenced the action's future is dropped, which kills the step's
            // process group before anything else happens.
            Some(hb) => hb.guard(action).await.unwrap_or_else(|f| {
                self.holding.fenced = Some(f);
                ActionOutcome::failure(f.message())
            }),
            None => action.await,
        }
    }

    /// Waits until the check the trigger names is healthy, the alert resolves, medic stops, the
    /// lease is lost, or the machine's deadline passes.
    async fn verify(&mut self, index: usize, deadline_ms: i64) {
        let Some(check) = self.trigger.verify_check.clone() else {
            // The machine verifies only runs that name a check.
            self.verified(
                index,
                Verification::NotHealthy,
                "nothing to verify with".into(),
            );
            return;
        };
        let resolved = self.control.resolved;
        let verifier = &self.engine.verifier;
        let since = match self.attempt.as_ref() {
            Some(attempt) => attempt.acted.mono,
            None => self.now.mono,
        };
        let timeout = std::time::Duration::from_millis(
            deadline_ms.saturating_sub(self.now.wall_ms).max(0) as u64,
        );
        let mut cancel = self.control.cancel.clone();
        let waiting = async {
            tokio::select! {
                verdict = verifier.verify(&check, since, timeout) => match verdict {
                    Ok(()) => (Verification::Healthy, format!("verified: {check} healthy")),
                    Err(why) => (Verification::NotHealthy, format!("not verified: {why}")),
                },
                () = resolved.wait() => (Verification::AlertResolved, "the alert resolved".to_string()),
                _ = cancel.wait_for(|c| *c) => (Verification::Interrupted, "cancelled: medic is shutting down".to_string()),
            }
        };
        let (found, note) = match self.holding.lease.as_ref() {
            Some(hb) => hb.guard(waiting).await.unwrap_or_else(|f| {
                self.holding.fenced = Some(f);
                (Verification::Interrupted, f.message())
            }),
            None => waiting.await,
        };
        self.verified(index, found, note);
    }

    fn verified(&mut self, index: usize, found: Verification, note: String) {
        if let Some(attempt) = self.attempt.as_mut().filter(|a| a.index == index) {
            attempt.outcome.message = format!("{}; {note}", attempt.outcome.message);
            attempt.stage = Stage::Verified(found);
        }
    }

    /// Hands what came back since the last decision to the machine, at `self.now`; an attempt
    /// the machine calls over is recorded, learned from and reported.
    async fn settle(&mut self, run: &mut machine::Run) {
        let Some(mut attempt) = self.attempt.take() else {
            return;
        };
        let signals = self.signals();
        let end = match attempt.stage {
            Stage::Acted => {
                let result = match (attempt.ran, attempt.outcome.result) {
                    (false, _) => ActionResult::NotRun,
                    (true, AttemptResult::Success) => ActionResult::Success,
                    (true, AttemptResult::Timeout) => ActionResult::Timeout,
                    (true, AttemptResult::Failure | AttemptResult::Shadow) => ActionResult::Failure,
                };
                run.action_finished(self.chain, result, signals, self.now.wall_ms)
            }
            Stage::Verified(found) => run.verified(self.chain, found).inspect(|end| {
                attempt.outcome.result = end.result;
            }),
            Stage::Verifying => None,
        };
        if end.is_none() {
            attempt.stage = Stage::Verifying;
            self.attempt = Some(attempt);
            return;
        }
        let seconds = self
            .now
            .mono
            .saturating_duration_since(attempt.started.mono)
            .as_secs_f64();
        self.record_end(attempt.id, &attempt.outcome, seconds).await;
        self.learn_and_report(attempt, seconds).await;
    }

    async fn record_end(&mut self, attempt_id: Option<i64>, outcome: &ActionOutcome, seconds: f64) {
        let Some(id) = attempt_id else {
            return;
        };
        let end = AttemptEnd {
            finished_ms: self.now.wall_ms,
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

    async fn learn_and_report(&mut self, attempt: Attempt, seconds: f64) {
        let Attempt {
            index,
            shown,
            outcome,
            ran,
            ..
        } = attempt;
        let step = &self.chain.steps[index];
        let name = &self.chain.name;
        let metrics = &self.engine.metrics;
        metrics.recovery_attempt(name, &step.name, outcome.result, seconds);
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
            match self
                .store
                .learn(name, &step.name, success, chain::LEARNING, self.now.wall_ms)
                .await
            {
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
            output: outcome.output.clone(),
        });
        self.holding.tried.push(TriedStep {
            step: step.name.clone(),
            result: outcome.result,
            message: outcome.message,
            at_ms: self.now.wall_ms,
        });
    }
}

/// The runs of the trigger's incident: its subject's since the incident began, and for an
/// alert those of its firing.
fn incident(trigger: &Trigger) -> Incident<'_> {
    Incident {
        chain: &trigger.chain,
        subject: &trigger.subject,
        since_ms: trigger.incident_ms,
        // An alert that fired again after its run recovered it is a new incident: its
        // earlier runs share its target but not the incident.
        target: (trigger.kind == TriggerKind::Alert && !trigger.again)
            .then_some(trigger.target.as_str()),
    }
}

/// Writes one decision of the run's audit; a failure costs the audit line, not the run.
async fn record_decision(store: &Store, metrics: &Metrics, row: DecisionRow<'_>) {
    if let Err(e) = store.record_decision(&row).await {
        metrics.store_error(e.operation());
    }
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

/// A run id: the time in hex, then 16 hex digits that no other run shares.
fn new_run_id(now_ms: i64) -> String {
    format!("{now_ms:x}-{}", crate::unique_id::unique_hex(now_ms))
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
