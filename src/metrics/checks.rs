//! The per-check series of `/metrics` (`medic_check_success`, `_status`, `_duration_seconds`,
//! `_runs_total`, `_consecutive_failures`, `_flapping`, `_last_run_timestamp_seconds`, and
//! `medic_check_labels` for discovered checks): a table
//! of one small record per check and its renderer, which writes the table a slice of checks
//! at a time through prometheus-client's encoders. The rest of the exposition is the registry
//! in [`super`].

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
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
/// check, encoded a slice at a time by [`Slice`] through prometheus-client's own encoders, so the
/// exposition is what one `Family` per series gave (the test below compares them). Those
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

    fn bounded(&self) -> [(f64, u64); DURATION_BUCKETS.len() + 1] {
        let mut out = [(f64::INFINITY, 0); DURATION_BUCKETS.len() + 1];
        for (i, count) in self.buckets.iter().enumerate() {
            out[i] = (
                DURATION_BUCKETS.get(i).copied().unwrap_or(f64::INFINITY),
                *count,
            );
        }
        out
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
    /// once, before its first series), or `None` once every family is written. Slices go
    /// through prometheus-client's encoder, as every family does.
    pub(super) fn next_slice(
        self: &Arc<Self>,
        format: Format,
        cursor: &mut Cursor,
    ) -> Option<String> {
        while let Some(family) = CHECK_FAMILIES.get(cursor.family).copied() {
            let slice = Arc::new(Slice {
                table: self.clone(),
                family,
                after: cursor.after.clone(),
                last: Mutex::new(None),
            });
            let mut registry = Registry::default();
            registry.register_collector(Box::new(slice.clone()));
            let mut out = String::with_capacity(16 * 1024);
            // OpenMetrics' `# EOF` comes once, after the registry's families.
            let result = match format {
                Format::PrometheusText => {
                    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
                }
                Format::OpenMetrics => {
                    prometheus_client::encoding::text::encode_registry(&mut out, &registry)
                }
            };
            log_encoding_error(result);
            let last = slice.last.lock().unwrap_or_else(|p| p.into_inner()).take();
            match last {
                None => {
                    cursor.family += 1;
                    cursor.after = None;
                }
                Some(last) => {
                    let continued = cursor.after.replace(last).is_some();
                    if continued {
                        // The encoder writes the descriptor with every slice; a family has it
                        // once. Descriptor lines start with '#', series lines never do.
                        let series_start = out
                            .split_inclusive('\n')
                            .take_while(|line| line.starts_with('#'))
                            .map(str::len)
                            .sum::<usize>();
                        out.drain(..series_start);
                    }
                    return Some(out);
                }
            }
        }
        None
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

    fn encode(self, check: &str, s: &CheckSeries, family: &mut MetricEncoder) -> std::fmt::Result {
        let labels = [("check", check)];
        match (self, &s.latest) {
            (CheckFamily::Status, _) => {
                for status in Status::ALL {
                    family
                        .encode_family(&[("check", check), ("status", status.as_str())])?
                        .encode_gauge(&i64::from(s.status == Some(status)))?;
                }
                Ok(())
            }
            (CheckFamily::Labels, _) => match &s.labels {
                Some(spec) => encode_labels(check, spec, family),
                None => Ok(()),
            },
            (CheckFamily::Flapping, _) => match s.flapping {
                Some(flapping) => family
                    .encode_family(&labels)?
                    .encode_gauge(&i64::from(flapping)),
                None => Ok(()),
            },
            (CheckFamily::Runs, _) => {
                for status in Status::ALL {
                    if let Some(runs) = s.runs[status.index()] {
                        family
                            .encode_family(&[("check", check), ("status", status.as_str())])?
                            .encode_counter::<NoLabelSet, _, u64>(&runs, None)?;
                    }
                }
                Ok(())
            }
            (CheckFamily::Success, Some(l)) => family
                .encode_family(&labels)?
                .encode_gauge(&i64::from(l.success)),
            (CheckFamily::Duration, Some(l)) => family
                .encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(
                    l.duration.sum,
                    l.duration.count,
                    &l.duration.bounded(),
                    None,
                ),
            (CheckFamily::ConsecutiveFailures, Some(l)) => family
                .encode_family(&labels)?
                .encode_gauge(&i64::from(l.consecutive_failures)),
            (CheckFamily::LastRun, Some(l)) => {
                family.encode_family(&labels)?.encode_gauge(&l.last_run)
            }
            (_, None) => Ok(()),
        }
    }
}

/// `medic_check_labels{check, <the check's labels>} 1`. Label names were checked when the
/// target was read; values are escaped by the encoder.
fn encode_labels(check: &str, spec: &CheckSpec, family: &mut MetricEncoder) -> std::fmt::Result {
    let mut labels = Vec::with_capacity(spec.labels.len() + 1);
    labels.push(("check", check));
    labels.extend(
        spec.labels
            .iter()
            .filter(|(name, _)| exported_label(name))
            .map(|(name, value)| (name.as_str(), value.as_str())),
    );
    family.encode_family(&labels)?.encode_gauge(&1i64)
}

/// How many checks one slice of a per-check family covers: a slice of the histogram family is
/// then about 150 KB of text.
const CHECKS_PER_SLICE: usize = 128;

/// Encodes one slice of a per-check family: the next [`CHECKS_PER_SLICE`] checks after `after`
/// (in name order) that have its series, with the family's descriptor, or nothing when no
/// check is left. The values are copied out first, so no check's lock is held while writing.
#[derive(Debug)]
struct Slice {
    table: Arc<CheckTable>,
    family: CheckFamily,
    after: Option<Arc<str>>,
    /// The last check encoded, where the next slice starts.
    last: Mutex<Option<Arc<str>>>,
}

impl Collector for Slice {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        let rows: Vec<(Arc<str>, CheckSeries)> = {
            let checks = self.table.0.read().unwrap_or_else(|p| p.into_inner());
            let start = match &self.after {
                Some(after) => Bound::Excluded(&**after),
                None => Bound::Unbounded,
            };
            checks
                .range::<str, _>((start, Bound::Unbounded))
                .map(|(check, series)| (check, lock(series).clone()))
                .filter(|(_, series)| self.family.has(series))
                .take(CHECKS_PER_SLICE)
                .map(|(check, series)| (check.clone(), series))
                .collect()
        };
        let Some((last, _)) = rows.last() else {
            return Ok(());
        };
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(last.clone());
        let (name, help, unit, metric_type) = self.family.descriptor();
        let mut family = encoder.encode_descriptor(name, help, unit, metric_type)?;
        for (check, series) in &rows {
            self.family.encode(check, series, &mut family)?;
        }
        Ok(())
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
        for check in ["web", "db", "gone"] {
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
}
