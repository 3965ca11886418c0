//! Escalations: the `alert` step posts `MedicEscalation`; while the subject stays unhealthy a
//! background task re-posts it every `resend_delay` with `endsAt` three of those ahead (so
//! Alertmanager resolves it by itself if medic is gone); when the subject turns healthy it is
//! posted once more with `endsAt` now. The labels never change while it lives: Alertmanager
//! identifies an alert by its label set, so a re-post (from this process after a restart, or
//! from another replica) is the same alert, never a second one.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::Instrument;

use super::client::AmAlert;
use super::Alertmanager;
use crate::store::EscalationRow;
use crate::template::Values;
use crate::timefmt::{now_ms, rfc3339_ms};
use crate::vocabulary::{SkippedStep, Subject, TriedStep};

/// The alert's name; what an Alertmanager route matches to reach people.
pub const ALERTNAME: &str = "MedicEscalation";
/// `endsAt` is this many resend delays ahead: two re-posts may be missed before Alertmanager
/// resolves the alert by itself.
const ENDS_AFTER_RESENDS: u32 = 3;

/// One escalation, rendered by the `alert` step.
#[derive(Debug, Clone, PartialEq)]
pub struct Escalation {
    pub chain: String,
    pub step: String,
    pub subject: String,
    pub run_id: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl Escalation {
    /// Stable per (chain, step, subject): chain and step names hold no '/'.
    pub fn id(&self) -> String {
        format!("{}/{}/{}", self.chain, self.step, self.subject)
    }
}

/// The alert's labels: the trigger's (`check` for check triggers, the alert's own labels for
/// alert triggers), then the step's, then medic's own, which nothing overrides.
pub fn labels(
    chain: &str,
    step: &str,
    trigger: &str,
    values: &Values,
    step_labels: &[(String, String)],
) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    if trigger != "check" {
        labels.extend(values.labels.clone());
    }
    if let Some(check) = &values.check {
        labels.insert("check".to_string(), check.clone());
    }
    labels.extend(step_labels.iter().cloned());
    labels.insert("alertname".to_string(), ALERTNAME.to_string());
    labels.insert("chain".to_string(), chain.to_string());
    labels.insert("step".to_string(), step.to_string());
    // Alertmanager refuses an alert with an empty label value.
    labels.retain(|_, v| !v.is_empty());
    labels
}

/// The incident's account for the `description` annotation: every step tried for the subject
/// since the incident began (in this run and the ones before it) with its result and time, and
/// every step this run skipped with why and until when.
pub fn description(
    chain: &str,
    subject: &str,
    message: &str,
    tried: &[TriedStep],
    skipped: &[SkippedStep],
) -> String {
    let mut text = format!("medic could not heal {subject} with chain {chain}");
    if !message.is_empty() {
        text.push_str(&format!(" ({message})"));
    }
    if tried.is_empty() {
        text.push_str(". Nothing was tried before this escalation.");
    } else {
        text.push_str(". Tried since the incident began:");
        for t in tried {
            text.push_str(&format!(
                "\n- {}: {} at {}",
                t.step,
                t.result,
                rfc3339_ms(t.at_ms)
            ));
            if !t.message.is_empty() {
                text.push_str(&format!(" ({})", t.message));
            }
        }
    }
    if !skipped.is_empty() {
        text.push_str("\nSkipped:");
        for s in skipped {
            text.push_str(&format!("\n- {}: {}", s.step, skip_words(s)));
        }
    }
    text
}

/// `cooldown until 2026-12-07T12:00:00.000Z`, `max_attempts (until counters reset)`.
pub fn skip_words(s: &SkippedStep) -> String {
    match s.until_ms {
        Some(until) => format!("{} until {}", s.reason, rfc3339_ms(until)),
        None => format!("{} (until counters reset)", s.reason),
    }
}

/// When a post made at `now_ms` ends, unless posted again.
pub fn ends_ms(now_ms: i64, resend: Duration) -> i64 {
    now_ms.saturating_add((resend * ENDS_AFTER_RESENDS).as_millis() as i64)
}

