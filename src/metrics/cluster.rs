//! Replicas sharing the checks (`--cluster.shard auto`): the live members this replica sees,
//! the checks it owns, and how often ownership moved.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Metrics;

pub(super) struct ClusterFamilies {
    pub(super) members: Gauge,
    pub(super) owned: Gauge,
    pub(super) handovers: Counter,
}

impl ClusterFamilies {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let members = Gauge::default();
        registry.register(
            "medic_cluster_members",
            "Live replicas this one sees in the store (--cluster.shard auto; 0 otherwise)",
            members.clone(),
        );
        let owned = Gauge::default();
        registry.register(
            "medic_cluster_owned_checks",
            "Checks this replica owns: probes, exports, predicts and heals",
            owned.clone(),
        );
        // Created with the registry: exported at 0 from the start.
        let handovers = Counter::default();
        registry.register(
            "medic_cluster_handovers",
            "Changes of the live members that moved checks to or from this replica",
            handovers.clone(),
        );
        ClusterFamilies {
            members,
            owned,
            handovers,
        }
    }
}

impl Metrics {
    pub fn cluster_members(&self, live: usize) {
        self.cluster
            .members
            .set(i64::try_from(live).unwrap_or(i64::MAX));
    }

    pub fn cluster_owned_checks(&self, owned: usize) {
        self.cluster
            .owned
            .set(i64::try_from(owned).unwrap_or(i64::MAX));
    }

    pub fn cluster_handover(&self) {
        self.cluster.handovers.inc();
    }
}
