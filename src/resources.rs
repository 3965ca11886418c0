//! medic's own resources: the file descriptor limit it raises at start, the cap on child
//! processes it runs (command checks and exec steps together), and telling an error caused by
//! medic running out of fds, processes or memory from one the target caused. A probe that
//! failed for medic's own want says nothing about the target and must never heal it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use nix::errno::Errno;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Which of medic's own resources ran out: the `reason` of `medic_probe_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    Fds,
    Processes,
    Memory,
}

impl Resource {
    pub const ALL: [Resource; 3] = [Resource::Fds, Resource::Processes, Resource::Memory];

    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Fds => "fds",
            Resource::Processes => "processes",
            Resource::Memory => "memory",
        }
    }
}

/// Which resource an OS error number says medic ran out of. `EAGAIN` means "no more
/// processes" only where a process was being created (`spawning`): from a socket it means
/// something else.
pub fn resource_of_errno(errno: i32, spawning: bool) -> Option<Resource> {
    match Errno::from_raw(errno) {
        Errno::EMFILE | Errno::ENFILE => Some(Resource::Fds),
        // ENOBUFS: the kernel has no memory for this socket's buffers.
        Errno::ENOMEM | Errno::ENOBUFS => Some(Resource::Memory),
        Errno::EAGAIN if spawning => Some(Resource::Processes),
        _ => None,
    }
}

/// Walks `err` and its sources for an `io::Error` that says medic itself ran out of something.
/// reqwest, hyper and sqlx wrap the socket's `io::Error` a few levels down.
pub fn exhausted(err: &(dyn std::error::Error + 'static), spawning: bool) -> Option<Resource> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(errno) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::raw_os_error)
        {
            if let Some(resource) = resource_of_errno(errno, spawning) {
                return Some(resource);
            }
        }
        next = e.source();
    }
    None
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. systemd and most shells start services
/// at a soft 1,024 (some containers at 256): a few hundred idle HTTP clients were enough to
/// make probes fail. Returns (old soft, new soft).
pub fn raise_fd_limit() -> nix::Result<(u64, u64)> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource as Limit};
    let (soft, hard) = getrlimit(Limit::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Limit::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok((soft, soft.max(hard)))
}

/// The default for `--process.max-children`.
pub const DEFAULT_MAX_CHILDREN: usize = 64;

/// Callers waiting for a child slot, per slot, before new ones are refused at once: the queue
/// is bounded, so a burst past the cap costs tasks and memory in proportion to the cap.
const WAITERS_PER_SLOT: usize = 4;

/// The cap on concurrent child processes: a semaphore whose permit a caller holds from before
/// the fork until its process group is gone.
#[derive(Debug)]
pub struct ChildLimiter {
    slots: std::sync::Arc<Semaphore>,
    max: usize,
    waiting: AtomicUsize,
    running: Gauge,
    waits: Counter,
    refused: Counter,
}

/// Why no child slot was granted.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SlotError {
    #[error(
        "medic already runs {0} child processes (--process.max-children) and {1} more are waiting"
    )]
    QueueFull(usize, usize),
    #[error("no child process slot within {secs}s: medic already runs {max} (--process.max-children)", secs = .0.as_secs_f64(), max = .1)]
    Timeout(Duration, usize),
}

/// Held while a child process runs; frees its slot when dropped.
#[derive(Debug)]
pub struct ChildSlot {
    _permit: OwnedSemaphorePermit,
    running: Gauge,
    /// How long the caller waited for it.
    pub waited: Duration,
}

impl Drop for ChildSlot {
    fn drop(&mut self) {
        self.running.dec();
    }
}

impl ChildLimiter {
    pub fn new(max: usize) -> Self {
        let max = max.max(1);
        ChildLimiter {
            slots: std::sync::Arc::new(Semaphore::new(max)),
            max,
            waiting: AtomicUsize::new(0),
            running: Gauge::default(),
            waits: Counter::default(),
            refused: Counter::default(),
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Takes a slot, waiting at most `timeout` for one (in FIFO order) while fewer than
    /// [`WAITERS_PER_SLOT`] per slot already wait.
    pub async fn acquire(&self, timeout: Duration) -> Result<ChildSlot, SlotError> {
        let started = tokio::time::Instant::now();
        let permit = match self.slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                let limit = self.max * WAITERS_PER_SLOT;
                let queued = self.waiting.fetch_add(1, Ordering::SeqCst);
                let _leave = Leave(&self.waiting);
                if queued >= limit {
                    self.refused.inc();
                    return Err(SlotError::QueueFull(self.max, queued));
                }
                self.waits.inc();
                match tokio::time::timeout(timeout, self.slots.clone().acquire_owned()).await {
                    Ok(Ok(permit)) => permit,
                    // The semaphore is never closed; treat it as no slot all the same.
                    Ok(Err(_)) | Err(_) => {
                        self.refused.inc();
                        return Err(SlotError::Timeout(timeout, self.max));
                    }
                }
            }
        };
        self.running.inc();
        Ok(ChildSlot {
            _permit: permit,
            running: self.running.clone(),
            waited: started.elapsed(),
        })
    }

