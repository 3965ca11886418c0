//! Child processes (command checks, exec steps) run directly, never through a shell, with
//! stdin closed, in their own process group, so that a timeout, a cancellation or shutdown
//! kills the program together with everything it forked. What escaped the group (`setsid`) is
//! found by its environment tag and killed too (see `reaper`); a step's group is reported to
//! the caller as soon as it exists, so that a medic killed mid-step can end it after a restart.

use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::reaper;

/// Kills a process group with SIGKILL when told to, or when dropped before that (a cancelled
/// probe or step must not leave its children running).
pub struct GroupGuard {
    pub pgid: Option<i32>,
    done: AtomicBool,
}

impl GroupGuard {
    /// `pid` is the leader of a group created with `process_group(0)`.
    pub fn new(pid: Option<u32>) -> Self {
        GroupGuard {
            pgid: pid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 1),
            done: AtomicBool::new(false),
        }
    }

    /// Lets the group be: a detached step's processes outlive it.
    pub fn disarm(&mut self) {
        self.done.store(true, Ordering::SeqCst);
    }

    pub fn kill(&self) {
        if self.done.swap(true, Ordering::SeqCst) {
            return;
        }
        if let Some(pgid) = self.pgid {
            // ESRCH (the group is already gone) is the common, harmless case.
            let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Which part of a long output to keep.
#[derive(Debug, Clone, Copy)]
pub enum Keep {
    /// The first n bytes (a plugin's message is at the top).
    Head(usize),
    /// The last n bytes (a failing script says why at the end).
    Tail(usize),
}

/// A program that ran to its end.
#[derive(Debug)]
pub struct Exited {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    /// What it left running when it exited: killed, unless `detached`.
    pub leftovers: Vec<Leftover>,
    pub detached: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("still running after {}s, killed with its process group", .0.as_secs_f64())]
    Timeout(Duration),
    /// No child process slot under `--process.max-children`: nothing was forked.
    #[error("not started: {0}")]
    NoSlot(#[from] crate::resources::SlotError),
    #[error("waiting for {program} failed: {source}")]
    Wait {
        program: String,
        source: std::io::Error,
    },
}

/// Enough to recognise a spawned process group later, from another medic process: a pid is
/// reused, but not with the same start time on the same boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupIdentity {
    /// The group's id, which is its leader's pid.
    pub pgid: i32,
    pub boot_id: String,
    /// The leader's start time, field 22 of /proc/PID/stat (clock ticks after boot).
    pub leader_start_ticks: u64,
    /// The value of `MEDIC_PROCESS_TAG` every process of it inherited.
    pub tag: String,
}

/// Hears the group's identity once the child is spawned, before it finishes.
pub type OnSpawn = tokio::sync::oneshot::Sender<GroupIdentity>;

/// One child to run: the program and the rules around it.
pub struct Job<'a> {
    pub program: &'a str,
    pub args: &'a [String],
    pub env: &'a [(String, String)],
    pub timeout: Duration,
    pub keep: Keep,
    /// Hears the group's identity as soon as it runs.
    pub on_spawn: Option<OnSpawn>,
    /// What the program leaves running when it exits is let be and reported (a step that
    /// starts a service), not killed.
    pub detach: bool,
    /// A recovery step: run under a supervisor process that takes the group down if medic
    /// dies, even by `kill -9` (see [`supervise`]), and what it leaves behind is named.
    pub supervised: bool,
}

pub use crate::reaper::Leftover;

