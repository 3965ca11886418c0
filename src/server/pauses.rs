//! `/api/v1/pauses`: make, list and end pauses. Behind the webhook's credential (loopback only
//! without one), like the other endpoint automation calls. Decoding and answers here; what a
//! request may say is [`crate::pause`]'s, the store and the book are the pause book's.

use std::net::SocketAddr;

use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::{Method, Request, Response, StatusCode};
use serde::{Deserialize, Serialize};

use super::respond::{json, json_error, Body};
use super::webhook::{authenticate, read_json_body};
use super::HandlerContext;
use crate::alertmanager::Matcher;
use crate::pause::{Pause, PauseRequest, MAX_ACTIVE};
use crate::pause_book::new_pause_id;
use crate::store::Store;
use crate::timefmt::{now_ms, rfc3339_ms};

/// The largest request body: a full pause (32 matchers, 1 KiB of reason) is far smaller.
pub const MAX_BODY_BYTES: u64 = 64 * 1024;

/// What `POST` takes. Unknown fields are ignored, as the webhook does, so a newer client's
/// extra fields do not break an older medic. Every field is optional here so a missing one is
/// reported in the same list as every other problem.
#[derive(Debug, Deserialize)]
struct CreateBody {
    #[serde(default)]
    matchers: Vec<String>,
    duration: Option<String>,
    #[serde(default)]
    reason: String,
}

/// A pause on the wire.
#[derive(Debug, Serialize)]
pub struct PauseJson {
    pub id: String,
    /// In amtool syntax, as medic reads them (`chain="web"`).
    pub matchers: Vec<String>,
    pub reason: String,
    pub created_at: String,
    pub ends_at: String,
    /// Only in the answer to `DELETE`: when it was ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<String>,
}

impl PauseJson {
    fn of(pause: &Pause) -> PauseJson {
        PauseJson {
            id: pause.id.clone(),
            matchers: pause.matchers.iter().map(Matcher::to_string).collect(),
            reason: pause.reason.clone(),
            created_at: rfc3339_ms(pause.created_ms),
            ends_at: rfc3339_ms(pause.ends_ms),
            ended_at: None,
        }
    }
}

pub async fn handle(
    shared: &HandlerContext,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let auth = shared.webhook.borrow().auth.clone();
    if let Some(denied) = authenticate(&auth, peer, req.headers().get(AUTHORIZATION)) {
        return denied;
    }
    let path = req.uri().path().to_string();
    let id = path
        .strip_prefix("/api/v1/pauses")
        .and_then(|rest| rest.strip_prefix('/'))
        .map(|raw| {
            percent_encoding::percent_decode_str(raw)
                .decode_utf8_lossy()
                .into_owned()
        });
    match (req.method().clone(), id) {
        (Method::POST, None) => create(shared, req).await,
        (Method::GET, None) => list(shared).await,
        (Method::DELETE, Some(id)) if !id.is_empty() => end(shared, &id).await,
        (_, None) => super::respond::method_not_allowed("GET, POST"),
        (_, Some(_)) => super::respond::method_not_allowed("DELETE"),
    }
}

fn store(shared: &HandlerContext) -> Option<Store> {
    shared.store.borrow().clone()
}

fn not_open() -> Response<Body> {
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the state store is not open yet",
    )
}

fn store_failed(shared: &HandlerContext, e: &crate::store::StoreError) -> Response<Body> {
    shared.metrics.store_error(e.operation());
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("state store: {e}"),
    )
}

/// 400 with every problem: joined in `error`, one by one in `errors`.
fn bad_request(errors: &[String]) -> Response<Body> {
    json(
        StatusCode::BAD_REQUEST,
        &serde_json::json!({ "status": "error", "error": errors.join("; "), "errors": errors }),
    )
}

