//! Secrets (header values, URL passwords, `${ENV}` values, `*_file` contents) never appear in
//! logs, metrics, API answers, the status page or error messages.

use std::time::Duration;

use crate::support::{free_port, Medic, Target};

#[tokio::test]
async fn secrets_never_leave_the_process() {
    let target = Target::start().await;
    let closed = free_port();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "file-secret-7a1c\n").unwrap();
    std::env::set_var("MEDIC_IT_ENV_SECRET", "env-secret-93be");
    let config = format!(
        r#"web:
  webhook:
    bearer_token_file: {token}
defaults: {{interval: 100ms}}
checks:
  - name: header
    http:
      url: '{url}'
      headers: {{Authorization: "Bearer header-secret-41d0"}}
  - name: userinfo
    http: {{url: 'http://admin:url-secret-5f2e@127.0.0.1:{closed}/x'}}
  - name: env
    http: {{url: 'http://127.0.0.1:{closed}/?token=${{MEDIC_IT_ENV_SECRET}}'}}
  - name: db
    database: {{url: 'postgres://medic:db-secret-c0de@127.0.0.1:{closed}/medic'}}
"#,
        token = token_file.display(),
        url = target.url("/"),
    );
    let medic = Medic::start_with(&config, &["--log.level", "debug"]).await;
    medic.wait_status("userinfo", "critical").await;
    medic.wait_status("env", "critical").await;
    medic.wait_status("header", "healthy").await;
    // The target really received the header: the secret is used, just never shown.
    assert!(!target.hits().is_empty());

    let mut outputs = vec![
        medic.metrics().await,
        medic.get("/api/v1/health").await.1,
        medic.get("/").await.1,
    ];
    for check in ["header", "userinfo", "env", "db"] {
        outputs.push(medic.get(&format!("/api/v1/checks/{check}")).await.1);
    }
    // A failed reload's error message too.
    medic.write_config(&config.replace(
        "defaults: {interval: 100ms}",
        "defaults: {interval: 100ms, bogus: 1}",
    ));
    outputs.push(medic.post("/-/reload").await.1);
    tokio::time::sleep(Duration::from_millis(100)).await; // let the log line land
    outputs.push(medic.logs());
    for secret in [
        "file-secret-7a1c",
        "env-secret-93be",
        "header-secret-41d0",
        "url-secret-5f2e",
        "db-secret-c0de",
    ] {
        for (i, out) in outputs.iter().enumerate() {
            assert!(
                !out.contains(secret),
                "secret {secret} leaked in output {i}:\n{out}"
            );
        }
    }
}
