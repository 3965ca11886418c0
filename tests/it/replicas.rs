//! Two medic replicas on one PostgreSQL behave as one for recovery: the same alert delivered to
//! both, several times at once, runs its step exactly once; a check both see critical is healed
//! once; a replica killed mid-step leaves a run the other takes over.

use std::time::Duration;

use crate::pg::PgCluster;
use crate::support::{alert_post, script, testdata, wait_for, Medic};

const TOKEN: &str = "replica-token-2b9d";

async fn runs(m: &Medic) -> f64 {
    m.metric(r#"medic_recovery_runs_total{chain="fix",trigger="alert",outcome="recovered"}"#)
        .await
        .unwrap_or(0.0)
}

#[tokio::test]
async fn the_same_alert_to_two_replicas_runs_the_step_once() {
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let step = script(
        dir.path(),
        "step",
        &format!("echo \"$MEDIC_LABEL_INSTANCE\" >> {}", ran.display()),
    );
    let config = format!(
        r#"web:
  webhook:
    bearer_token: {TOKEN}
recovery:
  chains:
    fix:
      steps:
        - name: step
          exec: {{program: '{}'}}
          max_attempts: 5
          cooldown: 1h
  routes:
    - matchers: ['alertname="TargetDown"']
      chain: fix
"#,
        step.display()
    );
    let mut a = Medic::spawn_unready(&config, &[], Some(pg.url()));
    let mut b = Medic::spawn_unready(&config, &[], Some(pg.url()));
    a.wait_ready().await;
    b.wait_ready().await;
    let body = testdata("alertmanager/alertmanager-0.25-firing.raw.json");
    // An HA pair of Alertmanagers, retries and resends: five copies to each replica at once.
    let mut sends = Vec::new();
    for medic in [&a, &b, &a, &b, &a, &b, &a, &b, &a, &b] {
        let request = alert_post(medic, TOKEN, body.clone());
        sends.push(tokio::spawn(async move {
            request.send().await.map(|r| r.status().as_u16())
        }));
    }
    for send in sends {
        assert_eq!(send.await.unwrap().unwrap(), 200);
    }
    wait_for("the step to run", Duration::from_secs(20), || async {
        std::fs::read_to_string(&ran).ok().filter(|s| !s.is_empty())
    })
    .await;
    wait_for("the run to end", Duration::from_secs(20), || async {
        (runs(&a).await + runs(&b).await >= 1.0).then_some(())
    })
    .await;
    // And again, now that the step is in its cooldown on the shared store. Each replica
    // answers once its manager has decided; a run it started has ended once it leaves
    // medic_recovery_runs_active, having run the step or found it in cooldown. Only then does
    // the file say whether the step ran a second time.
    for medic in [&a, &b] {
        let r = alert_post(medic, TOKEN, body.clone()).send().await.unwrap();
        assert_eq!(r.status(), 200);
        medic.wait_no_run_active("fix").await;
    }
    assert_eq!(
        std::fs::read_to_string(&ran).unwrap().lines().count(),
        1,
        "the step ran more than once"
    );
    assert_eq!(runs(&a).await + runs(&b).await, 1.0);
    let v = a.json("/api/v1/recoveries?chain=fix").await;
    assert_eq!(v["attempts"].as_array().unwrap().len(), 1, "{v}");
    drop(b);
    drop(a);
}

#[tokio::test]
async fn a_replica_killed_mid_step_leaves_a_record_the_other_honours() {
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let slow_pid = dir.path().join("slow.pid");
    // The first step hangs (its replica dies under it); the second fixes.
    let slow = script(
        dir.path(),
        "slow",
        &format!(
            "echo slow >> {}\necho $$ > {}\nexec sleep 600",
            ran.display(),
            slow_pid.display()
        ),
    );
    let fast = script(
        dir.path(),
        "fast",
        &format!("echo fast >> {}", ran.display()),
    );
    let config = format!(
        r#"web:
  webhook:
    bearer_token: {TOKEN}
recovery:
  chains:
    fix:
      steps:
        - name: slow
          exec: {{program: '{}'}}
          timeout: 10m
          cooldown: 1h
        - name: fast
          exec: {{program: '{}'}}
          cooldown: 1h
  routes:
    - matchers: ['alertname="TargetDown"']
      chain: fix
"#,
        slow.display(),
        fast.display()
    );
    let mut a = Medic::spawn_unready(&config, &[], Some(pg.url()));
    let mut b = Medic::spawn_unready(&config, &[], Some(pg.url()));
    a.wait_ready().await;
    b.wait_ready().await;
    let body = testdata("alertmanager/alertmanager-0.25-firing.raw.json");
    let r = alert_post(&a, TOKEN, body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let pid = wait_for(
        "the slow step to start on A",
        Duration::from_secs(20),
        || async {
            std::fs::read_to_string(&slow_pid)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
        },
    )
    .await;
    a.signal(nix::sys::signal::Signal::SIGKILL);
    a.wait_exit(Duration::from_secs(10)).await;
    // The orphaned step is no one's now; end it so it cannot confuse what follows.
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );

    // Alertmanager keeps resending to B. While A's lease holds, B starts nothing; once it
    // lapses B ends A's run, skips the step A attempted (its cooldown is in the store) and
    // escalates to the next.
    wait_for(
        "B to take over and run the next step",
        Duration::from_secs(60),
        || async {
            let _ = alert_post(&b, TOKEN, body.clone()).send().await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let ran = std::fs::read_to_string(&ran).unwrap_or_default();
            ran.contains("fast").then_some(())
        },
    )
    .await;
    let lines: Vec<String> = std::fs::read_to_string(&ran)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines, ["slow", "fast"], "each step ran exactly once");
    let cancelled = b
        .metric(r#"medic_recovery_runs_total{chain="fix",trigger="alert",outcome="cancelled"}"#)
        .await;
    assert_eq!(cancelled, Some(1.0), "B ended A's abandoned run");
    wait_for(
        "B's run to end recovered",
        Duration::from_secs(20),
        || async { (runs(&b).await >= 1.0).then_some(()) },
    )
    .await;
    let v = b.json("/api/v1/recoveries?chain=fix").await;
    let attempts = v["attempts"].as_array().unwrap();
    let slow_attempt = attempts
        .iter()
        .find(|x| x["step"] == "slow")
        .expect("slow attempt");
    assert_eq!(slow_attempt["result"], "failure", "{v}");
    assert!(
        slow_attempt["message"]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{v}"
    );
    let skipped = b
        .metric(r#"medic_recovery_skipped_total{chain="fix",step="slow",reason="cooldown"}"#)
        .await;
    assert!(skipped >= Some(1.0), "B skipped the step A had attempted");
}

#[tokio::test]
async fn a_critical_check_seen_by_two_replicas_is_healed_once() {
    let pg = PgCluster::start();
    let target = crate::support::Target::start().await;
    let config = format!(
        r#"checks:
  - name: web
    interval: 100ms
    recovery: fix
    http: {{url: '{}'}}
recovery:
  chains:
    fix:
      steps:
        - name: fix
          http: {{url: '{}'}}
          cooldown: 1h
"#,
        target.url("/health"),
        target.url("/fix")
    );
    let mut a = Medic::spawn_unready(&config, &[], Some(pg.url()));
    let mut b = Medic::spawn_unready(&config, &[], Some(pg.url()));
    a.wait_ready().await;
    b.wait_ready().await;
    a.wait_status("web", "healthy").await;
    b.wait_status("web", "healthy").await;
    // Both replicas probe the target ten times a second and both see it fail.
    target.set(503, "down", Duration::ZERO);
    wait_for("the fix", Duration::from_secs(20), || async {
        (target.hit_count("/fix") > 0).then_some(())
    })
    .await;
    a.wait_status("web", "healthy").await;
    b.wait_status("web", "healthy").await;
    wait_for("the run to be counted", Duration::from_secs(20), || async {
        (check_runs(&a).await + check_runs(&b).await >= 1.0).then_some(())
    })
    .await;
    assert_eq!(
        target.hit_count("/fix"),
        1,
        "one fix across both replicas: {:?}",
        target
            .hits()
            .into_iter()
            .filter(|h| !h.contains("/health"))
            .collect::<Vec<_>>()
    );
    assert_eq!(check_runs(&a).await + check_runs(&b).await, 1.0);
}

async fn check_runs(m: &Medic) -> f64 {
    m.metric(r#"medic_recovery_runs_total{chain="fix",trigger="check",outcome="recovered"}"#)
        .await
        .unwrap_or(0.0)
}

#[tokio::test]
async fn shards_split_the_checks_and_verify_the_others_directly() {
    let pg = PgCluster::start();
    let target = crate::support::Target::start().await;
    let mut config = format!(
        r#"web:
  webhook:
    bearer_token: {TOKEN}
recovery:
  # All twelve checks share the broken target: the circuit breaker must not hold the run.
  limits: {{max_unhealthy: 100%}}
  chains:
    fix:
      steps:
        - name: fix
          http: {{url: '{}'}}
  routes:
    - matchers: ['alertname="TargetDown"']
      chain: fix
      verify_check: c0
checks:
"#,
        target.url("/fix")
    );
    for i in 0..12 {
        config.push_str(&format!(
            "  - {{name: c{i}, interval: 200ms, http: {{url: '{}'}}}}\n",
            target.url("/health")
        ));
    }
    let mut a = Medic::spawn_unready(&config, &["--cluster.shard", "0/2"], Some(pg.url()));
    let mut b = Medic::spawn_unready(&config, &["--cluster.shard", "1/2"], Some(pg.url()));
    a.wait_ready().await;
    b.wait_ready().await;
    let names = |v: serde_json::Value| -> Vec<String> {
        v["checks"].as_object().unwrap().keys().cloned().collect()
    };
    let (mine_a, mine_b) = (
        names(a.json("/api/v1/health").await),
        names(b.json("/api/v1/health").await),
    );
    let mut all: Vec<String> = mine_a.iter().chain(&mine_b).cloned().collect();
    all.sort_by_key(|n| n[1..].parse::<u32>().unwrap());
    let want: Vec<String> = (0..12).map(|i| format!("c{i}")).collect();
    assert_eq!(
        all, want,
        "each check on exactly one shard: {mine_a:?} {mine_b:?}"
    );
    assert!(!mine_a.is_empty() && !mine_b.is_empty());
    let metrics_b = b.metrics().await;
    for name in &mine_a {
        assert!(
            !metrics_b.contains(&format!("check=\"{name}\"")),
            "{name} is A's, yet B exports it"
        );
    }

    // The alert's route verifies with c0: whichever replica receives it, the fix is verified,
    // by its own probes or, for the other shard's check, by probing c0 directly.
    let (owner, other) = if mine_a.contains(&"c0".to_string()) {
        (&a, &b)
    } else {
        (&b, &a)
    };
    target.set(503, "down", Duration::ZERO);
    owner.wait_status("c0", "critical").await;
    let r = alert_post(
        other,
        TOKEN,
        testdata("alertmanager/alertmanager-0.25-firing.raw.json"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    wait_for(
        "the run on the other shard to end recovered",
        Duration::from_secs(20),
        || async { (runs(other).await >= 1.0).then_some(()) },
    )
    .await;
    owner.wait_status("c0", "healthy").await;
}
