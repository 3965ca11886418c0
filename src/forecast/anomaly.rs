//! Streaming anomaly scores: tail p-values of the value, its jump, its daily difference, the means
//! of the last few and the last many values and the novelty of their shape, with alarm hold-off.
//!
//! Each sample is compared with the last `history` samples in six ways (the value itself, its
//! change from the previous sample, its difference from the same moment a day earlier, the mean
//! of the last `mean` values, the mean of the last `mean_long` values, and the distance of the
//! last `shape` values, scaled by the robust range of the series, to the nearest prototype window
//! learned online). The two means are two timescales of one question, "has the level moved?":
//! the short one sees a shift within minutes, the long one a shift too small to stand out from
//! the noise of 16 samples but sustained over 128. Inside the bulk of the data a test's p-value
//! is the empirical rank, so outliers in the baseline only move it by one rank; past the top
//! `tail` fraction an exponential tail fitted to the extremes (peaks over threshold) grades how
//! far beyond the record the sample lies. The smallest p-value, on a log scale, is the score;
//! after an alarm the following scores are damped unless they beat the alarm's peak by
//! `escalate`, so one incident is reported once. Defaults are judged by leave-one-category-out
//! cross-validation on NAB (`scripts/eval-nab.sh`), not by the in-sample score they were first
//! tuned on.

use std::collections::VecDeque;

/// Seasonal lag: ops metrics mostly follow the daily cycle of their users.
const SEASON_SECONDS: f64 = 86_400.0;
/// A lagged sample farther than this from exactly one season ago is not comparable.
const SEASON_TOLERANCE: f64 = 0.01 * SEASON_SECONDS;
/// Samples scored 0 while the first references fill: scores start on the 30th sample (SPEC).
pub const WARMUP: usize = 29;
/// Residual windows need this many entries before their p-values mean anything.
const MIN_REFERENCE: usize = 20;

/// Tests of the detector, as bits of `AnomalyParams::tests`.
pub const TEST_VALUE: u32 = 1;
pub const TEST_JUMP: u32 = 2;
pub const TEST_SEASONAL: u32 = 4;
/// The value against only the recent `recent` samples: a second, short timescale.
pub const TEST_RECENT: u32 = 8;
/// The mean of the last `mean` values against the history of such means: sustained shifts.
pub const TEST_MEAN: u32 = 16;
/// Novelty of the shape of the last `shape` values: distance to the nearest learned prototype.
pub const TEST_SHAPE: u32 = 32;
/// The mean absolute jump over the last `mean` samples against its history: volatility changes.
pub const TEST_VOL: u32 = 64;

/// Knobs of the anomaly detector; `Default` holds the measured choice.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyParams {
    /// Samples of history every test compares against (bounds memory: ~4 f64 per sample per test).
    pub history: usize,
    /// Samples scored 0 while the history fills.
    pub warmup: usize,
    /// Fraction of the history at each end treated as the fitted tail.
    pub tail: f64,
    /// Decades of p-value spanning the score 0..1 (score = -log10(p) / depth).
    pub depth: f64,
    /// Score at which the detector considers it has raised an alarm.
    pub alarm: f64,
    /// Samples after an alarm during which scores not exceeding the alarm's peak are damped.
    pub hold: usize,
    /// Factor applied to damped scores.
    pub damp: f64,
    /// Which tests run (`TEST_*` bits), for ablation measurements.
    pub tests: u32,
    /// Samples averaged into the recent surprise that the likelihood stage grades against the
    /// series' own history of surprises (0 = no likelihood stage: the raw p-value is the score).
    pub likelihood: usize,
    /// Averaged surprises the likelihood stage remembers.
    pub likelihood_history: usize,
    /// Samples of the short timescale (`TEST_RECENT`).
    pub recent: usize,
    /// Samples averaged by `TEST_MEAN`.
    pub mean: usize,
    /// Values in one window of `TEST_SHAPE`.
    pub shape: usize,
    /// Prototype windows `TEST_SHAPE` learns at most.
    pub prototypes: usize,
    /// Quantile of past nearest distances beyond which a window founds a new prototype.
    pub vigilance: f64,
    /// Largest generalised-Pareto shape of the fitted tails (0 = exponential).
    pub xi_max: f64,
    /// How far above the alarm's peak a score inside the hold must go to get through undamped.
    pub escalate: f64,
    /// `TEST_SHAPE` compares windows with their own mean removed (shape only, not level).
    pub centred: bool,
    /// Samples of a second, longer `TEST_MEAN` (0 = none): slow sustained shifts.
    pub mean_long: usize,
}

