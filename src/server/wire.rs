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

use crate::predict::Prediction;
use crate::state::{CheckDetail, CheckSummary, HealthReport, HistoryItem};
use crate::status::Status;
use crate::store::{AttemptRecord, StepStats};
use crate::trend::{StatusCounts, Trend};

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
