//! `GET /`: the overall status and what holds recovery back as a banner, the failing checks
//! first with their pictures, predictions with charts, recent runs on a timeline. Filters
//! (`?status=`, `?q=`) and pages (`?page=`) keep it bounded however many checks there are.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write;

use super::svg::{outcome_status, prediction_chart, runs_timeline, sparkline, strip};
use super::{badge, clock, escape, human_seconds, latency, letter, natural_cmp, number};
use super::{path_segment, severity_rank};
use crate::config::Redactor;
use crate::pause::Pause;
use crate::predict::Prediction;
use crate::state::{CheckDetail, HealthReport, HistoryItem};
use crate::status::Status;
use crate::store::{AttemptRecord, RunRow};
use crate::timefmt::rfc3339_ms;
use crate::vocabulary::HoldReason;
use crate::vocabulary::{RunOutcome, Subject};

/// Checks on one page of `/`.
pub const PER_PAGE: usize = 100;
/// Predictions `/` charts; the rest are one click away on their check's page.
const MAX_PREDICTIONS: usize = 24;
/// Failing checks the banner names.
const BANNER_CHECKS: usize = 5;

/// Which checks to show.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    /// `?status=`: one status, or every failing one (`failing`: not healthy).
    pub status: Option<StatusFilter>,
    /// `?q=`: a substring of the name, any case.
    pub q: String,
    /// `?page=`, from 1.
    pub page: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StatusFilter {
    Is(Status),
    Failing,
}

impl Filter {
    /// From the query string; what does not parse is ignored rather than refused (a person
    /// typed it), and said on the page.
    pub fn parse(params: &HashMap<String, String>) -> (Filter, Vec<String>) {
        let mut notes = Vec::new();
        let status = match params.get("status").map(|s| s.trim()) {
            None | Some("") | Some("all") => None,
            Some("failing") => Some(StatusFilter::Failing),
            Some(s) => match Status::parse(s) {
                Some(st) => Some(StatusFilter::Is(st)),
                None => {
                    notes.push(format!("unknown status {s:?} ignored"));
                    None
                }
            },
        };
        let page = match params.get("page").map(|p| p.trim()) {
            None | Some("") => 1,
            Some(p) => match p.parse::<usize>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    notes.push(format!("page {p:?} is not a page number; showing page 1"));
                    1
                }
            },
        };
        let q: String = params
            .get("q")
            .map(|q| q.trim().chars().take(200).collect())
            .unwrap_or_default();
        (Filter { status, q, page }, notes)
    }

    fn keeps(&self, name_lower: &str, status: Status) -> bool {
        let by_status = match self.status {
            None => true,
            Some(StatusFilter::Failing) => status != Status::Healthy,
            Some(StatusFilter::Is(s)) => status == s,
        };
        by_status && (self.q.is_empty() || name_lower.contains(&self.q.to_lowercase()))
    }

    /// This filter's query string on another page.
    pub fn query(&self, page: usize) -> String {
        let enc = crate::percent::encode;
        let mut parts = Vec::new();
        match self.status {
            Some(StatusFilter::Failing) => parts.push("status=failing".to_string()),
            Some(StatusFilter::Is(s)) => parts.push(format!("status={s}")),
            None => {}
        }
        if !self.q.is_empty() {
            parts.push(format!("q={}", enc(&self.q)));
        }
        if page > 1 {
            parts.push(format!("page={page}"));
        }
        if parts.is_empty() {
            "/".into()
        } else {
            format!("/?{}", parts.join("&"))
        }
    }
}

/// The checks a filter keeps, in page order, and which of them this page shows.
#[derive(Debug, Clone, PartialEq)]
pub struct Selection {
    pub names: Vec<String>,
    pub matching: usize,
    pub page: usize,
    pub pages: usize,
}

/// Whether a check counts as failing on the page: enabled and not healthy.
fn failing(status: Status, enabled: bool) -> bool {
    enabled && status != Status::Healthy
}

