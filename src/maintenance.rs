//! Maintenance windows: planned work during which checks keep running and nothing is healed.
//! A window recurs on weekdays at a wall-clock time in a named time zone (daylight saving time
//! handled by the time-zone database, not by hand), or lies between two instants. Pure: `now`
//! is an argument.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::civil::{Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

use crate::alertmanager::Matcher;

/// One configured window.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    pub name: String,
    /// Over a run's labels (`check`, `chain`, and an alert's labels); none matches everything.
    pub matchers: Vec<Matcher>,
    pub when: When,
}

/// When a window is open.
#[derive(Debug, Clone, PartialEq)]
pub enum When {
    /// On each of `days`, from `start` (local wall-clock time in `time_zone`) for `duration`.
    Weekly {
        days: Vec<Weekday>,
        start: Time,
        duration: Duration,
        time_zone: TimeZone,
    },
    /// From `start_ms` (inclusive) to `end_ms` (exclusive), unix milliseconds.
    Between { start_ms: i64, end_ms: i64 },
}

/// The longest recurring window: a week (longer would overlap itself).
pub const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

impl Window {
    /// Whether the window is open at `now_ms`.
    pub fn is_open(&self, now_ms: i64) -> bool {
        match &self.when {
            When::Between { start_ms, end_ms } => *start_ms <= now_ms && now_ms < *end_ms,
            When::Weekly {
                days,
                start,
                duration,
                time_zone,
            } => weekly_open(days, *start, *duration, time_zone, now_ms),
        }
    }

    /// Whether the window covers a run with these labels.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }

    /// Whether it holds a run with these labels now.
    pub fn holds(&self, labels: &BTreeMap<String, String>, now_ms: i64) -> bool {
        self.is_open(now_ms) && self.matches(labels)
    }
}

/// Open when an occurrence that began on one of the last few local dates (as many as the
/// duration can reach back) still runs. The start is resolved in the zone as clocks show it:
/// a start inside a spring-forward gap moves later by the gap, one inside a fall-back fold
/// takes the first of the two; the duration is elapsed time.
fn weekly_open(
    days: &[Weekday],
    start: Time,
    duration: Duration,
    time_zone: &TimeZone,
    now_ms: i64,
) -> bool {
    let Ok(now) = Timestamp::from_millisecond(now_ms) else {
        return false;
    };
    let today = now.to_zoned_datetime(time_zone.clone()).date();
    let reach_back = duration.as_secs().div_ceil(24 * 3600).min(7) as i64;
    (0..=reach_back).any(|back| {
        let Ok(date) = today.checked_sub(back.days()) else {
            return false;
        };
        if !days.contains(&date.weekday()) {
            return false;
        }
        let Ok(begins) = date.to_datetime(start).to_zoned_datetime(time_zone.clone()) else {
            return false;
        };
        let begins_ms = begins.timestamp().as_millisecond();
        let ends_ms =
            begins_ms.saturating_add(i64::try_from(duration.as_millis()).unwrap_or(i64::MAX));
        begins_ms <= now_ms && now_ms < ends_ms
    })
}

/// Parses `mon`…`sun` (or the full English names), case-insensitively.
pub fn parse_weekday(text: &str) -> Result<Weekday, String> {
    let day = match text.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Weekday::Monday,
        "tue" | "tuesday" => Weekday::Tuesday,
        "wed" | "wednesday" => Weekday::Wednesday,
        "thu" | "thursday" => Weekday::Thursday,
        "fri" | "friday" => Weekday::Friday,
        "sat" | "saturday" => Weekday::Saturday,
        "sun" | "sunday" => Weekday::Sunday,
        _ => {
            return Err(format!(
                "invalid day {text:?} (want mon, tue, wed, thu, fri, sat or sun)"
            ))
        }
    };
    Ok(day)
}

/// Parses a wall-clock time `HH:MM` (24 h).
pub fn parse_clock(text: &str) -> Result<Time, String> {
    let bad = || format!("invalid time {text:?} (want HH:MM, 00:00 to 23:59)");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let hour: i8 = h.parse().map_err(|_| bad())?;
    let minute: i8 = m.parse().map_err(|_| bad())?;
    Time::new(hour, minute, 0, 0).map_err(|_| bad())
}

