//! Runs every enabled check on its own interval. One timer task keeps a queue of when each
//! check is next due and starts each probe as a task of its own, so a slow or hanging probe
//! never delays another, and an idle check costs a queue entry rather than a task and a timer.
//! Start times are spread by a hash of the name so thousands of checks never fire in the same
//! millisecond.

use std::cmp::Reverse;
use std::collections::hash_map::DefaultHasher;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::{AbortHandle, JoinHandle};
use tokio::time::Instant;
use tracing::Instrument;

use crate::checks::Prober;
use crate::config::{CheckSpec, Redactor};
use crate::state::StateRequest;

pub struct Scheduler {
    shared: Arc<Schedule>,
    timer: JoinHandle<()>,
}

/// The schedule: the table of checks and their due times, with what the timer task, the probes
/// and `apply` share. Locked briefly and never across an await.
struct Schedule {
    table: Mutex<Table>,
    /// Wakes the timer task when the earliest due time may have moved.
    wake: Notify,
    prober: Arc<Prober>,
    events: mpsc::Sender<StateRequest>,
    redactor: watch::Sender<Redactor>,
    /// Probes in flight at once, bounded by the file descriptors medic may open: past it a due
    /// probe waits for one to finish, where an unbounded burst (thousands of checks arriving
    /// at once on a slow machine) failed with EMFILE everywhere, /metrics and the store
    /// included.
    in_flight: Arc<Semaphore>,
    /// When probes last waited for room (seconds since the epoch), for a warning a minute.
    warned_s: AtomicU64,
}

#[derive(Default)]
struct Table {
    /// Every configured check, enabled or not, with the generation its outcomes carry.
    checks: HashMap<Arc<str>, Known>,
    /// The enabled checks; indexes are reused, so queue entries name a slot's generation too.
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    queue: BinaryHeap<Reverse<Due>>,
    next_generation: u64,
}

struct Known {
    spec: Arc<CheckSpec>,
    generation: u64,
    slot: Option<u32>,
}

struct Slot {
    spec: Arc<CheckSpec>,
    name: Arc<str>,
    generation: u64,
    /// The next tick of the check's own schedule.
    next: Instant,
    /// The probe running now, if any: a check never has two at once.
    in_flight: Option<AbortHandle>,
    /// Someone asked for a probe while one was running: its result may predate what they wait
    /// for, so another follows at once.
    probe_again: bool,
    /// With aligned ticks (`--cluster.shard auto`): the check's offset within its interval on
    /// the wall clock, the same on every replica.
    offset_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at: Instant,
    slot: u32,
    generation: u64,
    /// A probe asked for out of schedule; the check's ticks go on as before.
    extra: bool,
}

/// Lets others (recovery verification) ask for a probe right away.
#[derive(Clone)]
pub struct ProbeHandle {
    shared: Arc<Schedule>,
}

impl ProbeHandle {
    /// Asks for a probe of `check` now; false if it is not running (unknown or disabled).
    pub fn probe_now(&self, check: &str) -> bool {
        let mut table = self.shared.lock();
        let Some(index) = table.checks.get(check).and_then(|k| k.slot) else {
            return false;
        };
        let Some(generation) = table.slots[index as usize].as_ref().map(|s| s.generation) else {
            return false;
        };
        table.queue.push(Reverse(Due {
            at: Instant::now(),
            slot: index,
            generation,
            extra: true,
        }));
        self.shared.wake.notify_one();
        true
    }
}

impl Schedule {
    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts every probe that is due, or due within [`START_WINDOW`], and returns when the
    /// next one is.
    fn start_due(self: &Arc<Self>) -> Option<Instant> {
        let now = Instant::now();
        let mut table = self.lock();
        while let Some(Reverse(due)) = table.queue.peek().copied() {
            if due.at > now + START_WINDOW {
                return Some(due.at);
            }
            let Some(interval) = table.slots[due.slot as usize]
                .as_ref()
                .filter(|s| s.generation == due.generation)
                .map(|s| tick_interval(&s.spec))
            else {
                table.queue.pop();
                continue; // the check was removed or replaced
            };
            // Early by at most a tenth of the check's own interval.
            let started_by = now + (interval / 10).min(START_WINDOW);
            if due.at > started_by {
                return Some(due.at);
            }
            table.queue.pop();
            let Some(slot) = table.slots[due.slot as usize].as_mut() else {
                continue;
            };
            if !due.extra {
                // Missed ticks are skipped, not made up in a burst.
                match slot.offset_ms {
                    Some(offset) => {
                        // At least half an interval on: the wall clock and tokio's may
                        // disagree by a millisecond, and a slot just probed is not due again.
                        let mut gap = until_slot(offset, interval, crate::timefmt::now_ms());
                        if gap < interval / 2 {
                            gap += interval;
                        }
                        slot.next = now + gap;
                    }
                    None => {
                        while slot.next <= started_by {
                            slot.next += interval;
                        }
                    }
                }
                let next = Due {
                    at: slot.next,
                    ..due
                };
                table.queue.push(Reverse(next));
            }
            self.start_probe(&mut table, due.slot, due.extra);
        }
        None
    }

