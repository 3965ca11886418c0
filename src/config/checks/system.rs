//! `system:` checks: this host's CPU, memory and disks against utilization ratios.

use serde::Deserialize;

use super::{CheckAt, Kind};
use crate::config::validate::Context;
use crate::vocabulary::Measure;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemFile {
    cpu: Option<ThresholdsFile>,
    memory: Option<ThresholdsFile>,
    disk: Option<DiskFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ThresholdsFile {
    warning: Option<f64>,
    critical: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DiskFile {
    warning: Option<f64>,
    critical: Option<f64>,
    mountpoints: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SystemSpec {
    pub cpu: Option<Limits>,
    pub memory: Option<Limits>,
    pub disk: Option<DiskSpec>,
}

/// Utilization ratios at which a resource turns warning or critical.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub warning: Option<f64>,
    pub critical: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DiskSpec {
    pub limits: Limits,
    /// Empty means every mounted disk.
    pub mountpoints: Vec<String>,
}

impl Kind for SystemSpec {
    type File = SystemFile;

    fn check(cx: &mut Context, at: &CheckAt<'_>, s: SystemFile) -> Option<SystemSpec> {
        if s.cpu.is_none() && s.memory.is_none() && s.disk.is_none() {
            cx.error(at.path, "system needs at least one of cpu, memory, disk");
            return None;
        }
        let cpu = s.cpu.map(|t| limits(cx, at, "cpu", t.warning, t.critical));
        let memory = s
            .memory
            .map(|t| limits(cx, at, "memory", t.warning, t.critical));
        let disk = s.disk.map(|d| {
            let limits = limits(cx, at, "disk", d.warning, d.critical);
            let mountpoints = d.mountpoints.unwrap_or_default();
            for m in mountpoints.iter().filter(|m| !m.starts_with('/')) {
                cx.error(
                    at.path,
                    format!("system.disk.mountpoints: {m:?} must be an absolute path"),
                );
            }
            DiskSpec {
                limits,
                mountpoints,
            }
        });
        Some(SystemSpec { cpu, memory, disk })
    }

    fn measures(&self, measurement: &str) -> bool {
        matches!(
            measurement,
            Measure::DURATION | Measure::CPU | Measure::MEMORY | Measure::DISK
        )
    }
}

fn limits(
    cx: &mut Context,
    at: &CheckAt<'_>,
    key: &str,
    warning: Option<f64>,
    critical: Option<f64>,
) -> Limits {
    for (level, value) in [("warning", warning), ("critical", critical)] {
        if let Some(v) = value.filter(|v| !(0.0..=1.0).contains(v)) {
            cx.error(
                at.path,
                format!("system.{key}.{level} {v} must be a ratio between 0 and 1"),
            );
        }
    }
    if let (Some(w), Some(c)) = (warning, critical) {
        if w > c {
            cx.error(
                at.path,
                format!("system.{key}.warning {w} must not exceed critical {c}"),
            );
        }
    }
    if warning.is_none() && critical.is_none() {
        cx.error(at.path, format!("system.{key} needs warning or critical"));
    }
    Limits { warning, critical }
}
