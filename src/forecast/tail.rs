//! Tail probabilities of a number among the last `cap` numbers of its kind: the empirical rank
//! inside the data, a generalised Pareto tail fitted to the extremes beyond it (peaks over
//! threshold), so that a value past the record still gets a probability that shrinks with its
//! distance, in units of the series' own spread.

use super::window::SortedWindow;

/// Share of the window at each end the tail is fitted to.
const TAIL_FRACTION: f64 = 0.02;
/// Fewest points a tail is fitted to, however short the window.
const MIN_TAIL: usize = 4;
/// Heaviest tail shape the fit may take: a t distribution with two degrees of freedom. Heavy
/// tails (bursty counts) would otherwise be surprised by every new record.
const MAX_SHAPE: f64 = 0.5;
/// Smallest tail scale, as a fraction of the bulk's robust spread: four points at the top of a
/// short window can sit close together by chance, and a scale fitted to them alone would call the
/// next modest record a miracle.
const MIN_SCALE_OF_SPREAD: f64 = 0.25;

/// Sliding window answering "how rare is x here?" in O(log n) plus a tail fit over a few points.
#[derive(Debug, Clone)]
pub struct RankWindow {
    values: SortedWindow,
    /// How the tails are fitted.
    pub fit: TailFit,
    /// Smallest tail scale: the resolution of numbers that come in steps (0 for measurements).
    pub min_scale: f64,
}

/// How a tail beyond the window's extremes is fitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TailFit {
    /// Generalised Pareto by the method of moments, shape in [0, 0.5]: heavy tails are known.
    #[default]
    Pareto,
    /// Exponential with the mean excess as its scale: every tail is light.
    Exponential,
}

impl RankWindow {
    pub fn new(cap: usize) -> Self {
        RankWindow {
            values: SortedWindow::new(cap),
            fit: TailFit::Pareto,
            min_scale: 0.0,
        }
    }

    pub fn len(&self) -> usize {
        self.values.sorted().len()
    }

    /// Adds `x`, dropping the oldest number once the window is full. Non-finite input is ignored.
    pub fn push(&mut self, x: f64) {
        self.values.push(x);
    }

    /// The `q` quantile (0..1) of the window, None when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let n = self.values.sorted().len();
        if n == 0 {
            return None;
        }
        let i = ((q.clamp(0.0, 1.0) * (n - 1) as f64).round() as usize).min(n - 1);
        Some(self.values.sorted()[i])
    }

    /// P(X >= x) among the window's numbers, with a fitted tail beyond the top ones.
    pub fn p_upper(&self, x: f64) -> f64 {
        let n = self.values.sorted().len();
        let ge = n - self.values.sorted().partition_point(|y| *y < x);
        let rank = ((ge as f64 + 1.0) / (n as f64 + 1.0)).min(1.0);
        match self.fit_tail(true) {
            Some(t) if x > t.anchor => (t.share * t.survival(x - t.anchor)).min(rank),
            _ => rank,
        }
    }

    /// P(X <= x), the mirror image of `p_upper`.
    pub fn p_lower(&self, x: f64) -> f64 {
        let n = self.values.sorted().len();
        let le = self.values.sorted().partition_point(|y| *y <= x);
        let rank = ((le as f64 + 1.0) / (n as f64 + 1.0)).min(1.0);
        match self.fit_tail(false) {
            Some(t) if x < t.anchor => (t.share * t.survival(t.anchor - x)).min(rank),
            _ => rank,
        }
    }

    /// Twice the smaller tail: for numbers where too low is as odd as too high.
    pub fn p_two_sided(&self, x: f64) -> f64 {
        (2.0 * self.p_upper(x).min(self.p_lower(x))).min(1.0)
    }

    /// Bytes held once full.
    pub fn memory_bytes(&self) -> usize {
        self.values.memory_bytes()
    }

    /// Points in each fitted tail: 0 (ranks only) while the window is too short to fit one.
    fn tail_len(&self) -> usize {
        let n = self.values.sorted().len();
        let m = ((n as f64 * TAIL_FRACTION).ceil() as usize).max(MIN_TAIL);
        if n < 4 * MIN_TAIL {
            0
        } else {
            m
        }
    }

    /// Robust spread of the bulk (interquartile range as a normal standard deviation), or the
    /// full range over n when more than half the numbers are equal.
    fn spread(&self) -> f64 {
        let n = self.values.sorted().len();
        let iqr = self.values.sorted()[3 * n / 4] - self.values.sorted()[n / 4];
        if iqr > 0.0 {
            iqr / 1.349
        } else {
            (self.values.sorted()[n - 1] - self.values.sorted()[0]) / n as f64
        }
    }

    /// The generalised Pareto tail fitted beyond the top (`upper`) or bottom `tail_len` numbers;
    /// None while the window is too short to fit one.
    fn fit_tail(&self, upper: bool) -> Option<Tail> {
        let n = self.values.sorted().len();
        let m = self.tail_len();
        if m == 0 {
            return None;
        }
        // `excess(i)` is the i-th smallest excess over the anchor, the (m+1)-th most extreme number.
        let (anchor, tail) = if upper {
            (
                self.values.sorted()[n - m - 1],
                &self.values.sorted()[n - m..],
            )
        } else {
            (self.values.sorted()[m], &self.values.sorted()[..m])
        };
        let excess = |i: usize| {
            if upper {
                tail[i] - anchor
            } else {
                anchor - tail[m - 1 - i]
            }
        };
        let (s1, s2) = (0..m).fold((0.0, 0.0), |(a, b), i| {
            let e = excess(i);
            (a + e, b + e * e)
        });
        let mean = s1 / m as f64;
        let var = (s2 / m as f64 - mean * mean).max(0.0);
        let shape = match self.fit {
            TailFit::Pareto if var > 0.0 => (0.5 * (1.0 - mean * mean / var)).clamp(0.0, MAX_SHAPE),
            _ => 0.0,
        };
        let fitted = mean * (1.0 - shape);
        // The scale fitted to m points is uncertain by about 1/sqrt(m): take its upper end, so
        // that a tail fitted to the four points of a short window does not claim too much.
        let fitted = fitted * (1.0 + 1.0 / (m as f64).sqrt());
        let scale = fitted
            .max(self.min_scale)
            .max(MIN_SCALE_OF_SPREAD * self.spread())
            .max(1e-9 * anchor.abs())
            .max(f64::MIN_POSITIVE);
        Some(Tail {
            anchor,
            share: m as f64 / (n as f64 + 1.0),
            shape,
            scale,
        })
    }
}

