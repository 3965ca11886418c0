//! Turns YAML text into a [`Config`]: parse, expand `${ENV}`, read `*_file` secrets, fill
//! defaults and check every rule, collecting all errors with their YAML paths.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_yaml_ng::Value;

use super::duration::Duration;
use super::file::*;
use super::secret::{Redactor, Secret};
use super::*;
use super::{MaxUnhealthy, RateLimit, RecoveryLimits, DEFAULT_MAX_CONCURRENT_RUNS};
use crate::maintenance::{self, When, Window};
use crate::template::{Template, Var};
use crate::vocabulary::Measure;

mod kinds;
pub(crate) use kinds::RCODES;

const DEFAULT_INTERVAL: Duration = Duration::from_secs(30);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
/// What `/api/v1/checks/{name}` shows of a check's newest results.
const DEFAULT_HISTORY_SIZE: usize = 20;
const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_RETENTION_RESULTS: u64 = 10_000;
const MAX_NAME_LEN: usize = 128;
const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_MAX_ATTEMPTS: u32 = 3;
const DEFAULT_COOLDOWN: Duration = Duration::from_secs(60);
const DEFAULT_VERIFY_TIMEOUT: Duration = Duration::from_secs(30);
const DEFAULT_RESET_AFTER: Duration = Duration::from_secs(3600);
const DEFAULT_WINDOW: Duration = Duration::from_secs(3600);
const DEFAULT_MAX_HORIZON: Duration = Duration::from_secs(7 * 24 * 3600);

/// A credential before it is given its place (the webhook's or the Alertmanager client's).
enum Credential {
    Bearer(Secret),
    Basic { username: String, password: Secret },
}

pub(super) fn load_str(
    text: &str,
    base_dir: &Path,
    overrides: &Overrides,
    source: ConfigSource,
) -> Result<Config, ConfigErrors> {
    let mut value: Value = serde_yaml_ng::from_str(text).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            path: String::new(),
            message: format!("invalid YAML: {}", strip_location(&e.to_string())),
            location: e.location().map(|l| (l.line(), l.column())),
        }])
    })?;
    if value.is_null() {
        value = Value::Mapping(Default::default());
    }

    let mut expansions = Vec::new();
    let mut errors = Vec::new();
    expand_env(&mut value, &mut String::new(), &mut expansions, &mut errors);
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let secrets: Vec<String> = expansions
        .iter()
        .flat_map(|e| e.vars.iter().map(|(_, value)| value.clone()))
        .collect();

    let file: FileConfig = match serde_path_to_error::deserialize(&value) {
        Ok(file) => file,
        Err(e) => {
            let path = e.path().to_string();
            let message = strip_location(&e.inner().to_string());
            // The Value has no positions; the text does. Parse it again only to find where.
            let location = serde_path_to_error::deserialize::<_, FileConfig>(
                serde_yaml_ng::Deserializer::from_str(text),
            )
            .err()
            .and_then(|e| e.inner().location())
            .map(|l| (l.line(), l.column()));
            let redactor = Redactor::new(secrets);
            super::secret::remember_secrets(&redactor);
            return Err(ConfigErrors(scrub_errors(
                vec![ConfigError {
                    path: if path == "." { String::new() } else { path },
                    message,
                    location,
                }],
                &expansions,
                &redactor,
            )));
        }
    };

    let mut v = Validator {
        base_dir: base_dir.to_path_buf(),
        errors: Vec::new(),
        secrets,
        expansions,
    };
    let mut config = v.config(file, overrides, source);
    let redactor = Redactor::new(v.secrets);
    // A rejected config's secrets are secrets too: its errors are logged and answered.
    super::secret::remember_secrets(&redactor);
    if v.errors.is_empty() {
        config.redactor = redactor;
        Ok(config)
    } else {
        Err(ConfigErrors(scrub_errors(
            v.errors,
            &v.expansions,
            &redactor,
        )))
    }
}

/// One string that `${ENV}` expansion changed: as written, as expanded, and the variables it
/// used with their values, so that an error can show what was written instead of the value.
#[derive(Debug)]
struct Expansion {
    template: String,
    expanded: String,
    vars: Vec<(String, String)>,
}

/// Errors name the key and the variable, never a secret value: a quoted expanded string is
/// shown as written (`"${DEPLOY_TIMEOUT}"`), any other copy of a variable's value as
/// `${NAME}`, and what else is secret (file contents, header values, URL passwords and query
/// values) as `<secret>`.
fn scrub_errors(
    errors: Vec<ConfigError>,
    expansions: &[Expansion],
    redactor: &Redactor,
) -> Vec<ConfigError> {
    let mut whole: Vec<&Expansion> = expansions.iter().collect();
    whole.sort_by_key(|e| std::cmp::Reverse(e.expanded.len()));
    let mut vars: Vec<(&str, &str)> = expansions
        .iter()
        .flat_map(|e| e.vars.iter().map(|(n, v)| (n.as_str(), v.as_str())))
        .filter(|(_, v)| v.len() >= super::secret::MIN_REDACTED_LEN)
        .collect();
    vars.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
    vars.dedup();
    let scrub = |text: &str| -> String {
        let mut out = text.to_string();
        for e in &whole {
            let quoted = format!("{:?}", e.expanded);
            if out.contains(&quoted) {
                out = out.replace(&quoted, &format!("{:?}", e.template));
            }
            if e.expanded.len() >= super::secret::MIN_REDACTED_LEN && out.contains(&e.expanded) {
                out = out.replace(&e.expanded, &e.template);
            }
        }
        for (name, value) in &vars {
            let reference = format!("${{{name}}}");
            for form in [value.to_string(), value.escape_debug().to_string()] {
                if out.contains(&form) {
                    out = out.replace(&form, &reference);
                }
            }
        }
        redactor.redact(&out)
    };
    errors
        .into_iter()
        .map(|e| ConfigError {
            path: scrub(&e.path),
            message: scrub(&e.message),
            location: e.location,
        })
        .collect()
}

/// serde_yaml appends " at line L column C"; the location is reported on its own.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains(" column ") => message[..i].to_string(),
        _ => message.to_string(),
    }
}

/// Replaces `${NAME}` in every string with the environment variable's value (`$${` stays a
/// literal `${`). Expanded values are secrets.
fn expand_env(
    value: &mut Value,
    path: &mut String,
    expansions: &mut Vec<Expansion>,
    errors: &mut Vec<ConfigError>,
) {
    match value {
        Value::String(s) if s.contains("${") => match expand_string(s) {
            Ok((expanded, vars)) => {
                let template = std::mem::replace(s, expanded.clone());
                if !vars.is_empty() {
                    expansions.push(Expansion {
                        template,
                        expanded,
                        vars,
                    });
                }
            }
            Err(message) => errors.push(ConfigError {
                path: path.clone(),
                message,
                location: None,
            }),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                expand_env(item, path, expansions, errors);
                path.truncate(len);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key.as_str().unwrap_or("?"));
                expand_env(item, path, expansions, errors);
                path.truncate(len);
            }
        }
        Value::Tagged(tagged) => expand_env(&mut tagged.value, path, expansions, errors),
        _ => {}
    }
}

/// The expanded string, and each variable used with its value.
fn expand_string(s: &str) -> Result<(String, Vec<(String, String)>), String> {
    let mut out = String::with_capacity(s.len());
    let mut used = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(stripped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = stripped;
        } else if let Some(body) = after.strip_prefix("${") {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated ${...} reference".to_string())?;
            let name = &body[..end];
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!("invalid environment variable name {name:?}"));
            }
            let value = std::env::var(name)
                .map_err(|_| format!("environment variable {name:?} is not set"))?;
            out.push_str(&value);
            used.push((name.to_string(), value));
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok((out, used))
}

struct Validator {
    base_dir: PathBuf,
    errors: Vec<ConfigError>,
    secrets: Vec<String>,
    expansions: Vec<Expansion>,
}

