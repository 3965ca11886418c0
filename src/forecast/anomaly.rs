//! Streaming anomaly scores on one calibrated scale: every sample gets the probability, under
//! this series' own recent behaviour, of looking at least as odd as it does, and the score is
//! that probability in decades (`-log10(p) / DEPTH`), so a threshold means the same on every
//! series whatever its scale, noise, trend or daily cycle: 0.3 is about once in 1,000 samples
//! by chance, 0.4 once in 10,000.
//!
//! Each question below is answered by a tail probability among the series' own last `history`
//! answers to it (`tail::RankWindow`: the empirical rank inside the data, a fitted generalised
//! Pareto tail beyond it, so that how far beyond the record a sample lies counts):
//!
//! - **spike**: how far the value lies from its expected value, the one-step forecast of
//!   whichever simple model (last value plus drift, smoothed level plus drift, last value moved
//!   along the median day of the last three) has forecast this series best lately;
//! - **change**: how far the mean of the last `short` values moved from the mean of the four
//!   times as many before them — a level shift or a change of slope, not a trend;
//! - **seasonal change**: the same on the values less the median of the last three days at
//!   that time of day — a broken daily pattern at an unchanged level;
//! - **volatility**: the mean size of the last `short` one-step residuals, on a log scale,
//!   both ways — noise that grows, or a sensor stuck on one value;
//! - **level**: the value less the median of the history, both ways — far outside the usual
//!   range;
//! - **novelty** (off by default: the out-of-fold choice did not take it): the recent share of
//!   never-seen contexts of discretised values (`context::ContextNovelty`, after CAD OSE).
//!
//! The smallest probability, times the number of questions asked (a sample is not odd just
//! because one of five questions came out rare), gives the score. A window statistic joins its
//! reference only once its window has passed, and answers only after twenty windows of it, so
//! an incident building up is never its own yardstick and a short reference does not claim too
//! much. Tail scales are floored at the data's resolution, so values that move in steps are not
//! called miracles for one step beyond the record. An incident is reported once: after an alarm
//! (a score at or above `threshold`), scores are shown at most at half the threshold until they
//! have stayed below half of it for `hold` samples, unless they beat the alarm by a decade.
//!
//! The defaults (threshold 0.375, the five questions, the Pareto tails) are the variant chosen
//! by leave-one-category-out on NAB with the generated corpus on the training side, among
//! variants that stay under one alarm per 10,000 anomaly-free samples (docs/predictions.md).

use std::collections::VecDeque;

use super::context::{self, ContextNovelty};
use super::seasonal::DailyMedian;
use super::tail::{RankWindow, TailFit};

/// Samples scored 0 while the first references fill: scores start on the 30th sample (SPEC).
pub const WARMUP: usize = 29;
/// References need this many entries before their probabilities mean anything.
const MIN_REFERENCE: usize = 20;
/// Decades of probability spanning the score 0..1.
pub const DEPTH: f64 = 10.0;
/// Weight of the newest sample in the expectation models' smoothed level.
const LEVEL_WEIGHT: f64 = 1.0 / 8.0;
/// Weight of the newest slope in the drift, and of the newest error in each model's standing.
const SLOW_WEIGHT: f64 = 1.0 / 32.0;
/// A change window is compared with this many times as many samples before it.
const BEFORE: usize = 4;

/// Questions asked of each sample, as bits of `AnomalyParams::tests`.
pub const TEST_SPIKE: u32 = 1;
pub const TEST_CHANGE: u32 = 2;
pub const TEST_SEASONAL: u32 = 4;
pub const TEST_VOLATILITY: u32 = 8;
pub const TEST_NOVELTY: u32 = 16;
/// The value less the median of the last `history` values: far outside the usual range.
pub const TEST_LEVEL: u32 = 32;
/// Number of questions (`TEST_*` bits).
pub const QUESTIONS: usize = 6;
pub const ALL_TESTS: u32 =
    TEST_SPIKE | TEST_CHANGE | TEST_SEASONAL | TEST_VOLATILITY | TEST_NOVELTY | TEST_LEVEL;

