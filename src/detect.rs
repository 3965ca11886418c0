//! The `detect` filter: streams a `timestamp,value` CSV into anomaly scores and forecasts, row by row.

use crate::forecast::{AnomalyDetector, Direction, Forecaster};
use crate::predict::breach_seconds;
use std::fmt;
use std::io::{BufRead, Write};

/// Forecast window used by `detect`: long enough to see a daily cycle's slope, short enough to follow it.
const DETECT_WINDOW_SECONDS: f64 = 6.0 * 3600.0;

/// Default `--max-horizon` of `detect`, the same as a prediction's default `max_horizon`.
pub const DETECT_MAX_HORIZON_SECONDS: f64 = 7.0 * 86_400.0;

/// What `run_detect_with` computes besides the anomaly score.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectOptions {
    /// Rows ahead that `forecast` predicts (at least 1).
    pub horizon: usize,
    /// Forecaster window in seconds.
    pub window_seconds: f64,
    /// With a threshold, a `breach_seconds` column (as `medic_predicted_breach_seconds`).
    pub breach: Option<(f64, Direction)>,
    pub max_horizon_seconds: f64,
}

impl DetectOptions {
    pub fn new(horizon: usize) -> Self {
        DetectOptions {
            horizon,
            window_seconds: DETECT_WINDOW_SECONDS,
            breach: None,
            max_horizon_seconds: DETECT_MAX_HORIZON_SECONDS,
        }
    }
}

/// What a finished `run_detect` saw.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectSummary {
    /// Data rows read and written (header excluded).
    pub rows: u64,
    /// Rows whose value was empty, NaN or infinite: echoed, scored 0, not learned from.
    pub ignored_values: u64,
    /// Highest anomaly score and the 1-based input line it was on.
    pub max_score: f64,
    pub max_score_line: Option<u64>,
}

/// Why `run_detect` stopped.
#[derive(Debug)]
pub enum DetectError {
    /// The input had no header line.
    MissingHeader,
    /// A data line without a comma.
    MissingValue {
        line: u64,
    },
    InvalidTimestamp {
        line: u64,
        text: String,
    },
    InvalidValue {
        line: u64,
        text: String,
    },
    /// Reading or writing failed; `line` is the last input line reached.
    Io {
        line: u64,
        source: std::io::Error,
    },
    /// `horizon` must be at least 1.
    InvalidHorizon,
}

impl fmt::Display for DetectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DetectError::MissingHeader => {
                write!(f, "empty input: expected a header line \"timestamp,value\"")
            }
            DetectError::MissingValue { line } => {
                write!(f, "line {line}: expected two columns \"timestamp,value\"")
            }
            DetectError::InvalidTimestamp { line, text } => {
                write!(f, "line {line}: invalid timestamp {text:?}")
            }
            DetectError::InvalidValue { line, text } => {
                write!(f, "line {line}: invalid value {text:?}")
            }
            DetectError::Io { line, source } => write!(f, "line {line}: i/o error: {source}"),
            DetectError::InvalidHorizon => write!(f, "horizon must be at least 1"),
        }
    }
}

impl std::error::Error for DetectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DetectError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Reads `timestamp,value` CSV (with header) and writes `timestamp,value,anomaly_score,forecast`.
///
/// Row i's `forecast` predicts row i+`horizon`, from rows up to i only, at
/// `t_i + horizon * typical_interval`; it is empty until the forecaster has two timestamps.
/// Memory is constant in the number of rows: each row is written before the next is read.
pub fn run_detect<R: BufRead, W: Write>(
    input: R,
    output: W,
    horizon: usize,
) -> Result<DetectSummary, DetectError> {
    run_detect_with(input, output, &DetectOptions::new(horizon))
}

