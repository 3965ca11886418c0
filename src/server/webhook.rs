//! `POST /api/v1/alerts`: the Alertmanager webhook receiver. Thin: authenticate, limit, decode,
//! hand the alerts to the recovery manager, answer. Never waits for a step to run.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;

use super::auth::constant_time_eq;
use super::respond::{json, json_error, Body};
use super::{is_loopback, HandlerContext};
use crate::alertmanager::parse_notification;
use crate::config::WebhookAuth;

/// How long a client may take to send the body (no slow-loris).
const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Bodies declared too large but at most this are read (and dropped) before the 413 is sent.
const DRAIN_MAX: u64 = 1 << 20;

pub async fn receive(
    shared: &HandlerContext,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let response = handle(shared, peer, req).await;
    shared
        .metrics
        .webhook_notification(response.status().as_u16());
    response
}

async fn handle(
    shared: &HandlerContext,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let config = shared.webhook.borrow().clone();
    if let Some(denied) = authenticate(&config.auth, peer, req.headers().get(AUTHORIZATION)) {
        return denied;
    }
    let body = match read_json_body(req, config.max_body_bytes, "max_body_bytes").await {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let notification = match parse_notification(&body) {
        Ok(n) => n,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e.to_string()),
    };
    if notification.truncated_alerts > 0 {
        tracing::warn!(
            truncated = notification.truncated_alerts,
            receiver = %notification.receiver,
            "Alertmanager left alerts out of this notification (max_alerts); they are not routed"
        );
    }
    let truncated = notification.truncated_alerts;
    match shared.recovery.notify(notification.alerts).await {
        Some(summary) => json(
            StatusCode::OK,
            &serde_json::json!({
                "status": "success",
                "received": summary.received,
                "started": alert_refs(&summary.started),
                "coalesced": alert_refs(&summary.coalesced),
                "blocked": alert_refs(&summary.blocked),
                "held": alert_refs(&summary.held),
                "resolved": alert_refs(&summary.resolved),
                "unrouted": summary.unrouted,
                "truncated_alerts": truncated,
            }),
        ),
        None => {
            let mut r = json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the recovery queue is full; retry later",
            );
            r.headers_mut()
                .insert("Retry-After", HeaderValue::from_static("5"));
            r
        }
    }
}

/// The body of a JSON request, at most `max` bytes, or the answer that refuses it: 415 when it
/// is not `application/json`, 413 when larger, 408 when slow. Shared by the other endpoints that
/// take the webhook's credential.
pub(super) async fn read_json_body(
    req: Request<Incoming>,
    max: u64,
    limit_name: &str,
) -> Result<Bytes, Response<Body>> {
    let is_json = req
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(json_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        ));
    }
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = declared.filter(|n| *n > max) {
        // A client still writing its body when the 413 goes out and the connection closes
        // sees a broken pipe, not the answer: a body up to DRAIN_MAX is read and dropped
        // first (bounded by the body timeout), a larger one is refused unread.
        if n <= DRAIN_MAX {
            let drain = Limited::new(req.into_body(), DRAIN_MAX as usize).collect();
            let _ = tokio::time::timeout(BODY_TIMEOUT, drain).await;
        }
        return Err(too_large(max, limit_name));
    }
    let limit = usize::try_from(max).unwrap_or(usize::MAX);
    match tokio::time::timeout(BODY_TIMEOUT, Limited::new(req.into_body(), limit).collect()).await {
        Err(_) => Err(json_error(
            StatusCode::REQUEST_TIMEOUT,
            "the body did not arrive in time",
        )),
        Ok(Err(e)) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                return Err(too_large(max, limit_name));
            }
            Err(json_error(
                StatusCode::BAD_REQUEST,
                "reading the body failed",
            ))
        }
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

fn too_large(max: u64, limit_name: &str) -> Response<Body> {
    json_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("the body is larger than {limit_name} ({max})"),
    )
}

/// `None` when the request may proceed, else the answer. The pause endpoints take the same
/// credential.
pub(super) fn authenticate(
    auth: &WebhookAuth,
    peer: SocketAddr,
    header: Option<&HeaderValue>,
) -> Option<Response<Body>> {
    let presented = header.map(|h| h.as_bytes()).unwrap_or_default();
    let (expected, scheme) = match auth {
        WebhookAuth::LoopbackOnly => {
            if is_loopback(&peer) {
                return None;
            }
            return Some(json_error(
                StatusCode::FORBIDDEN,
                "no webhook credential is configured, so only loopback clients are accepted",
            ));
        }
        WebhookAuth::Bearer(token) => (format!("Bearer {}", token.expose()), "Bearer"),
        WebhookAuth::Basic { username, password } => (
            format!(
                "Basic {}",
                STANDARD.encode(format!("{username}:{}", password.expose()))
            ),
            "Basic",
        ),
    };
    if constant_time_eq(presented, expected.as_bytes()) {
        return None;
    }
    let mut r = json_error(StatusCode::UNAUTHORIZED, "missing or wrong credential");
    if let Ok(v) = HeaderValue::from_str(&format!("{scheme} realm=\"medic\"")) {
        r.headers_mut().insert(WWW_AUTHENTICATE, v);
    }
    Some(r)
}

/// The webhook answer's account of alerts: chain, fingerprint and alertname of each.
fn alert_refs(refs: &[crate::recovery::manager::AlertRef]) -> Vec<serde_json::Value> {
    refs.iter()
        .map(|r| {
            serde_json::json!({
                "chain": r.chain,
                "fingerprint": r.fingerprint,
                "alertname": r.alertname,
            })
        })
        .collect()
}
