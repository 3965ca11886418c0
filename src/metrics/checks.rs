//! The per-check series of `/metrics` (`medic_check_success`, `_status`, `_duration_seconds`,
//! `_runs_total`, `_consecutive_failures`, `_flapping`, `_last_run_timestamp_seconds`, and
//! `medic_check_labels` for discovered checks): a table
//! of one small record per check and its renderer, which writes the table a slice of checks
//! at a time: descriptors through prometheus-client's encoder, series lines directly, byte for
//! byte as its encoder would. The rest of the exposition is the registry in [`super`].

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::{log_encoding_error, Format};
use crate::config::CheckSpec;
use crate::status::Status;
use crate::thresholds::HealthState;

/// Probe duration buckets: the Prometheus defaults, which cover a 5ms LAN answer to a 10s timeout.
pub(super) const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The per-check series (`medic_check_success`, `_status`, `_duration_seconds`, `_runs_total`,
/// `_consecutive_failures`, `_flapping`, `_last_run_timestamp_seconds`): one small record per
/// check, written a slice at a time by [`CheckTable::next_slice`], so the exposition is what
/// one `Family` per series gave (the tests below compare them). Those
/// families cost 13 MB at 10,000 checks (a hash map entry, a label string and a boxed metric per series) and made every probe hash and allocate labels six
/// times; a record is about 200 bytes and a probe updates it under one uncontended lock.
#[derive(Debug, Default)]
pub(super) struct CheckTable(RwLock<BTreeMap<Arc<str>, Mutex<CheckSeries>>>);

/// What one check exports. A series exists from the moment it is first set, as with families.
#[derive(Debug, Default, Clone)]
struct CheckSeries {
    /// A discovered check's spec, whose labels `medic_check_labels` shows (shared, not copied).
    labels: Option<Arc<CheckSpec>>,
    /// The status state set: 1 for this status, 0 for the other three.
    status: Option<Status>,
    /// Whether flap detection holds the check critical; set with the status.
    flapping: Option<bool>,
    /// Probes by raw status, indexed by [`Status::index`].
    runs: [Option<u64>; 4],
    /// Set by every probe, so these series appear together with the first one.
    latest: Option<Latest>,
}

#[derive(Debug, Clone, Copy)]
struct Latest {
    success: bool,
    consecutive_failures: u32,
    last_run: f64,
    duration: DurationHistogram,
}

/// The classic histogram as prometheus-client keeps it: a count per bucket (the encoder makes
/// them cumulative), the last bucket being +Inf.
#[derive(Debug, Clone, Copy, Default)]
struct DurationHistogram {
    sum: f64,
    count: u64,
    buckets: [u64; DURATION_BUCKETS.len() + 1],
}

impl DurationHistogram {
    fn observe(&mut self, v: f64) {
        self.sum += v;
        self.count += 1;
        // The first bucket whose bound is at least `v`; NaN is counted under +Inf.
        let i = DURATION_BUCKETS
            .iter()
            .position(|bound| *bound >= v)
            .unwrap_or(DURATION_BUCKETS.len());
        self.buckets[i] += 1;
    }
}

fn lock(series: &Mutex<CheckSeries>) -> MutexGuard<'_, CheckSeries> {
    series.lock().unwrap_or_else(|p| p.into_inner())
}

impl CheckTable {
    /// Runs `update` on the check's record, creating it first if needed.
    fn with(&self, check: &str, update: impl FnOnce(&mut CheckSeries)) {
        {
            let table = self.0.read().unwrap_or_else(|p| p.into_inner());
            if let Some(series) = table.get(check) {
                update(&mut lock(series));
                return;
            }
        }
        let mut table = self.0.write().unwrap_or_else(|p| p.into_inner());
        let series = table.entry(Arc::from(check)).or_default();
        update(series.get_mut().unwrap_or_else(|p| p.into_inner()));
    }