    /// Starts a probe of the slot unless one is running. A tick that finds one running is
    /// skipped, as a check's probes never overlap; a request (`asked`) is kept for when it
    /// ends, since the running probe's result may predate what the asker waits for.
    fn start_probe(self: &Arc<Self>, table: &mut Table, index: u32, asked: bool) {
        let Some(slot) = table.slots[index as usize].as_mut() else {
            return;
        };
        if slot.in_flight.is_some() {
            slot.probe_again |= asked;
            return;
        }
        let shared = self.clone();
        let spec = slot.spec.clone();
        let name = slot.name.clone();
        let generation = slot.generation;
        let span = tracing::info_span!("check", check = %name);
        let task = tokio::spawn(
            async move {
                // Marks the check idle however the probe ends, a panic included, so one bad
                // probe never stops the check's schedule.
                let _idle = Idle {
                    shared: shared.clone(),
                    index,
                    generation,
                };
                let Some(_room) = shared.room_for_a_probe().await else {
                    return;
                };
                let (at, started) = (SystemTime::now(), Instant::now());
                let redactor = shared.redactor.borrow().clone();
                let outcome = shared.prober.probe(&spec, &redactor).await;
                tracing::debug!(status = %outcome.status, duration = outcome.duration.as_secs_f64(), result = %outcome.message, "probe finished");
                let event = StateRequest::Outcome {
                    check: name,
                    generation,
                    at,
                    started,
                    asked,
                    outcome,
                };
                // Waiting for room in a full queue keeps the check busy, so its ticks are
                // skipped until the state task catches up.
                let _ = shared.events.send(event).await;
            }
            .instrument(span),
        );
        slot.in_flight = Some(task.abort_handle());
    }

    /// A permit to probe, waited for when [`max_in_flight`] probes are running (`None` never
    /// happens: the semaphore is not closed).
    async fn room_for_a_probe(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        if let Ok(permit) = self.in_flight.clone().try_acquire_owned() {
            return Some(permit);
        }
        let now_s = crate::timefmt::now_ms().max(0) as u64 / 1000;
        let last = self.warned_s.load(Ordering::Relaxed);
        if now_s >= last + 60
            && self
                .warned_s
                .compare_exchange(last, now_s, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                in_flight = max_in_flight(),
                "probes wait for room: as many are in flight as file descriptors allow; checks are probed late"
            );
        }
        self.in_flight.clone().acquire_owned().await.ok()
    }

    fn finished(self: &Arc<Self>, index: u32, generation: u64) {
        let mut table = self.lock();
        let Some(slot) = table.slots[index as usize]
            .as_mut()
            .filter(|s| s.generation == generation)
        else {
            return;
        };
        slot.in_flight = None;
        if std::mem::take(&mut slot.probe_again) {
            self.start_probe(&mut table, index, true);
        }
    }
}

/// Runs [`Schedule::finished`] when a probe's task ends. Never dropped while the table is locked:
/// a probe's task ends on its own worker, and an abort takes effect there too.
struct Idle {
    shared: Arc<Schedule>,
    index: u32,
    generation: u64,
}

impl Drop for Idle {
    fn drop(&mut self) {
        self.shared.finished(self.index, self.generation);
    }
}

