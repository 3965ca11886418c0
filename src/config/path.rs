//! YAML paths in error messages, spelled one way everywhere: keys joined by dots, a list item
//! by its index and, when it has one, its name — `checks[0] "web".http.url`,
//! `recovery.chains.web.steps[1] "restart"`, `recovery.routes[0]`.

use std::fmt;

use serde_yaml_ng::Value;

/// One step down a YAML document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Segment {
    /// A mapping's key.
    Key(String),
    /// A list's item, with its `name:` when it has a string one.
    Item { index: usize, name: Option<String> },
}

/// Where a node sits in the document; the empty path is the document itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct YamlPath(Vec<Segment>);

impl YamlPath {
    /// A top-level key: `checks`, `web`.
    pub fn top(key: &str) -> YamlPath {
        YamlPath(vec![Segment::Key(key.to_string())])
    }

    pub fn key(&self, key: &str) -> YamlPath {
        self.with(Segment::Key(key.to_string()))
    }

    /// The list item `node` at `index`, named by its `name:` when it has one.
    pub fn item(&self, index: usize, node: &Value) -> YamlPath {
        self.with(Segment::Item {
            index,
            name: item_name(node),
        })
    }

    /// A list item that has no name: `between[1]`, `matchers[0]`.
    pub fn index(&self, index: usize) -> YamlPath {
        self.with(Segment::Item { index, name: None })
    }

    pub fn join(&self, tail: &[Segment]) -> YamlPath {
        let mut segments = self.0.clone();
        segments.extend_from_slice(tail);
        YamlPath(segments)
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// The path without item names: the same node, whichever way its name read when the path
    /// was made (before or after `${ENV}` expansion, or after a bad `name:` was dropped).
    pub fn skeleton(&self) -> String {
        let mut out = String::new();
        for segment in &self.0 {
            match segment {
                Segment::Key(key) => {
                    out.push('.');
                    out.push_str(key);
                }
                Segment::Item { index, .. } => out.push_str(&format!("[{index}]")),
            }
        }
        out
    }

    fn with(&self, segment: Segment) -> YamlPath {
        let mut segments = self.0.clone();
        segments.push(segment);
        YamlPath(segments)
    }
}

/// A list item's name: the string under its `name:` key, when it is a mapping with one.
pub(super) fn item_name(node: &Value) -> Option<String> {
    node.as_mapping()?.get("name")?.as_str().map(str::to_string)
}

impl fmt::Display for YamlPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if i == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Item { index, name: None } => write!(f, "[{index}]")?,
                Segment::Item {
                    index,
                    name: Some(name),
                } => write!(f, "[{index}] {name:?}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_named_by_index_and_name() {
        let web: Value = serde_yaml_ng::from_str("{name: web, tcp: {}}").unwrap();
        let unnamed: Value = serde_yaml_ng::from_str("{chain: c}").unwrap();
        let check = YamlPath::top("checks").item(0, &web);
        assert_eq!(
            check.key("http").key("url").to_string(),
            r#"checks[0] "web".http.url"#
        );
        assert_eq!(
            YamlPath::top("recovery")
                .key("routes")
                .item(2, &unnamed)
                .to_string(),
            "recovery.routes[2]"
        );
        assert_eq!(
            YamlPath::top("maintenance")
                .index(1)
                .key("between")
                .index(0)
                .to_string(),
            "maintenance[1].between[0]"
        );
        assert_eq!(check.skeleton(), ".checks[0]");
        assert_eq!(YamlPath::default().to_string(), "");
    }
}
