//! Pure: one check's recent probe results in one bounded, bit-packed ring, read both as the
//! API's history and as the samples of the trend. No IO, no clock: times are arguments.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::check_trend::{Trend, TREND_WINDOW_MS};
use crate::status::Status;

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
/// covers.
///
/// Every check holds this for as long as medic runs, so with thousands of checks it is what
/// dominates memory. The newest `history_size` results are kept exactly (8 bytes each, their
/// messages run-length encoded beside them) because the history shows them; older ones only
/// feed the trend and take 4 bytes: time to the second, duration to 0.1 %. Separate rings for
/// the history (16-byte entries) and the trend (8-byte samples) took 45 MB for 10,000 checks at
/// 10 s; this takes 15 MB.
#[derive(Debug, Clone)]
pub struct ResultRing {
    /// How many of the newest results the history shows.
    history_size: u32,
    /// An hour of probes at the check's interval, within [64, 3600].
    hour_capacity: u32,
    /// `recent` times are stored as milliseconds after this.
    base_ms: i64,
    /// The newest results, at most `history_size`, oldest first.
    recent: VecDeque<Sample>,
    /// `recent`'s messages, oldest first, each with how many consecutive results carry it; the
    /// counts add up to `recent.len()`.
    messages: VecDeque<MessageRun>,
    /// `older` times are stored as seconds after this.
    base_s: i64,
    /// Results before `recent`, for the trend only; at most the hour's capacity less the
    /// history's.
    older: VecDeque<Compact>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Sample {
    offset_ms: u32,
    /// Status in the top two bits, duration in microseconds (up to 1073 s) below.
    packed: u32,
}

/// A result the trend still counts: seconds after `base_s` (14 bits, 4.5 hours), status
/// (2 bits) and duration (16 bits, see [`compact_duration`]).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Compact(u32);

#[derive(Debug, Clone)]
struct MessageRun {
    message: Arc<str>,
    count: u32,
}

const MICROS_MASK: u32 = (1 << 30) - 1;
const COMPACT_MAX_OFFSET_S: i64 = (1 << 14) - 1;

/// The longest duration a result records; longer ones are clamped (probe timeouts are far
/// shorter).
pub const MAX_DURATION_SECONDS: f64 = MICROS_MASK as f64 / 1e6;

/// A duration as the results keep it: whole microseconds, clamped to [0, 1073 s].
pub fn duration_micros(duration_seconds: f64) -> u32 {
    (duration_seconds.max(0.0) * 1e6)
        .round()
        .min(f64::from(MICROS_MASK)) as u32
}

/// Microseconds in 16 bits as a tiny float: below 2048 exactly, above with 11 significant
/// bits (0.05 % apart at most) and a 5-bit shift.
fn compact_duration(micros: u32) -> u16 {
    let micros = micros.min(MICROS_MASK);
    let bits = 32 - micros.leading_zeros();
    if bits <= 11 {
        return micros as u16;
    }
    let shift = bits - 11;
    // Round to the nearest representable value; rounding up may carry into a 12th bit.
    let mut mantissa = (micros + (1 << (shift - 1))) >> shift;
    let mut shift = shift;
    if mantissa >= 1 << 11 {
        mantissa >>= 1;
        shift += 1;
    }
    ((shift << 11) | mantissa) as u16
}

fn expand_duration(code: u16) -> u32 {
    let shift = u32::from(code >> 11);
    let mantissa = u32::from(code & 0x7ff);
    (mantissa << shift).min(MICROS_MASK)
}

impl Sample {
    fn status(self) -> Status {
        Status::ALL[(self.packed >> 30) as usize]
    }

    fn duration_micros(self) -> u32 {
        self.packed & MICROS_MASK
    }
}

impl Compact {
    fn new(offset_s: i64, status: Status, micros: u32) -> Self {
        let offset = offset_s.clamp(0, COMPACT_MAX_OFFSET_S) as u32;
        Compact(offset << 18 | (status.index() as u32) << 16 | u32::from(compact_duration(micros)))
    }

    fn offset_s(self) -> i64 {
        i64::from(self.0 >> 18)
    }

    fn status(self) -> Status {
        Status::ALL[((self.0 >> 16) & 3) as usize]
    }

    fn duration_micros(self) -> u32 {
        expand_duration(self.0 as u16)
    }
}

impl ResultRing {
    /// Room for the newest `history_size` results and an hour of probes at `interval_ms`.
    pub fn new(history_size: usize, interval_ms: u64) -> Self {
        let per_hour = (TREND_WINDOW_MS as u64).div_ceil(interval_ms.max(1)) + 1;
        ResultRing::empty(
            clamp_u32(history_size.max(1)),
            per_hour.clamp(64, 3600) as u32,
        )
    }