/// How long output that a child's own children still hold open is read after it exited: a
/// step ends when its own process does, not when the last holder of its stdout does.
pub const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// Runs the job's program to its end or its timeout, keeping part of its output. Whatever the
/// program left running in its group, or anywhere with its tag, is killed when it exits
/// (reported in [`Exited::leftovers`]) unless the job detaches it; everything is killed when it
/// times out or this future is dropped.
pub async fn run(job: Job<'_>) -> Result<Exited, RunError> {
    // Every child goes through medic's cap (`--process.max-children`): past it the caller
    // waits, for no longer than its own timeout, which the wait uses up. Held until the group
    // is killed below.
    let slot = crate::resources::children().acquire(job.timeout).await?;
    let timeout = job.timeout.saturating_sub(slot.waited);
    let tag = reaper::new_tag();
    let mut command = command(&job);
    command
        .envs(job.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env(reaper::TAG_VAR, &tag)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let (mut child, mut registration) = reaper::spawn_registered(&mut command, tag.clone())
        .map_err(|source| RunError::Spawn {
            program: job.program.to_string(),
            source,
        })?;
    // Declared after the registration, so dropped before it: the group dies first, then the
    // tag's stragglers.
    let mut guard = GroupGuard::new(child.id());
    if let (Some(on_spawn), Some(identity)) = (job.on_spawn, identify(child.id(), tag)) {
        let _ = on_spawn.send(identity);
    }
    // The supervisor's stdin: held while the program runs; its closing (however medic ends)
    // is what tells the supervisor to take the group down.
    let lifeline = child.stdin.take();
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = wait_and_read(
        &mut child,
        timeout,
        (stdout, &mut out),
        (stderr, &mut err),
        job.keep,
    )
    .await;
    let Some(status) = status else {
        guard.kill();
        return Err(RunError::Timeout(timeout));
    };
    let status = status.map_err(|source| RunError::Wait {
        program: job.program.to_string(),
        source,
    })?;
    // Steps name what they leave behind; a probe's leftovers are only killed (below, and by
    // the registration's tag sweep), without the cost of naming them on every probe.
    let leftovers = if job.supervised || job.detach {
        registration.leftovers(guard.pgid)
    } else {
        Vec::new()
    };
    if job.detach {
        guard.disarm();
        registration.disarm();
    } else {
        for left in &leftovers {
            let _ = nix::sys::signal::kill(Pid::from_raw(left.pid), Signal::SIGKILL);
        }
        guard.kill();
        // A killed process keeps its sockets until it is torn down: verification must not
        // find the service it started still answering.
        wait_gone(&leftovers, LEFTOVER_TEARDOWN).await;
    }
    drop(lifeline);
    drop(registration);
    drop(slot);
    Ok(Exited {
        status,
        stdout: kept_text(out, job.keep),
        stderr: kept_text(err, job.keep),
        leftovers,
        detached: job.detach,
    })
}

/// How long a step waits for the leftovers it killed to be gone.
const LEFTOVER_TEARDOWN: Duration = Duration::from_secs(1);

/// Waits, at most `bound`, until every process in `leftovers` has ended (a zombie has).
async fn wait_gone(leftovers: &[Leftover], bound: Duration) {
    let deadline = tokio::time::Instant::now() + bound;
    while leftovers
        .iter()
        .any(|l| reaper::read_stat(l.pid).is_some_and(|s| s.state != 'Z'))
    {
        if tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The command to spawn: the program itself, or medic's supervisor running it.
fn command(job: &Job<'_>) -> tokio::process::Command {
    match job.supervised && SUPERVISED.load(Ordering::SeqCst) {
        true => {
            let mut command = tokio::process::Command::new(own_executable());
            command
                .arg(SUPERVISE_ARG)
                .arg(job.program)
                .args(job.args)
                .stdin(Stdio::piped());
            command
        }
        false => {
            let mut command = tokio::process::Command::new(job.program);
            command.args(job.args).stdin(Stdio::null());
            command
        }
    }
}

/// Waits for the child's own exit, reading its output meanwhile, for at most `timeout`; then
/// reads what is still open for at most [`OUTPUT_GRACE`]. `None` when it did not exit in time.
async fn wait_and_read(
    child: &mut tokio::process::Child,
    timeout: Duration,
    stdout: (Option<tokio::process::ChildStdout>, &mut Vec<u8>),
    stderr: (Option<tokio::process::ChildStderr>, &mut Vec<u8>),
    keep: Keep,
) -> Option<std::io::Result<ExitStatus>> {
    let reading = async {
        tokio::join!(
            read_into(stdout.0, keep, stdout.1),
            read_into(stderr.0, keep, stderr.1)
        )
    };
    tokio::pin!(reading);
    let mut read_all = false;
    let waited = tokio::time::timeout(timeout, async {
        loop {
            tokio::select! {
                status = child.wait() => break status,
                _ = &mut reading, if !read_all => read_all = true,
            }
        }
    })
    .await;
    if waited.is_ok() && !read_all {
        let _ = tokio::time::timeout(OUTPUT_GRACE, &mut reading).await;
    }
    waited.ok()
}

/// The identity of the group `pid` leads; `None` when /proc cannot tell (then nothing can be
/// recognised later, and nothing is recorded).
fn identify(pid: Option<u32>, tag: String) -> Option<GroupIdentity> {
    let pgid = i32::try_from(pid?).ok()?;
    Some(GroupIdentity {
        pgid,
        boot_id: reaper::boot_id()?,
        leader_start_ticks: reaper::read_stat(pgid)?.start_ticks,
        tag,
    })
}

/// Whether a recorded group is still the one running now: the same boot, and a leader with
/// the recorded start time (a reused pid has another). `leader_start_now` is the start time of
/// the process that has the pid now, if any.
pub fn still_running(
    recorded: &GroupIdentity,
    boot_id_now: Option<&str>,
    leader_start_now: Option<u64>,
) -> bool {
    boot_id_now == Some(recorded.boot_id.as_str())
        && leader_start_now == Some(recorded.leader_start_ticks)
}

/// What became of a group recorded by an earlier medic process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// It still ran and was killed, with whatever carried its tag outside it.
    Killed,
    /// Its leader was gone; `stragglers` tagged processes still ran and were killed.
    Ended { stragglers: usize },
    /// Recorded on another boot or host: nothing here can be it.
    Elsewhere,
}

/// Ends a group recorded by an earlier medic process if it still runs here, with everything
/// that carries its tag. A pid that was reused (another boot, another start time) is left
/// alone.
pub fn end_recorded(recorded: &GroupIdentity) -> Fate {
    let boot = reaper::boot_id();
    if boot.as_deref() != Some(recorded.boot_id.as_str()) {
        return Fate::Elsewhere;
    }
    // A zombie leader has ended; only its unreaped entry is left (its parent died too).
    let leader = reaper::read_stat(recorded.pgid)
        .filter(|s| s.state != 'Z')
        .map(|s| s.start_ticks);
    let running = still_running(recorded, boot.as_deref(), leader) && recorded.pgid > 1;
    if running {
        let _ = killpg(Pid::from_raw(recorded.pgid), Signal::SIGKILL);
    }
    let stragglers = if recorded.tag.is_empty() {
        0
    } else {
        reaper::kill_tagged(&recorded.tag)
    };
    if running {
        Fate::Killed
    } else {
        Fate::Ended { stragglers }
    }
}

/// Reads to the end (so the program never blocks on a full pipe) into `kept`, keeping about
/// what `keep` says; what was read stays in `kept` if this is dropped half way.
async fn read_into<R: AsyncRead + Unpin>(reader: Option<R>, keep: Keep, kept: &mut Vec<u8>) {
    let Some(mut reader) = reader else {
        return;
    };
    let mut chunk = [0u8; 4096];
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => match keep {
                Keep::Head(max) => {
                    let room = max.saturating_sub(kept.len());
                    kept.extend_from_slice(&chunk[..n.min(room)]);
                }
                Keep::Tail(max) => {
                    kept.extend_from_slice(&chunk[..n]);
                    if kept.len() > 2 * max {
                        kept.drain(..kept.len() - max);
                    }
                }
            },
        }
    }
}

