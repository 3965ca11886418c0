//! Step templates: `{{ check }}`, `{{ chain }}`, `{{ labels.NAME }}`, `{{ annotations.NAME }}`,
//! parsed once at config load and rendered per run. A value lands in exactly one place, escaped
//! for it: one argv element as is, percent-encoded in a URL, escaped in a JSON body. Nothing is
//! ever handed to a shell.

use std::collections::BTreeMap;
use std::fmt;

use percent_encoding::{utf8_percent_encode, AsciiSet};

/// What a placeholder names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    Check,
    Chain,
    Label(String),
    Annotation(String),
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Var::Check => f.write_str("check"),
            Var::Chain => f.write_str("chain"),
            Var::Label(name) => write!(f, "labels.{name}"),
            Var::Annotation(name) => write!(f, "annotations.{name}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    source: String,
}

/// Where a rendered value goes, which decides its escaping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// An argv element or a header value: the value as is (it stays one element).
    None,
    /// Inside a URL: everything but unreserved characters percent-encoded, so a value can
    /// neither add a path segment nor a query parameter.
    Url,
    /// Inside a JSON string literal.
    Json,
}

/// Characters left alone in URL values: RFC 3986 unreserved.
const URL_VALUE: &AsciiSet = crate::percent::RESERVED;

/// The values a run renders templates with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Values {
    pub check: Option<String>,
    pub chain: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("unterminated placeholder in {0:?}")]
    Unterminated(String),
    #[error(
        "unknown placeholder {{{{ {0} }}}} (use check, chain, labels.NAME or annotations.NAME)"
    )]
    Unknown(String),
    #[error("the trigger has no value for {{{{ {0} }}}}")]
    Missing(Var),
}

impl Template {
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = source;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                parts.push(Part::Text(rest[..open].to_string()));
            }
            let after = &rest[open + 2..];
            let close = after
                .find("}}")
                .ok_or_else(|| TemplateError::Unterminated(source.to_string()))?;
            let name = after[..close].trim();
            let var = match name {
                "check" => Var::Check,
                "chain" => Var::Chain,
                other => {
                    let (kind, key) = other.split_once('.').unwrap_or((other, ""));
                    let valid_key = !key.is_empty()
                        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                    match (kind, valid_key) {
                        ("labels", true) => Var::Label(key.to_string()),
                        ("annotations", true) => Var::Annotation(key.to_string()),
                        _ => return Err(TemplateError::Unknown(other.to_string())),
                    }
                }
            };
            parts.push(Part::Var(var));
            rest = &after[close + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template {
            parts,
            source: source.to_string(),
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// The placeholders this template uses.
    pub fn vars(&self) -> impl Iterator<Item = &Var> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v),
            Part::Text(_) => None,
        })
    }

    pub fn render(&self, values: &Values, escape: Escape) -> Result<String, TemplateError> {
        let mut out = String::with_capacity(self.source.len());
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Var(var) => {
                    let value = match var {
                        Var::Check => values.check.as_deref(),
                        Var::Chain => Some(values.chain.as_str()),
                        Var::Label(name) => values.labels.get(name).map(String::as_str),
                        Var::Annotation(name) => values.annotations.get(name).map(String::as_str),
                    }
                    .ok_or_else(|| TemplateError::Missing(var.clone()))?;
                    match escape {
                        Escape::None => out.push_str(value),
                        Escape::Url => out.extend(utf8_percent_encode(value, URL_VALUE)),
                        Escape::Json => {
                            let quoted = serde_json::Value::String(value.to_string()).to_string();
                            out.push_str(&quoted[1..quoted.len() - 1]);
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values {
        Values {
            check: Some("web".into()),
            chain: "restart".into(),
            labels: [
                ("service".to_string(), "web".to_string()),
                (
                    "evil".to_string(),
                    "$(touch /tmp/x); rm -rf ~ \"q\" &a=b/../c?d#e".to_string(),
                ),
            ]
            .into_iter()
            .collect(),
            annotations: [("summary".to_string(), "line1\nline2".to_string())]
                .into_iter()
                .collect(),
        }
    }

    #[test]
    fn renders_each_placeholder() {
        let t =
            Template::parse("restart {{ labels.service }} for {{check}} in {{ chain }}").unwrap();
        assert_eq!(
            t.render(&values(), Escape::None).unwrap(),
            "restart web for web in restart"
        );
    }

    #[test]
    fn escaping_keeps_a_value_in_its_place() {
        let t = Template::parse("{{ labels.evil }}").unwrap();
        let v = values();
        assert_eq!(t.render(&v, Escape::None).unwrap(), v.labels["evil"]);
        let url = Template::parse("http://h/x/{{ labels.evil }}?q={{labels.evil}}").unwrap();
        let rendered = url.render(&v, Escape::Url).unwrap();
        let encoded = rendered
            .strip_prefix("http://h/x/")
            .and_then(|r| r.split_once("?q="))
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .unwrap_or_else(|| panic!("{rendered}"));
        assert_eq!(encoded.0, encoded.1);
        assert!(
            encoded
                .0
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "%-._~".contains(c)),
            "{rendered}"
        );
        let json = Template::parse(
            r#"{"summary": "{{ annotations.summary }}", "x": "{{ labels.evil }}"}"#,
        )
        .unwrap();
        let body = json.render(&v, Escape::Json).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(parsed["summary"], "line1\nline2");
        assert_eq!(parsed["x"], v.labels["evil"].as_str());
    }

    #[test]
    fn missing_values_fail_instead_of_rendering_empty() {
        let t = Template::parse("{{ labels.instance }}").unwrap();
        assert_eq!(
            t.render(&values(), Escape::None),
            Err(TemplateError::Missing(Var::Label("instance".into())))
        );
        let t = Template::parse("{{ check }}").unwrap();
        let mut v = values();
        v.check = None;
        assert!(t.render(&v, Escape::None).is_err());
    }

    #[test]
    fn unknown_and_malformed_placeholders_are_rejected() {
        for bad in [
            "{{ nope }}",
            "{{ labels. }}",
            "{{ labels.a-b }}",
            "{{ env.HOME }}",
            "{{ labels.x",
            "{{}}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Template::parse("plain $HOME {not}").unwrap().vars().count(),
            0
        );
    }
}
