//! The run state machine: one place decides every move of a recovery run. In: the chain, the
//! subject's step states, learned effectiveness and `now`; out: a [`Decision`] (skip this step
//! and why, run it, wait for verification until T, end with this outcome). The engine carries
//! decisions out and feeds results back. No IO, no clock, no tokio: every rule of the SPEC's
//! "Recovery semantics" is a table case below.

use std::collections::BTreeMap;

use super::action::AttemptResult;
use super::chain::{self, SkipReason, StepState};
use crate::config::{ActionSpec, ChainSpec};
use crate::vocabulary::SkippedStep;

/// How a run treats its actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Record and run every action.
    Act,
    /// Decide and show; record and run nothing (`medic recover --dry-run`).
    DryRun,
    /// Decide as in `Act` and record the step that would run, then end: no action runs and
    /// no counter, cooldown or effectiveness changes (`mode: shadow`).
    Shadow,
}

pub use crate::vocabulary::RunOutcome;

/// What to do about the subject's counters before a run looks at its steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Preflight {
    /// Healthy for `reset_after`: every step's attempt counter starts again.
    pub reset_counters: bool,
    /// The subject is unhealthy now: its healthy period (if one was recorded) is over.
    pub clear_healthy_since: bool,
}

/// Counters reset after a healthy period of `reset_after`; the subject is unhealthy now.
pub fn preflight(chain: &ChainSpec, healthy_since_ms: Option<i64>, now_ms: i64) -> Preflight {
    let reset_ms = duration_ms(chain.reset_after.std());
    Preflight {
        reset_counters: chain::counters_reset_due(healthy_since_ms, reset_ms, now_ms),
        clear_healthy_since: healthy_since_ms.is_some(),
    }
}

/// The earliest time some step could run again, if any ever can without a reset.
pub fn next_possible(chain: &ChainSpec, states: &BTreeMap<String, StepState>) -> Option<i64> {
    chain
        .steps
        .iter()
        .filter_map(|step| {
            let state = states.get(&step.name).copied().unwrap_or_default();
            if state.attempts >= step.max_attempts {
                return None;
            }
            Some(
                state
                    .last_attempt_ms
                    .unwrap_or(0)
                    .saturating_add(duration_ms(step.cooldown.std())),
            )
        })
        .min()
}

/// Why a run did not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NothingToRun {
    /// When some step could run again (`None`: not before a reset).
    pub next_possible_ms: Option<i64>,
    /// Every step, in the chain's order, with why it cannot run and until when.
    pub skips: Vec<SkippedStep>,
}

impl NothingToRun {
    fn of(
        chain: &ChainSpec,
        states: &BTreeMap<String, StepState>,
        now_ms: i64,
        critical_replicas: u32,
    ) -> NothingToRun {
        let skips = chain
            .steps
            .iter()
            .filter_map(|step| {
                let state = states.get(&step.name).copied().unwrap_or_default();
                let (reason, until_ms) = chain::skip_until(step, state, now_ms, critical_replicas)?;
                Some(SkippedStep {
                    step: step.name.clone(),
                    reason,
                    until_ms,
                })
            })
            .collect();
        NothingToRun {
            next_possible_ms: next_possible(chain, states),
            skips,
        }
    }
}

/// How a run opens: how it treats actions, whether a check verifies it, and how many replicas
/// see its check critical.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opening {
    pub mode: Mode,
    pub verifies: bool,
    pub critical_replicas: u32,
}

/// What the world says between two decisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Signals {
    /// The alert that started the run resolved.
    pub resolved: bool,
    /// medic is shutting down (or Ctrl-C in `medic recover`).
    pub cancelled: bool,
    /// This replica lost the run's lease: it must stop acting at once.
    pub fenced: bool,
    /// Between steps, after one ran: the check that verifies the run is healthy now. No later
    /// step runs on a healthy subject.
    pub healthy: bool,
}

/// The machine's next move.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Step `index` of the chain is skipped (counted and reported); `until_ms` is when a
    /// cooldown ends.
    Skip {
        index: usize,
        reason: SkipReason,
        until_ms: Option<i64>,
    },
    /// Dry run: show what step `index` would do, run nothing.
    WouldRun { index: usize },
    /// Shadow mode: record that step `index` would run now; the next decision ends the run.
    Shadow { index: usize },
    /// Record an attempt of step `index`, then run its action (nothing runs unrecorded).
    Act { index: usize },
    /// The action worked; verification decides. Ask `check` (promptly) until `deadline_ms`.
    Verify { index: usize, deadline_ms: i64 },
    /// The run is over.
    End(RunEnd),
}

/// How a run ends and what it leaves behind.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEnd {
    pub outcome: RunOutcome,
    /// Steps after the one that fixed the subject: their counters reset.
    pub reset_steps: Vec<String>,
}

/// What an action did, as far as the machine cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionResult {
    Success,
    Failure,
    Timeout,
    /// Not run: its template named a missing value, or its attempt could not be recorded.
    NotRun,
}

