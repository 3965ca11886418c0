//! Secrets (header values, URL passwords, `${ENV}` values, `*_file` contents) never appear in
//! logs, metrics, API answers, the status page or error messages.

use std::time::Duration;

use crate::support::{free_port, wait_for, Medic, Target};

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
    let (code, answer) = medic.post("/-/reload").await;
    assert_eq!(code, 500, "the reload was meant to fail: {answer}");
    outputs.push(answer);
    // The failed reload's log line has landed: the log holds what a leak would have put there.
    wait_for(
        "the failed reload in the log",
        Duration::from_secs(10),
        || async { medic.logs().contains("config reload failed").then_some(()) },
    )
    .await;
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

/// Where a secret can be written in a config, each with a value that appears nowhere else.
const PLACEMENTS: &[(&str, &str)] = &[
    ("${ENV} in an exec step's args", "s3cr3t-deploy-4e1a"),
    ("${ENV} as a notify url", "s3cr3t-hook-77b2"),
    ("a *_file value", "s3cr3t-file-0c9d"),
    ("a URL's userinfo", "s3cr3t-userinfo-5f2e"),
    ("a URL's query", "s3cr3t-query-a8c3"),
    ("a header value", "s3cr3t-header-41d0"),
    ("${ENV} in a duration that fails", "s3cr3t-ival-12ab"),
    ("${ENV} in a tcp address that fails", "s3cr3t-addr-9f01"),
    ("${ENV} in a url without a scheme", "s3cr3t-noscheme-3d3d"),
];

