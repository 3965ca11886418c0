//! A template's task: the latest list of each of its sources, merged by the rules
//! (`targets::merge`), rendered into checks (a target whose labels did not change keeps its
//! check, the very same `Arc`, so nothing downstream restarts), refusals counted and logged,
//! and the checks sent on when they changed. Also `medic check-config`'s one reading.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use super::targets::{merge, Merged, Target};
use super::{Sources, Update};
use crate::check_change::Change;
use crate::config::{CheckSpec, CheckTemplate};
use crate::metrics::Metrics;
use crate::vocabulary::SdRefusal;

/// A target's last check, kept while its labels stay the same.
type Rendered = HashMap<String, (BTreeMap<String, String>, Arc<CheckSpec>)>;

/// Runs one template until it is stopped (aborted): reads its sources, sends its checks.
pub(super) async fn run_template(
    mut spec: watch::Receiver<Arc<CheckTemplate>>,
    changes: mpsc::Sender<Change>,
    metrics: Arc<Metrics>,
) {
    let mut template = spec.borrow_and_update().clone();
    let (updates, mut received) = mpsc::channel::<Update>(16);
    let mut generation = 0;
    let (mut sources, count) = Sources::start(&template, generation, &updates, &metrics);
    let mut state = TemplateState::new(count);
    loop {
        tokio::select! {
            Some(update) = received.recv() => {
                state.take(update, generation);
                // Lists that came meanwhile are merged in the same pass.
                while let Ok(update) = received.try_recv() {
                    state.take(update, generation);
                }
            }
            changed = spec.changed() => {
                if changed.is_err() {
                    break;
                }
                let new = spec.borrow_and_update().clone();
                if !new.same_sources(&template) {
                    sources.stop();
                    generation += 1;
                    let (started, count) = Sources::start(&new, generation, &updates, &metrics);
                    sources = started;
                    state = TemplateState { sent: state.sent, ..TemplateState::new(count) };
                }
                // Its checks differ now: render every target again.
                state.rendered.clear();
                template = new;
            }
        }
        if !state.rebuild(&template, &metrics).await {
            continue;
        }
        let change = Change::Discovered {
            template: template.name.clone(),
            checks: state.sent.clone(),
        };
        if changes.send(change).await.is_err() {
            break;
        }
    }
    sources.stop();
}

/// What a template's task keeps between lists.
struct TemplateState {
    /// Each source's latest good list; `None` until it first reads one.
    lists: Vec<Option<Arc<Vec<Target>>>>,
    rendered: Rendered,
    /// The checks sent last.
    sent: Vec<Arc<CheckSpec>>,
}

impl TemplateState {
    fn new(sources: usize) -> TemplateState {
        TemplateState {
            lists: vec![None; sources],
            rendered: HashMap::new(),
            sent: Vec::new(),
        }
    }

    fn take(&mut self, update: Update, generation: u64) {
        if update.generation == generation {
            if let Some(list) = self.lists.get_mut(update.source) {
                *list = Some(update.targets);
            }
        }
    }

    /// Merges and renders the lists; true when the checks differ from those sent last (they
    /// are then in `sent`). Rendering 10,000 targets takes a while: it runs off the runtime.
    async fn rebuild(&mut self, template: &Arc<CheckTemplate>, metrics: &Metrics) -> bool {
        if self.lists.iter().all(Option::is_none) {
            return false;
        }
        let merged = merge(
            self.lists.iter().flatten().map(|l| l.as_slice()),
            template.max_targets,
        );
        let rendered = std::mem::take(&mut self.rendered);
        let t = template.clone();
        let Ok((checks, rendered, failed)) =
            tokio::task::spawn_blocking(move || render_all(&t, merged.targets, rendered)).await
        else {
            return false;
        };
        self.rendered = rendered;
        report(template, &merged.refused, &failed, checks.len(), metrics);
        let same = checks.len() == self.sent.len()
            && checks
                .iter()
                .zip(&self.sent)
                .all(|(a, b)| Arc::ptr_eq(a, b));
        self.sent = checks;
        !same
    }
}

/// Each target's check, the previous one when its labels did not change; and the targets the
/// template could not be rendered for, with why.
fn render_all(
    template: &CheckTemplate,
    targets: Vec<Target>,
    mut previous: Rendered,
) -> (Vec<Arc<CheckSpec>>, Rendered, Vec<(String, String)>) {
    let mut checks = Vec::with_capacity(targets.len());
    let mut rendered = HashMap::with_capacity(targets.len());
    let mut failed = Vec::new();
    for Target { target, labels } in targets {
        let spec = match previous.remove(&target) {
            Some((before, spec)) if before == labels => spec,
            _ => match template.render(&target, &labels) {
                Ok(spec) => Arc::new(spec),
                Err(e) => {
                    failed.push((target, e));
                    continue;
                }
            },
        };
        checks.push(spec.clone());
        rendered.insert(target, (labels, spec));
    }
    (checks, rendered, failed)
}

