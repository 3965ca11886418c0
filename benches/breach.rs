//! Time-to-breach benchmark (run by scripts/eval-predictions.sh): a randomised family of capacity
//! series with known futures, scored for medic's `breach_seconds` (the function behind the live
//! gauge and `medic detect --breach-above`) beside PromQL's `predict_linear` over 1 h and 6 h.
//!
//! Each shape is drawn `INSTANCES` times with its own start level, noise, sampling interval (15 s
//! to 5 min), period (6 h to 7 d), amplitude and breach time, from a fixed seed. Rows are judged
//! every 5 minutes of series time, whatever the sampling, so every instance weighs the same per
//! day. Timing error: |predicted - true| / true over rows whose true breach (the first later
//! sample at or past the threshold) is 10 min to 24 h ahead; a prediction of "never" counts as
//! an infinite error. False alarms: share of rows with no breach in the next 48 h that predict
//! one within 12 h. Printed per shape and over all shapes: median and quartiles of the timing
//! error, 90th percentile, false alarms.
#![forbid(unsafe_code)]

#[path = "common/cpu_time.rs"]
mod cpu_time;

use medic::forecast::{Direction, Forecaster};
use medic::predict::breach_seconds;

const HOUR: f64 = 3600.0;
const DAY: f64 = 86_400.0;
const THRESHOLD: f64 = 90.0;
/// Seconds between judged rows.
const JUDGE_EVERY: f64 = 300.0;
/// Instances of each shape.
const INSTANCES: usize = 20;
/// medic's forecast window (a prediction's `window`), as `medic detect`'s default.
const WINDOW: f64 = 6.0 * HOUR;
const MAX_HORIZON: f64 = 7.0 * DAY;

