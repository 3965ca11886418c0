//! Silences: while a run heals an alert routed with `silence:`, Alertmanager stops paging people
//! for it. The silence is made when the run starts, ends after the chain's worst-case duration,
//! is extended while the run lasts and expired when it ends, whatever the outcome, so an alert
//! still firing reaches people at once. The process that runs the run owns its silence; one
//! whose owner died with its run is expired by whichever process sweeps first.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::Instrument;

use super::client::{AmMatcher, AmSilence};
use super::Alertmanager;
use crate::config::{ChainSpec, SilenceSpec};
use crate::template::{Escape, Values};
use crate::timefmt::{now_ms, rfc3339_ms};

/// A silence never outlasts this without being extended, however long the chain could take.
const MAX_SILENCE: Duration = Duration::from_secs(24 * 3600);

/// Held by a run; dropping it (or [`SilenceGuard::run_ended`]) expires the silence.
pub struct SilenceGuard {
    _end: oneshot::Sender<()>,
}

impl SilenceGuard {
    /// The run is over: the silence is expired (in the background; never blocks).
    pub fn run_ended(self) {}
}

/// The silence's matchers: the alert's labels, or the route's templated matchers.
pub fn matchers(spec: &SilenceSpec, values: &Values) -> Result<Vec<AmMatcher>, String> {
    match spec {
        SilenceSpec::AlertLabels => Ok(values
            .labels
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(name, value)| AmMatcher {
                name: name.clone(),
                value: value.clone(),
                is_regex: false,
                is_equal: true,
            })
            .collect()),
        SilenceSpec::Matchers(templates) => templates
            .iter()
            .map(|t| {
                let text = t.render(values, Escape::None).map_err(|e| e.to_string())?;
                let m = crate::alertmanager::Matcher::parse(&text).map_err(|e| e.to_string())?;
                Ok(AmMatcher {
                    name: m.name().to_string(),
                    value: m.value().to_string(),
                    is_regex: m.is_regex(),
                    is_equal: m.is_equal(),
                })
            })
            .collect(),
    }
}

/// The longest a run of this chain can take: every step's timeout and verification.
pub fn worst_case(chain: &ChainSpec) -> Duration {
    chain
        .steps
        .iter()
        .map(|s| s.timeout.std() + chain.verify_timeout.std())
        .sum::<Duration>()
        .min(MAX_SILENCE)
}

/// The silence's new end when it must be extended now: with less than two resend delays
/// left, three ahead (so one missed extension does not end it early).
pub fn extended_end(now_ms: i64, ends_ms: i64, resend: Duration) -> Option<i64> {
    let resend_ms = resend.as_millis() as i64;
    (ends_ms.saturating_sub(now_ms) < 2 * resend_ms).then(|| now_ms.saturating_add(3 * resend_ms))
}

impl Alertmanager {
    /// A run began for an alert (its template values: the alert's labels and annotations):
    /// when it was routed with `silence:`, silences it for the run's length. Returns at once;
    /// Alertmanager is asked in the background.
    pub fn run_started(
        self: &Arc<Self>,
        run_id: &str,
        chain: &ChainSpec,
        alert: &Values,
    ) -> Option<SilenceGuard> {
        let settings = self.settings()?;
        // Routing is a pure function of the labels: this is the route that started the run.
        let route = settings
            .routes
            .iter()
            .find(|r| r.matchers.iter().all(|m| m.matches(&alert.labels)))?;
        if route.chain != chain.name {
            return None;
        }
        let spec = route.silence.as_ref()?;
        let matchers = match matchers(spec, alert) {
            Ok(m) if !m.is_empty() => m,
            Ok(_) => return None,
            Err(e) => {
                tracing::warn!(run = run_id, error = %e, "no silence: its matchers do not render");
                self.metrics
                    .alertmanager_request(crate::vocabulary::AmOperation::CreateSilence, false);
                return None;
            }
        };
        let now = now_ms();
        let ends = now.saturating_add(worst_case(chain).as_millis() as i64);
        let silence = AmSilence {
            id: None,
            matchers,
            starts_at: rfc3339_ms(now),
            ends_at: rfc3339_ms(ends),
            created_by: "medic".to_string(),
            comment: format!(
                "medic is healing this with chain {} (run {run_id})",
                chain.name
            ),
        };
        let (end_tx, end_rx) = oneshot::channel();
        let (am, run_id) = (self.clone(), run_id.to_string());
        // Under the run's span: its lines carry the chain and target; their own say the run.
        let span = tracing::info_span!("silence");
        tokio::spawn(
            async move {
                am.hold_silence(settings, run_id, silence, ends, end_rx)
                    .await
            }
            .instrument(span),
        );
        Some(SilenceGuard { _end: end_tx })
    }

