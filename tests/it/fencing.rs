//! Fencing: a replica cut off from PostgreSQL kills its running step before the other replica
//! may take the run over, so two steps of one subject never run at once; and every action gets a
//! fencing token that only grows (exec: `MEDIC_FENCING_TOKEN`, http and notify:
//! `X-Medic-Fencing-Token`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::pg::PgCluster;
use crate::support::{alert_post, script, testdata, wait_for, Medic, MEDIC};

const TOKEN: &str = "fencing-token-8c1e";

fn epoch_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A TCP proxy on loopback that can be cut: every proxied connection dropped, new ones closed
/// as soon as they are accepted; and restored.
struct Proxy {
    port: u16,
    open: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(true));
        let (cut, _) = watch::channel(0u64);
        let (is_open, cuts) = (open.clone(), cut.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if !is_open.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let mut cut_seen = cuts.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_seen.changed() => {}
                    }
                    // Both sockets drop here.
                });
            }
        });
        Proxy {
            port,
            open,
            cut,
            task,
        }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cut.send_modify(|n| *n += 1);
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One line a step wrote: `start|end <epoch seconds> <step> <pid> [token]`.
#[derive(Debug)]
struct Line {
    kind: String,
    at: f64,
    step: String,
    pid: i32,
    token: Option<i64>,
}

fn lines(path: &std::path::Path) -> Vec<Line> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some(Line {
                kind: f.first()?.to_string(),
                at: f.get(1)?.parse().ok()?,
                step: f.get(2)?.to_string(),
                pid: f.get(3)?.parse().ok()?,
                token: f.get(4).and_then(|t| t.parse().ok()),
            })
        })
        .collect()
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z "))
        .unwrap_or(false)
}

#[tokio::test]
async fn a_replica_cut_from_postgres_kills_its_step_before_the_other_takes_over() {
    let pg = PgCluster::start();
    let proxy = Proxy::start(pg.port).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("steps");
    let step = |name: &str, sleep: &str| {
        script(
            dir.path(),
            name,
            &format!(
                "echo \"start $(date +%s.%N) $MEDIC_STEP $$ $MEDIC_FENCING_TOKEN\" >> {log}\n{sleep}\necho \"end $(date +%s.%N) $MEDIC_STEP $$\" >> {log}",
                log = log.display()
            ),
        )
    };
    let restart = step("restart", "sleep 45");
    let failover = step("failover", "sleep 0.2");
    let config = format!(
        r#"web:
  webhook:
    bearer_token: {TOKEN}
recovery:
  chains:
    fix:
      steps:
        - name: restart
          exec: {{program: '{}'}}
          timeout: 2m
          cooldown: 1h
        - name: failover
          exec: {{program: '{}'}}
          cooldown: 1h
  routes:
    - matchers: ['alertname="TargetDown"']
      chain: fix
"#,
        restart.display(),
        failover.display()
    );
    let through_proxy = format!(
        "postgres://medic:{}@127.0.0.1:{}/postgres",
        pg.password, proxy.port
    );
    let mut a = Medic::spawn_unready(&config, &[], Some(through_proxy));
    let mut b = Medic::spawn_unready(&config, &[], Some(pg.url()));
    a.wait_ready().await;
    b.wait_ready().await;
    let body = testdata("alertmanager/alertmanager-0.25-firing.raw.json");
    let r = alert_post(&a, TOKEN, body.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let a_step = wait_for("A's step to start", Duration::from_secs(20), || async {
        lines(&log).into_iter().find(|l| l.step == "restart")
    })
    .await;
    assert!(alive(a_step.pid));
    // A renews the run's lease (every 5 s) before the cut, so the lease is A's own rather
    // than begin_run's: seen in the store, not assumed from the time passed.
    let pool = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    let lease = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT lease_until_ms FROM recovery_runs WHERE finished_ms IS NULL",
        )
        .fetch_one(&pool)
        .await
        .expect("A's run in the store")
    };
    let begun = lease().await;
    wait_for(
        "A to renew its run's lease",
        Duration::from_secs(20),
        || async { (lease().await > begun).then_some(()) },
    )
    .await;
    pool.close().await;
    let cut_at = epoch_seconds();
    proxy.cut();

    // A fences itself: its step is killed within 2/3 of the lease of its last renewal.
    let a_dead_at = wait_for(
        "A to kill its step after losing PostgreSQL",
        Duration::from_secs(14),
        || async { (!alive(a_step.pid)).then(epoch_seconds) },
    )
    .await;

    // Alertmanager keeps resending to B; B takes over only after lease + margin.
    let b_step = wait_for(
        "B to take over and run the next step",
        Duration::from_secs(60),
        || async {
            let _ = alert_post(&b, TOKEN, body.clone()).send().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            lines(&log).into_iter().find(|l| l.step == "failover")
        },
    )
    .await;
    let all = lines(&log);
    assert!(
        !all.iter().any(|l| l.kind == "end" && l.step == "restart"),
        "A's step ran to its end: {all:?}"
    );
    assert!(
        a_dead_at < b_step.at,
        "A's step was still running when B started the next one: killed by {a_dead_at}, B began at {}",
        b_step.at
    );
    assert!(
        a_dead_at - cut_at < 12.0,
        "A took {}s to fence (fences at 10s without a renewal)",
        a_dead_at - cut_at
    );
    // A's last renewal was at most one heartbeat (5 s) before the cut: lapse + margin is at
    // least 15 s after it.
    assert!(
        b_step.at - cut_at >= 14.5,
        "B acted {}s after the cut, before lease + margin",
        b_step.at - cut_at
    );
    eprintln!(
        "after the cut: A's step killed at {:.2}s, B's step began at {:.2}s",
        a_dead_at - cut_at,
        b_step.at - cut_at
    );
    let (ta, tb) = (
        a_step.token.expect("A's token"),
        b_step.token.expect("B's token"),
    );
    assert!(tb > ta, "tokens grow: A had {ta}, B has {tb}");

    // When A has the store back it records what happened to its attempt.
    proxy.restore();
    let message = wait_for(
        "A to record its fenced attempt",
        Duration::from_secs(60),
        || async {
            let v = b.json("/api/v1/recoveries?chain=fix").await;
            v["attempts"]
                .as_array()?
                .iter()
                .find(|x| x["step"] == "restart")
                .and_then(|x| x["message"].as_str().map(String::from))
                .filter(|m| m.starts_with("fenced"))
        },
    )
    .await;
    assert_eq!(message, "fenced: lost the state store for 10s; step killed");
    let v = b.json("/api/v1/recoveries?chain=fix").await;
    let restart_row = v["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["step"] == "restart")
        .unwrap()
        .clone();
    assert_eq!(restart_row["result"], "failure", "{v}");
    assert_eq!(restart_row["fencing_token"], ta, "{v}");
    drop(b);
    drop(a);
}

