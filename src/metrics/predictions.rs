//! Predictions: forecasts, their 80 % intervals, breach times and anomaly scores.

use prometheus_client::metrics::family::Family;
use prometheus_client::registry::{Registry, Unit};

use super::{FloatGauge, HorizonLabels, Metrics, PredictionLabels};

pub(super) struct PredictionFamilies {
    pub(super) value: Family<HorizonLabels, FloatGauge>,
    pub(super) lower: Family<HorizonLabels, FloatGauge>,
    pub(super) upper: Family<HorizonLabels, FloatGauge>,
    pub(super) breach: Family<PredictionLabels, FloatGauge>,
    pub(super) anomaly_score: Family<PredictionLabels, FloatGauge>,
}

impl PredictionFamilies {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let predicted_value = Family::<HorizonLabels, FloatGauge>::default();
        registry.register(
            "medic_predicted_value",
            "Forecast of the prediction's series `horizon` ahead",
            predicted_value.clone(),
        );
        let predicted_lower = Family::<HorizonLabels, FloatGauge>::default();
        registry.register(
            "medic_predicted_interval_lower",
            "Lower end of the 80 % prediction interval around medic_predicted_value",
            predicted_lower.clone(),
        );
        let predicted_upper = Family::<HorizonLabels, FloatGauge>::default();
        registry.register(
            "medic_predicted_interval_upper",
            "Upper end of the 80 % prediction interval around medic_predicted_value",
            predicted_upper.clone(),
        );
        let predicted_breach = Family::<PredictionLabels, FloatGauge>::default();
        registry.register_with_unit(
            "medic_predicted_breach",
            "Seconds until the forecast crosses the prediction's threshold; +Inf when not within max_horizon",
            Unit::Seconds,
            predicted_breach.clone(),
        );
        let anomaly_score = Family::<PredictionLabels, FloatGauge>::default();
        registry.register(
            "medic_anomaly_score",
            "How unusual the latest value of the prediction's series is, 0 to 1",
            anomaly_score.clone(),
        );
        PredictionFamilies {
            value: predicted_value,
            lower: predicted_lower,
            upper: predicted_upper,
            breach: predicted_breach,
            anomaly_score,
        }
    }
}

impl Metrics {
    pub fn prediction(&self, p: &crate::predict::Prediction) {
        let labels = PredictionLabels {
            prediction: p.name.clone(),
        };
        self.predictions
            .anomaly_score
            .get_or_create(&labels)
            .set(p.anomaly_score);
        if let Some(seconds) = p.breach_seconds {
            self.predictions.breach.get_or_create(&labels).set(seconds);
        }
        for (horizon, value) in &p.forecasts {
            if let Some(v) = value {
                self.predictions
                    .value
                    .get_or_create(&HorizonLabels {
                        prediction: p.name.clone(),
                        horizon: horizon.clone(),
                    })
                    .set(*v);
            }
        }
        for (horizon, band) in &p.intervals {
            if let Some((lo, hi)) = band {
                let labels = HorizonLabels {
                    prediction: p.name.clone(),
                    horizon: horizon.clone(),
                };
                self.predictions.lower.get_or_create(&labels).set(*lo);
                self.predictions.upper.get_or_create(&labels).set(*hi);
            }
        }
    }

    /// Drops every series of a prediction that is gone or changed.
    pub fn forget_prediction(&self, spec: &crate::config::PredictionSpec) {
        let labels = PredictionLabels {
            prediction: spec.name.clone(),
        };
        self.predictions.anomaly_score.remove(&labels);
        self.predictions.breach.remove(&labels);
        for (horizon, _) in &spec.horizons {
            let labels = HorizonLabels {
                prediction: spec.name.clone(),
                horizon: horizon.clone(),
            };
            self.predictions.value.remove(&labels);
            self.predictions.lower.remove(&labels);
            self.predictions.upper.remove(&labels);
        }
    }
}
