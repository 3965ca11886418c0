//! The JSON answers of `/api/v1/health`, `/api/v1/checks/{name}`, `/api/v1/predictions`,
//! `/api/v1/recoveries` and `/api/v1/recoveries/stats`, built from the domain types they show.
//! The domain types carry no wire format: field names and shapes here are the API's contract,
//! so a change to one of them is a change to the API and shows up in this file alone.
//!
//! Each answer borrows what it shows; nothing is copied to be encoded. The lists of
//! predictions, attempts and steps are wrapped in `serde_json::json!` by their routes, as they
//! always were, so their keys come out in alphabetical order (`serde_json::Value`'s map).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

use crate::check_trend::{StatusCounts, Trend};
use crate::predict::Prediction;
use crate::state::{CheckDetail, CheckSummary, HealthReport, HistoryItem};
use crate::status::Status;
use crate::store::{AttemptRecord, StepStats};

/// A status as every answer spells it: `healthy`, `warning`, `critical`, `unknown`.
fn status(s: Status) -> &'static str {
    s.as_str()
}

/// `/api/v1/health`.
#[derive(Serialize)]
pub struct HealthJson<'a> {
    status: &'static str,
    summary: StatusCountsJson,
    checks: BTreeMap<&'a str, CheckSummaryJson<'a>>,
}

impl<'a> From<&'a HealthReport> for HealthJson<'a> {
    fn from(r: &'a HealthReport) -> Self {
        HealthJson {
            status: status(r.status),
            summary: r.summary.into(),
            checks: r
                .checks
                .iter()
                .map(|(name, c)| (name.as_str(), c.into()))
                .collect(),
        }
    }
}

#[derive(Serialize)]
struct StatusCountsJson {
    healthy: u64,
    warning: u64,
    critical: u64,
    unknown: u64,
}

impl From<StatusCounts> for StatusCountsJson {
    fn from(c: StatusCounts) -> Self {
        StatusCountsJson {
            healthy: c.healthy,
            warning: c.warning,
            critical: c.critical,
            unknown: c.unknown,
        }
    }
}

#[derive(Serialize)]
struct CheckSummaryJson<'a> {
    status: &'static str,
    kind: &'static str,
    enabled: bool,
    message: &'a str,
    duration_seconds: Option<f64>,
    last_run: Option<&'a str>,
    consecutive_failures: u32,
    reason: Option<&'static str>,
    /// The failing checks this one waits for (its dependencies' roots); empty when it is not
    /// blocked.
    blocked_by: &'a [String],
}

impl<'a> From<&'a CheckSummary> for CheckSummaryJson<'a> {
    fn from(c: &'a CheckSummary) -> Self {
        CheckSummaryJson {
            status: status(c.status),
            kind: c.kind,
            enabled: c.enabled,
            message: &c.message,
            duration_seconds: c.duration_seconds,
            last_run: c.last_run.as_deref(),
            consecutive_failures: c.consecutive_failures,
            reason: c.reason,
            blocked_by: &c.blocked_by,
        }
    }
}

/// `/api/v1/checks/{name}`: the name, the summary's fields inline, then the details.
#[derive(Serialize)]
pub struct CheckDetailJson<'a> {
    name: &'a str,
    #[serde(flatten)]
    summary: CheckSummaryJson<'a>,
    last_status: Option<&'static str>,
    interval_seconds: f64,
    timeout_seconds: f64,
    metadata: &'a BTreeMap<String, Value>,
    trend: TrendJson,
    history: Vec<HistoryItemJson<'a>>,
}

impl<'a> From<&'a CheckDetail> for CheckDetailJson<'a> {
    fn from(d: &'a CheckDetail) -> Self {
        CheckDetailJson {
            name: &d.name,
            summary: (&d.summary).into(),
            last_status: d.last_status.map(status),
            interval_seconds: d.interval_seconds,
            timeout_seconds: d.timeout_seconds,
            metadata: &d.metadata,
            trend: (&d.trend).into(),
            history: d.history.iter().map(Into::into).collect(),
        }
    }
}

