//! What recovery's verification asks of this process, answered by the scheduler (prompt
//! probes) and the state task (their results, after thresholds). Implemented here, where the
//! process is wired together, so that recovery depends on neither.

use crate::recovery::verify::{LiveChecks, ProbeEvents};
use crate::scheduler::ProbeHandle;
use crate::state::StateHandle;

/// What recovery's verification asks of this process: prompt probes from the scheduler and
/// their results, after thresholds, from the state task.
pub struct Scheduled {
    pub state: StateHandle,
    pub probes: ProbeHandle,
}

impl LiveChecks for Scheduled {
    fn probe_now(&self, check: &str) -> bool {
        self.probes.probe_now(check)
    }

    fn probes(
        &self,
        check: &str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<ProbeEvents>> + Send + '_>> {
        let check = check.to_string();
        Box::pin(async move { self.state.probes(&check).await })
    }

    fn status(
        &self,
        check: &str,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Option<crate::status::Status>> + Send + '_>,
    > {
        let check = check.to_string();
        Box::pin(async move { self.state.status(&check).await.map(|(status, _)| status) })
    }
}
