//! Safe healing with the real binary and real child processes: the concurrency and rate limits,
//! the circuit breaker, maintenance windows and shadow mode. Steps log their own start and end
//! times, so "never more than N at once" is measured from what really ran.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{script, wait_for, Medic};

/// A command check per name, healthy while `DIR/up-NAME` exists.
fn checks(dir: &Path, names: &[String], chain: &str) -> String {
    checks_every(dir, names, chain, "200ms")
}

fn checks_every(dir: &Path, names: &[String], chain: &str, interval: &str) -> String {
    let probe = script(
        dir,
        "probe.sh",
        r#"if [ -e "$1" ]; then echo "OK up"; exit 0; fi; echo "CRITICAL down"; exit 2"#,
    );
    names
        .iter()
        .map(|name| {
            format!(
                "  - name: {name}\n    interval: {interval}\n    recovery: {chain}\n    command: {{program: '{}', args: ['{}']}}\n",
                probe.display(),
                dir.join(format!("up-{name}")).display()
            )
        })
        .collect()
}

fn up(dir: &Path, name: &str) {
    std::fs::write(dir.join(format!("up-{name}")), "").expect("up");
}

fn down(dir: &Path, name: &str) {
    let _ = std::fs::remove_file(dir.join(format!("up-{name}")));
}

/// A step that logs `start NAME T` and `end NAME T` (milliseconds) around a sleep, then fails
/// (so each check gets exactly one run: max_attempts 1, long cooldown).
fn logging_step(dir: &Path, seconds: &str) -> (PathBuf, PathBuf) {
    let log = dir.join("steps.log");
    let step = script(
        dir,
        "step.sh",
        &format!(
            r#"echo "start $1 $(date +%s%3N)" >> '{log}'; sleep {seconds}; echo "end $1 $(date +%s%3N)" >> '{log}'; exit 1"#,
            log = log.display()
        ),
    );
    (step, log)
}

fn chain(name: &str, step: &Path, extra: &str) -> String {
    format!(
        "    {name}:\n{extra}      steps:\n        - name: restart\n          exec: {{program: '{}', args: ['{{{{ check }}}}']}}\n          max_attempts: 1\n          cooldown: 1h\n          timeout: 30s\n",
        step.display()
    )
}

/// The most steps that ran at once, from their own start and end lines.
fn max_in_flight(log: &str) -> usize {
    let mut events: Vec<(u64, i32)> = log
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let kind = parts.next()?;
            let _name = parts.next()?;
            let t: u64 = parts.next()?.parse().ok()?;
            Some((t, if kind == "start" { 1 } else { -1 }))
        })
        .collect();
    // Ends before starts at the same millisecond: touching is not overlapping.
    events.sort();
    let (mut now, mut most) = (0i32, 0i32);
    for (_, delta) in events {
        now += delta;
        most = most.max(now);
    }
    most as usize
}

