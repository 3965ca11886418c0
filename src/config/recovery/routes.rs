//! `recovery.routes`: which alerts run which chain (first match wins), verified by which check,
//! silenced how.

use std::collections::BTreeSet;

use serde::Deserialize;

use crate::alertmanager::Matcher;
use crate::config::path::YamlPath;
use crate::config::validate::Context;
use crate::template::Template;

/// Alerts whose labels satisfy every matcher run `chain`; the first matching route wins.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSpec {
    pub matchers: Vec<Matcher>,
    pub chain: String,
    pub verify_check: Option<String>,
    /// Silence the alert in Alertmanager while its run heals it.
    pub silence: Option<SilenceSpec>,
    /// Checks the route's runs wait for: while one is failing, its alerts are held
    /// (`dependency`).
    pub depends_on: Vec<String>,
}

/// What a route's silence matches.
#[derive(Debug, Clone, PartialEq)]
pub enum SilenceSpec {
    /// `silence: true`: an equality matcher for each of the alert's labels.
    AlertLabels,
    /// `silence: {matchers: [...]}`: amtool matchers, templated with the alert's values.
    Matchers(Vec<Template>),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteFile {
    matchers: Vec<String>,
    chain: String,
    verify_check: Option<String>,
    silence: Option<SilenceFile>,
    #[serde(default)]
    depends_on: Vec<String>,
}

/// `silence: true`, or `silence: {matchers: [...]}` with templates.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
enum SilenceFile {
    Enabled(bool),
    Matchers(SilenceMatchersFile),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceMatchersFile {
    matchers: Vec<String>,
}

/// What a route may refer to.
pub(super) struct Known<'a> {
    /// The chains that are defined.
    pub chains: &'a BTreeSet<&'a str>,
    /// Chains written but unreadable: their own errors say why, references to them say nothing.
    pub unreadable_chains: &'a BTreeSet<&'a str>,
    pub checks: &'a BTreeSet<&'a str>,
}

impl RouteFile {
    /// Whether the route asks for a silence, which needs `alertmanager:`.
    pub fn silences(&self) -> bool {
        self.silence
            .as_ref()
            .is_some_and(|s| *s != SilenceFile::Enabled(false))
    }
}

pub(super) fn route(
    cx: &mut Context,
    path: &YamlPath,
    route: RouteFile,
    known: &Known<'_>,
) -> RouteSpec {
    let chain = route.chain.as_str();
    if !known.chains.contains(chain) && !known.unreadable_chains.contains(chain) {
        cx.error(
            path,
            format!("chain {:?} is not defined in recovery.chains", route.chain),
        );
    }
    if let Some(check) = route
        .verify_check
        .as_deref()
        .filter(|c| !known.checks.contains(c))
    {
        cx.error(
            path,
            format!("verify_check {check:?} is not a configured check"),
        );
    }
    for check in route
        .depends_on
        .iter()
        .filter(|c| !known.checks.contains(c.as_str()))
    {
        cx.error(
            path,
            format!("depends_on {check:?} is not a configured check"),
        );
    }
    if route.matchers.is_empty() {
        cx.error(path, "needs at least one matcher");
    }
    let mut matchers = Vec::new();
    for (j, text) in route.matchers.iter().enumerate() {
        match Matcher::parse(text) {
            Ok(m) => matchers.push(m),
            Err(e) => cx.error(path.key("matchers").index(j), e.to_string()),
        }
    }
    let silence = match route.silence {
        None | Some(SilenceFile::Enabled(false)) => None,
        Some(SilenceFile::Enabled(true)) => Some(SilenceSpec::AlertLabels),
        Some(SilenceFile::Matchers(m)) => Some(silence(cx, &path.key("silence"), &m.matchers)),
    };
    RouteSpec {
        matchers,
        chain: route.chain,
        verify_check: route.verify_check,
        silence,
        depends_on: route.depends_on,
    }
}

/// `silence: {matchers: [...]}`: templates; one without placeholders is checked as a matcher now.
fn silence(cx: &mut Context, path: &YamlPath, matchers: &[String]) -> SilenceSpec {
    if matchers.is_empty() {
        cx.error(path, "needs at least one matcher");
    }
    let mut templates = Vec::new();
    for (j, text) in matchers.iter().enumerate() {
        let key = path.key("matchers").index(j);
        if let Some(t) = cx.template(&key, "matcher", text) {
            if t.vars().next().is_none() {
                if let Err(e) = Matcher::parse(text) {
                    cx.error(&key, e.to_string());
                }
            }
            templates.push(t);
        }
    }
    SilenceSpec::Matchers(templates)
}
