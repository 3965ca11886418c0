//! Forecast accuracy (run by scripts/eval-forecast.sh): MASE of the forecaster variants over the NAB series.
#![forbid(unsafe_code)]

use medic::detect::parse_timestamp;
use medic::forecast::{Forecaster, ModelChoice};
use std::io::BufRead;

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

fn main() {
    // `cargo bench` adds `--bench`; only plain arguments are ours.
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
    let mut files = Vec::new();
    for cat in std::fs::read_dir(&data).expect("data dir") {
        for f in std::fs::read_dir(cat.expect("entry").path()).expect("cat dir") {
            files.push(f.expect("entry").path());
        }
    }
    files.sort();
    let variants: Vec<(String, ModelChoice, f64, f64)> = vec![
        ("least squares".into(), ModelChoice::LeastSquares, 0.05, 0.5),
        ("holt 0.02/0.2".into(), ModelChoice::Holt, 0.02, 0.2),
        ("holt 0.05/0.5".into(), ModelChoice::Holt, 0.05, 0.5),
        ("holt 0.1/1.0".into(), ModelChoice::Holt, 0.1, 1.0),
        ("best-of 0.05/0.5".into(), ModelChoice::Best, 0.05, 0.5),
        ("blend 0.05/0.5".into(), ModelChoice::Blend, 0.05, 0.5),
    ];
    println!("window {window} s, {} series, MASE = mean abs error / in-sample mean abs 1-step naive change, averaged over series", files.len());
    println!(
        "{:<18} {:>9} {:>9} {:>9} {:>9}",
        "model", "h=1", "h=12", "vs LS h1", "vs LS h12"
    );
    let horizons = [1usize, 12];
    let mut naive = [0.0f64; 2];
    let mut rows: Vec<(String, [f64; 2])> = Vec::new();
    let start = std::time::Instant::now();
    let mut samples = 0u64;
    for (vi, (name, choice, lf, tf)) in variants.iter().enumerate() {
        let mut sum = [0.0f64; 2];
        let mut nsum = [0.0f64; 2];
        for path in &files {
            let s = load(path);
            let n = s.len();
            let scale = s.windows(2).map(|w| (w[1].1 - w[0].1).abs()).sum::<f64>() / (n - 1) as f64;
            if scale.is_nan() || scale <= 0.0 {
                continue;
            }
            let skip = n * 15 / 100;
            let mut f = Forecaster::with_model(window, *choice, *lf, *tf);
            let mut err = [0.0f64; 2];
            let mut nerr = [0.0f64; 2];
            let mut cnt = [0usize; 2];
            for i in 0..n {
                f.observe(s[i].0, s[i].1);
                samples += 1;
                if i < skip {
                    continue;
                }
                for (k, &h) in horizons.iter().enumerate() {
                    if i + h >= n {
                        continue;
                    }
                    let (t, y) = s[i + h];
                    let p = f.forecast(t).unwrap_or(s[i].1);
                    err[k] += (p - y).abs();
                    nerr[k] += (s[i].1 - y).abs();
                    cnt[k] += 1;
                }
            }
            for k in 0..2 {
                sum[k] += err[k] / cnt[k] as f64 / scale;
                nsum[k] += nerr[k] / cnt[k] as f64 / scale;
            }
        }
        let m = files.len() as f64;
        let mase = [sum[0] / m, sum[1] / m];
        if vi == 0 {
            naive = [nsum[0] / m, nsum[1] / m];
        }
        rows.push((name.clone(), mase));
    }
    rows.insert(0, ("naive last value".into(), naive));
    let ls = rows[1].1;
    for (name, m) in &rows {
        println!(
            "{:<18} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
            name,
            m[0],
            m[1],
            m[0] / ls[0],
            m[1] / ls[1]
        );
    }
    eprintln!(
        "{samples} observe+forecast steps in {:?} ({:.0} ns/step)",
        start.elapsed(),
        start.elapsed().as_nanos() as f64 / samples as f64
    );
}
