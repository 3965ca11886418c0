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
    pgid: Option<i32>,
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
    NoSlot(#[from] crate::limits::SlotError),
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

/// Runs `program` to its end or `timeout`, keeping part of its output. Whatever the program
/// left running in its group, or anywhere with its tag, is killed when it exits, times out, or
/// this future is dropped. `on_spawn` hears the group's identity as soon as it runs.
pub async fn run(
    program: &str,
    args: &[String],
    env: &[(String, String)],
    timeout: Duration,
    keep: Keep,
    on_spawn: Option<OnSpawn>,
) -> Result<Exited, RunError> {
    // Every child goes through medic's cap (`--process.max-children`): past it the caller
    // waits, for no longer than its own timeout, which the wait uses up. Held until the group
    // is killed below.
    let slot = crate::limits::children().acquire(timeout).await?;
    let timeout = timeout.saturating_sub(slot.waited);
    let tag = reaper::new_tag();
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env(reaper::TAG_VAR, &tag)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let (mut child, registration) =
        reaper::spawn_registered(&mut command, tag.clone()).map_err(|source| RunError::Spawn {
            program: program.to_string(),
            source,
        })?;
    // Declared after the registration, so dropped before it: the group dies first, then the
    // tag's stragglers.
    let guard = GroupGuard::new(child.id());
    if let (Some(on_spawn), Some(identity)) = (on_spawn, identify(child.id(), tag)) {
        let _ = on_spawn.send(identity);
    }
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let all = async { tokio::join!(read(stdout, keep), read(stderr, keep), child.wait()) };
    let result = tokio::time::timeout(timeout, all).await;
    guard.kill();
    drop(registration);
    drop(slot);
    let (stdout, stderr, status) = result.map_err(|_| RunError::Timeout(timeout))?;
    let status = status.map_err(|source| RunError::Wait {
        program: program.to_string(),
        source,
    })?;
    Ok(Exited {
        status,
        stdout,
        stderr,
    })
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
    let leader = reaper::read_stat(recorded.pgid).map(|s| s.start_ticks);
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

/// Reads to the end (so the program never blocks on a full pipe), keeping what `keep` says.
async fn read<R: AsyncRead + Unpin>(reader: Option<R>, keep: Keep) -> String {
    let Some(mut reader) = reader else {
        return String::new();
    };
    let mut kept: Vec<u8> = Vec::new();
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
    String::from_utf8_lossy(&kept).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let exited = run(
            "sh",
            &["-c".to_string(), script],
            &[],
            Duration::from_secs(10),
            Keep::Head(1024),
            Some(tx),
        )
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
}
