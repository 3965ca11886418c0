//! The HTTP side: the webhook's answers and alerts, and connections shed at --web.max-connections.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::{AlertLabels, CodeLabels, Metrics, ReasonLabels, WEBHOOK_CODES};
use crate::vocabulary::ShedReason;

pub(super) struct WebFamilies {
    pub(super) webhook_notifications: Family<CodeLabels, Counter>,
    pub(super) webhook_alerts: Family<AlertLabels, Counter>,
    /// Connections closed at `--web.max-connections` to make room, by why they could be.
    pub(super) connections_shed: Family<ReasonLabels, Counter>,
    pub(super) connections_open: Gauge,
}

impl WebFamilies {
    pub(super) fn register(registry: &mut Registry) -> Self {
        let webhook_notifications = Family::<CodeLabels, Counter>::default();
        registry.register(
            "medic_webhook_notifications",
            "Alertmanager webhook requests by HTTP status code of the answer",
            webhook_notifications.clone(),
        );
        for code in WEBHOOK_CODES {
            let _ = webhook_notifications.get_or_create(&CodeLabels {
                code: code.to_string(),
            });
        }
        let webhook_alerts = Family::<AlertLabels, Counter>::default();
        registry.register(
            "medic_webhook_alerts",
            "Alerts received from Alertmanager, by status and whether a route matched",
            webhook_alerts.clone(),
        );
        for status in ["firing", "resolved"] {
            for routed in [true, false] {
                let _ = webhook_alerts.get_or_create(&AlertLabels {
                    status: status.to_string(),
                    routed: routed.to_string(),
                });
            }
        }
        let web_connections_shed = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "medic_web_connections_shed",
            "Connections closed at --web.max-connections to make room for new ones (reason: idle, reading_headers)",
            web_connections_shed.clone(),
        );
        for reason in ShedReason::ALL {
            let _ = web_connections_shed.get_or_create(&ReasonLabels {
                reason: reason.as_str().to_string(),
            });
        }
        let web_connections_open = Gauge::default();
        registry.register(
            "medic_web_connections_open",
            "Connections the HTTP server holds open now, shed ones not yet closed included",
            web_connections_open.clone(),
        );
        WebFamilies {
            webhook_notifications,
            webhook_alerts,
            connections_shed: web_connections_shed,
            connections_open: web_connections_open,
        }
    }
}

impl Metrics {
    pub fn webhook_notification(&self, code: u16) {
        self.web
            .webhook_notifications
            .get_or_create(&CodeLabels {
                code: code.to_string(),
            })
            .inc();
    }

    pub fn webhook_alert(&self, status: &str, routed: bool) {
        self.web
            .webhook_alerts
            .get_or_create(&AlertLabels {
                status: status.to_string(),
                routed: routed.to_string(),
            })
            .inc();
    }

    /// A connection closed at `--web.max-connections` to make room.
    pub fn web_connection_shed(&self, reason: ShedReason) {
        self.web
            .connections_shed
            .get_or_create(&ReasonLabels {
                reason: reason.as_str().to_string(),
            })
            .inc();
    }

    pub fn web_connections_open(&self, open: usize) {
        self.web
            .connections_open
            .set(i64::try_from(open).unwrap_or(i64::MAX));
    }
}