/// What verification found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The check turned healthy within `verify_timeout`.
    Healthy,
    /// It did not (timeout, still critical, not configured).
    NotHealthy,
    /// The triggering alert resolved while waiting.
    AlertResolved,
    /// Shutdown or a lost lease stopped the wait.
    Interrupted,
}

/// A finished attempt: what to record, and whether to learn from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepEnd {
    pub index: usize,
    pub result: AttemptResult,
    /// `Some(success)` when the outcome says something about the step's effectiveness.
    pub learn: Option<bool>,
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Between steps: `cursor` indexes the order.
    Choosing,
    /// Step `order[cursor]`'s action is running.
    Acting,
    /// Step `order[cursor]`'s fix is being verified.
    Verifying,
    Ended,
}

/// One run's decisions from its first step to its end.
#[derive(Debug, Clone)]
pub struct Run {
    mode: Mode,
    /// Whether a check says if a step fixed the subject.
    verifies: bool,
    order: Vec<usize>,
    states: BTreeMap<String, StepState>,
    cursor: usize,
    phase: Phase,
    /// The latest step whose action ran to success and is awaiting or passed verification.
    fixed_by: Option<usize>,
    /// Set once the last step's result says the subject is fixed (or the alert resolved).
    recovered: bool,
    /// While verifying: when verification gives up.
    verify_deadline_ms: i64,
    /// How it ended, once it has.
    ended: Option<RunEnd>,
    /// How many replicas see the check critical now, for steps with `confirm:`.
    critical_replicas: u32,
}

impl Run {
    /// Opens a run when some step could run now (every confirmation given).
    pub fn open(
        chain: &ChainSpec,
        states: BTreeMap<String, StepState>,
        effectiveness: &BTreeMap<String, f64>,
        mode: Mode,
        verifies: bool,
        now_ms: i64,
    ) -> Result<Run, NothingToRun> {
        let opening = Opening {
            mode,
            verifies,
            critical_replicas: u32::MAX,
        };
        Run::open_with(chain, states, effectiveness, opening, now_ms)
    }

    /// Opens a run when some step could run now, `opening.critical_replicas` seeing the
    /// check critical (a step with `confirm:` asking for more is `unconfirmed`).
    pub fn open_with(
        chain: &ChainSpec,
        states: BTreeMap<String, StepState>,
        effectiveness: &BTreeMap<String, f64>,
        opening: Opening,
        now_ms: i64,
    ) -> Result<Run, NothingToRun> {
        let Opening {
            mode,
            verifies,
            critical_replicas,
        } = opening;
        if !chain::could_any_run(chain, &states, now_ms, critical_replicas) {
            return Err(NothingToRun::of(chain, &states, now_ms, critical_replicas));
        }
        Ok(Run {
            mode,
            verifies,
            order: chain::step_order(chain, effectiveness),
            states,
            cursor: 0,
            phase: Phase::Choosing,
            fixed_by: None,
            recovered: false,
            verify_deadline_ms: 0,
            ended: None,
            critical_replicas,
        })
    }

    /// How many replicas see the check critical now (read again before each step).
    pub fn confirmations(&mut self, critical_replicas: u32) {
        self.critical_replicas = critical_replicas;
    }

    /// Holding the run in the store, the counters were read again (a replica may have run the
    /// same steps meanwhile): the run goes on only if some step still could run.
    pub fn refresh(
        &mut self,
        chain: &ChainSpec,
        states: BTreeMap<String, StepState>,
        now_ms: i64,
    ) -> Result<(), NothingToRun> {
        if !chain::could_any_run(chain, &states, now_ms, self.critical_replicas) {
            return Err(NothingToRun::of(
                chain,
                &states,
                now_ms,
                self.critical_replicas,
            ));
        }
        self.states = states;
        Ok(())
    }

