//! Healing that knows it healed, with the real binary: a fix is verified at once whatever the
//! check's interval (check, alert and manual runs, and across replicas); steps may start
//! services (`detach`), end when their own process does, and never outlive medic; an incident
//! with nothing to try leaves one `unavailable` run; an escalation tells the whole incident;
//! verification re-probes are not coalesced triggers; each attempt's output is evidence.

use std::time::Duration;

use serde_json::Value;

use crate::pg::PgCluster;
use crate::support::{
    free_port, script, wait_for, wait_process_gone, Alertmanager, Medic, Target, MEDIC,
};

/// The runs of `chain`, newest first.
async fn runs(medic: &Medic, chain: &str) -> Vec<Value> {
    let v = medic.json(&format!("/api/v1/runs?chain={chain}")).await;
    v["runs"].as_array().cloned().unwrap_or_default()
}

/// Waits for the first run of `chain` to end; returns it with its decisions.
async fn first_run_ended(medic: &Medic, chain: &str) -> Value {
    let id = wait_for("a run to end", Duration::from_secs(30), || async {
        let list = runs(medic, chain).await;
        let first = list.last()?;
        first["outcome"].as_str()?;
        Some(first["id"].as_str()?.to_string())
    })
    .await;
    medic.json(&format!("/api/v1/runs/{id}")).await
}

