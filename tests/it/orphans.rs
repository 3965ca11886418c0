//! No orphaned step: a step's process group never outlives medic's record of it (a restarted
//! medic ends it), descendants that escaped their group with `setsid` die with their probe or
//! step, and medic, as a child subreaper, leaves no zombies.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::{script, wait_for, wait_process_gone, Medic};

/// A process that exists and is not a zombie.
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

fn read_pids(path: &Path) -> Vec<i32> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// A plugin or step that starts a daemon in its own session (outside its process group, its
/// output away from medic's pipes), notes the daemon's pid in `pids`, and ends at once.
fn setsid_daemon(dir: &Path, name: &str, pids: &Path, last_words: &str) -> std::path::PathBuf {
    script(
        dir,
        name,
        &format!(
            "n=$(wc -l < {pids} 2>/dev/null || echo 0)\n\
             setsid sh -c 'echo $$ >> {pids}; exec sleep 300' </dev/null >/dev/null 2>&1 &\n\
             # Wait for the daemon to note itself, so the probe ends after it is running.\n\
             while [ \"$(wc -l < {pids} 2>/dev/null || echo 0)\" = \"$n\" ]; do sleep 0.02; done\n\
             {last_words}",
            pids = pids.display(),
        ),
    )
}

/// Zombies whose parent is `pid`.
fn zombie_children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.first() == Some(&"Z") && fields.get(1) == Some(&pid.to_string().as_str()) {
            out.push(child);
        }
    }
    out
}

/// The parent of a process (`/proc/PID/stat` field 4).
fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// A medic whose only step hangs, with the step's shell and its child running and the group
/// recorded in the attempt: (medic, its supervisor's pid, the shell's, the child's).
async fn medic_mid_step(dir: &Path) -> (Medic, i32, i32, i32) {
    let (leader, child) = (dir.join("leader"), dir.join("child"));
    let hang = script(
        dir,
        "hang",
        &format!(
            "sleep 300 &\necho $! > {child}\necho $$ > {leader}.tmp && mv {leader}.tmp {leader}\nwait",
            child = child.display(),
            leader = leader.display(),
        ),
    );
    let down = script(dir, "down", "echo 'CRITICAL - down'; exit 2");
    let medic = Medic::start(&format!(
        r#"checks:
  - name: svc
    interval: 200ms
    recovery: fix
    command: {{program: '{down}'}}
recovery:
  chains:
    fix:
      steps:
        - name: hang
          exec: {{program: '{hang}'}}
          timeout: 10m
          cooldown: 1h
"#,
        down = down.display(),
        hang = hang.display(),
    ))
    .await;
    let shell = wait_for("the step to start", Duration::from_secs(20), || async {
        read_pids(&leader).first().copied()
    })
    .await;
    let child_pid = read_pids(&child)[0];
    // The group reaches the record while the step runs: the supervisor leads it.
    let pool = sqlx::SqlitePool::connect(&format!("{}?mode=ro", medic.state_url))
        .await
        .unwrap();
    let recorded: i64 = wait_for(
        "the step's process group in its record",
        Duration::from_secs(10),
        || async {
            sqlx::query_scalar::<_, Option<i64>>(
                "SELECT pgid FROM recovery_attempts WHERE result IS NULL AND boot_id IS NOT NULL AND leader_start_ticks IS NOT NULL",
            )
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten()
            .flatten()
        },
    )
    .await;
    pool.close().await;
    let supervisor = ppid(shell).expect("the shell's parent");
    assert_eq!(
        recorded,
        i64::from(supervisor),
        "the group is led by the step's supervisor"
    );
    (medic, supervisor, shell, child_pid)
}

async fn interrupted_message(medic: &Medic) -> serde_json::Value {
    let v = medic.json("/api/v1/recoveries?chain=fix").await;
    assert_eq!(v["attempts"][0]["result"], "failure", "{v}");
    v["attempts"][0]["message"].clone()
}

#[tokio::test]
async fn kill_9_mid_step_takes_the_steps_processes_along_and_the_restart_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (mut medic, supervisor, shell, child) = medic_mid_step(dir.path()).await;
    medic.signal(Signal::SIGKILL);
    medic.wait_exit(Duration::from_secs(10)).await;
    let killed = std::time::Instant::now();
    for pid in [shell, child, supervisor] {
        wait_process_gone(pid, "a step process to die with medic").await;
    }
    assert!(
        killed.elapsed() < Duration::from_secs(2),
        "{:?}",
        killed.elapsed()
    );
    medic.spawn(&[]);
    medic.wait_ready().await;
    assert_eq!(
        interrupted_message(&medic).await,
        format!("interrupted: medic stopped during this attempt; its process group {supervisor} had already ended")
    );
}