/// Configs whose `${ENV}` values fail validation, and what the error must say instead: the
/// key and the variable.
const INVALID: &[(&str, &str, &[&str])] = &[
    (
        "duration",
        "checks:\n  - name: web\n    interval: ${MEDIC_IT_SX_IVAL}\n    tcp: {address: '127.0.0.1:1'}\n",
        &[r#"checks[0] "web".interval: invalid duration "${MEDIC_IT_SX_IVAL}""#],
    ),
    (
        "tcp address and url without scheme",
        r#"checks:
  - name: db
    tcp: {address: '${MEDIC_IT_SX_ADDR}'}
recovery:
  chains:
    c:
      steps:
        - name: tell
          notify: {url: '${MEDIC_IT_SX_NOSCHEME}'}
"#,
        &[
            r#"checks[0] "db": tcp.address "${MEDIC_IT_SX_ADDR}" is not host:port"#,
            r#"recovery.chains.c.steps[0] "tell": notify.url "${MEDIC_IT_SX_NOSCHEME}" must be an http:// or https:// URL"#,
        ],
    ),
];

/// The process-wide environment both tests read (medic inherits it); the notify URL's
/// variable differs per test because its port does.
fn set_env() {
    std::env::set_var("MEDIC_IT_SX_DEPLOY", "s3cr3t-deploy-4e1a");
    std::env::set_var("MEDIC_IT_SX_IVAL", "s3cr3t-ival-12ab");
    std::env::set_var("MEDIC_IT_SX_ADDR", "s3cr3t-addr-9f01");
    std::env::set_var(
        "MEDIC_IT_SX_NOSCHEME",
        "hooks.example/services/s3cr3t-noscheme-3d3d",
    );
}

/// A valid config with every valid placement. The `fix` chain's exec step prints its token and
/// fails, so the notify step runs too.
fn valid_config(dir: &std::path::Path, health: &str, closed: u16, hook_var: &str) -> String {
    let token_file = dir.join("token");
    std::fs::write(&token_file, "s3cr3t-file-0c9d\n").unwrap();
    format!(
        r#"web:
  webhook:
    bearer_token_file: {token}
defaults: {{interval: 200ms}}
checks:
  - name: web
    recovery: fix
    http:
      url: '{health}'
      headers: {{X-Api-Key: s3cr3t-header-41d0}}
  - name: userinfo
    http: {{url: 'http://admin:s3cr3t-userinfo-5f2e@127.0.0.1:{closed}/x'}}
  - name: query
    http: {{url: 'http://127.0.0.1:{closed}/x?token=s3cr3t-query-a8c3'}}
recovery:
  # Three of three checks fail on purpose here: the circuit breaker must not hold the run.
  limits: {{max_unhealthy: 100%}}
  chains:
    fix:
      verify_timeout: 1s
      steps:
        - name: deploy
          exec:
            program: /bin/sh
            args: ['-c', 'echo "$1"; exit 1', 'sh', '--token=${{MEDIC_IT_SX_DEPLOY}}']
        - name: tell
          notify:
            url: '${{{hook_var}}}'
            headers: {{Authorization: 'Bearer s3cr3t-header-41d0'}}
"#,
        token = token_file.display(),
    )
}

fn assert_no_secret(outputs: &[(String, String)]) {
    for (placement, secret) in PLACEMENTS {
        for (output, text) in outputs {
            assert!(
                !text.contains(secret),
                "secret from {placement} ({secret}) leaked in {output}:\n{text}"
            );
        }
    }
}

fn assert_names_the_variable(output: &str, text: &str, wants: &[&str]) {
    for want in wants {
        assert!(
            text.contains(want),
            "{output} does not say {want:?}:\n{text}"
        );
    }
}

/// Every placement × the running medic's outputs: the log at debug, the API, the page,
/// /metrics, and `POST /-/reload`'s 500 answers.
#[tokio::test]
async fn no_placement_reaches_any_output_of_a_running_medic() {
    set_env();
    let target = Target::start().await;
    target.set(503, "down", Duration::ZERO);
    let hook = target.url("/services/s3cr3t-hook-77b2");
    std::env::set_var("MEDIC_IT_SX_HOOK_RUN", &hook);
    let dir = tempfile::tempdir().unwrap();
    let config = valid_config(
        dir.path(),
        &target.url("/health"),
        free_port(),
        "MEDIC_IT_SX_HOOK_RUN",
    );
    let medic = Medic::start_with(&config, &["--log.level", "debug"]).await;
    // Both steps ran: the token was passed and the webhook was called.
    let attempts = crate::support::wait_for(
        "both steps to be recorded",
        Duration::from_secs(30),
        || async {
            let v = medic.json("/api/v1/recoveries?chain=fix").await;
            let list = v["attempts"].as_array().cloned().unwrap_or_default();
            let done = list.len() >= 2 && list.iter().all(|a| a["result"].is_string());
            done.then_some(v.to_string())
        },
    )
    .await;
    assert!(
        target.hit_count("/services/s3cr3t-hook-77b2") >= 1,
        "{:?}",
        target.hits()
    );
    // The step's output is kept in the store, with the token scrubbed from it.
    let stored: String = ["medic.db", "medic.db-wal"]
        .iter()
        .map(|f| {
            String::from_utf8_lossy(&std::fs::read(medic.dir.path().join(f)).unwrap_or_default())
                .into_owned()
        })
        .collect();
    assert!(
        stored.contains("--token=<secret>"),
        "the step's output is not in the store"
    );
    medic.wait_status("userinfo", "critical").await;
    medic.wait_status("query", "critical").await;

    let mut outputs = vec![
        ("/api/v1/recoveries".to_string(), attempts),
        ("the state store's file".to_string(), stored),
    ];
    for path in [
        "/metrics",
        "/",
        "/api/v1/health",
        "/api/v1/recoveries/stats",
        "/api/v1/checks/web",
        "/api/v1/checks/userinfo",
        "/api/v1/checks/query",
    ] {
        outputs.push((path.to_string(), medic.get(path).await.1));
    }
    for (name, bad, wants) in INVALID {
        medic.write_config(bad);
        let (code, body) = medic.post("/-/reload").await;
        assert_eq!(code, 500, "{name}: {body}");
        assert_names_the_variable(&format!("reload ({name})"), &body, wants);
        outputs.push((format!("POST /-/reload ({name})"), body));
    }
    medic.write_config(&config);
    assert_eq!(medic.post("/-/reload").await.0, 200);
    // The log shows the rendered action, with its secrets redacted.
    let logs = crate::support::wait_for("the step's log line", Duration::from_secs(10), || async {
        let logs = medic.logs();
        (logs.contains("config reload failed") && logs.contains("recovery step finished"))
            .then_some(logs)
    })
    .await;
    assert!(logs.contains(r#"--token=<secret>"#), "{logs}");
    assert!(logs.contains("notify POST <secret>"), "{logs}");
    // (logfmt escapes the quotes of the error's text.)
    assert_names_the_variable(
        "log",
        &logs,
        &[
            r#"checks[0] \"web\".interval: invalid duration \"${MEDIC_IT_SX_IVAL}\""#,
            r#"tcp.address \"${MEDIC_IT_SX_ADDR}\" is not host:port"#,
            r#"notify.url \"${MEDIC_IT_SX_NOSCHEME}\" must be"#,
        ],
    );
    outputs.push(("log (debug)".to_string(), logs));
    assert_no_secret(&outputs);
}

fn run(args: &[&str], dir: &std::path::Path, hook: &str) -> (Option<i32>, String) {
    let out = std::process::Command::new(crate::support::MEDIC)
        .args(args)
        .current_dir(dir)
        .env("MEDIC_IT_SX_HOOK_CLI", hook)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run medic");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// Every placement × the command line's outputs: `medic recover` (and `--dry-run`) with its
/// debug log, `medic check-config`, and the error `medic run` stops with at start.
#[test]
fn no_placement_reaches_any_output_of_the_command_line() {
    set_env();
    let dir = tempfile::tempdir().unwrap();
    let closed = free_port();
    let hook = format!("http://127.0.0.1:{closed}/services/s3cr3t-hook-77b2");
    let config = valid_config(
        dir.path(),
        &format!("http://127.0.0.1:{closed}/health"),
        closed,
        "MEDIC_IT_SX_HOOK_CLI",
    );
    std::fs::write(dir.path().join("medic.yml"), &config).unwrap();
    let state = format!("sqlite://{}/state.db", dir.path().display());
    let common = [
        "--config.file",
        "medic.yml",
        "--state.url",
        &state,
        "--log.level",
        "debug",
    ];
    let mut outputs = Vec::new();

    let (code, dry) = run(
        &[&["recover", "fix", "--dry-run"], &common[..]].concat(),
        dir.path(),
        &hook,
    );
    assert_eq!(code, Some(0), "{dry}");
    assert!(
        dry.contains(r#"would run exec "/bin/sh" "-c""#) && dry.contains("--token=<secret>"),
        "{dry}"
    );
    assert!(dry.contains("would run notify POST <secret>"), "{dry}");
    outputs.push(("medic recover --dry-run".to_string(), dry));

    let (code, ran) = run(
        &[&["recover", "fix"], &common[..]].concat(),
        dir.path(),
        &hook,
    );
    assert_eq!(code, Some(1), "{ran}");
    assert!(ran.contains("tell: ran notify POST <secret>"), "{ran}");
    assert!(ran.contains("--token=<secret>"), "{ran}");
    outputs.push(("medic recover".to_string(), ran));

    let (code, valid) = run(
        &["check-config", "--config.file", "medic.yml"],
        dir.path(),
        &hook,
    );
    assert_eq!(code, Some(0), "{valid}");
    outputs.push(("medic check-config (valid)".to_string(), valid));

    for (name, bad, wants) in INVALID {
        std::fs::write(dir.path().join("bad.yml"), bad).unwrap();
        let (code, checked) = run(
            &["check-config", "--config.file", "bad.yml"],
            dir.path(),
            &hook,
        );
        assert_eq!(code, Some(1), "{checked}");
        assert_names_the_variable(&format!("check-config ({name})"), &checked, wants);
        outputs.push((format!("medic check-config ({name})"), checked));

        let listen = format!("127.0.0.1:{}", free_port());
        let args = [
            "run",
            "--config.file",
            "bad.yml",
            "--web.listen-address",
            &listen,
            "--state.url",
            &state,
            "--log.level",
            "debug",
        ];
        let (code, started) = run(&args, dir.path(), &hook);
        assert_eq!(code, Some(1), "{started}");
        assert_names_the_variable(&format!("medic run ({name})"), &started, wants);
        outputs.push((format!("medic run ({name})"), started));
    }
    assert_no_secret(&outputs);
}
