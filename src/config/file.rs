//! The YAML file as written: serde structs that mirror the SPEC's keys one to one.
//!
//! Every struct denies unknown keys, so a typo is an error rather than a silently ignored
//! setting. Optional keys stay `Option` here; `validate` fills defaults and checks meaning.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::duration::Duration;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub web: WebFile,
    #[serde(default)]
    pub state: StateFile,
    #[serde(default)]
    pub defaults: DefaultsFile,
    #[serde(default)]
    pub checks: Vec<CheckFile>,
    #[serde(default)]
    pub recovery: RecoveryFile,
    #[serde(default)]
    pub predictions: Vec<PredictionFile>,
    #[serde(default)]
    pub maintenance: Vec<MaintenanceFile>,
    pub alertmanager: Option<AlertmanagerFile>,
}

/// `alertmanager:`: the Alertmanager medic talks back to (escalations, silences).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerFile {
    pub url: String,
    pub basic_auth: Option<BasicAuthFile>,
    pub bearer_token: Option<String>,
    pub bearer_token_file: Option<PathBuf>,
    pub tls_config: Option<TlsConfigFile>,
    /// How often escalations are re-posted and silences extended (Prometheus's
    /// `--rules.alert.resend-delay`); default 1m.
    pub resend_delay: Option<Duration>,
}

/// Client TLS, as Prometheus writes it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfigFile {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebFile {
    pub listen_address: Option<String>,
    #[serde(default)]
    pub webhook: WebhookFile,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookFile {
    pub bearer_token: Option<String>,
    pub bearer_token_file: Option<PathBuf>,
    pub basic_auth: Option<BasicAuthFile>,
    pub max_body_bytes: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuthFile {
    pub username: String,
    pub password: Option<String>,
    pub password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateFile {
    pub url: Option<String>,
    pub url_file: Option<PathBuf>,
    /// How long check results are kept.
    pub retention: Option<Duration>,
    /// At most this many results per check are kept.
    pub retention_results: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultsFile {
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub failures_before_critical: Option<u32>,
    pub successes_before_healthy: Option<u32>,
    pub flapping: Option<FlappingFile>,
    /// Results kept in memory per check for the API's `history`.
    pub history_size: Option<usize>,
}

/// Monit-style flap detection: `failures` critical probes within the latest `within`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlappingFile {
    pub failures: u32,
    pub within: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckFile {
    pub name: String,
    pub interval: Option<Duration>,
    pub timeout: Option<Duration>,
    pub enabled: Option<bool>,
    pub failures_before_critical: Option<u32>,
    pub successes_before_healthy: Option<u32>,
    pub flapping: Option<FlappingFile>,
    pub recovery: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub http: Option<HttpFile>,
    pub tcp: Option<TcpFile>,
    pub database: Option<DatabaseFile>,
    pub system: Option<SystemFile>,
    pub command: Option<CommandFile>,
    pub tls: Option<TlsFile>,
    pub heartbeat: Option<HeartbeatFile>,
    pub dns: Option<DnsFile>,
    pub grpc: Option<GrpcFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcFile {
    pub address: String,
    pub service: Option<String>,
    pub tls: Option<bool>,
    pub ca_file: Option<PathBuf>,
    pub server_name: Option<String>,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsFile {
    pub name: String,
    #[serde(rename = "type")]
    pub record_type: Option<String>,
    pub server: Option<String>,
    pub transport: Option<String>,
    pub expect_rcode: Option<String>,
    pub expect_answer: Option<String>,
    pub min_answers: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatFile {
    pub grace: Option<Duration>,
    pub token_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    pub address: String,
    pub server_name: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub warn_before: Option<Duration>,
    pub critical_before: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    pub url: String,
    pub method: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
    pub expect_status: Option<Vec<u16>>,
    pub expect_body: Option<String>,
    pub body_regex: Option<String>,
    pub warn_after: Option<Duration>,
    pub keep_alive: Option<bool>,
    pub follow_redirects: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpFile {
    pub address: String,
    pub warn_after: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseFile {
    pub url: Option<String>,
    pub url_file: Option<PathBuf>,
    pub query: Option<String>,
    pub warn_after: Option<Duration>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemFile {
    pub cpu: Option<ThresholdsFile>,
    pub memory: Option<ThresholdsFile>,
    pub disk: Option<DiskFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdsFile {
    pub warning: Option<f64>,
    pub critical: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskFile {
    pub warning: Option<f64>,
    pub critical: Option<f64>,
    pub mountpoints: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandFile {
    pub program: String,
    #[serde(default)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoveryFile {
    pub mode: Option<RecoveryMode>,
    #[serde(default)]
    pub limits: LimitsFile,
    #[serde(default)]
    pub chains: BTreeMap<String, ChainFile>,
    #[serde(default)]
    pub routes: Vec<RouteFile>,
}

/// Whether recovery acts, or only decides and records (`shadow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RecoveryMode {
    #[default]
    Active,
    Shadow,
}

/// `recovery.limits`: the fleet-wide brakes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsFile {
    pub max_concurrent_runs: Option<u32>,
    pub max_runs: Option<MaxRunsFile>,
    pub max_unhealthy: Option<ShareOrCount>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaxRunsFile {
    pub count: u32,
    pub within: Duration,
}

/// `50%` (YAML reads it as a string) or `20` (a number).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum ShareOrCount {
    Count(u64),
    Text(String),
}

/// One maintenance window as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceFile {
    pub name: String,
    #[serde(default)]
    pub matchers: Vec<String>,
    pub schedule: Option<ScheduleFile>,
    pub between: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleFile {
    /// None: every day.
    pub days: Option<Vec<String>>,
    pub start: String,
    pub duration: Duration,
    pub time_zone: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    #[default]
    Fixed,
    Adaptive,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainFile {
    pub mode: Option<RecoveryMode>,
    pub max_concurrent_runs: Option<u32>,
    pub verify_timeout: Option<Duration>,
    pub reset_after: Option<Duration>,
    pub order: Option<Order>,
    pub steps: Vec<StepFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepFile {
    pub name: String,
    pub exec: Option<ExecFile>,
    pub http: Option<HttpActionFile>,
    pub notify: Option<NotifyFile>,
    pub alert: Option<AlertFile>,
    pub max_attempts: Option<u32>,
    pub cooldown: Option<Duration>,
    pub timeout: Option<Duration>,
    pub tier: Option<u32>,
    /// Exec steps: what the step starts may outlive it (a daemon it restarts).
    pub detach: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecFile {
    pub program: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// The same as the step's `detach`, where it reads better beside the program.
    pub detach: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpActionFile {
    pub url: String,
    pub method: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub body: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyFile {
    pub url: String,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// An `alert` step: posts `MedicEscalation` to Alertmanager.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertFile {
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    pub matchers: Vec<String>,
    pub chain: String,
    pub verify_check: Option<String>,
    pub silence: Option<SilenceFile>,
}

/// `silence: true`, or `silence: {matchers: [...]}` with templates.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum SilenceFile {
    Enabled(bool),
    Matchers(SilenceMatchersFile),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceMatchersFile {
    pub matchers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictionFile {
    pub name: String,
    pub check: String,
    pub measurement: String,
    pub mountpoint: Option<String>,
    pub window: Option<Duration>,
    #[serde(default)]
    pub horizons: Vec<String>,
    pub breach_above: Option<f64>,
    pub breach_below: Option<f64>,
    pub max_horizon: Option<Duration>,
}
