//! The run audit: `/api/v1/runs` and `/api/v1/runs/{id}` over runs the real binary made with
//! real processes, `MEDIC_RUN_ID` in exec steps and `run_id` in notify bodies.

use std::process::Command;
use std::time::Duration;

use crate::support::{script, wait_for, Medic, Target, MEDIC};

/// The newest run of `chain` once it has ended with `outcome`.
async fn wait_run(medic: &Medic, chain: &str, outcome: &str) -> serde_json::Value {
    wait_for(
        &format!("a {chain} run ending {outcome}"),
        Duration::from_secs(30),
        || async {
            let v = medic
                .json(&format!("/api/v1/runs?chain={chain}&limit=1"))
                .await;
            let run = v["runs"].get(0)?.clone();
            (run["outcome"] == outcome).then_some(run)
        },
    )
    .await
}

fn timestamp(v: &serde_json::Value) -> jiff::Timestamp {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap_or_else(|e| panic!("{v} is not RFC 3339: {e}"))
}

/// The `MEDIC_RUN_ID=` line of an env dump a step wrote.
fn run_id_in(path: &std::path::Path) -> String {
    let env = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{} was not written: {e}", path.display()));
    env.lines()
        .find_map(|l| l.strip_prefix("MEDIC_RUN_ID="))
        .unwrap_or_else(|| panic!("no MEDIC_RUN_ID in:\n{env}"))
        .to_string()
}

#[tokio::test]
async fn a_run_shows_its_trigger_and_both_steps_in_order_with_results_and_exit_codes() {
    let target = Target::start().await;
    target.set(503, "down", Duration::ZERO);
    let scripts = tempfile::tempdir().unwrap();
    let dir = scripts.path();
    let fail = script(
        dir,
        "fail.sh",
        &format!("env > {}/first.env\nexit 3", dir.display()),
    );
    let fix = script(
        dir,
        "fix.sh",
        &format!(
            "env > {}/second.env\ncurl -sf -X POST {}",
            dir.display(),
            target.url("/fix")
        ),
    );
    let medic = Medic::start(&format!(
        r#"checks:
  - name: web
    interval: 200ms
    recovery: fix
    labels: {{service: web, quote: 'say "hi"'}}
    http: {{url: '{health}'}}
recovery:
  chains:
    fix:
      verify_timeout: 2s
      steps:
        - name: first
          exec: {{program: '{fail}'}}
        - name: second
          exec: {{program: '{fix}'}}
"#,
        health = target.url("/health"),
        fail = fail.display(),
        fix = fix.display(),
    ))
    .await;

    let run = wait_run(&medic, "fix", "recovered").await;
    let id = run["id"].as_str().expect("a run id").to_string();
    assert_eq!(run["chain"], "fix");
    assert_eq!(run["trigger"]["kind"], "check", "{run}");
    assert_eq!(run["trigger"]["labels"]["service"], "web", "{run}");
    assert_eq!(run["trigger"]["labels"]["quote"], r#"say "hi""#, "{run}");
    assert!(
        run["trigger"]["subject"].as_str().unwrap().contains("web"),
        "{run}"
    );
    assert!(timestamp(&run["ended_at"]) >= timestamp(&run["started_at"]));

    let (code, body) = medic.get(&format!("/api/v1/runs/{id}")).await;
    assert_eq!(code, 200, "{body}");
    let detail: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(detail["id"], id.as_str());
    assert_eq!(detail["outcome"], "recovered");
    let decisions = detail["decisions"].as_array().expect("decisions");
    let ran: Vec<&serde_json::Value> = decisions
        .iter()
        .filter(|d| d["decision"] == "ran")
        .collect();
    assert_eq!(ran.len(), 2, "{detail:#}");
    let (first, second) = (ran[0], ran[1]);
    assert_eq!(first["step"], "first", "{detail:#}");
    assert_eq!(first["result"], "failure");
    assert_eq!(first["exit_code"], 3);
    assert_eq!(first["attempt"], 1);
    assert!(
        first["verified"].is_null(),
        "a failed action is not verified"
    );
    assert!(first["reason"].is_null() && first["until"].is_null());
    assert_eq!(second["step"], "second");
    assert_eq!(second["result"], "success");
    assert_eq!(second["exit_code"], 0);
    assert_eq!(second["verified"], true, "{second}");
    assert!(second["duration_seconds"].as_f64().unwrap() > 0.0);
    assert!(timestamp(&second["at"]) >= timestamp(&first["at"]));
    assert!(timestamp(&second["at"]) >= timestamp(&detail["started_at"]));

    // The steps saw the run they belong to.
    assert_eq!(run_id_in(&dir.join("first.env")), id);
    assert_eq!(run_id_in(&dir.join("second.env")), id);

    // Bad input: a clear 4xx, in JSON.
    for bad in ["abc", "0", "-5", "1e3"] {
        let (code, body) = medic.get(&format!("/api/v1/runs?limit={bad}")).await;
        assert_eq!(code, 400, "limit={bad}: {body}");
        assert!(body.contains("limit must be a positive integer"), "{body}");
    }
    let (code, body) = medic.get("/api/v1/runs/no-such-run").await;
    assert_eq!(code, 404, "{body}");
    let err: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        err["error"].as_str().unwrap().contains("no-such-run"),
        "{err}"
    );
    let (code, _) = medic
        .get(&format!("/api/v1/runs/{}", "x".repeat(5000)))
        .await;
    assert_eq!(code, 404);
    let (code, _) = medic.post("/api/v1/runs").await;
    assert_eq!(code, 405);
    let v = medic.json("/api/v1/runs?chain=nothing-like-it").await;
    assert_eq!(v["runs"], serde_json::json!([]));
}

