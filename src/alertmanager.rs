//! Alertmanager at the edge: the webhook payload (version 4) and the matcher syntax of routes.
//! Only this module knows the webhook JSON; the rest of medic sees [`ReceivedAlert`]s.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;

/// One alert from a notification, checked and ready to route.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedAlert {
    pub firing: bool,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub fingerprint: String,
    pub starts_at: String,
}

/// A notification as medic uses it.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub alerts: Vec<ReceivedAlert>,
    /// Alerts Alertmanager left out because of `max_alerts`.
    pub truncated_alerts: u64,
    pub receiver: String,
}

/// The wire form; unknown fields are ignored so newer Alertmanagers keep working.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload {
    version: String,
    #[serde(default)]
    receiver: String,
    alerts: Vec<WireAlert>,
    #[serde(default)]
    truncated_alerts: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireAlert {
    status: String,
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    starts_at: String,
    #[serde(default)]
    fingerprint: Option<String>,
}

/// Why a notification was rejected (a 400 with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("invalid JSON: {0}")]
    Json(String),
    #[error("unsupported webhook version {0:?} (medic understands \"4\")")]
    Version(String),
    #[error("alerts[{index}]: {reason}")]
    Alert { index: usize, reason: String },
}

/// Labels, annotations and values beyond these sizes are not from a real Alertmanager.
const MAX_ALERTS: usize = 10_000;
const MAX_FIELD: usize = 64 * 1024;

/// Parses and checks a webhook body.
pub fn parse_notification(body: &[u8]) -> Result<Notification, PayloadError> {
    let payload: Payload =
        serde_json::from_slice(body).map_err(|e| PayloadError::Json(e.to_string()))?;
    if payload.version != "4" {
        return Err(PayloadError::Version(truncate(&payload.version, 32)));
    }
    if payload.alerts.len() > MAX_ALERTS {
        return Err(PayloadError::Json(format!("more than {MAX_ALERTS} alerts")));
    }
    let mut alerts = Vec::with_capacity(payload.alerts.len());
    for (index, a) in payload.alerts.into_iter().enumerate() {
        let fail = |reason: String| PayloadError::Alert { index, reason };
        let firing = match a.status.as_str() {
            "firing" => true,
            "resolved" => false,
            other => {
                return Err(fail(format!(
                    "status {:?} is neither firing nor resolved",
                    truncate(other, 32)
                )))
            }
        };
        if a.labels.is_empty() {
            return Err(fail("has no labels".into()));
        }
        for (k, v) in a.labels.iter().chain(a.annotations.iter()) {
            if k.len() > MAX_FIELD || v.len() > MAX_FIELD {
                return Err(fail("a label or annotation is too long".into()));
            }
        }
        if a.starts_at.is_empty() || a.starts_at.len() > 64 {
            return Err(fail("startsAt is missing or malformed".into()));
        }
        // Alertmanager always sends one; older senders may not, and the labels identify the
        // alert just as well.
        let fingerprint = match a.fingerprint {
            Some(f) if !f.is_empty() && f.len() <= 64 => f,
            Some(_) => return Err(fail("fingerprint is malformed".into())),
            None => label_fingerprint(&a.labels),
        };
        alerts.push(ReceivedAlert {
            firing,
            labels: a.labels,
            annotations: a.annotations,
            fingerprint,
            starts_at: a.starts_at,
        });
    }
    Ok(Notification {
        alerts,
        truncated_alerts: payload.truncated_alerts,
        receiver: truncate(&payload.receiver, 128),
    })
}

fn label_fingerprint(labels: &BTreeMap<String, String>) -> String {
    // FNV-1a over the sorted label pairs: stable across processes and versions.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in labels {
        for byte in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xfe]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// One matcher of a route, as amtool writes them: `name="value"`, `name!="value"`,
/// `name=~"regex"`, `name!~"regex"` (regexes anchored at both ends).
#[derive(Debug, Clone)]
pub struct Matcher {
    name: String,
    op: MatchOp,
    value: String,
    regex: Option<regex::Regex>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MatchOp {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        };
        write!(f, "{}{op}{:?}", self.name, self.value)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid matcher {input:?}: {reason}")]
pub struct MatcherError {
    input: String,
    reason: String,
}

impl Matcher {
    pub fn parse(input: &str) -> Result<Matcher, MatcherError> {
        let fail = |reason: &str| MatcherError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let text = input.trim();
        let name_end = text
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or_else(|| fail("expected name, operator and value, like alertname=\"X\""))?;
        let name = &text[..name_end];
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return Err(fail("the label name must match [a-zA-Z_][a-zA-Z0-9_]*"));
        }
        let rest = text[name_end..].trim_start();
        let (op, rest) = if let Some(r) = rest.strip_prefix("=~") {
            (MatchOp::Regex, r)
        } else if let Some(r) = rest.strip_prefix("!~") {
            (MatchOp::NotRegex, r)
        } else if let Some(r) = rest.strip_prefix("!=") {
            (MatchOp::NotEqual, r)
        } else if let Some(r) = rest.strip_prefix('=') {
            (MatchOp::Equal, r)
        } else {
            return Err(fail("expected one of =, !=, =~, !~ after the label name"));
        };
        let raw = rest.trim();
        let value = if let Some(inner) = raw.strip_prefix('"') {
            let inner = inner
                .strip_suffix('"')
                .ok_or_else(|| fail("unterminated quoted value"))?;
            unescape(inner).ok_or_else(|| fail("invalid escape in the quoted value"))?
        } else {
            if raw.contains(['"', ',', '{', '}']) {
                return Err(fail(
                    "unquoted values may not contain quotes, commas or braces",
                ));
            }
            raw.to_string()
        };
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => {
                Some(regex::Regex::new(&format!("^(?:{value})$")).map_err(|e| {
                    fail(&format!(
                        "invalid regex: {}",
                        e.to_string().lines().last().unwrap_or("").trim()
                    ))
                })?)
            }
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value,
            regex,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    /// `=~` and `!~`, in Alertmanager's API terms.
    pub fn is_regex(&self) -> bool {
        matches!(self.op, MatchOp::Regex | MatchOp::NotRegex)
    }