#[tokio::test]
async fn when_the_supervisor_died_with_medic_the_restart_kills_what_is_left_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (mut medic, supervisor, shell, child) = medic_mid_step(dir.path()).await;
    // A supervisor that cannot act (stopped, then killed after medic): the step's shell and
    // its child outlive both, as after an OOM kill of the whole service.
    let supervisor_pid = nix::unistd::Pid::from_raw(supervisor);
    nix::sys::signal::kill(supervisor_pid, Signal::SIGSTOP).unwrap();
    medic.signal(Signal::SIGKILL);
    medic.wait_exit(Duration::from_secs(10)).await;
    nix::sys::signal::kill(supervisor_pid, Signal::SIGKILL).unwrap();
    wait_process_gone(supervisor, "the supervisor to be killed").await;
    assert!(
        alive(shell) && alive(child),
        "the step should outlive medic and its supervisor here"
    );
    medic.spawn(&[]);
    medic.wait_ready().await;
    wait_process_gone(shell, "the step's shell to be killed").await;
    wait_process_gone(child, "the step's child to be killed").await;
    assert_eq!(
        interrupted_message(&medic).await,
        format!("interrupted: medic stopped during this attempt; its process group {supervisor} had ended, but 2 of its processes were still running and were killed")
    );
}

#[tokio::test]
async fn a_plugins_setsid_daemon_does_not_outlive_its_probe() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("daemons");
    let plugin = setsid_daemon(dir.path(), "plugin", &pids, "echo 'OK - fine'");
    let medic = Medic::start(&format!(
        "checks:\n  - name: daemonic\n    interval: 300ms\n    command: {{program: '{}'}}\n",
        plugin.display()
    ))
    .await;
    let started = wait_for("four probes", Duration::from_secs(30), || async {
        let p = read_pids(&pids);
        (p.len() >= 4).then_some(p)
    })
    .await;
    assert_eq!(medic.status("daemonic").await, "healthy");
    // Every daemon of a finished probe dies: the newest may belong to a probe still running.
    for pid in &started[..4] {
        wait_process_gone(*pid, "a probe's setsid daemon to be killed").await;
    }
    let survivors: Vec<i32> = started[..4].iter().copied().filter(|p| alive(*p)).collect();
    assert_eq!(survivors, Vec::<i32>::new(), "4 probes, daemons survived");
}

#[tokio::test]
async fn an_exec_steps_setsid_daemon_does_not_outlive_its_step() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("daemons");
    let step = setsid_daemon(dir.path(), "step", &pids, "exit 0");
    let down = script(dir.path(), "down", "echo 'CRITICAL - down'; exit 2");
    let _medic = Medic::start(&format!(
        r#"checks:
  - name: svc
    interval: 200ms
    recovery: fix
    command: {{program: '{down}'}}
recovery:
  chains:
    fix:
      verify_timeout: 1s
      steps:
        - name: daemon
          exec: {{program: '{step}'}}
          timeout: 30s
          cooldown: 1h
"#,
        down = down.display(),
        step = step.display(),
    ))
    .await;
    let daemon = wait_for("the step's daemon", Duration::from_secs(30), || async {
        read_pids(&pids).first().copied()
    })
    .await;
    wait_process_gone(daemon, "the step's setsid daemon to be killed").await;
}

#[tokio::test]
async fn orphans_reparented_to_medic_are_reaped() {
    let dir = tempfile::tempdir().unwrap();
    let count = dir.path().join("probes");
    // Each probe leaves an orphan (its parent subshell exits at once) that ends a moment
    // later: with medic as subreaper it becomes medic's child, and a zombie unless reaped.
    let plugin = script(
        dir.path(),
        "orphaning",
        &format!(
            "(sleep 0.2 </dev/null >/dev/null 2>&1 &)\n(sleep 0.3 </dev/null >/dev/null 2>&1 &)\necho x >> {}\necho 'OK'",
            count.display()
        ),
    );
    let medic = Medic::start(&format!(
        "checks:\n  - name: orphaning\n    interval: 100ms\n    command: {{program: '{}'}}\n",
        plugin.display()
    ))
    .await;
    let pid = medic.pid();
    wait_for("ten probes", Duration::from_secs(30), || async {
        (read_pids_lines(&count) >= 10).then_some(())
    })
    .await;
    // Orphans keep ending while probes run; zombies that are never reaped pile up instead.
    wait_for(
        "no zombie children of medic",
        Duration::from_secs(10),
        || async { zombie_children(pid).is_empty().then_some(()) },
    )
    .await;
    let mut most = 0;
    for _ in 0..20 {
        most = most.max(zombie_children(pid).len());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // About 20 orphans end each second and a sweep runs at most every 250 ms: a handful wait
    // at any moment; unreaped, they would be hundreds by now.
    assert!(most <= 12, "{most} zombies of medic at once");
}

fn read_pids_lines(path: &Path) -> usize {
    std::fs::read_to_string(path)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}
