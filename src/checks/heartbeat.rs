//! Heartbeat (push) checks for cron jobs and backups: the job pings
//! `POST /api/v1/heartbeats/{check}` (`/start`, `/fail`, `/{exit_code}`); the probe, on the
//! check's interval, judges the latest pings against the clock ([`evaluate`]).
//!
//! The pings live here, shared by the HTTP handler that records them and the prober that reads
//! them; the handler also writes them to the state store, which hands them back after a restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::{FailureReason, Outcome};
use crate::config::{CheckSpec, HeartbeatSpec, ProbeSpec, Secret};
use crate::status::Status;
use crate::timefmt::rfc3339_ms;

/// The metadata key with the last success's Unix time, read by the metrics.
pub const LAST_HEARTBEAT_KEY: &str = "last_heartbeat_timestamp_seconds";

/// The latest ping of each kind, Unix milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pings {
    pub success_ms: Option<i64>,
    pub start_ms: Option<i64>,
    pub failure_ms: Option<i64>,
    /// Of the latest failure; `None` for `/fail`.
    pub exit_code: Option<i32>,
}

impl Pings {
    /// The newer of each ping kind (for merging what the store kept with what came since).
    fn merge(&mut self, other: &Pings) {
        self.success_ms = self.success_ms.max(other.success_ms);
        self.start_ms = self.start_ms.max(other.start_ms);
        if other.failure_ms > self.failure_ms {
            self.failure_ms = other.failure_ms;
            self.exit_code = other.exit_code;
        }
    }
}

/// What a job said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ping {
    Success,
    Start,
    /// `/fail` (`None`) or a nonzero exit code.
    Failure(Option<i32>),
}

impl Ping {
    /// The ping a path suffix after `/api/v1/heartbeats/{check}` names: ``, `start`, `fail`,
    /// or an exit code (0 is a success).
    pub fn parse(suffix: &str) -> Option<Ping> {
        match suffix {
            "" => Some(Ping::Success),
            "start" => Some(Ping::Start),
            "fail" => Some(Ping::Failure(None)),
            code => match code.parse::<u8>() {
                Ok(0) => Some(Ping::Success),
                Ok(c) => Some(Ping::Failure(Some(i32::from(c)))),
                Err(_) => None,
            },
        }
    }
}

#[derive(Debug)]
struct Entry {
    token: Option<Secret>,
    /// When medic began watching the check: without a success, the deadline counts from here.
    since_ms: i64,
    pings: Pings,
}

/// Every heartbeat check's pings.
#[derive(Debug, Clone, Default)]
pub struct Heartbeats(Arc<Mutex<HashMap<String, Entry>>>);

/// Why a ping was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// No heartbeat check of that name.
    Unknown,
    Unauthorized,
}

impl Heartbeats {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes the heartbeat checks of a (re)loaded config; others' pings are dropped.
    pub fn configure<'a>(&self, checks: impl IntoIterator<Item = &'a CheckSpec>, now_ms: i64) {
        let mut map = self.lock();
        let mut next = HashMap::new();
        for check in checks {
            if let ProbeSpec::Heartbeat(spec) = &check.probe {
                let entry = match map.remove(&check.name) {
                    Some(mut old) => {
                        old.token = spec.token.clone();
                        old
                    }
                    None => Entry {
                        token: spec.token.clone(),
                        since_ms: now_ms,
                        pings: Pings::default(),
                    },
                };
                next.insert(check.name.clone(), entry);
            }
        }
        *map = next;
    }

    /// Merges pings the state store kept from before a restart.
    pub fn restore(&self, stored: Vec<(String, Pings)>) {
        let mut map = self.lock();
        for (check, pings) in stored {
            if let Some(entry) = map.get_mut(&check) {
                entry.pings.merge(&pings);
            }
        }
    }

    /// Records a ping after checking the credential. Returns the check's pings after it and,
    /// for a success that ends a `/start`, the job's duration in seconds.
    pub fn record(
        &self,
        check: &str,
        authorization: Option<&[u8]>,
        ping: Ping,
        now_ms: i64,
    ) -> Result<(Pings, Option<f64>), Refused> {
        let mut map = self.lock();
        let entry = map.get_mut(check).ok_or(Refused::Unknown)?;
        if let Some(token) = &entry.token {
            let expected = format!("Bearer {}", token.expose());
            let given = authorization.unwrap_or_default();
            if !crate::config::constant_time_eq(given, expected.as_bytes()) {
                return Err(Refused::Unauthorized);
            }
        }
        let p = &mut entry.pings;
        let mut job_seconds = None;
        match ping {
            Ping::Success => {
                // A start not yet ended by a success or failure: the job took this long.
                if let Some(start) = p
                    .start_ms
                    .filter(|s| Some(*s) > p.success_ms && Some(*s) > p.failure_ms && *s <= now_ms)
                {
                    job_seconds = Some((now_ms - start) as f64 / 1000.0);
                }
                p.success_ms = Some(now_ms);
            }
            Ping::Start => p.start_ms = Some(now_ms),
            Ping::Failure(code) => {
                p.failure_ms = Some(now_ms);
                p.exit_code = code;
            }
        }
        Ok((*p, job_seconds))
    }

    fn get(&self, check: &str) -> Option<(i64, Pings)> {
        self.lock().get(check).map(|e| (e.since_ms, e.pings))
    }

    pub fn probe(&self, check: &CheckSpec, spec: &HeartbeatSpec, now_ms: i64) -> Outcome {
        match self.get(&check.name) {
            Some((since_ms, pings)) => evaluate(
                &pings,
                since_ms,
                now_ms,
                check.interval.std().as_millis() as i64,
                spec.grace.std().as_millis() as i64,
            ),
            None => Outcome::failed(
                Status::Unknown,
                FailureReason::Other,
                "heartbeat check not registered",
            ),
        }
    }
}

