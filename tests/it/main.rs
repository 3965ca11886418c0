//! Integration tests: every one starts the real `medic` binary against real servers, scripts
//! and files. One test binary, one module per area.

mod page;
mod pg;
mod support;

mod am_api;
mod api;
mod checks;
mod cli;
mod config_table;
mod dashboards;
mod database;
mod e2e;
mod fencing;
mod kinds;
mod limits;
mod mariadb;
mod orphans;
mod pauses;
mod predictions;
mod recovery;
mod replicas;
mod runs;
mod safe;
mod secrets;
mod shedding;
mod store;
mod web;
mod webhook;
