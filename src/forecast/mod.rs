//! Pure prediction core: per-series forecasting, threshold-breach timing and streaming anomaly scores.
//!
//! Nothing here does IO or reads the clock: every time is an argument in unix seconds (f64).

mod anomaly;
mod context;
mod cycle;
mod holt;
mod horizon;
mod residuals;
mod seasonal;
mod tail;
mod trend;
mod window;

pub use anomaly::{
    AnomalyDetector, AnomalyParams, ALL_TESTS, DEPTH, QUESTIONS, TEST_CHANGE, TEST_LEVEL,
    TEST_NOVELTY, TEST_SEASONAL, TEST_SPIKE, TEST_VOLATILITY, WARMUP,
};
pub use cycle::{Cycle, Shape as CycleShape};
pub use holt::Holt;
pub use horizon::MODELS;
pub use seasonal::{DailyMedian, DailyProfile};
pub use tail::TailFit;
pub use trend::LinearTrend;

use horizon::Horizon;

/// Names of the candidate models, in the order `Forecaster::model_errors` reports them.
pub const MODEL_NAMES: [&str; MODELS] = [
    "least squares",
    "holt",
    "last value",
    "level",
    "daily delta",
    "daily profile",
    "yesterday",
    "cycle delta",
];
/// Most horizons one forecaster tracks out-of-sample (a prediction's configured horizons).
pub const MAX_SLOTS: usize = 16;

/// A forecast with its 80 % prediction interval (absent until enough errors were seen).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Band {
    pub value: f64,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
}

/// Which side of a threshold counts as a breach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Above,
    Below,
}

/// How the forecaster turns its two models into one prediction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelChoice {
    /// Least squares over the window only (Prometheus' `predict_linear`).
    LeastSquares,
    /// Time-aware Holt smoothing only.
    Holt,
    /// Whichever of least squares, Holt and "no change" has the lowest recent one-step-ahead error.
    Best,
    /// All three, weighted by inverse recent squared one-step-ahead error.
    Blend,
}

/// Most samples the least-squares window keeps; beyond it the window is thinned uniformly.
pub const MAX_SAMPLES: usize = 4096;
const INTERVAL_RING: usize = 64;
/// Per-sample weight of the error averages: roughly the last 30 samples decide the model.
const ERROR_DECAY: f64 = 1.0 / 32.0;
/// Holt time constants as fractions of the window (chosen by the MASE measurement).
const HOLT_LEVEL_FRACTION: f64 = 0.05;
const HOLT_TREND_FRACTION: f64 = 0.5;

/// Forecaster for one series over a sliding time window (seconds).
#[derive(Debug, Clone)]
pub struct Forecaster {
    ls: LinearTrend,
    holt: Holt,
    choice: ModelChoice,
    err_ls: f64,
    err_holt: f64,
    err_flat: f64,
    last_v: f64,
    scored: u64,
    last_t: f64,
    intervals: [f64; INTERVAL_RING],
    n_intervals: usize,
    next_interval: usize,
    daily: DailyProfile,
    yesterday: DailyProfile,
    slots: Vec<Horizon>,
    /// One-step errors of the forecast line: how far the series strays from it sample to sample.
    noise: Horizon,
    /// Periodic shape (cycle or sawtooth) of the series over the last 14 days, if any.
    cycle: Cycle,
}

impl Forecaster {
    pub fn new(window_seconds: f64) -> Self {
        Self::with_model(
            window_seconds,
            ModelChoice::Best,
            HOLT_LEVEL_FRACTION,
            HOLT_TREND_FRACTION,
        )
    }

