//! Dependencies between checks (`depends_on`): which checks a failing one blocks, and which
//! failing checks are the roots of a block. Pure: statuses come in as a predicate.
//!
//! A check is **blocked** while a check it depends on, directly or through others, is failing
//! (critical or unknown). Its **roots** are the failing checks it depends on that are not
//! blocked themselves: the causes to heal and to page for.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Blocked checks and their roots, as published to whoever needs a current copy (the recovery
/// engine names a root's blocked dependents in an escalation).
pub type BlockedMap = BTreeMap<String, Vec<String>>;

/// The checks `root` blocks now, by name.
pub fn blocked_by(map: &BlockedMap, root: &str) -> Vec<String> {
    map.iter()
        .filter(|(_, roots)| roots.iter().any(|r| r == root))
        .map(|(check, _)| check.clone())
        .collect()
}

/// Who depends on whom, as configured (checks of this config only; unknown names and cycles
/// are config errors before a graph is built).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Graph {
    /// check -> the checks it depends on directly.
    depends_on: BTreeMap<String, Vec<String>>,
    /// check -> the checks that depend on it directly.
    dependents: BTreeMap<String, Vec<String>>,
}

/// A cycle, as the names along it, the first repeated at the end (`a -> b -> a`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle(pub Vec<String>);

impl std::fmt::Display for Cycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.join(" -> "))
    }
}