    fn empty(history_size: u32, hour_capacity: u32) -> Self {
        ResultRing {
            history_size,
            hour_capacity,
            base_ms: 0,
            recent: VecDeque::new(),
            messages: VecDeque::new(),
            base_s: 0,
            older: VecDeque::new(),
        }
    }

    fn older_capacity(&self) -> usize {
        self.hour_capacity.saturating_sub(self.history_size) as usize
    }

    fn at_ms(&self, s: Sample) -> i64 {
        self.base_ms + i64::from(s.offset_ms)
    }

    fn older_at_s(&self, c: Compact) -> i64 {
        self.base_s + c.offset_s()
    }

    pub fn len(&self) -> usize {
        self.recent.len() + self.older.len()
    }

    pub fn is_empty(&self) -> bool {
        self.recent.is_empty() && self.older.is_empty()
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
        if self.recent.is_empty() {
            // Take the history's room at once, exactly, rather than doubling past it.
            self.recent.reserve_exact(self.history_size as usize);
            self.base_ms = at_ms;
        }
        // The message first: a steady check's one run just counts on, even with a history of
        // one result, rather than being dropped and made again.
        match new_message(self.messages.back().map(|run| &run.message)) {
            None => {
                if let Some(run) = self.messages.back_mut() {
                    run.count += 1;
                }
            }
            Some(message) => self.messages.push_back(MessageRun { message, count: 1 }),
        }
        // Room before the push, so the ring never grows past its reserved size.
        if self.recent.len() >= self.history_size as usize {
            self.retire_oldest_recent();
        }
        self.rebase_recent_for(at_ms);
        self.recent.push_back(Sample {
            offset_ms: u32::try_from(at_ms - self.base_ms).unwrap_or(u32::MAX),
            packed: ((status.index() as u32) << 30) | micros.min(MICROS_MASK),
        });
    }

    /// Moves the oldest exact result to the trend-only ones, without its message.
    fn retire_oldest_recent(&mut self) {
        let Some(oldest) = self.recent.pop_front() else {
            return;
        };
        self.drop_oldest_message();
        self.push_older(
            self.at_ms(oldest).div_euclid(1000),
            oldest.status(),
            oldest.duration_micros(),
        );
    }

    fn drop_oldest_message(&mut self) {
        if let Some(run) = self.messages.front_mut() {
            run.count -= 1;
            if run.count == 0 {
                self.messages.pop_front();
            }
        }
    }

    fn push_older(&mut self, at_s: i64, status: Status, micros: u32) {
        let capacity = self.older_capacity();
        if capacity == 0 {
            return;
        }
        if self.older.is_empty() {
            self.base_s = at_s;
        }
        if self.older.len() >= capacity {
            self.older.pop_front();
        }
        // Grow by doubling as VecDeque would, but never past the capacity: a full ring then
        // holds exactly its capacity, and a young one (an hour of 1 s probes takes 14 KB) only
        // what it has filled.
        if self.older.len() == self.older.capacity() {
            let target = (self.older.len() * 2).max(16).min(capacity);
            self.older.reserve_exact(target - self.older.len());
        }
        if at_s < self.base_s || at_s - self.base_s > COMPACT_MAX_OFFSET_S {
            self.rebase_older(at_s);
        }
        self.older
            .push_back(Compact::new(at_s - self.base_s, status, micros));
    }

    /// Makes `at_s` fit the 4.5 hours that `older` can span: results more than that before it
    /// are far outside the trend's hour and go; after a clock jump that leaves no common span,
    /// all of them go.
    fn rebase_older(&mut self, at_s: i64) {
        let oldest_kept = at_s - COMPACT_MAX_OFFSET_S;
        let base_s = self.base_s;
        self.older.retain(|c| base_s + c.offset_s() >= oldest_kept);
        let times = self.older.iter().map(|c| base_s + c.offset_s());
        let low = times.clone().min().unwrap_or(at_s).min(at_s);
        let high = times.max().unwrap_or(at_s).max(at_s);
        if high - low > COMPACT_MAX_OFFSET_S {
            self.older.clear();
            self.base_s = at_s;
            return;
        }
        for c in self.older.iter_mut() {
            *c = Compact::new(base_s + c.offset_s() - low, c.status(), c.duration_micros());
        }
        self.base_s = low;
    }