impl Default for AnomalyParams {
    fn default() -> Self {
        AnomalyParams {
            history: 4000,
            warmup: WARMUP,
            tail: 0.02,
            depth: 10.0,
            alarm: 0.35,
            hold: 300,
            damp: 0.25,
            tests: TEST_VALUE | TEST_JUMP | TEST_SEASONAL | TEST_MEAN | TEST_SHAPE,
            likelihood: 0,
            likelihood_history: 4000,
            recent: 200,
            mean: 16,
            shape: 16,
            prototypes: 128,
            vigilance: 0.99,
            xi_max: 0.0,
            centred: false,
            escalate: 0.1,
            mean_long: 128,
        }
    }
}

/// Sliding window that answers tail-rank questions about the last `cap` numbers in O(log n).
#[derive(Debug, Clone)]
struct RankWindow {
    order: VecDeque<f64>,
    sorted: Vec<f64>,
    cap: usize,
    /// Largest generalised-Pareto shape the tail fit may take (0 = exponential tail).
    xi_max: f64,
    /// Smallest scale of the fitted tail, for numbers whose noise floor is known.
    min_scale: f64,
}

impl RankWindow {
    fn new(cap: usize) -> Self {
        RankWindow {
            order: VecDeque::new(),
            sorted: Vec::new(),
            cap: cap.max(1),
            xi_max: 0.0,
            min_scale: 0.0,
        }
    }

    fn len(&self) -> usize {
        self.sorted.len()
    }

    fn push(&mut self, x: f64) {
        if self.order.len() >= self.cap {
            if let Some(old) = self.order.pop_front() {
                let i = self.sorted.partition_point(|y| y.total_cmp(&old).is_lt());
                if i < self.sorted.len() {
                    self.sorted.remove(i);
                }
            }
        }
        self.order.push_back(x);
        let i = self.sorted.partition_point(|y| y.total_cmp(&x).is_lt());
        self.sorted.insert(i, x);
    }

    fn count_ge(&self, x: f64) -> usize {
        self.sorted.len() - self.sorted.partition_point(|y| *y < x)
    }

    fn count_le(&self, x: f64) -> usize {
        self.sorted.partition_point(|y| *y <= x)
    }

    /// Width of the tail region; small windows still get a few points to fit on.
    fn tail_len(&self, frac: f64) -> usize {
        let n = self.sorted.len();
        ((n as f64 * frac).ceil() as usize).clamp(4, (n / 2).max(1))
    }

    /// Scale of the exponential tail, floored so ties (quantised metrics) do not make it zero.
    fn tail_scale(&self, mean_excess: f64, anchor: f64) -> f64 {
        let spread = match (self.sorted.first(), self.sorted.last()) {
            (Some(a), Some(b)) => b - a,
            _ => 0.0,
        };
        mean_excess
            .max(self.min_scale)
            .max(1e-3 * spread)
            .max(1e-12 * anchor.abs())
            .max(f64::MIN_POSITIVE)
    }

    /// Survival of an excess `over` the threshold `u` under the tail fitted to `tail`'s
    /// excesses over `u`: exponential, or generalised Pareto by the method of moments with the
    /// shape capped at `xi_max`, so heavy-tailed series (bursty counts) are not surprised by
    /// every new record.
    fn tail_survival(&self, tail: &[f64], u: f64, over: f64) -> f64 {
        let m = tail.len().max(1) as f64;
        let (s1, s2) = tail.iter().fold((0.0, 0.0), |(a, b), v| {
            let e = (v - u).abs();
            (a + e, b + e * e)
        });
        let mean = s1 / m;
        let var = (s2 / m - mean * mean).max(0.0);
        let xi = if self.xi_max > 0.0 && var > 0.0 {
            (0.5 * (1.0 - mean * mean / var)).clamp(0.0, self.xi_max)
        } else {
            0.0
        };
        let beta = self.tail_scale(mean * (1.0 - xi), u);
        if xi < 1e-6 {
            (-over / beta).exp()
        } else {
            (1.0 + xi * over / beta).powf(-1.0 / xi)
        }
    }

