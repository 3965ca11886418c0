//! Configuration: the YAML file is parsed, secrets resolved and every rule checked once, at
//! load; the rest of medic only ever sees a valid [`Config`].
//!
//! The modules mirror the YAML: one per top-level section (`web.rs`, `state.rs`,
//! `defaults.rs`, `checks/` with a file per check kind, `check_templates/`, `recovery/`,
//! `maintenance.rs`, `predictions.rs`, `alertmanager.rs`), each holding its keys as written (serde, unknown keys
//! denied), its checked types and its rules. They share a small core: `validate.rs` (errors
//! with YAML paths, secrets, names), `path.rs` (one spelling of paths), `lenient.rs` (every
//! error in one pass), `expand.rs` (`${ENV}`), `secret.rs` and `duration.rs`. Config depends
//! only on leaf modules (vocabulary, template, thresholds, maintenance windows, Alertmanager's
//! matchers), never on what reads it.

mod alertmanager;
mod builtin;
mod check_templates;
mod checks;
pub mod client_tls;
mod cluster;
mod credential;
mod defaults;
mod duration;
mod expand;
mod lenient;
mod maintenance;
mod path;
mod predictions;
mod recovery;
mod secret;
mod state;
mod validate;
mod web;
mod web_config_file;

#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};
use serde_yaml_ng::Value;

use path::YamlPath;
use validate::Context;

pub use alertmanager::{AlertmanagerConfig, ClientAuth, ClientTls};
pub use builtin::builtin_yaml;
pub use check_templates::{CheckTemplate, DnsSdSpec, HttpSdSpec, DEFAULT_MAX_TARGETS};
pub use checks::{
    CaCerts, CheckSpec, CommandSpec, DatabaseSpec, DiskSpec, DnsSpec, DnsTransport, DnsType,
    GrpcSpec, HeartbeatSpec, HttpSpec, Limits, Pattern, ProbeSpec, SystemSpec, TcpSpec, TlsSpec,
    RCODES,
};
pub use cluster::{ClusterConfig, Sharding, MAX_REPLICATION};
pub use duration::{Duration, DurationError};
pub use predictions::{Breach, PredictionSpec};
pub use recovery::{
    ActionSpec, ChainSpec, MaxUnhealthy, Order, RateLimit, RecoveryConfig, RecoveryLimits,
    RecoveryMode, RouteSpec, SilenceSpec, StepSpec, DEFAULT_MAX_CONCURRENT_RUNS,
};
pub use secret::{constant_time_eq, known_secrets, redact_url, Redactor, Secret, REDACTED};
pub use state::StoreConfig;
pub use validate::{ConfigError, ConfigErrors};
pub use web::{WebConfig, WebhookAuth, WebhookConfig};
pub use web_config_file::{
    load_web_security, ClientAuthType, ClientCa, ServerTls, TlsVersion, WebConfigError,
    WebSecurityConfig,
};

pub const DEFAULT_LISTEN_ADDRESS: &str = "127.0.0.1:7979";
pub const DEFAULT_STATE_URL: &str = "sqlite://data/medic.db";
pub const DEFAULT_CONFIG_FILE: &str = "medic.yml";

/// A fully validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub web: WebConfig,
    /// The state store (`state:` in the YAML, `--state.url`).
    pub store: StoreConfig,
    pub checks: Vec<CheckSpec>,
    /// Checks made from discovered targets (`check_templates:`).
    pub templates: Vec<std::sync::Arc<CheckTemplate>>,
    pub recovery: RecoveryConfig,
    pub predictions: Vec<PredictionSpec>,
    /// The Alertmanager medic talks back to, when configured.
    pub alertmanager: Option<AlertmanagerConfig>,
    /// How replicas share the checks (`cluster:`, `--cluster.*`).
    pub cluster: ClusterConfig,
    pub history_size: usize,
    /// Scrubs every secret this config holds from outgoing text.
    pub redactor: Redactor,
    /// Where the config came from, for messages.
    pub source: ConfigSource,
}

/// Where the config comes from: decided once from the command line, and kept with the config
/// for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `--config.file` as given, or `medic.yml` found in the working directory.
    File(PathBuf),
    /// No file given and none found: the built-in default.
    Builtin,
}

impl ConfigSource {
    /// `--config.file` wins; without it `medic.yml` is used when present, else the built-in.
    pub fn resolve(explicit: Option<PathBuf>) -> Self {
        match explicit {
            Some(path) => ConfigSource::File(path),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                ConfigSource::File(PathBuf::from(DEFAULT_CONFIG_FILE))
            }
            None => ConfigSource::Builtin,
        }
    }

    pub fn load(&self, overrides: &Overrides) -> Result<Config, ConfigErrors> {
        match self {
            ConfigSource::File(path) => load_file(path, overrides),
            ConfigSource::Builtin => load_builtin(overrides),
        }
    }
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigSource::File(path) => write!(f, "{}", path.display()),
            ConfigSource::Builtin => f.write_str("built-in default config"),
        }
    }
}

