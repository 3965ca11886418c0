//! The config as a whole: defaults, paths in errors, every error in one pass, secrets kept out
//! of errors, and the built-in config. Each section's finer rules are tested through
//! `tests/testdata/invalid-*.yml`.

use std::path::Path;

use super::*;

fn load(text: &str) -> Result<Config, ConfigErrors> {
    load_text(
        text,
        Path::new("."),
        &Overrides::default(),
        ConfigSource::Builtin,
    )
}

fn errors(text: &str) -> Vec<String> {
    match load(text) {
        Ok(_) => panic!("config should be invalid:\n{text}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn empty_file_is_a_valid_config_with_defaults() {
    let c = load("").unwrap();
    assert!(c.checks.is_empty());
    assert_eq!(c.web.listen_address, "127.0.0.1:7979");
    assert_eq!(c.store.url.expose(), "sqlite://data/medic.db");
    assert_eq!(c.web.webhook.max_body_bytes, 1024 * 1024);
}

#[test]
fn defaults_fill_checks_and_timeout_shrinks_to_short_interval() {
    let c = load("checks:\n- name: a\n  interval: 5s\n  tcp: {address: 'localhost:1'}\n- name: b\n  tcp: {address: 'localhost:1'}\n").unwrap();
    assert_eq!(c.checks[0].timeout, "5s".parse().unwrap());
    assert_eq!(c.checks[1].interval, "30s".parse().unwrap());
    assert_eq!(c.checks[1].timeout, "10s".parse().unwrap());
    assert_eq!(c.checks[1].failures_before_critical, 1);
}

#[test]
fn every_error_is_reported_with_its_path() {
    let e = errors(
        "checks:\n- name: api\n  interval: 2s\n  timeout: 5s\n  tcp: {address: 'x:1'}\n- name: api\n  tcp: {address: nope}\n",
    );
    assert_eq!(
        e,
        vec![
            r#"checks[0] "api": timeout 5s must not exceed interval 2s"#.to_string(),
            r#"checks[1] "api": duplicate check name"#.to_string(),
            r#"checks[1] "api": tcp.address "nope" is not host:port"#.to_string(),
        ]
    );
}

#[test]
fn unknown_keys_are_errors_with_location() {
    let e = load("checks:\n  - name: a\n    tcp: {address: 'x:1', adress: 'y'}\n").unwrap_err();
    let first = &e.0[0];
    assert_eq!(first.path, r#"checks[0] "a".tcp.adress"#);
    assert!(
        first.message.starts_with("unknown field `adress`"),
        "{}",
        first.message
    );
    assert_eq!(first.location.map(|l| l.0), Some(3));
}

#[test]
fn env_references_expand_and_are_secret() {
    std::env::set_var("MEDIC_TEST_TOKEN_X", "s3cr3t-value");
    let c = load("web:\n  webhook:\n    bearer_token: ${MEDIC_TEST_TOKEN_X}\n").unwrap();
    assert_eq!(
        c.web.webhook.auth,
        WebhookAuth::Bearer(Secret::new("s3cr3t-value"))
    );
    assert_eq!(c.redactor.redact("x s3cr3t-value y"), "x <secret> y");
    let e = errors("web:\n  listen_address: ${MEDIC_TEST_SURELY_UNSET}\n");
    assert_eq!(
        e,
        vec![r#"web.listen_address: environment variable "MEDIC_TEST_SURELY_UNSET" is not set"#]
    );
}

#[test]
fn builtin_config_is_valid() {
    let c = load_builtin(&Overrides::default()).unwrap();
    assert_eq!(c.checks.len(), 2);
    let c = load_builtin(&Overrides {
        listen_address: Some("0.0.0.0:9000".into()),
        ..Default::default()
    })
    .unwrap();
    match &c.checks[1].probe {
        ProbeSpec::Http(h) => assert_eq!(h.url.expose(), "http://127.0.0.1:9000/-/healthy"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn errors_name_the_variable_never_its_value() {
    std::env::set_var("MEDIC_T_IVAL", "s3cr3t-ival");
    std::env::set_var("MEDIC_T_ADDR", "s3cr3t\"addr");
    std::env::set_var("MEDIC_T_HOOK", "hooks.example/s3cr3t-hook?sig=s3cr3t-sig");
    std::env::set_var("MEDIC_T_DB", "mysq://u:s3cr3t-pw@db/x");
    std::env::set_var("MEDIC_T_ARG", "s3cr3t-arg");
    std::env::set_var("MEDIC_T_METHOD", "s3cr3t meth");
    // (config, the text the error must name)
    let cases = [
        (
            "checks:\n- name: a\n  interval: ${MEDIC_T_IVAL}\n  tcp: {address: 'x:1'}\n",
            r#"checks[0] "a".interval: invalid duration "${MEDIC_T_IVAL}""#,
        ),
        (
            "checks:\n- name: a\n  tcp: {address: 'pre-${MEDIC_T_ADDR}'}\n",
            r#"tcp.address "pre-${MEDIC_T_ADDR}" is not host:port"#,
        ),
        (
            "recovery:\n  chains:\n    c:\n      steps:\n      - name: n\n        notify: {url: '${MEDIC_T_HOOK}'}\n",
            r#"notify.url "${MEDIC_T_HOOK}" must be"#,
        ),
        (
            "state: {url: '${MEDIC_T_DB}'}\n",
            "state.url: ${MEDIC_T_DB} must start with",
        ),
        (
            "recovery:\n  chains:\n    c:\n      steps:\n      - name: n\n        exec: {program: x, args: ['--t=${MEDIC_T_ARG} {{ bad']}\n",
            r#"exec.args[0]: unterminated placeholder in "--t=${MEDIC_T_ARG} {{ bad""#,
        ),
        (
            "recovery:\n  chains:\n    c:\n      steps:\n      - name: n\n        http: {url: 'http://h/', method: 'x${MEDIC_T_METHOD}'}\n",
            "${MEDIC_T_METHOD}",
        ),
    ];
    for (config, want) in cases {
        let e = errors(config).join("\n");
        assert!(!e.contains("s3cr3t"), "a value leaked:\n{e}");
        assert!(e.contains(want), "want {want:?} in:\n{e}");
    }
}

#[test]
fn a_url_from_a_file_is_named_by_its_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("u"),
        "mysq://medic:s3cr3t-pw@db.internal/x\n",
    )
    .unwrap();
    for config in [
        "state: {url_file: u}\n",
        "checks:\n- name: d\n  database: {url_file: u}\n",
    ] {
        let e = load_text(
            config,
            dir.path(),
            &Overrides::default(),
            ConfigSource::Builtin,
        )
        .unwrap_err()
        .to_string();
        assert!(!e.contains("s3cr3t") && !e.contains("db.internal"), "{e}");
        assert!(e.contains("url_file: the URL in u must start"), "{e}");
    }
}

#[test]
fn url_query_values_and_headers_are_secret() {
    let c = load("checks:\n- name: a\n  http:\n    url: 'http://h/?token=s3cr3t-q'\n    headers: {X-Key: s3cr3t-h}\n").unwrap();
    assert_eq!(c.redactor.redact("s3cr3t-q s3cr3t-h"), "<secret> <secret>");
}

#[test]
fn alertmanager_credentials_are_secret() {
    let c =
        load("alertmanager:\n  url: 'http://u:am-pass-1@am:9093'\n  bearer_token: am-token-1\n")
            .unwrap();
    assert_eq!(
        c.redactor.redact("am-pass-1 am-token-1"),
        "<secret> <secret>"
    );
    let am = c.alertmanager.expect("configured");
    assert!(!format!("{am:?}").contains("am-token-1"));
    assert_eq!(am.resend_delay, Duration::from_secs(60));
    let e = errors("alertmanager:\n  url: 'http://am:9093'\n  basic_auth: {username: u, password: am-pass-2}\n  bearer_token: am-token-2\n");
    assert!(
        e.iter()
            .all(|e| !e.contains("am-pass-2") && !e.contains("am-token-2")),
        "{e:?}"
    );
}

#[test]
fn silence_matchers_without_placeholders_are_checked_at_load() {
    let e = errors("alertmanager: {url: 'http://am:9093'}\nrecovery:\n  chains:\n    c:\n      steps:\n      - name: n\n        exec: {program: /bin/true}\n  routes:\n  - matchers: ['a=\"b\"']\n    chain: c\n    silence: {matchers: ['not a matcher']}\n");
    assert!(
        e.iter()
            .any(|e| e.starts_with("recovery.routes[0].silence.matchers[0]")),
        "{e:?}"
    );
}

#[test]
fn url_passwords_never_reach_error_messages() {
    let e = errors("checks:\n- name: db\n  database: {url: 'oracle://u:hunter22@h/x'}\n");
    assert!(!e[0].contains("hunter22"), "{e:?}");
}

#[test]
fn every_mistake_is_reported_in_one_pass() {
    let e = errors(concat!(
        "checks:\n",
        "  - name: web\n",
        "    interval: 10 seconds\n",
        "    recovery: web\n",
        "    http:\n",
        "      url: http://127.0.0.1:8080/health\n",
        "      expect_staus: [200]\n",
        "  - name: db\n",
        "    recovery: restart-db\n",
        "    tcp: {address: '127.0.0.1:5432'}\n",
        "recovery:\n",
        "  chains:\n",
        "    web:\n",
        "      steps:\n",
        "        - name: restart\n",
        "          exec: {program: systemctl, args: [restart, '{{ labels.service }}']}\n",
    ));
    assert_eq!(
        e,
        vec![
            r#"checks[0] "web".interval: invalid duration "10 seconds": unknown or missing unit (use ms, s, m, h, d, w, y) (line 3, column 15)"#,
            r#"checks[0] "web".http.expect_staus: unknown field `expect_staus`, expected one of `url`, `method`, `headers`, `body`, `expect_status`, `expect_body`, `body_regex`, `warn_after`, `keep_alive`, `follow_redirects` (line 7, column 7)"#,
            r#"checks[0] "web": recovery chain "web" step "restart" uses {{ labels.service }}, which the check does not provide (set it in labels:)"#,
            r#"checks[1] "db": recovery chain "restart-db" is not defined in recovery.chains"#,
        ]
    );
}

#[test]
fn a_block_that_cannot_be_read_says_so_once_and_the_rest_is_checked() {
    let e = errors(concat!(
        "web: {listen_address: [1]}\n",
        "checks:\n",
        "  - name: a\n",
        "    http: {ur1: 'http://h/'}\n",
        "  - name: b\n",
        "    tcp: {address: nope}\n",
        "  - {interval: 5s, tcp: {address: 'h:1'}}\n",
        "  - {name: d, tpc: {address: 'h:1'}}\n",
        "recovery:\n",
        "  chains:\n",
        "    broken: {steps: 3}\n",
        "    typo: {steps: [{name: s, exce: {program: x}}]}\n",
        "  routes:\n",
        "    - {matchers: ['a=\"b\"'], chain: broken}\n",
    ));
    assert_eq!(
        e,
        vec![
            "web.listen_address: invalid type: sequence, expected a string (line 1, column 23)",
            r#"checks[0] "a".http.ur1: unknown field `ur1`, expected one of `url`, `method`, `headers`, `body`, `expect_status`, `expect_body`, `body_regex`, `warn_after`, `keep_alive`, `follow_redirects` (line 4, column 12)"#,
            r#"checks[1] "b": tcp.address "nope" is not host:port"#,
            "checks[2]: missing field `name` (line 7, column 5)",
            r#"checks[3] "d".tpc: unknown field `tpc`, expected one of `name`, `interval`, `timeout`, `enabled`, `failures_before_critical`, `successes_before_healthy`, `flapping`, `recovery`, `labels`, `depends_on`, `http`, `tcp`, `database`, `system`, `command`, `tls`, `dns`, `grpc`, `heartbeat` (line 8, column 15)"#,
            "recovery.chains.broken.steps: invalid type: integer `3`, expected a sequence (line 11, column 21)",
            r#"recovery.chains.typo.steps[0] "s".exce: unknown field `exce`, expected one of `name`, `exec`, `http`, `notify`, `alert`, `max_attempts`, `cooldown`, `timeout`, `tier`, `detach`, `confirm` (line 12, column 30)"#,
        ]
    );
}

#[test]
fn an_unset_variable_is_reported_beside_every_other_error() {
    let e = errors(concat!(
        "web: {listen_address: '${MEDIC_TEST_UNSET_ONE}'}\n",
        "checks:\n",
        "  - name: a\n",
        "    tcp: {address: '${MEDIC_TEST_UNSET_TWO}'}\n",
        "  - name: b\n",
        "    timeout: 0s\n",
        "    tcp: {address: 'h:1'}\n",
    ));
    assert_eq!(
        e,
        vec![
            r#"web.listen_address: environment variable "MEDIC_TEST_UNSET_ONE" is not set"#,
            r#"checks[0] "a".tcp.address: environment variable "MEDIC_TEST_UNSET_TWO" is not set"#,
            r#"checks[1] "b": timeout must be greater than 0s"#,
        ]
    );
}

mod safe_healing {
    use super::*;
    use crate::maintenance::When;

    fn load(text: &str) -> Config {
        crate::config::load_str(text, Path::new("."), &Overrides::default()).expect("valid")
    }

    #[test]
    fn limits_and_modes_get_their_defaults() {
        let config = load(
            "recovery:\n  chains:\n    web:\n      steps:\n        - {name: s, exec: {program: /bin/true}}\n",
        );
        let limits = &config.recovery.limits;
        assert_eq!(
            limits.max_concurrent_runs,
            Some(DEFAULT_MAX_CONCURRENT_RUNS)
        );
        assert_eq!(limits.max_runs, None);
        assert_eq!(limits.max_unhealthy, MaxUnhealthy::Share(0.5));
        assert!(limits.per_chain.is_empty());
        assert_eq!(config.recovery.chains["web"].mode, RecoveryMode::Active);
        assert!(config.recovery.maintenance.is_empty());
    }

    #[test]
    fn a_chains_mode_overrides_recoverys() {
        let config = load(concat!(
            "recovery:\n  mode: shadow\n  limits: {max_unhealthy: 20, max_runs: {count: 3, within: 10m}}\n",
            "  chains:\n",
            "    a:\n      steps: [{name: s, exec: {program: /bin/true}}]\n",
            "    b:\n      mode: active\n      max_concurrent_runs: 2\n      steps: [{name: s, exec: {program: /bin/true}}]\n",
            "maintenance:\n  - {name: w, schedule: {start: \"02:00\", duration: 1h}}\n",
        ));
        let r = &config.recovery;
        assert_eq!(r.chains["a"].mode, RecoveryMode::Shadow);
        assert_eq!(r.chains["b"].mode, RecoveryMode::Active);
        assert_eq!(r.limits.per_chain.get("b"), Some(&2));
        assert_eq!(r.limits.max_unhealthy, MaxUnhealthy::Count(20));
        assert_eq!(
            r.limits.max_runs,
            Some(RateLimit {
                count: 3,
                within_ms: 600_000
            })
        );
        assert_eq!(r.maintenance.len(), 1);
        match &r.maintenance[0].when {
            When::Weekly { days, .. } => assert_eq!(days.len(), 7, "no days: every day"),
            other => panic!("want a weekly window, got {other:?}"),
        }
    }
}

#[test]
fn cluster_auto_needs_postgres_and_confirmations_need_replicas() {
    let pg = "state: {url: 'postgres://medic@db/medic'}\n";
    let c = load(&format!(
        "{pg}cluster: {{shard: auto, replication: 2, location: eu-1}}\n"
    ))
    .unwrap();
    assert!(c.cluster.is_auto());
    assert_eq!(
        (c.cluster.replication, c.cluster.location.as_deref()),
        (2, Some("eu-1"))
    );
    let e = errors("cluster: {shard: auto}\n");
    assert!(
        e.iter()
            .any(|e| e.contains("cluster.shard") && e.contains("auto needs a PostgreSQL")),
        "{e:?}"
    );
    let e = errors("cluster: {shard: 0/2, replication: 2}\n");
    assert!(e.iter().any(|e| e.contains("needs shard: auto")), "{e:?}");
    let e = errors("cluster: {shard: 3/2}\n");
    assert!(e.iter().any(|e| e.contains("INDEX/COUNT")), "{e:?}");
    // The flag wins over the key, and says so in its error.
    let flag = Overrides {
        cluster_shard: Some("auto".into()),
        ..Default::default()
    };
    let e = crate::config::load_str("", Path::new("."), &flag)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--cluster.shard auto needs a PostgreSQL"), "{e}");
    let chain = "recovery:\n  chains:\n    fix:\n      confirm: {replicas: 2}\n      steps:\n        - name: restart\n          exec: {program: /bin/true}\n        - name: tell\n          notify: {url: 'http://127.0.0.1:1/'}\n";
    let c = load(&format!(
        "{pg}cluster: {{shard: auto, replication: 2}}\n{chain}"
    ))
    .unwrap();
    let steps = &c.recovery.chains["fix"].steps;
    assert_eq!(steps[0].confirm, Some(2));
    assert_eq!(steps[1].confirm, None, "telling people needs no quorum");
    let e = errors(&format!("{pg}cluster: {{shard: auto}}\n{chain}"));
    assert!(
        e.iter()
            .any(|e| e.contains("steps[0].confirm") && e.contains("can never be met")),
        "{e:?}"
    );
}
