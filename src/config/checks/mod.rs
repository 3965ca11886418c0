//! `checks:` — the fields every check has (name, interval, timeout, thresholds, labels,
//! recovery) and the list of check kinds, one module each with its YAML block, its checked
//! spec and its rules.
//!
//! Adding a check kind takes three files: `config/checks/KIND.rs` (the block as written, the
//! spec, and `impl Kind`), one line in [`check_kinds!`] below, and in `src/checks/` the prober
//! (`KIND.rs`) with its match arm in `checks/mod.rs`. The list makes the YAML key, the
//! `ProbeSpec` variant, the "exactly one of …" rule and the kind's name in the API.

mod command;
mod database;
mod dns;
mod grpc;
mod heartbeat;
mod http;
mod system;
mod tcp;
mod tls;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_yaml_ng::Value;

use super::defaults::{self, Defaults, FlappingFile, DEFAULT_TIMEOUT};
use super::duration::Duration;
use super::path::YamlPath;
use super::validate::{is_label_name, Context};
use crate::thresholds::Flapping;
use crate::vocabulary::Measure;

pub use dns::{DnsTransport, DnsType, RCODES};
pub use system::{DiskSpec, Limits};

/// The check kinds, in the order the "exactly one of" rule names them: the YAML key, the
/// [`ProbeSpec`] variant and the module with its spec. A new kind is one more line.
macro_rules! check_kinds {
    ($($key:ident => $variant:ident($module:ident::$spec:ident),)+) => {
        $(pub use $module::$spec;)+

        /// What a check probes: one variant per kind.
        #[derive(Debug, Clone, PartialEq)]
        pub enum ProbeSpec {
            $($variant($spec),)+
        }

        impl ProbeSpec {
            /// The kind's key in the YAML (and its name in the API).
            pub fn kind(&self) -> &'static str {
                match self {
                    $(ProbeSpec::$variant(_) => stringify!($key),)+
                }
            }

            /// Whether this check's probes measure `measurement` (what a prediction follows).
            pub fn measures(&self, measurement: &str) -> bool {
                match self {
                    $(ProbeSpec::$variant(spec) => Kind::measures(spec, measurement),)+
                }
            }
        }

        /// One check as written. Its kind's block is read on its own, once it is known that
        /// exactly one is given.
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct CheckFile {
            name: String,
            interval: Option<Duration>,
            timeout: Option<Duration>,
            enabled: Option<bool>,
            failures_before_critical: Option<u32>,
            successes_before_healthy: Option<u32>,
            flapping: Option<FlappingFile>,
            recovery: Option<String>,
            #[serde(default)]
            labels: BTreeMap<String, String>,
            #[serde(default)]
            depends_on: Vec<String>,
            $($key: Option<Value>,)+
        }

        /// Every kind's key, in the list's order.
        const KINDS: &[&str] = &[$(stringify!($key),)+];

        impl CheckFile {
            /// The kind blocks given, with their keys.
            fn take_kinds(&mut self) -> Vec<(&'static str, Value)> {
                let mut given = Vec::new();
                $(if let Some(block) = self.$key.take() {
                    given.push((stringify!($key), block));
                })+
                given
            }
        }

        /// Reads the block of the kind `key` and checks its rules.
        fn probe_spec(cx: &mut Context, at: &CheckAt<'_>, key: &str, block: Value) -> Option<ProbeSpec> {
            let path = at.path.key(key);
            match key {
                $(stringify!($key) => {
                    let file = cx.parse(block, &path)?;
                    <$spec as Kind>::check(cx, at, file).map(ProbeSpec::$variant)
                })+
                _ => None,
            }
        }
    };
}

