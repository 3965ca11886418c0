//! The human status pages: server-rendered HTML with inline SVG, no script, no external asset;
//! everything from checks, alerts and config escaped. `/` ([`index`]), `/checks/{name}`
//! ([`check`]) and `/runs/{id}` ([`run`]); the pictures are drawn in [`svg`].
//!
//! Status is never told by colour alone: every coloured thing carries its word, a letter or a
//! shape (a strip's marks are taller the worse the probe was) and a `<title>`.

pub mod check;
pub mod index;
pub mod run;
pub mod svg;

use std::cmp::Ordering;

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

/// A path segment for a link (`/checks/{name}`), escaped for an attribute too.
pub fn path_segment(text: &str) -> String {
    escape(&crate::percent::encode(text))
}

/// One letter per status, drawn beside or on the colour.
pub fn letter(status: Status) -> &'static str {
    match status {
        Status::Healthy => "OK",
        Status::Warning => "W",
        Status::Critical => "C",
        Status::Unknown => "?",
    }
}

/// Critical, unknown, warning, healthy: the order failing checks are listed in.
pub fn severity_rank(status: Status) -> u8 {
    match status {
        Status::Critical => 0,
        Status::Unknown => 1,
        Status::Warning => 2,
        Status::Healthy => 3,
    }
}

/// A status word in its colour, with its letter: `<span class="badge st-critical">`.
pub fn badge(status: Status) -> String {
    format!(
        r#"<span class="badge st-{status}">{} {status}</span>"#,
        letter(status)
    )
}

/// Natural order: runs of digits compare as numbers, so `bulk2` sorts before `bulk10`. Ties
/// (`a01` and `a1`) fall back to plain byte order so the order is total.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let n = x.iter().take_while(|c| c.is_ascii_digit()).count();
                let m = y.iter().take_while(|c| c.is_ascii_digit()).count();
                let (dx, dy) = (&x[..n], &y[..m]);
                // Compare as numbers of any length: strip leading zeros, then longer is
                // larger, then digit by digit.
                let strip = |d: &[u8]| -> usize { d.iter().take_while(|c| **c == b'0').count() };
                let (tx, ty) = (&dx[strip(dx)..], &dy[strip(dy)..]);
                let ord = tx.len().cmp(&ty.len()).then_with(|| tx.cmp(ty));
                if ord != Ordering::Equal {
                    return ord;
                }
                x = &x[n..];
                y = &y[m..];
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(d);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

