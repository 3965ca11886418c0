//! The one owner of active runs: it routes alerts, accepts triggers, coalesces them per
//! subject, keeps back what a hold holds (limits, the circuit, pauses, maintenance) and starts
//! runs as tasks of their own. Its loop reads the clock once per wake-up and never awaits the
//! store: store chores go to a task of their own, in order, and a run waits for those queued
//! before it.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use super::chain::{self, SkipReason};
use super::engine::{Engine, Resolved, RunControl, RunEnd, RunOutcome};
use super::gate::{self, HoldReason, Load, OperatorHolds, Origin};
use super::held_triggers::{Held, Offered};
use super::lease;
use super::trigger::{AlertIncident, Trigger, TriggerKind};
use crate::alertmanager::ReceivedAlert;
use crate::am_api::Firing;
use crate::clock::Now;
use crate::config::{ChainSpec, RecoveryConfig};
use crate::pause::Pause;
use crate::store::{FleetLimits, Store};
use crate::vocabulary::Subject;

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
        /// Checks known not to fail their dependents (here or on another replica): a route's
        /// `depends_on` waits for any other (critical, unknown, or not probed by anyone yet).
        passing: Vec<String>,
    },
    /// A check, probed here or elsewhere, started or stopped failing (critical or unknown)
    /// for its dependents.
    Failing {
        check: String,
        failing: bool,
    },
    /// The active pauses, whenever they change (made, ended, expired, or seen from the store).
    Pauses(Vec<Pause>),
    /// A check a failing dependency now blocks (its roots), or frees (no roots).
    Blocked {
        check: String,
        roots: Vec<String>,
    },
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
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WebhookSummary {
    pub received: usize,
    pub started: Vec<AlertRef>,
    pub coalesced: Vec<AlertRef>,
    pub blocked: Vec<AlertRef>,
    pub held: Vec<AlertRef>,
    pub resolved: Vec<AlertRef>,
    pub unrouted: usize,
}

#[derive(Debug, Clone, PartialEq)]
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
    /// Its alert resolved while it ran: nothing to follow up.
    resolved: bool,
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
    let (again_tx, again_rx) = mpsc::channel(1024);
    let chores = spawn_chores(engine.clone(), store.clone());
    let manager = Manager {
        engine,
        config,
        store,
        chores,
        shutdown,
        active: HashMap::new(),
        blocked_until: HashMap::new(),
        tasks: tokio::task::JoinSet::new(),
        done_tx,
        held: Held::new(MAX_HELD),
        critical: HashSet::new(),
        passing: HashSet::new(),
        enabled_checks: 0,
        starts: VecDeque::new(),
        pauses: None,
        circuit_open: false,
        circuit_closed_ms: 0,
        windows_open: BTreeMap::new(),
        follow_ups: HashMap::new(),
        again_tx,
        blocked: HashMap::new(),
        unblocked_ms: HashMap::new(),
        freed: HashMap::new(),
    };
    tokio::spawn(
        manager
            .run(events, done_rx, again_rx)
            .instrument(tracing::info_span!("recovery_manager")),
    )
}