    /// Keeps every offset of `recent` in range: moves the base when a result falls before it or
    /// too far after it. Results 49 days older than this one go (a history that long, at a slow
    /// interval, keeps its newest 49 days).
    fn rebase_recent_for(&mut self, at_ms: i64) {
        let too_far = at_ms.saturating_sub(self.base_ms) > i64::from(u32::MAX);
        if at_ms >= self.base_ms && !too_far {
            return;
        }
        // Results are in the order they came, almost always the order of time; after a clock
        // jump, everything up to the last result that is too old goes, so the messages (kept
        // by position) stay with their results. The newest run is the one being pushed, not
        // yet in `recent`.
        let oldest_kept = at_ms.saturating_sub(i64::from(u32::MAX));
        let dropped = self
            .recent
            .iter()
            .rposition(|s| self.at_ms(*s) < oldest_kept)
            .map_or(0, |last| last + 1);
        for _ in 0..dropped {
            self.recent.pop_front();
            self.drop_oldest_message();
        }
        let new_base = self
            .recent
            .iter()
            .map(|s| self.at_ms(*s))
            .min()
            .unwrap_or(at_ms)
            .min(at_ms);
        let shift = self.base_ms - new_base;
        for s in self.recent.iter_mut() {
            let at = i64::from(s.offset_ms) + shift;
            s.offset_ms = u32::try_from(at).unwrap_or(u32::MAX);
        }
        self.base_ms = new_base;
    }

    /// Adds results from before the oldest one (reloaded from the store), keeping the newest
    /// overall. `older` must be oldest first.
    pub fn merge_older(&mut self, older: impl IntoIterator<Item = (i64, Status, f64, String)>) {
        let first_ms = match (self.older.front(), self.recent.front()) {
            (Some(c), _) => self.older_at_s(*c) * 1000,
            (None, Some(s)) => self.at_ms(*s),
            (None, None) => i64::MAX,
        };
        let mut merged = ResultRing::empty(self.history_size, self.hour_capacity);
        for (at_ms, status, duration, message) in older.into_iter().filter(|e| e.0 < first_ms) {
            merged.push(at_ms, status, duration, &message);
        }
        // Trend-only results stay trend-only: `older` is only ever filled when `recent` is
        // full, so the exact ones pushed after them push them out again.
        let placeholder: Arc<str> = Arc::from("");
        for c in &self.older {
            merged.push_with(
                self.older_at_s(*c) * 1000,
                c.status(),
                c.duration_micros(),
                |_| Some(placeholder.clone()),
            );
        }
        let messages = self
            .messages
            .iter()
            .flat_map(|run| std::iter::repeat_n(&run.message, run.count as usize));
        for (s, message) in self.recent.iter().zip(messages) {
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
        self.recent
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

    /// A reload changed `history_size`: the history keeps what fits, the trend all it can.
    pub fn resize(&mut self, history_size: usize) {
        self.history_size = clamp_u32(history_size.max(1));
        while self.recent.len() > self.history_size as usize {
            self.retire_oldest_recent();
        }
        while self.older.len() > self.older_capacity() {
            self.older.pop_front();
        }
        if !self.recent.is_empty() {
            self.recent.shrink_to(self.history_size as usize);
        }
        if !self.older.is_empty() {
            self.older.shrink_to(self.older_capacity());
        }
    }

    /// Every result's time (ms), status and duration (µs), in no particular order.
    fn all(&self) -> impl Iterator<Item = (i64, Status, u32)> + '_ {
        let older = self
            .older
            .iter()
            .map(|c| (self.older_at_s(*c) * 1000, c.status(), c.duration_micros()));
        let recent = self
            .recent
            .iter()
            .map(|s| (self.at_ms(*s), s.status(), s.duration_micros()));
        older.chain(recent)
    }

    /// The trend over the hour before `now_ms`.
    pub fn trend(&self, now_ms: i64) -> Trend {
        crate::check_trend::over(self.all(), now_ms)
    }
}

fn clamp_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn history_is_bounded_and_shares_repeated_messages() {
        let mut h = ResultRing::new(3, 1000);
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
        assert_eq!((h.recent.len(), h.older.len()), (3, 2));
    }

    #[test]
    fn history_keeps_each_entry_with_its_own_message_status_and_duration() {
        let mut h = ResultRing::new(4, 3_600_000);
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
            assert_eq!(h.recent.len(), h.len().min(4));
        }
        // "b", "a" (twice), "c": three runs for four entries, and the ring took its room once.
        assert_eq!(h.messages.len(), 3);
        assert_eq!(h.recent.capacity(), 4);
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
        let mut h = ResultRing::new(200, 60_000);
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
        let mut h = ResultRing::new(10, 1000);
        h.push(0, Healthy, 0.123_456_789, "");
        h.push(1, Healthy, -1.0, "");
        h.push(2, Healthy, 5_000.0, "");
        let d: Vec<f64> = h.recent(3).map(|e| e.duration_seconds).collect();
        assert_eq!(d, vec![MAX_DURATION_SECONDS, 0.0, 0.123_457]);
    }