/// Counts and logs what was refused (one line per reason, with the first target), and sets
/// the template's target count.
fn report(
    template: &CheckTemplate,
    refused: &[(SdRefusal, String)],
    failed: &[(String, String)],
    checks: usize,
    metrics: &Metrics,
) {
    metrics.sd_targets(&template.name, checks);
    for &reason in SdRefusal::ALL {
        let of_reason: Vec<&String> = refused
            .iter()
            .filter(|(r, _)| *r == reason)
            .map(|(_, target)| target)
            .collect();
        if let Some(first) = of_reason.first() {
            metrics.sd_refused(&template.name, reason, of_reason.len());
            tracing::warn!(%reason, count = of_reason.len(), first = %first, "discovered targets refused");
        }
    }
    if let Some((target, error)) = failed.first() {
        metrics.sd_refused(&template.name, SdRefusal::Check, failed.len());
        tracing::warn!(reason = %SdRefusal::Check, count = failed.len(), first = %target, error = %error, "discovered targets refused");
    }
    tracing::debug!(checks, "targets rendered");
}

/// What one reading of a template's sources would make (`medic check-config`).
#[derive(Debug, Default)]
pub struct Census {
    /// The checks it would make.
    pub checks: usize,
    /// Refused targets by reason, each with its first target (and why, for `check`).
    pub refused: BTreeMap<SdRefusal, (usize, String)>,
    /// Sources that could not be read, with why.
    pub failures: Vec<String>,
}

/// Reads every source of `template` once and renders what they list.
pub async fn read_once(template: &CheckTemplate) -> Census {
    let mut census = Census::default();
    let mut lists: Vec<Vec<Target>> = Vec::new();
    let max = template.max_targets;
    if !template.file_sd.is_empty() {
        let (targets, failures) = super::file_sd::read_once(&template.file_sd, max);
        lists.push(targets);
        census.failures.extend(failures);
    }
    for spec in &template.http_sd {
        match super::http_sd::read_once(spec, max).await {
            Ok(targets) => lists.push(targets),
            Err(e) => census.failures.push(e),
        }
    }
    for spec in &template.dns_sd {
        let (targets, failures) = super::dns_sd::read_once(spec).await;
        lists.push(targets);
        census.failures.extend(failures);
    }
    let Merged { targets, refused } = merge(lists.iter().map(Vec::as_slice), max);
    let (checks, _, failed) = render_all(template, targets, HashMap::new());
    census.checks = checks.len();
    for (reason, target) in refused {
        census.refused.entry(reason).or_insert((0, target)).0 += 1;
    }
    if let Some((target, error)) = failed.first() {
        census.refused.insert(
            SdRefusal::Check,
            (failed.len(), format!("{target}: {error}")),
        );
    }
    census
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::targets::{parse_json, parse_yaml};

    /// Lists as a broken tool or a hostile endpoint writes them: each seed cut, spliced and
    /// flipped at pseudo-random places, then read, merged and rendered into every kind of check
    /// whose strings take the target and its labels. Nothing may panic; whatever is read must
    /// render or be refused with a reason.
    #[test]
    fn no_list_makes_discovery_panic() {
        let config = crate::config::load_str(
            r#"
check_templates:
  - {name: h, file_sd: [t.json], http: {url: "http://{{ target }}/{{ labels.path }}?q={{ labels.q }}"}}
  - {name: t, file_sd: [t.json], tcp: {address: "{{ target }}"}}
  - {name: d, file_sd: [t.json], dns: {name: "{{ labels.q }}", server: "{{ target }}"}}
  - {name: c, file_sd: [t.json], command: {program: /bin/echo, args: ["{{ target }}", "{{ labels.path }}"]}}
"#,
            std::path::Path::new("."),
            &crate::config::Overrides::default(),
        )
        .expect("valid config");
        let seeds: [&[u8]; 4] = [
            br#"[{"targets": ["a:1", "[::1]:80", "h\u00e9:1"], "labels": {"path": "x/y", "q": "a b&c"}}]"#,
            b"- targets: [a:1, 'b:2', 3]\n  labels: {path: '../..', q: \"\\0\\n\", n: 1.5}\n",
            br#"[{"targets": ["http://u:p@x/", "%zz", ":", "]", "a:99999999999"], "labels": {"q": "{{ x }}"}}]"#,
            b"[{\"targets\": [\"\\ud800\", \"a\\u0000:1\"], \"labels\": {\"__meta_x\": \"\\u2028\"}}]",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |bound: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % bound.max(1) as u64) as usize
        };
        let (mut read, mut made) = (0, 0);
        for round in 0..3000 {
            let mut bytes = seeds[round % seeds.len()].to_vec();
            for _ in 0..=next(4) {
                let at = next(bytes.len() + 1);
                match next(4) {
                    0 => bytes.truncate(at),
                    1 => bytes.insert(at.min(bytes.len()), next(256) as u8),
                    2 if at < bytes.len() => bytes[at] = b"[]{}\":,'-\n\\*{}"[next(14)],
                    _ => {
                        let other = seeds[next(seeds.len())];
                        let from = next(other.len());
                        bytes.splice(
                            at.min(bytes.len())..at.min(bytes.len()),
                            other[from..].iter().copied(),
                        );
                    }
                }
            }
            for parsed in [parse_json(&bytes, 50), parse_yaml(&bytes, 50)] {
                let Ok(targets) = parsed else { continue };
                read += 1;
                let merged = merge([targets.as_slice()], 50);
                for template in &config.templates {
                    let (checks, _, failed) =
                        render_all(template, merged.targets.clone(), HashMap::new());
                    assert_eq!(checks.len() + failed.len(), merged.targets.len());
                    made += checks.len();
                    assert!(failed.iter().all(|(_, why)| !why.is_empty()));
                }
            }
        }
        // Not vacuous: many mutants still read, and made checks.
        assert!(read > 100 && made > 200, "read {read}, made {made}");
    }
}
