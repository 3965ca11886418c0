//! `tls:` checks: a handshake, the chain verified, and how soon its first certificate expires.
//! Also the CA files and server names that `grpc` checks verify with.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde::Deserialize;

use super::{split_host_port, CaCerts, CheckAt, Kind};
use crate::config::duration::Duration;
use crate::config::path::YamlPath;
use crate::config::validate::Context;

const DEFAULT_WARN_BEFORE: Duration = Duration::from_secs(14 * 24 * 3600);
const DEFAULT_CRITICAL_BEFORE: Duration = Duration::from_secs(3 * 24 * 3600);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    address: String,
    server_name: Option<String>,
    ca_file: Option<PathBuf>,
    warn_before: Option<Duration>,
    critical_before: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TlsSpec {
    /// `host:port`.
    pub address: String,
    /// The name verified against the certificate (and sent as SNI); the address's host by
    /// default.
    pub server_name: String,
    /// `None`: the system roots.
    pub ca: Option<CaCerts>,
    pub warn_before: Duration,
    pub critical_before: Duration,
}

impl Kind for TlsSpec {
    type File = TlsFile;

    fn check(cx: &mut Context, at: &CheckAt<'_>, t: TlsFile) -> Option<TlsSpec> {
        let path = at.path;
        let Some((host, _)) = split_host_port(&t.address) else {
            cx.error(
                path,
                format!("tls.address {:?} is not host:port", t.address),
            );
            return None;
        };
        let server_name = match &t.server_name {
            Some(name) => self::server_name(cx, path, "tls.server_name", name)?,
            None => self::server_name(cx, path, "tls.server_name (from tls.address)", host)?,
        };
        let ca = match &t.ca_file {
            Some(file) => Some(ca_file(cx, path, "tls.ca_file", file)?),
            None => None,
        };
        let warn_before = t.warn_before.unwrap_or(DEFAULT_WARN_BEFORE);
        let critical_before = t.critical_before.unwrap_or(DEFAULT_CRITICAL_BEFORE);
        if critical_before > warn_before {
            cx.error(
                path,
                format!(
                    "tls.critical_before {critical_before} must not exceed tls.warn_before {warn_before}"
                ),
            );
            return None;
        }
        Some(TlsSpec {
            address: t.address,
            server_name,
            ca,
            warn_before,
            critical_before,
        })
    }
}

/// Reads the PEM certificates of a `ca_file`; at least one is required.
pub(super) fn ca_file(
    cx: &mut Context,
    path: &YamlPath,
    key: &str,
    file: &Path,
) -> Option<CaCerts> {
    let full = cx.resolve(file);
    match CertificateDer::pem_file_iter(&full).and_then(|it| it.collect::<Result<Vec<_>, _>>()) {
        Ok(certs) if !certs.is_empty() => Some(Arc::new(certs)),
        Ok(_) => {
            cx.error(
                path,
                format!("{key} {}: no PEM certificate in it", file.display()),
            );
            None
        }
        Err(e) => {
            cx.error(path, format!("{key} {}: {e}", file.display()));
            None
        }
    }
}

/// A name to verify a certificate against: a DNS name or an IP address.
pub(super) fn server_name(
    cx: &mut Context,
    path: &YamlPath,
    key: &str,
    name: &str,
) -> Option<String> {
    match ServerName::try_from(name) {
        Ok(_) => Some(name.to_string()),
        Err(_) => {
            cx.error(
                path,
                format!("{key} {name:?} is not a DNS name or IP address"),
            );
            None
        }
    }
}
