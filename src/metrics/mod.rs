//! Every metric medic exports: the per-check series in their own table ([`checks`]), the
//! rest in one registry. This is the only module that knows prometheus-client; call sites say
//! `metrics.observe_probe(..)`, never touch families.

mod alertmanager;
mod checks;
mod cluster;
mod discovery;
mod holds;
mod predictions;
mod probes;
mod recovery;
mod store;
mod web;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use bytes::Bytes;

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::checks::{FailureReason, Measure, Outcome};
use crate::status::Status;
use crate::thresholds::HealthState;
use crate::vocabulary::HoldReason;
use crate::vocabulary::{AmOperation, AttemptResult, RunOutcome, SkipReason, TriggerKind};
use crate::vocabulary::{SdMechanism, SdRefusal};
use checks::CheckTable;

/// Closed label values are encoded by their one spelling; no label of a closed set is a
/// free string.
macro_rules! closed_label_values {
    ($($ty:ty),+) => {
        $(impl EncodeLabelValue for $ty {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                encoder.write_str(self.as_str())
            }
        })+
    };
}

closed_label_values!(
    AttemptResult,
    SkipReason,
    TriggerKind,
    RunOutcome,
    HoldReason,
    AmOperation,
    SdMechanism,
    SdRefusal
);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    check: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DiskLabels {
    check: String,
    mountpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    check: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    chain: String,
    step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepResultLabels {
    chain: String,
    step: String,
    result: AttemptResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepSkipLabels {
    chain: String,
    step: String,
    reason: SkipReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    chain: String,
    trigger: TriggerKind,
    outcome: RunOutcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PredictionLabels {
    prediction: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HorizonLabels {
    prediction: String,
    horizon: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AlertLabels {
    status: String,
    routed: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationResultLabels {
    operation: AmOperation,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChainLabels {
    chain: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ChainReasonLabels {
    chain: String,
    reason: HoldReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WindowLabels {
    window: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
    revision: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Where a rendering of `/metrics` is: which per-check family, after which check; then the
/// registry's other families; then done.
#[derive(Debug, Default)]
pub struct RenderState {
    checks: checks::Cursor,
    done: bool,
}

/// `/metrics` rendered a slice at a time as the response is written. Rendered whole, the text
/// (13 MB at 10,000 checks) was allocated every scrape and glibc kept the freed buffers
/// resident: 28 MB of RSS. A slice at a time, a scrape needs a few hundred kilobytes.
pub struct Rendering {
    metrics: Arc<Metrics>,
    format: Format,
    state: RenderState,
}

impl Iterator for Rendering {
    type Item = Bytes;

    fn next(&mut self) -> Option<Bytes> {
        self.metrics
            .render_next(self.format, &mut self.state)
            .map(Bytes::from)
    }
}

/// Every status code the webhook answers with (`medic_webhook_notifications_total{code}`):
/// each exists at 0 from start, so the first rejection of a kind is seen by `increase()`.
const WEBHOOK_CODES: [u16; 9] = [200, 400, 401, 403, 405, 408, 413, 415, 503];

/// Step duration buckets: from a quick HTTP call to a slow restart.
const STEP_BUCKETS: [f64; 11] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

fn step_histogram() -> Histogram {
    Histogram::new(STEP_BUCKETS)
}

pub struct Metrics {
    /// Every family but the per-check ones, which `checks` holds.
    registry: Registry,
    checks: Arc<CheckTable>,
    probes: probes::ProbeFamilies,
    recovery: recovery::RecoveryFamilies,
    holds: holds::HoldFamilies,
    predictions: predictions::PredictionFamilies,
    web: web::WebFamilies,
    store: store::StoreFamilies,
    alertmanager: alertmanager::AlertmanagerFamilies,
    discovery: discovery::DiscoveryFamilies,
    cluster: cluster::ClusterFamilies,
    config_reload_ok: Gauge,
    config_reload_time: FloatGauge,
}

/// The exposition formats `/metrics` can answer in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    PrometheusText,
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::PrometheusText => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// OpenMetrics only when the scraper asks for it, as Prometheus does by `Accept`.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::PrometheusText,
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let config_reload_ok = Gauge::default();
        registry.register(
            "medic_config_last_reload_successful",
            "Whether the last configuration reload attempt was successful",
            config_reload_ok.clone(),
        );
        let config_reload_time = FloatGauge::default();
        registry.register_with_unit(
            "medic_config_last_reload_success_timestamp",
            "Unix time of the last successful configuration reload",
            Unit::Seconds,
            config_reload_time.clone(),
        );
        // The cap is process-wide (one per process, like the fds it guards); these share its
        // values.
        let (children, child_waits, child_refusals) = crate::resources::children().metrics();
        registry.register(
            "medic_child_processes",
            "Child processes (command checks and exec steps) running now, under --process.max-children",
            children,
        );
        registry.register(
            "medic_child_process_waits",
            "Child processes that had to wait for a slot under --process.max-children",
            child_waits,
        );
        registry.register(
            "medic_child_process_refusals",
            "Child processes never started: no slot within the caller's timeout, or the wait queue was full",
            child_refusals,
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        registry.register(
            "medic_build_info",
            "A metric with a constant 1 value labelled by version and revision of medic",
            build_info.clone(),
        );
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").to_string(),
                revision: option_env!("MEDIC_REVISION")
                    .unwrap_or("unknown")
                    .to_string(),
            })
            .set(1);
        Metrics {
            probes: probes::ProbeFamilies::register(&mut registry),
            recovery: recovery::RecoveryFamilies::register(&mut registry),
            holds: holds::HoldFamilies::register(&mut registry),
            predictions: predictions::PredictionFamilies::register(&mut registry),
            web: web::WebFamilies::register(&mut registry),
            store: store::StoreFamilies::register(&mut registry),
            alertmanager: alertmanager::AlertmanagerFamilies::register(&mut registry),
            discovery: discovery::DiscoveryFamilies::register(&mut registry),
            cluster: cluster::ClusterFamilies::register(&mut registry),
            checks: Arc::new(CheckTable::default()),
            config_reload_ok,
            config_reload_time,
            registry,
        }
    }

    pub fn config_reloaded(&self, success: bool, at_unix_seconds: f64) {
        self.config_reload_ok.set(i64::from(success));
        if success {
            self.config_reload_time.set(at_unix_seconds);
        }
    }

    /// Renders every metric in the asked-for format, whole.
    pub fn encode(&self, format: Format) -> String {
        let mut state = RenderState::default();
        let mut out = String::new();
        while let Some(chunk) = self.render_next(format, &mut state) {
            out.push_str(&chunk);
        }
        out
    }

    /// Renders every metric in the asked-for format, a slice at a time.
    pub fn render(self: Arc<Self>, format: Format) -> Rendering {
        Rendering {
            metrics: self,
            format,
            state: RenderState::default(),
        }
    }

    /// The next piece of the exposition: a slice of the per-check families
    /// ([`CheckTable::next_slice`]), then the registry's families, then `None`.
    fn render_next(&self, format: Format, state: &mut RenderState) -> Option<String> {
        if state.done {
            return None;
        }
        if let Some(slice) = self.checks.next_slice(format, &mut state.checks) {
            return Some(slice);
        }
        state.done = true;
        let mut out = String::with_capacity(16 * 1024);
        let result = match format {
            Format::PrometheusText => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)
            }
        };
        log_encoding_error(result);
        Some(out)
    }
}

/// Writing into a String cannot fail; an encoder error would be a bug in a label type.
pub(super) fn log_encoding_error(result: std::fmt::Result) {
    if let Err(e) = result {
        tracing::error!(error = %e, "encoding metrics failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn probe_metrics_carry_spec_names_and_removal_is_complete() {
        let m = Metrics::new();
        let mut outcome = Outcome::new(Status::Critical, "down");
        outcome.duration = Duration::from_millis(20);
        outcome.measurements.push(crate::checks::Measurement::new(
            Measure::Disk {
                mountpoint: "/".into(),
            },
            0.5,
        ));
        let mut health = HealthState::default();
        for raw in [Status::Critical, Status::Critical] {
            health.observe(
                raw,
                crate::thresholds::Thresholds {
                    failures_before_critical: 1,
                    successes_before_healthy: 1,
                    flapping: None,
                },
            );
        }
        m.observe_probe("web", &outcome, &health, true, 1_700_000_000.0);
        let text = m.encode(Format::PrometheusText);
        for line in [
            "medic_check_success{check=\"web\"} 0",
            "medic_check_status{check=\"web\",status=\"critical\"} 1",
            "medic_check_status{check=\"web\",status=\"healthy\"} 0",
            "medic_check_runs_total{check=\"web\",status=\"critical\"} 1",
            "medic_check_consecutive_failures{check=\"web\"} 2",
            "medic_check_flapping{check=\"web\"} 0",
            "medic_check_duration_seconds_count{check=\"web\"} 1",
            "medic_system_disk_utilization_ratio{check=\"web\",mountpoint=\"/\"} 0.5",
            "# TYPE medic_check_runs_total counter",
            "medic_build_info{version=",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("# EOF"));
        assert!(m.encode(Format::OpenMetrics).ends_with("# EOF\n"));
        m.forget_check("web");
        let text = m.encode(Format::PrometheusText);
        assert!(!text.contains("check=\"web\""), "{text}");
    }
}
