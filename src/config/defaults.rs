//! `defaults:` — what every check gets unless it says otherwise (interval, timeout,
//! thresholds, flap detection), and how many results the API keeps per check.

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::duration::Duration;
use super::path::YamlPath;
use super::validate::Context;
use crate::thresholds::Flapping;

pub(super) const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// What `/api/v1/checks/{name}` shows of a check's newest results.
const DEFAULT_HISTORY_SIZE: usize = 20;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DefaultsFile {
    interval: Option<Duration>,
    timeout: Option<Duration>,
    failures_before_critical: Option<u32>,
    successes_before_healthy: Option<u32>,
    flapping: Option<FlappingFile>,
    /// Results kept in memory per check for the API's `history`.
    history_size: Option<usize>,
}

/// Monit-style flap detection: `failures` critical probes within the latest `within`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FlappingFile {
    failures: u32,
    within: u32,
}

/// The defaults, filled in and checked.
pub(super) struct Defaults {
    pub interval: Duration,
    /// `None`: 10s, shrunk to a shorter interval.
    pub timeout: Option<Duration>,
    pub failures_before_critical: u32,
    pub successes_before_healthy: u32,
    pub flapping: Option<Flapping>,
    pub history_size: usize,
}

pub(super) fn section(cx: &mut Context, value: Option<Value>) -> Defaults {
    let path = YamlPath::top("defaults");
    let d: DefaultsFile = cx.parse_or_default(value, &path);
    let interval = d.interval.unwrap_or(DEFAULT_INTERVAL);
    if interval.is_zero() {
        cx.error(path.key("interval"), "must be greater than 0s");
    }
    if d.timeout.is_some_and(Duration::is_zero) {
        cx.error(path.key("timeout"), "must be greater than 0s");
    }
    for (key, value) in [
        ("failures_before_critical", d.failures_before_critical),
        ("successes_before_healthy", d.successes_before_healthy),
    ] {
        if value == Some(0) {
            cx.error(path.key(key), "must be at least 1");
        }
    }
    let flapping = d
        .flapping
        .and_then(|f| flapping(cx, &path.key("flapping"), f));
    let history_size = d.history_size.unwrap_or(DEFAULT_HISTORY_SIZE);
    if !(1..=10_000).contains(&history_size) {
        cx.error(path.key("history_size"), "must be between 1 and 10000");
    }
    Defaults {
        interval,
        timeout: d.timeout,
        failures_before_critical: d.failures_before_critical.unwrap_or(1).max(1),
        successes_before_healthy: d.successes_before_healthy.unwrap_or(1).max(1),
        flapping,
        history_size,
    }
}

/// `flapping:` of `defaults` or of one check.
pub(super) fn flapping(cx: &mut Context, path: &YamlPath, f: FlappingFile) -> Option<Flapping> {
    let max = Flapping::MAX_WINDOW;
    let mut ok = true;
    if f.failures < 2 {
        // One failure "within" any window is just failures_before_critical: 1.
        cx.error(path, "failures must be at least 2");
        ok = false;
    }
    if f.within < f.failures || f.within > max {
        cx.error(
            path,
            format!("within must be between failures ({}) and {max}", f.failures),
        );
        ok = false;
    }
    ok.then_some(Flapping {
        failures: f.failures,
        within: f.within,
    })
}