#[tokio::test]
async fn a_manual_run_prints_its_id_and_notify_bodies_carry_it() {
    let pager = Target::start().await;
    let scripts = tempfile::tempdir().unwrap();
    let fail = script(scripts.path(), "fail.sh", "exit 1");
    let medic = Medic::start(&format!(
        r#"recovery:
  chains:
    tell:
      steps:
        - name: page
          notify: {{url: '{page}'}}
        - name: fail
          exec: {{program: '{fail}'}}
"#,
        page = pager.url("/hook"),
        fail = fail.display(),
    ))
    .await;
    // By hand, on the running medic's store: the API shows what the CLI did.
    // Off the runtime: the pager it notifies answers on this test's runtime.
    let mut recover = Command::new(MEDIC);
    recover
        .args(["recover", "tell", "--label", "service=web", "--config.file"])
        .arg(&medic.config_path)
        .arg("--state.url")
        .arg(&medic.state_url)
        .current_dir(medic.dir.path());
    let out = tokio::task::spawn_blocking(move || recover.output())
        .await
        .unwrap()
        .expect("run medic recover");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "not recovered: {stdout}");
    let printed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("run "))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no run id printed:\n{stdout}"))
        .to_string();

    let run = wait_run(&medic, "tell", "exhausted").await;
    assert_eq!(run["id"], printed.as_str(), "{stdout}");
    assert_eq!(run["trigger"]["kind"], "manual");
    assert_eq!(run["trigger"]["labels"]["service"], "web");

    let page = pager
        .hits()
        .into_iter()
        .find(|h| h.starts_with("POST /hook"))
        .expect("the notify step posted");
    let body: serde_json::Value =
        serde_json::from_str(page.trim_start_matches("POST /hook ")).unwrap();
    assert_eq!(body["run_id"], printed.as_str(), "{body}");

    let detail = medic.json(&format!("/api/v1/runs/{printed}")).await;
    let steps: Vec<(String, String)> = detail["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["decision"] == "ran")
        .map(|d| {
            (
                d["step"].as_str().unwrap_or("").to_string(),
                d["result"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("page".to_string(), "success".to_string()),
            ("fail".to_string(), "failure".to_string())
        ],
        "{detail:#}"
    );
}

/// A step in cooldown shows as skipped, with the reason and when the cooldown ends.
#[tokio::test]
async fn a_step_in_cooldown_shows_skipped_with_its_reason_and_end() {
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
          cooldown: 0s
"#,
        health = target.url("/health"),
        fix = target.url("/fix"),
        page = pager.url("/hook"),
    ))
    .await;
    medic.wait_status("web", "healthy").await;
    target.set(503, "down", Duration::ZERO);
    let healed = wait_run(&medic, "fix", "recovered").await;
    medic.wait_status("web", "healthy").await;
    let first = medic
        .json(&format!("/api/v1/runs/{}", healed["id"].as_str().unwrap()))
        .await;
    let restart_at = timestamp(&first["decisions"][0]["at"]);

    target.set(503, "down again", Duration::ZERO);
    let run = wait_run(&medic, "fix", "exhausted").await;
    let detail = medic
        .json(&format!("/api/v1/runs/{}", run["id"].as_str().unwrap()))
        .await;
    let decisions = detail["decisions"].as_array().unwrap();
    let skipped = &decisions[0];
    assert_eq!(skipped["decision"], "skipped", "{detail:#}");
    assert_eq!(skipped["step"], "restart");
    assert_eq!(skipped["reason"], "cooldown");
    assert!(skipped["attempt"].is_null() && skipped["result"].is_null());
    let until = timestamp(&skipped["until"]);
    let hour = jiff::SignedDuration::from_secs(3600);
    let off = until.duration_since(restart_at) - hour;
    assert!(
        off.abs() < jiff::SignedDuration::from_secs(1),
        "{until} vs {restart_at}"
    );
    assert_eq!(decisions[1]["decision"], "ran");
    assert_eq!(decisions[1]["step"], "escalate");
    assert_eq!(decisions[1]["result"], "success");
}

