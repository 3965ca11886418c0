//! Pure: the threshold state machine that turns each probe's raw status into the check's
//! status (runs of failures and successes, flap detection). No IO, no clock.

use crate::status::Status;

/// How many probes it takes to change a check's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub failures_before_critical: u32,
    pub successes_before_healthy: u32,
    /// Monit-style flap detection: critical after this many critical probes among the latest
    /// few, even when they never come in a row.
    pub flapping: Option<Flapping>,
}

/// "`failures` critical probes within the latest `within` probes".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flapping {
    pub failures: u32,
    /// At most [`Flapping::MAX_WINDOW`]: the window is a bit set of the latest probes.
    pub within: u32,
}

impl Flapping {
    pub const MAX_WINDOW: u32 = 64;
}

/// A check's status as thresholds see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthState {
    pub status: Status,
    /// The current run of critical probes.
    pub consecutive_failures: u32,
    /// The current run of non-critical probes.
    pub consecutive_successes: u32,
    /// Critical because of flap detection rather than a run of failures.
    pub flapping: bool,
    /// One bit per recent probe, newest in bit 0: set when the probe was critical.
    recent_failures: u64,
}

/// A change of a check's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: Status,
    pub to: Status,
}

impl Default for HealthState {
    fn default() -> Self {
        HealthState {
            status: Status::Unknown,
            consecutive_failures: 0,
            consecutive_successes: 0,
            flapping: false,
            recent_failures: 0,
        }
    }
}

