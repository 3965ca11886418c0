//! Daily profile: the typical value at each moment of the day, learnt per day so that the
//! sampling rate does not change how many days it remembers.

/// Ops metrics mostly follow the daily cycle of their users.
pub const DAY_SECONDS: f64 = 86_400.0;
/// Bins of the profile: 5 minutes each.
const BINS: usize = 288;
const BIN_SECONDS: f64 = DAY_SECONDS / BINS as f64;
/// Weight of the newest day in a bin of the smoothed profile: it remembers about four days.
pub const SMOOTH_DAY_WEIGHT: f64 = 0.25;

#[derive(Debug, Clone, Copy, Default)]
struct Bin {
    /// Profile from completed visits (previous days); NaN until one visit finished.
    learnt: f64,
    visit: Visit,
}

/// A bin's visit in progress: the day it is on, and the sum and count of its values.
#[derive(Debug, Clone, Copy, Default)]
struct Visit {
    day: i64,
    sum: f64,
    n: u32,
}

impl Visit {
    /// Adds `v`, seen on `day`. When it is the first of a new day, returns the mean of the
    /// visit that ended.
    fn add(&mut self, day: i64, v: f64) -> Option<f64> {
        let ended = (self.n > 0 && self.day != day).then(|| self.sum / f64::from(self.n));
        if ended.is_some() {
            self.n = 0;
            self.sum = 0.0;
        }
        if self.n == 0 {
            self.day = day;
        }
        self.sum += v;
        self.n = self.n.saturating_add(1);
        if !self.sum.is_finite() {
            // Overflowing sums restart the visit rather than poison the profile.
            self.sum = v;
            self.n = 1;
        }
        ended
    }
}

/// Daily profile of one series.
#[derive(Debug, Clone)]
pub struct DailyProfile {
    bins: Box<[Bin]>,
    /// Weight of the newest day: 1 = exactly yesterday (the seasonal naive), less = smoothed.
    day_weight: f64,
}

impl Default for DailyProfile {
    fn default() -> Self {
        Self::new()
    }
}

fn locate(t: f64) -> Option<(usize, i64)> {
    if !t.is_finite() {
        return None;
    }
    let day = (t / DAY_SECONDS).floor();
    let phase = t - day * DAY_SECONDS;
    let bin = ((phase / BIN_SECONDS) as usize).min(BINS - 1);
    (day.abs() < 1e15).then_some((bin, day as i64))
}

impl DailyProfile {
    pub fn new() -> Self {
        Self::with_weight(SMOOTH_DAY_WEIGHT)
    }

    pub fn with_weight(day_weight: f64) -> Self {
        DailyProfile {
            day_weight: day_weight.clamp(0.01, 1.0),
            bins: vec![
                Bin {
                    learnt: f64::NAN,
                    ..Bin::default()
                };
                BINS
            ]
            .into_boxed_slice(),
        }
    }

    pub fn push(&mut self, t: f64, v: f64) {
        let Some((i, day)) = locate(t) else { return };
        if !v.is_finite() {
            return;
        }
        let b = &mut self.bins[i];
        if let Some(visit) = b.visit.add(day, v) {
            b.learnt = if b.learnt.is_finite() {
                b.learnt + self.day_weight * (visit - b.learnt)
            } else {
                visit
            };
        }
    }

    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.bins.len() * std::mem::size_of::<Bin>()
    }

    /// The learnt typical value at time `t`'s moment of the day (from previous days only).
    pub fn at(&self, t: f64) -> Option<f64> {
        let (i, _) = locate(t)?;
        let v = self.bins[i].learnt;
        v.is_finite().then_some(v)
    }
}

/// Days a `DailyMedian` takes the median of.
const MEDIAN_DAYS: usize = 3;

#[derive(Debug, Clone, Copy, Default)]
struct MedianBin {
    /// Means of the last `MEDIAN_DAYS` completed visits, oldest first, and how many there are.
    days: [f64; MEDIAN_DAYS],
    filled: usize,
    visit: Visit,
}

impl MedianBin {
    /// Takes the mean of a visit that ended as the newest day.
    fn record(&mut self, visit: f64) {
        if self.filled == MEDIAN_DAYS {
            self.days.rotate_left(1);
            self.days[MEDIAN_DAYS - 1] = visit;
        } else {
            self.days[self.filled] = visit;
            self.filled += 1;
        }
    }

