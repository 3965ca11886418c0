//! Recovery: attempts, skips, runs, durations, effectiveness, runs in progress.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use super::{
    step_histogram, ChainLabels, ChainReasonLabels, FloatGauge, Metrics, RunLabels, StepLabels,
    StepResultLabels, StepSkipLabels,
};
use crate::vocabulary::{AttemptResult, HoldReason, RunOutcome, SkipReason, TriggerKind};

pub(super) struct RecoveryFamilies {
    pub(super) attempts: Family<StepResultLabels, Counter>,
    pub(super) skipped: Family<StepSkipLabels, Counter>,
    pub(super) runs: Family<RunLabels, Counter>,
    pub(super) step_duration: Family<StepLabels, Histogram, fn() -> Histogram>,
    pub(super) effectiveness: Family<StepLabels, FloatGauge>,
    pub(super) runs_active: Family<ChainLabels, Gauge>,
}

impl RecoveryFamilies {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let recovery_attempts = Family::<StepResultLabels, Counter>::default();
        registry.register(
            "medic_recovery_attempts",
            "Recovery step attempts by result (success means the fix was verified)",
            recovery_attempts.clone(),
        );
        let recovery_skipped = Family::<StepSkipLabels, Counter>::default();
        registry.register(
            "medic_recovery_skipped",
            "Recovery steps not run, by reason",
            recovery_skipped.clone(),
        );
        let recovery_runs = Family::<RunLabels, Counter>::default();
        registry.register(
            "medic_recovery_runs",
            "Recovery chain runs by trigger and outcome",
            recovery_runs.clone(),
        );
        let recovery_step_duration =
            Family::<StepLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                step_histogram,
            );
        registry.register_with_unit(
            "medic_recovery_step_duration",
            "Duration of recovery step attempts, verification included",
            Unit::Seconds,
            recovery_step_duration.clone(),
        );
        let recovery_effectiveness = Family::<StepLabels, FloatGauge>::default();
        registry.register(
            "medic_recovery_step_effectiveness",
            "Learned success ratio of a recovery step, 0 to 1 (0.5 before any attempt)",
            recovery_effectiveness.clone(),
        );
        let recovery_runs_active = Family::<ChainLabels, Gauge>::default();
        registry.register(
            "medic_recovery_runs_active",
            "Recovery runs in progress in this process",
            recovery_runs_active.clone(),
        );
        RecoveryFamilies {
            attempts: recovery_attempts,
            skipped: recovery_skipped,
            runs: recovery_runs,
            step_duration: recovery_step_duration,
            effectiveness: recovery_effectiveness,
            runs_active: recovery_runs_active,
        }
    }
}

impl Metrics {
    pub fn recovery_attempt(
        &self,
        chain: &str,
        step: &str,
        result: AttemptResult,
        duration_seconds: f64,
    ) {
        self.recovery
            .attempts
            .get_or_create(&StepResultLabels {
                chain: chain.to_string(),
                step: step.to_string(),
                result,
            })
            .inc();
        self.recovery
            .step_duration
            .get_or_create(&StepLabels {
                chain: chain.to_string(),
                step: step.to_string(),
            })
            .observe(duration_seconds);
    }

    /// A shadow run's step: counted as an attempt with result `shadow`, with no duration.
    pub fn recovery_shadow(&self, chain: &str, step: &str) {
        self.recovery
            .attempts
            .get_or_create(&StepResultLabels {
                chain: chain.to_string(),
                step: step.to_string(),
                result: AttemptResult::Shadow,
            })
            .inc();
    }

    pub fn recovery_skipped(&self, chain: &str, step: &str, reason: SkipReason) {
        self.recovery
            .skipped
            .get_or_create(&StepSkipLabels {
                chain: chain.to_string(),
                step: step.to_string(),
                reason,
            })
            .inc();
    }