    /// One probe with raw status `raw`: counted, its duration observed (unless `None`: a
    /// heartbeat check's durations are its jobs'), the latest values set; the status state
    /// set and the flapping gauge only when `health_changed`.
    pub(super) fn record_probe(
        &self,
        check: &str,
        raw: Status,
        duration_seconds: Option<f64>,
        health: &HealthState,
        health_changed: bool,
        at_unix_seconds: f64,
    ) {
        self.with(check, |series| {
            series.runs[raw.index()] = Some(series.runs[raw.index()].unwrap_or(0) + 1);
            let mut duration = series
                .latest
                .map_or_else(DurationHistogram::default, |l| l.duration);
            if let Some(seconds) = duration_seconds {
                duration.observe(seconds);
            }
            series.latest = Some(Latest {
                success: raw.is_up(),
                consecutive_failures: health.consecutive_failures,
                last_run: at_unix_seconds,
                duration,
            });
            if health_changed {
                series.status = Some(health.status);
                series.flapping = Some(health.flapping);
            }
        });
    }

    /// A duration observed outside a probe (a heartbeat job's), once the check has been probed.
    pub(super) fn observe_duration(&self, check: &str, seconds: f64) {
        self.with(check, |series| {
            if let Some(latest) = series.latest.as_mut() {
                latest.duration.observe(seconds);
            }
        });
    }

    pub(super) fn set_status(&self, check: &str, status: Status, flapping: bool) {
        self.with(check, |series| {
            series.status = Some(status);
            series.flapping = Some(flapping);
        });
    }

    /// A discovered check's labels, exported once as `medic_check_labels`.
    pub(super) fn set_labels(&self, check: &str, spec: Arc<CheckSpec>) {
        self.with(check, |series| series.labels = Some(spec));
    }

    pub(super) fn remove(&self, check: &str) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(check);
    }

    /// The next slice of the per-check families after `cursor` (each family's descriptor only
    /// once, before its first series), or `None` once every family is written. The descriptor
    /// comes from prometheus-client's encoder; the series lines are written here directly
    /// ([`CheckFamily::write`]), byte for byte what its encoder wrote, at about a third of the
    /// cost.
    pub(super) fn next_slice(&self, format: Format, cursor: &mut Cursor) -> Option<String> {
        while let Some(family) = CHECK_FAMILIES.get(cursor.family).copied() {
            let rows = self.rows_after(family, cursor.after.as_deref());
            let Some((last, _)) = rows.last() else {
                cursor.family += 1;
                cursor.after = None;
                continue;
            };
            let mut out = String::with_capacity(SLICE_CAPACITY);
            if cursor.after.is_none() {
                out.push_str(&family.descriptor_text(format));
            }
            let mut line = LineWriter::new(format, &mut out);
            for (check, series) in &rows {
                family.write(check, series, &mut line);
            }
            cursor.after = Some(last.clone());
            return Some(out);
        }
        None
    }

    /// The next [`CHECKS_PER_SLICE`] checks after `after` (in name order) that have the
    /// family's series, copied out so no check's lock is held while writing.
    fn rows_after(&self, family: CheckFamily, after: Option<&str>) -> Vec<(Arc<str>, CheckSeries)> {
        let checks = self.0.read().unwrap_or_else(|p| p.into_inner());
        let start = match after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Unbounded,
        };
        checks
            .range::<str, _>((start, Bound::Unbounded))
            .map(|(check, series)| (check, lock(series).clone()))
            .filter(|(_, series)| family.has(series))
            .take(CHECKS_PER_SLICE)
            .map(|(check, series)| (check.clone(), series))
            .collect()
    }
}

/// Where a rendering of the per-check families is: which family, after which check.
#[derive(Debug, Default)]
pub(super) struct Cursor {
    family: usize,
    after: Option<Arc<str>>,
}

/// The per-check families, in the order they are exposed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CheckFamily {
    Success,
    Status,
    Duration,
    Runs,
    ConsecutiveFailures,
    Flapping,
    LastRun,
    Labels,
}

const CHECK_FAMILIES: [CheckFamily; 8] = [
    CheckFamily::Success,
    CheckFamily::Status,
    CheckFamily::Duration,
    CheckFamily::Runs,
    CheckFamily::ConsecutiveFailures,
    CheckFamily::Flapping,
    CheckFamily::LastRun,
    CheckFamily::Labels,
];

