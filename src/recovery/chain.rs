//! Pure chain decisions: which steps may run now, in what order, when counters reset, and how
//! effectiveness is learned. No IO, no clock: `now_ms` is an argument.

use std::collections::BTreeMap;

use crate::config::{ChainSpec, Order, StepSpec};

pub use crate::vocabulary::StepState;

pub use crate::vocabulary::SkipReason;

/// Effectiveness of a step that has never run: no evidence either way.
pub const UNTRIED_EFFECTIVENESS: f64 = 0.5;
/// Weight of the past in the exponentially weighted average.
const KEEP: f64 = 0.7;

/// Whether `step` must be skipped now, and why. Max attempts outranks cooldown: it will not
/// pass by waiting.
pub fn skip_reason(step: &StepSpec, state: StepState, now_ms: i64) -> Option<SkipReason> {
    if state.attempts >= step.max_attempts {
        return Some(SkipReason::MaxAttempts);
    }
    let cooldown_ms = step.cooldown.std().as_millis() as i64;
    match state.last_attempt_ms {
        Some(last) if now_ms < last.saturating_add(cooldown_ms) => Some(SkipReason::Cooldown),
        _ => None,
    }
}

/// Whether `step` waits for more replicas to see its check critical: its `confirm` asks for
/// more than the `critical_replicas` whose latest result is critical.
pub fn unconfirmed(step: &StepSpec, critical_replicas: u32) -> bool {
    step.confirm.is_some_and(|k| critical_replicas < k)
}

/// [`skip_reason`], then [`unconfirmed`] (which passes without anyone acting), with when a
/// cooldown ends (`None` for max attempts: not before a reset; nor for confirmation).
pub fn skip_until(
    step: &StepSpec,
    state: StepState,
    now_ms: i64,
    critical_replicas: u32,
) -> Option<(SkipReason, Option<i64>)> {
    let Some(reason) = skip_reason(step, state, now_ms) else {
        return unconfirmed(step, critical_replicas).then_some((SkipReason::Unconfirmed, None));
    };
    let until_ms = (reason == SkipReason::Cooldown).then(|| {
        let cooldown_ms = i64::try_from(step.cooldown.std().as_millis()).unwrap_or(i64::MAX);
        state
            .last_attempt_ms
            .unwrap_or(0)
            .saturating_add(cooldown_ms)
    });
    Some((reason, until_ms))
}

/// Whether any step of the chain could run now, `critical_replicas` seeing its check critical:
/// a new run starts only then.
pub fn could_any_run(
    chain: &ChainSpec,
    states: &BTreeMap<String, StepState>,
    now_ms: i64,
    critical_replicas: u32,
) -> bool {
    chain.steps.iter().any(|step| {
        let state = states.get(&step.name).copied().unwrap_or_default();
        skip_until(step, state, now_ms, critical_replicas).is_none()
    })
}

/// The order to try steps in, as indexes into `chain.steps`.
///
/// `fixed`: as written. `adaptive`: steps that share a `tier` trade places among the positions
/// that tier occupies, most effective first (ties keep the written order); steps without a tier
/// never move. So a chain stays graduated: learning only reorders equals.
pub fn step_order(chain: &ChainSpec, effectiveness: &BTreeMap<String, f64>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..chain.steps.len()).collect();
    if chain.order == Order::Fixed {
        return order;
    }
    let score = |i: usize| {
        effectiveness
            .get(&chain.steps[i].name)
            .copied()
            .unwrap_or(UNTRIED_EFFECTIVENESS)
    };
    let mut tiers: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, step) in chain.steps.iter().enumerate() {
        if let Some(tier) = step.tier {
            tiers.entry(tier).or_default().push(i);
        }
    }
    for positions in tiers.values() {
        let mut members = positions.clone();
        members.sort_by(|a, b| score(*b).total_cmp(&score(*a)).then(a.cmp(b)));
        for (slot, member) in positions.iter().zip(members) {
            order[*slot] = member;
        }
    }
    order
}

/// How the store folds an outcome into effectiveness: the same rule as [`learn`].
pub const LEARNING: crate::store::Ewma = crate::store::Ewma {
    keep: KEEP,
    untried: UNTRIED_EFFECTIVENESS,
};

/// The new effectiveness after one verified outcome.
pub fn learn(previous: Option<f64>, success: bool) -> f64 {
    let old = previous.unwrap_or(UNTRIED_EFFECTIVENESS);
    KEEP * old + (1.0 - KEEP) * if success { 1.0 } else { 0.0 }
}

/// Whether a subject that has been healthy since `healthy_since_ms` has earned a reset of its
/// attempt counters (like systemd's start-limit interval).
pub fn counters_reset_due(healthy_since_ms: Option<i64>, reset_after_ms: i64, now_ms: i64) -> bool {
    healthy_since_ms.is_some_and(|since| now_ms.saturating_sub(since) >= reset_after_ms)
}

