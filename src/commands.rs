//! The one-shot subcommands: `check-config`, `probe` and `detect`.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::app::ConfigLocation;
use crate::checks::Prober;
use crate::config::Overrides;
use crate::status::Status;

/// `medic check-config [FILE]`: prints every error with its YAML path; exit 0 valid, 1 invalid.
pub fn check_config(file: Option<PathBuf>, overrides: &Overrides) -> i32 {
    let location = ConfigLocation::resolve(file);
    let shown = match &location {
        ConfigLocation::File(p) => p.display().to_string(),
        ConfigLocation::Builtin => "built-in default config".to_string(),
    };
    match location.load(overrides) {
        Ok(config) => {
            println!(
                "{shown}: valid ({} checks, {} recovery chains, {} routes, {} predictions)",
                config.checks.len(),
                config.recovery.chains.len(),
                config.recovery.routes.len(),
                config.predictions.len()
            );
            0
        }
        Err(errors) => {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(err, "{shown}: invalid, {} error(s):", errors.0.len());
            for e in &errors.0 {
                let _ = writeln!(err, "  {e}");
            }
            1
        }
    }
}

/// `medic probe NAME`: one probe, printed; the exit code is the Nagios one for its status.
pub async fn probe(name: &str, location: ConfigLocation, overrides: &Overrides) -> i32 {
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
    if !outcome.measurements.is_empty() {
        let _ = writeln!(out, "measurements:");
        for m in &outcome.measurements {
            match &m.mountpoint {
                Some(mp) => {
                    let _ = writeln!(out, "  {}{{mountpoint={mp}}}: {}", m.name, m.value);
                }
                None => {
                    let _ = writeln!(out, "  {}: {}", m.name, m.value);
                }
            }
        }
    }
    outcome.status.exit_code()
}

/// `medic detect`: anomaly scores and forecasts for a CSV series, streamed row by row.
pub fn detect(input: Option<&Path>, output: Option<&Path>, horizon: usize) -> i32 {
    let reader: Box<dyn std::io::BufRead> = match input {
        Some(path) => match std::fs::File::open(path) {
            Ok(f) => Box::new(std::io::BufReader::new(f)),
            Err(e) => {
                eprintln!("medic detect: cannot open {}: {e}", path.display());
                return 1;
            }
        },
        None => Box::new(std::io::stdin().lock()),
    };
    let writer: Box<dyn Write> = match output {
        Some(path) => match std::fs::File::create(path) {
            Ok(f) => Box::new(std::io::BufWriter::new(f)),
            Err(e) => {
                eprintln!("medic detect: cannot create {}: {e}", path.display());
                return 1;
            }
        },
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    match crate::detect::run_detect(reader, writer, horizon) {
        Ok(summary) => {
            if summary.ignored_values > 0 {
                eprintln!(
                    "medic detect: {} rows, {} without a usable value (scored 0)",
                    summary.rows, summary.ignored_values
                );
            }
            0
        }
        Err(e) => {
            eprintln!("medic detect: {e}");
            1
        }
    }
}
