//! Anomaly-detector variants over the NAB part (run by scripts/eval-nab.sh): writes one results
//! folder per variant for scripts/lib/nab_cv.py, and prints each variant's cost per sample and
//! memory per prediction.
#![forbid(unsafe_code)]

#[path = "common/cpu_time.rs"]
mod cpu_time;

use medic::detect::parse_timestamp;
use medic::forecast::{
    AnomalyDetector, AnomalyParams, TailFit, ALL_TESTS, TEST_CHANGE, TEST_NOVELTY, TEST_SEASONAL,
    TEST_SPIKE,
};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

/// (timestamp as written, unix seconds, value) per row.
type Rows = Vec<(String, f64, f64)>;

fn load(path: &Path) -> Rows {
    let r = std::io::BufReader::new(std::fs::File::open(path).expect("open"));
    r.lines()
        .skip(1)
        .filter_map(|l| {
            let l = l.ok()?;
            let (a, b) = l.split_once(',')?;
            Some((
                a.to_string(),
                parse_timestamp(a)?,
                b.trim().parse().unwrap_or(f64::NAN),
            ))
        })
        .collect()
}

/// The variants the leave-one-category-out procedure chooses among (scripts/lib/anomaly_eval.py):
/// two tail fits, three sets of questions, five alarm thresholds. Every variant ever run during
/// the work is listed in docs/predictions.md.
fn variants() -> Vec<(String, AnomalyParams)> {
    let d = AnomalyParams::default();
    let mut v = Vec::new();
    for (fit_name, fit) in [("gpd", TailFit::Pareto), ("exp", TailFit::Exponential)] {
        for (tests_name, tests) in [
            ("all", ALL_TESTS),
            ("no-novelty", ALL_TESTS & !TEST_NOVELTY),
            ("three", TEST_SPIKE | TEST_CHANGE | TEST_SEASONAL),
        ] {
            for threshold in [0.35, 0.375, 0.4, 0.45, 0.5] {
                v.push((
                    format!("{fit_name}-{tests_name}"),
                    AnomalyParams {
                        fit,
                        tests,
                        threshold,
                        ..d.clone()
                    },
                ));
            }
        }
    }
    v
}

/// Extra variants from `MEDIC_NAB_VARIANTS` ("name:key=value,key=value;name2:..."), each the
/// default with the named knobs changed, so that a knob can be explored without a rebuild.
fn extra_variants() -> Vec<(String, AnomalyParams)> {
    let Ok(spec) = std::env::var("MEDIC_NAB_VARIANTS") else {
        return Vec::new();
    };
    spec.split(';')
        .filter(|v| !v.trim().is_empty())
        .map(|v| {
            let (name, knobs) = v.split_once(':').unwrap_or((v, ""));
            let mut p = AnomalyParams::default();
            for kv in knobs.split(',').filter(|k| !k.is_empty()) {
                let (k, val) = kv.split_once('=').expect("knob=value");
                let f = || val.parse::<f64>().expect("number");
                let u = || val.parse::<usize>().expect("integer");
                match k {
                    "threshold" => p.threshold = f(),
                    "history" => p.history = u(),
                    "tests" => p.tests = val.parse().expect("bits"),
                    "short" => p.short = u(),
                    "long" => p.long = u(),
                    "hold" => p.hold = u(),
                    "windows" => p.windows = u(),
                    "fit" => {
                        p.fit = match val {
                            "exp" => TailFit::Exponential,
                            _ => TailFit::Pareto,
                        }
                    }
                    other => panic!("unknown knob {other}"),
                }
            }
            (name.trim().to_string(), p)
        })
        .collect()
}

/// The live case and its steady twin, with the default detector: the score of a
/// tenfold spike on the 48th sample and the highest score before it.
fn live_cases() {
    let threshold = AnomalyParams::default().threshold;
    type Shape = fn(f64) -> f64;
    // (name, value at t seconds, the 48th sample's value)
    let cases: [(&str, Shape, f64); 2] = [
        ("growing 2/s, every 250 ms", |t| 100.0 + 2.0 * t, 5000.0),
        ("steady at 100, every 250 ms", |_| 100.0, 1000.0),
    ];
    for (name, shape, spike) in cases {
        let mut d = AnomalyDetector::new();
        let mut before: f64 = 0.0;
        for i in 0..47 {
            let t = 0.25 * f64::from(i);
            before = before.max(d.observe(1.7e9 + t, shape(t)));
        }
        let t = 0.25 * 47.0;
        let s1 = d.observe(1.7e9 + t, spike);
        let s2 = d.observe(1.7e9 + t + 0.25, shape(t + 0.25));
        println!(
            "live case, {name}: samples 1-47 at most {before:.3}; 48th sample {spike:.0} scores {s1:.3}, the next {s2:.3} (rule threshold {threshold})"
        );
    }
}