/// Steps that ran in a run, as "step:result".
fn ran(run: &Value) -> Vec<String> {
    run["decisions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|d| d["decision"] == "ran")
        .map(|d| {
            format!(
                "{}:{}",
                d["step"].as_str().unwrap_or(""),
                d["result"].as_str().unwrap_or("running")
            )
        })
        .collect()
}

/// A chain whose first step fixes the target and whose second is disruptive: it must never run
/// on a healthy service.
fn fix_then_failover(target: &Target) -> String {
    format!(
        r#"  chains:
    fix:
      verify_timeout: 5s
      steps:
        - name: restart
          http: {{url: '{fix}', method: POST}}
        - name: failover
          http: {{url: '{failover}', method: POST}}
"#,
        fix = target.url("/fix"),
        failover = target.url("/failover"),
    )
}

#[tokio::test]
async fn a_fix_is_verified_at_once_whether_the_interval_is_shorter_or_far_longer_than_verify_timeout(
) {
    for interval in ["200ms", "1h"] {
        let target = Target::start().await;
        target.set(503, "down", Duration::ZERO);
        let medic = Medic::start(&format!(
            r#"checks:
  - name: web
    interval: {interval}
    recovery: fix
    http: {{url: '{health}'}}
recovery:
{chains}"#,
            health = target.url("/health"),
            chains = fix_then_failover(&target),
        ))
        .await;
        let run = first_run_ended(&medic, "fix").await;
        assert_eq!(run["outcome"], "recovered", "interval {interval}: {run}");
        assert_eq!(ran(&run), ["restart:success"], "interval {interval}");
        let restart = &run["decisions"][0];
        assert_eq!(restart["verified"], true, "{restart}");
        let took = restart["duration_seconds"].as_f64().unwrap();
        assert!(took < 2.0, "interval {interval}: verified after {took}s");
        assert_eq!(
            target.hit_count("/failover"),
            0,
            "failover ran on a healthy service"
        );
    }
}

#[tokio::test]
async fn an_alert_run_verified_by_a_rarely_probed_check_is_verified_at_once() {
    let target = Target::start().await;
    target.set(503, "down", Duration::ZERO);
    let medic = Medic::start(&format!(
        r#"checks:
  - name: web
    interval: 1h
    http: {{url: '{health}'}}
recovery:
{chains}  routes:
    - matchers: ['alertname="WebDown"']
      chain: fix
      verify_check: web
"#,
        health = target.url("/health"),
        chains = fix_then_failover(&target),
    ))
    .await;
    medic.wait_status("web", "critical").await;
    let r = medic
        .client
        .post(medic.url("/api/v1/alerts"))
        .header("Content-Type", "application/json")
        .body(webhook("WebDown", "fpweb", "firing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let run = first_run_ended(&medic, "fix").await;
    assert_eq!(run["outcome"], "recovered", "{run}");
    assert_eq!(ran(&run), ["restart:success"]);
    assert!(run["decisions"][0]["duration_seconds"].as_f64().unwrap() < 2.0);
    assert_eq!(target.hit_count("/failover"), 0);
}

#[tokio::test]
async fn a_manual_run_verifies_by_probing_the_check_itself() {
    let target = Target::start().await;
    target.set(503, "down", Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("medic.yml");
    std::fs::write(
        &config,
        format!(
            r#"checks:
  - name: web
    interval: 1h
    http: {{url: '{health}'}}
recovery:
{chains}"#,
            health = target.url("/health"),
            chains = fix_then_failover(&target),
        ),
    )
    .unwrap();
    let out = tokio::process::Command::new(MEDIC)
        .arg("--config.file")
        .arg(&config)
        .arg("--state.url")
        .arg(format!("sqlite://{}/m.db", dir.path().display()))
        .args(["recover", "fix", "--verify-check", "web"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("restart: ran"), "{stdout}");
    assert!(stdout.contains("verified: web healthy"), "{stdout}");
    assert!(stdout.contains("outcome: recovered"), "{stdout}");
    assert_eq!(target.hit_count("/failover"), 0);
}

#[tokio::test]
async fn a_replica_verifies_a_check_another_replica_probes() {
    let pg = PgCluster::start();
    let target = Target::start().await;
    target.set(503, "down", Duration::ZERO);
    let config = format!(
        r#"checks:
  - name: web
    interval: 1h
    http: {{url: '{health}'}}
recovery:
{chains}  routes:
    - matchers: ['alertname="WebDown"']
      chain: fix
      verify_check: web
"#,
        health = target.url("/health"),
        chains = fix_then_failover(&target),
    );
    let mut a = Medic::spawn_unready(&config, &["--cluster.shard", "0/2"], Some(pg.url()));
    let mut b = Medic::spawn_unready(&config, &["--cluster.shard", "1/2"], Some(pg.url()));
    a.wait_ready().await;
    b.wait_ready().await;
    // The alert goes to the replica that does not probe `web`.
    let (owner, other) = if a.get("/api/v1/checks/web").await.0 == 200 {
        (&a, &b)
    } else {
        (&b, &a)
    };
    assert_eq!(other.get("/api/v1/checks/web").await.0, 404);
    owner.wait_status("web", "critical").await;
    let r = other
        .client
        .post(other.url("/api/v1/alerts"))
        .header("Content-Type", "application/json")
        .body(webhook("WebDown", "fpweb", "firing"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let run = first_run_ended(other, "fix").await;
    assert_eq!(run["outcome"], "recovered", "{run}");
    assert_eq!(ran(&run), ["restart:success"], "{run}");
    assert!(run["decisions"][0]["duration_seconds"].as_f64().unwrap() < 2.0);
    assert_eq!(target.hit_count("/failover"), 0);
}

/// An Alertmanager v4 notification with one alert.
fn webhook(alertname: &str, fingerprint: &str, status: &str) -> String {
    serde_json::json!({
        "version": "4", "status": status, "receiver": "medic", "groupKey": "{}",
        "truncatedAlerts": 0, "externalURL": "http://am", "groupLabels": {},
        "commonLabels": {}, "commonAnnotations": {},
        "alerts": [{
            "status": status,
            "labels": {"alertname": alertname, "job": "web"},
            "annotations": {"summary": "web is down"},
            "startsAt": "2026-11-28T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph", "fingerprint": fingerprint,
        }],
    })
    .to_string()
}

/// A tiny web server on `port` that a step starts the usual way, without systemd.
fn start_server_step(dir: &std::path::Path, name: &str, port: u16) -> std::path::PathBuf {
    script(
        dir,
        name,
        &format!(
            "cd {d}\nnohup python3 -m http.server {port} --bind 127.0.0.1 >/dev/null 2>&1 &\n\
             for i in $(seq 1 100); do python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 0.2)' 2>/dev/null && exit 0; sleep 0.05; done\nexit 1",
            d = dir.display()
        ),
    )
}

#[tokio::test]
async fn a_step_may_start_a_service_with_detach_and_without_it_the_leftover_is_killed_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let (kept, killed) = (free_port(), free_port());
    let medic = Medic::start(&format!(
        r#"checks:
  - name: kept
    interval: 300ms
    recovery: keep
    tcp: {{address: '127.0.0.1:{kept}'}}
  - name: killed
    interval: 300ms
    recovery: kill
    tcp: {{address: '127.0.0.1:{killed}'}}
recovery:
  chains:
    keep:
      verify_timeout: 3s
      steps:
        - name: start
          exec: {{program: '{keep_step}'}}
          detach: true
          cooldown: 1h
    kill:
      verify_timeout: 1s
      steps:
        - name: start
          exec: {{program: '{kill_step}'}}
          cooldown: 1h
"#,
        keep_step = start_server_step(dir.path(), "keep", kept).display(),
        kill_step = start_server_step(dir.path(), "kill", killed).display(),
    ))
    .await;
    let run = first_run_ended(&medic, "keep").await;
    assert_eq!(run["outcome"], "recovered", "{run}");
    let message = run["decisions"][0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("{run}"))
        .to_string();
    assert!(
        message.contains("left 1 process running (detach): python3 (pid "),
        "{message}"
    );
    let pid: i32 = message
        .split("(pid ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .and_then(|s| s.parse().ok())
        .expect("a pid in the message");
    // Still serving well after the step: three more healthy probes.
    let probes = r#"medic_check_runs_total{check="kept",status="healthy"}"#;
    let seen = medic
        .wait_metric(probes, 1.0, Duration::from_secs(10))
        .await;
    medic
        .wait_metric(probes, seen + 3.0, Duration::from_secs(10))
        .await;
    assert_eq!(medic.status("kept").await, "healthy");

    let run = first_run_ended(&medic, "kill").await;
    assert_eq!(run["outcome"], "exhausted", "{run}");
    let message = run["decisions"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("killed 1 leftover process: python3"),
        "{message}"
    );
    assert_eq!(medic.status("killed").await, "critical");
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

#[tokio::test]
async fn a_step_ends_when_its_own_process_exits_not_when_a_child_lets_go_of_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let fixed = dir.path().join("fixed");
    let step = script(
        dir.path(),
        "step",
        &format!("touch {}\nsleep 300 &\necho restarted", fixed.display()),
    );
    let medic = Medic::start(&format!(
        r#"checks:
  - name: svc
    interval: 300ms
    recovery: fix
    command: {{program: sh, args: ['-c', 'test -e {fixed} || exit 2']}}
recovery:
  chains:
    fix:
      verify_timeout: 5s
      steps:
        - name: restart
          exec: {{program: '{step}'}}
          timeout: 20s
"#,
        fixed = fixed.display(),
        step = step.display()
    ))
    .await;
    let run = first_run_ended(&medic, "fix").await;
    assert_eq!(run["outcome"], "recovered", "{run}");
    let restart = &run["decisions"][0];
    assert_eq!(restart["result"], "success", "{restart}");
    let took = restart["duration_seconds"].as_f64().unwrap();
    assert!(
        took < 5.0,
        "the step was waited for {took}s, as if to its timeout"
    );
    let message = restart["message"].as_str().unwrap();
    assert!(
        message.contains("killed 1 leftover process: sleep"),
        "{message}"
    );
    assert!(
        restart["output"].as_str().unwrap().contains("restarted"),
        "{restart}"
    );
}

#[tokio::test]
async fn no_process_of_a_running_step_outlives_medic_killed_with_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    let step = script(
        dir.path(),
        "step",
        &format!(
            "sleep 300 &\necho $! >> {p}\nsetsid sleep 302 >/dev/null 2>&1 &\necho $! >> {p}\necho $$ >> {p}\nsleep 301",
            p = pids.display()
        ),
    );
    let mut medic = Medic::start(&format!(
        r#"checks:
  - name: svc
    interval: 300ms
    recovery: fix
    command: {{program: sh, args: ['-c', 'exit 2']}}
recovery:
  chains:
    fix:
      steps:
        - name: slow
          exec: {{program: '{}'}}
          timeout: 10m
"#,
        step.display()
    ))
    .await;
    let list: Vec<i32> = wait_for("the step's processes", Duration::from_secs(20), || async {
        let text = std::fs::read_to_string(&pids).ok()?;
        let list: Vec<i32> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
        (list.len() == 3).then_some(list)
    })
    .await;
    medic.signal(nix::sys::signal::Signal::SIGKILL);
    medic.wait_exit(Duration::from_secs(5)).await;
    let killed = std::time::Instant::now();
    for pid in list {
        wait_process_gone(pid, "a step process to die with medic").await;
    }
    assert!(
        killed.elapsed() < Duration::from_secs(2),
        "the step outlived medic by {:?}",
        killed.elapsed()
    );
}

#[tokio::test]
async fn an_incident_with_nothing_to_try_records_one_unavailable_run() {
    let target = Target::start().await;
    target.set(503, "down", Duration::ZERO);
    let medic = Medic::start(&format!(
        r#"checks:
  - name: web
    interval: 200ms
    recovery: fix
    http: {{url: '{health}'}}
recovery:
  chains:
    fix:
      verify_timeout: 500ms
      steps:
        - name: nudge
          http: {{url: '{noop}', method: POST}}
          max_attempts: 5
          cooldown: 1h
"#,
        health = target.url("/health"),
        noop = target.url("/noop"),
    ))
    .await;
    let unavailable =
        r#"medic_recovery_runs_total{chain="fix",trigger="check",outcome="unavailable"}"#;
    assert_eq!(medic.metric(unavailable).await, Some(0.0), "exists before");
    let first = first_run_ended(&medic, "fix").await;
    assert_eq!(first["outcome"], "exhausted");
    // The target recovers by itself, then fails again: a new incident, the step in cooldown.
    target.healthy();
    medic.wait_status("web", "healthy").await;
    target.set(503, "down", Duration::ZERO);
    medic
        .wait_metric(unavailable, 1.0, Duration::from_secs(10))
        .await;
    let list = runs(&medic, "fix").await;
    assert_eq!(list[0]["outcome"], "unavailable", "{list:?}");
    let run = medic
        .json(&format!("/api/v1/runs/{}", list[0]["id"].as_str().unwrap()))
        .await;
    let d = &run["decisions"][0];
    assert_eq!(
        (&d["step"], &d["decision"], &d["reason"]),
        (&"nudge".into(), &"skipped".into(), &"cooldown".into()),
        "{run}"
    );
    assert!(d["until"].is_string(), "{d}");
    assert!(medic.logs().contains("recovery unavailable"));
    // Once per incident: many more critical probes later, still one.
    let probes = r#"medic_check_runs_total{check="web",status="critical"}"#;
    let now = medic.metric(probes).await.unwrap();
    medic
        .wait_metric(probes, now + 10.0, Duration::from_secs(10))
        .await;
    assert_eq!(medic.metric(unavailable).await, Some(1.0));
    assert_eq!(runs(&medic, "fix").await.len(), 2);
}

#[tokio::test]
async fn an_escalation_lists_every_step_tried_since_the_incident_began_and_what_was_skipped() {
    let target = Target::start().await;
    target.set(503, "down", Duration::ZERO);
    let _medic = Medic::start(&format!(
        r#"checks:
  - name: web
    interval: 200ms
    recovery: fix
    http: {{url: '{health}'}}
recovery:
  chains:
    fix:
      verify_timeout: 300ms
      steps:
        - name: restart
          exec: {{program: 'false'}}
          max_attempts: 1
          cooldown: 1s
        - name: escalate
          notify: {{url: '{hook}'}}
          max_attempts: 5
          cooldown: 1s
"#,
        health = target.url("/health"),
        hook = target.url("/hook"),
    ))
    .await;
    // The first run tries restart then escalates; the next escalates with restart at its
    // max_attempts, and must still say restart was tried.
    let hooks = wait_for("two escalations", Duration::from_secs(20), || async {
        let hooks: Vec<String> = target
            .hits()
            .into_iter()
            .filter(|h| h.starts_with("POST /hook"))
            .collect();
        (hooks.len() >= 2).then_some(hooks)
    })
    .await;
    let body = |hit: &str| -> Value {
        serde_json::from_str(hit.split_once(' ').unwrap().1.split_once(' ').unwrap().1).unwrap()
    };
    let first = body(&hooks[0]);
    assert_eq!(first["tried"][0]["step"], "restart", "{first}");
    assert_eq!(first["tried"][0]["result"], "failure", "{first}");
    let second = body(&hooks[1]);
    assert_eq!(second["tried"][0]["step"], "restart", "{second}");
    assert!(second["tried"][0]["at"].is_string(), "{second}");
    assert_eq!(second["skipped"][0]["step"], "restart", "{second}");
    assert_eq!(second["skipped"][0]["reason"], "max_attempts", "{second}");
    let text = second["text"].as_str().unwrap();
    assert!(text.contains("Tried: restart (failure at "), "{text}");
    assert!(!text.contains("Tried: nothing"), "{text}");
}

#[tokio::test]
async fn verification_reprobes_are_not_counted_as_coalesced_triggers() {
    let target = Target::start().await;
    target.set(503, "down", Duration::ZERO);
    let medic = Medic::start(&format!(
        r#"checks:
  - name: web
    interval: 1h
    recovery: fix
    http: {{url: '{health}'}}
recovery:
  chains:
    fix:
      verify_timeout: 3s
      steps:
        - name: nudge
          http: {{url: '{noop}', method: POST}}
"#,
        health = target.url("/health"),
        noop = target.url("/noop"),
    ))
    .await;
    let run = first_run_ended(&medic, "fix").await;
    assert_eq!(run["outcome"], "exhausted", "{run}");
    // Verification asked for a probe every 200 ms for 3 s, all critical.
    let critical = medic
        .metric(r#"medic_check_runs_total{check="web",status="critical"}"#)
        .await
        .unwrap();
    assert!(critical >= 10.0, "only {critical} verification probes");
    assert_eq!(
        medic
            .metric(
                r#"medic_recovery_skipped_total{chain="fix",step="nudge",reason="in_progress"}"#
            )
            .await,
        Some(0.0)
    );
}

#[tokio::test]
async fn each_attempts_output_is_shown_scrubbed_in_the_apis_the_run_page_and_medic_recover() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("token");
    std::fs::write(&secret_file, "s3cr3t-token-9f1e").unwrap();
    let step = script(
        dir.path(),
        "step",
        &format!(
            "echo restarted nginx\necho \"token was $(cat {})\"\nexit 1",
            secret_file.display()
        ),
    );
    let config = format!(
        r#"web:
  webhook:
    bearer_token_file: '{secret}'
checks:
  - name: svc
    interval: 300ms
    recovery: fix
    command: {{program: sh, args: ['-c', 'exit 2']}}
recovery:
  chains:
    fix:
      steps:
        - name: restart
          exec: {{program: '{step}'}}
          cooldown: 1h
"#,
        secret = secret_file.display(),
        step = step.display()
    );
    let medic = Medic::start(&config).await;
    let run = first_run_ended(&medic, "fix").await;
    let output = run["decisions"][0]["output"].as_str().unwrap().to_string();
    assert!(output.contains("restarted nginx"), "{output}");
    assert!(!output.contains("s3cr3t-token-9f1e"), "{output}");
    let v = medic.json("/api/v1/recoveries?chain=fix").await;
    let listed = v["attempts"][0]["output"]
        .as_str()
        .unwrap_or_else(|| panic!("{v}"));
    assert!(listed.contains("restarted nginx"), "{v}");
    assert!(!v.to_string().contains("s3cr3t-token-9f1e"));
    let (code, page) = medic
        .get(&format!("/runs/{}", run["id"].as_str().unwrap()))
        .await;
    assert_eq!(code, 200);
    assert!(page.contains("restarted nginx"), "{page}");
    assert!(!page.contains("s3cr3t-token-9f1e"));
    // Links carry the run id as it is: unreserved characters are never percent-encoded.
    let id = run["id"].as_str().unwrap();
    assert!(id.contains('-'));
    let (_, index) = medic.get("/").await;
    assert!(index.contains(&format!("href=\"/runs/{id}\"")), "{index}");

    let out = tokio::process::Command::new(MEDIC)
        .arg("--config.file")
        .arg(&medic.config_path)
        .arg("--state.url")
        .arg(format!("sqlite://{}/manual.db", dir.path().display()))
        .args(["recover", "fix"])
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("    | restarted nginx"), "{stdout}");
    assert!(!stdout.contains("s3cr3t-token-9f1e"), "{stdout}");
}

/// An alert as Prometheus posts it while it fires: `endsAt` a few minutes ahead, re-posted.
fn firing(starts_at: &str, ends_at: &str) -> Value {
    serde_json::json!([{
        "labels": {"alertname": "WebDown", "job": "web"},
        "annotations": {"summary": "web is down"},
        "startsAt": starts_at,
        "endsAt": ends_at,
        "generatorURL": "http://prometheus/graph",
    }])
}

#[tokio::test]
async fn an_alert_still_firing_after_its_run_recovered_it_starts_a_new_run_without_a_resend() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::start().await;
    let am_port = free_port();
    // The step "works" but the target breaks again at once: the alert never stops firing.
    let medic = Medic::start(&format!(
        r#"alertmanager:
  url: http://127.0.0.1:{am_port}
  resend_delay: 1s
checks:
  - name: clock
    interval: 300ms
    tcp: {{address: '{addr}'}}
recovery:
  chains:
    fix:
      verify_timeout: 1s
      steps:
        - name: restart
          http: {{url: '{noop}', method: POST}}
          max_attempts: 10
          cooldown: 0s
  routes:
    - matchers: ['alertname="WebDown"']
      chain: fix
"#,
        noop = target.url("/noop"),
        addr = target.addr,
    ))
    .await;
    // Alertmanager repeats a notification only after an hour: medic must not wait for it.
    let am = Alertmanager::start_on(am_port, dir.path(), "1h", &medic.url("/api/v1/alerts")).await;
    let starts = "2026-12-01T00:00:00Z";
    let far = "2100-01-01T00:00:00Z";
    am.post_alerts(firing(starts, far)).await;
    wait_for(
        "two runs of the still-firing alert",
        Duration::from_secs(30),
        || async { (target.hit_count("/noop") >= 2).then_some(()) },
    )
    .await;
    let notified = r#"medic_webhook_alerts_total{status="firing",routed="true"}"#;
    assert_eq!(
        medic.metric(notified).await,
        Some(1.0),
        "the second run came from a resend, not from asking Alertmanager"
    );
    assert!(
        medic
            .metric(
                r#"medic_alertmanager_requests_total{operation="query_alerts",result="success"}"#
            )
            .await
            .unwrap()
            >= 1.0
    );
    // The second run's step was hit; its verification may still be under way.
    wait_for(
        "two recovered runs of the still-firing alert",
        Duration::from_secs(10),
        || async {
            let list = runs(&medic, "fix").await;
            (list.iter().filter(|r| r["outcome"] == "recovered").count() >= 2).then_some(())
        },
    )
    .await;
    // Resolved (Alertmanager tells medic): medic stops asking and starts nothing more.
    am.post_alerts(firing(starts, "2026-12-01T00:00:01Z")).await;
    let queries = r#"medic_alertmanager_requests_total{operation="query_alerts",result="success"}"#;
    let resolved = r#"medic_webhook_alerts_total{status="resolved",routed="true"}"#;
    medic
        .wait_metric(resolved, 1.0, Duration::from_secs(30))
        .await;
    // A run or a question already under way when the resolution came may still end.
    let active = r#"medic_recovery_runs_active{chain="fix"}"#;
    wait_for("no run active", Duration::from_secs(10), || async {
        (medic.metric(active).await? == 0.0).then_some(())
    })
    .await;
    let hits = target.hit_count("/noop");
    let asked = medic.metric(queries).await.unwrap();
    // Three more resend delays (ten probes of another check): no question (the follow-up
    // ended) and no run.
    let probes = r#"medic_check_runs_total{check="clock",status="healthy"}"#;
    let now = medic.metric(probes).await.unwrap();
    medic
        .wait_metric(probes, now + 10.0, Duration::from_secs(20))
        .await;
    assert_eq!(
        target.hit_count("/noop"),
        hits,
        "a run started for a resolved alert"
    );
    assert_eq!(medic.metric(queries).await.unwrap(), asked, "still asking");
}
