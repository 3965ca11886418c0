//! Periodic capacity shapes: a cycle of any period from 6 hours to 7 days on a trend (daily
//! load, weekly batch jobs) or a sawtooth (log rotation, periodic cleanups), found in a binned
//! history of the series and extrapolated, so that a breach is foreseen at the peak that
//! crosses the threshold rather than when a straight line through the swings would.
//!
//! The history is kept as 5-minute bin means over the last 14 days. Every 6 hours of series
//! time the period is searched for on the first differences of 30-minute block means (a trend
//! or a slow bend has no repeating differences; a cycle or a sawtooth does): the lag whose
//! autocorrelation is high and well above that of half the lag (so a slow bend, high at every
//! short lag, and the multiples of the true period, high at their halves too, are both turned
//! down). Every hour the shape is refitted on the last whole periods (up to four): a line
//! through the values less the profile, the profile as the mean per phase of the values less
//! the line, twice over. The fit serves only while the profile explains most of what the line
//! leaves (`MIN_STRENGTH`). A breach is timed as the median first passage of the shape plus
//! residuals drawn like its recent ones (`Cycle::first_passage`).

use std::collections::VecDeque;

use super::residuals::Residuals;

/// Width of a bin of the history.
pub const BIN_SECONDS: f64 = 300.0;
/// Bins kept: 14 days, two periods of the longest cycle.
const CAP_BINS: usize = 4032;
/// Shortest and longest periods searched, in bins (6 h, 7 d).
const MIN_PERIOD: usize = 72;
const MAX_PERIOD: usize = 2016;
/// Bins per block of the period search (30 minutes).
const BLOCK: usize = 6;
/// Bins between period searches (6 h while none is known, a day once one is) and between
/// refits (1 h).
const SEARCH_EVERY: i64 = 72;
const SEARCH_EVERY_KNOWN: i64 = 288;
const REFIT_EVERY: i64 = 12;
/// Most periods a fit spans, and fewest.
const MAX_PERIODS: usize = 4;
const MIN_PERIODS: usize = 2;
/// Autocorrelation a period needs at its lag, and its lead over half the lag.
const MIN_CORRELATION: f64 = 0.5;
/// Share of the variance left by the line that the profile must explain for the fit to serve.
pub const MIN_STRENGTH: f64 = 0.5;

/// A fitted periodic shape: value(bin b) = level + slope * (b - origin) + profile[b mod period].
#[derive(Debug, Clone)]
pub struct Shape {
    pub period_bins: usize,
    origin: f64,
    level: f64,
    slope: f64,
    profile: Vec<f64>,
    /// Share of the variance around the line the profile explains.
    pub strength: f64,
    high: f64,
    low: f64,
}

impl Shape {
    /// The shape's value at time `t` (seconds).
    pub fn at(&self, t: f64) -> f64 {
        let b = t / BIN_SECONDS;
        let phase = (b.floor() as i64).rem_euclid(self.period_bins as i64) as usize;
        self.level + self.slope * (b - self.origin) + self.profile[phase]
    }

    /// Slope per second of the trend line.
    pub fn slope_per_second(&self) -> f64 {
        self.slope / BIN_SECONDS
    }

    /// Seconds from `now` until the shape first reaches `target` from below (`above`) or from
    /// above, within `max`; 0 when it is past it now, infinity when it does not get there.
    pub fn seconds_until(&self, now: f64, target: f64, above: bool, max: f64) -> f64 {
        let past = |v: f64| if above { v >= target } else { v <= target };
        if target.is_nan() || max.is_nan() {
            return f64::INFINITY;
        }
        if past(self.at(now)) {
            return 0.0;
        }
        let period = self.period_bins as f64 * BIN_SECONDS;
        let extreme = if above { self.high } else { self.low };
        let end = now + max.max(0.0);
        let mut start = (now / BIN_SECONDS).floor() * BIN_SECONDS;
        while start <= end {
            // Skip a whole period when even its extreme cannot reach the target.
            let span_end = (start + period).min(end + BIN_SECONDS);
            let trend_best = if (self.slope > 0.0) == above {
                self.level + self.slope * (span_end / BIN_SECONDS - self.origin)
            } else {
                self.level + self.slope * (start / BIN_SECONDS - self.origin)
            };
            if !past(trend_best + extreme) {
                start += period;
                continue;
            }
            let mut b = start;
            while b < span_end && b <= end {
                // The bin's value at its start, and the trend's crossing inside it.
                let at = b.max(now);
                if past(self.at(at)) {
                    return (at - now).max(0.0);
                }
                b += BIN_SECONDS;
            }
            start = span_end;
        }
        f64::INFINITY
    }

    fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.profile.capacity() * std::mem::size_of::<f64>()
    }
}