fn main() {
    live_cases();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let data = PathBuf::from(
        args.first()
            .cloned()
            .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/nab/data").into()),
    );
    let out = PathBuf::from(
        args.get(1)
            .cloned()
            .unwrap_or_else(|| "target/nab-variants".into()),
    );
    let only: Option<Vec<String>> = args
        .get(2)
        .map(|s| s.split(',').map(String::from).collect());
    // Per-question probabilities beside each score, for exploring other ways to combine them.
    let pvalues = std::env::var("MEDIC_PVALUES").is_ok();
    let mut files = Vec::new();
    for cat in std::fs::read_dir(&data).expect("data dir") {
        for f in std::fs::read_dir(cat.expect("entry").path()).expect("cat dir") {
            files.push(f.expect("entry").path());
        }
    }
    files.sort();
    let series: Vec<(PathBuf, Rows)> = files.into_iter().map(|f| (f.clone(), load(&f))).collect();
    println!(
        "{:<34} {:>10} {:>11}  alarms by question (spike change seasonal volatility novelty level)",
        "variant", "CPU µs/sample", "bytes/pred"
    );
    for (name, params) in variants().into_iter().chain(extra_variants()) {
        // The alarm threshold is part of a variant: its name carries it.
        let name = format!("{name}@{}", params.threshold);
        if only.as_ref().is_some_and(|o| !o.contains(&name)) {
            continue;
        }
        let mut cpu_seconds = 0.0;
        let mut samples = 0u64;
        let mut memory = 0usize;
        let mut by_reason = [0usize; 6];
        for (path, rows) in &series {
            let cat = path.parent().and_then(|p| p.file_name()).expect("category");
            let dir = out.join(&name).join(cat);
            std::fs::create_dir_all(&dir).expect("mkdir");
            let (secs, bytes) = run_file(&params, path, rows, &dir, pvalues, &mut by_reason);
            cpu_seconds += secs;
            samples += rows.len() as u64;
            memory = memory.max(bytes);
        }
        println!(
            "{:<34} {:>10.3} {:>11}  {:?}",
            name,
            cpu_seconds * 1e6 / samples.max(1) as f64,
            memory,
            by_reason
        );
    }
}

/// One variant on one series, fresh state: the scores (and with `pvalues` each question's
/// probability) written under `dir`, the alarms counted by the question that raised them;
/// returns the CPU seconds and the detector's memory.
fn run_file(
    params: &AnomalyParams,
    path: &std::path::Path,
    rows: &Rows,
    dir: &std::path::Path,
    pvalues: bool,
    by_reason: &mut [usize; 6],
) -> (f64, usize) {
    let mut d = AnomalyDetector::with_params(params.clone());
    let mut reasons = Vec::with_capacity(rows.len());
    let mut each = Vec::with_capacity(if pvalues { rows.len() } else { 0 });
    let (scores, secs) = cpu_time::measure(|| {
        rows.iter()
            .map(|(_, t, v)| {
                let s = d.observe(*t, *v);
                reasons.push((d.reason(), d.raw()));
                if pvalues {
                    each.push(d.probabilities());
                }
                s
            })
            .collect::<Vec<f64>>()
    });
    if let Ok(trace) = std::env::var("MEDIC_TRACE") {
        if path.to_string_lossy().contains(&trace) {
            for (i, ((ts, _, v), (s, r))) in
                rows.iter().zip(scores.iter().zip(&reasons)).enumerate()
            {
                if *s >= 0.2 || r.1 >= 0.2 {
                    eprintln!("{i} {ts} {v} {s:.3} {:.3} {}", r.1, r.0);
                }
            }
        }
    }
    let mut before = 0.0;
    for (s, r) in scores.iter().zip(&reasons) {
        if *s >= params.threshold && before < params.threshold && r.0 != 0 {
            by_reason[r.0.trailing_zeros() as usize] += 1;
        }
        before = *s;
    }
    let f = std::fs::File::create(dir.join(path.file_name().expect("name"))).expect("create");
    let mut w = std::io::BufWriter::new(f);
    if pvalues {
        writeln!(
            w,
            "timestamp,anomaly_score,p_spike,p_change,p_seasonal,p_volatility,p_novelty,p_level"
        )
        .expect("write");
        for (((ts, _, _), s), ps) in rows.iter().zip(scores).zip(&each) {
            let ps: Vec<String> = ps.iter().map(|p| format!("{p:.4e}")).collect();
            writeln!(w, "{ts},{s},{}", ps.join(",")).expect("write");
        }
    } else {
        writeln!(w, "timestamp,anomaly_score").expect("write");
        for ((ts, _, _), s) in rows.iter().zip(scores) {
            writeln!(w, "{ts},{s}").expect("write");
        }
    }
    (secs, d.memory_bytes())
}
