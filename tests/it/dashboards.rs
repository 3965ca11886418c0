//! Every panel query of every shipped Grafana dashboard runs against a real Prometheus that
//! scrapes a real medic with checks, a recovery that ran, a prediction, a trigger held by a
//! maintenance window and a pause. A query error fails the test; only a few queries may come
//! back empty (nothing exhausted, say), and none of the safe-healing panels may.

use std::path::Path;
use std::time::Duration;

use crate::support::{free_port, wait_for, Daemon, Medic, Target};

/// Every `expr` in a dashboard, with Grafana's variables replaced as Grafana would.
fn queries(dashboard: &serde_json::Value) -> Vec<String> {
    fn walk(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    if k == "expr" {
                        if let Some(e) = v.as_str() {
                            out.push(e.to_string());
                        }
                    } else {
                        walk(v, out);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, out)),
            _ => {}
        }
    }
    let mut panels = Vec::new();
    walk(&dashboard["panels"], &mut panels);
    panels
        .into_iter()
        .map(|e| {
            let mut q = e;
            for (var, value) in [
                ("${__rate_interval}", "1m"),
                ("$__rate_interval", "1m"),
                ("${__range}", "5m"),
                ("$__range", "5m"),
                ("${__interval}", "15s"),
                ("$__interval", "15s"),
            ] {
                q = q.replace(var, value);
            }
            for var in [
                "check",
                "instance",
                "chain",
                "prediction",
                "horizon",
                "step",
                "job",
            ] {
                q = q
                    .replace(&format!("${{{var}}}"), ".*")
                    .replace(&format!("${var}"), ".*");
            }
            q
        })
        .collect()
}

fn query_url(api: &str, q: &str) -> String {
    format!(
        "{api}?query={}",
        percent_encoding::utf8_percent_encode(q, percent_encoding::NON_ALPHANUMERIC)
    )
}

/// The result vector of an instant query, if Prometheus answered one.
async fn instant(client: &reqwest::Client, api: &str, q: &str) -> Option<Vec<serde_json::Value>> {
    let body = client
        .get(query_url(api, q))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"].as_array().cloned()
}

/// The safe-healing metrics: with a held trigger, a pause and a window, their panels show data.
const SAFE_HEALING: [&str; 6] = [
    "medic_check_blocked",
    "medic_recovery_held",
    "medic_recovery_pause",
    "medic_recovery_circuit_open",
    "medic_recovery_runs_active",
    "medic_maintenance_active",
];