/// What a body asks for, or every reason it is refused.
fn parse_body(body: &[u8]) -> Result<PauseRequest, Vec<String>> {
    let body: CreateBody = serde_json::from_slice(body).map_err(|e| vec![format!("{e}")])?;
    match &body.duration {
        Some(duration) => PauseRequest::parse(&body.matchers, duration, &body.reason),
        None => {
            let mut errors = PauseRequest::parse(&body.matchers, "1s", &body.reason)
                .err()
                .unwrap_or_default();
            errors.push("duration: missing; say how long, like \"1h\"".to_string());
            Err(errors)
        }
    }
}

async fn create(shared: &HandlerContext, req: Request<Incoming>) -> Response<Body> {
    let body = match read_json_body(req, MAX_BODY_BYTES, "the pause body limit").await {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    let request = match parse_body(&body) {
        Ok(r) => r,
        Err(errors) => return bad_request(&errors),
    };
    let Some(store) = store(shared) else {
        return not_open();
    };
    let now = now_ms();
    // The store's count, not this replica's copy: the bound is for the fleet.
    match store.active_pauses(now).await {
        Ok(active) if active.len() >= MAX_ACTIVE => {
            return json_error(
                StatusCode::CONFLICT,
                &format!("{MAX_ACTIVE} pauses are active already; end one first"),
            )
        }
        Ok(_) => {}
        Err(e) => return store_failed(shared, &e),
    }
    let pause = request.into_pause(new_pause_id(), now);
    let answer = PauseJson::of(&pause);
    match shared.pauses.create(&store, pause).await {
        Ok(()) => {
            tracing::info!(pause = %answer.id, matchers = ?answer.matchers, ends_at = %answer.ends_at, reason = %answer.reason, "recovery paused");
            json(StatusCode::CREATED, &answer)
        }
        Err(e) => store_failed(shared, &e),
    }
}

async fn list(shared: &HandlerContext) -> Response<Body> {
    let Some(store) = store(shared) else {
        return not_open();
    };
    match store.active_pauses(now_ms()).await {
        Ok(pauses) => {
            let pauses: Vec<PauseJson> = pauses.iter().map(PauseJson::of).collect();
            json(StatusCode::OK, &serde_json::json!({ "pauses": pauses }))
        }
        Err(e) => store_failed(shared, &e),
    }
}

async fn end(shared: &HandlerContext, id: &str) -> Response<Body> {
    let Some(store) = store(shared) else {
        return not_open();
    };
    let now = now_ms();
    let found = match store.active_pauses(now).await {
        Ok(active) => active.into_iter().find(|p| p.id == id),
        Err(e) => return store_failed(shared, &e),
    };
    let unknown = || json_error(StatusCode::NOT_FOUND, &format!("no active pause {id:?}"));
    let Some(pause) = found else {
        return unknown();
    };
    match shared.pauses.end(&store, id, now).await {
        Ok(true) => {
            tracing::info!(pause = %id, "pause ended; recovery resumes");
            let mut answer = PauseJson::of(&pause);
            answer.ended_at = Some(rfc3339_ms(now));
            json(StatusCode::OK, &answer)
        }
        // Ended by someone else in between.
        Ok(false) => unknown(),
        Err(e) => store_failed(shared, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_read_with_every_reason() {
        let ok = parse_body(
            br#"{"matchers":["chain=\"web\""],"duration":"1h","reason":"deploy","extra":1}"#,
        )
        .unwrap();
        assert_eq!(ok.duration, std::time::Duration::from_secs(3600));
        let errors = parse_body(br#"{"matchers":["chain"]}"#).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("matchers[0]: invalid matcher"));
        assert!(errors[1].starts_with("reason:"));
        assert!(errors[2].starts_with("duration: missing"));
        assert!(parse_body(b"{").unwrap_err()[0].contains("EOF"));
        assert!(
            parse_body(br#"{"matchers":"x","duration":"1h","reason":"r"}"#).unwrap_err()[0]
                .contains("invalid type")
        );
        assert!(parse_body(b"[]").is_err());
    }
}
