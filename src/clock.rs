//! The time, read where a decision starts and handed inward: wall time for records and the
//! machines that take `now`, tokio's monotonic time for durations and leases (so paused-time
//! tests steer it).

use tokio::time::Instant;

use crate::timefmt::now_ms;

/// One reading of both clocks.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Unix milliseconds.
    pub wall_ms: i64,
    pub mono: Instant,
}

impl Now {
    pub fn read() -> Now {
        Now {
            wall_ms: now_ms(),
            mono: Instant::now(),
        }
    }
}
