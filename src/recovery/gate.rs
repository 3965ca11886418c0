//! Holds: whether a trigger may start a run now, or is held back by a pause, a maintenance
//! window, the open circuit, the rate limit or the concurrency limits. Pure: the counts, the
//! open windows and `now` are arguments; the manager (and, for replicas, the store) supplies
//! them.

use std::collections::BTreeMap;

pub use crate::config::{MaxUnhealthy, RateLimit, RecoveryLimits, DEFAULT_MAX_CONCURRENT_RUNS};
pub use crate::vocabulary::HoldReason;

/// Below this many critical checks the circuit never opens, so a small setup heals as before.
pub const CIRCUIT_MIN_CRITICAL: usize = 3;

/// The longest a check trigger settles before it may start.
pub const MAX_SETTLE_MS: i64 = 60_000;

/// How long a check trigger waits before it may start: two probe intervals of its check (at
/// most [`MAX_SETTLE_MS`]), so that checks failing together have all been probed (and seen
/// critical) before the circuit breaker decides. Only where the circuit could open at all: with
/// fewer enabled checks than it needs critical, a small setup heals at once, as before.
pub fn settle_ms(interval_ms: i64, enabled_checks: usize) -> i64 {
    if enabled_checks < CIRCUIT_MIN_CRITICAL {
        return 0;
    }
    interval_ms.saturating_mul(2).clamp(0, MAX_SETTLE_MS)
}

/// Whether the circuit breaker holds every new run: more than `max` of the `enabled` checks
/// are critical (and at least [`CIRCUIT_MIN_CRITICAL`]).
pub fn circuit_open(max: MaxUnhealthy, critical: usize, enabled: usize) -> bool {
    if critical < CIRCUIT_MIN_CRITICAL {
        return false;
    }
    match max {
        MaxUnhealthy::Share(share) => critical as f64 > share * enabled as f64,
        MaxUnhealthy::Count(count) => critical > count as usize,
    }
}

/// Whether another start now would exceed the rate limit, given the start times of earlier
/// runs (any order).
pub fn rate_exceeded(limit: RateLimit, starts_ms: &[i64], now_ms: i64) -> bool {
    let since = now_ms.saturating_sub(limit.within_ms);
    let recent = starts_ms
        .iter()
        .filter(|t| **t > since && **t <= now_ms)
        .count();
    recent >= limit.count as usize
}

/// How busy recovery is right now, as far as a new run would care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Load {
    /// Runs in progress, all chains.
    pub active: usize,
    /// Runs in progress of the trigger's chain.
    pub active_in_chain: usize,
    pub critical_checks: usize,
    pub enabled_checks: usize,
}

/// Whether a pause or an open maintenance window matches the run's labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OperatorHolds {
    pub paused: bool,
    pub in_maintenance: bool,
    /// A check the run depends on (`depends_on`) is failing: a dependency hold, which binds
    /// manual runs as an operator's does.
    pub blocked: bool,
}

impl OperatorHolds {
    /// Which of the active pauses and open maintenance windows hold a run with these labels
    /// now: the one reading of them for every trigger, automatic or manual.
    pub fn of(
        pauses: &[crate::pause::Pause],
        windows: &[crate::maintenance::Window],
        labels: &BTreeMap<String, String>,
        now_ms: i64,
    ) -> OperatorHolds {
        OperatorHolds {
            paused: crate::pause::paused(pauses, labels, now_ms),
            in_maintenance: windows.iter().any(|w| w.holds(labels, now_ms)),
            blocked: false,
        }
    }
}

/// Whose trigger this is: manual runs obey only what an operator made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Automatic,
    Manual { force: bool },
}

