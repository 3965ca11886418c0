//! Checks from discovered targets, against the real binary: target files rewritten while medic
//! runs, a local http_sd server that changes its list, fails, stalls and overflows, dnsmasq
//! answering SRV and A, 10,000 targets from one file, and discovered checks healed, predicted,
//! blocked and sharded like written ones (`INDEX/COUNT`, and `auto` on PostgreSQL with a replica
//! killed). Every change is waited for with a deadline of 10 s:
//! the SPEC's bound for a change to apply.

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use crate::pki::Pki;
use crate::support::{free_port, metric_value, wait_for, Daemon, Medic};

/// The SPEC's bound: a change of a target list applies within this, without a reload.
const APPLIES_WITHIN: Duration = Duration::from_secs(10);

/// A TCP port that accepts (and drops) every connection: a healthy `tcp` target. Its own
/// thread: the test's runtime may be busy reading a large answer while thousands connect.
async fn open_port() -> u16 {
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            drop(stream);
        }
    });
    port
}

/// The names of the checks `/api/v1/health` lists.
async fn checks(medic: &Medic) -> BTreeSet<String> {
    let v = medic.json("/api/v1/health").await;
    v["checks"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Waits until the discovered checks (those named `<template>/…`) are exactly `want`.
async fn wait_checks(medic: &Medic, template: &str, want: &[&str]) -> Duration {
    let started = Instant::now();
    let prefix = format!("{template}/");
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let what = format!("the checks of {template} to be {want:?}");
    wait_for(&what, APPLIES_WITHIN, || async {
        let now: BTreeSet<String> = checks(medic)
            .await
            .into_iter()
            .filter(|c| c.starts_with(&prefix))
            .collect();
        (now == want).then_some(())
    })
    .await;
    started.elapsed()
}

/// Waits until every series of `/metrics` that names a check of `gone` is gone.
async fn wait_series_gone(medic: &Medic, gone: &str) {
    let needle = format!("check=\"{gone}\"");
    wait_for(
        &format!("the series of {gone} to go"),
        APPLIES_WITHIN,
        || async { (!medic.metrics().await.contains(&needle)).then_some(()) },
    )
    .await;
}

async fn last_run(medic: &Medic, check: &str) -> Option<String> {
    let v = medic.json(&format!("/api/v1/checks/{check}")).await;
    v["last_run"].as_str().map(String::from)
}

/// Replaces a file as a careful tool would: a new file renamed over the old one.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[tokio::test]
async fn file_sd_files_rewritten_while_medic_runs() {
    let up = open_port().await;
    let down = free_port();
    let targets = tempfile::tempdir().unwrap();
    let dir = targets.path();
    let json = dir.join("web.json");
    let yaml = dir.join("more.yml");
    let (t1, t2, t3) = (
        format!("127.0.0.1:{up}"),
        format!("127.0.0.2:{up}"),
        format!("127.0.0.1:{down}"),
    );
    replace(
        &json,
        &format!(r#"[{{"targets": ["{t1}"], "labels": {{"env": "prod"}}}}]"#),
    );
    replace(&yaml, &format!("- targets: ['{t2}']\n"));
    let config = format!(
        r#"check_templates:
  - name: web
    file_sd: ["{}/*.json", "{}"]
    interval: 300ms
    labels: {{team: web}}
    tcp: {{address: "{{{{ target }}}}"}}
"#,
        dir.display(),
        yaml.display()
    );
    let medic = Medic::start(&config).await;
    wait_checks(&medic, "web", &[&format!("web/{t1}"), &format!("web/{t2}")]).await;
    medic.wait_status(&format!("web/{t1}"), "healthy").await;
    let v = medic.wait_status(&format!("web/{t2}"), "healthy").await;
    assert_eq!(v["template"], "web", "{v}");
    assert_eq!(v["labels"]["team"], "web", "{v}");
    let metrics = medic.metrics().await;
    for series in [
        format!(r#"medic_check_labels{{check="web/{t1}",env="prod",team="web"}}"#),
        format!(r#"medic_check_labels{{check="web/{t2}",team="web"}}"#),
        r#"medic_sd_targets{template="web"}"#.to_string(),
        r#"medic_sd_refresh_failures_total{template="web",mechanism="file_sd"}"#.to_string(),
    ] {
        assert!(
            metric_value(&metrics, &series).is_some(),
            "{series} in\n{metrics}"
        );
    }
    assert_eq!(
        metric_value(&metrics, r#"medic_sd_targets{template="web"}"#),
        Some(2.0)
    );
    // The other metrics keep `check` alone.
    assert!(metrics.contains(&format!(r#"medic_check_success{{check="web/{t1}"}} 1"#)));
    promtool_check_metrics(&metrics);

    // Add: a third target in the JSON file, probed as soon as it is seen.
    replace(
        &json,
        &format!(r#"[{{"targets": ["{t1}", "{t3}"], "labels": {{"env": "prod"}}}}]"#),
    );
    let took = wait_checks(
        &medic,
        "web",
        &[
            &format!("web/{t1}"),
            &format!("web/{t2}"),
            &format!("web/{t3}"),
        ],
    )
    .await;
    medic.wait_status(&format!("web/{t3}"), "critical").await;
    eprintln!("file_sd: a target added applied in {took:?}");

    // Change labels: the info series follows; its old label set is gone.
    replace(
        &json,
        &format!(r#"[{{"targets": ["{t1}", "{t3}"], "labels": {{"env": "dev"}}}}]"#),
    );
    let dev = format!(r#"medic_check_labels{{check="web/{t1}",env="dev",team="web"}}"#);
    wait_for("env=dev in medic_check_labels", APPLIES_WITHIN, || async {
        let m = medic.metrics().await;
        (metric_value(&m, &dev) == Some(1.0) && !m.contains(r#"env="prod""#)).then_some(())
    })
    .await;

    // Remove: the check stops and every series of it goes.
    replace(
        &json,
        &format!(r#"[{{"targets": ["{t1}"], "labels": {{"env": "dev"}}}}]"#),
    );
    wait_checks(&medic, "web", &[&format!("web/{t1}"), &format!("web/{t2}")]).await;
    wait_series_gone(&medic, &format!("web/{t3}")).await;
    let (code, _) = medic.get(&format!("/api/v1/checks/web/{t3}")).await;
    assert_eq!(code, 404);

    // Garbage: counted, said in the log, and the last good targets keep being probed.
    std::fs::write(&json, "[{\"targets\": [\"127.0").unwrap();
    let failures = r#"medic_sd_refresh_failures_total{template="web",mechanism="file_sd"}"#;
    medic.wait_metric(failures, 1.0, APPLIES_WITHIN).await;
    wait_for("the failure in the log", APPLIES_WITHIN, || async {
        medic
            .logs()
            .contains("not a target list in JSON")
            .then_some(())
    })
    .await;
    let before = last_run(&medic, &format!("web/{t1}")).await;
    wait_for("web/t1 probed again", APPLIES_WITHIN, || async {
        (last_run(&medic, &format!("web/{t1}")).await != before).then_some(())
    })
    .await;
    assert_eq!(checks(&medic).await.len(), 2);
    // Truncated to nothing, as a writer that died after opening it leaves it: the same.
    std::fs::File::create(&json).unwrap();
    medic.wait_metric(failures, 2.0, APPLIES_WITHIN).await;
    let before = last_run(&medic, &format!("web/{t1}")).await;
    wait_for("web/t1 probed again", APPLIES_WITHIN, || async {
        (last_run(&medic, &format!("web/{t1}")).await != before).then_some(())
    })
    .await;
    assert_eq!(checks(&medic).await.len(), 2);

    // Delete: the file's targets go with it.
    std::fs::remove_file(&yaml).unwrap();
    wait_checks(&medic, "web", &[&format!("web/{t1}")]).await;
    wait_series_gone(&medic, &format!("web/{t2}")).await;

    // A reload without the template: its checks and its series go.
    medic.write_config("checks: []\n");
    let (code, body) = medic.post("/-/reload").await;
    assert_eq!(code, 200, "{body}");
    wait_checks(&medic, "web", &[]).await;
    let m = medic.metrics().await;
    assert!(
        !m.contains(r#"template="web""#) && !m.contains("check=\"web/"),
        "{m}"
    );
}

#[tokio::test]
async fn max_targets_bounds_a_runaway_list() {
    let up = open_port().await;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    let list = |hosts: std::ops::Range<u8>| {
        let targets: Vec<String> = hosts.map(|i| format!("127.0.0.{i}:{up}")).collect();
        serde_json::json!([{ "targets": targets }]).to_string()
    };
    replace(&a, &list(1..3));
    replace(&b, &list(3..5));
    let config = format!(
        "check_templates:\n  - name: capped\n    file_sd: [\"{}/*.json\"]\n    max_targets: 3\n    interval: 300ms\n    tcp: {{address: \"{{{{ target }}}}\"}}\n",
        dir.path().display()
    );
    let medic = Medic::start(&config).await;
    let refused = r#"medic_sd_targets_refused_total{template="capped",reason="max_targets"}"#;
    let failures = r#"medic_sd_refresh_failures_total{template="capped",mechanism="file_sd"}"#;
    assert_eq!(medic.metric(failures).await, Some(0.0));
    // Two files of two: the first three (in file order) make checks, the fourth is refused.
    let first_three: Vec<String> = (1..4).map(|i| format!("capped/127.0.0.{i}:{up}")).collect();
    let first_three: Vec<&str> = first_three.iter().map(String::as_str).collect();
    wait_checks(&medic, "capped", &first_three).await;
    medic.wait_metric(refused, 1.0, APPLIES_WITHIN).await;
    assert_eq!(
        medic.metric(r#"medic_sd_targets{template="capped"}"#).await,
        Some(3.0)
    );
    wait_for("the refusal in the log", APPLIES_WITHIN, || async {
        medic
            .logs()
            .contains("discovered targets refused")
            .then_some(())
    })
    .await;
    // One file alone over the bound: refused whole, counted, its last good targets stay.
    replace(&a, &list(1..10));
    medic.wait_metric(failures, 1.0, APPLIES_WITHIN).await;
    wait_for("the runaway file in the log", APPLIES_WITHIN, || async {
        medic
            .logs()
            .contains("9 targets, more than max_targets 3")
            .then_some(())
    })
    .await;
    assert_eq!(
        checks(&medic).await,
        first_three.iter().map(|s| s.to_string()).collect()
    );
}

/// `promtool check metrics` on a scrape: `medic_check_labels`' label sets vary by check.
fn promtool_check_metrics(text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/test.sh installs it)");
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// How the http_sd server answers now.
#[derive(Clone)]
struct Answer {
    status: u16,
    body: String,
    delay: Duration,
    content_type: &'static str,
}

/// A local http_sd endpoint: answers what the test sets, to requests with the right token.
struct SdServer {
    url: String,
    answer: Arc<Mutex<Answer>>,
}

impl SdServer {
    async fn start(token: &'static str) -> SdServer {
        SdServer::start_with(token, None).await
    }

    /// The same endpoint over TLS, presenting the certificate `tls` holds.
    async fn start_tls(token: &'static str, tls: Arc<rustls::ServerConfig>) -> SdServer {
        SdServer::start_with(token, Some(tokio_rustls::TlsAcceptor::from(tls))).await
    }

    async fn start_with(token: &'static str, tls: Option<tokio_rustls::TlsAcceptor>) -> SdServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}/targets", listener.local_addr().unwrap());
        let answer = Arc::new(Mutex::new(Answer {
            status: 200,
            body: "[]".into(),
            delay: Duration::ZERO,
            content_type: "application/json",
        }));
        let shared = answer.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let shared = shared.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let answer = shared.lock().unwrap().clone();
                        let authorized = req
                            .headers()
                            .get("authorization")
                            .is_some_and(|v| v == format!("Bearer {token}").as_str());
                        async move {
                            tokio::time::sleep(answer.delay).await;
                            let (status, body) = if authorized {
                                (answer.status, answer.body)
                            } else {
                                (401, "unauthorized".to_string())
                            };
                            let mut resp = hyper::Response::new(Full::new(Bytes::from(body)));
                            *resp.status_mut() = hyper::StatusCode::from_u16(status).unwrap();
                            resp.headers_mut().insert(
                                "content-type",
                                hyper::header::HeaderValue::from_static(answer.content_type),
                            );
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    let _ = match tls {
                        None => http.serve_connection(TokioIo::new(stream), service).await,
                        Some(tls) => match tls.accept(stream).await {
                            Ok(stream) => {
                                http.serve_connection(TokioIo::new(stream), service).await
                            }
                            Err(_) => return,
                        },
                    };
                });
            }
        });
        SdServer { url, answer }
    }

    fn set(&self, change: impl FnOnce(&mut Answer)) {
        change(&mut self.answer.lock().unwrap());
    }

    fn list(&self, targets: &[&str]) {
        let body = serde_json::json!([{"targets": targets, "labels": {"source": "cmdb"}}]);
        self.set(|a| {
            *a = Answer {
                status: 200,
                body: body.to_string(),
                delay: Duration::ZERO,
                content_type: "application/json; charset=utf-8",
            }
        });
    }
}

#[tokio::test]
async fn http_sd_lists_change_fail_stall_and_overflow() {
    let up = open_port().await;
    let server = SdServer::start("sd-token-3f1").await;
    let (a, b, c) = (
        format!("127.0.0.1:{up}"),
        format!("127.0.0.2:{up}"),
        format!("127.0.0.3:{up}"),
    );
    server.list(&[&a, &b]);
    let config = format!(
        r#"check_templates:
  - name: api
    http_sd:
      url: "{}"
      refresh_interval: 500ms
      timeout: 400ms
      max_body_bytes: 4000
      bearer_token: sd-token-3f1
    interval: 300ms
    tcp: {{address: "{{{{ target }}}}"}}
  - name: locked
    http_sd:
      - {{url: "{}", refresh_interval: 500ms, timeout: 400ms, basic_auth: {{username: sd, password: basic-pw-5c7}}}}
      - {{url: "{}", refresh_interval: 500ms, timeout: 400ms}}
    interval: 300ms
    tcp: {{address: "{{{{ target }}}}"}}
"#,
        server.url,
        server.url,
        server.url.replace("http://", "http://sd:url-pw-8e4@"),
    );
    let medic = Medic::start(&config).await;
    wait_checks(&medic, "api", &[&format!("api/{a}"), &format!("api/{b}")]).await;
    let v = medic.wait_status(&format!("api/{a}"), "healthy").await;
    assert_eq!(v["labels"]["source"], "cmdb", "{v}");
    let failures = r#"medic_sd_refresh_failures_total{template="api",mechanism="http_sd"}"#;
    assert_eq!(medic.metric(failures).await, Some(0.0));

    // A changed list: one target goes, one comes.
    server.list(&[&b, &c]);
    let took = wait_checks(&medic, "api", &[&format!("api/{b}"), &format!("api/{c}")]).await;
    eprintln!("http_sd: a changed list applied in {took:?}");
    wait_series_gone(&medic, &format!("api/{a}")).await;

    // Each failure is counted and said; the last good list stays through all of them.
    let mut seen = 0.0;
    for (what, said, change) in [
        (
            "500",
            "HTTP 500",
            Box::new(|a: &mut Answer| a.status = 500) as Box<dyn FnOnce(&mut Answer)>,
        ),
        (
            "slow",
            "timeout",
            Box::new(|a: &mut Answer| a.delay = Duration::from_secs(2)),
        ),
        (
            "oversized",
            "larger than max_body_bytes 4000",
            Box::new(|a: &mut Answer| {
                a.body = format!(r#"[{{"targets": ["{}"]}}]"#, "x".repeat(5000));
            }),
        ),
        (
            "not JSON",
            "is not application/json",
            Box::new(|a: &mut Answer| a.content_type = "text/html"),
        ),
    ] {
        server.list(&[&b, &c]);
        server.set(change);
        seen = medic
            .wait_metric(failures, seen + 1.0, APPLIES_WITHIN)
            .await;
        wait_for(&format!("{what} in the log"), APPLIES_WITHIN, || async {
            medic.logs().contains(said).then_some(())
        })
        .await;
        assert_eq!(
            checks(&medic).await,
            BTreeSet::from([format!("api/{b}"), format!("api/{c}")]),
            "{what}: the last good targets stay"
        );
    }
    server.list(&[&a]);
    wait_checks(&medic, "api", &[&format!("api/{a}")]).await;

    // Credentials go on the request only: the endpoint that refuses them (401) is named in the
    // log with its URL's password hidden, and no credential shows anywhere medic writes.
    let locked = r#"medic_sd_refresh_failures_total{template="locked",mechanism="http_sd"}"#;
    medic.wait_metric(locked, 2.0, APPLIES_WITHIN).await;
    wait_for("the refusal in the log", APPLIES_WITHIN, || async {
        medic.logs().contains("HTTP 401").then_some(())
    })
    .await;
    let mut written = vec![medic.logs(), medic.metrics().await];
    for path in [
        "/".to_string(),
        "/?q=api".to_string(),
        "/api/v1/health".to_string(),
        format!("/api/v1/checks/api/{a}"),
        format!("/checks/{}", format!("api/{a}").replace('/', "%2F")),
    ] {
        written.push(medic.get(&path).await.1);
    }
    let config = medic.config_path.clone();
    let out = Command::new(crate::support::MEDIC)
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    written.push(String::from_utf8_lossy(&out.stdout).into_owned());
    written.push(String::from_utf8_lossy(&out.stderr).into_owned());
    assert!(
        written[0].contains("http://sd:<secret>@"),
        "the URL named, its password hidden: {}",
        written[0]
    );
    for text in &written {
        for secret in ["sd-token-3f1", "basic-pw-5c7", "url-pw-8e4"] {
            assert!(!text.contains(secret), "{secret} in:\n{text}");
        }
    }
}

#[tokio::test]
async fn dns_sd_srv_and_a_records_from_dnsmasq() {
    let dir = tempfile::tempdir().unwrap();
    let up = open_port().await;
    let port = free_port();
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "127.0.0.1 multi.sd.test\n127.0.0.2 multi.sd.test\n").unwrap();
    let dnsmasq = ["/usr/sbin/dnsmasq", "dnsmasq"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok())
        .expect("dnsmasq is needed (Debian package dnsmasq-base; scripts/test.sh installs it)");
    let server = Daemon::start(
        dnsmasq,
        &[
            "--no-daemon".to_string(),
            format!("--port={port}"),
            "--listen-address=127.0.0.1".to_string(),
            "--bind-interfaces".to_string(),
            "--no-resolv".to_string(),
            "--no-hosts".to_string(),
            format!("--addn-hosts={}", hosts.display()),
            // No upstream: a name it does not know is NXDOMAIN, not REFUSED.
            "--address=/gone.sd.test/".to_string(),
            format!("--srv-host=_web._tcp.sd.test,one.sd.test,{up}"),
            format!("--srv-host=_web._tcp.sd.test,two.sd.test,{up}"),
        ],
        &dir.path().join("dnsmasq.log"),
    );
    wait_for("dnsmasq to listen", APPLIES_WITHIN, || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(drop)
    })
    .await;
    let config = format!(
        r#"check_templates:
  - name: srv
    dns_sd: {{names: ["_web._tcp.sd.test"], type: SRV, server: "127.0.0.1:{port}", refresh_interval: 500ms}}
    interval: 300ms
    # SRV targets name hosts only this DNS server knows: the port label is enough here.
    tcp: {{address: "127.0.0.1:{{{{ labels.__meta_dns_srv_record_port }}}}"}}
  - name: hosts
    dns_sd:
      - {{names: ["multi.sd.test", "gone.sd.test"], type: A, port: {up}, server: "127.0.0.1:{port}", refresh_interval: 500ms}}
    interval: 300ms
    tcp: {{address: "{{{{ target }}}}"}}
"#
    );
    let medic = Medic::start(&config).await;
    wait_checks(
        &medic,
        "srv",
        &[
            &format!("srv/one.sd.test:{up}"),
            &format!("srv/two.sd.test:{up}"),
        ],
    )
    .await;
    let v = medic
        .wait_status(&format!("srv/one.sd.test:{up}"), "healthy")
        .await;
    assert_eq!(v["labels"]["__meta_dns_name"], "_web._tcp.sd.test", "{v}");
    // NXDOMAIN (gone.sd.test) is no target, and no failure.
    wait_checks(
        &medic,
        "hosts",
        &[
            &format!("hosts/127.0.0.1:{up}"),
            &format!("hosts/127.0.0.2:{up}"),
        ],
    )
    .await;
    medic
        .wait_status(&format!("hosts/127.0.0.2:{up}"), "healthy")
        .await;
    let failures = r#"medic_sd_refresh_failures_total{template="hosts",mechanism="dns_sd"}"#;
    assert_eq!(medic.metric(failures).await, Some(0.0));

    // dnsmasq reads its hosts file again on SIGHUP: the answer changes, so do the checks.
    std::fs::write(&hosts, "127.0.0.3 multi.sd.test\n").unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.pid() as i32),
        nix::sys::signal::Signal::SIGHUP,
    )
    .unwrap();
    wait_checks(&medic, "hosts", &[&format!("hosts/127.0.0.3:{up}")]).await;

    // The server gone: failures counted, the last good targets stay.
    drop(server);
    medic.wait_metric(failures, 1.0, APPLIES_WITHIN).await;
    assert!(checks(&medic)
        .await
        .contains(&format!("hosts/127.0.0.3:{up}")));
}

#[tokio::test]
async fn discovered_checks_heal_predict_and_wait_like_written_ones() {
    let dir = tempfile::tempdir().unwrap();
    let healed = dir.path().join("healed");
    let down = free_port();
    let gate_down = free_port();
    let file = dir.path().join("t.yml");
    replace(
        &file,
        &format!("- targets: ['127.0.0.1:{down}']\n  labels: {{service: billing}}\n"),
    );
    let config = format!(
        r#"checks:
  - name: gate
    interval: 300ms
    tcp: {{address: "127.0.0.1:{gate_down}"}}
check_templates:
  - name: svc
    file_sd: ["{file}"]
    interval: 300ms
    recovery: restart
    tcp: {{address: "{{{{ target }}}}"}}
  - name: behind
    file_sd: ["{file}"]
    interval: 300ms
    depends_on: [gate]
    tcp: {{address: "{{{{ target }}}}"}}
recovery:
  limits: {{max_unhealthy: 100%}}
  chains:
    restart:
      verify_timeout: 1s
      steps:
        - name: note
          exec: {{program: /bin/sh, args: ["-c", "echo $1 $2 >> {healed}", "sh", "{{{{ check }}}}", "{{{{ labels.service }}}}"]}}
          max_attempts: 1
predictions:
  - {{name: latency, check: svc, measurement: duration_seconds, horizons: [1m]}}
"#,
        file = file.display(),
        healed = healed.display(),
    );
    let medic = Medic::start(&config).await;
    let check = format!("svc/127.0.0.1:{down}");
    medic.wait_status(&check, "critical").await;
    // Recovery: the chain ran for the discovered check, with its target's labels.
    let line = wait_for("the step to run", APPLIES_WITHIN, || async {
        std::fs::read_to_string(&healed)
            .ok()
            .filter(|t| !t.is_empty())
    })
    .await;
    assert_eq!(line.trim(), format!("{check} billing"));
    // Prediction: one per target, named <prediction>/<target>.
    let prediction = format!("latency/127.0.0.1:{down}");
    wait_for("the per-target prediction", APPLIES_WITHIN, || async {
        let v = medic.json("/api/v1/predictions").await;
        v["predictions"]
            .as_array()?
            .iter()
            .any(|p| p["name"] == prediction.as_str() && p["check"] == check.as_str())
            .then_some(())
    })
    .await;
    // Dependencies: a failing written check blocks the template's checks.
    let blocked = format!("behind/127.0.0.1:{down}");
    let v = wait_for("behind to be blocked by gate", APPLIES_WITHIN, || async {
        let v = medic.json(&format!("/api/v1/checks/{blocked}")).await;
        (v["blocked_by"] == serde_json::json!(["gate"])).then_some(v)
    })
    .await;
    assert_eq!(v["status"], "critical", "{v}");
    medic
        .wait_metric(
            &format!(r#"medic_check_blocked{{check="{blocked}"}}"#),
            1.0,
            APPLIES_WITHIN,
        )
        .await;
    // The status page shows them, labels and all.
    let (code, page) = medic.get("/?q=svc").await;
    assert_eq!(code, 200);
    assert!(
        page.contains("template svc") && page.contains("service=billing"),
        "{page}"
    );
    let (code, page) = medic
        .get(&format!("/checks/{}", check.replace('/', "%2F")))
        .await;
    assert_eq!(code, 200, "{page}");
    assert!(page.contains("service=billing"), "{page}");
}

#[tokio::test]
async fn shards_split_discovered_checks_like_written_ones() {
    let dir = tempfile::tempdir().unwrap();
    let up = open_port().await;
    let file = dir.path().join("t.json");
    let targets: Vec<String> = (1..=20).map(|i| format!("127.0.0.{i}:{up}")).collect();
    replace(
        &file,
        &serde_json::json!([{"targets": targets}]).to_string(),
    );
    let config = format!(
        "check_templates:\n  - name: w\n    file_sd: [\"{}\"]\n    interval: 300ms\n    tcp: {{address: \"{{{{ target }}}}\"}}\n",
        file.display()
    );
    let a = Medic::start_with(&config, &["--cluster.shard", "0/2"]).await;
    let b = Medic::start_with(&config, &["--cluster.shard", "1/2"]).await;
    let (mine_a, mine_b) = wait_for(
        "both shards to have their checks",
        APPLIES_WITHIN,
        || async {
            let (x, y) = (checks(&a).await, checks(&b).await);
            (x.len() + y.len() == 20).then_some((x, y))
        },
    )
    .await;
    assert!(mine_a.is_disjoint(&mine_b), "{mine_a:?} {mine_b:?}");
    assert!(!mine_a.is_empty() && !mine_b.is_empty());
    let all: BTreeSet<String> = mine_a.union(&mine_b).cloned().collect();
    let want: BTreeSet<String> = targets.iter().map(|t| format!("w/{t}")).collect();
    assert_eq!(all, want);
    // Each counts the targets it discovered, probes only its own.
    assert_eq!(
        a.metric(r#"medic_sd_targets{template="w"}"#).await,
        Some(20.0)
    );
    let metrics_b = b.metrics().await;
    for name in &mine_a {
        assert!(!metrics_b.contains(&format!("check=\"{name}\"")), "{name}");
    }
}

#[tokio::test]
async fn shard_auto_owns_discovered_checks_like_written_ones() {
    let pg = crate::pg::PgCluster::start();
    let up = open_port().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.json");
    let targets: Vec<String> = (1..=20).map(|i| format!("127.0.0.{i}:{up}")).collect();
    replace(
        &file,
        &serde_json::json!([{"targets": targets}]).to_string(),
    );
    let config = format!(
        "checks:\n  - name: written\n    interval: 300ms\n    tcp: {{address: \"127.0.0.1:{up}\"}}\ncheck_templates:\n  - name: w\n    file_sd: [\"{}\"]\n    interval: 300ms\n    tcp: {{address: \"{{{{ target }}}}\"}}\n",
        file.display()
    );
    let args = ["--cluster.shard", "auto"];
    let mut a = Medic::spawn_unready(&config, &args, Some(pg.url()));
    let mut b = Medic::spawn_unready(&config, &args, Some(pg.url()));
    a.wait_ready().await;
    b.wait_ready().await;
    let want: BTreeSet<String> = targets
        .iter()
        .map(|t| format!("w/{t}"))
        .chain(["written".to_string()])
        .collect();
    // Written and discovered checks split by the same rule: each owned by exactly one.
    let (mine_a, mine_b) = wait_for(
        "the two replicas to split",
        Duration::from_secs(30),
        || async {
            let (x, y) = (checks(&a).await, checks(&b).await);
            let all: BTreeSet<String> = x.union(&y).cloned().collect();
            (x.is_disjoint(&y)
                && all == want
                && x.iter().any(|c| c.starts_with("w/"))
                && y.iter().any(|c| c.starts_with("w/")))
            .then_some((x, y))
        },
    )
    .await;
    assert!(!mine_a.is_empty() && !mine_b.is_empty());
    // A replica gone: the other takes its discovered checks, as it takes written ones.
    b.signal(nix::sys::signal::Signal::SIGKILL);
    b.wait_exit(Duration::from_secs(5)).await;
    wait_for(
        "the survivor to own every check",
        Duration::from_secs(20),
        || async { (checks(&a).await == want).then_some(()) },
    )
    .await;
    // And probes them itself (its own counter moves; the history it loaded does not count).
    for check in mine_b.iter().filter(|c| c.starts_with("w/")) {
        let runs = format!(r#"medic_check_runs_total{{check="{check}",status="healthy"}}"#);
        a.wait_metric(&runs, 1.0, APPLIES_WITHIN).await;
    }
}

#[test]
fn check_config_reads_the_sources_once_and_says_what_they_would_make() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.json"),
        r#"[{"targets": ["h1:80", "h2:80", "h1:80", "bad target"], "labels": {"x": "1"}}, {"targets": ["h1:80"]}]"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("b.json"), "garbage").unwrap();
    let config = dir.path().join("medic.yml");
    std::fs::write(
        &config,
        "check_templates:\n  - name: web\n    file_sd: ['*.json']\n    http: {url: 'http://{{ target }}/'}\n",
    )
    .unwrap();
    let out = Command::new(crate::support::MEDIC)
        .arg("check-config")
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    for line in [
        r#"check template "web" (file_sd): 2 http checks, 2 targets refused, 1 lists unreadable"#,
        "  refused (collision): 1, the first: h1:80",
        "  refused (name): 1, the first: bad target",
        "b.json: not a target list in JSON: expected value at line 1 column 1",
    ] {
        assert!(stdout.contains(line), "{line:?} not in:\n{stdout}");
    }
}

#[tokio::test]
async fn ten_thousand_targets_from_one_file() {
    const N: usize = 10_000;
    let up = open_port().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("targets.json");
    // Every 127.x.y.z is this host's loopback: 10,000 targets, one listener.
    let targets: Vec<String> = (0..N)
        .map(|i| format!("127.0.{}.{}:{up}", i / 250, i % 250 + 1))
        .collect();
    replace(
        &file,
        &serde_json::json!([{"targets": targets, "labels": {"env": "bench", "team": "load"}}])
            .to_string(),
    );
    let config = format!(
        "check_templates:\n  - name: fleet\n    file_sd: [\"{}\"]\n    interval: 5s\n    timeout: 2s\n    tcp: {{address: \"{{{{ target }}}}\"}}\n",
        file.display()
    );
    let started = Instant::now();
    let mut medic = Medic::spawn_unready(&config, &[], None);
    medic.wait_ready().await;
    let ready = started.elapsed();
    let listed = wait_for("10,000 checks", APPLIES_WITHIN, || async {
        (checks(&medic).await.len() == N).then(|| started.elapsed())
    })
    .await;
    // Asked once a second: a 10,000-check answer is work for medic too.
    let probed = wait_for("every check probed once", APPLIES_WITHIN, || async {
        let v = medic.json("/api/v1/health").await;
        let unprobed = v["summary"]["unknown"].as_u64()?;
        if unprobed > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        (unprobed == 0).then(|| started.elapsed())
    })
    .await;
    // The scheduler spreads first probes over the interval (5 s) so 10,000 never fire at once:
    // every check is probed within that of its start, with room for a loaded test machine.
    assert!(listed <= APPLIES_WITHIN, "listed after {listed:?}");
    assert!(
        probed <= listed + Duration::from_secs(5 + 3),
        "listed after {listed:?}, probed after {probed:?}"
    );
    let v = medic.json("/api/v1/health").await;
    assert_eq!(v["summary"]["healthy"], N, "{}", v["summary"]);
    // The scrape: median of three.
    let mut scrapes = Vec::new();
    let mut size = 0;
    for _ in 0..3 {
        let t = Instant::now();
        let text = medic.metrics().await;
        scrapes.push(t.elapsed());
        size = text.len();
        assert_eq!(
            text.matches("medic_check_labels{").count(),
            N,
            "one info series per check"
        );
    }
    scrapes.sort();
    let rss_kib: u64 = std::fs::read_to_string(format!("/proc/{}/status", medic.pid()))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    println!(
        "10,000 targets from one file: ready {:.2}s, all listed {:.2}s, all probed {:.2}s after start; \
         RSS {:.1} MiB; /metrics {:.1} MB in {:.0} ms (median of 3)",
        ready.as_secs_f64(),
        listed.as_secs_f64(),
        probed.as_secs_f64(),
        rss_kib as f64 / 1024.0,
        size as f64 / 1e6,
        scrapes[1].as_secs_f64() * 1000.0,
    );
    let _ = medic.child.as_mut().map(|c| c.kill());
}

/// An http_sd endpoint over TLS whose certificate names `sd.internal`, reached at 127.0.0.1:
/// with `tls_config.server_name` the name is verified and the targets come; without it the
/// certificate does not match the address, the refresh fails and is counted, and no check is
/// made.
#[tokio::test]
async fn http_sd_over_tls_verifies_the_server_name_it_is_given() {
    let pki = Pki::new();
    pki.leaf("sd", "sd.internal", "ca", 30);
    let server = SdServer::start_tls("sd-token-tls", pki.server_config("sd", "ca")).await;
    let up = open_port().await;
    let target = format!("127.0.0.1:{up}");
    server.list(&[&target]);
    let ca = pki.path("ca.pem");
    let config = format!(
        r#"check_templates:
  - name: named
    http_sd:
      url: "{url}"
      refresh_interval: 500ms
      bearer_token: sd-token-tls
      tls_config: {{ca_file: "{ca}", server_name: sd.internal}}
    interval: 300ms
    tcp: {{address: "{{{{ target }}}}"}}
  - name: unnamed
    http_sd:
      url: "{url}"
      refresh_interval: 500ms
      bearer_token: sd-token-tls
      tls_config: {{ca_file: "{ca}"}}
    interval: 300ms
    tcp: {{address: "{{{{ target }}}}"}}
"#,
        url = server.url,
        ca = ca.display(),
    );
    let medic = Medic::start(&config).await;
    wait_checks(&medic, "named", &[&format!("named/{target}")]).await;
    medic
        .wait_status(&format!("named/{target}"), "healthy")
        .await;
    let failures = r#"medic_sd_refresh_failures_total{template="unnamed",mechanism="http_sd"}"#;
    wait_for(
        "the unnamed template's refresh to fail",
        Duration::from_secs(10),
        || async { (medic.metric(failures).await? >= 1.0).then_some(()) },
    )
    .await;
    let checks = medic.json("/api/v1/health").await;
    assert!(
        !checks["checks"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("unnamed/")),
        "{checks}"
    );
}
