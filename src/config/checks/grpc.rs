//! `grpc:` checks: the standard `grpc.health.v1.Health/Check`, in plain text or TLS.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::tls::{ca_file, server_name};
use super::{split_host_port, CaCerts, CheckAt, Kind};
use crate::config::secret::Secret;
use crate::config::validate::Context;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcFile {
    address: String,
    service: Option<String>,
    tls: Option<bool>,
    ca_file: Option<PathBuf>,
    server_name: Option<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GrpcSpec {
    /// `host:port`.
    pub address: String,
    /// The service asked about; "" is the server as a whole.
    pub service: String,
    /// `Some` for `tls: true`: the name to verify and the roots (`None`: the system's).
    pub tls: Option<(String, Option<CaCerts>)>,
    /// Sent as request headers; values may be credentials.
    pub metadata: Vec<(String, Secret)>,
}

impl Kind for GrpcSpec {
    type File = GrpcFile;

    fn check(cx: &mut Context, at: &CheckAt<'_>, g: GrpcFile) -> Option<GrpcSpec> {
        let path = at.path;
        let Some((host, _)) = split_host_port(&g.address) else {
            cx.error(
                path,
                format!("grpc.address {:?} is not host:port", g.address),
            );
            return None;
        };
        let tls = if g.tls.unwrap_or(false) {
            let name = match &g.server_name {
                Some(name) => server_name(cx, path, "grpc.server_name", name)?,
                None => server_name(cx, path, "grpc.server_name (from grpc.address)", host)?,
            };
            let ca = match &g.ca_file {
                Some(file) => Some(ca_file(cx, path, "grpc.ca_file", file)?),
                None => None,
            };
            Some((name, ca))
        } else {
            if g.ca_file.is_some() || g.server_name.is_some() {
                cx.error(
                    path,
                    "grpc.ca_file and grpc.server_name need grpc.tls: true",
                );
                return None;
            }
            None
        };
        let metadata = metadata(cx, at, g.metadata)?;
        Some(GrpcSpec {
            address: g.address,
            service: g.service.unwrap_or_default(),
            tls,
            metadata,
        })
    }
}

/// Request metadata, as HTTP/2 headers: lower-case keys, none of gRPC's own; values secret.
fn metadata(
    cx: &mut Context,
    at: &CheckAt<'_>,
    metadata: BTreeMap<String, String>,
) -> Option<Vec<(String, Secret)>> {
    let mut out = Vec::new();
    for (name, value) in metadata {
        let lower = name.to_ascii_lowercase();
        if reqwest::header::HeaderName::from_bytes(lower.as_bytes()).is_err()
            || lower.starts_with("grpc-")
            || lower.starts_with(':')
        {
            cx.error(
                at.path,
                format!("grpc.metadata: {name:?} is not a usable metadata key"),
            );
            return None;
        }
        if reqwest::header::HeaderValue::from_str(&value).is_err() {
            cx.error(
                at.path,
                format!("grpc.metadata: value of {name:?} is not a valid header value"),
            );
            return None;
        }
        out.push((lower, cx.secret(value)));
    }
    Some(out)
}
