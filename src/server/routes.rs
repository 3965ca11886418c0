//! Every endpoint, in one `match`:
//!
//! | method, path | answer |
//! | --- | --- |
//! | `GET /metrics` | Prometheus text (OpenMetrics when `Accept` asks for it) |
//! | `GET /-/healthy` | 200 while the process is up |
//! | `GET /-/ready` | 200 once config and state store are loaded, else 503 |
//! | `POST /-/reload` | reloads the config: 200, or 500 with the error (old config stays) |
//! | `GET /api/v1/health` | overall and per-check health; 503 when critical or unknown |
//! | `GET /api/v1/checks/{name}` | one check with metadata, trend and history; 404 if unknown |
//! | `GET /api/v1/recoveries?chain=&limit=` | recovery attempts from the store, newest first |
//! | `GET /api/v1/predictions` | every prediction's latest value, forecasts, time to breach and anomaly score |
//! | `GET /api/v1/recoveries/stats` | per-step totals: attempts, successes, ratio, mean duration |
//! | `GET /api/v1/runs?chain=&limit=` | recovery runs, newest first ([`super::runs`]) |
//! | `GET /api/v1/runs/{id}` | one run and every decision it made, in order; 404 if unknown |
//! | `GET /api/v1/cluster` | this replica's member id and the live members ([`super::cluster`]) |
//! | `POST /api/v1/alerts` | the Alertmanager webhook receiver ([`super::webhook`]) |
//! | `POST/GET /api/v1/pauses`, `DELETE /api/v1/pauses/{id}` | pauses ([`super::pauses`]) |
//! | `GET /?status=&q=&page=` | the status page ([`super::page::index`]) |
//! | `GET /checks/{name}` | one check's page; 404 if unknown |
//! | `GET /runs/{id}` | one run's page; 404 if unknown |

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, ACCEPT, AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE,
};
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::oneshot;

use super::respond::{json, json_error, method_not_allowed, parse_query, text, Body};
use super::wire::{AttemptJson, CheckDetailJson, HealthJson, PredictionJson, StepJson};
use super::{page, HandlerContext};
use crate::metrics::Format;
use crate::status::Status;

pub async fn handle(
    shared: Arc<HandlerContext>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    if req.uri().path() == "/api/v1/alerts" {
        let response = if req.method() == Method::POST {
            super::webhook::receive(&shared, peer, req).await
        } else {
            let r = method_not_allowed("POST");
            shared.metrics.webhook_notification(r.status().as_u16());
            r
        };
        return Ok(response);
    }
    // Heartbeats carry their check's own token, as the webhook does: cron jobs are not web
    // users.
    if req.uri().path().starts_with(super::heartbeat::PREFIX) {
        return Ok(super::heartbeat::receive(&shared, req).await);
    }
    // Pauses are made by automation and operators alike: they take the webhook's credential.
    let path = req.uri().path();
    if path == "/api/v1/pauses" || path.starts_with("/api/v1/pauses/") {
        return Ok(super::pauses::handle(&shared, peer, req).await);
    }
    // The webhook has its own credential (`web.webhook`); everything else is behind the web
    // config's users, when there are any.
    if let Some(refusal) = unauthorized(&shared, &req).await {
        return Ok(refusal);
    }
    let response = route(&shared, &req).await;
    Ok(if req.method() == Method::HEAD {
        let (parts, _) = response.into_parts();
        Response::from_parts(parts, Body::default())
    } else {
        response
    })
}

