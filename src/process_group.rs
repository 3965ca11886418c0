//! Child processes (command checks, exec steps) run directly, never through a shell, with
//! stdin closed, in their own process group, so that a timeout, a cancellation or shutdown
//! kills the program together with everything it forked.

use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};

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

/// Runs `program` to its end or `timeout`, keeping part of its output. Whatever the program
/// left running in its group is killed when it exits, times out, or this future is dropped.
pub async fn run(
    program: &str,
    args: &[String],
    env: &[(String, String)],
    timeout: Duration,
    keep: Keep,
) -> Result<Exited, RunError> {
    // Every child goes through medic's cap (`--process.max-children`): past it the caller
    // waits, for no longer than its own timeout, which the wait uses up. Held until the group
    // is killed below.
    let slot = crate::limits::children().acquire(timeout).await?;
    let timeout = timeout.saturating_sub(slot.waited);
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| RunError::Spawn {
        program: program.to_string(),
        source,
    })?;
    let guard = GroupGuard::new(child.id());
    let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
    let all = async { tokio::join!(read(stdout, keep), read(stderr, keep), child.wait()) };
    let result = tokio::time::timeout(timeout, all).await;
    guard.kill();
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