/// Whether a check's label goes into `medic_check_labels`: not `check` (the series' own) and
/// not Prometheus' reserved `__` names (`__address__`, `__meta_*`: template values only).
fn exported_label(name: &str) -> bool {
    name != "check" && !name.starts_with("__")
}

static SECONDS: Unit = Unit::Seconds;

impl CheckFamily {
    /// Name, help (ending in the full stop the registry adds to registered metrics), unit, type.
    fn descriptor(
        self,
    ) -> (
        &'static str,
        &'static str,
        Option<&'static Unit>,
        MetricType,
    ) {
        match self {
            CheckFamily::Success => (
                "medic_check_success",
                "1 if the latest probe was healthy or warning, else 0.",
                None,
                MetricType::Gauge,
            ),
            CheckFamily::Status => (
                "medic_check_status",
                "The check's current status after thresholds: 1 for the current status, 0 for the others.",
                None,
                MetricType::Gauge,
            ),
            CheckFamily::Duration => (
                "medic_check_duration",
                "Probe durations.",
                Some(&SECONDS),
                MetricType::Histogram,
            ),
            CheckFamily::Runs => ("medic_check_runs", "Probes by raw status.", None, MetricType::Counter),
            CheckFamily::ConsecutiveFailures => (
                "medic_check_consecutive_failures",
                "Current run of critical probes.",
                None,
                MetricType::Gauge,
            ),
            CheckFamily::Flapping => (
                "medic_check_flapping",
                "1 while the check is critical because of flap detection, else 0.",
                None,
                MetricType::Gauge,
            ),
            CheckFamily::LastRun => (
                "medic_check_last_run_timestamp",
                "Unix time of the latest probe.",
                Some(&SECONDS),
                MetricType::Gauge,
            ),
            CheckFamily::Labels => (
                "medic_check_labels",
                "Always 1: the labels of a check made from a discovered target, to join on check.",
                None,
                MetricType::Gauge,
            ),
        }
    }

    /// Whether the check has this family's series yet.
    fn has(self, s: &CheckSeries) -> bool {
        match self {
            CheckFamily::Status => s.status.is_some(),
            CheckFamily::Flapping => s.flapping.is_some(),
            CheckFamily::Runs => s.runs.iter().any(Option::is_some),
            CheckFamily::Labels => s.labels.is_some(),
            _ => s.latest.is_some(),
        }
    }

    /// The family's `# HELP`, `# TYPE` (and `# UNIT`) lines, from prometheus-client's encoder.
    fn descriptor_text(self, format: Format) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(Descriptor(self)));
        let mut out = String::new();
        // OpenMetrics' `# EOF` comes once, after the registry's families.
        log_encoding_error(match format {
            Format::PrometheusText => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
            }
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode_registry(&mut out, &registry)
            }
        });
        out
    }

    /// Writes the check's series lines of this family (none when it has none yet).
    fn write(self, check: &str, s: &CheckSeries, line: &mut LineWriter<'_>) {
        line.set_check(check);
        match (self, &s.latest) {
            (CheckFamily::Status, _) => {
                for status in Status::ALL {
                    let value = i64::from(s.status == Some(status));
                    line.int("medic_check_status", ("status", status.as_str()), value);
                }
            }
            (CheckFamily::Labels, _) => {
                if let Some(spec) = &s.labels {
                    let labels = spec.labels.iter().filter(|(name, _)| exported_label(name));
                    let labels = labels.map(|(name, value)| (name.as_str(), value.as_str()));
                    line.labels_info("medic_check_labels", labels);
                }
            }
            (CheckFamily::Flapping, _) => {
                if let Some(flapping) = s.flapping {
                    line.int("medic_check_flapping", NO_LABEL, i64::from(flapping));
                }
            }
            (CheckFamily::Runs, _) => {
                for status in Status::ALL {
                    if let Some(runs) = s.runs[status.index()] {
                        line.uint("medic_check_runs_total", ("status", status.as_str()), runs);
                    }
                }
            }
            (CheckFamily::Success, Some(l)) => {
                line.int("medic_check_success", NO_LABEL, i64::from(l.success));
            }
            (CheckFamily::Duration, Some(l)) => line.histogram(&l.duration),
            (CheckFamily::ConsecutiveFailures, Some(l)) => line.int(
                "medic_check_consecutive_failures",
                NO_LABEL,
                i64::from(l.consecutive_failures),
            ),
            (CheckFamily::LastRun, Some(l)) => {
                line.float("medic_check_last_run_timestamp_seconds", l.last_run);
            }
            (_, None) => {}
        }
    }
}

