//! The four statuses, spelled the same everywhere: JSON, labels, logs, exit codes.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Status {
    Healthy,
    Warning,
    Critical,
    Unknown,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Healthy,
        Status::Warning,
        Status::Critical,
        Status::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Warning => "warning",
            Status::Critical => "critical",
            Status::Unknown => "unknown",
        }
    }

    /// How bad a status is, for "worst of": critical is what pages, so it ranks highest;
    /// unknown means nobody knows, which is worse than a known warning.
    pub fn severity(self) -> u8 {
        match self {
            Status::Healthy => 0,
            Status::Warning => 1,
            Status::Unknown => 2,
            Status::Critical => 3,
        }
    }

    /// The worse of two statuses.
    pub fn worst(self, other: Status) -> Status {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }

    /// The Nagios plugin exit code for this status.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Healthy => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }

    pub fn from_exit_code(code: i32) -> Option<Status> {
        match code {
            0 => Some(Status::Healthy),
            1 => Some(Status::Warning),
            2 => Some(Status::Critical),
            3 => Some(Status::Unknown),
            _ => None,
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Whether a probe with this raw status counts as up (`medic_check_success`).
    pub fn is_up(self) -> bool {
        matches!(self, Status::Healthy | Status::Warning)
    }

    pub fn index(self) -> usize {
        match self {
            Status::Healthy => 0,
            Status::Warning => 1,
            Status::Critical => 2,
            Status::Unknown => 3,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worst_ranks_critical_over_unknown_over_warning() {
        use Status::*;
        assert_eq!(Healthy.worst(Warning), Warning);
        assert_eq!(Warning.worst(Unknown), Unknown);
        assert_eq!(Unknown.worst(Critical), Critical);
        assert_eq!(Critical.worst(Healthy), Critical);
        for s in Status::ALL {
            assert_eq!(Status::from_exit_code(s.exit_code()), Some(s));
            assert_eq!(Status::parse(s.as_str()), Some(s));
        }
        assert_eq!(Status::from_exit_code(4), None);
    }
}