/// The 401 to answer when the web config has users and the request is not one of them.
/// Checking a password hash is slow on purpose, so it runs off the runtime's threads.
async fn unauthorized(shared: &HandlerContext, req: &Request<Incoming>) -> Option<Response<Body>> {
    let web = shared.web.borrow().clone();
    if !web.requires_auth() {
        return None;
    }
    let header = req
        .headers()
        .get(AUTHORIZATION)
        .map(|h| h.as_bytes().to_vec());
    let span = tracing::debug_span!("basic_auth");
    let allowed =
        tokio::task::spawn_blocking(move || span.in_scope(|| web.authorize(header.as_deref())))
            .await
            .unwrap_or(false);
    if allowed {
        return None;
    }
    let mut r = text(StatusCode::UNAUTHORIZED, "Unauthorized\n");
    r.headers_mut().insert(
        WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"medic\""),
    );
    Some(r)
}

/// Every route behind the web config's users: what each answers to GET and HEAD (reload
/// to POST and PUT), then what the other methods get.
async fn route(shared: &HandlerContext, req: &Request<Incoming>) -> Response<Body> {
    let path = req.uri().path();
    let method = req.method();
    let get = method == Method::GET || method == Method::HEAD;
    match path {
        "/metrics" if get => metrics(shared, req),
        "/-/healthy" if get => text(StatusCode::OK, "medic is healthy.\n"),
        "/-/ready" if get => ready(shared),
        "/-/reload" if method == Method::POST || method == Method::PUT => reload(shared).await,
        "/api/v1/health" if get => health(shared).await,
        "/" if get => status_page(shared, req.uri().query()).await,
        p if get && p.starts_with("/checks/") => check_page(shared, &p["/checks/".len()..]).await,
        p if get && p.starts_with("/runs/") => run_page(shared, &p["/runs/".len()..]).await,
        "/api/v1/recoveries" if get => recoveries(shared, req.uri().query()).await,
        "/api/v1/recoveries/stats" if get => recovery_stats(shared).await,
        "/api/v1/predictions" if get => predictions(shared).await,
        "/api/v1/cluster" if get => super::cluster::cluster(shared),
        "/api/v1/runs" if get => super::runs::list(shared, req.uri().query()).await,
        p if get && p.starts_with("/api/v1/runs/") => {
            super::runs::one(shared, &p["/api/v1/runs/".len()..]).await
        }
        p if get && p.starts_with("/api/v1/checks/") => {
            check(shared, &p["/api/v1/checks/".len()..]).await
        }
        p => wrong_method_or_not_found(p),
    }
}

