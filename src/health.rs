//! Pure health logic: the threshold state machine, the per-check history ring and the trend
//! over the last hour. No IO, no clock: times are arguments.

use std::collections::VecDeque;
use std::sync::Arc;

use serde::Serialize;

use crate::status::Status;

/// How many probes it takes to change a check's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    pub failures_before_critical: u32,
    pub successes_before_healthy: u32,
    /// Monit-style flap detection: critical after this many critical probes among the latest
    /// few, even when they never come in a row.
    pub flapping: Option<Flapping>,
}

/// "`failures` critical probes within the latest `within` probes".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flapping {
    pub failures: u32,
    /// At most [`Flapping::MAX_WINDOW`]: the window is a bit set of the latest probes.
    pub within: u32,
}

impl Flapping {
    pub const MAX_WINDOW: u32 = 64;
}

/// A check's status as thresholds see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthState {
    pub status: Status,
    /// The current run of critical probes.
    pub consecutive_failures: u32,
    /// The current run of non-critical probes.
    pub consecutive_successes: u32,
    /// Critical because of flap detection rather than a run of failures.
    pub flapping: bool,
    /// One bit per recent probe, newest in bit 0: set when the probe was critical.
    recent_failures: u64,
}

/// A change of a check's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    pub from: Status,
    pub to: Status,
}

impl Default for HealthState {
    fn default() -> Self {
        HealthState {
            status: Status::Unknown,
            consecutive_failures: 0,
            consecutive_successes: 0,
            flapping: false,
            recent_failures: 0,
        }
    }
}

impl HealthState {
    /// Applies one probe's raw status.
    ///
    /// A critical probe makes the check critical only after `failures_before_critical` of them in
    /// a row; until then the check keeps its status. Once critical, it takes
    /// `successes_before_healthy` non-critical probes in a row to leave. Otherwise healthy,
    /// warning and unknown pass straight through.
    ///
    /// With flap detection, a check whose failures never line up (fail, pass, fail, pass…) is
    /// critical, marked `flapping`, while the latest `within` probes hold at least `failures`
    /// critical ones; it leaves by the same rule as any critical check once they do not.
    pub fn observe(&mut self, raw: Status, thresholds: Thresholds) -> Option<Transition> {
        let from = self.status;
        let failed = raw == Status::Critical;
        self.recent_failures = (self.recent_failures << 1) | u64::from(failed);
        let flapping_now = thresholds.flapping.is_some_and(|f| {
            let window = f.within.clamp(1, Flapping::MAX_WINDOW);
            let mask = if window == 64 {
                u64::MAX
            } else {
                (1u64 << window) - 1
            };
            (self.recent_failures & mask).count_ones() >= f.failures.max(1)
        });
        if failed {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            self.consecutive_successes = 0;
            if self.consecutive_failures >= thresholds.failures_before_critical.max(1) {
                self.status = Status::Critical;
                self.flapping = false;
            } else if flapping_now {
                self.status = Status::Critical;
                self.flapping = true;
            }
        } else {
            self.consecutive_failures = 0;
            self.consecutive_successes = self.consecutive_successes.saturating_add(1);
            if flapping_now {
                self.flapping = self.flapping || self.status != Status::Critical;
                self.status = Status::Critical;
            } else if self.status != Status::Critical
                || self.consecutive_successes >= thresholds.successes_before_healthy.max(1)
            {
                self.status = raw;
                self.flapping = false;
            }
        }
        (from != self.status).then_some(Transition {
            from,
            to: self.status,
        })
    }
}

/// One probe result, as the history hands it out.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// Unix time in milliseconds.
    pub at_ms: i64,
    /// The probe's own (raw) status.
    pub status: Status,
    pub duration_seconds: f64,
    /// Shared with the neighbouring entries when identical, so a steady check costs one string.
    pub message: Arc<str>,
}