/// `run_detect` with every option: `forecast_lower`/`forecast_upper` are the 80 % interval of
/// `forecast` (empty until enough of its errors were seen), and with `breach` a last column
/// `breach_seconds` computed by the same function as the live gauge.
pub fn run_detect_with<R: BufRead, W: Write>(
    mut input: R,
    mut output: W,
    opts: &DetectOptions,
) -> Result<DetectSummary, DetectError> {
    let horizon = opts.horizon;
    if horizon == 0 {
        return Err(DetectError::InvalidHorizon);
    }
    let mut line_no = skip_to_header(&mut input)?;
    let io = |line: u64| move |source| DetectError::Io { line, source };
    let header: &[u8] = if opts.breach.is_some() {
        b"timestamp,value,anomaly_score,forecast,forecast_lower,forecast_upper,breach_seconds\n"
    } else {
        b"timestamp,value,anomaly_score,forecast,forecast_lower,forecast_upper\n"
    };
    output.write_all(header).map_err(io(line_no))?;

    let mut forecaster = Forecaster::new(opts.window_seconds);
    let mut detector = AnomalyDetector::new();
    let mut summary = DetectSummary {
        rows: 0,
        ignored_values: 0,
        max_score: 0.0,
        max_score_line: None,
    };
    let mut buf = String::new();
    let mut out = String::new();
    loop {
        buf.clear();
        if input.read_line(&mut buf).map_err(io(line_no))? == 0 {
            break;
        }
        line_no += 1;
        let line = trim_eol(&buf);
        if line.trim().is_empty() {
            continue;
        }
        let row = parse_row(line, line_no)?;
        if !row.value.is_finite() {
            summary.ignored_values += 1;
        }
        let score = detector.observe(row.t, row.value);
        forecaster.observe(row.t, row.value);
        summary.rows += 1;
        if score > summary.max_score {
            summary.max_score = score;
            summary.max_score_line = Some(line_no);
        }
        out.clear();
        format_row(&mut out, &row, score, &mut forecaster, opts);
        output.write_all(out.as_bytes()).map_err(io(line_no))?;
    }
    output.flush().map_err(io(line_no))?;
    Ok(summary)
}

/// Reads up to the header (the first line that is not blank) and returns its line number.
fn skip_to_header<R: BufRead>(input: &mut R) -> Result<u64, DetectError> {
    let mut line_no: u64 = 0;
    let mut buf = String::new();
    loop {
        buf.clear();
        let read = input
            .read_line(&mut buf)
            .map_err(|source| DetectError::Io {
                line: line_no,
                source,
            })?;
        if read == 0 {
            return Err(DetectError::MissingHeader);
        }
        line_no += 1;
        if !trim_eol(&buf).trim().is_empty() {
            return Ok(line_no);
        }
    }
}

/// One input row: the timestamp and value as written (echoed back) and as numbers.
struct Row<'a> {
    ts_text: &'a str,
    value_text: &'a str,
    t: f64,
    value: f64,
}

fn parse_row(line: &str, line_no: u64) -> Result<Row<'_>, DetectError> {
    let Some((ts_text, rest)) = line.split_once(',') else {
        return Err(DetectError::MissingValue { line: line_no });
    };
    // Extra columns are dropped: the output schema is fixed.
    let value_text = rest.split(',').next().unwrap_or("");
    let t = parse_timestamp(unquote(ts_text)).ok_or_else(|| DetectError::InvalidTimestamp {
        line: line_no,
        text: ts_text.to_string(),
    })?;
    let value = parse_value(unquote(value_text)).ok_or_else(|| DetectError::InvalidValue {
        line: line_no,
        text: value_text.to_string(),
    })?;
    Ok(Row {
        ts_text,
        value_text,
        t,
        value,
    })
}

