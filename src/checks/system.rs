//! System checks: CPU, memory and disk utilization of this host from one long-lived sysinfo
//! handle, refreshed on the blocking pool so the runtime never waits on /proc.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use sysinfo::{CpuRefreshKind, DiskRefreshKind, Disks, MemoryRefreshKind, RefreshKind, System};

use super::{Measure, Measurement, Outcome};
use crate::config::{Limits, SystemSpec};
use crate::status::Status;

pub struct SystemProbe {
    inner: Arc<Mutex<Inner>>,
    cpu_primed: AtomicBool,
}

struct Inner {
    system: System,
    disks: Disks,
    /// CPU usage is the difference between two refreshes; this is when the last one was.
    cpu_refreshed: Option<Instant>,
}

/// One resource's reading and the verdict on it.
struct Reading {
    label: String,
    value: f64,
    status: Status,
}

impl SystemProbe {
    pub fn new() -> Self {
        SystemProbe {
            inner: Arc::new(Mutex::new(Inner {
                system: System::new_with_specifics(RefreshKind::nothing()),
                disks: Disks::new(),
                cpu_refreshed: None,
            })),
            cpu_primed: AtomicBool::new(false),
        }
    }

    pub async fn probe(&self, spec: &SystemSpec) -> Outcome {
        let wants_cpu = spec.cpu.is_some();
        if wants_cpu && !self.cpu_primed.swap(true, Ordering::SeqCst) {
            self.refresh(true, false, false).await;
            // The first CPU reading needs a baseline; wait without blocking the runtime.
            tokio::time::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL).await;
        }
        let snapshot = match self
            .refresh(wants_cpu, spec.memory.is_some(), spec.disk.is_some())
            .await
        {
            Some(s) => s,
            None => return Outcome::new(Status::Unknown, "reading system statistics failed"),
        };

        let mut readings = Vec::new();
        let mut measurements = Vec::new();
        let mut metadata = serde_json::Map::new();
        if let (Some(limits), Some(cpu)) = (spec.cpu, snapshot.cpu) {
            readings.push(judge("cpu".into(), cpu, limits));
            measurements.push(Measurement::new(Measure::Cpu, cpu));
            metadata.insert(Measure::CPU.into(), round(cpu).into());
        }
        if let (Some(limits), Some(mem)) = (spec.memory, snapshot.memory) {
            readings.push(judge("memory".into(), mem, limits));
            measurements.push(Measurement::new(Measure::Memory, mem));
            metadata.insert(Measure::MEMORY.into(), round(mem).into());
        }
        let mut missing = Vec::new();
        if let Some(disk) = &spec.disk {
            let mut disk_meta = serde_json::Map::new();
            let wanted: Vec<&str> = if disk.mountpoints.is_empty() {
                snapshot.disks.iter().map(|(m, _)| m.as_str()).collect()
            } else {
                disk.mountpoints.iter().map(String::as_str).collect()
            };
            for mountpoint in wanted {
                match snapshot.disks.iter().find(|(m, _)| m == mountpoint) {
                    Some((_, ratio)) => {
                        readings.push(judge(format!("disk {mountpoint}"), *ratio, disk.limits));
                        let measure = Measure::Disk {
                            mountpoint: mountpoint.to_string(),
                        };
                        measurements.push(Measurement::new(measure, *ratio));
                        disk_meta.insert(mountpoint.to_string(), round(*ratio).into());
                    }
                    None => missing.push(mountpoint.to_string()),
                }
            }
            metadata.insert(Measure::DISK.into(), disk_meta.into());
        }

