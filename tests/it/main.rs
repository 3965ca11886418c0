//! Integration tests: every one starts the real `medic` binary against real servers, scripts
//! and files. One test binary, one module per area.

mod page;
mod pg;
mod support;

mod api;
mod checks;
mod cli;
mod config_table;
mod dashboards;
mod database;
mod e2e;
mod kinds;
mod mariadb;
mod predictions;
mod recovery;
mod replicas;
mod secrets;
mod store;
mod web;
mod webhook;
