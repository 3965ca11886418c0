//! `GET /runs/{id}`: one recovery run: its trigger, each decision and step on a time axis,
//! how the fix was verified, and the outcome.

use std::fmt::Write;

use super::svg::{outcome_status, run_axis};
use super::{badge, escape, path_segment};
use crate::config::Redactor;
use crate::status::Status;
use crate::store::{DecisionView, RunRow};
use crate::timefmt::rfc3339_ms;

pub struct RunPage<'a> {
    pub run: &'a RunRow,
    pub decisions: &'a [DecisionView],
    pub now_ms: i64,
    pub secrets: &'a Redactor,
    /// What a step's message or a decision's detail says about verification (the JSON API's
    /// reading, shared).
    pub verification: fn(&str) -> Option<bool>,
}

/// Each step's output tail, where it said anything: the evidence of what it did.
fn step_outputs(html: &mut String, page: &RunPage<'_>) {
    let shown: Vec<(&DecisionView, String)> = page
        .decisions
        .iter()
        .filter_map(|d| {
            let output = page.secrets.redact(&d.attempt.as_ref()?.output);
            (!output.trim().is_empty()).then_some((d, output))
        })
        .collect();
    if shown.is_empty() {
        return;
    }
    html.push_str("<h2>Output</h2>\n");
    for (d, output) in shown {
        let number = d.attempt.as_ref().map_or(0, |a| a.number);
        let _ = writeln!(
            html,
            r#"<h3>{} #{number}</h3><pre class="output">{}</pre>"#,
            escape(d.step.as_deref().unwrap_or("-")),
            escape(&output)
        );
    }
}

pub fn render(page: &RunPage<'_>) -> String {
    let r = page.run;
    let outcome = r.outcome.as_deref().unwrap_or("running");
    let st = outcome_status(r.outcome.as_deref());
    let mut html = String::with_capacity(8192 + page.decisions.len() * 512);
    let subject = subject_link(page);
    run_banner(&mut html, r, &subject, st, outcome);
    trigger_table(&mut html, page, &subject);
    let verified = decisions_section(&mut html, page);
    step_outputs(&mut html, page);
    verification_and_outcome(&mut html, r, verified, st, outcome);
    super::layout(&format!("medic: run {} {}", r.id, outcome), false, &html)
}

/// The run's subject, redacted; a check's links to its page.
fn subject_link(page: &RunPage<'_>) -> String {
    let r = page.run;
    let red = |t: &str| escape(&page.secrets.redact(t));
    match crate::vocabulary::Subject::check_of(&r.subject) {
        Some(check) => format!(
            r#"<a href="/checks/{}">{}</a>"#,
            path_segment(check),
            red(&r.subject)
        ),
        None => red(&r.subject),
    }
}

/// The run's chain and outcome as the page's word, then what started it, when, and how long
/// it took.
fn run_banner(html: &mut String, r: &RunRow, subject: &str, st: Status, outcome: &str) {
    let took = r
        .finished_ms
        .map(|f| {
            format!(
                " after {}",
                super::human_seconds((f - r.started_ms) as f64 / 1000.0)
            )
        })
        .unwrap_or_default();
    let _ = write!(
        html,
        r#"<div class="banner st-{st}" id="overall"><h1><span class="big">run {id}: {chain} <span class="badge st-{st}" id="outcome">{l} {outcome}</span></span></h1><p>{trigger} trigger on {subject}, started {started}{ended}{took}</p></div>"#,
        id = escape(&r.id),
        chain = escape(&r.chain),
        l = super::letter(st),
        outcome = escape(outcome),
        trigger = escape(&r.trigger),
        started = escape(&rfc3339_ms(r.started_ms)),
        ended = r
            .finished_ms
            .map(|f| format!(", ended {}", escape(&rfc3339_ms(f))))
            .unwrap_or_else(|| ", still running".into()),
    );
}

