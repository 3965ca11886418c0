//! The core every section of the config shares: the errors found, each with its YAML path; the
//! secrets met on the way (`*_file` contents, `${ENV}` values, URL passwords and query values,
//! header values), so that no error, log line or answer shows one; names; and the last pass
//! that takes every secret out of the errors. The sections (`web.rs`, `checks/`, …) read their
//! own keys and report here.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_yaml_ng::Value;

use super::expand::{expand_env, Expansion};
use super::secret::{Redactor, Secret};
use crate::template::Template;

const MAX_NAME_LEN: usize = 128;

/// One problem found in a config, with the YAML path of the offender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `checks[2] "api"`, `web.webhook`, or empty for the whole file.
    pub path: String,
    pub message: String,
    /// Line and column, where the parser knows them.
    pub location: Option<(usize, usize)>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)?;
        } else {
            write!(f, "{}: {}", self.path, self.message)?;
        }
        if let Some((line, column)) = self.location {
            write!(f, " (line {line}, column {column})")?;
        }
        Ok(())
    }
}

/// Every problem found in a config; a config with any is rejected whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// What every section reports to while one config is read.
pub(super) struct Context {
    /// Relative `*_file` paths resolve against this (the config file's directory).
    base_dir: PathBuf,
    /// The text as written, to find a node's line and column for the errors of parsing.
    pub(super) text: String,
    errors: Vec<ConfigError>,
    secrets: Vec<String>,
    expansions: Vec<Expansion>,
    /// Skeletons of the mappings that lost a key to a reported error: the field they now miss
    /// is not reported a second time.
    pub(super) dropped: BTreeSet<String>,
    /// How many errors were given a line and column (each costs a pass over the text).
    pub(super) located: usize,
}