/// An HTTP server that records each request's head and answers 200.
async fn recorder() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf).into_owned());
                let _ = stream
                    .write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    )
                    .await;
            });
        }
    });
    (port, heads)
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

#[tokio::test]
async fn every_step_gets_its_runs_fencing_token() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    let (port, heads) = recorder().await;
    // The exec step notes its token and fails, so the notify and http steps run too.
    let exec = script(
        dir.path(),
        "exec",
        &format!(
            "echo \"$MEDIC_FENCING_TOKEN\" >> {}\nexit 1",
            tokens.display()
        ),
    );
    let config = dir.path().join("medic.yml");
    std::fs::write(
        &config,
        format!(
            r#"recovery:
  chains:
    fix:
      steps:
        - name: exec
          exec: {{program: '{}'}}
          cooldown: 1ms
          max_attempts: 10
        - name: tell
          notify: {{url: 'http://127.0.0.1:{port}/notify', headers: {{X-Medic-Fencing-Token: '0'}}}}
          cooldown: 1ms
          max_attempts: 10
        - name: http
          http: {{url: 'http://127.0.0.1:{port}/fix'}}
          cooldown: 1ms
          max_attempts: 10
"#,
            exec.display()
        ),
    )
    .unwrap();
    let state = format!("sqlite://{}/m.db", dir.path().display());
    let recover = || {
        let (config, state) = (config.clone(), state.clone());
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(MEDIC)
                .args(["recover", "fix", "--config.file"])
                .arg(&config)
                .args(["--state.url", &state])
                .output()
                .expect("run medic recover")
        })
    };
    for _ in 0..2 {
        let out = recover().await.unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{text}");
        assert!(text.contains("outcome: recovered"), "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await; // past the 1 ms cooldowns
    }
    let from_exec: Vec<i64> = std::fs::read_to_string(&tokens)
        .unwrap()
        .lines()
        .map(|l| l.trim().parse().expect("a number in MEDIC_FENCING_TOKEN"))
        .collect();
    let heads = heads.lock().unwrap().clone();
    let of = |path: &str| -> Vec<i64> {
        heads
            .iter()
            .filter(|h| {
                h.starts_with(&format!("POST {path} ")) || h.starts_with(&format!("GET {path} "))
            })
            .map(|h| {
                let tokens: Vec<&str> = h
                    .lines()
                    .filter(|l| {
                        l.split_once(':').is_some_and(|(n, _)| {
                            n.trim().eq_ignore_ascii_case("x-medic-fencing-token")
                        })
                    })
                    .collect();
                assert_eq!(tokens.len(), 1, "one token header, medic's: {h}");
                header(h, "X-Medic-Fencing-Token").unwrap().parse().unwrap()
            })
            .collect()
    };
    assert_eq!(from_exec.len(), 2, "{from_exec:?}");
    assert!(from_exec[1] > from_exec[0], "grows: {from_exec:?}");
    assert_eq!(of("/notify"), from_exec, "notify: {heads:?}");
    assert_eq!(of("/fix"), from_exec, "http: {heads:?}");
}
