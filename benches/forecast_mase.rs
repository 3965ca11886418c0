//! Forecast accuracy (run by scripts/eval-forecast.sh): for each NAB category in ../shared/nab,
//! the error of medic's served forecast (`Forecaster::predict`, the model chosen online by
//! out-of-sample error) at 1, 12 and 60 steps ahead, against the naive last value and the
//! seasonal naive (the latest value seen at the target's time of day: a day before it, or whole
//! days more beyond a day's horizon), and the coverage of its 80 % interval.
#![forbid(unsafe_code)]

#[path = "common/cpu_time.rs"]
mod cpu_time;

use medic::detect::parse_timestamp;
use medic::forecast::{Band, Forecaster};
use std::collections::BTreeMap;
use std::io::BufRead;

const HORIZONS: [usize; 3] = [1, 12, 60];
const DAY: f64 = 86_400.0;

fn load(path: &std::path::Path) -> Vec<(f64, f64)> {
    let r = std::io::BufReader::new(std::fs::File::open(path).expect("open"));
    r.lines()
        .skip(1)
        .filter_map(|l| {
            let l = l.ok()?;
            let (a, b) = l.split_once(',')?;
            Some((parse_timestamp(a)?, b.trim().parse().ok()?))
        })
        .collect()
}

/// Per series and horizon: mean abs error of (medic, naive, seasonal naive) over the rows where
/// all three have a forecast, and the share of targets inside medic's interval.
#[derive(Default, Clone, Copy)]
struct Acc {
    err: [f64; 3],
    n: usize,
    inside: usize,
    banded: usize,
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let data = args
        .first()
        .cloned()
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/nab/data").into());
    let window: f64 = args
        .get(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(6.0 * 3600.0);
    let files = list_files(&data);
    // category -> per series [Acc; 3]
    let mut by_cat: BTreeMap<String, Vec<[Acc; 3]>> = BTreeMap::new();
    let mut cpu_seconds = 0.0;
    let mut steps = 0u64;
    let mut mem = 0usize;
    for path in &files {
        let cat = path
            .parent()
            .and_then(|p| p.file_name())
            .map(|c| c.to_string_lossy().into_owned())
            .unwrap_or_default();
        let s = load(path);
        let (made, secs, bytes) = forecast_series(&s, window);
        cpu_seconds += secs;
        steps += s.len() as u64;
        mem = mem.max(bytes);
        by_cat.entry(cat).or_default().push(score_series(&s, &made));
    }
    print_table(window, &by_cat);
    println!(
        "{steps} observe+3 predicts in {:.2} CPU s ({:.2} µs/sample), {} bytes per forecaster",
        cpu_seconds,
        cpu_seconds * 1e6 / steps.max(1) as f64,
        mem
    );
    whole_prediction_cost(&files);
}

/// Every series file under the data directory's category folders, sorted.
fn list_files(data: &str) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for cat in std::fs::read_dir(data).expect("data dir") {
        for f in std::fs::read_dir(cat.expect("entry").path()).expect("cat dir") {
            files.push(f.expect("entry").path());
        }
    }
    files.sort();
    files
}

/// Runs a forecaster over the series: the forecasts made at row i for row i+h (filled as rows
/// are read), the CPU seconds it took, and the forecaster's memory.
fn forecast_series(s: &[(f64, f64)], window: f64) -> (Vec<[Option<Band>; 3]>, f64, usize) {
    let n = s.len();
    let mut f = Forecaster::new(window);
    let mut made: Vec<[Option<Band>; 3]> = vec![[None; 3]; n];
    let ((), secs) = cpu_time::measure(|| {
        for i in 0..n {
            f.observe(s[i].0, s[i].1);
            for (k, &h) in HORIZONS.iter().enumerate() {
                if i + h < n {
                    made[i][k] = f.predict(k, s[i + h].0);
                }
            }
        }
    });
    (made, secs, f.memory_bytes())
}

/// Errors of medic, the naive and the seasonal naive per horizon, scored after the first two
/// days and the probation-like first 15 %, so that the seasonal naive exists and every model
/// had a chance to learn.
fn score_series(s: &[(f64, f64)], made: &[[Option<Band>; 3]]) -> [Acc; 3] {
    let n = s.len();
    let mut acc = [Acc::default(); 3];
    let skip = (n * 15 / 100).max(1);
    for (k, &h) in HORIZONS.iter().enumerate() {
        for i in skip..n.saturating_sub(h) {
            let (t, y) = s[i + h];
            // The seasonal naive from row i: the latest same-time-of-day value already seen
            // (a day before the target, or whole days more when the horizon exceeds a day).
            let days = ((t - s[i].0) / DAY).ceil().max(1.0);
            let want = t - days * DAY;
            let j = s.partition_point(|x| x.0 < want - 300.0);
            if j >= n || (s[j].0 - want).abs() > 300.0 || j > i {
                continue;
            }
            let Some(Band {
                value: p,
                lower: lo,
                upper: hi,
            }) = made[i][k]
            else {
                continue;
            };
            let a = &mut acc[k];
            a.err[0] += (p - y).abs();
            a.err[1] += (s[i].1 - y).abs();
            a.err[2] += (s[j].1 - y).abs();
            a.n += 1;
            if let (Some(lo), Some(hi)) = (lo, hi) {
                a.banded += 1;
                if lo <= y && y <= hi {
                    a.inside += 1;
                }
            }
        }
    }
    acc
}

