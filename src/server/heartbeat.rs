//! `POST /api/v1/heartbeats/{check}` (`/start`, `/fail`, `/{exit_code}`): a job reports. Checked
//! against the check's own token (`token_file`), recorded, written to the store, answered.
//! A refused ping changes nothing.

use hyper::body::Incoming;
use hyper::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use hyper::{Method, Request, Response, StatusCode};

use super::respond::{json, json_error, Body};
use super::HandlerContext;
use crate::checks::{Ping, Refused};

pub const PREFIX: &str = "/api/v1/heartbeats/";

pub async fn receive(shared: &HandlerContext, req: Request<Incoming>) -> Response<Body> {
    if req.method() != Method::POST {
        let mut r = json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
        r.headers_mut()
            .insert(hyper::header::ALLOW, HeaderValue::from_static("POST"));
        return r;
    }
    let rest = &req.uri().path()[PREFIX.len()..];
    let (raw_check, suffix) = rest.split_once('/').unwrap_or((rest, ""));
    let check = percent_encoding::percent_decode_str(raw_check).decode_utf8_lossy();
    let Some(ping) = Ping::parse(suffix) else {
        return json_error(
            StatusCode::NOT_FOUND,
            "not found: use /{check}, /{check}/start, /{check}/fail or /{check}/{exit_code}",
        );
    };
    let authorization = req.headers().get(AUTHORIZATION).map(|h| h.as_bytes());
    let now_ms = crate::timefmt::now_ms();
    let (pings, job_seconds) = match shared
        .heartbeats
        .record(&check, authorization, ping, now_ms)
    {
        Ok(recorded) => recorded,
        Err(Refused::Unknown) => {
            return json_error(StatusCode::NOT_FOUND, "no heartbeat check of that name")
        }
        Err(Refused::Unauthorized) => {
            let mut r = json_error(StatusCode::UNAUTHORIZED, "unauthorized");
            r.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    };
    if ping == Ping::Success {
        shared
            .metrics
            .observe_job(&check, job_seconds, now_ms as f64 / 1000.0);
    }
    let store = shared.store.borrow().clone();
    if let Some(store) = store {
        // Written before the answer, so a ping the job saw accepted survives a crash.
        if let Err(e) = store.save_heartbeat(&check, &pings).await {
            shared.metrics.store_error(e.operation());
            tracing::warn!(check = %check, error = %e, "cannot store heartbeat");
        }
    }
    // A report changes the verdict now (a failure is critical at once), not at the next tick.
    shared.probes.probe_now(&check);
    tracing::debug!(check = %check, ?ping, "heartbeat");
    json(
        StatusCode::OK,
        &serde_json::json!({
            "check": check,
            "ping": match ping {
                Ping::Success => "success",
                Ping::Start => "start",
                Ping::Failure(_) => "failure",
            },
        }),
    )
}
