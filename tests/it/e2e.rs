//! The whole loop with the real programs: a target breaks, medic's check turns critical,
//! Prometheus (scraping medic every second) fires an alert, Alertmanager posts it to medic's
//! webhook, medic runs the routed chain, the target is fixed, and the resolved notification
//! comes back. Debian's `prometheus` and `prometheus-alertmanager`, on free loopback ports.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{free_port, wait_for, Daemon, Medic, Target};

/// The token in examples/webhook-token, which the shipped configs use.
const TOKEN: &str = "change-me-demo-token";

/// Copies a shipped config with each replacement applied once; a replacement that no longer
/// applies fails the test, so the shipped files cannot drift from what is tested.
fn write_rewritten(shipped: &str, to: &Path, replacements: &[(&str, String)]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(shipped);
    let mut text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (from, with) in replacements {
        assert!(text.contains(from), "{shipped} no longer contains {from:?}");
        text = text.replacen(from, with, 1);
    }
    std::fs::write(to, text).unwrap();
}

#[tokio::test]
async fn a_broken_target_is_fixed_through_prometheus_and_alertmanager() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::start().await;
    let medic = Medic::start(&format!(
        r#"web:
  webhook:
    bearer_token: {TOKEN}
checks:
  - name: web
    interval: 500ms
    http: {{url: '{health}'}}
recovery:
  chains:
    fix:
      verify_timeout: 10s
      steps:
        - name: restart
          http: {{url: '{fix}', method: POST, body: '{{"check": "{{{{ labels.check }}}}"}}'}}
          max_attempts: 3
          cooldown: 1h
  routes:
    - matchers: ['alertname="MedicCheckCritical"', 'check="web"']
      chain: fix
      verify_check: web
"#,
        health = target.url("/health"),
        fix = target.url("/fix"),
    ))
    .await;
    medic.wait_status("web", "healthy").await;

    let am_port = free_port();
    let prom_port = free_port();
    // The very files docker-compose.yml ships, with addresses and timings made test-sized.
    let medic_addr = format!("127.0.0.1:{}", medic.port);
    let d = dir.path().display().to_string();
    std::fs::write(dir.path().join("webhook-token"), TOKEN).unwrap();
    write_rewritten(
        "examples/alertmanager.yml",
        &dir.path().join("alertmanager.yml"),
        &[
            ("group_wait: 10s", "group_wait: 1s".to_string()),
            ("group_interval: 1m", "group_interval: 1s".to_string()),
            ("medic:7979", medic_addr.clone()),
            (
                "/etc/alertmanager/webhook-token",
                format!("{d}/webhook-token"),
            ),
        ],
    );
    write_rewritten(
        "alerting-rules/medic.rules.yml",
        &dir.path().join("rules.yml"),
        // MedicCheckCritical's `for: 1m` is the first one in the file.
        &[("for: 1m", "for: 0s".to_string())],
    );
    write_rewritten(
        "examples/prometheus.yml",
        &dir.path().join("prometheus.yml"),
        &[
            ("scrape_interval: 15s", "scrape_interval: 1s".to_string()),
            (
                "evaluation_interval: 15s",
                "evaluation_interval: 1s".to_string(),
            ),
            ("alertmanager:9093", format!("127.0.0.1:{am_port}")),
            ("medic:7979", medic_addr.clone()),
            ("rules/medic.rules.yml", format!("{d}/rules.yml")),
        ],
    );
    let _alertmanager = Daemon::start(
        "prometheus-alertmanager",
        &[
            format!("--config.file={d}/alertmanager.yml"),
            format!("--storage.path={d}/am"),
            format!("--web.listen-address=127.0.0.1:{am_port}"),
            "--cluster.listen-address=".into(),
        ],
        &dir.path().join("alertmanager.log"),
    );
    let _prometheus = Daemon::start(
        "prometheus",
        &[
            format!("--config.file={d}/prometheus.yml"),
            format!("--storage.tsdb.path={d}/prom"),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
        ],
        &dir.path().join("prometheus.log"),
    );
    let client = medic.client.clone();
    let up = format!("http://127.0.0.1:{prom_port}/api/v1/query?query=up%7Bjob%3D%22medic%22%7D");
    wait_for(
        "Prometheus to scrape medic",
        Duration::from_secs(60),
        || async {
            let body = client.get(&up).send().await.ok()?.text().await.ok()?;
            body.contains(r#""value":["#)
                .then_some(())
                .filter(|_| body.contains(r#","1"]"#))
        },
    )
    .await;
    let am_ready = format!("http://127.0.0.1:{am_port}/-/ready");
    wait_for(
        "Alertmanager to be ready",
        Duration::from_secs(60),
        || async { (client.get(&am_ready).send().await.ok()?.status() == 200).then_some(()) },
    )
    .await;

    let broken_at = Instant::now();
    target.set(503, "down", Duration::ZERO);
    let fixed_after = wait_for(
        "the routed chain to fix the target",
        Duration::from_secs(90),
        || async {
            target
                .hits()
                .iter()
                .any(|h| h.starts_with("POST /fix"))
                .then(|| broken_at.elapsed())
        },
    )
    .await;
    eprintln!(
        "e2e: failure to fix through Prometheus and Alertmanager took {:.1}s",
        fixed_after.as_secs_f64()
    );
    medic.wait_status("web", "healthy").await;
    medic
        .wait_metric(
            r#"medic_recovery_runs_total{chain="fix",trigger="alert",outcome="recovered"}"#,
            1.0,
            Duration::from_secs(30),
        )
        .await;
    medic
        .wait_metric(
            r#"medic_webhook_alerts_total{status="resolved",routed="true"}"#,
            1.0,
            Duration::from_secs(90),
        )
        .await;
    let fixes: Vec<String> = target
        .hits()
        .into_iter()
        .filter(|h| h.starts_with("POST /fix"))
        .collect();
    assert_eq!(
        fixes,
        vec![r#"POST /fix {"check": "web"}"#.to_string()],
        "exactly one execution"
    );
    assert_eq!(
        medic
            .metric(r#"medic_recovery_runs_total{chain="fix",trigger="alert",outcome="recovered"}"#)
            .await,
        Some(1.0)
    );
    let v = medic.json("/api/v1/recoveries?chain=fix").await;
    assert_eq!(v["attempts"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["attempts"][0]["trigger"], "alert");
    assert_eq!(v["attempts"][0]["result"], "success");
}
