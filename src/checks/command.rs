//! Command checks in the Nagios plugin convention: exit 0/1/2/3 is healthy/warning/critical/
//! unknown, the first line of output is the message, perfdata after `|` become measurements.
//! The program runs directly (never through a shell) in its own process group, and the whole
//! group is killed when the probe is cancelled or times out.

use std::time::Duration;

use super::{FailureReason, Measure, Measurement, Outcome};
use crate::config::CommandSpec;
use crate::process_group::{self, Job, Keep, RunError};
use crate::resources::Resource;
use crate::status::Status;

/// Output beyond this is not read: a plugin's message is one line.
const MAX_OUTPUT_BYTES: usize = 64 * 1024;

pub async fn probe(spec: &CommandSpec, timeout: Duration) -> Outcome {
    let exited = match process_group::run(Job {
        program: &spec.program,
        args: &spec.args,
        env: &[],
        timeout,
        keep: Keep::Head(MAX_OUTPUT_BYTES),
        on_spawn: None,
        detach: false,
        supervised: false,
    })
    .await
    {
        Ok(e) => e,
        Err(e @ RunError::Timeout(_)) => {
            return Outcome::new(Status::Critical, format!("timeout: {} {e}", spec.program))
                .with_reason(FailureReason::Timeout)
                .with("program", spec.program.clone())
        }
        // No slot under --process.max-children: medic's want, not the plugin's.
        Err(e @ RunError::NoSlot(_)) => {
            return Outcome::medic(Resource::Processes, e.to_string())
                .with("program", spec.program.clone())
        }
        Err(RunError::Spawn { program, source }) => {
            let message = format!("cannot run {program}: {source}");
            return match crate::resources::exhausted(&source, true) {
                Some(resource) => Outcome::medic(resource, message),
                None => Outcome::new(Status::Unknown, message),
            }
            .with("program", spec.program.clone());
        }
        // Nagios: a plugin that cannot run is UNKNOWN.
        Err(e) => {
            return Outcome::new(Status::Unknown, e.to_string())
                .with("program", spec.program.clone())
        }
    };
    let (stdout, stderr, status) = (exited.stdout, exited.stderr, exited.status);
    let parsed = parse_plugin_output(&stdout);
    let (raw, code_text) = match status.code() {
        Some(code) => (
            Status::from_exit_code(code).unwrap_or(Status::Unknown),
            code.to_string(),
        ),
        None => (Status::Unknown, "killed by a signal".to_string()),
    };
    let mut message = parsed.message.clone();
    if message.is_empty() {
        message = stderr.lines().next().unwrap_or("").trim().to_string();
    }
    if message.is_empty() {
        message = format!("{} exited with {code_text}", spec.program);
    }
    let mut outcome = Outcome::new(raw, message)
        .with("program", spec.program.clone())
        .with("exit_code", code_text);
    // Kept only when the status is a failure (the prober drops it otherwise).
    outcome.reason = Some(super::FailureReason::ExitCode);
    if !parsed.perfdata.is_empty() {
        let perf: serde_json::Map<String, serde_json::Value> = parsed
            .perfdata
            .iter()
            .map(|p| (p.label.clone(), serde_json::Value::from(p.value)))
            .collect();
        outcome = outcome.with("perfdata", perf);
    }
    outcome.measurements = parsed
        .perfdata
        .into_iter()
        .map(|p| Measurement::new(Measure::Perfdata(p.label), p.value))
        .collect();
    outcome
}

/// A plugin's output, split into the human part and the numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginOutput {
    pub message: String,
    pub perfdata: Vec<PerfData>,
}

/// One perfdata item, its value converted to base units (seconds, bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct PerfData {
    pub label: String,
    pub value: f64,
    pub unit: String,
    pub warn: Option<String>,
    pub crit: Option<String>,
}

/// Parses Nagios plugin output: `TEXT | perfdata` on the first line, optional long text on the
/// following lines, and more perfdata after a `|` in the long text.
pub fn parse_plugin_output(stdout: &str) -> PluginOutput {
    let mut lines = stdout.lines();
    let first = lines.next().unwrap_or("");
    let (message, first_perf) = match first.split_once('|') {
        Some((text, perf)) => (text.trim(), perf),
        None => (first.trim(), ""),
    };
    let mut perf_text = first_perf.to_string();
    let mut in_long_perf = false;
    for line in lines {
        if in_long_perf {
            perf_text.push(' ');
            perf_text.push_str(line);
        } else if let Some((_, perf)) = line.split_once('|') {
            in_long_perf = true;
            perf_text.push(' ');
            perf_text.push_str(perf);
        }
    }
    PluginOutput {
        message: message.to_string(),
        perfdata: parse_perfdata(&perf_text),
    }
}

