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
        - name: tell
          notify: {{url: '{db_notify}'}}
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
        db_notify = hooks.url("/db-notify"),
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
    // The root's escalation names the checks it blocks.
    let told = wait_for("the db chain's notification", SLOW, || async {
        hooks
            .hits()
            .into_iter()
            .find(|h| h.starts_with("POST /db-notify"))
    })
    .await;
    let body: serde_json::Value =
        serde_json::from_str(told.split_once(' ').unwrap().1.split_once(' ').unwrap().1).unwrap();
    let named = body["blocked_dependents"].as_array().unwrap();
    assert_eq!(named.len(), APPS + 1, "{body}");
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains("Blocked by it: app00"),
        "{body}"
    );

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

/// A root `db` and a check `api` behind it, both down; an alert route for `api` waits for db
/// too. Every path that can start `api`'s chain must wait while db fails.
fn hold_config(db: &Target, api: &Target, hooks: &Target, extra: &str) -> String {
    format!(
        r#"recovery:
  chains:
    app:
      verify_timeout: 1s
      steps:
        - name: restart
          http: {{url: '{fix}', method: POST}}
          cooldown: 0s
          max_attempts: 100
  routes:
    - matchers: ['alertname="ApiErrors"']
      chain: app
      depends_on: [db]
checks:
  - name: db
    interval: 200ms
    http: {{url: '{db}'}}
  - name: api
    interval: 200ms
    recovery: app
    depends_on: [db]
    http: {{url: '{api}'}}
{extra}"#,
        fix = hooks.url("/app-fix"),
        db = db.url("/health"),
        api = api.url("/health"),
    )
}

fn api_errors(fingerprint: &str) -> String {
    serde_json::json!({
        "version": "4", "status": "firing", "receiver": "medic", "groupKey": "{}",
        "truncatedAlerts": 0, "externalURL": "http://am", "groupLabels": {},
        "commonLabels": {}, "commonAnnotations": {},
        "alerts": [{
            "status": "firing", "labels": {"alertname": "ApiErrors", "job": "api"},
            "annotations": {}, "startsAt": "2026-12-01T00:00:00Z",
            "endsAt": "0001-01-01T00:00:00Z", "fingerprint": fingerprint,
        }],
    })
    .to_string()
}

async fn post_alert(medic: &Medic, fingerprint: &str) -> serde_json::Value {
    let r = medic
        .client
        .post(medic.url("/api/v1/alerts"))
        .header("Content-Type", "application/json")
        .body(api_errors(fingerprint))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    serde_json::from_str(&r.text().await.unwrap()).unwrap()
}

const HELD: &str = r#"medic_recovery_held_total{chain="app",reason="dependency"}"#;

#[tokio::test]
async fn checks_alerts_resends_manual_runs_reloads_and_restarts_all_wait_for_the_root() {
    let (db, api, hooks) = (
        Target::start().await,
        Target::start().await,
        Target::start().await,
    );
    db.set(503, "down", Duration::ZERO);
    api.set(503, "down", Duration::ZERO);
    let mut medic = Medic::start(&hold_config(&db, &api, &hooks, "")).await;
    // The check's own trigger.
    let v = medic.wait_status("api", "critical").await;
    assert_eq!(v["blocked_by"], serde_json::json!(["db"]), "{v}");
    let held = medic.wait_metric(HELD, 1.0, SLOW).await;
    // An alert and its resend.
    let answer = post_alert(&medic, "fpa").await;
    assert_eq!(answer["held"].as_array().map(Vec::len), Some(1), "{answer}");
    let answer = post_alert(&medic, "fpa").await;
    assert_eq!(answer["held"].as_array().map(Vec::len), Some(1), "{answer}");
    // A manual run, unless forced.
    let recover = |force: bool| {
        let mut command = tokio::process::Command::new(crate::support::MEDIC);
        command
            .arg("--config.file")
            .arg(&medic.config_path)
            .arg("--state.url")
            .arg(format!("sqlite://{}/manual.db", medic.dir.path().display()))
            .args(["recover", "app", "--verify-check", "api"]);
        if force {
            command.arg("--force");
        }
        command.output()
    };
    let out = recover(false).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("not run: held: blocked by db"), "{stdout}");
    assert_eq!(hooks.hit_count("/app-fix"), 0);
    let out = recover(true).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("held: blocked by db; --force: running anyway"),
        "{stdout}"
    );
    assert_eq!(hooks.hit_count("/app-fix"), 1, "--force runs");
    // A reload that adds a check behind db: held as well.
    let extra = "  - name: api2\n    interval: 200ms\n    recovery: app\n    depends_on: [api]\n    http: {url: 'http://127.0.0.1:9/'}\n";
    medic.write_config(&hold_config(&db, &api, &hooks, extra));
    let (code, body) = medic.post("/-/reload").await;
    assert_eq!(code, 200, "{body}");
    let v = medic.wait_status("api2", "critical").await;
    assert_eq!(
        v["blocked_by"],
        serde_json::json!(["db"]),
        "through api: {v}"
    );
    medic.wait_metric(HELD, held + 1.0, SLOW).await;
    // A restart, even kill -9: still held.
    medic.signal(nix::sys::signal::Signal::SIGKILL);
    medic.wait_exit(Duration::from_secs(10)).await;
    medic.spawn(&[]);
    medic.wait_ready().await;
    medic.wait_metric(HELD, 1.0, SLOW).await;
    let probes = r#"medic_check_runs_total{check="api",status="critical"}"#;
    let now = medic.metric(probes).await.unwrap_or(0.0);
    medic.wait_metric(probes, now + 5.0, SLOW).await;
    assert_eq!(hooks.hit_count("/app-fix"), 1, "a held path ran a step");
    let runs = medic.json("/api/v1/runs?chain=app").await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 0, "{runs}");
    // db back: api, still down, gets its run.
    db.healthy();
    wait_for("api's run once db is back", SLOW, || async {
        (hooks.hit_count("/app-fix") >= 2).then_some(())
    })
    .await;
}

