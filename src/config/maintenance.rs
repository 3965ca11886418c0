//! `maintenance:` — planned work during which nothing it matches is healed: windows that recur
//! on weekdays at a wall-clock time in a time zone, or lie between two instants.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::duration::Duration;
use super::path::YamlPath;
use super::validate::Context;
use crate::alertmanager::Matcher;
use crate::maintenance::{self, When, Window};

const ALL_DAYS: [jiff::civil::Weekday; 7] = [
    jiff::civil::Weekday::Monday,
    jiff::civil::Weekday::Tuesday,
    jiff::civil::Weekday::Wednesday,
    jiff::civil::Weekday::Thursday,
    jiff::civil::Weekday::Friday,
    jiff::civil::Weekday::Saturday,
    jiff::civil::Weekday::Sunday,
];

/// One maintenance window as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MaintenanceFile {
    name: String,
    #[serde(default)]
    matchers: Vec<String>,
    schedule: Option<ScheduleFile>,
    between: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleFile {
    /// None: every day.
    days: Option<Vec<String>>,
    start: String,
    duration: Duration,
    time_zone: Option<String>,
}

pub(super) fn section(cx: &mut Context, value: Option<Value>) -> Vec<Window> {
    let mut names = BTreeSet::new();
    let mut out = Vec::new();
    for (path, item) in cx.items(value, &YamlPath::top("maintenance")) {
        let Some(file) = cx.parse::<MaintenanceFile>(item, &path) else {
            continue;
        };
        let mut ok = cx.name(&path, &file.name);
        if ok && !names.insert(file.name.clone()) {
            cx.error(&path, format!("duplicate window name {:?}", file.name));
            ok = false;
        }
        let mut matchers = Vec::new();
        for (j, text) in file.matchers.iter().enumerate() {
            match Matcher::parse(text) {
                Ok(m) => matchers.push(m),
                Err(e) => {
                    cx.error(path.key("matchers").index(j), e.to_string());
                    ok = false;
                }
            }
        }
        let when = match (&file.schedule, &file.between) {
            (Some(_), Some(_)) => {
                cx.error(&path, "has both schedule and between; give one");
                None
            }
            (None, None) => {
                cx.error(&path, "needs a schedule or between");
                None
            }
            (Some(schedule), None) => self::schedule(cx, &path.key("schedule"), schedule),
            (None, Some(between)) => self::between(cx, &path.key("between"), between),
        };
        if let (true, Some(when)) = (ok, when) {
            out.push(Window {
                name: file.name,
                matchers,
                when,
            });
        }
    }
    out
}

fn schedule(cx: &mut Context, path: &YamlPath, file: &ScheduleFile) -> Option<When> {
    let days = days(cx, path, file.days.as_deref());
    let start = maintenance::parse_clock(&file.start)
        .map_err(|why| cx.error(path.key("start"), why))
        .ok();
    let mut ok = days.is_some();
    if file.duration.is_zero() {
        cx.error(path.key("duration"), "must be greater than 0s");
        ok = false;
    } else if file.duration.std() > maintenance::MAX_DURATION {
        cx.error(
            path.key("duration"),
            format!("{} is longer than a week", file.duration),
        );
        ok = false;
    }
    let zone_name = file.time_zone.as_deref().unwrap_or("UTC");
    let time_zone = maintenance::parse_time_zone(zone_name)
        .map_err(|why| cx.error(path.key("time_zone"), why))
        .ok();
    match (ok, days, start, time_zone) {
        (true, Some(days), Some(start), Some(time_zone)) => Some(When::Weekly {
            days,
            start,
            duration: file.duration.std(),
            time_zone,
        }),
        _ => None,
    }
}

/// The weekdays of a schedule: every day when left out; `None` when one is not a day.
fn days(
    cx: &mut Context,
    path: &YamlPath,
    days: Option<&[String]>,
) -> Option<Vec<jiff::civil::Weekday>> {
    let Some(days) = days else {
        return Some(ALL_DAYS.to_vec());
    };
    if days.is_empty() {
        cx.error(path, "days is empty: leave it out for every day");
        return None;
    }
    let mut ok = true;
    let mut parsed = Vec::new();
    for (k, day) in days.iter().enumerate() {
        match maintenance::parse_weekday(day) {
            Ok(day) => parsed.push(day),
            Err(why) => {
                cx.error(path.key("days").index(k), why);
                ok = false;
            }
        }
    }
    ok.then_some(parsed)
}

fn between(cx: &mut Context, path: &YamlPath, between: &[String]) -> Option<When> {
    let [start, end] = between else {
        cx.error(path, "needs two instants: [start, end]");
        return None;
    };
    let start_ms = maintenance::parse_instant(start)
        .map_err(|why| cx.error(path.index(0), why))
        .ok();
    let end_ms = maintenance::parse_instant(end)
        .map_err(|why| cx.error(path.index(1), why))
        .ok();
    let (start_ms, end_ms) = (start_ms?, end_ms?);
    if end_ms <= start_ms {
        cx.error(path, "the end must be after the start");
        return None;
    }
    Some(When::Between { start_ms, end_ms })
}
