//! Validation of the check kinds of issue 19: tls, dns, grpc, heartbeat.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};

use super::super::file::{DnsFile, GrpcFile, HeartbeatFile, TlsFile};
use super::super::{
    CaCerts, DnsSpec, DnsTransport, DnsType, Duration, GrpcSpec, HeartbeatSpec, Pattern, Secret,
    TlsSpec,
};
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

/// DNS response codes by name (RFC 1035, 2136), for `expect_rcode`.
pub(crate) const RCODES: [(&str, u16); 11] = [
    ("NOERROR", 0),
    ("FORMERR", 1),
    ("SERVFAIL", 2),
    ("NXDOMAIN", 3),
    ("NOTIMP", 4),
    ("REFUSED", 5),
    ("YXDOMAIN", 6),
    ("YXRRSET", 7),
    ("NXRRSET", 8),
    ("NOTAUTH", 9),
    ("NOTZONE", 10),
];

impl Validator {
    pub(super) fn grpc(&mut self, path: &str, g: GrpcFile) -> Option<GrpcSpec> {
        let Some((host, _)) = split_host_port(&g.address) else {
            self.error(
                path,
                format!("grpc.address {:?} is not host:port", g.address),
            );
            return None;
        };
        let tls = if g.tls.unwrap_or(false) {
            let name = match &g.server_name {
                Some(name) => self.server_name(path, "grpc.server_name", name)?,
                None => self.server_name(path, "grpc.server_name (from grpc.address)", host)?,
            };
            let ca = match &g.ca_file {
                Some(file) => Some(self.ca_file(path, "grpc.ca_file", file)?),
                None => None,
            };
            Some((name, ca))
        } else {
            if g.ca_file.is_some() || g.server_name.is_some() {
                self.error(
                    path,
                    "grpc.ca_file and grpc.server_name need grpc.tls: true",
                );
                return None;
            }
            None
        };
        let mut metadata = Vec::new();
        for (name, value) in g.metadata {
            let lower = name.to_ascii_lowercase();
            if hyper::header::HeaderName::from_bytes(lower.as_bytes()).is_err()
                || lower.starts_with("grpc-")
                || lower.starts_with(':')
            {
                self.error(
                    path,
                    format!("grpc.metadata: {name:?} is not a usable metadata key"),
                );
                return None;
            }
            if hyper::header::HeaderValue::from_str(&value).is_err() {
                self.error(
                    path,
                    format!("grpc.metadata: value of {name:?} is not a valid header value"),
                );
                return None;
            }
            self.secrets.push(value.clone());
            metadata.push((lower, Secret::new(value)));
        }
        Some(GrpcSpec {
            address: g.address,
            service: g.service.unwrap_or_default(),
            tls,
            metadata,
        })
    }

    pub(super) fn dns(&mut self, path: &str, d: DnsFile) -> Option<DnsSpec> {
        let mut ok = true;
        let name = d.name.trim().to_string();
        if name.is_empty() || hickory_proto::rr::Name::from_ascii(&name).is_err() {
            self.error(path, format!("dns.name {:?} is not a domain name", d.name));
            ok = false;
        }
        let type_text = d.record_type.as_deref().unwrap_or("A");
        let record_type = DnsType::ALL
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(type_text))
            .map(|(_, t)| *t);
        if record_type.is_none() {
            self.error(
                path,
                format!("dns.type {type_text:?} is not one of A, AAAA, CNAME, MX, NS, TXT, SRV, SOA, PTR"),
            );
            ok = false;
        }
        if let Some(server) = &d.server {
            if split_host_port(server).is_none() {
                self.error(path, format!("dns.server {server:?} is not host:port"));
                ok = false;
            }
        }
        let transport = match d.transport.as_deref() {
            None | Some("udp") => DnsTransport::Udp,
            Some("tcp") => DnsTransport::Tcp,
            Some(other) => {
                self.error(path, format!("dns.transport {other:?} is not udp or tcp"));
                ok = false;
                DnsTransport::Udp
            }
        };
        let rcode_text = d.expect_rcode.as_deref().unwrap_or("NOERROR");
        let expect_rcode = RCODES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(rcode_text))
            .map(|(n, c)| (*c, *n));
        if expect_rcode.is_none() {
            self.error(
                path,
                format!("dns.expect_rcode {rcode_text:?} is not a DNS response code (NOERROR, NXDOMAIN, SERVFAIL, ...)"),
            );
            ok = false;
        }
        let expect_answer = match &d.expect_answer {
            Some(re) => match regex::Regex::new(re) {
                Ok(re) => Some(Pattern(re)),
                Err(e) => {
                    self.error(
                        path,
                        format!(
                            "dns.expect_answer {re:?} is invalid: {}",
                            super::first_line(&e.to_string())
                        ),
                    );
                    ok = false;
                    None
                }
            },
            None => None,
        };
        // An expected NXDOMAIN or SERVFAIL comes without answers.
        let min_answers = d
            .min_answers
            .unwrap_or(u32::from(expect_rcode.is_none_or(|(c, _)| c == 0)));
        if !ok {
            return None;
        }
        Some(DnsSpec {
            name,
            record_type: record_type?,
            server: d.server,
            transport,
            expect_rcode: expect_rcode?,
            expect_answer,
            min_answers,
        })
    }

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
