//! Pauses by API and by CLI: made, listed, ended; refused with the reason and nothing changed;
//! surviving `kill -9`; behind the webhook's credential; counted in the metric.

use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::{json, Value};

use crate::support::{wait_for, Medic, MEDIC};

const TOKEN: &str = "pause-token-31c7";

fn config(token: Option<&str>) -> String {
    let hook = token
        .map(|t| format!("web:\n  webhook:\n    bearer_token: {t}\n"))
        .unwrap_or_default();
    format!("{hook}checks:\n  - name: idle\n    interval: 1h\n    command: {{program: 'true'}}\n")
}

/// A request body and its content type.
type Body<'a> = Option<(&'a str, Vec<u8>)>;

async fn send(
    medic: &Medic,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Body<'_>,
) -> (u16, Value) {
    let mut req = medic.client.request(method, medic.url(path));
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    if let Some((content_type, bytes)) = body {
        req = req.header("Content-Type", content_type).body(bytes);
    }
    let r = req.send().await.expect("request");
    let code = r.status().as_u16();
    let text = r.text().await.expect("body");
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn create(medic: &Medic, token: Option<&str>, body: Value) -> (u16, Value) {
    let bytes = body.to_string().into_bytes();
    send(
        medic,
        reqwest::Method::POST,
        "/api/v1/pauses",
        token,
        Some(("application/json", bytes)),
    )
    .await
}

async fn list(medic: &Medic, token: Option<&str>) -> Vec<Value> {
    let (code, body) = send(medic, reqwest::Method::GET, "/api/v1/pauses", token, None).await;
    assert_eq!(code, 200, "{body}");
    body["pauses"].as_array().expect("pauses").clone()
}

#[tokio::test]
async fn pauses_are_made_listed_and_ended_behind_the_webhook_token_and_survive_kill_9() {
    let mut medic = Medic::start(&config(Some(TOKEN))).await;
    let request = json!({"matchers": ["chain=\"web\"", "check=~\"api-.*\""], "duration": "1h", "reason": "deploy 4711"});
    for token in [None, Some("wrong")] {
        let (code, body) = create(&medic, token, request.clone()).await;
        assert_eq!(code, 401, "{body}");
        let (code, _) = send(&medic, reqwest::Method::GET, "/api/v1/pauses", token, None).await;
        assert_eq!(code, 401);
    }
    assert_eq!(
        medic.metric("medic_recovery_pauses_active").await,
        Some(0.0)
    );

    let (code, pause) = create(&medic, Some(TOKEN), request).await;
    assert_eq!(code, 201, "{pause}");
    let id = pause["id"].as_str().expect("id").to_string();
    assert_eq!(
        pause["matchers"],
        json!(["chain=\"web\"", "check=~\"api-.*\""])
    );
    assert_eq!(pause["reason"], "deploy 4711");
    let created = pause["created_at"].as_str().unwrap();
    let ends = pause["ends_at"].as_str().unwrap();
    assert!(created.ends_with('Z') && ends > created, "{pause}");
    assert_eq!(
        list(&medic, Some(TOKEN)).await,
        std::slice::from_ref(&pause)
    );
    assert_eq!(
        medic.metric("medic_recovery_pauses_active").await,
        Some(1.0)
    );

    medic.signal(Signal::SIGKILL);
    medic.wait_exit(Duration::from_secs(10)).await;
    medic.spawn(&[]);
    medic.wait_ready().await;
    assert_eq!(
        list(&medic, Some(TOKEN)).await,
        std::slice::from_ref(&pause),
        "the pause survives kill -9"
    );
    medic
        .wait_metric("medic_recovery_pauses_active", 1.0, Duration::from_secs(10))
        .await;

    let path = format!("/api/v1/pauses/{id}");
    let (code, _) = send(&medic, reqwest::Method::DELETE, &path, None, None).await;
    assert_eq!(code, 401);
    let (code, ended) = send(&medic, reqwest::Method::DELETE, &path, Some(TOKEN), None).await;
    assert_eq!(code, 200, "{ended}");
    assert_eq!(ended["id"], id.as_str());
    assert!(ended["ended_at"].is_string(), "{ended}");
    let (code, again) = send(&medic, reqwest::Method::DELETE, &path, Some(TOKEN), None).await;
    assert_eq!(code, 404, "{again}");
    assert!(list(&medic, Some(TOKEN)).await.is_empty());
    assert_eq!(
        medic.metric("medic_recovery_pauses_active").await,
        Some(0.0)
    );
}

#[tokio::test]
async fn bad_pause_requests_get_the_reason_and_change_nothing() {
    // No credential configured: loopback clients are served.
    let medic = Medic::start(&config(None)).await;
    let (code, kept) = create(
        &medic,
        None,
        json!({"duration": "30m", "reason": "incident"}),
    )
    .await;
    assert_eq!(code, 201, "{kept}");
    assert_eq!(kept["matchers"], json!([]));
    let before = list(&medic, None).await;
    assert_eq!(before.len(), 1);

    let json_body = |v: Value| Some(("application/json", v.to_string().into_bytes()));
    let cases: Vec<(Body<'_>, u16, &str)> = vec![
        (
            json_body(json!({"matchers": ["chain"], "duration": "1h", "reason": "x"})),
            400,
            "matchers[0]: invalid matcher \"chain\"",
        ),
        (
            json_body(json!({"duration": "soon", "reason": "x"})),
            400,
            "duration: invalid duration \"soon\"",
        ),
        (
            json_body(json!({"duration": "31d", "reason": "x"})),
            400,
            "longer than the longest pause",
        ),
        (
            json_body(json!({"duration": "1h"})),
            400,
            "reason: say why healing is paused",
        ),
        (json_body(json!({"reason": "x"})), 400, "duration: missing"),
        (
            Some(("application/json", b"{\"duration\": ".to_vec())),
            400,
            "EOF",
        ),
        (
            Some(("text/plain", b"pause please".to_vec())),
            415,
            "application/json",
        ),
        (
            Some((
                "application/json",
                format!("{{\"reason\": \"{}\"}}", "x".repeat(70_000)).into_bytes(),
            )),
            413,
            "larger than",
        ),
    ];
    for (body, want_code, want_reason) in cases {
        let (code, answer) =
            send(&medic, reqwest::Method::POST, "/api/v1/pauses", None, body).await;
        assert_eq!(code, want_code, "{answer}");
        let reason = answer["error"].as_str().unwrap_or_default();
        assert!(
            reason.contains(want_reason),
            "{reason:?} should say {want_reason:?}"
        );
        assert_eq!(
            list(&medic, None).await,
            before,
            "a refused request changes nothing"
        );
    }
    let (code, answer) = send(
        &medic,
        reqwest::Method::DELETE,
        "/api/v1/pauses/no-such-id",
        None,
        None,
    )
    .await;
    assert_eq!(code, 404, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("no-such-id"));
    let (code, _) = send(&medic, reqwest::Method::PUT, "/api/v1/pauses", None, None).await;
    assert_eq!(code, 405);
    assert_eq!(list(&medic, None).await, before);
    assert_eq!(
        medic.metric("medic_recovery_pauses_active").await,
        Some(1.0)
    );
}

/// `medic` as an operator runs it: against the running medic, with the same config.
fn cli(medic: &Medic, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(MEDIC)
        .arg("--config.file")
        .arg(&medic.config_path)
        .arg("--web.listen-address")
        .arg(format!("127.0.0.1:{}", medic.port))
        .args(args)
        .current_dir(medic.dir.path())
        .output()
        .expect("run medic");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn medic_pause_and_resume_drive_a_running_medic_with_the_configs_credential() {
    let medic = Medic::start(&config(Some(TOKEN))).await;
    let (code, out, err) = cli(
        &medic,
        &[
            "pause",
            "--for",
            "2h",
            "--reason",
            "db migration",
            "--matcher",
            "chain=\"db\"",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let id = out.lines().next().expect("the id first").trim().to_string();
    assert_eq!(id.len(), 16, "{out}");
    assert!(
        out.contains("matchers: chain=\"db\"") && out.contains("reason: db migration"),
        "{out}"
    );
    let listed = list(&medic, Some(TOKEN)).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], id.as_str());

    let (code, out, err) = cli(&medic, &["pause", "--for", "soon", "--reason", "x"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("400") && err.contains("duration: invalid duration"),
        "{err}"
    );

    // Another token than the server's is refused with its reason.
    let wrong = medic.dir.path().join("wrong-token");
    std::fs::write(&wrong, "nope\n").unwrap();
    let wrong = wrong.display().to_string();
    let (code, _, err) = cli(&medic, &["resume", &id, "--bearer-token-file", &wrong]);
    assert_eq!(code, 1);
    assert!(err.contains("401"), "{err}");
    assert_eq!(list(&medic, Some(TOKEN)).await.len(), 1);

    let (code, out, err) = cli(&medic, &["resume", &id]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with(&id) && out.contains("ended_at: "), "{out}");
    assert!(list(&medic, Some(TOKEN)).await.is_empty());
    let (code, _, err) = cli(&medic, &["resume", &id]);
    assert_eq!(code, 1);
    assert!(
        err.contains("404") && err.contains("no active pause"),
        "{err}"
    );
    wait_for("the metric to drop", Duration::from_secs(5), || async {
        (medic.metric("medic_recovery_pauses_active").await == Some(0.0)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn medic_pause_list_shows_the_active_pauses_of_the_running_medic() {
    let medic = Medic::start(&config(Some(TOKEN))).await;
    let (code, out, err) = cli(&medic, &["pause", "--list"]);
    assert_eq!((code, out.as_str()), (0, "no active pauses\n"), "{err}");

    let (_, first) = create(
        &medic,
        Some(TOKEN),
        json!({"matchers": ["chain=\"db\""], "duration": "2h", "reason": "db migration"}),
    )
    .await;
    let (_, second) = create(
        &medic,
        Some(TOKEN),
        json!({"duration": "30m", "reason": "incident 12, nobody knows yet"}),
    )
    .await;
    let (code, out, err) = cli(&medic, &["pause", "--list"]);
    assert_eq!(code, 0, "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with("id ") && lines[0].ends_with(" reason"),
        "{out}"
    );
    for (pause, matchers) in [(&first, "chain=\"db\""), (&second, "(none: every run)")] {
        let id = pause["id"].as_str().unwrap();
        let line = lines.iter().find(|l| l.starts_with(id)).expect("listed");
        let ends = pause["ends_at"].as_str().unwrap();
        let reason = pause["reason"].as_str().unwrap();
        assert!(
            line.contains(ends) && line.contains(matchers) && line.ends_with(reason),
            "{line}"
        );
    }

    // Refused or unreachable: exit 1 with the reason.
    let wrong = medic.dir.path().join("wrong-token");
    std::fs::write(&wrong, "nope\n").unwrap();
    let wrong = wrong.display().to_string();
    let (code, out, err) = cli(&medic, &["pause", "--list", "--bearer-token-file", &wrong]);
    assert_eq!((code, out.as_str()), (1, ""), "{err}");
    assert!(err.contains("401"), "{err}");
    let nowhere = format!("http://127.0.0.1:{}", crate::support::free_port());
    let (code, _, err) = cli(&medic, &["pause", "--list", "--url", &nowhere]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot reach medic at"), "{err}");
    // --list makes nothing.
    let (code, _, err) = cli(&medic, &["pause", "--list", "--for", "1h"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(list(&medic, Some(TOKEN)).await.len(), 2);
}

#[tokio::test]
async fn a_pause_made_on_one_replica_holds_on_the_other_through_postgres() {
    let pg = crate::pg::PgCluster::start();
    let mut a = Medic::spawn_unready(&config(None), &[], Some(pg.url()));
    a.wait_ready().await;
    let mut b = Medic::spawn_unready(&config(None), &[], Some(pg.url()));
    b.wait_ready().await;
    let (code, pause) = create(
        &a,
        None,
        json!({"matchers": ["chain=\"web\""], "duration": "1h", "reason": "fleet"}),
    )
    .await;
    assert_eq!(code, 201, "{pause}");
    assert_eq!(list(&b, None).await, std::slice::from_ref(&pause));
    // B's book learns of it from the store within its refresh period.
    b.wait_metric("medic_recovery_pauses_active", 1.0, Duration::from_secs(5))
        .await;
    let path = format!("/api/v1/pauses/{}", pause["id"].as_str().unwrap());
    let (code, _) = send(&b, reqwest::Method::DELETE, &path, None, None).await;
    assert_eq!(code, 200);
    wait_for("A to see the pause end", Duration::from_secs(5), || async {
        (a.metric("medic_recovery_pauses_active").await == Some(0.0)).then_some(())
    })
    .await;
    assert!(list(&a, None).await.is_empty());
}
