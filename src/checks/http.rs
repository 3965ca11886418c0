//! HTTP checks: one request, then status, body and latency decide.

use std::time::{Duration, Instant};

use reqwest::redirect::Policy;

use super::{format_seconds, root_cause, FailureReason, Outcome};
use crate::config::{redact_url, HttpSpec};
use crate::status::Status;

/// Bodies are read up to this size for `expect_body`/`body_regex`; more is not a health signal.
const MAX_BODY_BYTES: usize = 1024 * 1024;
const MAX_REDIRECTS: usize = 10;

/// The shared clients: built once, reused by every HTTP check. A client without an idle pool
/// opens a fresh connection per probe, so a refused connect is seen (the default); the pooled
/// one serves `keep_alive: true`.
pub struct Clients {
    fresh_follow: reqwest::Client,
    fresh_no_follow: reqwest::Client,
    pooled_follow: reqwest::Client,
    pooled_no_follow: reqwest::Client,
}

impl Clients {
    pub fn new() -> anyhow::Result<Self> {
        let build = |keep_alive: bool, follow: bool| {
            let mut builder = reqwest::Client::builder()
                .user_agent(concat!("medic/", env!("CARGO_PKG_VERSION")))
                .no_proxy()
                .redirect(if follow {
                    Policy::limited(MAX_REDIRECTS)
                } else {
                    Policy::none()
                });
            if !keep_alive {
                builder = builder.pool_max_idle_per_host(0);
            }
            builder.build()
        };
        Ok(Clients {
            fresh_follow: build(false, true)?,
            fresh_no_follow: build(false, false)?,
            pooled_follow: build(true, true)?,
            pooled_no_follow: build(true, false)?,
        })
    }

    fn client(&self, spec: &HttpSpec) -> &reqwest::Client {
        match (spec.keep_alive, spec.follow_redirects) {
            (false, true) => &self.fresh_follow,
            (false, false) => &self.fresh_no_follow,
            (true, true) => &self.pooled_follow,
            (true, false) => &self.pooled_no_follow,
        }
    }

    /// The request, and on `https://` beside it a handshake that reads the certificate chain's
    /// expiry (a separate connection: reqwest does not show the chain it verified).
    pub async fn probe(&self, spec: &HttpSpec, timeout: Duration) -> Outcome {
        // Parsed once here and handed to reqwest, which would parse the text again.
        let url = reqwest::Url::parse(spec.url.expose()).ok();
        let https = url
            .as_ref()
            .filter(|u| u.scheme() == "https")
            .and_then(|u| Some((u.host_str()?.to_string(), u.port_or_known_default()?)));
        match https {
            None => self.request(spec, url, timeout).await,
            Some((host, port)) => {
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let (outcome, expiry) = tokio::join!(
                    self.request(spec, url, timeout),
                    super::tls::peek_expiry(host, port)
                );
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                super::tls::with_expiry(outcome, expiry, now)
            }
        }
    }

    /// `url`: the spec's URL parsed, `None` when it does not parse (reqwest then says why).
    async fn request(
        &self,
        spec: &HttpSpec,
        url: Option<reqwest::Url>,
        timeout: Duration,
    ) -> Outcome {
        let started = Instant::now();
        let shown_url = redact_url(spec.url.expose());
        let request = match self.build_request(spec, url, timeout) {
            Ok(r) => r,
            Err(outcome) => return outcome,
        };
        let mut response = match request.send().await {
            Ok(r) => r,
            Err(e) => return request_failed(&e, timeout).with("url", shown_url),
        };
        let code = response.status().as_u16();
        let version = format!("{:?}", response.version());
        let (body, truncated) = match read_body(&mut response).await {
            Ok(read) => read,
            Err(e) => {
                return request_failed(&e, timeout)
                    .with("url", shown_url)
                    .with("status_code", code)
            }
        };
        let elapsed = started.elapsed();
        let mut outcome = judge(spec, code, &body, elapsed)
            .with("url", shown_url)
            .with("status_code", code)
            .with("http_version", version)
            .with("response_bytes", body.len() as u64);
        if truncated {
            outcome = outcome.with("body_truncated", true);
        }
        outcome
    }

