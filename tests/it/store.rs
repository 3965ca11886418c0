//! The state store: history survives `kill -9` on SQLite and PostgreSQL, an outage of the store
//! stops neither checks nor `/metrics`, the backlog is written when it returns, and `/-/ready`
//! waits for it.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::pg::PgCluster;
use crate::support::{wait_for, Medic, Target};

fn web_config(target: &Target) -> String {
    format!(
        // A long history shown, so a slow restart on a loaded machine cannot push the results
        // from before out of the answer.
        "defaults:\n  history_size: 1000\nchecks:\n  - name: web\n    interval: 100ms\n    http: {{url: '{}'}}\n",
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
        (metric0(&medic, WRITTEN).await >= 5.0).then_some(())
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

// Multi-threaded: pg_ctl blocks the thread it runs on, and the target must keep answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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
    let made = all_runs(&medic).await;
    wait_for(
        "the backlog to be written",
        Duration::from_secs(60),
        || async { (metric0(&medic, WRITTEN).await >= made).then_some(()) },
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

// Multi-threaded: pg_ctl blocks the thread it runs on, and the target must keep answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
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

/// A small tmpfs mounted on a fresh directory for the length of a test, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounting needs root, which CI has: when not root the test fails, unless the person
    /// running it opts out with `MEDIC_TEST_SKIP_ROOT_ONLY=1` (then `None`, and a note why).
    fn mount(size: &str) -> Option<Tmpfs> {
        if !crate::support::is_root() {
            if std::env::var("MEDIC_TEST_SKIP_ROOT_ONLY").as_deref() == Ok("1") {
                eprintln!("SKIPPED (MEDIC_TEST_SKIP_ROOT_ONLY=1): mounting a tmpfs needs root");
                return None;
            }
            panic!(
                "mounting a tmpfs needs root: run the tests as root (CI does), or set \
                 MEDIC_TEST_SKIP_ROOT_ONLY=1 to skip this test knowingly"
            );
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(status.success(), "mount tmpfs: {status}");
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Writes `name` until the file system is full (ENOSPC); returns its path.
    fn fill(&self, name: &str) -> std::path::PathBuf {
        use std::io::Write;
        let path = self.path().join(name);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .expect("open filler");
        let chunk = vec![0u8; 4096];
        loop {
            match file.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: medic may still hold files open if the test failed half-way.
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

async fn sqlite_count(path: &std::path::Path, sql: &str) -> Option<i64> {
    let url = format!("sqlite://{}?mode=ro", path.display());
    let pool = sqlx::SqlitePool::connect(&url).await.ok()?;
    let n = sqlx::query_scalar(sql).fetch_one(&pool).await.ok();
    pool.close().await;
    n
}

/// Probes of `web` made so far, whatever their status.
async fn all_runs(medic: &Medic) -> f64 {
    let mut total = 0.0;
    for status in ["healthy", "warning", "critical", "unknown"] {
        total += metric0(
            medic,
            &format!(r#"medic_check_runs_total{{check="web",status="{status}"}}"#),
        )
        .await;
    }
    total
}

async fn metric0(medic: &Medic, series: &str) -> f64 {
    medic.metric(series).await.unwrap_or(0.0)
}

const WRITE_ERRORS: &str = r#"medic_state_store_errors_total{operation="write"}"#;
/// Results committed: waiting on the backlog gauge reading 0 is a race with the next probe.
const WRITTEN: &str = "medic_state_store_written_results_total";
const DROPPED: &str = "medic_state_store_dropped_results_total";
const RECOVERED: &str = "state store writes recovered";

#[tokio::test]
async fn a_full_disk_heals_without_a_restart_and_attempts_and_cooldowns_survive_it() {
    let Some(disk) = Tmpfs::mount("2m") else {
        return;
    };
    let db = disk.path().join("medic.db");
    let target = Target::start().await;
    let pager = Target::start().await;
    let config = format!(
        r#"checks:
  - name: web
    interval: 100ms
    recovery: fix
    http: {{url: '{health}'}}
recovery:
  chains:
    fix:
      verify_timeout: 2s
      steps:
        - name: restart
          http: {{url: '{fix}', method: POST}}
          max_attempts: 5
          cooldown: 1h
        - name: escalate
          notify: {{url: '{page}'}}
          max_attempts: 5
          cooldown: 0s
"#,
        health = target.url("/health"),
        fix = target.url("/fix"),
        page = pager.url("/hook"),
    );
    let mut medic = Medic::spawn_unready(&config, &[], Some(format!("sqlite://{}", db.display())));
    medic.wait_ready().await;
    wait_for("results written", Duration::from_secs(20), || async {
        (metric0(&medic, WRITTEN).await >= 5.0).then_some(())
    })
    .await;

    // The disk fills: writes fail, results wait in the backlog, nothing claims recovery.
    medic.wait_status("web", "healthy").await;
    let mark = medic.logs().len();
    let filler = disk.fill("filler");
    let errors = wait_for("write errors", Duration::from_secs(30), || async {
        let e = medic.metric(WRITE_ERRORS).await?;
        (e >= 1.0).then_some(e)
    })
    .await;
    // Full for a while, as `dd` would keep it: whatever medic freed meanwhile is taken too.
    // The target breaks meanwhile: its step cannot be recorded, so it must not run.
    let full_until = std::time::Instant::now() + Duration::from_secs(15);
    let mut broken = false;
    while std::time::Instant::now() < full_until {
        disk.fill("filler2");
        if !broken && full_until - std::time::Instant::now() < Duration::from_secs(8) {
            target.set(503, "down", Duration::ZERO);
            broken = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(metric0(&medic, WRITE_ERRORS).await >= errors + 3.0);
    if target.hit_count("/fix") == 0 {
        assert_eq!(medic.status("web").await, "critical");
    }
    // SQLite may still commit a small write on a full disk (into pages its WAL file already
    // holds), so a step may run here, but only one whose attempt reached the file: the restart
    // below proves its cooldown. That nothing stays wedged (a connection keeping its write
    // lock after a failed transaction) is proven by every result and the attempt reaching the
    // file once space is back.
    assert!(target.hit_count("/fix") <= 1, "the step ran more than once");

    // Space comes back: the backlog reaches the file without a restart.
    let made_while_full = all_runs(&medic).await;
    std::fs::remove_file(&filler).unwrap();
    std::fs::remove_file(disk.path().join("filler2")).unwrap();
    let freed = std::time::Instant::now();
    wait_for(
        "the backlog to be written",
        Duration::from_secs(60),
        || async {
            let written = metric0(&medic, WRITTEN).await >= made_while_full;
            (written && medic.logs()[mark..].contains(RECOVERED)).then_some(())
        },
    )
    .await;
    eprintln!(
        "backlog written {:?} after space was freed",
        freed.elapsed()
    );
    let dropped = metric0(&medic, DROPPED).await;
    let stored = sqlite_count(
        &db,
        "SELECT COUNT(*) FROM check_results WHERE check_name = 'web'",
    )
    .await
    .expect("count stored results");
    eprintln!("{made_while_full} results made by the time space was freed, {stored} stored, {dropped} dropped");
    assert!(
        stored as f64 + dropped >= made_while_full,
        "results lost uncounted: made {made_while_full}, stored {stored}, dropped {dropped}\n{}",
        &medic.logs()[mark..]
    );
    assert_eq!(dropped, 0.0, "the backlog bound was never reached");
    // And what comes later is written too.
    let later = all_runs(&medic).await + 10.0;
    wait_for(
        "new results to reach the file",
        Duration::from_secs(30),
        || async {
            let n = sqlite_count(
                &db,
                "SELECT COUNT(*) FROM check_results WHERE check_name = 'web'",
            )
            .await?;
            (n as f64 >= later).then_some(())
        },
    )
    .await;

    // Once the disk has room the step runs, and its attempt is recorded...
    wait_for(
        "the attempt to be recorded",
        Duration::from_secs(30),
        || async {
            let n = sqlite_count(
            &db,
            "SELECT COUNT(*) FROM recovery_attempts WHERE step = 'restart' AND result = 'success'",
        )
        .await?;
            (n == 1).then_some(())
        },
    )
    .await;
    assert_eq!(target.hit_count("/fix"), 1);
    medic.wait_status("web", "healthy").await;

    // ...so after a restart its cooldown holds: the humans hear about it instead.
    medic.signal(Signal::SIGTERM);
    assert_eq!(medic.wait_exit(Duration::from_secs(15)).await, Some(0));
    medic.spawn(&[]);
    medic.wait_ready().await;
    target.set(503, "down again", Duration::ZERO);
    wait_for("the escalation", Duration::from_secs(30), || async {
        pager
            .hits()
            .iter()
            .any(|h| h.starts_with("POST /hook"))
            .then_some(())
    })
    .await;
    assert_eq!(
        target.hit_count("/fix"),
        1,
        "the restart step ran inside its cooldown"
    );
    assert!(
        metric0(
            &medic,
            r#"medic_recovery_skipped_total{chain="fix",step="restart",reason="cooldown"}"#
        )
        .await
            >= 1.0
    );
    medic.signal(Signal::SIGTERM);
    assert_eq!(medic.wait_exit(Duration::from_secs(15)).await, Some(0));
}

#[tokio::test]
async fn a_deleted_database_file_is_noticed_recreated_and_written_again() {
    let target = Target::start().await;
    let state = tempfile::tempdir().unwrap();
    let dir = state.path().join("state");
    let db = dir.join("medic.db");
    let mut medic = Medic::spawn_unready(
        &web_config(&target),
        &[],
        Some(format!("sqlite://{}", db.display())),
    );
    medic.wait_ready().await;
    wait_for("results written", Duration::from_secs(20), || async {
        (metric0(&medic, WRITTEN).await >= 5.0).then_some(())
    })
    .await;
    let count = "SELECT COUNT(*) FROM check_results WHERE check_name = 'web'";
    let noticed = r#"medic_state_store_errors_total{operation="replaced"}"#;

    // Deleted: noticed within seconds, logged, counted, recreated, migrated and written again.
    let mark = medic.logs().len();
    let at_first_delete = runs(&medic).await;
    let before_delete = sqlite_count(&db, count).await.unwrap();
    let delete_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    std::fs::remove_file(&db).unwrap();
    let deleted = std::time::Instant::now();
    wait_for(
        "the deletion to be noticed",
        Duration::from_secs(10),
        || async { (metric0(&medic, noticed).await >= 1.0).then_some(()) },
    )
    .await;
    eprintln!("deletion noticed {:?} after it", deleted.elapsed());
    assert!(
        medic.logs()[mark..].contains("state store file was deleted or replaced"),
        "{}",
        &medic.logs()[mark..]
    );
    medic.wait_ready().await;
    eprintln!("ready again {:?} after the deletion", deleted.elapsed());
    wait_for(
        "results in the new file",
        Duration::from_secs(30),
        || async { (sqlite_count(&db, count).await? >= 10).then_some(()) },
    )
    .await;
    let migrations = sqlite_count(&db, "SELECT COUNT(*) FROM medic_schema").await;
    assert!(migrations >= Some(3), "{migrations:?}");
    // Copied back from the deleted file, still open in medic: nothing from before is lost.
    let kept = sqlite_count(
        &db,
        &format!(
            "SELECT COUNT(*) FROM check_results WHERE check_name = 'web' AND at_ms < {delete_ms}"
        ),
    )
    .await;
    assert!(
        kept >= Some(before_delete),
        "{kept:?} of {before_delete} kept"
    );
    let made = all_runs(&medic).await;
    wait_for("the backlog written", Duration::from_secs(10), || async {
        (metric0(&medic, WRITTEN).await >= made).then_some(())
    })
    .await;
    let rows_before_move = sqlite_count(&db, count).await.unwrap();
    let at_move = runs(&medic).await;
    eprintln!(
        "{} results since the deletion were lost",
        (at_move - at_first_delete) - (rows_before_move - before_delete) as f64
    );

    // Gone with its directory, and the path blocked so that it cannot be recreated yet:
    // not ready, with the reason, for as long as it lasts.
    let moved = state.path().join("moved");
    std::fs::rename(&dir, &moved).unwrap();
    std::fs::write(&dir, b"not a directory").unwrap();
    let body = wait_for("ready to turn 503", Duration::from_secs(10), || async {
        let (status, body) = medic.get("/-/ready").await;
        (status == 503).then_some(body)
    })
    .await;
    assert!(body.contains("deleted or replaced"), "{body}");
    wait_for(
        "the reopen to be retried",
        Duration::from_secs(10),
        || async {
            (metric0(
                &medic,
                r#"medic_state_store_errors_total{operation="open"}"#,
            )
            .await
                >= 2.0)
                .then_some(())
        },
    )
    .await;
    assert_eq!(medic.get("/-/ready").await.0, 503);
    assert_eq!(medic.status("web").await, "healthy", "checks keep running");

    // Unblocked: reopened on a fresh file that gets the results, including those of the gap.
    let in_old_file = sqlite_count(&moved.join("medic.db"), count).await.unwrap();
    let before_unblock = runs(&medic).await;
    std::fs::remove_file(&dir).unwrap();
    medic.wait_ready().await;
    // Every result since the move: in the moved file (still open until the move was noticed)
    // or, from the backlog, in the new one.
    let in_moved_since = (in_old_file - rows_before_move) as f64;
    wait_for(
        "the gap's results in the new file",
        Duration::from_secs(30),
        || async {
            let n = sqlite_count(&db, count).await? as f64;
            (n + in_moved_since >= before_unblock - at_move).then_some(())
        },
    )
    .await;
    assert_eq!(metric0(&medic, DROPPED).await, 0.0);
    medic.signal(Signal::SIGTERM);
    assert_eq!(medic.wait_exit(Duration::from_secs(15)).await, Some(0));
}
