//! recovery.limits: the fleet-wide brakes as configured, every default filled in. The
//! decisions over them are `recovery::hold`'s.

use std::collections::BTreeMap;

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