impl Scheduler {
    /// Starts the timer task; checks come with [`Scheduler::apply`].
    pub fn new(prober: Arc<Prober>, events: mpsc::Sender<StateRequest>) -> Self {
        let shared = Arc::new(Schedule {
            table: Mutex::new(Table {
                next_generation: 1,
                ..Table::default()
            }),
            wake: Notify::new(),
            prober,
            events,
            redactor: watch::channel(Redactor::default()).0,
            in_flight: Arc::new(Semaphore::new(max_in_flight())),
            warned_s: AtomicU64::new(0),
        });
        let timer =
            tokio::spawn(run_timer(shared.clone()).instrument(tracing::info_span!("scheduler")));
        Scheduler { shared, timer }
    }

    /// The prober its checks use, shared with whoever probes outside the schedule.
    pub fn prober(&self) -> Arc<Prober> {
        self.shared.prober.clone()
    }

    /// Brings the running set in line with `checks`: unchanged checks keep running undisturbed,
    /// changed ones restart, removed ones stop. Returns each check with its generation, which
    /// tags its outcomes so stale ones from a replaced probe can be told apart.
    ///
    /// `placement` says where new checks' first ticks go.
    pub fn apply(
        &mut self,
        checks: &[Arc<CheckSpec>],
        redactor: Redactor,
        placement: Placement<'_>,
    ) -> Vec<(Arc<CheckSpec>, u64)> {
        self.shared.redactor.send_replace(redactor);
        self.shared.prober.retain(checks);
        let window = spread_window(checks.len());
        let now = Instant::now();
        let wall_ms = crate::timefmt::now_ms();
        let mut table = self.shared.lock();
        let mut old = std::mem::take(&mut table.checks);
        let mut applied = Vec::with_capacity(checks.len());
        for spec in checks {
            let known = match old.remove_entry(spec.name.as_str()) {
                Some((name, known)) if *known.spec == **spec => (name, known),
                previous => {
                    if let Some(index) = previous.and_then(|(_, k)| k.slot) {
                        table.release(index);
                    }
                    let generation = table.next_generation;
                    table.next_generation += 1;
                    let spec = spec.clone();
                    let name: Arc<str> = Arc::from(spec.name.as_str());
                    let slot = spec.enabled.then(|| {
                        let interval = tick_interval(&spec);
                        let (first, offset_ms) = match placement {
                            Placement::Slots { made_up } => {
                                let offset = slot_offset(&spec.name, interval);
                                let missed = made_up(&spec.name).map(|since| {
                                    now.saturating_duration_since(since) + MISSED_MARGIN
                                });
                                let wait =
                                    first_aligned(&spec.name, offset, interval, wall_ms, missed);
                                (now + wait, Some(offset))
                            }
                            Placement::Spread => {
                                (now + phase(&spec.name, window.min(interval)), None)
                            }
                        };
                        table.insert(Slot {
                            spec: spec.clone(),
                            name: name.clone(),
                            generation,
                            next: first,
                            in_flight: None,
                            probe_again: false,
                            offset_ms,
                        })
                    });
                    (
                        name,
                        Known {
                            spec,
                            generation,
                            slot,
                        },
                    )
                }
            };
            applied.push((known.1.spec.clone(), known.1.generation));
            table.checks.insert(known.0, known.1);
        }
        for (_, removed) in old {
            if let Some(index) = removed.slot {
                table.release(index);
            }
        }
        // The queue keeps entries of released slots until they come due; rebuild it when
        // they would outnumber the live ones (after a reload replaced most checks).
        if table.queue.len() > 2 * table.slots.len().max(64) {
            table.rebuild_queue();
        }
        table.slots.shrink_to_fit();
        table.checks.shrink_to_fit();
        drop(table);
        self.shared.wake.notify_one();
        applied
    }

    pub fn probe_handle(&self) -> ProbeHandle {
        ProbeHandle {
            shared: self.shared.clone(),
        }
    }

    /// Stops the timer and every probe; in-flight probes are dropped (their child processes
    /// killed).
    pub fn stop(&mut self) {
        self.timer.abort();
        let mut table = self.shared.lock();
        for index in 0..table.slots.len() as u32 {
            table.release(index);
        }
        table.checks.clear();
    }
}

impl Table {
    /// Takes a free slot for the check and queues its first tick.
    fn insert(&mut self, slot: Slot) -> u32 {
        let (at, generation) = (slot.next, slot.generation);
        let index = match self.free.pop() {
            Some(index) => {
                self.slots[index as usize] = Some(slot);
                index
            }
            None => {
                self.slots.push(Some(slot));
                (self.slots.len() - 1) as u32
            }
        };
        self.queue.push(Reverse(Due {
            at,
            slot: index,
            generation,
            extra: false,
        }));
        index
    }

