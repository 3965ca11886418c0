//! medic's own limits: out of fds or child process slots, a probe is `unknown` (reason
//! `medic`) and heals nothing; idle clients past `--web.max-connections` are shed, not kept;
//! concurrent children never exceed `--process.max-children`; a dribbled webhook body is
//! answered 408 by its total deadline.

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{alert_post, script, wait_for, Medic, Target};

/// Sets medic's soft and hard open-files limit (medic raised its soft limit to the hard one at
/// start; both go down here, as `LimitNOFILE=` or a container's `ulimit` would set them).
fn limit_fds(medic: &Medic, n: u32) {
    let out = Command::new("prlimit")
        .arg(format!("--pid={}", medic.pid()))
        .arg(format!("--nofile={n}:{n}"))
        .output()
        .expect("prlimit (util-linux)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Opens `n` idle connections to medic's port; the kernel completes them whether medic
/// accepts them or not.
fn idle_connections(medic: &Medic, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| TcpStream::connect(("127.0.0.1", medic.port)).expect("connect"))
        .collect()
}

/// Two checks of a healthy target with a recovery chain whose step leaves a marker.
fn healing_config(target: &Target, marker: &Path, dir: &Path) -> String {
    let step = script(dir, "heal", &format!("touch {}", marker.display()));
    format!(
        r#"checks:
  - name: web
    interval: 200ms
    timeout: 200ms
    recovery: fix
    http: {{url: '{url}'}}
  - name: port
    interval: 200ms
    timeout: 200ms
    recovery: fix
    tcp: {{address: '{addr}'}}
recovery:
  chains:
    fix:
      steps:
        - name: heal
          exec: {{program: '{step}'}}
"#,
        url = target.url("/"),
        addr = target.addr,
        step = step.display(),
    )
}

async fn history_statuses(medic: &Medic, check: &str) -> Vec<String> {
    let v = medic.json(&format!("/api/v1/checks/{check}")).await;
    v["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["status"].as_str().unwrap_or("").to_string())
        .collect()
}

async fn no_runs(medic: &Medic) -> serde_json::Value {
    let runs = medic.json("/api/v1/recoveries").await;
    assert!(
        runs["attempts"].as_array().is_none_or(|a| a.is_empty()),
        "a recovery ran: {runs}\n{}",
        medic.logs()
    );
    runs
}

#[tokio::test]
async fn idle_connections_past_the_cap_leave_probes_their_fds() {
    let target = Target::start().await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("healed");
    let mut medic = Medic::start_with(
        &healing_config(&target, &marker, dir.path()),
        &["--web.max-connections", "16"],
    )
    .await;
    medic.wait_status("web", "healthy").await;
    limit_fds(&medic, 128);
    let idle = idle_connections(&medic, 300);
    // Probes go on while 300 clients sit on medic's port.
    let before = target.hit_count("/");
    wait_for("20 more probes", Duration::from_secs(20), || async {
        (target.hit_count("/") >= before + 20).then_some(())
    })
    .await;
    drop(idle);
    medic.wait_up().await;
    for check in ["web", "port"] {
        let history = history_statuses(&medic, check).await;
        assert!(
            history.iter().all(|s| s == "healthy"),
            "{check}: {history:?}\n{}",
            medic.logs()
        );
    }
    assert_eq!(
        medic
            .metric(r#"medic_probe_errors_total{reason="fds"}"#)
            .await,
        Some(0.0)
    );
    no_runs(&medic).await;
    assert!(!marker.exists());
    assert!(
        medic.logs().contains("--web.max-connections reached"),
        "{}",
        medic.logs()
    );
}

#[tokio::test]
async fn out_of_fds_a_probe_is_unknown_for_medic_and_heals_nothing() {
    let target = Target::start().await;
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("healed");
    let mut medic = Medic::start(&healing_config(&target, &marker, dir.path())).await;
    medic.wait_status("web", "healthy").await;
    medic.wait_status("port", "healthy").await;
    limit_fds(&medic, 96);
    // Under the default cap of 512: medic accepts until its fd table is full.
    let idle = idle_connections(&medic, 200);
    wait_for(
        "both checks to report medic out of fds",
        Duration::from_secs(20),
        || async {
            let logs = medic.logs();
            let unknown = |check: &str| {
                logs.lines().any(|l| {
                    l.contains("check status changed")
                        && l.contains(&format!("check={check}"))
                        && l.contains("to=unknown")
                        && l.contains("medic is out of fds")
                })
            };
            (unknown("web") && unknown("port")).then_some(())
        },
    )
    .await;
    // A few more probes while still out of fds.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(idle);
    medic.wait_up().await;
    let errors = medic
        .metric(r#"medic_probe_errors_total{reason="fds"}"#)
        .await
        .unwrap_or(0.0);
    assert!(errors >= 2.0, "{errors}");
    for check in ["web", "port"] {
        let history = history_statuses(&medic, check).await;
        assert!(
            history.iter().any(|s| s == "unknown"),
            "{check}: {history:?}"
        );
        assert!(
            !history.iter().any(|s| s == "critical"),
            "{check}: {history:?}\n{}",
            medic.logs()
        );
    }
    medic.wait_status("web", "healthy").await;
    no_runs(&medic).await;
    assert!(!marker.exists());
}

/// An Alertmanager notification of `n` firing alerts with distinct `instance` labels.
fn notification(n: usize) -> Vec<u8> {
    let alerts: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            serde_json::json!({
                "status": "firing",
                "labels": {"alertname": "Burst", "instance": format!("host-{i}")},
                "startsAt": "2026-01-01T00:00:00Z",
            })
        })
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "version": "4",
        "receiver": "medic",
        "status": "firing",
        "alerts": alerts,
    }))
    .unwrap()
}