/// After step `succeeded` (an index into `order`) fixed the target, the steps tried after it in
/// this order get their counters reset.
pub fn steps_to_reset(chain: &ChainSpec, order: &[usize], succeeded: usize) -> Vec<String> {
    order
        .iter()
        .skip_while(|i| **i != succeeded)
        .skip(1)
        .map(|i| chain.steps[*i].name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Duration;
    use crate::testing::exec_step as step;

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

    #[test]
    fn skip_reason_table() {
        let s = step("a", 2, 60, None);
        let cases = [
            (0, None, 0, None),
            (1, Some(0), 59_999, Some(SkipReason::Cooldown)),
            (1, Some(0), 60_000, None),
            (2, Some(0), 1_000_000, Some(SkipReason::MaxAttempts)),
            // Both apply: max attempts wins.
            (2, Some(0), 1, Some(SkipReason::MaxAttempts)),
        ];
        for (attempts, last, now, want) in cases {
            let state = StepState {
                attempts,
                last_attempt_ms: last,
            };
            assert_eq!(
                skip_reason(&s, state, now),
                want,
                "attempts {attempts} last {last:?} now {now}"
            );
        }
    }

    #[test]
    fn could_any_run_needs_one_free_step() {
        let c = chain(
            Order::Fixed,
            vec![step("a", 1, 0, None), step("b", 3, 60, None)],
        );
        let mut states = BTreeMap::new();
        assert!(could_any_run(&c, &states, 0, u32::MAX));
        states.insert(
            "a".into(),
            StepState {
                attempts: 1,
                last_attempt_ms: Some(0),
            },
        );
        states.insert(
            "b".into(),
            StepState {
                attempts: 1,
                last_attempt_ms: Some(0),
            },
        );
        assert!(
            !could_any_run(&c, &states, 30_000, u32::MAX),
            "a is used up and b is cooling down"
        );
        assert!(
            could_any_run(&c, &states, 60_000, u32::MAX),
            "b's cooldown expired"
        );
    }

    #[test]
    fn fixed_order_is_as_written() {
        let c = chain(
            Order::Fixed,
            vec![step("a", 1, 0, Some(1)), step("b", 1, 0, Some(1))],
        );
        let eff = [("b".to_string(), 0.9)].into_iter().collect();
        assert_eq!(step_order(&c, &eff), vec![0, 1]);
    }

    #[test]
    fn adaptive_order_reorders_only_within_a_tier() {
        let c = chain(
            Order::Adaptive,
            vec![
                step("cache", 1, 0, None),
                step("restart_a", 1, 0, Some(1)),
                step("restart_b", 1, 0, Some(1)),
                step("scale", 1, 0, Some(2)),
                step("escalate", 1, 0, None),
            ],
        );
        let untried = BTreeMap::new();
        assert_eq!(
            step_order(&c, &untried),
            vec![0, 1, 2, 3, 4],
            "ties keep the written order"
        );
        let eff: BTreeMap<String, f64> = [
            ("restart_b".to_string(), 0.8),
            ("restart_a".to_string(), 0.2),
            ("scale".to_string(), 1.0),
            ("escalate".to_string(), 1.0),
        ]
        .into_iter()
        .collect();
        // scale is the most effective of all, but its tier stays after tier 1.
        assert_eq!(step_order(&c, &eff), vec![0, 2, 1, 3, 4]);
    }

    #[test]
    fn tiers_interleaved_with_untiered_steps_keep_their_slots() {
        let c = chain(
            Order::Adaptive,
            vec![
                step("a", 1, 0, Some(1)),
                step("x", 1, 0, None),
                step("b", 1, 0, Some(1)),
            ],
        );
        let eff = [("b".to_string(), 0.9)].into_iter().collect();
        assert_eq!(step_order(&c, &eff), vec![2, 1, 0]);
    }

    #[test]
    fn learning_is_an_exponentially_weighted_average() {
        assert!((learn(None, true) - 0.65).abs() < 1e-12);
        assert!((learn(None, false) - 0.35).abs() < 1e-12);
        assert!((learn(Some(0.65), true) - 0.755).abs() < 1e-12);
        let mut e = None;
        for _ in 0..50 {
            e = Some(learn(e, true));
        }
        assert!(e.unwrap() > 0.99 && e.unwrap() <= 1.0);
    }

    #[test]
    fn counters_reset_after_a_healthy_period() {
        assert!(!counters_reset_due(None, 1000, 10_000));
        assert!(!counters_reset_due(Some(9_500), 1000, 10_000));
        assert!(counters_reset_due(Some(9_000), 1000, 10_000));
    }

    #[test]
    fn later_steps_reset_after_a_success() {
        let c = chain(
            Order::Fixed,
            vec![
                step("a", 1, 0, None),
                step("b", 1, 0, None),
                step("c", 1, 0, None),
            ],
        );
        assert_eq!(steps_to_reset(&c, &[0, 1, 2], 1), vec!["c".to_string()]);
        assert_eq!(
            steps_to_reset(&c, &[2, 0, 1], 2),
            vec!["a".to_string(), "b".to_string()]
        );
        assert!(steps_to_reset(&c, &[0, 1, 2], 2).is_empty());
    }
}
