//! medic: a Prometheus exporter that runs health checks, predicts where their measurements are
//! heading, and heals what fails through graduated recovery chains.
//!
//! Probes (`checks`) run on a schedule (`scheduler`) and send their outcomes to one state task
//! (`state`), which applies thresholds (`thresholds`), keeps each check's results
//! (`result_ring`, `trend`), records metrics (`metrics`) and answers the HTTP surface
//! (`server`). See ARCHITECTURE.md for the bird's-eye view.

#![forbid(unsafe_code)]

pub mod alertmanager;
pub mod am_api;
pub mod app;
pub mod check_change;
pub mod check_trend;
pub mod checks;
pub mod clock;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod dependencies;
pub mod detect;
pub mod discovery;
pub mod forecast;
pub mod logging;
pub mod maintenance;
pub mod metrics;
pub mod pause;
pub mod pause_book;
pub mod percent;
pub mod predict;
pub mod process_group;
pub mod reaper;
pub mod recovery;
pub mod resources;
pub mod result_ring;
pub mod scheduler;
pub mod server;
pub mod state;
pub mod status;
pub mod store;
pub mod template;
#[cfg(test)]
mod testing;
pub mod thresholds;
pub mod timefmt;
pub mod unique_id;
pub mod vocabulary;

/// When this process started (unix ms): runs it finds in the store from before then, under its
/// own owner name, were left by its previous life.
pub fn process_start_ms() -> i64 {
    static START: std::sync::OnceLock<i64> = std::sync::OnceLock::new();
    *START.get_or_init(timefmt::now_ms)
}
