//! Replicas that share the work (`--cluster.shard auto`) on one real PostgreSQL: three split
//! the checks (each probed by exactly one, or K with replication); `kill -9` of one moves its
//! checks to the others within the bound, and its restart takes its share back; a replica cut
//! from PostgreSQL (a TCP proxy the test cuts) leaves no check unprobed past the bound and
//! starts no step; a confirmed step waits for the second replica, and still runs once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::pg::PgCluster;
use crate::support::{script, wait_for, Medic, Target};

const CHECKS: usize = 30;
/// The SPEC's bound: a dead replica's checks are probed by the others within 10 s of its last
/// renewal; no check goes unprobed longer than 10 s plus its interval (1 s here).
const BOUND: Duration = Duration::from_secs(11);
/// What the test itself adds to a measurement: polling every 100 ms, a probe's own time.
const SLACK: Duration = Duration::from_millis(1500);

fn checks_config(target: &Target, extra: &str) -> String {
    let mut config = String::from("checks:\n");
    for i in 0..CHECKS {
        config.push_str(&format!(
            "  - name: c{i}\n    interval: 1s\n    timeout: 500ms\n    http: {{url: '{}'}}\n",
            target.url(&format!("/c{i}"))
        ));
    }
    config.push_str(extra);
    config
}

fn spawn(config: &str, pg: &PgCluster, extra: &[&str]) -> Medic {
    let mut args = vec!["--cluster.shard", "auto"];
    args.extend_from_slice(extra);
    Medic::spawn_unready(config, &args, Some(pg.url()))
}

