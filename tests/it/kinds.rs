//! The check kinds of issue 19 (tls, dns, grpc, heartbeat) against real servers on loopback,
//! and the failure `reason` every failing probe carries.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{free_port, script, wait_for, Medic, Target};

/// `promtool check metrics` on medic's exposition.
fn promtool_check(text: &str) {
    use std::io::Write;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) must be installed");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = promtool.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The check's status and reason once its status is `want`.
async fn wait_reason(medic: &Medic, check: &str, want: &str) -> String {
    let v = medic.wait_status(check, want).await;
    v["reason"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn every_failing_kind_carries_its_reason() {
    let target = Target::start().await;
    target.set(503, "down", Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let failing = script(dir.path(), "failing.sh", "echo 'CRITICAL - broken'; exit 2");
    let slow = script(dir.path(), "slow.sh", "sleep 5");
    let closed = free_port();
    let medic = Medic::start(&format!(
        "checks:
  - name: web
    interval: 100ms
    http: {{url: '{}'}}
  - name: refused
    interval: 100ms
    tcp: {{address: '127.0.0.1:{closed}'}}
  - name: refused_http
    interval: 100ms
    http: {{url: 'http://127.0.0.1:{closed}/'}}
  - name: plugin
    interval: 100ms
    command: {{program: '{}'}}
  - name: slow
    interval: 300ms
    timeout: 200ms
    command: {{program: '{}'}}
  - name: nowhere
    interval: 200ms
    http: {{url: 'http://no-such-host.invalid/'}}
",
        target.url("/health"),
        failing.display(),
        slow.display(),
    ))
    .await;
    for (check, reason) in [
        ("web", "status"),
        ("refused", "connection_refused"),
        ("refused_http", "connection_refused"),
        ("plugin", "exit_code"),
        ("slow", "timeout"),
        ("nowhere", "dns"),
    ] {
        assert_eq!(
            wait_reason(&medic, check, "critical").await,
            reason,
            "{check}"
        );
        let info = format!(r#"medic_check_failure_info{{check="{check}",reason="{reason}"}}"#);
        assert_eq!(medic.metric(&info).await, Some(1.0), "{info}");
    }
    let health = medic.json("/api/v1/health").await;
    assert_eq!(health["checks"]["web"]["reason"], "status", "{health}");
    let text = medic.metrics().await;
    // One series per failing check, whatever its history of reasons.
    let web_series = text
        .lines()
        .filter(|l| l.starts_with(r#"medic_check_failure_info{check="web""#))
        .count();
    assert_eq!(web_series, 1, "{text}");
    promtool_check(&text);
    let (_, page) = medic.get("/").await;
    assert!(page.contains("connection_refused"), "{page}");

    // Passing again: the reason goes from the API and the metric.
    target.healthy();
    let v = medic.wait_status("web", "healthy").await;
    assert!(v["reason"].is_null(), "{v}");
    wait_for("failure_info to go", Duration::from_secs(10), || async {
        let text = medic.metrics().await;
        (!text.contains(r#"medic_check_failure_info{check="web""#)).then_some(())
    })
    .await;
}