    pub fn recovery_run(&self, chain: &str, trigger: TriggerKind, outcome: RunOutcome) {
        self.recovery
            .runs
            .get_or_create(&RunLabels {
                chain: chain.to_string(),
                trigger,
                outcome,
            })
            .inc();
    }

    /// Makes every series of a chain whose labels are known exist from the start (and from
    /// the reload that adds the chain or a step), at 0: runs by trigger and outcome, held
    /// triggers by reason, runs active, and each step's attempts by result, skips by reason
    /// and durations. A series born at 1 is invisible to `increase()` and `rate()`.
    pub fn recovery_chain<'a>(&self, chain: &str, steps: impl IntoIterator<Item = &'a str>) {
        for reason in HoldReason::ALL {
            let _ = self.holds.held.get_or_create(&ChainReasonLabels {
                chain: chain.to_string(),
                reason,
            });
        }
        let _ = self.recovery.runs_active.get_or_create(&ChainLabels {
            chain: chain.to_string(),
        });
        for trigger in TriggerKind::ALL {
            for outcome in RunOutcome::ALL {
                let _ = self.recovery.runs.get_or_create(&RunLabels {
                    chain: chain.to_string(),
                    trigger: *trigger,
                    outcome: *outcome,
                });
            }
        }
        for step in steps {
            self.recovery_step(chain, step);
        }
    }

    fn recovery_step(&self, chain: &str, step: &str) {
        for result in AttemptResult::ALL {
            let _ = self.recovery.attempts.get_or_create(&StepResultLabels {
                chain: chain.to_string(),
                step: step.to_string(),
                result: *result,
            });
        }
        for reason in SkipReason::ALL {
            let _ = self.recovery.skipped.get_or_create(&StepSkipLabels {
                chain: chain.to_string(),
                step: step.to_string(),
                reason: *reason,
            });
        }
        let _ = self.recovery.step_duration.get_or_create(&StepLabels {
            chain: chain.to_string(),
            step: step.to_string(),
        });
    }

    /// Drops a chain's series when it is no longer configured (its steps' go with
    /// [`Metrics::forget_step`]).
    pub fn forget_chain(&self, chain: &str) {
        for reason in HoldReason::ALL {
            self.holds.held.remove(&ChainReasonLabels {
                chain: chain.to_string(),
                reason,
            });
        }
        self.recovery.runs_active.remove(&ChainLabels {
            chain: chain.to_string(),
        });
        for trigger in TriggerKind::ALL {
            for outcome in RunOutcome::ALL {
                self.recovery.runs.remove(&RunLabels {
                    chain: chain.to_string(),
                    trigger: *trigger,
                    outcome: *outcome,
                });
            }
        }
    }

    pub fn recovery_runs_active(&self, chain: &str, active: usize) {
        self.recovery
            .runs_active
            .get_or_create(&ChainLabels {
                chain: chain.to_string(),
            })
            .set(i64::try_from(active).unwrap_or(i64::MAX));
    }

    pub fn recovery_effectiveness(&self, chain: &str, step: &str, value: f64) {
        self.recovery
            .effectiveness
            .get_or_create(&StepLabels {
                chain: chain.to_string(),
                step: step.to_string(),
            })
            .set(value);
    }

    /// Drops every series of a step that is no longer configured.
    pub fn forget_step(&self, chain: &str, step: &str) {
        let labels = StepLabels {
            chain: chain.to_string(),
            step: step.to_string(),
        };
        self.recovery.effectiveness.remove(&labels);
        self.recovery.step_duration.remove(&labels);
        for result in AttemptResult::ALL {
            self.recovery.attempts.remove(&StepResultLabels {
                chain: chain.to_string(),
                step: step.to_string(),
                result: *result,
            });
        }
        for reason in SkipReason::ALL {
            self.recovery.skipped.remove(&StepSkipLabels {
                chain: chain.to_string(),
                step: step.to_string(),
                reason: *reason,
            });
        }
    }
}
