//! `check_templates:` — checks made from discovered targets: where the targets come from
//! (`file_sd`, `http_sd`, `dns_sd`, in Prometheus' formats; `sources.rs`), how many at most,
//! and the check each target becomes: a check's fields and one kind block whose strings may
//! use `{{ target }}` and `{{ labels.NAME }}`. The block's keys, types and placeholders are
//! checked at load; its kind's rules (a URL that parses, an address with a port) when it is
//! rendered for a target (`render.rs`), since no value is known before.

mod render;
mod sources;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;
use serde_yaml_ng::{Mapping, Value};

use super::checks::{self, CheckBase, Checks, DependencyNode, Unread};
use super::defaults::Defaults;
use super::path::YamlPath;
use super::validate::Context;
use crate::template::Template;
use crate::vocabulary::SdMechanism;

pub use sources::{DnsSdSpec, HttpSdSpec};

/// A template makes at most this many checks unless its `max_targets` says otherwise.
pub const DEFAULT_MAX_TARGETS: usize = 100_000;

/// One template: its sources, its bound, and the check it makes of each target.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckTemplate {
    /// Its checks are named `<name>/<target>`.
    pub name: String,
    /// Path patterns, resolved against the config file's directory; `*` only in the last
    /// segment, as Prometheus allows.
    pub file_sd: Vec<PathBuf>,
    pub http_sd: Vec<HttpSdSpec>,
    pub dns_sd: Vec<DnsSdSpec>,
    pub max_targets: usize,
    base: CheckBase,
    /// The kind's key (`http`) and its block as written, placeholders and all.
    kind: &'static str,
    block: Value,
    /// Relative `*_file` paths in the block resolve against this.
    base_dir: PathBuf,
}

impl CheckTemplate {
    /// The kind of check it makes (`http`).
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The name of the check `target` becomes.
    pub fn check_name(&self, target: &str) -> String {
        format!("{}/{target}", self.name)
    }

    /// The mechanisms it uses, in the order their targets are merged.
    pub fn mechanisms(&self) -> Vec<SdMechanism> {
        let mut out = Vec::new();
        if !self.file_sd.is_empty() {
            out.push(SdMechanism::FileSd);
        }
        if !self.http_sd.is_empty() {
            out.push(SdMechanism::HttpSd);
        }
        if !self.dns_sd.is_empty() {
            out.push(SdMechanism::DnsSd);
        }
        out
    }

    /// Whether `other` reads its targets from the same places (only its checks differ).
    pub fn same_sources(&self, other: &CheckTemplate) -> bool {
        self.file_sd == other.file_sd
            && self.http_sd == other.http_sd
            && self.dns_sd == other.dns_sd
            && self.base_dir == other.base_dir
    }

    /// Whether its checks measure `measurement` (for a prediction that names the template):
    /// every probe measures its duration; a command's perfdata may be anything.
    pub fn measures(&self, measurement: &str) -> bool {
        measurement == crate::vocabulary::Measure::DURATION || self.kind == "command"
    }

    /// The chain its checks trigger, if any.
    pub fn recovery(&self) -> Option<&str> {
        self.base.recovery.as_deref()
    }
}

/// The templates that passed their rules, each with where it is written.
pub(super) struct Templates(Vec<(YamlPath, Arc<CheckTemplate>)>);

impl Templates {
    pub fn iter(&self) -> impl Iterator<Item = &(YamlPath, Arc<CheckTemplate>)> {
        self.0.iter()
    }

    pub fn get(&self, name: &str) -> Option<&CheckTemplate> {
        self.0
            .iter()
            .map(|(_, t)| t.as_ref())
            .find(|t| t.name == name)
    }

    /// Each template as a node of the dependency graph.
    pub fn dependency_nodes(&self) -> Vec<DependencyNode<'_>> {
        self.0
            .iter()
            .map(|(path, t)| DependencyNode {
                path,
                name: &t.name,
                depends_on: &t.base.depends_on,
            })
            .collect()
    }

    pub fn into_specs(self) -> Vec<Arc<CheckTemplate>> {
        self.0.into_iter().map(|(_, t)| t).collect()
    }
}

/// A template's keys beyond a check's.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourcesFile {
    #[serde(default)]
    file_sd: Vec<String>,
    /// One block or a list of them, each read on its own.
    http_sd: Option<Value>,
    dns_sd: Option<Value>,
    max_targets: Option<usize>,
}

