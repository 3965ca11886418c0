//! Talking back to Alertmanager through its API v2: escalations (`alert` steps) posted as
//! `MedicEscalation` and kept alive while their subject stays unhealthy, and silences held
//! while a run heals an alert. (`crate::alertmanager` is the other direction: the webhook.)
//!
//! Alertmanager being down or slow never blocks healing: an `alert` step fails and the chain
//! goes on; a silence that could not be made is counted and the run goes on without it.

pub mod client;
pub mod escalation;
pub mod silence;

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{Config, RouteSpec};
use crate::metrics::Metrics;
use crate::store::Store;

pub use client::{AmAlert, AmError, AmMatcher, AmSilence, Client};
pub use escalation::Escalation;
pub use silence::SilenceGuard;

/// Whether a check is healthy now, after thresholds: the state task answers. Asked through
/// this trait so that talking to Alertmanager does not depend on the state task (which
/// depends on recovery, which posts through here).
pub trait CheckHealth: Send + Sync {
    fn is_healthy<'a>(
        &'a self,
        check: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = bool> + Send + 'a>>;
}

/// What Alertmanager says of an alert medic healed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Firing {
    /// Still firing: a new incident.
    Yes,
    /// Resolved: nothing more to ask.
    No,
    /// Unreachable, not configured, or firing only because Alertmanager has not heard of
    /// the fix yet: asked again later.
    Unknown,
}

/// What the current config says; replaced whole on reload.
struct Settings {
    client: Client,
    routes: Vec<RouteSpec>,
    resend_delay: Duration,
}

/// The one link to Alertmanager a process has: shared by the `alert` steps, the silences of
/// runs and the background task that keeps escalations alive.
pub struct Alertmanager {
    settings: RwLock<Option<Arc<Settings>>>,
    store: watch::Receiver<Option<Store>>,
    metrics: Arc<Metrics>,
    /// This process, as the owner of what it posts.
    owner: String,
    /// medic's own URL, for `generatorURL` (`--web.external-url`).
    external_url: String,
    /// For check subjects: the check's status, so an escalation whose check turned healthy
    /// while no medic was watching still resolves.
    state: Option<Arc<dyn CheckHealth>>,
}

impl Alertmanager {
    pub fn new(
        store: watch::Receiver<Option<Store>>,
        metrics: Arc<Metrics>,
        owner: String,
        external_url: String,
        state: Option<Arc<dyn CheckHealth>>,
    ) -> Arc<Alertmanager> {
        Arc::new(Alertmanager {
            settings: RwLock::new(None),
            store,
            metrics,
            owner,
            external_url: external_url.trim_end_matches('/').to_string(),
            state,
        })
    }

    /// Takes a (re)loaded config; without `alertmanager:` nothing is posted.
    pub fn apply(&self, config: &Config) -> anyhow::Result<()> {
        let settings = match &config.alertmanager {
            None => None,
            Some(am) => Some(Arc::new(Settings {
                client: Client::new(am, self.metrics.clone())?,
                routes: config.recovery.routes.clone(),
                resend_delay: am.resend_delay.std(),
            })),
        };
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = settings;
        Ok(())
    }

    fn settings(&self) -> Option<Arc<Settings>> {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn store(&self) -> Option<Store> {
        self.store.borrow().clone()
    }

    /// After a run healed an alert: whether Alertmanager still has it firing.
    pub async fn still_firing(
        &self,
        labels: &std::collections::BTreeMap<String, String>,
        fingerprint: &str,
        verify_check: Option<&str>,
    ) -> Firing {
        let Some(settings) = self.settings() else {
            return Firing::Unknown;
        };
        let alertname = labels.get("alertname").map(String::as_str);
        match settings.client.alert_firing(alertname, fingerprint).await {
            Ok(false) => Firing::No,
            Err(_) => Firing::Unknown,
            Ok(true) => match (&self.state, verify_check) {
                // Alertmanager lags behind a check that is healthy now: not a new failure.
                (Some(state), Some(check)) if state.is_healthy(check).await => Firing::Unknown,
                _ => Firing::Yes,
            },
        }
    }

    /// How often an alert is asked about again (`alertmanager.resend_delay`), when configured.
    pub fn resend_delay(&self) -> Option<Duration> {
        self.settings().map(|s| s.resend_delay)
    }

    /// Where a run is shown in medic's API.
    pub fn run_url(&self, run_id: &str) -> String {
        format!("{}/api/v1/runs/{run_id}", self.external_url)
    }
}

/// medic's external URL from its listen address, for links when `--web.external-url` is not
/// given (as Prometheus derives its own).
pub fn default_external_url(listen: &str, tls: bool) -> String {
    let scheme = if tls { "https" } else { "http" };
    let host_port = match listen.rsplit_once(':') {
        Some((host, port)) if host.is_empty() || host == "0.0.0.0" || host == "[::]" => {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_string())
                .unwrap_or_else(|_| "localhost".to_string());
            format!("{host}:{port}")
        }
        _ => listen.to_string(),
    };
    format!("{scheme}://{host_port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn external_url_comes_from_the_listen_address() {
        assert_eq!(
            default_external_url("127.0.0.1:7979", false),
            "http://127.0.0.1:7979"
        );
        assert_eq!(
            default_external_url("medic.example:443", true),
            "https://medic.example:443"
        );
        assert!(!default_external_url("0.0.0.0:7979", false).contains("0.0.0.0"));
    }
}