    /// The order steps are tried in, as indexes into `chain.steps`.
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    /// The next move. Between steps: end if resolved, cancelled or fenced; otherwise the next
    /// step in order is skipped, shown (dry run) or run. While a step acts or is verified, the
    /// machine waits for [`Run::action_finished`] or [`Run::verified`]: asking meanwhile
    /// repeats the pending decision and counts nothing again.
    pub fn next(&mut self, chain: &ChainSpec, signals: Signals, now_ms: i64) -> Decision {
        match self.phase {
            Phase::Ended => {
                return Decision::End(self.ended.clone().unwrap_or(RunEnd {
                    outcome: RunOutcome::Cancelled,
                    reset_steps: Vec::new(),
                }))
            }
            Phase::Acting => {
                return Decision::Act {
                    index: self.order[self.cursor],
                }
            }
            Phase::Verifying => {
                return Decision::Verify {
                    index: self.order[self.cursor],
                    deadline_ms: self.verify_deadline_ms,
                }
            }
            Phase::Choosing => {}
        }
        if self.recovered || signals.resolved || signals.healthy {
            return Decision::End(self.end(chain, RunOutcome::Recovered));
        }
        if signals.cancelled || signals.fenced {
            return Decision::End(self.end(chain, RunOutcome::Cancelled));
        }
        let Some(&index) = self.order.get(self.cursor) else {
            return Decision::End(self.end(chain, RunOutcome::Exhausted));
        };
        let step = &chain.steps[index];
        let state = self.states.get(&step.name).copied().unwrap_or_default();
        if let Some((reason, until_ms)) =
            chain::skip_until(step, state, now_ms, self.critical_replicas)
        {
            self.cursor += 1;
            return Decision::Skip {
                index,
                reason,
                until_ms,
            };
        }
        match self.mode {
            Mode::DryRun => {
                self.cursor += 1;
                Decision::WouldRun { index }
            }
            Mode::Shadow => {
                self.end(chain, RunOutcome::Shadow);
                Decision::Shadow { index }
            }
            Mode::Act => {
                self.states.insert(
                    step.name.clone(),
                    StepState {
                        attempts: state.attempts.saturating_add(1),
                        last_attempt_ms: Some(now_ms),
                    },
                );
                self.phase = Phase::Acting;
                Decision::Act { index }
            }
        }
    }

    /// The running step's action ended. Returns the attempt's end when no verification
    /// follows; `None` when the next decision is [`Decision::Verify`].
    pub fn action_finished(
        &mut self,
        chain: &ChainSpec,
        result: ActionResult,
        signals: Signals,
        now_ms: i64,
    ) -> Option<StepEnd> {
        if self.phase != Phase::Acting {
            return None;
        }
        let index = self.order[self.cursor];
        let notify = is_notify(chain, index);
        let attempt = match result {
            ActionResult::Success => AttemptResult::Success,
            ActionResult::Failure | ActionResult::NotRun => AttemptResult::Failure,
            ActionResult::Timeout => AttemptResult::Timeout,
        };
        // Stopped from outside: a step that had not succeeded says nothing about the step.
        if (signals.cancelled || signals.fenced) && attempt != AttemptResult::Success {
            self.end(chain, RunOutcome::Cancelled);
            return Some(StepEnd {
                index,
                result: attempt,
                learn: None,
            });
        }
        if attempt == AttemptResult::Success && self.verifies && !notify {
            self.phase = Phase::Verifying;
            self.verify_deadline_ms =
                now_ms.saturating_add(duration_ms(chain.verify_timeout.std()));
            return None;
        }
        Some(self.step_done(chain, index, attempt, result != ActionResult::NotRun))
    }

    /// Verification of the running step ended.
    pub fn verified(&mut self, chain: &ChainSpec, found: Verification) -> Option<StepEnd> {
        if self.phase != Phase::Verifying {
            return None;
        }
        let index = self.order[self.cursor];
        Some(match found {
            Verification::Healthy => self.step_done(chain, index, AttemptResult::Success, true),
            Verification::NotHealthy => self.step_done(chain, index, AttemptResult::Failure, true),
            Verification::AlertResolved => {
                // The alert resolved: the step counts as it went, and the run is over.
                let end = self.step_done(chain, index, AttemptResult::Success, true);
                self.recovered = true;
                end
            }
            Verification::Interrupted => {
                // Stopped from outside (shutdown, a lost lease): it says nothing of the step.
                self.end(chain, RunOutcome::Cancelled);
                StepEnd {
                    index,
                    result: AttemptResult::Failure,
                    learn: None,
                }
            }
        })
    }

    fn step_done(
        &mut self,
        chain: &ChainSpec,
        index: usize,
        result: AttemptResult,
        ran: bool,
    ) -> StepEnd {
        let notify = is_notify(chain, index);
        let success = result == AttemptResult::Success;
        // A notification fixes nothing: it is not learned from and never ends a run.
        let learn = (ran && !notify).then_some(success);
        if success && !notify {
            self.fixed_by = Some(index);
            self.recovered = true;
        }
        self.cursor += 1;
        self.phase = Phase::Choosing;
        StepEnd {
            index,
            result,
            learn,
        }
    }

    fn end(&mut self, chain: &ChainSpec, outcome: RunOutcome) -> RunEnd {
        self.phase = Phase::Ended;
        let reset_steps = match (outcome, self.fixed_by) {
            (RunOutcome::Recovered, Some(index)) => {
                chain::steps_to_reset(chain, &self.order, index)
            }
            _ => Vec::new(),
        };
        let end = RunEnd {
            outcome,
            reset_steps,
        };
        self.ended = Some(end.clone());
        end
    }
}

fn is_notify(chain: &ChainSpec, index: usize) -> bool {
    matches!(
        chain.steps[index].action,
        ActionSpec::Notify { .. } | ActionSpec::Alert { .. }
    )
}