/// What started the run: kind, subject, target, owner, fencing token and the labels.
fn trigger_table(html: &mut String, page: &RunPage<'_>, subject: &str) {
    let r = page.run;
    let red = |t: &str| escape(&page.secrets.redact(t));
    let _ = write!(
        html,
        r#"<h2>Trigger</h2><div class="wrap"><table class="trigger"><tr><th>kind</th><td>{}</td></tr><tr><th>subject</th><td>{subject}</td></tr><tr><th>target</th><td class="msg">{}</td></tr><tr><th>owner</th><td>{}</td></tr><tr><th>fencing token</th><td>{}</td></tr>"#,
        escape(&r.trigger),
        red(&r.target),
        escape(&r.owner),
        r.fencing_token
            .map(|t| t.to_string())
            .unwrap_or_else(|| "-".into()),
    );
    for (k, v) in &r.labels {
        let _ = write!(
            html,
            r#"<tr class="label"><th>label {}</th><td class="msg">{}</td></tr>"#,
            escape(k),
            red(v)
        );
    }
    html.push_str("</table></div>\n");
}

/// The decisions on a time axis and in a table. Returns the last word on verification any
/// of them said.
fn decisions_section(html: &mut String, page: &RunPage<'_>) -> Option<bool> {
    html.push_str("<h2>Decisions and steps</h2>\n");
    if page.decisions.is_empty() {
        html.push_str("<p>No decision recorded.</p>\n");
        return None;
    }
    html.push_str(&run_axis(page.run, page.decisions, page.now_ms, 760.0));
    html.push_str("<div class=\"wrap\"><table class=\"decisions\"><thead><tr><th>at</th><th>step</th><th>decision</th><th>attempt</th><th>result</th><th>message</th><th>verified</th></tr></thead><tbody>\n");
    let mut verified = None;
    for d in page.decisions {
        let v = decision_row(html, page, d);
        if v.is_some() {
            verified = v;
        }
    }
    html.push_str("</tbody></table></div>\n");
    verified
}

/// One decision's row; returns what its detail or message says about verification.
fn decision_row(html: &mut String, page: &RunPage<'_>, d: &DecisionView) -> Option<bool> {
    let a = d.attempt.as_ref();
    let message = a.map(|a| page.secrets.redact(&a.message));
    let detail = d.detail.as_deref().map(|t| page.secrets.redact(t));
    let v = detail
        .as_deref()
        .and_then(page.verification)
        .or_else(|| message.as_deref().and_then(page.verification));
    let mut why = d.reason.as_deref().map(escape).unwrap_or_default();
    if let Some(until) = d.until_ms {
        let _ = write!(why, " until {}", escape(&rfc3339_ms(until)));
    }
    let _ = writeln!(
        html,
        r#"<tr class="decision"><td>{at}</td><td>{step}</td><td>{kind}{why}</td><td>{attempt}</td><td>{result}</td><td class="msg">{msg}{detail}</td><td>{v}</td></tr>"#,
        at = escape(&rfc3339_ms(d.at_ms)),
        step = escape(d.step.as_deref().unwrap_or("-")),
        kind = d.kind.as_str(),
        why = if why.is_empty() {
            String::new()
        } else {
            format!(": {why}")
        },
        attempt = a
            .map(|a| format!(
                "#{}{}{}",
                a.number,
                a.exit_code
                    .map(|c| format!(", exit {c}"))
                    .unwrap_or_default(),
                a.duration_seconds
                    .map(|s| format!(", {s:.2}s"))
                    .unwrap_or_default()
            ))
            .unwrap_or_default(),
        result = a
            .map(|a| escape(a.result.as_deref().unwrap_or("running")))
            .unwrap_or_default(),
        msg = message.as_deref().map(escape).unwrap_or_default(),
        detail = detail
            .as_deref()
            .map(|t| format!(r#" <span class="meta">{}</span>"#, escape(t)))
            .unwrap_or_default(),
        v = match v {
            Some(true) => "OK yes",
            Some(false) => "no",
            None => "",
        },
    );
    v
}

/// Whether the fix was verified, and how the run ended.
fn verification_and_outcome(
    html: &mut String,
    r: &RunRow,
    verified: Option<bool>,
    st: Status,
    outcome: &str,
) {
    let _ = write!(
        html,
        r#"<h2>Verification and outcome</h2><p id="verification">{}</p><p>Outcome: {}</p>"#,
        match verified {
            Some(true) => "The fix was verified: the check was healthy again after the step.",
            Some(false) => "The fix was not verified.",
            None => "No verification recorded.",
        },
        match r.outcome.as_deref() {
            None => badge(Status::Warning).replace("warning", "running"),
            Some(_) => format!(
                r#"<span class="badge st-{st}">{} {}</span>"#,
                super::letter(st),
                escape(outcome)
            ),
        }
    );
}
