//! The check kinds of issue 19 (tls, dns, grpc, heartbeat) against real servers on loopback,
//! and the failure `reason` every failing probe carries.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::pki::Pki;
use crate::support::{free_port, script, wait_for, Medic, Target};

/// `promtool check metrics` on medic's exposition.
fn promtool_check(text: &str) {
    use std::io::Write;
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) must be installed");
    promtool
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = promtool.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Waits until the check is critical for `reason` (a first probe may still time out while
/// the machine is busy).
async fn wait_failure(medic: &Medic, check: &str, reason: &str) -> serde_json::Value {
    let url = format!("/api/v1/checks/{check}");
    wait_for(
        &format!("{check} critical for {reason}"),
        Duration::from_secs(20),
        || async {
            let v = medic.json(&url).await;
            (v["status"] == "critical" && v["reason"] == reason).then_some(v)
        },
    )
    .await
}

/// The check's status and reason once its status is `want`.
async fn wait_reason(medic: &Medic, check: &str, want: &str) -> String {
    let v = medic.wait_status(check, want).await;
    v["reason"].as_str().unwrap_or("").to_string()
}

#[tokio::test]
async fn every_failing_kind_carries_its_reason() {
    let target = Target::start().await;
    target.set(503, "down", Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let failing = script(dir.path(), "failing.sh", "echo 'CRITICAL - broken'; exit 2");
    let slow = script(dir.path(), "slow.sh", "sleep 5");
    let closed = free_port();
    let medic = Medic::start(&format!(
        "checks:
  - name: web
    interval: 100ms
    http: {{url: '{}'}}
  - name: refused
    interval: 100ms
    tcp: {{address: '127.0.0.1:{closed}'}}
  - name: refused_http
    interval: 100ms
    http: {{url: 'http://127.0.0.1:{closed}/'}}
  - name: plugin
    interval: 100ms
    command: {{program: '{}'}}
  - name: slow
    interval: 300ms
    timeout: 200ms
    command: {{program: '{}'}}
  - name: nowhere
    interval: 200ms
    http: {{url: 'http://no-such-host.invalid/'}}
",
        target.url("/health"),
        failing.display(),
        slow.display(),
    ))
    .await;
    for (check, reason) in [
        ("web", "status"),
        ("refused", "connection_refused"),
        ("refused_http", "connection_refused"),
        ("plugin", "exit_code"),
        ("slow", "timeout"),
        ("nowhere", "dns"),
    ] {
        assert_eq!(
            wait_reason(&medic, check, "critical").await,
            reason,
            "{check}"
        );
        let info = format!(r#"medic_check_failure_info{{check="{check}",reason="{reason}"}}"#);
        assert_eq!(medic.metric(&info).await, Some(1.0), "{info}");
    }
    let health = medic.json("/api/v1/health").await;
    assert_eq!(health["checks"]["web"]["reason"], "status", "{health}");
    let text = medic.metrics().await;
    // One series per failing check, whatever its history of reasons.
    let web_series = text
        .lines()
        .filter(|l| l.starts_with(r#"medic_check_failure_info{check="web""#))
        .count();
    assert_eq!(web_series, 1, "{text}");
    promtool_check(&text);
    let (_, page) = medic.get("/").await;
    assert!(page.contains("connection_refused"), "{page}");

    // Passing again: the reason goes from the API and the metric.
    target.healthy();
    let v = medic.wait_status("web", "healthy").await;
    assert!(v["reason"].is_null(), "{v}");
    wait_for("failure_info to go", Duration::from_secs(10), || async {
        let text = medic.metrics().await;
        (!text.contains(r#"medic_check_failure_info{check="web""#)).then_some(())
    })
    .await;
}

/// A TLS server on loopback presenting `name`.pem (leaf, then its CA): handshakes, then
/// closes. Returns its address; it runs until the test ends.
async fn tls_server(pki: &Pki, name: &str, ca: &str) -> String {
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config(name, ca));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    use tokio::io::AsyncWriteExt;
                    let _ = tls
                        .write_all(
                            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
                        )
                        .await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    address
}

#[tokio::test]
async fn tls_checks_judge_verification_and_expiry() {
    let pki = Pki::new();
    pki.leaf("ok30", "localhost", "ca", 30);
    pki.leaf("two_days", "localhost", "ca", 2);
    pki.leaf("expired", "localhost", "ca", -1);
    pki.leaf("wrong_name", "elsewhere.test", "ca", 30);
    pki.leaf("untrusted", "localhost", "other-ca", 30);
    let ok30 = tls_server(&pki, "ok30", "ca").await;
    let two_days = tls_server(&pki, "two_days", "ca").await;
    let expired = tls_server(&pki, "expired", "ca").await;
    let wrong_name = tls_server(&pki, "wrong_name", "ca").await;
    let untrusted = tls_server(&pki, "untrusted", "other-ca").await;
    let ca = pki.path("ca.pem");
    let ca = ca.display();
    let port = |a: &str| a.rsplit_once(':').unwrap().1.to_string();
    let check = |name: &str, address: &str, extra: &str| {
        format!(
            "  - name: {name}\n    interval: 200ms\n    tls: {{address: 'localhost:{}', ca_file: '{ca}'{extra}}}\n",
            port(address)
        )
    };
    let closed = free_port();
    let config = [
        "checks:\n".to_string(),
        check("ok", &ok30, ""),
        check("ok_warn", &ok30, ", warn_before: 40d"),
        check("soon", &two_days, ""),
        check("soon_warn", &two_days, ", critical_before: 1d, warn_before: 3d"),
        check("expired", &expired, ""),
        check("wrong_name", &wrong_name, ""),
        check("untrusted", &untrusted, ""),
        format!("  - name: down\n    interval: 200ms\n    tls: {{address: '127.0.0.1:{closed}', server_name: localhost, ca_file: '{ca}'}}\n"),
        // System roots do not know the test CA: the request fails, the expiry is still read.
        format!("  - name: web\n    interval: 1s\n    http: {{url: 'https://localhost:{}/'}}\n", port(&ok30)),
    ]
    .concat();
    let medic = Medic::start(&config).await;

    medic.wait_status("ok", "healthy").await;
    medic.wait_status("ok_warn", "warning").await;
    medic.wait_status("soon_warn", "warning").await;
    for (name, reason) in [
        ("soon", "tls"),
        ("expired", "tls"),
        ("wrong_name", "tls"),
        ("untrusted", "tls"),
        ("down", "connection_refused"),
        ("web", "tls"),
    ] {
        wait_failure(&medic, name, reason).await;
    }
    let v = medic.json("/api/v1/checks/wrong_name").await;
    assert!(v["message"].as_str().unwrap().contains("handshake"), "{v}");
    // Right to the second, and exported whether or not the chain verified.
    for (check, leaf) in [
        ("ok", "ok30"),
        ("soon", "two_days"),
        ("expired", "expired"),
        ("wrong_name", "wrong_name"),
        ("untrusted", "untrusted"),
        ("web", "ok30"),
    ] {
        let series =
            format!(r#"medic_tls_certificate_expiry_timestamp_seconds{{check="{check}"}}"#);
        assert_eq!(
            medic.metric(&series).await,
            Some(pki.not_after(leaf)),
            "{series}"
        );
    }
    assert_eq!(
        medic
            .metric(r#"medic_tls_certificate_expiry_timestamp_seconds{check="down"}"#)
            .await,
        None
    );
    promtool_check(&medic.metrics().await);
}

/// POSTs a ping; the answer's status code.
async fn ping(medic: &Medic, path: &str, token: Option<&str>) -> u16 {
    let mut req = medic
        .client
        .post(medic.url(&format!("/api/v1/heartbeats/{path}")));
    if let Some(token) = token {
        req = req.header("Authorization", format!("Bearer {token}"));
    }
    req.send().await.expect("ping").status().as_u16()
}

#[tokio::test]
async fn heartbeats_judge_pings_and_survive_kill_9() {
    use nix::sys::signal::Signal;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("token"), "s3cret-token\n").unwrap();
    let token_file = dir.path().join("token");
    let mut medic = Medic::start(&format!(
        "checks:
  - name: backup
    interval: 1s
    heartbeat: {{grace: 1s, token_file: '{}'}}
  - name: job
    interval: 2s
    heartbeat: {{grace: 1s}}
",
        token_file.display()
    ))
    .await;

    // Wrong or missing token: 401, and nothing recorded.
    assert_eq!(ping(&medic, "backup", Some("wrong")).await, 401);
    assert_eq!(ping(&medic, "backup", None).await, 401);
    assert_eq!(ping(&medic, "nosuch", None).await, 404);
    assert_eq!(ping(&medic, "backup/stop", Some("s3cret-token")).await, 404);
    let v = medic.json("/api/v1/checks/backup").await;
    assert!(v["metadata"]["heartbeat"]["last_success"].is_null(), "{v}");
    assert_eq!(
        medic
            .metric(r#"medic_check_last_heartbeat_timestamp_seconds{check="backup"}"#)
            .await,
        None
    );
    // Nothing arrived within interval + grace of medic starting to watch.
    wait_failure(&medic, "backup", "missed_heartbeat").await;

    // On time: healthy, and the last heartbeat is exported.
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert_eq!(ping(&medic, "backup", Some("s3cret-token")).await, 200);
    medic.wait_status("backup", "healthy").await;
    let last = medic
        .metric(r#"medic_check_last_heartbeat_timestamp_seconds{check="backup"}"#)
        .await
        .expect("last heartbeat");
    assert!(
        last >= before.floor() && last < before + 5.0,
        "{last} vs {before}"
    );
    // Missed: critical after interval + grace.
    let v = wait_failure(&medic, "backup", "missed_heartbeat").await;
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("no heartbeat since"),
        "{v}"
    );

    // /fail and exit codes.
    assert_eq!(ping(&medic, "backup/fail", Some("s3cret-token")).await, 200);
    wait_failure(&medic, "backup", "exit_code").await;
    assert_eq!(ping(&medic, "backup/0", Some("s3cret-token")).await, 200);
    medic.wait_status("backup", "healthy").await;
    assert_eq!(ping(&medic, "backup/3", Some("s3cret-token")).await, 200);
    let v = wait_failure(&medic, "backup", "exit_code").await;
    assert!(
        v["message"].as_str().unwrap().contains("exit code 3"),
        "{v}"
    );

    // /start without a success: critical after grace; start → success is a job duration.
    assert_eq!(ping(&medic, "job", None).await, 200);
    medic.wait_status("job", "healthy").await;
    assert_eq!(ping(&medic, "job/start", None).await, 200);
    let v = wait_failure(&medic, "job", "missed_heartbeat").await;
    assert!(v["message"].as_str().unwrap().contains("started at"), "{v}");
    assert_eq!(ping(&medic, "job", None).await, 200);
    let count = medic
        .metric(r#"medic_check_duration_seconds_count{check="job"}"#)
        .await
        .unwrap_or(0.0);
    assert!(count >= 1.0, "{count}");
    let sum = medic
        .metric(r#"medic_check_duration_seconds_sum{check="job"}"#)
        .await
        .unwrap_or(0.0);
    assert!(sum >= 1.0, "the job ran past its grace: {sum}");
    // The check's answer shows its pings as of its latest probe: wait for the probe that saw
    // the success after the start (a prompt one follows each ping), or `stored` is a state
    // from before that ping and no restart can bring it back.
    let stored = wait_for("the last ping judged", Duration::from_secs(10), || async {
        let v = medic.json("/api/v1/checks/job").await;
        let heartbeat = v["metadata"]["heartbeat"].clone();
        let judged = heartbeat["last_success"].as_str()? >= heartbeat["last_start"].as_str()?;
        judged.then_some(heartbeat)
    })
    .await;

    // kill -9 and back: the pings are still known.
    medic.signal(Signal::SIGKILL);
    medic.wait_exit(Duration::from_secs(10)).await;
    medic.spawn(&[]);
    medic.wait_ready().await;
    // The failure reported before the crash still holds, and the job's pings are as they were.
    wait_failure(&medic, "backup", "exit_code").await;
    let v = wait_for("job to be judged", Duration::from_secs(10), || async {
        let v = medic.json("/api/v1/checks/job").await;
        (v["metadata"]["heartbeat"] == stored).then_some(v)
    })
    .await;
    assert!(!stored["last_success"].is_null(), "{v}");
    promtool_check(&medic.metrics().await);
}

/// A UDP "DNS server" on loopback that answers every query with SERVFAIL, or (`answer: false`)
/// never answers at all.
async fn fake_dns(answer: bool) -> String {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let address = socket.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        let mut buf = [0u8; 512];
        while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
            if answer && n >= 12 {
                // The query echoed as a response (QR set) with rcode 2.
                buf[2] |= 0x80;
                buf[3] = (buf[3] & 0xf0) | 2;
                let _ = socket.send_to(&buf[..n], peer).await;
            }
        }
    });
    address
}

#[tokio::test]
async fn dns_checks_against_dnsmasq() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    // A missing server fails the test: scripts/test.sh installs it.
    let dnsmasq = ["/usr/sbin/dnsmasq", "dnsmasq"]
        .into_iter()
        .find(|p| Command::new(p).arg("--version").output().is_ok())
        .expect("dnsmasq is needed (Debian package dnsmasq-base; scripts/test.sh installs it)");
    let _server = crate::support::Daemon::start(
        dnsmasq,
        &[
            "--no-daemon".to_string(),
            format!("--port={port}"),
            "--listen-address=127.0.0.1".to_string(),
            "--bind-interfaces".to_string(),
            "--no-resolv".to_string(),
            "--no-hosts".to_string(),
            "--address=/ok.test/10.1.2.3".to_string(),
            "--address=/gone.test/".to_string(),
            "--txt-record=txt.test,v=spf1 -all".to_string(),
        ],
        &dir.path().join("dnsmasq.log"),
    );
    // Up once it answers over TCP.
    wait_for("dnsmasq to listen", Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(drop)
    })
    .await;
    let servfail = fake_dns(true).await;
    let silent = fake_dns(false).await;
    let check = |name: &str, dns: &str| {
        format!("  - name: {name}\n    interval: 300ms\n    dns: {{{dns}}}\n")
    };
    let s = format!("server: '127.0.0.1:{port}'");
    let config = [
        "checks:\n".to_string(),
        check("ok", &format!("name: ok.test, {s}, expect_answer: '^10\\.1\\.2\\.3$'")),
        check("wrong", &format!("name: ok.test, {s}, expect_answer: '^10\\.9\\.9\\.9$'")),
        check("nx", &format!("name: gone.test, {s}")),
        check("nx_expected", &format!("name: gone.test, {s}, expect_rcode: NXDOMAIN")),
        check("txt_tcp", &format!("name: txt.test, type: TXT, {s}, transport: tcp, expect_answer: 'spf1'")),
        check("few", &format!("name: ok.test, {s}, min_answers: 2")),
        check("servfail", &format!("name: ok.test, server: '{servfail}'")),
        format!("  - name: dropped\n    interval: 500ms\n    timeout: 300ms\n    dns: {{name: ok.test, server: '{silent}'}}\n"),
    ]
    .concat();
    let medic = Medic::start(&config).await;
    let v = medic.wait_status("ok", "healthy").await;
    assert_eq!(
        v["metadata"]["answers"],
        serde_json::json!(["10.1.2.3"]),
        "{v}"
    );
    medic.wait_status("nx_expected", "healthy").await;
    let v = medic.wait_status("txt_tcp", "healthy").await;
    assert!(v["message"].as_str().unwrap().contains("spf1"), "{v}");
    for (name, reason, words) in [
        ("wrong", "dns", "matching"),
        ("nx", "dns", "NXDOMAIN, expected NOERROR"),
        ("few", "dns", "expected at least 2"),
        ("servfail", "dns", "SERVFAIL"),
        ("dropped", "timeout", "timeout"),
    ] {
        let v = wait_failure(&medic, name, reason).await;
        assert!(
            v["message"].as_str().unwrap().contains(words),
            "{name}: {v}"
        );
    }
}

/// Debian's interpreter, the one its `python3-grpcio` package installs into (a `python3`
/// earlier on PATH, pyenv's say, would not have it).
const DEBIAN_PYTHON: &str = "/usr/bin/python3";

/// `grpc.health.v1.Health/Check` served by grpcio, the reference gRPC implementation (Debian
/// package `python3-grpcio`), rather than by a server of our own that would share our client's
/// reading of the protocol. Both messages are one field, written by hand as in
/// src/checks/grpc.rs, so no generated code (grpcio-health-checking, protobuf) is needed.
/// "" is SERVING, "db" NOT_SERVING, "warming" UNKNOWN, any other service NOT_FOUND (how the
/// standard health service answers Check for a service it does not know); a call for "" without
/// the `x-medic-test: hello` metadata is refused, so the check's `metadata` is proven sent.
const GRPC_HEALTH_SERVER: &str = r#"
from concurrent import futures
import grpc

STATUS = {"": 1, "db": 2, "warming": 0}

def service_name(request):
    i, name = 0, ""
    while i < len(request):
        key, i = request[i], i + 1
        shift, length = 0, 0
        while True:
            b, i = request[i], i + 1
            length |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        if key == 0x0A:
            name = request[i:i + length].decode()
        i += length
    return name

def check(request, context):
    name = service_name(request)
    if name == "" and dict(context.invocation_metadata()).get("x-medic-test") != "hello":
        context.abort(grpc.StatusCode.UNAUTHENTICATED, "x-medic-test metadata missing")
    if name not in STATUS:
        context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
    status = STATUS[name]
    return bytes([0x08, status]) if status else b""

handler = grpc.method_handlers_generic_handler(
    "grpc.health.v1.Health", {"Check": grpc.unary_unary_rpc_method_handler(check)})
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((handler,))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
server.wait_for_termination()
"#;

/// Starts the grpcio health server; its process and port. A missing grpcio fails the test.
fn grpc_server(dir: &std::path::Path) -> (std::process::Child, u16) {
    let script = dir.join("health_server.py");
    std::fs::write(&script, GRPC_HEALTH_SERVER).unwrap();
    let needed = "Debian's python3 with grpcio is needed (package python3-grpcio; scripts/test.sh installs it)";
    let mut child = Command::new(DEBIAN_PYTHON)
        .arg(&script)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{DEBIAN_PYTHON}: {e}: {needed}"));
    let mut line = String::new();
    use std::io::{BufRead, Read};
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    match line.trim().parse() {
        Ok(port) => (child, port),
        Err(_) => {
            let _ = child.kill();
            let mut stderr = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
            let _ = child.wait();
            panic!("the grpcio health server did not start: {needed}\n{stderr}");
        }
    }
}

#[tokio::test]
async fn grpc_health_checks_against_grpcio() {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, port) = grpc_server(dir.path());
    let closed = free_port();
    let check = |name: &str, grpc: &str| {
        format!("  - name: {name}\n    interval: 300ms\n    grpc: {{{grpc}}}\n")
    };
    let a = format!("address: '127.0.0.1:{port}'");
    let config = [
        "checks:\n".to_string(),
        check("whole", &format!("{a}, metadata: {{x-medic-test: hello}}")),
        check("db", &format!("{a}, service: db")),
        check("warming", &format!("{a}, service: warming")),
        check("nosuch", &format!("{a}, service: nosuch")),
        check("down", &format!("address: '127.0.0.1:{closed}'")),
    ]
    .concat();
    let medic = Medic::start(&config).await;
    let v = medic.wait_status("whole", "healthy").await;
    assert_eq!(v["message"], "SERVING", "{v}");
    let v = medic.wait_status("warming", "unknown").await;
    assert_eq!(v["last_status"], "unknown", "{v}");
    wait_for("warming to be probed", Duration::from_secs(10), || async {
        let v = medic.json("/api/v1/checks/warming").await;
        (v["message"] == "UNKNOWN").then_some(())
    })
    .await;
    for (name, reason, words) in [
        ("db", "status", "NOT_SERVING"),
        ("nosuch", "status", "SERVICE_UNKNOWN"),
        ("down", "connection_refused", "failed"),
    ] {
        let v = wait_failure(&medic, name, reason).await;
        assert!(
            v["message"].as_str().unwrap().contains(words),
            "{name}: {v}"
        );
    }
    let _ = server.kill();
    let _ = server.wait();
    // The server gone: the healthy check turns critical.
    wait_failure(&medic, "whole", "connection_refused").await;
}
