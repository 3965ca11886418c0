//! `medic pause` and `medic resume`: clients of a running medic's `/api/v1/pauses`. They speak
//! to the listen address and present the webhook's credential from the same config the server
//! reads (so an operator on the host needs nothing more), unless `--url` and
//! `--bearer-token-file` say otherwise.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};

use crate::config::ConfigSource;
use crate::config::{Overrides, WebhookAuth};

/// Where the running medic is and how to prove who is asking.
#[derive(Debug, Clone, Default)]
pub struct Remote {
    /// `--url`: the running medic's base URL [default: http:// + the listen address].
    pub url: Option<String>,
    /// `--bearer-token-file`: a token to present instead of the config's webhook credential.
    pub bearer_token_file: Option<PathBuf>,
}

/// `medic pause --for D --reason TEXT [--matcher M]…`.
#[derive(Debug, Clone)]
pub struct PauseCommand {
    pub duration: String,
    pub reason: String,
    pub matchers: Vec<String>,
    pub remote: Remote,
}

/// How long the CLI waits for the running medic.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Base URL and `Authorization` value, or the message and exit code of why not.
fn resolve(
    remote: &Remote,
    location: &ConfigSource,
    overrides: &Overrides,
) -> Result<(String, Option<String>), (String, i32)> {
    let token = match &remote.bearer_token_file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(t) if !t.trim().is_empty() => Some(Some(format!("Bearer {}", t.trim()))),
            Ok(_) => return Err((format!("{} is empty", path.display()), 2)),
            Err(e) => return Err((format!("cannot read {}: {e}", path.display()), 2)),
        },
        None => None,
    };
    if let (Some(url), Some(token)) = (&remote.url, &token) {
        return Ok((url.trim_end_matches('/').to_string(), token.clone()));
    }
    let config = location
        .load(overrides)
        .map_err(|e| (format!("invalid config {location}: {e}"), 2))?;
    let url = match &remote.url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => format!("http://{}", connectable(&config.web.listen_address)),
    };
    let auth = token.unwrap_or_else(|| match &config.web.webhook.auth {
        WebhookAuth::LoopbackOnly => None,
        WebhookAuth::Bearer(t) => Some(format!("Bearer {}", t.expose())),
        WebhookAuth::Basic { username, password } => {
            use base64::Engine as _;
            let pair = format!("{username}:{}", password.expose());
            Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            ))
        }
    });
    Ok((url, auth))
}

/// A listen address as a client reaches it: "every interface" means this host.
fn connectable(listen: &str) -> String {
    if let Some(port) = listen.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = listen.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else if let Some(port) = listen.strip_prefix(':') {
        format!("127.0.0.1:{port}")
    } else {
        listen.to_string()
    }
}

/// Sends the request; the JSON answer on 2xx, else the message to print.
async fn call(
    method: reqwest::Method,
    url: &str,
    auth: Option<&str>,
    body: Option<String>,
) -> Result<serde_json::Value, String> {
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let mut request = client.request(method, url);
    if let Some(auth) = auth {
        request = request.header(AUTHORIZATION, auth);
    }
    if let Some(body) = body {
        request = request.header(CONTENT_TYPE, "application/json").body(body);
    }
    let response = request
        .send()
        .await
        .map_err(|e| format!("cannot reach medic at {url}: {e}"))?;
    let status = response.status();
    let text = response
        .text()
        .await
        .map_err(|e| format!("reading medic's answer failed: {e}"))?;
    let value: serde_json::Value = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    if status.is_success() {
        return Ok(value);
    }
    let reason = value
        .get("error")
        .and_then(|e| e.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| text.trim().to_string());
    Err(format!("{status}: {reason}"))
}

/// Prints a pause: its id alone on the first line (for `$(medic pause … | head -1)`), then the
/// rest as `key: value`.
fn print_pause(pause: &serde_json::Value) {
    let field = |k: &str| pause.get(k).and_then(|v| v.as_str()).unwrap_or("");
    println!("{}", field("id"));
    let matchers: Vec<&str> = pause
        .get("matchers")
        .and_then(|m| m.as_array())
        .map(|m| m.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    if matchers.is_empty() {
        println!("matchers: (none: every run)");
    } else {
        println!("matchers: {}", matchers.join(", "));
    }
    println!("reason: {}", field("reason"));
    println!("created_at: {}", field("created_at"));
    println!("ends_at: {}", field("ends_at"));
    if let Some(ended) = pause.get("ended_at").and_then(|v| v.as_str()) {
        println!("ended_at: {ended}");
    }
}

/// `medic pause`: exit 0 with the pause printed, 1 when medic refused or could not be reached
/// (its reason printed), 2 for a bad config or token file.
pub async fn pause(command: PauseCommand, location: ConfigSource, overrides: &Overrides) -> i32 {
    let (base, auth) = match resolve(&command.remote, &location, overrides) {
        Ok(r) => r,
        Err((message, code)) => {
            eprintln!("medic pause: {message}");
            return code;
        }
    };
    let body = serde_json::json!({
        "matchers": command.matchers,
        "duration": command.duration,
        "reason": command.reason,
    });
    let url = format!("{base}/api/v1/pauses");
    match call(
        reqwest::Method::POST,
        &url,
        auth.as_deref(),
        Some(body.to_string()),
    )
    .await
    {
        Ok(pause) => {
            print_pause(&pause);
            0
        }
        Err(message) => {
            eprintln!("medic pause: {message}");
            1
        }
    }
}

/// `medic resume ID`: ends a pause. Exit codes as `medic pause`.
pub async fn resume(
    id: &str,
    remote: Remote,
    location: ConfigSource,
    overrides: &Overrides,
) -> i32 {
    let (base, auth) = match resolve(&remote, &location, overrides) {
        Ok(r) => r,
        Err((message, code)) => {
            eprintln!("medic resume: {message}");
            return code;
        }
    };
    let encoded = crate::percent::encode(id);
    let url = format!("{base}/api/v1/pauses/{encoded}");
    match call(reqwest::Method::DELETE, &url, auth.as_deref(), None).await {
        Ok(pause) => {
            print_pause(&pause);
            0
        }
        Err(message) => {
            eprintln!("medic resume: {message}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_interface_is_reached_on_loopback() {
        assert_eq!(connectable("0.0.0.0:7979"), "127.0.0.1:7979");
        assert_eq!(connectable("[::]:80"), "[::1]:80");
        assert_eq!(connectable(":9"), "127.0.0.1:9");
        assert_eq!(connectable("10.0.0.1:7979"), "10.0.0.1:7979");
    }
}