/// A fitted tail: beyond `anchor`, a share `share` of the window, spread as a generalised Pareto.
#[derive(Debug, Clone, Copy)]
struct Tail {
    anchor: f64,
    share: f64,
    shape: f64,
    scale: f64,
}

impl Tail {
    /// P(excess > over) for an excess beyond the anchor.
    fn survival(&self, over: f64) -> f64 {
        let s = if self.shape < 1e-6 {
            (-over / self.scale).exp()
        } else {
            (1.0 + self.shape * over / self.scale).powf(-1.0 / self.shape)
        };
        if s.is_finite() {
            s.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_inside_the_data_and_a_shrinking_tail_beyond_it() {
        let mut w = RankWindow::new(1000);
        for i in 0..1000 {
            w.push(f64::from(i));
        }
        assert!((w.p_upper(500.0) - 501.0 / 1001.0).abs() < 1e-12);
        assert!((w.p_lower(9.0) - 11.0 / 1001.0).abs() < 1e-12);
        let a = w.p_upper(1000.0);
        let b = w.p_upper(5000.0);
        assert!(b < a && a <= 1.0 / 1001.0, "{a} {b}");
        assert!(w.p_lower(-2000.0) < 1.0 / 1001.0);
        assert!(w.p_two_sided(500.0) <= 1.0);
    }

    #[test]
    fn window_forgets_the_oldest_and_ignores_nan() {
        let mut w = RankWindow::new(3);
        for x in [5.0, f64::NAN, 1.0, 2.0, 3.0] {
            w.push(x);
        }
        assert_eq!(w.len(), 3);
        assert_eq!(w.quantile(1.0), Some(3.0));
        assert_eq!(w.quantile(0.0), Some(1.0));
    }

    #[test]
    fn a_tight_top_does_not_make_a_small_record_a_miracle() {
        // Twenty numbers, the top four nearly equal: a record by one spread is unusual, not 1e-9.
        let mut w = RankWindow::new(100);
        for x in [
            0.0, 1.0, -1.0, 0.5, -0.5, 0.2, -0.2, 0.8, -0.8, 1.2, -1.2, 0.3, -0.3, 0.1, -0.1, 0.6,
            2.0, 2.0001, 2.0002, 2.0003,
        ] {
            w.push(x);
        }
        let p = w.p_upper(3.0);
        assert!(p > 1e-4, "{p}");
    }
}
