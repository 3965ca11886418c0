//! Helpers that several modules' unit tests share, so each builds its fixtures the same way.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::{ActionSpec, Duration, StepSpec};
use crate::template::Template;

/// A label set from literal pairs.
pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A step that runs `/bin/true`, with the attempts, cooldown and tier a test is about.
pub fn exec_step(name: &str, max_attempts: u32, cooldown_s: u64, tier: Option<u32>) -> StepSpec {
    StepSpec {
        name: name.into(),
        action: ActionSpec::Exec {
            program: Template::parse("/bin/true").expect("a literal template"),
            args: vec![],
            detach: false,
        },
        max_attempts,
        cooldown: Duration::from_secs(cooldown_s),
        timeout: Duration::from_secs(10),
        tier,
        confirm: None,
    }
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a test file");
    path
}