/// The checks a replica probes now (its `/api/v1/health`).
async fn owned(m: &Medic) -> BTreeSet<String> {
    let v = m.json("/api/v1/health").await;
    v["checks"]
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// Waits until the replicas' checks are split: each check owned by exactly `k` of them, and
/// every replica owns some.
async fn wait_split(replicas: &[&Medic], k: usize) -> Vec<BTreeSet<String>> {
    wait_for(
        "the checks to be split",
        Duration::from_secs(30),
        || async {
            let mut sets = Vec::new();
            for m in replicas {
                // The c checks: the ones every test has, spread over the replicas.
                let set: BTreeSet<String> = owned(m)
                    .await
                    .into_iter()
                    .filter(|c| c.starts_with('c'))
                    .collect();
                sets.push(set);
            }
            let mut count: BTreeMap<String, usize> = BTreeMap::new();
            for set in &sets {
                for c in set {
                    *count.entry(c.clone()).or_default() += 1;
                }
            }
            let split = count.len() == CHECKS
                && count.values().all(|n| *n == k)
                && sets.iter().all(|s| !s.is_empty());
            split.then_some(sets)
        },
    )
    .await
}

/// Hit counts of every check's path on the target.
fn hits(target: &Target) -> BTreeMap<String, usize> {
    target.hit_counter()()
}

#[tokio::test]
async fn three_replicas_split_the_checks_and_a_killed_ones_move_within_the_bound() {
    let pg = PgCluster::start();
    let target = Target::start().await;
    let config = checks_config(&target, "");
    let mut replicas: Vec<Medic> = (0..3).map(|_| spawn(&config, &pg, &[])).collect();
    for m in &mut replicas {
        m.wait_ready().await;
    }
    let sets = wait_split(&replicas.iter().collect::<Vec<_>>(), 1).await;
    let v = replicas[0].json("/api/v1/cluster").await;
    assert_eq!(v["members"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(v["shard"], "auto");
    assert_eq!(v["checks_owned"], sets[0].len(), "{v}");
    assert!(v["members"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["self"] == true));
    assert_eq!(replicas[1].metric("medic_cluster_members").await, Some(3.0));
    let (code, page) = replicas[0].get("/").await;
    assert_eq!(code, 200);
    assert!(
        page.contains("<h2>Replicas</h2>") && page.contains("(this one)"),
        "{page}"
    );
    let owned_metric = replicas[2].metric("medic_cluster_owned_checks").await;
    assert_eq!(owned_metric, Some(sets[2].len() as f64));

    // kill -9 of the third: its checks are probed by the others within the bound. First it
    // probes each of its checks a few times, so their history is in the store (results are
    // written every 200 ms; the third probe of a 1 s check comes after the first's write).
    let theirs = sets[2].clone();
    let split = hits(&target);
    wait_for(
        "the third replica to probe its checks three times",
        Duration::from_secs(10),
        || async {
            let now = hits(&target);
            theirs
                .iter()
                .all(|c| now.get(c).copied().unwrap_or(0) >= split.get(c).copied().unwrap_or(0) + 3)
                .then_some(())
        },
    )
    .await;
    let mut dead = replicas.pop().unwrap();
    dead.signal(nix::sys::signal::Signal::SIGKILL);
    let killed = Instant::now();
    dead.wait_exit(Duration::from_secs(10)).await;
    let before = hits(&target);
    let moved = wait_for(
        "the dead replica's checks to be probed by the others",
        BOUND + SLACK + Duration::from_secs(5),
        || async {
            let now = hits(&target);
            theirs
                .iter()
                .all(|c| now.get(c) > before.get(c))
                .then(Instant::now)
        },
    )
    .await;
    let took = moved - killed;
    assert!(took <= BOUND + SLACK, "handover took {took:?}");
    let sets = wait_split(&replicas.iter().collect::<Vec<_>>(), 1).await;
    assert_eq!(sets[0].len() + sets[1].len(), CHECKS);
    // A moved check's history came along from the store: its new owner knows more results
    // than it has taken itself since the kill.
    let moved_check = theirs.iter().next().unwrap();
    let heir = &replicas[usize::from(!sets[0].contains(moved_check))];
    let detail = wait_for(
        "a moved check's history from the store",
        Duration::from_secs(10),
        || async {
            let v = heir.json(&format!("/api/v1/checks/{moved_check}")).await;
            let known = v["trend"]["runs"].as_u64().unwrap_or(0) as usize;
            let own = hits(&target).get(moved_check).copied().unwrap_or(0)
                - before.get(moved_check).copied().unwrap_or(0);
            (known > own).then_some(v)
        },
    )
    .await;
    eprintln!(
        "moved check {moved_check}: {} results known to its new owner",
        detail["trend"]["runs"]
    );
    let handovers = replicas[0]
        .metric("medic_cluster_handovers_total")
        .await
        .unwrap_or(0.0)
        + replicas[1]
            .metric("medic_cluster_handovers_total")
            .await
            .unwrap_or(0.0);
    assert!(handovers >= 2.0, "{handovers}");
    eprintln!(
        "handover of {} checks after kill -9: {took:?}",
        theirs.len()
    );

    // Its restart: it takes about a third back, and its checks' history comes from the store.
    dead.spawn(&["--cluster.shard", "auto"]);
    dead.wait_ready().await;
    replicas.push(dead);
    let sets = wait_split(&replicas.iter().collect::<Vec<_>>(), 1).await;
    assert!(!sets[2].is_empty());
    let back = sets[2].iter().next().unwrap().clone();
    let detail = wait_for(
        "a returned check's history",
        Duration::from_secs(10),
        || async {
            let v = replicas[2].json(&format!("/api/v1/checks/{back}")).await;
            (v["history"].as_array().map_or(0, Vec::len) > 3).then_some(v)
        },
    )
    .await;
    assert!(
        detail["trend"]["runs"].as_u64().unwrap_or(0) > 3,
        "{detail}"
    );
}

#[tokio::test]
async fn with_replication_two_each_check_is_probed_by_two_and_still_healed_once() {
    let pg = PgCluster::start();
    let (target, failing) = (Target::start().await, Target::start().await);
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let step = script(
        dir.path(),
        "step",
        &format!("echo \"$1\" >> {}", ran.display()),
    );
    let extra = format!(
        r#"  - name: r0
    interval: 1s
    recovery: fix
    http: {{url: '{}'}}
recovery:
  chains:
    fix:
      steps:
        - name: step
          exec: {{program: '{}', args: ['{{{{port}}}}']}}
          cooldown: 1h
"#,
        failing.url("/r0"),
        step.display()
    );
    let config = checks_config(&target, &extra);
    let mut replicas: Vec<Medic> = (0..3)
        .map(|_| spawn(&config, &pg, &["--cluster.replication", "2"]))
        .collect();
    for m in &mut replicas {
        m.wait_ready().await;
    }
    wait_split(&replicas.iter().collect::<Vec<_>>(), 2).await;
    failing.set(500, "down", Duration::ZERO);
    wait_for("the step to run", Duration::from_secs(20), || async {
        std::fs::read_to_string(&ran).ok().filter(|s| !s.is_empty())
    })
    .await;
    for m in &replicas {
        m.wait_no_run_active("fix").await;
    }
    // Both owners keep seeing it critical; the step is in its cooldown in the shared store.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let lines = std::fs::read_to_string(&ran).unwrap();
    assert_eq!(
        lines.lines().count(),
        1,
        "the step ran more than once:\n{lines}"
    );
}

/// A TCP proxy between a replica and PostgreSQL that the test can cut (every connection
/// closed, new ones refused) and mend.
struct Proxy {
    port: u16,
    open: watch::Sender<bool>,
}

impl Proxy {
    async fn start(to: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (open, open_rx) = watch::channel(true);
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                if !*open_rx.borrow() {
                    // Cut: refused at once, as a network that drops the replica's packets
                    // would make its driver give up (only sooner).
                    drop(client);
                    continue;
                }
                let mut open_rx = open_rx.clone();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(("127.0.0.1", to)).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = open_rx.wait_for(|open| !open) => {}
                    }
                });
            }
        });
        Proxy { port, open }
    }

    fn url(&self, pg: &PgCluster) -> String {
        pg.url()
            .replace(&format!(":{}/", pg.port), &format!(":{}/", self.port))
    }

    fn cut(&self, open: bool) {
        self.open.send_replace(open);
    }
}

