//! Database checks against a real PostgreSQL and real SQLite files.

use std::time::Duration;

use crate::pg::PgCluster;
use crate::support::{wait_for, Medic};

// Multi-threaded: pg_ctl blocks the thread it runs on, and the targets must keep answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_checks_healthy_slow_wrong_password_and_outage() {
    let pg = PgCluster::start();
    let config = format!(
        r#"defaults: {{interval: 200ms, timeout: 2s}}
checks:
  - name: db
    database: {{url: '{url}', query: 'SELECT 1'}}
  - name: slow
    interval: 1s
    database: {{url: '{url}', query: 'SELECT pg_sleep(0.3)', warn_after: 100ms}}
  - name: badpw
    database: {{url: '{bad}'}}
"#,
        url = pg.url(),
        bad = pg.url_with_password("wrong-pw-9c3f"),
    );
    let medic = Medic::start(&config).await;
    let v = medic.wait_status("db", "healthy").await;
    assert_eq!(v["metadata"]["rows"], 1, "{v}");
    assert_eq!(v["metadata"]["driver"], "postgres");
    wait_for(
        "server_version in metadata",
        Duration::from_secs(10),
        || async {
            let v = medic.json("/api/v1/checks/db").await;
            v["metadata"]["server_version"].as_str().map(str::to_string)
        },
    )
    .await;
    let v = crate::support::wait_for("slow to be probed", Duration::from_secs(20), || async {
        let v = medic.json("/api/v1/checks/slow").await;
        v["last_run"].is_string().then_some(v)
    })
    .await;
    assert_eq!(v["status"], "warning", "{v}");
    assert!(v["message"].as_str().unwrap().contains("slow"), "{v}");
    let v = medic.wait_status("badpw", "critical").await;
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("password authentication failed"),
        "{v}"
    );

    // Stopped mid-run: critical; back: healthy again, through the same pool.
    pg.stop_server();
    let v = medic.wait_status("db", "critical").await;
    // Refused at once, or (on a loaded machine, while the server shuts down) no answer within
    // the check's 200 ms timeout.
    let message = v["message"].as_str().unwrap();
    assert!(
        message.contains("connect failed") || message.starts_with("timeout"),
        "{v}"
    );
    pg.start_server();
    medic.wait_status("db", "healthy").await;

    let mut outputs = vec![
        medic.metrics().await,
        medic.get("/api/v1/health").await.1,
        medic.get("/").await.1,
    ];
    for check in ["db", "slow", "badpw"] {
        outputs.push(medic.get(&format!("/api/v1/checks/{check}")).await.1);
    }
    outputs.push(medic.logs());
    for out in &outputs {
        assert!(!out.contains(&pg.password), "password leaked: {out}");
        assert!(!out.contains("wrong-pw-9c3f"), "password leaked: {out}");
    }
}

#[tokio::test]
async fn sqlite_checks_read_existing_files_and_never_create_them() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("app.db");
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=rwc", db.display()))
        .await
        .unwrap();
    sqlx::query("CREATE TABLE jobs (id INTEGER)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO jobs VALUES (1), (2), (3)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let missing = dir.path().join("missing.db");
    let medic = Medic::start(&format!(
        "defaults: {{interval: 100ms}}\nchecks:\n  - name: jobs\n    database: {{url: 'sqlite://{}', query: 'SELECT id FROM jobs'}}\n  - name: missing\n    database: {{url: 'sqlite://{}'}}\n  - name: badsql\n    database: {{url: 'sqlite://{}', query: 'SELECT nope FROM missing_table'}}\n",
        db.display(),
        missing.display(),
        db.display()
    ))
    .await;
    let v = medic.wait_status("jobs", "healthy").await;
    assert_eq!(v["metadata"]["rows"], 3);
    let v = medic.wait_status("missing", "critical").await;
    assert!(
        v["message"].as_str().unwrap().starts_with("connect failed"),
        "{v}"
    );
    assert!(!missing.exists(), "a check created the database it checks");
    let v = medic.wait_status("badsql", "critical").await;
    assert!(
        v["message"].as_str().unwrap().contains("no such table"),
        "{v}"
    );
}