impl HealthState {
    /// Applies one probe's raw status.
    ///
    /// A critical probe makes the check critical only after `failures_before_critical` of them in
    /// a row; until then the check keeps its status. Once critical, it takes
    /// `successes_before_healthy` non-critical probes in a row to leave. Otherwise healthy,
    /// warning and unknown pass straight through.
    ///
    /// With flap detection, a check whose failures never line up (fail, pass, fail, pass…) is
    /// critical, marked `flapping`, while the latest `within` probes hold at least `failures`
    /// critical ones; it leaves by the same rule as any critical check once they do not.
    pub fn observe(&mut self, raw: Status, thresholds: Thresholds) -> Option<Transition> {
        let from = self.status;
        let failed = raw == Status::Critical;
        self.recent_failures = (self.recent_failures << 1) | u64::from(failed);
        let flapping_now = thresholds.flapping.is_some_and(|f| {
            let window = f.within.clamp(1, Flapping::MAX_WINDOW);
            let mask = if window == 64 {
                u64::MAX
            } else {
                (1u64 << window) - 1
            };
            (self.recent_failures & mask).count_ones() >= f.failures.max(1)
        });
        if failed {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            self.consecutive_successes = 0;
            if self.consecutive_failures >= thresholds.failures_before_critical.max(1) {
                self.status = Status::Critical;
                self.flapping = false;
            } else if flapping_now {
                self.status = Status::Critical;
                self.flapping = true;
            }
        } else {
            self.consecutive_failures = 0;
            self.consecutive_successes = self.consecutive_successes.saturating_add(1);
            if flapping_now {
                self.flapping = self.flapping || self.status != Status::Critical;
                self.status = Status::Critical;
            } else if self.status != Status::Critical
                || self.consecutive_successes >= thresholds.successes_before_healthy.max(1)
            {
                self.status = raw;
                self.flapping = false;
            }
        }
        (from != self.status).then_some(Transition {
            from,
            to: self.status,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    fn run(raws: &[Status], fbc: u32, sbh: u32) -> Vec<Status> {
        let t = Thresholds {
            failures_before_critical: fbc,
            successes_before_healthy: sbh,
            flapping: None,
        };
        let mut h = HealthState::default();
        raws.iter()
            .map(|r| {
                h.observe(*r, t);
                h.status
            })
            .collect()
    }

    #[test]
    fn threshold_table() {
        let cases: &[(&[Status], u32, u32, &[Status])] = &[
            // Defaults: every probe counts at once.
            (
                &[Healthy, Critical, Healthy],
                1,
                1,
                &[Healthy, Critical, Healthy],
            ),
            // Critical only after three in a row; the check keeps its status until then.
            (
                &[Healthy, Critical, Critical, Critical],
                3,
                1,
                &[Healthy, Healthy, Healthy, Critical],
            ),
            // A healthy probe in between resets the run.
            (
                &[Healthy, Critical, Critical, Healthy, Critical, Critical],
                3,
                1,
                &[Healthy, Healthy, Healthy, Healthy, Healthy, Healthy],
            ),
            // Two non-critical probes needed to leave critical.
            (
                &[Critical, Healthy, Healthy],
                1,
                2,
                &[Critical, Critical, Healthy],
            ),
            (
                &[Critical, Healthy, Critical, Healthy, Healthy],
                1,
                2,
                &[Critical, Critical, Critical, Critical, Healthy],
            ),
            // Warning passes straight through, and counts as non-critical when recovering.
            (
                &[Healthy, Warning, Healthy],
                3,
                3,
                &[Healthy, Warning, Healthy],
            ),
            (
                &[Critical, Warning, Warning],
                1,
                2,
                &[Critical, Critical, Warning],
            ),
            // Not run yet, then failing below the threshold: still unknown.
            (&[Critical, Critical], 3, 1, &[Unknown, Unknown]),
            // Unknown passes through like warning.
            (
                &[Healthy, Unknown, Healthy],
                1,
                1,
                &[Healthy, Unknown, Healthy],
            ),
        ];
        for (raws, fbc, sbh, want) in cases {
            assert_eq!(
                &run(raws, *fbc, *sbh),
                want,
                "raws {raws:?} fbc {fbc} sbh {sbh}"
            );
        }
    }

    /// Statuses, with `*` after a status that is critical because of flapping.
    fn run_flapping(raws: &[Status], fbc: u32, sbh: u32, failures: u32, within: u32) -> String {
        let t = Thresholds {
            failures_before_critical: fbc,
            successes_before_healthy: sbh,
            flapping: Some(Flapping { failures, within }),
        };
        let mut h = HealthState::default();
        raws.iter()
            .map(|r| {
                h.observe(*r, t);
                format!(
                    "{}{}",
                    &h.status.as_str()[..1],
                    if h.flapping { "*" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn flap_detection_table() {
        // raws, failures_before_critical, successes_before_healthy, failures, within, statuses
        type Case<'a> = (&'a [Status], u32, u32, u32, u32, &'a str);
        let cases: &[Case] = &[
            // Alternating failures never reach three in a row, but three in five is flapping.
            (
                &[
                    Healthy, Critical, Healthy, Critical, Healthy, Critical, Healthy,
                ],
                3,
                1,
                3,
                5,
                "h h h h h c* h",
            ),
            // Once the window holds fewer failures, the check recovers as usual...
            (
                &[
                    Critical, Healthy, Critical, Healthy, Critical, Healthy, Healthy, Healthy,
                ],
                3,
                1,
                3,
                5,
                "u h h h c* h h h",
            ),
            // ...taking successes_before_healthy probes to leave.
            (
                &[
                    Critical, Healthy, Critical, Healthy, Critical, Healthy, Healthy, Healthy,
                    Healthy,
                ],
                3,
                3,
                3,
                5,
                "u h h h c* c* c* h h",
            ),
            // A run of failures is plain critical, not flapping.
            (
                &[Healthy, Critical, Critical, Critical],
                2,
                1,
                2,
                10,
                "h h c c",
            ),
            // Warnings are not failures.
            (
                &[Warning, Warning, Warning, Warning, Critical],
                2,
                1,
                2,
                5,
                "w w w w w",
            ),
            // A window of 64 probes works at the edge of the bit set.
            (&[Critical, Healthy, Critical], 5, 1, 2, 64, "u h c*"),
        ];
        for (raws, fbc, sbh, failures, within, want) in cases {
            assert_eq!(
                run_flapping(raws, *fbc, *sbh, *failures, *within),
                *want,
                "raws {raws:?} fbc {fbc} sbh {sbh} flapping {failures}/{within}"
            );
        }
    }

    #[test]
    fn failures_older_than_the_window_are_forgotten() {
        let mut raws = vec![Critical, Healthy, Critical];
        raws.extend(std::iter::repeat_n(Healthy, 70));
        raws.push(Critical);
        let out = run_flapping(&raws, 5, 1, 2, 64);
        // Flapping from the second failure (probe 3) until the first leaves the window (probe 65).
        assert!(out.starts_with("u h c*"), "{out}");
        assert_eq!(out.matches("c*").count(), 62, "{out}");
        assert_eq!(out.rsplit(' ').next(), Some("h"), "{out}");
    }

    #[test]
    fn counts_consecutive_failures_and_reports_transitions() {
        let t = Thresholds {
            failures_before_critical: 2,
            successes_before_healthy: 1,
            flapping: None,
        };
        let mut h = HealthState::default();
        assert_eq!(
            h.observe(Healthy, t),
            Some(Transition {
                from: Unknown,
                to: Healthy
            })
        );
        assert_eq!(h.observe(Critical, t), None);
        assert_eq!(h.consecutive_failures, 1);
        assert_eq!(
            h.observe(Critical, t),
            Some(Transition {
                from: Healthy,
                to: Critical
            })
        );
        assert_eq!(h.observe(Critical, t), None);
        assert_eq!(h.consecutive_failures, 3);
        assert_eq!(
            h.observe(Healthy, t),
            Some(Transition {
                from: Critical,
                to: Healthy
            })
        );
        assert_eq!(h.consecutive_failures, 0);
    }
}
