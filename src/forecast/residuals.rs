//! The recent residuals of a series around what was expected of it, kept in arrival order and
//! sorted: the interval of a forecast is read from their quantiles, and a breach is timed as
//! the median first passage of the expected path plus residuals drawn like them.

use super::window::SortedWindow;

/// Residuals a window holds.
pub const CAPACITY: usize = 512;
/// Residuals needed before they say anything.
pub const MIN_RESIDUALS: usize = 20;

/// Where a breach path is at one moment: what it is expected to be there.
pub type Path<'a> = &'a dyn Fn(f64) -> f64;
/// Seconds from `t` until the path first reaches `target` (past it from below for a breach
/// above, from above for one below) within `max` seconds; infinity when it does not.
pub type Reach<'a> = &'a dyn Fn(f64, f64, f64) -> f64;

#[derive(Debug, Clone)]
pub struct Residuals {
    window: SortedWindow,
}

impl Default for Residuals {
    fn default() -> Self {
        Residuals {
            window: SortedWindow::new(CAPACITY),
        }
    }
}

impl Residuals {
    pub fn push(&mut self, r: f64) {
        self.window.push(r);
    }

    /// The largest residual less the smallest, once enough are known.
    pub fn spread(&self) -> Option<f64> {
        if self.window.sorted().len() < MIN_RESIDUALS {
            return None;
        }
        Some(self.window.sorted()[self.window.sorted().len() - 1] - self.window.sorted()[0])
    }

    pub fn clear(&mut self) {
        self.window.clear();
    }