/// `3h 12m`, `45s`, `never` (+Inf): time to breach for people.
pub fn human_seconds(seconds: f64) -> String {
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

/// A measurement for people: whole when large or whole, four decimals otherwise.
pub fn number(v: f64) -> String {
    if v.abs() >= 1000.0 || v == v.trunc() {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
    }
}

/// Seconds as a latency: `12 ms`, `1.20 s`.
pub fn latency(seconds: f64) -> String {
    if seconds < 1.0 {
        format!("{:.1} ms", seconds * 1000.0)
    } else {
        format!("{seconds:.2} s")
    }
}

/// `2024-05-01T12:00:00.123Z` to `12:00:00`: what fits beside a mark.
pub fn clock(rfc3339: &str) -> &str {
    rfc3339.get(11..19).unwrap_or(rfc3339)
}

const STYLE: &str = r#"
:root{--fg:#1f2328;--bg:#fff;--muted:#57606a;--line:#d0d7de;--card:#f6f8fa;
--ok:#1a7f37;--warn:#9a6700;--crit:#cf222e;--unk:#6e7781;--accent:#0969da;--band:#0969da33}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--bg:#0d1117;--muted:#8d96a0;--line:#30363d;
--card:#161b22;--ok:#3fb950;--warn:#d29922;--crit:#f85149;--unk:#8b949e;--accent:#58a6ff;--band:#58a6ff40}}
*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:.75rem;color:var(--fg);background:var(--bg);line-height:1.35}
a{color:var(--accent)}
h1{font-size:1.4rem;margin:.2rem 0} h2{font-size:1.1rem;margin:1rem 0 .4rem;border-bottom:1px solid var(--line)}
.banner{border-radius:6px;padding:.6rem .8rem;margin:.4rem 0;border-left:8px solid var(--unk);background:var(--card)}
.banner.st-healthy{border-color:var(--ok)} .banner.st-warning{border-color:var(--warn)}
.banner.st-critical{border-color:var(--crit)} .banner.st-unknown{border-color:var(--unk)}
.banner.notice{border-color:var(--warn)}
.big{font-size:1.3rem;font-weight:700}
.badge{font-weight:700;white-space:nowrap}
.st-healthy .badge,.badge.st-healthy{color:var(--ok)} .badge.st-warning{color:var(--warn)}
.badge.st-critical{color:var(--crit)} .badge.st-unknown{color:var(--unk)}
svg .st-healthy{fill:var(--ok)} svg .st-warning{fill:var(--warn)} svg .st-critical{fill:var(--crit)} svg .st-unknown{fill:var(--unk)}
svg text{fill:var(--muted);font-size:10px;font-family:system-ui,sans-serif}
svg .line{fill:none;stroke:var(--accent);stroke-width:1.5}
svg .p99{stroke:var(--warn);stroke-dasharray:3 2;stroke-width:1}
svg .p50{stroke:var(--muted);stroke-dasharray:1 2;stroke-width:1}
svg .band{fill:var(--band);stroke:none}
svg .forecast{fill:none;stroke:var(--accent);stroke-width:1.5;stroke-dasharray:5 3}
svg .threshold{stroke:var(--crit);stroke-width:1.5;stroke-dasharray:6 3}
svg .breach{fill:var(--crit);stroke:var(--bg);stroke-width:1}
svg .axis{stroke:var(--line);stroke-width:1}
svg .now{stroke:var(--muted);stroke-width:1;stroke-dasharray:2 2}
.checks{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:.5rem}
.check{background:var(--card);border:1px solid var(--line);border-radius:6px;padding:.45rem .6rem;min-width:0}
.check.failing{border-left:6px solid var(--crit)} .check.failing.st-warning{border-left-color:var(--warn)}
.check.failing.st-unknown{border-left-color:var(--unk)}
.check header{display:flex;justify-content:space-between;gap:.5rem;align-items:baseline}
.check .name{font-weight:600;overflow-wrap:anywhere}
.msg{overflow-wrap:anywhere;color:var(--fg);font-size:.9rem;margin:.15rem 0}
.output{white-space:pre-wrap;overflow-wrap:anywhere;font-size:.8rem;max-height:24rem;overflow:auto;border:1px solid var(--line);padding:.4rem}
.meta{color:var(--muted);font-size:.8rem}
.pics{display:flex;flex-wrap:wrap;gap:.3rem .8rem;align-items:center}
.preds{display:grid;grid-template-columns:repeat(auto-fill,minmax(360px,1fr));gap:.5rem}
svg{max-width:100%;height:auto;display:block}
table{border-collapse:collapse;width:100%;font-size:.9rem}
td,th{text-align:left;padding:.25rem .4rem;border-bottom:1px solid var(--line);vertical-align:top}
.wrap{overflow-x:auto}
form{display:flex;flex-wrap:wrap;gap:.4rem;align-items:center;margin:.4rem 0}
input,select,button{font:inherit;padding:.2rem .4rem;color:var(--fg);background:var(--card);border:1px solid var(--line);border-radius:4px}
nav.top{display:flex;flex-wrap:wrap;gap:.2rem 1rem;font-size:.85rem}
.pager{display:flex;gap:1rem;margin:.5rem 0}
@media (max-width:600px){body{padding:.45rem;font-size:14px}.checks,.preds{grid-template-columns:1fr}}
"#;

/// The page around `body`: head, style, the links every page has.
pub fn layout(title: &str, refresh: bool, body: &str) -> String {
    let mut html = String::with_capacity(body.len() + STYLE.len() + 1024);
    html.push_str("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    html.push_str(
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"color-scheme\" content=\"light dark\">\n",
    );
    if refresh {
        html.push_str("<meta http-equiv=\"refresh\" content=\"10\">\n");
    }
    html.push_str("<title>");
    html.push_str(&escape(title));
    html.push_str("</title>\n<style>");
    html.push_str(STYLE);
    html.push_str("</style></head><body>\n");
    html.push_str(
        "<nav class=\"top\"><a href=\"/\">status</a><a href=\"/metrics\">/metrics</a>\
         <a href=\"/api/v1/health\">/api/v1/health</a><a href=\"/api/v1/predictions\">/api/v1/predictions</a>\
         <a href=\"/api/v1/runs\">/api/v1/runs</a></nav>\n",
    );
    html.push_str(body);
    html.push_str("</body></html>\n");
    html
}

/// The 404 page: what was asked for, escaped.
pub fn not_found(what: &str) -> String {
    layout(
        "medic: not found",
        false,
        &format!(
            "<h1>Not found</h1><p>{}</p><p><a href=\"/\">Back to the status page</a></p>\n",
            escape(what)
        ),
    )
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

    #[test]
    fn natural_order_compares_digit_runs_as_numbers() {
        let mut names = vec!["bulk10", "bulk2", "bulk1", "bulk100", "api", "bulk02", "b"];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            ["api", "b", "bulk1", "bulk02", "bulk2", "bulk10", "bulk100"]
        );
        assert_eq!(natural_cmp("a2b10", "a2b9"), Ordering::Greater);
        assert_eq!(natural_cmp("x", "x"), Ordering::Equal);
        assert_eq!(natural_cmp("x", "x1"), Ordering::Less);
        // Numbers longer than any integer type still compare.
        assert_eq!(
            natural_cmp("n99999999999999999999999", "n100000000000000000000000"),
            Ordering::Less
        );
        assert_eq!(natural_cmp("é2", "é10"), Ordering::Less);
    }

    #[test]
    fn clock_takes_the_time_of_day() {
        assert_eq!(clock("2024-05-01T12:03:04.123Z"), "12:03:04");
        assert_eq!(clock("odd"), "odd");
    }
}
