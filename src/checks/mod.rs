//! Probes: one file per check kind behind [`Prober::probe`], which times, bounds and scrubs
//! every result. A failed check is data: probing returns an [`Outcome`], never an error.

mod command;
mod database;
pub mod dns;
mod grpc;
mod heartbeat;
mod http;
mod system;
mod tcp;
mod tls;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::{CheckSpec, ProbeSpec, Redactor};
use crate::resources::Resource;
use crate::status::Status;

pub use command::{parse_plugin_output, PerfData, PluginOutput};
pub use heartbeat::{Heartbeats, Ping, Pings, Refused, LAST_HEARTBEAT_KEY};
pub use tls::EXPIRY_KEY;

/// What one probe found.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: Status,
    pub duration: Duration,
    pub message: String,
    /// Details for people and the API: status code, sizes, per-resource values.
    pub metadata: BTreeMap<String, Value>,
    /// Numbers the predictor can follow over time.
    pub measurements: Vec<Measurement>,
    /// Why a critical or unknown probe failed; `None` for healthy and warning probes.
    pub reason: Option<FailureReason>,
}

/// Why a probe failed: the SPEC's closed set, shown as `reason` in the JSON API, and bounded
/// so `medic_check_failure_info{reason}` stays small and an alert rule can match on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FailureReason {
    Timeout,
    ConnectionRefused,
    Dns,
    Tls,
    Status,
    Body,
    Query,
    Auth,
    ExitCode,
    Threshold,
    MissedHeartbeat,
    /// medic itself ran out of this resource: the result is `unknown` and heals nothing.
    Medic(Resource),
    Other,
}

impl FailureReason {
    /// Every reason, `medic` once per resource (all three share the label `medic`).
    pub const ALL: [FailureReason; 15] = [
        FailureReason::Timeout,
        FailureReason::ConnectionRefused,
        FailureReason::Dns,
        FailureReason::Tls,
        FailureReason::Status,
        FailureReason::Body,
        FailureReason::Query,
        FailureReason::Auth,
        FailureReason::ExitCode,
        FailureReason::Threshold,
        FailureReason::MissedHeartbeat,
        FailureReason::Medic(Resource::Fds),
        FailureReason::Medic(Resource::Processes),
        FailureReason::Medic(Resource::Memory),
        FailureReason::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::Timeout => "timeout",
            FailureReason::ConnectionRefused => "connection_refused",
            FailureReason::Dns => "dns",
            FailureReason::Tls => "tls",
            FailureReason::Status => "status",
            FailureReason::Body => "body",
            FailureReason::Query => "query",
            FailureReason::Auth => "auth",
            FailureReason::ExitCode => "exit_code",
            FailureReason::Threshold => "threshold",
            FailureReason::MissedHeartbeat => "missed_heartbeat",
            FailureReason::Medic(_) => "medic",
            FailureReason::Other => "other",
        }
    }

    /// The reason an IO error of connecting or talking to a target gives.
    pub fn of_io(e: &std::io::Error) -> FailureReason {
        use std::io::ErrorKind;
        match e.kind() {
            ErrorKind::ConnectionRefused => FailureReason::ConnectionRefused,
            ErrorKind::TimedOut => FailureReason::Timeout,
            _ => FailureReason::Other,
        }
    }
}

pub use crate::vocabulary::{Measure, Measurement};

impl Outcome {
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        Outcome {
            status,
            duration: Duration::ZERO,
            message: message.into(),
            metadata: BTreeMap::new(),
            measurements: Vec::new(),
            reason: None,
        }
    }

    /// A failed probe and why it failed.
    pub fn failed(status: Status, reason: FailureReason, message: impl Into<String>) -> Self {
        let mut outcome = Outcome::new(status, message);
        outcome.reason = Some(reason);
        outcome
    }

    /// A probe that failed because medic itself ran out of `resource`: `unknown`, never
    /// `critical`, so that medic's trouble starts no recovery of the target.
    pub fn medic(resource: Resource, message: impl Into<String>) -> Self {
        let mut outcome = Outcome::new(
            Status::Unknown,
            format!("medic is out of {}: {}", resource.as_str(), message.into()),
        );
        outcome.reason = Some(FailureReason::Medic(resource));
        outcome.with("medic_resource", resource.as_str())
    }

    /// The outcome for a probe that failed with `err`: [`Outcome::medic`] when the error says
    /// medic ran out of something, else `status` with `reason`.
    pub fn from_error(
        err: &(dyn std::error::Error + 'static),
        status: Status,
        reason: Option<FailureReason>,
        message: impl Into<String>,
    ) -> Self {
        match crate::resources::exhausted(err, false) {
            Some(resource) => Outcome::medic(resource, message),
            None => {
                let mut outcome = Outcome::new(status, message);
                outcome.reason = reason;
                outcome
            }
        }
    }

    pub fn with_reason(mut self, reason: FailureReason) -> Self {
        self.reason = Some(reason);
        self
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.metadata.insert(key.to_string(), value.into());
        self
    }

    /// Downgrades a healthy outcome to warning when it took longer than `warn_after`.
    fn warn_if_slow(
        mut self,
        elapsed: Duration,
        warn_after: Option<crate::config::Duration>,
    ) -> Self {
        if let Some(limit) = warn_after {
            if self.status == Status::Healthy && elapsed > limit.std() {
                self.status = Status::Warning;
                self.message = format!(
                    "{} (slow: {} > warn_after {limit})",
                    self.message,
                    format_seconds(elapsed)
                );
            }
        }
        self
    }
}