impl Context {
    /// Parses the text and expands `${ENV}`: the document, and the context every section
    /// reports to. Text that is not YAML is the one error that stops everything.
    pub(super) fn begin(text: &str, base_dir: &Path) -> Result<(Context, Value), ConfigErrors> {
        let mut root: Value = serde_yaml_ng::from_str(text).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                path: String::new(),
                message: format!("invalid YAML: {}", strip_location(&e.to_string())),
                location: e.location().map(|l| (l.line(), l.column())),
            }])
        })?;
        if root.is_null() {
            root = Value::Mapping(Default::default());
        }
        let (expansions, failures) = expand_env(&mut root);
        let secrets = expansions
            .iter()
            .flat_map(|e| e.vars.iter().map(|(_, value)| value.clone()))
            .collect();
        let mut cx = Context {
            base_dir: base_dir.to_path_buf(),
            text: text.to_string(),
            errors: Vec::new(),
            secrets,
            expansions,
            dropped: BTreeSet::new(),
            located: 0,
        };
        for (path, message) in failures {
            cx.error(&path, message);
            // Read as if it were not written, so what needed it says nothing more.
            cx.drop_node(&Default::default(), &mut root, path.segments());
        }
        Ok((cx, root))
    }

    /// A context for reading one block outside a config file (a check template's kind block,
    /// rendered for one target): no text to place errors in, no `${ENV}`.
    pub(super) fn detached(base_dir: &Path) -> Context {
        Context {
            base_dir: base_dir.to_path_buf(),
            text: String::new(),
            errors: Vec::new(),
            secrets: Vec::new(),
            expansions: Vec::new(),
            dropped: BTreeSet::new(),
            located: 0,
        }
    }

    /// The directory relative `*_file` paths resolve against.
    pub(super) fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    pub(super) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    /// How many errors were reported so far: a block's rules compare it before and after.
    pub(super) fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// The secrets met so far, taken (to be kept by another context).
    pub(super) fn take_secrets(&mut self) -> Vec<String> {
        std::mem::take(&mut self.secrets)
    }

    /// The errors found, secrets scrubbed out, without remembering the secrets process-wide: a
    /// detached context's "secrets" may be a target's values (a query string), which are not.
    pub(super) fn into_errors(self) -> Vec<ConfigError> {
        let redactor = Redactor::new(self.secrets);
        scrub_errors(self.errors, &self.expansions, &redactor)
    }

    /// The redactor for every secret met, or every error found with the secrets scrubbed out.
    /// Either way the secrets are remembered process-wide: a rejected config's errors are
    /// logged and answered too.
    pub(super) fn finish(self) -> Result<Redactor, ConfigErrors> {
        let redactor = Redactor::new(self.secrets);
        super::secret::remember_secrets(&redactor);
        if self.errors.is_empty() {
            Ok(redactor)
        } else {
            Err(ConfigErrors(scrub_errors(
                self.errors,
                &self.expansions,
                &redactor,
            )))
        }
    }

    pub(super) fn error(&mut self, path: impl fmt::Display, message: impl Into<String>) {
        self.error_at(path, message, None);
    }

    pub(super) fn error_at(
        &mut self,
        path: impl fmt::Display,
        message: impl Into<String>,
        location: Option<(usize, usize)>,
    ) {
        self.errors.push(ConfigError {
            path: path.to_string(),
            message: message.into(),
            location,
        });
    }

    /// A file named in the config: relative to the config file's directory.
    pub(super) fn resolve(&self, file: &Path) -> PathBuf {
        if file.is_absolute() {
            file.to_path_buf()
        } else {
            self.base_dir.join(file)
        }
    }

    /// Reads a secret file: surrounding whitespace (the usual trailing newline) is dropped.
    pub(super) fn read_secret_file(
        &mut self,
        path: impl fmt::Display,
        file: &Path,
    ) -> Option<Secret> {
        let full = self.resolve(file);
        match std::fs::read_to_string(&full) {
            Ok(text) => Some(self.secret(text.trim().to_string())),
            Err(e) => {
                self.error(path, format!("cannot read {}: {e}", full.display()));
                None
            }
        }
    }

    /// A value that must never be shown: kept for scrubbing, and wrapped.
    pub(super) fn secret(&mut self, value: String) -> Secret {
        self.hide(&value);
        Secret::new(value)
    }

    /// Text that must never be shown (a header template, a key file), kept for scrubbing.
    pub(super) fn hide(&mut self, value: &str) {
        self.secrets.push(value.to_string());
    }

    /// A URL for an error message: as written when it came whole from `${ENV}` (a webhook URL
    /// is the credential), else without its password and query values.
    pub(super) fn show_url(&self, url: &str) -> String {
        match self.expansions.iter().find(|e| e.expanded == url) {
            Some(e) => super::redact_url(&e.template),
            None => super::redact_url(url),
        }
    }

    /// A URL's password and query values are secrets.
    pub(super) fn url_password_is_secret(&mut self, url: &str) {
        self.secrets.extend(super::secret::url_secrets(url));
        if let Ok(parsed) = reqwest::Url::parse(url) {
            // As the parser normalised them: that is what a library's error quotes.
            self.secrets
                .extend(super::secret::url_secrets(parsed.as_str()));
        }
    }

    /// The URL of an endpoint medic calls (Alertmanager, an http_sd list): its password is a
    /// secret, and it must be an http:// or https:// URL with a host. `false`, with the error
    /// at `path`, when it is not.
    pub(super) fn endpoint_url(&mut self, path: impl fmt::Display, url: &str) -> bool {
        self.url_password_is_secret(url);
        let ok = (url.starts_with("http://") || url.starts_with("https://"))
            && reqwest::Url::parse(url).is_ok_and(|u| u.host().is_some());
        if !ok {
            let shown = self.show_url(url);
            self.error(
                path,
                format!("{shown:?} must be an http:// or https:// URL"),
            );
        }
        ok
    }

    /// A template (`{{ labels.x }}`), parsed once at load; `key` names it in the error.
    pub(super) fn template(
        &mut self,
        path: impl fmt::Display,
        key: &str,
        source: &str,
    ) -> Option<Template> {
        match Template::parse(source) {
            Ok(t) => Some(t),
            Err(e) => {
                self.error(path, format!("{key}: {e}"));
                None
            }
        }
    }

    /// A name that becomes a label value and a URL path segment: reported when it is not plain.
    pub(super) fn name(&mut self, path: impl fmt::Display, name: &str) -> bool {
        match validate_name(name) {
            Ok(()) => true,
            Err(message) => {
                self.error(path, format!("name {message}"));
                false
            }
        }
    }
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

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(super) fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The line of a regex error that says what is wrong (the last one).
pub(super) fn first_line(s: &str) -> String {
    s.lines().last().unwrap_or(s).trim().to_string()
}

/// serde_yaml appends " at line L column C"; the location is reported on its own.
pub(super) fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains(" column ") => message[..i].to_string(),
        _ => message.to_string(),
    }
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
