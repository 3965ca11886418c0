//! Pure: what the last hour of a check's results looked like (runs, statuses, success ratio,
//! latency quantiles from an hdrhistogram), as `/api/v1/checks/{name}` shows it. No IO, no
//! clock: `now` is an argument.

use crate::status::Status;

/// The window the API's trend covers.
pub const TREND_WINDOW_MS: i64 = 3_600_000;

/// What the last hour looked like for one check.
#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    pub window_seconds: f64,
    pub runs: u64,
    pub status_distribution: StatusCounts,
    pub success_ratio: Option<f64>,
    pub latency_p50_seconds: Option<f64>,
    pub latency_p90_seconds: Option<f64>,
    pub latency_p99_seconds: Option<f64>,
    pub latency_max_seconds: Option<f64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatusCounts {
    pub healthy: u64,
    pub warning: u64,
    pub critical: u64,
    pub unknown: u64,
}

impl StatusCounts {
    pub fn add(&mut self, status: Status) {
        match status {
            Status::Healthy => self.healthy += 1,
            Status::Warning => self.warning += 1,
            Status::Critical => self.critical += 1,
            Status::Unknown => self.unknown += 1,
        }
    }
}

/// The trend over the hour before `now_ms` of `samples`: each result's time (ms), status and
/// duration (µs), in any order; those outside the hour are left out.
pub fn over(samples: impl Iterator<Item = (i64, Status, u32)>, now_ms: i64) -> Trend {
    let since = now_ms - TREND_WINDOW_MS;
    let mut counts = StatusCounts::default();
    // 1µs to 1h at 3 significant digits: exact enough for a latency report.
    let mut histogram = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).ok();
    let mut runs = 0u64;
    let mut max_micros = 0u32;
    for (_, status, micros) in samples.filter(|(at, ..)| *at > since && *at <= now_ms) {
        runs += 1;
        counts.add(status);
        max_micros = max_micros.max(micros);
        if let Some(h) = histogram.as_mut() {
            h.saturating_record(u64::from(micros.max(1)));
        }
    }
    let quantile = |q: f64| -> Option<f64> {
        if runs == 0 {
            return None;
        }
        // hdrhistogram reports the top of a value's bucket; never above the real maximum.
        histogram
            .as_ref()
            .map(|h| h.value_at_quantile(q).min(u64::from(max_micros.max(1))) as f64 / 1e6)
    };
    Trend {
        window_seconds: TREND_WINDOW_MS as f64 / 1000.0,
        runs,
        status_distribution: counts,
        success_ratio: (runs > 0).then(|| (counts.healthy + counts.warning) as f64 / runs as f64),
        latency_p50_seconds: quantile(0.50),
        latency_p90_seconds: quantile(0.90),
        latency_p99_seconds: quantile(0.99),
        latency_max_seconds: (runs > 0).then(|| f64::from(max_micros) / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::result_ring::ResultRing;
    use Status::*;

    #[test]
    fn trend_covers_only_the_last_hour() {
        let mut s = ResultRing::new(100, 1000);
        let now = 10 * TREND_WINDOW_MS;
        s.push(now - TREND_WINDOW_MS - 1, Critical, 9.0, "old"); // too old
        for i in 0..100 {
            let status = if i < 90 { Healthy } else { Critical };
            s.push(now - 1000 * (100 - i), status, (i + 1) as f64 / 1000.0, "");
        }
        let t = s.trend(now);
        assert_eq!(t.runs, 100);
        assert_eq!(t.status_distribution.healthy, 90);
        assert_eq!(t.status_distribution.critical, 10);
        assert_eq!(t.success_ratio, Some(0.9));
        let p50 = t.latency_p50_seconds.unwrap();
        assert!((p50 - 0.050).abs() < 0.001, "{p50}");
        let p99 = t.latency_p99_seconds.unwrap();
        assert!((p99 - 0.099).abs() < 0.001, "{p99}");
        assert_eq!(t.latency_max_seconds, Some(0.1));
    }

    #[test]
    fn empty_trend_has_no_numbers() {
        let t = ResultRing::new(100, 1000).trend(0);
        assert_eq!(t.runs, 0);
        assert_eq!(t.success_ratio, None);
        assert_eq!(t.latency_p50_seconds, None);
    }
}
