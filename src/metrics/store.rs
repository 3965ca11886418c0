//! The state store: errors by operation, and the results written, waiting and dropped.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{Metrics, OperationLabels};

pub(super) struct StoreFamilies {
    pub(super) errors: Family<OperationLabels, Counter>,
    pub(super) dropped: Counter,
    pub(super) written: Counter,
    pub(super) backlog: Gauge,
}

impl StoreFamilies {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let store_errors = Family::<OperationLabels, Counter>::default();
        registry.register(
            "medic_state_store_errors",
            "Failed reads and writes of the state store, by operation (medic keeps running and retries)",
            store_errors.clone(),
        );
        for operation in ["open", "migrate", "write", "read", "prune", "replaced"] {
            let _ = store_errors.get_or_create(&OperationLabels {
                operation: operation.to_string(),
            });
        }
        let store_dropped = Counter::default();
        registry.register(
            "medic_state_store_dropped_results",
            "Check results never written because the store stayed unreachable past the backlog bound",
            store_dropped.clone(),
        );
        let store_written = Counter::default();
        registry.register(
            "medic_state_store_written_results",
            "Check results committed to the state store",
            store_written.clone(),
        );
        let store_backlog = Gauge::default();
        registry.register(
            "medic_state_store_backlog_results",
            "Check results waiting to be written to the state store",
            store_backlog.clone(),
        );
        StoreFamilies {
            errors: store_errors,
            dropped: store_dropped,
            written: store_written,
            backlog: store_backlog,
        }
    }
}

impl Metrics {
    pub fn store_error(&self, operation: &str) {
        self.store
            .errors
            .get_or_create(&OperationLabels {
                operation: operation.to_string(),
            })
            .inc();
    }

    pub fn store_results_dropped(&self, count: u64) {
        self.store.dropped.inc_by(count);
    }

    /// Results that reached the store in a committed transaction.
    pub fn store_results_written(&self, count: usize) {
        self.store
            .written
            .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
    }

    pub fn store_backlog(&self, len: usize) {
        self.store
            .backlog
            .set(i64::try_from(len).unwrap_or(i64::MAX));
    }
}
