//! Time-to-breach benchmark (run by scripts/eval-predictions.sh): synthetic capacity series with
//! known futures, scored for medic's `breach_seconds` (the function behind the live gauge and
//! `medic detect --breach-above`) beside PromQL's `predict_linear` over 1 h and 6 h.
//!
//! Timing error: median of |predicted - true| / true over rows whose true breach is 10 min to
//! 24 h ahead (a prediction of "never" counts as an infinite error). False alarms: share of rows
//! with no breach in the next 48 h that predict one within 12 h.
#![forbid(unsafe_code)]

use medic::forecast::{Direction, Forecaster};
use medic::predict::breach_seconds;
use std::collections::VecDeque;

const STEP: f64 = 60.0;
const DAY: f64 = 86_400.0;
const HOUR: f64 = 3600.0;
const THRESHOLD: f64 = 90.0;
/// Rows scored: the first 8 days; 2 more days are generated so every row has a 48 h future.
const SCORED_DAYS: f64 = 8.0;
const TOTAL_DAYS: f64 = 10.0;

struct Noise(u64);
impl Noise {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
    }
    /// Roughly normal, unit variance (sum of uniforms).
    fn gauss(&mut self) -> f64 {
        // Six uniforms on [-1, 1] have variance 6/3 = 2.
        (0..6).map(|_| self.next()).sum::<f64>() / 2f64.sqrt()
    }
}