/// Shared, long-lived resources for every probe: HTTP clients, the sysinfo handle.
pub struct Prober {
    http: http::Clients,
    system: Arc<system::SystemProbe>,
    databases: database::Databases,
    heartbeats: Heartbeats,
}

impl Prober {
    pub fn new() -> anyhow::Result<Self> {
        Ok(Prober {
            http: http::Clients::new()?,
            system: Arc::new(system::SystemProbe::new()),
            databases: database::Databases::default(),
            heartbeats: Heartbeats::default(),
        })
    }

    /// The heartbeat checks' pings, for the HTTP handler that records them.
    pub fn heartbeats(&self) -> Heartbeats {
        self.heartbeats.clone()
    }

    /// Forgets resources (database pools, heartbeats) that none of `checks` uses.
    pub fn retain(&self, checks: &[Arc<CheckSpec>]) {
        self.heartbeats
            .configure(checks.iter().map(|c| c.as_ref()), crate::timefmt::now_ms());
        let urls: Vec<&str> = checks
            .iter()
            .filter_map(|c| match &c.probe {
                ProbeSpec::Database(db) => Some(db.url.expose()),
                _ => None,
            })
            .collect();
        self.databases.retain(&urls);
    }

    /// Runs one probe of `check`, bounded by its timeout, with secrets scrubbed from the result.
    pub async fn probe(&self, check: &CheckSpec, redactor: &Redactor) -> Outcome {
        let started = Instant::now();
        let timeout = check.timeout.std();
        // A command bounds itself, its wait for a child process slot included, and says which
        // of the two ran out; the margin lets its answer win the race against this bound.
        let bound = match check.probe {
            ProbeSpec::CommandCheck(_) => timeout + COMMAND_MARGIN,
            _ => timeout,
        };
        let result = tokio::time::timeout(bound, self.dispatch(check, timeout)).await;
        let mut outcome = match result {
            Ok(outcome) => outcome,
            Err(_) => Outcome::failed(
                Status::Critical,
                FailureReason::Timeout,
                format!("timeout: no answer within {}", check.timeout),
            ),
        };
        outcome.duration = started.elapsed();
        outcome.reason = settle_reason(outcome.status, outcome.reason);
        if !redactor.is_empty() {
            outcome.message = redactor.redact(&outcome.message);
            for value in outcome.metadata.values_mut() {
                if let Value::String(s) = value {
                    *s = redactor.redact(s);
                }
            }
        }
        outcome
    }

    /// Each kind's future is boxed: inline, every probe's future (and its task) would be as
    /// large as the largest kind's, about 10 kB, copied several times on each spawn and
    /// completion, where an HTTP probe needs under 2 kB and a TCP one less.
    async fn dispatch(&self, check: &CheckSpec, timeout: Duration) -> Outcome {
        match &check.probe {
            ProbeSpec::Http(spec) => Box::pin(self.http.probe(spec, timeout)).await,
            ProbeSpec::Tcp(spec) => Box::pin(tcp::probe(spec)).await,
            ProbeSpec::System(spec) => Box::pin(self.system.probe(spec)).await,
            ProbeSpec::CommandCheck(spec) => Box::pin(command::probe(spec, timeout)).await,
            ProbeSpec::Database(spec) => Box::pin(self.databases.probe(spec, timeout)).await,
            ProbeSpec::Tls(spec) => Box::pin(tls::probe(spec)).await,
            ProbeSpec::Dns(spec) => Box::pin(dns::probe(spec)).await,
            ProbeSpec::Grpc(spec) => Box::pin(grpc::probe(spec)).await,
            ProbeSpec::Heartbeat(spec) => {
                self.heartbeats.probe(check, spec, crate::timefmt::now_ms())
            }
        }
    }
}

/// Every failing probe has a reason (a kind that did not say gets `other`); a passing one none.
fn settle_reason(status: Status, reason: Option<FailureReason>) -> Option<FailureReason> {
    match status {
        Status::Critical | Status::Unknown => Some(reason.unwrap_or(FailureReason::Other)),
        Status::Healthy | Status::Warning => None,
    }
}
/// How much longer than its timeout a command probe may take to say why it stopped.
const COMMAND_MARGIN: Duration = Duration::from_millis(250);

/// `0.012s`, `1.500s`: durations in messages, in seconds like everything else.
pub fn format_seconds(d: Duration) -> String {
    format!("{:.3}s", d.as_secs_f64())
}

/// The innermost cause of an error, which is usually the one that says what happened.
pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}
