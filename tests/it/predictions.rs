//! Live predictions: a command check whose perfdata grows linearly in time; `/metrics` shows the
//! right forecast and time to breach.

use std::time::Duration;

use crate::support::{metric_value, script, wait_for, Medic};

#[tokio::test]
async fn linear_perfdata_gives_the_right_forecast_and_breach_time() {
    let dir = tempfile::tempdir().unwrap();
    let start_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    // 10 units per second, exactly, whenever the plugin runs.
    let plugin = script(
        dir.path(),
        "grow",
        &format!("now=$(date +%s%3N)\nawk -v n=$now -v s={start_ms} 'BEGIN {{ printf \"OK | used=%.3f\\n\", (n - s) / 100 }}'"),
    );
    let medic = Medic::start(&format!(
        r#"checks:
  - name: grow
    interval: 200ms
    command: {{program: '{}'}}
predictions:
  - name: used_up
    check: grow
    measurement: used
    window: 1h
    horizons: [10m, 1h]
    breach_above: 100000
    max_horizon: 24h
  - name: never_low
    check: grow
    measurement: used
    horizons: [30s]
    breach_below: -5
"#,
        plugin.display()
    ))
    .await;
    let text = wait_for("30 samples", Duration::from_secs(30), || async {
        let m = medic.metrics().await;
        let runs = metric_value(
            &m,
            r#"medic_check_runs_total{check="grow",status="healthy"}"#,
        )?;
        (runs >= 30.0).then_some(m)
    })
    .await;
    let in_10m = metric_value(
        &text,
        r#"medic_predicted_value{prediction="used_up",horizon="10m"}"#,
    )
    .expect(&text);
    let in_1h = metric_value(
        &text,
        r#"medic_predicted_value{prediction="used_up",horizon="1h"}"#,
    )
    .expect(&text);
    // The series rises 10/s: 1h ahead is 50 minutes (30,000) beyond 10 minutes ahead.
    assert!(
        (in_1h - in_10m - 30_000.0).abs() < 300.0,
        "10m {in_10m}, 1h {in_1h}"
    );
    let now_value = in_10m - 6000.0;
    let breach = metric_value(
        &text,
        r#"medic_predicted_breach_seconds{prediction="used_up"}"#,
    )
    .expect(&text);
    let want = (100_000.0 - now_value) / 10.0;
    assert!(
        (breach - want).abs() < want * 0.01,
        "breach in {breach}s, want {want}s"
    );
    // Rising: it never goes below -5 within max_horizon.
    assert!(
        text.contains("medic_predicted_breach_seconds{prediction=\"never_low\"} +Inf"),
        "{text}"
    );
    let score = metric_value(&text, r#"medic_anomaly_score{prediction="used_up"}"#).expect(&text);
    assert!((0.0..=1.0).contains(&score));
    let v = medic.json("/api/v1/predictions").await;
    assert_eq!(v["predictions"][0]["name"], "never_low", "{v}");
    assert!(v["predictions"][0]["breach_seconds"].is_null());
}

/// A prediction resumes from its stored history after a restart: the restarted medic's first
/// few samples (far fewer than the 30 a fresh detector needs) already get an anomaly score, and
/// the forecast is there before any new sample.
#[tokio::test]
async fn restart_resumes_score_and_forecast_from_stored_history() {
    let dir = tempfile::tempdir().unwrap();
    let mode = dir.path().join("mode");
    // Slow, steady growth; after the restart one absurd value.
    let plugin = script(
        dir.path(),
        "grow",
        &format!(
            "if [ -e '{}' ]; then echo 'OK | used=1000000000'; exit 0; fi\nnow=$(date +%s%3N)\necho \"OK | used=$(( (now / 100) % 100000 ))\"",
            mode.display()
        ),
    );
    let config = |interval: &str| {
        format!(
            r#"checks:
  - name: grow
    interval: {interval}
    command: {{program: '{}'}}
predictions:
  - name: used
    check: grow
    measurement: used
    horizons: [10m]
"#,
            plugin.display()
        )
    };
    let mut medic = Medic::spawn_unready(&config("100ms"), &[], None);
    medic.wait_ready().await;
    wait_for("40 samples stored", Duration::from_secs(30), || async {
        let runs = medic
            .metric(r#"medic_check_runs_total{check="grow",status="healthy"}"#)
            .await
            .unwrap_or(0.0);
        // Committed, not just made: the restart must find them in the store.
        let written = medic
            .metric("medic_state_store_written_results_total")
            .await
            .unwrap_or(0.0);
        (runs >= 40.0 && written >= 40.0).then_some(())
    })
    .await;
    medic.signal(nix::sys::signal::Signal::SIGKILL);
    medic.wait_exit(Duration::from_secs(10)).await;

    std::fs::write(&mode, "spike").unwrap();
    medic.write_config(&config("2s"));
    medic.spawn(&[]);
    medic.wait_ready().await;
    let forecast = medic
        .metric(r#"medic_predicted_value{prediction="used",horizon="10m"}"#)
        .await;
    assert!(
        forecast.is_some_and(f64::is_finite),
        "no forecast right after the restart:\n{}",
        medic.metrics().await
    );
    let (score, runs) = wait_for("the spike scored", Duration::from_secs(20), || async {
        let m = medic.metrics().await;
        let score = metric_value(&m, r#"medic_anomaly_score{prediction="used"}"#)?;
        let runs = metric_value(
            &m,
            r#"medic_check_runs_total{check="grow",status="healthy"}"#,
        )
        .unwrap_or(0.0);
        (score >= 0.8).then_some((score, runs))
    })
    .await;
    assert!(
        runs < 10.0,
        "the score {score} came only after {runs} new samples"
    );
}

/// `medic detect --breach-above` on the real binary: interval columns, then `breach_seconds`
/// counting down to the crossing and `+Inf` beyond `--max-horizon`; bad options are refused.
#[test]
fn detect_cli_prints_interval_and_breach_columns() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.csv");
    let mut csv = String::from("timestamp,value\n");
    for i in 0..50 {
        csv.push_str(&format!("{},{}\n", 1_600_000_000 + 60 * i, i));
    }
    std::fs::write(&input, csv).unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(crate::support::MEDIC)
            .arg("detect")
            .arg("--input")
            .arg(&input)
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&[
        "--breach-above",
        "100",
        "--window",
        "1h",
        "--max-horizon",
        "1h",
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(
        rows[0],
        [
            "timestamp",
            "value",
            "anomaly_score",
            "forecast",
            "forecast_lower",
            "forecast_upper",
            "breach_seconds"
        ]
    );
    assert_eq!(rows.len(), 51);
    // Row i (value i-1) crosses 100 after (101 - i) minutes: beyond 1 h until value 40.
    assert_eq!(rows[10][6], "+Inf");
    let b: f64 = rows[50][6].parse().unwrap();
    assert!((b - 51.0 * 60.0).abs() < 1e-3, "{b}");
    let plain = run(&[]);
    let text = String::from_utf8(plain.stdout).unwrap();
    assert!(
        text.starts_with("timestamp,value,anomaly_score,forecast,forecast_lower,forecast_upper\n")
    );
    let bad = run(&["--breach-above", "1", "--breach-below", "0"]);
    assert!(!bad.status.success());
    let bad = run(&["--window", "0s"]);
    assert!(!bad.status.success());
    let bad = run(&["--breach-above", "nan"]);
    assert!(!bad.status.success());
}

/// The live case of issue 26, through the real binary: a series growing 2 units a second,
/// sampled every 250 ms, jumps from about 124 to 5,000 on its 48th sample. The anomaly score
/// on /metrics crosses the bundled MedicAnomaly rule's threshold on that sample (it holds only
/// until the next one, so /metrics is read every 20 ms).
#[tokio::test]
async fn ten_fold_spike_on_a_growing_series_crosses_the_rule_threshold_live() {
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("count");
    let start_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let plugin = script(
        dir.path(),
        "grow",
        &format!(
            "n=$(cat '{c}' 2>/dev/null || echo 0)\necho $((n + 1)) > '{c}'\nif [ \"$n\" -eq 47 ]; then echo 'OK | used=5000'; exit 0; fi\nnow=$(date +%s%3N)\nawk -v n=$now -v s={start_ms} 'BEGIN {{ printf \"OK | used=%.3f\\n\", 100 + 2 * (n - s) / 1000 }}'",
            c = count.display()
        ),
    );
    let medic = Medic::start(&format!(
        r#"checks:
  - name: grow
    interval: 250ms
    command: {{program: '{}'}}
predictions:
  - name: used
    check: grow
    measurement: used
    horizons: [1m]
"#,
        plugin.display()
    ))
    .await;
    // The rule's threshold, as the rules file states it.
    let threshold: f64 = include_str!("../../alerting-rules/medic.rules.yml")
        .split("- alert: MedicAnomaly")
        .nth(1)
        .and_then(|r| r.lines().find(|l| l.contains("expr:")))
        .and_then(|l| l.rsplit(">=").next())
        .and_then(|x| x.trim().parse().ok())
        .expect("MedicAnomaly's threshold");
    let (score, runs) = wait_for("the spike scored", Duration::from_secs(40), || async {
        let m = medic.metrics().await;
        let score = metric_value(&m, r#"medic_anomaly_score{prediction="used"}"#)?;
        let runs = metric_value(
            &m,
            r#"medic_check_runs_total{check="grow",status="healthy"}"#,
        )
        .unwrap_or(0.0);
        tokio::time::sleep(Duration::from_millis(20)).await;
        (score >= threshold).then_some((score, runs))
    })
    .await;
    // Not before the spike (no false alarm on steady growth), and within two samples of it.
    assert!(
        (48.0..=49.0).contains(&runs),
        "score {score} after {runs} samples, the spike was the 48th"
    );
}
