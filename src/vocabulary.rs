//! The words modules share, as closed sets: what a run heals, what started it, how attempts
//! and runs end, why a step was skipped or a trigger held, what medic asks of Alertmanager.
//! Every label value of these kinds is one of these; no module spells them as strings of its
//! own. Depends on nothing, so that anything may use it.

use std::fmt;
use std::str::FromStr;

/// A closed set: the enum, its wire words (`as_str`, `Display`, `FromStr`) and `ALL`.
macro_rules! closed_set {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident => $word:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownWord;

            fn from_str(s: &str) -> Result<Self, UnknownWord> {
                match s {
                    $($word => Ok($name::$variant),)+
                    _ => Err(UnknownWord {
                        set: stringify!($name),
                        word: s.to_string(),
                    }),
                }
            }
        }
    };
}

/// A word read back (from the store, say) that is not in its set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownWord {
    pub set: &'static str,
    pub word: String,
}

impl fmt::Display for UnknownWord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} is not a {}", self.word, self.set)
    }
}

impl std::error::Error for UnknownWord {}

closed_set! {
    /// What started a run: `trigger` on runs and attempts.
    TriggerKind {
        Check => "check",
        Alert => "alert",
        Manual => "manual",
    }
}

closed_set! {
    /// How an attempt's action (and its verification) ended: `result` on attempts.
    AttemptResult {
        Success => "success",
        Failure => "failure",
        Timeout => "timeout",
        /// Shadow mode: recorded as the step that would have run; nothing ran.
        Shadow => "shadow",
    }
}

closed_set! {
    /// How a run ended: `outcome` on runs.
    RunOutcome {
        Recovered => "recovered",
        Exhausted => "exhausted",
        Cancelled => "cancelled",
        /// Shadow mode: the step that would have run was recorded, nothing ran.
        Shadow => "shadow",
        /// A new incident found every step in cooldown or at `max_attempts`: nothing could
        /// run, and the run records why, step by step.
        Unavailable => "unavailable",
    }
}

closed_set! {
    /// Why a step did not run: `reason` on skips.
    SkipReason {
        Cooldown => "cooldown",
        MaxAttempts => "max_attempts",
        InProgress => "in_progress",
        DryRun => "dry_run",
        /// `confirm: {replicas: K}`: fewer than K replicas see the check critical.
        Unconfirmed => "unconfirmed",
    }
}

closed_set! {
    /// Why a connection was shed at `--web.max-connections`: `reason` on
    /// `medic_web_connections_shed_total`, in the order connections are shed.
    ShedReason {
        /// Between two requests of a keep-alive connection.
        Idle => "idle",
        /// Accepted (or its next request begun) but its request headers are not all in yet;
        /// a TLS handshake under way counts here too.
        ReadingHeaders => "reading_headers",
    }
}

closed_set! {
    /// What medic asks of Alertmanager: `operation` on its requests.
    AmOperation {
        PostAlert => "post_alert",
        CreateSilence => "create_silence",
        ExpireSilence => "expire_silence",
        /// Whether an alert medic healed still fires (`GET /api/v2/alerts`).
        QueryAlerts => "query_alerts",
    }
}

closed_set! {
    /// Where a check template finds its targets: `mechanism` on discovery's metrics.
    SdMechanism {
        FileSd => "file_sd",
        HttpSd => "http_sd",
        DnsSd => "dns_sd",
    }
}

closed_set! {
    /// Why a discovered target made no check: `reason` on `medic_sd_targets_refused_total`.
    SdRefusal {
        /// Its name is taken: the same target with other labels came first.
        Collision => "collision",
        /// The target is empty, too long, or holds characters a check name may not.
        Name => "name",
        /// Too many labels, or too long.
        Labels => "labels",
        /// The template rendered with its values is not a valid check (the log says why).
        Check => "check",
        /// Past the template's `max_targets`.
        MaxTargets => "max_targets",
    }
}