/// Knobs of the anomaly detector; `Default` holds the shipped choice.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyParams {
    /// Score at which an alarm is raised: the bundled `MedicAnomaly` rule's threshold.
    pub threshold: f64,
    /// Answers each question's reference remembers (bounds memory: 16 bytes each).
    pub history: usize,
    /// Which questions are asked (`TEST_*` bits), for ablation measurements.
    pub tests: u32,
    /// Samples of the short change, seasonal change, volatility and novelty windows.
    pub short: usize,
    /// Samples of the long change windows (0 = none).
    pub long: usize,
    /// Samples the score must stay below half the threshold before a new alarm can be raised.
    pub hold: usize,
    /// How the tails of the references are fitted.
    pub fit: TailFit,
    /// Windows a window statistic's reference needs before it answers.
    pub windows: usize,
}

impl Default for AnomalyParams {
    fn default() -> Self {
        AnomalyParams {
            threshold: 0.375,
            history: 4000,
            tests: ALL_TESTS & !TEST_NOVELTY,
            short: 16,
            long: 0,
            hold: 16,
            fit: TailFit::Pareto,
            windows: 20,
        }
    }
}

/// One-step expectations of three simple models and their recent standing.
#[derive(Debug, Clone)]
struct Expectation {
    last: Option<(f64, f64)>,
    level: f64,
    drift: f64,
    /// Recent mean absolute one-step error of (last value, level, daily profile).
    err: [f64; 3],
    scored: [u32; 3],
    profile: DailyMedian,
}

impl Expectation {
    fn new() -> Self {
        Expectation {
            last: None,
            level: 0.0,
            drift: 0.0,
            err: [0.0; 3],
            scored: [0; 3],
            profile: DailyMedian::new(),
        }
    }

    /// Forecasts of (last value plus drift, level plus drift, last value moved along the daily
    /// profile) for time `t`; NaN where a model has none.
    fn forecasts(&self, t: f64) -> [f64; 3] {
        let Some((lt, lv)) = self.last else {
            return [f64::NAN; 3];
        };
        let dt = (t - lt).max(0.0);
        let daily = match (self.profile.before(t), self.profile.before(lt)) {
            (Some(a), Some(b)) => lv + (a - b),
            _ => f64::NAN,
        };
        [lv + self.drift * dt, self.level + self.drift * dt, daily]
    }

    /// The best model's forecast lately (ties to the simpler one), if any.
    fn best(&self, f: &[f64; 3]) -> Option<f64> {
        (0..3)
            .filter(|&i| f[i].is_finite() && self.scored[i] >= 3)
            .min_by(|&a, &b| self.err[a].total_cmp(&self.err[b]).then(a.cmp(&b)))
            .map(|i| f[i])
            .or_else(|| f[0].is_finite().then_some(f[0]))
    }

    fn update(&mut self, t: f64, x: f64, f: &[f64; 3]) {
        for ((err, scored), forecast) in self.err.iter_mut().zip(&mut self.scored).zip(f) {
            let e = (x - forecast).abs();
            if e.is_finite() {
                *err = if *scored == 0 {
                    e
                } else {
                    *err + SLOW_WEIGHT * (e - *err)
                };
                *scored = scored.saturating_add(1);
            }
        }
        match self.last {
            None => self.level = x,
            Some((lt, lv)) => {
                let dt = t - lt;
                if dt > 0.0 {
                    let predicted = self.level + self.drift * dt;
                    let level = predicted + LEVEL_WEIGHT * (x - predicted);
                    // The first slope is the secant, so a straight line is exact from sample two.
                    let slope = if self.scored[0] <= 1 {
                        (x - lv) / dt
                    } else {
                        self.drift + SLOW_WEIGHT * ((level - self.level) / dt - self.drift)
                    };
                    if level.is_finite() && slope.is_finite() {
                        self.level = if self.scored[0] <= 1 { x } else { level };
                        self.drift = slope;
                    }
                } else {
                    self.level += LEVEL_WEIGHT * (x - self.level);
                }
            }
        }
        self.profile.push(t, x);
        self.last = Some((t, x));
    }
}

/// A question's reference: its past answers, each joining the ranked window only `delay`
/// samples after it was given. A window statistic is so never ranked among the statistics of
/// the windows that overlap it: an incident building up over k samples would otherwise become
/// its own yardstick, each step a modest record over the last.
#[derive(Debug, Clone)]
struct Reference {
    window: RankWindow,
    pending: VecDeque<f64>,
    delay: usize,
    /// Windows of `delay` samples the reference needs before it answers.
    windows: usize,
}

