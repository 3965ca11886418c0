//! `predictions:` — which measurement of which check to forecast, how far ahead, and the
//! threshold whose breach time to export.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::checks::{CheckSpec, Checks, ProbeSpec, SystemSpec};
use super::duration::Duration;
use super::path::YamlPath;
use super::validate::Context;
use crate::vocabulary::Measure;

const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);
const DEFAULT_MAX_HORIZON: Duration = Duration::from_secs(7 * 24 * 3600);

/// A forecast of one measurement of one check.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionSpec {
    pub name: String,
    pub check: String,
    /// What it follows; a disk's names its mountpoint.
    pub measure: Measure,
    /// History the model fits on.
    pub window: Duration,
    /// (as written in the config, for the `horizon` label; parsed).
    pub horizons: Vec<(String, Duration)>,
    pub breach: Option<Breach>,
    /// Breaches further away than this are reported as +Inf.
    pub max_horizon: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Breach {
    Above(f64),
    Below(f64),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PredictionFile {
    name: String,
    check: String,
    measurement: String,
    mountpoint: Option<String>,
    window: Option<Duration>,
    #[serde(default)]
    horizons: Vec<String>,
    breach_above: Option<f64>,
    breach_below: Option<f64>,
    max_horizon: Option<Duration>,
}

pub(super) fn section(
    cx: &mut Context,
    value: Option<Value>,
    checks: &Checks,
) -> Vec<PredictionSpec> {
    let by_name: BTreeMap<&str, &CheckSpec> =
        checks.iter().map(|(_, c)| (c.name.as_str(), c)).collect();
    let mut seen = BTreeSet::new();
    let mut specs = Vec::new();
    for (path, item) in cx.items(value, &YamlPath::top("predictions")) {
        let Some(p) = cx.parse::<PredictionFile>(item, &path) else {
            continue;
        };
        if cx.name(&path, &p.name) && !seen.insert(p.name.clone()) {
            cx.error(&path, "duplicate prediction name");
        }
        let check = by_name.get(p.check.as_str()).copied();
        rules(cx, &path, &p, check);
        let mountpoint = mountpoint(cx, &path, &p, check);
        specs.push(PredictionSpec {
            // Invalid combinations were reported above; the placeholder is never used.
            measure: Measure::from_parts(&p.measurement, mountpoint).unwrap_or(Measure::Duration),
            window: p.window.unwrap_or(DEFAULT_WINDOW),
            horizons: p
                .horizons
                .iter()
                .filter_map(|h| h.parse::<Duration>().ok().map(|d| (h.clone(), d)))
                .collect(),
            breach: match (p.breach_above, p.breach_below) {
                (Some(v), None) => Some(Breach::Above(v)),
                (None, Some(v)) => Some(Breach::Below(v)),
                _ => None,
            },
            max_horizon: p.max_horizon.unwrap_or(DEFAULT_MAX_HORIZON),
            name: p.name,
            check: p.check,
        });
    }
    specs
}

/// The check exists and measures what is asked; horizons, thresholds and times make sense.
fn rules(cx: &mut Context, path: &YamlPath, p: &PredictionFile, check: Option<&CheckSpec>) {
    match check {
        None => cx.error(
            path,
            format!("check {:?} is not a configured check", p.check),
        ),
        Some(check) if !check.probe.measures(&p.measurement) => cx.error(
            path,
            format!(
                "measurement {:?} is not produced by {} check {:?}",
                p.measurement,
                check.probe.kind(),
                check.name
            ),
        ),
        Some(_) => {}
    }
    if p.mountpoint.is_some() && p.measurement != Measure::DISK {
        cx.error(
            path,
            "mountpoint applies only to measurement disk_utilization",
        );
    }
    for h in &p.horizons {
        match h.parse::<Duration>() {
            Ok(d) if !d.is_zero() => {}
            Ok(_) => cx.error(path, "horizons must be greater than 0s"),
            Err(e) => cx.error(path, format!("horizons: {e}")),
        }
    }
    match (p.breach_above, p.breach_below) {
        (Some(_), Some(_)) => cx.error(
            path,
            "at most one of breach_above and breach_below may be set",
        ),
        (Some(v), None) | (None, Some(v)) if !v.is_finite() => {
            cx.error(path, "breach threshold must be a finite number")
        }
        _ => {}
    }
    if p.window.is_some_and(|w| w.is_zero()) {
        cx.error(path, "window must be greater than 0s");
    }
    if p.max_horizon.is_some_and(|h| h.is_zero()) {
        cx.error(path, "max_horizon must be greater than 0s");
    }
}

/// A disk prediction names its mountpoint, unless the check watches only one.
fn mountpoint(
    cx: &mut Context,
    path: &YamlPath,
    p: &PredictionFile,
    check: Option<&CheckSpec>,
) -> Option<String> {
    if p.measurement != Measure::DISK || p.mountpoint.is_some() {
        return p.mountpoint.clone();
    }
    let only = check.and_then(|c| match &c.probe {
        ProbeSpec::System(SystemSpec { disk: Some(d), .. }) if d.mountpoints.len() == 1 => {
            Some(d.mountpoints[0].clone())
        }
        _ => None,
    });
    if only.is_none() {
        cx.error(path, "disk_utilization needs a mountpoint");
    }
    only
}
