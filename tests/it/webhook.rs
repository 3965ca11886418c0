//! The Alertmanager webhook receiver: every answer, routing on each alert's own labels,
//! duplicates that never start a second run, and a few hundred corrupted payloads.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::{alert_post, script, testdata, wait_for, Medic};

fn fixture(name: &str) -> Vec<u8> {
    testdata(&format!("alertmanager/{name}"))
}

const TOKEN: &str = "hook-token-8f2a";

/// medic with a bearer token and a chain whose step appends the alert's instance to a file.
async fn medic_with_route(dir: &Path, matchers: &str, max_body: u64) -> (Medic, PathBuf) {
    let ran = dir.join("ran");
    let step = script(
        dir,
        "step",
        &format!("echo \"$1\" >> {}\nsleep 1", ran.display()),
    );
    let medic = Medic::start(&format!(
        r#"web:
  webhook:
    bearer_token: {TOKEN}
    max_body_bytes: {max_body}
recovery:
  chains:
    fix:
      steps:
        - name: step
          exec: {{program: '{step}', args: ['{{{{ labels.instance }}}}']}}
          max_attempts: 10
          cooldown: 1h
  routes:
    - matchers: [{matchers}]
      chain: fix
"#,
        step = step.display()
    ))
    .await;
    (medic, ran)
}

async fn post(
    medic: &Medic,
    body: Vec<u8>,
    token: Option<&str>,
    content_type: Option<&str>,
) -> (u16, String) {
    let mut req = medic.client.post(medic.url("/api/v1/alerts")).body(body);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    if let Some(ct) = content_type {
        req = req.header("Content-Type", ct);
    }
    let r = req.send().await.expect("request");
    let code = r.status().as_u16();
    (code, r.text().await.unwrap_or_default())
}

