//! Wiring for `medic run`: load the config, start the state task, scheduler and HTTP server,
//! reload on SIGHUP or `POST /-/reload`, drain on SIGINT/SIGTERM.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};

use crate::checks::Prober;
use crate::config::{self, Config, ConfigErrors, Overrides};
use crate::metrics::Metrics;
use crate::scheduler::Scheduler;
use crate::server::{self, ReloadRequest, Shared};
use crate::state::{self, StateHandle};
use crate::timefmt::now_ms;

/// Where the config comes from, decided once from the command line.
#[derive(Debug, Clone)]
pub enum ConfigLocation {
    /// `--config.file` as given, or `medic.yml` found in the working directory.
    File(PathBuf),
    /// No file given and none found: the built-in default.
    Builtin,
}

impl ConfigLocation {
    /// `--config.file` wins; without it `medic.yml` is used when present, else the built-in.
    pub fn resolve(explicit: Option<PathBuf>) -> Self {
        match explicit {
            Some(path) => ConfigLocation::File(path),
            None if Path::new(config::DEFAULT_CONFIG_FILE).exists() => {
                ConfigLocation::File(PathBuf::from(config::DEFAULT_CONFIG_FILE))
            }
            None => ConfigLocation::Builtin,
        }
    }

    pub fn load(&self, overrides: &Overrides) -> Result<Config, ConfigErrors> {
        match self {
            ConfigLocation::File(path) => config::load_file(path, overrides),
            ConfigLocation::Builtin => config::load_builtin(overrides),
        }
    }
}

/// Runs medic until SIGINT or SIGTERM.
pub async fn run(location: ConfigLocation, overrides: Overrides) -> Result<()> {
    let config = location
        .load(&overrides)
        .map_err(|e| anyhow::anyhow!("invalid config {}: {e}", describe(&location)))?;
    if matches!(location, ConfigLocation::Builtin) {
        tracing::info!(
            "no config file given and no medic.yml here: running the built-in default config"
        );
    }

    let metrics = Arc::new(Metrics::new());
    let listener = tokio::net::TcpListener::bind(&config.web.listen_address)
        .await
        .with_context(|| format!("cannot listen on {}", config.web.listen_address))?;
    let local = listener
        .local_addr()
        .context("reading the listen address")?;

    let (state, state_task) = state::spawn(metrics.clone());
    let prober = Arc::new(Prober::new().context("building the HTTP client")?);
    let mut scheduler = Scheduler::new(prober, state.sender());
    let applied = scheduler.apply(&config.checks, config.redactor.clone());
    state.apply(applied, config.history_size).await;
    metrics.config_reloaded(true, now_ms() as f64 / 1000.0);

    let (reload_tx, mut reload_rx) = mpsc::channel::<ReloadRequest>(8);
    let shared = Arc::new(Shared {
        state: state.clone(),
        metrics: metrics.clone(),
        reload: reload_tx,
        ready: Default::default(),
    });
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let server_task = tokio::spawn(server::serve(listener, shared.clone(), shutdown_rx));
    shared.ready.store(true, Ordering::SeqCst);
    tracing::info!(
        address = %local,
        config = %config.source,
        checks = config.checks.len(),
        version = env!("CARGO_PKG_VERSION"),
        "medic started"
    );

    let mut hangup = signal(SignalKind::hangup()).context("installing the SIGHUP handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut running = Running {
        location,
        overrides,
        config,
        scheduler,
        state,
        metrics,
    };
    loop {
        tokio::select! {
            Some(reply) = reload_rx.recv() => {
                let result = running.reload().await;
                let _ = reply.send(result);
            }
            _ = hangup.recv() => {
                let _ = running.reload().await;
            }
            _ = interrupt.recv() => { tracing::info!("received SIGINT, shutting down"); break; }
            _ = terminate.recv() => { tracing::info!("received SIGTERM, shutting down"); break; }
        }
    }

    running.scheduler.stop();
    let _ = shutdown_tx.send(true);
    let _ = server_task.await;
    drop(running);
    drop(shared);
    let _ = state_task.await;
    tracing::info!("medic stopped");
    Ok(())
}

/// What a reload needs: the config in force and whom to tell about a new one.
struct Running {
    location: ConfigLocation,
    overrides: Overrides,
    config: Config,
    scheduler: Scheduler,
    state: StateHandle,
    metrics: Arc<Metrics>,
}

impl Running {
    /// Loads the config again; a bad one changes nothing.
    async fn reload(&mut self) -> Result<(), String> {
        let now = now_ms() as f64 / 1000.0;
        match self.location.load(&self.overrides) {
            Ok(new) => {
                if new.web.listen_address != self.config.web.listen_address {
                    tracing::warn!(
                        old = %self.config.web.listen_address,
                        new = %new.web.listen_address,
                        "web.listen_address changes need a restart; keeping the old address"
                    );
                }
                let applied = self.scheduler.apply(&new.checks, new.redactor.clone());
                self.state.apply(applied, new.history_size).await;
                tracing::info!(checks = new.checks.len(), "config reloaded");
                self.config = new;
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

fn describe(location: &ConfigLocation) -> String {
    match location {
        ConfigLocation::File(path) => path.display().to_string(),
        ConfigLocation::Builtin => "(built-in)".to_string(),
    }
}
