//! gRPC checks: the standard `grpc.health.v1.Health/Check` over hyper's HTTP/2 client. Both
//! messages are one field (request: `string service = 1`, response: `ServingStatus status = 1`),
//! so they are written and read by hand here instead of through tonic and prost.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Collected, Full};
use hyper::header::{HeaderName, HeaderValue, CONTENT_TYPE, TE};
use hyper::{HeaderMap, Method, Request};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tracing::Instrument;

use super::{FailureReason, Outcome};
use crate::config::GrpcSpec;
use crate::status::Status;

const PATH: &str = "/grpc.health.v1.Health/Check";

/// `HealthCheckRequest { service }` in a gRPC frame (uncompressed flag, big-endian length).
pub fn request_frame(service: &str) -> Bytes {
    let mut message = Vec::new();
    if !service.is_empty() {
        message.push(0x0a); // field 1, length-delimited
        put_varint(&mut message, service.len() as u64);
        message.extend_from_slice(service.as_bytes());
    }
    let mut frame = BytesMut::with_capacity(5 + message.len());
    frame.extend_from_slice(&[0]);
    frame.extend_from_slice(&(message.len() as u32).to_be_bytes());
    frame.extend_from_slice(&message);
    frame.freeze()
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint(input: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, b) in input.iter().enumerate().take(10) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some((v, &input[i + 1..]));
        }
    }
    None
}

/// `HealthCheckResponse.status` from a gRPC frame; unknown fields are skipped, a missing
/// status is proto3's default, 0 (UNKNOWN).
pub fn response_status(frame: &[u8]) -> Option<u64> {
    let (&compressed, rest) = frame.split_first()?;
    if compressed != 0 || rest.len() < 4 {
        return None;
    }
    let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let mut msg = rest.get(4..4 + len)?;
    let mut status = 0;
    while !msg.is_empty() {
        let (key, after) = varint(msg)?;
        let (field, wire) = (key >> 3, key & 7);
        msg = match wire {
            0 => {
                let (v, after) = varint(after)?;
                if field == 1 {
                    status = v;
                }
                after
            }
            1 => after.get(8..)?,
            2 => {
                let (n, after) = varint(after)?;
                after.get(usize::try_from(n).ok()?..)?
            }
            5 => after.get(4..)?,
            _ => return None,
        };
    }
    Some(status)
}

trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static> Io for T {}

async fn connect(spec: &GrpcSpec) -> Result<Box<dyn Io>, Outcome> {
    let tcp = tokio::net::TcpStream::connect(&spec.address)
        .await
        .map_err(|e| super::tcp::connect_failed(&spec.address, &e))?;
    let Some((server_name, ca)) = &spec.tls else {
        return Ok(Box::new(tcp));
    };
    let tls_failed = |m: String| Outcome::failed(Status::Critical, FailureReason::Tls, m);
    let verifier = super::tls::verifier(ca.as_ref())
        .map_err(|e| Outcome::failed(Status::Unknown, FailureReason::Other, e))?;
    let mut config = rustls::ClientConfig::builder_with_provider(super::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_failed(e.to_string()))?
        .with_webpki_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = ServerName::try_from(server_name.clone()).map_err(|e| tls_failed(e.to_string()))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| {
            tls_failed(format!(
                "TLS handshake with {} failed: {}",
                spec.address,
                e.get_ref()
                    .map_or_else(|| e.to_string(), |inner| inner.to_string())
            ))
        })?;
    Ok(Box::new(stream))
}

pub async fn probe(spec: &GrpcSpec) -> Outcome {
    let outcome = match check(spec).await {
        Ok(o) | Err(o) => o,
    };
    outcome
        .with("address", spec.address.clone())
        .with("service", spec.service.clone())
}

async fn check(spec: &GrpcSpec) -> Result<Outcome, Outcome> {
    let (code, headers, collected) = call(spec).await?;
    if code != 200 {
        return Err(Outcome::failed(
            Status::Critical,
            FailureReason::Status,
            format!("HTTP {code} from {}: not a gRPC server", spec.address),
        ));
    }
    if let Some(verdict) = grpc_status_verdict(spec, &headers, &collected) {
        return verdict;
    }
    serving_status(spec, &collected.to_bytes())
}

fn other(m: String) -> Outcome {
    Outcome::failed(Status::Critical, FailureReason::Other, m)
}