/// A collector that writes one per-check family's descriptor and no series.
#[derive(Debug)]
struct Descriptor(CheckFamily);

impl Collector for Descriptor {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let (name, help, unit, metric_type) = self.0.descriptor();
        encoder.encode_descriptor(name, help, unit, metric_type)?;
        Ok(())
    }
}

/// How many checks one slice of a per-check family covers: a slice of the histogram family is
/// then about 150 KB of text.
const CHECKS_PER_SLICE: usize = 128;

/// A slice's first allocation: most of a histogram slice, so it rarely grows.
const SLICE_CAPACITY: usize = 160 * 1024;

/// No label beside `check`.
const NO_LABEL: (&str, &str) = ("", "");

/// The `le` label values of [`DURATION_BUCKETS`] and +Inf as each format writes them (Go's
/// shortest `%g` in Prometheus text, dtoa's in OpenMetrics); the comparison test with
/// prometheus-client's own histograms holds them to it.
const LE_PROMETHEUS: [&str; DURATION_BUCKETS.len() + 1] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf",
];
const LE_OPENMETRICS: [&str; DURATION_BUCKETS.len() + 1] = [
    "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1.0", "2.5", "5.0", "10.0", "+Inf",
];

/// Writes series lines (`name{check="…"[,label="…"]} value`) for one check at a time: the
/// check's escaped label is made once per check and family, not once per line.
struct LineWriter<'a> {
    format: Format,
    out: &'a mut String,
    /// `check="<escaped name>"`
    check_label: String,
}

impl<'a> LineWriter<'a> {
    fn new(format: Format, out: &'a mut String) -> Self {
        LineWriter {
            format,
            out,
            check_label: String::with_capacity(64),
        }
    }

    fn set_check(&mut self, check: &str) {
        self.check_label.clear();
        self.check_label.push_str("check=\"");
        push_escaped(&mut self.check_label, check);
        self.check_label.push('"');
    }

    /// `name{check="…",label="value"} ` (the label left out when its name is empty).
    fn start(&mut self, name: &str, label: (&str, &str)) {
        let label = Some(label).filter(|(name, _)| !name.is_empty());
        self.start_with(name, label.into_iter());
    }