fn series(kind: &str, seed: u64) -> Vec<(f64, f64)> {
    let mut n = Noise(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let t0 = 1.7e9;
    let rows = (TOTAL_DAYS * DAY / STEP) as usize;
    (0..rows)
        .map(|i| {
            let t = i as f64 * STEP;
            let h = t / HOUR;
            let daily = (2.0 * std::f64::consts::PI * t / DAY).sin();
            let e = n.gauss();
            let v = match kind {
                "steady fill" => 20.0 + 0.5 * h + 0.5 * e,
                "fill with daily cycle" => 20.0 + 0.4 * h + 8.0 * daily + 0.5 * e,
                "periodic cleanups" => 40.0 + 1.5 * (h % 40.0) + 0.5 * e,
                "leak mid-way" => 50.0 + if h > 96.0 { 1.0 * (h - 96.0) } else { 0.0 } + 0.5 * e,
                "accelerating growth" => 10.0 + 80.0 * (h / 144.0).powi(2) + 0.5 * e,
                "flat noise" => 50.0 + 3.0 * e,
                "daily peaks near threshold" => 60.0 + 25.0 * daily + 0.5 * e,
                "short burst" => {
                    let burst = if (72.0..72.5).contains(&h) {
                        40.0 * (1.0 - (h - 72.25).abs() * 4.0)
                    } else {
                        0.0
                    };
                    40.0 + burst.max(0.0) + 0.5 * e
                }
                "cleanup" => 40.0 + 0.4 * (h % 96.0) + 0.5 * e,
                _ => 0.0,
            };
            (t0 + t, v)
        })
        .collect()
}

/// PromQL predict_linear over `window`: least squares of the samples in (now - window, now],
/// extrapolated from `now`; returns seconds until it crosses the threshold.
fn predict_linear(buf: &VecDeque<(f64, f64)>, now: f64, max: f64) -> f64 {
    let n = buf.len() as f64;
    if n < 2.0 {
        return f64::INFINITY;
    }
    let (mut sx, mut sy, mut sxx, mut sxy) = (0.0, 0.0, 0.0, 0.0);
    for &(t, v) in buf {
        let x = t - now;
        sx += x;
        sy += v;
        sxx += x * x;
        sxy += x * v;
    }
    let cov = sxy - sx * sy / n;
    let var = sxx - sx * sx / n;
    if var <= 0.0 {
        return f64::INFINITY;
    }
    let slope = cov / var;
    let at_now = sy / n - slope * sx / n;
    if at_now >= THRESHOLD {
        return 0.0;
    }
    if slope <= 0.0 {
        return f64::INFINITY;
    }
    let dt = (THRESHOLD - at_now) / slope;
    if dt <= max {
        dt
    } else {
        f64::INFINITY
    }
}

#[derive(Default)]
struct Score {
    rel: Vec<f64>,
    alarms: usize,
    quiet: usize,
}

impl Score {
    fn add(&mut self, truth: Option<f64>, predicted: f64) {
        match truth {
            Some(tb) if (600.0..=DAY).contains(&tb) => {
                self.rel.push((predicted - tb).abs() / tb);
            }
            Some(tb) if tb <= 2.0 * DAY => {}
            _ => {
                self.quiet += 1;
                if predicted <= 12.0 * HOUR {
                    self.alarms += 1;
                }
            }
        }
    }
    fn median(&self) -> f64 {
        let mut v = self.rel.clone();
        if v.is_empty() {
            return f64::NAN;
        }
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    }
    fn fa(&self) -> f64 {
        self.alarms as f64 / self.quiet.max(1) as f64
    }
}

fn main() {
    let kinds = [
        "steady fill",
        "fill with daily cycle",
        "periodic cleanups",
        "leak mid-way",
        "accelerating growth",
        "flat noise",
        "daily peaks near threshold",
        "short burst",
        "cleanup",
    ];
    let max = 7.0 * DAY;
    let window = 6.0 * HOUR;
    let mut total = [Score::default(), Score::default(), Score::default()];
    println!(
        "threshold {THRESHOLD}, samples every {STEP} s, medic window {}h; timing = median relative error where the true breach is 10 min-24 h ahead; false alarms = rows with no breach in 48 h predicting one within 12 h",
        window / HOUR
    );
    println!(
        "{:<28} {:>14} {:>14} {:>14} {:>9} {:>9} {:>9}",
        "series",
        "medic timing",
        "p_l 1h timing",
        "p_l 6h timing",
        "medic FA",
        "p_l 1h FA",
        "p_l 6h FA"
    );
    for (k, kind) in kinds.iter().enumerate() {
        let s = series(kind, k as u64 + 1);
        // True breach: next row at or past the threshold (scanning backwards).
        let mut next_breach = vec![None; s.len()];
        let mut nb: Option<f64> = None;
        for i in (0..s.len()).rev() {
            if s[i].1 >= THRESHOLD {
                nb = Some(s[i].0);
            }
            next_breach[i] = nb;
        }
        let mut f = Forecaster::new(window);
        let mut b1 = VecDeque::new();
        let mut b6 = VecDeque::new();
        let mut sc = [Score::default(), Score::default(), Score::default()];
        let scored = (SCORED_DAYS * DAY / STEP) as usize;
        for (i, &(t, v)) in s.iter().enumerate().take(scored) {
            f.observe(t, v);
            for (buf, w) in [(&mut b1, HOUR), (&mut b6, 6.0 * HOUR)] {
                buf.push_back((t, v));
                while buf.front().is_some_and(|x| x.0 <= t - w) {
                    buf.pop_front();
                }
            }
            if i < 60 {
                continue;
            }
            let truth = next_breach[i].map(|tb| tb - t);
            let preds = [
                breach_seconds(&f, t, THRESHOLD, Direction::Above, max),
                predict_linear(&b1, t, max),
                predict_linear(&b6, t, max),
            ];
            for m in 0..3 {
                sc[m].add(truth, preds[m]);
            }
        }
        let fmt = |x: f64| {
            if x.is_nan() {
                "-".to_string()
            } else {
                format!("{x:.3}")
            }
        };
        println!(
            "{:<28} {:>14} {:>14} {:>14} {:>8.1}% {:>8.1}% {:>8.1}%",
            kind,
            fmt(sc[0].median()),
            fmt(sc[1].median()),
            fmt(sc[2].median()),
            100.0 * sc[0].fa(),
            100.0 * sc[1].fa(),
            100.0 * sc[2].fa()
        );
        for m in 0..3 {
            total[m].rel.extend(sc[m].rel.iter());
            total[m].alarms += sc[m].alarms;
            total[m].quiet += sc[m].quiet;
        }
    }
    println!(
        "{:<28} {:>14.3} {:>14.3} {:>14.3} {:>8.1}% {:>8.1}% {:>8.1}%",
        "all series",
        total[0].median(),
        total[1].median(),
        total[2].median(),
        100.0 * total[0].fa(),
        100.0 * total[1].fa(),
        100.0 * total[2].fa()
    );
}
