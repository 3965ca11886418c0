//! Descendants of probes and steps never outlive them, and nothing medic inherits stays a
//! zombie.
//!
//! Killing a child's process group catches everything it forked, except what left the group
//! (`setsid`, `setpgid`: a plugin's daemon). To find those, every child gets a tag in its
//! environment ([`TAG_VAR`], unique per probe or step, inherited by all its descendants); when
//! the child ends (exits, times out, is cancelled) every process still carrying its tag is
//! SIGKILLed, with its group when it leads one.
//!
//! `medic run` also makes itself a child subreaper, so orphaned descendants are reparented to
//! medic rather than to init — and as PID 1 in a container medic is init. They must be reaped
//! when they die, but tokio reaps its own children (`Child::wait`), and a blanket
//! `waitpid(-1)` would steal their exit statuses. So medic keeps a registry of the direct
//! children it spawned (a pid is registered under the registry's lock across `spawn`, so no
//! child can exit unregistered), and the reaper, woken by SIGCHLD and by a slow timer, calls
//! `waitpid(pid, WNOHANG)` only on zombies whose parent is medic and which are not registered.
//!
//! Limits: a descendant that clears its environment and leaves its group cannot be attributed
//! and keeps running (it is still reaped when it dies); the reaper does not kill unattributed
//! children reparented to medic, because one may belong to a step still running. A descendant
//! that changed user cannot have its environment read and escapes the same way.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use tracing::Instrument;

/// The environment variable that marks a probe's or step's processes.
pub const TAG_VAR: &str = "MEDIC_PROCESS_TAG";

/// Direct children medic spawned and tokio waits on, pid → tag.
static CHILDREN: Mutex<BTreeMap<i32, String>> = Mutex::new(BTreeMap::new());

fn children() -> MutexGuard<'static, BTreeMap<i32, String>> {
    CHILDREN.lock().unwrap_or_else(|p| p.into_inner())
}

/// A tag no other probe, step or medic process uses: pid, start time and a sequence.
pub fn new_tag() -> String {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        crate::process_start_ms(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    )
}

/// A process a child left running when it exited: killed, or let be when detached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub pid: i32,
    /// Its command name (`/proc/PID/comm`).
    pub name: String,
}

/// A registered direct child; dropping it deregisters the pid and kills the tag's stragglers
/// (unless disarmed: a detached step's processes outlive it).
pub struct Registration {
    pid: Option<i32>,
    tag: String,
    spawned: std::time::Instant,
    disarmed: bool,
}

/// Spawns `command` (which must carry `tag` in [`TAG_VAR`]) and registers the child under the
/// registry's lock, so the reaper can never take it for an orphan.
pub fn spawn_registered(
    command: &mut tokio::process::Command,
    tag: String,
) -> std::io::Result<(tokio::process::Child, Registration)> {
    let mut registry = children();
    let child = command.spawn()?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok());
    if let Some(pid) = pid {
        registry.insert(pid, tag.clone());
    }
    Ok((
        child,
        Registration {
            pid,
            tag,
            spawned: std::time::Instant::now(),
            disarmed: false,
        },
    ))
}

impl Registration {
    /// Descendants got pids after the child's (pids are handed out in a cycle): for a short
    /// run only those need reading. A long one may have seen the cycle wrap.
    fn window(&self) -> Option<(i32, i32)> {
        match self.pid {
            Some(first) if self.spawned.elapsed() < FULL_SCAN_AFTER => {
                last_pid().map(|last| (first, last))
            }
            _ => None,
        }
    }

    /// What the child left running after it exited: processes still in group `pgid`, and
    /// those anywhere that carry its tag (what left the group with `setsid`).
    pub fn leftovers(&self, pgid: Option<i32>) -> Vec<Leftover> {
        let window = self.window();
        let needle = format!("{TAG_VAR}={}", self.tag);
        let own = std::process::id() as i32;
        pids()
            .filter(|&pid| pid != own)
            .filter(|&pid| window.is_none_or(|(first, last)| in_pid_window(pid, first, last)))
            .filter_map(|pid| {
                let stat = read_stat(pid)?;
                let alive = stat.state != 'Z';
                let ours = pgid.is_some_and(|g| stat.pgrp == g) || environ_has(pid, &needle);
                (alive && ours).then(|| Leftover {
                    pid,
                    name: comm(pid),
                })
            })
            .collect()
    }

