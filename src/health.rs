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
    /// Microsecond precision, at most [`MAX_DURATION_SECONDS`].
    pub duration_seconds: f64,
    /// Shared with the neighbouring entries when identical, so a steady check costs one string.
    pub message: Arc<str>,
}

/// One check's recent probe results: the API's history and the samples of the hour its trend
/// covers, in one ring.
///
/// Every check holds this for as long as medic runs, so it is what dominates memory with
/// thousands of checks: 8 bytes a result, with messages (only the history shows them) run-length
/// encoded beside the newest `history_size`. Separate rings for the history (16-byte entries)
/// and the trend (8-byte samples) held the same results twice: 45 MB for 10,000 checks at 10 s,
/// 29 MB as one.
#[derive(Debug, Clone)]
pub struct Results {
    /// How many of the newest results keep their message (the history's length).
    history_size: u32,
    /// An hour of probes at the check's interval, within [64, 3600].
    hour_capacity: u32,
    /// Result times are stored as milliseconds after this.
    base_ms: i64,
    samples: VecDeque<Sample>,
    /// Messages of the newest results, oldest first, each with how many consecutive results
    /// carry it; the counts add up to at most `history_size`.
    messages: VecDeque<MessageRun>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    offset_ms: u32,
    /// Status in the top two bits, duration in microseconds (up to 1073 s) below.
    packed: u32,
}

#[derive(Debug, Clone)]
struct MessageRun {
    message: Arc<str>,
    count: u32,
}

const MICROS_MASK: u32 = (1 << 30) - 1;

/// The longest duration a result records; longer ones are clamped (probe timeouts are far
/// shorter).
pub const MAX_DURATION_SECONDS: f64 = MICROS_MASK as f64 / 1e6;

/// A duration as the results keep it: whole microseconds, clamped to [0, 1073 s].
pub fn duration_micros(duration_seconds: f64) -> u32 {
    (duration_seconds.max(0.0) * 1e6)
        .round()
        .min(f64::from(MICROS_MASK)) as u32
}

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

impl Results {
    /// Room for the newest `history_size` results and an hour of probes at `interval_ms`.
    pub fn new(history_size: usize, interval_ms: u64) -> Self {
        let per_hour = (TREND_WINDOW_MS as u64).div_ceil(interval_ms.max(1)) + 1;
        Results {
            history_size: clamp_u32(history_size.max(1)),
            hour_capacity: per_hour.clamp(64, 3600) as u32,
            base_ms: 0,
            samples: VecDeque::new(),
            messages: VecDeque::new(),
        }
    }

    fn capacity(&self) -> usize {
        self.history_size.max(self.hour_capacity) as usize
    }