    /// Like `new`, with the model choice and Holt time constants (fractions of the window) explicit.
    pub fn with_model(
        window_seconds: f64,
        choice: ModelChoice,
        level_fraction: f64,
        trend_fraction: f64,
    ) -> Self {
        // A non-positive or non-finite window would make every sample fall out at once.
        let window = if window_seconds.is_finite() && window_seconds > 0.0 {
            window_seconds
        } else {
            3600.0
        };
        let frac = |f: f64| if f.is_finite() && f > 0.0 { f } else { 0.1 };
        Forecaster {
            ls: LinearTrend::new(window, MAX_SAMPLES),
            holt: Holt::new(window * frac(level_fraction), window * frac(trend_fraction)),
            choice,
            err_ls: 0.0,
            err_holt: 0.0,
            err_flat: 0.0,
            last_v: 0.0,
            scored: 0,
            last_t: f64::NEG_INFINITY,
            intervals: [0.0; INTERVAL_RING],
            n_intervals: 0,
            next_interval: 0,
            daily: DailyProfile::new(),
            yesterday: DailyProfile::with_weight(1.0),
            slots: Vec::new(),
            noise: Horizon::default(),
            cycle: Cycle::new(),
        }
    }

    /// Adds a sample; non-finite input and timestamps older than the newest one are ignored.
    pub fn observe(&mut self, t: f64, value: f64) {
        if !t.is_finite() || !value.is_finite() || t < self.last_t {
            return;
        }
        if self.last_t.is_finite() && t > self.last_t {
            self.intervals[self.next_interval] = t - self.last_t;
            self.next_interval = (self.next_interval + 1) % INTERVAL_RING;
            self.n_intervals = (self.n_intervals + 1).min(INTERVAL_RING);
        }
        if t > self.last_t {
            if let Some(r) = self
                .forecast(t)
                .map(|f| value - f)
                .filter(|r| r.is_finite())
            {
                self.noise.push_residual(r);
            }
            if let (Some(a), Some(b)) = (self.ls.forecast(t), self.holt.forecast(t)) {
                let (ea, eb) = ((a - value).powi(2), (b - value).powi(2));
                let ec = (self.last_v - value).powi(2);
                if ea.is_finite() && eb.is_finite() && ec.is_finite() {
                    self.err_ls += ERROR_DECAY * (ea - self.err_ls);
                    self.err_holt += ERROR_DECAY * (eb - self.err_holt);
                    self.err_flat += ERROR_DECAY * (ec - self.err_flat);
                    self.scored += 1;
                }
            }
        }
        for h in &mut self.slots {
            h.settle(t, value);
        }
        self.last_t = t;
        self.last_v = value;
        self.ls.push(t, value);
        self.holt.push(t, value);
        self.daily.push(t, value);
        self.yesterday.push(t, value);
        self.cycle.push(t, value);
    }

    /// Every candidate model's forecast for time `at` (NaN where a model has none yet).
    fn model_forecasts(&self, at: f64) -> [f64; MODELS] {
        let nan = f64::NAN;
        let last = if self.last_t.is_finite() {
            self.last_v
        } else {
            nan
        };
        let profile_at = self.daily.at(at).unwrap_or(nan);
        let profile_now = self.daily.at(self.last_t).unwrap_or(nan);
        // The last value moved along the periodic shape (trend and profile) found in 14 days.
        let cycle = self
            .cycle
            .shape()
            .map_or(nan, |c| last + (c.at(at) - c.at(self.last_t)));
        [
            self.ls.forecast(at).unwrap_or(nan),
            self.holt.forecast(at).unwrap_or(nan),
            last,
            self.holt.line().map_or(nan, |l| l.1),
            last + (profile_at - profile_now),
            profile_at,
            self.yesterday.at(at).unwrap_or(nan),
            cycle,
        ]
    }

    /// The forecast for time `at` made now, for horizon `slot` (a caller's fixed index per
    /// horizon), with its 80 % interval. The model serving it is the one with the lowest recent
    /// out-of-sample error at this horizon; the served value is remembered and scored when `at`
    /// arrives, and the interval is read from those scores. None until two distinct timestamps.
    pub fn predict(&mut self, slot: usize, at: f64) -> Option<Band> {
        let fallback = self.forecast(at)?;
        if slot >= MAX_SLOTS {
            return Some(Band {
                value: fallback,
                lower: None,
                upper: None,
            });
        }
        while self.slots.len() <= slot {
            self.slots.push(Horizon::default());
        }
        let preds = self.model_forecasts(at);
        let h = &mut self.slots[slot];
        let value = match (self.choice, h.best(&preds)) {
            (ModelChoice::Best, Some(m)) => preds[m],
            _ => fallback,
        };
        h.record(at, value, preds);
        let band = h.band();
        Some(Band {
            value,
            lower: band.map(|b| value + b.0).filter(|v| v.is_finite()),
            upper: band.map(|b| value + b.1).filter(|v| v.is_finite()),
        })
    }