#[tokio::test]
async fn every_error_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (medic, _) = medic_with_route(dir.path(), r#"'alertname="TargetDown"'"#, 4096).await;
    let firing = fixture("alertmanager-0.25-firing.raw.json");
    let json = Some("application/json");
    assert_eq!(post(&medic, firing.clone(), None, json).await.0, 401);
    assert_eq!(
        post(&medic, firing.clone(), Some("wrong"), json).await.0,
        401
    );
    assert_eq!(
        post(
            &medic,
            firing.clone(),
            Some(&TOKEN[..TOKEN.len() - 1]),
            json
        )
        .await
        .0,
        401
    );
    assert_eq!(post(&medic, firing.clone(), Some(TOKEN), None).await.0, 415);
    assert_eq!(
        post(&medic, firing.clone(), Some(TOKEN), Some("text/plain"))
            .await
            .0,
        415
    );
    let (code, body) = post(&medic, vec![b' '; 5000], Some(TOKEN), json).await;
    assert_eq!(code, 413, "{body}");
    let (code, body) = post(&medic, b"{not json".to_vec(), Some(TOKEN), json).await;
    assert_eq!(code, 400);
    assert!(body.contains("invalid JSON"), "{body}");
    let (code, body) = post(
        &medic,
        br#"{"version":"3","alerts":[]}"#.to_vec(),
        Some(TOKEN),
        json,
    )
    .await;
    assert_eq!(code, 400);
    assert!(body.contains("unsupported webhook version"), "{body}");
    let (code, body) = post(&medic, br#"{"version":"4"}"#.to_vec(), Some(TOKEN), json).await;
    assert_eq!(code, 400);
    assert!(body.contains("alerts"), "{body}");
    let r = medic
        .client
        .get(medic.url("/api/v1/alerts"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let (code, body) = post(
        &medic,
        firing,
        Some(TOKEN),
        Some("application/json; charset=utf-8"),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["received"], 1);
    assert_eq!(v["started"][0]["fingerprint"], "3087d63d2862c715");
    let m = medic.metrics().await;
    for series in [
        r#"medic_webhook_notifications_total{code="401"} 3"#,
        r#"medic_webhook_notifications_total{code="415"} 2"#,
        r#"medic_webhook_notifications_total{code="413"} 1"#,
        r#"medic_webhook_notifications_total{code="400"} 3"#,
        r#"medic_webhook_notifications_total{code="200"} 1"#,
        r#"medic_webhook_alerts_total{status="firing",routed="true"} 1"#,
    ] {
        assert!(m.contains(series), "{series} missing:\n{m}");
    }
    assert!(!medic.logs().contains(TOKEN));
}

#[tokio::test]
async fn without_a_credential_only_loopback_is_accepted() {
    let medic = Medic::start("checks: []\n").await;
    let (code, body) = post(
        &medic,
        fixture("alertmanager-0.25-firing.raw.json"),
        None,
        Some("application/json"),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["unrouted"], 1);
}

#[tokio::test]
async fn duplicates_never_start_a_second_run_and_resolved_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (medic, ran) = medic_with_route(
        dir.path(),
        r#"'alertname="TargetDown"', 'severity=~"crit.*"'"#,
        1 << 20,
    )
    .await;
    let firing = fixture("alertmanager-0.25-firing.raw.json");
    // Retries, HA peers and repeat_interval: the same alert, many times, at once.
    let mut sends = Vec::new();
    for _ in 0..8 {
        let request = alert_post(&medic, TOKEN, firing.clone());
        sends.push(tokio::spawn(async move {
            let r = request.send().await.expect("request");
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }));
    }
    let mut answers = Vec::new();
    for send in sends {
        answers.push(send.await.unwrap());
    }
    assert!(answers.iter().all(|(code, _)| *code == 200), "{answers:?}");
    wait_for("the step to run", Duration::from_secs(20), || async {
        std::fs::read_to_string(&ran).ok().filter(|s| !s.is_empty())
    })
    .await;
    medic
        .wait_metric(
            r#"medic_recovery_runs_total{chain="fix",trigger="alert",outcome="recovered"}"#,
            1.0,
            Duration::from_secs(20),
        )
        .await;
    // A resend after the run: the step is in its cooldown, nothing runs again.
    let (code, body) = post(&medic, firing, Some(TOKEN), Some("application/json")).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = post(
        &medic,
        fixture("alertmanager-0.25-resolved.raw.json"),
        Some(TOKEN),
        Some("application/json"),
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["resolved"][0]["fingerprint"], "3087d63d2862c715");
    assert_eq!(
        std::fs::read_to_string(&ran).unwrap(),
        "http://127.0.0.1:18099/\n",
        "exactly one execution"
    );
    let m = medic.metrics().await;
    assert!(
        m.contains(r#"medic_webhook_alerts_total{status="resolved",routed="true"} 1"#),
        "{m}"
    );
    assert!(
        m.contains(
            r#"medic_recovery_runs_total{chain="fix",trigger="alert",outcome="recovered"} 1"#
        ),
        "{m}"
    );
}

/// Deterministic pseudo-random numbers (xorshift), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn mutate(base: &[u8], rng: &mut Rng, i: usize) -> Vec<u8> {
    let mut b = base.to_vec();
    match i % 8 {
        0 => {
            for _ in 0..1 + rng.below(8) {
                let at = rng.below(b.len());
                b[at] ^= 1 << rng.below(8);
            }
            b
        }
        1 => {
            b.truncate(rng.below(b.len()));
            b
        }
        2 => {
            let text = String::from_utf8_lossy(&b).into_owned();
            let swaps = [
                ("\"4\"", "4"),
                ("\"firing\"", "1"),
                ("{\"alertname\"", "[\"alertname\""),
                ("\"3087d63d2862c715\"", "null"),
                ("\"alerts\":[", "\"alerts\":{"),
                ("\"startsAt\"", "\"startsat\""),
            ];
            let (from, to) = swaps[rng.below(swaps.len())];
            text.replacen(from, to, 1).into_bytes()
        }
        3 => {
            let text = String::from_utf8_lossy(&b).into_owned();
            let huge = "A".repeat(100_000 + rng.below(400_000));
            text.replacen("TargetDown", &huge, 1).into_bytes()
        }
        4 => {
            let depth = 1000 + rng.below(50_000);
            let mut s = "[".repeat(depth);
            s.push_str(&"]".repeat(depth));
            format!("{{\"version\":\"4\",\"alerts\":{s}}}").into_bytes()
        }
        5 => {
            let at = rng.below(b.len());
            let junk: Vec<u8> = (0..1 + rng.below(32)).map(|_| rng.next() as u8).collect();
            b.splice(at..at, junk);
            b
        }
        6 => {
            let text = String::from_utf8_lossy(&b).into_owned();
            text.replacen(
                "\"labels\": {",
                "\"labels\": {\"\\u0000\\ud800\": \"\\uffff\",",
                1,
            )
            .replacen("\"labels\":{", "\"labels\":{\"k\\\"\":\"\\\\\",", 1)
            .into_bytes()
        }
        _ => {
            let text = String::from_utf8_lossy(&b).into_owned();
            let alert_start = text.find("{\"status\"").unwrap_or(0);
            let alert_end = text.find("],\"groupLabels\"").unwrap_or(text.len());
            let alert = &text[alert_start..alert_end];
            let many = vec![alert; 1 + rng.below(300)].join(",");
            format!("{}{}{}", &text[..alert_start], many, &text[alert_end..]).into_bytes()
        }
    }
}

#[tokio::test]
async fn corrupted_payloads_never_panic_nor_run_anything() {
    let dir = tempfile::tempdir().unwrap();
    // Only an alert with a label the fixture lacks may run the step.
    let (medic, ran) = medic_with_route(dir.path(), r#"'medic_test="yes"'"#, 1 << 20).await;
    let base = fixture("alertmanager-0.25-firing.raw.json");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut codes = std::collections::BTreeMap::new();
    for i in 0..400 {
        let body = mutate(&base, &mut rng, i);
        let (code, text) = post(&medic, body, Some(TOKEN), Some("application/json")).await;
        assert!(code < 500 || code == 503, "variant {i}: {code} {text}");
        *codes.entry(code).or_insert(0) += 1;
    }
    assert_eq!(
        medic.get("/-/healthy").await.0,
        200,
        "medic died: {}",
        medic.logs()
    );
    assert!(!ran.exists(), "a corrupted payload ran a step");
    assert!(!medic.logs().contains("panicked"), "{}", medic.logs());
    assert!(codes.get(&400).copied().unwrap_or(0) > 100, "{codes:?}");
    assert!(codes.contains_key(&200), "{codes:?}");
}

/// A MedicCheckCritical notification as Alertmanager sends it, from one medic `instance`.
fn check_critical(check: &str, instance: &str, fingerprint: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "receiver": "medic", "status": "firing", "version": "4", "groupKey": "{}",
        "truncatedAlerts": 0, "externalURL": "http://am", "groupLabels": {},
        "commonLabels": {}, "commonAnnotations": {},
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "MedicCheckCritical", "check": check, "instance": instance},
            "annotations": {"summary": format!("medic check {check} is critical")},
            "startsAt": "2026-11-28T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph", "fingerprint": fingerprint,
        }],
    }))
    .unwrap()
}

