//! A template rendered for one target: `{{ target }}` and `{{ labels.NAME }}` filled into the
//! strings of its kind block, which is then read and checked as a written check's block is.

use std::collections::BTreeMap;

use serde_yaml_ng::{Mapping, Value};

use super::super::checks::{probe_spec, CheckAt};
use super::super::path::YamlPath;
use super::super::validate::Context;
use super::CheckTemplate;
use crate::config::CheckSpec;
use crate::template::{Template, TemplateError, Var};

/// The label that holds a discovered check's target, as Prometheus names a target's address:
/// a value for recovery steps (`{{ labels.__address__ }}`), never exported.
pub const ADDRESS_LABEL: &str = "__address__";

/// Stands for every placeholder while the template's secrets are collected at load: a value
/// that holds it came from a target, and no target's value is a secret.
const PLACEHOLDER: &str = "\u{FFFF}medic-placeholder-7c1e\u{FFFF}";
const PLACEHOLDER_WORD: &str = "medic-placeholder-7c1e";

impl CheckTemplate {
    /// The check `target` (with its labels) becomes, or every reason it cannot be one.
    pub fn render(
        &self,
        target: &str,
        target_labels: &BTreeMap<String, String>,
    ) -> Result<CheckSpec, String> {
        let name = self.check_name(target);
        let mut labels = super::merged_labels(&self.base.labels, target_labels);
        labels.insert(ADDRESS_LABEL.to_string(), target.to_string());
        let block = fill(&self.block, &|s| {
            let template = Template::parse_for_target(s).map_err(|e| e.to_string())?;
            template
                .render_target(target, &labels)
                .map_err(|e| match e {
                    TemplateError::Missing(var) => {
                        format!("{name}: the target has no value for {{{{ {var} }}}}")
                    }
                    e => format!("{name}: {e}"),
                })
        })?;
        let mut cx = Context::detached(&self.base_dir);
        let path = YamlPath::top(&name);
        let at = CheckAt {
            path: &path,
            interval: self.base.interval,
            timeout: self.base.timeout,
        };
        match probe_spec(&mut cx, &at, self.kind, block) {
            Some(probe) if !cx.has_errors() => {
                let mut base = self.base.clone();
                base.labels = labels;
                Ok(base.into_spec(name, probe, Some(self.name.clone())))
            }
            _ => {
                let errors: Vec<String> =
                    cx.into_errors().iter().map(ToString::to_string).collect();
                Err(errors.join("; "))
            }
        }
    }
}

/// The template's own secrets (a header written in it, a `*_file`'s contents), kept with the
/// config's so that every message is scrubbed of them: its block is read once with each
/// placeholder standing for no secret, and what came from a placeholder is left out.
pub(super) fn keep_secrets(cx: &mut Context, template: &CheckTemplate) {
    let Ok(block) = fill(&template.block, &|s| {
        let t = Template::parse_for_target(s).map_err(|e| e.to_string())?;
        let labels: BTreeMap<String, String> = t
            .vars()
            .filter_map(|v| match v {
                Var::Label(name) => Some((name.clone(), PLACEHOLDER.to_string())),
                _ => None,
            })
            .collect();
        t.render_target(PLACEHOLDER, &labels)
            .map_err(|e| e.to_string())
    }) else {
        return;
    };
    let mut scratch = Context::detached(&template.base_dir);
    let path = YamlPath::top(&template.name);
    let at = CheckAt {
        path: &path,
        interval: template.base.interval,
        timeout: template.base.timeout,
    };
    // Its errors are not the template's: a placeholder's value is not known yet.
    let _ = probe_spec(&mut scratch, &at, template.kind, block);
    for secret in scratch.take_secrets() {
        // In any form: percent-encoded in a URL too.
        if !secret.contains(PLACEHOLDER_WORD) {
            cx.hide(&secret);
        }
    }
}

/// `node` with every string that holds a placeholder replaced by `render(string)`.
fn fill(node: &Value, render: &impl Fn(&str) -> Result<String, String>) -> Result<Value, String> {
    Ok(match node {
        Value::String(s) if s.contains("{{") => Value::String(render(s)?),
        Value::Sequence(items) => Value::Sequence(
            items
                .iter()
                .map(|item| fill(item, render))
                .collect::<Result<_, _>>()?,
        ),
        Value::Mapping(map) => {
            let mut out = Mapping::with_capacity(map.len());
            for (key, value) in map {
                out.insert(key.clone(), fill(value, render)?);
            }
            Value::Mapping(out)
        }
        other => other.clone(),
    })
}
