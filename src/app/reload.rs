//! Reloading the config (SIGHUP, `POST /-/reload`): both files apply together or not at all,
//! and a bad one changes nothing. `Running` also applies the other changes of the set of
//! checks (discovered lists, the cluster's members) as they come, one at a time.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use super::check_set::CheckSet;
use crate::check_change::Change;
use crate::config::{Config, ConfigSource, Overrides, StoreConfig, WebConfigError};
use crate::discovery::Discovery;
use crate::metrics::Metrics;
use crate::recovery::manager::RecoveryHandle;
use crate::recovery::verify::DirectChecks;
use crate::scheduler::Scheduler;
use crate::server::web_security::WebSecurity;
use crate::state::StateHandle;
use crate::timefmt::now_ms;

/// What a reload needs: the settings a reload cannot change and whom to tell about a new config.
/// Not the whole config: its checks live on in the scheduler, and a second copy of 10,000 of
/// them would be megabytes kept only to be dropped at the next reload.
pub(super) struct Running {
    location: ConfigSource,
    overrides: Overrides,
    store_config: StoreConfig,
    listen_address: String,
    scheduler: Scheduler,
    state: StateHandle,
    metrics: Arc<Metrics>,
    recovery: RecoveryHandle,
    webhook: watch::Sender<Arc<crate::config::WebhookConfig>>,
    web_config: Option<PathBuf>,
    web: watch::Sender<Arc<WebSecurity>>,
    /// The config's checks and the discovered ones, and who owns which.
    checks: CheckSet,
    /// The check templates' tasks, which send their checks as `Change::Discovered`.
    discovery: Discovery,
    others: watch::Sender<Arc<DirectChecks>>,
    alertmanager: Arc<crate::am_api::Alertmanager>,
    /// How many checks this replica owns, told to the cluster at each renewal.
    owned: Arc<AtomicUsize>,
    /// How far back results of an arriving check are loaded.
    history_ms: i64,
    /// Loads the history of checks that arrive at a handover (its task ends with `Running`).
    arrivals: super::membership::ArrivalLoader,
}

impl Running {
    /// Takes the scheduler and state from the core (a reload applies to them); what else of
    /// the core shutdown needs is handed back.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        location: ConfigSource,
        overrides: Overrides,
        config: &Config,
        options: super::RunOptions,
        checks: CheckSet,
        core: super::Core,
        healing: &super::Healing,
        serving: &super::Serving,
        metrics: Arc<Metrics>,
        discovery: Discovery,
        owned: Arc<AtomicUsize>,
    ) -> (Running, super::CoreTasks) {
        let arrivals = super::membership::ArrivalLoader::start(
            core.store.clone(),
            super::store_keeper::reload_per_check(config.history_size),
            core.state.clone(),
            metrics.clone(),
        );
        let running = Running {
            location,
            overrides,
            store_config: config.store.clone(),
            listen_address: config.web.listen_address.clone(),
            scheduler: core.scheduler,
            state: core.state,
            metrics,
            recovery: core.recovery,
            webhook: serving.webhook.clone(),
            web_config: options.web_config,
            web: serving.web.clone(),
            checks,
            discovery,
            others: healing.others.clone(),
            alertmanager: healing.alertmanager.clone(),
            owned,
            history_ms: super::store_keeper::history_window_ms(config),
            arrivals,
        };
        let tasks = super::CoreTasks {
            state_task: core.state_task,
            writer_task: core.writer_task,
            store: core.store,
        };
        (running, tasks)
    }

    /// A discovered list or the cluster's members changed: the checks are put together again.
    /// Checks that arrived from another replica bring their recent results from the store.
    pub(super) async fn change_checks(&mut self, change: Change) {
        let handover = matches!(change, Change::Ownership(_));
        self.checks.change(change);
        let applied = self.apply_checks(handover).await;
        tracing::info!(probed = applied.probed, arrived = applied.arrived.len(), owner = %self.checks.ownership(), "checks applied");
        if handover {
            let since = now_ms() - self.history_ms;
            self.arrivals
                .load(applied.arrived, since, self.checks.ownership_arc());
        }
    }

    /// Hands the scheduler and the state task what this replica probes now.
    async fn apply_checks(&mut self, handover: bool) -> super::check_set::Applied {
        let applied = self
            .checks
            .apply(&mut self.scheduler, &self.state, &self.others, handover)
            .await;
        self.owned.store(applied.probed, Ordering::Relaxed);
        self.metrics.cluster_owned_checks(applied.probed);
        applied
    }

    /// Shutdown: no probe starts any more, and no target list is read.
    pub(super) fn stop_probing(&mut self) {
        self.discovery.stop();
        self.scheduler.stop();
    }

    /// Loads the config again; a bad one changes nothing.
    pub(super) async fn reload(&mut self) -> Result<(), String> {
        let now = now_ms() as f64 / 1000.0;
        // Both files apply together or not at all.
        let web = match load_web_config(self.web_config.as_deref()) {
            Ok(web) => web,
            Err(e) => {
                tracing::error!(error = %e, "config reload failed; keeping the old config");
                self.metrics.config_reloaded(false, now);
                return Err(e.to_string());
            }
        };
        match self.location.load(&self.overrides) {
            Ok(new) => {
                if new.store != self.store_config {
                    tracing::warn!("state changes need a restart; keeping the open state store");
                }
                if new.web.listen_address != self.listen_address {
                    tracing::warn!(
                        old = %self.listen_address,
                        new = %new.web.listen_address,
                        "web.listen_address changes need a restart; keeping the old address"
                    );
                }
                self.checks.set_config(&new);
                self.apply_checks(false).await;
                self.discovery.apply(&new.templates);
                self.recovery.apply(new.recovery.clone()).await;
                if let Err(e) = self.alertmanager.apply(&new) {
                    tracing::error!(error = %e, "the new alertmanager: settings do not apply; keeping the old ones");
                }
                self.webhook.send_replace(Arc::new(new.web.webhook.clone()));
                // New certificates and users take effect for the next connection and request.
                self.web.send_replace(Arc::new(web));
                tracing::info!(
                    checks = new.checks.len(),
                    check_templates = new.templates.len(),
                    "config reloaded"
                );
                self.store_config = new.store;
                self.listen_address = new.web.listen_address;
                self.metrics.config_reloaded(true, now);
                Ok(())
            }
            Err(errors) => {
                tracing::error!(error = %errors, "config reload failed; keeping the old config");
                self.metrics.config_reloaded(false, now);
                Err(errors.to_string())
            }
        }
    }
}

/// `--web.config.file`, or plain HTTP without auth when there is none.
pub(super) fn load_web_config(path: Option<&Path>) -> Result<WebSecurity, WebConfigError> {
    path.map_or_else(|| Ok(WebSecurity::default()), WebSecurity::load)
}