    /// P(X >= x): rank inside the data, fitted exponential tail beyond the top `frac`.
    fn p_upper(&self, x: f64, frac: f64) -> f64 {
        let n = self.sorted.len();
        let rank = ((self.count_ge(x) as f64 + 1.0) / (n as f64 + 1.0)).min(1.0);
        if n < 8 {
            return rank;
        }
        let m = self.tail_len(frac);
        let u = self.sorted[n - m];
        if x <= u {
            return rank;
        }
        let p = (m as f64 / (n as f64 + 1.0)) * self.tail_survival(&self.sorted[n - m..], u, x - u);
        p.min(rank)
    }

    /// Two-sided: twice the smaller tail, for tests where too low is as odd as too high.
    fn p_two_sided(&self, x: f64, frac: f64) -> f64 {
        2.0 * self.p_upper(x, frac).min(self.p_lower(x, frac))
    }

    /// P(X <= x), the mirror image of `p_upper`.
    fn p_lower(&self, x: f64, frac: f64) -> f64 {
        let n = self.sorted.len();
        let rank = ((self.count_le(x) as f64 + 1.0) / (n as f64 + 1.0)).min(1.0);
        if n < 8 {
            return rank;
        }
        let m = self.tail_len(frac);
        let l = self.sorted[m - 1];
        if x >= l {
            return rank;
        }
        let p = (m as f64 / (n as f64 + 1.0)) * self.tail_survival(&self.sorted[..m], l, l - x);
        p.min(rank)
    }
}

/// The mean of the last `k` values of `window`, ranked two-sided among the `means` before it,
/// which it then joins. `None` while there are fewer than `k` values (or `k` is 0), during the
/// warm-up and while the history is too short to rank in.
fn mean_test(
    window: &VecDeque<f64>,
    k: usize,
    means: &mut RankWindow,
    warm: bool,
    tail: f64,
) -> Option<f64> {
    if k == 0 || window.len() < k {
        return None;
    }
    let m = window.iter().rev().take(k).sum::<f64>() / k as f64;
    let p = (warm && means.len() >= MIN_REFERENCE).then(|| means.p_two_sided(m, tail));
    means.push(m);
    p
}

/// Streaming anomaly detector for one series.
#[derive(Debug, Clone)]
pub struct AnomalyDetector {
    p: AnomalyParams,
    values: RankWindow,
    jumps: RankWindow,
    seasonal: RankWindow,
    short: RankWindow,
    /// (time, value) of about the last season, for the seasonal difference.
    past: VecDeque<(f64, f64)>,
    last: Option<f64>,
    seen: usize,
    hold_left: usize,
    hold_peak: f64,
    /// Last `likelihood` raw surprises (-log10 p) and their sum, for the recent average.
    recent: VecDeque<f64>,
    recent_sum: f64,
    /// History of averaged surprises the likelihood stage ranks the latest one in.
    surprises: RankWindow,
    /// The last values (as many as `TEST_MEAN` and `TEST_SHAPE` need), and the history of the
    /// `mean`-sample means.
    window: VecDeque<f64>,
    means: RankWindow,
    /// History of the longer means (`mean_long`).
    long_means: RankWindow,
    /// Learned prototype windows (`TEST_SHAPE`), flattened, with their sample counts.
    protos: Vec<f64>,
    proto_count: Vec<f64>,
    /// History of nearest-prototype distances.
    distances: RankWindow,
    /// The latest window, scaled (reused so that scoring does not allocate).
    scaled: Vec<f64>,
    /// Last `mean` jumps (`TEST_VOL`), and the history of their means.
    vol_window: VecDeque<f64>,
    vols: RankWindow,
}

