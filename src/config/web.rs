//! `web:` — where medic listens, and what the webhook receiver (and the pause API, which
//! takes the same credential) accepts.

use std::path::PathBuf;

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::credential::{credential, BasicAuthFile, Credential};
use super::path::YamlPath;
use super::secret::Secret;
use super::validate::Context;
use super::{Overrides, DEFAULT_LISTEN_ADDRESS};

const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct WebConfig {
    pub listen_address: String,
    pub webhook: WebhookConfig,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    pub auth: WebhookAuth,
    pub max_body_bytes: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum WebhookAuth {
    /// No credential configured: only loopback clients are accepted.
    LoopbackOnly,
    Bearer(Secret),
    Basic {
        username: String,
        password: Secret,
    },
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebFile {
    listen_address: Option<String>,
    #[serde(default)]
    webhook: WebhookFile,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookFile {
    bearer_token: Option<String>,
    bearer_token_file: Option<PathBuf>,
    basic_auth: Option<BasicAuthFile>,
    max_body_bytes: Option<u64>,
}

pub(super) fn section(cx: &mut Context, value: Option<Value>, overrides: &Overrides) -> WebConfig {
    let path = YamlPath::top("web");
    let web: WebFile = cx.parse_or_default(value, &path);
    let listen_address = overrides
        .listen_address
        .clone()
        .or(web.listen_address)
        .unwrap_or_else(|| DEFAULT_LISTEN_ADDRESS.to_string());
    if listen_address
        .rsplit_once(':')
        .is_none_or(|(_, port)| port.parse::<u16>().is_err())
    {
        cx.error(
            path.key("listen_address"),
            format!("{listen_address:?} is not host:port"),
        );
    }
    WebConfig {
        listen_address,
        webhook: webhook(cx, &path.key("webhook"), web.webhook),
    }
}

fn webhook(cx: &mut Context, path: &YamlPath, hook: WebhookFile) -> WebhookConfig {
    let auth = match credential(
        cx,
        path,
        hook.bearer_token,
        hook.bearer_token_file,
        hook.basic_auth,
    ) {
        None => WebhookAuth::LoopbackOnly,
        Some(Credential::Bearer(token)) => WebhookAuth::Bearer(token),
        Some(Credential::Basic { username, password }) => WebhookAuth::Basic { username, password },
    };
    let max_body_bytes = hook.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes == 0 {
        cx.error(path.key("max_body_bytes"), "must be greater than 0");
    }
    WebhookConfig {
        auth,
        max_body_bytes,
    }
}
