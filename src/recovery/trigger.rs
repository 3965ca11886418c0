//! What asks for healing: a check turned critical, an alert fired, or an operator ran a chain.

use std::collections::BTreeMap;

use super::hold::HoldReason;
use super::template::Values;

pub use crate::vocabulary::TriggerKind;

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