const SOURCE_KEYS: [&str; 4] = ["file_sd", "http_sd", "dns_sd", "max_targets"];

pub(super) fn section(
    cx: &mut Context,
    value: Option<Value>,
    defaults: &Defaults,
    checks: &Checks,
) -> Templates {
    let check_names: BTreeSet<&str> = checks.iter().map(|(_, c)| c.name.as_str()).collect();
    let mut seen = BTreeSet::new();
    let mut templates = Vec::new();
    let known: Vec<&str> = checks::CHECK_KEYS
        .iter()
        .chain(&SOURCE_KEYS)
        .copied()
        .collect();
    for (path, mut item) in cx.items(value, &YamlPath::top("check_templates")) {
        cx.deny_unknown_keys(&mut item, &path, &known);
        let (sources, rest) = split_sources(item);
        let unread = checks::template_check(cx, &path, rest, defaults);
        let sources: SourcesFile = cx.parse_or_default(Some(sources), &path);
        let sources = sources::sources(cx, &path, sources);
        let Some(unread) = unread else {
            continue;
        };
        if cx.name(&path, &unread.name) && !seen.insert(unread.name.clone()) {
            cx.error(&path, "duplicate check template name");
        }
        if check_names.contains(unread.name.as_str()) {
            cx.error(
                &path,
                format!(
                    "name {:?} is a check's name too: depends_on and predictions could not tell them apart",
                    unread.name
                ),
            );
        }
        if let Some(template) = template(cx, &path, unread, sources) {
            templates.push((path, Arc::new(template)));
        }
    }
    Templates(templates)
}

/// The item's source keys as a mapping of their own, and the rest (a check as written).
fn split_sources(item: Value) -> (Value, Value) {
    let Value::Mapping(mut rest) = item else {
        return (Value::Mapping(Mapping::new()), item);
    };
    let mut sources = Mapping::new();
    for key in SOURCE_KEYS {
        if let Some(value) = rest.shift_remove(key) {
            sources.insert(Value::String(key.to_string()), value);
        }
    }
    (Value::Mapping(sources), Value::Mapping(rest))
}

/// The template, once its kind block reads and its placeholders parse.
fn template(
    cx: &mut Context,
    path: &YamlPath,
    unread: Unread,
    sources: Option<sources::Sources>,
) -> Option<CheckTemplate> {
    let Unread {
        name,
        base,
        kind,
        block,
    } = unread;
    if kind == "heartbeat" {
        cx.error(
            path,
            "heartbeat checks cannot come from a template: jobs push to them by name",
        );
        return None;
    }
    let block_path = path.key(kind);
    let placeholders_ok = placeholders(cx, &block_path, &block);
    let readable = checks::parse_block(cx, path, kind, block.clone());
    if !(placeholders_ok && readable) {
        return None;
    }
    let sources = sources?;
    let template = CheckTemplate {
        name,
        file_sd: sources.file_sd,
        http_sd: sources.http_sd,
        dns_sd: sources.dns_sd,
        max_targets: sources.max_targets,
        base,
        kind,
        block,
        base_dir: cx.base_dir().to_path_buf(),
    };
    render::keep_secrets(cx, &template);
    Some(template)
}

/// Every string of the block that holds a placeholder parses as a target template (errors
/// name the key); `*_file` keys hold none: their contents are secrets, known at load.
fn placeholders(cx: &mut Context, path: &YamlPath, node: &Value) -> bool {
    match node {
        Value::String(s) if s.contains("{{") => match Template::parse_for_target(s) {
            Ok(_) => true,
            Err(e) => {
                cx.error(path, e.to_string());
                false
            }
        },
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .fold(true, |ok, (i, item)| {
                placeholders(cx, &path.index(i), item) & ok
            }),
        Value::Mapping(map) => map.iter().fold(true, |ok, (key, value)| {
            let key = key.as_str().unwrap_or_default();
            let here = path.key(key);
            if key.ends_with("_file") && value.as_str().is_some_and(|v| v.contains("{{")) {
                cx.error(
                    &here,
                    "placeholders are not allowed in *_file keys: the file's contents are a secret, read once at load",
                );
                return false;
            }
            placeholders(cx, &here, value) & ok
        }),
        _ => true,
    }
}

/// The labels a template's check carries: its own `labels:`, then the target's over them.
pub(super) fn merged_labels(
    template: &BTreeMap<String, String>,
    target: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut labels = template.clone();
    labels.extend(target.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels
}

#[cfg(test)]
mod tests;