/// The output line for a row: its input, the score, the forecast `horizon` typical intervals
/// ahead with its interval, and with `breach` the breach time.
fn format_row(
    out: &mut String,
    row: &Row<'_>,
    score: f64,
    forecaster: &mut Forecaster,
    opts: &DetectOptions,
) {
    let t = row.t;
    let predicted = forecaster
        .typical_interval()
        .and_then(|dt| forecaster.predict(0, t + opts.horizon as f64 * dt));
    out.push_str(row.ts_text);
    out.push(',');
    out.push_str(row.value_text);
    out.push(',');
    out.push_str(&format_number(score));
    out.push(',');
    if let Some(p) = predicted {
        out.push_str(&format_number(p.value));
        out.push(',');
        out.push_str(&p.lower.map(format_number).unwrap_or_default());
        out.push(',');
        out.push_str(&p.upper.map(format_number).unwrap_or_default());
    } else {
        out.push_str(",,");
    }
    if let Some((threshold, direction)) = opts.breach {
        out.push(',');
        let b = breach_seconds(
            forecaster,
            t,
            threshold,
            direction,
            opts.max_horizon_seconds,
        );
        out.push_str(&format_breach(b));
    }
    out.push('\n');
}

/// `+Inf` for "not within max horizon" (Prometheus' spelling), else the number.
fn format_breach(x: f64) -> String {
    if x.is_infinite() && x > 0.0 {
        "+Inf".to_string()
    } else if x == 0.0 {
        "0".to_string()
    } else {
        format_number(x)
    }
}

fn trim_eol(s: &str) -> &str {
    s.trim_end_matches(['\n', '\r'])
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('"')
        .and_then(|x| x.strip_suffix('"'))
        .unwrap_or(s)
        .trim()
}

/// Empty, NaN and infinite values are accepted as "missing"; anything else must be a number.
fn parse_value(s: &str) -> Option<f64> {
    if s.is_empty() {
        return Some(f64::NAN);
    }
    s.parse::<f64>().ok()
}

/// Formats with at most 6 significant digits and no trailing zeros.
pub fn format_number(x: f64) -> String {
    if !x.is_finite() {
        return String::new();
    }
    if x == 0.0 {
        return "0".to_string();
    }
    let sci = format!("{:.5e}", x);
    let exp: i32 = sci
        .split_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0);
    if (-5..15).contains(&exp) {
        let decimals = (5 - exp).max(0) as usize;
        let s = format!("{:.*}", decimals, x);
        let s = if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        };
        // Rounding can leave a digit beyond the sixth before the point (e.g. 1234567 -> "1234567").
        if exp >= 6 {
            let m: f64 = sci
                .split_once('e')
                .and_then(|(m, _)| m.parse().ok())
                .unwrap_or(x);
            return format!("{:.0}", m * 10f64.powi(exp));
        }
        if s == "-0" {
            "0".to_string()
        } else {
            s
        }
    } else {
        let (m, e) = sci.split_once('e').unwrap_or((&sci, "0"));
        let m = if m.contains('.') {
            m.trim_end_matches('0').trim_end_matches('.')
        } else {
            m
        };
        format!("{m}e{e}")
    }
}