/// Looks a time zone up by its IANA name (`Europe/Berlin`, `UTC`) in the database built into
/// medic, so a container without tzdata behaves as a host with it.
pub fn parse_time_zone(name: &str) -> Result<TimeZone, String> {
    jiff::tz::db().get(name).map_err(|_| {
        format!("unknown time zone {name:?} (want an IANA name such as Europe/Berlin or UTC)")
    })
}

/// Parses an RFC 3339 instant into unix milliseconds.
pub fn parse_instant(text: &str) -> Result<i64, String> {
    text.parse::<Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|_| format!("invalid time {text:?} (want RFC 3339, e.g. 2026-12-05T22:00:00Z)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(rfc3339: &str) -> i64 {
        parse_instant(rfc3339).unwrap()
    }

    fn weekly(days: &[&str], start: &str, minutes: u64, zone: &str) -> Window {
        Window {
            name: "w".into(),
            matchers: vec![],
            when: When::Weekly {
                days: days.iter().map(|d| parse_weekday(d).unwrap()).collect(),
                start: parse_clock(start).unwrap(),
                duration: Duration::from_secs(minutes * 60),
                time_zone: parse_time_zone(zone).unwrap(),
            },
        }
    }

    const ALL: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

    #[test]
    fn weekly_windows_across_daylight_saving_changes() {
        let weekdays = ["mon", "tue", "wed", "thu", "fri"];
        let cases = [
            // Berlin, 02:00 for 1 h on weekdays: CET (+1) before 29 March 2026, CEST (+2) after.
            (
                weekly(&weekdays, "02:00", 60, "Europe/Berlin"),
                "2026-03-23T01:30:00Z",
                true,
            ),
            (
                weekly(&weekdays, "02:00", 60, "Europe/Berlin"),
                "2026-03-23T00:30:00Z",
                false,
            ),
            (
                weekly(&weekdays, "02:00", 60, "Europe/Berlin"),
                "2026-03-30T00:30:00Z",
                true,
            ),
            (
                weekly(&weekdays, "02:00", 60, "Europe/Berlin"),
                "2026-03-30T01:30:00Z",
                false,
            ),
            // Not on a Sunday.
            (
                weekly(&weekdays, "02:00", 60, "Europe/Berlin"),
                "2026-03-29T01:30:00Z",
                false,
            ),
            // Sunday 29 March 2026: 02:00 does not exist in Berlin; the window opens at 03:00
            // CEST (01:00Z) and lasts an hour.
            (
                weekly(&ALL, "02:00", 60, "Europe/Berlin"),
                "2026-03-29T00:30:00Z",
                false,
            ),
            (
                weekly(&ALL, "02:00", 60, "Europe/Berlin"),
                "2026-03-29T01:30:00Z",
                true,
            ),
            (
                weekly(&ALL, "02:00", 60, "Europe/Berlin"),
                "2026-03-29T02:00:00Z",
                false,
            ),
            // Sunday 25 October 2026: 02:00 happens twice; the first (CEST, 00:00Z) counts.
            (
                weekly(&ALL, "02:00", 60, "Europe/Berlin"),
                "2026-10-25T00:30:00Z",
                true,
            ),
            (
                weekly(&ALL, "02:00", 60, "Europe/Berlin"),
                "2026-10-25T01:30:00Z",
                false,
            ),
            // New York, 01:30 for 1 h: on 8 March 2026 clocks jump from 02:00 EST to 03:00 EDT,
            // so the hour of elapsed time ends at 03:30 EDT (07:30Z).
            (
                weekly(&ALL, "01:30", 60, "America/New_York"),
                "2026-03-08T06:45:00Z",
                true,
            ),
            (
                weekly(&ALL, "01:30", 60, "America/New_York"),
                "2026-03-08T07:15:00Z",
                true,
            ),
            (
                weekly(&ALL, "01:30", 60, "America/New_York"),
                "2026-03-08T07:31:00Z",
                false,
            ),
            // 1 November 2026: 01:30 happens twice (EDT 05:30Z, then EST 06:30Z); the first counts.
            (
                weekly(&ALL, "01:30", 60, "America/New_York"),
                "2026-11-01T05:45:00Z",
                true,
            ),
            (
                weekly(&ALL, "01:30", 60, "America/New_York"),
                "2026-11-01T06:45:00Z",
                false,
            ),
            // Summer and winter: the same wall-clock time is a different UTC hour.
            (
                weekly(&ALL, "09:00", 30, "America/New_York"),
                "2026-07-01T13:10:00Z",
                true,
            ),
            (
                weekly(&ALL, "09:00", 30, "America/New_York"),
                "2026-12-01T14:10:00Z",
                true,
            ),
            (
                weekly(&ALL, "09:00", 30, "America/New_York"),
                "2026-12-01T13:10:00Z",
                false,
            ),
        ];
        for (window, at, want) in cases {
            assert_eq!(window.is_open(ms(at)), want, "{:?} at {at}", window.when);
        }
    }

    #[test]
    fn a_window_can_run_past_midnight_into_the_next_day() {
        // Friday 23:00 UTC for 3 h: open early on Saturday, which is not one of its days.
        let w = weekly(&["fri"], "23:00", 180, "UTC");
        assert!(w.is_open(ms("2026-12-05T01:30:00Z")), "Saturday 01:30");
        assert!(!w.is_open(ms("2026-12-05T02:00:00Z")), "ends at 02:00");
        assert!(
            w.is_open(ms("2026-12-04T23:00:00Z")),
            "starts on the minute"
        );
        assert!(!w.is_open(ms("2026-12-04T22:59:59Z")));
    }

    #[test]
    fn between_is_half_open() {
        let w = Window {
            name: "db".into(),
            matchers: vec![],
            when: When::Between {
                start_ms: ms("2026-12-05T22:00:00Z"),
                end_ms: ms("2026-12-06T01:00:00Z"),
            },
        };
        assert!(!w.is_open(ms("2026-12-05T21:59:59Z")));
        assert!(w.is_open(ms("2026-12-05T22:00:00Z")));
        assert!(w.is_open(ms("2026-12-06T00:59:59Z")));
        assert!(!w.is_open(ms("2026-12-06T01:00:00Z")));
    }

    #[test]
    fn matchers_choose_the_runs_a_window_holds() {
        let mut w = weekly(&ALL, "00:00", 24 * 60, "UTC");
        let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let now = ms("2026-12-01T12:00:00Z");
        assert!(
            w.holds(&labels(&[("check", "anything")]), now),
            "no matchers: everything"
        );
        w.matchers = vec![Matcher::parse(r#"check=~"web-.*""#).unwrap()];
        assert!(w.holds(&labels(&[("check", "web-1"), ("chain", "web")]), now));
        assert!(!w.holds(&labels(&[("check", "db-1")]), now));
        assert!(!w.holds(&labels(&[("chain", "web")]), now));
    }

    #[test]
    fn parsing_errors_say_what_is_wanted() {
        assert!(parse_weekday("Mon").is_ok());
        assert!(parse_weekday("monday").is_ok());
        assert_eq!(
            parse_weekday("mo").unwrap_err(),
            r#"invalid day "mo" (want mon, tue, wed, thu, fri, sat or sun)"#
        );
        assert!(parse_clock("02:00").is_ok());
        assert!(parse_clock("23:59").is_ok());
        for bad in ["24:00", "2:00", "02:60", "0200", "02:00:00", ""] {
            assert!(parse_clock(bad).is_err(), "{bad:?}");
        }
        assert!(parse_time_zone("Europe/Berlin").is_ok());
        assert!(parse_time_zone("UTC").is_ok());
        assert_eq!(
            parse_time_zone("Mars/Olympus").unwrap_err(),
            r#"unknown time zone "Mars/Olympus" (want an IANA name such as Europe/Berlin or UTC)"#
        );
        assert!(parse_instant("2026-12-05T22:00:00Z").is_ok());
        assert!(parse_instant("2026-12-05T22:00:00+01:00").is_ok());
        assert!(parse_instant("2026-12-05 22:00").is_err());
    }
}