#[tokio::test]
async fn a_replica_cut_from_postgresql_leaves_nothing_unprobed_and_starts_no_step() {
    let pg = PgCluster::start();
    let target = Target::start().await;
    let failing = Target::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let step = script(
        dir.path(),
        "step",
        &format!("echo \"$1 $2\" >> {}", ran.display()),
    );
    let mut extra = String::new();
    for i in 0..6 {
        extra.push_str(&format!(
            "  - name: r{i}\n    interval: 1s\n    recovery: fix\n    http: {{url: '{}'}}\n",
            failing.url(&format!("/r{i}"))
        ));
    }
    extra.push_str(&format!(
        r#"recovery:
  chains:
    fix:
      steps:
        - name: step
          exec: {{program: '{}', args: ['{{{{ check }}}}', '{{{{port}}}}']}}
          cooldown: 1h
"#,
        step.display()
    ));
    let config = checks_config(&target, &extra);
    let proxy = Proxy::start(pg.port).await;
    let mut a = spawn(&config, &pg, &[]);
    let mut b = spawn(&config, &pg, &[]);
    let mut c = Medic::spawn_unready(&config, &["--cluster.shard", "auto"], Some(proxy.url(&pg)));
    for m in [&mut a, &mut b, &mut c] {
        m.wait_ready().await;
    }
    wait_split(&[&a, &b, &c], 1).await;

    // Every check's probes, sampled: the longest a check went without one.
    let watching = Arc::new(AtomicBool::new(true));
    let sampler = {
        let watching = watching.clone();
        let hits_of = target.hit_counter();
        tokio::spawn(async move {
            let mut last: BTreeMap<String, (usize, Instant)> = BTreeMap::new();
            let mut worst = Duration::ZERO;
            while watching.load(Ordering::SeqCst) {
                let now = Instant::now();
                for (path, count) in hits_of() {
                    let entry = last.entry(path).or_insert((count, now));
                    if count > entry.0 {
                        *entry = (count, now);
                    }
                    worst = worst.max(now - entry.1);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            worst
        })
    };

    proxy.cut(false);
    let cut = Instant::now();
    // The checks go critical only now: whatever C owned, it can start nothing.
    failing.set(500, "down", Duration::ZERO);
    wait_for(
        "the others to see C gone",
        Duration::from_secs(15),
        || async {
            (a.metric("medic_cluster_members").await == Some(2.0)
                && b.metric("medic_cluster_members").await == Some(2.0))
            .then_some(())
        },
    )
    .await;
    assert!(
        cut.elapsed() <= Duration::from_secs(10),
        "{:?}",
        cut.elapsed()
    );
    wait_for(
        "every failing check's step to run",
        Duration::from_secs(30),
        || async {
            let text = std::fs::read_to_string(&ran).unwrap_or_default();
            (text.lines().count() >= 6).then_some(())
        },
    )
    .await;
    // Keep C cut a while longer: still nothing unprobed, still no step from C.
    tokio::time::sleep(Duration::from_secs(5)).await;
    proxy.cut(true);
    wait_for("C to rejoin", Duration::from_secs(20), || async {
        (c.metric("medic_cluster_members").await == Some(3.0)).then_some(())
    })
    .await;
    // After rejoining, C owns some failing checks again: their steps are in cooldown in the
    // store, so C starts none. Wait for its runs to be decided before reading the file.
    wait_split(&[&a, &b, &c], 1).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for m in [&a, &b, &c] {
        m.wait_no_run_active("fix").await;
    }
    watching.store(false, Ordering::SeqCst);
    let worst = sampler.await.unwrap();
    assert!(
        worst <= BOUND + SLACK,
        "a check went {worst:?} without a probe"
    );
    let text = std::fs::read_to_string(&ran).unwrap();
    let c_port = c.port.to_string();
    let mut per_check: BTreeMap<&str, usize> = BTreeMap::new();
    for line in text.lines() {
        let (check, port) = line.split_once(' ').unwrap();
        assert_ne!(port, c_port, "the cut replica ran a step:\n{text}");
        *per_check.entry(check).or_default() += 1;
    }
    assert_eq!(per_check.len(), 6, "{text}");
    assert!(
        per_check.values().all(|n| *n == 1),
        "a step ran twice:\n{text}"
    );
    eprintln!("partition: the longest a check went without a probe: {worst:?}");
}

#[tokio::test]
async fn a_confirmed_step_waits_for_the_second_replica() {
    let pg = PgCluster::start();
    let (seen_by_a, seen_by_b) = (Target::start().await, Target::start().await);
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let step = script(
        dir.path(),
        "step",
        &format!("echo ran >> {}", ran.display()),
    );
    let config = |target: &Target| {
        format!(
            r#"checks:
  - name: web
    interval: 1s
    recovery: fix
    http: {{url: '{}'}}
recovery:
  chains:
    fix:
      confirm: {{replicas: 2}}
      steps:
        - name: restart
          exec: {{program: '{}'}}
          cooldown: 1h
"#,
            target.url("/health"),
            step.display()
        )
    };
    let args = ["--cluster.shard", "auto", "--cluster.replication", "2"];
    let mut a = Medic::spawn_unready(&config(&seen_by_a), &args, Some(pg.url()));
    let mut b = Medic::spawn_unready(&config(&seen_by_b), &args, Some(pg.url()));
    a.wait_ready().await;
    b.wait_ready().await;
    for m in [&a, &b] {
        wait_for("both to own the check", Duration::from_secs(20), || async {
            (owned(m).await.contains("web") && m.metric("medic_cluster_members").await == Some(2.0))
                .then_some(())
        })
        .await;
    }
    // A sees it down, B does not: the step waits, and says why once.
    seen_by_a.set(500, "down", Duration::ZERO);
    a.wait_status("web", "critical").await;
    let run = wait_for("the unavailable run", Duration::from_secs(15), || async {
        let v = a.json("/api/v1/runs?chain=fix").await;
        let run = v["runs"].as_array()?.first()?.clone();
        (run["outcome"] == "unavailable").then_some(run)
    })
    .await;
    let id = run["id"].as_str().unwrap();
    let detail = a.json(&format!("/api/v1/runs/{id}")).await;
    assert!(detail.to_string().contains("\"unconfirmed\""), "{detail}");
    assert!(
        a.metric(
            r#"medic_recovery_skipped_total{chain="fix",step="restart",reason="unconfirmed"}"#
        )
        .await
        .is_some(),
        "the reason's counter exists"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!ran.exists(), "the step ran on one replica's view");
    // B sees it down too: the step runs, once.
    seen_by_b.set(500, "down", Duration::ZERO);
    wait_for(
        "the confirmed step to run",
        Duration::from_secs(20),
        || async { ran.exists().then_some(()) },
    )
    .await;
    for m in [&a, &b] {
        m.wait_no_run_active("fix").await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(std::fs::read_to_string(&ran).unwrap().lines().count(), 1);
}