    /// Lets the tag's processes be when this is dropped.
    pub fn disarm(&mut self) {
        self.disarmed = true;
    }
}

/// A process's command name, or `?` when it is gone.
pub fn comm(pid: i32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim_end().to_string())
        .unwrap_or_else(|_| "?".to_string())
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            children().remove(&pid);
        }
        if self.disarmed {
            return;
        }
        let killed = kill_tagged_in(&self.tag, self.window());
        if killed > 0 {
            tracing::info!(
                killed,
                "killed processes left behind by a finished probe or step"
            );
        }
    }
}

/// SIGKILLs every process whose environment carries `tag` (and the group of each that leads
/// one, which is how a `setsid` daemon escapes). Returns how many carried it.
pub fn kill_tagged(tag: &str) -> usize {
    kill_tagged_in(tag, None)
}

/// [`kill_tagged`], sparing the caller's own process group: a step's supervisor ends what
/// escaped the group this way, then the group itself at once (itself included), so that its
/// program cannot die first and let the supervisor exit half way.
pub fn kill_tagged_outside_own_group(tag: &str) {
    let needle = format!("{TAG_VAR}={tag}");
    let own_group = nix::unistd::getpgrp().as_raw();
    for pid in pids() {
        let Some(stat) = read_stat(pid) else {
            continue;
        };
        if stat.pgrp == own_group || !environ_has(pid, &needle) {
            continue;
        }
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        if stat.pgrp == pid && stat.pgrp > 1 {
            let _ = killpg(Pid::from_raw(stat.pgrp), Signal::SIGKILL);
        }
    }
}

/// Runs longer than this scan every process for their tag, not only those in the pid window.
const FULL_SCAN_AFTER: Duration = Duration::from_secs(10);

/// [`kill_tagged`] among the pids handed out from `first` to `last` (inclusive, cyclically),
/// or among all.
fn kill_tagged_in(tag: &str, window: Option<(i32, i32)>) -> usize {
    let needle = format!("{TAG_VAR}={tag}");
    let own_group = nix::unistd::getpgrp().as_raw();
    let own = std::process::id() as i32;
    let mut killed = 0;
    for pid in pids() {
        let outside = window.is_some_and(|(first, last)| !in_pid_window(pid, first, last));
        if pid == own || outside || !environ_has(pid, &needle) {
            continue;
        }
        killed += 1;
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        if let Some(stat) = read_stat(pid) {
            // Never medic's own group: a child may have moved itself into it.
            if stat.pgrp == pid && stat.pgrp != own_group && stat.pgrp > 1 {
                let _ = killpg(Pid::from_raw(stat.pgrp), Signal::SIGKILL);
            }
        }
    }
    killed
}

/// Makes medic the reaper of its descendants' orphans and keeps reaping them until the
/// runtime ends. Call once, at the start of `medic run`.
pub fn start() {
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(error = %e, "cannot become a child subreaper; orphans of steps go to init");
    }
    let mut sigchld = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "no SIGCHLD handler; reaping orphans on a timer only");
            None
        }
    };
    tokio::spawn(
        async move {
            // SIGCHLD coalesces and may race a registration; the timer catches what it missed.
            let mut timer = tokio::time::interval(REAP_EVERY);
            loop {
                match sigchld.as_mut() {
                    Some(s) => {
                        tokio::select! {
                            _ = s.recv() => {}
                            _ = timer.tick() => {}
                        }
                    }
                    None => {
                        timer.tick().await;
                    }
                }
                let reaped = reap_orphans();
                if reaped > 0 {
                    tracing::debug!(reaped, "reaped orphaned descendants");
                }
                // A sweep reads every process's stat (about 4 ms for 100 processes): with a SIGCHLD
                // per probe, at most a few sweeps a second. Zombies hold no memory meanwhile.
                tokio::time::sleep(REAP_AT_MOST_EVERY).await;
            }
        }
        .instrument(tracing::info_span!("reaper")),
    );
}

const REAP_EVERY: Duration = Duration::from_secs(5);
const REAP_AT_MOST_EVERY: Duration = Duration::from_millis(250);

