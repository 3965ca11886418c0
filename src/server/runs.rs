//! The run audit over HTTP: `GET /api/v1/runs?chain=&limit=` (newest first) and
//! `GET /api/v1/runs/{id}` (the run and each decision it made, in order). The wire types are
//! built here from the store's rows; times are RFC 3339, and anything a program or a server
//! said passes through the config's secrets redactor before it leaves.

use hyper::StatusCode;
use serde::Serialize;
use std::collections::BTreeMap;

use super::respond::{json, json_error, parse_query, Body};
use super::HandlerContext;
use crate::config::{known_secrets, Redactor};
use crate::store::{DecisionView, RunRow};
use crate::timefmt::rfc3339_ms;

/// Default and largest page of `/api/v1/runs`, as for `/api/v1/recoveries`.
const DEFAULT_LIMIT: i64 = 100;
const MAX_LIMIT: i64 = 1000;
/// Run ids are medic's own (`{hex time}-{hex}`); anything much longer is no run.
const MAX_ID_LEN: usize = 128;

#[derive(Debug, Serialize, PartialEq)]
struct TriggerWire {
    /// `check`, `alert` or `manual`.
    kind: String,
    /// What the run heals (one run per chain and subject at a time).
    subject: String,
    /// The check, or the alert's fingerprint and start.
    target: String,
    labels: BTreeMap<String, String>,
}

#[derive(Debug, Serialize, PartialEq)]
struct RunWire {
    id: String,
    chain: String,
    trigger: TriggerWire,
    started_at: String,
    /// Null while the run is in progress.
    ended_at: Option<String>,
    /// `recovered`, `exhausted`, `cancelled`, `unavailable` (`shadow` in shadow mode); null
    /// while running.
    outcome: Option<String>,
}

#[derive(Debug, Serialize, PartialEq)]
struct RunDetailWire {
    #[serde(flatten)]
    run: RunWire,
    fencing_token: Option<i64>,
    /// The medic (host and process) that ran it.
    owner: String,
    decisions: Vec<DecisionWire>,
}

/// One decision; fields that do not apply to its kind are null.
#[derive(Debug, Serialize, PartialEq)]
struct DecisionWire {
    at: String,
    /// Null for a hold: no step was chosen yet.
    step: Option<String>,
    /// `ran`, `skipped`, `held` or `shadow`.
    decision: &'static str,
    /// Why it was skipped or held.
    reason: Option<String>,
    /// For a cooldown: when it ends.
    until: Option<String>,
    /// The how-manieth attempt of this step on the run's subject.
    attempt: Option<i64>,
    /// The attempt's record in `/api/v1/recoveries`.
    attempt_id: Option<i64>,
    result: Option<String>,
    message: Option<String>,
    exit_code: Option<i64>,
    duration_seconds: Option<f64>,
    ended_at: Option<String>,
    /// Whether the check confirmed the fix: true, false (the action worked, the check did not
    /// turn healthy), null when nothing was verified.
    verified: Option<bool>,
    detail: Option<String>,
    /// The tail of what the step's action printed or answered (at most 4 KiB).
    output: Option<String>,
}

fn run_wire(run: &RunRow, secrets: &Redactor) -> RunWire {
    RunWire {
        id: run.id.clone(),
        chain: run.chain.clone(),
        trigger: TriggerWire {
            kind: run.trigger.clone(),
            subject: run.subject.clone(),
            target: run.target.clone(),
            // Alert labels are data, not secrets; a label that happens to hold one still
            // does not leave.
            labels: run
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), secrets.redact(v)))
                .collect(),
        },
        started_at: rfc3339_ms(run.started_ms),
        ended_at: run.finished_ms.map(rfc3339_ms),
        outcome: run.outcome.clone(),
    }
}

fn decision_wire(d: &DecisionView, secrets: &Redactor) -> DecisionWire {
    let a = d.attempt.as_ref();
    let message = a.map(|a| secrets.redact(&a.message));
    let detail = d.detail.as_deref().map(|t| secrets.redact(t));
    DecisionWire {
        at: rfc3339_ms(d.at_ms),
        step: d.step.clone(),
        decision: d.kind.as_str(),
        reason: d.reason.clone(),
        until: d.until_ms.map(rfc3339_ms),
        attempt: a.map(|a| a.number),
        attempt_id: a.map(|a| a.id),
        result: a.and_then(|a| a.result.clone()),
        exit_code: a.and_then(|a| a.exit_code),
        duration_seconds: a.and_then(|a| a.duration_seconds),
        ended_at: a.and_then(|a| a.finished_ms).map(rfc3339_ms),
        verified: detail
            .as_deref()
            .and_then(verification)
            .or_else(|| message.as_deref().and_then(verification)),
        message,
        detail,
        output: a.map(|a| secrets.redact(&a.output)),
    }
}

/// What a step's record says about verification: the engine ends the message of an action that
/// worked with "; verified: CHECK healthy" or "; not verified: WHY" (a decision's detail may
/// say the same, first).
pub(super) fn verification(text: &str) -> Option<bool> {
    if text.starts_with("not verified") || text.contains("; not verified") {
        Some(false)
    } else if text.starts_with("verified") || text.contains("; verified") {
        Some(true)
    } else {
        None
    }
}

/// `limit=`: a positive integer, at most [`MAX_LIMIT`] (larger asks get that many).
fn parse_limit(raw: Option<&str>) -> Result<i64, &'static str> {
    match raw {
        None => Ok(DEFAULT_LIMIT),
        Some(l) => match l.parse::<i64>() {
            Ok(n) if n > 0 => Ok(n.min(MAX_LIMIT)),
            _ => Err("limit must be a positive integer"),
        },
    }
}