/// Failing checks first (critical, unknown, warning), then the rest; each group in natural
/// order. Only the names of the asked-for page are kept.
pub fn select(report: &HealthReport, filter: &Filter) -> Selection {
    let mut keep: Vec<(&String, u8)> = report
        .checks
        .iter()
        .filter(|(name, c)| filter.keeps(&name.to_lowercase(), c.status))
        .map(|(name, c)| {
            let rank = if failing(c.status, c.enabled) {
                severity_rank(c.status)
            } else {
                4
            };
            (name, rank)
        })
        .collect();
    keep.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| natural_cmp(a.0, b.0)));
    let matching = keep.len();
    let pages = matching.div_ceil(PER_PAGE).max(1);
    let page = filter.page.clamp(1, pages);
    let names = keep
        .into_iter()
        .skip((page - 1) * PER_PAGE)
        .take(PER_PAGE)
        .map(|(n, _)| n.clone())
        .collect();
    Selection {
        names,
        matching,
        page,
        pages,
    }
}

/// What holds recovery back now.
#[derive(Debug, Clone, Default)]
pub struct Banner {
    pub circuit_open: bool,
    pub windows: Vec<String>,
    pub pauses: Vec<Pause>,
    /// Held triggers: subject → (chain, why).
    pub held: BTreeMap<String, (String, HoldReason)>,
}

pub struct Index<'a> {
    pub report: &'a HealthReport,
    pub filter: &'a Filter,
    pub notes: &'a [String],
    pub selection: &'a Selection,
    /// The page's checks, in the selection's order or not: they are put in order here.
    pub details: &'a [CheckDetail],
    pub predictions: &'a [(Prediction, Vec<(f64, f64)>)],
    /// `None`: the state store is not open yet.
    pub runs: Option<&'a [RunRow]>,
    pub attempts: Option<&'a [AttemptRecord]>,
    pub banner: &'a Banner,
    pub now_ms: i64,
    pub secrets: &'a Redactor,
    /// The cluster this replica sees (`--cluster.shard auto`).
    pub cluster: Option<&'a crate::cluster::ClusterView>,
}

/// From the newest probe back, how long the check has not been healthy: the oldest probe of
/// that stretch and how many it spans. `None` when the newest probe was healthy.
pub fn failing_since(history: &[HistoryItem]) -> Option<(&str, usize, bool)> {
    let n = history
        .iter()
        .take_while(|h| h.status != Status::Healthy)
        .count();
    (n > 0).then(|| (history[n - 1].time.as_str(), n, n == history.len()))
}

/// "since 12:00:01 (5 probes)", or "since before 12:00:01" when the whole history failed.
pub fn since_text(history: &[HistoryItem]) -> Option<String> {
    failing_since(history).map(|(t, n, all)| {
        if all {
            format!("failing since before {} ({n}+ probes)", clock(t))
        } else {
            format!("failing since {} ({n} probes)", clock(t))
        }
    })
}

/// The latest run on `check:NAME` among `runs` (newest first).
fn latest_run<'r>(runs: Option<&'r [RunRow]>, check: &str) -> Option<&'r RunRow> {
    let subject = Subject::Check(check.to_string()).to_string();
    runs?.iter().find(|r| r.subject == subject)
}

/// What a failing check's healing waits for now, as the banner says it: held (and why), a
/// run in progress, nothing left to try, or how this incident's run ended. A run from before
/// the check began failing is another incident's and is not named. `None`: nothing yet.
fn waiting_for(
    check: &str,
    history: &[HistoryItem],
    runs: Option<&[RunRow]>,
    held: &BTreeMap<String, (String, HoldReason)>,
) -> Option<String> {
    let subject = Subject::Check(check.to_string()).to_string();
    if let Some((chain, reason)) = held.get(&subject) {
        return Some(format!(
            "recovery ({}) held: {}",
            escape(chain),
            hold_words(*reason)
        ));
    }
    let since_ms = failing_since(history)
        .and_then(|(time, _, whole)| (!whole).then_some(time))
        .and_then(|time| time.parse::<jiff::Timestamp>().ok())
        .map_or(i64::MIN, |t| t.as_millisecond());
    let run = latest_run(runs, check).filter(|r| r.started_ms >= since_ms)?;
    Some(match r_outcome(run) {
        None => format!("medic is healing: {}", run_link(run)),
        Some(RunOutcome::Unavailable) => format!(
            "nothing to try (every step in cooldown or at max_attempts): {}",
            run_link(run)
        ),
        Some(_) => format!("medic ran {}", run_link(run)),
    })
}

fn r_outcome(run: &RunRow) -> Option<RunOutcome> {
    run.outcome.as_deref().and_then(|o| o.parse().ok())
}

