//! `state:` — the state store: where it is (`--state.url` overrides) and how long results
//! are kept.

use std::path::PathBuf;

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::duration::Duration;
use super::path::YamlPath;
use super::secret::Secret;
use super::validate::Context;
use super::{Overrides, DEFAULT_STATE_URL};

const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_RETENTION_RESULTS: u64 = 10_000;

#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub url: Secret,
    pub retention: Duration,
    pub retention_results: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    url: Option<String>,
    url_file: Option<PathBuf>,
    /// How long check results are kept.
    retention: Option<Duration>,
    /// At most this many results per check are kept.
    retention_results: Option<u64>,
}

pub(super) fn section(
    cx: &mut Context,
    value: Option<Value>,
    overrides: &Overrides,
) -> StoreConfig {
    let path = YamlPath::top("state");
    let state: StateFile = cx.parse_or_default(value, &path);
    let url = url(cx, &path, &state, overrides);
    let retention = state.retention.unwrap_or(DEFAULT_RETENTION);
    if retention.is_zero() {
        cx.error(path.key("retention"), "must be greater than 0s");
    }
    let retention_results = state.retention_results.unwrap_or(DEFAULT_RETENTION_RESULTS);
    if retention_results == 0 {
        cx.error(path.key("retention_results"), "must be greater than 0");
    }
    StoreConfig {
        url,
        retention,
        retention_results,
    }
}

/// The store's URL: the flag's, else `url` or `url_file`'s, else the default.
fn url(cx: &mut Context, path: &YamlPath, state: &StateFile, overrides: &Overrides) -> Secret {
    let url = match (&overrides.state_url, &state.url, &state.url_file) {
        (Some(url), _, _) => Secret::new(url.clone()),
        (None, Some(url), None) => Secret::new(url.clone()),
        (None, None, Some(file)) => cx
            .read_secret_file(path.key("url_file"), file)
            .unwrap_or_else(|| Secret::new(DEFAULT_STATE_URL)),
        (None, None, None) => Secret::new(DEFAULT_STATE_URL),
        (None, Some(_), Some(_)) => {
            cx.error(path, "at most one of url and url_file may be set");
            Secret::new(DEFAULT_STATE_URL)
        }
    };
    cx.url_password_is_secret(url.expose());
    let scheme_ok = ["sqlite:", "postgres://", "postgresql://"]
        .iter()
        .any(|p| url.expose().starts_with(p));
    if !scheme_ok {
        // A URL read from a file is secret whole: the message names the file instead.
        let (key, shown) = match (&overrides.state_url, &state.url_file) {
            (None, Some(file)) => ("url_file", format!("the URL in {}", file.display())),
            _ => ("url", cx.show_url(url.expose())),
        };
        cx.error(
            path.key(key),
            format!("{shown} must start with sqlite: or postgres://"),
        );
    }
    url
}
