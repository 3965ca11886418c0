//! `http_sd`: Prometheus' HTTP service discovery. Every `refresh_interval` a GET to the URL,
//! with the configured credential and TLS; the answer must be 200 with a JSON content type, no
//! larger than `max_body_bytes`, and a target list in Prometheus' format. Anything else is a
//! failed refresh: the last good list stays.

use std::time::Duration;

use super::targets::{parse_json, Target};
use super::SourceContext;
use crate::config::{redact_url, HttpSdSpec};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn run(spec: HttpSdSpec, max_targets: usize, cx: SourceContext) {
    let mut sent = None;
    let mut client = None;
    let mut ticks = tokio::time::interval(spec.refresh_interval.std());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if client.is_none() {
            client = match build(&spec).await {
                Ok(c) => Some(c),
                Err(e) => {
                    cx.failed(&e);
                    continue;
                }
            };
        }
        let Some(endpoint) = &client else { continue };
        match fetch(endpoint, &spec, max_targets).await {
            Ok(targets) => cx.send(&mut sent, targets).await,
            Err(e) => cx.failed(&e),
        }
    }
}

/// `medic check-config`: one request.
pub(super) async fn read_once(
    spec: &HttpSdSpec,
    max_targets: usize,
) -> Result<Vec<Target>, String> {
    let endpoint = build(spec).await?;
    fetch(&endpoint, spec, max_targets).await
}

/// The client for one endpoint and the URL it requests (with `server_name`, the URL's host is
/// that name).
struct Endpoint {
    http: reqwest::Client,
    url: String,
}

/// The client for one endpoint: its timeouts, credential-free (the credential goes on each
/// request), its TLS. Built off the runtime: `server_name` resolves the URL's host.
async fn build(spec: &HttpSdSpec) -> Result<Endpoint, String> {
    let spec = spec.clone();
    tokio::task::spawn_blocking(move || client(&spec))
        .await
        .map_err(|e| e.to_string())?
}

fn client(spec: &HttpSdSpec) -> Result<Endpoint, String> {
    let builder = reqwest::Client::builder()
        .user_agent(concat!("medic/", env!("CARGO_PKG_VERSION")))
        .no_proxy()
        .connect_timeout(CONNECT_TIMEOUT.min(spec.timeout.std()))
        .timeout(spec.timeout.std())
        .redirect(reqwest::redirect::Policy::limited(10));
    let (builder, url) =
        crate::config::client_tls::endpoint(builder, &spec.tls, spec.url.expose())?;
    let http = builder
        .build()
        .map_err(|e| format!("building the HTTP client: {e}"))?;
    Ok(Endpoint { http, url })
}

/// One refresh: the list, or why there is none.
async fn fetch(
    endpoint: &Endpoint,
    spec: &HttpSdSpec,
    max_targets: usize,
) -> Result<Vec<Target>, String> {
    let url = redact_url(spec.url.expose());
    let request = endpoint
        .http
        .get(&endpoint.url)
        .header(reqwest::header::ACCEPT, "application/json")
        .header(
            "X-Prometheus-Refresh-Interval-Seconds",
            spec.refresh_interval.std().as_secs().to_string(),
        );
    let mut response = spec
        .auth
        .apply(request)
        .send()
        .await
        .map_err(|e| format!("{url}: {}", error_text(e)))?;
    let status = response.status();
    if status != reqwest::StatusCode::OK {
        return Err(format!("{url}: HTTP {status}"));
    }
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if !is_json(&content_type) {
        return Err(format!(
            "{url}: Content-Type {content_type:?} is not application/json"
        ));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| format!("{url}: {}", error_text(e)))?
    {
        if (body.len() + chunk.len()) as u64 > spec.max_body_bytes {
            return Err(format!(
                "{url}: answer larger than max_body_bytes {}",
                spec.max_body_bytes
            ));
        }
        body.extend_from_slice(&chunk);
    }
    parse_json(&body, max_targets).map_err(|e| format!("{url}: {e}"))
}

/// `application/json`, with parameters or not, as Prometheus accepts it.
fn is_json(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// A request error with its causes (reqwest's own text says only "error sending request"),
/// without its URL (the caller names it, redacted).
fn error_text(e: reqwest::Error) -> String {
    let timeout = e.is_timeout();
    let e = e.without_url();
    let mut text = if timeout {
        "timeout".to_string()
    } else {
        e.to_string()
    };
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_json_is_a_target_list() {
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            " Application/JSON ",
        ] {
            assert!(super::is_json(ok), "{ok}");
        }
        for bad in [
            "",
            "text/plain",
            "application/jsonl",
            "text/html; application/json",
        ] {
            assert!(!super::is_json(bad), "{bad}");
        }
    }
}
