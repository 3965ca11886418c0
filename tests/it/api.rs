//! The HTTP surface: health answers, reload (HTTP and SIGHUP), metrics format, shutdown.

use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::{metric_value, wait_for, Medic, Target};

fn two_checks(target: &Target, second: &str) -> String {
    format!(
        "defaults: {{interval: 100ms}}\nchecks:\n  - name: web\n    http: {{url: '{}'}}\n{second}",
        target.url("/")
    )
}

#[tokio::test]
async fn health_is_503_when_critical_and_unknown_checks_are_404() {
    let target = Target::start().await;
    let medic = Medic::start(&two_checks(&target, "")).await;
    medic.wait_status("web", "healthy").await;
    let (code, body) = medic.get("/api/v1/health").await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["summary"]["healthy"], 1);
    assert!(v["checks"]["web"]["last_run"]
        .as_str()
        .unwrap()
        .ends_with('Z'));

    target.set(500, "boom", Duration::ZERO);
    medic.wait_status("web", "critical").await;
    let (code, body) = medic.get("/api/v1/health").await;
    assert_eq!(code, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "critical");
    assert_eq!(v["summary"]["critical"], 1);

    let (code, body) = medic.get("/api/v1/checks/nope").await;
    assert_eq!(code, 404, "{body}");
    let v = medic.json("/api/v1/checks/web").await;
    for key in ["metadata", "trend", "history"] {
        assert!(!v[key].is_null(), "{key} missing: {v}");
    }
    assert!(v["trend"]["runs"].as_u64().unwrap() >= 1);
    assert!(v["trend"]["latency_p99_seconds"].as_f64().is_some());
}

#[tokio::test]
async fn history_shows_history_size_newest_results_and_the_trend_counts_them_all() {
    let target = Target::start().await;
    let medic = Medic::start(&format!(
        "defaults: {{interval: 50ms, history_size: 3}}\nchecks:\n  - name: web\n    http: {{url: '{}'}}\n",
        target.url("/")
    ))
    .await;
    let v = wait_for("six probes", Duration::from_secs(20), || async {
        let v = medic.json("/api/v1/checks/web").await;
        (v["trend"]["runs"].as_u64().unwrap_or(0) >= 6).then_some(v)
    })
    .await;
    let history = v["history"].as_array().unwrap();
    assert_eq!(history.len(), 3, "{v}");
    let times: Vec<&str> = history
        .iter()
        .map(|h| h["time"].as_str().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|w| w[0] > w[1]),
        "newest first: {times:?}"
    );
    // The newest entry is the latest probe, as the summary tells it.
    assert_eq!(history[0]["time"], v["last_run"], "{v}");
    assert_eq!(history[0]["duration_seconds"], v["duration_seconds"], "{v}");
    assert_eq!(history[0]["message"], v["message"], "{v}");
}

#[tokio::test]
async fn health_is_503_while_a_check_has_not_finished_its_first_probe() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = crate::support::script(dir.path(), "slow", "sleep 30");
    let medic = Medic::start(&format!(
        "checks:\n  - name: later\n    interval: 1m\n    timeout: 50s\n    command: {{program: '{}'}}\n",
        plugin.display()
    ))
    .await;
    let (code, body) = medic.get("/api/v1/health").await;
    assert_eq!(code, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "unknown");
    assert_eq!(v["checks"]["later"]["message"], "not run yet");
}

