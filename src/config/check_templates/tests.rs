//! Check templates: what loads, the errors (one per mistake, with its path), rendering a
//! target, and the template's secrets.

use std::collections::BTreeMap;
use std::path::Path;

use super::super::{load_text, Config, ConfigErrors, ConfigSource, Overrides, ProbeSpec};
use crate::testing::labels;

fn load(text: &str) -> Result<Config, ConfigErrors> {
    load_text(
        text,
        Path::new("/etc/medic"),
        &Overrides::default(),
        ConfigSource::Builtin,
    )
}

fn errors(text: &str) -> Vec<String> {
    match load(text) {
        Ok(_) => panic!("config should be invalid:\n{text}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

const WEB: &str = r#"
check_templates:
  - name: web
    file_sd: ["targets/*.json", "/abs/web.yml"]
    http_sd: {url: "http://cmdb.example/targets", refresh_interval: 1m}
    dns_sd:
      - {names: ["_http._tcp.web.example"], type: SRV, refresh_interval: 30s}
      - {names: ["web.example"], type: A, port: 8080, server: "127.0.0.1:53"}
    interval: 30s
    labels: {team: web, tier: front}
    http: {url: "http://{{ target }}/{{ labels.path }}", headers: {X-Token: template-secret-91c}}
"#;

#[test]
fn a_template_loads_with_its_sources_and_defaults() {
    let c = load(WEB).unwrap();
    assert_eq!(c.templates.len(), 1);
    let t = &c.templates[0];
    assert_eq!(t.name, "web");
    assert_eq!(t.kind(), "http");
    assert_eq!(
        t.file_sd,
        vec![
            Path::new("/etc/medic/targets/*.json").to_path_buf(),
            Path::new("/abs/web.yml").to_path_buf()
        ]
    );
    assert_eq!(t.http_sd.len(), 1);
    assert_eq!(t.http_sd[0].refresh_interval, "1m".parse().unwrap());
    assert_eq!(t.http_sd[0].timeout, "10s".parse().unwrap());
    assert_eq!(t.http_sd[0].max_body_bytes, 32 << 20);
    assert_eq!(t.dns_sd.len(), 2);
    assert_eq!(t.dns_sd[1].port, Some(8080));
    assert_eq!(t.max_targets, super::DEFAULT_MAX_TARGETS);
    assert!(c.checks.is_empty());
}

#[test]
fn a_target_renders_into_a_check_of_the_template() {
    let c = load(WEB).unwrap();
    let t = &c.templates[0];
    let spec = t
        .render(
            "10.0.0.1:8080",
            &labels(&[("path", "health"), ("tier", "back")]),
        )
        .unwrap();
    assert_eq!(spec.name, "web/10.0.0.1:8080");
    assert_eq!(spec.template.as_deref(), Some("web"));
    assert_eq!(spec.interval, "30s".parse().unwrap());
    let ProbeSpec::Http(http) = &spec.probe else {
        panic!("{spec:?}")
    };
    assert_eq!(http.url.expose(), "http://10.0.0.1:8080/health");
    // The target's labels over the template's, and its address for recovery steps.
    assert_eq!(
        spec.labels,
        labels(&[
            ("__address__", "10.0.0.1:8080"),
            ("path", "health"),
            ("team", "web"),
            ("tier", "back")
        ])
    );
    // The same target renders the same check: a refresh that changed nothing changes nothing.
    let again = t
        .render(
            "10.0.0.1:8080",
            &labels(&[("path", "health"), ("tier", "back")]),
        )
        .unwrap();
    assert_eq!(spec, again);
}

#[test]
fn a_target_that_cannot_fill_the_template_is_refused_with_the_reason() {
    let c = load(WEB).unwrap();
    let t = &c.templates[0];
    let e = t.render("h:1", &BTreeMap::new()).unwrap_err();
    assert_eq!(e, "web/h:1: the target has no value for {{ labels.path }}");
    let e = t
        .render("bad host:1", &labels(&[("path", "x")]))
        .unwrap_err();
    assert!(
        e.starts_with(r#"web/bad host:1: http.url "http://bad host:1/x" is not a valid URL"#),
        "{e}"
    );
}

#[test]
fn the_template_s_own_secrets_are_scrubbed_and_target_values_are_not_secrets() {
    let c = load(
        r#"
check_templates:
  - name: api
    file_sd: [t.json]
    http:
      url: "http://{{ target }}/x?token=query-secret-5e2&module={{ labels.module }}"
      headers: {Authorization: "Bearer header-secret-77a", X-For: "for {{ target }}"}
"#,
    )
    .unwrap();
    let scrubbed = c
        .redactor
        .redact("query-secret-5e2 Bearer header-secret-77a for web1:80 module-a");
    assert_eq!(scrubbed, "<secret> <secret> for web1:80 module-a");
}

#[test]
fn each_mistake_is_one_error_with_its_path() {
    let e = errors(
        r#"
checks:
  - name: db
    tcp: {address: "db:5432"}
check_templates:
  - name: web
    file_sd: [t.json]
    http: {url: "http://{{ check }}/"}
  - name: db
    file_sd: [t.json]
    tcp: {address: "{{ target }}"}
  - name: cron
    file_sd: [t.json]
    heartbeat: {}
  - name: bare
    tcp: {address: "{{ target }}"}
  - name: files
    file_sd: ["a/*/b.json", "c.txt", "d*e*.yml"]
    tcp: {address: "{{ target }}"}
  - name: dns
    dns_sd:
      - {names: [a.example], type: A}
      - {names: [b.example], port: 80}
      - {names: [], type: MX}
    tcp: {address: "{{ target }}"}
  - name: secrets
    file_sd: [t.json]
    database: {url_file: "/run/{{ labels.db }}", query: SELECT 1}
  - name: keys
    http_sd: {url: "ftp://x", refresh_interval: 5s, timeout: 10s}
    max_targets: 0
    http: {url: "http://{{ target }}", expect_status: ok, ur1: x}
"#,
    );
    assert_eq!(
        e,
        vec![
            r#"check_templates[0] "web".http.url: unknown placeholder {{ check }} (use target or labels.NAME)"#,
            r#"check_templates[1] "db": name "db" is a check's name too: depends_on and predictions could not tell them apart"#,
            r#"check_templates[2] "cron": heartbeat checks cannot come from a template: jobs push to them by name"#,
            r#"check_templates[3] "bare": at least one of file_sd, http_sd and dns_sd is required"#,
            r#"check_templates[4] "files".file_sd: "a/*/b.json" must name .json, .yml or .yaml files, with at most one * and only in the file name"#,
            r#"check_templates[4] "files".file_sd: "c.txt" must name .json, .yml or .yaml files, with at most one * and only in the file name"#,
            r#"check_templates[4] "files".file_sd: "d*e*.yml" must name .json, .yml or .yaml files, with at most one * and only in the file name"#,
            r#"check_templates[5] "dns".dns_sd[0]: port is required for A and AAAA lookups"#,
            r#"check_templates[5] "dns".dns_sd[1].port: applies only to A and AAAA: SRV records carry their own port"#,
            r#"check_templates[5] "dns".dns_sd[2].names: must name at least one domain"#,
            r#"check_templates[5] "dns".dns_sd[2].type: "MX" is not SRV, A or AAAA"#,
            r#"check_templates[6] "secrets".database.url_file: placeholders are not allowed in *_file keys: the file's contents are a secret, read once at load"#,
            r#"check_templates[7] "keys".http_sd.url: "ftp://x" must be an http:// or https:// URL"#,
            r#"check_templates[7] "keys".http_sd: timeout 10s must not exceed refresh_interval 5s"#,
            r#"check_templates[7] "keys".max_targets: must be at least 1"#,
            r#"check_templates[7] "keys".http.expect_status: invalid type: string "ok", expected a sequence (line 32, column 55)"#,
            r#"check_templates[7] "keys".http.ur1: unknown field `ur1`, expected one of `url`, `method`, `headers`, `body`, `expect_status`, `expect_body`, `body_regex`, `warn_after`, `keep_alive`, `follow_redirects` (line 32, column 59)"#,
        ]
    );
}

#[test]
fn depends_on_recovery_and_predictions_may_name_a_template() {
    let ok = load(
        r#"
checks:
  - name: lb
    tcp: {address: "lb:80"}
  - name: api
    depends_on: [web]
    tcp: {address: "api:80"}
check_templates:
  - name: web
    file_sd: [t.json]
    depends_on: [lb]
    recovery: restart
    tcp: {address: "{{ target }}"}
recovery:
  chains:
    restart:
      steps: [{name: s, exec: {program: /bin/true}}]
predictions:
  - {name: latency, check: web, measurement: duration_seconds, horizons: [1h]}
"#,
    )
    .unwrap();
    assert_eq!(ok.predictions[0].check, "web");
    let e = errors(
        r#"
check_templates:
  - name: web
    file_sd: [t.json]
    depends_on: [web, nothere]
    recovery: nochain
    tcp: {address: "{{ target }}"}
predictions:
  - {name: cpu, check: web, measurement: cpu_utilization}
"#,
    );
    assert_eq!(
        e,
        vec![
            r#"check_templates[0] "web": depends_on "nothere" is not a configured check"#,
            r#"check_templates[0] "web": depends_on makes a cycle: web -> web"#,
            r#"check_templates[0] "web": recovery chain "nochain" is not defined in recovery.chains"#,
            r#"predictions[0] "cpu": measurement "cpu_utilization" is not produced by the tcp checks of template "web""#,
        ]
    );
}

/// The keys an unknown-key error lists, in order.
fn expected_keys(error: &str) -> Vec<String> {
    let list = error
        .split_once("expected one of ")
        .map(|(_, l)| l)
        .unwrap_or_default();
    let list = list.split(" (line").next().unwrap_or_default();
    list.split(", ")
        .map(|k| k.trim_matches('`').to_string())
        .collect()
}

#[test]
fn an_unknown_key_is_told_with_every_key_a_template_takes() {
    // A check's keys as serde lists them: CHECK_KEYS must not drift from CheckFile.
    let check = errors("checks: [{name: a, tcp: {address: 'h:1'}, zz: 1}]");
    assert_eq!(check.len(), 1, "{check:?}");
    assert_eq!(expected_keys(&check[0]), super::checks::CHECK_KEYS);
    let template =
        errors("check_templates: [{name: a, file_sdd: [x.json], tcp: {address: '{{ target }}'}}]");
    assert_eq!(template.len(), 1, "one mistake, one error: {template:?}");
    assert!(
        template[0].starts_with(r#"check_templates[0] "a".file_sdd: unknown field `file_sdd`"#),
        "{template:?}"
    );
    let keys = expected_keys(&template[0]);
    for key in super::checks::CHECK_KEYS.iter().chain(&super::SOURCE_KEYS) {
        assert!(keys.contains(&key.to_string()), "{key} in {keys:?}");
    }
}