fn duration_ms(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Duration, Order, StepSpec};
    use crate::template::Template;
    use crate::testing::exec_step as exec;

    const NONE: Signals = Signals {
        healthy: false,
        resolved: false,
        cancelled: false,
        fenced: false,
    };

    fn notify(name: &str) -> StepSpec {
        StepSpec {
            action: ActionSpec::Notify {
                url: Template::parse("http://127.0.0.1:1/hook").unwrap(),
                headers: vec![],
            },
            ..exec(name, 1, 0, None)
        }
    }

    fn chain(order: Order, steps: Vec<StepSpec>) -> ChainSpec {
        ChainSpec {
            name: "c".into(),
            verify_timeout: Duration::from_secs(5),
            reset_after: Duration::from_secs(3600),
            order,
            steps,
            mode: crate::config::RecoveryMode::Active,
        }
    }

    fn three() -> ChainSpec {
        chain(
            Order::Fixed,
            vec![
                exec("a", 2, 60, None),
                exec("b", 2, 60, None),
                exec("c", 1, 60, None),
            ],
        )
    }

    fn state(attempts: u32, last: Option<i64>) -> StepState {
        StepState {
            attempts,
            last_attempt_ms: last,
        }
    }

    fn states(list: &[(&str, u32, Option<i64>)]) -> BTreeMap<String, StepState> {
        list.iter()
            .map(|(n, a, l)| (n.to_string(), state(*a, *l)))
            .collect()
    }

    fn open(c: &ChainSpec, s: BTreeMap<String, StepState>, verifies: bool) -> Run {
        Run::open(c, s, &BTreeMap::new(), Mode::Act, verifies, 1_000_000).expect("opens")
    }

    /// Drives a run to its end: each action returns the next of `actions`, each verification
    /// the next of `checks`. Returns the step names acted on, the skips and the end.
    fn drive(
        c: &ChainSpec,
        run: &mut Run,
        actions: &[ActionResult],
        checks: &[Verification],
    ) -> (Vec<String>, Vec<(String, SkipReason)>, RunEnd) {
        let (mut acted, mut skipped) = (Vec::new(), Vec::new());
        let (mut actions, mut checks) = (actions.iter(), checks.iter());
        for _ in 0..100 {
            match run.next(c, NONE, 1_000_000) {
                Decision::Act { index } => {
                    acted.push(c.steps[index].name.clone());
                    let result = *actions.next().expect("an action result");
                    run.action_finished(c, result, NONE, 0);
                }
                Decision::Verify { .. } => {
                    let found = *checks.next().expect("a verification");
                    run.verified(c, found);
                }
                Decision::Skip { index, reason, .. } => {
                    skipped.push((c.steps[index].name.clone(), reason))
                }
                Decision::WouldRun { index } => {
                    acted.push(format!("would {}", c.steps[index].name))
                }
                Decision::Shadow { index } => acted.push(format!("shadow {}", c.steps[index].name)),
                Decision::End(end) => return (acted, skipped, end),
            }
        }
        panic!("the run never ended");
    }

    #[test]
    fn preflight_table() {
        let c = three(); // reset_after 1h
        let cases = [
            (None, 5_000_000, false, false),
            (Some(0), 3_599_999, false, true),
            (Some(0), 3_600_000, true, true),
            (Some(1_000), 999, false, true),
        ];
        for (since, now, reset, clear) in cases {
            let p = preflight(&c, since, now);
            assert_eq!(
                (p.reset_counters, p.clear_healthy_since),
                (reset, clear),
                "since {since:?} now {now}"
            );
        }
    }

    #[test]
    fn a_run_opens_only_when_some_step_could_run() {
        let c = three();
        type Case = (BTreeMap<String, StepState>, i64, Result<(), Option<i64>>);
        let cases: Vec<Case> = vec![
            (states(&[]), 0, Ok(())),
            (
                states(&[("a", 2, Some(0)), ("b", 2, Some(0)), ("c", 1, Some(0))]),
                10_000_000,
                Err(None),
            ),
            (
                states(&[("a", 2, Some(0)), ("b", 1, Some(500)), ("c", 1, Some(0))]),
                30_000,
                Err(Some(60_500)),
            ),
            (
                states(&[("a", 2, Some(0)), ("b", 1, Some(500)), ("c", 1, Some(0))]),
                60_500,
                Ok(()),
            ),
        ];
        for (s, now, want) in cases {
            let got = Run::open(&c, s.clone(), &BTreeMap::new(), Mode::Act, true, now)
                .map(|_| ())
                .map_err(|e| e.next_possible_ms);
            assert_eq!(got, want, "states {s:?} now {now}");
        }
    }

    #[test]
    fn first_step_fixes_and_later_counters_reset() {
        let c = three();
        let mut run = open(&c, states(&[("b", 1, Some(0))]), true);
        let (acted, skipped, end) = drive(
            &c,
            &mut run,
            &[ActionResult::Success],
            &[Verification::Healthy],
        );
        assert_eq!(acted, ["a"]);
        assert!(skipped.is_empty());
        assert_eq!(end.outcome, RunOutcome::Recovered);
        assert_eq!(end.reset_steps, ["b", "c"]);
    }

    #[test]
    fn escalation_until_a_step_is_verified() {
        let c = three();
        let mut run = open(&c, states(&[]), true);
        let (acted, _, end) = drive(
            &c,
            &mut run,
            &[ActionResult::Failure, ActionResult::Success],
            &[Verification::Healthy],
        );
        assert_eq!(acted, ["a", "b"]);
        assert_eq!(end.outcome, RunOutcome::Recovered);
        assert_eq!(end.reset_steps, ["c"]);
    }

    #[test]
    fn an_unverified_success_escalates() {
        let c = three();
        let mut run = open(&c, states(&[]), true);
        let (acted, _, end) = drive(
            &c,
            &mut run,
            &[ActionResult::Success; 3],
            &[Verification::NotHealthy; 3],
        );
        assert_eq!(acted, ["a", "b", "c"]);
        assert_eq!(end.outcome, RunOutcome::Exhausted);
        assert!(end.reset_steps.is_empty());
    }

    #[test]
    fn a_subject_healthy_between_steps_ends_the_run_before_the_next_step() {
        let c = three();
        let mut run = open(&c, states(&[]), true);
        assert_eq!(run.next(&c, NONE, 1_000_000), Decision::Act { index: 0 });
        assert_eq!(
            run.action_finished(&c, ActionResult::Success, NONE, 0),
            None
        );
        // Verification gave up a moment before the check turned healthy.
        run.verified(&c, Verification::NotHealthy);
        let healthy = Signals {
            healthy: true,
            ..NONE
        };
        match run.next(&c, healthy, 1_000_000) {
            Decision::End(end) => {
                assert_eq!(end.outcome, RunOutcome::Recovered);
                assert!(end.reset_steps.is_empty(), "no step is credited");
            }
            other => panic!("a later step ran on a healthy subject: {other:?}"),
        }
    }

    #[test]
    fn without_a_check_the_action_decides() {
        let c = three();
        let mut run = open(&c, states(&[]), false);
        let (acted, _, end) = drive(&c, &mut run, &[ActionResult::Success], &[]);
        assert_eq!(acted, ["a"]);
        assert_eq!(end.outcome, RunOutcome::Recovered);
    }

    #[test]
    fn timeouts_and_failures_escalate_to_exhausted() {
        let c = three();
        let mut run = open(&c, states(&[]), true);
        let (acted, _, end) = drive(
            &c,
            &mut run,
            &[
                ActionResult::Timeout,
                ActionResult::Failure,
                ActionResult::NotRun,
            ],
            &[],
        );
        assert_eq!(acted, ["a", "b", "c"]);
        assert_eq!(end.outcome, RunOutcome::Exhausted);
    }

    #[test]
    fn skip_table_cooldown_and_max_attempts() {
        let c = three();
        // now is 1_000_000 in drive(); cooldowns are 60 s.
        let cases = [
            (
                states(&[("a", 1, Some(990_000))]),
                vec![("a", SkipReason::Cooldown)],
                vec!["b"],
            ),
            (
                states(&[("a", 2, Some(0))]),
                vec![("a", SkipReason::MaxAttempts)],
                vec!["b"],
            ),
            (
                states(&[("a", 2, Some(999_999)), ("b", 1, Some(999_000))]),
                vec![("a", SkipReason::MaxAttempts), ("b", SkipReason::Cooldown)],
                vec!["c"],
            ),
            (states(&[("a", 1, Some(940_000))]), vec![], vec!["a"]),
        ];
        for (s, want_skips, want_acted) in cases {
            let mut run = open(&c, s.clone(), false);
            let (acted, skipped, end) = drive(&c, &mut run, &[ActionResult::Success], &[]);
            let skipped: Vec<(&str, SkipReason)> =
                skipped.iter().map(|(n, r)| (n.as_str(), *r)).collect();
            assert_eq!(skipped, want_skips, "states {s:?}");
            assert_eq!(acted, want_acted, "states {s:?}");
            assert_eq!(end.outcome, RunOutcome::Recovered);
        }
    }

    #[test]
    fn confirmation_table() {
        let confirmed = |k: Option<u32>| StepSpec {
            confirm: k,
            ..exec("a", 3, 60, None)
        };
        let c = chain(
            Order::Fixed,
            vec![confirmed(Some(2)), exec("b", 1, 0, None)],
        );
        // (critical replicas, step a's decision)
        for (seen, unconfirmed) in [(0, true), (1, true), (2, false), (3, false)] {
            let opening = Opening {
                mode: Mode::Act,
                verifies: true,
                critical_replicas: seen,
            };
            let mut run = Run::open_with(&c, states(&[]), &BTreeMap::new(), opening, 0)
                .expect("b could run in any case");
            match run.next(&c, NONE, 0) {
                Decision::Skip {
                    index: 0,
                    reason,
                    until_ms: None,
                } => {
                    assert!(unconfirmed, "{seen}");
                    assert_eq!(reason, SkipReason::Unconfirmed);
                }
                Decision::Act { index: 0 } => assert!(!unconfirmed, "{seen}"),
                other => panic!("{seen}: {other:?}"),
            }
        }
        // Only unconfirmed steps: no run opens, and the reason is recorded once per incident.
        let only = chain(Order::Fixed, vec![confirmed(Some(2))]);
        let opening = Opening {
            mode: Mode::Act,
            verifies: true,
            critical_replicas: 1,
        };
        let nothing = Run::open_with(&only, states(&[]), &BTreeMap::new(), opening, 0).unwrap_err();
        assert_eq!(nothing.skips[0].reason, SkipReason::Unconfirmed);
        assert_eq!(
            nothing.next_possible_ms,
            Some(60_000),
            "no attempt yet: no later than its cooldown"
        );
        // Max attempts outranks confirmation: it will not pass when a replica agrees.
        let spent = Run::open_with(
            &only,
            states(&[("a", 3, Some(0))]),
            &BTreeMap::new(),
            opening,
            0,
        )
        .unwrap_err();
        assert_eq!(spent.skips[0].reason, SkipReason::MaxAttempts);
        // A second replica agrees between steps: the step runs.
        let mut run = Run::open_with(&c, states(&[]), &BTreeMap::new(), opening, 0).unwrap();
        run.confirmations(2);
        assert_eq!(run.next(&c, NONE, 0), Decision::Act { index: 0 });
    }

    #[test]
    fn a_cooldown_skip_says_when_it_ends() {
        let c = three();
        let mut run = open(&c, states(&[("a", 1, Some(990_000))]), false);
        assert_eq!(
            run.next(&c, NONE, 1_000_000),
            Decision::Skip {
                index: 0,
                reason: SkipReason::Cooldown,
                until_ms: Some(1_050_000)
            }
        );
    }

    #[test]
    fn acting_counts_the_attempt_so_a_refresh_sees_it() {
        let c = chain(Order::Fixed, vec![exec("a", 1, 60, None)]);
        let mut run = open(&c, states(&[]), false);
        assert_eq!(run.next(&c, NONE, 5), Decision::Act { index: 0 });
        assert_eq!(run.states.get("a"), Some(&state(1, Some(5))));
    }

    #[test]
    fn adaptive_order_moves_steps_within_a_tier_only() {
        let c = chain(
            Order::Adaptive,
            vec![
                exec("cache", 1, 0, None),
                exec("restart_a", 1, 0, Some(1)),
                exec("restart_b", 1, 0, Some(1)),
                exec("escalate", 1, 0, None),
            ],
        );
        let eff: BTreeMap<String, f64> = [("restart_b".to_string(), 0.9)].into_iter().collect();
        let mut run = Run::open(&c, states(&[]), &eff, Mode::Act, false, 0).unwrap();
        assert_eq!(run.order(), [0, 2, 1, 3]);
        let (acted, _, _) = drive(
            &c,
            &mut run,
            &[
                ActionResult::Failure,
                ActionResult::Failure,
                ActionResult::Success,
            ],
            &[],
        );
        assert_eq!(acted, ["cache", "restart_b", "restart_a"]);
    }

    #[test]
    fn fixed_order_ignores_effectiveness() {
        let c = chain(
            Order::Fixed,
            vec![exec("a", 1, 0, Some(1)), exec("b", 1, 0, Some(1))],
        );
        let eff: BTreeMap<String, f64> = [("b".to_string(), 0.9)].into_iter().collect();
        let run = Run::open(&c, states(&[]), &eff, Mode::Act, false, 0).unwrap();
        assert_eq!(run.order(), [0, 1]);
    }

    #[test]
    fn dry_run_shows_every_runnable_step_and_acts_on_none() {
        let c = three();
        let mut run = Run::open(
            &c,
            states(&[("b", 2, Some(0))]),
            &BTreeMap::new(),
            Mode::DryRun,
            true,
            1_000_000,
        )
        .unwrap();
        let (acted, skipped, end) = drive(&c, &mut run, &[], &[]);
        assert_eq!(acted, ["would a", "would c"]);
        assert_eq!(skipped, [("b".to_string(), SkipReason::MaxAttempts)]);
        assert_eq!(end.outcome, RunOutcome::Exhausted);
    }

    #[test]
    fn shadow_records_the_step_that_would_run_then_ends() {
        let c = three();
        // a is cooling down: b is the step that would run.
        let mut run = Run::open(
            &c,
            states(&[("a", 1, Some(990_000))]),
            &BTreeMap::new(),
            Mode::Shadow,
            true,
            1_000_000,
        )
        .unwrap();
        assert!(matches!(
            run.next(&c, NONE, 1_000_000),
            Decision::Skip {
                index: 0,
                reason: SkipReason::Cooldown,
                ..
            }
        ));
        assert_eq!(run.next(&c, NONE, 1_000_000), Decision::Shadow { index: 1 });
        match run.next(&c, NONE, 1_000_000) {
            Decision::End(end) => {
                assert_eq!(end.outcome, RunOutcome::Shadow);
                assert!(end.reset_steps.is_empty());
            }
            other => panic!("want the end, got {other:?}"),
        }
        assert_eq!(
            run.states.get("b"),
            None,
            "shadow counts no attempt, even in its own bookkeeping"
        );
    }

    #[test]
    fn a_notification_is_neither_learned_nor_an_end() {
        let c = chain(
            Order::Fixed,
            vec![exec("a", 1, 0, None), notify("tell"), exec("b", 1, 0, None)],
        );
        let mut run = open(&c, states(&[]), true);
        assert_eq!(run.next(&c, NONE, 0), Decision::Act { index: 0 });
        assert_eq!(
            run.action_finished(&c, ActionResult::Failure, NONE, 0),
            Some(StepEnd {
                index: 0,
                result: AttemptResult::Failure,
                learn: Some(false)
            })
        );
        assert_eq!(run.next(&c, NONE, 0), Decision::Act { index: 1 });
        // A notification is not verified either: it reached people, nothing more.
        assert_eq!(
            run.action_finished(&c, ActionResult::Success, NONE, 0),
            Some(StepEnd {
                index: 1,
                result: AttemptResult::Success,
                learn: None
            })
        );
        assert_eq!(run.next(&c, NONE, 0), Decision::Act { index: 2 });
    }

    #[test]
    fn learning_table() {
        let c = three();
        let cases = [
            (
                ActionResult::Success,
                Some(Verification::Healthy),
                AttemptResult::Success,
                Some(true),
            ),
            (
                ActionResult::Success,
                Some(Verification::NotHealthy),
                AttemptResult::Failure,
                Some(false),
            ),
            (
                ActionResult::Failure,
                None,
                AttemptResult::Failure,
                Some(false),
            ),
            (
                ActionResult::Timeout,
                None,
                AttemptResult::Timeout,
                Some(false),
            ),
            // A step that never ran teaches nothing about the step.
            (ActionResult::NotRun, None, AttemptResult::Failure, None),
        ];
        for (action, check, result, learn) in cases {
            let mut run = open(&c, states(&[]), true);
            assert_eq!(run.next(&c, NONE, 0), Decision::Act { index: 0 });
            let end = match run.action_finished(&c, action, NONE, 0) {
                Some(end) => end,
                None => {
                    assert!(matches!(run.next(&c, NONE, 0), Decision::Verify { .. }));
                    run.verified(&c, check.expect("a verification"))
                        .expect("a step end")
                }
            };
            assert_eq!(
                (end.result, end.learn),
                (result, learn),
                "{action:?} {check:?}"
            );
        }
    }

    #[test]
    fn verification_deadline_is_verify_timeout_from_now() {
        let c = three(); // verify_timeout 5 s
        let mut run = open(&c, states(&[]), true);
        assert_eq!(run.next(&c, NONE, 100), Decision::Act { index: 0 });
        assert_eq!(
            run.action_finished(&c, ActionResult::Success, NONE, 200),
            None
        );
        assert_eq!(
            run.next(&c, NONE, 300),
            Decision::Verify {
                index: 0,
                deadline_ms: 5_200
            }
        );
    }

    #[test]
    fn resolved_while_waiting_ends_recovered() {
        let c = three();
        let mut run = open(&c, states(&[]), true);
        assert_eq!(run.next(&c, NONE, 0), Decision::Act { index: 0 });
        assert_eq!(
            run.action_finished(&c, ActionResult::Success, NONE, 0),
            None
        );
        let end = run.verified(&c, Verification::AlertResolved).unwrap();
        assert_eq!(end.result, AttemptResult::Success);
        match run.next(&c, NONE, 0) {
            Decision::End(end) => assert_eq!(end.outcome, RunOutcome::Recovered),
            other => panic!("want the end, got {other:?}"),
        }
    }

    #[test]
    fn resolved_between_steps_ends_recovered_without_acting() {
        let c = three();
        let mut run = open(&c, states(&[]), true);
        assert_eq!(run.next(&c, NONE, 0), Decision::Act { index: 0 });
        run.action_finished(&c, ActionResult::Failure, NONE, 0);
        let resolved = Signals {
            resolved: true,
            ..NONE
        };
        match run.next(&c, resolved, 0) {
            Decision::End(end) => {
                assert_eq!(end.outcome, RunOutcome::Recovered);
                assert!(end.reset_steps.is_empty(), "nothing fixed it: no reset");
            }
            other => panic!("want the end, got {other:?}"),
        }
    }

    #[test]
    fn cancellation_table() {
        let c = three();
        let cancelled = Signals {
            cancelled: true,
            ..NONE
        };
        let fenced = Signals {
            fenced: true,
            ..NONE
        };
        for signals in [cancelled, fenced] {
            // Before any step.
            let mut run = open(&c, states(&[]), true);
            assert!(matches!(
                run.next(&c, signals, 0),
                Decision::End(RunEnd {
                    outcome: RunOutcome::Cancelled,
                    ..
                })
            ));
            // During an action: it failed because it was stopped; nothing is learned.
            let mut run = open(&c, states(&[]), true);
            assert_eq!(run.next(&c, NONE, 0), Decision::Act { index: 0 });
            assert_eq!(
                run.action_finished(&c, ActionResult::Failure, signals, 0),
                Some(StepEnd {
                    index: 0,
                    result: AttemptResult::Failure,
                    learn: None
                })
            );
            assert!(matches!(
                run.next(&c, NONE, 0),
                Decision::End(RunEnd {
                    outcome: RunOutcome::Cancelled,
                    ..
                })
            ));
            // During verification: the interpreter stops the wait and says so.
            let mut run = open(&c, states(&[]), true);
            assert_eq!(run.next(&c, NONE, 0), Decision::Act { index: 0 });
            run.action_finished(&c, ActionResult::Success, NONE, 0);
            assert_eq!(
                run.verified(&c, Verification::Interrupted),
                Some(StepEnd {
                    index: 0,
                    result: AttemptResult::Failure,
                    learn: None
                })
            );
            assert!(matches!(
                run.next(&c, signals, 0),
                Decision::End(RunEnd {
                    outcome: RunOutcome::Cancelled,
                    ..
                })
            ));
        }
    }

    #[test]
    fn a_success_that_beat_the_cancellation_still_counts() {
        let c = three();
        let mut run = open(&c, states(&[]), false);
        assert_eq!(run.next(&c, NONE, 0), Decision::Act { index: 0 });
        let cancelled = Signals {
            cancelled: true,
            ..NONE
        };
        let end = run
            .action_finished(&c, ActionResult::Success, cancelled, 0)
            .unwrap();
        assert_eq!(end.learn, Some(true));
        match run.next(&c, cancelled, 0) {
            Decision::End(end) => assert_eq!(end.outcome, RunOutcome::Recovered),
            other => panic!("want the end, got {other:?}"),
        }
    }

    #[test]
    fn a_refresh_that_finds_nothing_to_run_closes_the_run() {
        let c = chain(Order::Fixed, vec![exec("a", 1, 60, None)]);
        let mut run = open(&c, states(&[]), false);
        // A replica ran `a` between the first read and holding the run.
        let err = run
            .refresh(&c, states(&[("a", 1, Some(999_000))]), 1_000_000)
            .unwrap_err();
        assert_eq!(err.next_possible_ms, None);
        let c = chain(Order::Fixed, vec![exec("a", 3, 60, None)]);
        let mut run = open(&c, states(&[]), false);
        let err = run
            .refresh(&c, states(&[("a", 1, Some(999_000))]), 1_000_000)
            .unwrap_err();
        assert_eq!(err.next_possible_ms, Some(1_059_000));
        assert!(run
            .refresh(&c, states(&[("a", 1, Some(900_000))]), 1_000_000)
            .is_ok());
    }

    #[test]
    fn asking_twice_while_acting_repeats_the_step_without_counting_again() {
        let c = three();
        let mut run = open(&c, states(&[]), false);
        assert_eq!(run.next(&c, NONE, 0), Decision::Act { index: 0 });
        assert_eq!(run.next(&c, NONE, 10), Decision::Act { index: 0 });
        assert_eq!(run.states.get("a"), Some(&state(1, Some(0))));
    }

    #[test]
    fn results_out_of_turn_are_ignored() {
        let c = three();
        let mut run = open(&c, states(&[]), true);
        assert_eq!(run.verified(&c, Verification::Healthy), None);
        assert_eq!(
            run.action_finished(&c, ActionResult::Success, NONE, 0),
            None
        );
        assert_eq!(run.next(&c, NONE, 0), Decision::Act { index: 0 });
    }

    #[test]
    fn an_ended_run_stays_ended() {
        let c = chain(Order::Fixed, vec![exec("a", 1, 0, None)]);
        let mut run = open(&c, states(&[]), false);
        let (_, _, end) = drive(&c, &mut run, &[ActionResult::Failure], &[]);
        assert_eq!(end.outcome, RunOutcome::Exhausted);
        for _ in 0..3 {
            match run.next(&c, NONE, 0) {
                Decision::End(again) => assert_eq!(again.outcome, RunOutcome::Exhausted),
                other => panic!("want the end again, got {other:?}"),
            }
        }
    }

    #[test]
    fn next_possible_table() {
        let c = three(); // max 2, 2, 1; cooldown 60 s each
        let cases = [
            (states(&[]), Some(60_000)),
            (
                states(&[("a", 2, Some(0)), ("b", 1, Some(10_000)), ("c", 1, Some(0))]),
                Some(70_000),
            ),
            (
                states(&[("a", 2, Some(0)), ("b", 2, Some(0)), ("c", 1, Some(0))]),
                None,
            ),
        ];
        for (s, want) in cases {
            assert_eq!(next_possible(&c, &s), want, "states {s:?}");
        }
    }
}