/// A known path asked with a method it does not take (405, with the ones it does), or an
/// unknown path (404).
fn wrong_method_or_not_found(path: &str) -> Response<Body> {
    match path {
        "/metrics"
        | "/-/healthy"
        | "/-/ready"
        | "/api/v1/health"
        | "/"
        | "/api/v1/recoveries"
        | "/api/v1/recoveries/stats"
        | "/api/v1/cluster" => method_not_allowed("GET, HEAD"),
        "/-/reload" => method_not_allowed("POST, PUT"),
        p if p.starts_with("/api/v1/checks/")
            || p.starts_with("/checks/")
            || p.starts_with("/runs/") =>
        {
            method_not_allowed("GET, HEAD")
        }
        p if p == "/api/v1/runs" || p.starts_with("/api/v1/runs/") => {
            method_not_allowed("GET, HEAD")
        }
        _ => json_error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// 200 once config and state store are loaded; else 503 and, when known, what it waits for.
fn ready(shared: &HandlerContext) -> Response<Body> {
    if shared.ready.load(Ordering::SeqCst) {
        return text(StatusCode::OK, "medic is ready.\n");
    }
    let reason = *shared
        .not_ready_reason
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    match reason {
        Some(reason) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("medic is not ready: {reason}.\n"),
        ),
        None => text(StatusCode::SERVICE_UNAVAILABLE, "medic is not ready.\n"),
    }
}

async fn predictions(shared: &HandlerContext) -> Response<Body> {
    match shared.state.predictions().await {
        Some(p) => {
            let p: Vec<PredictionJson> = p.iter().map(Into::into).collect();
            json(StatusCode::OK, &serde_json::json!({ "predictions": p }))
        }
        None => json_error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
    }
}

fn metrics(shared: &HandlerContext, req: &Request<Incoming>) -> Response<Body> {
    let accept = req.headers().get(ACCEPT).and_then(|v| v.to_str().ok());
    let format = Format::from_accept(accept);
    let mut response = Response::new(Body::Metrics(shared.metrics.clone().render(format)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    response
}

async fn reload(shared: &HandlerContext) -> Response<Body> {
    let (reply, answer) = oneshot::channel();
    if shared.reload.send(reply).await.is_err() {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    }
    match answer.await {
        Ok(Ok(())) => text(StatusCode::OK, "config reloaded\n"),
        Ok(Err(e)) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("failed to reload config: {e}\n"),
        ),
        Err(_) => text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n"),
    }
}

async fn health(shared: &HandlerContext) -> Response<Body> {
    match shared.state.health().await {
        Some(report) => {
            // Healthy or warning can take traffic; critical or unknown cannot.
            let code = match report.status {
                Status::Healthy | Status::Warning => StatusCode::OK,
                Status::Critical | Status::Unknown => StatusCode::SERVICE_UNAVAILABLE,
            };
            json(code, &HealthJson::from(&report))
        }
        None => json_error(StatusCode::SERVICE_UNAVAILABLE, "shutting down"),
    }
}

async fn check(shared: &HandlerContext, raw_name: &str) -> Response<Body> {
    let name = percent_encoding::percent_decode_str(raw_name).decode_utf8_lossy();
    match shared.state.check(&name).await {
        Some(detail) => json(StatusCode::OK, &CheckDetailJson::from(&detail)),
        None => json_error(StatusCode::NOT_FOUND, &format!("no check named {name:?}")),
    }
}

/// Runs `/` draws on its timeline.
const PAGE_RUNS: i64 = 20;
/// Runs a check's page lists.
const CHECK_PAGE_RUNS: i64 = 50;

fn html(code: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = code;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// A store read for a page: `None` when the store is not open or the read failed (counted).
async fn store_read<T, F, Fut>(shared: &HandlerContext, read: F) -> Option<T>
where
    F: FnOnce(crate::store::Store) -> Fut,
    Fut: std::future::Future<Output = Result<T, crate::store::StoreError>>,
{
    let store = shared.store.borrow().clone()?;
    match read(store).await {
        Ok(v) => Some(v),
        Err(e) => {
            shared.metrics.store_error(e.operation());
            None
        }
    }
}

async fn status_page(shared: &HandlerContext, query: Option<&str>) -> Response<Body> {
    let params = parse_query(query.unwrap_or(""));
    let (filter, notes) = page::index::Filter::parse(&params);
    let Some(report) = shared.state.health().await else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    };
    let selection = page::index::select(&report, &filter);
    let Some(data) = shared.state.page(selection.names.clone()).await else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    };
    let runs = store_read(shared, |s| async move { s.runs(None, PAGE_RUNS).await }).await;
    let attempts = store_read(shared, |s| async move { s.recent_attempts(None, 10).await }).await;
    let (circuit_open, windows) = shared.metrics.banner();
    let now_ms = crate::timefmt::now_ms();
    let banner = page::index::Banner {
        circuit_open,
        windows,
        pauses: shared
            .pauses
            .active()
            .into_iter()
            .filter(|p| p.is_active(now_ms))
            .collect(),
        held: shared.metrics.held(),
    };
    let secrets = crate::config::known_secrets();
    let cluster = shared.cluster.as_ref().map(|c| c.borrow().clone());
    html(
        StatusCode::OK,
        page::index::render(&page::index::Index {
            report: &report,
            filter: &filter,
            notes: &notes,
            selection: &selection,
            details: &data.checks,
            predictions: &data.predictions,
            runs: runs.as_deref(),
            attempts: attempts.as_deref(),
            banner: &banner,
            now_ms,
            secrets: &secrets,
            cluster: cluster.as_deref(),
        }),
    )
}

async fn check_page(shared: &HandlerContext, raw_name: &str) -> Response<Body> {
    let name = percent_encoding::percent_decode_str(raw_name)
        .decode_utf8_lossy()
        .into_owned();
    let Some(data) = shared.state.page(vec![name.clone()]).await else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n");
    };
    let Some(detail) = data.checks.first() else {
        return html(
            StatusCode::NOT_FOUND,
            page::not_found(&format!("No check named {name:?}.")),
        );
    };
    let subject = crate::vocabulary::Subject::Check(name.to_string()).to_string();
    let runs = store_read(shared, |s| async move {
        s.runs_for_subject(&subject, CHECK_PAGE_RUNS).await
    })
    .await;
    let secrets = crate::config::known_secrets();
    html(
        StatusCode::OK,
        page::check::render(&page::check::CheckPage {
            detail,
            predictions: &data.predictions,
            runs: runs.as_deref(),
            now_ms: crate::timefmt::now_ms(),
            secrets: &secrets,
        }),
    )
}

