//! The checks this replica probes: the config's, and those discovered from target lists,
//! less those another replica owns. One place puts them together and hands them to the
//! scheduler and the state task, whatever changed: a reload, a discovered list, the members of
//! the cluster. Written and discovered checks are alike from here on.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use tokio::sync::watch;

use crate::check_change::Change;
use crate::cluster::Ownership;
use crate::config::{CheckSpec, Config, PredictionSpec, Redactor};
use crate::dependencies::Graph;
use crate::recovery::verify::DirectChecks;
use crate::scheduler::{Placement, Scheduler};
use crate::state::StateHandle;

/// The sources of the checks, kept to be put together again when one of them changes. The
/// specs are shared with the scheduler (`Arc`), never copied.
pub(super) struct CheckSet {
    written: Vec<Arc<CheckSpec>>,
    /// The config's check templates, by name: only their lists are taken.
    templates: BTreeSet<String>,
    /// Each template's checks. Written names never hold a '/' (config names are plain), and
    /// a discovered name always does (`<template>/<target>`): they cannot collide.
    discovered: BTreeMap<String, Vec<Arc<CheckSpec>>>,
    predictions: Vec<PredictionSpec>,
    history_size: usize,
    redactor: Redactor,
    ownership: Arc<dyn Ownership>,
    /// The dependencies of owned checks that another replica probes: their statuses come
    /// from the store.
    remote_dependencies: watch::Sender<Vec<String>>,
}

impl CheckSet {
    pub(super) fn new(config: &Config, ownership: Arc<dyn Ownership>) -> CheckSet {
        let mut set = CheckSet {
            written: Vec::new(),
            templates: BTreeSet::new(),
            discovered: BTreeMap::new(),
            predictions: Vec::new(),
            history_size: config.history_size,
            redactor: config.redactor.clone(),
            ownership,
            remote_dependencies: watch::channel(Vec::new()).0,
        };
        set.set_config(config);
        set
    }

    /// A (re)loaded config: its checks and predictions replace the written ones, and the
    /// checks of a template it no longer has go (those of a template it keeps stay until the
    /// template's next list).
    pub(super) fn set_config(&mut self, config: &Config) {
        self.written = config.checks.iter().cloned().map(Arc::new).collect();
        self.templates = config.templates.iter().map(|t| t.name.clone()).collect();
        let templates = &self.templates;
        self.discovered.retain(|name, _| templates.contains(name));
        self.predictions = config.predictions.clone();
        self.history_size = config.history_size;
        self.redactor = config.redactor.clone();
    }

    pub(super) fn change(&mut self, change: Change) {
        match change {
            // A list sent before a reload removed its template.
            Change::Discovered { template, .. } if !self.templates.contains(&template) => {}
            Change::Discovered { template, checks } if checks.is_empty() => {
                self.discovered.remove(&template);
            }
            Change::Discovered { template, checks } => {
                self.discovered.insert(template, checks);
            }
            Change::Ownership(ownership) => self.ownership = ownership,
        }
    }

    /// The dependencies of owned checks that this replica does not probe, kept current.
    pub(super) fn remote_dependencies(&self) -> watch::Receiver<Vec<String>> {
        self.remote_dependencies.subscribe()
    }

    pub(super) fn ownership(&self) -> &dyn Ownership {
        self.ownership.as_ref()
    }

    pub(super) fn ownership_arc(&self) -> Arc<dyn Ownership> {
        self.ownership.clone()
    }

    /// Every check, written then discovered.
    fn all(&self) -> impl Iterator<Item = &Arc<CheckSpec>> {
        self.written
            .iter()
            .chain(self.discovered.values().flatten())
    }

    /// The predictions: a written check's as configured, and a template's once for each of
    /// its checks, named `<prediction>/<target>`.
    fn predictions(&self) -> Vec<PredictionSpec> {
        let mut out = Vec::with_capacity(self.predictions.len());
        for p in &self.predictions {
            if !self.templates.contains(&p.check) {
                out.push(p.clone());
                continue;
            }
            for check in self.discovered.get(&p.check).into_iter().flatten() {
                let target = check.name.get(p.check.len() + 1..).unwrap_or_default();
                out.push(PredictionSpec {
                    name: format!("{}/{target}", p.name),
                    check: check.name.clone(),
                    ..p.clone()
                });
            }
        }
        out
    }