/// Binned history of one series and the periodic shape found in it.
#[derive(Debug, Clone, Default)]
pub struct Cycle {
    /// Absolute index (time / BIN_SECONDS) of `sums[0]`.
    first: i64,
    sums: VecDeque<f64>,
    counts: VecDeque<u32>,
    period: Option<usize>,
    shape: Option<Shape>,
    last_search: i64,
    last_fit: i64,
    /// Residuals of samples around the shape.
    residuals: Residuals,
}

impl Cycle {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sample; the caller guarantees finite values and non-decreasing time.
    pub fn push(&mut self, t: f64, v: f64) {
        let b = (t / BIN_SECONDS).floor();
        if !b.is_finite() || b.abs() > 1e15 {
            return;
        }
        let b = b as i64;
        if self.sums.is_empty() || b - self.last_bin() > CAP_BINS as i64 {
            // First sample, or a gap longer than the history: start afresh.
            *self = Cycle {
                first: b,
                last_search: b,
                last_fit: b,
                ..Cycle::default()
            };
            self.sums.push_back(0.0);
            self.counts.push_back(0);
        }
        if b < self.last_bin() {
            return;
        }
        if let Some(s) = &self.shape {
            let r = v - s.at(t);
            if r.is_finite() {
                self.residuals.push(r);
            }
        }
        while self.last_bin() < b {
            self.sums.push_back(0.0);
            self.counts.push_back(0);
            if self.sums.len() > CAP_BINS {
                self.sums.pop_front();
                self.counts.pop_front();
                self.first += 1;
            }
            // A bin completed: search and refit on schedule.
            let done = self.last_bin() - 1;
            let every = if self.period.is_some() {
                SEARCH_EVERY_KNOWN
            } else {
                SEARCH_EVERY
            };
            if done - self.last_search >= every {
                self.last_search = done;
                self.period = self.search();
                self.last_fit = i64::MIN / 2;
            }
            if done - self.last_fit >= REFIT_EVERY {
                self.last_fit = done;
                let shape = self.period.and_then(|p| self.fit(p));
                if shape.as_ref().map(|s| s.period_bins)
                    != self.shape.as_ref().map(|s| s.period_bins)
                {
                    self.residuals.clear();
                }
                self.shape = shape;
            }
        }
        if let (Some(s), Some(n)) = (self.sums.back_mut(), self.counts.back_mut()) {
            *s += v;
            *n += 1;
        }
    }

    /// The fitted shape, when one serves.
    pub fn shape(&self) -> Option<&Shape> {
        self.shape.as_ref().filter(|s| s.strength >= MIN_STRENGTH)
    }