impl Validator {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError {
            path: path.into(),
            message: message.into(),
            location: None,
        });
    }

    /// Reads a secret file: surrounding whitespace (the usual trailing newline) is dropped.
    fn read_secret_file(&mut self, path: &str, file: &Path) -> Option<Secret> {
        let full = if file.is_absolute() {
            file.to_path_buf()
        } else {
            self.base_dir.join(file)
        };
        match std::fs::read_to_string(&full) {
            Ok(text) => {
                let value = text.trim().to_string();
                self.secrets.push(value.clone());
                Some(Secret::new(value))
            }
            Err(e) => {
                self.error(path, format!("cannot read {}: {e}", full.display()));
                None
            }
        }
    }

    /// A URL for an error message: as written when it came whole from `${ENV}` (a webhook URL
    /// is the credential), else without its password and query values.
    fn show_url(&self, url: &str) -> String {
        match self.expansions.iter().find(|e| e.expanded == url) {
            Some(e) => super::redact_url(&e.template),
            None => super::redact_url(url),
        }
    }

    /// A URL's password and query values are secrets.
    fn url_password_is_secret(&mut self, url: &str) {
        self.secrets.extend(super::secret::url_secrets(url));
        if let Ok(parsed) = reqwest::Url::parse(url) {
            // As the parser normalised them: that is what a library's error quotes.
            self.secrets
                .extend(super::secret::url_secrets(parsed.as_str()));
        }
    }

    fn config(&mut self, file: FileConfig, overrides: &Overrides, source: ConfigSource) -> Config {
        let web = self.web(file.web, overrides);
        let store = self.store(file.state, overrides);
        let defaults = self.defaults(&file.defaults);
        let checks = self.checks(file.checks, &defaults);
        let mut recovery = self.recovery(&file.recovery, &checks);
        recovery.maintenance = self.maintenance(&file.maintenance);
        let predictions = self.predictions(&file.predictions, &checks);
        if file.alertmanager.is_none() {
            self.needs_no_alertmanager(&file.recovery);
        }
        let alertmanager = file.alertmanager.and_then(|am| self.alertmanager(am));
        Config {
            web,
            store,
            checks,
            recovery,
            predictions,
            alertmanager,
            history_size: defaults.history_size,
            redactor: Redactor::default(),
            source,
        }
    }

    fn web(&mut self, web: WebFile, overrides: &Overrides) -> WebConfig {
        let listen_address = overrides
            .listen_address
            .clone()
            .or(web.listen_address)
            .unwrap_or_else(|| DEFAULT_LISTEN_ADDRESS.to_string());
        if listen_address
            .rsplit_once(':')
            .is_none_or(|(_, port)| port.parse::<u16>().is_err())
        {
            self.error(
                "web.listen_address",
                format!("{listen_address:?} is not host:port"),
            );
        }
        let hook = web.webhook;
        let auth = match self.credential(
            "web.webhook",
            hook.bearer_token,
            hook.bearer_token_file,
            hook.basic_auth,
        ) {
            None => WebhookAuth::LoopbackOnly,
            Some(Credential::Bearer(token)) => WebhookAuth::Bearer(token),
            Some(Credential::Basic { username, password }) => {
                WebhookAuth::Basic { username, password }
            }
        };
        let max_body_bytes = hook.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
        if max_body_bytes == 0 {
            self.error("web.webhook.max_body_bytes", "must be greater than 0");
        }
        WebConfig {
            listen_address,
            webhook: WebhookConfig {
                auth,
                max_body_bytes,
            },
        }
    }

    /// The one credential of an HTTP endpoint, as Prometheus spells it: a bearer token inline or
    /// in a file, or basic auth with its password inline or in a file; at most one of them.
    fn credential(
        &mut self,
        path: &str,
        bearer_token: Option<String>,
        bearer_token_file: Option<PathBuf>,
        basic_auth: Option<BasicAuthFile>,
    ) -> Option<Credential> {
        let mut given = 0;
        let mut credential = None;
        if let Some(token) = bearer_token {
            given += 1;
            self.secrets.push(token.clone());
            credential = Some(Credential::Bearer(Secret::new(token)));
        }
        if let Some(file) = bearer_token_file {
            given += 1;
            let key = format!("{path}.bearer_token_file");
            if let Some(token) = self.read_secret_file(&key, &file) {
                credential = Some(Credential::Bearer(token));
            }
        }
        if let Some(basic) = basic_auth {
            given += 1;
            let password = match (basic.password, basic.password_file) {
                (Some(p), None) => {
                    self.secrets.push(p.clone());
                    Some(Secret::new(p))
                }
                (None, Some(file)) => {
                    self.read_secret_file(&format!("{path}.basic_auth.password_file"), &file)
                }
                _ => {
                    self.error(
                        format!("{path}.basic_auth"),
                        "exactly one of password and password_file is required",
                    );
                    None
                }
            };
            if let Some(password) = password {
                credential = Some(Credential::Basic {
                    username: basic.username,
                    password,
                });
            }
        }
        if given > 1 {
            self.error(
                path,
                "at most one of bearer_token, bearer_token_file and basic_auth may be set",
            );
        }
        if matches!(&credential, Some(Credential::Bearer(t)) if t.expose().is_empty()) {
            self.error(path, "bearer token is empty");
        }
        credential
    }

    fn alertmanager(&mut self, am: AlertmanagerFile) -> Option<AlertmanagerConfig> {
        let path = "alertmanager";
        self.url_password_is_secret(&am.url);
        let url_ok = (am.url.starts_with("http://") || am.url.starts_with("https://"))
            && reqwest::Url::parse(&am.url).is_ok_and(|u| u.host().is_some());
        if !url_ok {
            self.error(
                "alertmanager.url",
                format!(
                    "{:?} must be an http:// or https:// URL",
                    self.show_url(&am.url)
                ),
            );
        }
        let auth = match self.credential(path, am.bearer_token, am.bearer_token_file, am.basic_auth)
        {
            None => ClientAuth::None,
            Some(Credential::Bearer(token)) => ClientAuth::Bearer(token),
            Some(Credential::Basic { username, password }) => {
                ClientAuth::Basic { username, password }
            }
        };
        let file = am.tls_config.unwrap_or_default();
        let resolve = |p: PathBuf| {
            if p.is_absolute() {
                p
            } else {
                self.base_dir.join(p)
            }
        };
        let tls = ClientTls {
            ca_file: file.ca_file.map(resolve),
            cert_file: file.cert_file.map(resolve),
            key_file: file.key_file.map(resolve),
            server_name: file.server_name,
            insecure_skip_verify: file.insecure_skip_verify.unwrap_or(false),
        };
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            self.error(
                "alertmanager.tls_config",
                "cert_file and key_file must be given together",
            );
        } else if let Err(e) = super::client_tls::read(&tls) {
            self.error("alertmanager.tls_config", e);
        }
        if let Some(key) = &tls.key_file {
            // The key file's contents are a secret like any password.
            if let Ok(text) = std::fs::read_to_string(key) {
                self.secrets.push(text.trim().to_string());
            }
        }
        let resend_delay = am.resend_delay.unwrap_or(Duration::from_secs(60));
        if resend_delay.is_zero() {
            self.error("alertmanager.resend_delay", "must be greater than 0s");
        }
        url_ok.then(|| AlertmanagerConfig {
            url: Secret::new(am.url.trim_end_matches('/')),
            auth,
            tls,
            resend_delay,
        })
    }

    /// Without `alertmanager:`, an `alert` step or a route's `silence` could never work.
    fn needs_no_alertmanager(&mut self, recovery: &RecoveryFile) {
        for (name, chain) in &recovery.chains {
            for (i, step) in chain.steps.iter().enumerate() {
                if step.alert.is_some() {
                    self.error(
                        format!("recovery.chains.{name}.steps[{i}] {:?}", step.name),
                        "an alert step needs alertmanager: to be configured",
                    );
                }
            }
        }
        for (i, route) in recovery.routes.iter().enumerate() {
            if route
                .silence
                .as_ref()
                .is_some_and(|s| *s != SilenceFile::Enabled(false))
            {
                self.error(
                    format!("recovery.routes[{i}]"),
                    "silence needs alertmanager: to be configured",
                );
            }
        }
    }

    fn store(&mut self, state: StateFile, overrides: &Overrides) -> StoreConfig {
        let from_file = state.url_file.clone();
        let url = match (&overrides.state_url, state.url, state.url_file) {
            (Some(url), _, _) => Secret::new(url.clone()),
            (None, Some(url), None) => Secret::new(url),
            (None, None, Some(file)) => self
                .read_secret_file("state.url_file", &file)
                .unwrap_or_else(|| Secret::new(DEFAULT_STATE_URL)),
            (None, None, None) => Secret::new(DEFAULT_STATE_URL),
            (None, Some(_), Some(_)) => {
                self.error("state", "at most one of url and url_file may be set");
                Secret::new(DEFAULT_STATE_URL)
            }
        };
        self.url_password_is_secret(url.expose());
        let scheme_ok = ["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|p| url.expose().starts_with(p));
        if !scheme_ok {
            // A URL read from a file is secret whole: the message names the file instead.
            let (key, shown) = match (&overrides.state_url, &from_file) {
                (None, Some(file)) => ("state.url_file", format!("the URL in {}", file.display())),
                _ => ("state.url", self.show_url(url.expose())),
            };
            self.error(
                key,
                format!("{shown} must start with sqlite: or postgres://"),
            );
        }
        let retention = state.retention.unwrap_or(DEFAULT_RETENTION);
        if retention.is_zero() {
            self.error("state.retention", "must be greater than 0s");
        }
        let retention_results = state.retention_results.unwrap_or(DEFAULT_RETENTION_RESULTS);
        if retention_results == 0 {
            self.error("state.retention_results", "must be greater than 0");
        }
        StoreConfig {
            url,
            retention,
            retention_results,
        }
    }

    fn defaults(&mut self, d: &DefaultsFile) -> Defaults {
        let interval = d.interval.unwrap_or(DEFAULT_INTERVAL);
        if interval.is_zero() {
            self.error("defaults.interval", "must be greater than 0s");
        }
        if let Some(timeout) = d.timeout {
            if timeout.is_zero() {
                self.error("defaults.timeout", "must be greater than 0s");
            }
        }
        for (key, value) in [
            ("failures_before_critical", d.failures_before_critical),
            ("successes_before_healthy", d.successes_before_healthy),
        ] {
            if value == Some(0) {
                self.error(format!("defaults.{key}"), "must be at least 1");
            }
        }
        let flapping = d
            .flapping
            .and_then(|f| self.flapping("defaults.flapping", f));
        let history_size = d.history_size.unwrap_or(DEFAULT_HISTORY_SIZE);
        if !(1..=10_000).contains(&history_size) {
            self.error("defaults.history_size", "must be between 1 and 10000");
        }
        Defaults {
            interval,
            timeout: d.timeout,
            failures_before_critical: d.failures_before_critical.unwrap_or(1).max(1),
            successes_before_healthy: d.successes_before_healthy.unwrap_or(1).max(1),
            flapping,
            history_size,
        }
    }

    fn flapping(&mut self, path: &str, f: FlappingFile) -> Option<Flapping> {
        let max = Flapping::MAX_WINDOW;
        let mut ok = true;
        if f.failures < 2 {
            // One failure "within" any window is just failures_before_critical: 1.
            self.error(path, "failures must be at least 2");
            ok = false;
        }
        if f.within < f.failures || f.within > max {
            self.error(
                path,
                format!("within must be between failures ({}) and {max}", f.failures),
            );
            ok = false;
        }
        ok.then_some(Flapping {
            failures: f.failures,
            within: f.within,
        })
    }

    fn checks(&mut self, checks: Vec<CheckFile>, defaults: &Defaults) -> Vec<CheckSpec> {
        let mut seen = BTreeSet::new();
        let mut specs = Vec::with_capacity(checks.len());
        for (i, check) in checks.into_iter().enumerate() {
            let path = format!("checks[{i}] {:?}", check.name);
            if let Err(message) = validate_name(&check.name) {
                self.error(format!("checks[{i}]"), format!("name {message}"));
            } else if !seen.insert(check.name.clone()) {
                self.error(&path, "duplicate check name");
            }
            if let Some(spec) = self.check(&path, check, defaults) {
                specs.push(spec);
            }
        }
        specs
    }

    fn check(&mut self, path: &str, c: CheckFile, d: &Defaults) -> Option<CheckSpec> {
        let interval = c.interval.unwrap_or(d.interval);
        if interval.is_zero() {
            self.error(path, "interval must be greater than 0s");
        }
        // A default timeout longer than a short interval shrinks to fit; only a timeout written
        // for this very check is held against its interval.
        let timeout = match c.timeout {
            Some(t) => {
                if t > interval {
                    self.error(
                        path,
                        format!("timeout {t} must not exceed interval {interval}"),
                    );
                }
                if t.is_zero() {
                    self.error(path, "timeout must be greater than 0s");
                }
                t
            }
            None => d.timeout.unwrap_or(DEFAULT_TIMEOUT).min(interval),
        };
        for (key, value) in [
            ("failures_before_critical", c.failures_before_critical),
            ("successes_before_healthy", c.successes_before_healthy),
        ] {
            if value == Some(0) {
                self.error(path, format!("{key} must be at least 1"));
            }
        }
        let flapping = match c.flapping {
            Some(f) => self.flapping(&format!("{path}.flapping"), f),
            None => d.flapping,
        };
        for key in c.labels.keys() {
            if validate_label_name(key).is_err() {
                self.error(
                    path,
                    format!("label name {key:?} must match [a-zA-Z_][a-zA-Z0-9_]*"),
                );
            }
        }
        let kinds = [
            c.http.is_some(),
            c.tcp.is_some(),
            c.database.is_some(),
            c.system.is_some(),
            c.command.is_some(),
            c.tls.is_some(),
            c.heartbeat.is_some(),
            c.dns.is_some(),
            c.grpc.is_some(),
        ];
        let kind_count = kinds.iter().filter(|k| **k).count();
        if kind_count != 1 {
            self.error(
                path,
                format!(
                    "exactly one of http, tcp, database, system, command, tls, dns, grpc, heartbeat is required (found {kind_count})"
                ),
            );
            return None;
        }
        let probe = if let Some(grpc) = c.grpc {
            ProbeSpec::Grpc(self.grpc(path, grpc)?)
        } else if let Some(dns) = c.dns {
            ProbeSpec::Dns(self.dns(path, dns)?)
        } else if let Some(hb) = c.heartbeat {
            ProbeSpec::Heartbeat(self.heartbeat(path, hb, interval)?)
        } else if let Some(tls) = c.tls {
            ProbeSpec::Tls(self.tls(path, tls)?)
        } else if let Some(http) = c.http {
            ProbeSpec::Http(self.http(path, http, timeout)?)
        } else if let Some(tcp) = c.tcp {
            ProbeSpec::Tcp(self.tcp(path, tcp, timeout)?)
        } else if let Some(db) = c.database {
            ProbeSpec::Database(self.database(path, db, timeout)?)
        } else if let Some(system) = c.system {
            ProbeSpec::System(self.system(path, system)?)
        } else if let Some(command) = c.command {
            if command.program.trim().is_empty() {
                self.error(path, "command.program must not be empty");
                return None;
            }
            ProbeSpec::CommandCheck(CommandSpec {
                program: command.program,
                args: command.args,
            })
        } else {
            return None;
        };
        Some(CheckSpec {
            name: c.name,
            interval,
            timeout,
            enabled: c.enabled.unwrap_or(true),
            failures_before_critical: c
                .failures_before_critical
                .unwrap_or(d.failures_before_critical)
                .max(1),
            successes_before_healthy: c
                .successes_before_healthy
                .unwrap_or(d.successes_before_healthy)
                .max(1),
            flapping,
            recovery: c.recovery,
            labels: c.labels,
            probe,
        })
    }

    fn warn_after(
        &mut self,
        path: &str,
        key: &str,
        warn_after: Option<Duration>,
        timeout: Duration,
    ) {
        if let Some(w) = warn_after {
            if w >= timeout {
                self.error(
                    path,
                    format!("{key}.warn_after {w} must be shorter than timeout {timeout}"),
                );
            }
        }
    }

    fn http(&mut self, path: &str, h: HttpFile, timeout: Duration) -> Option<HttpSpec> {
        let mut ok = true;
        self.url_password_is_secret(&h.url);
        match reqwest::Url::parse(&h.url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            Ok(_) => {
                self.error(
                    path,
                    format!(
                        "http.url {:?} must be an http:// or https:// URL with a host",
                        self.show_url(&h.url)
                    ),
                );
                ok = false;
            }
            Err(e) => {
                self.error(
                    path,
                    format!(
                        "http.url {:?} is not a valid URL: {e}",
                        self.show_url(&h.url)
                    ),
                );
                ok = false;
            }
        }
        let method = h
            .method
            .clone()
            .unwrap_or_else(|| "GET".to_string())
            .to_ascii_uppercase();
        if reqwest::Method::from_bytes(method.as_bytes()).is_err() || method.is_empty() {
            self.error(
                path,
                // As written: an upper-cased `${ENV}` value would not be recognised as one.
                format!(
                    "http.method {:?} is not a valid HTTP method",
                    h.method.as_deref().unwrap_or_default()
                ),
            );
            ok = false;
        }
        let mut headers = Vec::new();
        for (name, value) in h.headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                self.error(
                    path,
                    format!("http.headers: {name:?} is not a valid header name"),
                );
                ok = false;
            }
            if reqwest::header::HeaderValue::from_str(&value).is_err() {
                self.error(
                    path,
                    format!("http.headers: value of {name:?} is not a valid header value"),
                );
                ok = false;
            }
            self.secrets.push(value.clone());
            headers.push((name, Secret::new(value)));
        }
        let expect_status = h.expect_status.unwrap_or_default();
        for code in &expect_status {
            if !(100..=599).contains(code) {
                self.error(
                    path,
                    format!("http.expect_status: {code} is not an HTTP status code"),
                );
                ok = false;
            }
        }
        let body_regex = match h.body_regex {
            Some(re) => match regex::Regex::new(&re) {
                Ok(re) => Some(Pattern(re)),
                Err(e) => {
                    self.error(
                        path,
                        format!(
                            "http.body_regex {re:?} is invalid: {}",
                            first_line(&e.to_string())
                        ),
                    );
                    ok = false;
                    None
                }
            },
            None => None,
        };
        self.warn_after(path, "http", h.warn_after, timeout);
        ok.then(|| HttpSpec {
            url: Secret::new(h.url),
            method,
            headers,
            body: h.body,
            expect_status,
            expect_body: h.expect_body,
            body_regex,
            warn_after: h.warn_after,
            keep_alive: h.keep_alive.unwrap_or(false),
            follow_redirects: h.follow_redirects.unwrap_or(true),
        })
    }

    fn tcp(&mut self, path: &str, t: TcpFile, timeout: Duration) -> Option<TcpSpec> {
        let valid = t
            .address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            self.error(
                path,
                format!("tcp.address {:?} is not host:port", t.address),
            );
            return None;
        }
        self.warn_after(path, "tcp", t.warn_after, timeout);
        Some(TcpSpec {
            address: t.address,
            warn_after: t.warn_after,
        })
    }

    fn database(
        &mut self,
        path: &str,
        db: DatabaseFile,
        timeout: Duration,
    ) -> Option<DatabaseSpec> {
        let from_file = db.url_file.clone();
        let url = match (db.url, db.url_file) {
            (Some(url), None) => Secret::new(url),
            (None, Some(file)) => {
                self.read_secret_file(&format!("{path}: database.url_file"), &file)?
            }
            _ => {
                self.error(
                    path,
                    "exactly one of database.url and database.url_file is required",
                );
                return None;
            }
        };
        self.url_password_is_secret(url.expose());
        let supported = [
            "postgres://",
            "postgresql://",
            "mysql://",
            "mariadb://",
            "sqlite:",
        ];
        if !supported.iter().any(|p| url.expose().starts_with(p)) {
            self.error(
                path,
                match &from_file {
                    // Secret whole: name the file, not the URL.
                    Some(file) => format!(
                        "database.url_file: the URL in {} must start with postgres://, mysql:// or sqlite:",
                        file.display()
                    ),
                    None => format!(
                        "database.url {:?} must start with postgres://, mysql:// or sqlite:",
                        self.show_url(url.expose())
                    ),
                },
            );
            return None;
        }
        self.warn_after(path, "database", db.warn_after, timeout);
        let query = db.query.unwrap_or_else(|| "SELECT 1".to_string());
        if query.trim().is_empty() {
            self.error(path, "database.query must not be empty");
            return None;
        }
        Some(DatabaseSpec {
            url,
            query,
            warn_after: db.warn_after,
        })
    }

    fn limits(
        &mut self,
        path: &str,
        key: &str,
        warning: Option<f64>,
        critical: Option<f64>,
    ) -> Limits {
        for (level, value) in [("warning", warning), ("critical", critical)] {
            if let Some(v) = value {
                if !(0.0..=1.0).contains(&v) {
                    self.error(
                        path,
                        format!("system.{key}.{level} {v} must be a ratio between 0 and 1"),
                    );
                }
            }
        }
        if let (Some(w), Some(c)) = (warning, critical) {
            if w > c {
                self.error(
                    path,
                    format!("system.{key}.warning {w} must not exceed critical {c}"),
                );
            }
        }
        if warning.is_none() && critical.is_none() {
            self.error(path, format!("system.{key} needs warning or critical"));
        }
        Limits { warning, critical }
    }

    fn system(&mut self, path: &str, s: SystemFile) -> Option<SystemSpec> {
        if s.cpu.is_none() && s.memory.is_none() && s.disk.is_none() {
            self.error(path, "system needs at least one of cpu, memory, disk");
            return None;
        }
        let cpu = s
            .cpu
            .map(|t| self.limits(path, "cpu", t.warning, t.critical));
        let memory = s
            .memory
            .map(|t| self.limits(path, "memory", t.warning, t.critical));
        let disk = s.disk.map(|d| {
            let limits = self.limits(path, "disk", d.warning, d.critical);
            let mountpoints = d.mountpoints.unwrap_or_default();
            for m in &mountpoints {
                if !m.starts_with('/') {
                    self.error(
                        path,
                        format!("system.disk.mountpoints: {m:?} must be an absolute path"),
                    );
                }
            }
            DiskSpec {
                limits,
                mountpoints,
            }
        });
        Some(SystemSpec { cpu, memory, disk })
    }

    fn template(&mut self, path: &str, key: &str, source: &str) -> Option<Template> {
        match Template::parse(source) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(path, format!("{key}: {e}"));
                None
            }
        }
    }

    fn headers(
        &mut self,
        path: &str,
        key: &str,
        headers: &BTreeMap<String, String>,
    ) -> Vec<(String, Template)> {
        let mut out = Vec::new();
        for (name, value) in headers {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                self.error(
                    path,
                    format!("{key}.headers: {name:?} is not a valid header name"),
                );
            }
            self.secrets.push(value.clone());
            if let Some(t) = self.template(path, &format!("{key}.headers.{name}"), value) {
                out.push((name.clone(), t));
            }
        }
        out
    }

    fn action_url(&mut self, path: &str, key: &str, url: &str) -> Option<Template> {
        self.url_password_is_secret(url);
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            self.error(
                path,
                format!(
                    "{key} {:?} must be an http:// or https:// URL",
                    self.show_url(url)
                ),
            );
            return None;
        }
        self.template(path, key, url)
    }

    fn step(&mut self, path: &str, step: &StepFile) -> Option<StepSpec> {
        let actions = [
            step.exec.is_some(),
            step.http.is_some(),
            step.notify.is_some(),
            step.alert.is_some(),
        ]
        .iter()
        .filter(|a| **a)
        .count();
        if actions != 1 {
            self.error(
                path,
                // The message predates `alert`; it names it only where it is involved, so
                // existing tooling matching the old text keeps working.
                if step.alert.is_some() {
                    format!(
                        "exactly one of exec, http, notify, alert is required (found {actions})"
                    )
                } else {
                    format!("exactly one of exec, http, notify is required (found {actions})")
                },
            );
            return None;
        }
        if step.max_attempts == Some(0) {
            self.error(path, "max_attempts must be at least 1");
        }
        let timeout = step.timeout.unwrap_or(DEFAULT_STEP_TIMEOUT);
        if timeout.is_zero() {
            self.error(path, "timeout must be greater than 0s");
        }
        if step.detach.is_some() && step.exec.is_none() {
            self.error(path, "detach applies to exec steps only");
        }
        let action = if let Some(exec) = &step.exec {
            if exec.program.trim().is_empty() {
                self.error(path, "exec.program must not be empty");
                return None;
            }
            let program = self.template(path, "exec.program", &exec.program)?;
            let args: Vec<Option<Template>> = exec
                .args
                .iter()
                .enumerate()
                .map(|(i, a)| self.template(path, &format!("exec.args[{i}]"), a))
                .collect();
            ActionSpec::Exec {
                program,
                args: args.into_iter().collect::<Option<Vec<_>>>()?,
                detach: step.detach.or(exec.detach).unwrap_or(false),
            }
        } else if let Some(http) = &step.http {
            let url = self.action_url(path, "http.url", &http.url);
            let method = http
                .method
                .clone()
                .unwrap_or_else(|| "POST".to_string())
                .to_ascii_uppercase();
            if reqwest::Method::from_bytes(method.as_bytes()).is_err() {
                self.error(
                    path,
                    format!(
                        "http.method {:?} is not a valid HTTP method",
                        http.method.as_deref().unwrap_or_default()
                    ),
                );
            }
            let headers = self.headers(path, "http", &http.headers);
            let body = match &http.body {
                Some(b) => Some(self.template(path, "http.body", b)?),
                None => None,
            };
            ActionSpec::Http {
                method,
                url: url?,
                headers,
                body,
            }
        } else if let Some(notify) = &step.notify {
            let url = self.action_url(path, "notify.url", &notify.url)?;
            let headers = self.headers(path, "notify", &notify.headers);
            ActionSpec::Notify { url, headers }
        } else if let Some(alert) = &step.alert {
            let mut labels = Vec::new();
            for (name, value) in &alert.labels {
                if validate_label_name(name).is_err() {
                    self.error(
                        path,
                        format!("alert.labels: {name:?} is not a valid label name"),
                    );
                } else if crate::vocabulary::ESCALATION_RESERVED_LABELS.contains(&name.as_str()) {
                    self.error(path, format!("alert.labels: {name:?} is set by medic"));
                }
                if let Some(t) = self.template(path, &format!("alert.labels.{name}"), value) {
                    labels.push((name.clone(), t));
                }
            }
            let mut annotations = Vec::new();
            for (name, value) in &alert.annotations {
                if validate_label_name(name).is_err() {
                    self.error(
                        path,
                        format!("alert.annotations: {name:?} is not a valid annotation name"),
                    );
                }
                if let Some(t) = self.template(path, &format!("alert.annotations.{name}"), value) {
                    annotations.push((name.clone(), t));
                }
            }
            ActionSpec::Alert {
                labels,
                annotations,
            }
        } else {
            return None;
        };
        Some(StepSpec {
            name: step.name.clone(),
            action,
            max_attempts: step.max_attempts.unwrap_or(DEFAULT_MAX_ATTEMPTS).max(1),
            cooldown: step.cooldown.unwrap_or(DEFAULT_COOLDOWN),
            timeout,
            tier: step.tier,
        })
    }

    fn recovery(&mut self, recovery: &RecoveryFile, checks: &[CheckSpec]) -> RecoveryConfig {
        let check_names: BTreeSet<&str> = checks.iter().map(|c| c.name.as_str()).collect();
        let mut chains = BTreeMap::new();
        let mut per_chain = BTreeMap::new();
        for (name, chain) in &recovery.chains {
            let path = format!("recovery.chains.{name}");
            if let Err(message) = validate_name(name) {
                self.error(&path, format!("name {message}"));
            }
            if chain.steps.is_empty() {
                self.error(&path, "needs at least one step");
            }
            let mut step_names = BTreeSet::new();
            let mut steps = Vec::new();
            for (i, step) in chain.steps.iter().enumerate() {
                let step_path = format!("{path}.steps[{i}] {:?}", step.name);
                if let Err(message) = validate_name(&step.name) {
                    self.error(&step_path, format!("name {message}"));
                } else if !step_names.insert(step.name.as_str()) {
                    self.error(&step_path, "duplicate step name");
                }
                if let Some(spec) = self.step(&step_path, step) {
                    steps.push(spec);
                }
            }
            let verify_timeout = chain.verify_timeout.unwrap_or(DEFAULT_VERIFY_TIMEOUT);
            if verify_timeout.is_zero() {
                self.error(&path, "verify_timeout must be greater than 0s");
            }
            if let Some(max) = chain.max_concurrent_runs {
                if max == 0 {
                    self.error(&path, "max_concurrent_runs must be at least 1");
                } else {
                    per_chain.insert(name.clone(), max);
                }
            }
            chains.insert(
                name.clone(),
                Arc::new(ChainSpec {
                    name: name.clone(),
                    verify_timeout,
                    reset_after: chain.reset_after.unwrap_or(DEFAULT_RESET_AFTER),
                    order: chain.order.unwrap_or_default(),
                    steps,
                    mode: chain.mode.or(recovery.mode).unwrap_or_default(),
                }),
            );
        }
        for check in checks {
            let Some(chain_name) = &check.recovery else {
                continue;
            };
            let Some(chain) = chains.get(chain_name) else {
                self.error(
                    format!("checks {:?}", check.name),
                    format!("recovery chain {chain_name:?} is not defined in recovery.chains"),
                );
                continue;
            };
            // A check-triggered run renders with the check's labels: a missing one would fail
            // every run, so it is an error now.
            for step in &chain.steps {
                for var in step.action.vars() {
                    let missing = match var {
                        Var::Label(label) => !check.labels.contains_key(label),
                        Var::Annotation(_) => true,
                        Var::Check | Var::Chain => false,
                    };
                    if missing {
                        self.error(
                            format!("checks {:?}", check.name),
                            format!(
                                "recovery chain {chain_name:?} step {:?} uses {{{{ {var} }}}}, which the check does not provide (set it in labels:)",
                                step.name
                            ),
                        );
                    }
                }
            }
        }
        let mut routes = Vec::new();
        for (i, route) in recovery.routes.iter().enumerate() {
            let path = format!("recovery.routes[{i}]");
            if !chains.contains_key(&route.chain) {
                self.error(
                    &path,
                    format!("chain {:?} is not defined in recovery.chains", route.chain),
                );
            }
            if let Some(check) = &route.verify_check {
                if !check_names.contains(check.as_str()) {
                    self.error(
                        &path,
                        format!("verify_check {check:?} is not a configured check"),
                    );
                }
            }
            if route.matchers.is_empty() {
                self.error(&path, "needs at least one matcher");
            }
            let mut matchers = Vec::new();
            for (j, text) in route.matchers.iter().enumerate() {
                match crate::alertmanager::Matcher::parse(text) {
                    Ok(m) => matchers.push(m),
                    Err(e) => self.error(format!("{path}.matchers[{j}]"), e.to_string()),
                }
            }
            let silence = match &route.silence {
                None | Some(SilenceFile::Enabled(false)) => None,
                Some(SilenceFile::Enabled(true)) => Some(SilenceSpec::AlertLabels),
                Some(SilenceFile::Matchers(m)) => {
                    if m.matchers.is_empty() {
                        self.error(format!("{path}.silence"), "needs at least one matcher");
                    }
                    let mut templates = Vec::new();
                    for (j, text) in m.matchers.iter().enumerate() {
                        let key = format!("{path}.silence.matchers[{j}]");
                        if let Some(t) = self.template(&key, "matcher", text) {
                            // Without placeholders the matcher can be checked now.
                            if t.vars().next().is_none() {
                                if let Err(e) = crate::alertmanager::Matcher::parse(text) {
                                    self.error(&key, e.to_string());
                                }
                            }
                            templates.push(t);
                        }
                    }
                    Some(SilenceSpec::Matchers(templates))
                }
            };
            routes.push(RouteSpec {
                matchers,
                chain: route.chain.clone(),
                verify_check: route.verify_check.clone(),
                silence,
            });
        }
        let mut limits = self.recovery_limits(&recovery.limits);
        limits.per_chain = per_chain;
        RecoveryConfig {
            chains,
            routes,
            limits,
            maintenance: Vec::new(),
        }
    }

    fn recovery_limits(&mut self, file: &LimitsFile) -> RecoveryLimits {
        let path = "recovery.limits";
        let max_concurrent_runs = file
            .max_concurrent_runs
            .unwrap_or(DEFAULT_MAX_CONCURRENT_RUNS);
        if max_concurrent_runs == 0 {
            self.error(path, "max_concurrent_runs must be at least 1");
        }
        let max_runs = file.max_runs.as_ref().and_then(|rate| {
            if rate.count == 0 {
                self.error(format!("{path}.max_runs"), "count must be at least 1");
            }
            if rate.within.is_zero() {
                self.error(format!("{path}.max_runs"), "within must be greater than 0s");
            }
            (rate.count > 0 && !rate.within.is_zero()).then(|| RateLimit {
                count: rate.count,
                within_ms: i64::try_from(rate.within.std().as_millis()).unwrap_or(i64::MAX),
            })
        });
        let max_unhealthy = match &file.max_unhealthy {
            None => MaxUnhealthy::default(),
            Some(ShareOrCount::Count(n)) => {
                MaxUnhealthy::Count(u32::try_from(*n).unwrap_or(u32::MAX))
            }
            Some(ShareOrCount::Text(text)) => match parse_share_or_count(text) {
                Ok(m) => m,
                Err(why) => {
                    self.error(format!("{path}.max_unhealthy"), why);
                    MaxUnhealthy::default()
                }
            },
        };
        RecoveryLimits {
            max_concurrent_runs: Some(max_concurrent_runs.max(1)),
            max_runs,
            max_unhealthy,
            per_chain: BTreeMap::new(),
        }
    }

    fn maintenance(&mut self, windows: &[MaintenanceFile]) -> Vec<Window> {
        let mut names = BTreeSet::new();
        let mut out = Vec::new();
        for (i, file) in windows.iter().enumerate() {
            let path = format!("maintenance[{i}]");
            let mut ok = true;
            if let Err(message) = validate_name(&file.name) {
                self.error(&path, format!("name {message}"));
                ok = false;
            } else if !names.insert(file.name.as_str()) {
                self.error(&path, format!("duplicate window name {:?}", file.name));
                ok = false;
            }
            let mut matchers = Vec::new();
            for (j, text) in file.matchers.iter().enumerate() {
                match crate::alertmanager::Matcher::parse(text) {
                    Ok(m) => matchers.push(m),
                    Err(e) => {
                        self.error(format!("{path}.matchers[{j}]"), e.to_string());
                        ok = false;
                    }
                }
            }
            let when = match (&file.schedule, &file.between) {
                (Some(_), Some(_)) => {
                    self.error(&path, "has both schedule and between; give one");
                    None
                }
                (None, None) => {
                    self.error(&path, "needs a schedule or between");
                    None
                }
                (Some(schedule), None) => self.schedule(&format!("{path}.schedule"), schedule),
                (None, Some(between)) => self.between(&format!("{path}.between"), between),
            };
            if let (true, Some(when)) = (ok, when) {
                out.push(Window {
                    name: file.name.clone(),
                    matchers,
                    when,
                });
            }
        }
        out
    }

    fn schedule(&mut self, path: &str, file: &ScheduleFile) -> Option<When> {
        let mut ok = true;
        let days = match &file.days {
            None => ALL_DAYS.to_vec(),
            Some(days) if days.is_empty() => {
                self.error(path, "days is empty: leave it out for every day");
                ok = false;
                Vec::new()
            }
            Some(days) => days
                .iter()
                .enumerate()
                .filter_map(|(k, d)| match maintenance::parse_weekday(d) {
                    Ok(day) => Some(day),
                    Err(why) => {
                        self.error(format!("{path}.days[{k}]"), why);
                        ok = false;
                        None
                    }
                })
                .collect(),
        };
        let start = maintenance::parse_clock(&file.start)
            .map_err(|why| self.error(format!("{path}.start"), why))
            .ok();
        if file.duration.is_zero() {
            self.error(format!("{path}.duration"), "must be greater than 0s");
            ok = false;
        } else if file.duration.std() > maintenance::MAX_DURATION {
            self.error(
                format!("{path}.duration"),
                format!("{} is longer than a week", file.duration),
            );
            ok = false;
        }
        let zone_name = file.time_zone.as_deref().unwrap_or("UTC");
        let time_zone = maintenance::parse_time_zone(zone_name)
            .map_err(|why| self.error(format!("{path}.time_zone"), why))
            .ok();
        match (ok, start, time_zone) {
            (true, Some(start), Some(time_zone)) => Some(When::Weekly {
                days,
                start,
                duration: file.duration.std(),
                time_zone,
            }),
            _ => None,
        }
    }

    fn between(&mut self, path: &str, between: &[String]) -> Option<When> {
        let [start, end] = between else {
            self.error(path, "needs two instants: [start, end]");
            return None;
        };
        let start_ms = maintenance::parse_instant(start)
            .map_err(|why| self.error(format!("{path}[0]"), why))
            .ok();
        let end_ms = maintenance::parse_instant(end)
            .map_err(|why| self.error(format!("{path}[1]"), why))
            .ok();
        let (start_ms, end_ms) = (start_ms?, end_ms?);
        if end_ms <= start_ms {
            self.error(path, "the end must be after the start");
            return None;
        }
        Some(When::Between { start_ms, end_ms })
    }

    fn predictions(
        &mut self,
        predictions: &[PredictionFile],
        checks: &[CheckSpec],
    ) -> Vec<PredictionSpec> {
        let mut specs = Vec::new();
        let mut seen = BTreeSet::new();
        let by_name: BTreeMap<&str, &CheckSpec> =
            checks.iter().map(|c| (c.name.as_str(), c)).collect();
        for (i, p) in predictions.iter().enumerate() {
            let path = format!("predictions[{i}] {:?}", p.name);
            if let Err(message) = validate_name(&p.name) {
                self.error(&path, format!("name {message}"));
            } else if !seen.insert(p.name.as_str()) {
                self.error(&path, "duplicate prediction name");
            }
            match by_name.get(p.check.as_str()) {
                None => self.error(
                    &path,
                    format!("check {:?} is not a configured check", p.check),
                ),
                Some(check) => {
                    let known = match &check.probe {
                        ProbeSpec::System(_) => matches!(
                            p.measurement.as_str(),
                            Measure::DURATION | Measure::CPU | Measure::MEMORY | Measure::DISK
                        ),
                        // Perfdata labels are only known once the plugin has run.
                        ProbeSpec::CommandCheck(_) => true,
                        _ => p.measurement == Measure::DURATION,
                    };
                    if !known {
                        self.error(
                            &path,
                            format!(
                                "measurement {:?} is not produced by {} check {:?}",
                                p.measurement,
                                check.probe.kind(),
                                check.name
                            ),
                        );
                    }
                }
            }
            if p.mountpoint.is_some() && p.measurement != Measure::DISK {
                self.error(
                    &path,
                    "mountpoint applies only to measurement disk_utilization",
                );
            }
            for h in &p.horizons {
                match h.parse::<Duration>() {
                    Ok(d) if !d.is_zero() => {}
                    Ok(_) => self.error(&path, "horizons must be greater than 0s"),
                    Err(e) => self.error(&path, format!("horizons: {e}")),
                }
            }
            match (p.breach_above, p.breach_below) {
                (Some(_), Some(_)) => self.error(
                    &path,
                    "at most one of breach_above and breach_below may be set",
                ),
                (Some(v), None) | (None, Some(v)) if !v.is_finite() => {
                    self.error(&path, "breach threshold must be a finite number")
                }
                _ => {}
            }
            if p.window.is_some_and(|w| w.is_zero()) {
                self.error(&path, "window must be greater than 0s");
            }
            let max_horizon = p.max_horizon.unwrap_or(DEFAULT_MAX_HORIZON);
            if max_horizon.is_zero() {
                self.error(&path, "max_horizon must be greater than 0s");
            }
            // A disk prediction names its mountpoint, unless the check watches only one.
            let mut mountpoint = p.mountpoint.clone();
            if p.measurement == Measure::DISK && mountpoint.is_none() {
                let only = by_name.get(p.check.as_str()).and_then(|c| match &c.probe {
                    ProbeSpec::System(SystemSpec { disk: Some(d), .. })
                        if d.mountpoints.len() == 1 =>
                    {
                        Some(d.mountpoints[0].clone())
                    }
                    _ => None,
                });
                match only {
                    Some(m) => mountpoint = Some(m),
                    None => self.error(&path, "disk_utilization needs a mountpoint"),
                }
            }
            specs.push(PredictionSpec {
                name: p.name.clone(),
                check: p.check.clone(),
                // Invalid combinations were reported above; the placeholder is never used.
                measure: Measure::from_parts(&p.measurement, mountpoint)
                    .unwrap_or(Measure::Duration),
                window: p.window.unwrap_or(DEFAULT_WINDOW),
                horizons: p
                    .horizons
                    .iter()
                    .filter_map(|h| h.parse::<Duration>().ok().map(|d| (h.clone(), d)))
                    .collect(),
                breach: match (p.breach_above, p.breach_below) {
                    (Some(v), None) => Some(Breach::Above(v)),
                    (None, Some(v)) => Some(Breach::Below(v)),
                    _ => None,
                },
                max_horizon,
            });
        }
        specs
    }
}