/// What holds a trigger of `chain` back now, if anything. Operator holds come first (they
/// say why most plainly), then the circuit, the rate and the concurrency limits.
pub fn hold_reason(
    limits: &RecoveryLimits,
    chain: &str,
    operator: OperatorHolds,
    load: Load,
    recent_starts_ms: &[i64],
    origin: Origin,
    now_ms: i64,
) -> Option<HoldReason> {
    let operator = match origin {
        Origin::Manual { force: true } => None,
        _ if operator.paused => Some(HoldReason::Paused),
        _ if operator.in_maintenance => Some(HoldReason::Maintenance),
        _ if operator.blocked => Some(HoldReason::Dependency),
        _ => None,
    };
    if operator.is_some() || matches!(origin, Origin::Manual { .. }) {
        return operator;
    }
    if circuit_open(
        limits.max_unhealthy,
        load.critical_checks,
        load.enabled_checks,
    ) {
        return Some(HoldReason::CircuitOpen);
    }
    if let Some(rate) = limits.max_runs {
        if rate_exceeded(rate, recent_starts_ms, now_ms) {
            return Some(HoldReason::Rate);
        }
    }
    let global_full = limits
        .max_concurrent_runs
        .is_some_and(|max| load.active >= max as usize);
    let chain_full = limits
        .per_chain
        .get(chain)
        .is_some_and(|max| load.active_in_chain >= *max as usize);
    (global_full || chain_full).then_some(HoldReason::Concurrency)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> RecoveryLimits {
        RecoveryLimits {
            max_concurrent_runs: Some(3),
            max_runs: Some(RateLimit {
                count: 5,
                within_ms: 600_000,
            }),
            max_unhealthy: MaxUnhealthy::Share(0.5),
            per_chain: [("web".to_string(), 1)].into_iter().collect(),
        }
    }

    fn load(active: usize, in_chain: usize, critical: usize, enabled: usize) -> Load {
        Load {
            active,
            active_in_chain: in_chain,
            critical_checks: critical,
            enabled_checks: enabled,
        }
    }

    #[test]
    fn circuit_table() {
        use MaxUnhealthy::*;
        let cases = [
            // Fewer than three critical never opens it, whatever the share.
            (Share(0.5), 2, 2, false),
            (Share(0.0), 2, 100, false),
            (Share(0.5), 3, 4, true),
            (Share(0.5), 10, 20, false),
            (Share(0.5), 11, 20, true),
            (Share(0.5), 12, 20, true),
            (Share(1.0), 20, 20, false),
            (Count(20), 20, 100, false),
            (Count(20), 21, 100, true),
            (Count(0), 3, 100, true),
        ];
        for (max, critical, enabled, want) in cases {
            assert_eq!(
                circuit_open(max, critical, enabled),
                want,
                "{max:?} {critical}/{enabled}"
            );
        }
    }

    #[test]
    fn rate_is_a_sliding_window() {
        let limit = RateLimit {
            count: 2,
            within_ms: 1_000,
        };
        let cases: [(&[i64], i64, bool); 6] = [
            (&[], 5_000, false),
            (&[4_500], 5_000, false),
            (&[4_500, 4_900], 5_000, true),
            // Exactly `within` ago has left the window.
            (&[4_000, 4_900], 5_000, false),
            (&[4_001, 4_900], 5_000, true),
            (&[4_900, 4_001], 5_001, false),
        ];
        for (starts, now, want) in cases {
            assert_eq!(
                rate_exceeded(limit, starts, now),
                want,
                "{starts:?} at {now}"
            );
        }
    }

    #[test]
    fn hold_reason_table() {
        let l = limits();
        let auto = Origin::Automatic;
        let manual = Origin::Manual { force: false };
        let forced = Origin::Manual { force: true };
        let starts5: &[i64] = &[1, 2, 3, 4, 5];
        type Case<'a> = (
            &'a str,
            bool,
            bool,
            Load,
            &'a [i64],
            Origin,
            Option<HoldReason>,
        );
        let cases: Vec<Case> = vec![
            ("db", false, false, load(0, 0, 0, 20), &[], auto, None),
            (
                "db",
                true,
                false,
                load(0, 0, 0, 20),
                &[],
                auto,
                Some(HoldReason::Paused),
            ),
            (
                "db",
                true,
                true,
                load(0, 0, 0, 20),
                &[],
                auto,
                Some(HoldReason::Paused),
            ),
            (
                "db",
                false,
                true,
                load(0, 0, 0, 20),
                &[],
                auto,
                Some(HoldReason::Maintenance),
            ),
            (
                "db",
                false,
                false,
                load(0, 0, 12, 20),
                &[],
                auto,
                Some(HoldReason::CircuitOpen),
            ),
            // Operator holds say why before the circuit does.
            (
                "db",
                false,
                true,
                load(0, 0, 12, 20),
                &[],
                auto,
                Some(HoldReason::Maintenance),
            ),
            (
                "db",
                false,
                false,
                load(0, 0, 0, 20),
                starts5,
                auto,
                Some(HoldReason::Rate),
            ),
            (
                "db",
                false,
                false,
                load(3, 0, 0, 20),
                &[],
                auto,
                Some(HoldReason::Concurrency),
            ),
            ("db", false, false, load(2, 0, 0, 20), &[], auto, None),
            // The chain's own limit is below the global one.
            (
                "web",
                false,
                false,
                load(1, 1, 0, 20),
                &[],
                auto,
                Some(HoldReason::Concurrency),
            ),
            ("web", false, false, load(1, 0, 0, 20), &[], auto, None),
            // Manual runs obey pauses and maintenance, not the limits or the circuit.
            (
                "db",
                false,
                false,
                load(9, 9, 19, 20),
                starts5,
                manual,
                None,
            ),
            (
                "db",
                true,
                false,
                load(0, 0, 0, 20),
                &[],
                manual,
                Some(HoldReason::Paused),
            ),
            (
                "db",
                false,
                true,
                load(0, 0, 0, 20),
                &[],
                manual,
                Some(HoldReason::Maintenance),
            ),
            // --force overrides them too.
            ("db", true, true, load(9, 9, 19, 20), starts5, forced, None),
        ];
        for (chain, paused, maintenance, load, starts, origin, want) in cases {
            assert_eq!(
                hold_reason(
                    &l,
                    chain,
                    OperatorHolds {
                        blocked: false,
                        paused,
                        in_maintenance: maintenance
                    },
                    load,
                    starts,
                    origin,
                    10
                ),
                want,
                "{chain} paused={paused} maintenance={maintenance} {load:?} {starts:?} {origin:?}"
            );
        }
    }

    #[test]
    fn no_limits_hold_nothing_but_the_circuit() {
        let l = RecoveryLimits::default();
        assert_eq!(
            hold_reason(
                &l,
                "c",
                OperatorHolds::default(),
                load(1000, 1000, 0, 10),
                &[1; 100],
                Origin::Automatic,
                10
            ),
            None
        );
        assert_eq!(
            hold_reason(
                &l,
                "c",
                OperatorHolds::default(),
                load(0, 0, 6, 10),
                &[],
                Origin::Automatic,
                10
            ),
            Some(HoldReason::CircuitOpen),
            "the default max_unhealthy is 50%"
        );
    }

    #[test]
    fn settling_is_two_intervals_where_the_circuit_could_open() {
        assert_eq!(settle_ms(30_000, 2), 0, "too few checks for a circuit");
        assert_eq!(settle_ms(30_000, 3), 60_000);
        assert_eq!(settle_ms(500, 2000), 1_000);
        assert_eq!(settle_ms(3_600_000, 20), MAX_SETTLE_MS);
        assert!(
            !HoldReason::ALL.contains(&HoldReason::Settling),
            "never a label value"
        );
    }

    #[test]
    fn a_failing_dependency_holds_automatic_and_manual_runs_unless_forced() {
        let blocked = OperatorHolds {
            blocked: true,
            ..OperatorHolds::default()
        };
        let decide =
            |origin| hold_reason(&limits(), "db", blocked, load(0, 0, 0, 10), &[], origin, 0);
        assert_eq!(decide(Origin::Automatic), Some(HoldReason::Dependency));
        assert_eq!(
            decide(Origin::Manual { force: false }),
            Some(HoldReason::Dependency)
        );
        assert_eq!(decide(Origin::Manual { force: true }), None);
        assert!(HoldReason::Dependency.binds_manual_runs());
    }

    #[test]
    fn reasons_are_label_values() {
        let words: Vec<&str> = HoldReason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            words,
            [
                "concurrency",
                "rate",
                "circuit_open",
                "maintenance",
                "paused",
                "dependency"
            ]
        );
        assert!(HoldReason::Paused.binds_manual_runs());
        assert!(!HoldReason::CircuitOpen.binds_manual_runs());
    }
}