    /// `name{check="…",<labels>} `, each value escaped.
    fn start_with<'l>(&mut self, name: &str, labels: impl Iterator<Item = (&'l str, &'l str)>) {
        self.out.push_str(name);
        self.out.push('{');
        self.out.push_str(&self.check_label);
        for (label, value) in labels {
            self.out.push(',');
            self.out.push_str(label);
            self.out.push_str("=\"");
            push_escaped(self.out, value);
            self.out.push('"');
        }
        self.out.push_str("} ");
    }

    fn int(&mut self, name: &str, label: (&str, &str), value: i64) {
        self.start(name, label);
        self.out.push_str(itoa::Buffer::new().format(value));
        self.out.push('\n');
    }

    fn uint(&mut self, name: &str, label: (&str, &str), value: u64) {
        self.start(name, label);
        self.out.push_str(itoa::Buffer::new().format(value));
        self.out.push('\n');
    }

    fn float(&mut self, name: &str, value: f64) {
        self.start(name, NO_LABEL);
        self.push_float(value);
        self.out.push('\n');
    }

    /// Floats as prometheus-client writes them: dtoa's shortest form, and `NaN`/`+Inf`/`-Inf`
    /// in Prometheus text where dtoa (as OpenMetrics writes it) says `NaN`/`inf`/`-inf`.
    fn push_float(&mut self, value: f64) {
        let mut buffer = dtoa::Buffer::new();
        let text = match self.format {
            Format::OpenMetrics => buffer.format(value),
            Format::PrometheusText if value.is_finite() => buffer.format_finite(value),
            Format::PrometheusText if value.is_nan() => "NaN",
            Format::PrometheusText if value > 0.0 => "+Inf",
            Format::PrometheusText => "-Inf",
        };
        self.out.push_str(text);
    }

    /// The duration histogram in each format's order: cumulative buckets, `_sum`, `_count` in
    /// Prometheus text; `_sum`, `_count`, then the buckets in OpenMetrics.
    fn histogram(&mut self, h: &DurationHistogram) {
        if self.format == Format::OpenMetrics {
            self.histogram_totals(h);
        }
        let le = match self.format {
            Format::PrometheusText => &LE_PROMETHEUS,
            Format::OpenMetrics => &LE_OPENMETRICS,
        };
        let mut cumulative = 0;
        for (count, le) in h.buckets.iter().zip(le) {
            cumulative += count;
            self.bucket(le, cumulative);
        }
        if self.format == Format::PrometheusText {
            self.histogram_totals(h);
        }
    }

    /// A bucket line: `le` after `check` in Prometheus text, before it in OpenMetrics (where
    /// prometheus-client writes a metric's own labels before its family's).
    fn bucket(&mut self, le: &str, cumulative: u64) {
        match self.format {
            Format::PrometheusText => {
                self.start("medic_check_duration_seconds_bucket", ("le", le));
            }
            Format::OpenMetrics => {
                self.out
                    .push_str("medic_check_duration_seconds_bucket{le=\"");
                self.out.push_str(le);
                self.out.push_str("\",");
                self.out.push_str(&self.check_label);
                self.out.push_str("} ");
            }
        }
        self.out.push_str(itoa::Buffer::new().format(cumulative));
        self.out.push('\n');
    }

    fn histogram_totals(&mut self, h: &DurationHistogram) {
        self.float("medic_check_duration_seconds_sum", h.sum);
        self.uint("medic_check_duration_seconds_count", NO_LABEL, h.count);
    }

    /// `medic_check_labels{check="…",<labels>} 1`. Label names were checked when the target was
    /// read; values are escaped.
    fn labels_info<'l>(&mut self, name: &str, labels: impl Iterator<Item = (&'l str, &'l str)>) {
        self.start_with(name, labels);
        self.out.push_str("1\n");
    }
}