/// What a probe measured: closed, but for a plugin's perfdata labels. Its stored and
/// configured form is `name()` (and `mountpoint()`), as written in a prediction's
/// `measurement:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Measure {
    /// The probe's own duration: every check has it (from the outcome, not a list).
    Duration,
    Cpu,
    Memory,
    Disk {
        mountpoint: String,
    },
    /// Seconds until a TLS certificate expires.
    CertExpiry,
    /// A Nagios plugin's perfdata label.
    Perfdata(String),
}

impl Measure {
    pub const DURATION: &'static str = "duration_seconds";
    pub const CPU: &'static str = "cpu_utilization";
    pub const MEMORY: &'static str = "memory_utilization";
    pub const DISK: &'static str = "disk_utilization";
    pub const CERT_EXPIRY: &'static str = "cert_expiry_seconds";

    pub fn name(&self) -> &str {
        match self {
            Measure::Duration => Measure::DURATION,
            Measure::Cpu => Measure::CPU,
            Measure::Memory => Measure::MEMORY,
            Measure::Disk { .. } => Measure::DISK,
            Measure::CertExpiry => Measure::CERT_EXPIRY,
            Measure::Perfdata(label) => label,
        }
    }

    pub fn mountpoint(&self) -> Option<&str> {
        match self {
            Measure::Disk { mountpoint } => Some(mountpoint),
            _ => None,
        }
    }

    /// From the stored form; any name not of a system check is a perfdata label, and a disk
    /// reading needs its mountpoint.
    pub fn from_parts(name: &str, mountpoint: Option<String>) -> Option<Measure> {
        Some(match (name, mountpoint) {
            (Measure::DURATION, None) => Measure::Duration,
            (Measure::CPU, None) => Measure::Cpu,
            (Measure::MEMORY, None) => Measure::Memory,
            (Measure::DISK, Some(mountpoint)) => Measure::Disk { mountpoint },
            (Measure::CERT_EXPIRY, None) => Measure::CertExpiry,
            (Measure::DISK, None) | (_, Some(_)) => return None,
            (label, None) => Measure::Perfdata(label.to_string()),
        })
    }

    /// The same series by its stored form: a plugin may call a perfdata label
    /// `cpu_utilization`, and a prediction names what it follows by name.
    pub fn same_as(&self, other: &Measure) -> bool {
        self.name() == other.name() && self.mountpoint() == other.mountpoint()
    }
}

/// One number a probe measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Measurement {
    pub measure: Measure,
    pub value: f64,
}

impl Measurement {
    pub fn new(measure: Measure, value: f64) -> Measurement {
        Measurement { measure, value }
    }
}

/// Why a trigger was held back. Closed: these are the `reason` label values of
/// `medic_recovery_held_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HoldReason {
    /// `max_concurrent_runs`, global or the chain's.
    Concurrency,
    /// `max_runs`: too many runs started within the sliding window.
    Rate,
    /// `max_unhealthy`: too many checks are critical at once.
    CircuitOpen,
    Maintenance,
    Paused,
    /// A check it depends on (`depends_on`, of the check or of the alert's route) is
    /// failing: the root's chain heals, this one waits.
    Dependency,
    /// Not a hold an operator sees: a check trigger waits one probe interval of its check
    /// before it starts, so that every check sharing a failure has been probed and the circuit
    /// breaker counts them all. Never a label value; never recorded as a hold.
    Settling,
}

impl HoldReason {
    pub const ALL: [HoldReason; 6] = [
        HoldReason::Concurrency,
        HoldReason::Rate,
        HoldReason::CircuitOpen,
        HoldReason::Maintenance,
        HoldReason::Paused,
        HoldReason::Dependency,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HoldReason::Concurrency => "concurrency",
            HoldReason::Rate => "rate",
            HoldReason::CircuitOpen => "circuit_open",
            HoldReason::Maintenance => "maintenance",
            HoldReason::Paused => "paused",
            HoldReason::Dependency => "dependency",
            HoldReason::Settling => "settling",
        }
    }

    /// Holds an operator made (pauses, windows) and a failing dependency bind manual runs
    /// too; the automatic brakes (limits, circuit) do not.
    pub fn binds_manual_runs(self) -> bool {
        matches!(
            self,
            HoldReason::Maintenance | HoldReason::Paused | HoldReason::Dependency
        )
    }
}