/// Deterministic noise (xorshift), so the family is the same on every machine.
struct Rng(u64);
impl Rng {
    fn seeded(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn between(&mut self, a: f64, b: f64) -> f64 {
        a + (b - a) * self.uniform()
    }
    /// Log-uniform between a and b.
    fn log_between(&mut self, a: f64, b: f64) -> f64 {
        (a.ln() + (b.ln() - a.ln()) * self.uniform()).exp()
    }
    /// Roughly normal, unit variance (sum of twelve uniforms).
    fn gauss(&mut self) -> f64 {
        (0..12).map(|_| self.uniform()).sum::<f64>() - 6.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Shape {
    SteadyFill,
    FillWithCycle,
    Sawtooth,
    LeakStarts,
    Accelerating,
    NeverFlat,
    NeverCycleBelow,
    NeverSawtoothBelow,
    SawtoothIrregular,
    TwoCycles,
    NoisyCycle,
    Staircase,
    NeverTwoCyclesBelow,
}

const SHAPES: [(Shape, &str); 8] = [
    (Shape::SteadyFill, "steady fill"),
    (Shape::FillWithCycle, "fill with a cycle"),
    (Shape::Sawtooth, "sawtooth (cleanups)"),
    (Shape::LeakStarts, "leak that starts"),
    (Shape::Accelerating, "accelerating growth"),
    (Shape::NeverFlat, "never: flat noise"),
    (Shape::NeverCycleBelow, "never: cycle under"),
    (Shape::NeverSawtoothBelow, "never: sawtooth under"),
];

/// Shapes no change was judged on, printed with `MEDIC_BREACH_PROBES=1` instead of the table's:
/// cleanups at irregular times that free a random share, a daily and a weekly cycle together,
/// noise as large as the swing, growth in steps.
const PROBES: [(Shape, &str); 5] = [
    (Shape::SawtoothIrregular, "probe: irregular cleanups"),
    (Shape::TwoCycles, "probe: day and week"),
    (Shape::NoisyCycle, "probe: noisy cycle"),
    (Shape::Staircase, "probe: staircase"),
    (Shape::NeverTwoCyclesBelow, "probe never: day+week"),
];

/// A cycle of period 1 with values in [-1, 1]: a sine, or a working-day hump.
fn cycle(kind: bool, phase: f64) -> f64 {
    let x = std::f64::consts::TAU * phase;
    if kind {
        x.sin()
    } else {
        2.0 * (0.5 * x).sin().powi(4) - 1.0
    }
}

/// One instance: sample times and values, and how it was drawn (for the table's notes).
struct Instance {
    samples: Vec<(f64, f64)>,
    scored_until: f64,
}

fn instance(shape: Shape, seed: u64) -> Instance {
    let mut r = Rng::seeded(seed);
    let dt = r.log_between(15.0, 300.0).round();
    let noise = r.log_between(0.05, 1.5);
    let start = r.between(20.0, 55.0);
    let period = r.log_between(6.0 * HOUR, 7.0 * DAY);
    let kind = r.uniform() < 0.5;
    // Three periods of history before the breach can come, at least two days; two days after
    // the scored part so every judged row has a 48 h future.
    let weekly = matches!(shape, Shape::TwoCycles | Shape::NeverTwoCyclesBelow);
    let warm = if weekly {
        21.0 * DAY
    } else {
        (3.0 * period).max(2.0 * DAY)
    };
    let breach_at = warm + r.between(1.0, 5.0) * DAY;
    let total = breach_at + 4.0 * DAY;
    let t0 = 1.7e9 + r.between(0.0, DAY).floor();
    let amplitude = r.between(3.0, 15.0);
    let leak_from = r.between(1.5 * DAY, breach_at - 0.5 * DAY);
    let mut samples = Vec::with_capacity((total / dt) as usize + 1);
    let mut t = 0.0;
    // Irregular cleanups: when the running one ends, what it left behind, and its length.
    let (mut cleanup_from, mut cleanup_len, mut left) = (0.0, period, 0.0);
    let noise = if matches!(shape, Shape::NoisyCycle) {
        amplitude * r.between(0.2, 0.5)
    } else {
        noise
    };
    while t < total {
        let e = noise * r.gauss();
        let v = match shape {
            Shape::SteadyFill => start + (THRESHOLD - start) * t / breach_at,
            Shape::FillWithCycle => {
                // The trend reaches the threshold less the swing at `breach_at`: the peaks come
                // first, days before the trend line would.
                let peak_gap = amplitude;
                let base = start + (THRESHOLD - peak_gap - start) * t / breach_at;
                base + amplitude * cycle(kind, t / period)
            }
            Shape::Sawtooth => {
                // Each period the value climbs by `amplitude`, then a cleanup frees all but the
                // growth: the peaks rise along a line that meets the threshold at `breach_at`.
                let ramp = amplitude * (t / period).fract();
                let base = start + (THRESHOLD - amplitude - start) * t / breach_at;
                base + ramp
            }
            Shape::LeakStarts => {
                let rate = (THRESHOLD - start) / (breach_at - leak_from);
                start + rate * (t - leak_from).max(0.0)
            }
            Shape::Accelerating => start + (THRESHOLD - start) * (t / breach_at).powi(2),
            Shape::NeverFlat => start + 2.0 * e,
            Shape::NeverCycleBelow => {
                let top = THRESHOLD - 2.0 - 3.0 * noise;
                top - amplitude + amplitude * cycle(kind, t / period)
            }
            Shape::NeverSawtoothBelow => {
                let top = THRESHOLD - 2.0 - 3.0 * noise;
                top - amplitude + amplitude * (t / period).fract()
            }
            Shape::SawtoothIrregular => {
                if t >= cleanup_from + cleanup_len {
                    // A cleanup frees 50-100 % of what accumulated; the next comes after
                    // 0.6-1.4 periods.
                    left += amplitude * r.between(0.0, 0.5);
                    cleanup_from = t;
                    cleanup_len = period * r.between(0.6, 1.4);
                }
                let ramp = amplitude * (t - cleanup_from) / period;
                let base = start + (THRESHOLD - amplitude - start) * t / breach_at;
                base + left + ramp
            }
            Shape::TwoCycles | Shape::NoisyCycle => {
                let base = start + (THRESHOLD - amplitude - start) * t / breach_at;
                let swing = if weekly {
                    0.6 * cycle(kind, t / DAY) + 0.4 * cycle(true, t / (7.0 * DAY))
                } else {
                    cycle(kind, t / period)
                };
                base + amplitude * swing
            }
            Shape::Staircase => {
                // A batch every period adds its share; the line of steps meets the threshold
                // at `breach_at`.
                let steps = (t / period).floor() * period;
                start + (THRESHOLD - start) * steps / breach_at
            }
            Shape::NeverTwoCyclesBelow => {
                let top = THRESHOLD - 2.0 - 3.0 * noise;
                let swing = 0.6 * cycle(kind, t / DAY) + 0.4 * cycle(true, t / (7.0 * DAY));
                top - amplitude + amplitude * swing
            }
        };
        samples.push((t0 + t, v + e));
        t += dt;
    }
    Instance {
        samples,
        scored_until: t0 + total - 2.0 * DAY,
    }
}

/// PromQL predict_linear over the last `window` seconds, kept as running sums.
struct PredictLinear {
    window: f64,
    buf: std::collections::VecDeque<(f64, f64)>,
    sums: [f64; 5],
    origin: f64,
}

impl PredictLinear {
    fn new(window: f64) -> Self {
        PredictLinear {
            window,
            buf: std::collections::VecDeque::new(),
            sums: [0.0; 5],
            origin: f64::NAN,
        }
    }
    fn add(&mut self, t: f64, v: f64, sign: f64) {
        let x = t - self.origin;
        let s = &mut self.sums;
        s[0] += sign;
        s[1] += sign * x;
        s[2] += sign * v;
        s[3] += sign * x * x;
        s[4] += sign * x * v;
    }
    fn push(&mut self, t: f64, v: f64) {
        if self.origin.is_nan() {
            self.origin = t;
        }
        self.buf.push_back((t, v));
        self.add(t, v, 1.0);
        while self.buf.front().is_some_and(|x| x.0 <= t - self.window) {
            if let Some((ot, ov)) = self.buf.pop_front() {
                self.add(ot, ov, -1.0);
            }
        }
    }
    /// Seconds from `now` until the line crosses the threshold (0 when past, inf when never).
    fn breach(&self, now: f64, max: f64) -> f64 {
        let [n, sx, sy, sxx, sxy] = self.sums;
        if n < 2.0 {
            return f64::INFINITY;
        }
        let var = sxx - sx * sx / n;
        if var <= 1e-9 * sxx.abs().max(1.0) {
            return f64::INFINITY;
        }
        let slope = (sxy - sx * sy / n) / var;
        let at_now = sy / n + slope * ((now - self.origin) - sx / n);
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
}

#[derive(Default, Clone)]
struct Score {
    errors: Vec<f64>,
    alarms: usize,
    quiet: usize,
}

impl Score {
    fn add(&mut self, truth: Option<f64>, predicted: f64) {
        match truth {
            Some(tb) if (600.0..=DAY).contains(&tb) => {
                self.errors.push((predicted - tb).abs() / tb);
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
    fn merge(&mut self, o: &Score) {
        self.errors.extend_from_slice(&o.errors);
        self.alarms += o.alarms;
        self.quiet += o.quiet;
    }
    fn quantile(&self, q: f64) -> f64 {
        if self.errors.is_empty() {
            return f64::NAN;
        }
        let mut v = self.errors.clone();
        v.sort_by(|a, b| a.total_cmp(b));
        v[((v.len() - 1) as f64 * q).round() as usize]
    }
    fn false_alarms(&self) -> f64 {
        100.0 * self.alarms as f64 / self.quiet.max(1) as f64
    }
}

fn fmt(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else if x.is_infinite() {
        "inf".into()
    } else {
        format!("{x:.3}")
    }
}

/// `scale` multiplies medic's values and threshold (a check that nothing in it depends on the
/// series' units: bytes instead of percent).
fn judge(inst: &Instance, scale: f64) -> [Score; 3] {
    let s = &inst.samples;
    let mut next_breach = vec![None; s.len()];
    let mut nb: Option<f64> = None;
    for i in (0..s.len()).rev() {
        if s[i].1 >= THRESHOLD {
            nb = Some(s[i].0);
        }
        next_breach[i] = nb;
    }
    let mut f = Forecaster::new(WINDOW);
    let mut p1 = PredictLinear::new(HOUR);
    let mut p6 = PredictLinear::new(6.0 * HOUR);
    let mut sc: [Score; 3] = Default::default();
    let mut last_judged = f64::NEG_INFINITY;
    let first = s.first().map_or(0.0, |x| x.0);
    for (i, &(t, v)) in s.iter().enumerate() {
        if t > inst.scored_until {
            break;
        }
        f.observe(t, scale * v);
        p1.push(t, v);
        p6.push(t, v);
        // An hour of data before the first judgement, as predict_linear needs its window.
        if t - first < HOUR || t - last_judged < JUDGE_EVERY {
            continue;
        }
        last_judged = t;
        let truth = next_breach[i].map(|tb| tb - t);
        let preds = [
            breach_seconds(&f, t, scale * THRESHOLD, Direction::Above, MAX_HORIZON),
            p1.breach(t, MAX_HORIZON),
            p6.breach(t, MAX_HORIZON),
        ];
        for (m, p) in preds.iter().enumerate() {
            sc[m].add(truth, *p);
        }
    }
    sc
}

fn main() {
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let instances: usize = std::env::var("MEDIC_BREACH_INSTANCES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(INSTANCES);
    // Instances from another index on are drawn from seeds the work never looked at: a check
    // that the figures are not those of the 20 instances every change was judged on.
    let scale: f64 = std::env::var("MEDIC_BREACH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let first: usize = std::env::var("MEDIC_BREACH_FIRST")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if first > 0 || scale != 1.0 {
        println!(
            "instances {first} to {} of each shape; medic's values and threshold times {scale}",
            first + instances - 1
        );
    }
    println!(
        "threshold {THRESHOLD}; {instances} random instances per shape (sampling 15 s-5 min, periods 6 h-7 d, noise, start, breach time); medic window {} h",
        WINDOW / HOUR
    );
    println!("timing error = |predicted - true| / true where the true breach is 10 min-24 h ahead (median [quartiles] 90th percentile); false alarms = rows with no breach in 48 h that predict one within 12 h");
    println!(
        "{:<24} {:>26} {:>26} {:>26} {:>7} {:>7} {:>7}",
        "shape", "medic", "predict_linear 1h", "predict_linear 6h", "FA", "FA 1h", "FA 6h"
    );
    let mut cpu_seconds = 0.0;
    let mut samples = 0usize;
    let mut all: [Score; 3] = Default::default();
    let probes = std::env::var("MEDIC_BREACH_PROBES").is_ok();
    let (shapes, seed_base): (&[(Shape, &str)], usize) = if probes {
        (&PROBES, SHAPES.len())
    } else {
        (&SHAPES, 0)
    };
    for (k, (shape, name)) in shapes.iter().enumerate() {
        let k = k + seed_base;
        if only.as_ref().is_some_and(|o| !name.contains(o.as_str())) {
            continue;
        }
        let mut sc: [Score; 3] = Default::default();
        for j in first..first + instances {
            let inst = instance(*shape, 1000 * k as u64 + j as u64 + 1);
            samples += inst.samples.len();
            let (r, secs) = cpu_time::measure(|| judge(&inst, scale));
            cpu_seconds += secs;
            for m in 0..3 {
                sc[m].merge(&r[m]);
            }
        }
        let cell = |s: &Score| {
            format!(
                "{} [{} {}] {}",
                fmt(s.quantile(0.5)),
                fmt(s.quantile(0.25)),
                fmt(s.quantile(0.75)),
                fmt(s.quantile(0.9))
            )
        };
        println!(
            "{:<24} {:>26} {:>26} {:>26} {:>6.1}% {:>6.1}% {:>6.1}%",
            name,
            cell(&sc[0]),
            cell(&sc[1]),
            cell(&sc[2]),
            sc[0].false_alarms(),
            sc[1].false_alarms(),
            sc[2].false_alarms()
        );
        for m in 0..3 {
            all[m].merge(&sc[m]);
        }
    }
    let cell = |s: &Score| {
        format!(
            "{} [{} {}] {}",
            fmt(s.quantile(0.5)),
            fmt(s.quantile(0.25)),
            fmt(s.quantile(0.75)),
            fmt(s.quantile(0.9))
        )
    };
    println!(
        "{:<24} {:>26} {:>26} {:>26} {:>6.1}% {:>6.1}% {:>6.1}%",
        "all shapes",
        cell(&all[0]),
        cell(&all[1]),
        cell(&all[2]),
        all[0].false_alarms(),
        all[1].false_alarms(),
        all[2].false_alarms()
    );
    println!(
        "{samples} samples in {cpu_seconds:.1} CPU s ({:.2} µs per sample: the forecaster, both predict_linear, and every 5 minutes of series time the three breach times)",
        cpu_seconds * 1e6 / samples.max(1) as f64
    );
}
