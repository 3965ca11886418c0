//! Child processes run in their own process group so that a timeout or shutdown kills the
//! program together with everything it forked.

use std::sync::atomic::{AtomicBool, Ordering};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

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