#[tokio::test]
async fn reload_applies_good_configs_and_keeps_the_old_one_on_errors() {
    let target = Target::start().await;
    let mut medic = Medic::start(&two_checks(&target, "")).await;
    medic.wait_status("web", "healthy").await;
    assert_eq!(
        medic.metric("medic_config_last_reload_successful").await,
        Some(1.0)
    );

    // A bad file: 500 with the reason, nothing changes.
    medic.write_config("checks:\n  - name: web\n    tcp: {address: nope}\n");
    let (code, body) = medic.post("/-/reload").await;
    assert_eq!(code, 500, "{body}");
    assert!(
        body.contains(r#"checks[0] "web": tcp.address "nope" is not host:port"#),
        "{body}"
    );
    assert_eq!(
        medic.metric("medic_config_last_reload_successful").await,
        Some(0.0)
    );
    let v = medic.json("/api/v1/checks/web").await;
    assert_eq!(v["kind"], "http");
    let runs_before = medic
        .metric(r#"medic_check_runs_total{check="web",status="healthy"}"#)
        .await
        .unwrap();

    // A good file adds a check; the unchanged one keeps its history and counters.
    medic.write_config(&two_checks(
        &target,
        "  - name: extra\n    http: {url: 'http://127.0.0.1:1/'}\n",
    ));
    let (code, body) = medic.post("/-/reload").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        medic.metric("medic_config_last_reload_successful").await,
        Some(1.0)
    );
    medic.wait_status("extra", "critical").await;
    let runs_after = medic
        .metric(r#"medic_check_runs_total{check="web",status="healthy"}"#)
        .await
        .unwrap();
    assert!(runs_after >= runs_before, "{runs_before} -> {runs_after}");
    let history = medic.json("/api/v1/checks/web").await["trend"]["runs"]
        .as_u64()
        .unwrap();
    assert!(
        history as f64 >= runs_before,
        "trend lost history: {history} < {runs_before}"
    );

    // SIGHUP: a removed check disappears from the API and from /metrics.
    medic.write_config(&two_checks(&target, ""));
    medic.signal(Signal::SIGHUP);
    wait_for("extra to be removed", Duration::from_secs(10), || async {
        let (code, _) = medic.get("/api/v1/checks/extra").await;
        (code == 404).then_some(())
    })
    .await;
    assert!(!medic.metrics().await.contains("check=\"extra\""));

    // SIGHUP with a bad file keeps everything.
    medic.write_config("not: [valid");
    medic.signal(Signal::SIGHUP);
    wait_for(
        "the failed reload to show",
        Duration::from_secs(10),
        || async {
            (medic.metric("medic_config_last_reload_successful").await == Some(0.0)).then_some(())
        },
    )
    .await;
    assert_eq!(medic.status("web").await, "healthy");
    assert!(medic.logs().contains("config reload failed"));

    // And it still shuts down cleanly.
    medic.signal(Signal::SIGTERM);
    assert_eq!(medic.wait_exit(Duration::from_secs(10)).await, Some(0));
}

#[tokio::test]
async fn metrics_pass_promtool_in_both_formats() {
    let target = Target::start().await;
    let medic = Medic::start(&two_checks(
        &target,
        "  - name: host\n    interval: 1s\n    system: {cpu: {warning: 1.0}, memory: {critical: 1.0}, disk: {critical: 1.0}}\n",
    ))
    .await;
    medic.wait_status("web", "healthy").await;
    wait_for("host to run", Duration::from_secs(10), || async {
        medic.metric(r#"medic_check_success{check="host"}"#).await
    })
    .await;
    let text = medic.metrics().await;
    for name in [
        "medic_check_success",
        "medic_check_status",
        "medic_check_duration_seconds_bucket",
        "medic_check_runs_total",
        "medic_check_consecutive_failures",
        "medic_check_last_run_timestamp_seconds",
        "medic_system_cpu_utilization_ratio",
        "medic_system_memory_utilization_ratio",
        "medic_system_disk_utilization_ratio",
        "medic_config_last_reload_successful",
        "medic_config_last_reload_success_timestamp_seconds",
        "medic_build_info",
    ] {
        assert!(
            text.contains(&format!("\n{name}{{")) || text.contains(&format!("\n{name} ")),
            "{name} missing:\n{text}"
        );
    }
    let last_run = metric_value(
        &text,
        r#"medic_check_last_run_timestamp_seconds{check="web"}"#,
    )
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - last_run).abs() < 60.0, "{last_run} vs {now}");

    let promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect(
            "promtool (Debian package prometheus) must be installed: scripts/test.sh installs it",
        );
    let out = {
        use std::io::Write;
        let mut promtool = promtool;
        promtool
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        promtool.wait_with_output().unwrap()
    };
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    let r = medic
        .client
        .get(medic.url("/metrics"))
        .header(
            "Accept",
            "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
        )
        .send()
        .await
        .unwrap();
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert!(r.text().await.unwrap().ends_with("# EOF\n"));
}

#[tokio::test]
async fn endpoints_answer_as_prometheus_does() {
    let target = Target::start().await;
    let medic = Medic::start(&two_checks(&target, "")).await;
    assert_eq!(medic.get("/-/healthy").await.0, 200);
    assert_eq!(medic.get("/-/ready").await.0, 200);
    assert_eq!(medic.get("/nope").await.0, 404);
    let r = medic
        .client
        .delete(medic.url("/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let r = medic
        .client
        .get(medic.url("/-/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    medic.wait_status("web", "healthy").await;
    let (code, page) = medic.get("/").await;
    assert_eq!(code, 200);
    assert!(page.contains("web") && page.contains("healthy"), "{page}");
}

#[tokio::test]
async fn status_page_escapes_what_checks_say() {
    let dir = tempfile::tempdir().unwrap();
    let plugin = crate::support::script(dir.path(), "xss", "echo '<script>alert(1)</script>'");
    let medic = Medic::start(&format!(
        "defaults: {{interval: 100ms}}\nchecks:\n  - name: xss\n    command: {{program: '{}'}}\n",
        plugin.display()
    ))
    .await;
    medic.wait_status("xss", "healthy").await;
    let (_, page) = medic.get("/").await;
    assert!(!page.contains("<script>"), "{page}");
    assert!(
        page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{page}"
    );
}

#[tokio::test]
async fn sigint_shuts_down_gracefully() {
    let target = Target::start().await;
    let mut medic = Medic::start(&two_checks(&target, "")).await;
    medic.signal(Signal::SIGINT);
    assert_eq!(medic.wait_exit(Duration::from_secs(10)).await, Some(0));
    assert!(medic.logs().contains("medic stopped"));
}