    async fn hold_silence(
        &self,
        settings: Arc<super::Settings>,
        run_id: String,
        mut silence: AmSilence,
        mut ends: i64,
        mut end: oneshot::Receiver<()>,
    ) {
        let client = &settings.client;
        let mut id = match client.create_silence(&silence).await {
            Ok(id) => id,
            // Counted by the client; the run goes on without a silence.
            Err(_) => return,
        };
        tracing::info!(run = %run_id, silence = %id, "silence created");
        self.metrics.alertmanager_silences_add(1);
        let store = self.store();
        if let Some(store) = &store {
            if let Err(e) = store.insert_silence(&run_id, &id, &self.owner, ends).await {
                self.metrics.store_error(e.operation());
            }
        }
        loop {
            tokio::select! {
                _ = &mut end => break,
                _ = tokio::time::sleep(settings.resend_delay) => {
                    let now = now_ms();
                    let Some(new_end) = extended_end(now, ends, settings.resend_delay) else {
                        continue;
                    };
                    silence.id = Some(id.clone());
                    silence.ends_at = rfc3339_ms(new_end);
                    // Alertmanager may answer with a new id (it replaced the silence): the
                    // latest is the one to expire.
                    if let Ok(new_id) = client.create_silence(&silence).await {
                        id = new_id;
                        ends = new_end;
                        if let Some(store) = &store {
                            if let Err(e) = store.insert_silence(&run_id, &id, &self.owner, ends).await {
                                self.metrics.store_error(e.operation());
                            }
                        }
                    }
                }
            }
        }
        let ours = match &store {
            Some(store) => store
                .claim_silence_expiry(&run_id, now_ms())
                .await
                .unwrap_or(true),
            None => true,
        };
        if ours {
            let _ = client.expire_silence(&id).await;
            tracing::info!(run = %run_id, silence = %id, "silence expired");
        }
        self.metrics.alertmanager_silences_add(-1);
    }

    /// Expires silences held for runs that ended without their owner (a `kill -9`).
    pub(super) async fn expire_orphans(&self) {
        let (Some(settings), Some(store)) = (self.settings(), self.store()) else {
            return;
        };
        let orphans = match store.orphaned_silences().await {
            Ok(o) => o,
            Err(e) => return self.metrics.store_error(e.operation()),
        };
        for (run_id, silence_id) in orphans {
            if let Ok(true) = store.claim_silence_expiry(&run_id, now_ms()).await {
                tracing::info!(run = %run_id, silence = %silence_id, "expiring the silence of an abandoned run");
                let _ = settings.client.expire_silence(&silence_id).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Template;

    fn values() -> Values {
        Values {
            check: None,
            chain: "web".into(),
            labels: [("alertname", "HighErrorRate"), ("job", "api")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: Default::default(),
        }
    }

    #[test]
    fn silence_true_matches_every_label_exactly() {
        let m = matchers(&SilenceSpec::AlertLabels, &values()).unwrap();
        assert_eq!(m.len(), 2);
        assert!(m.iter().all(|m| m.is_equal && !m.is_regex));
        assert_eq!((m[1].name.as_str(), m[1].value.as_str()), ("job", "api"));
    }

    #[test]
    fn templated_matchers_render_then_parse() {
        let spec = SilenceSpec::Matchers(vec![
            Template::parse("job=\"{{ labels.job }}\"").unwrap(),
            Template::parse("instance=~\"web-.*\"").unwrap(),
        ]);
        let m = matchers(&spec, &values()).unwrap();
        assert_eq!(m[0].value, "api");
        assert!(m[1].is_regex && m[1].is_equal);
        let missing =
            SilenceSpec::Matchers(vec![Template::parse("x=\"{{ labels.nope }}\"").unwrap()]);
        assert!(matchers(&missing, &values()).is_err());
    }

    #[test]
    fn extension_keeps_three_resend_delays_ahead() {
        let minute = Duration::from_secs(60);
        assert_eq!(extended_end(0, 600_000, minute), None);
        assert_eq!(extended_end(0, 119_999, minute), Some(180_000));
    }
}