    /// Who depends on whom: a template's name in `depends_on` stands for each of its checks.
    fn graph(&self) -> Graph {
        let expand = |deps: &[String]| -> Vec<String> {
            deps.iter()
                .flat_map(|dep| match self.discovered.get(dep) {
                    Some(checks) if self.templates.contains(dep) => {
                        checks.iter().map(|c| c.name.clone()).collect()
                    }
                    _ if self.templates.contains(dep) => Vec::new(),
                    _ => vec![dep.clone()],
                })
                .collect()
        };
        let edges: Vec<(&str, Cow<'_, [String]>)> = self
            .all()
            .map(|c| {
                let deps = if c.depends_on.iter().any(|d| self.templates.contains(d)) {
                    Cow::Owned(expand(&c.depends_on))
                } else {
                    Cow::Borrowed(c.depends_on.as_slice())
                };
                (c.name.as_str(), deps)
            })
            .collect();
        Graph::new(edges.iter().map(|(name, deps)| (*name, deps.as_ref())))
    }

    /// Hands the scheduler and the state task the checks and predictions this replica owns (a
    /// prediction lives where its check is probed), and `others` the checks it verifies by
    /// probing directly. Returns how many checks it probes, and which arrived.
    /// `handover`: the members changed, so a slot an arriving check lost in the move is made
    /// up (checks that arrive any other way, a new target or a reload, wait for their slot).
    pub(super) async fn apply(
        &self,
        scheduler: &mut Scheduler,
        state: &StateHandle,
        others: &watch::Sender<Arc<DirectChecks>>,
        handover: bool,
    ) -> Applied {
        let owner = self.ownership.as_ref();
        let (owned, not_owned): (Vec<Arc<CheckSpec>>, Vec<Arc<CheckSpec>>) =
            self.all().cloned().partition(|c| owner.owns(&c.name));
        let predictions = self
            .predictions()
            .into_iter()
            .filter(|p| owner.owns(&p.check))
            .collect();
        let graph = self.graph();
        let remote: std::collections::BTreeSet<String> = owned
            .iter()
            .flat_map(|c| graph.dependencies_of(&c.name))
            .filter(|dep| !owner.owns(dep))
            .collect();
        self.remote_dependencies
            .send_replace(remote.into_iter().collect());
        let made_up = |check: &str| owner.made_up(check).filter(|_| handover);
        let placement = if owner.aligned() {
            Placement::Slots { made_up: &made_up }
        } else {
            Placement::Spread
        };
        let applied = scheduler.apply(&owned, self.redactor.clone(), placement);
        let arrived = state
            .apply(applied, predictions, self.history_size, graph)
            .await;
        others.send_replace(Arc::new(DirectChecks {
            prober: scheduler.prober(),
            checks: not_owned.into_iter().map(|c| (c.name.clone(), c)).collect(),
            redactor: self.redactor.clone(),
        }));
        Applied {
            probed: owned.len(),
            arrived,
        }
    }
}

/// What an [`CheckSet::apply`] did.
pub(super) struct Applied {
    /// How many checks this replica probes now.
    pub(super) probed: usize,
    /// The checks new here (or changed).
    pub(super) arrived: Vec<Arc<str>>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Shard;
    use crate::config::Overrides;

    const CONFIG: &str = r#"
checks:
  - name: lb
    tcp: {address: "lb:80"}
  - name: api
    depends_on: [web]
    tcp: {address: "api:80"}
check_templates:
  - name: web
    file_sd: [t.json]
    depends_on: [lb]
    tcp: {address: "{{ target }}"}
predictions:
  - {name: lat, check: web, measurement: duration_seconds}
  - {name: lb_lat, check: lb, measurement: duration_seconds}
"#;

    fn config(text: &str) -> Config {
        crate::config::load_str(text, std::path::Path::new("."), &Overrides::default())
            .expect("valid config")
    }

    fn discovered(config: &Config, targets: &[&str]) -> Change {
        let template = &config.templates[0];
        Change::Discovered {
            template: template.name.clone(),
            checks: targets
                .iter()
                .map(|t| Arc::new(template.render(t, &BTreeMap::new()).expect("renders")))
                .collect(),
        }
    }

    #[test]
    fn discovered_checks_join_the_written_ones_and_ownership_splits_them_all() {
        let config = config(CONFIG);
        let mut set = CheckSet::new(&config, Arc::new(Shard::default()));
        let written = set.all().count();
        let targets: Vec<String> = (0..10).map(|i| format!("t{i}:80")).collect();
        let targets: Vec<&str> = targets.iter().map(String::as_str).collect();
        set.change(discovered(&config, &targets));
        assert_eq!(set.all().count(), written + 10);
        let half: Arc<dyn Ownership> = Arc::new(Shard { index: 0, count: 2 });
        set.change(Change::Ownership(half));
        let owned = set.all().filter(|c| set.ownership().owns(&c.name)).count();
        assert!(owned > 0 && owned < written + 10, "{owned}");
        set.change(Change::Discovered {
            template: "web".into(),
            checks: Vec::new(),
        });
        assert_eq!(
            set.all().count(),
            written,
            "an empty list removes a template's checks"
        );
    }

    #[test]
    fn a_template_stands_for_its_checks_in_predictions_and_dependencies() {
        let config = config(CONFIG);
        let mut set = CheckSet::new(&config, Arc::new(Shard::default()));
        // No targets yet: the template's prediction has nothing to follow, api depends on nothing.
        let names: Vec<String> = set.predictions().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["lb_lat"]);
        assert!(set.graph().dependencies_of("api").is_empty());
        set.change(discovered(&config, &["a:1", "b:2"]));
        let predictions: Vec<(String, String)> = set
            .predictions()
            .into_iter()
            .map(|p| (p.name, p.check))
            .collect();
        assert_eq!(
            predictions,
            [
                ("lat/a:1".to_string(), "web/a:1".to_string()),
                ("lat/b:2".to_string(), "web/b:2".to_string()),
                ("lb_lat".to_string(), "lb".to_string()),
            ]
        );
        let graph = set.graph();
        assert_eq!(
            graph.dependencies_of("api").into_iter().collect::<Vec<_>>(),
            ["lb", "web/a:1", "web/b:2"]
        );
        assert_eq!(
            graph
                .dependencies_of("web/a:1")
                .into_iter()
                .collect::<Vec<_>>(),
            ["lb"]
        );
    }

    #[test]
    fn a_reload_without_the_template_drops_its_checks_and_late_lists() {
        let with = config(CONFIG);
        let mut set = CheckSet::new(&with, Arc::new(Shard::default()));
        set.change(discovered(&with, &["a:1"]));
        assert!(set.all().any(|c| c.name == "web/a:1"));
        let without = config("checks:\n  - name: lb\n    tcp: {address: \"lb:80\"}\n");
        set.set_config(&without);
        assert_eq!(set.all().count(), 1);
        // A list its task sent before the reload stopped it changes nothing.
        set.change(discovered(&with, &["a:1"]));
        assert_eq!(set.all().count(), 1);
    }
}