    #[test]
    fn merging_older_history_keeps_order_and_bounds() {
        let mut h = ResultRing::new(4, 3_600_000);
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
        let mut s = ResultRing::new(10, 60_000);
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
        let mut h = ResultRing::new(3, 1000);
        for t in 10..20 {
            h.push(t * 1000, Healthy, 0.1, &format!("m{t}"));
        }
        h.merge_older((0..5).map(|t| (t * 1000, Warning, 0.2, format!("old{t}"))));
        assert_eq!(h.len(), 15);
        let got: Vec<String> = h.recent(10).map(|e| e.message.to_string()).collect();
        assert_eq!(got, vec!["m19", "m18", "m17"]);
        assert_eq!(h.messages.len(), 3);
    }

    #[test]
    fn samples_keep_status_duration_and_time_through_rebasing() {
        let mut s = ResultRing::new(100, 1000);
        s.push(5_000_000, Warning, 1.5, "a");
        s.push(4_000_000, Critical, 2000.0, "b"); // earlier than the base; duration clamps
        s.push(5_000_000 + i64::from(u32::MAX) - 10, Unknown, 0.0, "c"); // beyond u32 offsets
        let times: Vec<(i64, Status, u32)> = s
            .recent
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
        let mut t = ResultRing::new(100, 1000);
        t.push(5_000_000, Warning, 1.5, "a");
        t.push(4_000_000, Critical, 2000.0, "b");
        let times: Vec<(i64, Status, u32)> = t
            .recent
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
        let mut s = ResultRing::new(100, 1);
        for i in 0..10_000 {
            s.push(i, Healthy, 0.0, "same");
        }
        assert_eq!(s.trend(10_000).runs, 3600);
        assert_eq!(s.recent(1000).count(), 100);
        assert_eq!(s.messages.len(), 1);
    }

    #[test]
    fn compact_durations_are_within_a_twentieth_of_a_percent() {
        for micros in (0..5000).chain((0..30).map(|b| 1u32 << b)).chain([
            2047,
            2048,
            2049,
            4095,
            123_456,
            999_999,
            MICROS_MASK,
        ]) {
            let back = expand_duration(compact_duration(micros));
            let error = (f64::from(back) - f64::from(micros)).abs();
            assert!(
                error <= f64::from(micros) / 2000.0,
                "{micros} came back as {back}"
            );
            if micros < 2048 {
                assert_eq!(back, micros);
            }
        }
        // Order is kept, so quantiles over compact durations stay in order.
        let codes: Vec<u32> = (0..2_000_000)
            .step_by(997)
            .map(|m| expand_duration(compact_duration(m)))
            .collect();
        assert!(codes.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn the_trend_counts_exact_and_compact_results_alike() {
        let mut r = ResultRing::new(5, 10_000);
        let now = 50_000_000;
        for i in 0..300 {
            let status = if i % 10 == 0 { Critical } else { Healthy };
            r.push(now - 10_000 * (299 - i), status, 0.25, "m");
        }
        assert_eq!((r.recent.len(), r.older.len()), (5, 295));
        let t = r.trend(now);
        assert_eq!(t.runs, 300);
        assert_eq!(t.status_distribution.critical, 30);
        assert_eq!(t.latency_max_seconds, Some(0.25));
        assert_eq!(t.latency_p50_seconds, Some(0.25));
        // The ring holds an hour (361 results); older ones go.
        for i in 300..1000 {
            r.push(now + 10_000 * (i - 299), Healthy, 0.1, "m");
        }
        assert_eq!(r.len(), 361);
        assert_eq!(r.older.capacity(), 356);
    }

    #[test]
    fn trend_only_results_survive_the_compact_span_and_clock_jumps() {
        let mut r = ResultRing::new(1, 60_000);
        // Ten hours at one probe a minute: the compact span (4.5 h) is crossed twice.
        let start = 1_000_000_000;
        for i in 0..600 {
            r.push(start + i * 60_000, Healthy, 0.01, "m");
        }
        let now = start + 599 * 60_000;
        assert_eq!(r.trend(now).runs, 60);
        let times: Vec<i64> = r.all().map(|(at, ..)| at).collect();
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
        assert_eq!(*times.last().unwrap(), now);
        // A clock ten hours back: what came before cannot share a span with it.
        r.push(now - 36_000_000, Warning, 0.02, "back");
        r.push(now - 36_000_000 + 60_000, Warning, 0.02, "back");
        assert_eq!(r.older.len(), 1);
        assert_eq!(
            r.trend(now - 36_000_000 + 60_000)
                .status_distribution
                .warning,
            2
        );
    }
}
