//! `--web.config.file`: TLS with certificates from openssl, basic auth with bcrypt hashes, both
//! replaced on SIGHUP; a bad file fails the reload and changes nothing.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::{testdata, wait_for, Medic, MEDIC};

/// A CA and a server certificate for 127.0.0.1 signed by it, written as `{name}-ca.crt`,
/// `{name}.crt` and `{name}.key` in `dir`.
pub(crate) fn certificates(dir: &Path, name: &str) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (Debian's openssl package)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let ca = format!("{name}-ca");
    run(&[
        &["req", "-x509", "-nodes", "-days", "2"][..],
        &ec,
        &[
            "-subj",
            &format!("/CN={ca}"),
            "-keyout",
            &format!("{ca}.key"),
        ],
        &["-out", &format!("{ca}.crt")],
    ]
    .concat());
    run(&[
        &["req", "-nodes"][..],
        &ec,
        &["-subj", "/CN=localhost", "-keyout", &format!("{name}.key")],
        &["-out", &format!("{name}.csr")],
    ]
    .concat());
    std::fs::write(
        dir.join(format!("{name}.ext")),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        &format!("{name}.csr"),
        "-CA",
        &format!("{ca}.crt"),
        "-CAkey",
        &format!("{ca}.key"),
        "-CAcreateserial",
        "-extfile",
        &format!("{name}.ext"),
        "-out",
        &format!("{name}.crt"),
    ]);
}

/// A client that trusts only the CA of `name`.
fn client_trusting(dir: &Path, name: &str) -> reqwest::Client {
    let ca = std::fs::read(dir.join(format!("{name}-ca.crt"))).unwrap();
    reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .build()
        .unwrap()
}

fn bcrypt_hash(password: &str) -> String {
    // Cost 4 keeps the test quick; operators use htpasswd -nBC 10.
    bcrypt::hash_with_salt(password, 4, [42u8; 16])
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY)
}

fn web_config(cert: &str, user: &str, password: &str) -> String {
    format!(
        "tls_server_config:\n  cert_file: {cert}.crt\n  key_file: {cert}.key\nbasic_auth_users:\n  {user}: '{}'\n",
        bcrypt_hash(password)
    )
}

#[tokio::test]
async fn tls_and_basic_auth_guard_every_endpoint_and_follow_reloads() {
    let certs = tempfile::tempdir().unwrap();
    certificates(certs.path(), "one");
    certificates(certs.path(), "two");
    let web_path = certs.path().join("web.yml");
    std::fs::write(&web_path, web_config("one", "prom", "scrape-me")).unwrap();

    let mut medic = Medic::spawn_unready(
        "checks: []\n",
        &["--web.config.file", web_path.to_str().unwrap()],
        None,
    );
    let https = |path: &str| format!("https://127.0.0.1:{}{path}", medic.port);
    let one = client_trusting(certs.path(), "one");
    wait_for(
        "medic to be ready over TLS",
        Duration::from_secs(30),
        || async {
            let r = one
                .get(https("/-/ready"))
                .basic_auth("prom", Some("scrape-me"))
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;

    // Plain HTTP gets no answer from a TLS port.
    assert!(medic
        .client
        .get(medic.url("/metrics"))
        .send()
        .await
        .is_err());
    // Every endpoint wants the credential...
    for path in ["/metrics", "/api/v1/health", "/", "/-/healthy"] {
        let r = one.get(https(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path}");
        assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"medic\"");
        let r = one
            .get(https(path))
            .basic_auth("prom", Some("wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} with a wrong password");
        let r = one
            .get(https(path))
            .basic_auth("nobody", Some("scrape-me"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} with an unknown user");
    }
    let r = one
        .get(https("/metrics"))
        .basic_auth("prom", Some("scrape-me"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("medic_build_info"));
    // ...except the webhook, which has its own (here: loopback only, no credential).
    let r = one
        .post(https("/api/v1/alerts"))
        .header("Content-Type", "application/json")
        .body(testdata("alertmanager/alertmanager-0.25-firing.raw.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());

    // Certificates and users rotate on SIGHUP.
    std::fs::write(&web_path, web_config("two", "grafana", "new-secret")).unwrap();
    medic.signal(nix::sys::signal::Signal::SIGHUP);
    let two = client_trusting(certs.path(), "two");
    wait_for("the new certificate", Duration::from_secs(10), || async {
        let r = two
            .get(https("/api/v1/health"))
            .basic_auth("grafana", Some("new-secret"))
            .send()
            .await
            .ok()?;
        (r.status() == 200).then_some(())
    })
    .await;
    // A new connection no longer trusts the old CA (open ones keep their session).
    let one_fresh = client_trusting(certs.path(), "one");
    assert!(one_fresh.get(https("/-/healthy")).send().await.is_err());
    let r = two
        .get(https("/-/healthy"))
        .basic_auth("prom", Some("scrape-me"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the old user is gone");

    // A broken web config fails the reload and keeps what is in force.
    std::fs::write(
        &web_path,
        "tls_server_config:\n  cert_file: gone.crt\n  key_file: gone.key\n",
    )
    .unwrap();
    let r = two
        .post(https("/-/reload"))
        .basic_auth("grafana", Some("new-secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let body = r.text().await.unwrap();
    assert!(
        body.contains("tls_server_config.cert_file: gone.crt"),
        "{body}"
    );
    let metrics = two
        .get(https("/metrics"))
        .basic_auth("grafana", Some("new-secret"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("medic_config_last_reload_successful 0"));

    // No hash or password reaches the log.
    let logs = medic.logs();
    for secret in ["scrape-me", "new-secret", "$2y$"] {
        assert!(!logs.contains(secret), "{secret} in logs:\n{logs}");
    }
    medic.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(medic.wait_exit(Duration::from_secs(15)).await, Some(0));
}

#[tokio::test]
async fn a_bad_web_config_stops_the_start_and_fails_check_config() {
    let dir = tempfile::tempdir().unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(&web, "basic_auth_users:\n  prom: not-a-hash\n").unwrap();
    let config = dir.path().join("medic.yml");
    std::fs::write(&config, "checks: []\n").unwrap();
    let out = Command::new(MEDIC)
        .args(["check-config", "--web.config.file"])
        .arg(&web)
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("basic_auth_users.prom: not a bcrypt hash"),
        "{stderr}"
    );
    let out = Command::new(MEDIC)
        .args(["--web.listen-address", "127.0.0.1:0", "--web.config.file"])
        .arg(&web)
        .arg("--config.file")
        .arg(&config)
        .arg("--state.url")
        .arg(format!("sqlite://{}/m.db", dir.path().display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a bcrypt hash"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
