//! Safe healing's brakes: triggers held back and why, the circuit breaker, pauses and
//! maintenance windows.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use super::{ChainReasonLabels, FloatGauge, Metrics, WindowLabels};
use crate::vocabulary::HoldReason;

pub(super) struct HoldFamilies {
    pub(super) held: Family<ChainReasonLabels, Counter>,
    pub(super) circuit_open: Gauge,
    pub(super) held_triggers: Gauge,
    pub(super) held_oldest: FloatGauge,
    pub(super) pauses_active: Gauge,
    pub(super) pause_earliest_end: FloatGauge,
    pub(super) maintenance_active: Family<WindowLabels, Gauge>,
    /// The maintenance windows open now, for the status page's banner (a family cannot be
    /// listed).
    pub(super) open_windows: Mutex<std::collections::BTreeSet<String>>,
    /// Held triggers by subject: the chain and why, for the status page's banner.
    pub(super) held_subjects: Mutex<BTreeMap<String, (String, HoldReason)>>,
}

impl HoldFamilies {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let recovery_held = Family::<ChainReasonLabels, Counter>::default();
        registry.register(
            "medic_recovery_held",
            "Recovery triggers held back by a limit, the open circuit, a maintenance window or a pause",
            recovery_held.clone(),
        );
        let recovery_circuit_open = Gauge::default();
        registry.register(
            "medic_recovery_circuit_open",
            "1 while max_unhealthy holds every new recovery run",
            recovery_circuit_open.clone(),
        );
        let recovery_held_triggers = Gauge::default();
        registry.register(
            "medic_recovery_held_triggers",
            "Recovery triggers waiting now for a hold to lift",
            recovery_held_triggers.clone(),
        );
        let recovery_held_oldest = FloatGauge::default();
        registry.register_with_unit(
            "medic_recovery_held_oldest_timestamp",
            "Unix time the longest-waiting held trigger was first held (0: none waits)",
            Unit::Seconds,
            recovery_held_oldest.clone(),
        );
        let recovery_pauses_active = Gauge::default();
        registry.register(
            "medic_recovery_pauses_active",
            "Pauses in force now (POST /api/v1/pauses, medic pause), as this replica last read them",
            recovery_pauses_active.clone(),
        );
        let pause_earliest_end = FloatGauge::default();
        registry.register_with_unit(
            "medic_recovery_pause_earliest_end_timestamp",
            "Unix time the first active pause ends (0: no pause)",
            Unit::Seconds,
            pause_earliest_end.clone(),
        );
        let maintenance_active = Family::<WindowLabels, Gauge>::default();
        registry.register(
            "medic_maintenance_active",
            "1 while the maintenance window is open",
            maintenance_active.clone(),
        );

        HoldFamilies {
            held: recovery_held,
            circuit_open: recovery_circuit_open,
            held_triggers: recovery_held_triggers,
            held_oldest: recovery_held_oldest,
            pauses_active: recovery_pauses_active,
            pause_earliest_end,
            maintenance_active,
            open_windows: Mutex::default(),
            held_subjects: Mutex::default(),
        }
    }
}

impl Metrics {
    pub fn recovery_held(&self, chain: &str, reason: HoldReason) {
        self.holds
            .held
            .get_or_create(&ChainReasonLabels {
                chain: chain.to_string(),
                reason,
            })
            .inc();
    }

    /// How many triggers wait for a hold, and since when the oldest of them waits.
    pub fn recovery_held_now(&self, waiting: usize, oldest_since_ms: Option<i64>) {
        self.holds
            .held_triggers
            .set(i64::try_from(waiting).unwrap_or(i64::MAX));
        self.holds
            .held_oldest
            .set(oldest_since_ms.map_or(0.0, |t| t as f64 / 1000.0));
    }

    /// Which subjects wait behind a hold, for which chain and why (replaces the last list).
    pub fn held_subjects<'a>(&self, held: impl Iterator<Item = (&'a str, &'a str, HoldReason)>) {
        let list = held
            .map(|(subject, chain, reason)| (subject.to_string(), (chain.to_string(), reason)))
            .collect();
        *self
            .holds
            .held_subjects
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = list;
    }

    /// The held triggers as last set: subject → (chain, reason).
    pub fn held(&self) -> BTreeMap<String, (String, HoldReason)> {
        self.holds
            .held_subjects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn pause_earliest_end(&self, ends_ms: Option<i64>) {
        self.holds
            .pause_earliest_end
            .set(ends_ms.map_or(0.0, |t| t as f64 / 1000.0));
    }

    /// Whether the circuit breaker is open and which maintenance windows are, as last set:
    /// the status page's banner.
    pub fn banner(&self) -> (bool, Vec<String>) {
        let windows = self
            .holds
            .open_windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect();
        (self.holds.circuit_open.get() != 0, windows)
    }

    pub fn recovery_circuit_open(&self, open: bool) {
        self.holds.circuit_open.set(i64::from(open));
    }

    pub fn maintenance_active(&self, window: &str, open: bool) {
        let mut windows = self
            .holds
            .open_windows
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if open {
            windows.insert(window.to_string());
        } else {
            windows.remove(window);
        }
        drop(windows);
        self.holds
            .maintenance_active
            .get_or_create(&WindowLabels {
                window: window.to_string(),
            })
            .set(i64::from(open));
    }

    pub fn forget_maintenance(&self, window: &str) {
        self.holds
            .open_windows
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(window);
        self.holds.maintenance_active.remove(&WindowLabels {
            window: window.to_string(),
        });
    }

    pub fn recovery_pauses_active(&self, count: usize) {
        self.holds
            .pauses_active
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}