/// A step's memory for one subject (a check, an alert, a manual target).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StepState {
    pub attempts: u32,
    pub last_attempt_ms: Option<i64>,
}

/// Labels medic sets on an escalation itself; a step's `labels` may not override them.
pub const ESCALATION_RESERVED_LABELS: &[&str] = &["alertname", "chain", "step"];

/// A step already tried for an incident (in this run or an earlier one): for a
/// notification's account and an escalation's description.
#[derive(Debug, Clone, PartialEq)]
pub struct TriedStep {
    pub step: String,
    pub result: AttemptResult,
    pub message: String,
    /// When its attempt ended (unix ms).
    pub at_ms: i64,
}

/// A step a run skipped, and until when (a cooldown's end; `None`: until counters reset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedStep {
    pub step: String,
    pub reason: SkipReason,
    pub until_ms: Option<i64>,
}

/// Whose counters, cooldowns and single active run apply: what a run heals.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Subject {
    /// A check (a check trigger, or an alert routed with `verify_check`).
    Check(String),
    /// An alert, by fingerprint.
    Alert(String),
    /// `medic recover`'s labels, `k=v` joined by commas (`manual` alone without labels).
    Manual(String),
}

impl Subject {
    /// The check a subject is about, read from its stored form.
    pub fn check_of(stored: &str) -> Option<&str> {
        stored.strip_prefix("check:")
    }
}

/// The stored form, `check:NAME`, `alert:FINGERPRINT` or `manual:LABELS`: made here only.
impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Check(name) => write!(f, "check:{name}"),
            Subject::Alert(fingerprint) => write!(f, "alert:{fingerprint}"),
            Subject::Manual(labels) if labels.is_empty() => f.write_str("manual"),
            Subject::Manual(labels) => write!(f, "manual:{labels}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for kind in TriggerKind::ALL {
            assert_eq!(kind.as_str().parse::<TriggerKind>(), Ok(*kind));
        }
        for result in AttemptResult::ALL {
            assert_eq!(result.to_string().parse::<AttemptResult>(), Ok(*result));
        }
        for outcome in RunOutcome::ALL {
            assert_eq!(outcome.as_str().parse::<RunOutcome>(), Ok(*outcome));
        }
        assert_eq!(SkipReason::MaxAttempts.as_str(), "max_attempts");
        assert_eq!(AmOperation::ALL.len(), 4);
        let err = "sometimes".parse::<RunOutcome>().unwrap_err();
        assert_eq!(err.to_string(), "\"sometimes\" is not a RunOutcome");
    }

    #[test]
    fn measures_have_one_stored_form() {
        for m in [
            Measure::Duration,
            Measure::Cpu,
            Measure::Memory,
            Measure::Disk {
                mountpoint: "/data".into(),
            },
            Measure::CertExpiry,
            Measure::Perfdata("load1".into()),
        ] {
            let back = Measure::from_parts(m.name(), m.mountpoint().map(str::to_string));
            assert_eq!(back.as_ref(), Some(&m));
        }
        assert_eq!(Measure::from_parts("disk_utilization", None), None);
        assert_eq!(Measure::from_parts("load1", Some("/".into())), None);
        assert!(Measure::Perfdata("cpu_utilization".into()).same_as(&Measure::Cpu));
        assert!(!Measure::Cpu.same_as(&Measure::Memory));
    }

    #[test]
    fn subjects_have_one_stored_form() {
        assert_eq!(Subject::Check("web".into()).to_string(), "check:web");
        assert_eq!(Subject::Alert("ab12".into()).to_string(), "alert:ab12");
        assert_eq!(Subject::Manual("a=b".into()).to_string(), "manual:a=b");
        assert_eq!(Subject::Manual(String::new()).to_string(), "manual");
        assert_eq!(Subject::check_of("check:web"), Some("web"));
        assert_eq!(Subject::check_of("alert:web"), None);
    }
}
