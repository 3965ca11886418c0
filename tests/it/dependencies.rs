//! Dependencies with the real binary, a real PostgreSQL stopped and started, and a real
//! Prometheus with the bundled rules: one root cause, one run, one page. Twenty checks depend
//! on the database; while it is down they are blocked (probed, exported, never healed), the
//! database's own chain runs, and MedicCheckCritical fires for the database alone. When it is
//! back, the dependents recover without a run, and one that stays broken gets its run.

use std::path::Path;
use std::time::Duration;

use crate::pg::PgCluster;
use crate::support::{script, wait_for, Medic, Prometheus, Target};

const APPS: usize = 20;
const SLOW: Duration = Duration::from_secs(60);

/// The bundled rules with `for:` shortened to 5 s: long enough that a dependent seen failing
/// a moment before its root is not paged, as `for: 1m` ensures in production.
fn rules(dir: &Path) -> std::path::PathBuf {
    let bundled = Path::new(env!("CARGO_MANIFEST_DIR")).join("alerting-rules/medic.rules.yml");
    let text = std::fs::read_to_string(bundled).unwrap();
    let text: Vec<String> = text
        .lines()
        .map(|l| match l.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: 5s", &l[..l.len() - l.trim_start().len()]),
            None => l.to_string(),
        })
        .collect();
    let path = dir.join("medic.rules.yml");
    std::fs::write(&path, text.join("\n")).unwrap();
    path
}

fn config(pg: &PgCluster, fix_db: &Path, broken: &Target, hooks: &Target) -> String {
    let mut checks = format!(
        r#"recovery:
  limits: {{max_unhealthy: 50%}}
  chains:
    db:
      verify_timeout: 30s
      steps:
        - name: start
          exec: {{program: '{fix}'}}
          detach: true
          timeout: 2m
    app:
      verify_timeout: 2s
      steps:
        - name: restart
          http: {{url: '{app_fix}', method: POST}}
          cooldown: 1h
checks:
  - name: db
    interval: 300ms
    recovery: db
    database: {{url: '{url}', query: SELECT 1}}
  - name: broken
    interval: 300ms
    recovery: app
    depends_on: [db]
    http: {{url: '{broken}'}}
"#,
        fix = fix_db.display(),
        app_fix = hooks.url("/app-fix"),
        url = pg.url(),
        broken = broken.url("/health"),
    );
    for i in 0..APPS {
        checks.push_str(&format!(
            "  - name: app{i:02}\n    interval: 1s\n    recovery: app\n    depends_on: [db]\n    tcp: {{address: '127.0.0.1:{}'}}\n",
            pg.port
        ));
    }
    checks
}

#[tokio::test]
async fn one_root_one_run_one_page_and_dependents_heal_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let pg = PgCluster::start();
    let (broken, hooks) = (Target::start().await, Target::start().await);
    let go = dir.path().join("go");
    let fix_db = script(
        dir.path(),
        "fix-db",
        &format!(
            "while [ ! -e {go} ]; do sleep 0.1; done\n{}",
            pg.start_command(),
            go = go.display()
        ),
    );
    let medic = Medic::start(&config(&pg, &fix_db, &broken, &hooks)).await;
    medic.wait_status("db", "healthy").await;
    for i in 0..APPS {
        medic.wait_status(&format!("app{i:02}"), "healthy").await;
    }
    let prometheus = Prometheus::start(dir.path(), &[medic.port], &[rules(dir.path())]).await;
    prometheus
        .wait_query(r#"medic_check_blocked{check="app00"} == 0"#, SLOW)
        .await;

    // The database goes down, and with it every app; `broken` breaks on its own too.
    broken.set(503, "down", Duration::ZERO);
    pg.stop_server();
    medic.wait_status("db", "critical").await;
    for i in 0..APPS {
        let v = medic.wait_status(&format!("app{i:02}"), "critical").await;
        assert_eq!(v["blocked_by"], serde_json::json!(["db"]), "{v}");
    }
    let v = medic.json("/api/v1/health").await;
    assert_eq!(
        v["checks"]["broken"]["blocked_by"],
        serde_json::json!(["db"])
    );
    medic
        .wait_metric(r#"medic_check_blocked{check="app19"}"#, 1.0, SLOW)
        .await;
    // The root pages; after five more seconds of the apps critical, none of them does.
    prometheus
        .wait_firing("MedicCheckCritical", r#"check="db""#, SLOW)
        .await;
    let held = r#"medic_recovery_held_total{chain="app",reason="dependency"}"#;
    medic.wait_metric(held, 1.0, SLOW).await;
    let paged = prometheus
        .query(r#"ALERTS{alertname="MedicCheckCritical",check!="db"}"#)
        .await;
    assert!(paged.is_empty(), "blocked checks paged: {paged:?}");
    // The circuit stays closed (21 of 22 critical, but 21 are one failure) and the db's
    // chain is the one run.
    assert_eq!(medic.metric("medic_recovery_circuit_open").await, Some(0.0));
    let runs = medic.json("/api/v1/runs").await;
    let list = runs["runs"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{runs}\n{}", medic.logs());
    assert_eq!(list[0]["chain"], "db");
    assert_eq!(hooks.hit_count("/app-fix"), 0, "a dependent's chain ran");

    // The database's step starts it again: the apps recover with it and start nothing.
    std::fs::write(&go, "").unwrap();
    let deadline = std::time::Instant::now() + SLOW;
    while medic.status("db").await != "healthy" {
        assert!(
            std::time::Instant::now() < deadline,
            "db never healthy again:\n{}",
            medic.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for i in 0..APPS {
        medic.wait_status(&format!("app{i:02}"), "healthy").await;
    }
    // `broken` is still down once its root is back: now it gets its run, which says it
    // waited for db.
    let run = wait_for("broken's run", SLOW, || async {
        let runs = medic.json("/api/v1/runs?chain=app").await;
        runs["runs"].as_array()?.first().cloned()
    })
    .await;
    assert_eq!(run["trigger"]["subject"], "check:broken", "{run}");
    wait_for("broken's step", SLOW, || async {
        (hooks.hit_count("/app-fix") == 1).then_some(())
    })
    .await;
    let detail = medic
        .json(&format!("/api/v1/runs/{}", run["id"].as_str().unwrap()))
        .await;
    let held = &detail["decisions"][0];
    assert_eq!(held["decision"], "held", "{detail}");
    assert_eq!(held["reason"], "dependency", "{detail}");
    assert_eq!(held["detail"], "blocked by db", "{detail}");
    // Only one app run in all: the twenty recovered with their root.
    let runs = medic.json("/api/v1/runs?chain=app").await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1, "{runs}");
    let db_run = medic.json("/api/v1/runs?chain=db").await;
    assert_eq!(db_run["runs"][0]["outcome"], "recovered", "{db_run}");
}