#[derive(Serialize)]
struct TrendJson {
    window_seconds: f64,
    runs: u64,
    status_distribution: StatusCountsJson,
    success_ratio: Option<f64>,
    latency_p50_seconds: Option<f64>,
    latency_p90_seconds: Option<f64>,
    latency_p99_seconds: Option<f64>,
    latency_max_seconds: Option<f64>,
}

impl From<&Trend> for TrendJson {
    fn from(t: &Trend) -> Self {
        TrendJson {
            window_seconds: t.window_seconds,
            runs: t.runs,
            status_distribution: t.status_distribution.into(),
            success_ratio: t.success_ratio,
            latency_p50_seconds: t.latency_p50_seconds,
            latency_p90_seconds: t.latency_p90_seconds,
            latency_p99_seconds: t.latency_p99_seconds,
            latency_max_seconds: t.latency_max_seconds,
        }
    }
}

#[derive(Serialize)]
struct HistoryItemJson<'a> {
    time: &'a str,
    status: &'static str,
    duration_seconds: f64,
    message: &'a str,
}

impl<'a> From<&'a HistoryItem> for HistoryItemJson<'a> {
    fn from(h: &'a HistoryItem) -> Self {
        HistoryItemJson {
            time: &h.time,
            status: status(h.status),
            duration_seconds: h.duration_seconds,
            message: &h.message,
        }
    }
}

/// One of `/api/v1/predictions`' list. Horizons are `[horizon as written, value or null]`
/// pairs; intervals `[horizon, [lower, upper] or null]`.
#[derive(Serialize)]
pub struct PredictionJson<'a> {
    name: &'a str,
    check: &'a str,
    measurement: &'a str,
    at: f64,
    value: f64,
    anomaly_score: f64,
    forecasts: &'a [(String, Option<f64>)],
    intervals: &'a [(String, Option<(f64, f64)>)],
    breach_seconds: Option<f64>,
    threshold: Option<f64>,
}

impl<'a> From<&'a Prediction> for PredictionJson<'a> {
    fn from(p: &'a Prediction) -> Self {
        PredictionJson {
            name: &p.name,
            check: &p.check,
            measurement: &p.measurement,
            at: p.at,
            value: p.value,
            anomaly_score: p.anomaly_score,
            forecasts: &p.forecasts,
            intervals: &p.intervals,
            // JSON has no infinity; "never within max_horizon" reads as null in the API.
            breach_seconds: p.breach_seconds.filter(|x| x.is_finite()),
            threshold: p.threshold,
        }
    }
}

/// One of `/api/v1/recoveries`' attempts, newest first.
#[derive(Serialize)]
pub struct AttemptJson<'a> {
    id: i64,
    run_id: &'a str,
    chain: &'a str,
    step: &'a str,
    target: &'a str,
    trigger: &'a str,
    started_at: &'a str,
    finished_at: Option<&'a str>,
    result: Option<&'a str>,
    message: &'a str,
    exit_code: Option<i64>,
    duration_seconds: Option<f64>,
    fencing_token: Option<i64>,
    /// The tail of what the action printed or answered (at most 4 KiB).
    output: &'a str,
}

impl<'a> From<&'a AttemptRecord> for AttemptJson<'a> {
    fn from(a: &'a AttemptRecord) -> Self {
        AttemptJson {
            id: a.id,
            run_id: &a.run_id,
            chain: &a.chain,
            step: &a.step,
            target: &a.target,
            trigger: &a.trigger,
            started_at: &a.started_at,
            finished_at: a.finished_at.as_deref(),
            result: a.result.as_deref(),
            message: &a.message,
            exit_code: a.exit_code,
            duration_seconds: a.duration_seconds,
            fencing_token: a.fencing_token,
            output: &a.output,
        }
    }
}

/// One of `/api/v1/recoveries/stats`' steps.
#[derive(Serialize)]
pub struct StepJson<'a> {
    chain: &'a str,
    step: &'a str,
    attempts: i64,
    successes: i64,
    success_ratio: f64,
    mean_duration_seconds: Option<f64>,
    effectiveness: Option<f64>,
}

