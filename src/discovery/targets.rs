//! Pure: Prometheus' target lists read, and the rules that make a template's checks of them.
//!
//! The format is file_sd's and http_sd's: a list of target groups, `{targets: [...], labels:
//! {...}}`, in JSON (unknown keys ignored) or YAML (unknown keys refused), as Prometheus reads
//! them; a label name that is not a Prometheus label name fails the whole list. Then the
//! template's rules: a target's name is a check's name (`<template>/<target>`), so it must be
//! plain; a target named twice with other labels collides (the first wins); labels are bounded;
//! and past `max_targets` nothing more is taken.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;

use crate::vocabulary::SdRefusal;

/// A target longer than this makes no check: its name is a label value and a URL segment.
pub const MAX_TARGET_LEN: usize = 255;
/// A target with more labels than this makes no check (Consul's `__meta_*` fit easily).
pub const MAX_LABELS: usize = 64;
/// Nor one whose label names and values hold more bytes than this in all.
pub const MAX_LABEL_BYTES: usize = 16 * 1024;

/// One discovered target: its address (`host:port`, a URL, as the list writes it) and labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub target: String,
    pub labels: BTreeMap<String, String>,
}

/// Why a list could not be read: its last good targets stay.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    #[error("not a target list in JSON: {0}")]
    Json(String),
    #[error("not a target list in YAML: {0}")]
    Yaml(String),
    #[error("{0:?} is not a valid label name")]
    LabelName(String),
    #[error("{count} targets, more than max_targets {max}")]
    TooMany { count: usize, max: usize },
}

/// A target group as Prometheus' JSON reader takes it (unknown keys ignored).
#[derive(Debug, Deserialize)]
struct JsonGroup {
    #[serde(default)]
    targets: Option<Vec<String>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

/// A target group as Prometheus' YAML reader takes it: strict, and any scalar is text (YAML
/// reads `port: 80` as a number, Go's yaml as the string it wanted).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlGroup {
    #[serde(default)]
    targets: Option<Vec<Scalar>>,
    #[serde(default)]
    labels: Option<BTreeMap<String, Scalar>>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Scalar {
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    fn text(self) -> String {
        match self {
            Scalar::Text(s) => s,
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// A JSON target list (file_sd's `.json`, http_sd's answer); `null` is an empty one.
pub fn parse_json(bytes: &[u8], max_targets: usize) -> Result<Vec<Target>, ListError> {
    let groups: Option<Vec<JsonGroup>> =
        serde_json::from_slice(bytes).map_err(|e| ListError::Json(e.to_string()))?;
    let groups = groups
        .unwrap_or_default()
        .into_iter()
        .map(|g| (g.targets.unwrap_or_default(), g.labels.unwrap_or_default()));
    flatten(groups, max_targets)
}

/// A YAML target list (file_sd's `.yml`/`.yaml`); an empty file is an empty list.
pub fn parse_yaml(bytes: &[u8], max_targets: usize) -> Result<Vec<Target>, ListError> {
    let groups: Option<Vec<YamlGroup>> = serde_yaml_ng::from_slice(bytes)
        .map_err(|e| ListError::Yaml(super::one_line(&e.to_string())))?;
    let groups = groups.unwrap_or_default().into_iter().map(|g| {
        (
            g.targets
                .unwrap_or_default()
                .into_iter()
                .map(Scalar::text)
                .collect(),
            g.labels
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.text()))
                .collect(),
        )
    });
    flatten(groups, max_targets)
}

/// Each group's targets with the group's labels; label names checked, the count bounded.
fn flatten(
    groups: impl Iterator<Item = (Vec<String>, BTreeMap<String, String>)>,
    max_targets: usize,
) -> Result<Vec<Target>, ListError> {
    let mut out = Vec::new();
    for (targets, labels) in groups {
        if let Some(bad) = labels.keys().find(|name| !is_label_name(name)) {
            return Err(ListError::LabelName(bad.clone()));
        }
        if out.len() + targets.len() > max_targets {
            return Err(ListError::TooMany {
                count: out.len() + targets.len(),
                max: max_targets,
            });
        }
        out.extend(targets.into_iter().map(|target| Target {
            target,
            labels: labels.clone(),
        }));
    }
    Ok(out)
}

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether a target may name a check: 1 to [`MAX_TARGET_LEN`] characters of what an address
/// or a URL is written with (RFC 3986's unreserved and reserved characters, and `%`), so its
/// check's name stays one plain label value and a path segment once percent-encoded.
pub fn is_target_name(target: &str) -> bool {
    !target.is_empty()
        && target.len() <= MAX_TARGET_LEN
        && target
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b))
}