impl Reference {
    fn new(history: usize, delay: usize, fit: TailFit, windows: usize) -> Self {
        let mut window = RankWindow::new(history);
        window.fit = fit;
        Reference {
            window,
            pending: VecDeque::new(),
            delay,
            windows,
        }
    }

    /// A statistic of k-sample windows needs as many samples as MIN_REFERENCE windows: its
    /// neighbours overlap, and only windows apart from each other say how it varies.
    fn ready(&self) -> bool {
        self.window.len() >= MIN_REFERENCE.max(self.windows * self.delay)
    }

    fn push(&mut self, x: f64) {
        self.pending.push_back(x);
        while self.pending.len() > self.delay {
            if let Some(old) = self.pending.pop_front() {
                self.window.push(old);
            }
        }
    }

    fn memory_bytes(&self) -> usize {
        self.window.memory_bytes() + self.delay * std::mem::size_of::<f64>()
    }
}

/// The last values of one series and the change of their mean over two timescales.
#[derive(Debug, Clone)]
struct ChangeTest {
    values: VecDeque<f64>,
    short: Reference,
    long: Reference,
}

impl ChangeTest {
    fn new(history: usize, short: usize, long: usize, fit: TailFit, windows: usize) -> Self {
        ChangeTest {
            values: VecDeque::new(),
            short: Reference::new(history, short, fit, windows),
            long: Reference::new(history, long, fit, windows),
        }
    }

    /// Adds `x` and returns the smaller two-sided probability of the two changes, if any.
    fn observe(&mut self, x: f64, short: usize, long: usize, warm: bool) -> Option<f64> {
        let keep = (short.max(long) * (BEFORE + 1)).max(1);
        self.values.push_back(x);
        while self.values.len() > keep {
            self.values.pop_front();
        }
        let mut p: Option<f64> = None;
        for (k, window) in [(short, &mut self.short), (long, &mut self.long)] {
            if k == 0 || self.values.len() < k * (BEFORE + 1) {
                continue;
            }
            let n = self.values.len();
            let recent: f64 = self.values.range(n - k..).sum::<f64>() / k as f64;
            let before: f64 =
                self.values.range(n - k * (BEFORE + 1)..n - k).sum::<f64>() / (k * BEFORE) as f64;
            let change = recent - before;
            if warm && window.ready() {
                let q = window.window.p_two_sided(change);
                p = Some(p.map_or(q, |p| p.min(q)));
            }
            window.push(change);
        }
        p
    }

    fn memory_bytes(&self) -> usize {
        self.short.memory_bytes()
            + self.long.memory_bytes()
            + self.values.capacity() * std::mem::size_of::<f64>()
    }
}

/// A running mean of the last `k` numbers.
#[derive(Debug, Clone, Default)]
struct RunningMean {
    values: VecDeque<f64>,
}

impl RunningMean {
    fn push(&mut self, x: f64, k: usize) -> Option<f64> {
        self.values.push_back(x);
        while self.values.len() > k.max(1) {
            self.values.pop_front();
        }
        (self.values.len() == k.max(1))
            .then(|| self.values.iter().sum::<f64>() / self.values.len() as f64)
    }
}

/// Streaming anomaly detector for one series.
#[derive(Debug, Clone)]
pub struct AnomalyDetector {
    p: AnomalyParams,
    seen: usize,
    expect: Expectation,
    residuals: Reference,
    change: ChangeTest,
    seasonal: ChangeTest,
    volatility: Reference,
    sizes: RunningMean,
    values: RankWindow,
    levels: Reference,
    contexts: ContextNovelty,
    novelty: Reference,
    recent_novelty: RunningMean,
    /// Alarm state: the peak of the alarm being held, and the quiet samples seen since.
    held: Option<f64>,
    quiet: usize,
    /// The question (`TEST_*` bit) that found the latest sample oddest; 0 for none.
    reason: u32,
    /// The latest score before the alarm hold-off.
    raw: f64,
    /// Each question's probability for the latest sample (1 where not asked).
    each: [f64; QUESTIONS],
    /// Smallest change between two successive values seen: the data's resolution.
    resolution: f64,
}

