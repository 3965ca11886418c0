//! `recovery:` — the chains and their steps (`chains.rs`), the routes that send alerts to them
//! (`routes.rs`), the fleet-wide limits (`limits.rs`) and the mode; and the rules between
//! sections: a check's `recovery:` names a chain whose templates it can fill.

mod chains;
mod limits;
mod routes;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::checks::Checks;
use super::path::YamlPath;
use super::validate::Context;
use crate::template::Var;

pub use chains::{ActionSpec, ChainSpec, Order, StepSpec};
pub use limits::{MaxUnhealthy, RateLimit, RecoveryLimits, DEFAULT_MAX_CONCURRENT_RUNS};
pub use routes::{RouteSpec, SilenceSpec};

/// Recovery chains and the routes that send alerts to them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecoveryConfig {
    pub chains: BTreeMap<String, Arc<ChainSpec>>,
    pub routes: Vec<RouteSpec>,
    /// The fleet-wide brakes: concurrency, rate, circuit breaker.
    pub limits: RecoveryLimits,
    /// Planned work (the top-level `maintenance:`): while a window is open, nothing it matches
    /// is healed.
    pub maintenance: Vec<crate::maintenance::Window>,
}

impl RecoveryConfig {
    /// The first route whose matchers all match these labels.
    pub fn route(&self, labels: &BTreeMap<String, String>) -> Option<&RouteSpec> {
        self.routes
            .iter()
            .find(|r| r.matchers.iter().all(|m| m.matches(labels)))
    }
}

/// Whether recovery acts, or only decides and records (`shadow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RecoveryMode {
    #[default]
    Active,
    Shadow,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecoveryFile {
    mode: Option<RecoveryMode>,
    #[serde(default)]
    limits: limits::LimitsFile,
    /// Each read on its own.
    #[serde(default)]
    chains: BTreeMap<String, Value>,
    /// Each read on its own.
    #[serde(default)]
    routes: Vec<Value>,
}

/// The checked section, and what in it needs `alertmanager:` (an error only without one).
pub(super) struct Recovery {
    pub config: RecoveryConfig,
    pub needs_alertmanager: Vec<(YamlPath, &'static str)>,
}

impl Recovery {
    /// Without `alertmanager:`, an `alert` step or a route's `silence` could never work.
    pub fn report_missing_alertmanager(&self, cx: &mut Context) {
        for (path, message) in &self.needs_alertmanager {
            cx.error(path, *message);
        }
    }
}

pub(super) fn section(cx: &mut Context, value: Option<Value>, checks: &Checks) -> Recovery {
    let path = YamlPath::top("recovery");
    let file: RecoveryFile = cx.parse_or_default(value, &path);
    let mut needs_alertmanager = Vec::new();
    let mut chains = BTreeMap::new();
    let mut per_chain = BTreeMap::new();
    let written: BTreeSet<String> = file.chains.keys().cloned().collect();
    for (name, value) in file.chains {
        let chain_path = path.key("chains").key(&name);
        let Some(chain) = chains::chain(cx, &chain_path, &name, value, file.mode) else {
            continue;
        };
        for step in chain.alert_steps {
            needs_alertmanager.push((step, "an alert step needs alertmanager: to be configured"));
        }
        if let Some(max) = chain.max_concurrent_runs {
            per_chain.insert(name.clone(), max);
        }
        chains.insert(name, Arc::new(chain.spec));
    }
    let defined: BTreeSet<&str> = chains.keys().map(String::as_str).collect();
    let unreadable: BTreeSet<&str> = written
        .iter()
        .map(String::as_str)
        .filter(|name| !defined.contains(name))
        .collect();
    check_chains(cx, checks, &chains, &unreadable);
    let check_names: BTreeSet<&str> = checks.iter().map(|(_, c)| c.name.as_str()).collect();
    let known = routes::Known {
        chains: &defined,
        unreadable_chains: &unreadable,
        checks: &check_names,
    };
    let mut routes = Vec::new();
    for (route_path, item) in Context::named(file.routes, &path.key("routes")) {
        let Some(route) = cx.parse::<routes::RouteFile>(item, &route_path) else {
            continue;
        };
        if route.silences() {
            needs_alertmanager.push((
                route_path.clone(),
                "silence needs alertmanager: to be configured",
            ));
        }
        routes.push(routes::route(cx, &route_path, route, &known));
    }
    let mut limits = limits::limits(cx, &path.key("limits"), &file.limits);
    limits.per_chain = per_chain;
    Recovery {
        config: RecoveryConfig {
            chains,
            routes,
            limits,
            maintenance: Vec::new(),
        },
        needs_alertmanager,
    }
}

/// A check's `recovery:` names a defined chain, and a check-triggered run renders with the
/// check's labels: a placeholder the check does not provide would fail every run, so it is an
/// error now.
fn check_chains(
    cx: &mut Context,
    checks: &Checks,
    chains: &BTreeMap<String, Arc<ChainSpec>>,
    unreadable: &BTreeSet<&str>,
) {
    for (path, check) in checks.iter() {
        let Some(chain_name) = &check.recovery else {
            continue;
        };
        let Some(chain) = chains.get(chain_name) else {
            if !unreadable.contains(chain_name.as_str()) {
                cx.error(
                    path,
                    format!("recovery chain {chain_name:?} is not defined in recovery.chains"),
                );
            }
            continue;
        };
        for step in &chain.steps {
            for var in step.action.vars() {
                let missing = match var {
                    Var::Label(label) => !check.labels.contains_key(label),
                    Var::Annotation(_) => true,
                    Var::Check | Var::Chain => false,
                };
                if missing {
                    cx.error(
                        path,
                        format!(
                            "recovery chain {chain_name:?} step {:?} uses {{{{ {var} }}}}, which the check does not provide (set it in labels:)",
                            step.name
                        ),
                    );
                }
            }
        }
    }
}
