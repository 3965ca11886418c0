//! `recovery.limits`: the fleet-wide brakes as configured, every default filled in. The
//! decisions over them are `recovery::hold`'s.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::config::duration::Duration;
use crate::config::path::YamlPath;
use crate::config::validate::Context;

/// `max_unhealthy`: a share of the enabled checks, or a number of them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxUnhealthy {
    /// 0–1 (`50%` in the config).
    Share(f64),
    Count(u32),
}

impl Default for MaxUnhealthy {
    fn default() -> Self {
        MaxUnhealthy::Share(0.5)
    }
}

/// `max_runs: {count, within}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub count: u32,
    pub within_ms: i64,
}

/// The fleet-wide limits with every default filled in.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RecoveryLimits {
    /// Runs in progress at once across all chains (`None`: no limit).
    pub max_concurrent_runs: Option<u32>,
    pub max_runs: Option<RateLimit>,
    pub max_unhealthy: MaxUnhealthy,
    /// Per chain `max_concurrent_runs`.
    pub per_chain: BTreeMap<String, u32>,
}

/// The default global `max_concurrent_runs`.
pub const DEFAULT_MAX_CONCURRENT_RUNS: u32 = 10;

/// `recovery.limits` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitsFile {
    max_concurrent_runs: Option<u32>,
    max_runs: Option<MaxRunsFile>,
    max_unhealthy: Option<ShareOrCount>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaxRunsFile {
    count: u32,
    within: Duration,
}

/// `50%` (YAML reads it as a string) or `20` (a number).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
enum ShareOrCount {
    Count(u64),
    Text(String),
}

/// The checked limits; `per_chain` is the chains' to fill.
pub(super) fn limits(cx: &mut Context, path: &YamlPath, file: &LimitsFile) -> RecoveryLimits {
    let max_concurrent_runs = file
        .max_concurrent_runs
        .unwrap_or(DEFAULT_MAX_CONCURRENT_RUNS);
    if max_concurrent_runs == 0 {
        cx.error(path, "max_concurrent_runs must be at least 1");
    }
    let max_runs = file
        .max_runs
        .as_ref()
        .and_then(|rate| max_runs(cx, &path.key("max_runs"), rate));
    let max_unhealthy = match &file.max_unhealthy {
        None => MaxUnhealthy::default(),
        Some(ShareOrCount::Count(n)) => MaxUnhealthy::Count(u32::try_from(*n).unwrap_or(u32::MAX)),
        Some(ShareOrCount::Text(text)) => match parse_share_or_count(text) {
            Ok(m) => m,
            Err(why) => {
                cx.error(path.key("max_unhealthy"), why);
                MaxUnhealthy::default()
            }
        },
    };
    RecoveryLimits {
        max_concurrent_runs: Some(max_concurrent_runs.max(1)),
        max_runs,
        max_unhealthy,
        per_chain: BTreeMap::new(),
    }
}

fn max_runs(cx: &mut Context, path: &YamlPath, rate: &MaxRunsFile) -> Option<RateLimit> {
    if rate.count == 0 {
        cx.error(path, "count must be at least 1");
    }
    if rate.within.is_zero() {
        cx.error(path, "within must be greater than 0s");
    }
    (rate.count > 0 && !rate.within.is_zero()).then(|| RateLimit {
        count: rate.count,
        within_ms: i64::try_from(rate.within.std().as_millis()).unwrap_or(i64::MAX),
    })
}

/// `50%` (a share of the enabled checks) or `20` (a number of them).
fn parse_share_or_count(text: &str) -> Result<MaxUnhealthy, String> {
    let bad = || {
        format!(
            "invalid value {text:?} (want a share of the enabled checks such as \"50%\" or a number of them such as 20)"
        )
    };
    let text_trimmed = text.trim();
    if let Some(percent) = text_trimmed.strip_suffix('%') {
        let value: f64 = percent.trim().parse().map_err(|_| bad())?;
        if !(0.0..=100.0).contains(&value) {
            return Err(format!("{text:?} is not a share between 0% and 100%"));
        }
        return Ok(MaxUnhealthy::Share(value / 100.0));
    }
    text_trimmed
        .parse::<u32>()
        .map(MaxUnhealthy::Count)
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_or_count_table() {
        let cases = [
            ("50%", Ok(MaxUnhealthy::Share(0.5))),
            ("12.5 %", Ok(MaxUnhealthy::Share(0.125))),
            ("0%", Ok(MaxUnhealthy::Share(0.0))),
            ("100%", Ok(MaxUnhealthy::Share(1.0))),
            ("20", Ok(MaxUnhealthy::Count(20))),
        ];
        for (text, want) in cases {
            assert_eq!(parse_share_or_count(text), want, "{text}");
        }
        for bad in ["120%", "-1%", "lots", "0.5", "%", ""] {
            assert!(parse_share_or_count(bad).is_err(), "{bad:?}");
        }
    }
}