    /// Seconds from `now` until the periodic shape of the series (a cycle or a sawtooth, when
    /// one was found) has as likely as not brought a sample past `threshold`: the median first
    /// passage of the shape plus residuals like its recent ones (`Cycle::first_passage`), or
    /// the shape's own crossing while too few residuals are known. None without a shape.
    pub fn cycle_breach(
        &self,
        now: f64,
        threshold: f64,
        direction: Direction,
        max_horizon_seconds: f64,
    ) -> Option<f64> {
        let above = direction == Direction::Above;
        let shape = self.cycle.shape()?;
        let passage = self.typical_interval().and_then(|interval| {
            self.cycle
                .first_passage(now, threshold, above, max_horizon_seconds, interval)
        });
        Some(
            passage
                .unwrap_or_else(|| shape.seconds_until(now, threshold, above, max_horizon_seconds)),
        )
    }

    /// Seconds from `now` until the forecast line plus residuals like its recent one-step ones
    /// has as likely as not brought a sample past `threshold` (`Residuals::first_passage`);
    /// None without a line, a sampling interval or enough residuals.
    pub fn line_breach(
        &self,
        now: f64,
        threshold: f64,
        direction: Direction,
        max_horizon_seconds: f64,
    ) -> Option<f64> {
        let interval = self.typical_interval()?;
        let (tr, vr, slope) = self.line()?;
        let residuals = self.noise.residuals();
        // Walk the stretch where the noise can carry a sample over (the time the line takes
        // to cross the residuals' spread) in about 64 steps, and never more than 64 over the
        // whole horizon; residuals all alike (an exact line) leave the line's own crossing.
        let crossing = residuals.spread()? / slope.abs();
        if crossing.is_nan() || crossing < interval {
            // The noise spans less than one sample's worth of the line's growth: the line
            // and its band say as much.
            return None;
        }
        let step = (crossing / 64.0).min(max_horizon_seconds / 64.0);
        // The line is fixed for this answer: each step reads it, not `forecast`'s rebuild.
        let path = |t: f64| vr + slope * (t - tr);
        let reach = |t: f64, target: f64, max: f64| self.time_to_breach(t, target, direction, max);
        residuals.first_passage(
            &path,
            &reach,
            now,
            threshold,
            direction == Direction::Above,
            max_horizon_seconds,
            interval,
            step,
        )
    }

    /// (lower, upper) offsets of the 80 % band of single samples around the forecast line.
    pub fn noise_band(&self) -> Option<(f64, f64)> {
        self.noise.band()
    }