/// Parses `YYYY-MM-DD HH:MM:SS`, RFC 3339 (`T` or space, optional fraction, `Z` or `±HH:MM`)
/// or unix seconds (integer or decimal) into unix seconds.
pub fn parse_timestamp(s: &str) -> Option<f64> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let b = s.as_bytes();
    if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' {
        return parse_datetime(b);
    }
    // Unix seconds: digits with an optional sign and decimal part only, so "nan"/"inf" are refused.
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let digits = |x: &str| x.bytes().all(|c| c.is_ascii_digit());
    if int.is_empty() && frac.is_empty() || !digits(int) || !digits(frac) {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn parse_datetime(b: &[u8]) -> Option<f64> {
    let num = |from: usize, len: usize| -> Option<i64> {
        let part = b.get(from..from + len)?;
        part.iter().try_fold(0i64, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + i64::from(c - b'0'))
        })
    };
    let year = num(0, 4)?;
    let month = num(5, 2)?;
    let day = num(8, 2)?;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    let mut secs = days_from_civil(year, month, day) as f64 * 86400.0;
    if b.len() == 10 {
        return Some(secs);
    }
    if !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let hour = num(11, 2)?;
    if b.get(13) != Some(&b':') {
        return None;
    }
    let minute = num(14, 2)?;
    let mut i = 16;
    let mut second = 0;
    if b.get(i) == Some(&b':') {
        second = num(17, 2)?;
        i = 19;
    }
    // 60 admits a leap second; it simply lands on the next minute's first second.
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    secs += (hour * 3600 + minute * 60 + second) as f64;
    if b.get(i) == Some(&b'.') || b.get(i) == Some(&b',') {
        i += 1;
        let start = i;
        let mut frac = 0.0;
        let mut scale = 0.1;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            frac += f64::from(c - b'0') * scale;
            scale *= 0.1;
            i += 1;
        }
        if i == start {
            return None;
        }
        secs += frac;
    }
    match b.get(i) {
        None => Some(secs),
        Some(b'Z' | b'z') if i + 1 == b.len() => Some(secs),
        Some(&sign @ (b'+' | b'-')) => {
            let oh = num(i + 1, 2)?;
            let (om, end) = if b.get(i + 3) == Some(&b':') {
                (num(i + 4, 2)?, i + 6)
            } else if b.len() == i + 3 {
                (0, i + 3)
            } else {
                (num(i + 3, 2)?, i + 5)
            };
            if end != b.len() || oh > 23 || om > 59 {
                return None;
            }
            let offset = (oh * 3600 + om * 60) as f64;
            // Local time minus a positive offset is UTC.
            Some(if sign == b'+' {
                secs - offset
            } else {
                secs + offset
            })
        }
        _ => None,
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (era arithmetic over 400-year cycles).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_formats() {
        let cases: &[(&str, Option<f64>)] = &[
            ("1970-01-01 00:00:00", Some(0.0)),
            ("2014-04-01 00:05:00", Some(1_396_310_700.0)),
            ("2014-04-01T00:05:00Z", Some(1_396_310_700.0)),
            ("2014-04-01T00:05:00z", Some(1_396_310_700.0)),
            ("2014-04-01T02:05:00+02:00", Some(1_396_310_700.0)),
            ("2014-03-31T19:05:00-05:00", Some(1_396_310_700.0)),
            ("2014-04-01T02:05:00+0200", Some(1_396_310_700.0)),
            ("2014-04-01T00:05:00.250Z", Some(1_396_310_700.25)),
            ("2014-04-01 00:05:00.5", Some(1_396_310_700.5)),
            ("2014-04-10 07:15:00.000000", Some(1_397_114_100.0)),
            ("2000-02-29 12:00:00", Some(951_825_600.0)),
            ("1969-12-31 23:59:59", Some(-1.0)),
            ("2014-04-01", Some(1_396_310_400.0)),
            ("2014-04-01T00:05", Some(1_396_310_700.0)),
            ("  2014-04-01 00:05:00 ", Some(1_396_310_700.0)),
            ("1396310700", Some(1_396_310_700.0)),
            ("1396310700.125", Some(1_396_310_700.125)),
            ("-5", Some(-5.0)),
            ("0", Some(0.0)),
            ("abc", None),
            ("", None),
            ("nan", None),
            ("inf", None),
            ("1e9", None),
            (".", None),
            ("2014-13-01 00:00:00", None),
            ("2014-02-29 00:00:00", None),
            ("2014-04-31 00:00:00", None),
            ("2014-04-01 24:00:00", None),
            ("2014-04-01 23:60:00", None),
            ("2014-04-01X00:00:00", None),
            ("2014-04-01T00:05:00Zjunk", None),
            ("2014-04-01T00:05:00+25:00", None),
            ("2014-04-01T00:05:00.", None),
            ("2014-4-01 00:00:00", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_timestamp(text), *want, "{text:?}");
        }
    }

    #[test]
    fn number_formatting() {
        let cases = [
            (0.0, "0"),
            (1.0, "1"),
            (0.5, "0.5"),
            (0.123456789, "0.123457"),
            (0.999_999_9, "1"),
            (123.456789, "123.457"),
            (-2.5, "-2.5"),
            (50_745_578.0, "50745600"),
            (1e-7, "1e-7"),
            (1.5e20, "1.5e20"),
            (0.00012345678, "0.000123457"),
        ];
        for (x, want) in cases {
            assert_eq!(format_number(x), want, "{x}");
        }
        assert_eq!(format_number(f64::NAN), "");
    }

    fn run(input: &str, horizon: usize) -> (String, DetectSummary) {
        let mut out = Vec::new();
        let s = run_detect(input.as_bytes(), &mut out, horizon).unwrap();
        (String::from_utf8(out).unwrap(), s)
    }

    fn fields(out: &str) -> Vec<Vec<String>> {
        out.lines()
            .skip(1)
            .map(|l| l.split(',').map(str::to_string).collect())
            .collect()
    }

    #[test]
    fn round_trip_echoes_timestamps_and_values() {
        let input = "timestamp,value\r\n2014-04-01 00:00:00,1.50\n2014-04-01T00:05:00Z,2\n\n1396311300,2.500\n\"2014-04-01 00:15:00\",nan\n";
        let (out, s) = run(input, 1);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "timestamp,value,anomaly_score,forecast,forecast_lower,forecast_upper"
        );
        let rows = fields(&out);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0][0], "2014-04-01 00:00:00");
        assert_eq!(rows[0][1], "1.50");
        assert_eq!(rows[1][0], "2014-04-01T00:05:00Z");
        assert_eq!(rows[2][0], "1396311300");
        assert_eq!(rows[2][1], "2.500");
        assert_eq!(rows[3][0], "\"2014-04-01 00:15:00\"");
        assert_eq!(rows[3][1], "nan");
        assert_eq!(s.rows, 4);
        assert_eq!(s.ignored_values, 1);
        for r in &rows {
            assert_eq!(r.len(), 6);
            let score: f64 = r[2].parse().unwrap();
            assert!((0.0..=1.0).contains(&score));
        }
        assert_eq!(rows[0][3], "", "one sample has no forecast");
    }

    #[test]
    fn forecast_column_predicts_horizon_rows_ahead() {
        // A straight line sampled every 60 s: row i's forecast must equal row i+N's value.
        let mut input = String::from("timestamp,value\n");
        for i in 0..50 {
            input.push_str(&format!("{},{}\n", 1_600_000_000 + 60 * i, 10 + 3 * i));
        }
        for horizon in [1, 12] {
            let (out, _) = run(&input, horizon);
            let rows = fields(&out);
            assert_eq!(rows[0][3], "");
            for i in 1..rows.len() - horizon {
                let f: f64 = rows[i][3].parse().unwrap();
                let want: f64 = rows[i + horizon][1].parse().unwrap();
                assert!(
                    (f - want).abs() < 1e-9,
                    "h={horizon} row {i}: {f} vs {want}"
                );
            }
        }
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            (
                "timestamp,value\n2014-04-01 00:00:00,1\nabc,2\n",
                "line 3: invalid timestamp \"abc\"",
            ),
            (
                "timestamp,value\n2014-04-01 00:00:00,x1\n",
                "line 2: invalid value \"x1\"",
            ),
            (
                "timestamp,value\n2014-04-01 00:00:00\n",
                "line 2: expected two columns \"timestamp,value\"",
            ),
            (
                "",
                "empty input: expected a header line \"timestamp,value\"",
            ),
        ];
        for (input, want) in cases {
            let err = run_detect(input.as_bytes(), Vec::new(), 1).unwrap_err();
            assert_eq!(err.to_string(), want);
        }
        let err = run_detect("t,v\n".as_bytes(), Vec::new(), 0).unwrap_err();
        assert_eq!(err.to_string(), "horizon must be at least 1");
    }

    #[test]
    fn header_only_gives_header_only() {
        let (out, s) = run("timestamp,value\n", 1);
        assert_eq!(
            out,
            "timestamp,value,anomaly_score,forecast,forecast_lower,forecast_upper\n"
        );
        assert_eq!(s.rows, 0);
    }

    fn run_with(input: &str, opts: &DetectOptions) -> String {
        let mut out = Vec::new();
        run_detect_with(input.as_bytes(), &mut out, opts).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn interval_columns_bracket_the_forecast_and_cover_noise() {
        // Deterministic noise around a constant: about 80 % of next values fall in the band.
        let mut input = String::from("timestamp,value\n");
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut vals = Vec::new();
        for i in 0..3000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = 100.0 + ((x >> 11) as f64 / (1u64 << 53) as f64 - 0.5) * 10.0;
            vals.push(v);
            input.push_str(&format!("{},{v}\n", 1_600_000_000 + 60 * i));
        }
        let rows = fields(&run(&input, 1).0);
        let (mut inside, mut banded) = (0, 0);
        for i in 0..rows.len() - 1 {
            assert_eq!(rows[i].len(), 6);
            if rows[i][4].is_empty() {
                continue;
            }
            let f: f64 = rows[i][3].parse().unwrap();
            let lo: f64 = rows[i][4].parse().unwrap();
            let hi: f64 = rows[i][5].parse().unwrap();
            assert!(lo <= f && f <= hi, "row {i}: {lo} {f} {hi}");
            banded += 1;
            if lo <= vals[i + 1] && vals[i + 1] <= hi {
                inside += 1;
            }
        }
        assert!(banded > 2900, "{banded}");
        let coverage = inside as f64 / banded as f64;
        assert!((0.75..=0.85).contains(&coverage), "{coverage}");
    }

    #[test]
    fn breach_column_points_at_the_daily_peak_that_crosses() {
        // A fill of 2 units a day with a daily swing of 10, sampled every 5 minutes for six
        // days: the first sample past 42 comes near the next daily peak (32 + 10 a quarter
        // into day 6), about 5 hours ahead, while the trend line would take five more days.
        let mut input = String::from("timestamp,value\n");
        let day = 86_400.0;
        for i in 0..(6 * 288) {
            let t = f64::from(i) * 300.0;
            let v = 20.0 + 2.0 * t / day + 10.0 * (t / day * std::f64::consts::TAU).sin();
            input.push_str(&format!("{},{v}\n", 1_600_041_600 + 300 * i));
        }
        let mut opts = DetectOptions::new(1);
        opts.breach = Some((42.0, Direction::Above));
        let rows = fields(&run_with(&input, &opts));
        let last: f64 = rows[rows.len() - 1][6].parse().unwrap();
        assert!((last - 4.9 * 3600.0).abs() < 3600.0, "{last}");
    }

    #[test]
    fn breach_column_counts_down_and_reads_inf_when_out_of_reach() {
        // 1 unit per minute from 0: the forecast made at row i crosses 100 at minute 100.
        let mut input = String::from("timestamp,value\n");
        for i in 0..60 {
            input.push_str(&format!("{},{i}\n", 1_600_000_000 + 60 * i));
        }
        let mut opts = DetectOptions::new(1);
        opts.breach = Some((100.0, Direction::Above));
        let out = run_with(&input, &opts);
        assert!(out.starts_with(
            "timestamp,value,anomaly_score,forecast,forecast_lower,forecast_upper,breach_seconds\n"
        ));
        let rows = fields(&out);
        assert_eq!(rows[0][6], "+Inf", "one sample has no trend");
        for (i, r) in rows.iter().enumerate().skip(2) {
            assert_eq!(r.len(), 7);
            let b: f64 = r[6].parse().unwrap();
            let want = (100.0 - i as f64) * 60.0;
            assert!((b - want).abs() < 1e-3, "row {i}: {b} vs {want}");
        }
        opts.max_horizon_seconds = 600.0;
        let rows = fields(&run_with(&input, &opts));
        assert_eq!(rows[10][6], "+Inf");
        assert_eq!(rows[59][6], "+Inf");
        opts.breach = Some((5.0, Direction::Below));
        let rows = fields(&run_with(&input, &opts));
        assert_eq!(
            rows[10][6], "+Inf",
            "rising away from a floor never breaches"
        );
        assert_eq!(rows[3][6], "0", "already under the floor");
        assert_eq!(rows[30][6], "+Inf");
        opts.breach = Some((5.0, Direction::Above));
        let rows = fields(&run_with(&input, &opts));
        assert_eq!(rows[30][6], "0", "already past the threshold");
    }
}
