//! `http:` checks: a request, and what the answer must be (status, body, time).

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{pattern, CheckAt, Kind, Pattern};
use crate::config::duration::Duration;
use crate::config::secret::Secret;
use crate::config::validate::Context;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    url: String,
    method: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
    expect_status: Option<Vec<u16>>,
    expect_body: Option<String>,
    body_regex: Option<String>,
    warn_after: Option<Duration>,
    keep_alive: Option<bool>,
    follow_redirects: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpSpec {
    /// May carry a password; shown only through [`crate::config::redact_url`].
    pub url: Secret,
    pub method: String,
    pub headers: Vec<(String, Secret)>,
    pub body: Option<String>,
    /// Empty means any 2xx.
    pub expect_status: Vec<u16>,
    pub expect_body: Option<String>,
    pub body_regex: Option<Pattern>,
    pub warn_after: Option<Duration>,
    pub keep_alive: bool,
    pub follow_redirects: bool,
}

impl Kind for HttpSpec {
    type File = HttpFile;

    fn check(cx: &mut Context, at: &CheckAt<'_>, h: HttpFile) -> Option<HttpSpec> {
        let path = at.path;
        let mut ok = url(cx, at, &h.url);
        let method = h
            .method
            .clone()
            .unwrap_or_else(|| "GET".to_string())
            .to_ascii_uppercase();
        if reqwest::Method::from_bytes(method.as_bytes()).is_err() || method.is_empty() {
            cx.error(
                path,
                // As written: an upper-cased `${ENV}` value would not be recognised as one.
                format!(
                    "http.method {:?} is not a valid HTTP method",
                    h.method.as_deref().unwrap_or_default()
                ),
            );
            ok = false;
        }
        let headers = headers(cx, at, h.headers, &mut ok);
        let expect_status = h.expect_status.unwrap_or_default();
        for code in expect_status.iter().filter(|c| !(100..=599).contains(*c)) {
            cx.error(
                path,
                format!("http.expect_status: {code} is not an HTTP status code"),
            );
            ok = false;
        }
        let body_regex = pattern(cx, path, "http.body_regex", h.body_regex.as_deref());
        ok &= body_regex.is_ok();
        at.warn_after(cx, "http", h.warn_after);
        ok.then(|| HttpSpec {
            url: Secret::new(h.url),
            method,
            headers,
            body: h.body,
            expect_status,
            expect_body: h.expect_body,
            body_regex: body_regex.ok().flatten(),
            warn_after: h.warn_after,
            keep_alive: h.keep_alive.unwrap_or(false),
            follow_redirects: h.follow_redirects.unwrap_or(true),
        })
    }
}

/// Whether the URL is an http(s) URL with a host; its password and query are secrets.
fn url(cx: &mut Context, at: &CheckAt<'_>, url: &str) -> bool {
    cx.url_password_is_secret(url);
    let problem = match reqwest::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => return true,
        Ok(_) => "must be an http:// or https:// URL with a host".to_string(),
        Err(e) => format!("is not a valid URL: {e}"),
    };
    cx.error(
        at.path,
        format!("http.url {:?} {problem}", cx.show_url(url)),
    );
    false
}

/// The request headers; their values are secrets (they are often credentials).
fn headers(
    cx: &mut Context,
    at: &CheckAt<'_>,
    headers: BTreeMap<String, String>,
    ok: &mut bool,
) -> Vec<(String, Secret)> {
    let mut out = Vec::new();
    for (name, value) in headers {
        if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
            cx.error(
                at.path,
                format!("http.headers: {name:?} is not a valid header name"),
            );
            *ok = false;
        }
        if reqwest::header::HeaderValue::from_str(&value).is_err() {
            cx.error(
                at.path,
                format!("http.headers: value of {name:?} is not a valid header value"),
            );
            *ok = false;
        }
        out.push((name, cx.secret(value)));
    }
    out
}
