//! `alertmanager:` — the Alertmanager medic talks back to (escalations, silences): where, with
//! which credential and client TLS, and how often it re-posts.

use std::path::PathBuf;

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::credential::{client_auth, credential, BasicAuthFile};
use super::duration::Duration;
use super::path::YamlPath;
use super::secret::Secret;
use super::validate::Context;

/// `alertmanager:`: where escalations and silences go, and how medic authenticates.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertmanagerConfig {
    /// The API base (`http://127.0.0.1:9093`); may carry a password, shown only redacted.
    pub url: Secret,
    pub auth: ClientAuth,
    pub tls: ClientTls,
    /// How often escalations are re-posted and silences extended.
    pub resend_delay: Duration,
}

/// A credential medic sends.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientAuth {
    None,
    Bearer(Secret),
    Basic { username: String, password: Secret },
}

impl ClientAuth {
    /// `request` carrying this credential.
    pub fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            ClientAuth::None => request,
            ClientAuth::Bearer(token) => request.bearer_auth(token.expose()),
            ClientAuth::Basic { username, password } => {
                request.basic_auth(username, Some(password.expose()))
            }
        }
    }
}

/// Client TLS settings; the files were readable and parsed at load.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientTls {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertmanagerFile {
    url: String,
    basic_auth: Option<BasicAuthFile>,
    bearer_token: Option<String>,
    bearer_token_file: Option<PathBuf>,
    tls_config: Option<TlsConfigFile>,
    /// How often escalations are re-posted and silences extended (Prometheus's
    /// `--rules.alert.resend-delay`); default 1m.
    resend_delay: Option<Duration>,
}

/// Client TLS, as Prometheus writes it (also `http_sd`'s).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsConfigFile {
    ca_file: Option<PathBuf>,
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
    server_name: Option<String>,
    insecure_skip_verify: Option<bool>,
}

/// The checked section; `None` when it is left out or its URL is unusable.
pub(super) fn section(cx: &mut Context, value: Option<Value>) -> Option<AlertmanagerConfig> {
    let path = YamlPath::top("alertmanager");
    let am: AlertmanagerFile = cx.parse(value?, &path)?;
    let url_ok = cx.endpoint_url(path.key("url"), &am.url);
    let auth = client_auth(credential(
        cx,
        &path,
        am.bearer_token,
        am.bearer_token_file,
        am.basic_auth,
    ));
    let tls = tls(
        cx,
        &path.key("tls_config"),
        am.tls_config.unwrap_or_default(),
    );
    let resend_delay = am.resend_delay.unwrap_or(Duration::from_secs(60));
    if resend_delay.is_zero() {
        cx.error(path.key("resend_delay"), "must be greater than 0s");
    }
    url_ok.then(|| AlertmanagerConfig {
        url: Secret::new(am.url.trim_end_matches('/')),
        auth,
        tls,
        resend_delay,
    })
}

/// `tls_config:`, its files read and parsed now so a bad one is refused at load.
pub(super) fn tls(cx: &mut Context, path: &YamlPath, file: TlsConfigFile) -> ClientTls {
    let tls = ClientTls {
        ca_file: file.ca_file.map(|p| cx.resolve(&p)),
        cert_file: file.cert_file.map(|p| cx.resolve(&p)),
        key_file: file.key_file.map(|p| cx.resolve(&p)),
        server_name: file.server_name,
        insecure_skip_verify: file.insecure_skip_verify.unwrap_or(false),
    };
    if tls.cert_file.is_some() != tls.key_file.is_some() {
        cx.error(path, "cert_file and key_file must be given together");
    } else if let Err(e) = super::client_tls::read(&tls) {
        cx.error(path, e);
    }
    if let Some(key) = &tls.key_file {
        // The key file's contents are a secret like any password.
        if let Ok(text) = std::fs::read_to_string(key) {
            cx.hide(text.trim());
        }
    }
    tls
}
