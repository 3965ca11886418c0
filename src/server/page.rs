//! The human status page: server-rendered HTML, no scripts, everything from checks escaped.

use std::fmt::Write;

use crate::state::HealthReport;
use crate::status::Status;

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

pub fn render(report: &HealthReport) -> String {
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
nav a{{margin-right:1rem}}
</style></head><body>
<h1>medic <span class="s" style="color:{c}">{overall}</span></h1>
<p>{h} healthy, {w} warning, {cr} critical, {u} unknown</p>
<nav><a href="/metrics">/metrics</a><a href="/api/v1/health">/api/v1/health</a></nav>
<h2>Checks</h2>
<table><thead><tr><th>check</th><th>status</th><th>message</th><th>last run</th><th>latency</th></tr></thead><tbody>
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
            r#"<tr><td><a href="/api/v1/checks/{link}">{name}</a></td><td class="s" style="color:{c}">{status}</td><td class="msg">{message}</td><td>{last}</td><td>{latency}</td></tr>"#,
            link = escape(
                &percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
                    .to_string()
            ),
            name = escape(name),
            c = color(check.status),
            status = check.status,
            message = escape(&check.message),
            last = escape(check.last_run.as_deref().unwrap_or("never")),
            latency = check
                .duration_seconds
                .map(|d| format!("{:.3}s", d))
                .unwrap_or_default(),
        );
    }
    html.push_str("</tbody></table>\n</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<script>alert("x&y")</script>'"#),
            "&lt;script&gt;alert(&quot;x&amp;y&quot;)&lt;/script&gt;&#39;"
        );
    }
}
