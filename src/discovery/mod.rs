//! Discovered targets: a task per check template keeps its targets and sends the checks they
//! make to the set of checks (`check_change::Change::Discovered`) whenever they change. Each source runs
//! as a task of its own — `file_sd.rs` polls its files, `http_sd.rs` and `dns_sd.rs` refresh on
//! their interval — and keeps its last good list: one that cannot be read or parsed is counted
//! (`medic_sd_refresh_failures_total`), logged, and changes nothing. The rules that make checks
//! of the lists are pure (`targets.rs`); a template renders a target into a check itself
//! (`config::CheckTemplate::render`).
//!
//! Changes flow one way: source → template task (merge, render, refuse) → the app's change
//! queue → `CheckSet` → scheduler and state task, which start new checks, keep unchanged ones
//! undisturbed and stop removed ones (their series go).

mod dns_sd;
mod file_sd;
mod http_sd;
mod render;
pub mod targets;

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::check_change::Change;
use crate::config::CheckTemplate;
use crate::metrics::Metrics;
use crate::vocabulary::SdMechanism;
use targets::Target;

pub use render::{read_once, Census};

/// The running templates, each a task; brought in line with the config at start and reload.
pub struct Discovery {
    running: BTreeMap<String, Running>,
    changes: mpsc::Sender<Change>,
    metrics: Arc<Metrics>,
}

struct Running {
    template: watch::Sender<Arc<CheckTemplate>>,
    task: JoinHandle<()>,
}

impl Discovery {
    /// Nothing runs until [`Discovery::apply`].
    pub fn new(changes: mpsc::Sender<Change>, metrics: Arc<Metrics>) -> Discovery {
        Discovery {
            running: BTreeMap::new(),
            changes,
            metrics,
        }
    }

    /// The config's templates: a new one starts, a changed one is told (it renders its
    /// targets again, and reads them again only if its sources changed), a removed one stops
    /// (its checks go with the config that dropped it).
    pub fn apply(&mut self, templates: &[Arc<CheckTemplate>]) {
        let wanted: BTreeMap<&str, &Arc<CheckTemplate>> =
            templates.iter().map(|t| (t.name.as_str(), t)).collect();
        let metrics = &self.metrics;
        self.running.retain(|name, running| {
            let keep = wanted.contains_key(name.as_str());
            if !keep {
                running.task.abort();
                metrics.sd_forget_template(name);
            }
            keep
        });
        for template in templates {
            match self.running.get(&template.name) {
                Some(running) if **running.template.borrow() == **template => {}
                Some(running) => {
                    if running.template.borrow().mechanisms() != template.mechanisms() {
                        self.metrics.sd_forget_template(&template.name);
                        self.metrics
                            .sd_template(&template.name, &template.mechanisms());
                    }
                    running.template.send_replace(template.clone());
                }
                None => {
                    self.metrics
                        .sd_template(&template.name, &template.mechanisms());
                    let running = self.start(template.clone());
                    self.running.insert(template.name.clone(), running);
                }
            }
        }
    }

    fn start(&self, template: Arc<CheckTemplate>) -> Running {
        let span = tracing::info_span!("discovery", template = %template.name);
        let (tx, rx) = watch::channel(template);
        let task = tokio::spawn(
            render::run_template(rx, self.changes.clone(), self.metrics.clone()).instrument(span),
        );
        Running { template: tx, task }
    }

    /// Shutdown: every template and source task ends (a request in flight is dropped).
    pub fn stop(&mut self) {
        for (_, running) in std::mem::take(&mut self.running) {
            running.task.abort();
        }
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What a source hands its template's task: its whole list, when it changed.
struct Update {
    source: usize,
    /// The template's sources as they were started: a list from sources since replaced
    /// (a reload changed them) is dropped.
    generation: u64,
    targets: Arc<Vec<Target>>,
}

/// What a source task knows of where it reports.
#[derive(Clone)]
struct SourceContext {
    template: String,
    mechanism: SdMechanism,
    source: usize,
    generation: u64,
    updates: mpsc::Sender<Update>,
    metrics: Arc<Metrics>,
}

impl SourceContext {
    /// A refresh failed: counted and said; the last good list stays.
    fn failed(&self, why: &str) {
        self.metrics
            .sd_refresh_failed(&self.template, self.mechanism);
        tracing::warn!(
            mechanism = %self.mechanism,
            error = %why,
            "target list not refreshed; keeping the last good targets"
        );
    }

    /// Hands the template the source's list, if it differs from the one handed last.
    async fn send(&self, sent: &mut Option<Arc<Vec<Target>>>, targets: Vec<Target>) {
        if sent.as_deref() == Some(&targets) {
            return;
        }
        let targets = Arc::new(targets);
        *sent = Some(targets.clone());
        let update = Update {
            source: self.source,
            generation: self.generation,
            targets,
        };
        // The template's task ends only after stopping its sources: a send cannot outlive it.
        let _ = self.updates.send(update).await;
    }
}

/// The sources of a template as running tasks.
struct Sources {
    tasks: Vec<JoinHandle<()>>,
}

impl Sources {
    /// One task for all of `file_sd`, one per `http_sd` and `dns_sd` block, in that order
    /// (the order of their indexes, and of precedence when a target is listed twice).
    fn start(
        template: &CheckTemplate,
        generation: u64,
        updates: &mpsc::Sender<Update>,
        metrics: &Arc<Metrics>,
    ) -> (Sources, usize) {
        let context = |source: usize, mechanism: SdMechanism| SourceContext {
            template: template.name.clone(),
            mechanism,
            source,
            generation,
            updates: updates.clone(),
            metrics: metrics.clone(),
        };
        let max = template.max_targets;
        let mut tasks = Vec::new();
        if !template.file_sd.is_empty() {
            let cx = context(tasks.len(), SdMechanism::FileSd);
            let patterns = template.file_sd.clone();
            tasks.push(spawn_source(cx.mechanism, file_sd::run(patterns, max, cx)));
        }
        for spec in &template.http_sd {
            let cx = context(tasks.len(), SdMechanism::HttpSd);
            tasks.push(spawn_source(
                cx.mechanism,
                http_sd::run(spec.clone(), max, cx),
            ));
        }
        for spec in &template.dns_sd {
            let cx = context(tasks.len(), SdMechanism::DnsSd);
            tasks.push(spawn_source(
                cx.mechanism,
                dns_sd::run(spec.clone(), max, cx),
            ));
        }
        let count = tasks.len();
        (Sources { tasks }, count)
    }

    fn stop(&mut self) {
        for task in self.tasks.drain(..) {
            task.abort();
        }
    }
}

impl Drop for Sources {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A source's task, in a span naming its mechanism (inside its template's).
fn spawn_source(
    mechanism: SdMechanism,
    source: impl std::future::Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(source.instrument(tracing::info_span!("target_source", %mechanism)))
}

/// An error's text on one line (YAML errors run over several).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
