//! `GET /checks/{name}`: one check over its whole trend window: the strip and latency larger,
//! the trend's numbers, every probe the history keeps with its message, its predictions and
//! its runs.

use std::fmt::Write;

use super::index::{latency_text, prediction_card, runs_table, since_text, uptime_text};
use super::svg::{runs_timeline, sparkline, strip};
use super::{badge, escape, latency};
use crate::config::Redactor;
use crate::predict::Prediction;
use crate::state::CheckDetail;
use crate::store::RunRow;

pub struct CheckPage<'a> {
    pub detail: &'a CheckDetail,
    pub predictions: &'a [(Prediction, Vec<(f64, f64)>)],
    /// `None`: the state store is not open yet.
    pub runs: Option<&'a [RunRow]>,
    pub now_ms: i64,
    pub secrets: &'a Redactor,
}

pub fn render(page: &CheckPage<'_>) -> String {
    let d = page.detail;
    let mut html = String::with_capacity(16 * 1024 + d.history.len() * 400);
    check_banner(&mut html, page);
    let _ = write!(
        html,
        "<h2>Last {} probes</h2>{}",
        d.history.len(),
        strip(&d.history, true, true)
    );
    latency_section(&mut html, d);
    predictions_section(&mut html, page);
    runs_section(&mut html, page);
    history_table(&mut html, page);
    metadata_table(&mut html, page);
    super::layout(
        &format!("medic: {} {}", d.name, d.summary.status),
        true,
        &html,
    )
}

/// The check's status as the page's word, its message, and how it is probed and has fared.
fn check_banner(html: &mut String, page: &CheckPage<'_>) {
    let d = page.detail;
    let s = &d.summary;
    let _ = write!(
        html,
        r#"<div class="banner st-{st}" id="overall"><h1><span class="big">{name} {badge}</span></h1><p class="msg">{msg}{reason}</p><p class="meta">{kind} check every {iv}s, timeout {to}s{enabled} · {since}{uptime} · {lat}</p></div>"#,
        st = s.status,
        name = escape(&d.name),
        badge = badge(s.status),
        msg = escape(&page.secrets.redact(&s.message)),
        reason = s
            .reason
            .map(|r| format!(r#" <span class="meta">(reason: {r})</span>"#))
            .unwrap_or_default(),
        kind = s.kind,
        iv = d.interval_seconds,
        to = d.timeout_seconds,
        enabled = if s.enabled { "" } else { " · disabled" },
        since = since_text(&d.history)
            .map(|t| format!("{t} · "))
            .unwrap_or_default(),
        uptime = uptime_text(d),
        lat = latency_text(d),
    );
}

/// The latency chart, then the last hour's counts and quantiles.
fn latency_section(html: &mut String, d: &CheckDetail) {
    html.push_str("<h2>Latency</h2>");
    html.push_str(&sparkline(
        &d.history,
        d.trend.latency_p50_seconds,
        d.trend.latency_p99_seconds,
        760.0,
        90.0,
    ));
    let t = &d.trend;
    let q = |v: Option<f64>| v.map(latency).unwrap_or_else(|| "-".into());
    let _ = write!(
        html,
        r#"<p class="meta">dotted: p50, dashed: p99 over the last hour</p><div class="wrap"><table class="trend"><tr><th>last hour</th><th>probes</th><th>healthy</th><th>warning</th><th>critical</th><th>unknown</th><th>p50</th><th>p90</th><th>p99</th><th>max</th></tr><tr><td>{up}</td><td>{runs}</td><td>{h}</td><td>{w}</td><td>{c}</td><td>{u}</td><td>{p50}</td><td>{p90}</td><td>{p99}</td><td>{max}</td></tr></table></div>"#,
        up = t
            .success_ratio
            .map(|r| format!("{:.2} %", r * 100.0))
            .unwrap_or_else(|| "-".into()),
        runs = t.runs,
        h = t.status_distribution.healthy,
        w = t.status_distribution.warning,
        c = t.status_distribution.critical,
        u = t.status_distribution.unknown,
        p50 = q(t.latency_p50_seconds),
        p90 = q(t.latency_p90_seconds),
        p99 = q(t.latency_p99_seconds),
        max = q(t.latency_max_seconds),
    );
}

/// This check's predictions, when it has any.
fn predictions_section(html: &mut String, page: &CheckPage<'_>) {
    let preds: Vec<_> = page
        .predictions
        .iter()
        .filter(|(p, _)| p.check == page.detail.name)
        .collect();
    if !preds.is_empty() {
        html.push_str("<h2>Predictions</h2><div class=\"preds\">\n");
        for (p, series) in preds {
            prediction_card(html, p, series);
        }
        html.push_str("</div>\n");
    }
}

/// This check's recovery runs: a timeline, then a table.
fn runs_section(html: &mut String, page: &CheckPage<'_>) {
    html.push_str("<h2>Runs</h2>\n");
    match page.runs {
        None => html.push_str("<p>The state store is not open yet.</p>\n"),
        Some([]) => html.push_str("<p>medic has not run a recovery for this check.</p>\n"),
        Some(runs) => {
            html.push_str(&runs_timeline(runs, page.now_ms, 720.0));
            runs_table(html, runs, page.secrets);
        }
    }
}

/// Every probe the history keeps, newest first, the latest with its failure reason.
fn history_table(html: &mut String, page: &CheckPage<'_>) {
    let d = page.detail;
    html.push_str("<h2>History</h2><p class=\"meta\">newest first; reason: why the latest probe failed, when it could tell</p><div class=\"wrap\"><table class=\"history\"><thead><tr><th>time</th><th>status</th><th>latency</th><th>message</th></tr></thead><tbody>\n");
    for (i, h) in d.history.iter().enumerate() {
        let reason = match (i, d.summary.reason) {
            (0, Some(r)) => format!(r#" <span class="meta">(reason: {r})</span>"#),
            _ => String::new(),
        };
        let _ = writeln!(
            html,
            r#"<tr class="probe"><td>{}</td><td>{}</td><td>{}</td><td class="msg">{}{reason}</td></tr>"#,
            escape(&h.time),
            badge(h.status),
            latency(h.duration_seconds),
            escape(&page.secrets.redact(&h.message)),
        );
    }
    html.push_str("</tbody></table></div>\n");
}

/// What the latest probe reported beside its status, when it reported anything.
fn metadata_table(html: &mut String, page: &CheckPage<'_>) {
    let d = page.detail;
    if d.metadata.is_empty() {
        return;
    }
    html.push_str("<h2>Latest metadata</h2><div class=\"wrap\"><table>");
    for (k, v) in &d.metadata {
        let _ = write!(
            html,
            "<tr><th>{}</th><td class=\"msg\">{}</td></tr>",
            escape(k),
            escape(&page.secrets.redact(&v.to_string()))
        );
    }
    html.push_str("</table></div>\n");
}
