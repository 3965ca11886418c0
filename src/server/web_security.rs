//! The HTTP server's side of `--web.config.file`: the TLS acceptor's config and the basic
//! auth check, built from the file [`crate::config::load_web_security`] read and checked.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::auth::{basic_credentials, constant_time_eq};
use crate::config::{
    load_web_security, ClientAuthType, ServerTls, TlsVersion, WebConfigError, WebSecurityConfig,
};

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
        WebSecurity::new(load_web_security(path)?)
            .map_err(|m| WebConfigError::new(path, format!("tls_server_config.{m}")))
    }

    /// The server's settings from a checked file; the error is what rustls refused, as
    /// `key: reason`.
    pub fn new(config: WebSecurityConfig) -> Result<WebSecurity, String> {
        let tls = config
            .tls
            .map(|t| tls_config(t).map(Arc::new))
            .transpose()?;
        Ok(WebSecurity {
            tls,
            users: config.basic_auth_users,
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

/// The key of `t` that rustls refused, and why, as `key: reason`.
fn tls_config(t: ServerTls) -> Result<rustls::ServerConfig, String> {
    let versions: Vec<&'static rustls::SupportedProtocolVersion> = t
        .versions
        .iter()
        .map(|v| match v {
            TlsVersion::Tls12 => &rustls::version::TLS12,
            TlsVersion::Tls13 => &rustls::version::TLS13,
        })
        .collect();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&versions)
        .map_err(|e| format!("min_version: {e}"))?;
    let (ca, optional) = match t.client_auth {
        ClientAuthType::NoClientCert => (None, false),
        ClientAuthType::VerifyClientCertIfGiven(ca) => (Some(ca), true),
        ClientAuthType::RequireAndVerifyClientCert(ca) => (Some(ca), false),
    };
    let builder = match ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in ca.certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("client_ca_file: {}: {e}", ca.file.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let verifier = if optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .map_err(|e| format!("client_ca_file: {}: {e}", ca.file.display()))?,
            )
        }
    };
    let mut config = builder
        .with_single_cert(t.certs, t.key)
        .map_err(|e| format!("key_file: {}: {e}", t.key_file.display()))?;
    // medic speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::write;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;

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
    fn an_empty_file_asks_for_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let empty = write(dir.path(), "empty.yml", "");
        let web = WebSecurity::load(&empty).unwrap();
        assert!(!web.requires_auth() && web.tls.is_none());
        assert!(web.authorize(None));
    }
}