/// A re-post is due (and may be claimed) when the last one is older than five sixths of the
/// resend delay (50 s of a minute): a little early rather than late, never twice per period.
pub fn claim_before_ms(now_ms: i64, resend: Duration) -> i64 {
    let resend_ms = resend.as_millis() as i64;
    now_ms.saturating_sub(resend_ms - resend_ms / 6)
}

fn am_alert(row: &EscalationRow, starts_ms: i64, ends_ms: i64) -> Option<AmAlert> {
    Some(AmAlert {
        labels: serde_json::from_str(&row.labels_json).ok()?,
        annotations: serde_json::from_str(&row.annotations_json).ok()?,
        starts_at: rfc3339_ms(starts_ms),
        ends_at: rfc3339_ms(ends_ms),
        generator_url: row.generator_url.clone(),
    })
}

impl Alertmanager {
    /// The `alert` step: posts the escalation; Ok once Alertmanager accepted it.
    pub async fn escalate(&self, e: &Escalation) -> Result<String, String> {
        let Some(settings) = self.settings() else {
            return Err("alertmanager: is not configured".to_string());
        };
        let now = now_ms();
        let row = EscalationRow {
            id: e.id(),
            chain: e.chain.clone(),
            step: e.step.clone(),
            subject: e.subject.clone(),
            labels_json: serde_json::to_string(&e.labels).unwrap_or_else(|_| "{}".into()),
            annotations_json: serde_json::to_string(&e.annotations).unwrap_or_else(|_| "{}".into()),
            generator_url: self.run_url(&e.run_id),
            started_ms: now,
            owner: self.owner.clone(),
            last_posted_ms: now,
        };
        let Some(alert) = am_alert(&row, now, ends_ms(now, settings.resend_delay)) else {
            return Err("the escalation could not be encoded".to_string());
        };
        settings
            .client
            .post_alerts(&[alert])
            .await
            .map_err(|e| e.to_string())?;
        // Kept alive from the store; without it, Alertmanager still shows it until endsAt.
        match self.store() {
            Some(store) => {
                if let Err(err) = store.upsert_escalation(&row).await {
                    self.metrics.store_error(err.operation());
                }
            }
            None => self.metrics.store_error("write"),
        }
        Ok(format!(
            "Alertmanager accepted {ALERTNAME} (chain {}, step {})",
            e.chain, e.step
        ))
    }

    /// The subject is healthy again (its check turned healthy, or its alert resolved): its
    /// escalations are posted resolved. Returns at once; the posting runs on its own.
    pub fn subject_healthy(self: &Arc<Self>, chain: &str, subject: &str) {
        if self.settings().is_none() {
            return;
        }
        let (am, chain, subject) = (self.clone(), chain.to_string(), subject.to_string());
        // Its line names the chain and subject already; the span says what the task is.
        let span = tracing::info_span!("escalation_resolve");
        tokio::spawn(async move { am.resolve(&chain, &subject).await }.instrument(span));
    }

    async fn resolve(&self, chain: &str, subject: &str) {
        let (Some(settings), Some(store)) = (self.settings(), self.store()) else {
            return;
        };
        let now = now_ms();
        let rows = match store.resolve_escalations(chain, subject, now).await {
            Ok(rows) => rows,
            Err(e) => return self.metrics.store_error(e.operation()),
        };
        for row in rows {
            if let Some(alert) = am_alert(&row, row.started_ms, now) {
                tracing::info!(chain, subject, step = %row.step, "escalation resolved");
                // A failure leaves it to Alertmanager: the alert ends at its endsAt anyway.
                let _ = settings.client.post_alerts(&[alert]).await;
            }
        }
    }