/// A bounded ring of recent results, newest last.
///
/// Kept compact because every check holds `history_size` (100 by default) of these for as long
/// as medic runs: 16 bytes an entry, with messages run-length encoded beside them. Entries of
/// 40 bytes in a ring that doubled its buffer cost 5 KB a check, 51 MB for 10,000 checks.
#[derive(Debug, Clone)]
pub struct History {
    capacity: usize,
    entries: VecDeque<PackedEntry>,
    /// The entries' messages oldest first, each with how many consecutive entries carry it; the
    /// counts add up to `entries.len()`.
    messages: VecDeque<MessageRun>,
}

#[derive(Debug, Clone, Copy)]
struct PackedEntry {
    /// `at_ms << 2 | status index`; times are clamped to ±2^61 ms (73 million years).
    at_status: i64,
    duration_seconds: f64,
}

#[derive(Debug, Clone)]
struct MessageRun {
    message: Arc<str>,
    count: u32,
}

const MAX_AT_MS: i64 = i64::MAX >> 2;

impl PackedEntry {
    fn new(at_ms: i64, status: Status, duration_seconds: f64) -> Self {
        PackedEntry {
            at_status: (at_ms.clamp(-MAX_AT_MS, MAX_AT_MS) << 2) | status.index() as i64,
            duration_seconds,
        }
    }

    fn at_ms(self) -> i64 {
        self.at_status >> 2
    }

    fn status(self) -> Status {
        Status::ALL[(self.at_status & 3) as usize]
    }
}

impl History {
    pub fn new(capacity: usize) -> Self {
        History {
            capacity: capacity.max(1),
            entries: VecDeque::new(),
            messages: VecDeque::new(),
        }
    }

    pub fn push(&mut self, at_ms: i64, status: Status, duration_seconds: f64, message: &str) {
        self.push_entry(
            PackedEntry::new(at_ms, status, duration_seconds),
            |last| match last {
                Some(last) if &**last == message => None,
                _ => Some(Arc::from(message)),
            },
        );
    }

    /// Appends an entry; `new_message` gets the newest run's message and returns `None` when
    /// the entry carries that same message, or the entry's own otherwise.
    fn push_entry(
        &mut self,
        entry: PackedEntry,
        new_message: impl FnOnce(Option<&Arc<str>>) -> Option<Arc<str>>,
    ) {
        if self.entries.len() == self.capacity {
            self.pop_oldest();
        }
        // Grow by doubling as VecDeque would, but never past the capacity: a full ring then
        // holds exactly `capacity` entries' worth of memory.
        if self.entries.len() == self.entries.capacity() {
            let target = (self.entries.len() * 2).max(4).min(self.capacity);
            self.entries.reserve_exact(target - self.entries.len());
        }
        self.entries.push_back(entry);
        match new_message(self.messages.back().map(|run| &run.message)) {
            None => {
                if let Some(run) = self.messages.back_mut() {
                    run.count += 1;
                }
            }
            Some(message) => self.messages.push_back(MessageRun { message, count: 1 }),
        }
    }