    fn at_ms(&self, s: Sample) -> i64 {
        self.base_ms + i64::from(s.offset_ms)
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    fn covered(&self) -> usize {
        self.messages.iter().map(|r| r.count as usize).sum()
    }

    pub fn push(&mut self, at_ms: i64, status: Status, duration_seconds: f64, message: &str) {
        self.push_with(
            at_ms,
            status,
            duration_micros(duration_seconds),
            |last| match last {
                Some(last) if &**last == message => None,
                _ => Some(Arc::from(message)),
            },
        );
    }

    /// Appends a result; `new_message` gets the newest run's message and returns `None` when
    /// the result carries that same message, or the result's own otherwise.
    fn push_with(
        &mut self,
        at_ms: i64,
        status: Status,
        micros: u32,
        new_message: impl FnOnce(Option<&Arc<str>>) -> Option<Arc<str>>,
    ) {
        if self.samples.is_empty() {
            // The ring fills within the hour at the check's interval: take its room at once,
            // exactly, rather than doubling past it.
            self.samples.reserve_exact(self.capacity());
            self.base_ms = at_ms;
        }
        if self.samples.len() >= self.capacity() {
            self.samples.pop_front();
        }
        self.rebase_for(at_ms);
        self.samples.push_back(Sample {
            offset_ms: u32::try_from(at_ms - self.base_ms).unwrap_or(u32::MAX),
            packed: ((status.index() as u32) << 30) | micros.min(MICROS_MASK),
        });
        match new_message(self.messages.back().map(|run| &run.message)) {
            None => {
                if let Some(run) = self.messages.back_mut() {
                    run.count += 1;
                }
            }
            Some(message) => self.messages.push_back(MessageRun { message, count: 1 }),
        }
        if self.covered() > self.history_size as usize {
            self.uncover_oldest();
        }
    }

    /// Keeps every offset in range: moves the base when a result falls before it or too far
    /// after it. Results 49 days older than this one say nothing about the last hour, and a
    /// history that long (thousands of results at a slow interval) keeps its newest 49 days.
    fn rebase_for(&mut self, at_ms: i64) {
        let too_far = at_ms.saturating_sub(self.base_ms) > i64::from(u32::MAX);
        if at_ms >= self.base_ms && !too_far {
            return;
        }
        // Results are in the order they came, almost always the order of time; after a clock
        // jump, everything up to the last result that is too old goes, so the messages (kept
        // by position) stay with their results.
        let oldest_kept = at_ms.saturating_sub(i64::from(u32::MAX));
        let dropped = self
            .samples
            .iter()
            .rposition(|s| self.at_ms(*s) < oldest_kept)
            .map_or(0, |last| last + 1);
        for _ in 0..dropped {
            self.samples.pop_front();
        }
        // Results that kept their message are the newest; never more than remain.
        while self.covered() > self.samples.len() {
            self.uncover_oldest();
        }
        let new_base = self
            .samples
            .iter()
            .map(|s| self.at_ms(*s))
            .min()
            .unwrap_or(at_ms)
            .min(at_ms);
        let shift = self.base_ms - new_base;
        for s in self.samples.iter_mut() {
            let at = i64::from(s.offset_ms) + shift;
            s.offset_ms = u32::try_from(at).unwrap_or(u32::MAX);
        }
        self.base_ms = new_base;
    }

    /// The oldest result that still has its message loses it.
    fn uncover_oldest(&mut self) {
        if let Some(run) = self.messages.front_mut() {
            run.count -= 1;
            if run.count == 0 {
                self.messages.pop_front();
            }
        }
    }

    /// Adds results from before the oldest one (reloaded from the store), keeping the newest
    /// overall. `older` must be oldest first.
    pub fn merge_older(&mut self, older: impl IntoIterator<Item = (i64, Status, f64, String)>) {
        let first_ms = self.samples.front().map_or(i64::MAX, |s| self.at_ms(*s));
        let mut merged = Results {
            history_size: self.history_size,
            hour_capacity: self.hour_capacity,
            base_ms: 0,
            samples: VecDeque::new(),
            messages: VecDeque::new(),
        };
        for (at_ms, status, duration, message) in older.into_iter().filter(|e| e.0 < first_ms) {
            merged.push(at_ms, status, duration, &message);
        }
        // Only the newest results have messages, and they stay the newest: the older ones
        // (the store's) come first. The rest take a placeholder that is uncovered again before
        // they could show.
        let uncovered = self.samples.len() - self.covered();
        let placeholder: Arc<str> = Arc::from("");
        let messages = std::iter::repeat_n(&placeholder, uncovered).chain(
            self.messages
                .iter()
                .flat_map(|run| std::iter::repeat_n(&run.message, run.count as usize)),
        );
        for (s, message) in self.samples.iter().zip(messages) {
            merged.push_with(
                self.at_ms(*s),
                s.status(),
                s.duration_micros(),
                |last| match last {
                    Some(last) if **last == **message => None,
                    _ => Some(message.clone()),
                },
            );
        }
        *self = merged;
    }

    /// The history: newest first, at most `limit` and never more than `history_size`.
    pub fn recent(&self, limit: usize) -> impl Iterator<Item = HistoryEntry> + '_ {
        let runs = self
            .messages
            .iter()
            .rev()
            .flat_map(|run| std::iter::repeat_n(&run.message, run.count as usize));
        self.samples
            .iter()
            .rev()
            .zip(runs)
            .take(limit)
            .map(|(s, message)| HistoryEntry {
                at_ms: self.at_ms(*s),
                status: s.status(),
                duration_seconds: f64::from(s.duration_micros()) / 1e6,
                message: message.clone(),
            })
    }