/// Two names that `--cluster.shard 0/2` and `1/2` split between them.
fn names_on_two_shards() -> (String, String) {
    let zero = medic::cluster::Shard { index: 0, count: 2 };
    let mut on_zero = None;
    let mut on_one = None;
    for i in 0..100 {
        let name = format!("c{i}");
        match zero.owns(&name) {
            true if on_zero.is_none() => on_zero = Some(name),
            false if on_one.is_none() => on_one = Some(name),
            _ => {}
        }
    }
    (on_zero.unwrap(), on_one.unwrap())
}

#[tokio::test]
async fn a_replica_holds_a_check_whose_root_another_replica_probes() {
    let pg = PgCluster::start();
    let (root, dependent) = names_on_two_shards();
    let (db, api, hooks) = (
        Target::start().await,
        Target::start().await,
        Target::start().await,
    );
    db.set(503, "down", Duration::ZERO);
    api.set(503, "down", Duration::ZERO);
    let config = format!(
        r#"recovery:
  chains:
    app:
      verify_timeout: 1s
      steps:
        - name: restart
          http: {{url: '{fix}', method: POST}}
checks:
  - name: {root}
    interval: 200ms
    http: {{url: '{db}'}}
  - name: {dependent}
    interval: 200ms
    recovery: app
    depends_on: [{root}]
    http: {{url: '{api}'}}
"#,
        fix = hooks.url("/app-fix"),
        db = db.url("/health"),
        api = api.url("/health"),
    );
    let mut a = Medic::spawn_unready(&config, &["--cluster.shard", "0/2"], Some(pg.url()));
    let mut b = Medic::spawn_unready(&config, &["--cluster.shard", "1/2"], Some(pg.url()));
    a.wait_ready().await;
    b.wait_ready().await;
    // b probes the dependent; the root's status reaches it through the store.
    b.wait_status(&dependent, "critical").await;
    let v = wait_for("the dependent blocked by a remote root", SLOW, || async {
        let v = b.json(&format!("/api/v1/checks/{dependent}")).await;
        (v["blocked_by"] == serde_json::json!([root.clone()])).then_some(v)
    })
    .await;
    b.wait_metric(HELD, 1.0, SLOW).await;
    let probes = format!(r#"medic_check_runs_total{{check="{dependent}",status="critical"}}"#);
    let now = b.metric(&probes).await.unwrap_or(0.0);
    b.wait_metric(&probes, now + 5.0, SLOW).await;
    assert_eq!(hooks.hit_count("/app-fix"), 0, "{v}");
    db.healthy();
    wait_for(
        "the dependent's run once the root is back",
        SLOW,
        || async { (hooks.hit_count("/app-fix") >= 1).then_some(()) },
    )
    .await;
}