#[tokio::test]
async fn every_panel_query_runs_against_real_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    // Healthy until Prometheus scrapes, then down: its run happens while Prometheus watches,
    // as on a live setup (a series born at 1 would be invisible to increase()).
    let target = Target::start().await;
    // Healthy until Prometheus scrapes, then down inside an open maintenance window: its trigger
    // is held while Prometheus watches, so the held counter rises within the query range.
    let db = Target::start().await;
    let medic = Medic::start(&format!(
        r#"checks:
  - name: web
    interval: 300ms
    recovery: fix
    http: {{url: '{health}'}}
  - name: nightly
    interval: 300ms
    heartbeat: {{}}
  - name: db
    interval: 300ms
    recovery: fix
    http: {{url: '{db}'}}
  - name: api
    interval: 300ms
    recovery: fix
    depends_on: [db]
    tcp: {{address: '{db_addr}'}}
  - name: host
    interval: 1s
    system: {{cpu: {{warning: 1.0}}, memory: {{critical: 1.0}}, disk: {{critical: 1.0, mountpoints: [/]}}}}
recovery:
  # Three of four checks fail on purpose here; the circuit must not hold web's run.
  limits: {{max_unhealthy: 100%}}
  chains:
    fix:
      verify_timeout: 2s
      steps:
        - name: nudge
          http: {{url: '{noop}', method: POST}}
        - name: restart
          http: {{url: '{fix}', method: POST}}
maintenance:
  - name: db_migration
    matchers: ['check="db"']
    between: ["2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z"]
predictions:
  - name: web_latency
    check: web
    measurement: duration_seconds
    horizons: [10m]
    breach_above: 5
"#,
        health = target.url("/health"),
        noop = target.url("/noop"),
        fix = target.url("/fix"),
        db = db.url("/health"),
        db_addr = db.addr,
    ))
    .await;
    medic.wait_status("web", "healthy").await;
    // One webhook request, so its families exist.
    medic.post("/api/v1/alerts").await;
    // One heartbeat, so the last-heartbeat series exists (and then goes missing again).
    medic.post("/api/v1/heartbeats/nightly").await;
    // A pause that matches nothing here, so the pause panels have one to show.
    let pause = medic
        .client
        .post(medic.url("/api/v1/pauses"))
        .header("Content-Type", "application/json")
        .body(
            r#"{"matchers": ["check=\"nobody\""], "duration": "1h", "reason": "dashboards test"}"#,
        )
        .send()
        .await
        .expect("pause request");
    assert_eq!(pause.status().as_u16(), 201, "{:?}", pause.text().await);

    let prom_port = free_port();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\nscrape_configs:\n  - job_name: medic\n    static_configs: [{{targets: ['127.0.0.1:{}']}}]\n",
            medic.port
        ),
    )
    .unwrap();
    let d = dir.path().display();
    let _prometheus = Daemon::start(
        "prometheus",
        &[
            format!("--config.file={d}/prometheus.yml"),
            format!("--storage.tsdb.path={d}/data"),
            format!("--web.listen-address=127.0.0.1:{prom_port}"),
        ],
        &dir.path().join("prometheus.log"),
    );
    let client = medic.client.clone();
    let api = format!("http://127.0.0.1:{prom_port}/api/v1/query");
    // Enough scrapes for rate() over a minute to have two points.
    wait_for("five scrapes of medic", Duration::from_secs(60), || async {
        let body = client
            .get(query_url(&api, "count_over_time(up{job=\"medic\"}[1m])"))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let n: f64 = v["data"]["result"][0]["value"][1].as_str()?.parse().ok()?;
        (n >= 5.0).then_some(())
    })
    .await;
    db.set(503, "down", Duration::ZERO);
    target.set(503, "down", Duration::ZERO);
    wait_for(
        "Prometheus to see a run recover",
        Duration::from_secs(60),
        || async {
            let ran = instant(
                &client,
                &api,
                "sum(increase(medic_recovery_runs_total{outcome=\"recovered\"}[1m])) > 0",
            )
            .await?;
            (!ran.is_empty()).then_some(())
        },
    )
    .await;
    wait_for(
        "Prometheus to see the db trigger held",
        Duration::from_secs(60),
        || async {
            let held = instant(
                &client,
                &api,
                "sum(increase(medic_recovery_held_total{reason=\"maintenance\"}[1m])) > 0",
            )
            .await?;
            (!held.is_empty()).then_some(())
        },
    )
    .await;

    let dashboards = Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboards");
    let mut total = 0;
    let mut all = Vec::new();
    let mut empty = Vec::new();
    for entry in std::fs::read_dir(&dashboards).expect("dashboards/") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        let text = dashboard.to_string();
        assert!(
            !text.contains("\"uid\":\"prometheus\"") && text.contains("${datasource}"),
            "{name}: panels must use the datasource variable"
        );
        let qs = queries(&dashboard);
        assert!(!qs.is_empty(), "{name} has no queries");
        all.extend(qs.iter().cloned());
        for q in qs {
            total += 1;
            let r = client.get(query_url(&api, &q)).send().await.unwrap();
            let code = r.status();
            let body = r.text().await.unwrap();
            let v: serde_json::Value =
                serde_json::from_str(&body).unwrap_or_else(|_| panic!("{name}: {q}: {body}"));
            assert!(
                code.is_success() && v["status"] == "success",
                "{name}: query failed: {q}\n{v}"
            );
            if v["data"]["result"].as_array().is_some_and(|a| a.is_empty()) {
                assert!(
                    !SAFE_HEALING.iter().any(|m| q.contains(m)),
                    "{name}: a safe-healing panel shows nothing: {q}"
                );
                empty.push(format!("{name}: {q}"));
            }
        }
    }
    eprintln!(
        "dashboards: {total} queries, {} empty:\n{}",
        empty.len(),
        empty.join("\n")
    );
    assert!(total >= 20, "only {total} panel queries");
    // Safe healing and prediction intervals each have their panels.
    for metric in SAFE_HEALING.iter().chain(&[
        "medic_recovery_held_triggers",
        "medic_recovery_held_oldest_timestamp_seconds",
        "medic_recovery_pause_earliest_end_timestamp_seconds",
        "medic_predicted_interval_lower",
        "medic_predicted_interval_upper",
    ]) {
        assert!(
            all.iter().any(|q| q.contains(metric)),
            "no panel shows {metric}"
        );
    }
    // What may be empty here, and why: nothing was exhausted, no TLS check, no breach is
    // forecast (latency never nears 5 s), and prediction intervals need 20 scored forecasts of
    // a horizon (10 minutes ahead here).
    let allowed = |q: &str| {
        q.contains("outcome=\"exhausted\"")
            || q.contains("medic_tls_certificate_expiry")
            || (q.contains("medic_predicted_breach_seconds") && q.contains("< +Inf"))
            || q.contains("medic_predicted_interval_")
    };
    let unexpected: Vec<&String> = empty.iter().filter(|q| !allowed(q)).collect();
    assert!(
        unexpected.is_empty(),
        "panels empty although their events happened while Prometheus scraped:\n{unexpected:#?}"
    );
}