async fn run_page(shared: &HandlerContext, raw_id: &str) -> Response<Body> {
    let id = percent_encoding::percent_decode_str(raw_id)
        .decode_utf8_lossy()
        .into_owned();
    let not_found = || {
        html(
            StatusCode::NOT_FOUND,
            page::not_found(&format!("No run with id {id:?}.")),
        )
    };
    if id.is_empty() || id.len() > 128 {
        return not_found();
    }
    if shared.store.borrow().is_none() {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            "the state store is not open yet\n",
        );
    }
    let key = id.clone();
    match store_read(shared, |s| async move { s.run(&key).await }).await {
        Some(Some((run, decisions))) => {
            let secrets = crate::config::known_secrets();
            html(
                StatusCode::OK,
                page::run::render(&page::run::RunPage {
                    run: &run,
                    decisions: &decisions,
                    now_ms: crate::timefmt::now_ms(),
                    secrets: &secrets,
                    verification: super::runs::verification,
                }),
            )
        }
        Some(None) => not_found(),
        None => text(StatusCode::SERVICE_UNAVAILABLE, "state store read failed\n"),
    }
}

/// Default and largest page of `/api/v1/recoveries`.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;

async fn recoveries(shared: &HandlerContext, query: Option<&str>) -> Response<Body> {
    let params = parse_query(query.unwrap_or(""));
    let chain = params.get("chain").filter(|c| !c.is_empty()).cloned();
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<i64>() {
            Ok(n) if n > 0 => n.min(MAX_LIMIT),
            _ => return json_error(StatusCode::BAD_REQUEST, "limit must be a positive integer"),
        },
    };
    let Some(store) = shared.store.borrow().clone() else {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the state store is not open yet",
        );
    };
    match store.recent_attempts(chain.as_deref(), limit).await {
        Ok(mut attempts) => {
            // Stored scrubbed; scrubbed again with every secret known now.
            let secrets = crate::config::known_secrets();
            for a in &mut attempts {
                a.message = secrets.redact(&a.message);
                a.output = secrets.redact(&a.output);
            }
            let attempts: Vec<AttemptJson> = attempts.iter().map(Into::into).collect();
            json(StatusCode::OK, &serde_json::json!({ "attempts": attempts }))
        }
        Err(e) => {
            shared.metrics.store_error(e.operation());
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("state store: {e}"),
            )
        }
    }
}

async fn recovery_stats(shared: &HandlerContext) -> Response<Body> {
    let Some(store) = shared.store.borrow().clone() else {
        return json_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the state store is not open yet",
        );
    };
    match store.step_stats().await {
        Ok(steps) => {
            let steps: Vec<StepJson> = steps.iter().map(Into::into).collect();
            json(StatusCode::OK, &serde_json::json!({ "steps": steps }))
        }
        Err(e) => {
            shared.metrics.store_error(e.operation());
            json_error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("state store: {e}"),
            )
        }
    }
}
