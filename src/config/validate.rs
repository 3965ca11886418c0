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
use crate::recovery::template::{Template, Var};

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

    let mut secrets = Vec::new();
    let mut errors = Vec::new();
    expand_env(&mut value, &mut String::new(), &mut secrets, &mut errors);
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }

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
            return Err(ConfigErrors(vec![ConfigError {
                path: if path == "." { String::new() } else { path },
                message,
                location,
            }]));
        }
    };

    let mut v = Validator {
        base_dir: base_dir.to_path_buf(),
        errors: Vec::new(),
        secrets,
    };
    let config = v.config(file, overrides, source);
    if v.errors.is_empty() {
        let mut config = config;
        config.redactor = Redactor::new(v.secrets);
        Ok(config)
    } else {
        Err(ConfigErrors(v.errors))
    }
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
    secrets: &mut Vec<String>,
    errors: &mut Vec<ConfigError>,
) {
    match value {
        Value::String(s) if s.contains("${") => match expand_string(s) {
            Ok((expanded, used)) => {
                secrets.extend(used);
                *s = expanded;
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
                expand_env(item, path, secrets, errors);
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
                expand_env(item, path, secrets, errors);
                path.truncate(len);
            }
        }
        Value::Tagged(tagged) => expand_env(&mut tagged.value, path, secrets, errors),
        _ => {}
    }
}

fn expand_string(s: &str) -> Result<(String, Vec<String>), String> {
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
            used.push(value);
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

    fn url_password_is_secret(&mut self, url: &str) {
        if let Ok(parsed) = reqwest::Url::parse(url) {
            if let Some(password) = parsed.password() {
                self.secrets.push(password.to_string());
                if let Ok(decoded) = percent_encoding::percent_decode_str(password).decode_utf8() {
                    self.secrets.push(decoded.into_owned());
                }
            }
        }
    }

    fn config(&mut self, file: FileConfig, overrides: &Overrides, source: ConfigSource) -> Config {
        let web = self.web(file.web, overrides);
        let state = self.state(file.state, overrides);
        let defaults = self.defaults(&file.defaults);
        let checks = self.checks(file.checks, &defaults);
        let recovery = self.recovery(&file.recovery, &checks);
        let predictions = self.predictions(&file.predictions, &checks);
        Config {
            web,
            state,
            checks,
            recovery,
            predictions,
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
        let mut credentials = 0;
        let mut auth = WebhookAuth::LoopbackOnly;
        if let Some(token) = hook.bearer_token {
            credentials += 1;
            self.secrets.push(token.clone());
            auth = WebhookAuth::Bearer(Secret::new(token));
        }
        if let Some(file) = hook.bearer_token_file {
            credentials += 1;
            if let Some(token) = self.read_secret_file("web.webhook.bearer_token_file", &file) {
                auth = WebhookAuth::Bearer(token);
            }
        }
        if let Some(basic) = hook.basic_auth {
            credentials += 1;
            let password = match (basic.password, basic.password_file) {
                (Some(p), None) => {
                    self.secrets.push(p.clone());
                    Some(Secret::new(p))
                }
                (None, Some(file)) => {
                    self.read_secret_file("web.webhook.basic_auth.password_file", &file)
                }
                _ => {
                    self.error(
                        "web.webhook.basic_auth",
                        "exactly one of password and password_file is required",
                    );
                    None
                }
            };
            if let Some(password) = password {
                auth = WebhookAuth::Basic {
                    username: basic.username,
                    password,
                };
            }
        }
        if credentials > 1 {
            self.error(
                "web.webhook",
                "at most one of bearer_token, bearer_token_file and basic_auth may be set",
            );
        }
        if let WebhookAuth::Bearer(token) = &auth {
            if token.expose().is_empty() {
                self.error("web.webhook", "bearer token is empty");
            }
        }
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

    fn state(&mut self, state: StateFile, overrides: &Overrides) -> StateConfig {
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
            self.error(
                "state.url",
                format!(
                    "{} must start with sqlite: or postgres://",
                    super::redact_url(url.expose())
                ),
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
        StateConfig {
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
            ProbeSpec::Command(CommandSpec {
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
                        super::redact_url(&h.url)
                    ),
                );
                ok = false;
            }
            Err(e) => {
                self.error(
                    path,
                    format!(
                        "http.url {:?} is not a valid URL: {e}",
                        super::redact_url(&h.url)
                    ),
                );
                ok = false;
            }
        }
        let method = h
            .method
            .unwrap_or_else(|| "GET".to_string())
            .to_ascii_uppercase();
        if reqwest::Method::from_bytes(method.as_bytes()).is_err() || method.is_empty() {
            self.error(
                path,
                format!("http.method {method:?} is not a valid HTTP method"),
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
                format!(
                    "database.url {:?} must start with postgres://, mysql:// or sqlite:",
                    super::redact_url(url.expose())
                ),
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
                    super::redact_url(url)
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
        ]
        .iter()
        .filter(|a| **a)
        .count();
        if actions != 1 {
            self.error(
                path,
                format!("exactly one of exec, http, notify is required (found {actions})"),
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
                    format!("http.method {method:?} is not a valid HTTP method"),
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
            chains.insert(
                name.clone(),
                Arc::new(ChainSpec {
                    name: name.clone(),
                    verify_timeout,
                    reset_after: chain.reset_after.unwrap_or(DEFAULT_RESET_AFTER),
                    order: chain.order.unwrap_or_default(),
                    steps,
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
            routes.push(RouteSpec {
                matchers,
                chain: route.chain.clone(),
                verify_check: route.verify_check.clone(),
            });
        }
        RecoveryConfig { chains, routes }
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
                            "duration_seconds"
                                | "cpu_utilization"
                                | "memory_utilization"
                                | "disk_utilization"
                        ),
                        // Perfdata labels are only known once the plugin has run.
                        ProbeSpec::Command(_) => true,
                        _ => p.measurement == "duration_seconds",
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
            if p.mountpoint.is_some() && p.measurement != "disk_utilization" {
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
            if p.measurement == "disk_utilization" && mountpoint.is_none() {
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
                measurement: p.measurement.clone(),
                mountpoint,
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
        assert_eq!(c.state.url.expose(), "sqlite://data/medic.db");
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
    fn url_passwords_never_reach_error_messages() {
        let e = errors("checks:\n- name: db\n  database: {url: 'oracle://u:hunter22@h/x'}\n");
        assert!(!e[0].contains("hunter22"), "{e:?}");
    }
}
