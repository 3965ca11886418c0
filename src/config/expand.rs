//! `${ENV}` in config values: every string is expanded once, before anything reads it, and
//! each expansion is recorded (as written, as expanded, the variables and their values) so that
//! an error can show what was written instead of a value, which is a secret.

use serde_yaml_ng::Value;

use super::path::YamlPath;

/// One string that `${ENV}` expansion changed: as written, as expanded, and the variables it
/// used with their values, so that an error can show what was written instead of the value.
#[derive(Debug)]
pub(super) struct Expansion {
    pub template: String,
    pub expanded: String,
    pub vars: Vec<(String, String)>,
}

/// Replaces `${NAME}` in every string of `root` with the environment variable's value (`$${`
/// stays a literal `${`). Returns the expansions made and, by path, why the strings that could
/// not be expanded could not (they are left as written).
pub(super) fn expand_env(root: &mut Value) -> (Vec<Expansion>, Vec<(YamlPath, String)>) {
    let mut expansions = Vec::new();
    let mut failures = Vec::new();
    walk(root, &YamlPath::default(), &mut expansions, &mut failures);
    (expansions, failures)
}

fn walk(
    value: &mut Value,
    path: &YamlPath,
    expansions: &mut Vec<Expansion>,
    failures: &mut Vec<(YamlPath, String)>,
) {
    match value {
        Value::String(s) if s.contains("${") => match expand_string(s) {
            Ok((expanded, vars)) => {
                let template = std::mem::replace(s, expanded.clone());
                if !vars.is_empty() {
                    expansions.push(Expansion {
                        template,
                        expanded,
                        vars,
                    });
                }
            }
            Err(message) => failures.push((path.clone(), message)),
        },
        Value::Sequence(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let path = path.item(i, item);
                walk(item, &path, expansions, failures);
            }
        }
        Value::Mapping(map) => {
            for (key, item) in map.iter_mut() {
                let path = path.key(key.as_str().unwrap_or("?"));
                walk(item, &path, expansions, failures);
            }
        }
        Value::Tagged(tagged) => walk(&mut tagged.value, path, expansions, failures),
        _ => {}
    }
}

/// The expanded string, and each variable used with its value.
pub(super) fn expand_string(s: &str) -> Result<(String, Vec<(String, String)>), String> {
    let mut out = String::with_capacity(s.len());
    let mut used = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        if let Some(stripped) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = stripped;
        } else if let Some(body) = after.strip_prefix("${") {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated ${...} reference".to_string())?;
            let name = &body[..end];
            let valid = !name.is_empty()
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !name.starts_with(|c: char| c.is_ascii_digit());
            if !valid {
                return Err(format!("invalid environment variable name {name:?}"));
            }
            let value = std::env::var(name)
                .map_err(|_| format!("environment variable {name:?} is not set"))?;
            out.push_str(&value);
            used.push((name.to_string(), value));
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok((out, used))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_expansion_handles_escapes_and_plain_dollars() {
        std::env::set_var("MEDIC_TEST_A", "alpha");
        assert_eq!(
            expand_string("a ${MEDIC_TEST_A} $5 $${x} $").unwrap().0,
            "a alpha $5 ${x} $"
        );
        assert!(expand_string("${unterminated").is_err());
        assert!(expand_string("${1BAD}").is_err());
    }
}