    /// Stops a slot's probe and frees it; its queue entries are skipped when they come due.
    fn release(&mut self, index: u32) {
        if let Some(slot) = self.slots.get_mut(index as usize).and_then(Option::take) {
            if let Some(task) = slot.in_flight {
                task.abort();
            }
            self.free.push(index);
        }
    }

    fn rebuild_queue(&mut self) {
        let live: Vec<Reverse<Due>> = self
            .queue
            .drain()
            .filter(|Reverse(due)| {
                self.slots[due.slot as usize]
                    .as_ref()
                    .is_some_and(|s| s.generation == due.generation)
            })
            .collect();
        self.queue = live.into();
    }
}

async fn run_timer(shared: Arc<Schedule>) {
    let sleep = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(sleep);
    loop {
        let next = shared.start_due();
        // Far enough to mean "nothing queued", near enough to stay a valid Instant.
        let deadline = next.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        sleep.as_mut().reset(deadline);
        tokio::select! {
            _ = &mut sleep => {}
            _ = shared.wake.notified() => {}
        }
    }
}

/// Probes due this soon start with the ones due now: with thousands of checks spread over
/// their intervals, the timer and the runtime's workers wake once per window for a batch of
/// probes rather than once per probe (each wake costs context switches, a good part of a
/// probe's CPU). A probe starts at most this much early, and at most a tenth of its interval;
/// its ticks keep their interval.
const START_WINDOW: Duration = Duration::from_millis(50);

/// A check's interval as its ticks use it; never zero, so a tick always moves forward.
fn tick_interval(spec: &CheckSpec) -> Duration {
    spec.interval.std().max(Duration::from_millis(1))
}

/// First runs spread over up to a second for small configs (results come quickly), and over
/// one millisecond per check for large ones, capped by each check's interval.
fn spread_window(checks: usize) -> Duration {
    Duration::from_millis((checks as u64).max(1000))
}

/// How many probes may be in flight at once: most of the file descriptors medic may open (a
/// probe holds one or two), leaving room for the web server, the store and steps.
fn max_in_flight() -> usize {
    use nix::sys::resource::{getrlimit, Resource};
    let fds = getrlimit(Resource::RLIMIT_NOFILE).map_or(1024, |(soft, _)| soft);
    let budget = fds.saturating_sub(FDS_KEPT) / 2;
    usize::try_from(budget)
        .unwrap_or(usize::MAX)
        .max(MIN_IN_FLIGHT)
}

/// File descriptors kept out of the probes' budget, and the budget's floor.
const FDS_KEPT: u64 = 512;
const MIN_IN_FLIGHT: usize = 64;

/// Where the first ticks of checks new to the scheduler go.
#[derive(Clone, Copy)]
pub enum Placement<'a> {
    /// Spread over a start window by name (one replica, or a fixed shard).
    Spread,
    /// On wall-clock slots, the same on every replica, so a check that moves keeps its rhythm;
    /// `made_up` says which arriving checks lost their owner, and since when: a slot missed
    /// since then is made up at once.
    Slots {
        made_up: &'a dyn Fn(&str) -> Option<Instant>,
    },
}

/// A slot this long before the departed owner's last renewal counts as missed too: it may
/// have died just before renewing.
const MISSED_MARGIN: Duration = Duration::from_secs(1);
/// Missed slots are made up spread over this, not in one millisecond.
const CATCH_UP_SPREAD: Duration = Duration::from_secs(2);

/// A check's slot within its interval, from FNV-1a of its name: every replica and version
/// agrees, so the owner after a handover probes when the owner before would have.
fn slot_offset(name: &str, interval: Duration) -> u64 {
    let interval_ms = interval.as_millis().max(1) as u64;
    crate::cluster::fnv1a(name.as_bytes()) % interval_ms
}

/// From `wall_ms` to the check's next slot (a whole interval when it is now).
fn until_slot(offset_ms: u64, interval: Duration, wall_ms: i64) -> Duration {
    let interval_ms = interval.as_millis().max(1) as u64;
    let into = (wall_ms.max(0) as u64 + interval_ms - offset_ms % interval_ms) % interval_ms;
    Duration::from_millis(interval_ms - into)
}