/// The per-category table and the totals over all categories.
fn print_table(window: f64, by_cat: &BTreeMap<String, Vec<[Acc; 3]>>) {
    println!(
        "window {window} s; error ratios are geometric means over a category's series of (medic mean abs error / baseline's); < 1 = medic better"
    );
    println!(
        "{:<22} {:>3} {:>4} {:>12} {:>14} {:>10}",
        "category", "h", "n", "vs naive", "vs seasonal", "coverage"
    );
    let mut all = [(0.0f64, 0usize); 3];
    let mut worst = [(0.0f64, 0.0f64); 3];
    for (cat, series) in by_cat {
        for (k, &h) in HORIZONS.iter().enumerate() {
            let (mut ln, mut ls, mut m, mut inside, mut banded) = (0.0, 0.0, 0usize, 0, 0);
            for acc in series {
                let a = acc[k];
                inside += a.inside;
                banded += a.banded;
                if a.n == 0 || a.err[1] <= 0.0 || a.err[2] <= 0.0 || a.err[0] <= 0.0 {
                    continue;
                }
                ln += (a.err[0] / a.err[1]).ln();
                ls += (a.err[0] / a.err[2]).ln();
                m += 1;
            }
            let (rn, rs) = if m > 0 {
                ((ln / m as f64).exp(), (ls / m as f64).exp())
            } else {
                (f64::NAN, f64::NAN)
            };
            if m > 0 {
                worst[k].0 = worst[k].0.max(rn);
                worst[k].1 = worst[k].1.max(rs);
            }
            let cov = inside as f64 / banded.max(1) as f64;
            all[k].0 += inside as f64;
            all[k].1 += banded;
            println!(
                "{:<22} {:>3} {:>4} {:>12.3} {:>14.3} {:>9.1}%",
                cat,
                h,
                m,
                rn,
                rs,
                100.0 * cov
            );
        }
    }
    for (k, &h) in HORIZONS.iter().enumerate() {
        println!(
            "all categories h={:<3} coverage {:>5.1}% of {} targets; worst category vs naive {:.3}, vs seasonal {:.3}",
            h,
            100.0 * all[k].0 / all[k].1.max(1) as f64,
            all[k].1,
            worst[k].0,
            worst[k].1
        );
    }
}

/// What a live prediction costs per sample: `Predictor::observe` (forecaster, anomaly detector,
/// three horizons with their intervals, the breach time) on every NAB series, and the most
/// memory one holds.
fn whole_prediction_cost(files: &[std::path::PathBuf]) {
    use medic::config::{Breach, Duration, PredictionSpec};
    use medic::predict::Predictor;
    let mut cpu_seconds = 0.0;
    let (mut samples, mut memory) = (0usize, 0usize);
    for path in files {
        let s = load(path);
        let top = s.iter().map(|x| x.1).fold(f64::NEG_INFINITY, f64::max);
        let spec = std::sync::Arc::new(PredictionSpec {
            name: "p".into(),
            check: "c".into(),
            measure: medic::vocabulary::Measure::Duration,
            window: Duration::from_secs(6 * 3600),
            horizons: vec![
                ("5m".into(), Duration::from_secs(300)),
                ("1h".into(), Duration::from_secs(3600)),
                ("6h".into(), Duration::from_secs(6 * 3600)),
            ],
            breach: Some(Breach::Above(top)),
            max_horizon: Duration::from_secs(7 * 86_400),
        });
        let mut p = Predictor::new(spec);
        let ((), secs) = cpu_time::measure(|| {
            for &(t, v) in &s {
                p.observe(t, v);
            }
        });
        cpu_seconds += secs;
        samples += s.len();
        memory = memory.max(p.memory_bytes());
    }
    println!(
        "a whole prediction (Predictor::observe: forecaster, anomaly detector, 3 horizons, breach time): {:.2} CPU µs per sample over {samples} samples, at most {memory} bytes",
        cpu_seconds * 1e6 / samples.max(1) as f64
    );
}
