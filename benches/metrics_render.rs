//! Cost of rendering `/metrics` for a large fleet (issue 28's scrape goal): 100,000 probed
//! checks, each with its 24 per-check series, rendered in both text formats a slice at a time, as the server sends it. Prints the
//! CPU time of one render, its size and the cost per series line; asserts nothing.
//!
//! `cargo bench --bench metrics_render [-- CHECKS]`
#![forbid(unsafe_code)]

#[path = "common/cpu_time.rs"]
mod cpu_time;

use std::time::Duration;

use medic::checks::Outcome;
use medic::metrics::{Format, Metrics};
use medic::status::Status;
use medic::thresholds::{HealthState, Thresholds};

fn main() {
    let checks: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(100_000);
    let metrics = std::sync::Arc::new(Metrics::new());
    let thresholds = Thresholds {
        failures_before_critical: 1,
        successes_before_healthy: 1,
        flapping: None,
    };
    for i in 0..checks {
        let check = format!("http-{i:06}");
        metrics.set_status(&check, Status::Unknown, false);
        let mut health = HealthState::default();
        for probe in 0..3 {
            let status = if (i + probe) % 17 == 0 {
                Status::Critical
            } else {
                Status::Healthy
            };
            let mut outcome = Outcome::new(status, "x");
            outcome.duration =
                Duration::from_micros(((i * 7919 + probe * 104_729) % 60_000) as u64);
            let changed = health.observe(status, thresholds).is_some();
            let at = 1_765_000_000.0 + i as f64 / 1667.0 + probe as f64 * 60.0;
            metrics.observe_probe(&check, &outcome, &health, changed, at);
        }
    }
    println!("checks: {checks}");
    for (name, format) in [
        ("prometheus text 0.0.4", Format::PrometheusText),
        ("openmetrics 1.0", Format::OpenMetrics),
    ] {
        let mut best = f64::INFINITY;
        let mut size = 0;
        for _ in 0..3 {
            // As the server sends it: a slice at a time, each dropped once written.
            let (bytes, secs) =
                cpu_time::measure(|| metrics.clone().render(format).map(|b| b.len()).sum());
            best = best.min(secs);
            size = bytes;
        }
        let text = metrics.encode(format);
        let lines = text.lines().filter(|l| !l.starts_with('#')).count();
        println!(
            "{name}: {:.0} ms CPU (best of 3), {:.1} MB, {lines} series lines, {:.0} ns per line",
            best * 1e3,
            size as f64 / 1e6,
            best * 1e9 / lines as f64
        );
    }
}
