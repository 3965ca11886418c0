//! Certificates for tests that need TLS: a CA, another CA, and leaves made with `openssl`.

use std::process::Command;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Certificates made with `openssl` for one test: a CA and leaves signed by it.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
        let pki = Pki {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        pki.ca("ca", "/CN=medic test CA");
        pki.ca("other-ca", "/CN=someone else's CA");
        pki
    }

    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// A self-signed CA `name`.pem/.key, valid ten years.
    fn ca(&self, name: &str, subject: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "3650",
            "-subj",
            subject,
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("openssl must be installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A leaf `name`.pem/.key for `dns_name`, signed by `ca` (`ca` or `other-ca`), valid
    /// `days` from now (negative: expired).
    pub fn leaf(&self, name: &str, dns_name: &str, ca: &str, days: i32) {
        let ext = format!("{name}.ext");
        std::fs::write(self.path(&ext), format!("subjectAltName=DNS:{dns_name}\n")).unwrap();
        self.openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={dns_name}"),
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-set_serial",
            "1",
            "-days",
            &days.to_string(),
            "-extfile",
            &ext,
            "-out",
            &format!("{name}.pem"),
        ]);
    }

    /// The leaf's notAfter, Unix seconds, as openssl reads it.
    pub fn not_after(&self, name: &str) -> f64 {
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-enddate", "-in"])
            .arg(self.path(&format!("{name}.pem")))
            .output()
            .expect("openssl");
        let text = String::from_utf8_lossy(&out.stdout);
        let date = text.trim().trim_start_matches("notAfter=");
        let out = Command::new("date")
            .args(["-u", "-d", date, "+%s"])
            .output()
            .expect("date");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a Unix time")
    }

    /// A server config presenting `name`.pem (the leaf, then its CA `ca`.pem).
    pub fn server_config(&self, name: &str, ca: &str) -> Arc<rustls::ServerConfig> {
        let mut chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(self.path(&format!("{name}.pem")))
                .unwrap()
                .map(Result::unwrap)
                .collect();
        chain.extend(
            CertificateDer::pem_file_iter(self.path(&format!("{ca}.pem")))
                .unwrap()
                .map(Result::unwrap),
        );
        let key = PrivateKeyDer::from_pem_file(self.path(&format!("{name}.key"))).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        Arc::new(config)
    }
}

/// An HTTPS server on loopback presenting `tls`'s certificate that answers every request with
/// 200 and `{}`, and counts them. Returns its port and the count; it runs until the test ends.
pub async fn https_ok(
    tls: Arc<rustls::ServerConfig>,
) -> (u16, Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(AtomicUsize::new(0));
    let counted = requests.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, counted) = (acceptor.clone(), counted.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(stream).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |_req| {
                    counted.fetch_add(1, Ordering::SeqCst);
                    async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::Full::new(bytes::Bytes::from_static(b"{}")),
                        ))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (port, requests)
}