/// The answers to one sample's questions: the smallest probability, which question gave it,
/// and each question's own.
struct Answers {
    p: f64,
    reason: u32,
    each: [f64; QUESTIONS],
}

impl Answers {
    fn new() -> Self {
        Answers {
            p: 1.0,
            reason: 0,
            each: [1.0; QUESTIONS],
        }
    }

    /// Records question `bit`'s probability (none when it could not be asked).
    fn take(&mut self, bit: u32, q: Option<f64>) {
        if let Some(q) = q.filter(|q| q.is_finite()) {
            let i = bit.trailing_zeros() as usize;
            self.each[i] = self.each[i].min(q);
            if q < self.p {
                self.p = q;
                self.reason = bit;
            }
        }
    }
}

impl Default for AnomalyDetector {
    fn default() -> Self {
        Self::new()
    }
}

impl AnomalyDetector {
    pub fn new() -> Self {
        Self::with_params(AnomalyParams::default())
    }

    pub fn with_params(p: AnomalyParams) -> Self {
        let h = p.history.max(MIN_REFERENCE);
        AnomalyDetector {
            seen: 0,
            expect: Expectation::new(),
            residuals: Reference::new(h, 0, p.fit, p.windows),
            change: ChangeTest::new(h, p.short, p.long, p.fit, p.windows),
            seasonal: ChangeTest::new(h, p.short, p.long, p.fit, p.windows),
            volatility: Reference::new(h, p.short, p.fit, p.windows),
            sizes: RunningMean::default(),
            values: RankWindow::new(h),
            levels: Reference::new(h, 0, p.fit, p.windows),
            contexts: ContextNovelty::new(h),
            novelty: {
                // Novelty comes in whole words: beyond the record, each further new word in the
                // window counts as one step of the tail, however steady the series was.
                let mut r = Reference::new(h, p.short, p.fit, p.windows);
                r.window.min_scale = 1.0 / (context::ORDER * p.short.max(1)) as f64;
                r
            },
            recent_novelty: RunningMean::default(),
            held: None,
            quiet: 0,
            reason: 0,
            raw: 0.0,
            each: [1.0; QUESTIONS],
            resolution: f64::INFINITY,
            p: AnomalyParams { history: h, ..p },
        }
    }

    /// Scores one sample in [0, 1] (0 during warm-up); non-finite input scores 0 and is not learned.
    pub fn observe(&mut self, t: f64, value: f64) -> f64 {
        if !value.is_finite() || !t.is_finite() {
            return 0.0;
        }
        if let Some((lt, _)) = self.expect.last {
            if t < lt {
                // Out of order: the expectations are for later times; learn nothing from it.
                return 0.0;
            }
        }
        self.seen = self.seen.saturating_add(1);
        let warm = self.seen > WARMUP;
        let mut answers = Answers::new();
        let forecasts = self.expect.forecasts(t);
        self.ask_spike(value, &forecasts, warm, &mut answers);
        self.ask_volatility(value, &forecasts, warm, &mut answers);
        self.ask_changes(t, value, warm, &mut answers);
        self.ask_level_and_novelty(value, warm, &mut answers);
        self.learn_resolution(value);
        self.expect.update(t, value, &forecasts);
        if !warm {
            return 0.0;
        }
        self.conclude(answers)
    }

    /// Is the sample far from what the best model expected, against that model's own residuals?
    fn ask_spike(&mut self, value: f64, forecasts: &[f64; 3], warm: bool, a: &mut Answers) {
        if self.p.tests & TEST_SPIKE == 0 {
            return;
        }
        if let Some(e) = self.expect.best(forecasts) {
            let r = (value - e).abs();
            if r.is_finite() {
                if warm && self.residuals.ready() {
                    a.take(TEST_SPIKE, Some(self.residuals.window.p_upper(r)));
                }
                self.residuals.push(r);
            }
        }
    }