    /// The `q` quantile, interpolated between neighbours; None while too few are known.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.window.sorted().len();
        if n < MIN_RESIDUALS {
            return None;
        }
        let x = q.clamp(0.0, 1.0) * (n - 1) as f64;
        let (i, f) = (x.floor() as usize, x - x.floor());
        let j = (i + 1).min(n - 1);
        let v = self.window.sorted()[i] + f * (self.window.sorted()[j] - self.window.sorted()[i]);
        v.is_finite().then_some(v)
    }

    /// Bytes held once full.
    pub fn memory_bytes(&self) -> usize {
        self.window.memory_bytes()
    }

    /// (1 - ρ) / (1 + ρ) for the lag-one autocorrelation ρ of the residuals in arrival order
    /// (clamped to [0, 0.99]): the share of samples that count as independent tries.
    fn independent_share(&self) -> f64 {
        let n = self.window.len();
        if n < 3 {
            return 1.0;
        }
        let mean = self.window.arrivals().sum::<f64>() / n as f64;
        let (mut lagged, mut square) = (0.0, 0.0);
        let mut previous: Option<f64> = None;
        for r in self.window.arrivals() {
            let d = r - mean;
            if let Some(p) = previous {
                lagged += p * d;
            }
            square += d * d;
            previous = Some(d);
        }
        let rho = if square > 0.0 {
            (lagged / square).clamp(0.0, 0.99)
        } else {
            0.0
        };
        (1.0 - rho) / (1.0 + rho)
    }

    /// Seconds from `now` until a sample has as likely as not passed `threshold` (the median
    /// first passage), within `max`; infinity when it does not get there. Samples come every
    /// `interval` seconds, each the `path` plus a residual drawn like these: where the path
    /// comes within reach of the threshold each sample has the share of residuals that would
    /// carry it over as its chance, and the chances add up over the samples to come, counted
    /// as fewer when residuals follow each other. A noisy series so breaches as early as its
    /// noise makes likely, a quiet one when its path does. The path is walked `step` seconds
    /// at a time where it is within reach; `reach` jumps over the stretches where it is not.
    /// None while too few residuals are known.
    #[allow(clippy::too_many_arguments)]
    pub fn first_passage(
        &self,
        path: Path,
        reach: Reach,
        now: f64,
        threshold: f64,
        above: bool,
        max: f64,
        interval: f64,
        step: f64,
    ) -> Option<f64> {
        let n = self.window.sorted().len();
        let unusable = |x: f64| x.is_nan() || x <= 0.0;
        if n < MIN_RESIDUALS || unusable(interval) || unusable(step) || threshold.is_nan() {
            return None;
        }
        if max.is_nan() {
            return Some(f64::INFINITY);
        }
        let end = now + max.max(0.0);
        if end + step <= end {
            // Steps too small to move time on at this magnitude would never end.
            return None;
        }
        let sorted = &self.window.sorted();
        // The share of residuals that carry a sample `gap` short of the threshold past it.
        let beyond = |gap: f64| -> f64 {
            let i = if above {
                n - sorted.partition_point(|r| *r < gap)
            } else {
                sorted.partition_point(|r| *r <= gap)
            };
            i as f64 / n as f64
        };
        let farthest = if above { sorted[n - 1] } else { sorted[0] };
        let per_step = step / interval * self.independent_share();
        let mut hazard = 0.0;
        let mut t = now;
        while t <= end {
            // Jump to where a residual as large as any seen could carry a sample past.
            let wait = reach(t, threshold - farthest, end - t);
            if !wait.is_finite() {
                break;
            }
            t += wait;
            while t <= end {
                let expected = path(t);
                if !expected.is_finite() {
                    break;
                }
                let q = beyond(threshold - expected);
                if q >= 1.0 {
                    return Some(t - now);
                }
                if q <= 0.0 {
                    // Out of reach again (or at its edge, where rounding can disagree with
                    // the jump): move on, so that every turn makes progress.
                    t += step;
                    break;
                }
                let h = -(1.0 - q).ln() * per_step;
                if hazard + h >= std::f64::consts::LN_2 {
                    let part = (std::f64::consts::LN_2 - hazard) / h;
                    return Some((t - now + part * step).min(max));
                }
                hazard += h;
                t += step;
            }
        }
        Some(f64::INFINITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(rs: impl IntoIterator<Item = f64>) -> Residuals {
        let mut w = Residuals::default();
        for r in rs {
            w.push(r);
        }
        w
    }

    /// A line rising 1 a second from 0 at t = 0, and when it reaches a target.
    fn line(t: f64) -> f64 {
        t
    }
    fn line_reach(t: f64, target: f64, max: f64) -> f64 {
        let wait = (target - t).max(0.0);
        if wait <= max {
            wait
        } else {
            f64::INFINITY
        }
    }

    #[test]
    fn quantiles_interpolate_and_need_twenty() {
        assert_eq!(filled((0..19).map(f64::from)).quantile(0.5), None);
        let w = filled((0..21).map(f64::from));
        assert_eq!(w.quantile(0.5), Some(10.0));
        assert_eq!(w.quantile(0.125), Some(2.5));
        // Oldest out first once full.
        let w = filled((0..CAPACITY as i32 + 10).map(f64::from));
        assert_eq!(w.quantile(0.0), Some(10.0));
    }

    #[test]
    fn without_noise_the_passage_is_the_path_crossing() {
        let w = filled(std::iter::repeat_n(0.0, 40));
        let got = w.first_passage(&line, &line_reach, 0.0, 100.0, true, 1e6, 1.0, 1.0);
        assert_eq!(got, Some(100.0));
        let never = w.first_passage(&line, &line_reach, 0.0, 100.0, true, 50.0, 1.0, 1.0);
        assert_eq!(never, Some(f64::INFINITY));
    }

    #[test]
    fn noise_brings_the_passage_forward_more_the_more_samples_and_the_less_they_follow() {
        // Residuals alternating -5 and +5: independent-looking, half of them carry 5 over.
        let alternating = filled((0..100).map(|i| if i % 2 == 0 { -5.0 } else { 5.0 }));
        let often = alternating.first_passage(&line, &line_reach, 0.0, 100.0, true, 1e6, 1.0, 1.0);
        let rarely =
            alternating.first_passage(&line, &line_reach, 0.0, 100.0, true, 1e6, 60.0, 1.0);
        let (often, rarely) = (often.unwrap(), rarely.unwrap());
        assert!((95.0..=96.0).contains(&often), "{often}");
        assert!(rarely > often + 2.0 && rarely <= 105.0, "{rarely}");
        // The same residuals in two long runs: barely one independent try per run.
        let runs = filled((0..100).map(|i| if i < 50 { -5.0 } else { 5.0 }));
        let slow = runs.first_passage(&line, &line_reach, 0.0, 100.0, true, 1e6, 1.0, 1.0);
        assert!(slow.unwrap() > often + 2.0, "{slow:?}");
    }

    #[test]
    fn too_few_residuals_or_a_bad_interval_give_none() {
        let w = filled([1.0; 10]);
        assert_eq!(
            w.first_passage(&line, &line_reach, 0.0, 9.0, true, 1e3, 1.0, 1.0),
            None
        );
        let w = filled([1.0; 30]);
        for bad in [0.0, -1.0, f64::NAN] {
            assert_eq!(
                w.first_passage(&line, &line_reach, 0.0, 9.0, true, 1e3, bad, 1.0),
                None
            );
        }
        // A step too small to move a unix time on would never finish: refused, not looped.
        let far = |t: f64| t - 1.7e9;
        let far_reach = |t: f64, target: f64, max: f64| line_reach(t - 1.7e9, target, max);
        assert_eq!(
            w.first_passage(&far, &far_reach, 1.7e9, 9.0, true, 1e3, 1.0, 1e-9),
            None
        );
    }
}