fn started(log: &str) -> Vec<String> {
    let mut names: Vec<String> = log
        .lines()
        .filter_map(|l| l.strip_prefix("start "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect();
    names.sort();
    names
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test]
async fn twenty_checks_down_at_once_never_run_more_than_three_steps() {
    let dir = tempfile::tempdir().unwrap();
    let all = names("svc", 20);
    let (step, log) = logging_step(dir.path(), "0.4");
    for name in &all {
        up(dir.path(), name);
    }
    let config = format!(
        "checks:\n{}recovery:\n  limits:\n    max_concurrent_runs: 3\n    max_unhealthy: 100%\n  chains:\n{}",
        checks(dir.path(), &all, "web"),
        chain("web", &step, "")
    );
    let medic = Medic::start(&config).await;
    for name in &all {
        medic.wait_status(name, "healthy").await;
    }
    // A shared dependency fails: every check goes critical at once.
    for name in &all {
        down(dir.path(), name);
    }
    let served = wait_for("all 20 served", Duration::from_secs(90), || async {
        let text = read(&log);
        let ended = text.lines().filter(|l| l.starts_with("end ")).count();
        (ended == 20).then_some(text)
    })
    .await;
    assert_eq!(started(&served), {
        let mut n = all.clone();
        n.sort();
        n
    });
    let most = max_in_flight(&served);
    assert!(most <= 3, "{most} steps ran at once:\n{served}");
    assert!(most >= 2, "the limit was never reached: {most}");
    let held = medic
        .metric(r#"medic_recovery_held_total{chain="web",reason="concurrency"}"#)
        .await
        .unwrap_or(0.0);
    assert!(held >= 17.0, "held {held}");
    // Nothing left behind once the last run has recorded its end.
    wait_for("no run active", Duration::from_secs(10), || async {
        (medic
            .metric(r#"medic_recovery_runs_active{chain="web"}"#)
            .await
            == Some(0.0))
        .then_some(())
    })
    .await;
}

#[tokio::test]
async fn an_open_circuit_holds_every_run_and_heals_only_what_is_still_critical_once_it_closes() {
    let dir = tempfile::tempdir().unwrap();
    let all = names("svc", 20);
    let (step, log) = logging_step(dir.path(), "0.1");
    for name in &all {
        up(dir.path(), name);
    }
    // 500 ms probes: a trigger settles for two of them (1 s) before the circuit may open,
    // room enough for 12 checks failing together to be probed on a loaded machine.
    let config = format!(
        "checks:\n{}recovery:\n  limits:\n    max_unhealthy: 50%\n  chains:\n{}",
        checks_every(dir.path(), &all, "web", "500ms"),
        chain("web", &step, "")
    );
    let medic = Medic::start(&config).await;
    for name in &all {
        medic.wait_status(name, "healthy").await;
    }
    // 12 of 20 critical: more than half.
    for name in &all[..12] {
        down(dir.path(), name);
    }
    for name in &all[..12] {
        medic.wait_status(name, "critical").await;
    }
    medic
        .wait_metric("medic_recovery_circuit_open", 1.0, Duration::from_secs(10))
        .await;
    medic
        .wait_metric(
            r#"medic_recovery_held_total{chain="web",reason="circuit_open"}"#,
            12.0,
            Duration::from_secs(10),
        )
        .await;
    // Five more probes of each held check with the circuit open (2 s at least, reviews of
    // the holds among them), and every trigger they asked for handled: a run started by any
    // of them would be active now, or over and in the log.
    medic.wait_probes(&all[..12], 5).await;
    medic.recovery_barrier(None).await;
    assert_eq!(
        medic
            .metric(r#"medic_recovery_runs_active{chain="web"}"#)
            .await,
        Some(0.0),
        "a run started while the circuit was open"
    );
    assert_eq!(read(&log), "", "a step ran while the circuit was open");
    // 8 recover by themselves; the 4 still critical are healed, none of the 8 is touched.
    for name in &all[..8] {
        up(dir.path(), name);
    }
    let served = wait_for(
        "the 4 still critical healed",
        Duration::from_secs(30),
        || async {
            let text = read(&log);
            (text.lines().filter(|l| l.starts_with("end ")).count() == 4).then_some(text)
        },
    )
    .await;
    assert_eq!(
        medic.metric("medic_recovery_circuit_open").await,
        Some(0.0),
        "the circuit closed"
    );
    let mut want: Vec<String> = all[8..12].to_vec();
    want.sort();
    assert_eq!(started(&served), want, "{served}");
    // And no late run of the 8 either: no trigger is held any more (theirs were dropped, as
    // no longer needed), the 8 were probed healthy again, and what their probes asked was
    // handled; a run started meanwhile has ended into the log.
    wait_for("no trigger held", Duration::from_secs(10), || async {
        (medic.metric("medic_recovery_held_triggers").await == Some(0.0)).then_some(())
    })
    .await;
    medic.wait_probes(&all[..8], 3).await;
    medic.recovery_barrier(None).await;
    medic.wait_no_run_active("web").await;
    assert_eq!(started(&read(&log)), want);
}

#[tokio::test]
async fn the_rate_limit_is_a_sliding_window_and_a_chain_limit_sits_below_the_global_one() {
    let dir = tempfile::tempdir().unwrap();
    let rated = names("rate", 4);
    let narrow = names("one", 3);
    let (step, log) = logging_step(dir.path(), "0.3");
    for name in rated.iter().chain(&narrow) {
        up(dir.path(), name);
    }
    let config = format!(
        "checks:\n{}{}recovery:\n  limits:\n    max_runs: {{count: 2, within: 1h}}\n    max_unhealthy: 100%\n  chains:\n{}{}",
        checks(dir.path(), &rated, "rated"),
        checks(dir.path(), &narrow, "narrow"),
        chain("rated", &step, ""),
        chain("narrow", &step, "      max_concurrent_runs: 1\n"),
    );
    let medic = Medic::start(&config).await;
    for name in rated.iter().chain(&narrow) {
        medic.wait_status(name, "healthy").await;
    }
    for name in &rated {
        down(dir.path(), name);
    }
    // Two runs in the hour, then every further trigger is held for the rate.
    wait_for("two rated runs", Duration::from_secs(20), || async {
        (read(&log)
            .lines()
            .filter(|l| l.starts_with("end rate"))
            .count()
            == 2)
            .then_some(())
    })
    .await;
    medic
        .wait_metric(
            r#"medic_recovery_held_total{chain="rated",reason="rate"}"#,
            2.0,
            Duration::from_secs(10),
        )
        .await;
    // Six more probes of each rated check (1 s at least, a review of the holds among them),
    // each trigger handled, any run started meanwhile ended: a third run would be in the log.
    medic.wait_probes(&rated, 6).await;
    medic.recovery_barrier(None).await;
    medic.wait_no_run_active("rated").await;
    assert_eq!(
        read(&log)
            .lines()
            .filter(|l| l.starts_with("start rate"))
            .count(),
        2,
        "the rate limit let a third run start"
    );
    // The rate window is global: the narrow chain is held by it too.
    for name in &narrow {
        down(dir.path(), name);
    }
    medic
        .wait_metric(
            r#"medic_recovery_held_total{chain="narrow",reason="rate"}"#,
            1.0,
            Duration::from_secs(10),
        )
        .await;
    assert_eq!(
        read(&log)
            .lines()
            .filter(|l| l.starts_with("start one"))
            .count(),
        0
    );
}

#[tokio::test]
async fn a_chain_limit_below_the_global_one_runs_its_steps_one_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let narrow = names("one", 4);
    let (step, log) = logging_step(dir.path(), "0.3");
    for name in &narrow {
        up(dir.path(), name);
    }
    let config = format!(
        "checks:\n{}recovery:\n  limits:\n    max_concurrent_runs: 10\n    max_unhealthy: 100%\n  chains:\n{}",
        checks(dir.path(), &narrow, "narrow"),
        chain("narrow", &step, "      max_concurrent_runs: 1\n"),
    );
    let medic = Medic::start(&config).await;
    for name in &narrow {
        medic.wait_status(name, "healthy").await;
    }
    for name in &narrow {
        down(dir.path(), name);
    }
    let served = wait_for("all 4 served", Duration::from_secs(30), || async {
        let text = read(&log);
        (text.lines().filter(|l| l.starts_with("end ")).count() == 4).then_some(text)
    })
    .await;
    assert_eq!(max_in_flight(&served), 1, "{served}");
    assert!(
        medic
            .metric(r#"medic_recovery_held_total{chain="narrow",reason="concurrency"}"#)
            .await
            .unwrap_or(0.0)
            >= 3.0
    );
}

#[tokio::test]
async fn a_maintenance_window_holds_healing_until_it_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let (step, log) = logging_step(dir.path(), "0.1");
    let all = vec!["web-1".to_string(), "db-1".to_string()];
    for name in &all {
        up(dir.path(), name);
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let rfc = |t: i64| {
        let out = std::process::Command::new("date")
            .args(["-u", "-d", &format!("@{t}"), "+%Y-%m-%dT%H:%M:%SZ"])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let body = |window: &str| {
        format!(
            "checks:\n{}recovery:\n  chains:\n{}{window}",
            checks(dir.path(), &all, "web"),
            chain("web", &step, "")
        )
    };
    let window = format!(
        "maintenance:\n  - name: deploy\n    matchers: ['check=~\"web-.*\"']\n    between: [\"{}\", \"{}\"]\n",
        rfc(now - 60),
        rfc(now + 3600)
    );
    let medic = Medic::start(&body(&window)).await;
    medic
        .wait_metric(
            r#"medic_maintenance_active{window="deploy"}"#,
            1.0,
            Duration::from_secs(10),
        )
        .await;
    for name in &all {
        medic.wait_status(name, "healthy").await;
    }
    for name in &all {
        down(dir.path(), name);
    }
    // db-1 is outside the window's matchers: healed at once. web-1 is held.
    wait_for("db-1 healed", Duration::from_secs(20), || async {
        read(&log).contains("end db-1").then_some(())
    })
    .await;
    medic
        .wait_metric(
            r#"medic_recovery_held_total{chain="web",reason="maintenance"}"#,
            1.0,
            Duration::from_secs(10),
        )
        .await;
    assert!(!read(&log).contains("web-1"), "healed inside its window");
    // The window is removed (the work is done): the held check is healed.
    medic.write_config(&body(""));
    let (code, answer) = medic.post("/-/reload").await;
    assert_eq!(code, 200, "{answer}");
    wait_for(
        "web-1 healed after the window",
        Duration::from_secs(20),
        || async { read(&log).contains("end web-1").then_some(()) },
    )
    .await;
    assert_eq!(
        medic
            .metric(r#"medic_maintenance_active{window="deploy"}"#)
            .await,
        None,
        "a removed window takes its series along"
    );
}

#[tokio::test]
async fn shadow_mode_runs_nothing_changes_no_counter_and_active_then_acts_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (step, log) = logging_step(dir.path(), "0.1");
    let all = vec!["web".to_string()];
    up(dir.path(), "web");
    let body = |mode: &str| {
        format!(
            "checks:\n{}recovery:\n  chains:\n{}",
            checks(dir.path(), &all, "web"),
            chain("web", &step, &format!("      mode: {mode}\n"))
        )
    };
    let medic = Medic::start(&body("shadow")).await;
    medic.wait_status("web", "healthy").await;
    down(dir.path(), "web");
    medic
        .wait_metric(
            r#"medic_recovery_runs_total{chain="web",trigger="check",outcome="shadow"}"#,
            1.0,
            Duration::from_secs(20),
        )
        .await;
    let attempts = medic.json("/api/v1/recoveries?chain=web").await;
    let list = attempts["attempts"].as_array().expect("attempts");
    assert_eq!(list.len(), 1, "{attempts}");
    assert_eq!(list[0]["result"], "shadow", "{attempts}");
    assert!(
        list[0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("would run"),
        "{attempts}"
    );
    assert_eq!(
        medic
            .metric(r#"medic_recovery_attempts_total{chain="web",step="restart",result="shadow"}"#)
            .await,
        Some(1.0)
    );
    // One shadow run per incident, not one per probe: six more critical probes (1 s at
    // least), each one's trigger handled and any run it started ended (and counted).
    medic.wait_probes(&all, 6).await;
    medic.recovery_barrier(None).await;
    medic.wait_no_run_active("web").await;
    assert_eq!(
        medic
            .metric(r#"medic_recovery_runs_total{chain="web",trigger="check",outcome="shadow"}"#)
            .await,
        Some(1.0)
    );
    assert_eq!(read(&log), "", "shadow mode ran the action");
    // Counters did not move: switched to active, the step (max_attempts 1) runs at once.
    medic.write_config(&body("active"));
    let (code, answer) = medic.post("/-/reload").await;
    assert_eq!(code, 200, "{answer}");
    wait_for(
        "the step to run once active",
        Duration::from_secs(20),
        || async { read(&log).contains("end web").then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn a_pause_holds_the_matching_chain_survives_kill_9_and_ending_it_heals() {
    let dir = tempfile::tempdir().unwrap();
    let (step, log) = logging_step(dir.path(), "0.1");
    let web = vec!["w1".to_string()];
    let db = vec!["d1".to_string()];
    up(dir.path(), "w1");
    up(dir.path(), "d1");
    let config = format!(
        "checks:\n{}{}recovery:\n  chains:\n{}{}",
        checks(dir.path(), &web, "web"),
        checks(dir.path(), &db, "db"),
        chain("web", &step, ""),
        chain("db", &step, ""),
    );
    let mut medic = Medic::start(&config).await;
    let client = reqwest::Client::new();
    let made = client
        .post(medic.url("/api/v1/pauses"))
        .header("Content-Type", "application/json")
        .body(
            serde_json::json!({"matchers": ["chain=\"web\""], "duration": "1h", "reason": "deploy"})
                .to_string(),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let made: serde_json::Value = serde_json::from_str(&made).expect("the pause as JSON");
    let id = made["id"].as_str().expect("a pause id").to_string();
    medic.wait_status("w1", "healthy").await;
    medic.wait_status("d1", "healthy").await;
    down(dir.path(), "w1");
    down(dir.path(), "d1");
    // db is not paused: healed at once. web is held.
    wait_for("d1 healed", Duration::from_secs(20), || async {
        read(&log).contains("end d1").then_some(())
    })
    .await;
    medic
        .wait_metric(
            r#"medic_recovery_held_total{chain="web",reason="paused"}"#,
            1.0,
            Duration::from_secs(10),
        )
        .await;
    assert!(!read(&log).contains("w1"), "a paused chain was healed");

    // kill -9 and restart on the same store: the pause still holds from the first second.
    medic.signal(nix::sys::signal::Signal::SIGKILL);
    medic.wait_exit(Duration::from_secs(10)).await;
    medic.spawn(&[]);
    medic.wait_ready().await;
    medic
        .wait_metric(
            r#"medic_recovery_held_total{chain="web",reason="paused"}"#,
            1.0,
            Duration::from_secs(20),
        )
        .await;
    // Six more probes of w1 (1 s at least, a review of the holds among them), each trigger
    // handled: a run the restarted medic started would be active now, or over and in the log.
    medic.wait_probes(&web, 6).await;
    medic.recovery_barrier(None).await;
    assert_eq!(
        medic
            .metric(r#"medic_recovery_runs_active{chain="web"}"#)
            .await,
        Some(0.0),
        "the restart lifted the pause"
    );
    assert!(!read(&log).contains("w1"), "the restart lifted the pause");

    // Ending the pause lets the held check be healed.
    let ended = client
        .delete(medic.url(&format!("/api/v1/pauses/{id}")))
        .send()
        .await
        .unwrap();
    assert!(ended.status().is_success(), "{}", ended.status());
    wait_for(
        "w1 healed once the pause ended",
        Duration::from_secs(20),
        || async { read(&log).contains("end w1").then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn two_replicas_on_postgresql_share_the_global_limit() {
    let pg = crate::pg::PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let all = names("svc", 6);
    let (step, log) = logging_step(dir.path(), "1");
    for name in &all {
        up(dir.path(), name);
    }
    let config = format!(
        "checks:\n{}recovery:\n  limits:\n    max_concurrent_runs: 2\n    max_unhealthy: 100%\n  chains:\n{}",
        checks(dir.path(), &all, "web"),
        chain("web", &step, "")
    );
    let mut a = Medic::spawn_unready(&config, &[], Some(pg.url()));
    let mut b = Medic::spawn_unready(&config, &[], Some(pg.url()));
    a.wait_ready().await;
    b.wait_ready().await;
    for name in &all {
        a.wait_status(name, "healthy").await;
        b.wait_status(name, "healthy").await;
    }
    for name in &all {
        down(dir.path(), name);
    }
    let served = wait_for("all 6 served", Duration::from_secs(90), || async {
        let text = read(&log);
        (text.lines().filter(|l| l.starts_with("end ")).count() == 6).then_some(text)
    })
    .await;
    let most = max_in_flight(&served);
    assert!(
        most <= 2,
        "{most} steps ran at once across the replicas:\n{served}"
    );
    assert_eq!(started(&served).len(), 6, "each subject once: {served}");
    let held = a
        .metric(r#"medic_recovery_held_total{chain="web",reason="concurrency"}"#)
        .await
        .unwrap_or(0.0)
        + b.metric(r#"medic_recovery_held_total{chain="web",reason="concurrency"}"#)
            .await
            .unwrap_or(0.0);
    assert!(held >= 2.0, "held {held}");
}

const TOKEN: &str = "safe-token-4c1e";

fn alert_body() -> Vec<u8> {
    crate::support::testdata("alertmanager/alertmanager-0.25-firing.raw.json")
}

#[tokio::test]
async fn a_paused_alert_and_its_resends_start_nothing_until_the_pause_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (step, log) = logging_step(dir.path(), "0.1");
    let config = format!(
        "web:\n  webhook:\n    bearer_token: {TOKEN}\nrecovery:\n  chains:\n{}  routes:\n    - matchers: ['alertname=\"TargetDown\"']\n      chain: fix\n",
        chain("fix", &step, "").replace("{{ check }}", "alert")
    );
    let medic = Medic::start(&config).await;
    let client = reqwest::Client::new();
    let made = client
        .post(medic.url("/api/v1/pauses"))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .header("Content-Type", "application/json")
        .body(r#"{"matchers": ["alertname=\"TargetDown\""], "duration": "1h", "reason": "maintenance by hand"}"#)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let made: serde_json::Value = serde_json::from_str(&made).expect("the pause as JSON");
    let id = made["id"].as_str().expect("a pause id").to_string();
    // The alert and Alertmanager's resends: held once, nothing runs.
    for _ in 0..3 {
        let r = crate::support::alert_post(&medic, TOKEN, alert_body())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let answer: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
        assert_eq!(answer["held"].as_array().map(Vec::len), Some(1), "{answer}");
    }
    assert_eq!(
        medic
            .metric(r#"medic_recovery_held_total{chain="fix",reason="paused"}"#)
            .await,
        Some(1.0),
        "one held trigger, however often it is resent"
    );
    // Held for a second (the manager reviews every hold each second), then every hold looked
    // at again now (a reload applies the config and reviews the holds), then one more resend,
    // answered by the manager after that review: still held, and no run of the chain in
    // progress or over. The second is how long the pause is shown to hold; the review and the
    // answer after it are what make the absence below mean something.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (code, answer) = medic.post("/-/reload").await;
    assert_eq!(code, 200, "{answer}");
    let r = crate::support::alert_post(&medic, TOKEN, alert_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let answer: serde_json::Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(answer["held"].as_array().map(Vec::len), Some(1), "{answer}");
    medic.wait_no_run_active("fix").await;
    assert_eq!(read(&log), "", "a paused alert ran its step");
    // The pause ends: the alert, still firing, is healed once.
    let ended = client
        .delete(medic.url(&format!("/api/v1/pauses/{id}")))
        .header("Authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert!(ended.status().is_success(), "{}", ended.status());
    wait_for(
        "the held alert to be healed",
        Duration::from_secs(20),
        || async { read(&log).contains("end ").then_some(()) },
    )
    .await;
    assert_eq!(started(&read(&log)).len(), 1);
}

#[tokio::test]
async fn a_maintenance_window_holds_an_alert_and_a_resolved_alert_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (step, log) = logging_step(dir.path(), "0.1");
    let config = format!(
        "web:\n  webhook:\n    bearer_token: {TOKEN}\nrecovery:\n  chains:\n{}  routes:\n    - matchers: ['alertname=\"TargetDown\"']\n      chain: fix\nmaintenance:\n  - name: all_day\n    matchers: ['chain=\"fix\"']\n    schedule: {{start: \"00:00\", duration: 1w}}\n",
        chain("fix", &step, "").replace("{{ check }}", "alert")
    );
    let medic = Medic::start(&config).await;
    let r = crate::support::alert_post(&medic, TOKEN, alert_body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    medic
        .wait_metric(
            r#"medic_recovery_held_total{chain="fix",reason="maintenance"}"#,
            1.0,
            Duration::from_secs(10),
        )
        .await;
    medic
        .wait_metric("medic_recovery_held_triggers", 1.0, Duration::from_secs(5))
        .await;
    let resolved = crate::support::testdata("alertmanager/alertmanager-0.25-resolved.raw.json");
    let r = crate::support::alert_post(&medic, TOKEN, resolved)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    wait_for(
        "the held alert dropped",
        Duration::from_secs(10),
        || async {
            (medic.metric("medic_recovery_held_triggers").await == Some(0.0)).then_some(())
        },
    )
    .await;
    assert_eq!(read(&log), "", "nothing ran inside the window");
}

/// `medic recover` against a config and store, as a person runs it.
fn recover(config: &Path, state: &str, args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new(crate::support::MEDIC)
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

#[tokio::test]
async fn manual_runs_obey_windows_and_pauses_unless_forced_and_ignore_the_limits() {
    let dir = tempfile::tempdir().unwrap();
    let (step, log) = logging_step(dir.path(), "0.1");
    let state = format!("sqlite://{}/medic.db", dir.path().display());
    let config_path = dir.path().join("medic.yml");
    let body = |extra: &str| {
        format!(
            "recovery:\n  limits: {{max_runs: {{count: 1, within: 1h}}}}\n  chains:\n{}{extra}",
            chain("fix", &step, "")
                .replace("max_attempts: 1", "max_attempts: 5")
                .replace("cooldown: 1h", "cooldown: 0s")
                .replace("{{ check }}", "by-hand")
        )
    };
    // A window over the chain: held, and said why.
    std::fs::write(
        &config_path,
        body("maintenance:\n  - name: deploy\n    matchers: ['chain=\"fix\"']\n    schedule: {start: \"00:00\", duration: 1w}\n"),
    )
    .unwrap();
    let (code, out) = recover(&config_path, &state, &["fix"]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("maintenance window \"deploy\""), "{out}");
    assert_eq!(read(&log), "", "{out}");
    // --force runs it anyway, and says so.
    let (_, out) = recover(&config_path, &state, &["fix", "--force"]);
    assert!(out.contains("--force: running anyway"), "{out}");
    assert!(read(&log).contains("end "), "{out}");
    // A pause made on a running medic holds a manual run on the same store.
    std::fs::write(&config_path, body("")).unwrap();
    let mut medic = Medic::spawn_unready(&body(""), &[], Some(state.clone()));
    medic.wait_ready().await;
    let made = reqwest::Client::new()
        .post(medic.url("/api/v1/pauses"))
        .header("Content-Type", "application/json")
        .body(r#"{"duration": "1h", "reason": "hands off"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(made.status().as_u16(), 201);
    medic.signal(nix::sys::signal::Signal::SIGTERM);
    medic.wait_exit(Duration::from_secs(20)).await;
    let (code, out) = recover(&config_path, &state, &["fix"]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("held by pause") && out.contains("hands off"),
        "{out}"
    );
    // Forced, it runs twice in a row although max_runs allows one an hour: limits and the
    // circuit do not hold manual runs.
    let before = started(&read(&log)).len();
    let (_, out1) = recover(&config_path, &state, &["fix", "--force"]);
    let (_, out2) = recover(&config_path, &state, &["fix", "--force"]);
    assert!(
        out1.contains("limits and the circuit breaker do not hold manual runs"),
        "{out1}"
    );
    assert_eq!(started(&read(&log)).len(), before + 2, "{out1}\n{out2}");
}