/// The audit's SQL on a real PostgreSQL: decisions numbered per run, read back in order and
/// joined to their attempts, runs newest first.
#[tokio::test]
async fn the_audit_round_trips_on_postgresql() {
    use medic::store::{AttemptEnd, AttemptStart, DecisionKind, DecisionRow, RunStart, Store};
    let pg = crate::pg::PgCluster::start();
    let store = Store::open(&medic::config::Secret::new(pg.url()))
        .await
        .expect("open the PostgreSQL store");
    for (id, at) in [("r1", 1000), ("r2", 2000)] {
        store
            .begin_run(&RunStart {
                id,
                chain: "c",
                target: "check:web",
                subject: &format!("check:web-{id}"),
                trigger: "check",
                started_ms: at,
                owner: "it",
                lease_until_ms: i64::MAX,
                labels_json: r#"{"service":"web"}"#.into(),
            })
            .await
            .unwrap();
    }
    let held = DecisionRow {
        run_id: "r2",
        at_ms: 1900,
        step: None,
        kind: DecisionKind::Held,
        reason: Some("concurrency"),
        until_ms: None,
        attempt_id: None,
        detail: None,
    };
    assert_eq!(store.record_decision(&held).await.unwrap(), 1);
    let skipped = DecisionRow {
        at_ms: 2000,
        step: Some("flush"),
        kind: DecisionKind::Skipped,
        reason: Some("cooldown"),
        until_ms: Some(9000),
        ..held
    };
    assert_eq!(store.record_decision(&skipped).await.unwrap(), 2);
    let attempt = store
        .begin_attempt(&AttemptStart {
            run_id: "r2",
            chain: "c",
            step: "restart",
            subject: "check:web-r2",
            target: "check:web",
            trigger: "check",
            started_ms: 2001,
        })
        .await
        .unwrap();
    store
        .end_attempt(
            attempt,
            &AttemptEnd {
                finished_ms: 2500,
                result: "success",
                message: "exit code 0".into(),
                exit_code: Some(0),
                output: String::new(),
                duration_seconds: 0.5,
            },
        )
        .await
        .unwrap();
    let ran = DecisionRow {
        at_ms: 2001,
        step: Some("restart"),
        kind: DecisionKind::Ran,
        reason: None,
        until_ms: None,
        attempt_id: Some(attempt),
        ..held
    };
    assert_eq!(store.record_decision(&ran).await.unwrap(), 3);

    let runs = store.runs(None, 10).await.unwrap();
    let ids: Vec<&str> = runs.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["r2", "r1"]);
    assert_eq!(runs[0].labels["service"], "web");
    let (run, decisions) = store.run("r2").await.unwrap().expect("r2");
    assert_eq!(run.subject, "check:web-r2");
    let kinds: Vec<DecisionKind> = decisions.iter().map(|d| d.kind).collect();
    assert_eq!(
        kinds,
        [DecisionKind::Held, DecisionKind::Skipped, DecisionKind::Ran]
    );
    assert_eq!(decisions[1].until_ms, Some(9000));
    let a = decisions[2].attempt.as_ref().expect("joined attempt");
    assert_eq!((a.id, a.number, a.exit_code), (attempt, 1, Some(0)));
    assert!(store.run("r9").await.unwrap().is_none());
    store.close().await;
}
