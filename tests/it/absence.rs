//! Before a test asserts that something did *not* happen, it waits for a positive event after
//! which the absence means something (DESIGN.md, "A test cannot pass without running"): a
//! sleep proves nothing on a slow machine. These are the events medic itself offers.

use std::time::Duration;

use crate::support::{wait_for, Medic};

impl Medic {
    /// Probes of `check` made so far, whatever their status (`medic_check_runs_total`).
    pub async fn probes(&self, check: &str) -> u64 {
        let prefix = format!("medic_check_runs_total{{check=\"{check}\",");
        self.metrics()
            .await
            .lines()
            .filter_map(|line| line.strip_prefix(&prefix))
            .filter_map(|rest| rest.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// Waits until each of `checks` has been probed `n` more times than when called: at least
    /// `n - 1` intervals have passed, with the work of each probe done. medic counts a probe
    /// before it hands the probe's trigger to recovery, so every trigger but the last ones is
    /// queued by then; [`Medic::recovery_barrier`] waits for those too.
    pub async fn wait_probes(&self, checks: &[String], n: u64) {
        let mut from = Vec::new();
        for check in checks {
            from.push(self.probes(check).await);
        }
        let what = format!("{n} more probes of each of {checks:?}");
        wait_for(&what, Duration::from_secs(60), || async {
            for (check, from) in checks.iter().zip(&from) {
                if self.probes(check).await < from + n {
                    return None;
                }
            }
            Some(())
        })
        .await;
    }

    /// Returns once medic's recovery manager has handled every event queued before this call
    /// (check triggers, alerts, reloads, the config a reload applied): the manager answers a
    /// notification itself, in order with the rest. The alert matches no route, so nothing
    /// runs; `token` is the webhook's bearer token, if it has one.
    pub async fn recovery_barrier(&self, token: Option<&str>) {
        let body = serde_json::json!({
            "version": "4",
            "status": "firing",
            "receiver": "medic",
            "alerts": [{
                "status": "firing",
                "labels": {"alertname": "MedicTestBarrier", "barrier": "yes"},
                "startsAt": "2026-01-01T00:00:00Z",
            }],
        });
        let mut request = self
            .client
            .post(self.url("/api/v1/alerts"))
            .header("Content-Type", "application/json")
            .body(body.to_string());
        if let Some(token) = token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        let r = request.send().await.expect("the barrier notification");
        let status = r.status();
        let text = r.text().await.expect("the barrier's answer");
        assert_eq!(status, 200, "the barrier notification: {text}");
        let answer: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(
            answer["unrouted"], 1,
            "the barrier alert is routed: {answer}"
        );
    }

    /// Waits until no run of `chain` is in progress (`medic_recovery_runs_active`). A run counts
    /// its outcome and records its attempts before it leaves the gauge, and the manager raises
    /// the gauge before it answers for the trigger that started the run: after a notification's
    /// answer or [`Medic::recovery_barrier`], every run started before has ended by now.
    pub async fn wait_no_run_active(&self, chain: &str) {
        let series = format!("medic_recovery_runs_active{{chain=\"{chain}\"}}");
        wait_for(
            &format!("{series} to be 0"),
            Duration::from_secs(60),
            || async { (self.metric(&series).await == Some(0.0)).then_some(()) },
        )
        .await;
    }
}