/// A hold, as people say it.
fn hold_words(reason: HoldReason) -> &'static str {
    match reason {
        HoldReason::Paused => "paused",
        HoldReason::Maintenance => "maintenance window",
        HoldReason::CircuitOpen => "circuit breaker open",
        HoldReason::Concurrency => "limit (max_concurrent_runs)",
        HoldReason::Rate => "limit (max_runs)",
        HoldReason::Dependency => "a check it depends on is failing",
        HoldReason::Settling => "settling (waiting for its checks' next probes)",
    }
}

/// `<a href="/runs/ID">chain: outcome</a>`.
pub fn run_link(r: &RunRow) -> String {
    let outcome = r.outcome.as_deref().unwrap_or("running");
    format!(
        r#"<a class="runlink" href="/runs/{}">{} {}: {}</a>"#,
        path_segment(&r.id),
        letter(outcome_status(r.outcome.as_deref())),
        escape(&r.chain),
        escape(outcome)
    )
}

pub fn uptime_text(d: &CheckDetail) -> String {
    match d.trend.success_ratio {
        Some(r) => format!(
            "uptime {:.1} % last hour ({} probes)",
            r * 100.0,
            d.trend.runs
        ),
        None => "uptime: no probe in the last hour".into(),
    }
}

pub fn latency_text(d: &CheckDetail) -> String {
    match (d.trend.latency_p50_seconds, d.trend.latency_p99_seconds) {
        (Some(a), Some(b)) => format!("p50 {} · p99 {}", latency(a), latency(b)),
        _ => "latency: -".into(),
    }
}