    /// Has the size of the latest steps (against the last value) changed?
    fn ask_volatility(&mut self, value: f64, forecasts: &[f64; 3], warm: bool, a: &mut Answers) {
        if self.p.tests & TEST_VOLATILITY == 0 || !forecasts[0].is_finite() {
            return;
        }
        // A floor for sizes: a millionth of a millionth of the value, so that exact series
        // (a constant, a clean line) still compare numbers rather than divide by zero.
        let tiny = 1e-12 * value.abs().max(f64::MIN_POSITIVE);
        let r = (value - forecasts[0]).abs();
        if let Some(m) = self.sizes.push(r, self.p.short) {
            // A window without a single change is as quiet as the data can say, not
            // infinitely quiet: on values that move in steps (integers, rounded readings)
            // its size is floored at one step in the window.
            let floor = if self.resolution.is_finite() {
                self.resolution / self.p.short.max(1) as f64
            } else {
                0.0
            };
            let v = (m.max(floor) + tiny).ln();
            if warm && self.volatility.ready() {
                a.take(TEST_VOLATILITY, Some(self.volatility.window.p_two_sided(v)));
            }
            self.volatility.push(v);
        }
    }

    /// Has the mean moved, as it is and once the periodic shape is taken away?
    fn ask_changes(&mut self, t: f64, value: f64, warm: bool, a: &mut Answers) {
        let tests = self.p.tests;
        if tests & TEST_CHANGE != 0 {
            a.take(
                TEST_CHANGE,
                self.change.observe(value, self.p.short, self.p.long, warm),
            );
        }
        if tests & TEST_SEASONAL != 0 {
            if let Some(profile) = self.expect.profile.before(t) {
                a.take(
                    TEST_SEASONAL,
                    self.seasonal
                        .observe(value - profile, self.p.short, self.p.long, warm),
                );
            }
        }
    }

    /// Is the value at an unusual level for the series, and is the sequence of levels new?
    fn ask_level_and_novelty(&mut self, value: f64, warm: bool, a: &mut Answers) {
        let tests = self.p.tests;
        if tests & TEST_LEVEL != 0 {
            if let Some(median) = self.values.quantile(0.5) {
                let d = value - median;
                if warm && self.levels.ready() {
                    a.take(TEST_LEVEL, Some(self.levels.window.p_two_sided(d)));
                }
                self.levels.push(d);
            }
        }
        if tests & (TEST_NOVELTY | TEST_LEVEL) == 0 {
            return;
        }
        let (lo, hi) = (self.values.quantile(0.01), self.values.quantile(0.99));
        self.values.push(value);
        if let (Some(lo), Some(hi), true) = (lo, hi, tests & TEST_NOVELTY != 0) {
            let level = ContextNovelty::level(value, lo, hi);
            if let Some(n) = self.contexts.observe(level) {
                if let Some(m) = self.recent_novelty.push(n, self.p.short) {
                    if warm && self.novelty.ready() {
                        a.take(TEST_NOVELTY, Some(self.novelty.window.p_upper(m)));
                    }
                    self.novelty.push(m);
                }
            }
        }
    }

    /// The smallest change seen between successive values, which floors every tail's scale.
    fn learn_resolution(&mut self, value: f64) {
        if let Some((_, last)) = self.expect.last {
            let step = (value - last).abs();
            if step > 0.0 && step < self.resolution {
                self.resolution = step;
                self.floor_scales();
            }
        }
    }

