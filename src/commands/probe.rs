//! `medic probe NAME`: one probe of a configured check, printed, with the Nagios exit code.

use std::io::Write;

use crate::checks::Prober;
use crate::config::{ConfigSource, Overrides};
use crate::status::Status;

/// `medic probe NAME`: one probe, printed; the exit code is the Nagios one for its status.
pub async fn probe(name: &str, location: ConfigSource, overrides: &Overrides) -> i32 {
    let config = match location.load(overrides) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("invalid config: {errors}");
            return Status::Unknown.exit_code();
        }
    };
    let Some(check) = config.checks.iter().find(|c| c.name == name) else {
        let names: Vec<&str> = config.checks.iter().map(|c| c.name.as_str()).collect();
        eprintln!(
            "no check named {name:?}; configured checks: {}",
            names.join(", ")
        );
        return Status::Unknown.exit_code();
    };
    let prober = match Prober::new() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot set up probing: {e:#}");
            return Status::Unknown.exit_code();
        }
    };
    let outcome = prober.probe(check, &config.redactor).await;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "check: {}", check.name);
    let _ = writeln!(out, "kind: {}", check.probe.kind());
    let _ = writeln!(out, "status: {}", outcome.status);
    let _ = writeln!(out, "duration: {:.6}s", outcome.duration.as_secs_f64());
    let _ = writeln!(out, "message: {}", outcome.message);
    if !outcome.metadata.is_empty() {
        let _ = writeln!(out, "metadata:");
        for (key, value) in &outcome.metadata {
            let _ = writeln!(out, "  {key}: {value}");
        }
    }
    // Every probe measures its duration: listed last, as the prober's own measurement.
    let duration = crate::checks::Measurement::new(
        crate::checks::Measure::Duration,
        outcome.duration.as_secs_f64(),
    );
    let _ = writeln!(out, "measurements:");
    for m in outcome.measurements.iter().chain([&duration]) {
        let name = m.measure.name();
        match m.measure.mountpoint() {
            Some(mp) => {
                let _ = writeln!(out, "  {name}{{mountpoint={mp}}}: {}", m.value);
            }
            None => {
                let _ = writeln!(out, "  {name}: {}", m.value);
            }
        }
    }
    outcome.status.exit_code()
}