struct Defaults {
    interval: Duration,
    timeout: Option<Duration>,
    failures_before_critical: u32,
    successes_before_healthy: u32,
    flapping: Option<Flapping>,
    history_size: usize,
}

/// Names become label values and URL path segments: keep them plain.
/// `50%` (a share of the enabled checks) or `20` (a number of them).
fn parse_share_or_count(text: &str) -> Result<MaxUnhealthy, String> {
    let bad = || {
        format!(
            "invalid value {text:?} (want a share of the enabled checks such as \"50%\" or a number of them such as 20)"
        )
    };
    let text_trimmed = text.trim();
    if let Some(percent) = text_trimmed.strip_suffix('%') {
        let value: f64 = percent.trim().parse().map_err(|_| bad())?;
        if !(0.0..=100.0).contains(&value) {
            return Err(format!("{text:?} is not a share between 0% and 100%"));
        }
        return Ok(MaxUnhealthy::Share(value / 100.0));
    }
    text_trimmed
        .parse::<u32>()
        .map(MaxUnhealthy::Count)
        .map_err(|_| bad())
}

const ALL_DAYS: [jiff::civil::Weekday; 7] = [
    jiff::civil::Weekday::Monday,
    jiff::civil::Weekday::Tuesday,
    jiff::civil::Weekday::Wednesday,
    jiff::civil::Weekday::Thursday,
    jiff::civil::Weekday::Friday,
    jiff::civil::Weekday::Saturday,
    jiff::civil::Weekday::Sunday,
];

fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("must be at most {MAX_NAME_LEN} characters"));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
    {
        return Err(format!(
            "{name:?} may only contain letters, digits, '_', '-', '.' and ':'"
        ));
    }
    Ok(())
}

fn validate_label_name(name: &str) -> Result<(), ()> {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return Err(()),
    }
    if chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        Ok(())
    } else {
        Err(())
    }
}

fn first_line(s: &str) -> String {
    s.lines().last().unwrap_or(s).trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, ConfigErrors> {
        load_str(
            text,
            Path::new("."),
            &Overrides::default(),
            ConfigSource::Builtin,
        )
    }

    fn errors(text: &str) -> Vec<String> {
        match load(text) {
            Ok(_) => panic!("config should be invalid:\n{text}"),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn empty_file_is_a_valid_config_with_defaults() {
        let c = load("").unwrap();
        assert!(c.checks.is_empty());
        assert_eq!(c.web.listen_address, "127.0.0.1:7979");
        assert_eq!(c.store.url.expose(), "sqlite://data/medic.db");
        assert_eq!(c.web.webhook.max_body_bytes, 1024 * 1024);
    }

    #[test]
    fn defaults_fill_checks_and_timeout_shrinks_to_short_interval() {
        let c = load("checks:\n- name: a\n  interval: 5s\n  tcp: {address: 'localhost:1'}\n- name: b\n  tcp: {address: 'localhost:1'}\n").unwrap();
        assert_eq!(c.checks[0].timeout, "5s".parse().unwrap());
        assert_eq!(c.checks[1].interval, "30s".parse().unwrap());
        assert_eq!(c.checks[1].timeout, "10s".parse().unwrap());
        assert_eq!(c.checks[1].failures_before_critical, 1);
    }

    #[test]
    fn every_error_is_reported_with_its_path() {
        let e = errors(
            "checks:\n- name: api\n  interval: 2s\n  timeout: 5s\n  tcp: {address: 'x:1'}\n- name: api\n  tcp: {address: nope}\n",
        );
        assert_eq!(
            e,
            vec![
                r#"checks[0] "api": timeout 5s must not exceed interval 2s"#.to_string(),
                r#"checks[1] "api": duplicate check name"#.to_string(),
                r#"checks[1] "api": tcp.address "nope" is not host:port"#.to_string(),
            ]
        );
    }

    #[test]
    fn unknown_keys_are_errors_with_location() {
        let e = load("checks:\n  - name: a\n    tcp: {address: 'x:1', adress: 'y'}\n").unwrap_err();
        let first = &e.0[0];
        assert_eq!(first.path, "checks[0].tcp.adress");
        assert!(
            first.message.starts_with("unknown field `adress`"),
            "{}",
            first.message
        );
        assert_eq!(first.location.map(|l| l.0), Some(3));
    }

    #[test]
    fn env_references_expand_and_are_secret() {
        std::env::set_var("MEDIC_TEST_TOKEN_X", "s3cr3t-value");
        let c = load("web:\n  webhook:\n    bearer_token: ${MEDIC_TEST_TOKEN_X}\n").unwrap();
        assert_eq!(
            c.web.webhook.auth,
            WebhookAuth::Bearer(Secret::new("s3cr3t-value"))
        );
        assert_eq!(c.redactor.redact("x s3cr3t-value y"), "x <secret> y");
        let e = errors("web:\n  listen_address: ${MEDIC_TEST_SURELY_UNSET}\n");
        assert_eq!(
            e,
            vec![
                r#"web.listen_address: environment variable "MEDIC_TEST_SURELY_UNSET" is not set"#
            ]
        );
    }

    #[test]
    fn env_expansion_handles_escapes_and_plain_dollars() {
        std::env::set_var("MEDIC_TEST_A", "alpha");
        assert_eq!(
            expand_string("a ${MEDIC_TEST_A} $5 $${x} $").unwrap().0,
            "a alpha $5 ${x} $"
        );
        assert!(expand_string("${unterminated").is_err());
        assert!(expand_string("${1BAD}").is_err());
    }

    #[test]
    fn builtin_config_is_valid() {
        let c = load_builtin(&Overrides::default()).unwrap();
        assert_eq!(c.checks.len(), 2);
        let c = load_builtin(&Overrides {
            listen_address: Some("0.0.0.0:9000".into()),
            ..Default::default()
        })
        .unwrap();
        match &c.checks[1].probe {
            ProbeSpec::Http(h) => assert_eq!(h.url.expose(), "http://127.0.0.1:9000/-/healthy"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn errors_name_the_variable_never_its_value() {
        std::env::set_var("MEDIC_T_IVAL", "s3cr3t-ival");
        std::env::set_var("MEDIC_T_ADDR", "s3cr3t\"addr");
        std::env::set_var("MEDIC_T_HOOK", "hooks.example/s3cr3t-hook?sig=s3cr3t-sig");
        std::env::set_var("MEDIC_T_DB", "mysq://u:s3cr3t-pw@db/x");
        std::env::set_var("MEDIC_T_ARG", "s3cr3t-arg");
        std::env::set_var("MEDIC_T_METHOD", "s3cr3t meth");
        // (config, the text the error must name)
        let cases = [
            (
                "checks:\n- name: a\n  interval: ${MEDIC_T_IVAL}\n  tcp: {address: 'x:1'}\n",
                r#"checks[0].interval: invalid duration "${MEDIC_T_IVAL}""#,
            ),
            (
                "checks:\n- name: a\n  tcp: {address: 'pre-${MEDIC_T_ADDR}'}\n",
                r#"tcp.address "pre-${MEDIC_T_ADDR}" is not host:port"#,
            ),
            (
                "recovery:\n  chains:\n    c:\n      steps:\n      - name: n\n        notify: {url: '${MEDIC_T_HOOK}'}\n",
                r#"notify.url "${MEDIC_T_HOOK}" must be"#,
            ),
            (
                "state: {url: '${MEDIC_T_DB}'}\n",
                "state.url: ${MEDIC_T_DB} must start with",
            ),
            (
                "recovery:\n  chains:\n    c:\n      steps:\n      - name: n\n        exec: {program: x, args: ['--t=${MEDIC_T_ARG} {{ bad']}\n",
                r#"exec.args[0]: unterminated placeholder in "--t=${MEDIC_T_ARG} {{ bad""#,
            ),
            (
                "recovery:\n  chains:\n    c:\n      steps:\n      - name: n\n        http: {url: 'http://h/', method: 'x${MEDIC_T_METHOD}'}\n",
                "${MEDIC_T_METHOD}",
            ),
        ];
        for (config, want) in cases {
            let e = errors(config).join("\n");
            assert!(!e.contains("s3cr3t"), "a value leaked:\n{e}");
            assert!(e.contains(want), "want {want:?} in:\n{e}");
        }
    }

    #[test]
    fn a_url_from_a_file_is_named_by_its_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("u"),
            "mysq://medic:s3cr3t-pw@db.internal/x\n",
        )
        .unwrap();
        for config in [
            "state: {url_file: u}\n",
            "checks:\n- name: d\n  database: {url_file: u}\n",
        ] {
            let e = load_str(
                config,
                dir.path(),
                &Overrides::default(),
                ConfigSource::Builtin,
            )
            .unwrap_err()
            .to_string();
            assert!(!e.contains("s3cr3t") && !e.contains("db.internal"), "{e}");
            assert!(e.contains("url_file: the URL in u must start"), "{e}");
        }
    }

    #[test]
    fn url_query_values_and_headers_are_secret() {
        let c = load("checks:\n- name: a\n  http:\n    url: 'http://h/?token=s3cr3t-q'\n    headers: {X-Key: s3cr3t-h}\n").unwrap();
        assert_eq!(c.redactor.redact("s3cr3t-q s3cr3t-h"), "<secret> <secret>");
    }

    #[test]
    fn alertmanager_credentials_are_secret() {
        let c = load(
            "alertmanager:\n  url: 'http://u:am-pass-1@am:9093'\n  bearer_token: am-token-1\n",
        )
        .unwrap();
        assert_eq!(
            c.redactor.redact("am-pass-1 am-token-1"),
            "<secret> <secret>"
        );
        let am = c.alertmanager.expect("configured");
        assert!(!format!("{am:?}").contains("am-token-1"));
        assert_eq!(am.resend_delay, Duration::from_secs(60));
        let e = errors("alertmanager:\n  url: 'http://am:9093'\n  basic_auth: {username: u, password: am-pass-2}\n  bearer_token: am-token-2\n");
        assert!(
            e.iter()
                .all(|e| !e.contains("am-pass-2") && !e.contains("am-token-2")),
            "{e:?}"
        );
    }

    #[test]
    fn silence_matchers_without_placeholders_are_checked_at_load() {
        let e = errors("alertmanager: {url: 'http://am:9093'}\nrecovery:\n  chains:\n    c:\n      steps:\n      - name: n\n        exec: {program: /bin/true}\n  routes:\n  - matchers: ['a=\"b\"']\n    chain: c\n    silence: {matchers: ['not a matcher']}\n");
        assert!(
            e.iter()
                .any(|e| e.starts_with("recovery.routes[0].silence.matchers[0]")),
            "{e:?}"
        );
    }

    #[test]
    fn url_passwords_never_reach_error_messages() {
        let e = errors("checks:\n- name: db\n  database: {url: 'oracle://u:hunter22@h/x'}\n");
        assert!(!e[0].contains("hunter22"), "{e:?}");
    }
}

#[cfg(test)]
mod safe_healing_tests {
    use super::*;

    fn load(text: &str) -> Config {
        crate::config::load_str(text, Path::new("."), &Overrides::default()).expect("valid")
    }

    #[test]
    fn share_or_count_table() {
        let cases = [
            ("50%", Ok(MaxUnhealthy::Share(0.5))),
            ("12.5 %", Ok(MaxUnhealthy::Share(0.125))),
            ("0%", Ok(MaxUnhealthy::Share(0.0))),
            ("100%", Ok(MaxUnhealthy::Share(1.0))),
            ("20", Ok(MaxUnhealthy::Count(20))),
        ];
        for (text, want) in cases {
            assert_eq!(parse_share_or_count(text), want, "{text}");
        }
        for bad in ["120%", "-1%", "lots", "0.5", "%", ""] {
            assert!(parse_share_or_count(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn limits_and_modes_get_their_defaults() {
        let config = load(
            "recovery:\n  chains:\n    web:\n      steps:\n        - {name: s, exec: {program: /bin/true}}\n",
        );
        let limits = &config.recovery.limits;
        assert_eq!(
            limits.max_concurrent_runs,
            Some(DEFAULT_MAX_CONCURRENT_RUNS)
        );
        assert_eq!(limits.max_runs, None);
        assert_eq!(limits.max_unhealthy, MaxUnhealthy::Share(0.5));
        assert!(limits.per_chain.is_empty());
        assert_eq!(config.recovery.chains["web"].mode, RecoveryMode::Active);
        assert!(config.recovery.maintenance.is_empty());
    }

    #[test]
    fn a_chains_mode_overrides_recoverys() {
        let config = load(concat!(
            "recovery:\n  mode: shadow\n  limits: {max_unhealthy: 20, max_runs: {count: 3, within: 10m}}\n",
            "  chains:\n",
            "    a:\n      steps: [{name: s, exec: {program: /bin/true}}]\n",
            "    b:\n      mode: active\n      max_concurrent_runs: 2\n      steps: [{name: s, exec: {program: /bin/true}}]\n",
            "maintenance:\n  - {name: w, schedule: {start: \"02:00\", duration: 1h}}\n",
        ));
        let r = &config.recovery;
        assert_eq!(r.chains["a"].mode, RecoveryMode::Shadow);
        assert_eq!(r.chains["b"].mode, RecoveryMode::Active);
        assert_eq!(r.limits.per_chain.get("b"), Some(&2));
        assert_eq!(r.limits.max_unhealthy, MaxUnhealthy::Count(20));
        assert_eq!(
            r.limits.max_runs,
            Some(RateLimit {
                count: 3,
                within_ms: 600_000
            })
        );
        assert_eq!(r.maintenance.len(), 1);
        match &r.maintenance[0].when {
            When::Weekly { days, .. } => assert_eq!(days.len(), 7, "no days: every day"),
            other => panic!("want a weekly window, got {other:?}"),
        }
    }
}