/// Connects, asks `Health/Check` once, and reads the whole answer: its HTTP status, headers,
/// and body with trailers.
async fn call(spec: &GrpcSpec) -> Result<(u16, HeaderMap, Collected<Bytes>), Outcome> {
    let io = connect(spec).await?;
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake::<_, Full<Bytes>>(TokioIo::new(io))
        .await
        .map_err(|e| {
            other(format!(
                "HTTP/2 handshake with {} failed: {e}",
                spec.address
            ))
        })?;
    // The connection lives as long as this probe: dropped with the sender at the end.
    let span = tracing::info_span!("grpc_connection", address = %spec.address);
    let conn = tokio::spawn(conn.instrument(span));
    let response = sender
        .send_request(health_request(spec)?)
        .await
        .map_err(|e| other(format!("request to {} failed: {e}", spec.address)))?;
    let code = response.status().as_u16();
    let headers = response.headers().clone();
    let collected = response.into_body().collect().await.map_err(|e| {
        other(format!(
            "reading the answer of {} failed: {e}",
            spec.address
        ))
    })?;
    conn.abort();
    Ok((code, headers, collected))
}

/// The `Health/Check` request for the spec's service, with its metadata as headers (a value
/// that is not a valid header is left out).
fn health_request(spec: &GrpcSpec) -> Result<Request<Full<Bytes>>, Outcome> {
    let scheme = if spec.tls.is_some() { "https" } else { "http" };
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(format!("{scheme}://{}{PATH}", spec.address))
        .header(CONTENT_TYPE, "application/grpc")
        .header(TE, "trailers");
    for (name, value) in &spec.metadata {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value.expose()),
        ) {
            request = request.header(n, v);
        }
    }
    request
        .body(Full::new(request_frame(&spec.service)))
        .map_err(|e| other(e.to_string()))
}

/// What a grpc-status other than OK means for the check; `None` for OK, when the answer's
/// message says the serving status.
fn grpc_status_verdict(
    spec: &GrpcSpec,
    headers: &HeaderMap,
    collected: &Collected<Bytes>,
) -> Option<Result<Outcome, Outcome>> {
    // grpc-status is in the trailers, or in the headers of a trailers-only answer.
    let grpc_status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| headers.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u32>().ok());
    let grpc_message = collected
        .trailers()
        .and_then(|t| t.get("grpc-message"))
        .or_else(|| headers.get("grpc-message"))
        .and_then(|v| v.to_str().ok())
        .map(|m| {
            percent_encoding::percent_decode_str(m)
                .decode_utf8_lossy()
                .into_owned()
        })
        .unwrap_or_default();
    match grpc_status {
        Some(0) => None,
        // NOT_FOUND is how the standard health service says SERVICE_UNKNOWN to Check.
        Some(5) => Some(Ok(Outcome::failed(
            Status::Critical,
            FailureReason::Status,
            format!(
                "SERVICE_UNKNOWN: {:?} is not known to {}",
                spec.service, spec.address
            ),
        )
        .with("serving_status", "SERVICE_UNKNOWN"))),
        Some(c) => Some(Ok(Outcome::failed(
            Status::Critical,
            FailureReason::Status,
            format!("gRPC status {c} from {}: {grpc_message}", spec.address),
        )
        .with("grpc_status", c))),
        None => Some(Err(other(format!("{} sent no grpc-status", spec.address)))),
    }
}

/// The check's outcome from the `HealthCheckResponse`: SERVING is healthy, NOT_SERVING and
/// SERVICE_UNKNOWN critical, anything else unknown.
fn serving_status(spec: &GrpcSpec, body: &[u8]) -> Result<Outcome, Outcome> {
    let Some(status) = response_status(body) else {
        return Err(other(format!(
            "undecodable HealthCheckResponse from {}",
            spec.address
        )));
    };
    let (result, name) = match status {
        1 => (Status::Healthy, "SERVING"),
        2 => (Status::Critical, "NOT_SERVING"),
        3 => (Status::Critical, "SERVICE_UNKNOWN"),
        0 => (Status::Unknown, "UNKNOWN"),
        _ => (Status::Unknown, "UNKNOWN"),
    };
    let mut outcome = Outcome::new(result, name.to_string()).with("serving_status", name);
    if result != Status::Healthy {
        outcome.reason = Some(FailureReason::Status);
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_response_frames() {
        assert_eq!(&request_frame("")[..], &[0, 0, 0, 0, 0]);
        assert_eq!(
            &request_frame("db")[..],
            &[0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']
        );
        assert_eq!(response_status(&[0, 0, 0, 0, 2, 0x08, 1]), Some(1));
        assert_eq!(response_status(&[0, 0, 0, 0, 0]), Some(0));
        // An unknown length-delimited field before the status is skipped.
        assert_eq!(
            response_status(&[0, 0, 0, 0, 5, 0x12, 1, b'x', 0x08, 2]),
            Some(2)
        );
        assert_eq!(response_status(&[0, 0, 0, 0, 9, 0x08]), None);
        assert_eq!(response_status(&[1, 0, 0, 0, 0]), None);
        assert_eq!(response_status(&[]), None);
    }
}