/// Reaps zombies whose parent is medic and that tokio does not wait on. Returns how many.
pub fn reap_orphans() -> usize {
    let own = std::process::id() as i32;
    let zombies: Vec<i32> = pids()
        .filter(|&pid| {
            read_stat(pid)
                .is_some_and(|s| is_orphan_zombie(&s, own, |p| children().contains_key(&p)))
        })
        .collect();
    let mut reaped = 0;
    for pid in zombies {
        // Held across the check and the wait: a pid registered meanwhile is tokio's child.
        let registry = children();
        if registry.contains_key(&pid) {
            continue;
        }
        if let Ok(status) = waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            if status.pid().is_some() {
                reaped += 1;
            }
        }
        drop(registry);
    }
    reaped
}

/// What the reaper needs from `/proc/PID/stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    /// Field 22: clock ticks after boot; with the boot id it names a process for good.
    pub start_ticks: u64,
}

/// A zombie medic must reap: its parent is medic and tokio is not waiting on it.
fn is_orphan_zombie(stat: &Stat, own: i32, registered: impl Fn(i32) -> bool) -> bool {
    stat.state == 'Z' && stat.ppid == own && !registered(stat.pid)
}

/// Parses `/proc/PID/stat`. The command name may hold spaces and parentheses: fields are
/// counted from the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let pid = text.get(..open)?.trim().parse().ok()?;
    let rest: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // rest[0] is field 3 (state); field N is rest[N - 3].
    Some(Stat {
        pid,
        state: rest.first()?.chars().next()?,
        ppid: rest.get(1)?.parse().ok()?,
        pgrp: rest.get(2)?.parse().ok()?,
        start_ticks: rest.get(19)?.parse().ok()?,
    })
}

pub fn read_stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// This boot's id: the same pid and start time on another boot is another process.
pub fn boot_id() -> Option<String> {
    static BOOT: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    BOOT.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    })
    .clone()
}

/// Whether `pid` was handed out between `first` and `last` (inclusive), pids going up and
/// wrapping to low numbers past pid_max.
fn in_pid_window(pid: i32, first: i32, last: i32) -> bool {
    if first <= last {
        (first..=last).contains(&pid)
    } else {
        pid >= first || pid <= last
    }
}

/// The pid handed out last in medic's pid namespace.
fn last_pid() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Every pid in /proc now.
fn pids() -> impl Iterator<Item = i32> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
}

fn environ_has(pid: i32, needle: &str) -> bool {
    match std::fs::read(format!("/proc/{pid}/environ")) {
        Ok(env) => env.split(|b| *b == 0).any(|v| v == needle.as_bytes()),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_count_from_the_last_parenthesis() {
        let text = "4242 (a (weird) name) Z 17 4242 4242 0 -1 4194304 100 0 0 0 0 0 0 0 20 0 1 0 55397 3133440 386";
        let s = parse_stat(text).unwrap();
        assert_eq!(
            s,
            Stat {
                pid: 4242,
                state: 'Z',
                ppid: 17,
                pgrp: 4242,
                start_ticks: 55397
            }
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 0"), None);
    }

    #[test]
    fn only_unregistered_zombies_of_medic_are_reaped() {
        let stat = |pid, state, ppid| Stat {
            pid,
            state,
            ppid,
            pgrp: pid,
            start_ticks: 1,
        };
        let registered = |p: i32| p == 11;
        assert!(is_orphan_zombie(&stat(10, 'Z', 1), 1, registered));
        assert!(
            !is_orphan_zombie(&stat(11, 'Z', 1), 1, registered),
            "tokio's child"
        );
        assert!(!is_orphan_zombie(&stat(10, 'S', 1), 1, registered), "alive");
        assert!(
            !is_orphan_zombie(&stat(10, 'Z', 2), 1, registered),
            "not ours"
        );
    }

    #[test]
    fn the_pid_window_wraps() {
        assert!(in_pid_window(105, 100, 110));
        assert!(!in_pid_window(99, 100, 110));
        assert!(!in_pid_window(111, 100, 110));
        assert!(in_pid_window(32760, 32700, 20), "before the wrap");
        assert!(in_pid_window(5, 32700, 20), "after the wrap");
        assert!(!in_pid_window(300, 32700, 20));
    }

    #[test]
    fn own_stat_reads() {
        let own = read_stat(std::process::id() as i32).unwrap();
        assert_eq!(own.pid, std::process::id() as i32);
        assert!(own.start_ticks > 0);
        assert!(boot_id().is_some());
    }
}