impl<'a> From<&'a StepStats> for StepJson<'a> {
    fn from(s: &'a StepStats) -> Self {
        StepJson {
            chain: &s.chain,
            step: &s.step,
            attempts: s.attempts,
            successes: s.successes,
            success_ratio: s.success_ratio,
            mean_duration_seconds: s.mean_duration_seconds,
            effectiveness: s.effectiveness,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary() -> CheckSummary {
        CheckSummary {
            status: Status::Critical,
            kind: "tcp",
            enabled: true,
            message: "refused".into(),
            duration_seconds: Some(0.25),
            last_run: Some("2026-12-01T23:53:05.321Z".into()),
            consecutive_failures: 8,
            reason: Some("connection_refused"),
            blocked_by: vec!["db".into()],
        }
    }

    /// The keys and their order are the API's contract (what the derives on the domain types
    /// wrote before these answers existed).
    #[test]
    fn health_and_check_answers_keep_their_keys_in_order() {
        let report = HealthReport {
            status: Status::Critical,
            summary: StatusCounts {
                critical: 1,
                ..StatusCounts::default()
            },
            checks: BTreeMap::from([("bad".to_string(), summary())]),
        };
        let summary_json = r#"{"status":"critical","kind":"tcp","enabled":true,"message":"refused","duration_seconds":0.25,"last_run":"2026-12-01T23:53:05.321Z","consecutive_failures":8,"reason":"connection_refused","blocked_by":["db"]}"#;
        assert_eq!(
            serde_json::to_string(&HealthJson::from(&report)).unwrap(),
            format!(
                r#"{{"status":"critical","summary":{{"healthy":0,"warning":0,"critical":1,"unknown":0}},"checks":{{"bad":{summary_json}}}}}"#
            )
        );
        let detail = CheckDetail {
            name: "bad".into(),
            summary: summary(),
            last_status: None,
            interval_seconds: 1.0,
            timeout_seconds: 0.5,
            metadata: BTreeMap::from([("address".to_string(), Value::from("127.0.0.1:1"))]),
            trend: Trend {
                window_seconds: 3600.0,
                runs: 1,
                status_distribution: StatusCounts::default(),
                success_ratio: Some(0.0),
                latency_p50_seconds: None,
                latency_p90_seconds: None,
                latency_p99_seconds: None,
                latency_max_seconds: Some(0.25),
            },
            history: vec![HistoryItem {
                time: "t".into(),
                status: Status::Unknown,
                duration_seconds: 0.25,
                message: "m".into(),
            }],
        };
        let fields = &summary_json[1..];
        assert_eq!(
            serde_json::to_string(&CheckDetailJson::from(&detail)).unwrap(),
            format!(
                r#"{{"name":"bad",{fields_open},"last_status":null,"interval_seconds":1.0,"timeout_seconds":0.5,"metadata":{{"address":"127.0.0.1:1"}},"trend":{{"window_seconds":3600.0,"runs":1,"status_distribution":{{"healthy":0,"warning":0,"critical":0,"unknown":0}},"success_ratio":0.0,"latency_p50_seconds":null,"latency_p90_seconds":null,"latency_p99_seconds":null,"latency_max_seconds":0.25}},"history":[{{"time":"t","status":"unknown","duration_seconds":0.25,"message":"m"}}]}}"#,
                fields_open = &fields[..fields.len() - 1],
            )
        );
    }

    #[test]
    fn a_breach_never_within_the_horizon_reads_as_null() {
        let p = Prediction {
            name: "p".into(),
            check: "c".into(),
            measurement: "m".into(),
            at: 1.0,
            value: 2.0,
            anomaly_score: 0.0,
            forecasts: vec![("1m".into(), Some(2.0))],
            intervals: vec![("1m".into(), None)],
            breach_seconds: Some(f64::INFINITY),
            threshold: Some(3.0),
        };
        let v = serde_json::to_value(PredictionJson::from(&p)).unwrap();
        assert_eq!(v["breach_seconds"], Value::Null);
        assert_eq!(v["forecasts"], serde_json::json!([["1m", 2.0]]));
        assert_eq!(v["intervals"], serde_json::json!([["1m", null]]));
    }
}
