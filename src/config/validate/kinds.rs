//! Validation of the check kinds of issue 19: tls, dns, grpc, heartbeat.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use super::super::file::{HeartbeatFile, TlsFile};
use super::super::{CaCerts, Duration, HeartbeatSpec, TlsSpec};
use super::Validator;

const DEFAULT_WARN_BEFORE: Duration = Duration::from_secs(14 * 24 * 3600);
const DEFAULT_CRITICAL_BEFORE: Duration = Duration::from_secs(3 * 24 * 3600);

/// The host of `host:port` (without an IPv6 address's brackets), if the port is a number.
pub(super) fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then_some((host, port))
}

impl Validator {
    /// Reads the PEM certificates of a `ca_file`; at least one is required.
    pub(super) fn ca_file(&mut self, path: &str, key: &str, file: &Path) -> Option<CaCerts> {
        let full = if file.is_absolute() {
            file.to_path_buf()
        } else {
            self.base_dir.join(file)
        };
        match CertificateDer::pem_file_iter(&full).and_then(|it| it.collect::<Result<Vec<_>, _>>())
        {
            Ok(certs) if !certs.is_empty() => Some(Arc::new(certs)),
            Ok(_) => {
                self.error(
                    path,
                    format!("{key} {}: no PEM certificate in it", file.display()),
                );
                None
            }
            Err(e) => {
                self.error(path, format!("{key} {}: {e}", file.display()));
                None
            }
        }
    }

    /// A name to verify a certificate against: a DNS name or an IP address.
    pub(super) fn server_name(&mut self, path: &str, key: &str, name: &str) -> Option<String> {
        match ServerName::try_from(name) {
            Ok(_) => Some(name.to_string()),
            Err(_) => {
                self.error(
                    path,
                    format!("{key} {name:?} is not a DNS name or IP address"),
                );
                None
            }
        }
    }

    pub(super) fn tls(&mut self, path: &str, t: TlsFile) -> Option<TlsSpec> {
        let Some((host, _)) = split_host_port(&t.address) else {
            self.error(
                path,
                format!("tls.address {:?} is not host:port", t.address),
            );
            return None;
        };
        let server_name = match &t.server_name {
            Some(name) => self.server_name(path, "tls.server_name", name)?,
            None => self.server_name(path, "tls.server_name (from tls.address)", host)?,
        };
        let ca = match &t.ca_file {
            Some(file) => Some(self.ca_file(path, "tls.ca_file", file)?),
            None => None,
        };
        let warn_before = t.warn_before.unwrap_or(DEFAULT_WARN_BEFORE);
        let critical_before = t.critical_before.unwrap_or(DEFAULT_CRITICAL_BEFORE);
        if critical_before > warn_before {
            self.error(
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

    pub(super) fn heartbeat(
        &mut self,
        path: &str,
        h: HeartbeatFile,
        interval: Duration,
    ) -> Option<HeartbeatSpec> {
        let grace = h.grace.unwrap_or(interval);
        if grace.is_zero() {
            self.error(path, "heartbeat.grace must be greater than 0s");
            return None;
        }
        let token = match &h.token_file {
            Some(file) => {
                let token =
                    self.read_secret_file(&format!("{path}: heartbeat.token_file"), file)?;
                if token.expose().is_empty() {
                    self.error(path, "heartbeat.token_file must not be empty");
                    return None;
                }
                Some(token)
            }
            None => None,
        };
        Some(HeartbeatSpec { grace, token })
    }
}
