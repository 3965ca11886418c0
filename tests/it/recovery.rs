//! Recovery chains with the real binary, real processes and a real switchable target.

use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::{script, wait_for, Medic, Target, MEDIC};

/// Attempts from the API, oldest first, as "step:result".
async fn attempts(medic: &Medic, chain: &str) -> Vec<String> {
    let v = medic
        .json(&format!("/api/v1/recoveries?chain={chain}"))
        .await;
    let mut list: Vec<String> = v["attempts"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|a| {
            format!(
                "{}:{}",
                a["step"].as_str().unwrap_or(""),
                a["result"].as_str().unwrap_or("running")
            )
        })
        .collect();
    list.reverse();
    list
}

async fn wait_attempts(medic: &Medic, chain: &str, want: &[&str]) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let got = attempts(medic, chain).await;
        if got == want {
            return got;
        }
        if std::time::Instant::now() > deadline {
            panic!(
                "attempts {got:?}, want {want:?}; medic log:\n{}",
                medic.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn counter(medic: &Medic, series: &str) -> f64 {
    medic.metric(series).await.unwrap_or(0.0)
}

#[tokio::test]
async fn a_step_that_does_not_fix_escalates_to_one_that_does() {
    let target = Target::start().await;
    target.set(503, "down", Duration::ZERO);
    let medic = Medic::start(&format!(
        r#"checks:
  - name: web
    interval: 200ms
    recovery: fix
    labels: {{service: web}}
    http: {{url: '{health}'}}
recovery:
  chains:
    fix:
      verify_timeout: 1s
      steps:
        - name: nudge
          http: {{url: '{noop}', method: POST}}
        - name: restart
          http: {{url: '{fix}', method: POST, body: '{{"service": "{{{{ labels.service }}}}"}}'}}
"#,
        health = target.url("/health"),
        noop = target.url("/noop"),
        fix = target.url("/fix"),
    ))
    .await;
    wait_attempts(&medic, "fix", &["nudge:failure", "restart:success"]).await;
    medic.wait_status("web", "healthy").await;
    let v = medic.json("/api/v1/recoveries?chain=fix&limit=1").await;
    assert_eq!(v["attempts"].as_array().unwrap().len(), 1);
    assert!(
        v["attempts"][0]["message"]
            .as_str()
            .unwrap()
            .contains("verified"),
        "{v}"
    );
    assert!(
        target
            .hits()
            .iter()
            .any(|h| h == r#"POST /fix {"service": "web"}"#),
        "{:?}",
        target.hits()
    );

    // The run's end is counted last, after the attempt records the API shows.
    medic
        .wait_metric(
            r#"medic_recovery_runs_total{chain="fix",trigger="check",outcome="recovered"}"#,
            1.0,
            Duration::from_secs(10),
        )
        .await;
    let m = medic.metrics().await;
    for (series, want) in [
        (
            r#"medic_recovery_attempts_total{chain="fix",step="nudge",result="failure"}"#,
            1.0,
        ),
        (
            r#"medic_recovery_attempts_total{chain="fix",step="restart",result="success"}"#,
            1.0,
        ),
        (
            r#"medic_recovery_runs_total{chain="fix",trigger="check",outcome="recovered"}"#,
            1.0,
        ),
        (
            r#"medic_recovery_step_effectiveness{chain="fix",step="nudge"}"#,
            0.35,
        ),
        (
            r#"medic_recovery_step_effectiveness{chain="fix",step="restart"}"#,
            0.65,
        ),
        (
            r#"medic_recovery_step_duration_seconds_count{chain="fix",step="restart"}"#,
            1.0,
        ),
    ] {
        let got = crate::support::metric_value(&m, series)
            .unwrap_or_else(|| panic!("{series} missing:\n{m}"));
        assert!((got - want).abs() < 1e-9, "{series} = {got}, want {want}");
    }
    // Probes kept coming while nudge was being verified: coalesced into the running run.
    assert!(
        counter(
            &medic,
            r#"medic_recovery_skipped_total{chain="fix",step="nudge",reason="in_progress"}"#
        )
        .await
            >= 1.0
    );
    assert_eq!(
        counter(
            &medic,
            r#"medic_recovery_runs_total{chain="fix",trigger="check",outcome="exhausted"}"#
        )
        .await,
        0.0
    );
    let stats = medic.json("/api/v1/recoveries/stats").await;
    let restart = stats["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == "restart")
        .unwrap()
        .clone();
    assert_eq!(restart["attempts"], 1);
    assert_eq!(restart["success_ratio"], 1.0);
}

#[tokio::test]
async fn a_second_failure_inside_cooldowns_escalates_to_notify_and_ends_exhausted() {
    let target = Target::start().await;
    let pager = Target::start().await;
    let medic = Medic::start(&format!(
        r#"checks:
  - name: web
    interval: 200ms
    recovery: fix
    http: {{url: '{health}'}}
recovery:
  chains:
    fix:
      verify_timeout: 2s
      steps:
        - name: restart
          http: {{url: '{fix}', method: POST}}
          max_attempts: 3
          cooldown: 1h
        - name: escalate
          notify: {{url: '{page}'}}
          max_attempts: 5
          cooldown: 0s
"#,
        health = target.url("/health"),
        fix = target.url("/fix"),
        page = pager.url("/hook"),
    ))
    .await;
    medic.wait_status("web", "healthy").await;
    target.set(503, "down", Duration::ZERO);
    wait_attempts(&medic, "fix", &["restart:success"]).await;
    medic.wait_status("web", "healthy").await;

    // Broken again within the hour: restart is cooling down, so the humans hear about it.
    target.set(503, "down again", Duration::ZERO);
    medic
        .wait_metric(
            r#"medic_recovery_runs_total{chain="fix",trigger="check",outcome="exhausted"}"#,
            1.0,
            Duration::from_secs(30),
        )
        .await;
    let got = attempts(&medic, "fix").await;
    assert_eq!(
        &got[..2],
        ["restart:success", "escalate:success"],
        "{got:?}"
    );
    assert!(
        counter(
            &medic,
            r#"medic_recovery_skipped_total{chain="fix",step="restart",reason="cooldown"}"#
        )
        .await
            >= 1.0
    );
    let page = pager
        .hits()
        .into_iter()
        .find(|h| h.starts_with("POST /hook"))
        .expect("the notify step posted");
    let body: serde_json::Value =
        serde_json::from_str(page.trim_start_matches("POST /hook ")).unwrap();
    assert_eq!(body["chain"], "fix");
    assert_eq!(body["check"], "web");
    assert_eq!(body["trigger"], "check");
    assert!(body["message"].as_str().unwrap().contains("503"), "{body}");
    assert!(
        body["text"].as_str().unwrap().contains("could not fix web"),
        "{body}"
    );
    // Still critical and nothing left to try: no new run at every probe.
    let runs = counter(
        &medic,
        r#"medic_recovery_runs_total{chain="fix",trigger="check",outcome="exhausted"}"#,
    )
    .await;
    let probes_before = counter(
        &medic,
        r#"medic_check_runs_total{check="web",status="critical"}"#,
    )
    .await;
    wait_for(
        "10 more critical probes",
        Duration::from_secs(20),
        || async {
            (counter(
                &medic,
                r#"medic_check_runs_total{check="web",status="critical"}"#,
            )
            .await
                >= probes_before + 10.0)
                .then_some(())
        },
    )
    .await;
    let runs_after = counter(
        &medic,
        r#"medic_recovery_runs_total{chain="fix",trigger="check",outcome="exhausted"}"#,
    )
    .await;
    assert!(
        runs_after <= runs + 5.0,
        "a run per probe: {runs} -> {runs_after}"
    );
}

#[tokio::test]
async fn kill_9_mid_chain_never_reruns_a_step_inside_its_cooldown() {
    let target = Target::start().await;
    target.set(503, "down", Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let slow = script(
        dir.path(),
        "slow_fix",
        &format!("echo run >> {}\nsleep 5", ran.display()),
    );
    let mut medic = Medic::start(&format!(
        r#"checks:
  - name: web
    interval: 200ms
    recovery: fix
    http: {{url: '{health}'}}
recovery:
  chains:
    fix:
      verify_timeout: 1s
      steps:
        - name: slow
          exec: {{program: '{slow}'}}
          timeout: 30s
          cooldown: 1h
        - name: restart
          http: {{url: '{fix}', method: POST}}
"#,
        health = target.url("/health"),
        slow = slow.display(),
        fix = target.url("/fix"),
    ))
    .await;
    wait_for(
        "the slow step to start",
        Duration::from_secs(20),
        || async { std::fs::read_to_string(&ran).ok().filter(|s| !s.is_empty()) },
    )
    .await;
    medic.signal(Signal::SIGKILL);
    medic.wait_exit(Duration::from_secs(10)).await;

    medic.spawn(&[]);
    medic.wait_ready().await;
    medic.wait_status("web", "healthy").await;
    wait_attempts(&medic, "fix", &["slow:failure", "restart:success"]).await;
    assert_eq!(
        std::fs::read_to_string(&ran).unwrap().lines().count(),
        1,
        "the slow step ran again inside its cooldown"
    );
    let v = medic.json("/api/v1/recoveries?chain=fix").await;
    let interrupted = &v["attempts"][1];
    assert!(
        interrupted["message"]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{v}"
    );
    assert!(
        counter(
            &medic,
            r#"medic_recovery_skipped_total{chain="fix",step="slow",reason="cooldown"}"#
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn a_hanging_step_is_killed_with_its_children_at_its_timeout() {
    let target = Target::start().await;
    target.set(503, "down", Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("child.pid");
    let hang = script(
        dir.path(),
        "hang",
        &format!("sleep 300 &\necho $! > {}\nwait", pidfile.display()),
    );
    let medic = Medic::start(&format!(
        r#"checks:
  - name: web
    interval: 200ms
    recovery: fix
    http: {{url: '{health}'}}
recovery:
  chains:
    fix:
      verify_timeout: 1s
      steps:
        - name: hang
          exec: {{program: '{hang}'}}
          timeout: 1s
        - name: restart
          http: {{url: '{fix}', method: POST}}
"#,
        health = target.url("/health"),
        hang = hang.display(),
        fix = target.url("/fix"),
    ))
    .await;
    wait_attempts(&medic, "fix", &["hang:timeout", "restart:success"]).await;
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    crate::support::wait_process_gone(pid, "the forked child to be gone").await;
}

fn recover(config: &std::path::Path, state: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new(MEDIC)
        .arg("recover")
        .args(args)
        .arg("--config.file")
        .arg(config)
        .args(["--state.url", state])
        .output()
        .expect("run medic recover");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn a_hostile_label_reaches_the_program_as_one_literal_argument() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("argv");
    let marker = dir.path().join("pwned");
    let show = script(
        dir.path(),
        "show",
        &format!(
            "printf '%s\\n' \"$#\" \"$@\" \"$MEDIC_LABEL_SERVICE\" > {}",
            out.display()
        ),
    );
    let config = dir.path().join("medic.yml");
    std::fs::write(
        &config,
        format!(
            "recovery:\n  chains:\n    inject:\n      steps:\n        - name: show\n          exec: {{program: '{}', args: ['{{{{ labels.service }}}}']}}\n",
            show.display()
        ),
    )
    .unwrap();
    let state = format!("sqlite://{}/m.db", dir.path().display());
    let hostile = format!(
        "$(touch {m}); rm -rf ~; `touch {m}` | touch {m} && touch {m}",
        m = marker.display()
    );
    let (code, text) = recover(
        &config,
        &state,
        &["inject", "--label", &format!("service={hostile}")],
    );
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("show: ran") && text.contains("outcome: recovered"),
        "{text}"
    );
    let argv = std::fs::read_to_string(&out).unwrap();
    assert_eq!(argv, format!("1\n{hostile}\n{hostile}\n"));
    assert!(!marker.exists(), "something ran what the label said");
}

#[test]
fn dry_run_runs_nothing_and_records_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("touched");
    let config = dir.path().join("medic.yml");
    std::fs::write(
        &config,
        format!(
            "recovery:\n  chains:\n    c:\n      steps:\n        - name: touch\n          exec: {{program: /usr/bin/touch, args: ['{}']}}\n",
            marker.display()
        ),
    )
    .unwrap();
    let state = format!("sqlite://{}/m.db", dir.path().display());
    let (code, text) = recover(&config, &state, &["c", "--dry-run"]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("touch: would run exec \"/usr/bin/touch\""),
        "{text}"
    );
    assert!(!marker.exists());
    let (_, stats) = recover(&config, &state, &["--stats"]);
    assert!(!stats.contains("touch "), "a dry run was recorded: {stats}");
    // For real this time, and it shows up in the statistics.
    let (code, text) = recover(&config, &state, &["c"]);
    assert_eq!(code, 0, "{text}");
    assert!(marker.exists());
    let (_, stats) = recover(&config, &state, &["--stats"]);
    assert!(
        stats
            .lines()
            .any(|l| l.starts_with("c ") && l.contains("touch")),
        "{stats}"
    );
}

#[tokio::test]
async fn adaptive_order_learns_which_step_of_a_tier_fixes_the_target() {
    let target = Target::start().await;
    let medic = Medic::start(&format!(
        r#"checks:
  - name: web
    interval: 200ms
    recovery: fix
    http: {{url: '{health}'}}
recovery:
  chains:
    fix:
      order: adaptive
      verify_timeout: 1s
      steps:
        - name: first
          tier: 1
          http: {{url: '{noop}', method: POST}}
          max_attempts: 10
          cooldown: 0s
        - name: second
          tier: 1
          http: {{url: '{fix}', method: POST}}
          max_attempts: 10
          cooldown: 0s
"#,
        health = target.url("/health"),
        noop = target.url("/noop"),
        fix = target.url("/fix"),
    ))
    .await;
    medic.wait_status("web", "healthy").await;
    target.set(503, "down", Duration::ZERO);
    wait_attempts(&medic, "fix", &["first:failure", "second:success"]).await;
    medic.wait_status("web", "healthy").await;
    // Learned: second (0.65) now goes before first (0.35).
    target.set(503, "down", Duration::ZERO);
    wait_attempts(
        &medic,
        "fix",
        &["first:failure", "second:success", "second:success"],
    )
    .await;
}

#[tokio::test]
async fn shutdown_cancels_a_running_step_and_records_it() {
    let target = Target::start().await;
    target.set(503, "down", Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let started = dir.path().join("started");
    let slow = script(
        dir.path(),
        "slow",
        &format!("touch {}\nsleep 60", started.display()),
    );
    let mut medic = Medic::start(&format!(
        "checks:\n  - name: web\n    interval: 200ms\n    recovery: fix\n    http: {{url: '{}'}}\nrecovery:\n  chains:\n    fix:\n      steps:\n        - name: slow\n          exec: {{program: '{}'}}\n          timeout: 2m\n",
        target.url("/health"),
        slow.display()
    ))
    .await;
    wait_for("the step to start", Duration::from_secs(20), || async {
        started.exists().then_some(())
    })
    .await;
    medic.signal(Signal::SIGTERM);
    assert_eq!(medic.wait_exit(Duration::from_secs(20)).await, Some(0));
    // Restart on the same store: the attempt was recorded as cancelled, not left running.
    medic.spawn(&[]);
    medic.wait_ready().await;
    let v = medic.json("/api/v1/recoveries?chain=fix").await;
    let first = v["attempts"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(first["result"], "failure", "{v}");
    assert!(
        first["message"].as_str().unwrap().contains("cancelled"),
        "{v}"
    );
}

#[tokio::test]
async fn reloads_racing_a_run_neither_disturb_it_nor_start_a_second() {
    let target = Target::start().await;
    target.set(503, "down", Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let slow = script(
        dir.path(),
        "slow",
        &format!("echo start >> {0}\nsleep 2\necho end >> {0}", ran.display()),
    );
    let config = |interval: &str, cooldown: &str, step: &str| {
        format!(
            "checks:\n  - name: web\n    interval: {interval}\n    recovery: fix\n    http: {{url: '{}'}}\nrecovery:\n  chains:\n    fix:\n      verify_timeout: 1s\n      steps:\n{step}          cooldown: {cooldown}\n",
            target.url("/health"),
        )
    };
    let slow_step = format!(
        "        - name: slow\n          exec: {{program: '{}'}}\n",
        slow.display()
    );
    let medic = Medic::start(&config("200ms", "1h", &slow_step)).await;
    wait_for("the step to start", Duration::from_secs(20), || async {
        ran.exists().then_some(())
    })
    .await;
    // While it runs: reloads that keep, change and break the config, as fast as they go.
    let variants = [
        config("200ms", "1h", &slow_step),
        config("300ms", "30m", &slow_step),
        "checks: [{name: web, tcp: {address: nowhere}}]\n".to_string(),
    ];
    let mut codes = Vec::new();
    for i in 0..30 {
        medic.write_config(&variants[i % variants.len()]);
        codes.push(medic.post("/-/reload").await.0);
    }
    assert!(codes.contains(&200) && codes.contains(&500), "{codes:?}");
    medic.write_config(&variants[1]);
    assert_eq!(medic.post("/-/reload").await.0, 200);

    wait_attempts(&medic, "fix", &["slow:failure"]).await;
    medic
        .wait_metric(
            r#"medic_recovery_runs_total{chain="fix",trigger="check",outcome="exhausted"}"#,
            1.0,
            Duration::from_secs(20),
        )
        .await;
    // The check stays critical and is probed on: the step, in its cooldown, never runs again.
    let probes = r#"medic_check_runs_total{check="web",status="critical"}"#;
    let before = counter(&medic, probes).await;
    medic
        .wait_metric(probes, before + 3.0, Duration::from_secs(10))
        .await;
    assert_eq!(std::fs::read_to_string(&ran).unwrap(), "start\nend\n");
    assert_eq!(attempts(&medic, "fix").await, ["slow:failure"]);

    // A reload that brings a new step: the next run uses it and fixes the target.
    let fix_step = format!(
        "        - name: fix\n          http: {{url: '{}'}}\n",
        target.url("/fix")
    );
    medic.write_config(&config("300ms", "30m", &fix_step));
    assert_eq!(medic.post("/-/reload").await.0, 200);
    wait_attempts(&medic, "fix", &["slow:failure", "fix:success"]).await;
    medic.wait_status("web", "healthy").await;
}
