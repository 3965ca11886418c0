//! Every metric medic exports, in one registry. This is the only module that knows
//! prometheus-client; call sites say `metrics.observe_probe(..)`, never touch families.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::checks::Outcome;
use crate::health::HealthState;
use crate::status::Status;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    check: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckStatusLabels {
    check: String,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DiskLabels {
    check: String,
    mountpoint: String,
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
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepSkipLabels {
    chain: String,
    step: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    chain: String,
    trigger: String,
    outcome: String,
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
struct BuildLabels {
    version: String,
    revision: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Probe duration buckets: the Prometheus defaults, which cover a 5ms LAN answer to a 10s timeout.
const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// Step duration buckets: from a quick HTTP call to a slow restart.
const STEP_BUCKETS: [f64; 11] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0];

fn step_histogram() -> Histogram {
    Histogram::new(STEP_BUCKETS)
}

pub struct Metrics {
    registry: Registry,
    check_success: Family<CheckLabels, Gauge>,
    check_status: Family<CheckStatusLabels, Gauge>,
    check_duration: Family<CheckLabels, Histogram, fn() -> Histogram>,
    check_runs: Family<CheckStatusLabels, Counter>,
    check_consecutive_failures: Family<CheckLabels, Gauge>,
    check_flapping: Family<CheckLabels, Gauge>,
    check_last_run: Family<CheckLabels, FloatGauge>,
    system_cpu: Family<CheckLabels, FloatGauge>,
    system_memory: Family<CheckLabels, FloatGauge>,
    system_disk: Family<DiskLabels, FloatGauge>,
    config_reload_ok: Gauge,
    config_reload_time: FloatGauge,
    recovery_attempts: Family<StepResultLabels, Counter>,
    recovery_skipped: Family<StepSkipLabels, Counter>,
    recovery_runs: Family<RunLabels, Counter>,
    recovery_step_duration: Family<StepLabels, Histogram, fn() -> Histogram>,
    recovery_effectiveness: Family<StepLabels, FloatGauge>,
    predicted_value: Family<HorizonLabels, FloatGauge>,
    predicted_breach: Family<PredictionLabels, FloatGauge>,
    anomaly_score: Family<PredictionLabels, FloatGauge>,
    webhook_notifications: Family<CodeLabels, Counter>,
    webhook_alerts: Family<AlertLabels, Counter>,
    store_errors: Family<OperationLabels, Counter>,
    store_dropped: Counter,
    store_backlog: Gauge,
    /// Which mountpoints each check has exported, so a removed check takes its series along.
    disk_series: Mutex<BTreeMap<String, BTreeSet<String>>>,
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
        let check_success = Family::<CheckLabels, Gauge>::default();
        registry.register(
            "medic_check_success",
            "1 if the latest probe was healthy or warning, else 0",
            check_success.clone(),
        );
        let check_status = Family::<CheckStatusLabels, Gauge>::default();
        registry.register(
            "medic_check_status",
            "The check's current status after thresholds: 1 for the current status, 0 for the others",
            check_status.clone(),
        );
        let check_duration =
            Family::<CheckLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        registry.register_with_unit(
            "medic_check_duration",
            "Probe durations",
            Unit::Seconds,
            check_duration.clone(),
        );
        let check_runs = Family::<CheckStatusLabels, Counter>::default();
        registry.register(
            "medic_check_runs",
            "Probes by raw status",
            check_runs.clone(),
        );
        let check_consecutive_failures = Family::<CheckLabels, Gauge>::default();
        registry.register(
            "medic_check_consecutive_failures",
            "Current run of critical probes",
            check_consecutive_failures.clone(),
        );
        let check_flapping = Family::<CheckLabels, Gauge>::default();
        registry.register(
            "medic_check_flapping",
            "1 while the check is critical because of flap detection, else 0",
            check_flapping.clone(),
        );
        let check_last_run = Family::<CheckLabels, FloatGauge>::default();
        registry.register_with_unit(
            "medic_check_last_run_timestamp",
            "Unix time of the latest probe",
            Unit::Seconds,
            check_last_run.clone(),
        );
        let ratio = || Unit::Other("ratio".to_string());
        let system_cpu = Family::<CheckLabels, FloatGauge>::default();
        registry.register_with_unit(
            "medic_system_cpu_utilization",
            "CPU utilization of this host, from system checks",
            ratio(),
            system_cpu.clone(),
        );
        let system_memory = Family::<CheckLabels, FloatGauge>::default();
        registry.register_with_unit(
            "medic_system_memory_utilization",
            "Memory utilization of this host (1 - available/total), from system checks",
            ratio(),
            system_memory.clone(),
        );
        let system_disk = Family::<DiskLabels, FloatGauge>::default();
        registry.register_with_unit(
            "medic_system_disk_utilization",
            "Disk utilization per mountpoint (1 - available/total), from system checks",
            ratio(),
            system_disk.clone(),
        );
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
        let predicted_value = Family::<HorizonLabels, FloatGauge>::default();
        registry.register(
            "medic_predicted_value",
            "Forecast of the prediction's series `horizon` ahead",
            predicted_value.clone(),
        );
        let predicted_breach = Family::<PredictionLabels, FloatGauge>::default();
        registry.register_with_unit(
            "medic_predicted_breach",
            "Seconds until the forecast crosses the prediction's threshold; +Inf when not within max_horizon",
            Unit::Seconds,
            predicted_breach.clone(),
        );
        let anomaly_score = Family::<PredictionLabels, FloatGauge>::default();
        registry.register(
            "medic_anomaly_score",
            "How unusual the latest value of the prediction's series is, 0 to 1",
            anomaly_score.clone(),
        );
        let webhook_notifications = Family::<CodeLabels, Counter>::default();
        registry.register(
            "medic_webhook_notifications",
            "Alertmanager webhook requests by HTTP status code of the answer",
            webhook_notifications.clone(),
        );
        let webhook_alerts = Family::<AlertLabels, Counter>::default();
        registry.register(
            "medic_webhook_alerts",
            "Alerts received from Alertmanager, by status and whether a route matched",
            webhook_alerts.clone(),
        );
        let store_errors = Family::<OperationLabels, Counter>::default();
        registry.register(
            "medic_state_store_errors",
            "Failed reads and writes of the state store, by operation (medic keeps running and retries)",
            store_errors.clone(),
        );
        for operation in ["open", "migrate", "write", "read", "prune"] {
            let _ = store_errors.get_or_create(&OperationLabels {
                operation: operation.to_string(),
            });
        }
        let store_dropped = Counter::default();
        registry.register(
            "medic_state_store_dropped_results",
            "Check results never written because the store stayed unreachable past the backlog bound",
            store_dropped.clone(),
        );
        let store_backlog = Gauge::default();
        registry.register(
            "medic_state_store_backlog_results",
            "Check results waiting to be written to the state store",
            store_backlog.clone(),
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
            registry,
            check_success,
            check_status,
            check_duration,
            check_runs,
            check_consecutive_failures,
            check_flapping,
            check_last_run,
            system_cpu,
            system_memory,
            system_disk,
            config_reload_ok,
            config_reload_time,
            recovery_attempts,
            recovery_skipped,
            recovery_runs,
            recovery_step_duration,
            recovery_effectiveness,
            predicted_value,
            predicted_breach,
            anomaly_score,
            webhook_notifications,
            webhook_alerts,
            store_errors,
            store_dropped,
            store_backlog,
            disk_series: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records one probe: its raw result, and the check's status after thresholds.
    /// The status state set and the flapping gauge are only rewritten when `status_changed`:
    /// five series per probe would otherwise be set to the values they already hold.
    pub fn observe_probe(
        &self,
        check: &str,
        outcome: &Outcome,
        health: &HealthState,
        status_changed: bool,
        at_unix_seconds: f64,
    ) {
        let labels = CheckLabels {
            check: check.to_string(),
        };
        self.check_success
            .get_or_create(&labels)
            .set(i64::from(outcome.status.is_up()));
        self.check_duration
            .get_or_create(&labels)
            .observe(outcome.duration.as_secs_f64());
        self.check_runs
            .get_or_create(&CheckStatusLabels {
                check: check.to_string(),
                status: outcome.status.as_str().to_string(),
            })
            .inc();
        self.check_consecutive_failures
            .get_or_create(&labels)
            .set(i64::from(health.consecutive_failures));
        self.check_last_run
            .get_or_create(&labels)
            .set(at_unix_seconds);
        if status_changed {
            self.set_status(check, health.status, health.flapping);
        }
        for m in &outcome.measurements {
            match (m.name.as_str(), &m.mountpoint) {
                ("cpu_utilization", None) => {
                    self.system_cpu.get_or_create(&labels).set(m.value);
                }
                ("memory_utilization", None) => {
                    self.system_memory.get_or_create(&labels).set(m.value);
                }
                ("disk_utilization", Some(mountpoint)) => {
                    self.system_disk
                        .get_or_create(&DiskLabels {
                            check: check.to_string(),
                            mountpoint: mountpoint.clone(),
                        })
                        .set(m.value);
                    let mut series = self.disk_series.lock().unwrap_or_else(|p| p.into_inner());
                    series
                        .entry(check.to_string())
                        .or_default()
                        .insert(mountpoint.clone());
                }
                _ => {}
            }
        }
    }

    /// Sets the check's status state set (1 for `status`, 0 for the other three) and whether
    /// it is flapping.
    pub fn set_status(&self, check: &str, status: Status, flapping: bool) {
        self.check_flapping
            .get_or_create(&CheckLabels {
                check: check.to_string(),
            })
            .set(i64::from(flapping));
        for s in Status::ALL {
            self.check_status
                .get_or_create(&CheckStatusLabels {
                    check: check.to_string(),
                    status: s.as_str().to_string(),
                })
                .set(i64::from(s == status));
        }
    }

    /// Drops every series of a check that is no longer configured.
    pub fn forget_check(&self, check: &str) {
        let labels = CheckLabels {
            check: check.to_string(),
        };
        self.check_success.remove(&labels);
        self.check_duration.remove(&labels);
        self.check_consecutive_failures.remove(&labels);
        self.check_flapping.remove(&labels);
        self.check_last_run.remove(&labels);
        self.system_cpu.remove(&labels);
        self.system_memory.remove(&labels);
        for s in Status::ALL {
            let l = CheckStatusLabels {
                check: check.to_string(),
                status: s.as_str().to_string(),
            };
            self.check_status.remove(&l);
            self.check_runs.remove(&l);
        }
        let mountpoints = self
            .disk_series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(check)
            .unwrap_or_default();
        for mountpoint in mountpoints {
            self.system_disk.remove(&DiskLabels {
                check: check.to_string(),
                mountpoint,
            });
        }
    }

    pub fn config_reloaded(&self, success: bool, at_unix_seconds: f64) {
        self.config_reload_ok.set(i64::from(success));
        if success {
            self.config_reload_time.set(at_unix_seconds);
        }
    }

    pub fn recovery_attempt(&self, chain: &str, step: &str, result: &str, duration_seconds: f64) {
        self.recovery_attempts
            .get_or_create(&StepResultLabels {
                chain: chain.to_string(),
                step: step.to_string(),
                result: result.to_string(),
            })
            .inc();
        self.recovery_step_duration
            .get_or_create(&StepLabels {
                chain: chain.to_string(),
                step: step.to_string(),
            })
            .observe(duration_seconds);
    }

    pub fn recovery_skipped(&self, chain: &str, step: &str, reason: &str) {
        self.recovery_skipped
            .get_or_create(&StepSkipLabels {
                chain: chain.to_string(),
                step: step.to_string(),
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn recovery_run(&self, chain: &str, trigger: &str, outcome: &str) {
        self.recovery_runs
            .get_or_create(&RunLabels {
                chain: chain.to_string(),
                trigger: trigger.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }

    pub fn recovery_effectiveness(&self, chain: &str, step: &str, value: f64) {
        self.recovery_effectiveness
            .get_or_create(&StepLabels {
                chain: chain.to_string(),
                step: step.to_string(),
            })
            .set(value);
    }

    /// Drops the effectiveness series of steps that are no longer configured.
    pub fn forget_step(&self, chain: &str, step: &str) {
        self.recovery_effectiveness.remove(&StepLabels {
            chain: chain.to_string(),
            step: step.to_string(),
        });
    }

    pub fn prediction(&self, p: &crate::predict::Prediction) {
        let labels = PredictionLabels {
            prediction: p.name.clone(),
        };
        self.anomaly_score
            .get_or_create(&labels)
            .set(p.anomaly_score);
        if let Some(seconds) = p.breach_seconds {
            self.predicted_breach.get_or_create(&labels).set(seconds);
        }
        for (horizon, value) in &p.forecasts {
            if let Some(v) = value {
                self.predicted_value
                    .get_or_create(&HorizonLabels {
                        prediction: p.name.clone(),
                        horizon: horizon.clone(),
                    })
                    .set(*v);
            }
        }
    }

    /// Drops every series of a prediction that is gone or changed.
    pub fn forget_prediction(&self, spec: &crate::config::PredictionSpec) {
        let labels = PredictionLabels {
            prediction: spec.name.clone(),
        };
        self.anomaly_score.remove(&labels);
        self.predicted_breach.remove(&labels);
        for (horizon, _) in &spec.horizons {
            self.predicted_value.remove(&HorizonLabels {
                prediction: spec.name.clone(),
                horizon: horizon.clone(),
            });
        }
    }

    pub fn webhook_notification(&self, code: u16) {
        self.webhook_notifications
            .get_or_create(&CodeLabels {
                code: code.to_string(),
            })
            .inc();
    }

    pub fn webhook_alert(&self, status: &str, routed: bool) {
        self.webhook_alerts
            .get_or_create(&AlertLabels {
                status: status.to_string(),
                routed: routed.to_string(),
            })
            .inc();
    }

    pub fn store_error(&self, operation: &str) {
        self.store_errors
            .get_or_create(&OperationLabels {
                operation: operation.to_string(),
            })
            .inc();
    }

    pub fn store_results_dropped(&self, count: u64) {
        self.store_dropped.inc_by(count);
    }

    pub fn store_backlog(&self, len: usize) {
        self.store_backlog
            .set(i64::try_from(len).unwrap_or(i64::MAX));
    }

    /// Renders every metric in the asked-for format.
    pub fn encode(&self, format: Format) -> String {
        let mut out = String::with_capacity(64 * 1024);
        let result = match format {
            Format::PrometheusText => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)
            }
        };
        // Writing into a String cannot fail; an encoder error would be a bug in a label type.
        if let Err(e) = result {
            tracing::error!(error = %e, "encoding metrics failed");
        }
        out
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
        outcome.measurements.push(crate::checks::Measurement {
            name: "disk_utilization".into(),
            mountpoint: Some("/".into()),
            value: 0.5,
        });
        let mut health = HealthState::default();
        for raw in [Status::Critical, Status::Critical] {
            health.observe(
                raw,
                crate::health::Thresholds {
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