/// What the rules kept of a template's lists, and what they refused and why.
#[derive(Debug, Default, PartialEq)]
pub struct Merged {
    pub targets: Vec<Target>,
    /// Each refused target with its reason and a word on it, in order.
    pub refused: Vec<(SdRefusal, String)>,
}

/// The targets of a template's lists, in the order given (file_sd, then http_sd, then
/// dns_sd): a target listed again with the same labels is the same target; with other labels
/// its name collides and the first stays; past `max_targets`, the rest are refused.
pub fn merge<'a>(lists: impl IntoIterator<Item = &'a [Target]>, max_targets: usize) -> Merged {
    let mut merged = Merged::default();
    let mut seen: HashMap<&str, &BTreeMap<String, String>> = HashMap::new();
    for target in lists.into_iter().flatten() {
        let refusal = if !is_target_name(&target.target) {
            Some(SdRefusal::Name)
        } else if !labels_fit(&target.labels) {
            Some(SdRefusal::Labels)
        } else {
            match seen.get(target.target.as_str()) {
                Some(labels) if **labels == target.labels => continue,
                Some(_) => Some(SdRefusal::Collision),
                None if merged.targets.len() >= max_targets => Some(SdRefusal::MaxTargets),
                None => None,
            }
        };
        match refusal {
            Some(reason) => merged.refused.push((reason, target.target.clone())),
            None => {
                seen.insert(&target.target, &target.labels);
                merged.targets.push(target.clone());
            }
        }
    }
    merged
}