    /// A reload changed `history_size`: keeps what fits. Results pushed from now on keep their
    /// message up to the new size.
    pub fn resize(&mut self, history_size: usize) {
        self.history_size = clamp_u32(history_size.max(1));
        while self.samples.len() > self.capacity() {
            self.samples.pop_front();
        }
        while self.covered() > self.history_size as usize {
            self.uncover_oldest();
        }
        if !self.samples.is_empty() {
            self.samples.shrink_to(self.capacity());
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

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
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
        let mut h = Results::new(3, 1000);
        for i in 0..5 {
            h.push(i, Healthy, 0.1, "HTTP 200");
        }
        // Every result stays for the trend; the history shows the newest three.
        assert_eq!(h.len(), 5);
        let recent: Vec<i64> = h.recent(10).map(|e| e.at_ms).collect();
        assert_eq!(recent, vec![4, 3, 2]);
        let entries: Vec<HistoryEntry> = h.recent(2).collect();
        assert!(Arc::ptr_eq(&entries[0].message, &entries[1].message));
        assert_eq!(h.messages.len(), 1);
        assert_eq!(h.covered(), 3);
    }

    #[test]
    fn history_keeps_each_entry_with_its_own_message_status_and_duration() {
        let mut h = Results::new(4, 3_600_000);
        let pushed = [
            (-5, Critical, 0.5, "a"),
            (1, Healthy, 0.25, "a"),
            (2, Warning, 1e-6, "b"),
            (3, Unknown, 3.0, "a"),
            (4, Healthy, 0.1, "a"),
            (1_000_000_123, Critical, 7.5, "c"),
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
            assert_eq!(h.covered(), h.len().min(4));
        }
        // "b", "a" (twice), "c": three runs for four entries, and the ring took its room once.
        assert_eq!(h.messages.len(), 3);
        assert_eq!(h.samples.capacity(), 64);
        h.resize(2);
        let kept: Vec<(i64, Arc<str>)> = h.recent(10).map(|e| (e.at_ms, e.message)).collect();
        assert_eq!(
            kept,
            vec![(1_000_000_123, Arc::from("c")), (4, Arc::from("a"))]
        );
        assert_eq!(h.messages.len(), 2);
    }

    #[test]
    fn a_history_longer_than_the_hour_sets_the_capacity() {
        let mut h = Results::new(200, 60_000);
        for i in 0..300 {
            h.push(i * 60_000, Healthy, 0.1, &format!("m{}", i % 2));
        }
        assert_eq!(h.len(), 200);
        assert_eq!(h.recent(1000).count(), 200);
        assert_eq!(h.messages.len(), 200);
        // The hour's trend still sees only the hour.
        assert_eq!(h.trend(299 * 60_000).runs, 60);
    }

    #[test]
    fn durations_keep_microseconds_and_clamp() {
        let mut h = Results::new(10, 1000);
        h.push(0, Healthy, 0.123_456_789, "");
        h.push(1, Healthy, -1.0, "");
        h.push(2, Healthy, 5_000.0, "");
        let d: Vec<f64> = h.recent(3).map(|e| e.duration_seconds).collect();
        assert_eq!(d, vec![MAX_DURATION_SECONDS, 0.0, 0.123_457]);
    }

    #[test]
    fn trend_covers_only_the_last_hour() {
        let mut s = Results::new(100, 1000);
        let now = 10 * TREND_WINDOW_MS;
        s.push(now - TREND_WINDOW_MS - 1, Critical, 9.0, "old"); // too old
        for i in 0..100 {
            let status = if i < 90 { Healthy } else { Critical };
            s.push(now - 1000 * (100 - i), status, (i + 1) as f64 / 1000.0, "");
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
        let mut h = Results::new(4, 3_600_000);
        h.push(100, Healthy, 0.1, "live");
        h.push(101, Critical, 0.1, "live2");
        h.merge_older((97..102).map(|t| (t, Warning, 0.2, format!("old{t}"))));
        let got: Vec<(i64, Arc<str>)> = h.recent(10).map(|e| (e.at_ms, e.message)).collect();
        assert_eq!(
            got,
            vec![
                (101, Arc::from("live2")),
                (100, Arc::from("live")),
                (99, Arc::from("old99")),
                (98, Arc::from("old98"))
            ]
        );
        assert_eq!(h.len(), 5);
        let mut s = Results::new(10, 60_000);
        s.push(200, Healthy, 0.1, "live");
        s.merge_older((0..150).map(|t| (t, Critical, 0.1, String::new())));
        let t = s.trend(200);
        assert_eq!(t.runs, 64);
        assert_eq!(t.status_distribution.healthy, 1);
        assert_eq!(s.recent(100).count(), 10);
        assert_eq!(
            s.recent(1).next().map(|e| e.message),
            Some(Arc::from("live"))
        );
    }

    #[test]
    fn merging_keeps_the_messages_of_a_ring_longer_than_its_history() {
        let mut h = Results::new(3, 1000);
        for t in 10..20 {
            h.push(t, Healthy, 0.1, &format!("m{t}"));
        }
        h.merge_older((0..5).map(|t| (t, Warning, 0.2, format!("old{t}"))));
        assert_eq!(h.len(), 15);
        let got: Vec<String> = h.recent(10).map(|e| e.message.to_string()).collect();
        assert_eq!(got, vec!["m19", "m18", "m17"]);
        assert_eq!(h.covered(), 3);
    }

    #[test]
    fn empty_trend_has_no_numbers() {
        let t = Results::new(100, 1000).trend(0);
        assert_eq!(t.runs, 0);
        assert_eq!(t.success_ratio, None);
        assert_eq!(t.latency_p50_seconds, None);
    }

    #[test]
    fn samples_keep_status_duration_and_time_through_rebasing() {
        let mut s = Results::new(100, 1000);
        s.push(5_000_000, Warning, 1.5, "a");
        s.push(4_000_000, Critical, 2000.0, "b"); // earlier than the base; duration clamps
        s.push(5_000_000 + i64::from(u32::MAX) - 10, Unknown, 0.0, "c"); // beyond u32 offsets
        let times: Vec<(i64, Status, u32)> = s
            .samples
            .iter()
            .map(|x| (s.at_ms(*x), x.status(), x.duration_micros()))
            .collect();
        // The 4,000,000 sample is more than 49 days before the last one: it goes, and so does
        // what came before it.
        assert_eq!(
            times,
            vec![(5_000_000 + i64::from(u32::MAX) - 10, Unknown, 0)]
        );
        let messages: Vec<Arc<str>> = s.recent(10).map(|e| e.message).collect();
        assert_eq!(messages, vec![Arc::from("c")]);
        let mut t = Results::new(100, 1000);
        t.push(5_000_000, Warning, 1.5, "a");
        t.push(4_000_000, Critical, 2000.0, "b");
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
        let mut s = Results::new(100, 1);
        for i in 0..10_000 {
            s.push(i, Healthy, 0.0, "same");
        }
        assert_eq!(s.trend(10_000).runs, 3600);
        assert_eq!(s.recent(1000).count(), 100);
        assert_eq!(s.messages.len(), 1);
    }
}