/// What the command line says about where the config comes from and what overrides it.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen_address: Option<String>,
    pub state_url: Option<String>,
    /// `--cluster.shard`: `INDEX/COUNT` or `auto`, checked with the config.
    pub cluster_shard: Option<String>,
    /// `--cluster.replication`.
    pub cluster_replication: Option<u32>,
    /// `--cluster.location`.
    pub cluster_location: Option<String>,
}

/// Loads and validates the config file at `path`.
pub fn load_file(path: &Path, overrides: &Overrides) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            path: String::new(),
            message: format!("cannot read {}: {e}", path.display()),
            location: None,
        }])
    })?;
    let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    load_text(
        &text,
        &base_dir,
        overrides,
        ConfigSource::File(path.to_path_buf()),
    )
}

/// Loads and validates config text; relative `*_file` paths resolve against `base_dir`.
pub fn load_str(
    text: &str,
    base_dir: &Path,
    overrides: &Overrides,
) -> Result<Config, ConfigErrors> {
    let source = ConfigSource::File(PathBuf::from("<inline>"));
    load_text(text, base_dir, overrides, source)
}

/// The built-in default: this host's resources and medic's own `/-/healthy`.
pub fn load_builtin(overrides: &Overrides) -> Result<Config, ConfigErrors> {
    let listen = overrides
        .listen_address
        .clone()
        .unwrap_or_else(|| DEFAULT_LISTEN_ADDRESS.to_string());
    let text = builtin_yaml(&listen);
    load_text(&text, Path::new("."), overrides, ConfigSource::Builtin)
}

/// The top level as written: each section is read by its own module. A section that is
/// present but empty (`checks:`) is held as null, so it fails as it always did.
impl Config {
    /// Who depends on whom among the checks (`depends_on`).
    pub fn dependencies(&self) -> crate::dependencies::Graph {
        crate::dependencies::Graph::new(
            self.checks
                .iter()
                .map(|c| (c.name.as_str(), c.depends_on.as_slice())),
        )
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default, deserialize_with = "present")]
    web: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    state: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    defaults: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    checks: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    check_templates: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    recovery: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    predictions: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    maintenance: Option<Value>,
    /// An empty `alertmanager:` is none at all.
    alertmanager: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    cluster: Option<Value>,
}

/// A step's `confirm: {replicas: K}` can only be met when K replicas probe its check: K at
/// most `cluster.replication` (1 without `shard: auto`).
fn confirmations_possible(cx: &mut Context, recovery: &RecoveryConfig, cluster: &ClusterConfig) {
    for (name, chain) in &recovery.chains {
        for (index, step) in chain.steps.iter().enumerate() {
            let Some(k) = step.confirm.filter(|k| *k > cluster.replication) else {
                continue;
            };
            let path = YamlPath::top("recovery")
                .key("chains")
                .key(name)
                .key("steps")
                .index(index)
                .key("confirm");
            cx.error(
                path,
                format!(
                    "replicas: {k} can never be met: only {} replica(s) probe each check (cluster.replication, with shard: auto)",
                    cluster.replication
                ),
            );
        }
    }
}

/// A key that is written, even as null.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Every section in turn, each reporting its errors; then every error at once, or the config.
fn load_text(
    text: &str,
    base_dir: &Path,
    overrides: &Overrides,
    source: ConfigSource,
) -> Result<Config, ConfigErrors> {
    let (mut cx, root) = Context::begin(text, base_dir)?;
    let file: FileConfig = cx.parse(root, &YamlPath::default()).unwrap_or_default();
    let web = web::section(&mut cx, file.web, overrides);
    let store = state::section(&mut cx, file.state, overrides);
    let cluster = cluster::section(&mut cx, file.cluster, overrides, &store);
    let defaults = defaults::section(&mut cx, file.defaults);
    let checks = checks::section(&mut cx, file.checks, &defaults);
    let templates = check_templates::section(&mut cx, file.check_templates, &defaults, &checks);
    checks::dependencies(&mut cx, &checks, &templates.dependency_nodes());
    let mut recovery = recovery::section(&mut cx, file.recovery, &checks, &templates);
    recovery.config.maintenance = maintenance::section(&mut cx, file.maintenance);
    let predictions = predictions::section(&mut cx, file.predictions, &checks, &templates);
    if file.alertmanager.is_none() {
        recovery.report_missing_alertmanager(&mut cx);
    }
    let alertmanager = alertmanager::section(&mut cx, file.alertmanager);
    confirmations_possible(&mut cx, &recovery.config, &cluster);
    let redactor = cx.finish()?;
    Ok(Config {
        web,
        store,
        checks: checks.into_specs(),
        templates: templates.into_specs(),
        recovery: recovery.config,
        predictions,
        alertmanager,
        cluster,
        history_size: defaults.history_size,
        redactor,
        source,
    })
}
