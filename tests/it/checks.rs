//! Check kinds against real targets: thresholds, warnings, TCP, command plugins.

use std::time::Duration;

use crate::support::{free_port, script, wait_for, Medic, Target};

#[tokio::test]
async fn http_check_moves_through_thresholds() {
    let target = Target::start().await;
    let medic = Medic::start(&format!(
        "checks:\n  - name: web\n    interval: 100ms\n    failures_before_critical: 3\n    successes_before_healthy: 2\n    http: {{url: '{}'}}\n",
        target.url("/health")
    ))
    .await;
    medic.wait_status("web", "healthy").await;
    assert_eq!(
        medic.metric(r#"medic_check_success{check="web"}"#).await,
        Some(1.0)
    );

    target.set(503, "down", Duration::ZERO);
    let v = medic.wait_status("web", "critical").await;
    // Critical only after three critical probes in a row.
    let history = v["history"].as_array().unwrap();
    let run = history
        .iter()
        .take_while(|h| h["status"] == "critical")
        .count();
    assert!(
        run >= 3,
        "critical after {run} critical probes: {history:?}"
    );
    assert!(v["consecutive_failures"].as_u64().unwrap() >= 3);
    assert!(v["message"].as_str().unwrap().contains("HTTP 503"), "{v}");
    let metrics = medic.metrics().await;
    assert!(metrics.contains(r#"medic_check_status{check="web",status="critical"} 1"#));
    assert!(metrics.contains(r#"medic_check_success{check="web"} 0"#));

    target.healthy();
    let v = medic.wait_status("web", "healthy").await;
    let history = v["history"].as_array().unwrap();
    let run = history
        .iter()
        .take_while(|h| h["status"] == "healthy")
        .count();
    assert!(run >= 2, "healthy after {run} good probes: {history:?}");
    assert_eq!(v["consecutive_failures"], 0);
}

#[tokio::test]
async fn flapping_target_turns_critical_with_reason_flapping() {
    let (target, other) = (Target::start().await, Target::start().await);
    // Down on every other probe: never three failures in a row, but three within six probes.
    let medic = Medic::start(&format!(
        "checks:\n  - name: flappy\n    interval: 100ms\n    failures_before_critical: 3\n    flapping: {{failures: 3, within: 6}}\n    http: {{url: '{}'}}\n  - name: steady\n    interval: 100ms\n    failures_before_critical: 3\n    http: {{url: '{}'}}\n",
        target.url("/flap"),
        other.url("/flap"),
    ))
    .await;
    let v = medic.wait_status("flappy", "critical").await;
    assert_eq!(v["reason"], "flapping", "{v}");
    assert!(v["consecutive_failures"].as_u64().unwrap() < 3, "{v}");
    assert_eq!(
        medic
            .metric(r#"medic_check_flapping{check="flappy"}"#)
            .await,
        Some(1.0)
    );
    let health = medic.json("/api/v1/health").await;
    assert_eq!(health["checks"]["flappy"]["reason"], "flapping", "{health}");
    // Without flap detection the same target never reaches its threshold.
    let steady = &health["checks"]["steady"];
    assert_ne!(steady["status"], "critical", "{health}");
    assert!(steady["reason"].is_null(), "{health}");
    assert_eq!(
        medic
            .metric(r#"medic_check_flapping{check="steady"}"#)
            .await,
        Some(0.0)
    );

    // Once the window holds fewer than three failures the check is healthy again.
    target.stop_flapping();
    let v = medic.wait_status("flappy", "healthy").await;
    assert!(v["reason"].is_null(), "{v}");
    let history = v["history"].as_array().unwrap();
    let window_failures = history
        .iter()
        .take(6)
        .filter(|h| h["status"] == "critical")
        .count();
    assert!(window_failures < 3, "healthy too soon: {history:?}");
    assert!(medic.logs().contains("reason=flapping"), "{}", medic.logs());
}

#[tokio::test]
async fn missing_body_and_slow_answers_are_warnings() {
    let target = Target::start().await;
    let medic = Medic::start(&format!(
        "defaults: {{interval: 100ms}}\nchecks:\n  - name: body\n    http: {{url: '{u}', expect_body: ready}}\n  - name: slow\n    http: {{url: '{u}', warn_after: 30ms}}\n  - name: regex\n    http: {{url: '{u}', body_regex: '^ok$'}}\n",
        u = target.url("/")
    ))
    .await;
    let v = medic.wait_status("body", "warning").await;
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("does not contain \"ready\""),
        "{v}"
    );
    assert_eq!(v["metadata"]["status_code"], 200);
    medic.wait_status("regex", "healthy").await;
    medic.wait_status("slow", "healthy").await;
    target.set(200, "ok", Duration::from_millis(60));
    let v = medic.wait_status("slow", "warning").await;
    assert!(v["message"].as_str().unwrap().contains("slow"), "{v}");
    // A warning still counts as up.
    assert_eq!(
        medic.metric(r#"medic_check_success{check="slow"}"#).await,
        Some(1.0)
    );
    target.set(200, "ready", Duration::ZERO);
    medic.wait_status("body", "healthy").await;
    medic.wait_status("regex", "warning").await;
}

#[tokio::test]
async fn hanging_target_is_critical_at_the_timeout_without_delaying_others() {
    let slow = Target::start().await;
    let fast = Target::start().await;
    slow.set(200, "ok", Duration::from_secs(30));
    let medic = Medic::start(&format!(
        "checks:\n  - name: hang\n    interval: 1s\n    timeout: 300ms\n    http: {{url: '{}'}}\n  - name: quick\n    interval: 100ms\n    http: {{url: '{}'}}\n",
        slow.url("/"),
        fast.url("/")
    ))
    .await;
    let v = medic.wait_status("hang", "critical").await;
    assert!(v["message"].as_str().unwrap().contains("timeout"), "{v}");
    assert!(v["duration_seconds"].as_f64().unwrap() < 1.0, "{v}");
    // The quick check kept its pace while the other hung.
    let runs = wait_for("quick to run 10 times", Duration::from_secs(10), || async {
        let v = medic
            .metric(r#"medic_check_runs_total{check="quick",status="healthy"}"#)
            .await?;
        (v >= 10.0).then_some(v)
    })
    .await;
    assert!(runs >= 10.0);
}

#[tokio::test]
async fn tcp_check_sees_open_and_closed_ports() {
    let open = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open_port = open.local_addr().unwrap().port();
    let closed_port = free_port();
    let medic = Medic::start(&format!(
        "defaults: {{interval: 100ms}}\nchecks:\n  - name: open\n    tcp: {{address: '127.0.0.1:{open_port}'}}\n  - name: closed\n    tcp: {{address: '127.0.0.1:{closed_port}'}}\n"
    ))
    .await;
    medic.wait_status("open", "healthy").await;
    let v = medic.wait_status("closed", "critical").await;
    assert!(v["message"].as_str().unwrap().contains("refused"), "{v}");
}

#[tokio::test]
async fn command_checks_follow_the_nagios_convention() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    std::fs::write(&state, "0").unwrap();
    let plugin = script(
        dir.path(),
        "check_queue",
        &format!(
            "code=$(cat {s})\necho \"QUEUE code $code | depth=42;100;200 latency=250ms\"\necho 'long text'\nexit $code",
            s = state.display()
        ),
    );
    let medic = Medic::start(&format!(
        "defaults: {{interval: 100ms}}\nchecks:\n  - name: queue\n    command: {{program: '{}', args: []}}\n",
        plugin.display()
    ))
    .await;
    let v = medic.wait_status("queue", "healthy").await;
    assert_eq!(v["message"], "QUEUE code 0");
    assert_eq!(v["metadata"]["perfdata"]["depth"], 42.0);
    assert_eq!(v["metadata"]["perfdata"]["latency"], 0.25);
    for (code, status) in [
        ("1", "warning"),
        ("2", "critical"),
        ("3", "unknown"),
        ("7", "unknown"),
        ("0", "healthy"),
    ] {
        std::fs::write(&state, code).unwrap();
        medic.wait_status("queue", status).await;
    }
}

#[tokio::test]
async fn command_timeout_kills_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("child.pid");
    // The plugin forks a grandchild that would outlive a plain kill of the plugin.
    let plugin = script(
        dir.path(),
        "check_hang",
        &format!("sleep 300 &\necho $! > {}\nwait", pidfile.display()),
    );
    let medic = Medic::start(&format!(
        "checks:\n  - name: hang\n    interval: 2s\n    timeout: 500ms\n    command: {{program: '{}'}}\n",
        plugin.display()
    ))
    .await;
    let v = medic.wait_status("hang", "critical").await;
    assert!(v["message"].as_str().unwrap().contains("timeout"), "{v}");
    let pid: i32 = wait_for("pid file", Duration::from_secs(5), || async {
        std::fs::read_to_string(&pidfile).ok()?.trim().parse().ok()
    })
    .await;
    crate::support::wait_process_gone(pid, "the grandchild to be killed").await;
}

#[tokio::test]
async fn missing_program_is_unknown_and_never_runs_a_shell() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("pwned");
    let medic = Medic::start(&format!(
        "defaults: {{interval: 100ms}}\nchecks:\n  - name: nope\n    command: {{program: '/nonexistent/plugin; touch {m}'}}\n  - name: echo\n    command: {{program: /bin/echo, args: ['$(touch {m})', '|', 'x=1']}}\n",
        m = marker.display()
    ))
    .await;
    let v = medic.wait_status("nope", "unknown").await;
    assert!(v["message"].as_str().unwrap().contains("cannot run"), "{v}");
    let v = medic.wait_status("echo", "healthy").await;
    assert_eq!(v["message"], format!("$(touch {})", marker.display()));
    assert!(!marker.exists());
}

#[tokio::test]
async fn system_check_exports_host_utilization() {
    let medic = Medic::start(
        "checks:\n  - name: host\n    interval: 1s\n    system:\n      cpu: {warning: 0.99, critical: 1.0}\n      memory: {critical: 1.0}\n      disk: {critical: 1.0, mountpoints: [/]}\n",
    )
    .await;
    let v = wait_for("host check to run", Duration::from_secs(10), || async {
        let v = medic.json("/api/v1/checks/host").await;
        (v["last_run"].is_string()).then_some(v)
    })
    .await;
    assert!(
        v["metadata"]["memory_utilization"].as_f64().unwrap() > 0.0,
        "{v}"
    );
    let metrics = medic.metrics().await;
    for series in [
        r#"medic_system_cpu_utilization_ratio{check="host"}"#,
        r#"medic_system_memory_utilization_ratio{check="host"}"#,
        r#"medic_system_disk_utilization_ratio{check="host",mountpoint="/"}"#,
    ] {
        let value = crate::support::metric_value(&metrics, series)
            .unwrap_or_else(|| panic!("{series} missing:\n{metrics}"));
        assert!((0.0..=1.0).contains(&value), "{series} = {value}");
    }
}

#[tokio::test]
async fn disabled_check_is_unknown_and_never_probed() {
    let off_target = Target::start().await;
    let on_target = Target::start().await;
    let medic = Medic::start(&format!(
        "defaults: {{interval: 100ms}}\nchecks:\n  - name: off\n    enabled: false\n    http: {{url: '{}'}}\n  - name: on\n    http: {{url: '{}'}}\n",
        off_target.url("/"),
        on_target.url("/")
    ))
    .await;
    // By the time the enabled twin has run five times, the disabled one would have run too.
    wait_for(
        "the enabled check to run 5 times",
        Duration::from_secs(10),
        || async { (on_target.hits().len() >= 5).then_some(()) },
    )
    .await;
    let v = medic.json("/api/v1/checks/off").await;
    assert_eq!(v["status"], "unknown");
    assert_eq!(v["enabled"], false);
    assert!(off_target.hits().is_empty());
    let metrics = medic.metrics().await;
    assert!(
        metrics.contains(r#"medic_check_status{check="off",status="unknown"} 1"#),
        "{metrics}"
    );
    // A check switched off on purpose does not fail the overall health.
    let (code, _) = medic.get("/api/v1/health").await;
    assert_eq!(code, 200);
}