    /// Re-posts every escalation that is due, and resolves those whose check is healthy.
    async fn repost_due(&self) {
        let (Some(settings), Some(store)) = (self.settings(), self.store()) else {
            return;
        };
        let rows = match store.active_escalations().await {
            Ok(rows) => rows,
            Err(e) => return self.metrics.store_error(e.operation()),
        };
        for row in rows {
            if let (Some(state), Some(check)) = (&self.state, Subject::check_of(&row.subject)) {
                if state.is_healthy(check).await {
                    self.resolve(&row.chain, &row.subject).await;
                    continue;
                }
            }
            let now = now_ms();
            let before = claim_before_ms(now, settings.resend_delay);
            if row.last_posted_ms >= before {
                continue;
            }
            match store
                .claim_escalation(&row.id, &self.owner, now, before)
                .await
            {
                Ok(true) => {
                    if let Some(alert) =
                        am_alert(&row, row.started_ms, ends_ms(now, settings.resend_delay))
                    {
                        let _ = settings.client.post_alerts(&[alert]).await;
                    }
                }
                Ok(false) => {}
                Err(e) => self.metrics.store_error(e.operation()),
            }
        }
    }

    /// The one background task per process: keeps escalations alive and expires silences
    /// whose run's owner died.
    pub fn spawn_keeper(
        self: Arc<Self>,
        mut shutdown: watch::Receiver<bool>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(
            async move {
                loop {
                    self.repost_due().await;
                    self.expire_orphans().await;
                    // Often enough to catch the resend delay; a reload may change it.
                    let pause = self
                        .settings()
                        .map(|s| s.resend_delay / 6)
                        .unwrap_or(Duration::from_secs(10))
                        .clamp(Duration::from_millis(200), Duration::from_secs(10));
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.changed() => break,
                    }
                }
            }
            .instrument(tracing::info_span!("alertmanager_keeper")),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(check: Option<&str>, labels: &[(&str, &str)]) -> Values {
        Values {
            check: check.map(String::from),
            chain: "web".into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: BTreeMap::new(),
        }
    }

    #[test]
    fn check_triggers_label_the_check_alert_triggers_carry_the_alerts_labels() {
        let l = labels(
            "web",
            "page",
            "check",
            &values(Some("api"), &[("service", "x")]),
            &[("severity".into(), "page".into())],
        );
        let want: BTreeMap<String, String> = [
            ("alertname", ALERTNAME),
            ("chain", "web"),
            ("step", "page"),
            ("check", "api"),
            ("severity", "page"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(l, want);
        let l = labels(
            "web",
            "page",
            "alert",
            &values(None, &[("alertname", "HighErrorRate"), ("job", "api")]),
            &[],
        );
        assert_eq!(l["alertname"], ALERTNAME, "medic's name wins");
        assert_eq!(l["job"], "api");
        assert!(!l.contains_key("check"));
    }

    #[test]
    fn description_lists_each_step_with_its_result() {
        let tried = vec![
            TriedStep {
                step: "restart".into(),
                result: crate::vocabulary::AttemptResult::Failure,
                message: "exit code 1".into(),
                at_ms: 1_000,
            },
            TriedStep {
                step: "scale".into(),
                result: crate::vocabulary::AttemptResult::Timeout,
                message: String::new(),
                at_ms: 2_000,
            },
        ];
        let skipped = vec![
            SkippedStep {
                step: "restart".into(),
                reason: crate::vocabulary::SkipReason::Cooldown,
                until_ms: Some(61_000),
            },
            SkippedStep {
                step: "scale".into(),
                reason: crate::vocabulary::SkipReason::MaxAttempts,
                until_ms: None,
            },
        ];
        let d = description("web", "check:api", "connection refused", &tried, &skipped);
        assert!(
            d.contains("restart: failure at 1970-01-01T00:00:01.000Z (exit code 1)"),
            "{d}"
        );
        assert!(
            d.contains("scale: timeout at 1970-01-01T00:00:02.000Z"),
            "{d}"
        );
        assert!(d.contains("connection refused"), "{d}");
        assert!(
            d.contains("restart: cooldown until 1970-01-01T00:01:01.000Z"),
            "{d}"
        );
        assert!(
            d.contains("scale: max_attempts (until counters reset)"),
            "{d}"
        );
        assert!(!d.contains("Nothing was tried"), "{d}");
        let nothing = description("web", "check:api", "", &[], &skipped);
        assert!(nothing.contains("Nothing was tried"), "{nothing}");
    }

    #[test]
    fn resend_timing() {
        let minute = Duration::from_secs(60);
        assert_eq!(ends_ms(1_000, minute), 181_000);
        assert_eq!(claim_before_ms(100_000, minute), 50_000);
    }
}
