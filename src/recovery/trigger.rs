//! What asks for healing: a check turned critical, an alert fired, or an operator ran a chain.
//! One constructor per origin, so every path fills the same fields the same way.

use std::collections::BTreeMap;

use super::gate::HoldReason;
use crate::template::Values;
use crate::vocabulary::Subject;

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
    /// When the incident began (unix ms): the check's turn to critical, the alert's
    /// `startsAt`, the manual run's start. Runs since then are this incident's: an escalation
    /// lists their steps, and a run with nothing to try is recorded once per incident.
    pub incident_ms: i64,
    /// Raised by a probe asked for out of schedule (a verification re-probe): joining a run
    /// in progress is not a coalesced trigger worth counting.
    pub prompted: bool,
    /// An alert still firing after a run recovered it: a new incident of the same alert
    /// (since `incident_ms`), though its target, the alert's firing, is the same.
    pub again: bool,
    /// For check triggers: when the probe that raised it started (unix ms). A probe that
    /// started before a block lifted says nothing of the check as it is now.
    pub probed_ms: i64,
    /// Checks the run waits for besides its own: an alert route's `depends_on`.
    pub depends_on: Vec<String>,
    /// The roots that held it back (a `dependency` hold), for the run's audit.
    pub held_by: Vec<String>,
}

/// A check's side of a check trigger: what the state task knows when a probe is critical.
pub struct CheckIncident<'a> {
    pub check: &'a str,
    pub chain: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    pub message: &'a str,
    pub interval_ms: i64,
    /// When the check turned critical.
    pub since_ms: i64,
    /// When the probe that found it critical started.
    pub probed_ms: i64,
    pub prompted: bool,
}

/// A firing alert routed to a chain.
pub struct AlertIncident<'a> {
    pub chain: &'a str,
    pub fingerprint: &'a str,
    /// As Alertmanager sent it: part of the run's target.
    pub starts_at: &'a str,
    pub starts_at_ms: i64,
    pub verify_check: Option<&'a str>,
    /// The route's `depends_on`.
    pub depends_on: &'a [String],
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub message: String,
}

impl Trigger {
    /// A check with `recovery:` is critical.
    pub fn for_check(c: CheckIncident<'_>) -> Trigger {
        let subject = Subject::Check(c.check.to_string()).to_string();
        Trigger {
            kind: TriggerKind::Check,
            chain: c.chain.to_string(),
            target: subject.clone(),
            subject,
            values: Values {
                check: Some(c.check.to_string()),
                chain: c.chain.to_string(),
                labels: c.labels.clone(),
                annotations: BTreeMap::new(),
            },
            verify_check: Some(c.check.to_string()),
            message: c.message.to_string(),
            held: None,
            interval_ms: c.interval_ms,
            incident_ms: c.since_ms,
            prompted: c.prompted,
            again: false,
            probed_ms: c.probed_ms,
            depends_on: Vec::new(),
            held_by: Vec::new(),
        }
    }

    /// A firing alert matched a route. An alert routed with `verify_check` is about that
    /// check: it shares the check's counters, cooldowns and single active run.
    pub fn for_alert(a: AlertIncident) -> Trigger {
        let subject = match a.verify_check {
            Some(check) => Subject::Check(check.to_string()),
            None => Subject::Alert(a.fingerprint.to_string()),
        }
        .to_string();
        Trigger {
            kind: TriggerKind::Alert,
            chain: a.chain.to_string(),
            subject,
            target: alert_target(a.fingerprint, a.starts_at),
            values: Values {
                check: a
                    .verify_check
                    .map(str::to_string)
                    .or_else(|| a.labels.get("check").cloned()),
                chain: a.chain.to_string(),
                labels: a.labels,
                annotations: a.annotations,
            },
            verify_check: a.verify_check.map(str::to_string),
            message: a.message,
            held: None,
            interval_ms: 0,
            incident_ms: a.starts_at_ms,
            prompted: false,
            again: false,
            probed_ms: 0,
            depends_on: a.depends_on.to_vec(),
            held_by: Vec::new(),
        }
    }

    /// `medic recover CHAIN [--label k=v]… [--verify-check CHECK]`.
    pub fn manual(
        chain: &str,
        labels: BTreeMap<String, String>,
        verify_check: Option<&str>,
        now_ms: i64,
    ) -> Trigger {
        let pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let subject = Subject::Manual(pairs.join(",")).to_string();
        Trigger {
            kind: TriggerKind::Manual,
            chain: chain.to_string(),
            target: subject.clone(),
            subject,
            values: Values {
                check: verify_check.map(str::to_string),
                chain: chain.to_string(),
                labels,
                annotations: BTreeMap::new(),
            },
            verify_check: verify_check.map(str::to_string),
            message: "run by hand".to_string(),
            held: None,
            interval_ms: 0,
            incident_ms: now_ms,
            prompted: false,
            again: false,
            probed_ms: 0,
            depends_on: Vec::new(),
            held_by: Vec::new(),
        }
    }

    /// This alert trigger again, as a new incident from `now_ms`: its run recovered it, and
    /// Alertmanager says it still fires.
    pub fn fired_again(&self, now_ms: i64) -> Trigger {
        Trigger {
            held: None,
            incident_ms: now_ms,
            prompted: false,
            again: true,
            ..self.clone()
        }
    }

    /// The fingerprint of an alert trigger's alert (from its target, `alert:FP@startsAt`).
    pub fn alert_fingerprint(&self) -> Option<&str> {
        if self.kind != TriggerKind::Alert {
            return None;
        }
        let rest = self.target.strip_prefix("alert:")?;
        rest.split_once('@').map(|(fp, _)| fp)
    }

    /// The check whose dependencies hold this trigger: the check a check trigger is about,
    /// or the check an alert is verified with.
    pub fn dependent_check(&self) -> Option<&str> {
        match self.kind {
            TriggerKind::Check => self.values.check.as_deref(),
            _ => self.verify_check.as_deref(),
        }
    }

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

/// A run's target for an alert: its fingerprint and `startsAt`, so a new firing of the same
/// alert is a new incident.
pub fn alert_target(fingerprint: &str, starts_at: &str) -> String {
    format!("alert:{fingerprint}@{starts_at}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_trigger_knows_its_fingerprint_and_fires_again_as_a_new_incident() {
        let t = Trigger::for_alert(AlertIncident {
            chain: "web",
            fingerprint: "3f2a",
            starts_at: "2026-11-28T10:00:00Z",
            starts_at_ms: 1_000,
            verify_check: Some("api"),
            depends_on: &[],
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            message: "down".into(),
        });
        assert_eq!(t.subject, "check:api");
        assert_eq!(t.target, "alert:3f2a@2026-11-28T10:00:00Z");
        assert_eq!(t.alert_fingerprint(), Some("3f2a"));
        let again = t.fired_again(5_000);
        assert!(again.again && !t.again);
        assert_eq!(
            (again.incident_ms, again.target.as_str()),
            (5_000, t.target.as_str())
        );
        let manual = Trigger::manual("web", BTreeMap::new(), None, 1);
        assert_eq!(manual.alert_fingerprint(), None);
        assert_eq!(manual.subject, "manual");
    }
}
