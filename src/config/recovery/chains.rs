//! `recovery.chains`: each chain's steps, their actions (exec, http, notify, alert) with every
//! template parsed, and the chain's timing, order and mode.

use std::collections::{BTreeMap, BTreeSet};

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::RecoveryMode;
use crate::config::duration::Duration;
use crate::config::path::YamlPath;
use crate::config::validate::{is_label_name, Context};
use crate::template::{Template, Var};

const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_ATTEMPTS: u32 = 3;
const DEFAULT_COOLDOWN: Duration = Duration::from_secs(60);
const DEFAULT_VERIFY_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RESET_AFTER: Duration = Duration::from_secs(3600);

/// A recovery chain with every default filled in and every template parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainSpec {
    pub name: String,
    /// After a step's action, how long the check has to turn healthy.
    pub verify_timeout: Duration,
    /// Healthy this long and the attempt counters reset.
    pub reset_after: Duration,
    pub order: Order,
    pub steps: Vec<StepSpec>,
    /// `shadow`: decide and record, run nothing (the chain's own `mode:`, else recovery's).
    pub mode: RecoveryMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    #[default]
    Fixed,
    Adaptive,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepSpec {
    pub name: String,
    pub action: ActionSpec,
    pub max_attempts: u32,
    pub cooldown: Duration,
    pub timeout: Duration,
    pub tier: Option<u32>,
    /// `confirm: {replicas: K}`: the step runs only while at least K replicas' latest results
    /// for the check are critical (its own, or its chain's for an exec or http step).
    pub confirm: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ActionSpec {
    Exec {
        program: Template,
        args: Vec<Template>,
        /// Processes the step starts outlive it (`detach: true`): a restarted daemon.
        detach: bool,
    },
    Http {
        method: String,
        url: Template,
        headers: Vec<(String, Template)>,
        body: Option<Template>,
    },
    Notify {
        url: Template,
        headers: Vec<(String, Template)>,
    },
    /// Posts `MedicEscalation` to the configured Alertmanager.
    Alert {
        labels: Vec<(String, Template)>,
        annotations: Vec<(String, Template)>,
    },
}

impl ActionSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            ActionSpec::Exec { .. } => "exec",
            ActionSpec::Http { .. } => "http",
            ActionSpec::Notify { .. } => "notify",
            ActionSpec::Alert { .. } => "alert",
        }
    }

    /// Whether the action tells people rather than fixes anything (`notify`, `alert`): it is
    /// not verified, not learned from, and never ends a run as recovered.
    pub fn fixes_nothing(&self) -> bool {
        matches!(self, ActionSpec::Notify { .. } | ActionSpec::Alert { .. })
    }

    /// Every placeholder the action uses.
    pub fn vars(&self) -> Vec<&Var> {
        let templates: Vec<&Template> = match self {
            ActionSpec::Exec { program, args, .. } => {
                std::iter::once(program).chain(args).collect()
            }
            ActionSpec::Http {
                url, headers, body, ..
            } => std::iter::once(url)
                .chain(headers.iter().map(|(_, t)| t))
                .chain(body)
                .collect(),
            ActionSpec::Notify { url, headers } => std::iter::once(url)
                .chain(headers.iter().map(|(_, t)| t))
                .collect(),
            ActionSpec::Alert {
                labels,
                annotations,
            } => labels.iter().chain(annotations).map(|(_, t)| t).collect(),
        };
        templates.into_iter().flat_map(|t| t.vars()).collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainFile {
    mode: Option<RecoveryMode>,
    max_concurrent_runs: Option<u32>,
    verify_timeout: Option<Duration>,
    reset_after: Option<Duration>,
    order: Option<Order>,
    /// For each exec and http step without its own.
    confirm: Option<ConfirmFile>,
    /// Read one by one, so a broken step hides no other.
    steps: Vec<Value>,
}

/// `confirm: {replicas: K}`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfirmFile {
    replicas: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    name: String,
    exec: Option<ExecFile>,
    http: Option<HttpActionFile>,
    notify: Option<NotifyFile>,
    alert: Option<AlertFile>,
    max_attempts: Option<u32>,
    cooldown: Option<Duration>,
    timeout: Option<Duration>,
    tier: Option<u32>,
    /// Exec steps: what the step starts may outlive it (a daemon it restarts).
    detach: Option<bool>,
    confirm: Option<ConfirmFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExecFile {
    program: String,
    #[serde(default)]
    args: Vec<String>,
    /// The same as the step's `detach`, where it reads better beside the program.
    detach: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpActionFile {
    url: String,
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct NotifyFile {
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

/// An `alert` step: posts `MedicEscalation` to Alertmanager.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertFile {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

/// A checked chain, with its own `max_concurrent_runs` for the limits.
pub(super) struct Chain {
    pub spec: ChainSpec,
    pub max_concurrent_runs: Option<u32>,
    /// Its `alert` steps, which need `alertmanager:`.
    pub alert_steps: Vec<YamlPath>,
}

/// The chain `name` written at `path`; `None` when it cannot be read.
pub(super) fn chain(
    cx: &mut Context,
    path: &YamlPath,
    name: &str,
    value: Value,
    recovery_mode: Option<RecoveryMode>,
) -> Option<Chain> {
    let chain: ChainFile = cx.parse(value, path)?;
    cx.name(path, name);
    if chain.steps.is_empty() {
        cx.error(path, "needs at least one step");
    }
    let mut step_names = BTreeSet::new();
    let mut steps = Vec::new();
    let mut alert_steps = Vec::new();
    for (step_path, item) in Context::named(chain.steps, &path.key("steps")) {
        let Some(file) = cx.parse::<StepFile>(item, &step_path) else {
            continue;
        };
        if cx.name(&step_path, &file.name) && !step_names.insert(file.name.clone()) {
            cx.error(&step_path, "duplicate step name");
        }
        if file.alert.is_some() {
            alert_steps.push(step_path.clone());
        }
        steps.extend(step(cx, &step_path, file, chain.confirm));
    }
    if chain.confirm.is_some_and(|c| c.replicas == 0) {
        cx.error(path.key("confirm"), "replicas must be at least 1");
    }
    let verify_timeout = chain.verify_timeout.unwrap_or(DEFAULT_VERIFY_TIMEOUT);
    if verify_timeout.is_zero() {
        cx.error(path, "verify_timeout must be greater than 0s");
    }
    let max_concurrent_runs = chain.max_concurrent_runs;
    if max_concurrent_runs == Some(0) {
        cx.error(path, "max_concurrent_runs must be at least 1");
    }
    Some(Chain {
        spec: ChainSpec {
            name: name.to_string(),
            verify_timeout,
            reset_after: chain.reset_after.unwrap_or(DEFAULT_RESET_AFTER),
            order: chain.order.unwrap_or_default(),
            steps,
            mode: chain.mode.or(recovery_mode).unwrap_or_default(),
        },
        max_concurrent_runs: max_concurrent_runs.filter(|max| *max > 0),
        alert_steps,
    })
}

fn step(
    cx: &mut Context,
    path: &YamlPath,
    step: StepFile,
    chain_confirm: Option<ConfirmFile>,
) -> Option<StepSpec> {
    let actions = usize::from(step.exec.is_some())
        + usize::from(step.http.is_some())
        + usize::from(step.notify.is_some())
        + usize::from(step.alert.is_some());
    if actions == 0 && cx.lost_a_key(path) {
        return None;
    }
    if actions != 1 {
        cx.error(
            path,
            // The message predates `alert`; it names it only where it is involved, so
            // existing tooling matching the old text keeps working.
            if step.alert.is_some() {
                format!("exactly one of exec, http, notify, alert is required (found {actions})")
            } else {
                format!("exactly one of exec, http, notify is required (found {actions})")
            },
        );
        return None;
    }
    if step.max_attempts == Some(0) {
        cx.error(path, "max_attempts must be at least 1");
    }
    let timeout = step.timeout.unwrap_or(DEFAULT_STEP_TIMEOUT);
    if timeout.is_zero() {
        cx.error(path, "timeout must be greater than 0s");
    }
    if step.detach.is_some() && step.exec.is_none() {
        cx.error(path, "detach applies to exec steps only");
    }
    if step.confirm.is_some_and(|c| c.replicas == 0) {
        cx.error(path.key("confirm"), "replicas must be at least 1");
    }
    let action = action(cx, path, &step)?;
    // A chain's confirm guards what acts on the target; telling people needs no quorum.
    let destructive = matches!(action, ActionSpec::Exec { .. } | ActionSpec::Http { .. });
    let confirm = step
        .confirm
        .or(chain_confirm.filter(|_| destructive))
        .map(|c| c.replicas)
        .filter(|k| *k > 0);
    Some(StepSpec {
        name: step.name,
        action,
        max_attempts: step.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS).max(1),
        cooldown: step.cooldown.unwrap_or(DEFAULT_COOLDOWN),
        timeout,
        tier: step.tier,
        confirm,
    })
}

/// The step's one action, its templates parsed.
fn action(cx: &mut Context, path: &YamlPath, step: &StepFile) -> Option<ActionSpec> {
    if let Some(e) = &step.exec {
        exec(cx, path, e, step.detach)
    } else if let Some(h) = &step.http {
        http(cx, path, h)
    } else if let Some(n) = &step.notify {
        let url = action_url(cx, path, "notify.url", &n.url)?;
        let headers = headers(cx, path, "notify", &n.headers);
        Some(ActionSpec::Notify { url, headers })
    } else {
        step.alert.as_ref().map(|a| alert(cx, path, a))
    }
}

fn exec(
    cx: &mut Context,
    path: &YamlPath,
    exec: &ExecFile,
    detach: Option<bool>,
) -> Option<ActionSpec> {
    if exec.program.trim().is_empty() {
        cx.error(path, "exec.program must not be empty");
        return None;
    }
    let program = cx.template(path, "exec.program", &exec.program)?;
    let args: Vec<Option<Template>> = exec
        .args
        .iter()
        .enumerate()
        .map(|(i, a)| cx.template(path, &format!("exec.args[{i}]"), a))
        .collect();
    Some(ActionSpec::Exec {
        program,
        args: args.into_iter().collect::<Option<Vec<_>>>()?,
        detach: detach.or(exec.detach).unwrap_or(false),
    })
}

fn http(cx: &mut Context, path: &YamlPath, http: &HttpActionFile) -> Option<ActionSpec> {
    let url = action_url(cx, path, "http.url", &http.url);
    let method = http
        .method
        .clone()
        .unwrap_or_else(|| "POST".to_string())
        .to_ascii_uppercase();
    if reqwest::Method::from_bytes(method.as_bytes()).is_err() {
        cx.error(
            path,
            format!(
                "http.method {:?} is not a valid HTTP method",
                http.method.as_deref().unwrap_or_default()
            ),
        );
    }
    let headers = headers(cx, path, "http", &http.headers);
    let body = match &http.body {
        Some(b) => Some(cx.template(path, "http.body", b)?),
        None => None,
    };
    Some(ActionSpec::Http {
        method,
        url: url?,
        headers,
        body,
    })
}

fn alert(cx: &mut Context, path: &YamlPath, alert: &AlertFile) -> ActionSpec {
    let mut labels = Vec::new();
    for (name, value) in &alert.labels {
        if !is_label_name(name) {
            cx.error(
                path,
                format!("alert.labels: {name:?} is not a valid label name"),
            );
        } else if crate::vocabulary::ESCALATION_RESERVED_LABELS.contains(&name.as_str()) {
            cx.error(path, format!("alert.labels: {name:?} is set by medic"));
        }
        if let Some(t) = cx.template(path, &format!("alert.labels.{name}"), value) {
            labels.push((name.clone(), t));
        }
    }
    let mut annotations = Vec::new();
    for (name, value) in &alert.annotations {
        if !is_label_name(name) {
            cx.error(
                path,
                format!("alert.annotations: {name:?} is not a valid annotation name"),
            );
        }
        if let Some(t) = cx.template(path, &format!("alert.annotations.{name}"), value) {
            annotations.push((name.clone(), t));
        }
    }
    ActionSpec::Alert {
        labels,
        annotations,
    }
}

/// Request headers of an `http` or `notify` step: templates, and secrets (often credentials).
fn headers(
    cx: &mut Context,
    path: &YamlPath,
    key: &str,
    headers: &BTreeMap<String, String>,
) -> Vec<(String, Template)> {
    let mut out = Vec::new();
    for (name, value) in headers {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            cx.error(
                path,
                format!("{key}.headers: {name:?} is not a valid header name"),
            );
        }
        cx.hide(value);
        if let Some(t) = cx.template(path, &format!("{key}.headers.{name}"), value) {
            out.push((name.clone(), t));
        }
    }
    out
}

/// An action's URL: http(s), a template; its password and query are secrets.
fn action_url(cx: &mut Context, path: &YamlPath, key: &str, url: &str) -> Option<Template> {
    cx.url_password_is_secret(url);
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        cx.error(
            path,
            format!(
                "{key} {:?} must be an http:// or https:// URL",
                cx.show_url(url)
            ),
        );
        return None;
    }
    cx.template(path, key, url)
}