    /// Bytes of state held (the least-squares window dominates), for the memory figure.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.ls.len() * 2 * std::mem::size_of::<f64>()
            + self.daily.memory_bytes()
            + self.yesterday.memory_bytes()
            + self.slots.iter().map(Horizon::memory_bytes).sum::<usize>()
            + self.noise.memory_bytes()
            + self.cycle.memory_bytes()
    }

    /// Recent mean absolute error of each model (`MODEL_NAMES` order) at horizon `slot`.
    pub fn model_errors(&self, slot: usize) -> Option<[f64; MODELS]> {
        self.slots.get(slot).map(Horizon::errors)
    }

    /// Weights of (least squares, Holt, no change) in the combined line, from recent out-of-sample error.
    fn weights(&self) -> [f64; 3] {
        let errs = [self.err_ls, self.err_holt, self.err_flat];
        match self.choice {
            ModelChoice::LeastSquares => [1.0, 0.0, 0.0],
            ModelChoice::Holt => [0.0, 1.0, 0.0],
            ModelChoice::Best | ModelChoice::Blend if self.scored < 3 => [0.5, 0.5, 0.0],
            ModelChoice::Best => {
                // Ties go to the trend models so that a perfect line keeps its exact slope.
                let mut w = [0.0; 3];
                let best = if errs[0] <= errs[1] && errs[0] <= errs[2] {
                    0
                } else if errs[1] <= errs[2] {
                    1
                } else {
                    2
                };
                w[best] = 1.0;
                w
            }
            ModelChoice::Blend => {
                let min = errs.iter().cloned().fold(f64::INFINITY, f64::min);
                if min.is_nan() || min <= 0.0 || min.is_infinite() {
                    // Some model is perfect: share between the perfect trend models only.
                    let mut w = [0.0; 3];
                    let perfect: Vec<usize> = (0..2).filter(|&i| errs[i] == min).collect();
                    if perfect.is_empty() {
                        return [0.5, 0.5, 0.0];
                    }
                    for &i in &perfect {
                        w[i] = 1.0 / perfect.len() as f64;
                    }
                    return w;
                }
                let inv = errs.map(|e| min / e);
                let total: f64 = inv.iter().sum();
                inv.map(|x| x / total)
            }
        }
    }

    /// Least-squares weight, for tests.
    #[cfg(test)]
    fn ls_weight(&self) -> f64 {
        self.weights()[0]
    }

    /// The combined forecast as a line: (reference time, value there, slope per second).
    fn line(&self) -> Option<(f64, f64, f64)> {
        let ls = self.ls.line();
        let holt = self.holt.line();
        let (tr, vr, s) = match (ls, holt) {
            (Some(a), Some(b)) => {
                let w = self.weights();
                let tr = b.0;
                let va = a.1 + a.2 * (tr - a.0);
                (
                    tr,
                    w[0] * va + w[1] * b.1 + w[2] * self.last_v,
                    w[0] * a.2 + w[1] * b.2,
                )
            }
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => return None,
        };
        (tr.is_finite() && vr.is_finite() && s.is_finite()).then_some((tr, vr, s))
    }

    /// Predicted value at absolute time `at`; None until two distinct timestamps were seen.
    pub fn forecast(&self, at: f64) -> Option<f64> {
        if !at.is_finite() {
            return None;
        }
        let (tr, vr, s) = self.line()?;
        let p = vr + s * (at - tr);
        p.is_finite().then_some(p)
    }

    /// Seconds from `now` until the forecast crosses `threshold` in `direction`.
    ///
    /// 0 when the forecast at `now` is already past it; infinity when there is no forecast,
    /// the trend points away, or the crossing lies beyond `max_horizon_seconds`. Never NaN.
    pub fn time_to_breach(
        &self,
        now: f64,
        threshold: f64,
        direction: Direction,
        max_horizon_seconds: f64,
    ) -> f64 {
        if threshold.is_nan() || max_horizon_seconds.is_nan() {
            return f64::INFINITY;
        }
        let Some((_, _, s)) = self.line() else {
            return f64::INFINITY;
        };
        let Some(at_now) = self.forecast(now) else {
            return f64::INFINITY;
        };
        // Work with "distance still to go" and "speed towards the threshold" so both directions share one formula.
        let (gap, speed) = match direction {
            Direction::Above => (threshold - at_now, s),
            Direction::Below => (at_now - threshold, -s),
        };
        if gap <= 0.0 {
            return 0.0;
        }
        if speed.is_nan() || speed <= 0.0 {
            return f64::INFINITY;
        }
        let dt = gap / speed;
        if dt.is_finite() && dt >= 0.0 && dt <= max_horizon_seconds {
            dt
        } else {
            f64::INFINITY
        }
    }

    /// Median of the recent positive spacings between samples.
    pub fn typical_interval(&self) -> Option<f64> {
        if self.n_intervals == 0 {
            return None;
        }
        let mut v: Vec<f64> = self.intervals[..self.n_intervals].to_vec();
        v.sort_by(|a, b| a.total_cmp(b));
        let m = v.len() / 2;
        let med = if v.len() % 2 == 1 {
            v[m]
        } else {
            0.5 * (v[m - 1] + v[m])
        };
        (med.is_finite() && med > 0.0).then_some(med)
    }

    /// Recent mean squared one-step-ahead errors (least squares, Holt, no change), for diagnostics.
    pub fn recent_errors(&self) -> [f64; 3] {
        [self.err_ls, self.err_holt, self.err_flat]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel_close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300) || a == b
    }

    fn linear(choice: ModelChoice, t0: f64, step: f64, n: usize, a: f64, b: f64) -> Forecaster {
        let mut f = Forecaster::with_model(3600.0, choice, 0.05, 0.5);
        for i in 0..n {
            let t = t0 + step * i as f64;
            f.observe(t, a + b * (t - t0));
        }
        f
    }

    const ALL: [ModelChoice; 4] = [
        ModelChoice::LeastSquares,
        ModelChoice::Holt,
        ModelChoice::Best,
        ModelChoice::Blend,
    ];

    #[test]
    fn exact_forecast_on_linear_growth() {
        // (t0, step, n, intercept, slope, ahead)
        let cases = [
            (1.7e9, 15.0, 500, 10.0, 0.01, 600.0),
            (1.7e9, 60.0, 10, 1e9, 1234.5, 86400.0),
            (0.0, 1.0, 2, 0.0, 1.0, 10.0),
            (1.7e9, 5.0, 3000, -50.0, -0.002, 7200.0),
        ];
        for choice in ALL {
            for (t0, step, n, a, b, ahead) in cases {
                let f = linear(choice, t0, step, n, a, b);
                let last = t0 + step * (n - 1) as f64;
                let want = a + b * (last + ahead - t0);
                let got = f.forecast(last + ahead).unwrap();
                assert!(rel_close(got, want, 1e-6), "{choice:?} {got} vs {want}");
            }
        }
    }

    #[test]
    fn exact_breach_times_above_and_below() {
        // slope 2/s from 100 at t0; now = last sample time.
        for choice in ALL {
            let f = linear(choice, 1.7e9, 10.0, 100, 100.0, 2.0);
            let now = 1.7e9 + 990.0; // value 2080
            let cases = [
                (3080.0, Direction::Above, 1e6, 500.0),
                (2080.5, Direction::Above, 1e6, 0.25),
                (3080.0, Direction::Above, 499.0, f64::INFINITY),
                (2000.0, Direction::Above, 1e6, 0.0),
                (2080.0, Direction::Above, 1e6, 0.0),
                (3000.0, Direction::Below, 1e6, 0.0),
                (1000.0, Direction::Below, 1e6, f64::INFINITY),
            ];
            for (thr, dir, maxh, want) in cases {
                let got = f.time_to_breach(now, thr, dir, maxh);
                assert!(
                    rel_close(got, want, 1e-6),
                    "{choice:?} {thr} {dir:?}: {got} vs {want}"
                );
            }
            let g = linear(choice, 1.7e9, 10.0, 100, 5000.0, -2.0);
            let now = 1.7e9 + 990.0; // value 3020
            let got = g.time_to_breach(now, 20.0, Direction::Below, 1e6);
            assert!(rel_close(got, 1500.0, 1e-6), "{choice:?} {got}");
            assert_eq!(
                g.time_to_breach(now, 20.0, Direction::Below, 1000.0),
                f64::INFINITY
            );
            assert_eq!(
                g.time_to_breach(now, 9000.0, Direction::Above, 1e9),
                f64::INFINITY
            );
            assert_eq!(g.time_to_breach(now, 9000.0, Direction::Below, 1e9), 0.0);
            // Asking from a later `now` counts from that `now`.
            let later = g.time_to_breach(now + 100.0, 20.0, Direction::Below, 1e6);
            assert!(rel_close(later, 1400.0, 1e-6), "{later}");
        }
    }

    #[test]
    fn flat_series_never_breaches_and_not_enough_data_is_infinite() {
        let f = linear(ModelChoice::Blend, 0.0, 1.0, 50, 7.0, 0.0);
        assert_eq!(
            f.time_to_breach(49.0, 8.0, Direction::Above, 1e12),
            f64::INFINITY
        );
        assert_eq!(
            f.time_to_breach(49.0, 6.0, Direction::Below, 1e12),
            f64::INFINITY
        );
        assert_eq!(f.time_to_breach(49.0, 7.0, Direction::Above, 1e12), 0.0);
        let mut g = Forecaster::new(60.0);
        assert_eq!(g.forecast(1.0), None);
        assert_eq!(
            g.time_to_breach(0.0, 1.0, Direction::Above, 10.0),
            f64::INFINITY
        );
        g.observe(1.0, 5.0);
        assert_eq!(g.forecast(2.0), None);
        assert_eq!(g.typical_interval(), None);
        g.observe(1.0, 6.0);
        assert_eq!(g.forecast(2.0), None, "equal timestamps are not a trend");
        g.observe(2.0, 6.0);
        assert!(g.forecast(3.0).is_some());
    }

    #[test]
    fn garbage_input_never_yields_nan() {
        let mut f = Forecaster::new(300.0);
        let inputs = [
            (f64::NAN, 1.0),
            (1.0, f64::NAN),
            (2.0, f64::INFINITY),
            (3.0, 1.0),
            (3.0, 2.0),
            (2.0, 100.0), // backwards: ignored
            (1e15, 1e300),
            (1e15 + 1.0, -1e300),
            (1e15 + 2.0, 0.0),
            (f64::INFINITY, 0.0),
        ];
        for (t, v) in inputs {
            f.observe(t, v);
            for at in [0.0, 1e15, 1e300, f64::NAN, f64::INFINITY, -1e300] {
                if let Some(p) = f.forecast(at) {
                    assert!(p.is_finite());
                }
                for dir in [Direction::Above, Direction::Below] {
                    for thr in [0.0, f64::NAN, 1e308, -f64::INFINITY] {
                        for h in [0.0, 1.0, f64::INFINITY, f64::NAN, -1.0] {
                            let b = f.time_to_breach(at, thr, dir, h);
                            assert!(!b.is_nan() && b >= 0.0, "{t} {v} {at} {thr} {h}: {b}");
                        }
                    }
                }
            }
            if let Some(i) = f.typical_interval() {
                assert!(i.is_finite() && i > 0.0);
            }
        }
    }

    #[test]
    fn irregular_timestamps_and_gaps_stay_exact_on_a_line() {
        let steps = [1.0, 17.0, 0.2, 3600.0 * 5.0, 4.0, 30.0, 0.5];
        for choice in ALL {
            let mut f = Forecaster::with_model(86400.0, choice, 0.05, 0.5);
            let mut t = 1.6e9;
            for i in 0..300 {
                f.observe(t, -4.0 + 0.125 * (t - 1.6e9));
                t += steps[i % steps.len()];
            }
            let at = t + 3600.0;
            let want = -4.0 + 0.125 * (at - 1.6e9);
            let got = f.forecast(at).unwrap();
            assert!(rel_close(got, want, 1e-6), "{choice:?} {got} vs {want}");
        }
    }

    #[test]
    fn typical_interval_is_robust_to_a_gap() {
        let mut f = Forecaster::new(3600.0);
        let mut t = 0.0;
        for i in 0..40 {
            f.observe(t, 1.0);
            t += if i == 20 { 10_000.0 } else { 15.0 };
        }
        assert_eq!(f.typical_interval(), Some(15.0));
    }

    #[test]
    fn memory_is_bounded() {
        let mut f = Forecaster::new(1e9);
        for i in 0..20_000 {
            f.observe(i as f64, (i % 7) as f64);
        }
        assert!(f.ls.len() <= MAX_SAMPLES);
        assert!(f.forecast(20_000.0).unwrap().is_finite());
    }

    #[test]
    fn selection_leaves_least_squares_after_a_slope_change() {
        // After a slope change least squares lags behind: it must not be the model in charge.
        let mut f = Forecaster::new(3600.0);
        for i in 0..720 {
            let t = i as f64 * 5.0;
            let v = if t < 1800.0 { 0.0 } else { t - 1800.0 };
            f.observe(t, v);
        }
        assert!(f.ls_weight() < 0.5, "{}", f.ls_weight());
    }
}
