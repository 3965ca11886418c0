//! The one HTTP client for Alertmanager's API v2: timeouts, bounded retries, the configured
//! credential and TLS, and a count of every request by operation and result.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{AlertmanagerConfig, ClientAuth};
use crate::metrics::Metrics;
use crate::vocabulary::AmOperation;

/// Alertmanager answers at once or is in trouble; healing must not wait on it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries after the first try, with this pause before each (doubling).
const RETRIES: u32 = 2;
const BACKOFF: Duration = Duration::from_millis(200);

/// One alert to post to Alertmanager.
#[derive(Debug, Clone, PartialEq)]
pub struct AmAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// RFC 3339.
    pub starts_at: String,
    /// RFC 3339.
    pub ends_at: String,
    pub generator_url: String,
}

/// One matcher of a silence.
#[derive(Debug, Clone, PartialEq)]
pub struct AmMatcher {
    pub name: String,
    pub value: String,
    pub is_regex: bool,
    pub is_equal: bool,
}

/// A silence to create (no `id`) or to update (the `id` of the one it replaces).
#[derive(Debug, Clone, PartialEq)]
pub struct AmSilence {
    pub id: Option<String>,
    pub matchers: Vec<AmMatcher>,
    /// RFC 3339.
    pub starts_at: String,
    /// RFC 3339.
    pub ends_at: String,
    pub created_by: String,
    pub comment: String,
}

/// What medic reads of an alert `GET /api/v2/alerts` lists: its identity.
#[derive(Deserialize)]
struct ListedAlert {
    fingerprint: String,
}

/// An [`AmAlert`] as `POST /api/v2/alerts` takes it. The API's spelling stays in this file.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AlertJson<'a> {
    labels: &'a BTreeMap<String, String>,
    annotations: &'a BTreeMap<String, String>,
    starts_at: &'a str,
    ends_at: &'a str,
    #[serde(rename = "generatorURL")]
    generator_url: &'a str,
}

impl<'a> From<&'a AmAlert> for AlertJson<'a> {
    fn from(a: &'a AmAlert) -> Self {
        AlertJson {
            labels: &a.labels,
            annotations: &a.annotations,
            starts_at: &a.starts_at,
            ends_at: &a.ends_at,
            generator_url: &a.generator_url,
        }
    }
}

/// An [`AmMatcher`] as the API writes it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MatcherJson<'a> {
    name: &'a str,
    value: &'a str,
    is_regex: bool,
    is_equal: bool,
}

impl<'a> From<&'a AmMatcher> for MatcherJson<'a> {
    fn from(m: &'a AmMatcher) -> Self {
        MatcherJson {
            name: &m.name,
            value: &m.value,
            is_regex: m.is_regex,
            is_equal: m.is_equal,
        }
    }
}

/// An [`AmSilence`] as `POST /api/v2/silences` takes it: no `id` key for a new one.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SilenceJson<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    matchers: Vec<MatcherJson<'a>>,
    starts_at: &'a str,
    ends_at: &'a str,
    created_by: &'a str,
    comment: &'a str,
}

impl<'a> From<&'a AmSilence> for SilenceJson<'a> {
    fn from(s: &'a AmSilence) -> Self {
        SilenceJson {
            id: s.id.as_deref(),
            matchers: s.matchers.iter().map(Into::into).collect(),
            starts_at: &s.starts_at,
            ends_at: &s.ends_at,
            created_by: &s.created_by,
            comment: &s.comment,
        }
    }
}

#[derive(Deserialize)]
struct SilenceCreated {
    #[serde(rename = "silenceID")]
    silence_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmError {
    #[error("Alertmanager answered HTTP {0}: {1}")]
    Status(u16, String),
    #[error("Alertmanager unreachable: {0}")]
    Transport(String),
    #[error("Alertmanager's answer was not understood: {0}")]
    Answer(String),
}

impl AmError {
    /// A 4xx says the request is wrong; trying it again will not help.
    fn retryable(&self) -> bool {
        !matches!(self, AmError::Status(code, _) if (400..500).contains(code))
    }
}

/// The client, built once per config.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    auth: ClientAuth,
    metrics: Arc<Metrics>,
}

impl Client {
    pub fn new(config: &AlertmanagerConfig, metrics: Arc<Metrics>) -> anyhow::Result<Client> {
        let builder = reqwest::Client::builder()
            .user_agent(concat!("medic/", env!("CARGO_PKG_VERSION")))
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        let (builder, base) =
            crate::config::client_tls::endpoint(builder, &config.tls, config.url.expose())
                .map_err(anyhow::Error::msg)?;
        // Paths are appended to it; a parsed URL (with server_name) ends in '/' too.
        let base = base.trim_end_matches('/').to_string();
        Ok(Client {
            http: builder.build()?,
            base,
            auth: config.auth.clone(),
            metrics,
        })
    }

    /// `POST /api/v2/alerts`.
    pub async fn post_alerts(&self, alerts: &[AmAlert]) -> Result<(), AmError> {
        let alerts: Vec<AlertJson> = alerts.iter().map(Into::into).collect();
        let body = serde_json::to_vec(&alerts).map_err(|e| AmError::Answer(e.to_string()))?;
        self.call(
            AmOperation::PostAlert,
            reqwest::Method::POST,
            "/api/v2/alerts",
            Some(body),
        )
        .await
        .map(|_| ())
    }