check_kinds! {
    http => Http(http::HttpSpec),
    tcp => Tcp(tcp::TcpSpec),
    database => Database(database::DatabaseSpec),
    system => System(system::SystemSpec),
    command => CommandCheck(command::CommandSpec),
    tls => Tls(tls::TlsSpec),
    dns => Dns(dns::DnsSpec),
    grpc => Grpc(grpc::GrpcSpec),
    heartbeat => Heartbeat(heartbeat::HeartbeatSpec),
}

/// What each kind's module provides: its block as written, and the rules that make it a spec.
trait Kind: Sized {
    /// The block as written (`http: {…}`); unknown keys are errors.
    type File: DeserializeOwned;

    /// The checked spec, or `None` with the errors reported.
    fn check(cx: &mut Context, at: &CheckAt<'_>, file: Self::File) -> Option<Self>;

    /// Whether probes of this kind measure `measurement`; every probe measures its duration.
    fn measures(&self, measurement: &str) -> bool {
        measurement == Measure::DURATION
    }
}

/// What a kind's rules may need of the check whose block they read.
struct CheckAt<'a> {
    /// `checks[0] "web"`: a kind's errors name the check and put their key in the message.
    path: &'a YamlPath,
    interval: Duration,
    timeout: Duration,
}

impl CheckAt<'_> {
    /// `KEY.warn_after` must leave room before the timeout.
    fn warn_after(&self, cx: &mut Context, key: &str, warn_after: Option<Duration>) {
        if let Some(w) = warn_after.filter(|w| *w >= self.timeout) {
            cx.error(
                self.path,
                format!(
                    "{key}.warn_after {w} must be shorter than timeout {}",
                    self.timeout
                ),
            );
        }
    }
}

/// One check, with every default filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckSpec {
    pub name: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub enabled: bool,
    pub failures_before_critical: u32,
    pub successes_before_healthy: u32,
    /// Flap detection, when configured (for this check or in `defaults`).
    pub flapping: Option<Flapping>,
    pub recovery: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Checks this one waits for: while one of them (or what it depends on) is critical or
    /// unknown, this check is blocked (probed and exported, but no run starts for it).
    pub depends_on: Vec<String>,
    pub probe: ProbeSpec,
}

impl CheckSpec {
    pub fn thresholds(&self) -> crate::thresholds::Thresholds {
        crate::thresholds::Thresholds {
            failures_before_critical: self.failures_before_critical,
            successes_before_healthy: self.successes_before_healthy,
            flapping: self.flapping,
        }
    }
}

/// A compiled regular expression that compares by its source text, so configs can be diffed.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

/// Trust anchors read from a `ca_file`, once at load.
pub type CaCerts = Arc<Vec<rustls::pki_types::CertificateDer<'static>>>;

/// The checks that passed their rules, each with where it is written.
pub(super) struct Checks(Vec<(YamlPath, CheckSpec)>);

impl Checks {
    pub fn iter(&self) -> impl Iterator<Item = &(YamlPath, CheckSpec)> {
        self.0.iter()
    }

    /// Who depends on whom.
    pub fn graph(&self) -> crate::dependencies::Graph {
        crate::dependencies::Graph::new(
            self.0
                .iter()
                .map(|(_, c)| (c.name.as_str(), c.depends_on.as_slice())),
        )
    }

    pub fn into_specs(self) -> Vec<CheckSpec> {
        self.0.into_iter().map(|(_, spec)| spec).collect()
    }
}

pub(super) fn section(cx: &mut Context, value: Option<Value>, defaults: &Defaults) -> Checks {
    let mut seen = BTreeSet::new();
    let mut checks = Vec::new();
    for (path, item) in cx.items(value, &YamlPath::top("checks")) {
        let Some(file) = cx.parse::<CheckFile>(item, &path) else {
            continue;
        };
        if cx.name(&path, &file.name) && !seen.insert(file.name.clone()) {
            cx.error(&path, "duplicate check name");
        }
        if let Some(spec) = check(cx, &path, file, defaults) {
            checks.push((path, spec));
        }
    }
    let checks = Checks(checks);
    dependencies(cx, &checks);
    checks
}

