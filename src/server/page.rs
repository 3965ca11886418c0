//! The human status page: server-rendered HTML, no scripts, everything from checks escaped.

use std::fmt::Write;

use crate::predict::Prediction;
use crate::state::HealthReport;
use crate::status::Status;
use crate::store::AttemptRecord;

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn color(status: Status) -> &'static str {
    match status {
        Status::Healthy => "#1a7f37",
        Status::Warning => "#9a6700",
        Status::Critical => "#cf222e",
        Status::Unknown => "#57606a",
    }
}

/// `3h 12m`, `45s`, `never` (+Inf): time to breach for people.
fn human_seconds(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "not within max_horizon".into();
    }
    let s = seconds.max(0.0) as u64;
    match s {
        0 => "now".into(),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

fn number(v: f64) -> String {
    if v.abs() >= 1000.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
    }
}

pub fn render(
    report: &HealthReport,
    predictions: &[Prediction],
    attempts: Option<&[AttemptRecord]>,
) -> String {
    let mut html = String::with_capacity(4096 + report.checks.len() * 256);
    let _ = write!(
        html,
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="10">
<title>medic: {overall}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:1rem;color:#1f2328}}
table{{border-collapse:collapse;width:100%}}
td,th{{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #d0d7de;vertical-align:top}}
.s{{font-weight:600}} .msg{{word-break:break-word}}
nav{{display:flex;flex-wrap:wrap;gap:.3rem 1rem}}
.wrap{{overflow-x:auto}}
@media (max-width:600px){{td,th{{padding:.25rem}} body{{margin:.5rem;font-size:14px}} .wrap{{font-size:13px}}}}
</style></head><body>
<h1>medic <span class="s" style="color:{c}">{overall}</span></h1>
<p>{h} healthy, {w} warning, {cr} critical, {u} unknown</p>
<nav><a href="/metrics">/metrics</a><a href="/api/v1/health">/api/v1/health</a><a href="/api/v1/predictions">/api/v1/predictions</a><a href="/api/v1/recoveries">/api/v1/recoveries</a></nav>
<h2>Checks</h2>
<div class="wrap"><table><thead><tr><th>check</th><th>status</th><th>message</th><th>last run</th><th>latency</th></tr></thead><tbody>
"#,
        overall = report.status,
        c = color(report.status),
        h = report.summary.healthy,
        w = report.summary.warning,
        cr = report.summary.critical,
        u = report.summary.unknown,
    );
    for (name, check) in &report.checks {
        let _ = writeln!(
            html,
            r#"<tr><td><a href="/api/v1/checks/{link}">{name}</a></td><td class="s" style="color:{c}">{status}{reason}</td><td class="msg">{message}</td><td>{last}</td><td>{latency}</td></tr>"#,
            link = escape(
                &percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
            ),
            name = escape(name),
            c = color(check.status),
            status = check.status,
            reason = check.reason.map(|r| format!(" ({r})")).unwrap_or_default(),
            message = escape(&check.message),
            last = escape(check.last_run.as_deref().unwrap_or("never")),
            latency = check
                .duration_seconds
                .map(|d| format!("{:.3}s", d))
                .unwrap_or_default(),
        );
    }
    html.push_str("</tbody></table></div>\n");

    html.push_str("<h2>Predictions</h2>\n");
    if predictions.is_empty() {
        html.push_str("<p>No prediction has a value yet.</p>\n");
    } else {
        html.push_str("<div class=\"wrap\"><table><thead><tr><th>prediction</th><th>latest</th><th>forecast</th><th>threshold</th><th>breach in</th><th>anomaly</th></tr></thead><tbody>\n");
        for p in predictions {
            let forecasts: Vec<String> = p
                .forecasts
                .iter()
                .map(|(h, v)| {
                    format!(
                        "{h}: {}",
                        v.map(number).unwrap_or_else(|| "warming up".into())
                    )
                })
                .collect();
            let _ =
                writeln!(
                html,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td></tr>",
                escape(&p.name),
                number(p.value),
                escape(&forecasts.join(", ")),
                p.threshold.map(number).unwrap_or_else(|| "-".into()),
                p.breach_seconds.map(human_seconds).unwrap_or_else(|| "-".into()),
                p.anomaly_score,
            );
        }
        html.push_str("</tbody></table></div>\n");
    }

    html.push_str("<h2>Recent recoveries</h2>\n");
    match attempts {
        None => html.push_str("<p>The state store is not open yet.</p>\n"),
        Some([]) => html.push_str("<p>No recovery has run.</p>\n"),
        Some(list) => {
            html.push_str("<div class=\"wrap\"><table><thead><tr><th>started</th><th>chain</th><th>step</th><th>target</th><th>result</th><th>message</th></tr></thead><tbody>\n");
            for a in list {
                let _ = writeln!(
                    html,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"msg\">{}</td></tr>",
                    escape(&a.started_at),
                    escape(&a.chain),
                    escape(&a.step),
                    escape(&a.target),
                    escape(a.result.as_deref().unwrap_or("running")),
                    escape(&a.message),
                );
            }
            html.push_str("</tbody></table></div>\n");
        }
    }
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breach_times_read_like_durations() {
        assert_eq!(human_seconds(f64::INFINITY), "not within max_horizon");
        assert_eq!(human_seconds(0.0), "now");
        assert_eq!(human_seconds(45.2), "45s");
        assert_eq!(human_seconds(3725.0), "1h 2m");
        assert_eq!(human_seconds(90_000.0), "1d 1h");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<script>alert("x&y")</script>'"#),
            "&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt;&#39;"
        );
    }
}