/// The check's status from its latest pings at `now_ms`: a failure newer than any start or
/// success is critical; a start without a success after `grace` is critical; no success within
/// `interval + grace` (counted from `since_ms` before the first) is critical.
pub fn evaluate(p: &Pings, since_ms: i64, now_ms: i64, interval_ms: i64, grace_ms: i64) -> Outcome {
    let at = |ms: i64| rfc3339_ms(ms);
    let mut outcome =
        if p.failure_ms.is_some() && p.failure_ms > p.success_ms && p.failure_ms >= p.start_ms {
            let failed = p.failure_ms.unwrap_or_default();
            let how = match p.exit_code {
                Some(code) => format!("exit code {code}"),
                None => "/fail".to_string(),
            };
            Outcome::failed(
                Status::Critical,
                FailureReason::ExitCode,
                format!("job failed ({how}) at {}", at(failed)),
            )
        } else if let Some(start) = p.start_ms.filter(|s| Some(*s) > p.success_ms) {
            if now_ms - start > grace_ms {
                Outcome::failed(
                    Status::Critical,
                    FailureReason::MissedHeartbeat,
                    format!(
                        "started at {}, no success within the grace period",
                        at(start)
                    ),
                )
            } else {
                Outcome::new(Status::Healthy, format!("running since {}", at(start)))
            }
        } else {
            let reference = p.success_ms.unwrap_or(since_ms);
            let deadline = reference + interval_ms + grace_ms;
            match (p.success_ms, now_ms > deadline) {
                (Some(ok), true) => Outcome::failed(
                    Status::Critical,
                    FailureReason::MissedHeartbeat,
                    format!("no heartbeat since {}", at(ok)),
                ),
                (None, true) => Outcome::failed(
                    Status::Critical,
                    FailureReason::MissedHeartbeat,
                    format!(
                        "no heartbeat since medic began watching at {}",
                        at(since_ms)
                    ),
                ),
                (Some(ok), false) => {
                    Outcome::new(Status::Healthy, format!("last heartbeat at {}", at(ok)))
                }
                (None, false) => Outcome::new(
                    Status::Healthy,
                    format!("waiting for the first heartbeat, due by {}", at(deadline)),
                ),
            }
        };
    outcome = outcome.with(
        "heartbeat",
        json!({
            "last_success": p.success_ms.map(at),
            "last_start": p.start_ms.map(at),
            "last_failure": p.failure_ms.map(at),
            "last_exit_code": p.exit_code,
        }),
    );
    if let Some(ok) = p.success_ms {
        outcome = outcome.with(LAST_HEARTBEAT_KEY, ok as f64 / 1000.0);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;

    fn p(
        success: Option<i64>,
        start: Option<i64>,
        failure: Option<i64>,
        code: Option<i32>,
    ) -> Pings {
        Pings {
            success_ms: success.map(|s| s * S),
            start_ms: start.map(|s| s * S),
            failure_ms: failure.map(|s| s * S),
            exit_code: code,
        }
    }

    #[test]
    fn pings_are_judged_against_interval_and_grace() {
        // interval 60s, grace 30s, watching since t=0.
        let table: &[(&str, Pings, i64, Status, Option<FailureReason>)] = &[
            (
                "nothing yet, before the deadline",
                p(None, None, None, None),
                90,
                Status::Healthy,
                None,
            ),
            (
                "nothing by the deadline",
                p(None, None, None, None),
                91,
                Status::Critical,
                Some(FailureReason::MissedHeartbeat),
            ),
            (
                "on time",
                p(Some(100), None, None, None),
                190,
                Status::Healthy,
                None,
            ),
            (
                "missed",
                p(Some(100), None, None, None),
                191,
                Status::Critical,
                Some(FailureReason::MissedHeartbeat),
            ),
            (
                "running within grace",
                p(Some(100), Some(150), None, None),
                180,
                Status::Healthy,
                None,
            ),
            (
                "start without success past grace",
                p(Some(100), Some(150), None, None),
                181,
                Status::Critical,
                Some(FailureReason::MissedHeartbeat),
            ),
            (
                "start then success",
                p(Some(160), Some(150), None, None),
                200,
                Status::Healthy,
                None,
            ),
            (
                "failed",
                p(Some(100), None, Some(120), Some(2)),
                121,
                Status::Critical,
                Some(FailureReason::ExitCode),
            ),
            (
                "failed after start",
                p(Some(100), Some(110), Some(120), None),
                121,
                Status::Critical,
                Some(FailureReason::ExitCode),
            ),
            (
                "success after failure",
                p(Some(130), None, Some(120), Some(2)),
                131,
                Status::Healthy,
                None,
            ),
            (
                "restarted after failure",
                p(Some(100), Some(130), Some(120), Some(1)),
                131,
                Status::Healthy,
                None,
            ),
        ];
        for (what, pings, now, status, reason) in table {
            let o = evaluate(pings, 0, now * S, 60 * S, 30 * S);
            assert_eq!(
                (o.status, o.reason),
                (*status, *reason),
                "{what}: {}",
                o.message
            );
        }
    }

    #[test]
    fn paths_name_pings() {
        assert_eq!(Ping::parse(""), Some(Ping::Success));
        assert_eq!(Ping::parse("0"), Some(Ping::Success));
        assert_eq!(Ping::parse("start"), Some(Ping::Start));
        assert_eq!(Ping::parse("fail"), Some(Ping::Failure(None)));
        assert_eq!(Ping::parse("3"), Some(Ping::Failure(Some(3))));
        assert_eq!(Ping::parse("256"), None);
        assert_eq!(Ping::parse("-1"), None);
        assert_eq!(Ping::parse("stop"), None);
    }
}