/// The most `+` lines not yet matched by a `-` line, in file order.
fn max_concurrent(log: &str) -> usize {
    let (mut now, mut max) = (0usize, 0usize);
    for line in log.lines() {
        if line.starts_with('+') {
            now += 1;
            max = max.max(now);
        } else if line.starts_with('-') {
            now = now.saturating_sub(1);
        }
    }
    max
}

#[tokio::test]
async fn a_webhook_burst_never_runs_more_children_than_the_cap() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("children");
    let step = script(
        dir.path(),
        "step",
        &format!("echo + >> {l}\nsleep 1\necho - >> {l}", l = log.display()),
    );
    let plugin = script(dir.path(), "plugin", "echo OK\nexit 0");
    let medic = Medic::start_with(
        &format!(
            r#"web:
  webhook:
    bearer_token: tok
checks:
  - name: plugin
    interval: 300ms
    timeout: 300ms
    command: {{program: '{plugin}'}}
recovery:
  chains:
    fix:
      steps:
        - name: step
          timeout: 30s
          exec: {{program: '{step}'}}
  routes:
    - matchers: ['alertname="Burst"']
      chain: fix
"#,
            plugin = plugin.display(),
            step = step.display()
        ),
        &["--process.max-children", "2"],
    )
    .await;
    medic.wait_status("plugin", "healthy").await;
    let r = alert_post(&medic, "tok", notification(8))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    // While the steps hold every slot the plugin cannot run: medic's want, not the plugin's.
    let v = wait_for(
        "the plugin check to wait for a slot",
        Duration::from_secs(10),
        || async {
            let v = medic.json("/api/v1/checks/plugin").await;
            (v["status"] == "unknown").then_some(v)
        },
    )
    .await;
    assert_eq!(v["reason"], "medic", "{v}");
    assert_eq!(v["metadata"]["medic_resource"], "processes", "{v}");
    wait_for("all 8 steps to finish", Duration::from_secs(30), || async {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        (text.lines().filter(|l| l.starts_with('-')).count() == 8).then_some(())
    })
    .await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(max_concurrent(&text), 2, "{text}");
    let waits = medic
        .metric("medic_child_process_waits_total")
        .await
        .unwrap_or(0.0);
    assert!(waits >= 6.0, "{waits}");
    let probe_errors = medic
        .metric(r#"medic_probe_errors_total{reason="processes"}"#)
        .await
        .unwrap_or(0.0);
    assert!(probe_errors >= 1.0, "{probe_errors}");
    // Every run's step succeeded: a wait within the step's timeout is no failure. A step's
    // end is recorded just after its program exits: wait for the eighth record.
    let runs = wait_for(
        "all 8 attempts recorded",
        Duration::from_secs(30),
        || async {
            let runs = medic.json("/api/v1/recoveries?chain=fix").await;
            let attempts = runs["attempts"].as_array()?;
            (attempts.len() == 8 && attempts.iter().all(|a| !a["result"].is_null())).then_some(runs)
        },
    )
    .await;
    let attempts = runs["attempts"].as_array().expect("attempts");
    assert!(attempts.iter().all(|a| a["result"] == "success"), "{runs}");
    medic.wait_status("plugin", "healthy").await;
}

#[tokio::test]
async fn a_dribbled_webhook_body_gets_408_within_its_total_deadline() {
    dribble(false).await;
}

#[tokio::test]
async fn a_dribbled_chunked_webhook_body_gets_408_within_its_total_deadline() {
    dribble(true).await;
}

async fn dribble(chunked: bool) {
    let medic = Medic::start("web:\n  webhook:\n    bearer_token: tok\n").await;
    let mut stream = TcpStream::connect(("127.0.0.1", medic.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let started = Instant::now();
    let (framing, first, byte): (&str, &[u8], &[u8]) = if chunked {
        ("Transfer-Encoding: chunked", b"1\r\n{\r\n", b"1\r\n \r\n")
    } else {
        ("Content-Length: 100", b"{", b" ")
    };
    write!(
        stream,
        "POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\nContent-Type: application/json\r\n{framing}\r\n\r\n"
    )
    .unwrap();
    stream.write_all(first).unwrap();
    // One byte every 5 s (as the fault run did): each arrives well inside any per-chunk deadline.
    let mut answer = Vec::new();
    let mut next_byte = started + Duration::from_secs(5);
    while started.elapsed() < Duration::from_secs(25) {
        let mut buf = [0u8; 1024];
        match std::io::Read::read(&mut stream, &mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                break;
            }
            Err(_) => {}
        }
        if Instant::now() >= next_byte {
            let _ = stream.write_all(byte);
            next_byte += Duration::from_secs(5);
        }
    }
    let elapsed = started.elapsed();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{elapsed:?}: {answer}");
    assert!(
        elapsed >= Duration::from_secs(9) && elapsed < Duration::from_secs(12),
        "408 after {elapsed:?}"
    );
}
