//! Ordinary least-squares line over a sliding time window on real timestamps, like Prometheus' `predict_linear`.

use std::collections::VecDeque;

/// Least-squares trend over the samples of the last `window` seconds.
///
/// Sums are kept relative to an anchor sample so that unix-epoch sized timestamps do not
/// swamp the centred sums with cancellation error, and they are rebuilt from the buffer
/// every so often so that add/subtract drift cannot accumulate over a long stream.
#[derive(Debug, Clone)]
pub struct LinearTrend {
    samples: VecDeque<(f64, f64)>,
    window: f64,
    cap: usize,
    t0: f64,
    v0: f64,
    sx: f64,
    sy: f64,
    sxx: f64,
    sxy: f64,
    /// Removals since the sums were last rebuilt; bounds the drift of the running sums.
    removals: usize,
}

impl LinearTrend {
    pub fn new(window: f64, cap: usize) -> Self {
        LinearTrend {
            samples: VecDeque::new(),
            window,
            cap: cap.max(4),
            t0: 0.0,
            v0: 0.0,
            sx: 0.0,
            sy: 0.0,
            sxx: 0.0,
            sxy: 0.0,
            removals: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn last_time(&self) -> Option<f64> {
        self.samples.back().map(|s| s.0)
    }

    /// Caller guarantees finite values and non-decreasing time.
    pub fn push(&mut self, t: f64, v: f64) {
        if self.samples.is_empty() {
            self.t0 = t;
            self.v0 = v;
        }
        self.samples.push_back((t, v));
        self.add(t, v, 1.0);
        let horizon = t - self.window;
        while self.samples.len() > 2 {
            match self.samples.front() {
                Some(&(ft, fv)) if ft < horizon => {
                    self.samples.pop_front();
                    self.add(ft, fv, -1.0);
                    self.removals += 1;
                }
                _ => break,
            }
        }
        if self.samples.len() > self.cap {
            self.thin();
        }
        if self.removals > self.samples.len() {
            self.rebuild();
        }
    }

    /// Halves the density uniformly (keeping the newest sample) so that memory stays bounded
    /// while the fit still spans the whole window.
    fn thin(&mut self) {
        let n = self.samples.len();
        let kept: VecDeque<(f64, f64)> = self
            .samples
            .iter()
            .enumerate()
            .filter(|(i, _)| (n - 1 - i).is_multiple_of(2))
            .map(|(_, s)| *s)
            .collect();
        self.samples = kept;
        self.rebuild();
    }

    fn rebuild(&mut self) {
        self.sx = 0.0;
        self.sy = 0.0;
        self.sxx = 0.0;
        self.sxy = 0.0;
        self.removals = 0;
        if let Some(&(t, v)) = self.samples.front() {
            self.t0 = t;
            self.v0 = v;
        }
        let samples = std::mem::take(&mut self.samples);
        for &(t, v) in &samples {
            self.add(t, v, 1.0);
        }
        self.samples = samples;
    }

    fn add(&mut self, t: f64, v: f64, sign: f64) {
        let x = t - self.t0;
        let y = v - self.v0;
        self.sx += sign * x;
        self.sy += sign * y;
        self.sxx += sign * x * x;
        self.sxy += sign * x * y;
    }

    /// The fitted line as (centroid time, centroid value, slope per second); None without two distinct timestamps.
    pub fn line(&self) -> Option<(f64, f64, f64)> {
        let (first, last) = (self.samples.front()?, self.samples.back()?);
        if last.0 <= first.0 {
            return None;
        }
        let n = self.samples.len() as f64;
        let mx = self.sx / n;
        let my = self.sy / n;
        let cxx = self.sxx - self.sx * mx;
        let cxy = self.sxy - self.sx * my;
        // Relative test: the spread must be meaningful next to the magnitude of the sums.
        if cxx.is_nan() || cxx <= 1e-12 * self.sxx.abs().max(f64::MIN_POSITIVE) {
            return None;
        }
        let slope = cxy / cxx;
        if !slope.is_finite() {
            return None;
        }
        // Line through the centroid: (t0 + mx, v0 + my).
        Some((self.t0 + mx, self.v0 + my, slope))
    }

    pub fn forecast(&self, at: f64) -> Option<f64> {
        let (ct, cv, slope) = self.line()?;
        let p = cv + slope * (at - ct);
        p.is_finite().then_some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn exact_line_table() {
        // (t0, step, slope, intercept, n, at)
        let cases = [
            (0.0, 1.0, 2.0, 5.0, 10, 20.0),
            (1.7e9, 60.0, 0.5, -3.0, 500, 1.7e9 + 60.0 * 600.0),
            (1.7e9, 15.0, -1e-3, 1e6, 5000, 1.7e9 + 15.0 * 9000.0),
            (-100.0, 0.25, 0.0, 42.0, 3, 7.0),
        ];
        for (t0, step, slope, icpt, n, at) in cases {
            let mut lt = LinearTrend::new(1e12, 4096);
            for i in 0..n {
                let t = t0 + step * i as f64;
                lt.push(t, icpt + slope * (t - t0));
            }
            let want = icpt + slope * (at - t0);
            let got = lt.forecast(at).unwrap();
            assert!(close(got, want), "{got} vs {want}");
            assert!(lt.len() <= 4096);
        }
    }

    #[test]
    fn needs_two_distinct_times() {
        let mut lt = LinearTrend::new(100.0, 16);
        assert!(lt.forecast(1.0).is_none());
        lt.push(5.0, 1.0);
        lt.push(5.0, 2.0);
        assert!(lt.forecast(6.0).is_none());
        lt.push(6.0, 3.0);
        assert!(lt.forecast(7.0).is_some());
    }

    #[test]
    fn window_evicts_old_samples() {
        let mut lt = LinearTrend::new(10.0, 4096);
        for i in 0..100 {
            // Old regime slope 1, new regime slope -1 from t=50.
            let t = i as f64;
            let v = if i < 50 { t } else { 100.0 - t };
            lt.push(t, v);
        }
        assert!(close(lt.forecast(110.0).unwrap(), -10.0));
        assert!(lt.len() <= 12);
    }
}