        let mut status = readings
            .iter()
            .fold(Status::Healthy, |acc, r| acc.worst(r.status));
        let mut parts: Vec<String> = readings
            .iter()
            .map(|r| {
                let pct = format!("{} {:.1}%", r.label, r.value * 100.0);
                match r.status {
                    Status::Healthy => pct,
                    other => format!("{pct} ({other})"),
                }
            })
            .collect();
        if !missing.is_empty() {
            status = status.worst(Status::Unknown);
            parts.push(format!("mountpoint not found: {}", missing.join(", ")));
        }
        if readings.is_empty() && missing.is_empty() {
            status = Status::Unknown;
            parts.push("no readings".into());
        }
        let mut outcome = Outcome::new(status, parts.join(", "));
        if status == Status::Critical {
            outcome.reason = Some(super::FailureReason::Threshold);
        }
        outcome.metadata = metadata.into_iter().collect();
        outcome.measurements = measurements;
        outcome
    }

    /// Refreshes what is asked for and reads it; `None` when the CPU reading is only the
    /// baseline (the very first refresh).
    async fn refresh(&self, cpu: bool, memory: bool, disks: bool) -> Option<Snapshot> {
        let inner = self.inner.clone();
        // Under the probe's check span, so whatever it logs says which check asked.
        let span = tracing::info_span!("sysinfo_refresh");
        let task = tokio::task::spawn_blocking(move || {
            let _in_span = span.enter();
            // A poisoned lock only means another probe panicked mid-refresh; the data is still
            // a valid sysinfo handle.
            let mut inner = inner.lock().unwrap_or_else(|p| p.into_inner());
            let mut snapshot = Snapshot::default();
            if cpu {
                let now = Instant::now();
                match inner.cpu_refreshed {
                    // Two refreshes closer than sysinfo's minimum give noise; reuse the last.
                    Some(at) if now.duration_since(at) < sysinfo::MINIMUM_CPU_UPDATE_INTERVAL => {}
                    previous => {
                        inner
                            .system
                            .refresh_cpu_specifics(CpuRefreshKind::nothing().with_cpu_usage());
                        inner.cpu_refreshed = Some(now);
                        // Only a baseline so far: no usage can be computed from one reading.
                        previous?;
                    }
                }
                snapshot.cpu = Some(clamp_ratio(
                    f64::from(inner.system.global_cpu_usage()) / 100.0,
                ));
            }
            if memory {
                inner
                    .system
                    .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
                let total = inner.system.total_memory();
                if total > 0 {
                    let available = inner.system.available_memory();
                    snapshot.memory = Some(clamp_ratio(1.0 - available as f64 / total as f64));
                }
            }
            if disks {
                inner
                    .disks
                    .refresh_specifics(true, DiskRefreshKind::nothing().with_storage());
                for disk in inner.disks.list() {
                    let total = disk.total_space();
                    let mountpoint = disk.mount_point().to_string_lossy().into_owned();
                    if total == 0 || snapshot.disks.iter().any(|(m, _)| *m == mountpoint) {
                        continue;
                    }
                    let ratio = 1.0 - disk.available_space() as f64 / total as f64;
                    snapshot.disks.push((mountpoint, clamp_ratio(ratio)));
                }
            }
            Some(snapshot)
        });
        task.await.ok().flatten()
    }
}

#[derive(Default)]
struct Snapshot {
    cpu: Option<f64>,
    memory: Option<f64>,
    disks: Vec<(String, f64)>,
}

fn judge(label: String, value: f64, limits: Limits) -> Reading {
    let status = if limits.critical.is_some_and(|c| value >= c) {
        Status::Critical
    } else if limits.warning.is_some_and(|w| value >= w) {
        Status::Warning
    } else {
        Status::Healthy
    };
    Reading {
        label,
        value,
        status,
    }
}

fn clamp_ratio(v: f64) -> f64 {
    if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

fn round(v: f64) -> f64 {
    (v * 10_000.0).round() / 10_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_applies_warning_and_critical_ratios() {
        let limits = Limits {
            warning: Some(0.8),
            critical: Some(0.95),
        };
        assert_eq!(judge("x".into(), 0.5, limits).status, Status::Healthy);
        assert_eq!(judge("x".into(), 0.8, limits).status, Status::Warning);
        assert_eq!(judge("x".into(), 0.95, limits).status, Status::Critical);
        let only_critical = Limits {
            warning: None,
            critical: Some(0.9),
        };
        assert_eq!(
            judge("x".into(), 0.89, only_critical).status,
            Status::Healthy
        );
    }
}