/// The kept bytes as text, cut to exactly what `keep` says.
fn kept_text(mut kept: Vec<u8>, keep: Keep) -> String {
    if let Keep::Tail(max) = keep {
        if kept.len() > max {
            kept.drain(..kept.len() - max);
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

/// The supervisor's first argument: `medic __supervise PROGRAM ARGS...`.
pub const SUPERVISE_ARG: &str = "__supervise";

/// Set by the `medic` binary: steps then run under [`supervise`] (medic itself). Unset in
/// unit tests, whose binary is not medic: steps run directly.
static SUPERVISED: AtomicBool = AtomicBool::new(false);

/// Runs supervised steps through medic's own executable from now on.
pub fn use_supervisor() {
    SUPERVISED.store(true, Ordering::SeqCst);
}

/// medic's executable: its path, or, when that file was replaced or removed since medic
/// started (a package upgrade), the running image itself.
fn own_executable() -> std::path::PathBuf {
    match std::env::current_exe() {
        Ok(path) if path.exists() => path,
        _ => std::path::PathBuf::from("/proc/self/exe"),
    }
}

/// `medic __supervise PROGRAM ARGS...`: runs the program in this process's group (medic made
/// it the group's leader) and exits as it exits. Its stdin is a pipe whose other end only
/// medic holds: when it closes while the program still runs, medic is gone (even by `kill
/// -9`), and the supervisor kills everything carrying the step's tag and then its whole
/// group, itself included. So no step outlives medic by more than a moment.
pub fn supervise(program: &std::ffi::OsStr, args: &[std::ffi::OsString]) -> i32 {
    let child = std::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            eprintln!("cannot run {}: {e}", program.to_string_lossy());
            return 127;
        }
    };
    std::thread::spawn(|| {
        let mut stdin = std::io::stdin();
        let mut buf = [0u8; 64];
        // Nothing is ever written: a read returns only at the end, or on an error.
        while matches!(std::io::Read::read(&mut stdin, &mut buf), Ok(n) if n > 0) {}
        if let Ok(tag) = std::env::var(reaper::TAG_VAR) {
            reaper::kill_tagged_outside_own_group(&tag);
        }
        let _ = killpg(nix::unistd::getpgrp(), Signal::SIGKILL);
    });
    match child.wait() {
        Ok(status) => exit_code_of(status),
        Err(_) => 1,
    }
}

/// The supervisor ends as its program did: the same code, or the same signal.
fn exit_code_of(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        return code;
    }
    let signal = status.signal().unwrap_or(0);
    if let Ok(signal) = Signal::try_from(signal) {
        let _ = nix::sys::signal::raise(signal);
    }
    // A signal whose default is not to end the process (or SIGPIPE, which Rust ignores).
    128 + signal
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sh -c SCRIPT` as a step would run it (unsupervised: no medic binary in unit tests).
    fn sh(script: &str, timeout: Duration) -> Job<'static> {
        let args: &'static [String] =
            Box::leak(vec!["-c".to_string(), script.to_string()].into_boxed_slice());
        Job {
            program: "sh",
            args,
            env: &[],
            timeout,
            keep: Keep::Head(1024),
            on_spawn: None,
            detach: false,
            supervised: true,
        }
    }

    fn recorded() -> GroupIdentity {
        GroupIdentity {
            pgid: 4242,
            boot_id: "boot-a".into(),
            leader_start_ticks: 1000,
            tag: "t".into(),
        }
    }

    #[test]
    fn a_recorded_group_is_recognised_only_on_its_boot_with_its_leaders_start_time() {
        let r = recorded();
        assert!(still_running(&r, Some("boot-a"), Some(1000)));
        assert!(
            !still_running(&r, Some("boot-b"), Some(1000)),
            "another boot"
        );
        assert!(!still_running(&r, None, Some(1000)), "boot unknown");
        assert!(
            !still_running(&r, Some("boot-a"), Some(1001)),
            "a reused pid"
        );
        assert!(!still_running(&r, Some("boot-a"), None), "the pid is free");
    }

    fn alive(pid: i32) -> bool {
        reaper::read_stat(pid).is_some_and(|s| s.state != 'Z')
    }

    #[tokio::test]
    async fn a_reused_pid_is_never_killed() {
        // A live process of ours, recorded with the wrong start time or boot: left alone.
        let mut victim = tokio::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = victim.id().unwrap() as i32;
        let start = reaper::read_stat(pid).unwrap().start_ticks;
        let boot = reaper::boot_id().unwrap();
        let other_start = GroupIdentity {
            pgid: pid,
            boot_id: boot.clone(),
            leader_start_ticks: start + 1,
            tag: String::new(),
        };
        assert_eq!(end_recorded(&other_start), Fate::Ended { stragglers: 0 });
        let other_boot = GroupIdentity {
            boot_id: "another-boot".into(),
            leader_start_ticks: start,
            ..other_start.clone()
        };
        assert_eq!(end_recorded(&other_boot), Fate::Elsewhere);
        assert!(
            alive(pid),
            "a pid that is not the recorded process was killed"
        );
        let same = GroupIdentity {
            leader_start_ticks: start,
            ..other_start
        };
        assert_eq!(end_recorded(&same), Fate::Killed);
        let status = tokio::time::timeout(Duration::from_secs(5), victim.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(!status.success());
    }

    #[tokio::test]
    async fn spawn_is_reported_before_the_end_and_setsid_escapees_die_with_the_run() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("daemon");
        let script = format!(
            "setsid sh -c 'echo $$ > {}; exec sleep 300' >/dev/null 2>&1 &\n\
             while [ ! -s {} ]; do sleep 0.05; done\necho OK",
            pidfile.display(),
            pidfile.display()
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        let exited = run(Job {
            on_spawn: Some(tx),
            ..sh(&script, Duration::from_secs(10))
        })
        .await
        .unwrap();
        assert_eq!(exited.stdout.trim(), "OK");
        let group = rx.await.expect("the spawn was reported");
        assert!(group.pgid > 1);
        assert_eq!(Some(group.boot_id.clone()), reaper::boot_id());
        let daemon: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // SIGKILL is delivered at once; only the reaping of the zombie may lag.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive(daemon) {
            assert!(
                std::time::Instant::now() < deadline,
                "the setsid daemon {daemon} outlived its probe"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_step_ends_when_its_own_process_exits_and_its_leftovers_are_named_and_killed() {
        // `sleep 300 &` keeps the step's stdout open: the step still ends within the grace,
        // not at its 20 s timeout, and the sleep is killed and named.
        let started = std::time::Instant::now();
        let exited = run(sh("sleep 300 & echo started", Duration::from_secs(20)))
            .await
            .unwrap();
        let took = started.elapsed();
        assert!(exited.status.success());
        assert_eq!(exited.stdout.trim(), "started");
        assert!(
            took < Duration::from_secs(5),
            "waited {took:?} for output a child held open"
        );
        assert!(took >= OUTPUT_GRACE, "the grace was not given: {took:?}");
        assert_eq!(exited.leftovers.len(), 1, "{:?}", exited.leftovers);
        assert_eq!(exited.leftovers[0].name, "sleep");
        assert!(!exited.detached);
        let pid = exited.leftovers[0].pid;
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while alive(pid) {
            assert!(std::time::Instant::now() < deadline, "leftover {pid} lives");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_detached_step_leaves_what_it_started_running() {
        let exited = run(Job {
            detach: true,
            ..sh(
                "sleep 300 >/dev/null 2>&1 & echo $!",
                Duration::from_secs(20),
            )
        })
        .await
        .unwrap();
        let pid: i32 = exited.stdout.trim().parse().unwrap();
        assert!(exited.detached);
        assert_eq!(
            exited.leftovers,
            vec![Leftover {
                pid,
                name: "sleep".into()
            }]
        );
        // Let a reaping sweep or a late kill happen, if anything would do it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(alive(pid), "the detached process was killed");
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
    }

    #[tokio::test]
    async fn a_probe_without_leftovers_keeps_its_whole_output() {
        let exited = run(Job {
            supervised: false,
            ..sh("echo one; echo two >&2", Duration::from_secs(5))
        })
        .await
        .unwrap();
        assert_eq!(exited.stdout, "one\n");
        assert_eq!(exited.stderr, "two\n");
        assert!(exited.leftovers.is_empty());
    }
}
