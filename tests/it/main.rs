//! Integration tests: every one starts the real `medic` binary against real servers, scripts
//! and files. One test binary, one module per area.

mod absence;
mod page;
mod pg;
mod pki;
mod support;

mod am_api;
mod api;
mod architecture;
mod checks;
mod cli;
mod cluster;
mod config_table;
mod dashboards;
mod database;
mod dependencies;
mod discovery;
mod docs;
mod e2e;
mod fencing;
mod healing;
mod kinds;
mod limits;
mod mariadb;
mod orphans;
mod pauses;
mod predictions;
mod recovery;
mod replicas;
mod rules;
mod runs;
mod safe;
mod secrets;
mod shedding;
mod snippets;
mod store;
mod web;
mod webhook;