fn labels_fit(labels: &BTreeMap<String, String>) -> bool {
    labels.len() <= MAX_LABELS
        && labels.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>() <= MAX_LABEL_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::labels;

    fn target(t: &str, l: &[(&str, &str)]) -> Target {
        Target {
            target: t.into(),
            labels: labels(l),
        }
    }

    #[test]
    fn prometheus_file_sd_json_reads_as_prometheus_reads_it() {
        let json = br#"[
          {"targets": ["10.0.0.1:9100", "web-2:9100"], "labels": {"env": "prod", "job": "node"}},
          {"targets": ["[2001:db8::1]:80"], "extra": "ignored, as Go's encoding/json does"},
          {"labels": {"lonely": "group"}}
        ]"#;
        assert_eq!(
            parse_json(json, 100).unwrap(),
            vec![
                target("10.0.0.1:9100", &[("env", "prod"), ("job", "node")]),
                target("web-2:9100", &[("env", "prod"), ("job", "node")]),
                target("[2001:db8::1]:80", &[]),
            ]
        );
        assert_eq!(parse_json(b"[]", 100).unwrap(), vec![]);
        assert_eq!(parse_json(b"null", 100).unwrap(), vec![]);
    }

    #[test]
    fn prometheus_file_sd_yaml_reads_as_prometheus_reads_it() {
        let yaml = b"- targets: [a:1, 'b:2']\n  labels: {port: 80, tls: true, env: prod}\n- targets: [c:3]\n";
        assert_eq!(
            parse_yaml(yaml, 100).unwrap(),
            vec![
                target("a:1", &[("env", "prod"), ("port", "80"), ("tls", "true")]),
                target("b:2", &[("env", "prod"), ("port", "80"), ("tls", "true")]),
                target("c:3", &[]),
            ]
        );
        assert_eq!(parse_yaml(b"", 100).unwrap(), vec![]);
        assert_eq!(parse_yaml(b"# nothing yet\n", 100).unwrap(), vec![]);
    }

    #[test]
    fn a_bad_list_fails_whole_with_the_reason() {
        for (bytes, json, want) in [
            (&b""[..], true, "not a target list in JSON: EOF while parsing"),
            (b"{\"targets\": [\"a:1\"]}", true, "not a target list in JSON: invalid type: map, expected a sequence"),
            (b"[{\"targets\": [\"a:1\"], \"labels\": {\"n\": 1}}]", true, "not a target list in JSON: invalid type: integer `1`, expected a string"),
            (b"[{\"targets\": \"a:1\"}]", true, "not a target list in JSON: invalid type: string"),
            (b"\x00\xff garbage", true, "not a target list in JSON"),
            (b"[{\"targets\": [\"a:1\"], \"labels\": {\"bad-name\": \"x\"}}]", true, "\"bad-name\" is not a valid label name"),
            (b"- targets: [a:1]\n  lables: {x: y}\n", false, "not a target list in YAML: .[0]: unknown field `lables`, expected `targets` or `labels` at line 2 column 3"),
            (b"targets: [a:1]\n", false, "not a target list in YAML: invalid type: map, expected a sequence"),
            (b"- targets: [a:1\n", false, "not a target list in YAML"),
        ] {
            let got = if json {
                parse_json(bytes, 100)
            } else {
                parse_yaml(bytes, 100)
            };
            let e = got.expect_err(&String::from_utf8_lossy(bytes)).to_string();
            assert!(e.starts_with(want), "{e:?} does not start with {want:?}");
        }
        let many = format!(
            "[{{\"targets\": [{}]}}]",
            (0..11)
                .map(|i| format!("\"h{i}:1\""))
                .collect::<Vec<_>>()
                .join(",")
        );
        assert_eq!(
            parse_json(many.as_bytes(), 10),
            Err(ListError::TooMany { count: 11, max: 10 })
        );
    }

    #[test]
    fn targets_that_cannot_name_a_check_are_refused() {
        for ok in [
            "10.0.0.1:9100",
            "[2001:db8::1]:80",
            "web.example",
            "https://x.example/health?a=b&c=d",
            "host_1:80",
        ] {
            assert!(is_target_name(ok), "{ok}");
        }
        let long = "a".repeat(MAX_TARGET_LEN + 1);
        for bad in [
            "",
            "a b:1",
            "a\"b",
            "<script>",
            "caf\u{e9}:80",
            "a\nb",
            "{{ x }}",
            long.as_str(),
        ] {
            assert!(!is_target_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn merging_keeps_the_first_of_a_name_and_bounds_the_rest() {
        let files = vec![
            target("a:1", &[("env", "prod")]),
            target("b:1", &[]),
            target("a:1", &[("env", "prod")]),
        ];
        let http = vec![
            target("a:1", &[("env", "dev")]),
            target("bad target", &[]),
            target("c:1", &[]),
            target("d:1", &[]),
        ];
        let many: BTreeMap<String, String> = (0..=MAX_LABELS)
            .map(|i| (format!("l{i}"), "v".to_string()))
            .collect();
        let dns = vec![Target {
            target: "e:1".into(),
            labels: many,
        }];
        let merged = merge([files.as_slice(), http.as_slice(), dns.as_slice()], 3);
        let names: Vec<&str> = merged.targets.iter().map(|t| t.target.as_str()).collect();
        assert_eq!(names, ["a:1", "b:1", "c:1"]);
        assert_eq!(merged.targets[0].labels, labels(&[("env", "prod")]));
        assert_eq!(
            merged.refused,
            vec![
                (SdRefusal::Collision, "a:1".to_string()),
                (SdRefusal::Name, "bad target".to_string()),
                (SdRefusal::MaxTargets, "d:1".to_string()),
                (SdRefusal::Labels, "e:1".to_string()),
            ]
        );
    }
}
