//! `medic pause`, `medic pause --list` and `medic resume`: clients of a running medic's
//! `/api/v1/pauses`. They speak
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
    println!("matchers: {}", matchers(pause));
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

/// `medic pause --list`: the active pauses, one a line (id, end, matchers, reason). Exit codes
/// as `medic pause`.
pub async fn list_pauses(remote: Remote, location: ConfigSource, overrides: &Overrides) -> i32 {
    let (base, auth) = match resolve(&remote, &location, overrides) {
        Ok(r) => r,
        Err((message, code)) => {
            eprintln!("medic pause --list: {message}");
            return code;
        }
    };
    let url = format!("{base}/api/v1/pauses");
    match call(reqwest::Method::GET, &url, auth.as_deref(), None).await {
        Ok(answer) => {
            let pauses = answer
                .get("pauses")
                .and_then(|p| p.as_array())
                .cloned()
                .unwrap_or_default();
            print!("{}", pause_table(&pauses));
            0
        }
        Err(message) => {
            eprintln!("medic pause --list: {message}");
            1
        }
    }
}

/// The pauses as aligned columns under a header; the reason, free text, comes last.
fn pause_table(pauses: &[serde_json::Value]) -> String {
    if pauses.is_empty() {
        return "no active pauses\n".to_string();
    }
    let rows: Vec<[String; 4]> = pauses
        .iter()
        .map(|p| {
            let field = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
            [field("id"), field("ends_at"), matchers(p), field("reason")]
        })
        .collect();
    let header = ["id", "ends_at", "matchers", "reason"].map(str::to_string);
    let width = |i: usize| {
        std::iter::once(&header)
            .chain(&rows)
            .map(|r| r[i].chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2)];
    std::iter::once(&header)
        .chain(&rows)
        .map(|[id, ends, matchers, reason]| {
            format!(
                "{id:<w0$}  {ends:<w1$}  {matchers:<w2$}  {reason}\n",
                w0 = widths[0],
                w1 = widths[1],
                w2 = widths[2]
            )
        })
        .collect()
}

/// A pause's matchers as one field: amtool's spelling, comma-separated.
fn matchers(pause: &serde_json::Value) -> String {
    let matchers: Vec<&str> = pause
        .get("matchers")
        .and_then(|m| m.as_array())
        .map(|m| m.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    if matchers.is_empty() {
        "(none: every run)".to_string()
    } else {
        matchers.join(", ")
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

    #[test]
    fn pauses_are_listed_in_aligned_columns_reason_last() {
        let pauses = vec![
            serde_json::json!({"id": "3f9c2a61d04b7e85", "matchers": ["chain=\"db\"", "check=~\"a.*\""], "reason": "db migration", "ends_at": "2026-12-05T23:58:03.120Z"}),
            serde_json::json!({"id": "00000000000000aa", "matchers": [], "reason": "incident", "ends_at": "2026-12-06T00:00:00.000Z"}),
        ];
        assert_eq!(
            pause_table(&pauses),
            concat!(
                "id                ends_at                   matchers                  reason\n",
                "3f9c2a61d04b7e85  2026-12-05T23:58:03.120Z  chain=\"db\", check=~\"a.*\"  db migration\n",
                "00000000000000aa  2026-12-06T00:00:00.000Z  (none: every run)         incident\n",
            )
        );
        assert_eq!(pause_table(&[]), "no active pauses\n");
    }
}
