//! The pictures, drawn as SVG strings on the server. Pure: every input is an argument, times
//! included. Coordinates are rounded to one decimal so 10,000 marks stay small.

use std::fmt::Write;

use super::{clock, escape, human_seconds, latency, letter, number};
use crate::predict::Prediction;
use crate::state::HistoryItem;
use crate::status::Status;
use crate::store::{AttemptView, DecisionKind, DecisionView, RunRow};
use crate::vocabulary::RunOutcome;

/// A mark's height in a strip: the worse the probe, the taller (so shape tells what colour
/// does).
fn mark_height(status: Status) -> f64 {
    match status {
        Status::Healthy => 7.0,
        Status::Warning => 12.0,
        Status::Unknown => 15.0,
        Status::Critical => 18.0,
    }
}

/// One mark per probe in `history` (newest first, as the state task hands it out), drawn
/// oldest on the left. `messages`: put each probe's message in its `<title>` too.
pub fn strip(history: &[HistoryItem], messages: bool, wide: bool) -> String {
    let n = history.len();
    let (w, gap, h) = (6.0, 1.0, 18.0);
    let width = (n as f64 * (w + gap)).max(w);
    let mut s = String::with_capacity(160 + n * if messages { 160 } else { 110 });
    let size = if wide {
        format!(r#"width="100%" height="{h}" preserveAspectRatio="none""#)
    } else {
        format!(r#"width="{width}" height="{h}""#)
    };
    let _ = write!(
        s,
        r#"<svg class="strip" {size} viewBox="0 0 {width} {h}" role="img" aria-label="{n} recent results, oldest first">"#
    );
    for (i, item) in history.iter().rev().enumerate() {
        let mh = mark_height(item.status);
        let _ = write!(
            s,
            r#"<rect class="mark st-{st}" x="{x:.0}" y="{y:.0}" width="{w:.0}" height="{mh:.0}"><title>{t} {l} {st}"#,
            st = item.status,
            x = i as f64 * (w + gap),
            y = h - mh,
            t = escape(clock(&item.time)),
            l = letter(item.status),
        );
        if messages && !item.message.is_empty() {
            s.push_str(": ");
            s.push_str(&escape(&item.message));
        }
        s.push_str("</title></rect>");
    }
    s.push_str("</svg>");
    s
}

/// Latency of `history` (newest first), drawn oldest on the left, with the trend's p50 and
/// p99 as dotted and dashed lines.
pub fn sparkline(
    history: &[HistoryItem],
    p50: Option<f64>,
    p99: Option<f64>,
    w: f64,
    h: f64,
) -> String {
    let values: Vec<f64> = history.iter().rev().map(|i| i.duration_seconds).collect();
    let top = values
        .iter()
        .copied()
        .chain(p99)
        .fold(0.0f64, f64::max)
        .max(1e-6)
        * 1.1;
    let y = |v: f64| h - 1.0 - (v / top) * (h - 2.0);
    let mut s = format!(
        r#"<svg class="spark" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="latency"><title>latency, newest on the right; p50 {}, p99 {}</title>"#,
        p50.map(latency).unwrap_or_else(|| "-".into()),
        p99.map(latency).unwrap_or_else(|| "-".into()),
    );
    let _ = write!(
        s,
        r#"<line class="axis" x1="0" y1="{b}" x2="{w}" y2="{b}"/>"#,
        b = h - 0.5
    );
    for (class, v) in [("p50", p50), ("p99", p99)] {
        if let Some(v) = v {
            let _ = write!(
                s,
                r#"<line class="{class}" x1="0" y1="{y:.1}" x2="{w}" y2="{y:.1}"/>"#,
                y = y(v)
            );
        }
    }
    if values.len() >= 2 {
        let step = w / (values.len() - 1) as f64;
        s.push_str(r#"<polyline class="line" points=""#);
        for (i, v) in values.iter().enumerate() {
            let _ = write!(s, "{:.1},{:.1} ", i as f64 * step, y(*v));
        }
        s.push_str(r#""/>"#);
    } else if let Some(v) = values.first() {
        let _ = write!(
            s,
            r#"<circle class="st-unknown" cx="{}" cy="{:.1}" r="2"/>"#,
            w / 2.0,
            y(*v)
        );
    }
    s.push_str("</svg>");
    s
}

/// Seconds in a horizon label (`1h`, `30m`); `None` if it does not parse.
fn horizon_seconds(label: &str) -> Option<f64> {
    label
        .parse::<crate::config::Duration>()
        .ok()
        .map(|d| d.as_secs_f64())
}

/// One horizon of the chart: seconds ahead, the forecast, its 80 % band.
type Horizon = (f64, Option<f64>, Option<(f64, f64)>);

/// The recent series, the forecast with its 80 % band, the threshold (`.threshold`) and the
/// predicted breach (`.breach`). The past takes the left 45 % and the future the rest, with
/// a line at now: a week's horizon would otherwise squash an hour of samples to a dot.
pub fn prediction_chart(p: &Prediction, series: &[(f64, f64)], w: f64, h: f64) -> String {
    let horizons = chart_horizons(p);
    let breach = p.breach_seconds.filter(|b| b.is_finite()).zip(p.threshold);
    let sc = ChartScale::new(p, series, &horizons, breach, w, h);
    let mut s = String::with_capacity(2048 + series.len() * 14);
    let _ = write!(
        s,
        r#"<svg class="chart" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="{name}: recent values and forecast">"#,
        name = escape(&p.name)
    );
    let _ = write!(
        s,
        r#"<line class="axis" x1="0" y1="{b}" x2="{w}" y2="{b}"/><line class="now" x1="{split:.1}" y1="{top}" x2="{split:.1}" y2="{b}"/>"#,
        b = h - CHART_BOTTOM,
        split = sc.split,
        top = CHART_TOP,
    );
    chart_band(&mut s, p, &horizons, &sc);
    chart_series(&mut s, series, &sc);
    chart_forecast(&mut s, p, &horizons, &sc);
    chart_threshold(&mut s, p, &sc);
    chart_breach(&mut s, breach, &sc);
    let _ = write!(
        s,
        r#"<text x="1" y="{ty}">-{}</text><text x="{split:.1}" y="{ty}" text-anchor="middle">now</text><text x="{w}" y="{ty}" text-anchor="end">+{}</text>"#,
        human_seconds(sc.now - sc.past_start),
        human_seconds(sc.future_span),
        split = sc.split,
        ty = h - 2.0
    );
    s.push_str("</svg>");
    s
}

/// The chart's margins: none on the left, room for the band's top and the labels below.
const CHART_LEFT: f64 = 0.0;
const CHART_TOP: f64 = 6.0;
const CHART_BOTTOM: f64 = 14.0;

/// The horizons whose label reads as a duration, with their forecast and band.
fn chart_horizons(p: &Prediction) -> Vec<Horizon> {
    p.forecasts
        .iter()
        .filter_map(|(label, f)| {
            let hs = horizon_seconds(label)?;
            let band = p
                .intervals
                .iter()
                .find(|(l, _)| l == label)
                .and_then(|(_, b)| *b);
            Some((hs, *f, band))
        })
        .collect()
}

/// Where a prediction chart puts a time and a value.
struct ChartScale {
    now: f64,
    past_start: f64,
    /// Seconds the right part covers: the furthest horizon or a little past the breach.
    future_span: f64,
    /// Where now is drawn.
    split: f64,
    w: f64,
    h: f64,
    lo: f64,
    hi: f64,
}

impl ChartScale {
    fn new(
        p: &Prediction,
        series: &[(f64, f64)],
        horizons: &[Horizon],
        breach: Option<(f64, f64)>,
        w: f64,
        h: f64,
    ) -> ChartScale {
        let now = p.at;
        let future_span = horizons
            .iter()
            .map(|h| h.0)
            .chain(breach.map(|b| b.0 * 1.05))
            .fold(0.0f64, f64::max)
            .max(60.0);
        let (lo, hi) = value_range(p, series, horizons);
        ChartScale {
            now,
            past_start: series.first().map_or(now, |s| s.0).min(now),
            future_span,
            split: w * 0.45,
            w,
            h,
            lo,
            hi,
        }
    }

    fn x(&self, t: f64) -> f64 {
        if t <= self.now {
            let span = (self.now - self.past_start).max(1e-9);
            CHART_LEFT + (t - self.past_start) / span * (self.split - CHART_LEFT)
        } else {
            self.split + (t - self.now) / self.future_span * (self.w - self.split - 2.0)
        }
    }

    fn y(&self, v: f64) -> f64 {
        CHART_TOP + (self.hi - v) / (self.hi - self.lo) * (self.h - CHART_TOP - CHART_BOTTOM)
    }
}

/// The lowest and highest value the chart shows (series, now, forecasts, bands, threshold),
/// widened by 8 % so no line runs along an edge.
fn value_range(p: &Prediction, series: &[(f64, f64)], horizons: &[Horizon]) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    let mut see = |v: f64| {
        if v.is_finite() {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    };
    series.iter().for_each(|s| see(s.1));
    see(p.value);
    for (_, f, b) in horizons {
        f.iter().for_each(|v| see(*v));
        if let Some((l, u)) = b {
            see(*l);
            see(*u);
        }
    }
    p.threshold.iter().for_each(|v| see(*v));
    if hi - lo < 1e-9 {
        hi += 1.0;
        lo -= 1.0;
    }
    let pad = (hi - lo) * 0.08;
    (lo - pad, hi + pad)
}

/// The band: from now through each horizon's upper end and back through the lower ends.
fn chart_band(s: &mut String, p: &Prediction, horizons: &[Horizon], sc: &ChartScale) {
    let banded: Vec<(f64, f64, f64)> = horizons
        .iter()
        .filter_map(|(hs, _, b)| b.map(|(l, u)| (sc.now + hs, l, u)))
        .collect();
    if banded.is_empty() {
        return;
    }
    let mut pts = format!("{:.1},{:.1} ", sc.x(sc.now), sc.y(p.value));
    for (t, _, u) in &banded {
        let _ = write!(pts, "{:.1},{:.1} ", sc.x(*t), sc.y(*u));
    }
    for (t, l, _) in banded.iter().rev() {
        let _ = write!(pts, "{:.1},{:.1} ", sc.x(*t), sc.y(*l));
    }
    let _ = write!(
        s,
        r#"<polygon class="band" points="{pts}"><title>80 % interval</title></polygon>"#
    );
}

/// The recent values, once there are two to join.
fn chart_series(s: &mut String, series: &[(f64, f64)], sc: &ChartScale) {
    if series.len() < 2 {
        return;
    }
    s.push_str(r#"<polyline class="line series" points=""#);
    for (t, v) in series {
        let _ = write!(s, "{:.1},{:.1} ", sc.x(*t), sc.y(*v));
    }
    s.push_str(r#""/>"#);
}

/// The forecast: from the value now through each horizon's forecast, nearest first.
fn chart_forecast(s: &mut String, p: &Prediction, horizons: &[Horizon], sc: &ChartScale) {
    let mut forecast: Vec<(f64, f64)> = horizons
        .iter()
        .filter_map(|(hs, f, _)| f.map(|f| (sc.now + hs, f)))
        .collect();
    forecast.sort_by(|a, b| a.0.total_cmp(&b.0));
    if forecast.is_empty() {
        return;
    }
    let _ = write!(
        s,
        r#"<polyline class="forecast" points="{:.1},{:.1} "#,
        sc.x(sc.now),
        sc.y(p.value)
    );
    for (t, v) in &forecast {
        let _ = write!(s, "{:.1},{:.1} ", sc.x(*t), sc.y(*v));
    }
    s.push_str(r#""><title>forecast</title></polyline>"#);
}

fn chart_threshold(s: &mut String, p: &Prediction, sc: &ChartScale) {
    if let Some(t) = p.threshold {
        let _ = write!(
            s,
            r#"<line class="threshold" x1="0" y1="{y:.1}" x2="{w}" y2="{y:.1}"><title>threshold {v}</title></line>"#,
            y = sc.y(t),
            w = sc.w,
            v = number(t)
        );
    }
}

/// A diamond where the forecast crosses the threshold: `breach` is (seconds ahead, threshold).
fn chart_breach(s: &mut String, breach: Option<(f64, f64)>, sc: &ChartScale) {
    if let Some((secs, t)) = breach {
        let (cx, cy) = (sc.x(sc.now + secs), sc.y(t));
        let _ = write!(
            s,
            r#"<path class="breach" d="M{:.1} {:.1}l5 5l-5 5l-5 -5z"><title>predicted breach in {}</title></path>"#,
            cx,
            cy - 5.0,
            human_seconds(secs)
        );
    }
}

/// A run's outcome as a status: recovered is healthy, exhausted and unavailable (nothing
/// could be tried) critical, running warning.
pub fn outcome_status(outcome: Option<&str>) -> Status {
    match outcome.map(str::parse::<RunOutcome>) {
        Some(Ok(RunOutcome::Recovered)) => Status::Healthy,
        Some(Ok(RunOutcome::Exhausted | RunOutcome::Unavailable)) => Status::Critical,
        None => Status::Warning,
        Some(_) => Status::Unknown,
    }
}

/// Runs on a time axis ending at `now_ms`, one row each, every bar a link to the run's page.
pub fn runs_timeline(runs: &[RunRow], now_ms: i64, w: f64) -> String {
    let start = runs
        .iter()
        .map(|r| r.started_ms)
        .min()
        .unwrap_or(now_ms)
        .min(now_ms - 60_000);
    let span = (now_ms - start).max(1) as f64;
    let row = 16.0;
    let h = runs.len() as f64 * row + 14.0;
    let x = |t: i64| ((t - start) as f64 / span * (w - 4.0)).clamp(0.0, w - 4.0);
    let mut s = format!(
        r#"<svg class="timeline" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="recent runs on a time axis">"#
    );
    for (i, r) in runs.iter().enumerate() {
        let y0 = i as f64 * row + 2.0;
        let x0 = x(r.started_ms);
        let x1 = x(r.finished_ms.unwrap_or(now_ms)).max(x0 + 4.0);
        let st = outcome_status(r.outcome.as_deref());
        let outcome = r.outcome.as_deref().unwrap_or("running");
        let _ = write!(
            s,
            r#"<a class="run" href="/runs/{id}"><rect class="st-{st}" x="{x0:.1}" y="{y0:.1}" width="{bw:.1}" height="11" rx="2"><title>{chain} on {subject}: {outcome}</title></rect><text x="{tx:.1}" y="{ty:.1}" text-anchor="{anchor}">{l} {chain} · {outcome}</text></a>"#,
            id = super::path_segment(&r.id),
            chain = escape(&r.chain),
            subject = escape(&r.subject),
            bw = x1 - x0,
            l = letter(st),
            tx = if x0 > w / 2.0 { x0 - 3.0 } else { x1 + 3.0 },
            anchor = if x0 > w / 2.0 { "end" } else { "start" },
            ty = y0 + 9.5,
        );
    }
    let _ = write!(
        s,
        r#"<text x="1" y="{ty}">-{}</text><text x="{w}" y="{ty}" text-anchor="end">now</text></svg>"#,
        human_seconds(span / 1000.0),
        ty = h - 2.0
    );
    s
}

/// One run's decisions and steps on a time axis: a bar per attempt from its start to its end,
/// a diamond per decision that ran nothing (skip, hold, shadow).
pub fn run_axis(run: &RunRow, decisions: &[DecisionView], now_ms: i64, w: f64) -> String {
    let (start, end) = run_axis_bounds(run, decisions, now_ms);
    let span = (end - start).max(1) as f64;
    let (label_w, row) = (0.0, 20.0);
    let h = decisions.len().max(1) as f64 * row + 18.0;
    let x = |t: i64| label_w + ((t - start) as f64 / span * (w - label_w - 8.0)).clamp(0.0, w);
    let mut s = format!(
        r#"<svg class="axis-run" width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="the run's decisions and steps over time">"#
    );
    for (i, d) in decisions.iter().enumerate() {
        let y0 = i as f64 * row + 3.0;
        let step = d.step.as_deref().unwrap_or("trigger");
        match &d.attempt {
            Some(a) => attempt_bar(&mut s, d, a, step, &x, now_ms, y0),
            None => decision_diamond(&mut s, d, step, x(d.at_ms), y0),
        }
        decision_label(&mut s, d, step, &x, now_ms, w, y0);
    }
    let _ = write!(
        s,
        r#"<line class="axis" x1="0" y1="{b}" x2="{w}" y2="{b}"/><text x="1" y="{ty}">{}</text><text x="{w}" y="{ty}" text-anchor="end">+{}</text></svg>"#,
        escape(clock(&crate::timefmt::rfc3339_ms(start))),
        human_seconds(span / 1000.0),
        b = h - 14.0,
        ty = h - 2.0
    );
    s
}

/// The time the run's axis covers: from the first decision or attempt (or the run's start)
/// to the last end, wait or decision (or now, while it runs).
fn run_axis_bounds(run: &RunRow, decisions: &[DecisionView], now_ms: i64) -> (i64, i64) {
    let start = decisions
        .iter()
        .map(|d| d.at_ms)
        .chain(
            decisions
                .iter()
                .filter_map(|d| d.attempt.as_ref().map(|a| a.started_ms)),
        )
        .fold(run.started_ms, i64::min);
    let end = decisions
        .iter()
        .filter_map(|d| d.attempt.as_ref().and_then(|a| a.finished_ms))
        .chain(decisions.iter().map(|d| d.at_ms))
        .chain(decisions.iter().filter_map(|d| d.until_ms))
        .fold(run.finished_ms.unwrap_or(now_ms), i64::max);
    (start, end)
}

/// A bar from an attempt's start to its end (or now), coloured by its result.
fn attempt_bar(
    s: &mut String,
    d: &DecisionView,
    a: &AttemptView,
    step: &str,
    x: &impl Fn(i64) -> f64,
    now_ms: i64,
    y0: f64,
) {
    let st = match a.result.as_deref() {
        Some("success") => Status::Healthy,
        None => Status::Warning,
        Some(_) => Status::Critical,
    };
    let x0 = x(a.started_ms);
    let x1 = x(a.finished_ms.unwrap_or(now_ms)).max(x0 + 4.0);
    let _ = write!(
        s,
        r#"<rect class="step st-{st}" x="{x0:.1}" y="{y0:.1}" width="{bw:.1}" height="12" rx="2"><title>{step} {kind}: {result}</title></rect>"#,
        bw = x1 - x0,
        step = escape(step),
        kind = d.kind.as_str(),
        result = escape(a.result.as_deref().unwrap_or("running")),
    );
}

/// A diamond at a decision that ran nothing: held and skipped ones warn.
fn decision_diamond(s: &mut String, d: &DecisionView, step: &str, cx: f64, y0: f64) {
    let st = match d.kind {
        DecisionKind::Held | DecisionKind::Skipped => Status::Warning,
        _ => Status::Unknown,
    };
    let _ = write!(
        s,
        r#"<path class="decision st-{st}" d="M{cx:.1} {y0:.1}l6 6l-6 6l-6 -6z"><title>{step} {kind}{why}</title></path>"#,
        step = escape(step),
        kind = d.kind.as_str(),
        why = d
            .reason
            .as_deref()
            .map(|r| format!(": {}", escape(r)))
            .unwrap_or_default(),
    );
}

/// A decision's words beside its mark: left of it in the right part of the axis, else right
/// of its bar's end.
fn decision_label(
    s: &mut String,
    d: &DecisionView,
    step: &str,
    x: &impl Fn(i64) -> f64,
    now_ms: i64,
    w: f64,
    y0: f64,
) {
    let label = format!(
        "{} {}{}",
        escape(step),
        d.kind.as_str(),
        d.reason
            .as_deref()
            .map(|r| format!(" ({})", escape(r)))
            .unwrap_or_default()
    );
    let lx = x(d.at_ms);
    let (tx, anchor) = if lx > w * 0.6 {
        (lx - 9.0, "end")
    } else {
        (
            d.attempt
                .as_ref()
                .map_or(lx, |a| x(a.finished_ms.unwrap_or(now_ms)))
                .max(lx)
                + 9.0,
            "start",
        )
    };
    let _ = write!(
        s,
        r#"<text x="{tx:.1}" y="{:.1}" text-anchor="{anchor}">{label}</text>"#,
        y0 + 10.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(status: Status, d: f64) -> HistoryItem {
        HistoryItem {
            time: "2024-05-01T12:00:00.000Z".into(),
            status,
            duration_seconds: d,
            message: "<b>x</b>".into(),
        }
    }

    #[test]
    fn a_strip_has_one_mark_per_probe_and_shape_tells_status() {
        let h = vec![
            item(Status::Critical, 0.1),
            item(Status::Healthy, 0.1),
            item(Status::Warning, 0.2),
        ];
        let s = strip(&h, true, false);
        assert_eq!(s.matches("class=\"mark ").count(), 3);
        // Oldest on the left: the warning first, the critical last and tallest.
        let first = s.find("st-warning").unwrap();
        let last = s.find("st-critical").unwrap();
        assert!(first < last, "{s}");
        assert!(
            s.contains(r#"height="18"><title>12:00:00 C critical"#),
            "{s}"
        );
        assert!(
            s.contains("&lt;b&gt;x&lt;/b&gt;") && !s.contains("<b>"),
            "{s}"
        );
    }

    #[test]
    fn the_chart_draws_threshold_band_and_breach() {
        let p = Prediction {
            name: "disk<".into(),
            check: "c".into(),
            measurement: "used".into(),
            at: 1000.0,
            value: 50.0,
            anomaly_score: 0.0,
            forecasts: vec![("1h".into(), Some(80.0))],
            intervals: vec![("1h".into(), Some((70.0, 90.0)))],
            breach_seconds: Some(1800.0),
            threshold: Some(65.0),
        };
        let series: Vec<(f64, f64)> = (0..10)
            .map(|i| (100.0 * i as f64, 40.0 + i as f64))
            .collect();
        let s = prediction_chart(&p, &series, 300.0, 100.0);
        assert_eq!(s.matches(r#"class="threshold""#).count(), 1, "{s}");
        assert_eq!(s.matches(r#"class="breach""#).count(), 1, "{s}");
        assert!(s.contains(r#"class="band""#) && s.contains(r#"class="forecast""#));
        assert!(s.contains("predicted breach in 30m 0s"), "{s}");
        assert!(s.contains("disk&lt;") && !s.contains("disk<"), "{s}");
        // No breach within the horizon: no marker.
        let never = Prediction {
            breach_seconds: Some(f64::INFINITY),
            ..p
        };
        let s = prediction_chart(&never, &series, 300.0, 100.0);
        assert!(!s.contains(r#"class="breach""#) && s.contains(r#"class="threshold""#));
        assert!(!s.contains("NaN") && !s.contains("inf"), "{s}");
    }

    #[test]
    fn a_sparkline_copes_with_nothing_and_one_value() {
        assert!(!sparkline(&[], None, None, 100.0, 20.0).contains("NaN"));
        let one = sparkline(
            &[item(Status::Healthy, 0.0)],
            Some(0.0),
            Some(0.0),
            100.0,
            20.0,
        );
        assert!(!one.contains("NaN"), "{one}");
    }
}