    /// `POST /api/v2/silences`: the silence's id (a new one when Alertmanager replaced it).
    pub async fn create_silence(&self, silence: &AmSilence) -> Result<String, AmError> {
        let body = serde_json::to_vec(&SilenceJson::from(silence))
            .map_err(|e| AmError::Answer(e.to_string()))?;
        let text = self
            .call(
                AmOperation::CreateSilence,
                reqwest::Method::POST,
                "/api/v2/silences",
                Some(body),
            )
            .await?;
        serde_json::from_str::<SilenceCreated>(&text)
            .map(|c| c.silence_id)
            .map_err(|e| AmError::Answer(e.to_string()))
    }

    /// `GET /api/v2/alerts?filter=alertname="NAME"`: whether the alert with `fingerprint` is
    /// still firing (Alertmanager lists only alerts not yet resolved; silenced and inhibited
    /// ones fire all the same).
    pub async fn alert_firing(
        &self,
        alertname: Option<&str>,
        fingerprint: &str,
    ) -> Result<bool, AmError> {
        let mut path =
            "/api/v2/alerts?active=true&silenced=true&inhibited=true&unprocessed=true".to_string();
        if let Some(name) = alertname {
            let matcher = format!(
                "alertname=\"{}\"",
                name.replace('\\', "\\\\").replace('"', "\\\"")
            );
            path.push_str("&filter=");
            path.push_str(
                &percent_encoding::utf8_percent_encode(
                    &matcher,
                    percent_encoding::NON_ALPHANUMERIC,
                )
                .to_string(),
            );
        }
        let text = self
            .call(AmOperation::QueryAlerts, reqwest::Method::GET, &path, None)
            .await?;
        let listed: Vec<ListedAlert> =
            serde_json::from_str(&text).map_err(|e| AmError::Answer(e.to_string()))?;
        Ok(listed.iter().any(|a| a.fingerprint == fingerprint))
    }

    /// `DELETE /api/v2/silence/{id}`.
    pub async fn expire_silence(&self, id: &str) -> Result<(), AmError> {
        let id: String = crate::percent::encode(id);
        self.call(
            AmOperation::ExpireSilence,
            reqwest::Method::DELETE,
            &format!("/api/v2/silence/{id}"),
            None,
        )
        .await
        .map(|_| ())
    }

    /// One request with bounded retries; counted once, by its final result.
    async fn call(
        &self,
        operation: AmOperation,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<String, AmError> {
        let mut pause = BACKOFF;
        let mut attempt = 0;
        let result = loop {
            match self.once(method.clone(), path, body.clone()).await {
                Ok(text) => break Ok(text),
                Err(e) if attempt < RETRIES && e.retryable() => {
                    attempt += 1;
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
                Err(e) => break Err(e),
            }
        };
        self.metrics.alertmanager_request(operation, result.is_ok());
        if let Err(e) = &result {
            tracing::warn!(operation = operation.as_str(), error = %e, "Alertmanager request failed");
        }
        result
    }

    async fn once(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> Result<String, AmError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("Content-Type", "application/json");
        request = self.auth.apply(request);
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = request.send().await.map_err(|e| {
            // The URL may hold a password: only the cause is shown.
            AmError::Transport(
                crate::config::known_secrets().redact(&crate::checks::root_cause(&e)),
            )
        })?;
        let code = response.status();
        let text = response.text().await.unwrap_or_default();
        if code.is_success() {
            Ok(text)
        } else {
            let text: String = text.trim().chars().take(200).collect();
            Err(AmError::Status(code.as_u16(), text))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_spelled_as_api_v2_takes_them() {
        let alert = AmAlert {
            labels: BTreeMap::from([("alertname".into(), "MedicEscalation".into())]),
            annotations: BTreeMap::new(),
            starts_at: "2026-01-01T00:00:00.000Z".into(),
            ends_at: "2026-01-01T00:05:00.000Z".into(),
            generator_url: "http://medic/runs/r1".into(),
        };
        assert_eq!(
            serde_json::to_string(&AlertJson::from(&alert)).unwrap(),
            r#"{"labels":{"alertname":"MedicEscalation"},"annotations":{},"startsAt":"2026-01-01T00:00:00.000Z","endsAt":"2026-01-01T00:05:00.000Z","generatorURL":"http://medic/runs/r1"}"#
        );
        let mut silence = AmSilence {
            id: None,
            matchers: vec![AmMatcher {
                name: "check".into(),
                value: "web".into(),
                is_regex: false,
                is_equal: true,
            }],
            starts_at: "a".into(),
            ends_at: "b".into(),
            created_by: "medic".into(),
            comment: "c".into(),
        };
        assert_eq!(
            serde_json::to_string(&SilenceJson::from(&silence)).unwrap(),
            r#"{"matchers":[{"name":"check","value":"web","isRegex":false,"isEqual":true}],"startsAt":"a","endsAt":"b","createdBy":"medic","comment":"c"}"#
        );
        silence.id = Some("s1".into());
        assert!(serde_json::to_string(&SilenceJson::from(&silence))
            .unwrap()
            .starts_with(r#"{"id":"s1","matchers":"#));
    }
}
