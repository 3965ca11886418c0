//! Holt's level-and-trend exponential smoothing with time constants in seconds, so irregular sampling works.

/// Time-aware Holt smoother.
///
/// The smoothing weights are `1 - exp(-dt / tau)`, which makes two half-steps equivalent to one
/// full step and turns a long gap into a near-complete reset instead of a tiny nudge.
#[derive(Debug, Clone)]
pub struct Holt {
    tau_level: f64,
    tau_trend: f64,
    first: Option<(f64, f64)>,
    level: f64,
    trend: f64,
    t_last: f64,
    ready: bool,
}

impl Holt {
    pub fn new(tau_level: f64, tau_trend: f64) -> Self {
        Holt {
            tau_level: tau_level.max(f64::MIN_POSITIVE),
            tau_trend: tau_trend.max(f64::MIN_POSITIVE),
            first: None,
            level: 0.0,
            trend: 0.0,
            t_last: f64::NEG_INFINITY,
            ready: false,
        }
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Caller guarantees finite values and non-decreasing time.
    pub fn push(&mut self, t: f64, v: f64) {
        if !self.ready {
            match self.first {
                None => self.first = Some((t, v)),
                Some((t1, v1)) => {
                    if t > t1 {
                        // Starting from the secant makes a straight line exact from sample two on.
                        let slope = (v - v1) / (t - t1);
                        if slope.is_finite() {
                            self.level = v;
                            self.trend = slope;
                            self.t_last = t;
                            self.ready = true;
                        }
                    } else {
                        self.first = Some((t, v));
                    }
                }
            }
            return;
        }
        let dt = t - self.t_last;
        if dt.is_nan() || dt < 0.0 {
            return;
        }
        let predicted = self.level + self.trend * dt;
        if dt == 0.0 {
            // A repeated timestamp carries no slope information; let it pull the level only.
            self.level += 0.5 * (v - self.level);
            return;
        }
        let a = 1.0 - (-dt / self.tau_level).exp();
        let b = 1.0 - (-dt / self.tau_trend).exp();
        let new_level = predicted + a * (v - predicted);
        let observed_slope = (new_level - self.level) / dt;
        let new_trend = self.trend + b * (observed_slope - self.trend);
        if new_level.is_finite() && new_trend.is_finite() {
            self.level = new_level;
            self.trend = new_trend;
            self.t_last = t;
        }
    }

    pub fn forecast(&self, at: f64) -> Option<f64> {
        if !self.ready {
            return None;
        }
        let p = self.level + self.trend * (at - self.t_last);
        p.is_finite().then_some(p)
    }

    /// (time, level, slope per second) of the current state.
    pub fn line(&self) -> Option<(f64, f64, f64)> {
        self.ready.then_some((self.t_last, self.level, self.trend))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_series_is_exact_with_irregular_steps() {
        let steps = [1.0, 0.5, 7.0, 1.0, 1000.0, 3.0, 0.001, 60.0];
        let mut h = Holt::new(10.0, 50.0);
        let mut t = 1.7e9;
        for i in 0..200 {
            h.push(t, 3.0 + 0.25 * (t - 1.7e9));
            t += steps[i % steps.len()];
        }
        let got = h.forecast(t + 500.0).unwrap();
        let want = 3.0 + 0.25 * (t + 500.0 - 1.7e9);
        assert!((got - want).abs() <= 1e-6 * want.abs(), "{got} vs {want}");
    }

    #[test]
    fn needs_two_distinct_times() {
        let mut h = Holt::new(10.0, 10.0);
        h.push(1.0, 1.0);
        h.push(1.0, 2.0);
        assert!(h.forecast(2.0).is_none());
        h.push(2.0, 3.0);
        assert_eq!(h.forecast(3.0), Some(4.0));
    }

    #[test]
    fn adapts_to_level_shift() {
        let mut h = Holt::new(5.0, 50.0);
        for i in 0..100 {
            h.push(i as f64, if i < 50 { 0.0 } else { 10.0 });
        }
        let f = h.forecast(100.0).unwrap();
        assert!((f - 10.0).abs() < 2.0, "{f}");
    }
}