#[tokio::test]
async fn an_alert_about_a_check_joins_the_checks_own_run_instead_of_starting_another() {
    let target = crate::support::Target::start().await;
    target.set(503, "down", Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let ran = dir.path().join("ran");
    let started = dir.path().join("started");
    // The first step takes a while and fixes nothing; the second fixes the target.
    let slow = script(
        dir.path(),
        "slow",
        &format!(
            "echo slow >> {}\ntouch {}\nsleep 2",
            ran.display(),
            started.display()
        ),
    );
    // The SPEC's own example: the check has a chain, and its alert is routed to the same chain.
    let medic = Medic::start(&format!(
        r#"web:
  webhook:
    bearer_token: {TOKEN}
checks:
  - name: web
    interval: 200ms
    recovery: web
    http: {{url: '{}'}}
recovery:
  chains:
    web:
      verify_timeout: 1s
      steps:
        - name: slow
          exec: {{program: '{}'}}
          cooldown: 1h
        - name: fix
          http: {{url: '{}'}}
          cooldown: 1h
  routes:
    - matchers: ['alertname="MedicCheckCritical"', 'check="web"']
      chain: web
      verify_check: web
"#,
        target.url("/health"),
        slow.display(),
        target.url("/fix"),
    ))
    .await;
    wait_for(
        "the check's run to start",
        Duration::from_secs(20),
        || async { started.exists().then_some(()) },
    )
    .await;
    // Both replicas' series fire the alert (two fingerprints), while the check's run is busy.
    for (instance, fingerprint) in [
        ("medic-a:7979", "aaaa000000000001"),
        ("medic-b:7979", "bbbb000000000002"),
    ] {
        let (code, body) = post(
            &medic,
            check_critical("web", instance, fingerprint),
            Some(TOKEN),
            Some("application/json"),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["coalesced"].as_array().unwrap().len(), 1, "{body}");
    }
    medic.wait_status("web", "healthy").await;
    medic
        .wait_metric(
            r#"medic_recovery_runs_total{chain="web",trigger="check",outcome="recovered"}"#,
            1.0,
            Duration::from_secs(20),
        )
        .await;
    assert_eq!(std::fs::read_to_string(&ran).unwrap(), "slow\n");
    assert_eq!(target.hit_count("/fix"), 1);
    // Late resends of the alert find the check's steps in their cooldowns: the first is decided
    // by a run that finds nothing to do, the next ones are answered `blocked` at once.
    wait_for(
        "a resend to be blocked",
        Duration::from_secs(10),
        || async {
            let (code, body) = post(
                &medic,
                check_critical("web", "medic-a:7979", "aaaa000000000001"),
                Some(TOKEN),
                Some("application/json"),
            )
            .await;
            assert_eq!(code, 200, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).ok()?;
            (v["blocked"].as_array()?.len() == 1).then_some(())
        },
    )
    .await;
    assert_eq!(std::fs::read_to_string(&ran).unwrap(), "slow\n");
    assert_eq!(target.hit_count("/fix"), 1);
    assert_eq!(
        medic
            .metric(r#"medic_recovery_runs_total{chain="web",trigger="alert",outcome="recovered"}"#)
            .await
            .unwrap_or(0.0),
        0.0
    );
}