    /// The median of the days kept, once there are three.
    fn median(&self) -> Option<f64> {
        if self.filled < MEDIAN_DAYS {
            return None;
        }
        let [a, c, d] = self.days;
        let m = a.max(c).min(a.min(c).max(d));
        m.is_finite().then_some(m)
    }
}

/// The typical value at each moment of the day as the median of the last three days: one odd
/// day (an incident, a holiday) does not move it, so it does not echo a day later, and on a
/// trending series it lags by a steady two days rather than by a smoothing's changing mix.
#[derive(Debug, Clone)]
pub struct DailyMedian {
    bins: Box<[MedianBin]>,
}

impl Default for DailyMedian {
    fn default() -> Self {
        Self::new()
    }
}

impl DailyMedian {
    pub fn new() -> Self {
        DailyMedian {
            bins: vec![MedianBin::default(); BINS].into_boxed_slice(),
        }
    }

    pub fn push(&mut self, t: f64, v: f64) {
        let Some((i, day)) = locate(t) else { return };
        if !v.is_finite() {
            return;
        }
        let b = &mut self.bins[i];
        if let Some(visit) = b.visit.add(day, v) {
            b.record(visit);
        }
    }

    /// The median of the three days before `t`'s day at its moment of the day, once three were
    /// seen, for a sample at `t` about to be pushed (times only move forward): a visit of the
    /// bin on an earlier day than `t`'s has ended even though no sample of `t`'s day was pushed
    /// into the bin yet, so it counts as a day here. Counting only visits a later push closed
    /// would give the first sample of each bin and day a median one day older, which on a
    /// trending series is off by a day's growth for one sample in every bin's worth.
    pub fn before(&self, t: f64) -> Option<f64> {
        let (i, day) = locate(t)?;
        let mut b = self.bins[i];
        if b.visit.n > 0 && b.visit.day < day {
            b.record(b.visit.sum / f64::from(b.visit.n));
        }
        b.median()
    }

    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.bins.len() * std::mem::size_of::<MedianBin>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_daily_square_wave_after_one_day() {
        let mut p = DailyProfile::new();
        let v = |t: f64| {
            if (t % DAY_SECONDS) < 43_200.0 {
                10.0
            } else {
                50.0
            }
        };
        assert_eq!(p.at(100.0), None);
        let mut t = 0.0;
        while t < 2.0 * DAY_SECONDS {
            p.push(t, v(t));
            t += 60.0;
        }
        assert_eq!(p.at(3.0 * DAY_SECONDS + 3600.0), Some(10.0));
        assert_eq!(p.at(3.0 * DAY_SECONDS + 50_000.0), Some(50.0));
        assert_eq!(p.at(f64::NAN), None);
        p.push(f64::INFINITY, 1.0);
        p.push(1e300, 1.0);
        p.push(5.0, f64::NAN);
    }

    #[test]
    fn daily_median_ignores_one_odd_day() {
        let mut p = DailyMedian::new();
        let mut t = 0.0;
        // Days 0..4 at 10, day 2 at 500 (an incident); the median of days 1, 2, 3 is 10.
        while t < 4.0 * DAY_SECONDS {
            let odd = (2.0 * DAY_SECONDS..3.0 * DAY_SECONDS).contains(&t);
            p.push(t, if odd { 500.0 } else { 10.0 });
            // A day later at this moment, the bin has seen days 0..=day(t).
            if t < 2.0 * DAY_SECONDS {
                assert_eq!(p.before(t + DAY_SECONDS), None, "three days first");
            } else if t < 3.0 * DAY_SECONDS {
                assert_eq!(
                    p.before(t + DAY_SECONDS),
                    Some(10.0),
                    "the odd day is outvoted"
                );
            }
            t += 60.0;
        }
        assert_eq!(p.before(4.0 * DAY_SECONDS + 3600.0), Some(10.0));
    }

    #[test]
    fn daily_median_before_a_sample_counts_yesterday_on_a_trend() {
        // One unit a day, sampled every minute: before each sample, the median of the three
        // days before it is the day before yesterday, on the first sample of a bin as on the rest.
        let mut p = DailyMedian::new();
        let mut t = 0.0;
        while t < 6.0 * DAY_SECONDS {
            if t >= 4.0 * DAY_SECONDS {
                let day = (t / DAY_SECONDS).floor();
                let expected = (day - 2.0) * DAY_SECONDS + (t - day * DAY_SECONDS);
                let got = p.before(t).expect("three days seen");
                assert!((got - expected / DAY_SECONDS).abs() < 0.01, "{t}: {got}");
            }
            p.push(t, t / DAY_SECONDS);
            t += 60.0;
        }
    }
}