    /// The smallest probability, corrected for the number of questions asked, as the score.
    fn conclude(&mut self, a: Answers) -> f64 {
        let questions = (self.p.tests & ALL_TESTS).count_ones().max(1);
        let p = (a.p * f64::from(questions)).min(1.0);
        let raw = (-p.max(f64::MIN_POSITIVE).log10() / DEPTH).clamp(0.0, 1.0);
        self.reason = if p < 1.0 { a.reason } else { 0 };
        self.each = a.each;
        self.raw = raw;
        let score = self.hold(raw);
        if score.is_finite() {
            score.clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// The question (`TEST_*` bit) that found the latest sample oddest (0 for none): what an
    /// operator reads to know why a score is high.
    pub fn reason(&self) -> u32 {
        self.reason
    }

    /// Values that move in steps (integers, rounded readings) cannot be odd by less than a
    /// step: each reference's tail scale is floored at the data's resolution (the smallest
    /// change seen between successive values), for a change of means the smallest change one
    /// step can make to it: one step among the values before the window.
    /// Without it, a value one step below the lowest in the window would be extrapolated to
    /// an arbitrarily small probability.
    fn floor_scales(&mut self) {
        let r = self.resolution;
        let k = (self.p.short.max(1) * BEFORE) as f64;
        let l = (self.p.long.max(1) * BEFORE) as f64;
        self.residuals.window.min_scale = r;
        self.levels.window.min_scale = r;
        for c in [&mut self.change, &mut self.seasonal] {
            c.short.window.min_scale = r / k;
            c.long.window.min_scale = r / l;
        }
    }

    /// Each question's probability for the latest sample, in `TEST_*` bit order (1 where the
    /// question was not asked or had no answer yet).
    pub fn probabilities(&self) -> [f64; QUESTIONS] {
        self.each
    }

    /// The latest score before the alarm hold-off (what it would be without an alarm held).
    pub fn raw(&self) -> f64 {
        self.raw
    }

    /// Reports an incident once: see the module documentation.
    fn hold(&mut self, raw: f64) -> f64 {
        let threshold = self.p.threshold;
        match self.held {
            None => {
                if raw >= threshold {
                    self.held = Some(raw);
                    self.quiet = 0;
                }
                raw
            }
            Some(peak) => {
                if raw < 0.5 * threshold {
                    self.quiet += 1;
                } else {
                    self.quiet = 0;
                }
                if self.quiet >= self.p.hold {
                    self.held = None;
                }
                if raw >= peak + 1.0 / DEPTH {
                    // A stronger incident inside the hold still gets through and becomes the peak.
                    self.held = Some(raw);
                    self.quiet = 0;
                    raw
                } else {
                    raw.min(threshold) * 0.5
                }
            }
        }
    }

    /// Bytes of the detector's state once its windows are full, for the memory figure.
    pub fn memory_bytes(&self) -> usize {
        let asked = |bit: u32| self.p.tests & bit != 0;
        let f = std::mem::size_of::<f64>();
        let mut bytes = std::mem::size_of::<Self>() + self.expect.profile.memory_bytes();
        if asked(TEST_SPIKE) {
            bytes += self.residuals.memory_bytes();
        }
        if asked(TEST_VOLATILITY) {
            bytes += self.volatility.memory_bytes() + self.p.short * f;
        }
        if asked(TEST_CHANGE) {
            bytes += self.change.memory_bytes();
        }
        if asked(TEST_SEASONAL) {
            bytes += self.seasonal.memory_bytes();
        }
        if asked(TEST_LEVEL) || asked(TEST_NOVELTY) {
            bytes += self.values.memory_bytes();
        }
        if asked(TEST_LEVEL) {
            bytes += self.levels.memory_bytes();
        }
        if asked(TEST_NOVELTY) {
            bytes += self.contexts.memory_bytes() + self.novelty.memory_bytes() + self.p.short * f;
        }
        bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-noise in [-1, 1] (xorshift), so tests need no dependencies.
    struct Noise(u64);
    impl Noise {
        /// Spreads small seeds over the state: xorshift from a tiny state starts with a long run of near-zero outputs.
        fn seeded(seed: u64) -> Self {
            Noise(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }

        fn next(&mut self) -> f64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        }

        /// Near-Gaussian with unit variance (twelve uniforms).
        fn gauss(&mut self) -> f64 {
            (0..12).map(|_| self.next()).sum::<f64>() / 2.0
        }
    }

    fn run(values: impl Iterator<Item = (f64, f64)>) -> Vec<f64> {
        let mut d = AnomalyDetector::new();
        values.map(|(t, v)| d.observe(t, v)).collect()
    }

    const THRESHOLD: f64 = 0.375;

    #[test]
    fn warmup_scores_zero_and_all_scores_in_range() {
        let mut n = Noise::seeded(7);
        let s = run((0..3000).map(|i| (i as f64 * 60.0, n.next() * 100.0)));
        assert!(s[..WARMUP].iter().all(|&x| x == 0.0));
        assert!(
            s[WARMUP..].iter().any(|&x| x > 0.0),
            "scores from the 30th sample on"
        );
        assert!(s.iter().all(|x| (0.0..=1.0).contains(x)));
    }

    #[test]
    fn ten_fold_spike_on_a_growing_series_sampled_every_250ms() {
        // The live case of issue 26: 2 units a second from 100, every 250 ms; after 48
        // samples (about 124) the value jumps to 5000.
        let mut d = AnomalyDetector::new();
        for i in 0..48 {
            let t = 1.7e9 + 0.25 * f64::from(i);
            let s = d.observe(t, 100.0 + 2.0 * 0.25 * f64::from(i));
            assert!(s < THRESHOLD, "sample {i}: {s}");
        }
        let s1 = d.observe(1.7e9 + 12.0, 5000.0);
        let s2 = d.observe(1.7e9 + 12.25, 5000.0);
        assert!(s1.max(s2) >= THRESHOLD, "{s1} {s2}");
    }

    #[test]
    fn ten_fold_spike_from_the_30th_sample_on_steady_and_growing_series() {
        // (name, value of sample i) with and without noise, spike on sample 30, 31, 48 or 200.
        type Shape = fn(f64, f64) -> f64;
        let shapes: [(&str, Shape); 4] = [
            ("steady", |_, e| 100.0 + e),
            ("steady exact", |_, _| 100.0),
            ("growing", |i, e| 100.0 + 0.5 * i + e),
            ("growing fast", |i, e| 10.0 + 10.0 * i + 0.2 * e),
        ];
        for (name, shape) in shapes {
            for at in [29usize, 30, 47, 199] {
                let mut n = Noise::seeded(at as u64);
                let mut d = AnomalyDetector::new();
                for i in 0..at {
                    let s = d.observe(i as f64 * 15.0, shape(i as f64, n.gauss()));
                    assert!(s < THRESHOLD, "{name}: sample {i}: {s}");
                }
                let normal = shape(at as f64, 0.0);
                let s1 = d.observe(at as f64 * 15.0, 10.0 * normal);
                let s2 = d.observe((at + 1) as f64 * 15.0, 10.0 * normal);
                assert!(s1.max(s2) >= THRESHOLD, "{name} at {at}: {s1} {s2}");
            }
        }
    }

    #[test]
    fn anomaly_free_series_stay_under_the_threshold() {
        // (name, value at time t in seconds, noise e of unit variance)
        type Shape = fn(f64, f64) -> f64;
        let shapes: [(&str, Shape); 6] = [
            ("constant", |_, _| 42.0),
            ("noise", |_, e| 5.0 + e),
            ("large scale", |_, e| 1e9 + 1e6 * e),
            ("trend", |t, e| 1000.0 + 0.01 * t + 3.0 * e),
            ("daily cycle", |t, e| {
                50.0 + 20.0 * (t / 86_400.0 * std::f64::consts::TAU).sin() + e
            }),
            ("tiny slope", |t, e| 1e-3 + 1e-9 * t + 1e-6 * e),
        ];
        for (name, shape) in shapes {
            let mut n = Noise::seeded(3);
            let mut d = AnomalyDetector::new();
            let mut over = 0;
            for i in 0..10_000 {
                let t = 1.7e9 + 300.0 * i as f64;
                if d.observe(t, shape(t - 1.7e9, n.gauss())) >= THRESHOLD {
                    over += 1;
                }
            }
            assert!(over <= 1, "{name}: {over} samples over the threshold");
        }
    }

    #[test]
    fn level_shift_scores_high_once() {
        let mut n = Noise::seeded(11);
        let mut d = AnomalyDetector::new();
        let mut scores = Vec::new();
        for i in 0..3000 {
            let level = if i < 1500 { 10.0 } else { 20.0 };
            scores.push(d.observe(i as f64 * 60.0, level + n.gauss()));
        }
        let at_shift = scores[1500..1503].iter().cloned().fold(0.0, f64::max);
        assert!(at_shift >= THRESHOLD, "{at_shift}");
        let alarms = scores[1503..].iter().filter(|&&s| s >= THRESHOLD).count();
        assert!(alarms <= 1, "{alarms} more alarms");
    }

    #[test]
    fn a_shift_of_two_deviations_is_caught_by_the_change_of_the_mean() {
        // Two standard deviations, held: unremarkable sample by sample, not over 16 samples.
        let mut caught = 0;
        for seed in [17, 4, 99, 5] {
            let mut n = Noise::seeded(seed);
            let mut d = AnomalyDetector::new();
            let mut best: f64 = 0.0;
            for i in 0..2400 {
                let level = if i < 2000 { 50.0 } else { 54.0 };
                let s = d.observe(i as f64 * 60.0, level + 2.0 * n.gauss());
                if i >= 2000 {
                    best = best.max(s);
                }
            }
            if best >= THRESHOLD {
                caught += 1;
            }
        }
        assert!(caught >= 3, "{caught} of 4");
    }

    #[test]
    fn stuck_sensor_is_caught() {
        let mut n = Noise::seeded(8);
        let mut d = AnomalyDetector::new();
        let mut best: f64 = 0.0;
        let mut last = 0.0;
        for i in 0..2200 {
            let v = if (2000..2100).contains(&i) {
                last
            } else {
                30.0 + n.gauss()
            };
            last = v;
            let s = d.observe(i as f64 * 60.0, v);
            if (2000..2100).contains(&i) {
                best = best.max(s);
            }
        }
        assert!(best >= THRESHOLD, "{best}");
    }

    #[test]
    fn daily_pattern_break_is_caught() {
        // A square daily cycle sampled every 5 minutes; on day 8 the high phase is missing.
        let mut n = Noise::seeded(3);
        let mut d = AnomalyDetector::new();
        let mut peak_anomaly: f64 = 0.0;
        let mut peak_normal: f64 = 0.0;
        for i in 0..(288 * 10) {
            let day = i / 288;
            let high = (i % 288) >= 144 && day != 8;
            let v = if high { 80.0 } else { 20.0 } + n.next();
            let s = d.observe(i as f64 * 300.0, v);
            if day == 8 && i % 288 >= 144 {
                peak_anomaly = peak_anomaly.max(s);
            } else if (3..8).contains(&day) {
                peak_normal = peak_normal.max(s);
            }
        }
        assert!(peak_anomaly >= THRESHOLD, "{peak_anomaly}");
        assert!(peak_normal < THRESHOLD, "{peak_normal}");
    }

    #[test]
    fn nan_and_inf_are_ignored() {
        let mut n = Noise::seeded(5);
        let mut a = AnomalyDetector::new();
        let mut b = AnomalyDetector::new();
        for i in 0..1500 {
            let (t, v) = (i as f64 * 10.0, n.next());
            let sa = a.observe(t, v);
            for junk in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
                assert_eq!(b.observe(t, junk), 0.0);
            }
            assert_eq!(b.observe(f64::NAN, v), 0.0);
            assert_eq!(sa, b.observe(t, v), "junk must not change state");
        }
    }

    #[test]
    fn irregular_times_gaps_and_backwards_time_are_safe() {
        let mut n = Noise::seeded(9);
        let mut d = AnomalyDetector::new();
        let mut t = 1.7e9;
        for i in 0..5000 {
            t += match i % 7 {
                0 => 0.0,
                1 => -30.0,
                2 => 1.0,
                3 => 86_400.0 * 3.0,
                _ => 17.0 + 10.0 * n.next().abs(),
            };
            let s = d.observe(t, 20.0 + n.next());
            assert!((0.0..=1.0).contains(&s));
        }
    }

    #[test]
    fn extreme_values_never_nan() {
        let mut d = AnomalyDetector::new();
        let vals = [0.0, 1e308, -1e308, 1e-308, 5e-324, 1e308, 0.0];
        for i in 0..2000 {
            let s = d.observe(i as f64, vals[i % vals.len()]);
            assert!(s.is_finite() && (0.0..=1.0).contains(&s));
        }
    }

    #[test]
    fn the_bundled_rule_fires_at_the_detector_threshold() {
        // The rule and the hold-off must agree: a threshold is one decision, not two copies.
        let rules = include_str!("../../alerting-rules/medic.rules.yml");
        let rule = rules
            .split("- alert: MedicAnomaly")
            .nth(1)
            .and_then(|r| r.lines().find(|l| l.contains("expr:")))
            .expect("MedicAnomaly has an expr");
        let threshold: f64 = rule
            .rsplit(">=")
            .next()
            .and_then(|x| x.trim().parse().ok())
            .expect("expr ends in >= threshold");
        assert_eq!(threshold, AnomalyParams::default().threshold, "{rule}");
        assert_eq!(threshold, THRESHOLD);
    }

    #[test]
    fn memory_is_bounded() {
        let mut d = AnomalyDetector::new();
        for i in 0..20_000 {
            d.observe(i as f64 * 5.0, (i % 13) as f64);
        }
        assert!(d.residuals.window.len() <= 4000 && d.values.len() <= 4000);
        assert!(d.memory_bytes() < 1 << 20, "{}", d.memory_bytes());
    }
}
