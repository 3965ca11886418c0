//! Safe healing with the real binary and real child processes: the concurrency and rate limits,
//! the circuit breaker, maintenance windows and shadow mode. Steps log their own start and end
//! times, so "never more than N at once" is measured from what really ran.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{script, wait_for, Medic};

/// A command check per name, healthy while `DIR/up-NAME` exists.
fn checks(dir: &Path, names: &[String], chain: &str) -> String {
    let probe = script(
        dir,
        "probe.sh",
        r#"if [ -e "$1" ]; then echo "OK up"; exit 0; fi; echo "CRITICAL down"; exit 2"#,
    );
    names
        .iter()
        .map(|name| {
            format!(
                "  - name: {name}\n    interval: 200ms\n    recovery: {chain}\n    command: {{program: '{}', args: ['{}']}}\n",
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
    let config = format!(
        "checks:\n{}recovery:\n  limits:\n    max_unhealthy: 50%\n  chains:\n{}",
        checks(dir.path(), &all, "web"),
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
    // Several probe intervals with the circuit open: nothing ran.
    tokio::time::sleep(Duration::from_secs(2)).await;
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
    // And no late run of the 8 either.
    tokio::time::sleep(Duration::from_secs(1)).await;
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
    tokio::time::sleep(Duration::from_secs(1)).await;
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
    // One shadow run per incident, not one per probe.
    tokio::time::sleep(Duration::from_secs(1)).await;
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
