//! What probes measured beyond the per-check table: host resources, why a check fails,
//! certificate expiry, heartbeats, and probes that failed for want of medic's own resources.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::{
    CheckLabels, DiskLabels, FailureLabels, FailureReason, FloatGauge, HealthState, Measure,
    Metrics, Outcome, ReasonLabels, Status,
};

pub(super) struct ProbeFamilies {
    pub(super) system_cpu: Family<CheckLabels, FloatGauge>,
    pub(super) system_memory: Family<CheckLabels, FloatGauge>,
    pub(super) system_disk: Family<DiskLabels, FloatGauge>,
    pub(super) failure_info: Family<FailureLabels, Gauge>,
    /// 1 while a failing dependency blocks the check (checks with `depends_on` only).
    pub(super) blocked: Family<CheckLabels, Gauge>,
    pub(super) tls_expiry: Family<CheckLabels, FloatGauge>,
    pub(super) last_heartbeat: Family<CheckLabels, FloatGauge>,
    /// Probes that failed because medic itself ran out of fds, processes or memory.
    pub(super) errors: Family<ReasonLabels, Counter>,
    /// Which mountpoints each check has exported, so a removed check takes its series along.
    pub(super) disk_series: Mutex<BTreeMap<String, BTreeSet<String>>>,
    /// The one reason each failing check exports: a check has at most one series, so the
    /// family stays as large as the set of failing checks.
    pub(super) failure_series: Mutex<BTreeMap<String, FailureReason>>,
}

impl ProbeFamilies {
    pub(super) fn register(registry: &mut Registry) -> Self {
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
        let blocked = Family::<CheckLabels, Gauge>::default();
        registry.register(
            "medic_check_blocked",
            "1 while a check it depends on (directly or through others) is critical or unknown: no recovery run starts for it; only for checks with depends_on",
            blocked.clone(),
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
        ProbeFamilies {
            system_cpu,
            system_memory,
            system_disk,
            failure_info,
            blocked,
            tls_expiry,
            last_heartbeat,
            errors: probe_errors,
            disk_series: Mutex::new(BTreeMap::new()),
            failure_series: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Metrics {
    /// A heartbeat job's `/start`→success time, in `medic_check_duration_seconds`; also sets
    /// the last heartbeat at once rather than at the next probe.
    pub fn observe_job(&self, check: &str, seconds: Option<f64>, success_at_unix_seconds: f64) {
        if let Some(seconds) = seconds {
            self.checks.observe_duration(check, seconds);
        }
        self.probes
            .last_heartbeat
            .get_or_create(&CheckLabels {
                check: check.to_string(),
            })
            .set(success_at_unix_seconds);
    }

    /// Sets the reason the check fails for, or `None` while it passes: the previous reason's
    /// series goes, so each check has at most one.
    pub fn set_failure_reason(&self, check: &str, reason: Option<FailureReason>) {
        let mut series = self
            .probes
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
            self.probes.failure_info.remove(&labels(old));
            series.remove(check);
        }
        if let Some(new) = reason {
            self.probes.failure_info.get_or_create(&labels(new)).set(1);
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
            self.probes
                .errors
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
            self.probes.last_heartbeat.get_or_create(&labels()).set(t);
        }
        if let Some(t) = outcome
            .metadata
            .get(crate::checks::EXPIRY_KEY)
            .and_then(|v| v.as_f64())
        {
            self.probes.tls_expiry.get_or_create(&labels()).set(t);
        }
        for m in &outcome.measurements {
            match &m.measure {
                Measure::Cpu => {
                    self.probes.system_cpu.get_or_create(&labels()).set(m.value);
                }
                Measure::Memory => {
                    self.probes
                        .system_memory
                        .get_or_create(&labels())
                        .set(m.value);
                }
                Measure::Disk { mountpoint } => {
                    self.probes
                        .system_disk
                        .get_or_create(&DiskLabels {
                            check: check.to_string(),
                            mountpoint: mountpoint.clone(),
                        })
                        .set(m.value);
                    let mut series = self
                        .probes
                        .disk_series
                        .lock()
                        .unwrap_or_else(|p| p.into_inner());
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
    /// Whether a failing dependency blocks `check` (a check with `depends_on`).
    pub fn set_blocked(&self, check: &str, blocked: bool) {
        self.probes
            .blocked
            .get_or_create(&CheckLabels {
                check: check.to_string(),
            })
            .set(i64::from(blocked));
    }

    pub fn forget_check(&self, check: &str) {
        let labels = CheckLabels {
            check: check.to_string(),
        };
        self.checks.remove(check);
        self.set_failure_reason(check, None);
        self.probes.tls_expiry.remove(&labels);
        self.probes.blocked.remove(&labels);
        self.probes.last_heartbeat.remove(&labels);
        self.probes.system_cpu.remove(&labels);
        self.probes.system_memory.remove(&labels);
        let mountpoints = self
            .probes
            .disk_series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(check)
            .unwrap_or_default();
        for mountpoint in mountpoints {
            self.probes.system_disk.remove(&DiskLabels {
                check: check.to_string(),
                mountpoint,
            });
        }
    }
}