/// `depends_on` names configured checks, and no check depends on itself, even through
/// others (the cycle is named).
fn dependencies(cx: &mut Context, checks: &Checks) {
    let names: BTreeSet<&str> = checks.iter().map(|(_, c)| c.name.as_str()).collect();
    for (path, check) in checks.iter() {
        for dep in &check.depends_on {
            if !names.contains(dep.as_str()) {
                cx.error(
                    path,
                    format!("depends_on {dep:?} is not a configured check"),
                );
            }
        }
    }
    if let Some(cycle) = checks.graph().cycle() {
        let path = checks
            .iter()
            .find(|(_, c)| Some(&c.name) == cycle.0.first())
            .map(|(p, _)| p.clone())
            .unwrap_or_else(|| YamlPath::top("checks"));
        cx.error(&path, format!("depends_on makes a cycle: {cycle}"));
    }
}

fn check(cx: &mut Context, path: &YamlPath, mut c: CheckFile, d: &Defaults) -> Option<CheckSpec> {
    let (interval, timeout) = timing(cx, path, &c, d);
    for (key, value) in [
        ("failures_before_critical", c.failures_before_critical),
        ("successes_before_healthy", c.successes_before_healthy),
    ] {
        if value == Some(0) {
            cx.error(path, format!("{key} must be at least 1"));
        }
    }
    let flapping = match c.flapping {
        Some(f) => defaults::flapping(cx, &path.key("flapping"), f),
        None => d.flapping,
    };
    for key in c.labels.keys().filter(|key| !is_label_name(key)) {
        cx.error(
            path,
            format!("label name {key:?} must match [a-zA-Z_][a-zA-Z0-9_]*"),
        );
    }
    let kinds = c.take_kinds();
    let given = kinds.len();
    let Ok([(key, block)]) = <[_; 1]>::try_from(kinds) else {
        if given == 0 && cx.lost_a_key(path) {
            return None;
        }
        cx.error(
            path,
            format!(
                "exactly one of {} is required (found {given})",
                KINDS.join(", ")
            ),
        );
        return None;
    };
    let at = CheckAt {
        path,
        interval,
        timeout,
    };
    let probe = probe_spec(cx, &at, key, block)?;
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
        depends_on: c.depends_on,
        probe,
    })
}

/// The check's interval and timeout. A default timeout longer than a short interval shrinks to
/// fit; only a timeout written for this very check is held against its interval.
fn timing(cx: &mut Context, path: &YamlPath, c: &CheckFile, d: &Defaults) -> (Duration, Duration) {
    let interval = c.interval.unwrap_or(d.interval);
    if interval.is_zero() {
        cx.error(path, "interval must be greater than 0s");
    }
    let timeout = match c.timeout {
        Some(t) => {
            if t > interval {
                cx.error(
                    path,
                    format!("timeout {t} must not exceed interval {interval}"),
                );
            }
            if t.is_zero() {
                cx.error(path, "timeout must be greater than 0s");
            }
            t
        }
        None => d.timeout.unwrap_or(DEFAULT_TIMEOUT).min(interval),
    };
    (interval, timeout)
}

/// The host of `host:port` (without an IPv6 address's brackets), if the port is a number.
fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then_some((host, port))
}

/// A regular expression a kind matches with (`body_regex`, `expect_answer`), compiled at load.
fn pattern(
    cx: &mut Context,
    path: &YamlPath,
    key: &str,
    source: Option<&str>,
) -> Result<Option<Pattern>, ()> {
    let Some(source) = source else {
        return Ok(None);
    };
    match regex::Regex::new(source) {
        Ok(re) => Ok(Some(Pattern(re))),
        Err(e) => {
            cx.error(
                path,
                format!(
                    "{key} {source:?} is invalid: {}",
                    super::validate::first_line(&e.to_string())
                ),
            );
            Err(())
        }
    }
}
