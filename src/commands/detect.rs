//! `medic detect`: the live predictor's anomaly scores, forecasts and breach times over a CSV
//! series, streamed row by row.

use std::io::Write;
use std::path::Path;

/// `medic detect`: anomaly scores and forecasts for a CSV series, streamed row by row.
pub fn detect(input: Option<&Path>, output: Option<&Path>, horizon: usize) -> i32 {
    detect_with(input, output, &crate::detect::DetectOptions::new(horizon))
}

/// `medic detect` with every option (breach threshold, window, max horizon).
pub fn detect_with(
    input: Option<&Path>,
    output: Option<&Path>,
    opts: &crate::detect::DetectOptions,
) -> i32 {
    if !opts.window_seconds.is_finite() || opts.window_seconds <= 0.0 {
        eprintln!("medic detect: --window must be greater than 0s");
        return 1;
    }
    if opts.breach.is_some_and(|(v, _)| !v.is_finite()) {
        eprintln!("medic detect: the breach threshold must be a finite number");
        return 1;
    }
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
    match crate::detect::run_detect_with(reader, writer, opts) {
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
