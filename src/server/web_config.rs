//! `--web.config.file`: optional TLS and basic auth for medic's own endpoints, in the format of
//! Prometheus' `web.config.file` (exporter-toolkit), so operators reuse the file, the bcrypt
//! hashes and the habits they already have. Loaded at start and on every reload; a bad file
//! fails the reload and the old settings stay.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

use super::auth::{basic_credentials, constant_time_eq};

#[derive(Debug, thiserror::Error)]
#[error("web config {file}: {message}")]
pub struct WebConfigError {
    file: String,
    message: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebConfigFile {
    tls_server_config: Option<TlsFile>,
    /// User name to bcrypt hash.
    #[serde(default)]
    basic_auth_users: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TlsFile {
    cert_file: PathBuf,
    key_file: PathBuf,
    client_auth_type: Option<String>,
    client_ca_file: Option<PathBuf>,
    min_version: Option<String>,
    max_version: Option<String>,
}

/// TLS and users for the HTTP server. The default is plain HTTP without auth.
#[derive(Default)]
pub struct WebSecurity {
    /// Present when connections must speak TLS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    users: BTreeMap<String, String>,
    /// `Authorization` headers already verified: bcrypt costs tens of milliseconds by design,
    /// far too much for every scrape. Bounded; lives as long as this config.
    verified: Mutex<Vec<Vec<u8>>>,
}

const VERIFIED_CACHE_SIZE: usize = 64;

impl std::fmt::Debug for WebSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSecurity")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl WebSecurity {
    /// Reads and checks the whole file: certificates and keys are loaded, hashes parsed.
    pub fn load(path: &Path) -> Result<WebSecurity, WebConfigError> {
        let fail = |message: String| WebConfigError {
            file: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot read: {e}")))?;
        let file: WebConfigFile = if text.trim().is_empty() {
            WebConfigFile::default()
        } else {
            serde_yaml_ng::from_str(&text).map_err(|e| fail(e.to_string()))?
        };
        // Relative paths are relative to the web config file, as in exporter-toolkit.
        let base = path.parent().unwrap_or(Path::new("."));
        let tls = file
            .tls_server_config
            .map(|t| tls_config(base, t).map(Arc::new))
            .transpose()
            .map_err(|m| fail(format!("tls_server_config.{m}")))?;
        for (user, hash) in &file.basic_auth_users {
            if user.contains(':') || user.is_empty() {
                return Err(fail(format!(
                    "basic_auth_users: user name {user:?} must be non-empty without ':'"
                )));
            }
            if hash.parse::<bcrypt::HashParts>().is_err() {
                // The hash is not a secret, but say nothing of it anyway.
                return Err(fail(format!(
                    "basic_auth_users.{user}: not a bcrypt hash (make one with `htpasswd -nBC 10 {user}`)"
                )));
            }
        }
        Ok(WebSecurity {
            tls,
            users: file.basic_auth_users,
            verified: Mutex::new(Vec::new()),
        })
    }

    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    pub fn requires_auth(&self) -> bool {
        !self.users.is_empty()
    }

    /// Whether the `Authorization` header names a configured user with the right password.
    /// Blocking (bcrypt): call it off the async threads.
    pub fn authorize(&self, header: Option<&[u8]>) -> bool {
        if !self.requires_auth() {
            return true;
        }
        let Some(header) = header else {
            return false;
        };
        if self
            .verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .fold(false, |hit, known| constant_time_eq(known, header) | hit)
        {
            return true;
        }
        let Some((user, password)) = basic_credentials(header) else {
            return false;
        };
        // An unknown user costs the same bcrypt run as a known one, so timing does not tell
        // which user names exist.
        let (known, hash) = match self.users.get(&user) {
            Some(hash) => (true, hash),
            None => match self.users.values().next() {
                Some(hash) => (false, hash),
                None => return false,
            },
        };
        let ok = bcrypt::verify(password.as_bytes(), hash).unwrap_or(false) && known;
        if ok {
            let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            if cache.len() >= VERIFIED_CACHE_SIZE {
                cache.clear();
            }
            cache.push(header.to_vec());
        }
        ok
    }
}

/// The key of `t` that was wrong, and why, as `key: reason`.
fn tls_config(base: &Path, t: TlsFile) -> Result<rustls::ServerConfig, String> {
    let resolve = |p: &Path| base.join(p);
    let certs = CertificateDer::pem_file_iter(resolve(&t.cert_file))
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cert_file: {}: {e}", t.cert_file.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "cert_file: {}: no certificate found",
            t.cert_file.display()
        ));
    }
    // Never print anything of the key file's content.
    let key = PrivateKeyDer::from_pem_file(resolve(&t.key_file))
        .map_err(|e| format!("key_file: {}: {e}", t.key_file.display()))?;
    let version = |key: &str, v: &Option<String>, default| match v.as_deref() {
        None => Ok(default),
        Some("TLS12") => Ok(12),
        Some("TLS13") => Ok(13),
        Some(other) => Err(format!("{key}: {other:?} is not one of TLS12, TLS13")),
    };
    let min = version("min_version", &t.min_version, 12)?;
    let max = version("max_version", &t.max_version, 13)?;
    let versions: Vec<&'static rustls::SupportedProtocolVersion> =
        [(12, &rustls::version::TLS12), (13, &rustls::version::TLS13)]
            .into_iter()
            .filter(|(v, _)| (min..=max).contains(v))
            .map(|(_, p)| p)
            .collect();
    if versions.is_empty() {
        return Err("min_version: must not be above max_version".into());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("min_version: {e}"))?;
    let client_auth = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let builder = match (client_auth, &t.client_ca_file) {
        ("NoClientCert", _) => builder.with_no_client_auth(),
        ("RequireAndVerifyClientCert" | "VerifyClientCertIfGiven", None) => {
            return Err(format!(
                "client_ca_file: required with client_auth_type {client_auth}"
            ))
        }
        ("RequireAndVerifyClientCert" | "VerifyClientCertIfGiven", Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            let cas = CertificateDer::pem_file_iter(resolve(ca))
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("client_ca_file: {}: {e}", ca.display()))?;
            for cert in cas {
                roots
                    .add(cert)
                    .map_err(|e| format!("client_ca_file: {}: {e}", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = if client_auth == "VerifyClientCertIfGiven" {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| format!("client_ca_file: {}: {e}", ca.display()))?,
            )
        }
        (other, _) => {
            return Err(format!(
                "client_auth_type: {other:?} is not one of NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"
            ))
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("key_file: {}: {e}", t.key_file.display()))?;
    // medic speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn users_are_verified_against_bcrypt_and_cached() {
        let dir = tempfile::tempdir().unwrap();
        // Cost 4 keeps the test fast; the format is what htpasswd -nB writes.
        let hash = bcrypt::hash_with_salt("s3cr3t", 4, [7u8; 16])
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        let path = write(
            dir.path(),
            "web.yml",
            &format!("basic_auth_users:\n  prom: '{hash}'\n"),
        );
        let web = WebSecurity::load(&path).unwrap();
        assert!(web.requires_auth() && web.tls.is_none());
        let header = |cred: &str| format!("Basic {}", STANDARD.encode(cred)).into_bytes();
        assert!(web.authorize(Some(&header("prom:s3cr3t"))));
        // Served from the cache the second time; still exact.
        assert!(web.authorize(Some(&header("prom:s3cr3t"))));
        assert!(!web.authorize(Some(&header("prom:s3cr3t "))));
        assert!(!web.authorize(Some(&header("other:s3cr3t"))));
        assert!(!web.authorize(Some(b"Bearer s3cr3t")));
        assert!(!web.authorize(None));
        assert!(!format!("{web:?}").contains(&hash));
    }

    #[test]
    fn bad_files_are_refused_with_the_key_at_fault() {
        let dir = tempfile::tempdir().unwrap();
        for (text, want) in [
            (
                "basic_auth_users:\n  prom: plain\n",
                "basic_auth_users.prom: not a bcrypt hash",
            ),
            (
                "tls_server_config:\n  cert_file: missing.crt\n  key_file: missing.key\n",
                "tls_server_config.cert_file: missing.crt:",
            ),
            (
                "tls_server_config:\n  cert_file: a\n",
                "missing field `key_file`",
            ),
            (
                "http_server_config: {http2: true}\n",
                "unknown field `http_server_config`",
            ),
        ] {
            let path = write(dir.path(), "web.yml", text);
            let err = WebSecurity::load(&path).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let empty = write(dir.path(), "empty.yml", "");
        let web = WebSecurity::load(&empty).unwrap();
        assert!(!web.requires_auth() && web.tls.is_none());
        assert!(web.authorize(None));
    }
}