fn store_unavailable(
    shared: &HandlerContext,
    e: &crate::store::StoreError,
) -> hyper::Response<Body> {
    shared.metrics.store_error(e.operation());
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("state store: {e}"),
    )
}

fn no_store() -> hyper::Response<Body> {
    json_error(
        StatusCode::SERVICE_UNAVAILABLE,
        "the state store is not open yet",
    )
}

/// `GET /api/v1/runs?chain=&limit=`.
pub async fn list(shared: &HandlerContext, query: Option<&str>) -> hyper::Response<Body> {
    let params = parse_query(query.unwrap_or(""));
    let chain = params.get("chain").filter(|c| !c.is_empty()).cloned();
    let limit = match parse_limit(params.get("limit").map(String::as_str)) {
        Ok(n) => n,
        Err(why) => return json_error(StatusCode::BAD_REQUEST, why),
    };
    let Some(store) = shared.store.borrow().clone() else {
        return no_store();
    };
    match store.runs(chain.as_deref(), limit).await {
        Ok(runs) => {
            let secrets = known_secrets();
            let runs: Vec<RunWire> = runs.iter().map(|r| run_wire(r, &secrets)).collect();
            json(StatusCode::OK, &serde_json::json!({ "runs": runs }))
        }
        Err(e) => store_unavailable(shared, &e),
    }
}

/// `GET /api/v1/runs/{id}`; 404 for an unknown id.
pub async fn one(shared: &HandlerContext, raw_id: &str) -> hyper::Response<Body> {
    let id = percent_encoding::percent_decode_str(raw_id).decode_utf8_lossy();
    let not_found = || json_error(StatusCode::NOT_FOUND, &format!("no run with id {id:?}"));
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return not_found();
    }
    let Some(store) = shared.store.borrow().clone() else {
        return no_store();
    };
    match store.run(&id).await {
        Ok(Some((run, decisions))) => {
            let secrets = known_secrets();
            let detail = RunDetailWire {
                run: run_wire(&run, &secrets),
                fencing_token: run.fencing_token,
                owner: run.owner.clone(),
                decisions: decisions
                    .iter()
                    .map(|d| decision_wire(d, &secrets))
                    .collect(),
            };
            json(StatusCode::OK, &detail)
        }
        Ok(None) => not_found(),
        Err(e) => store_unavailable(shared, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AttemptView, DecisionKind};

    #[test]
    fn limits_default_cap_and_refuse_garbage() {
        assert_eq!(parse_limit(None), Ok(100));
        assert_eq!(parse_limit(Some("7")), Ok(7));
        assert_eq!(parse_limit(Some("5000")), Ok(1000));
        for bad in ["abc", "0", "-1", "", "1.5", "99999999999999999999"] {
            assert!(parse_limit(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn verification_is_read_from_the_records_wording() {
        assert_eq!(
            verification("exit code 0; verified: web healthy"),
            Some(true)
        );
        assert_eq!(
            verification("exit code 0; not verified: web still critical after 5s"),
            Some(false)
        );
        assert_eq!(verification("verified: web healthy"), Some(true));
        assert_eq!(verification("exit code 1"), None);
        assert_eq!(verification("exit code 0; the alert resolved"), None);
    }

    #[test]
    fn decisions_show_null_where_not_applicable_and_no_secrets() {
        let secrets = Redactor::new(["hunter2-very-secret".to_string()]);
        let skipped = DecisionView {
            at_ms: 1000,
            step: Some("restart".into()),
            kind: DecisionKind::Skipped,
            reason: Some("cooldown".into()),
            until_ms: Some(61_000),
            detail: None,
            attempt: None,
        };
        let wire = serde_json::to_value(decision_wire(&skipped, &secrets)).unwrap();
        assert_eq!(wire["decision"], "skipped");
        assert_eq!(wire["reason"], "cooldown");
        assert_eq!(wire["at"], "1970-01-01T00:00:01.000Z");
        assert_eq!(wire["until"], "1970-01-01T00:01:01.000Z");
        for absent in ["attempt", "result", "message", "exit_code", "verified"] {
            assert!(wire[absent].is_null(), "{absent}: {wire}");
        }
        let ran = DecisionView {
            kind: DecisionKind::Ran,
            reason: None,
            until_ms: None,
            attempt: Some(AttemptView {
                id: 9,
                number: 2,
                result: Some("success".into()),
                message: "exit code 0 (token hunter2-very-secret); verified: web healthy".into(),
                exit_code: Some(0),
                duration_seconds: Some(0.25),
                started_ms: 1000,
                finished_ms: Some(1250),
                output: "restarted\npassword=hunter2-very-secret\n".into(),
            }),
            ..skipped
        };
        let wire = serde_json::to_value(decision_wire(&ran, &secrets)).unwrap();
        assert_eq!(wire["decision"], "ran");
        assert_eq!(
            (wire["attempt"].clone(), wire["attempt_id"].clone()),
            (2.into(), 9.into())
        );
        assert_eq!(wire["exit_code"], 0);
        assert_eq!(wire["verified"], true);
        assert!(wire["until"].is_null());
        assert!(
            wire["output"].as_str().unwrap().starts_with("restarted\n"),
            "{wire}"
        );
        assert!(!wire.to_string().contains("hunter2"), "{wire}");
    }
}
