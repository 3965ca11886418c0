//! Out-of-sample bookkeeping for one forecast horizon: every served forecast is remembered until
//! its target time arrives, then each model's error updates that model's standing at this
//! horizon (which model serves next), and the served forecast's error joins the window the 80 %
//! interval is read from. Nothing is fitted: the band is the empirical 10th and 90th percentile
//! of this series' own recent errors at this horizon.

use std::collections::VecDeque;

use super::residuals::Residuals;

/// Candidate models, in tie-break order (trend models first so a perfect line keeps its slope).
pub const MODELS: usize = 8;
/// Forecasts awaiting their target; beyond this (very long horizons at fast sampling) new ones
/// are served but not scored until the queue drains.
const MAX_PENDING: usize = 4096;
/// Weight of the newest error in each model's running mean absolute error.
const ERROR_DECAY: f64 = 1.0 / 64.0;
/// Errors a model needs at this horizon before it may serve.
const MIN_SCORED: u32 = 5;
/// The band's quantiles: an 80 % central interval.
const LOWER_Q: f64 = 0.1;
const UPPER_Q: f64 = 0.9;

#[derive(Debug, Clone)]
struct Pending {
    at: f64,
    served: f64,
    preds: [f64; MODELS],
}

#[derive(Debug, Clone)]
pub struct Horizon {
    pending: VecDeque<Pending>,
    err: [f64; MODELS],
    scored: [u32; MODELS],
    /// Recent served errors the interval is read from.
    residuals: Residuals,
}

impl Default for Horizon {
    fn default() -> Self {
        Horizon {
            pending: VecDeque::new(),
            err: [0.0; MODELS],
            scored: [0; MODELS],
            residuals: Residuals::default(),
        }
    }
}

impl Horizon {
    /// Scores every pending forecast whose target is at or before `t` against `value`.
    pub fn settle(&mut self, t: f64, value: f64) {
        while self.pending.front().is_some_and(|p| p.at <= t) {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            for ((err, n), pred) in self.err.iter_mut().zip(&mut self.scored).zip(p.preds) {
                let e = (pred - value).abs();
                if e.is_finite() {
                    // The first error stands alone rather than being averaged with zero.
                    *err = if *n == 0 {
                        e
                    } else {
                        *err + ERROR_DECAY * (e - *err)
                    };
                    *n = n.saturating_add(1);
                }
            }
            let r = value - p.served;
            if r.is_finite() {
                self.push_residual(r);
            }
        }
    }

    pub fn push_residual(&mut self, r: f64) {
        self.residuals.push(r);
    }

    pub fn residuals(&self) -> &Residuals {
        &self.residuals
    }

    /// The model with the lowest recent error at this horizon among those with a forecast now.
    pub fn best(&self, preds: &[f64; MODELS]) -> Option<usize> {
        (0..MODELS)
            .filter(|&m| preds[m].is_finite() && self.scored[m] >= MIN_SCORED)
            .min_by(|&a, &b| self.err[a].total_cmp(&self.err[b]).then(a.cmp(&b)))
    }

    /// Remembers a served forecast for scoring when `at` arrives.
    pub fn record(&mut self, at: f64, served: f64, preds: [f64; MODELS]) {
        let after_last = self.pending.back().is_none_or(|p| at >= p.at);
        if at.is_finite() && served.is_finite() && after_last && self.pending.len() < MAX_PENDING {
            self.pending.push_back(Pending { at, served, preds });
        }
    }

    /// (lower, upper) offsets of the 80 % band from the served forecast.
    pub fn band(&self) -> Option<(f64, f64)> {
        let lo = self.residuals.quantile(LOWER_Q)?;
        let hi = self.residuals.quantile(UPPER_Q)?;
        Some((lo.min(0.0), hi.max(0.0)))
    }

    /// Recent mean absolute error of each model at this horizon (NaN where not yet scored).
    pub fn errors(&self) -> [f64; MODELS] {
        let mut e = self.err;
        for (e, &n) in e.iter_mut().zip(&self.scored) {
            if n == 0 {
                *e = f64::NAN;
            }
        }
        e
    }

    /// Bytes held, for the memory figure.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.pending.capacity() * std::mem::size_of::<Pending>()
            + self.residuals.memory_bytes()
    }
}