/// Parses `'label'=value[UOM];[warn];[crit];[min];[max]` items separated by spaces. Items that
/// do not parse (or whose value is `U`, unknown) are skipped rather than failing the check.
fn parse_perfdata(text: &str) -> Vec<PerfData> {
    let mut items = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        // The label: quoted labels may hold spaces and '' for a literal quote.
        let (label, after_label) = if let Some(quoted) = rest.strip_prefix('\'') {
            let mut label = String::new();
            let mut chars = quoted.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                if c == '\'' {
                    if quoted[i + 1..].starts_with('\'') {
                        label.push('\'');
                        chars.next();
                    } else {
                        end = Some(i + 1);
                        break;
                    }
                } else {
                    label.push(c);
                }
            }
            match end {
                Some(end) => (label, &quoted[end..]),
                None => break,
            }
        } else {
            match rest.find('=') {
                Some(eq) if !rest[..eq].contains(char::is_whitespace) => {
                    (rest[..eq].to_string(), &rest[eq..])
                }
                _ => {
                    // Not an item: skip the word.
                    let skip = rest.find(char::is_whitespace).unwrap_or(rest.len());
                    rest = rest[skip..].trim_start();
                    continue;
                }
            }
        };
        let Some(after_eq) = after_label.strip_prefix('=') else {
            let skip = after_label
                .find(char::is_whitespace)
                .unwrap_or(after_label.len());
            rest = after_label[skip..].trim_start();
            continue;
        };
        let end = after_eq.find(char::is_whitespace).unwrap_or(after_eq.len());
        let item = &after_eq[..end];
        rest = after_eq[end..].trim_start();
        let mut fields = item.split(';');
        let value_field = fields.next().unwrap_or("");
        let number_end = value_field
            .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E')))
            .unwrap_or(value_field.len());
        // An exponent marker only belongs to the number when digits follow it.
        let (mut number, mut unit) = value_field.split_at(number_end);
        if number.ends_with(['e', 'E']) {
            number = &value_field[..number_end - 1];
            unit = &value_field[number_end - 1..];
        }
        let Ok(value) = number.parse::<f64>() else {
            continue;
        };
        if label.is_empty() || !value.is_finite() {
            continue;
        }
        let scale = match unit {
            "ms" => 1e-3,
            "us" => 1e-6,
            "ns" => 1e-9,
            "KB" | "kB" | "KiB" => 1024.0,
            "MB" | "MiB" => 1024.0 * 1024.0,
            "GB" | "GiB" => 1024.0 * 1024.0 * 1024.0,
            "TB" | "TiB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
            _ => 1.0,
        };
        let base_unit = match unit {
            "ms" | "us" | "ns" => "s",
            "KB" | "kB" | "KiB" | "MB" | "MiB" | "GB" | "GiB" | "TB" | "TiB" => "B",
            other => other,
        };
        let non_empty = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
        let warn = non_empty(fields.next());
        let crit = non_empty(fields.next());
        items.push(PerfData {
            label,
            value: value * scale,
            unit: base_unit.to_string(),
            warn,
            crit,
        });
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    type Item = (String, f64, String);

    fn perf(label: &str, value: f64, unit: &str) -> Item {
        (label.to_string(), value, unit.to_string())
    }

    fn parse(text: &str) -> (String, Vec<Item>) {
        let out = parse_plugin_output(text);
        (
            out.message,
            out.perfdata
                .into_iter()
                .map(|p| (p.label, p.value, p.unit))
                .collect(),
        )
    }

    #[test]
    fn plugin_output_table() {
        let cases: Vec<(&str, &str, Vec<Item>)> = vec![
            ("OK", "OK", vec![]),
            ("", "", vec![]),
            (
                "DISK OK - free space: / 3326 MB (56%); | /=2643MB;5948;5958;0;5968",
                "DISK OK - free space: / 3326 MB (56%);",
                vec![perf("/", 2643.0 * 1024.0 * 1024.0, "B")],
            ),
            (
                "PING ok|rta=0.5ms;100;200;0 pl=0%;20;60",
                "PING ok",
                vec![perf("rta", 0.0005, "s"), perf("pl", 0.0, "%")],
            ),
            (
                "Q ok | 'queue depth'=42;100;200 'it''s'=1c",
                "Q ok",
                vec![perf("queue depth", 42.0, ""), perf("it's", 1.0, "c")],
            ),
            ("X | a=U;1;2 b=3 junk c=", "X", vec![perf("b", 3.0, "")]),
            (
                "X | big=1.5e3 neg=-2.5",
                "X",
                vec![perf("big", 1500.0, ""), perf("neg", -2.5, "")],
            ),
            // Long text with perfdata after its own '|', continuing on later lines.
            (
                "TOP | a=1\nline two\nline three | b=2\nc=3s",
                "TOP",
                vec![perf("a", 1.0, ""), perf("b", 2.0, ""), perf("c", 3.0, "s")],
            ),
            (
                "msg with = sign but no pipe",
                "msg with = sign but no pipe",
                vec![],
            ),
            ("unterminated | 'abc=1", "unterminated", vec![]),
        ];
        for (input, message, perfdata) in cases {
            assert_eq!(
                parse(input),
                (message.to_string(), perfdata),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn warn_and_crit_are_kept_as_written() {
        let out = parse_plugin_output("OK | load1=0.5;5:;10:;0;");
        assert_eq!(out.perfdata[0].warn.as_deref(), Some("5:"));
        assert_eq!(out.perfdata[0].crit.as_deref(), Some("10:"));
    }

    #[test]
    fn never_panics_on_odd_input() {
        for input in [
            "|",
            "||||",
            "| =",
            "| '",
            "| ''=1",
            "| a=;;;",
            "| \u{1F600}=1e",
            "\n\n|",
            "| a=1e+",
            "| a=--1",
        ] {
            let _ = parse_plugin_output(input);
        }
    }
}