struct Manager {
    engine: Arc<Engine>,
    config: RecoveryConfig,
    store: watch::Receiver<Option<Store>>,
    /// Store work the loop hands off rather than awaits.
    chores: mpsc::UnboundedSender<Chore>,
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
    /// Checks known not to fail their dependents: a route's `depends_on` waits for any other.
    passing: HashSet<String>,
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
    /// By (chain, subject): the task asking Alertmanager whether an alert a run recovered
    /// still fires. One at most per subject; ended when the alert resolves.
    follow_ups: HashMap<(String, String), tokio::task::AbortHandle>,
    /// Where follow-ups send an alert that still fires.
    again_tx: mpsc::Sender<Trigger>,
    /// Checks a failing dependency blocks, with its roots: no run starts for them, and they do
    /// not count toward the circuit breaker.
    blocked: HashMap<String, Vec<String>>,
    /// When a check's block lifted (unix ms): a probe that started before says nothing of it.
    unblocked_ms: HashMap<String, i64>,
    /// Dependency holds dropped when their block lifted, by (chain, subject): since when and
    /// by which roots, for the audit of the run the check's next probe may start.
    freed: HashMap<(String, String), (i64, Vec<String>)>,
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
        mut again_rx: mpsc::Receiver<Trigger>,
    ) {
        let mut sweep = tokio::time::interval(ABANDONED_SWEEP);
        let mut review = tokio::time::interval(REVIEW);
        review.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.register_chain_series(&BTreeMap::new());
        self.chore(Chore::Gauges(self.config.chains.clone()));
        let mut shutdown = self.shutdown.clone();
        loop {
            let wake = tokio::select! {
                Some(event) = events.recv() => Wake::Event(event),
                Some(done) = done_rx.recv() => Wake::Finished(done),
                Some(again) = again_rx.recv() => Wake::FiredAgain(again),
                // A JoinSet keeps every finished task until it is joined: reap them as they
                // end, or each run ever started stays in memory.
                Some(_) = self.tasks.join_next(), if !self.tasks.is_empty() => continue,
                changed = self.store.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    self.chore(Chore::EndAbandoned);
                    self.chore(Chore::Gauges(self.config.chains.clone()));
                    continue;
                }
                _ = review.tick() => Wake::Review,
                _ = sweep.tick() => {
                    self.chore(Chore::EndAbandoned);
                    continue;
                }
                _ = shutdown.changed() => break,
            };
            let now = Now::read().wall_ms;
            match wake {
                Wake::Event(event) => self.handle(event, now),
                Wake::Finished(done) => self.finished(done, now),
                Wake::FiredAgain(trigger) => {
                    tracing::info!(chain = %trigger.chain, target = %trigger.target, "alert still firing after its run recovered it: a new incident");
                    self.accept(trigger, now);
                }
                Wake::Review => self.review(now),
            }
        }
        // Runs see the shutdown too: they cancel their action and record it.
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
    }

    fn chore(&self, chore: Chore) {
        // The chore task ends only with the manager.
        let _ = self.chores.send(chore);
    }

    fn handle(&mut self, event: Event, now: i64) {
        match event {
            Event::Trigger(trigger) => {
                self.accept(trigger, now);
            }
            Event::Healthy {
                chain,
                subject,
                at_ms,
            } => self.healthy(chain, subject, at_ms),
            Event::Notification { alerts, reply } => {
                let summary = self.route(alerts, now);
                let _ = reply.send(summary);
            }
            Event::CheckCritical { check, critical } => {
                if critical {
                    self.critical.insert(check);
                } else {
                    self.critical.remove(&check);
                }
                self.review(now);
            }
            Event::Census {
                enabled,
                critical,
                passing,
            } => {
                self.enabled_checks = enabled;
                self.critical = critical.into_iter().collect();
                self.passing = passing.into_iter().collect();
                self.review(now);
            }
            Event::Failing { check, failing } => {
                if failing {
                    self.passing.remove(&check);
                } else {
                    self.passing.insert(check);
                }
                self.review(now);
            }
            Event::Pauses(pauses) => {
                self.pauses = Some(pauses);
                self.review(now);
            }
            Event::Blocked { check, roots } => self.blocked_changed(check, roots, now),
            Event::Apply(new) => self.apply(new, now),
        }
    }

    fn apply(&mut self, new: RecoveryConfig, now: i64) {
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
        self.review(now);
        self.chore(Chore::Gauges(self.config.chains.clone()));
    }

    /// Starts a run for the trigger unless one is in progress, nothing could run, or a hold
    /// keeps it back (then it waits, one per subject, until the hold lifts).
    fn accept(&mut self, trigger: Trigger, now: i64) -> Disposition {
        let Some(chain) = self.config.chains.get(&trigger.chain).cloned() else {
            tracing::warn!(chain = %trigger.chain, "trigger for an unknown chain ignored");
            return Disposition::UnknownChain;
        };
        // One run per subject: duplicates of the alert, and an alert about a check whose own
        // run is under way, are coalesced.
        let key = (trigger.chain.clone(), trigger.subject.clone());
        if let Some(run) = self.active.get(&key) {
            // A verification re-probe of the run's own check is the run at work, not a
            // trigger that was coalesced.
            if !trigger.prompted {
                let step = run
                    .current_step
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                self.engine
                    .metrics
                    .recovery_skipped(&trigger.chain, &step, SkipReason::InProgress);
            }
            return Disposition::Coalesced;
        }
        if self.is_stale(&trigger) {
            return Disposition::Blocked;
        }
        // Held already: a resend or a further probe joins it, counted once.
        if let Some(reason) = self.held.reason(&key.0, &key.1) {
            let (chain, subject) = key;
            self.held.offer(&chain, &subject, reason, trigger, now);
            return Disposition::Held(reason);
        }
        if self
            .blocked_until
            .get(&key)
            .is_some_and(|until| now < *until)
        {
            return Disposition::Blocked;
        }
        if self.store.borrow().is_none() {
            tracing::warn!(chain = %trigger.chain, target = %trigger.target, "state store not open yet: recovery waits for it");
            return Disposition::NoStore;
        }
        let settle = gate::settle_ms(trigger.interval_ms, self.enabled_checks);
        if settle > 0 && trigger.held.is_none() {
            self.hold(trigger, HoldReason::Settling, now);
            return Disposition::Held(HoldReason::Settling);
        }
        if let Some(reason) = self.hold_reason(&trigger, now) {
            self.hold(trigger, reason, now);
            return Disposition::Held(reason);
        }
        let trigger = self.with_freed_hold(trigger);
        self.start(trigger, chain, now)
    }

    /// A check trigger raised by a probe that started before the check's block lifted: what
    /// it saw may have been its root's failure, not its own. The check's next probe decides.
    fn is_stale(&self, trigger: &Trigger) -> bool {
        trigger.kind == TriggerKind::Check
            && trigger
                .values
                .check
                .as_ref()
                .and_then(|c| self.unblocked_ms.get(c))
                .is_some_and(|lifted| trigger.probed_ms < *lifted)
    }

    /// A run that starts after a dependency hold lifted says, in its audit, that it waited
    /// and for which roots.
    fn with_freed_hold(&mut self, mut trigger: Trigger) -> Trigger {
        let key = (trigger.chain.clone(), trigger.subject.clone());
        if let Some((since_ms, roots)) = self.freed.remove(&key) {
            // Settling after the block is not worth telling; the block is.
            if trigger
                .held
                .is_none_or(|(reason, _)| reason == HoldReason::Settling)
            {
                trigger.held = Some((HoldReason::Dependency, since_ms));
                trigger.held_by = roots;
            }
        }
        trigger
    }

    /// The roots that block `trigger`: its check's (a check trigger, or an alert verified by
    /// a check), and those of its route's `depends_on` (a dependency that fails itself,
    /// critical or not yet known, or one that a root blocks).
    fn dependency_roots(&self, trigger: &Trigger) -> Vec<String> {
        let mut roots: Vec<String> = trigger
            .dependent_check()
            .and_then(|c| self.blocked.get(c))
            .cloned()
            .unwrap_or_default();
        for dep in &trigger.depends_on {
            match self.blocked.get(dep) {
                Some(theirs) => roots.extend(theirs.iter().cloned()),
                None if !self.passing.contains(dep) => roots.push(dep.clone()),
                None => {}
            }
        }
        roots.sort();
        roots.dedup();
        roots
    }

    /// A block began, moved or lifted. When it lifts, the check's held triggers are dropped
    /// (its next probe, asked for now, decides whether it still needs healing: one that
    /// recovered with its root starts nothing), and held alerts of routes that waited for it
    /// are looked at again.
    fn blocked_changed(&mut self, check: String, roots: Vec<String>, now: i64) {
        if !roots.is_empty() {
            self.blocked.insert(check, roots);
            self.review(now);
            return;
        }
        let Some(roots) = self.blocked.remove(&check) else {
            return;
        };
        self.unblocked_ms.insert(check.clone(), now);
        let subject = Subject::Check(check.clone()).to_string();
        let freed: Vec<(String, i64)> = self
            .held
            .iter()
            .filter(|e| e.subject == subject && e.reason == HoldReason::Dependency)
            .map(|e| (e.chain.clone(), e.since_ms))
            .collect();
        for (chain, since_ms) in freed {
            self.held.remove(&chain, &subject);
            tracing::info!(chain = %chain, check = %check, "dependency hold lifted: the check's next probe decides");
            self.freed
                .insert((chain, subject.clone()), (since_ms, roots.clone()));
        }
        self.engine.verifier.probe_soon(&check);
        self.review(now);
    }

    /// What holds `trigger` back now, if anything.
    fn hold_reason(&self, trigger: &Trigger, now_ms: i64) -> Option<HoldReason> {
        // Until the store's pauses have been read once, nothing starts; but nothing is paused
        // either: the trigger waits unrecorded, as while settling, not as "paused".
        let Some(pauses) = self.pauses.as_ref() else {
            return Some(HoldReason::Settling);
        };
        let labels = trigger.hold_labels();
        let mut operator = OperatorHolds::of(pauses, &self.config.maintenance, &labels, now_ms);
        operator.blocked = !self.dependency_roots(trigger).is_empty();
        let active_in_chain = self
            .active
            .keys()
            .filter(|(chain, _)| *chain == trigger.chain)
            .count();
        let load = Load {
            active: self.active.len(),
            active_in_chain,
            critical_checks: self.critical_unblocked(),
            enabled_checks: self.enabled_checks,
        };
        let starts: Vec<i64> = self.starts.iter().copied().collect();
        let reason = gate::hold_reason(
            &self.config.limits,
            &trigger.chain,
            operator,
            load,
            &starts,
            Origin::Automatic,
            now_ms,
        );
        // Just closed: still open for a trigger until its checks have settled.
        let settle = gate::settle_ms(trigger.interval_ms, self.enabled_checks);
        let closing = settle > 0 && now_ms < self.circuit_closed_ms.saturating_add(settle);
        match reason {
            None | Some(HoldReason::Rate | HoldReason::Concurrency) if closing => {
                Some(HoldReason::CircuitOpen)
            }
            other => other,
        }
    }

    /// Critical checks that count toward the circuit breaker: a check a failing dependency
    /// blocks is its root's failure, counted once, in the root.
    fn critical_unblocked(&self) -> usize {
        self.critical
            .iter()
            .filter(|c| !self.blocked.contains_key(*c))
            .count()
    }

    fn hold(&mut self, trigger: Trigger, reason: HoldReason, now: i64) {
        if reason != HoldReason::Settling {
            self.engine.metrics.recovery_held(&trigger.chain, reason);
        }
        if reason == HoldReason::Dependency {
            tracing::info!(chain = %trigger.chain, subject = %trigger.subject, blocked_by = %self.dependency_roots(&trigger).join(","), "recovery held: a dependency is failing");
        }
        let (chain, subject) = (trigger.chain.clone(), trigger.subject.clone());
        match self.held.offer(&chain, &subject, reason, trigger, now) {
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
    fn review(&mut self, now: i64) {
        let circuit = gate::circuit_open(
            self.config.limits.max_unhealthy,
            self.critical_unblocked(),
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
        // A follow-up whose alert resolved has ended: forget it.
        self.follow_ups.retain(|_, task| !task.is_finished());
        self.engine
            .metrics
            .recovery_held_now(self.held.len(), self.held.oldest_since_ms());
        self.engine.metrics.held_subjects(
            self.held
                .iter()
                .map(|e| (e.subject.as_str(), e.chain.as_str(), e.reason)),
        );
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
                && now_ms < since_ms + gate::settle_ms(trigger.interval_ms, self.enabled_checks)
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
                    let _ = self.accept(trigger, now_ms);
                }
                continue;
            };
            if reason != held_for {
                // Settled into a real hold, or held for another reason now: counted, as any
                // trigger held.
                self.engine.metrics.recovery_held(&chain, reason);
                self.held.set_reason(&chain, &subject, reason);
            }
            // Pauses, windows and dependencies hold one subject, not everyone behind it.
            if !matches!(
                reason,
                HoldReason::Paused | HoldReason::Maintenance | HoldReason::Dependency
            ) {
                blocked.get_or_insert(reason);
            }
        }
    }

    /// Makes every series of every chain and step exist at 0, and drops those of removed
    /// chains.
    fn register_chain_series(&self, old: &BTreeMap<String, Arc<ChainSpec>>) {
        for name in old.keys() {
            if !self.config.chains.contains_key(name) {
                self.engine.metrics.forget_chain(name);
            }
        }
        for (name, chain) in &self.config.chains {
            self.engine
                .metrics
                .recovery_chain(name, chain.steps.iter().map(|s| s.name.as_str()));
        }
    }

    fn set_active_gauge(&self, chain: &str) {
        let n = self.active.keys().filter(|(c, _)| c == chain).count();
        self.engine.metrics.recovery_runs_active(chain, n);
    }

    fn start(&mut self, trigger: Trigger, chain: Arc<ChainSpec>, now: i64) -> Disposition {
        let key = (trigger.chain.clone(), trigger.subject.clone());
        let Some(store) = self.store.borrow().clone() else {
            return Disposition::NoStore;
        };
        self.starts.push_back(now);
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
        // The store chores queued before this run (a healthy period begun, say) land before
        // it reads the store.
        let (flushed_tx, flushed) = oneshot::channel();
        self.chore(Chore::Flushed(flushed_tx));
        let span =
            tracing::info_span!("recovery", chain = %trigger.chain, target = %trigger.target);
        self.tasks.spawn(
            async move {
                let _ = flushed.await;
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
                let resolved = resolved.is_set();
                let _ = done_tx
                    .send(Finished {
                        trigger,
                        end,
                        resolved,
                    })
                    .await;
            }
            .instrument(span),
        );
        Disposition::Started
    }

    fn healthy(&mut self, chain: String, subject: String, at_ms: i64) {
        self.blocked_until.remove(&(chain.clone(), subject.clone()));
        if let Some(follow_up) = self.follow_ups.remove(&(chain.clone(), subject.clone())) {
            follow_up.abort();
        }
        if self.held.remove(&chain, &subject).is_some() {
            tracing::info!(chain = %chain, subject = %subject, "held recovery dropped: healthy again");
        }
        // Alertmanager: the subject's escalations resolve.
        if let Some(am) = self.engine.actions.alertmanager() {
            am.subject_healthy(&chain, &subject);
        }
        self.chore(Chore::HealthySince {
            chain,
            subject,
            at_ms,
        });
    }

    /// After a run recovered an alert: asks Alertmanager, once the chain's `verify_timeout`
    /// has passed and then every `resend_delay`, whether the alert still fires; while it does,
    /// it comes back as a new incident (cooldowns and holds apply as to any trigger), rather
    /// than waiting for Alertmanager's `repeat_interval`. Ends when the alert resolves.
    fn follow_up(&mut self, trigger: Trigger) {
        let Some(am) = self.engine.actions.alertmanager().cloned() else {
            return;
        };
        let (Some(resend), Some(fingerprint)) = (
            am.resend_delay(),
            trigger.alert_fingerprint().map(str::to_string),
        ) else {
            return;
        };
        let first_wait = self
            .config
            .chains
            .get(&trigger.chain)
            .map_or(resend, |c| c.verify_timeout.std());
        let again_tx = self.again_tx.clone();
        let key = (trigger.chain.clone(), trigger.subject.clone());
        let span = tracing::info_span!("alert_follow_up", chain = %trigger.chain, fingerprint = %fingerprint);
        let task = tokio::spawn(
            async move {
                tokio::time::sleep(first_wait).await;
                // One new incident, however many times it is found firing.
                let mut again: Option<Trigger> = None;
                loop {
                    let labels = &trigger.values.labels;
                    let check = trigger.verify_check.as_deref();
                    match am.still_firing(labels, &fingerprint, check).await {
                        Firing::No => return,
                        Firing::Unknown => {}
                        Firing::Yes => {
                            let t = again
                                .get_or_insert_with(|| trigger.fired_again(Now::read().wall_ms));
                            if again_tx.send(t.clone()).await.is_err() {
                                return;
                            }
                        }
                    }
                    tokio::time::sleep(resend).await;
                }
            }
            .instrument(span),
        );
        if let Some(old) = self.follow_ups.insert(key, task.abort_handle()) {
            old.abort();
        }
    }

    /// Routes each alert on its own labels and status; first matching route wins.
    fn route(&mut self, alerts: Vec<ReceivedAlert>, now: i64) -> WebhookSummary {
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
            let trigger_target = super::trigger::alert_target(&alert.fingerprint, &alert.starts_at);
            let subject = match &route.verify_check {
                Some(check) => Subject::Check(check.clone()),
                None => Subject::Alert(alert.fingerprint.clone()),
            }
            .to_string();
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
                    .filter(|run| run.target == trigger_target)
                {
                    run.resolved.resolve();
                }
                self.healthy(route.chain.clone(), subject, now);
                summary.resolved.push(reference);
                continue;
            }
            let message = alert
                .annotations
                .get("summary")
                .or_else(|| alert.annotations.get("description"))
                .cloned()
                .unwrap_or_else(|| format!("alert {} firing", reference.alertname));
            // Unparseable times are refused by the webhook's decoder; 0 only ever widens
            // what counts as this incident.
            let starts_at_ms = alert
                .starts_at
                .parse::<jiff::Timestamp>()
                .map_or(0, |t| t.as_millisecond());
            let trigger = Trigger::for_alert(AlertIncident {
                chain: &route.chain,
                fingerprint: &alert.fingerprint,
                starts_at: &alert.starts_at,
                starts_at_ms,
                verify_check: route.verify_check.as_deref(),
                depends_on: &route.depends_on,
                labels: alert.labels,
                annotations: alert.annotations,
                message,
            });
            match self.accept(trigger, now) {
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

    fn finished(&mut self, done: Finished, now: i64) {
        let key = (done.trigger.chain.clone(), done.trigger.subject.clone());
        self.active.remove(&key);
        self.set_active_gauge(&key.0);
        let recovered = RunEnd::Finished {
            outcome: RunOutcome::Recovered,
        };
        if done.end == recovered && done.trigger.kind == TriggerKind::Alert && !done.resolved {
            self.follow_up(done.trigger.clone());
        }
        match done.end {
            // The store held it for the fleet (another replica's runs count too).
            RunEnd::Held(reason) => self.hold(done.trigger, reason, now),
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
        self.review(now);
    }
}

/// What wakes the manager's loop, besides what it handles in place.
enum Wake {
    Event(Event),
    Finished(Finished),
    /// An alert a run recovered still fires, says Alertmanager.
    FiredAgain(Trigger),
    Review,
}

/// Store work the manager hands off, done in order by [`spawn_chores`].
enum Chore {
    /// The subject is healthy since `at_ms`: its `reset_after` counts from there.
    HealthySince {
        chain: String,
        subject: String,
        at_ms: i64,
    },
    /// End runs whose holder stopped (an expired lease).
    EndAbandoned,
    /// Set every step's effectiveness gauge from what the store learned.
    Gauges(BTreeMap<String, Arc<ChainSpec>>),
    /// Answered once every chore queued before it is done.
    Flushed(oneshot::Sender<()>),
}

/// The manager's store chores, one at a time in the order given. Unbounded because the
/// manager must never wait: chores come at most one per event it handles, and each is small.
fn spawn_chores(
    engine: Arc<Engine>,
    store: watch::Receiver<Option<Store>>,
) -> mpsc::UnboundedSender<Chore> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::spawn(
        async move {
            while let Some(chore) = rx.recv().await {
                let current = store.borrow().clone();
                match (chore, current) {
                    (Chore::Flushed(done), _) => {
                        let _ = done.send(());
                    }
                    (Chore::Gauges(chains), current) => {
                        set_effectiveness_gauges(&engine, &chains, current.as_ref()).await
                    }
                    (_, None) => {}
                    (
                        Chore::HealthySince {
                            chain,
                            subject,
                            at_ms,
                        },
                        Some(s),
                    ) => {
                        if let Err(e) = s.set_healthy_since(&chain, &subject, Some(at_ms)).await {
                            engine.metrics.store_error(e.operation());
                        }
                    }
                    (Chore::EndAbandoned, Some(s)) => end_abandoned(&engine, &s).await,
                }
            }
        }
        .instrument(tracing::info_span!("recovery_chores")),
    );
    tx
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
                // Written by some medic as one of the set; another word is not counted.
                match trigger.parse::<TriggerKind>() {
                    Ok(kind) => engine
                        .metrics
                        .recovery_run(&chain, kind, RunOutcome::Cancelled),
                    Err(e) => tracing::warn!(%e, "abandoned run with an unknown trigger"),
                }
            }
        }
        Err(e) => engine.metrics.store_error(e.operation()),
    }
}

async fn set_effectiveness_gauges(
    engine: &Engine,
    chains: &BTreeMap<String, Arc<ChainSpec>>,
    store: Option<&Store>,
) {
    let learned = match store {
        Some(s) => s.effectiveness().await.unwrap_or_default(),
        None => BTreeMap::new(),
    };
    for (name, chain) in chains {
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
