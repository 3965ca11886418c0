//! Requests to Alertmanager's API and the silences medic holds there.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{Metrics, OperationResultLabels};

pub(super) struct AlertmanagerFamilies {
    /// Requests to Alertmanager's API (escalations and silences), by operation and result.
    pub(super) requests: Family<OperationResultLabels, Counter>,
    pub(super) silences: Gauge,
}

impl AlertmanagerFamilies {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let alertmanager_requests = Family::<OperationResultLabels, Counter>::default();
        registry.register(
            "medic_alertmanager_requests",
            "Requests to Alertmanager's API by operation (post_alert, create_silence, expire_silence) and result",
            alertmanager_requests.clone(),
        );
        for operation in crate::vocabulary::AmOperation::ALL {
            for result in ["success", "failure"] {
                let _ = alertmanager_requests.get_or_create(&OperationResultLabels {
                    operation: *operation,
                    result: result.to_string(),
                });
            }
        }
        let alertmanager_silences = Gauge::default();
        registry.register(
            "medic_alertmanager_silences_active",
            "Silences medic holds in Alertmanager now",
            alertmanager_silences.clone(),
        );
        AlertmanagerFamilies {
            requests: alertmanager_requests,
            silences: alertmanager_silences,
        }
    }
}

impl Metrics {
    pub fn alertmanager_request(&self, operation: crate::vocabulary::AmOperation, success: bool) {
        self.alertmanager
            .requests
            .get_or_create(&OperationResultLabels {
                operation,
                result: if success { "success" } else { "failure" }.to_string(),
            })
            .inc();
    }

    /// One more (`1`) or one fewer (`-1`) silence held in Alertmanager.
    pub fn alertmanager_silences_add(&self, delta: i64) {
        self.alertmanager.silences.inc_by(delta);
    }
}
