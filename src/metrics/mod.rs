//! Every metric medic exports: the per-check series in their own table ([`checks`]), the
//! rest in one registry. This is the only module that knows prometheus-client; call sites say
//! `metrics.observe_probe(..)`, never touch families.

mod checks;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};

use crate::checks::{FailureReason, Measure, Outcome};
use crate::status::Status;
use crate::thresholds::HealthState;
use crate::vocabulary::HoldReason;
use crate::vocabulary::{AmOperation, AttemptResult, RunOutcome, SkipReason, TriggerKind};
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
    AmOperation
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
    predicted_lower: Family<HorizonLabels, FloatGauge>,
    predicted_upper: Family<HorizonLabels, FloatGauge>,
    predicted_breach: Family<PredictionLabels, FloatGauge>,
    anomaly_score: Family<PredictionLabels, FloatGauge>,
    webhook_notifications: Family<CodeLabels, Counter>,
    webhook_alerts: Family<AlertLabels, Counter>,
    store_errors: Family<OperationLabels, Counter>,
    store_dropped: Counter,
    store_written: Counter,
    store_backlog: Gauge,
    recovery_pauses_active: Gauge,
    /// Probes that failed because medic itself ran out of fds, processes or memory.
    probe_errors: Family<ReasonLabels, Counter>,
    /// Connections closed at `--web.max-connections` to make room, by why they could be.
    web_connections_shed: Family<ReasonLabels, Counter>,
    web_connections_open: Gauge,
    recovery_held: Family<ChainReasonLabels, Counter>,
    recovery_runs_active: Family<ChainLabels, Gauge>,
    recovery_circuit_open: Gauge,
    recovery_held_triggers: Gauge,
    recovery_held_oldest: FloatGauge,
    pause_earliest_end: FloatGauge,
    maintenance_active: Family<WindowLabels, Gauge>,
    /// The maintenance windows open now, for the status page's banner (a family cannot be
    /// listed).
    open_windows: Mutex<std::collections::BTreeSet<String>>,
    /// Held triggers by subject: the chain and why, for the status page's banner.
    held_subjects: Mutex<BTreeMap<String, (String, HoldReason)>>,
    /// Requests to Alertmanager's API (escalations and silences), by operation and result.
    alertmanager_requests: Family<OperationResultLabels, Counter>,
    alertmanager_silences: Gauge,
    /// Which mountpoints each check has exported, so a removed check takes its series along.
    disk_series: Mutex<BTreeMap<String, BTreeSet<String>>>,
    failure_info: Family<FailureLabels, Gauge>,
    tls_expiry: Family<CheckLabels, FloatGauge>,
    last_heartbeat: Family<CheckLabels, FloatGauge>,
    /// The one reason each failing check exports: a check has at most one series, so the
    /// family stays as large as the set of failing checks.
    failure_series: Mutex<BTreeMap<String, FailureReason>>,
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
        let checks = Arc::new(CheckTable::default());
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
        let predicted_lower = Family::<HorizonLabels, FloatGauge>::default();
        registry.register(
            "medic_predicted_interval_lower",
            "Lower end of the 80 % prediction interval around medic_predicted_value",
            predicted_lower.clone(),
        );
        let predicted_upper = Family::<HorizonLabels, FloatGauge>::default();
        registry.register(
            "medic_predicted_interval_upper",
            "Upper end of the 80 % prediction interval around medic_predicted_value",
            predicted_upper.clone(),
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
        for code in WEBHOOK_CODES {
            let _ = webhook_notifications.get_or_create(&CodeLabels {
                code: code.to_string(),
            });
        }
        let webhook_alerts = Family::<AlertLabels, Counter>::default();
        registry.register(
            "medic_webhook_alerts",
            "Alerts received from Alertmanager, by status and whether a route matched",
            webhook_alerts.clone(),
        );
        for status in ["firing", "resolved"] {
            for routed in [true, false] {
                let _ = webhook_alerts.get_or_create(&AlertLabels {
                    status: status.to_string(),
                    routed: routed.to_string(),
                });
            }
        }
        let store_errors = Family::<OperationLabels, Counter>::default();
        registry.register(
            "medic_state_store_errors",
            "Failed reads and writes of the state store, by operation (medic keeps running and retries)",
            store_errors.clone(),
        );
        for operation in ["open", "migrate", "write", "read", "prune", "replaced"] {
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
        let store_written = Counter::default();
        registry.register(
            "medic_state_store_written_results",
            "Check results committed to the state store",
            store_written.clone(),
        );
        let store_backlog = Gauge::default();
        registry.register(
            "medic_state_store_backlog_results",
            "Check results waiting to be written to the state store",
            store_backlog.clone(),
        );
        let failure_info = Family::<FailureLabels, Gauge>::default();
        registry.register(
            "medic_check_failure_info",
            "1 for the reason the check currently fails (timeout, status, ...); no series while it passes",
            failure_info.clone(),
        );
        let tls_expiry = Family::<CheckLabels, FloatGauge>::default();
        registry.register_with_unit(
            "medic_tls_certificate_expiry_timestamp",
            "Unix time of the earliest notAfter in the chain the check's TLS server presented (verified or not)",
            Unit::Seconds,
            tls_expiry.clone(),
        );
        let last_heartbeat = Family::<CheckLabels, FloatGauge>::default();
        registry.register_with_unit(
            "medic_check_last_heartbeat_timestamp",
            "Unix time of the heartbeat check's latest successful ping",
            Unit::Seconds,
            last_heartbeat.clone(),
        );
        let recovery_pauses_active = Gauge::default();
        registry.register(
            "medic_recovery_pauses_active",
            "Pauses in force now (POST /api/v1/pauses, medic pause), as this replica last read them",
            recovery_pauses_active.clone(),
        );
        let probe_errors = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "medic_probe_errors",
            "Probes that failed because medic itself ran out of a resource (reason: fds, processes, memory); their result is unknown",
            probe_errors.clone(),
        );
        for resource in crate::resources::Resource::ALL {
            let _ = probe_errors.get_or_create(&ReasonLabels {
                reason: resource.as_str().to_string(),
            });
        }
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
        let web_connections_shed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "medic_web_connections_shed",
            "Connections closed at --web.max-connections to make room for new ones (reason: idle, reading_headers)",
            web_connections_shed.clone(),
        );
        for reason in crate::server::shed::ShedReason::ALL {
            let _ = web_connections_shed.get_or_create(&ReasonLabels {
                reason: reason.as_str().to_string(),
            });
        }
        let web_connections_open = Gauge::default();
        registry.register(
            "medic_web_connections_open",
            "Connections the HTTP server holds open now, shed ones not yet closed included",
            web_connections_open.clone(),
        );
        let alertmanager_requests = Family::<OperationResultLabels, Counter>::default();
        registry.register(
            "medic_alertmanager_requests",
            "Requests to Alertmanager's API by operation (post_alert, create_silence, expire_silence) and result",
            alertmanager_requests.clone(),
        );
        for operation in crate::vocabulary::AmOperation::ALL {
            for result in ["success", "failure"] {
                let _ = alertmanager_requests.get_or_create(&OperationResultLabels {
                    operation: *operation,
                    result: result.to_string(),
                });
            }
        }
        let alertmanager_silences = Gauge::default();
        registry.register(
            "medic_alertmanager_silences_active",
            "Silences medic holds in Alertmanager now",
            alertmanager_silences.clone(),
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
        let recovery_held = Family::<ChainReasonLabels, Counter>::default();
        registry.register(
            "medic_recovery_held",
            "Recovery triggers held back by a limit, the open circuit, a maintenance window or a pause",
            recovery_held.clone(),
        );
        let recovery_runs_active = Family::<ChainLabels, Gauge>::default();
        registry.register(
            "medic_recovery_runs_active",
            "Recovery runs in progress in this process",
            recovery_runs_active.clone(),
        );
        let recovery_circuit_open = Gauge::default();
        registry.register(
            "medic_recovery_circuit_open",
            "1 while max_unhealthy holds every new recovery run",
            recovery_circuit_open.clone(),
        );
        let recovery_held_triggers = Gauge::default();
        registry.register(
            "medic_recovery_held_triggers",
            "Recovery triggers waiting now for a hold to lift",
            recovery_held_triggers.clone(),
        );
        let recovery_held_oldest = FloatGauge::default();
        registry.register_with_unit(
            "medic_recovery_held_oldest_timestamp",
            "Unix time the longest-waiting held trigger was first held (0: none waits)",
            Unit::Seconds,
            recovery_held_oldest.clone(),
        );
        let pause_earliest_end = FloatGauge::default();
        registry.register_with_unit(
            "medic_recovery_pause_earliest_end_timestamp",
            "Unix time the first active pause ends (0: no pause)",
            Unit::Seconds,
            pause_earliest_end.clone(),
        );
        let maintenance_active = Family::<WindowLabels, Gauge>::default();
        registry.register(
            "medic_maintenance_active",
            "1 while the maintenance window is open",
            maintenance_active.clone(),
        );
        Metrics {
            recovery_held,
            recovery_runs_active,
            recovery_circuit_open,
            recovery_held_triggers,
            recovery_held_oldest,
            pause_earliest_end,
            maintenance_active,
            open_windows: Mutex::default(),
            held_subjects: Mutex::default(),
            registry,
            checks,
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
            predicted_lower,
            predicted_upper,
            predicted_breach,
            anomaly_score,
            webhook_notifications,
            webhook_alerts,
            store_errors,
            store_dropped,
            store_written,
            store_backlog,
            recovery_pauses_active,
            probe_errors,
            web_connections_shed,
            web_connections_open,
            alertmanager_requests,
            alertmanager_silences,
            disk_series: Mutex::new(BTreeMap::new()),
            failure_info,
            tls_expiry,
            last_heartbeat,
            failure_series: Mutex::new(BTreeMap::new()),
        }
    }

    /// A heartbeat job's `/start`→success time, in `medic_check_duration_seconds`; also sets
    /// the last heartbeat at once rather than at the next probe.
    pub fn observe_job(&self, check: &str, seconds: Option<f64>, success_at_unix_seconds: f64) {
        if let Some(seconds) = seconds {
            self.checks.observe_duration(check, seconds);
        }
        self.last_heartbeat
            .get_or_create(&CheckLabels {
                check: check.to_string(),
            })
            .set(success_at_unix_seconds);
    }

    /// Sets the reason the check fails for, or `None` while it passes: the previous reason's
    /// series goes, so each check has at most one.
    pub fn set_failure_reason(&self, check: &str, reason: Option<FailureReason>) {
        let mut series = self
            .failure_series
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let old = series.get(check).copied();
        if old == reason {
            return;
        }
        let labels = |r: FailureReason| FailureLabels {
            check: check.to_string(),
            reason: r.as_str().to_string(),
        };
        if let Some(old) = old {
            self.failure_info.remove(&labels(old));
            series.remove(check);
        }
        if let Some(new) = reason {
            self.failure_info.get_or_create(&labels(new)).set(1);
            series.insert(check.to_string(), new);
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
        // A heartbeat check's "probe" only reads the clock; its durations are its jobs',
        // observed by `observe_job`.
        let duration =
            (!outcome.metadata.contains_key("heartbeat")).then_some(outcome.duration.as_secs_f64());
        self.checks.record_probe(
            check,
            outcome.status,
            duration,
            health,
            status_changed,
            at_unix_seconds,
        );
        if let Some(crate::checks::FailureReason::Medic(resource)) = outcome.reason {
            self.probe_errors
                .get_or_create(&ReasonLabels {
                    reason: resource.as_str().to_string(),
                })
                .inc();
        }
        let labels = || CheckLabels {
            check: check.to_string(),
        };
        if let Some(t) = outcome
            .metadata
            .get(crate::checks::LAST_HEARTBEAT_KEY)
            .and_then(|v| v.as_f64())
        {
            self.last_heartbeat.get_or_create(&labels()).set(t);
        }
        if let Some(t) = outcome
            .metadata
            .get(crate::checks::EXPIRY_KEY)
            .and_then(|v| v.as_f64())
        {
            self.tls_expiry.get_or_create(&labels()).set(t);
        }
        for m in &outcome.measurements {
            match &m.measure {
                Measure::Cpu => {
                    self.system_cpu.get_or_create(&labels()).set(m.value);
                }
                Measure::Memory => {
                    self.system_memory.get_or_create(&labels()).set(m.value);
                }
                Measure::Disk { mountpoint } => {
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
                Measure::Duration | Measure::CertExpiry | Measure::Perfdata(_) => {}
            }
        }
    }

    /// Sets the check's status state set (1 for `status`, 0 for the other three) and whether
    /// it is flapping.
    pub fn set_status(&self, check: &str, status: Status, flapping: bool) {
        self.checks.set_status(check, status, flapping);
    }

    /// Drops every series of a check that is no longer configured.
    pub fn forget_check(&self, check: &str) {
        let labels = CheckLabels {
            check: check.to_string(),
        };
        self.checks.remove(check);
        self.set_failure_reason(check, None);
        self.tls_expiry.remove(&labels);
        self.last_heartbeat.remove(&labels);
        self.system_cpu.remove(&labels);
        self.system_memory.remove(&labels);
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

    pub fn recovery_attempt(
        &self,
        chain: &str,
        step: &str,
        result: AttemptResult,
        duration_seconds: f64,
    ) {
        self.recovery_attempts
            .get_or_create(&StepResultLabels {
                chain: chain.to_string(),
                step: step.to_string(),
                result,
            })
            .inc();
        self.recovery_step_duration
            .get_or_create(&StepLabels {
                chain: chain.to_string(),
                step: step.to_string(),
            })
            .observe(duration_seconds);
    }

    /// A shadow run's step: counted as an attempt with result `shadow`, with no duration.
    pub fn recovery_shadow(&self, chain: &str, step: &str) {
        self.recovery_attempts
            .get_or_create(&StepResultLabels {
                chain: chain.to_string(),
                step: step.to_string(),
                result: AttemptResult::Shadow,
            })
            .inc();
    }

    pub fn recovery_skipped(&self, chain: &str, step: &str, reason: SkipReason) {
        self.recovery_skipped
            .get_or_create(&StepSkipLabels {
                chain: chain.to_string(),
                step: step.to_string(),
                reason,
            })
            .inc();
    }

    pub fn recovery_run(&self, chain: &str, trigger: TriggerKind, outcome: RunOutcome) {
        self.recovery_runs
            .get_or_create(&RunLabels {
                chain: chain.to_string(),
                trigger,
                outcome,
            })
            .inc();
    }

    pub fn recovery_held(&self, chain: &str, reason: HoldReason) {
        self.recovery_held
            .get_or_create(&ChainReasonLabels {
                chain: chain.to_string(),
                reason,
            })
            .inc();
    }

    /// Makes every series of a chain whose labels are known exist from the start (and from
    /// the reload that adds the chain or a step), at 0: runs by trigger and outcome, held
    /// triggers by reason, runs active, and each step's attempts by result, skips by reason
    /// and durations. A series born at 1 is invisible to `increase()` and `rate()`.
    pub fn recovery_chain<'a>(&self, chain: &str, steps: impl IntoIterator<Item = &'a str>) {
        for reason in HoldReason::ALL {
            let _ = self.recovery_held.get_or_create(&ChainReasonLabels {
                chain: chain.to_string(),
                reason,
            });
        }
        let _ = self.recovery_runs_active.get_or_create(&ChainLabels {
            chain: chain.to_string(),
        });
        for trigger in TriggerKind::ALL {
            for outcome in RunOutcome::ALL {
                let _ = self.recovery_runs.get_or_create(&RunLabels {
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
            let _ = self.recovery_attempts.get_or_create(&StepResultLabels {
                chain: chain.to_string(),
                step: step.to_string(),
                result: *result,
            });
        }
        for reason in SkipReason::ALL {
            let _ = self.recovery_skipped.get_or_create(&StepSkipLabels {
                chain: chain.to_string(),
                step: step.to_string(),
                reason: *reason,
            });
        }
        let _ = self.recovery_step_duration.get_or_create(&StepLabels {
            chain: chain.to_string(),
            step: step.to_string(),
        });
    }

    /// Drops a chain's series when it is no longer configured (its steps' go with
    /// [`Metrics::forget_step`]).
    pub fn forget_chain(&self, chain: &str) {
        for reason in HoldReason::ALL {
            self.recovery_held.remove(&ChainReasonLabels {
                chain: chain.to_string(),
                reason,
            });
        }
        self.recovery_runs_active.remove(&ChainLabels {
            chain: chain.to_string(),
        });
        for trigger in TriggerKind::ALL {
            for outcome in RunOutcome::ALL {
                self.recovery_runs.remove(&RunLabels {
                    chain: chain.to_string(),
                    trigger: *trigger,
                    outcome: *outcome,
                });
            }
        }
    }

    pub fn recovery_runs_active(&self, chain: &str, active: usize) {
        self.recovery_runs_active
            .get_or_create(&ChainLabels {
                chain: chain.to_string(),
            })
            .set(i64::try_from(active).unwrap_or(i64::MAX));
    }

    /// How many triggers wait for a hold, and since when the oldest of them waits.
    pub fn recovery_held_now(&self, waiting: usize, oldest_since_ms: Option<i64>) {
        self.recovery_held_triggers
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        self.recovery_held_oldest
            .set(oldest_since_ms.map_or(0.0, |t| t as f64 / 1000.0));
    }

    /// Which subjects wait behind a hold, for which chain and why (replaces the last list).
    pub fn held_subjects<'a>(&self, held: impl Iterator<Item = (&'a str, &'a str, HoldReason)>) {
        let list = held
            .map(|(subject, chain, reason)| (subject.to_string(), (chain.to_string(), reason)))
            .collect();
        *self.held_subjects.lock().unwrap_or_else(|p| p.into_inner()) = list;
    }

    /// The held triggers as last set: subject → (chain, reason).
    pub fn held(&self) -> BTreeMap<String, (String, HoldReason)> {
        self.held_subjects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn pause_earliest_end(&self, ends_ms: Option<i64>) {
        self.pause_earliest_end
            .set(ends_ms.map_or(0.0, |t| t as f64 / 1000.0));
    }

    /// Whether the circuit breaker is open and which maintenance windows are, as last set:
    /// the status page's banner.
    pub fn banner(&self) -> (bool, Vec<String>) {
        let windows = self
            .open_windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        (self.recovery_circuit_open.get() != 0, windows)
    }

    pub fn recovery_circuit_open(&self, open: bool) {
        self.recovery_circuit_open.set(i64::from(open));
    }

    pub fn maintenance_active(&self, window: &str, open: bool) {
        let mut windows = self.open_windows.lock().unwrap_or_else(|p| p.into_inner());
        if open {
            windows.insert(window.to_string());
        } else {
            windows.remove(window);
        }
        drop(windows);
        self.maintenance_active
            .get_or_create(&WindowLabels {
                window: window.to_string(),
            })
            .set(i64::from(open));
    }

    pub fn forget_maintenance(&self, window: &str) {
        self.open_windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(window);
        self.maintenance_active.remove(&WindowLabels {
            window: window.to_string(),
        });
    }

    pub fn recovery_effectiveness(&self, chain: &str, step: &str, value: f64) {
        self.recovery_effectiveness
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
        self.recovery_effectiveness.remove(&labels);
        self.recovery_step_duration.remove(&labels);
        for result in AttemptResult::ALL {
            self.recovery_attempts.remove(&StepResultLabels {
                chain: chain.to_string(),
                step: step.to_string(),
                result: *result,
            });
        }
        for reason in SkipReason::ALL {
            self.recovery_skipped.remove(&StepSkipLabels {
                chain: chain.to_string(),
                step: step.to_string(),
                reason: *reason,
            });
        }
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
        for (horizon, band) in &p.intervals {
            if let Some((lo, hi)) = band {
                let labels = HorizonLabels {
                    prediction: p.name.clone(),
                    horizon: horizon.clone(),
                };
                self.predicted_lower.get_or_create(&labels).set(*lo);
                self.predicted_upper.get_or_create(&labels).set(*hi);
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
            let labels = HorizonLabels {
                prediction: spec.name.clone(),
                horizon: horizon.clone(),
            };
            self.predicted_value.remove(&labels);
            self.predicted_lower.remove(&labels);
            self.predicted_upper.remove(&labels);
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

    /// A connection closed at `--web.max-connections` to make room.
    pub fn web_connection_shed(&self, reason: crate::server::shed::ShedReason) {
        self.web_connections_shed
            .get_or_create(&ReasonLabels {
                reason: reason.as_str().to_string(),
            })
            .inc();
    }

    pub fn web_connections_open(&self, open: usize) {
        self.web_connections_open
            .set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    pub fn store_error(&self, operation: &str) {
        self.store_errors
            .get_or_create(&OperationLabels {
                operation: operation.to_string(),
            })
            .inc();
    }

    pub fn alertmanager_request(&self, operation: crate::vocabulary::AmOperation, success: bool) {
        self.alertmanager_requests
            .get_or_create(&OperationResultLabels {
                operation,
                result: if success { "success" } else { "failure" }.to_string(),
            })
            .inc();
    }

    /// One more (`1`) or one fewer (`-1`) silence held in Alertmanager.
    pub fn alertmanager_silences_add(&self, delta: i64) {
        self.alertmanager_silences.inc_by(delta);
    }

    pub fn store_results_dropped(&self, count: u64) {
        self.store_dropped.inc_by(count);
    }

    pub fn recovery_pauses_active(&self, count: usize) {
        self.recovery_pauses_active
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }

    /// Results that reached the store in a committed transaction.
    pub fn store_results_written(&self, count: usize) {
        self.store_written
            .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
    }

    pub fn store_backlog(&self, len: usize) {
        self.store_backlog
            .set(i64::try_from(len).unwrap_or(i64::MAX));
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