/// A label value with `\\`, `"` and newlines escaped, as the exposition formats want.
fn push_escaped(out: &mut String, value: &str) {
    if !value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(value);
        return;
    }
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::metrics::histogram::Histogram;

    use super::super::{CheckLabels, FloatGauge, Metrics};
    use super::*;
    use crate::checks::Outcome;

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct CheckStatusLabels {
        check: String,
        status: String,
    }

    /// The six per-check families as prometheus-client `Family`s, fed as `Metrics` used to.
    struct Reference {
        registry: Registry,
        success: Family<CheckLabels, Gauge>,
        status: Family<CheckStatusLabels, Gauge>,
        duration: Family<CheckLabels, Histogram, fn() -> Histogram>,
        runs: Family<CheckStatusLabels, Counter>,
        failures: Family<CheckLabels, Gauge>,
        flapping: Family<CheckLabels, Gauge>,
        last_run: Family<CheckLabels, FloatGauge>,
    }

    impl Reference {
        fn new() -> Self {
            let mut registry = Registry::default();
            let success = Family::default();
            registry.register(
                "medic_check_success",
                "1 if the latest probe was healthy or warning, else 0",
                success.clone(),
            );
            let status = Family::default();
            registry.register(
                "medic_check_status",
                "The check's current status after thresholds: 1 for the current status, 0 for the others",
                status.clone(),
            );
            let duration =
                Family::<CheckLabels, Histogram, fn() -> Histogram>::new_with_constructor(|| {
                    Histogram::new(DURATION_BUCKETS)
                });
            registry.register_with_unit(
                "medic_check_duration",
                "Probe durations",
                Unit::Seconds,
                duration.clone(),
            );
            let runs = Family::default();
            registry.register("medic_check_runs", "Probes by raw status", runs.clone());
            let failures = Family::default();
            registry.register(
                "medic_check_consecutive_failures",
                "Current run of critical probes",
                failures.clone(),
            );
            let flapping = Family::default();
            registry.register(
                "medic_check_flapping",
                "1 while the check is critical because of flap detection, else 0",
                flapping.clone(),
            );
            let last_run = Family::default();
            registry.register_with_unit(
                "medic_check_last_run_timestamp",
                "Unix time of the latest probe",
                Unit::Seconds,
                last_run.clone(),
            );
            Reference {
                registry,
                success,
                status,
                duration,
                runs,
                failures,
                flapping,
                last_run,
            }
        }

        fn set_status(&self, check: &str, status: Status, flapping: bool) {
            self.flapping
                .get_or_create(&CheckLabels {
                    check: check.into(),
                })
                .set(i64::from(flapping));
            for s in Status::ALL {
                self.status
                    .get_or_create(&CheckStatusLabels {
                        check: check.into(),
                        status: s.as_str().into(),
                    })
                    .set(i64::from(s == status));
            }
        }

        fn observe(&self, check: &str, o: &Outcome, h: &HealthState, changed: bool, at: f64) {
            let labels = CheckLabels {
                check: check.into(),
            };
            self.success
                .get_or_create(&labels)
                .set(i64::from(o.status.is_up()));
            self.duration
                .get_or_create(&labels)
                .observe(o.duration.as_secs_f64());
            self.runs
                .get_or_create(&CheckStatusLabels {
                    check: check.into(),
                    status: o.status.as_str().into(),
                })
                .inc();
            self.failures
                .get_or_create(&labels)
                .set(i64::from(h.consecutive_failures));
            self.last_run.get_or_create(&labels).set(at);
            if changed {
                self.set_status(check, h.status, h.flapping);
            }
        }

        fn encode(&self, format: Format) -> String {
            let mut out = String::new();
            match format {
                Format::PrometheusText => {
                    prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
                }
                Format::OpenMetrics => {
                    prometheus_client::encoding::text::encode(&mut out, &self.registry)
                }
            }
            .unwrap();
            out
        }
    }

    /// Descriptor lines in order, then every series line sorted: series order within a family
    /// carries no meaning (the families' came from a hash map).
    fn families(text: &str) -> (Vec<&str>, Vec<&str>) {
        let lines = text.lines().filter(|l| l.contains("medic_check_"));
        let (descriptors, mut series): (Vec<&str>, Vec<&str>) =
            lines.partition(|l| l.starts_with('#'));
        series.sort_unstable();
        (descriptors, series)
    }

    #[test]
    fn per_check_series_encode_exactly_as_families_did() {
        let m = Metrics::new();
        let r = Reference::new();
        let empty = Metrics::new().encode(Format::PrometheusText);
        assert!(!empty.contains("medic_check_"), "{empty}");
        // A name to escape: discovered targets may carry any text.
        for check in ["web", "db", "gone", "odd \"name\" \\ with\nnewline"] {
            m.set_status(check, Status::Unknown, false);
            r.set_status(check, Status::Unknown, false);
        }
        let mut health = HealthState::default();
        let thresholds = crate::thresholds::Thresholds {
            failures_before_critical: 2,
            successes_before_healthy: 1,
            flapping: Some(crate::thresholds::Flapping {
                failures: 2,
                within: 5,
            }),
        };
        let probes = [
            ("web", Status::Critical, 0.020),
            ("web", Status::Healthy, 0.020),
            ("web", Status::Critical, 0.005),
            ("web", Status::Healthy, 12.5),
            ("web", Status::Warning, 0.3),
            ("gone", Status::Healthy, 1.0),
        ];
        for (i, (check, status, seconds)) in probes.into_iter().enumerate() {
            let mut outcome = Outcome::new(status, "x");
            outcome.duration = Duration::from_secs_f64(seconds);
            let changed = health.observe(status, thresholds).is_some();
            let at = 1_700_000_000.25 + i as f64;
            m.observe_probe(check, &outcome, &health, changed, at);
            r.observe(check, &outcome, &health, changed, at);
        }
        // Enough checks for several slices per family, some never probed, some only critical.
        for i in 0..(3 * CHECKS_PER_SLICE + 7) {
            let check = format!("c{i:04}");
            m.set_status(&check, Status::Unknown, false);
            r.set_status(&check, Status::Unknown, false);
            if i % 3 != 0 {
                let status = if i % 3 == 1 {
                    Status::Healthy
                } else {
                    Status::Critical
                };
                let mut outcome = Outcome::new(status, "x");
                outcome.duration = Duration::from_micros(i as u64 * 997);
                let mut health = HealthState::default();
                health.observe(
                    status,
                    crate::thresholds::Thresholds {
                        failures_before_critical: 1,
                        successes_before_healthy: 1,
                        flapping: None,
                    },
                );
                m.observe_probe(&check, &outcome, &health, true, 1e9 + i as f64 / 7.0);
                r.observe(&check, &outcome, &health, true, 1e9 + i as f64 / 7.0);
            }
        }
        m.forget_check("gone");
        r.success.remove(&CheckLabels {
            check: "gone".into(),
        });
        r.duration.remove(&CheckLabels {
            check: "gone".into(),
        });
        r.failures.remove(&CheckLabels {
            check: "gone".into(),
        });
        r.last_run.remove(&CheckLabels {
            check: "gone".into(),
        });
        r.flapping.remove(&CheckLabels {
            check: "gone".into(),
        });
        for s in Status::ALL {
            let l = CheckStatusLabels {
                check: "gone".into(),
                status: s.as_str().into(),
            };
            r.status.remove(&l);
            r.runs.remove(&l);
        }
        for format in [Format::PrometheusText, Format::OpenMetrics] {
            let ours = m.encode(format);
            let theirs = r.encode(format);
            assert!(families(&ours).1.len() > 20, "{ours}");
            assert_eq!(families(&ours), families(&theirs), "{ours}\n---\n{theirs}");
            assert!(ours.starts_with("# HELP medic_check_success "), "{ours}");
        }
        assert!(!m.encode(Format::PrometheusText).contains("gone"));
    }

    /// `medic_check_labels` as a `Family` keyed by each check's own label set would write it,
    /// escaped values and the left-out names included.
    #[test]
    fn check_labels_encode_exactly_as_a_family_would() {
        let config = crate::config::load_str(
            "checks:\n- name: web\n  tcp: {address: 'localhost:1'}\n  labels: {team: 'a \"b\" \\\\ c', env: prod}\n",
            std::path::Path::new("."),
            &crate::config::Overrides::default(),
        )
        .unwrap();
        let spec = Arc::new(config.checks[0].clone());
        let m = Metrics::new();
        let mut registry = Registry::default();
        let reference = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register(
            "medic_check_labels",
            "Always 1: the labels of a check made from a discovered target, to join on check",
            reference.clone(),
        );
        for check in ["t/one", "t/two\"x"] {
            m.set_check_labels(check, spec.clone());
            let mut labels = vec![("check".to_string(), check.to_string())];
            labels.extend(spec.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
            reference.get_or_create(&labels).set(1);
        }
        for format in [Format::PrometheusText, Format::OpenMetrics] {
            let mut theirs = String::new();
            match format {
                Format::PrometheusText => {
                    prometheus_client::encoding::prometheus_text::encode(&mut theirs, &registry)
                }
                Format::OpenMetrics => {
                    prometheus_client::encoding::text::encode(&mut theirs, &registry)
                }
            }
            .unwrap();
            let ours = m.encode(format);
            assert_eq!(families(&ours).1.len(), 2, "{ours}");
            assert_eq!(families(&ours), families(&theirs), "{ours}\n---\n{theirs}");
        }
    }
}
