//! The bundled alerting rules, proven against a real Prometheus scraping a real medic, each
//! event happening after Prometheus' first scrapes: a counter born at its first event would be
//! invisible to `increase()`, and a rule built on it would never fire for that event. Rules
//! with `for:` are loaded with it shortened to 1s: the wait is Prometheus' own semantics, the
//! expression over medic's real series is what is proven here.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{free_port, Medic, Prometheus, Target};

/// The bundled rules with every `for:` shortened to 1s, written into `dir`.
fn rules_for_test(dir: &Path) -> PathBuf {
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("alerting-rules/medic.rules.yml");
    let text = std::fs::read_to_string(&bundled).expect("the bundled rules");
    let shortened: Vec<String> = text
        .lines()
        .map(|line| match line.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: 1s", &line[..line.len() - line.trim_start().len()]),
            None => line.to_string(),
        })
        .collect();
    let path = dir.join("medic.rules.yml");
    std::fs::write(&path, shortened.join("\n")).expect("write rules");
    path
}

const SLOW: Duration = Duration::from_secs(60);

#[tokio::test]
async fn each_rule_fires_on_the_first_event_after_prometheus_first_scraped_medic() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::start().await;
    let dead_am = free_port();
    let mut medic = Medic::start(&format!(
        r#"alertmanager:
  url: http://127.0.0.1:{dead_am}
checks:
  - name: web
    interval: 300ms
    recovery: fix
    http: {{url: '{health}'}}
  - name: backup
    interval: 2s
    heartbeat: {{grace: 1s}}
recovery:
  chains:
    fix:
      verify_timeout: 500ms
      steps:
        - name: nudge
          http: {{url: '{noop}', method: POST}}
          cooldown: 1h
        - name: page
          alert: {{labels: {{severity: page}}}}
          cooldown: 1h
"#,
        health = target.url("/health"),
        noop = target.url("/noop"),
    ))
    .await;
    medic.wait_status("web", "healthy").await;
    let prometheus =
        Prometheus::start(dir.path(), &[medic.port], &[rules_for_test(dir.path())]).await;
    // Two scrapes of every counter the events below will move, each still at 0.
    for series in [
        r#"medic_recovery_runs_total{chain="fix",trigger="check",outcome="exhausted"}"#,
        r#"medic_recovery_runs_total{chain="fix",trigger="check",outcome="unavailable"}"#,
        r#"medic_alertmanager_requests_total{operation="post_alert",result="failure"}"#,
        r#"medic_webhook_notifications_total{code="400"}"#,
        r#"medic_state_store_errors_total{operation="replaced"}"#,
    ] {
        prometheus
            .wait_query(
                &format!("count_over_time({series}[1m]) >= 2 and {series} == 0"),
                SLOW,
            )
            .await;
    }

    // A run that tries everything (its escalation fails: Alertmanager is down).
    target.set(503, "down", Duration::ZERO);
    prometheus
        .wait_firing(
            "MedicRecoveryExhausted",
            r#"chain="fix",outcome="exhausted""#,
            SLOW,
        )
        .await;
    prometheus
        .wait_firing(
            "MedicAlertmanagerRequestsFailing",
            r#"operation="post_alert""#,
            SLOW,
        )
        .await;
    prometheus
        .wait_firing("MedicCheckCritical", r#"check="web""#, SLOW)
        .await;
    // A new incident with every step in cooldown: an unavailable run.
    target.healthy();
    medic.wait_status("web", "healthy").await;
    target.set(503, "down", Duration::ZERO);
    prometheus
        .wait_firing(
            "MedicRecoveryExhausted",
            r#"chain="fix",outcome="unavailable""#,
            SLOW,
        )
        .await;
    // A malformed notification.
    let (code, _) = medic.post("/api/v1/alerts").await;
    assert_eq!(code, 415);
    let r = medic
        .client
        .post(medic.url("/api/v1/alerts"))
        .header("Content-Type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    prometheus
        .wait_firing("MedicWebhookRejecting", r#"code="400""#, SLOW)
        .await;
    prometheus
        .wait_firing("MedicWebhookRejecting", r#"code="415""#, SLOW)
        .await;
    // The job behind the heartbeat never reported.
    prometheus
        .wait_firing("MedicHeartbeatMissed", r#"check="backup""#, SLOW)
        .await;
    // A pause that ends within ten minutes.
    let pause = medic
        .client
        .post(medic.url("/api/v1/pauses"))
        .header("Content-Type", "application/json")
        .body(r#"{"matchers": ["check=\"nobody\""], "duration": "5m", "reason": "rules test"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(pause.status(), 201);
    prometheus
        .wait_firing("MedicPauseEndingSoon", "", SLOW)
        .await;
    // The state store's file replaced under medic.
    let db = medic.dir.path().join("medic.db");
    std::fs::remove_file(&db).expect("remove the store's file");
    prometheus
        .wait_firing("MedicStateStoreErrors", r#"operation="replaced""#, SLOW)
        .await;
    // A reload of a broken config.
    medic.write_config("checks: [");
    let (code, _) = medic.post("/-/reload").await;
    assert_eq!(code, 500);
    prometheus
        .wait_firing("MedicConfigReloadFailed", "", SLOW)
        .await;
    // medic itself gone.
    medic.signal(nix::sys::signal::Signal::SIGKILL);
    medic.wait_exit(Duration::from_secs(5)).await;
    prometheus.wait_firing("MedicDown", "", SLOW).await;
}

/// The `{label="value",…}` sample lines of `metric` in a scrape, as written.
fn series<'a>(text: &'a str, metric: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| l.starts_with(&format!("{metric}{{")))
        .collect()
}

fn has_zero(text: &str, metric: &str, labels: &[(&str, &str)]) -> bool {
    series(text, metric).iter().any(|line| {
        labels
            .iter()
            .all(|(k, v)| line.contains(&format!("{k}=\"{v}\"")))
            && line.ends_with(" 0")
    })
}

#[tokio::test]
async fn every_counter_with_known_labels_is_at_zero_in_a_fresh_scrape_and_after_a_reload() {
    let config = |extra_chain: &str| {
        format!(
            r#"alertmanager:
  url: http://127.0.0.1:9
checks:
  - name: web
    interval: 1h
    recovery: fix
    tcp: {{address: '127.0.0.1:9'}}
recovery:
  chains:
    fix:
      steps:
        - name: nudge
          exec: {{program: 'true'}}
        - name: restart
          exec: {{program: 'true'}}
{extra_chain}"#
        )
    };
    let medic = Medic::start(&config("")).await;
    let text = medic.metrics().await;
    let mut missing = Vec::new();
    let mut want = |metric: &str, labels: Vec<(&str, &str)>| {
        if !has_zero(&text, metric, &labels) {
            missing.push(format!("{metric}{labels:?}"));
        }
    };
    for trigger in ["check", "alert", "manual"] {
        for outcome in [
            "recovered",
            "exhausted",
            "cancelled",
            "shadow",
            "unavailable",
        ] {
            want(
                "medic_recovery_runs_total",
                vec![("chain", "fix"), ("trigger", trigger), ("outcome", outcome)],
            );
        }
    }
    for step in ["nudge", "restart"] {
        for result in ["success", "failure", "timeout", "shadow"] {
            want(
                "medic_recovery_attempts_total",
                vec![("chain", "fix"), ("step", step), ("result", result)],
            );
        }
        for reason in ["cooldown", "max_attempts", "in_progress", "dry_run"] {
            want(
                "medic_recovery_skipped_total",
                vec![("chain", "fix"), ("step", step), ("reason", reason)],
            );
        }
        want(
            "medic_recovery_step_duration_seconds_count",
            vec![("chain", "fix"), ("step", step)],
        );
    }
    for reason in [
        "concurrency",
        "rate",
        "circuit_open",
        "maintenance",
        "paused",
        "dependency",
    ] {
        want(
            "medic_recovery_held_total",
            vec![("chain", "fix"), ("reason", reason)],
        );
    }
    for code in [
        "200", "400", "401", "403", "405", "408", "413", "415", "503",
    ] {
        want("medic_webhook_notifications_total", vec![("code", code)]);
    }
    for status in ["firing", "resolved"] {
        for routed in ["true", "false"] {
            want(
                "medic_webhook_alerts_total",
                vec![("status", status), ("routed", routed)],
            );
        }
    }
    for operation in [
        "post_alert",
        "create_silence",
        "expire_silence",
        "query_alerts",
    ] {
        for result in ["success", "failure"] {
            want(
                "medic_alertmanager_requests_total",
                vec![("operation", operation), ("result", result)],
            );
        }
    }
    for reason in ["fds", "processes", "memory"] {
        want("medic_probe_errors_total", vec![("reason", reason)]);
    }
    for operation in ["open", "migrate", "write", "read", "prune", "replaced"] {
        want(
            "medic_state_store_errors_total",
            vec![("operation", operation)],
        );
    }
    assert!(missing.is_empty(), "missing at 0: {missing:#?}");

    // A reload that adds a chain brings its series at 0.
    medic.write_config(&config(
        "    page:\n      steps:\n        - name: call\n          notify: {url: 'http://127.0.0.1:9/'}\n",
    ));
    let (code, body) = medic.post("/-/reload").await;
    assert_eq!(code, 200, "{body}");
    let text = medic.metrics().await;
    for (metric, labels) in [
        (
            "medic_recovery_runs_total",
            vec![
                ("chain", "page"),
                ("trigger", "alert"),
                ("outcome", "exhausted"),
            ],
        ),
        (
            "medic_recovery_attempts_total",
            vec![("chain", "page"), ("step", "call"), ("result", "failure")],
        ),
        (
            "medic_recovery_skipped_total",
            vec![("chain", "page"), ("step", "call"), ("reason", "cooldown")],
        ),
    ] {
        assert!(
            has_zero(&text, metric, &labels),
            "{metric}{labels:?} not at 0 after the reload"
        );
    }
}