impl Default for AnomalyDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl AnomalyDetector {
    pub fn new() -> Self {
        Self::with_params(AnomalyParams::default())
    }

    pub fn with_params(p: AnomalyParams) -> Self {
        let h = p.history.max(8);
        let mut d = AnomalyDetector {
            values: RankWindow::new(h),
            jumps: RankWindow::new(h),
            seasonal: RankWindow::new(h),
            short: RankWindow::new(p.recent.max(8)),
            past: VecDeque::new(),
            last: None,
            seen: 0,
            hold_left: 0,
            hold_peak: 0.0,
            recent: VecDeque::new(),
            recent_sum: 0.0,
            surprises: RankWindow::new(p.likelihood_history.max(8)),
            window: VecDeque::new(),
            means: RankWindow::new(h),
            long_means: RankWindow::new(h),
            protos: Vec::new(),
            proto_count: Vec::new(),
            distances: RankWindow::new(h),
            scaled: Vec::new(),
            vol_window: VecDeque::new(),
            vols: RankWindow::new(h),
            p: AnomalyParams { history: h, ..p },
        };
        // Distances are in units of the series' range: below a hundredth they are rounding.
        d.distances.min_scale = 0.01;
        let xi = d.p.xi_max;
        for w in [
            &mut d.values,
            &mut d.jumps,
            &mut d.seasonal,
            &mut d.means,
            &mut d.long_means,
            &mut d.distances,
            &mut d.vols,
        ] {
            w.xi_max = xi;
        }
        d
    }