    /// `medic_child_processes`, `medic_child_process_waits_total`,
    /// `medic_child_process_refusals_total`: handles that share this limiter's values.
    pub fn metrics(&self) -> (Gauge, Counter, Counter) {
        (
            self.running.clone(),
            self.waits.clone(),
            self.refused.clone(),
        )
    }
}

/// Leaves the wait queue however `acquire` returns.
struct Leave<'a>(&'a AtomicUsize);

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

static CHILDREN: OnceLock<ChildLimiter> = OnceLock::new();

/// Sets the process-wide cap; only the first call counts (at start, before any child runs).
pub fn set_max_children(max: usize) {
    let _ = CHILDREN.set(ChildLimiter::new(max));
}

/// The process-wide cap every child process goes through: one per process, because the
/// processes and fds it guards are the process's.
pub fn children() -> &'static ChildLimiter {
    CHILDREN.get_or_init(|| ChildLimiter::new(DEFAULT_MAX_CHILDREN))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errnos_name_the_resource() {
        assert_eq!(resource_of_errno(24, false), Some(Resource::Fds)); // EMFILE
        assert_eq!(resource_of_errno(23, false), Some(Resource::Fds)); // ENFILE
        assert_eq!(resource_of_errno(12, false), Some(Resource::Memory));
        assert_eq!(resource_of_errno(11, true), Some(Resource::Processes));
        assert_eq!(resource_of_errno(11, false), None);
        assert_eq!(resource_of_errno(111, false), None); // ECONNREFUSED: the target's
    }

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn exhaustion_is_found_down_the_source_chain() {
        let wrapped = Outer(std::io::Error::from_raw_os_error(24));
        assert_eq!(exhausted(&wrapped, false), Some(Resource::Fds));
        let refused = Outer(std::io::Error::from_raw_os_error(111));
        assert_eq!(exhausted(&refused, false), None);
        let custom = Outer(std::io::Error::other("no"));
        assert_eq!(exhausted(&custom, false), None);
    }

    // Real time, short: this crate's tokio has no test-util (paused time) feature.
    #[tokio::test]
    async fn past_the_cap_callers_wait_then_are_refused() {
        let ms = Duration::from_millis;
        let limiter = ChildLimiter::new(1);
        let first = limiter.acquire(ms(100)).await.unwrap();
        assert!(first.waited < ms(50));
        let err = limiter.acquire(ms(100)).await.unwrap_err();
        assert_eq!(err, SlotError::Timeout(ms(100), 1));
        // A waiter gets the slot as soon as it is freed.
        let waiter = async { limiter.acquire(Duration::from_secs(5)).await };
        let release = async {
            tokio::time::sleep(ms(200)).await;
            drop(first);
        };
        let (slot, ()) = tokio::join!(waiter, release);
        let waited = slot.unwrap().waited;
        assert!(
            waited >= ms(200) && waited < Duration::from_secs(5),
            "{waited:?}"
        );
        let (running, waits, refused) = limiter.metrics();
        assert_eq!((running.get(), waits.get(), refused.get()), (0, 2, 1));
    }

    #[tokio::test]
    async fn the_wait_queue_is_bounded() {
        let limiter = std::sync::Arc::new(ChildLimiter::new(1));
        let _held = limiter.acquire(Duration::from_secs(1)).await.unwrap();
        let mut waiters = Vec::new();
        for _ in 0..WAITERS_PER_SLOT {
            let l = limiter.clone();
            waiters.push(tokio::spawn(async move {
                l.acquire(Duration::from_secs(60)).await.map(|_| ())
            }));
        }
        tokio::task::yield_now().await;
        while limiter.waiting.load(Ordering::SeqCst) < WAITERS_PER_SLOT {
            tokio::task::yield_now().await;
        }
        let err = limiter.acquire(Duration::from_secs(60)).await.unwrap_err();
        assert!(matches!(err, SlotError::QueueFull(1, _)), "{err}");
        for w in waiters {
            w.abort();
        }
    }
}
