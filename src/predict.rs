//! Live predictions: each configured prediction follows one measurement of one check through
//! the forecaster and the anomaly detector (the same code `medic detect` runs). Pure: sample
//! times are arguments.

use std::sync::Arc;

use crate::checks::{Measure, Measurement};
use crate::config::{Breach, PredictionSpec};
use crate::forecast::{AnomalyDetector, Direction, Forecaster};

/// What a prediction says after its latest sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub name: String,
    pub check: String,
    pub measurement: String,
    /// Unix seconds of the latest sample.
    pub at: f64,
    pub value: f64,
    pub anomaly_score: f64,
    /// (horizon as written, forecast of the value that far ahead), when the model is ready.
    pub forecasts: Vec<(String, Option<f64>)>,
    /// (horizon as written, 80 % interval (lower, upper) of that forecast), once enough of the
    /// forecast's own errors at that horizon were seen.
    pub intervals: Vec<(String, Option<(f64, f64)>)>,
    /// Seconds until the forecast crosses the threshold: 0 when already past it, +Inf when not
    /// within `max_horizon`; `None` without a threshold.
    pub breach_seconds: Option<f64>,
    pub threshold: Option<f64>,
}

/// Seconds from `now` until the series crosses `threshold`: 0 when already past it, +Inf when
/// not within `max_horizon_seconds`, never NaN. "Crosses" is the median first passage of a
/// sample: the expected path (a found cycle or sawtooth, else the forecast line) plus residuals
/// like the series' recent ones (`Residuals::first_passage`). The live gauge and `medic detect
/// --breach-above/--breach-below` both call this, so they cannot disagree.
pub fn breach_seconds(
    forecaster: &Forecaster,
    now: f64,
    threshold: f64,
    direction: Direction,
    max_horizon_seconds: f64,
) -> f64 {
    let seconds = forecaster
        // A series with a cycle or periodic cleanups breaches at a peak, before its trend does.
        .cycle_breach(now, threshold, direction, max_horizon_seconds)
        .or_else(|| forecaster.line_breach(now, threshold, direction, max_horizon_seconds))
        .unwrap_or_else(|| {
            // Too few residuals, or noise too small to carry a sample past sooner than the
            // line's next step: the line is aimed at the threshold less the upper (lower) end
            // of the samples' 80 % band.
            let (lo, hi) = forecaster.noise_band().unwrap_or((0.0, 0.0));
            let target = match direction {
                Direction::Above => threshold - hi,
                Direction::Below => threshold - lo,
            };
            let target = if target.is_finite() {
                target
            } else {
                threshold
            };
            forecaster.time_to_breach(now, target, direction, max_horizon_seconds)
        });
    if seconds.is_nan() || seconds > max_horizon_seconds {
        f64::INFINITY
    } else {
        seconds.max(0.0)
    }
}

pub struct Predictor {
    pub spec: Arc<PredictionSpec>,
    forecaster: Forecaster,
    detector: AnomalyDetector,
    last: Option<Prediction>,
    /// The newest samples (unix seconds, value), oldest first: what the status page draws
    /// behind the forecast. At most [`SERIES_KEPT`], 16 bytes each.
    series: std::collections::VecDeque<(f64, f64)>,
}

/// Samples a prediction keeps for the status page's chart.
pub const SERIES_KEPT: usize = 120;

impl Predictor {
    pub fn new(spec: Arc<PredictionSpec>) -> Self {
        Predictor {
            forecaster: Forecaster::new(spec.window.as_secs_f64()),
            detector: AnomalyDetector::new(),
            spec,
            last: None,
            series: std::collections::VecDeque::new(),
        }
    }

    /// The value this prediction follows among a probe's measurements.
    /// Every probe has its duration; the rest are the probe's own list.
    pub fn pick(&self, measurements: &[Measurement], duration_seconds: f64) -> Option<f64> {
        let wanted = &self.spec.measure;
        let value = match wanted {
            Measure::Duration => Some(duration_seconds),
            _ => measurements
                .iter()
                .find(|m| m.measure.same_as(wanted))
                .map(|m| m.value),
        };
        value.filter(|v| v.is_finite())
    }

    /// Feeds one sample taken at `t` (unix seconds).
    pub fn observe(&mut self, t: f64, value: f64) -> &Prediction {
        self.forecaster.observe(t, value);
        if self.series.len() >= SERIES_KEPT {
            self.series.pop_front();
        }
        self.series.push_back((t, value));
        let score = self.detector.observe(t, value);
        let score = if score.is_finite() {
            score.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let mut forecasts = Vec::with_capacity(self.spec.horizons.len());
        let mut intervals = Vec::with_capacity(self.spec.horizons.len());
        for (slot, (label, h)) in self.spec.horizons.iter().enumerate() {
            let band = self
                .forecaster
                .predict(slot, t + h.as_secs_f64())
                .filter(|b| b.value.is_finite());
            forecasts.push((label.clone(), band.map(|b| b.value)));
            let interval = band.and_then(|b| Some((b.lower?, b.upper?)));
            intervals.push((label.clone(), interval));
        }
        let (threshold, breach_seconds) = match self.spec.breach {
            None => (None, None),
            Some(b) => {
                let (threshold, direction) = match b {
                    Breach::Above(v) => (v, Direction::Above),
                    Breach::Below(v) => (v, Direction::Below),
                };
                let max = self.spec.max_horizon.as_secs_f64();
                let seconds = breach_seconds(&self.forecaster, t, threshold, direction, max);
                (Some(threshold), Some(seconds))
            }
        };
        self.last.insert(Prediction {
            name: self.spec.name.clone(),
            check: self.spec.check.clone(),
            measurement: self.spec.measure.name().to_string(),
            at: t,
            value,
            anomaly_score: score,
            forecasts,
            intervals,
            breach_seconds,
            threshold,
        })
    }

    pub fn last(&self) -> Option<&Prediction> {
        self.last.as_ref()
    }

    /// Bytes of state held (forecaster, anomaly detector once its references are full, the
    /// chart's samples), for the memory figure.
    pub fn memory_bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.forecaster.memory_bytes()
            + self.detector.memory_bytes()
            + SERIES_KEPT * std::mem::size_of::<(f64, f64)>()
    }

