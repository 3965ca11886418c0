//! The state store: history survives `kill -9` on SQLite and PostgreSQL, an outage of the store
//! stops neither checks nor `/metrics`, the backlog is written when it returns, and `/-/ready`
//! waits for it.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::pg::PgCluster;
use crate::support::{wait_for, Medic, Target};

fn web_config(target: &Target) -> String {
    format!(
        "checks:\n  - name: web\n    interval: 100ms\n    http: {{url: '{}'}}\n",
        target.url("/")
    )
}

async fn runs(medic: &Medic) -> f64 {
    medic
        .metric(r#"medic_check_runs_total{check="web",status="healthy"}"#)
        .await
        .unwrap_or(0.0)
}

/// Runs a check, kills medic with SIGKILL once results are written, restarts it on the same
/// store and asserts the history from before is back.
async fn history_survives_kill_9(state_url: Option<String>) {
    let target = Target::start().await;
    let mut medic = Medic::spawn_unready(&web_config(&target), &[], state_url);
    medic.wait_ready().await;
    wait_for("5 probes written", Duration::from_secs(20), || async {
        let written = runs(&medic).await >= 5.0
            && medic.metric("medic_state_store_backlog_results").await == Some(0.0);
        written.then_some(())
    })
    .await;
    let before = medic.json("/api/v1/checks/web").await;
    let first_before = before["history"].as_array().unwrap().last().unwrap()["time"].clone();
    medic.signal(Signal::SIGKILL);
    medic.wait_exit(Duration::from_secs(10)).await;

    medic.spawn(&[]);
    medic.wait_ready().await;
    let after = medic.json("/api/v1/checks/web").await;
    let history = after["history"].as_array().unwrap();
    assert!(
        history.iter().any(|h| h["time"] == first_before),
        "history from before the restart is missing: {first_before} not in {history:?}"
    );
    assert!(after["trend"]["runs"].as_u64().unwrap() >= 5, "{after}");
    assert_eq!(after["status"], "healthy");
}

#[tokio::test]
async fn history_survives_kill_9_on_sqlite() {
    history_survives_kill_9(None).await;
}

#[tokio::test]
async fn history_survives_kill_9_on_postgres() {
    let pg = PgCluster::start();
    history_survives_kill_9(Some(pg.url())).await;
}

#[tokio::test]
async fn store_outage_stops_neither_checks_nor_metrics_and_the_backlog_is_written_and_runs_resume()
{
    let pg = PgCluster::start();
    let target = Target::start().await;
    let config = format!(
        "{}    recovery: fix\nrecovery:\n  chains:\n    fix:\n      steps:\n        - name: fix\n          http: {{url: '{}'}}\n",
        web_config(&target),
        target.url("/fix")
    );
    let mut medic = Medic::spawn_unready(&config, &[], Some(pg.url()));
    medic.wait_ready().await;
    wait_for("probes written", Duration::from_secs(20), || async {
        (runs(&medic).await >= 3.0).then_some(())
    })
    .await;

    pg.stop_server();
    let at_stop = runs(&medic).await;
    // Checks keep running and /metrics keeps answering while writes fail.
    wait_for(
        "write errors to be counted",
        Duration::from_secs(30),
        || async {
            let errors = medic
                .metric(r#"medic_state_store_errors_total{operation="write"}"#)
                .await?;
            (errors >= 1.0).then_some(())
        },
    )
    .await;
    wait_for(
        "checks to continue during the outage",
        Duration::from_secs(20),
        || async { (runs(&medic).await >= at_stop + 10.0).then_some(()) },
    )
    .await;
    let backlog = medic
        .metric("medic_state_store_backlog_results")
        .await
        .unwrap();
    assert!(backlog > 0.0, "backlog {backlog}");
    assert_eq!(medic.status("web").await, "healthy");

    // The target breaks during the outage: nothing runs that could not be recorded...
    target.set(503, "down", Duration::ZERO);
    medic.wait_status("web", "critical").await;
    let critical = r#"medic_check_runs_total{check="web",status="critical"}"#;
    medic
        .wait_metric(critical, 5.0, Duration::from_secs(10))
        .await;
    assert!(
        target.hit_count("/fix") == 0,
        "a step ran without a store to record it"
    );

    pg.start_server();
    // ...and once the store is back, the run does, and is recorded.
    medic.wait_status("web", "healthy").await;
    assert_eq!(target.hit_count("/fix"), 1);
    wait_for(
        "the backlog to be written",
        Duration::from_secs(60),
        || async {
            (medic.metric("medic_state_store_backlog_results").await == Some(0.0)).then_some(())
        },
    )
    .await;
    // Every probe made during the outage is in the database.
    let total = runs(&medic).await;
    let pool = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    let stored: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM check_results WHERE check_name = 'web'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        stored as f64 >= at_stop + 10.0,
        "stored {stored}, probes at stop {at_stop}, now {total}"
    );
    assert_eq!(
        medic
            .metric("medic_state_store_dropped_results_total")
            .await,
        Some(0.0)
    );
    // The attempt's end is written after its verification saw the check healthy.
    let attempts: Vec<(String, Option<String>)> = wait_for(
        "the attempt to be recorded",
        Duration::from_secs(10),
        || async {
            let rows: Vec<(String, Option<String>)> =
                sqlx::query_as("SELECT step, result FROM recovery_attempts WHERE chain = 'fix'")
                    .fetch_all(&pool)
                    .await
                    .ok()?;
            rows.iter().all(|r| r.1.is_some()).then_some(rows)
        },
    )
    .await;
    assert_eq!(attempts, [("fix".to_string(), Some("success".to_string()))]);
    medic.signal(Signal::SIGTERM);
    assert_eq!(medic.wait_exit(Duration::from_secs(15)).await, Some(0));
}

#[tokio::test]
async fn ready_waits_for_the_store_while_checks_already_run() {
    let pg = PgCluster::start();
    pg.stop_server();
    let target = Target::start().await;
    let mut medic = Medic::spawn_unready(&web_config(&target), &[], Some(pg.url()));
    medic.wait_up().await;
    assert_eq!(medic.get("/-/ready").await.0, 503);
    medic.wait_status("web", "healthy").await;
    wait_for(
        "open errors to be counted",
        Duration::from_secs(20),
        || async {
            let e = medic
                .metric(r#"medic_state_store_errors_total{operation="open"}"#)
                .await?;
            (e >= 1.0).then_some(())
        },
    )
    .await;
    assert!(
        !medic.logs().contains(&pg.password),
        "the store password leaked into the log"
    );
    pg.start_server();
    medic.wait_ready().await;
}