    fn pop_oldest(&mut self) {
        if self.entries.pop_front().is_none() {
            return;
        }
        if let Some(run) = self.messages.front_mut() {
            run.count -= 1;
            if run.count == 0 {
                self.messages.pop_front();
            }
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Adds results from before the oldest entry (history reloaded from the store), keeping the
    /// newest `capacity` overall. `older` must be oldest first.
    pub fn merge_older(&mut self, older: impl IntoIterator<Item = (i64, Status, f64, String)>) {
        let first_ms = self.entries.front().map_or(i64::MAX, |e| e.at_ms());
        let mut merged = History::new(self.capacity);
        for (at_ms, status, duration, message) in older.into_iter().filter(|e| e.0 < first_ms) {
            merged.push(at_ms, status, duration, &message);
        }
        let runs = self
            .messages
            .iter()
            .flat_map(|run| std::iter::repeat_n(&run.message, run.count as usize));
        for (entry, message) in self.entries.iter().zip(runs) {
            merged.push_entry(*entry, |last| match last {
                Some(last) if **last == **message => None,
                _ => Some(message.clone()),
            });
        }
        *self = merged;
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Newest first, at most `limit`.
    pub fn recent(&self, limit: usize) -> impl Iterator<Item = HistoryEntry> + '_ {
        let runs = self
            .messages
            .iter()
            .rev()
            .flat_map(|run| std::iter::repeat_n(&run.message, run.count as usize));
        self.entries
            .iter()
            .rev()
            .zip(runs)
            .take(limit)
            .map(|(entry, message)| HistoryEntry {
                at_ms: entry.at_ms(),
                status: entry.status(),
                duration_seconds: entry.duration_seconds,
                message: message.clone(),
            })
    }

    pub fn resize(&mut self, capacity: usize) {
        self.capacity = capacity.max(1);
        while self.entries.len() > self.capacity {
            self.pop_oldest();
        }
        self.entries.shrink_to(self.capacity);
    }
}

/// Compact probe samples covering the trend window; bounded by count as well as time.
///
/// Eight bytes a sample: with 10,000 checks an hour of samples each is what dominates memory.
#[derive(Debug, Clone)]
pub struct Samples {
    capacity: usize,
    /// Sample times are stored as milliseconds after this.
    base_ms: i64,
    samples: VecDeque<Sample>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    offset_ms: u32,
    /// Status in the top two bits, duration in microseconds (up to 1073 s) below.
    packed: u32,
}

const MICROS_MASK: u32 = (1 << 30) - 1;

impl Sample {
    fn status(self) -> Status {
        Status::ALL[(self.packed >> 30) as usize]
    }

    fn duration_micros(self) -> u32 {
        self.packed & MICROS_MASK
    }
}

/// The window the API's trend covers.
pub const TREND_WINDOW_MS: i64 = 3_600_000;

/// What the last hour looked like for one check.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trend {
    pub window_seconds: f64,
    pub runs: u64,
    pub status_distribution: StatusCounts,
    pub success_ratio: Option<f64>,
    pub latency_p50_seconds: Option<f64>,
    pub latency_p90_seconds: Option<f64>,
    pub latency_p99_seconds: Option<f64>,
    pub latency_max_seconds: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatusCounts {
    pub healthy: u64,
    pub warning: u64,
    pub critical: u64,
    pub unknown: u64,
}

impl StatusCounts {
    pub fn add(&mut self, status: Status) {
        match status {
            Status::Healthy => self.healthy += 1,
            Status::Warning => self.warning += 1,
            Status::Critical => self.critical += 1,
            Status::Unknown => self.unknown += 1,
        }
    }
}

impl Samples {
    /// Enough room for an hour of probes at `interval_ms`, within [64, 3600].
    pub fn for_interval(interval_ms: u64) -> Self {
        let per_hour = (TREND_WINDOW_MS as u64).div_ceil(interval_ms.max(1)) + 1;
        Samples {
            capacity: per_hour.clamp(64, 3600) as usize,
            base_ms: 0,
            samples: VecDeque::new(),
        }
    }

    fn at_ms(&self, s: Sample) -> i64 {
        self.base_ms + i64::from(s.offset_ms)
    }

    pub fn push(&mut self, at_ms: i64, status: Status, duration_seconds: f64) {
        if self.samples.is_empty() {
            self.samples.reserve_exact(self.capacity);
            self.base_ms = at_ms;
        }
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        // Keep every offset in range: move the base when a sample falls before it or too far
        // after it (the ring then spans at most its capacity of intervals).
        let too_far = at_ms.saturating_sub(self.base_ms) > i64::from(u32::MAX);
        if at_ms < self.base_ms || too_far {
            // Samples 49 days older than this one say nothing about the last hour: drop them.
            let oldest_kept = at_ms.saturating_sub(i64::from(u32::MAX));
            let times: Vec<(i64, u32)> = self
                .samples
                .iter()
                .map(|s| (self.at_ms(*s), s.packed))
                .filter(|(t, _)| *t >= oldest_kept)
                .collect();
            let new_base = times
                .iter()
                .map(|(t, _)| *t)
                .min()
                .unwrap_or(at_ms)
                .min(at_ms);
            self.samples = times
                .into_iter()
                .map(|(t, packed)| Sample {
                    offset_ms: u32::try_from(t - new_base).unwrap_or(u32::MAX),
                    packed,
                })
                .collect();
            self.samples
                .reserve_exact(self.capacity.saturating_sub(self.samples.len()));
            self.base_ms = new_base;
        }
        let micros = (duration_seconds.max(0.0) * 1e6).min(f64::from(MICROS_MASK)) as u32;
        self.samples.push_back(Sample {
            offset_ms: u32::try_from(at_ms - self.base_ms).unwrap_or(u32::MAX),
            packed: ((status.index() as u32) << 30) | micros,
        });
    }

    /// Adds samples from before the oldest one, keeping the newest `capacity` overall. `older`
    /// must be oldest first.
    pub fn merge_older(&mut self, older: impl IntoIterator<Item = (i64, Status, f64)>) {
        let existing: Vec<(i64, Status, f64)> = self
            .samples
            .iter()
            .map(|s| {
                (
                    self.at_ms(*s),
                    s.status(),
                    f64::from(s.duration_micros()) / 1e6,
                )
            })
            .collect();
        let first_ms = existing.first().map_or(i64::MAX, |e| e.0);
        self.samples.clear();
        for (at_ms, status, duration) in
            older.into_iter().filter(|e| e.0 < first_ms).chain(existing)
        {
            self.push(at_ms, status, duration);
        }
    }

    /// The trend over the hour before `now_ms`.
    pub fn trend(&self, now_ms: i64) -> Trend {
        let since = now_ms - TREND_WINDOW_MS;
        let mut counts = StatusCounts::default();
        // 1µs to 1h at 3 significant digits: exact enough for a latency report.
        let mut histogram =
            hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).ok();
        let mut runs = 0u64;
        let mut max_micros = 0u32;
        for s in self.samples.iter().filter(|s| {
            let at = self.at_ms(**s);
            at > since && at <= now_ms
        }) {
            runs += 1;
            counts.add(s.status());
            max_micros = max_micros.max(s.duration_micros());
            if let Some(h) = histogram.as_mut() {
                h.saturating_record(u64::from(s.duration_micros().max(1)));
            }
        }
        let quantile = |q: f64| -> Option<f64> {
            if runs == 0 {
                return None;
            }
            // hdrhistogram reports the top of a value's bucket; never above the real maximum.
            histogram
                .as_ref()
                .map(|h| h.value_at_quantile(q).min(u64::from(max_micros.max(1))) as f64 / 1e6)
        };
        Trend {
            window_seconds: TREND_WINDOW_MS as f64 / 1000.0,
            runs,
            status_distribution: counts,
            success_ratio: (runs > 0)
                .then(|| (counts.healthy + counts.warning) as f64 / runs as f64),
            latency_p50_seconds: quantile(0.50),
            latency_p90_seconds: quantile(0.90),
            latency_p99_seconds: quantile(0.99),
            latency_max_seconds: (runs > 0).then(|| f64::from(max_micros) / 1e6),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    fn run(raws: &[Status], fbc: u32, sbh: u32) -> Vec<Status> {
        let t = Thresholds {
            failures_before_critical: fbc,
            successes_before_healthy: sbh,
            flapping: None,
        };
        let mut h = HealthState::default();
        raws.iter()
            .map(|r| {
                h.observe(*r, t);
                h.status
            })
            .collect()
    }

    #[test]
    fn threshold_table() {
        let cases: &[(&[Status], u32, u32, &[Status])] = &[
            // Defaults: every probe counts at once.
            (
                &[Healthy, Critical, Healthy],
                1,
                1,
                &[Healthy, Critical, Healthy],
            ),
            // Critical only after three in a row; the check keeps its status until then.
            (
                &[Healthy, Critical, Critical, Critical],
                3,
                1,
                &[Healthy, Healthy, Healthy, Critical],
            ),
            // A healthy probe in between resets the run.
            (
                &[Healthy, Critical, Critical, Healthy, Critical, Critical],
                3,
                1,
                &[Healthy, Healthy, Healthy, Healthy, Healthy, Healthy],
            ),
            // Two non-critical probes needed to leave critical.
            (
                &[Critical, Healthy, Healthy],
                1,
                2,
                &[Critical, Critical, Healthy],
            ),
            (
                &[Critical, Healthy, Critical, Healthy, Healthy],
                1,
                2,
                &[Critical, Critical, Critical, Critical, Healthy],
            ),
            // Warning passes straight through, and counts as non-critical when recovering.
            (
                &[Healthy, Warning, Healthy],
                3,
                3,
                &[Healthy, Warning, Healthy],
            ),
            (
                &[Critical, Warning, Warning],
                1,
                2,
                &[Critical, Critical, Warning],
            ),
            // Not run yet, then failing below the threshold: still unknown.
            (&[Critical, Critical], 3, 1, &[Unknown, Unknown]),
            // Unknown passes through like warning.
            (
                &[Healthy, Unknown, Healthy],
                1,
                1,
                &[Healthy, Unknown, Healthy],
            ),
        ];
        for (raws, fbc, sbh, want) in cases {
            assert_eq!(
                &run(raws, *fbc, *sbh),
                want,
                "raws {raws:?} fbc {fbc} sbh {sbh}"
            );
        }
    }

    /// Statuses, with `*` after a status that is critical because of flapping.
    fn run_flapping(raws: &[Status], fbc: u32, sbh: u32, failures: u32, within: u32) -> String {
        let t = Thresholds {
            failures_before_critical: fbc,
            successes_before_healthy: sbh,
            flapping: Some(Flapping { failures, within }),
        };
        let mut h = HealthState::default();
        raws.iter()
            .map(|r| {
                h.observe(*r, t);
                format!(
                    "{}{}",
                    &h.status.as_str()[..1],
                    if h.flapping { "*" } else { "" }
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn flap_detection_table() {
        // raws, failures_before_critical, successes_before_healthy, failures, within, statuses
        type Case<'a> = (&'a [Status], u32, u32, u32, u32, &'a str);
        let cases: &[Case] = &[
            // Alternating failures never reach three in a row, but three in five is flapping.
            (
                &[
                    Healthy, Critical, Healthy, Critical, Healthy, Critical, Healthy,
                ],
                3,
                1,
                3,
                5,
                "h h h h h c* h",
            ),
            // Once the window holds fewer failures, the check recovers as usual...
            (
                &[
                    Critical, Healthy, Critical, Healthy, Critical, Healthy, Healthy, Healthy,
                ],
                3,
                1,
                3,
                5,
                "u h h h c* h h h",
            ),
            // ...taking successes_before_healthy probes to leave.
            (
                &[
                    Critical, Healthy, Critical, Healthy, Critical, Healthy, Healthy, Healthy,
                    Healthy,
                ],
                3,
                3,
                3,
                5,
                "u h h h c* c* c* h h",
            ),
            // A run of failures is plain critical, not flapping.
            (
                &[Healthy, Critical, Critical, Critical],
                2,
                1,
                2,
                10,
                "h h c c",
            ),
            // Warnings are not failures.
            (
                &[Warning, Warning, Warning, Warning, Critical],
                2,
                1,
                2,
                5,
                "w w w w w",
            ),
            // A window of 64 probes works at the edge of the bit set.
            (&[Critical, Healthy, Critical], 5, 1, 2, 64, "u h c*"),
        ];
        for (raws, fbc, sbh, failures, within, want) in cases {
            assert_eq!(
                run_flapping(raws, *fbc, *sbh, *failures, *within),
                *want,
                "raws {raws:?} fbc {fbc} sbh {sbh} flapping {failures}/{within}"
            );
        }
    }

    #[test]
    fn failures_older_than_the_window_are_forgotten() {
        let mut raws = vec![Critical, Healthy, Critical];
        raws.extend(std::iter::repeat_n(Healthy, 70));
        raws.push(Critical);
        let out = run_flapping(&raws, 5, 1, 2, 64);
        // Flapping from the second failure (probe 3) until the first leaves the window (probe 65).
        assert!(out.starts_with("u h c*"), "{out}");
        assert_eq!(out.matches("c*").count(), 62, "{out}");
        assert_eq!(out.rsplit(' ').next(), Some("h"), "{out}");
    }

    #[test]
    fn counts_consecutive_failures_and_reports_transitions() {
        let t = Thresholds {
            failures_before_critical: 2,
            successes_before_healthy: 1,
            flapping: None,
        };
        let mut h = HealthState::default();
        assert_eq!(
            h.observe(Healthy, t),
            Some(Transition {
                from: Unknown,
                to: Healthy
            })
        );
        assert_eq!(h.observe(Critical, t), None);
        assert_eq!(h.consecutive_failures, 1);
        assert_eq!(
            h.observe(Critical, t),
            Some(Transition {
                from: Healthy,
                to: Critical
            })
        );
        assert_eq!(h.observe(Critical, t), None);
        assert_eq!(h.consecutive_failures, 3);
        assert_eq!(
            h.observe(Healthy, t),
            Some(Transition {
                from: Critical,
                to: Healthy
            })
        );
        assert_eq!(h.consecutive_failures, 0);
    }

    #[test]
    fn history_is_bounded_and_shares_repeated_messages() {
        let mut h = History::new(3);
        for i in 0..5 {
            h.push(i, Healthy, 0.1, "HTTP 200");
        }
        assert_eq!(h.len(), 3);
        let recent: Vec<i64> = h.recent(10).map(|e| e.at_ms).collect();
        assert_eq!(recent, vec![4, 3, 2]);
        let entries: Vec<HistoryEntry> = h.recent(2).collect();
        assert!(Arc::ptr_eq(&entries[0].message, &entries[1].message));
        assert_eq!(h.messages.len(), 1);
    }

    #[test]
    fn history_keeps_each_entry_with_its_own_message_status_and_duration() {
        let mut h = History::new(4);
        let pushed = [
            (-5, Critical, 0.5, "a"),
            (1, Healthy, 0.25, "a"),
            (2, Warning, 1e-9, "b"),
            (3, Unknown, 3.0, "a"),
            (4, Healthy, 0.1, "a"),
            (1_700_000_000_123, Critical, 7.5, "c"),
        ];
        for (i, (at, status, duration, message)) in pushed.iter().enumerate() {
            h.push(*at, *status, *duration, message);
            let want: Vec<HistoryEntry> = pushed[..=i]
                .iter()
                .rev()
                .take(4)
                .map(|(at, status, duration, message)| HistoryEntry {
                    at_ms: *at,
                    status: *status,
                    duration_seconds: *duration,
                    message: Arc::from(*message),
                })
                .collect();
            assert_eq!(h.recent(10).collect::<Vec<_>>(), want, "after {i}");
            let counted: u32 = h.messages.iter().map(|r| r.count).sum();
            assert_eq!(counted as usize, h.len());
        }
        // "b", "a" (twice), "c": three runs for four entries, and no more room than needed.
        assert_eq!(h.messages.len(), 3);
        assert_eq!(h.entries.capacity(), 4);
        h.resize(2);
        let kept: Vec<(i64, Arc<str>)> = h.recent(10).map(|e| (e.at_ms, e.message)).collect();
        assert_eq!(
            kept,
            vec![(1_700_000_000_123, Arc::from("c")), (4, Arc::from("a"))]
        );
        assert_eq!(h.messages.len(), 2);
    }

    #[test]
    fn trend_covers_only_the_last_hour() {
        let mut s = Samples::for_interval(1000);
        let now = 10 * TREND_WINDOW_MS;
        s.push(now - TREND_WINDOW_MS - 1, Critical, 9.0); // too old
        for i in 0..100 {
            let status = if i < 90 { Healthy } else { Critical };
            s.push(now - 1000 * (100 - i), status, (i + 1) as f64 / 1000.0);
        }
        let t = s.trend(now);
        assert_eq!(t.runs, 100);
        assert_eq!(t.status_distribution.healthy, 90);
        assert_eq!(t.status_distribution.critical, 10);
        assert_eq!(t.success_ratio, Some(0.9));
        let p50 = t.latency_p50_seconds.unwrap();
        assert!((p50 - 0.050).abs() < 0.001, "{p50}");
        let p99 = t.latency_p99_seconds.unwrap();
        assert!((p99 - 0.099).abs() < 0.001, "{p99}");
        assert_eq!(t.latency_max_seconds, Some(0.1));
    }

    #[test]
    fn merging_older_history_keeps_order_and_bounds() {
        let mut h = History::new(4);
        h.push(100, Healthy, 0.1, "live");
        h.push(101, Critical, 0.1, "live2");
        h.merge_older((97..102).map(|t| (t, Warning, 0.2, format!("old{t}"))));
        let times: Vec<i64> = h.recent(10).map(|e| e.at_ms).collect();
        assert_eq!(times, vec![101, 100, 99, 98]);
        let mut s = Samples::for_interval(60_000);
        s.push(200, Healthy, 0.1);
        s.merge_older((0..150).map(|t| (t, Critical, 0.1)));
        let t = s.trend(200);
        assert_eq!(t.runs, 64);
        assert_eq!(t.status_distribution.healthy, 1);
    }

    #[test]
    fn empty_trend_has_no_numbers() {
        let t = Samples::for_interval(1000).trend(0);
        assert_eq!(t.runs, 0);
        assert_eq!(t.success_ratio, None);
        assert_eq!(t.latency_p50_seconds, None);
    }

    #[test]
    fn samples_keep_status_duration_and_time_through_rebasing() {
        let mut s = Samples::for_interval(1000);
        s.push(5_000_000, Warning, 1.5);
        s.push(4_000_000, Critical, 2000.0); // earlier than the base; duration clamps
        s.push(5_000_000 + i64::from(u32::MAX) - 10, Unknown, 0.0); // beyond u32 offsets from the base
        let times: Vec<(i64, Status, u32)> = s
            .samples
            .iter()
            .map(|x| (s.at_ms(*x), x.status(), x.duration_micros()))
            .collect();
        // The 4,000,000 sample is more than 49 days before the last one: dropped.
        assert_eq!(times[0], (5_000_000, Warning, 1_500_000));
        assert_eq!(times[1], (5_000_000 + i64::from(u32::MAX) - 10, Unknown, 0));
        assert_eq!(times.len(), 2);
        let mut t = Samples::for_interval(1000);
        t.push(5_000_000, Warning, 1.5);
        t.push(4_000_000, Critical, 2000.0);
        let times: Vec<(i64, Status, u32)> = t
            .samples
            .iter()
            .map(|x| (t.at_ms(*x), x.status(), x.duration_micros()))
            .collect();
        assert_eq!(
            times,
            vec![
                (5_000_000, Warning, 1_500_000),
                (4_000_000, Critical, MICROS_MASK)
            ]
        );
        assert_eq!(std::mem::size_of::<Sample>(), 8);
    }

    #[test]
    fn samples_are_bounded() {
        let mut s = Samples::for_interval(1);
        for i in 0..10_000 {
            s.push(i, Healthy, 0.0);
        }
        assert_eq!(s.trend(10_000).runs, 3600);
    }
}
