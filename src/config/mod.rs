//! Configuration: the YAML file is parsed, secrets resolved and every rule checked once, at load;
//! the rest of medic only ever sees a valid [`Config`].

mod builtin;
pub mod client_tls;
mod duration;
mod file;
mod limits;
mod secret;
mod validate;
mod web;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::template::{Template, Var};
use crate::thresholds::Flapping;

pub use builtin::builtin_yaml;
pub use duration::{Duration, DurationError};
pub use file::{
    ChainFile, ExecFile, HttpActionFile, NotifyFile, Order, PredictionFile, RecoveryFile,
    RecoveryMode, RouteFile, StepFile,
};
pub use limits::{MaxUnhealthy, RateLimit, RecoveryLimits, DEFAULT_MAX_CONCURRENT_RUNS};
pub use secret::{constant_time_eq, known_secrets, redact_url, Redactor, Secret, REDACTED};
pub(crate) use validate::RCODES;
pub use web::{
    load_web_security, ClientAuthType, ClientCa, ServerTls, TlsVersion, WebConfigError,
    WebSecurityConfig,
};

/// A fully validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub web: WebConfig,
    /// The state store (`state:` in the YAML, `--state.url`).
    pub store: StoreConfig,
    pub checks: Vec<CheckSpec>,
    pub recovery: RecoveryConfig,
    pub predictions: Vec<PredictionSpec>,
    /// The Alertmanager medic talks back to, when configured.
    pub alertmanager: Option<AlertmanagerConfig>,
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

#[derive(Debug, Clone, PartialEq)]
pub struct WebConfig {
    pub listen_address: String,
    pub webhook: WebhookConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    pub auth: WebhookAuth,
    pub max_body_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WebhookAuth {
    /// No credential configured: only loopback clients are accepted.
    LoopbackOnly,
    Bearer(Secret),
    Basic {
        username: String,
        password: Secret,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub url: Secret,
    pub retention: Duration,
    pub retention_results: u64,
}

/// `alertmanager:`: where escalations and silences go, and how medic authenticates.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertmanagerConfig {
    /// The API base (`http://127.0.0.1:9093`); may carry a password, shown only redacted.
    pub url: Secret,
    pub auth: ClientAuth,
    pub tls: ClientTls,
    /// How often escalations are re-posted and silences extended.
    pub resend_delay: Duration,
}

/// A credential medic sends.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientAuth {
    None,
    Bearer(Secret),
    Basic { username: String, password: Secret },
}

/// Client TLS settings; the files were readable and parsed at load.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientTls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

/// Recovery chains and the routes that send alerts to them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecoveryConfig {
    pub chains: BTreeMap<String, Arc<ChainSpec>>,
    pub routes: Vec<RouteSpec>,
    /// The fleet-wide brakes: concurrency, rate, circuit breaker.
    pub limits: RecoveryLimits,
    /// Planned work: while a window is open, nothing it matches is healed.
    pub maintenance: Vec<crate::maintenance::Window>,
}

/// Alerts whose labels satisfy every matcher run `chain`; the first matching route wins.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSpec {
    pub matchers: Vec<crate::alertmanager::Matcher>,
    pub chain: String,
    pub verify_check: Option<String>,
    /// Silence the alert in Alertmanager while its run heals it.
    pub silence: Option<SilenceSpec>,
}

/// What a route's silence matches.
#[derive(Debug, Clone, PartialEq)]
pub enum SilenceSpec {
    /// `silence: true`: an equality matcher for each of the alert's labels.
    AlertLabels,
    /// `silence: {matchers: [...]}`: amtool matchers, templated with the alert's values.
    Matchers(Vec<Template>),
}

impl RecoveryConfig {
    /// The first route whose matchers all match these labels.
    pub fn route(&self, labels: &BTreeMap<String, String>) -> Option<&RouteSpec> {
        self.routes
            .iter()
            .find(|r| r.matchers.iter().all(|m| m.matches(labels)))
    }
}

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