    /// Scores one sample in [0, 1] (0 during warm-up); non-finite input scores 0 and is not learned.
    pub fn observe(&mut self, t: f64, value: f64) -> f64 {
        if !value.is_finite() || !t.is_finite() {
            return 0.0;
        }
        self.seen = self.seen.saturating_add(1);
        let warm = self.seen > self.p.warmup;
        let tail = if self.p.tail > 0.0 && self.p.tail < 0.5 {
            self.p.tail
        } else {
            0.02
        };
        let mut p: f64 = 1.0;

        if self.p.tests & TEST_VALUE != 0 {
            if warm {
                p = p.min(self.values.p_two_sided(value, tail));
            }
            self.values.push(value);
        }
        if self.p.tests & TEST_VOL != 0 {
            if let Some(jump) = self
                .last
                .map(|l| (value - l).abs())
                .filter(|j| j.is_finite())
            {
                let k = self.p.mean.max(1);
                self.vol_window.push_back(jump);
                while self.vol_window.len() > k {
                    self.vol_window.pop_front();
                }
                if self.vol_window.len() == k {
                    let m = self.vol_window.iter().sum::<f64>() / k as f64;
                    if warm && self.vols.len() >= MIN_REFERENCE {
                        p = p.min(self.vols.p_two_sided(m, tail));
                    }
                    self.vols.push(m);
                }
            }
        }
        if self.p.tests & TEST_JUMP != 0 {
            if let Some(last) = self.last {
                let jump = (value - last).abs();
                if jump.is_finite() {
                    if warm && self.jumps.len() >= MIN_REFERENCE {
                        p = p.min(self.jumps.p_upper(jump, tail));
                    }
                    self.jumps.push(jump);
                }
            }
        }
        self.last = Some(value);
        if self.p.tests & TEST_RECENT != 0 {
            if warm && self.short.len() >= MIN_REFERENCE {
                p = p.min(self.short.p_two_sided(value, tail));
            }
            self.short.push(value);
        }
        if self.p.tests & TEST_SEASONAL != 0 {
            if let Some(diff) = self.seasonal_difference(t, value) {
                if warm && self.seasonal.len() >= MIN_REFERENCE {
                    p = p.min(self.seasonal.p_upper(diff, tail));
                }
                self.seasonal.push(diff);
            }
            // Out-of-order samples would break the time search, so only newer ones are kept.
            if self.past.back().is_none_or(|b| t > b.0) {
                self.past.push_back((t, value));
            }
            while self.past.len() > self.p.history
                || self
                    .past
                    .front()
                    .is_some_and(|f| f.0 < t - SEASON_SECONDS - 2.0 * SEASON_TOLERANCE)
            {
                self.past.pop_front();
            }
        }
        let need = self
            .p
            .mean
            .max(self.p.mean_long)
            .max(self.p.shape * usize::from(self.p.tests & TEST_SHAPE != 0));
        if self.p.tests & (TEST_MEAN | TEST_SHAPE) != 0 {
            self.window.push_back(value);
            while self.window.len() > need.max(1) {
                self.window.pop_front();
            }
        }
        if self.p.tests & TEST_MEAN != 0 {
            let short = (self.p.mean.max(1), &mut self.means);
            let long = (self.p.mean_long, &mut self.long_means);
            for (k, means) in [short, long] {
                if let Some(q) = mean_test(&self.window, k, means, warm, tail) {
                    p = p.min(q);
                }
            }
        }
        if self.p.tests & TEST_SHAPE != 0 && self.window.len() >= self.p.shape.max(2) {
            if let Some(d) = self.shape_distance() {
                if warm && self.distances.len() >= MIN_REFERENCE {
                    p = p.min(self.distances.p_upper(d, tail));
                }
                self.distances.push(d);
            }
        }
        if !warm {
            return 0.0;
        }

        let depth = if self.p.depth > 0.0 {
            self.p.depth
        } else {
            10.0
        };
        let p = self.likelihood(p, tail);
        let raw = (-p.max(f64::MIN_POSITIVE).log10() / depth).clamp(0.0, 1.0);
        let mut out = raw;
        if self.hold_left > 0 {
            self.hold_left -= 1;
            if raw > self.hold_peak + self.p.escalate {
                // A stronger incident inside the hold still gets through and becomes the reference.
                self.hold_peak = raw;
            } else {
                out = raw * self.p.damp;
            }
        } else if raw >= self.p.alarm && self.p.hold > 0 {
            self.hold_left = self.p.hold;
            self.hold_peak = raw;
        }
        if out.is_finite() {
            out.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// The likelihood stage: how rare the recent average surprise is among this series' own
    /// past surprises. A series whose raw p-values are often tiny (drifting, heavy-tailed) gets
    /// its alarms discounted, a quiet one keeps them: the threshold adapts online per series.
    fn likelihood(&mut self, p: f64, tail: f64) -> f64 {
        let k = self.p.likelihood;
        if k == 0 {
            return p;
        }
        let surprise = (-p.max(f64::MIN_POSITIVE).log10()).clamp(0.0, 400.0);
        self.recent.push_back(surprise);
        self.recent_sum += surprise;
        while self.recent.len() > k {
            if let Some(old) = self.recent.pop_front() {
                self.recent_sum -= old;
            }
        }
        let avg = (self.recent_sum / self.recent.len() as f64).max(0.0);
        let ready = self.surprises.len() >= MIN_REFERENCE;
        let q = self.surprises.p_upper(avg, tail);
        self.surprises.push(avg);
        if ready {
            q
        } else {
            p
        }
    }

    /// RMS distance of the latest window (scaled by the robust range of the values) to its
    /// nearest prototype, learning as it goes: a window far from all (beyond the `vigilance`
    /// quantile of past distances) founds a new prototype while there is room, otherwise the
    /// nearest prototype moves towards it.
    fn shape_distance(&mut self) -> Option<f64> {
        let w = self.p.shape.max(2);
        let n = self.values.len();
        if n < MIN_REFERENCE {
            return None;
        }
        let lo = self.values.sorted[n / 100];
        let hi = self.values.sorted[n - 1 - n / 100];
        let range = (hi - lo)
            .max(1e-9 * hi.abs().max(lo.abs()))
            .max(f64::MIN_POSITIVE);
        let start = self.window.len() - w;
        let level = if self.p.centred {
            self.window.iter().skip(start).sum::<f64>() / w as f64
        } else {
            lo
        };
        let mut x = std::mem::take(&mut self.scaled);
        x.clear();
        x.extend(
            self.window
                .iter()
                .skip(start)
                .map(|v| ((v - level) / range).clamp(-4.0, 5.0)),
        );
        let mut best = f64::INFINITY;
        let mut bi = usize::MAX;
        for (i, c) in self.protos.chunks_exact(w).enumerate() {
            let d: f64 = c.iter().zip(&x).map(|(a, b)| (a - b) * (a - b)).sum();
            if d < best {
                best = d;
                bi = i;
            }
        }
        let d = (best / w as f64).sqrt();
        let grow = self.proto_count.len() < self.p.prototypes.max(1)
            && (bi == usize::MAX
                || self.distances.len() < MIN_REFERENCE
                || self.distances.p_upper(d, 0.02) < 1.0 - self.p.vigilance);
        if grow {
            self.protos.extend_from_slice(&x);
            self.proto_count.push(1.0);
        } else if bi != usize::MAX {
            let c = &mut self.proto_count[bi];
            *c = (*c + 1.0).min(1000.0);
            let rate = 1.0 / *c;
            for (a, b) in self.protos[bi * w..(bi + 1) * w].iter_mut().zip(&x) {
                *a += (b - *a) * rate;
            }
        }
        self.scaled = x;
        (bi != usize::MAX && d.is_finite()).then_some(d)
    }

    /// Bytes of the detector's state once its windows are full, for the memory figure.
    pub fn memory_bytes(&self) -> usize {
        let f = std::mem::size_of::<f64>();
        std::mem::size_of::<Self>()
            + 3 * 2 * self.p.history * f
            + 2 * self.p.history * f
            + 2 * self.p.recent.max(8) * f * usize::from(self.p.tests & TEST_RECENT != 0)
            + 2 * self.p.likelihood_history.max(8) * f * usize::from(self.p.likelihood > 0)
            + self.p.likelihood * f
            + 2 * self.p.history
                * f
                * (1 + usize::from(self.p.mean_long > 0))
                * usize::from(self.p.tests & TEST_MEAN != 0)
            + (2 * self.p.history + (self.p.shape + 1) * self.p.prototypes + self.p.shape)
                * f
                * usize::from(self.p.tests & TEST_SHAPE != 0)
            + (2 * self.p.history + self.p.mean) * f * usize::from(self.p.tests & TEST_VOL != 0)
    }

    /// |value - median of the three samples nearest one season ago|, if that moment is in memory.
    fn seasonal_difference(&self, t: f64, value: f64) -> Option<f64> {
        let target = t - SEASON_SECONDS;
        let n = self.past.len();
        let i = self.past.partition_point(|s| s.0 < target);
        if n < 3 || i == 0 || i >= n {
            return None;
        }
        let near = if target - self.past[i - 1].0 < self.past[i].0 - target {
            i - 1
        } else {
            i
        };
        if (self.past[near].0 - target).abs() > SEASON_TOLERANCE {
            return None;
        }
        // The median of three keeps one past spike from reappearing as a fake anomaly a day later.
        let lo = near.saturating_sub(1).min(n - 3);
        let mut w = [self.past[lo].1, self.past[lo + 1].1, self.past[lo + 2].1];
        w.sort_by(|a, b| a.total_cmp(b));
        let d = (value - w[1]).abs();
        d.is_finite().then_some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-noise in [-1, 1] (xorshift), so tests need no dependencies.
    struct Noise(u64);
    impl Noise {
        /// Spreads small seeds over the state: xorshift from a tiny state starts with a long run of near-zero outputs.
        fn seeded(seed: u64) -> Self {
            Noise(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }

        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        }
    }

    fn run(values: impl Iterator<Item = (f64, f64)>) -> Vec<f64> {
        let mut d = AnomalyDetector::new();
        values.map(|(t, v)| d.observe(t, v)).collect()
    }

    #[test]
    fn warmup_scores_zero_and_all_scores_in_range() {
        let mut n = Noise::seeded(7);
        let s = run((0..3000).map(|i| (i as f64 * 60.0, n.next() * 100.0)));
        assert!(s[..WARMUP].iter().all(|&x| x == 0.0));
        assert!(
            s[WARMUP..].iter().any(|&x| x > 0.0),
            "scores from the 30th sample on"
        );
        assert!(s.iter().all(|x| (0.0..=1.0).contains(x)));
    }

    #[test]
    fn spike_on_the_48th_sample_scores_high() {
        // The live case of the issue: a 10x spike soon after a prediction starts.
        let mut n = Noise::seeded(21);
        let mut d = AnomalyDetector::new();
        for i in 0..47 {
            let s = d.observe(i as f64 * 30.0, 100.0 + 5.0 * n.next());
            assert!(s < 0.5, "sample {i}: {s}");
        }
        let s = d.observe(47.0 * 30.0, 1000.0);
        assert!(s >= 0.8, "{s}");
    }

    #[test]
    fn steady_series_do_not_alarm() {
        // (name, series)
        let cases: Vec<(&str, Vec<f64>)> = vec![
            ("constant", vec![42.0; 3000]),
            ("zero", vec![0.0; 3000]),
            (
                "linear growth",
                (0..3000).map(|i| 5.0 + 0.5 * i as f64).collect(),
            ),
            (
                "linear decline",
                (0..3000).map(|i| 1e6 - 3.0 * i as f64).collect(),
            ),
            (
                "tiny slope",
                (0..3000).map(|i| 1e9 + 1e-3 * i as f64).collect(),
            ),
        ];
        for (name, series) in cases {
            let s = run(series
                .iter()
                .enumerate()
                .map(|(i, &v)| (i as f64 * 15.0, v)));
            let worst = s[100..].iter().cloned().fold(0.0, f64::max);
            assert!(worst < 0.5, "{name}: {worst}");
        }
    }

    #[test]
    fn spike_after_noisy_baseline_scores_high() {
        for (seed, spike) in [(1u64, 30.0), (2, -30.0), (3, 50.0)] {
            let mut n = Noise::seeded(seed);
            let mut d = AnomalyDetector::new();
            let mut base_max: f64 = 0.0;
            for i in 0..2000 {
                let s = d.observe(i as f64 * 300.0, 100.0 + 3.0 * n.next());
                if i > 500 {
                    base_max = base_max.max(s);
                }
            }
            let s = d.observe(2000.0 * 300.0, 100.0 + spike);
            assert!(s >= 0.8, "spike {spike}: {s}");
            assert!(base_max < 0.5, "baseline {base_max}");
        }
    }

    #[test]
    fn a_small_sustained_shift_scores_higher_with_the_long_mean() {
        // Half a standard deviation up, held. The 16-sample mean moves by one of its own
        // deviations, the 128-sample mean by five: over the 128 samples after the shift the
        // long mean is what makes the scores stand out.
        let mean_score_after_shift = |seed: u64, mean_long: usize| {
            let mut n = Noise::seeded(seed);
            // No hold-off, so a chance alarm before the shift cannot damp the scores after it.
            let mut d = AnomalyDetector::with_params(AnomalyParams {
                mean_long,
                hold: 0,
                ..AnomalyParams::default()
            });
            let mut sum = 0.0;
            for i in 0..2128 {
                let level = if i < 2000 { 50.0 } else { 51.0 };
                // Twelve uniforms: near-Gaussian noise with sd 2, whose extremes are no hard edge.
                let noise: f64 = (0..12).map(|_| n.next()).sum();
                let s = d.observe(i as f64 * 60.0, level + noise);
                if i >= 2000 {
                    sum += s;
                }
            }
            sum / 128.0
        };
        for seed in [17, 4, 99] {
            let with = mean_score_after_shift(seed, 128);
            let without = mean_score_after_shift(seed, 0);
            assert!(
                with > 1.2 * without,
                "seed {seed}: with {with}, without {without}"
            );
        }
    }

    #[test]
    fn level_shift_scores_high_then_settles() {
        let mut n = Noise::seeded(11);
        let mut d = AnomalyDetector::new();
        let mut scores = Vec::new();
        for i in 0..3000 {
            let level = if i < 1500 { 10.0 } else { 51.4 };
            scores.push(d.observe(i as f64 * 60.0, level + n.next()));
        }
        assert!(scores[1500] >= 0.8, "{}", scores[1500]);
        let late = scores[1900..].iter().cloned().fold(0.0, f64::max);
        assert!(late < 0.5, "late {late}");
    }

    #[test]
    fn nan_and_inf_are_ignored() {
        let mut n = Noise::seeded(5);
        let mut a = AnomalyDetector::new();
        let mut b = AnomalyDetector::new();
        for i in 0..1500 {
            let (t, v) = (i as f64 * 10.0, n.next());
            let sa = a.observe(t, v);
            for junk in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                assert_eq!(b.observe(t, junk), 0.0);
            }
            assert_eq!(b.observe(f64::NAN, v), 0.0);
            assert_eq!(sa, b.observe(t, v), "junk must not change state");
        }
    }

    #[test]
    fn irregular_times_gaps_and_backwards_time_are_safe() {
        let mut n = Noise::seeded(9);
        let mut d = AnomalyDetector::new();
        let mut t = 1.7e9;
        let mut worst: f64 = 0.0;
        for i in 0..5000 {
            t += match i % 7 {
                0 => 0.0,
                1 => -30.0,
                2 => 1.0,
                3 => 86_400.0 * 3.0,
                _ => 17.0 + 10.0 * n.next().abs(),
            };
            let s = d.observe(t, 20.0 + n.next());
            assert!((0.0..=1.0).contains(&s));
            if i > 1000 {
                worst = worst.max(s);
            }
        }
        assert!(worst < 0.8, "{worst}");
        assert!(d.past.len() <= d.p.history);
    }

    #[test]
    fn extreme_values_never_nan() {
        let mut d = AnomalyDetector::new();
        let vals = [0.0, 1e308, -1e308, 1e-308, 5e-324, 1e308, 0.0];
        for i in 0..2000 {
            let s = d.observe(i as f64, vals[i % vals.len()]);
            assert!(s.is_finite() && (0.0..=1.0).contains(&s));
        }
    }

    #[test]
    fn daily_pattern_break_is_caught() {
        // A square daily cycle sampled every 5 minutes; on day 8 the high phase is missing.
        let mut n = Noise::seeded(3);
        let mut d = AnomalyDetector::new();
        let mut peak_anomaly: f64 = 0.0;
        let mut peak_normal: f64 = 0.0;
        for i in 0..(288 * 10) {
            let day = i / 288;
            let high = (i % 288) >= 144 && day != 8;
            let v = if high { 80.0 } else { 20.0 } + n.next();
            let s = d.observe(i as f64 * 300.0, v);
            if day == 8 && i % 288 >= 144 {
                peak_anomaly = peak_anomaly.max(s);
            } else if (3..8).contains(&day) {
                peak_normal = peak_normal.max(s);
            }
        }
        assert!(peak_anomaly >= 0.8, "{peak_anomaly}");
        assert!(peak_normal < 0.5, "{peak_normal}");
    }

    #[test]
    fn memory_is_bounded() {
        let mut d = AnomalyDetector::new();
        for i in 0..20_000 {
            d.observe(i as f64 * 5.0, (i % 13) as f64);
        }
        assert!(d.values.len() <= 4000 && d.jumps.len() <= 4000 && d.seasonal.len() <= 4000);
        assert!(d.past.len() <= 4000);
    }

    #[test]
    fn rank_tail_p_values() {
        let mut w = RankWindow::new(100);
        for i in 0..100 {
            w.push(i as f64);
        }
        // Inside the bulk: plain ranks.
        assert!((w.p_upper(50.0, 0.02) - 51.0 / 101.0).abs() < 1e-12);
        assert!((w.p_lower(10.0, 0.02) - 12.0 / 101.0).abs() < 1e-12);
        // Beyond the record: smaller the farther out, never above the rank bound.
        let a = w.p_upper(100.0, 0.02);
        let b = w.p_upper(120.0, 0.02);
        assert!(b < a && a <= 1.0 / 101.0);
        let c = w.p_lower(-20.0, 0.02);
        assert!(c < 1.0 / 101.0);
    }
}