fn check_card(html: &mut String, d: &CheckDetail, runs: Option<&[RunRow]>, secrets: &Redactor) {
    let s = &d.summary;
    let is_failing = failing(s.status, s.enabled);
    let _ = write!(
        html,
        r#"<article class="check{f} st-{st}" data-check="{name}" data-status="{st}"><header><a class="name" href="/checks/{link}">{name}</a>{badge}</header>"#,
        f = if is_failing { " failing" } else { "" },
        st = s.status,
        name = escape(&d.name),
        link = path_segment(&d.name),
        badge = badge(s.status),
    );
    let _ = write!(
        html,
        r#"<p class="msg">{}{}</p>"#,
        escape(&secrets.redact(&s.message)),
        s.reason
            .map(|r| format!(r#" <span class="meta">(reason: {r})</span>"#))
            .unwrap_or_default()
    );
    if !s.blocked_by.is_empty() {
        let roots: Vec<String> = s.blocked_by.iter().map(|r| escape(r)).collect();
        let _ = write!(
            html,
            r#"<p class="meta blockedby">blocked by {}: healed with its root</p>"#,
            roots.join(", ")
        );
    }
    if let Some(labels) = super::labels_line(d) {
        let _ = write!(html, r#"<p class="meta labels">{labels}</p>"#);
    }
    html.push_str(r#"<div class="pics">"#);
    html.push_str(&strip(&d.history, false, false));
    html.push_str(&sparkline(
        &d.history,
        d.trend.latency_p50_seconds,
        d.trend.latency_p99_seconds,
        110.0,
        22.0,
    ));
    let _ = write!(
        html,
        r#"<span class="meta">{}</span></div>"#,
        latency_text(d)
    );
    let mut meta = Vec::new();
    if is_failing {
        meta.extend(since_text(&d.history));
    }
    meta.push(uptime_text(d));
    if let Some(last) = &s.last_run {
        meta.push(format!("last probe {}", escape(clock(last))));
    }
    let _ = write!(html, r#"<p class="meta">{}"#, meta.join(" · "));
    if let Some(r) = latest_run(runs, &d.name) {
        let _ = write!(html, " · recovery {}", run_link(r));
    }
    html.push_str("</p></article>\n");
}

pub fn prediction_card(html: &mut String, p: &Prediction, series: &[(f64, f64)]) {
    let breaching = p.breach_seconds.is_some_and(f64::is_finite);
    let forecasts: Vec<String> = p
        .forecasts
        .iter()
        .map(|(h, v)| {
            let band = p
                .intervals
                .iter()
                .find(|(l, _)| l == h)
                .and_then(|(_, b)| *b)
                .map(|(l, u)| format!(" [{} – {}]", number(l), number(u)))
                .unwrap_or_default();
            format!(
                "{}: {}{band}",
                escape(h),
                v.map(number).unwrap_or_else(|| "warming up".into())
            )
        })
        .collect();
    let _ = write!(
        html,
        r#"<article class="check prediction{f}" data-prediction="{name}"><header><span class="name">{name}</span><span class="badge {bst}">{bword}</span></header>"#,
        f = if breaching { " failing st-warning" } else { "" },
        name = escape(&p.name),
        bst = if breaching {
            "st-warning"
        } else {
            "st-healthy"
        },
        bword = match p.breach_seconds {
            Some(b) if b.is_finite() => format!("W breach in {}", human_seconds(b)),
            Some(_) => "OK no breach ahead".into(),
            None => "no threshold".into(),
        },
    );
    html.push_str(&prediction_chart(p, series, 340.0, 110.0));
    let _ = write!(
        html,
        r#"<p class="meta"><a href="/checks/{cl}">{check}</a> {m} now {v} · forecast {f} · threshold {t} · anomaly {a:.2}</p></article>"#,
        cl = path_segment(&p.check),
        check = escape(&p.check),
        m = escape(&p.measurement),
        v = number(p.value),
        f = forecasts.join(", "),
        t = p.threshold.map(number).unwrap_or_else(|| "-".into()),
        a = p.anomaly_score,
    );
    html.push('\n');
}

pub fn runs_table(html: &mut String, runs: &[RunRow], secrets: &Redactor) {
    html.push_str("<div class=\"wrap\"><table class=\"runs\"><thead><tr><th>started</th><th>run</th><th>subject</th><th>trigger</th><th>ended</th></tr></thead><tbody>\n");
    for r in runs {
        let _ = writeln!(
            html,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&rfc3339_ms(r.started_ms)),
            run_link(r),
            escape(&secrets.redact(&r.subject)),
            escape(&r.trigger),
            r.finished_ms
                .map(|t| escape(&rfc3339_ms(t)))
                .unwrap_or_else(|| "running".into()),
        );
    }
    html.push_str("</tbody></table></div>\n");
}

pub fn render(ix: &Index<'_>) -> String {
    let shown = shown_details(ix);
    let mut html = String::with_capacity(64 * 1024 + ix.details.len() * 4096);
    overall_banner(&mut html, ix, &shown);
    hold_banners(&mut html, ix);
    // What is predicted next, above the checks: a newcomer sees it without scrolling.
    predictions_section(&mut html, ix.predictions);
    filter_form(&mut html, ix.filter);
    checks_section(&mut html, ix, &shown);
    runs_section(&mut html, ix);
    attempts_section(&mut html, ix);
    if let Some(view) = ix.cluster {
        replicas_section(&mut html, view, ix.now_ms);
    }
    super::layout(&format!("medic: {}", ix.report.status), true, &html)
}

/// The page's checks in the selection's order.
fn shown_details<'d>(ix: &Index<'d>) -> Vec<&'d CheckDetail> {
    let mut by_name: HashMap<&str, &CheckDetail> =
        ix.details.iter().map(|d| (d.name.as_str(), d)).collect();
    ix.selection
        .names
        .iter()
        .filter_map(|n| by_name.remove(n.as_str()))
        .collect()
}

/// The banner: the word, then what is failing and since when, then what holds medic back.
fn overall_banner(html: &mut String, ix: &Index<'_>, shown: &[&CheckDetail]) {
    let report = ix.report;
    let sum = &report.summary;
    let _ = write!(
        html,
        r#"<div class="banner st-{st}" id="overall"><h1><span class="big">medic {badge}</span></h1><p>{n} checks: {h} healthy, {w} warning, {c} critical, {u} unknown</p>"#,
        st = report.status,
        badge = badge(report.status),
        n = report.checks.len(),
        h = sum.healthy,
        w = sum.warning,
        c = sum.critical,
        u = sum.unknown,
    );
    incident_list(html, ix, shown);
    html.push_str("</div>\n");
}

/// The first few failing checks on this page, each with since when and what its healing waits
/// for, and a link to all of them when there are more.
fn incident_list(html: &mut String, ix: &Index<'_>, shown: &[&CheckDetail]) {
    let sum = &ix.report.summary;
    let failing_total = sum.critical + sum.warning + sum.unknown;
    let failing_shown: Vec<&&CheckDetail> = shown
        .iter()
        .filter(|d| failing(d.summary.status, d.summary.enabled))
        .take(BANNER_CHECKS)
        .collect();
    if failing_shown.is_empty() {
        return;
    }
    html.push_str(r#"<ul class="incident">"#);
    // A check a failing dependency blocks is listed under its root, when the root is shown.
    let shown_names: BTreeSet<&str> = failing_shown.iter().map(|d| d.name.as_str()).collect();
    let under_a_shown_root = |d: &CheckDetail| {
        d.summary
            .blocked_by
            .iter()
            .any(|r| shown_names.contains(r.as_str()))
    };
    for d in failing_shown.iter().filter(|d| !under_a_shown_root(d)) {
        incident_item(html, ix, d);
        let blocked: Vec<&&&CheckDetail> = failing_shown
            .iter()
            .filter(|b| b.summary.blocked_by.contains(&d.name))
            .collect();
        if !blocked.is_empty() {
            html.push_str(r#"<ul class="blocked">"#);
            for b in blocked {
                incident_item(html, ix, b);
                html.push_str("</li>");
            }
            html.push_str("</ul>");
        }
        html.push_str("</li>");
    }
    if failing_total as usize > failing_shown.len() {
        let _ = write!(
            html,
            r#"<li><a href="/?status=failing">all {failing_total} failing checks</a></li>"#
        );
    }
    html.push_str("</ul>");
}

/// One failing check of the banner (its `<li>` left open for what goes under it): what it is,
/// since when, and what its healing waits for — its root, when a dependency blocks it.
fn incident_item(html: &mut String, ix: &Index<'_>, d: &CheckDetail) {
    let _ = write!(
        html,
        r##"<li><a href="/checks/{l}">{n}</a> {b} {since}"##,
        l = path_segment(&d.name),
        n = escape(&d.name),
        b = badge(d.summary.status),
        since = since_text(&d.history).unwrap_or_default(),
    );
    if !d.summary.blocked_by.is_empty() {
        let roots: Vec<String> = d.summary.blocked_by.iter().map(|r| escape(r)).collect();
        let _ = write!(
            html,
            r#" · <span class="blockedby">blocked by {}</span>: no run starts until it recovers"#,
            roots.join(", ")
        );
        return;
    }
    if let Some(waiting) = waiting_for(&d.name, &d.history, ix.runs, &ix.banner.held) {
        let _ = write!(html, " · {waiting}");
    }
}

/// A notice for each thing that holds recovery back (the circuit, pauses, maintenance
/// windows), then what the query string got wrong.
fn hold_banners(html: &mut String, ix: &Index<'_>) {
    if ix.banner.circuit_open {
        html.push_str(r#"<div class="banner notice" id="circuit"><strong>W Circuit breaker open</strong>: too many checks are critical at once; medic starts no recovery run until fewer are.</div>"#);
        html.push('\n');
    }
    for p in &ix.banner.pauses {
        let matchers: Vec<String> = p.matchers.iter().map(|m| m.to_string()).collect();
        let _ = writeln!(
            html,
            r#"<div class="banner notice pause" data-pause="{id}"><strong>W Recovery paused</strong> for {what} until {until} (in {left}): {reason}</div>"#,
            id = escape(&p.id),
            what = if matchers.is_empty() {
                "every run".to_string()
            } else {
                escape(&ix.secrets.redact(&matchers.join(", ")))
            },
            until = escape(&rfc3339_ms(p.ends_ms)),
            left = human_seconds((p.ends_ms - ix.now_ms) as f64 / 1000.0),
            reason = escape(&ix.secrets.redact(&p.reason)),
        );
    }
    for w in &ix.banner.windows {
        let _ = writeln!(
            html,
            r#"<div class="banner notice maintenance"><strong>W Maintenance window {}</strong> is open: its checks start no recovery.</div>"#,
            escape(w)
        );
    }
    for note in ix.notes {
        let _ = writeln!(html, r#"<p class="meta">{}</p>"#, escape(note));
    }
}

/// Prediction cards, soonest breach first, at most `MAX_PREDICTIONS` of them.
fn predictions_section(html: &mut String, predictions: &[(Prediction, Vec<(f64, f64)>)]) {
    html.push_str("<h2>Predictions</h2>\n");
    if predictions.is_empty() {
        html.push_str("<p>No prediction has a value yet.</p>\n");
        return;
    }
    // Soonest breach first.
    let mut preds: Vec<&(Prediction, Vec<(f64, f64)>)> = predictions.iter().collect();
    preds.sort_by(|a, b| {
        let key = |p: &Prediction| {
            p.breach_seconds
                .filter(|b| b.is_finite())
                .unwrap_or(f64::MAX)
        };
        key(&a.0)
            .total_cmp(&key(&b.0))
            .then_with(|| natural_cmp(&a.0.name, &b.0.name))
    });
    html.push_str("<div class=\"preds\">\n");
    for (p, series) in preds.iter().take(MAX_PREDICTIONS) {
        prediction_card(html, p, series);
    }
    html.push_str("</div>\n");
    if preds.len() > MAX_PREDICTIONS {
        let _ = writeln!(
            html,
            r#"<p class="meta">{} more predictions on their checks' pages and at <a href="/api/v1/predictions">/api/v1/predictions</a>.</p>"#,
            preds.len() - MAX_PREDICTIONS
        );
    }
}

/// The heading of the checks and their filters: a plain GET form, no script.
fn filter_form(html: &mut String, filter: &Filter) {
    let opt = |value: &str, label: &str, on: bool| {
        format!(
            r#"<option value="{value}"{}>{label}</option>"#,
            if on { " selected" } else { "" }
        )
    };
    let cur = filter.status;
    let _ = write!(
        html,
        r#"<h2>Checks</h2><form method="get" action="/"><input type="search" name="q" value="{q}" placeholder="name contains" aria-label="name contains"><select name="status" aria-label="status">{}{}{}{}{}{}</select><button type="submit">show</button></form>"#,
        opt("", "any status", cur.is_none()),
        opt("failing", "failing", cur == Some(StatusFilter::Failing)),
        opt(
            "critical",
            "critical",
            cur == Some(StatusFilter::Is(Status::Critical))
        ),
        opt(
            "unknown",
            "unknown",
            cur == Some(StatusFilter::Is(Status::Unknown))
        ),
        opt(
            "warning",
            "warning",
            cur == Some(StatusFilter::Is(Status::Warning))
        ),
        opt(
            "healthy",
            "healthy",
            cur == Some(StatusFilter::Is(Status::Healthy))
        ),
        q = escape(&filter.q),
    );
}

/// How many checks match, this page's cards, and the links to the pages around it.
fn checks_section(html: &mut String, ix: &Index<'_>, shown: &[&CheckDetail]) {
    let sel = ix.selection;
    let first = (sel.page - 1) * PER_PAGE;
    let _ = writeln!(
        html,
        r#"<p class="meta" id="count">{} of {} checks match; showing {}–{}, page {} of {}</p>"#,
        sel.matching,
        ix.report.checks.len(),
        if sel.matching == 0 { 0 } else { first + 1 },
        first + shown.len(),
        sel.page,
        sel.pages
    );
    html.push_str("<div class=\"checks\">\n");
    for d in shown {
        check_card(html, d, ix.runs, ix.secrets);
    }
    html.push_str("</div>\n");
    pager(html, ix.filter, sel);
}

/// Links to the previous and next page, when there is more than one.
fn pager(html: &mut String, filter: &Filter, sel: &Selection) {
    if sel.pages <= 1 {
        return;
    }
    html.push_str(r#"<nav class="pager">"#);
    if sel.page > 1 {
        let _ = write!(
            html,
            r#"<a rel="prev" href="{}">← page {}</a>"#,
            escape(&filter.query(sel.page - 1)),
            sel.page - 1
        );
    }
    if sel.page < sel.pages {
        let _ = write!(
            html,
            r#"<a rel="next" href="{}">page {} →</a>"#,
            escape(&filter.query(sel.page + 1)),
            sel.page + 1
        );
    }
    html.push_str("</nav>\n");
}

/// The live members: which one this is, where each probes from, how many checks each owns,
/// and how long since each renewed (by the store's clock, read at this replica's last
/// renewal).
fn replicas_section(html: &mut String, view: &crate::cluster::ClusterView, now_ms: i64) {
    let standing = view.standing(tokio::time::Instant::now());
    let _ = write!(
        html,
        "<h2>Replicas</h2>\n<p>{} live member(s), each check probed by {}{}.</p>\n<table><tr><th>member</th><th>location</th><th>checks owned</th><th>last renewal</th></tr>\n",
        view.members.len(),
        view.replication,
        if standing {
            ""
        } else {
            "; <strong>this replica cannot renew its membership: it starts no run</strong>"
        }
    );
    for m in &view.members {
        let ago = (now_ms - m.renewed_ms).max(0) as f64 / 1000.0;
        let _ = writeln!(
            html,
            "<tr><td><a href=\"{url}\">{id}</a>{me}</td><td>{loc}</td><td>{owned}</td><td>{ago:.1} s ago</td></tr>",
            url = escape(&m.external_url),
            id = escape(&m.id),
            me = if m.id == view.me { " (this one)" } else { "" },
            loc = escape(m.location.as_deref().unwrap_or("")),
            owned = m.owned,
        );
    }
    html.push_str("</table>\n");
}

/// Recent runs: a timeline, then a table.
fn runs_section(html: &mut String, ix: &Index<'_>) {
    html.push_str("<h2>Recent runs</h2>\n");
    match ix.runs {
        None => html.push_str("<p>The state store is not open yet.</p>\n"),
        Some([]) => html.push_str("<p>No recovery has run.</p>\n"),
        Some(runs) => {
            html.push_str(&runs_timeline(runs, ix.now_ms, 720.0));
            runs_table(html, runs, ix.secrets);
        }
    }
}

/// Recent recovery steps, one row each, linked to their run.
fn attempts_section(html: &mut String, ix: &Index<'_>) {
    html.push_str("<h2>Recent recovery steps</h2>\n");
    match ix.attempts {
        None => html.push_str("<p>The state store is not open yet.</p>\n"),
        Some([]) => html.push_str("<p>No recovery step has run.</p>\n"),
        Some(list) => {
            html.push_str("<div class=\"wrap\"><table><thead><tr><th>started</th><th>chain</th><th>step</th><th>target</th><th>result</th><th>message</th></tr></thead><tbody>\n");
            for a in list {
                let _ = writeln!(
                    html,
                    "<tr><td><a href=\"/runs/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"msg\">{}</td></tr>",
                    path_segment(&a.run_id),
                    escape(&a.started_at),
                    escape(&a.chain),
                    escape(&a.step),
                    escape(&ix.secrets.redact(&a.target)),
                    escape(a.result.as_deref().unwrap_or("running")),
                    escape(&ix.secrets.redact(&a.message)),
                );
            }
            html.push_str("</tbody></table></div>\n");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check_trend::StatusCounts;
    use crate::state::CheckSummary;
    use std::collections::BTreeMap;

    fn report(checks: &[(&str, Status)]) -> HealthReport {
        let mut map = BTreeMap::new();
        for (name, st) in checks {
            map.insert(
                name.to_string(),
                CheckSummary {
                    status: *st,
                    kind: "command",
                    enabled: true,
                    message: String::new(),
                    duration_seconds: None,
                    last_run: None,
                    consecutive_failures: 0,
                    blocked_by: Vec::new(),
                    reason: None,
                },
            );
        }
        HealthReport {
            status: Status::Healthy,
            summary: StatusCounts::default(),
            checks: map,
        }
    }

    fn filter(pairs: &[(&str, &str)]) -> Filter {
        let params = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Filter::parse(&params).0
    }

    #[test]
    fn failing_first_by_severity_then_natural_order() {
        let r = report(&[
            ("bulk10", Status::Healthy),
            ("bulk2", Status::Healthy),
            ("w", Status::Warning),
            ("u", Status::Unknown),
            ("c2", Status::Critical),
            ("c10", Status::Critical),
        ]);
        let s = select(&r, &Filter::default());
        assert_eq!(s.names, ["c2", "c10", "u", "w", "bulk2", "bulk10"]);
    }

    #[test]
    fn filters_and_pages() {
        let names: Vec<(String, Status)> = (0..250)
            .map(|i| {
                (
                    format!("bulk{i}"),
                    if i % 50 == 7 {
                        Status::Critical
                    } else {
                        Status::Healthy
                    },
                )
            })
            .collect();
        let refs: Vec<(&str, Status)> = names.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        let r = report(&refs);
        let all = select(&r, &Filter::default());
        assert_eq!(
            (all.matching, all.pages, all.names.len()),
            (250, 3, PER_PAGE)
        );
        assert_eq!(all.names[0], "bulk7");
        let last = select(&r, &filter(&[("page", "3")]));
        assert_eq!(last.names.len(), 50);
        // Past the end: the last page.
        assert_eq!(select(&r, &filter(&[("page", "99")])).page, 3);
        let crit = select(&r, &filter(&[("status", "critical")]));
        assert_eq!(
            crit.names,
            ["bulk7", "bulk57", "bulk107", "bulk157", "bulk207"]
        );
        let q = select(&r, &filter(&[("q", "LK24")]));
        assert_eq!(
            q.names,
            [
                "bulk24", "bulk240", "bulk241", "bulk242", "bulk243", "bulk244", "bulk245",
                "bulk246", "bulk247", "bulk248", "bulk249"
            ]
        );
        let none = select(&r, &filter(&[("q", "nothing")]));
        assert_eq!((none.matching, none.pages, none.page), (0, 1, 1));
    }

    #[test]
    fn bad_filters_are_ignored_and_said() {
        let params: HashMap<String, String> = [("status", "<x>"), ("page", "-1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (f, notes) = Filter::parse(&params);
        assert_eq!(
            f,
            Filter {
                status: None,
                q: String::new(),
                page: 1
            }
        );
        assert_eq!(notes.len(), 2);
    }

    #[test]
    fn the_query_keeps_the_filter_across_pages() {
        let f = filter(&[("status", "failing"), ("q", "a b&c")]);
        assert_eq!(f.query(2), "/?status=failing&q=a%20b%26c&page=2");
        assert_eq!(Filter::default().query(1), "/");
    }

    #[test]
    fn failing_since_counts_back_from_the_newest() {
        let item = |t: &str, s| HistoryItem {
            time: t.into(),
            status: s,
            duration_seconds: 0.0,
            message: String::new(),
        };
        let h = vec![
            item("2024-01-01T00:00:03.000Z", Status::Critical),
            item("2024-01-01T00:00:02.000Z", Status::Critical),
            item("2024-01-01T00:00:01.000Z", Status::Healthy),
        ];
        assert_eq!(since_text(&h).unwrap(), "failing since 00:00:02 (2 probes)");
        assert_eq!(
            since_text(&h[..2]).unwrap(),
            "failing since before 00:00:02 (2+ probes)"
        );
        assert_eq!(since_text(&h[2..]), None);
    }

    fn run(id: &str, started_ms: i64, outcome: Option<&str>) -> RunRow {
        RunRow {
            id: id.into(),
            chain: "web".into(),
            subject: "check:api".into(),
            target: "check:api".into(),
            trigger: "check".into(),
            labels: BTreeMap::new(),
            started_ms,
            finished_ms: outcome.map(|_| started_ms + 10),
            outcome: outcome.map(str::to_string),
            fencing_token: None,
            owner: "m".into(),
        }
    }

    fn probe(time: &str, status: Status) -> HistoryItem {
        HistoryItem {
            time: time.into(),
            status,
            duration_seconds: 0.0,
            message: String::new(),
        }
    }

    #[test]
    fn the_banner_names_what_the_current_failure_waits_for_not_an_older_run() {
        // Failing since 00:00:10 (newest first); healthy before.
        let history = [
            probe("1970-01-01T00:00:20.000Z", Status::Critical),
            probe("1970-01-01T00:00:10.000Z", Status::Critical),
            probe("1970-01-01T00:00:05.000Z", Status::Healthy),
        ];
        let none = BTreeMap::new();
        let older = [run("old", 1_000, Some("recovered"))];
        assert_eq!(
            waiting_for("api", &history, Some(&older), &none),
            None,
            "an older incident's run"
        );
        let unavailable = [run("new", 11_000, Some("unavailable")), older[0].clone()];
        let text = waiting_for("api", &history, Some(&unavailable), &none).unwrap();
        assert!(text.starts_with("nothing to try"), "{text}");
        assert!(text.contains("/runs/new"), "{text}");
        let running = [run("now", 12_000, None)];
        let text = waiting_for("api", &history, Some(&running), &none).unwrap();
        assert!(text.starts_with("medic is healing"), "{text}");
        let held: BTreeMap<String, (String, HoldReason)> = [(
            "check:api".to_string(),
            ("web".to_string(), HoldReason::Paused),
        )]
        .into();
        assert_eq!(
            waiting_for("api", &history, Some(&unavailable), &held).as_deref(),
            Some("recovery (web) held: paused")
        );
    }
}