    /// `=` and `=~`.
    pub fn is_equal(&self) -> bool {
        matches!(self.op, MatchOp::Equal | MatchOp::Regex)
    }

    /// Whether the labels satisfy this matcher; a missing label is the empty string, as in
    /// Alertmanager.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => value == self.value,
            (MatchOp::NotEqual, _) => value != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(value),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(value),
            _ => false,
        }
    }
}

fn unescape(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                other => {
                    // Regex escapes such as \d pass through to the regex.
                    out.push('\\');
                    out.push(other);
                }
            }
        } else if c == '"' {
            return None;
        } else {
            out.push(c);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::labels;

    #[test]
    fn parses_the_real_fixtures() {
        for (file, firing) in [
            ("alertmanager-0.25-firing.raw.json", true),
            ("alertmanager-0.25-resolved.raw.json", false),
        ] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/testdata/alertmanager")
                .join(file);
            let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let n = parse_notification(&body).unwrap();
            assert_eq!(n.alerts.len(), 1);
            assert_eq!(n.alerts[0].firing, firing);
            assert_eq!(n.alerts[0].fingerprint, "3087d63d2862c715");
            assert_eq!(n.alerts[0].labels["alertname"], "TargetDown");
            assert_eq!(n.alerts[0].starts_at, "2026-11-28T19:17:13.011Z");
        }
    }

    #[test]
    fn rejects_wrong_shapes_with_a_reason() {
        let cases = [
            ("not json", "invalid JSON"),
            ("{}", "missing field"),
            (
                r#"{"version":"3","alerts":[]}"#,
                "unsupported webhook version",
            ),
            (r#"{"version":4,"alerts":[]}"#, "invalid type"),
            (
                r#"{"version":"4","alerts":[{"status":"odd","labels":{"a":"b"},"startsAt":"x"}]}"#,
                "alerts[0]: status",
            ),
            (
                r#"{"version":"4","alerts":[{"status":"firing","labels":{},"startsAt":"x"}]}"#,
                "alerts[0]: has no labels",
            ),
            (
                r#"{"version":"4","alerts":[{"status":"firing","labels":{"a":1},"startsAt":"x"}]}"#,
                "invalid type",
            ),
            (
                r#"{"version":"4","alerts":[{"status":"firing","labels":{"a":"b"}}]}"#,
                "missing field `startsAt`",
            ),
        ];
        for (body, want) in cases {
            let err = parse_notification(body.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{body}: {err}");
        }
    }

    #[test]
    fn unknown_fields_are_ignored_and_fingerprints_are_derived_when_absent() {
        let body = r#"{"version":"4","future":{"x":1},"alerts":[{"status":"firing","labels":{"a":"b"},"startsAt":"t","new":true}]}"#;
        let n = parse_notification(body.as_bytes()).unwrap();
        assert_eq!(n.alerts[0].fingerprint.len(), 16);
        assert_eq!(
            n.alerts[0].fingerprint,
            label_fingerprint(&labels(&[("a", "b")]))
        );
    }

    #[test]
    fn matcher_table() {
        let l = labels(&[
            ("alertname", "PredictedDiskFull"),
            ("check", "web"),
            ("sev", ""),
        ]);
        let cases = [
            (r#"alertname="PredictedDiskFull""#, true),
            (r#"alertname = "PredictedDiskFull""#, true),
            ("alertname=PredictedDiskFull", true),
            (r#"alertname!="PredictedDiskFull""#, false),
            (r#"alertname=~"Predicted.*""#, true),
            // Anchored: a partial match is no match.
            (r#"alertname=~"Predicted""#, false),
            (r#"alertname!~"Predicted.*""#, false),
            (r#"check=~"web|api""#, true),
            // A missing label is the empty string.
            (r#"missing="""#, true),
            (r#"missing!="""#, false),
            (r#"sev=~".*""#, true),
            (r#"check="w\"eb""#, false),
        ];
        for (text, want) in cases {
            let m = Matcher::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(m.matches(&l), want, "{text}");
        }
    }

    #[test]
    fn malformed_matchers_are_rejected() {
        for bad in [
            "",
            "alertname",
            "=\"x\"",
            "1a=\"x\"",
            "a==\"x\"extra\"",
            "a=\"unterminated",
            "a=~\"(\"",
            "a>\"x\"",
            "a=x,y",
        ] {
            assert!(Matcher::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