    /// Seconds from `now` until a sample has as likely as not crossed `threshold` (the median
    /// first passage of the shape plus residuals like its recent ones, see
    /// `Residuals::first_passage`), within `max`; infinity when it does not get there. None
    /// without a serving shape or enough residuals.
    pub fn first_passage(
        &self,
        now: f64,
        threshold: f64,
        above: bool,
        max: f64,
        interval: f64,
    ) -> Option<f64> {
        let shape = self.shape()?;
        let path = |t: f64| shape.at(t);
        let reach = |t: f64, target: f64, max: f64| shape.seconds_until(t, target, above, max);
        self.residuals.first_passage(
            &path,
            &reach,
            now,
            threshold,
            above,
            max,
            interval,
            BIN_SECONDS,
        )
    }

    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + CAP_BINS * (std::mem::size_of::<f64>() + std::mem::size_of::<u32>())
            + self.residuals.memory_bytes()
            + self.shape.as_ref().map_or(0, Shape::memory_bytes)
    }

    fn last_bin(&self) -> i64 {
        self.first + self.sums.len() as i64 - 1
    }

    /// Completed bins' means, empty bins carrying the previous mean forward.
    fn values(&self) -> Vec<f64> {
        let n = self.sums.len().saturating_sub(1);
        let mut out = Vec::with_capacity(n);
        let mut last = f64::NAN;
        for (s, c) in self.sums.iter().zip(&self.counts).take(n) {
            if *c > 0 {
                last = s / f64::from(*c);
            }
            out.push(last);
        }
        // Leading empty bins (none after the first sample's bin) take the first mean.
        let first = out.iter().copied().find(|v| v.is_finite()).unwrap_or(0.0);
        for v in out.iter_mut() {
            if !v.is_finite() {
                *v = first;
            } else {
                break;
            }
        }
        out
    }

    /// The period in bins, if the history repeats itself; see the module documentation.
    fn search(&self) -> Option<usize> {
        let y = self.values();
        let blocks: Vec<f64> = y
            .chunks_exact(BLOCK)
            .map(|c| c.iter().sum::<f64>() / BLOCK as f64)
            .collect();
        let d: Vec<f64> = blocks.windows(2).map(|w| w[1] - w[0]).collect();
        let min_lag = MIN_PERIOD / BLOCK;
        let max_lag = (MAX_PERIOD / BLOCK).min(d.len() / MIN_PERIODS);
        if max_lag < min_lag {
            return None;
        }
        let mean = d.iter().sum::<f64>() / d.len() as f64;
        let d: Vec<f64> = d.iter().map(|x| x - mean).collect();
        let var = d.iter().map(|x| x * x).sum::<f64>() / d.len() as f64;
        // The usual estimate: the lagged products' mean over the whole variance.
        let acf = |lag: usize| -> f64 {
            let n = d.len() - lag;
            let sxy: f64 = d[..n].iter().zip(&d[lag..]).map(|(a, b)| a * b).sum();
            if var > 0.0 {
                sxy / n as f64 / var
            } else {
                0.0
            }
        };
        let r: Vec<f64> = (0..=max_lag)
            .map(|l| if l == 0 { 1.0 } else { acf(l) })
            .collect();
        let lead = |l: usize| r[l] - r[l.div_ceil(2)];
        let best = (min_lag..=max_lag)
            .filter(|&l| r[l] >= MIN_CORRELATION)
            .max_by(|&a, &b| lead(a).total_cmp(&lead(b)))?;
        if lead(best) < MIN_CORRELATION {
            return None;
        }
        // The fundamental: the shortest peak of the autocorrelation nearly as good as the best.
        let peak = |l: usize| r[l] >= r[l - 1] && (l == max_lag || r[l] >= r[l + 1]);
        let lag = (min_lag..=best)
            .find(|&l| peak(l) && r[l] >= MIN_CORRELATION && lead(l) >= 0.9 * lead(best))
            .unwrap_or(best);
        // Refine to the bin on the detrended bin values around the block lag.
        let n = y.len();
        let (sx, sy) = (0..n).fold((0.0, 0.0), |(a, b), i| (a + i as f64, b + y[i]));
        let (mx, my) = (sx / n as f64, sy / n as f64);
        let (mut cxy, mut cxx) = (0.0, 0.0);
        for (i, v) in y.iter().enumerate() {
            cxy += (i as f64 - mx) * (v - my);
            cxx += (i as f64 - mx) * (i as f64 - mx);
        }
        let slope = if cxx > 0.0 { cxy / cxx } else { 0.0 };
        let z: Vec<f64> = y
            .iter()
            .enumerate()
            .map(|(i, v)| v - my - slope * (i as f64 - mx))
            .collect();
        let bin_acf = |lag: usize| -> f64 {
            let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
            for i in 0..n - lag {
                sxy += z[i] * z[i + lag];
                sxx += z[i] * z[i];
                syy += z[i + lag] * z[i + lag];
            }
            if sxx > 0.0 && syy > 0.0 {
                sxy / (sxx * syy).sqrt()
            } else {
                0.0
            }
        };
        let centre = lag * BLOCK;
        let lo = centre.saturating_sub(BLOCK).max(MIN_PERIOD);
        let hi = (centre + BLOCK).min(MAX_PERIOD).min(n / MIN_PERIODS);
        (lo..=hi).max_by(|&a, &b| bin_acf(a).total_cmp(&bin_acf(b)))
    }

    /// The shape of period `p` bins over the last whole periods.
    fn fit(&self, p: usize) -> Option<Shape> {
        let y = self.values();
        let k = (y.len() / p).min(MAX_PERIODS);
        if k < MIN_PERIODS {
            return None;
        }
        let n = k * p;
        let start = y.len() - n;
        let first = self.first + start as i64;
        let y = &y[start..];
        let phase = |i: usize| ((first + i as i64).rem_euclid(p as i64)) as usize;
        let mut profile = vec![0.0; p];
        let (mut level, mut slope) = (0.0, 0.0);
        let mx = (n - 1) as f64 / 2.0;
        for _ in 0..2 {
            // The line through the values less the profile (x = bin index from `first`).
            let (mut sy, mut cxy, mut cxx) = (0.0, 0.0, 0.0);
            for (i, v) in y.iter().enumerate() {
                let w = v - profile[phase(i)];
                sy += w;
                cxy += (i as f64 - mx) * w;
                cxx += (i as f64 - mx) * (i as f64 - mx);
            }
            level = sy / n as f64;
            slope = if cxx > 0.0 { cxy / cxx } else { 0.0 };
            // The profile: the mean per phase of the values less the line, centred.
            let mut sums = vec![0.0; p];
            for (i, v) in y.iter().enumerate() {
                sums[phase(i)] += v - level - slope * (i as f64 - mx);
            }
            let mean = sums.iter().sum::<f64>() / n as f64;
            for (pr, s) in profile.iter_mut().zip(&sums) {
                *pr = s / k as f64 - mean;
            }
        }
        let (mut around_line, mut around_shape) = (0.0, 0.0);
        for (i, v) in y.iter().enumerate() {
            let l = v - level - slope * (i as f64 - mx);
            around_line += l * l;
            around_shape += (l - profile[phase(i)]).powi(2);
        }
        let strength = if around_line > 0.0 {
            1.0 - around_shape / around_line
        } else {
            0.0
        };
        let high = profile.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let low = profile.iter().copied().fold(f64::INFINITY, f64::min);
        // Bin i's mean stands for the bin's middle: absolute coordinate first + i + 0.5.
        let shape = Shape {
            period_bins: p,
            origin: first as f64 + mx + 0.5,
            level,
            slope,
            profile,
            strength,
            high,
            low,
        };
        (shape.level.is_finite() && shape.slope.is_finite() && strength.is_finite())
            .then_some(shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(c: &mut Cycle, days: f64, step: f64, mut f: impl FnMut(f64) -> f64) {
        let mut t = 0.0;
        while t < days * 86_400.0 {
            c.push(1.7e9 + t, f(t));
            t += step;
        }
    }

    #[test]
    fn finds_a_daily_cycle_on_a_trend_and_its_peak() {
        let mut c = Cycle::new();
        let f = |t: f64| {
            20.0 + 2.0 * t / 86_400.0 + 10.0 * (t / 86_400.0 * std::f64::consts::TAU).sin()
        };
        feed(&mut c, 6.0, 60.0, f);
        let s = c.shape().expect("a cycle");
        assert!((s.period_bins as i64 - 288).abs() <= 1, "{}", s.period_bins);
        assert!(s.strength > 0.9, "{}", s.strength);
        let now = 1.7e9 + 6.0 * 86_400.0;
        // The series reaches 42 first near the daily peak a quarter into day 6 (32.5 + 10), about
        // 4.9 hours from now; the trend line alone would need five more days.
        let got = s.seconds_until(now, 42.0, true, 7.0 * 86_400.0);
        let want = 4.9 * 3600.0;
        assert!((got - want).abs() < 3600.0, "{got} vs {want}");
    }

    #[test]
    fn finds_a_six_hour_sawtooth() {
        let mut c = Cycle::new();
        let p = 6.0 * 3600.0;
        let f = |t: f64| 40.0 + 0.5 * t / 3600.0 / 24.0 + 8.0 * (t / p).fract();
        feed(&mut c, 4.0, 30.0, f);
        let s = c.shape().expect("a sawtooth");
        assert!((s.period_bins as i64 - 72).abs() <= 1, "{}", s.period_bins);
    }

    #[test]
    fn noise_that_grazes_the_threshold_crosses_near_a_peak_the_shape_never_reaches() {
        // A daily cycle peaking at 80, noise of sd 2 (bounded at 3.5 sd) every 15 s: near each
        // peak hundreds of samples each have a small chance of passing 85, so one does within
        // the next peak (a quarter day from midnight) though the shape never gets there.
        let mut c = Cycle::new();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut uniform = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        };
        let day = 86_400.0;
        let noise_sd = 2.0;
        feed(&mut c, 6.0, 15.0, |t| {
            let u: f64 = (0..4).map(|_| uniform()).sum::<f64>() - 2.0;
            70.0 + 10.0 * (t / day * std::f64::consts::TAU).sin() + u * noise_sd * 3f64.sqrt()
        });
        let now = 1.7e9 + 6.0 * day;
        let s = c.shape().expect("a cycle");
        assert!(s.seconds_until(now, 85.0, true, 7.0 * day).is_infinite());
        let every_15s = c
            .first_passage(now, 85.0, true, 7.0 * day, 15.0)
            .expect("residuals");
        assert!(
            (3.0 * 3600.0..=7.0 * 3600.0).contains(&every_15s),
            "{every_15s}"
        );
        // Fewer samples are fewer chances: later.
        let every_5m = c
            .first_passage(now, 85.0, true, 7.0 * day, 300.0)
            .expect("residuals");
        assert!(every_5m > every_15s + 12.0 * 3600.0, "{every_5m}");
        // Beyond anything the noise has reached: never.
        let far = c
            .first_passage(now, 100.0, true, 7.0 * day, 15.0)
            .expect("residuals");
        assert!(far.is_infinite(), "{far}");
    }

    #[test]
    fn a_bend_or_noise_is_not_a_cycle() {
        let mut c = Cycle::new();
        // Flat, then a leak: smooth, not periodic.
        feed(&mut c, 6.0, 60.0, |t| {
            30.0 + if t > 3.0 * 86_400.0 {
                t / 5000.0 - 3.0 * 86_400.0 / 5000.0
            } else {
                0.0
            }
        });
        assert!(c.shape().is_none());
        let mut c = Cycle::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        feed(&mut c, 6.0, 60.0, move |_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 11) as f64 / (1u64 << 53) as f64
        });
        assert!(c.shape().is_none());
    }
}
