//! Prometheus-style durations (`500ms`, `30s`, `1h30m`) that parse once and print back the same way.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

/// A non-negative duration written the way Prometheus writes them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(std::time::Duration);

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct DurationError {
    input: String,
    reason: &'static str,
}

const UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3600 * 1000),
    ("w", 7 * 24 * 3600 * 1000),
    ("d", 24 * 3600 * 1000),
    ("h", 3600 * 1000),
    ("m", 60 * 1000),
    ("s", 1000),
    ("ms", 1),
];

impl Duration {
    pub const fn from_millis(ms: u64) -> Self {
        Duration(std::time::Duration::from_millis(ms))
    }

    pub const fn from_secs(s: u64) -> Self {
        Duration(std::time::Duration::from_secs(s))
    }

    pub fn std(self) -> std::time::Duration {
        self.0
    }

    pub fn as_secs_f64(self) -> f64 {
        self.0.as_secs_f64()
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Duration(d)
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let fail = |reason| DurationError {
            input: input.to_string(),
            reason,
        };
        if input == "0" {
            return Ok(Duration::default());
        }
        if input.is_empty() {
            return Err(fail("empty"));
        }
        let mut rest = input;
        let mut total_ms: u64 = 0;
        // Units must appear from largest to smallest, each at most once, as Prometheus requires.
        let mut last_unit_index: Option<usize> = None;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(fail(
                    "expected a number followed by a unit (ms, s, m, h, d, w, y)",
                ));
            }
            let number: u64 = rest[..digits]
                .parse()
                .map_err(|_| fail("number too large"))?;
            rest = &rest[digits..];
            // "ms" must be tried before "m".
            let (index, unit_ms, unit_len) = if rest.starts_with("ms") {
                (6, 1, 2)
            } else {
                match UNITS[..6].iter().position(|(u, _)| rest.starts_with(u)) {
                    Some(i) => (i, UNITS[i].1, 1),
                    None => return Err(fail("unknown or missing unit (use ms, s, m, h, d, w, y)")),
                }
            };
            if last_unit_index.is_some_and(|last| index <= last) {
                return Err(fail("units must go from largest to smallest, each once"));
            }
            last_unit_index = Some(index);
            rest = &rest[unit_len..];
            total_ms = number
                .checked_mul(unit_ms)
                .and_then(|v| total_ms.checked_add(v))
                .ok_or_else(|| fail("too large"))?;
        }
        Ok(Duration::from_millis(total_ms))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ms = self.0.as_millis() as u64;
        if ms == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in UNITS {
            // Prometheus prints whole weeks/years only when they divide evenly.
            if (unit == "y" || unit == "w") && !ms.is_multiple_of(size) {
                continue;
            }
            if ms >= size {
                write!(f, "{}{}", ms / size, unit)?;
                ms %= size;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_durations() {
        let cases = [
            ("0", 0),
            ("500ms", 500),
            ("30s", 30_000),
            ("5m", 300_000),
            ("1h30m", 5_400_000),
            ("1h30m15s250ms", 5_415_250),
            ("2d", 172_800_000),
            ("1w", 604_800_000),
            ("1y", 31_536_000_000),
        ];
        for (text, ms) in cases {
            assert_eq!(
                text.parse::<Duration>().unwrap(),
                Duration::from_millis(ms),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_malformed_durations() {
        for text in [
            "",
            "5",
            "s",
            "5x",
            "1m1h",
            "1s1s",
            "-5s",
            "1.5s",
            " 5s",
            "5s ",
            "99999999999999999999s",
        ] {
            assert!(
                text.parse::<Duration>().is_err(),
                "{text:?} should be rejected"
            );
        }
    }

    #[test]
    fn prints_back_the_way_it_was_written() {
        for text in ["500ms", "30s", "5m", "1h30m", "2d", "1w", "1h0m1s"] {
            let d: Duration = text.parse().unwrap();
            let printed = d.to_string();
            assert_eq!(
                printed.parse::<Duration>().unwrap(),
                d,
                "{text} -> {printed}"
            );
        }
        assert_eq!("1h30m".parse::<Duration>().unwrap().to_string(), "1h30m");
        assert_eq!("90s".parse::<Duration>().unwrap().to_string(), "1m30s");
        assert_eq!("0".parse::<Duration>().unwrap().to_string(), "0s");
    }
}
