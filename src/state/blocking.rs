//! Which checks a failing dependency blocks, kept current as statuses change. The state task
//! owns it: it tells it when a check starts or stops failing, and hears which dependents were
//! blocked or freed (and by which roots). The decisions are `dependencies::Graph`'s.

use std::sync::Arc;

use tokio::sync::watch;

use crate::dependencies::Graph;

pub use crate::dependencies::BlockedMap;

/// A check blocked, freed, or blocked by other roots now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub check: String,
    /// Empty: no longer blocked.
    pub roots: Vec<String>,
}

pub struct Blocking {
    graph: Graph,
    blocked: BlockedMap,
    published: watch::Sender<Arc<BlockedMap>>,
}

impl Default for Blocking {
    fn default() -> Self {
        Blocking {
            graph: Graph::default(),
            blocked: BlockedMap::new(),
            published: watch::channel(Arc::new(BlockedMap::new())).0,
        }
    }
}

impl Blocking {
    /// A new graph (a reload): every check with dependencies is judged again.
    pub fn set_graph(&mut self, graph: Graph, failing: impl Fn(&str) -> bool) -> Vec<Change> {
        self.graph = graph;
        let checks: Vec<String> = self
            .blocked
            .keys()
            .cloned()
            .chain(self.graph.checks_with_dependencies().map(str::to_string))
            .collect();
        self.judge(checks, &failing)
    }

    /// `check` started or stopped failing: its dependents are judged again.
    pub fn failing_changed(&mut self, check: &str, failing: impl Fn(&str) -> bool) -> Vec<Change> {
        if self.graph.is_empty() {
            return Vec::new();
        }
        let dependents: Vec<String> = self.graph.dependents_of(check).into_iter().collect();
        self.judge(dependents, &failing)
    }

    pub fn graph(&self) -> &Graph {
        &self.graph
    }

    /// The roots blocking `check`; empty when it is not blocked.
    pub fn roots_of(&self, check: &str) -> &[String] {
        self.blocked.get(check).map_or(&[], Vec::as_slice)
    }

    /// The checks blocked now, with their roots, kept current.
    pub fn subscribe(&self) -> watch::Receiver<Arc<BlockedMap>> {
        self.published.subscribe()
    }

    fn judge(&mut self, checks: Vec<String>, failing: &impl Fn(&str) -> bool) -> Vec<Change> {
        let mut changes = Vec::new();
        for check in checks {
            let roots = self.graph.roots(&check, failing);
            let before = self.blocked.get(&check).cloned().unwrap_or_default();
            if roots == before {
                continue;
            }
            if roots.is_empty() {
                self.blocked.remove(&check);
            } else {
                self.blocked.insert(check.clone(), roots.clone());
            }
            changes.push(Change { check, roots });
        }
        if !changes.is_empty() {
            self.published.send_replace(Arc::new(self.blocked.clone()));
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph() -> Graph {
        let db = vec!["db".to_string()];
        let api = vec!["api".to_string()];
        Graph::new([("api", db.as_slice()), ("web", api.as_slice())])
    }

    #[test]
    fn a_failing_root_blocks_its_dependents_and_frees_them_when_it_recovers() {
        let mut b = Blocking::default();
        let down = |set: &'static [&'static str]| move |c: &str| set.contains(&c);
        assert!(b.set_graph(graph(), down(&[])).is_empty());
        let changes = b.failing_changed("db", down(&["db"]));
        assert_eq!(
            changes,
            vec![
                Change {
                    check: "api".into(),
                    roots: vec!["db".into()]
                },
                Change {
                    check: "web".into(),
                    roots: vec!["db".into()]
                },
            ]
        );
        assert_eq!(b.roots_of("web"), ["db"]);
        // api failing too changes nothing: db is still the root of both.
        assert!(b.failing_changed("api", down(&["db", "api"])).is_empty());
        assert_eq!(b.subscribe().borrow().len(), 2);
        let freed = b.failing_changed("db", down(&["api"]));
        assert_eq!(
            freed,
            vec![
                Change {
                    check: "api".into(),
                    roots: vec![]
                },
                Change {
                    check: "web".into(),
                    roots: vec!["api".into()]
                },
            ]
        );
    }
}