#[derive(Debug, Clone, PartialEq)]
pub struct StepSpec {
    pub name: String,
    pub action: ActionSpec,
    pub max_attempts: u32,
    pub cooldown: Duration,
    pub timeout: Duration,
    pub tier: Option<u32>,
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

/// A forecast of one measurement of one check.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictionSpec {
    pub name: String,
    pub check: String,
    /// What it follows; a disk's names its mountpoint.
    pub measure: crate::vocabulary::Measure,
    /// History the model fits on.
    pub window: Duration,
    /// (as written in the config, for the `horizon` label; parsed).
    pub horizons: Vec<(String, Duration)>,
    pub breach: Option<Breach>,
    /// Breaches further away than this are reported as +Inf.
    pub max_horizon: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Breach {
    Above(f64),
    Below(f64),
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

#[derive(Debug, Clone, PartialEq)]
pub enum ProbeSpec {
    Http(HttpSpec),
    Tcp(TcpSpec),
    Database(DatabaseSpec),
    System(SystemSpec),
    /// A Nagios-style plugin run as a child process (`command:` in the YAML).
    CommandCheck(CommandSpec),
    Tls(TlsSpec),
    Heartbeat(HeartbeatSpec),
    Dns(DnsSpec),
    Grpc(GrpcSpec),
}

impl ProbeSpec {
    pub fn kind(&self) -> &'static str {
        match self {
            ProbeSpec::Http(_) => "http",
            ProbeSpec::Tcp(_) => "tcp",
            ProbeSpec::Database(_) => "database",
            ProbeSpec::System(_) => "system",
            ProbeSpec::CommandCheck(_) => "command",
            ProbeSpec::Tls(_) => "tls",
            ProbeSpec::Heartbeat(_) => "heartbeat",
            ProbeSpec::Dns(_) => "dns",
            ProbeSpec::Grpc(_) => "grpc",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpSpec {
    /// May carry a password; shown only through [`redact_url`].
    pub url: Secret,
    pub method: String,
    pub headers: Vec<(String, Secret)>,
    pub body: Option<String>,
    /// Empty means any 2xx.
    pub expect_status: Vec<u16>,
    pub expect_body: Option<String>,
    pub body_regex: Option<Pattern>,
    pub warn_after: Option<Duration>,
    pub keep_alive: bool,
    pub follow_redirects: bool,
}

/// Trust anchors read from a `ca_file`, once at load.
pub type CaCerts = Arc<Vec<rustls::pki_types::CertificateDer<'static>>>;

#[derive(Debug, Clone, PartialEq)]
pub struct TlsSpec {
    /// `host:port`.
    pub address: String,
    /// The name verified against the certificate (and sent as SNI); the address's host by
    /// default.
    pub server_name: String,
    /// `None`: the system roots.
    pub ca: Option<CaCerts>,
    pub warn_before: Duration,
    pub critical_before: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GrpcSpec {
    /// `host:port`.
    pub address: String,
    /// The service asked about; "" is the server as a whole.
    pub service: String,
    /// `Some` for `tls: true`: the name to verify and the roots (`None`: the system's).
    pub tls: Option<(String, Option<CaCerts>)>,
    /// Sent as request headers; values may be credentials.
    pub metadata: Vec<(String, Secret)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsSpec {
    /// The name asked for, as written (`example.com`, `_sip._tcp.example.com`).
    pub name: String,
    pub record_type: DnsType,
    /// `host:port`; `None`: the first `nameserver` of /etc/resolv.conf, read at each probe.
    pub server: Option<String>,
    pub transport: DnsTransport,
    /// The expected response code, as its number and its name (`NOERROR`).
    pub expect_rcode: (u16, &'static str),
    pub expect_answer: Option<Pattern>,
    pub min_answers: u32,
}

/// The record types a `dns` check may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsType {
    A,
    Aaaa,
    Cname,
    Mx,
    Ns,
    Txt,
    Srv,
    Soa,
    Ptr,
}

impl DnsType {
    pub const ALL: [(&'static str, DnsType); 9] = [
        ("A", DnsType::A),
        ("AAAA", DnsType::Aaaa),
        ("CNAME", DnsType::Cname),
        ("MX", DnsType::Mx),
        ("NS", DnsType::Ns),
        ("TXT", DnsType::Txt),
        ("SRV", DnsType::Srv),
        ("SOA", DnsType::Soa),
        ("PTR", DnsType::Ptr),
    ];

    pub fn as_str(self) -> &'static str {
        DnsType::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("A", |(name, _)| name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsTransport {
    Udp,
    Tcp,
}

/// A push check: the job pings medic; the probe only judges the pings against the clock.
#[derive(Debug, Clone, PartialEq)]
pub struct HeartbeatSpec {
    /// Slack after `interval` before a missing success counts, and how long a `/start` may
    /// run without one.
    pub grace: Duration,
    /// `Authorization: Bearer` the pings must carry, from `token_file`.
    pub token: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TcpSpec {
    pub address: String,
    pub warn_after: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseSpec {
    pub url: Secret,
    pub query: String,
    pub warn_after: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SystemSpec {
    pub cpu: Option<Limits>,
    pub memory: Option<Limits>,
    pub disk: Option<DiskSpec>,
}

/// Utilization ratios at which a resource turns warning or critical.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub warning: Option<f64>,
    pub critical: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DiskSpec {
    pub limits: Limits,
    /// Empty means every mounted disk.
    pub mountpoints: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CommandSpec {
    pub program: String,
    pub args: Vec<String>,
}

/// A compiled regular expression that compares by its source text, so configs can be diffed.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

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

/// What the command line says about where the config comes from and what overrides it.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen_address: Option<String>,
    pub state_url: Option<String>,
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
    validate::load_str(
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
    validate::load_str(
        text,
        base_dir,
        overrides,
        ConfigSource::File(PathBuf::from("<inline>")),
    )
}

/// The built-in default: this host's resources and medic's own `/-/healthy`.
pub fn load_builtin(overrides: &Overrides) -> Result<Config, ConfigErrors> {
    let listen = overrides
        .listen_address
        .clone()
        .unwrap_or_else(|| DEFAULT_LISTEN_ADDRESS.to_string());
    let text = builtin_yaml(&listen);
    validate::load_str(&text, Path::new("."), overrides, ConfigSource::Builtin)
}

pub const DEFAULT_LISTEN_ADDRESS: &str = "127.0.0.1:7979";
pub const DEFAULT_STATE_URL: &str = "sqlite://data/medic.db";
pub const DEFAULT_CONFIG_FILE: &str = "medic.yml";