/// A check that arrives: its next slot, or, when it lost its owner and its previous slot
/// passed within `missed` (since the owner's last sign of life), soon (spread over
/// [`CATCH_UP_SPREAD`] by its name).
fn first_aligned(
    name: &str,
    offset_ms: u64,
    interval: Duration,
    wall_ms: i64,
    missed: Option<Duration>,
) -> Duration {
    let next = until_slot(offset_ms, interval, wall_ms);
    let since_previous = interval.saturating_sub(next);
    let made_up = missed.is_some_and(|missed| since_previous <= missed);
    if made_up && next > Duration::ZERO {
        phase(name, CATCH_UP_SPREAD.min(next))
    } else {
        next
    }
}

/// A stable offset within `window` derived from the check's name.
fn phase(name: &str, window: Duration) -> Duration {
    let mut hasher = DefaultHasher::new();
    name.hash(&mut hasher);
    let window_ns = window.as_nanos().max(1) as u64;
    Duration::from_nanos(hasher.finish() % window_ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arcs(checks: &[CheckSpec]) -> Vec<Arc<CheckSpec>> {
        checks.iter().cloned().map(Arc::new).collect()
    }

    #[test]
    fn aligned_slots_are_on_the_wall_clock_and_a_recently_missed_one_is_made_up() {
        let minute = Duration::from_secs(60);
        // Offset 15 s: at 10 s into the minute the slot is 5 s away, at 20 s it is 55 s.
        assert_eq!(
            until_slot(15_000, minute, 600_000 + 10_000),
            Duration::from_secs(5)
        );
        assert_eq!(
            until_slot(15_000, minute, 600_000 + 20_000),
            Duration::from_secs(55)
        );
        assert_eq!(
            until_slot(15_000, minute, 600_000 + 15_000),
            minute,
            "now: next one"
        );
        // Arriving 5 s after its slot: made up within the spread; 20 s after: the next slot.
        // Owner last seen 10 s ago: a slot 5 s ago is made up, one 15 s ago is not (the owner
        // probed it).
        let ten = Some(Duration::from_secs(10));
        let soon = first_aligned("x", 15_000, minute, 600_000 + 20_000, ten);
        assert!(soon < CATCH_UP_SPREAD, "{soon:?}");
        let later = first_aligned("x", 15_000, minute, 600_000 + 30_000, ten);
        assert_eq!(later, Duration::from_secs(45));
        // Last seen 20 s ago (a slow handover): the slot 15 s ago is made up as well.
        let slow = first_aligned(
            "x",
            15_000,
            minute,
            600_000 + 30_000,
            Some(Duration::from_secs(20)),
        );
        assert!(slow < CATCH_UP_SPREAD, "{slow:?}");
        // Taken from a live owner (or owned by nobody before): its next slot, never sooner.
        let kept = first_aligned("x", 15_000, minute, 600_000 + 20_000, None);
        assert_eq!(kept, Duration::from_secs(55));
        // Every replica puts a check on the same slot.
        assert_eq!(slot_offset("web/a", minute), slot_offset("web/a", minute));
        assert!(slot_offset("web/a", minute) < 60_000);
    }

    #[test]
    fn phases_are_stable_and_within_window() {
        let w = Duration::from_secs(10);
        assert_eq!(phase("a", w), phase("a", w));
        let phases: Vec<Duration> = (0..1000).map(|i| phase(&format!("check-{i}"), w)).collect();
        assert!(phases.iter().all(|p| *p < w));
        // Spread: no tenth of the window holds more than a fifth of the checks.
        let mut buckets = [0usize; 10];
        for p in &phases {
            buckets[(p.as_secs_f64() / 1.0) as usize] += 1;
        }
        assert!(buckets.iter().all(|b| *b < 200), "{buckets:?}");
    }

    fn config(text: &str) -> crate::config::Config {
        crate::config::load_str(text, std::path::Path::new("."), &Default::default())
            .expect("valid config")
    }

    /// The next outcome, within a deadline far shorter than any scheduled tick in these tests.
    async fn next_outcome(rx: &mut mpsc::Receiver<StateRequest>) -> (Arc<str>, u64, String) {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some(StateRequest::Outcome {
                check,
                generation,
                outcome,
                ..
            })) => (check, generation, outcome.message),
            other => panic!("no outcome: {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn probes_first_on_its_phase_then_on_demand_and_after_changes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { while listener.accept().await.is_ok() {} });
        let text = |interval: &str| {
            format!(
                "checks:\n  - {{name: hourly, interval: {interval}, tcp: {{address: '{addr}'}}}}\n  \
                 - {{name: off, enabled: false, interval: 1s, tcp: {{address: '{addr}'}}}}\n"
            )
        };
        let cfg = config(&text("1h"));
        let (tx, mut rx) = mpsc::channel(16);
        let mut scheduler = Scheduler::new(Arc::new(Prober::new().unwrap()), tx);
        let probes = scheduler.probe_handle();
        let applied = scheduler.apply(&arcs(&cfg.checks), cfg.redactor.clone(), Placement::Spread);
        assert_eq!(applied.len(), 2);
        // The first probe comes within the spread window (a second for two checks).
        let (check, generation, _) = next_outcome(&mut rx).await;
        assert_eq!((&*check, generation), ("hourly", applied[0].1));
        // The next tick is an hour away: asked for, a probe comes at once.
        assert!(probes.probe_now("hourly"));
        let (check, generation, _) = next_outcome(&mut rx).await;
        assert_eq!((&*check, generation), ("hourly", applied[0].1));
        assert!(!probes.probe_now("off"), "a disabled check is not running");
        assert!(!probes.probe_now("unknown"));

        // The same config keeps the generation; a changed check gets a new one and a new
        // first probe.
        let same = scheduler.apply(&arcs(&cfg.checks), cfg.redactor.clone(), Placement::Spread);
        assert_eq!(same[0].1, applied[0].1);
        let changed_cfg = config(&text("2h"));
        let changed = scheduler.apply(
            &arcs(&changed_cfg.checks),
            changed_cfg.redactor.clone(),
            Placement::Spread,
        );
        assert_ne!(changed[0].1, applied[0].1);
        assert_eq!(
            changed[1].1, applied[1].1,
            "the disabled check did not change"
        );
        let (check, generation, _) = next_outcome(&mut rx).await;
        assert_eq!((&*check, generation), ("hourly", changed[0].1));

        // Removed, the check is not running any more.
        scheduler.apply(&[], Redactor::default(), Placement::Spread);
        assert!(!probes.probe_now("hourly"));
        scheduler.stop();
    }

    /// Waits, at most 10 s, until the first slot's check is probing (`busy`) or idle.
    async fn wait_busy(scheduler: &Scheduler, busy: bool, failure: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while scheduler.shared.lock().slots[0]
            .as_ref()
            .is_none_or(|s| s.in_flight.is_some() != busy)
        {
            assert!(std::time::Instant::now() < deadline, "{failure}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_probe_asked_for_during_one_follows_it() {
        let dir = tempfile::tempdir().unwrap();
        let gate = dir.path().join("gate");
        // Each probe waits for the gate file and removes it: one probe per gate opened.
        let script = format!(
            "while [ ! -e {g} ]; do sleep 0.02; done; rm {g}; echo opened",
            g = gate.display()
        );
        let cfg = config(&format!(
            "checks:\n  - name: gated\n    interval: 1h\n    timeout: 30s\n    \
             command: {{program: /bin/sh, args: ['-c', {script:?}]}}\n"
        ));
        let (tx, mut rx) = mpsc::channel(16);
        let mut scheduler = Scheduler::new(Arc::new(Prober::new().unwrap()), tx);
        let probes = scheduler.probe_handle();
        scheduler.apply(&arcs(&cfg.checks), cfg.redactor.clone(), Placement::Spread);
        // Wait until the first probe is running (its shell is polling), then ask for another.
        wait_busy(&scheduler, true, "first probe never started").await;
        assert!(probes.probe_now("gated"));
        assert!(
            probes.probe_now("gated"),
            "asking twice still means one more probe"
        );
        std::fs::write(&gate, "").unwrap();
        assert_eq!(next_outcome(&mut rx).await.2, "opened");
        std::fs::write(&gate, "").unwrap();
        assert_eq!(next_outcome(&mut rx).await.2, "opened");
        // No third probe: it would wait for a gate that stays closed, keeping the check busy.
        wait_busy(&scheduler, false, "a third probe started").await;
        scheduler.stop();
    }

    #[test]
    fn spread_grows_with_the_number_of_checks() {
        assert_eq!(spread_window(3), Duration::from_secs(1));
        assert_eq!(spread_window(10_000), Duration::from_secs(10));
    }
}