    /// The newest samples, oldest first (see [`SERIES_KEPT`]).
    pub fn series(&self) -> Vec<(f64, f64)> {
        self.series.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Duration;

    fn spec(breach: Option<Breach>) -> Arc<PredictionSpec> {
        Arc::new(PredictionSpec {
            name: "p".into(),
            check: "c".into(),
            measure: Measure::Perfdata("used".into()),
            window: Duration::from_secs(3600),
            horizons: vec![("10m".into(), Duration::from_secs(600))],
            breach,
            max_horizon: Duration::from_secs(24 * 3600),
        })
    }

    #[test]
    fn linear_growth_gives_exact_forecasts_and_breach_times() {
        let mut p = Predictor::new(spec(Some(Breach::Above(100.0))));
        // 1 unit per 10 s, irregular spacing.
        let mut t = 1_000_000.0;
        let mut last = None;
        for i in 0..60 {
            t += if i % 3 == 0 { 7.0 } else { 11.5 };
            let v = (t - 1_000_000.0) / 10.0;
            last = Some((t, v, p.observe(t, v).clone()));
        }
        let (t, v, pred) = last.unwrap();
        let f = pred.forecasts[0].1.unwrap();
        assert!((f - (v + 60.0)).abs() < 1e-6, "forecast {f} for value {v}");
        let want = (100.0 - v) * 10.0;
        let got = pred.breach_seconds.unwrap();
        assert!(
            (got - want).abs() < 1e-3,
            "breach in {got}s, want {want}s at t={t}"
        );
    }

    #[test]
    fn falling_series_breaches_below_and_flat_never_breaches() {
        let mut p = Predictor::new(spec(Some(Breach::Below(0.0))));
        for i in 0..50 {
            p.observe(f64::from(i) * 10.0, 100.0 - f64::from(i));
        }
        let b = p.last().unwrap().breach_seconds.unwrap();
        assert!((b - 510.0).abs() < 1e-3, "{b}");
        let mut flat = Predictor::new(spec(Some(Breach::Above(10.0))));
        for i in 0..50 {
            flat.observe(f64::from(i) * 10.0, 5.0);
        }
        let last = flat.last().unwrap();
        assert_eq!(last.breach_seconds, Some(f64::INFINITY));
        assert!(last.anomaly_score < 0.5);
        assert!(!last.anomaly_score.is_nan());
    }

    #[test]
    fn noisy_growth_breaches_when_a_sample_strays_past_not_its_line() {
        // 1 unit per minute with +-2 of alternating noise: samples reach 100 one or two
        // minutes before the line does (half the samples carry 2 over once the line is at
        // 98), and the breach time says so.
        let mut f = Forecaster::new(3600.0);
        let mut clean = Forecaster::new(3600.0);
        for i in 0..60 {
            let t = f64::from(i) * 60.0;
            let noise = if i % 2 == 0 { 2.0 } else { -2.0 };
            f.observe(t, f64::from(i) + noise);
            clean.observe(t, f64::from(i));
        }
        let now = 59.0 * 60.0;
        let line = breach_seconds(&clean, now, 100.0, Direction::Above, 1e6);
        assert!((line - 41.0 * 60.0).abs() < 1e-6, "{line}");
        let noisy = breach_seconds(&f, now, 100.0, Direction::Above, 1e6);
        assert!(
            noisy <= line - 55.0 && noisy >= line - 120.0,
            "{noisy} vs {line}"
        );
        let floor = breach_seconds(&f, now, 200.0, Direction::Below, 1e6);
        assert_eq!(floor, 0.0);
    }

    #[test]
    fn picks_by_name_and_mountpoint() {
        let disk = |m: &str| Measure::Disk {
            mountpoint: m.into(),
        };
        let mut s = (*spec(None)).clone();
        s.measure = disk("/data");
        let p = Predictor::new(Arc::new(s));
        let ms = vec![
            Measurement::new(disk("/"), 0.1),
            Measurement::new(disk("/data"), 0.7),
        ];
        assert_eq!(p.pick(&ms, 0.2), Some(0.7));
        let nan = [Measurement::new(Measure::Perfdata("used".into()), f64::NAN)];
        assert_eq!(Predictor::new(spec(None)).pick(&nan, 0.2), None);
        let mut s = (*spec(None)).clone();
        s.measure = Measure::Duration;
        assert_eq!(Predictor::new(Arc::new(s)).pick(&[], 0.2), Some(0.2));
    }
}
