//! The checks this replica probes: the config's, and those discovered from target lists,
//! less those another replica owns. One place puts them together and hands them to the
//! scheduler and the state task, whatever changed: a reload, a discovered list, the members of
//! the cluster. Written and discovered checks are alike from here on.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::watch;

use crate::cluster::Ownership;
use crate::config::{CheckSpec, Config, PredictionSpec, Redactor};
use crate::dependencies::Graph;
use crate::recovery::verify::DirectChecks;
use crate::scheduler::Scheduler;
use crate::state::StateHandle;

/// What changes the set of checks between reloads.
pub enum Change {
    /// A template's discovered checks, whole (an empty list removes them).
    Discovered {
        template: String,
        checks: Vec<Arc<CheckSpec>>,
    },
    /// Who owns which check now (the cluster's members changed).
    Ownership(Arc<dyn Ownership>),
}

/// The sources of the checks, kept to be put together again when one of them changes. The
/// specs are shared with the scheduler (`Arc`), never copied.
pub(super) struct CheckSet {
    written: Vec<Arc<CheckSpec>>,
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

    /// A (re)loaded config: its checks and predictions replace the written ones.
    pub(super) fn set_config(&mut self, config: &Config) {
        self.written = config.checks.iter().cloned().map(Arc::new).collect();
        self.predictions = config.predictions.clone();
        self.history_size = config.history_size;
        self.redactor = config.redactor.clone();
    }

    pub(super) fn change(&mut self, change: Change) {
        match change {
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

    /// Every check, written then discovered.
    fn all(&self) -> impl Iterator<Item = &Arc<CheckSpec>> {
        self.written
            .iter()
            .chain(self.discovered.values().flatten())
    }

    /// Hands the scheduler and the state task the checks and predictions this replica owns (a
    /// prediction lives where its check is probed), and `others` the checks it verifies by
    /// probing directly. Returns how many checks it probes, and which arrived.
    pub(super) async fn apply(
        &self,
        scheduler: &mut Scheduler,
        state: &StateHandle,
        others: &watch::Sender<Arc<DirectChecks>>,
    ) -> Applied {
        let owner = self.ownership.as_ref();
        let (owned, not_owned): (Vec<Arc<CheckSpec>>, Vec<Arc<CheckSpec>>) =
            self.all().cloned().partition(|c| owner.owns(&c.name));
        let predictions = self
            .predictions
            .iter()
            .filter(|p| owner.owns(&p.check))
            .cloned()
            .collect();
        let graph = Graph::new(
            self.all()
                .map(|c| (c.name.as_str(), c.depends_on.as_slice())),
        );
        let remote: std::collections::BTreeSet<String> = owned
            .iter()
            .flat_map(|c| graph.dependencies_of(&c.name))
            .filter(|dep| !owner.owns(dep))
            .collect();
        self.remote_dependencies
            .send_replace(remote.into_iter().collect());
        let applied = scheduler.apply(&owned, self.redactor.clone(), owner.aligned());
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

    fn named(template: &str, name: &str, like: &CheckSpec) -> Arc<CheckSpec> {
        Arc::new(CheckSpec {
            name: format!("{template}/{name}"),
            ..like.clone()
        })
    }

    #[test]
    fn discovered_checks_join_the_written_ones_and_ownership_splits_them_all() {
        let config = crate::config::load_builtin(&Overrides::default()).expect("built-in config");
        let mut set = CheckSet::new(&config, Arc::new(Shard::default()));
        let written = set.all().count();
        let like = config.checks[0].clone();
        set.change(Change::Discovered {
            template: "web".into(),
            checks: (0..10)
                .map(|i| named("web", &format!("t{i}"), &like))
                .collect(),
        });
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
}