impl Graph {
    /// The graph of `edges` (check, its direct dependencies).
    pub fn new<'a>(edges: impl IntoIterator<Item = (&'a str, &'a [String])>) -> Graph {
        let mut graph = Graph::default();
        for (check, deps) in edges {
            if deps.is_empty() {
                continue;
            }
            graph.depends_on.insert(check.to_string(), deps.to_vec());
            for dep in deps {
                graph
                    .dependents
                    .entry(dep.clone())
                    .or_default()
                    .push(check.to_string());
            }
        }
        graph
    }

    pub fn is_empty(&self) -> bool {
        self.depends_on.is_empty()
    }

    /// Every check that depends on something.
    pub fn checks_with_dependencies(&self) -> impl Iterator<Item = &str> {
        self.depends_on.keys().map(String::as_str)
    }

    /// Whether `check` depends on anything.
    pub fn has_dependencies(&self, check: &str) -> bool {
        self.depends_on.contains_key(check)
    }

    /// The first cycle found, if any (each check visited once, so this is linear).
    pub fn cycle(&self) -> Option<Cycle> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Visiting,
            Done,
        }
        fn visit<'a>(
            graph: &'a Graph,
            check: &'a str,
            marks: &mut BTreeMap<&'a str, Mark>,
            path: &mut Vec<&'a str>,
        ) -> Option<Cycle> {
            match marks.get(check) {
                Some(Mark::Done) => return None,
                Some(Mark::Visiting) => {
                    let start = path.iter().position(|c| *c == check).unwrap_or(0);
                    let mut names: Vec<String> =
                        path[start..].iter().map(|c| c.to_string()).collect();
                    names.push(check.to_string());
                    return Some(Cycle(names));
                }
                None => {}
            }
            marks.insert(check, Mark::Visiting);
            path.push(check);
            for dep in graph.depends_on.get(check).into_iter().flatten() {
                if let Some(cycle) = visit(graph, dep, marks, path) {
                    return Some(cycle);
                }
            }
            path.pop();
            marks.insert(check, Mark::Done);
            None
        }
        let mut marks = BTreeMap::new();
        self.depends_on
            .keys()
            .find_map(|check| visit(self, check, &mut marks, &mut Vec::new()))
    }

    /// Every check `check` depends on, directly or through others.
    pub fn dependencies_of(&self, check: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut queue: VecDeque<&str> = VecDeque::from([check]);
        while let Some(next) = queue.pop_front() {
            for dep in self.depends_on.get(next).into_iter().flatten() {
                if seen.insert(dep.clone()) {
                    queue.push_back(dep);
                }
            }
        }
        seen
    }

    /// Every check that depends on `check`, directly or through others.
    pub fn dependents_of(&self, check: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut queue: VecDeque<&str> = VecDeque::from([check]);
        while let Some(next) = queue.pop_front() {
            for dependent in self.dependents.get(next).into_iter().flatten() {
                if seen.insert(dependent.clone()) {
                    queue.push_back(dependent);
                }
            }
        }
        seen
    }

    /// The roots that block `check`: the failing checks it depends on (directly or through
    /// others) that no failing check of their own blocks. Empty: not blocked.
    pub fn roots(&self, check: &str, failing: impl Fn(&str) -> bool) -> Vec<String> {
        let mut roots = BTreeSet::new();
        let mut seen = BTreeSet::new();
        let mut queue: VecDeque<&str> = self
            .depends_on
            .get(check)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        while let Some(dep) = queue.pop_front() {
            if !seen.insert(dep) {
                continue;
            }
            let upstream: Vec<&str> = self
                .depends_on
                .get(dep)
                .into_iter()
                .flatten()
                .map(String::as_str)
                .collect();
            let upstream_failing = self.any_failing_above(dep, &failing);
            if failing(dep) && !upstream_failing {
                roots.insert(dep.to_string());
            }
            queue.extend(upstream);
        }
        roots.into_iter().collect()
    }

    /// Whether anything `check` depends on (directly or through others) is failing.
    fn any_failing_above(&self, check: &str, failing: &impl Fn(&str) -> bool) -> bool {
        let mut seen = BTreeSet::new();
        let mut queue: VecDeque<&str> = VecDeque::from([check]);
        while let Some(next) = queue.pop_front() {
            for dep in self.depends_on.get(next).into_iter().flatten() {
                if failing(dep) {
                    return true;
                }
                if seen.insert(dep.as_str()) {
                    queue.push_back(dep);
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> Graph {
        let owned: Vec<(String, Vec<String>)> = edges
            .iter()
            .map(|(c, d)| (c.to_string(), d.iter().map(|s| s.to_string()).collect()))
            .collect();
        Graph::new(owned.iter().map(|(c, d)| (c.as_str(), d.as_slice())))
    }

    #[test]
    fn the_roots_are_the_failing_dependencies_nothing_failing_blocks() {
        // api -> db -> net; web -> api; cache -> net
        let g = graph(&[
            ("api", &["db"]),
            ("db", &["net"]),
            ("web", &["api"]),
            ("cache", &["net"]),
        ]);
        let down = |set: &'static [&'static str]| move |c: &str| set.contains(&c);
        assert!(g.roots("api", down(&[])).is_empty());
        assert_eq!(g.roots("api", down(&["db"])), ["db"]);
        assert_eq!(
            g.roots("web", down(&["db", "api"])),
            ["db"],
            "api is blocked itself"
        );
        assert_eq!(g.roots("web", down(&["net", "db", "api"])), ["net"]);
        assert_eq!(g.roots("cache", down(&["db"])), Vec::<String>::new());
        assert!(
            g.roots("net", down(&["net"])).is_empty(),
            "a root is not blocked"
        );
        assert_eq!(
            g.dependents_of("net"),
            ["api", "cache", "db", "web"].map(String::from).into()
        );
    }

    #[test]
    fn a_check_with_two_failing_branches_names_both_roots() {
        let g = graph(&[("api", &["db", "queue"])]);
        assert_eq!(
            g.roots("api", |c| c == "db" || c == "queue"),
            ["db", "queue"]
        );
    }

    #[test]
    fn cycles_are_found_with_their_path() {
        assert_eq!(graph(&[("a", &["b"]), ("b", &["c"])]).cycle(), None);
        let cycle = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])])
            .cycle()
            .expect("a cycle");
        assert_eq!(cycle.to_string(), "a -> b -> c -> a");
        let own = graph(&[("a", &["a"])]).cycle().expect("a self-loop");
        assert_eq!(own.to_string(), "a -> a");
    }
}