    /// The spec's request on the client it asks for, bounded by `timeout`; an unknown method
    /// is the check's own fault (unknown).
    fn build_request(
        &self,
        spec: &HttpSpec,
        url: Option<reqwest::Url>,
        timeout: Duration,
    ) -> Result<reqwest::RequestBuilder, Outcome> {
        let method = match reqwest::Method::from_bytes(spec.method.as_bytes()) {
            Ok(m) => m,
            Err(_) => {
                return Err(Outcome::failed(
                    Status::Unknown,
                    FailureReason::Other,
                    format!("invalid method {}", spec.method),
                ))
            }
        };
        let client = self.client(spec);
        let mut request = match url {
            Some(url) => client.request(method, url),
            None => client.request(method, spec.url.expose()),
        }
        .timeout(timeout);
        for (name, value) in &spec.headers {
            request = request.header(name.as_str(), value.expose());
        }
        if let Some(body) = &spec.body {
            request = request.body(body.clone());
        }
        Ok(request)
    }
}

/// Reads the body only as far as anyone will look at it: up to `MAX_BODY_BYTES`, and whether
/// there was more.
async fn read_body(response: &mut reqwest::Response) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_BODY_BYTES - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// The verdict on an answer: an unexpected status is critical; a body without `expect_body`
/// or not matching `body_regex` is a warning; else healthy, or a warning when slower than
/// `warn_after`.
fn judge(spec: &HttpSpec, code: u16, body: &[u8], elapsed: Duration) -> Outcome {
    let status_ok = if spec.expect_status.is_empty() {
        (200..300).contains(&code)
    } else {
        spec.expect_status.contains(&code)
    };
    if !status_ok {
        let expected = if spec.expect_status.is_empty() {
            "2xx".to_string()
        } else {
            spec.expect_status
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Outcome::failed(
            Status::Critical,
            FailureReason::Status,
            format!("HTTP {code}, expected {expected}"),
        );
    }
    let text = String::from_utf8_lossy(body);
    if let Some(needle) = spec.expect_body.as_deref().filter(|n| !text.contains(*n)) {
        Outcome::new(
            Status::Warning,
            format!("HTTP {code}, body does not contain {needle:?}"),
        )
    } else if let Some(re) = spec.body_regex.as_ref().filter(|re| !re.0.is_match(&text)) {
        Outcome::new(
            Status::Warning,
            format!("HTTP {code}, body does not match /{}/", re.0.as_str()),
        )
    } else {
        Outcome::new(
            Status::Healthy,
            // No timing in the message: it is in duration_seconds, and a steady
            // message is stored once for the whole history.
            format!("HTTP {code}"),
        )
        .warn_if_slow(elapsed, spec.warn_after)
    }
}

fn request_failed(e: &reqwest::Error, timeout: Duration) -> Outcome {
    // reqwest quotes the URL in its messages; the URL may hold a password.
    let cause = root_cause(e);
    let reason = classify(e);
    let message = if e.is_timeout() {
        format!("timeout: no answer within {}", format_seconds(timeout))
    } else if e.is_redirect() {
        format!("redirect failed: {cause}")
    } else if e.is_connect() {
        format!("connection failed: {cause}")
    } else if e.is_body() || e.is_decode() {
        format!("reading the response failed: {cause}")
    } else {
        format!("request failed: {cause}")
    };
    Outcome::from_error(e, Status::Critical, Some(reason), message)
}

/// Which of the closed set of reasons a failed request falls under, from the error's chain.
fn classify(e: &reqwest::Error) -> FailureReason {
    if e.is_timeout() {
        return FailureReason::Timeout;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return FailureReason::Tls;
        }
        // hyper-util's connector says so only in words: its resolver error is private.
        if err.to_string().starts_with("dns error") {
            return FailureReason::Dns;
        }
        cause = err.source();
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            match FailureReason::of_io(io) {
                FailureReason::Other => {}
                reason => return reason,
            }
            // An IO error's `source()` skips the error it wraps (rustls's, for one).
            if let Some(inner) = io.get_ref() {
                cause = Some(inner);
            }
        }
    }
    if e.is_body() || e.is_decode() {
        FailureReason::Body
    } else {
        FailureReason::Other
    }
}
