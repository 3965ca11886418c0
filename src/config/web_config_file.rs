//! `--web.config.file`: optional TLS and basic auth for medic's own endpoints, in the format of
//! Prometheus' `web.config.file` (exporter-toolkit), so operators reuse the file, the bcrypt
//! hashes and the habits they already have. This module reads and checks the file (its YAML,
//! its enumerations, the PEM files it names, the users and their hashes); `server/` builds
//! the TLS acceptor and checks credentials from the typed result. Loaded at start and on every
//! reload; a bad file fails the reload and the old settings stay.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
#[error("web config {file}: {message}")]
pub struct WebConfigError {
    file: String,
    message: String,
}

impl WebConfigError {
    /// An error in the file at `path`; `message` starts with the YAML key at fault.
    pub fn new(path: &Path, message: String) -> Self {
        WebConfigError {
            file: path.display().to_string(),
            message,
        }
    }
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

/// The checked file. The default is plain HTTP without auth.
#[derive(Debug, Default)]
pub struct WebSecurityConfig {
    /// Present when connections must speak TLS.
    pub tls: Option<ServerTls>,
    /// User name to bcrypt hash; every name non-empty without ':', every hash well-formed.
    pub basic_auth_users: BTreeMap<String, String>,
}

/// `tls_server_config`, its PEM files read.
pub struct ServerTls {
    /// The certificate chain, at least one certificate.
    pub certs: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    /// The key file as written, for messages about a key that does not fit the certificate.
    pub key_file: PathBuf,
    /// Each of TLS 1.2 and 1.3 that is allowed; never empty.
    pub versions: Vec<TlsVersion>,
    pub client_auth: ClientAuthType,
}

impl std::fmt::Debug for ServerTls {
    // Never show anything of the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("certs", &self.certs.len())
            .field("key_file", &self.key_file)
            .field("versions", &self.versions)
            .field("client_auth", &self.client_auth)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}

/// `client_auth_type` and the CA certificates from `client_ca_file` it needs.
#[derive(Debug)]
pub enum ClientAuthType {
    NoClientCert,
    VerifyClientCertIfGiven(ClientCa),
    RequireAndVerifyClientCert(ClientCa),
}

/// `client_ca_file`, read.
#[derive(Debug)]
pub struct ClientCa {
    /// As written, for messages.
    pub file: PathBuf,
    pub certs: Vec<CertificateDer<'static>>,
}

/// Reads and checks the whole file: certificates and keys are read, hashes parsed.
pub fn load_web_security(path: &Path) -> Result<WebSecurityConfig, WebConfigError> {
    let fail = |message: String| WebConfigError::new(path, message);
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
        .map(|t| server_tls(base, t))
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
    Ok(WebSecurityConfig {
        tls,
        basic_auth_users: file.basic_auth_users,
    })
}

/// The key of `t` that was wrong, and why, as `key: reason`.
fn server_tls(base: &Path, t: TlsFile) -> Result<ServerTls, String> {
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
        Some("TLS12") => Ok(TlsVersion::Tls12),
        Some("TLS13") => Ok(TlsVersion::Tls13),
        Some(other) => Err(format!("{key}: {other:?} is not one of TLS12, TLS13")),
    };
    let min = version("min_version", &t.min_version, TlsVersion::Tls12)?;
    let max = version("max_version", &t.max_version, TlsVersion::Tls13)?;
    let versions: Vec<TlsVersion> = [TlsVersion::Tls12, TlsVersion::Tls13]
        .into_iter()
        .filter(|v| (min..=max).contains(v))
        .collect();
    if versions.is_empty() {
        return Err("min_version: must not be above max_version".into());
    }
    let client_auth = t.client_auth_type.as_deref().unwrap_or("NoClientCert");
    let ca = |file: &Option<PathBuf>| match file {
        None => Err(format!(
            "client_ca_file: required with client_auth_type {client_auth}"
        )),
        Some(ca) => CertificateDer::pem_file_iter(resolve(ca))
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map(|certs| ClientCa {
                file: ca.clone(),
                certs,
            })
            .map_err(|e| format!("client_ca_file: {}: {e}", ca.display())),
    };
    let client_auth = match client_auth {
        "NoClientCert" => ClientAuthType::NoClientCert,
        "VerifyClientCertIfGiven" => ClientAuthType::VerifyClientCertIfGiven(ca(&t.client_ca_file)?),
        "RequireAndVerifyClientCert" => {
            ClientAuthType::RequireAndVerifyClientCert(ca(&t.client_ca_file)?)
        }
        other => {
            return Err(format!(
                "client_auth_type: {other:?} is not one of NoClientCert, VerifyClientCertIfGiven, RequireAndVerifyClientCert"
            ))
        }
    };
    Ok(ServerTls {
        certs,
        key,
        key_file: t.key_file,
        versions,
        client_auth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::write;

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
            let err = load_web_security(&path).unwrap_err().to_string();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        let empty = write(dir.path(), "empty.yml", "");
        let web = load_web_security(&empty).unwrap();
        assert!(web.basic_auth_users.is_empty() && web.tls.is_none());
    }
}
