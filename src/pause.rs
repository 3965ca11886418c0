//! Pauses: an operator's "hold healing" for a while, scoped by matchers over a run's labels.
//! They live in the state store so every replica and every restart honours them; this module
//! is the pure part: what a request may say, and whom an active pause holds.

use std::collections::BTreeMap;

use crate::alertmanager::Matcher;
use crate::config::Duration;

/// The longest pause medic takes: anything longer is a config change, not a pause.
pub const MAX_PAUSE: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);
/// At most this many matchers in one pause.
pub const MAX_MATCHERS: usize = 32;
/// At most this many bytes of reason.
pub const MAX_REASON_BYTES: usize = 1024;
/// At most this many active pauses at once.
pub const MAX_ACTIVE: usize = 1000;

/// An active or ended pause.
#[derive(Debug, Clone, PartialEq)]
pub struct Pause {
    pub id: String,
    /// None: every run.
    pub matchers: Vec<Matcher>,
    pub reason: String,
    pub created_ms: i64,
    pub ends_ms: i64,
}

impl Pause {
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.created_ms <= now_ms && now_ms < self.ends_ms
    }

    /// Whether it holds a run with these labels now.
    pub fn holds(&self, labels: &BTreeMap<String, String>, now_ms: i64) -> bool {
        self.is_active(now_ms) && self.matchers.iter().all(|m| m.matches(labels))
    }
}

/// A valid request for a new pause.
#[derive(Debug, Clone, PartialEq)]
pub struct PauseRequest {
    pub matchers: Vec<Matcher>,
    pub duration: std::time::Duration,
    pub reason: String,
}

impl PauseRequest {
    /// Checks what a client asked for; every problem is one message.
    pub fn parse(matchers: &[String], duration: &str, reason: &str) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        if matchers.len() > MAX_MATCHERS {
            errors.push(format!(
                "matchers: at most {MAX_MATCHERS}, got {}",
                matchers.len()
            ));
        }
        let parsed: Vec<Matcher> = matchers
            .iter()
            .enumerate()
            .filter_map(|(i, text)| match Matcher::parse(text) {
                Ok(m) => Some(m),
                Err(e) => {
                    errors.push(format!("matchers[{i}]: {e}"));
                    None
                }
            })
            .collect();
        let duration = match duration.parse::<Duration>() {
            Ok(d) if d.is_zero() => {
                errors.push("duration: must be longer than 0s".to_string());
                None
            }
            Ok(d) if d.std() > MAX_PAUSE => {
                errors.push(format!(
                    "duration: {d} is longer than the longest pause, 30d"
                ));
                None
            }
            Ok(d) => Some(d.std()),
            Err(e) => {
                errors.push(format!("duration: {e}"));
                None
            }
        };
        if reason.trim().is_empty() {
            errors.push("reason: say why healing is paused".to_string());
        } else if reason.len() > MAX_REASON_BYTES {
            errors.push(format!("reason: at most {MAX_REASON_BYTES} bytes"));
        }
        match (errors.is_empty(), duration) {
            (true, Some(duration)) => Ok(PauseRequest {
                matchers: parsed,
                duration,
                reason: reason.to_string(),
            }),
            _ => Err(errors),
        }
    }

    /// The pause this request makes at `now_ms`.
    pub fn into_pause(self, id: String, now_ms: i64) -> Pause {
        let length = i64::try_from(self.duration.as_millis()).unwrap_or(i64::MAX);
        Pause {
            id,
            matchers: self.matchers,
            reason: self.reason,
            created_ms: now_ms,
            ends_ms: now_ms.saturating_add(length),
        }
    }
}

/// Whether any of `pauses` holds a run with these labels now.
pub fn paused(pauses: &[Pause], labels: &BTreeMap<String, String>, now_ms: i64) -> bool {
    pauses.iter().any(|p| p.holds(labels, now_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::labels;

    #[test]
    fn a_pause_holds_matching_runs_while_it_lasts() {
        let request = PauseRequest::parse(&[r#"chain="web""#.into()], "1h", "deploy").unwrap();
        let pause = request.into_pause("p1".into(), 1_000);
        assert_eq!(pause.ends_ms, 1_000 + 3_600_000);
        let web = labels(&[("chain", "web"), ("check", "api")]);
        let db = labels(&[("chain", "db"), ("check", "pg")]);
        assert!(pause.holds(&web, 1_000));
        assert!(pause.holds(&web, 3_600_999));
        assert!(!pause.holds(&web, 3_601_000), "ended");
        assert!(!pause.holds(&web, 999), "not yet made");
        assert!(!pause.holds(&db, 2_000), "another chain");
        assert!(paused(std::slice::from_ref(&pause), &web, 2_000));
        assert!(!paused(&[pause], &db, 2_000));
    }

    #[test]
    fn a_pause_without_matchers_holds_everything() {
        let pause = PauseRequest::parse(&[], "5m", "incident")
            .unwrap()
            .into_pause("p".into(), 0);
        assert!(pause.holds(&labels(&[]), 1));
        assert!(pause.holds(&labels(&[("chain", "x")]), 1));
    }

    #[test]
    fn bad_requests_say_every_problem() {
        let cases: [(&[&str], &str, &str, &[&str]); 6] = [
            (
                &["chain"],
                "1h",
                "x",
                &["matchers[0]: invalid matcher \"chain\""],
            ),
            (&[], "soon", "x", &["duration: invalid duration \"soon\""]),
            (&[], "0s", "x", &["duration: must be longer than 0s"]),
            (
                &[],
                "31d",
                "x",
                &["duration: 31d is longer than the longest pause, 30d"],
            ),
            (&[], "1h", "  ", &["reason: say why healing is paused"]),
            (
                &["a=~\"(\"", "b=\"1\""],
                "-1h",
                "",
                &[
                    "matchers[0]: invalid matcher",
                    "duration: invalid duration",
                    "reason: say why",
                ],
            ),
        ];
        for (matchers, duration, reason, want) in cases {
            let matchers: Vec<String> = matchers.iter().map(|s| s.to_string()).collect();
            let errors = PauseRequest::parse(&matchers, duration, reason).unwrap_err();
            assert_eq!(errors.len(), want.len(), "{errors:?}");
            for (got, want) in errors.iter().zip(want) {
                assert!(got.starts_with(want), "{got:?} should start with {want:?}");
            }
        }
        let long = "x".repeat(MAX_REASON_BYTES + 1);
        assert_eq!(
            PauseRequest::parse(&[], "1h", &long).unwrap_err(),
            ["reason: at most 1024 bytes"]
        );
        let many: Vec<String> = (0..=MAX_MATCHERS).map(|i| format!("l{i}=\"v\"")).collect();
        assert_eq!(
            PauseRequest::parse(&many, "1h", "x").unwrap_err(),
            ["matchers: at most 32, got 33"]
        );
    }
}
