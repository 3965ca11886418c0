//! DNS checks: one query to the configured server (or the system resolver's first
//! `nameserver`), over UDP or TCP on medic's own tokio sockets; hickory-proto only encodes
//! and decodes the messages. The rcode and the answers of the asked type decide.

use std::net::SocketAddr;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{FailureReason, Outcome};
use crate::config::{DnsSpec, DnsTransport, DnsType};
use crate::status::Status;

/// Answers shown in messages and metadata; a big TXT set says nothing more after a few.
const MAX_SHOWN_ANSWERS: usize = 10;

fn record_type(t: DnsType) -> RecordType {
    match t {
        DnsType::A => RecordType::A,
        DnsType::Aaaa => RecordType::AAAA,
        DnsType::Cname => RecordType::CNAME,
        DnsType::Mx => RecordType::MX,
        DnsType::Ns => RecordType::NS,
        DnsType::Txt => RecordType::TXT,
        DnsType::Srv => RecordType::SRV,
        DnsType::Soa => RecordType::SOA,
        DnsType::Ptr => RecordType::PTR,
    }
}

fn rcode_name(code: u16) -> String {
    crate::config::RCODES
        .iter()
        .find(|(_, c)| *c == code)
        .map_or_else(|| format!("RCODE{code}"), |(n, _)| (*n).to_string())
}

/// The first `nameserver` of /etc/resolv.conf (glibc's default, 127.0.0.1, without one).
fn system_server() -> String {
    let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(str::trim)
        .find(|s| !s.is_empty())
        .map_or_else(
            || "127.0.0.1:53".to_string(),
            |ip| {
                // A scoped IPv6 address (fe80::1%eth0) keeps its zone inside the brackets.
                if ip.contains(':') {
                    format!("[{ip}]:53")
                } else {
                    format!("{ip}:53")
                }
            },
        )
}

fn failed(reason: FailureReason, message: String) -> Outcome {
    Outcome::failed(Status::Critical, reason, message)
}

pub async fn probe(spec: &DnsSpec) -> Outcome {
    let server = spec.server.clone().unwrap_or_else(system_server);
    let outcome = ask(spec, &server).await;
    outcome
        .with("server", server)
        .with("name", spec.name.clone())
        .with("type", spec.record_type.as_str())
}

async fn ask(spec: &DnsSpec, server: &str) -> Outcome {
    let rtype = record_type(spec.record_type);
    match exchange(server, &spec.name, rtype, spec.transport).await {
        Ok(response) => judge(spec, &response),
        Err(outcome) => outcome,
    }
}

/// One query to `server` (or the system resolver's first `nameserver`) and its answer, over
/// the sockets a `dns` check uses: for discovery (`dns_sd`), which judges the answer itself.
pub async fn query(server: Option<&str>, name: &str, record: DnsType) -> Result<Message, String> {
    let server = server.map_or_else(system_server, str::to_string);
    exchange(&server, name, record_type(record), DnsTransport::Udp)
        .await
        .map_err(|outcome| outcome.message)
}

/// Asks `server` for `name`'s records of `rtype`; a truncated UDP answer is asked again over TCP.
async fn exchange(
    server: &str,
    name: &str,
    rtype: RecordType,
    transport: DnsTransport,
) -> Result<Message, Outcome> {
    let name = Name::from_ascii(name)
        .map_err(|e| failed(FailureReason::Other, format!("name {name:?}: {e}")))?;
    let addr: SocketAddr = match tokio::net::lookup_host(server).await.map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        Ok(None) | Err(_) => {
            return Err(failed(
                FailureReason::Dns,
                format!("server {server} does not resolve"),
            ))
        }
    };
    let id = query_id();
    let mut query = Message::new();
    query
        .set_id(id)
        .set_message_type(MessageType::Query)
        .set_op_code(OpCode::Query)
        .set_recursion_desired(true)
        .add_query(Query::query(name, rtype));
    let bytes = query
        .to_vec()
        .map_err(|e| failed(FailureReason::Other, format!("encoding the query: {e}")))?;
    let mut response = match transport {
        DnsTransport::Udp => udp(addr, &bytes, id).await,
        DnsTransport::Tcp => tcp(addr, &bytes, id).await,
    };
    // A truncated UDP answer is asked again over TCP, as resolvers do.
    if matches!(&response, Ok(m) if m.truncated()) {
        response = tcp(addr, &bytes, id).await;
    }
    response
}

/// A query id from the clock's nanoseconds: it only has to tell our answer from strays.
fn query_id() -> u16 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| (d.subsec_nanos() ^ (d.as_secs() as u32)) as u16)
}

fn io_failed(what: &str, addr: SocketAddr, e: &std::io::Error) -> Outcome {
    failed(
        FailureReason::of_io(e),
        format!("{what} {addr} failed: {e}"),
    )
}

async fn udp(addr: SocketAddr, query: &[u8], id: u16) -> Result<Message, Outcome> {
    let local = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = tokio::net::UdpSocket::bind(local)
        .await
        .map_err(|e| io_failed("binding a UDP socket for", addr, &e))?;
    socket
        .connect(addr)
        .await
        .map_err(|e| io_failed("connecting to", addr, &e))?;
    socket
        .send(query)
        .await
        .map_err(|e| io_failed("sending to", addr, &e))?;
    let mut buf = vec![0u8; 4096];
    // Strays (a late answer to an earlier probe) are skipped; the probe's timeout bounds this.
    loop {
        let n = socket
            .recv(&mut buf)
            .await
            .map_err(|e| io_failed("receiving from", addr, &e))?;
        if let Ok(m) = Message::from_vec(&buf[..n]) {
            if m.id() == id && m.message_type() == MessageType::Response {
                return Ok(m);
            }
        }
    }
}

async fn tcp(addr: SocketAddr, query: &[u8], id: u16) -> Result<Message, Outcome> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| io_failed("connecting to", addr, &e))?;
    let len = u16::try_from(query.len())
        .map_err(|_| failed(FailureReason::Other, "query too long".to_string()))?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream
        .write_all(&framed)
        .await
        .map_err(|e| io_failed("sending to", addr, &e))?;
    let mut len = [0u8; 2];
    stream
        .read_exact(&mut len)
        .await
        .map_err(|e| io_failed("reading from", addr, &e))?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream
        .read_exact(&mut buf)
        .await
        .map_err(|e| io_failed("reading from", addr, &e))?;
    let m = Message::from_vec(&buf).map_err(|e| {
        failed(
            FailureReason::Dns,
            format!("undecodable answer from {addr}: {e}"),
        )
    })?;
    if m.id() != id {
        return Err(failed(
            FailureReason::Dns,
            format!("answer from {addr} is for another query"),
        ));
    }
    Ok(m)
}

/// The rcode, then the answers of the asked type (as their presentation text) against
/// `expect_answer` and `min_answers`.
fn judge(spec: &DnsSpec, response: &Message) -> Outcome {
    let rcode = u16::from(response.response_code());
    let rtype = record_type(spec.record_type);
    let answers: Vec<String> = response
        .answers()
        .iter()
        .filter(|r| r.record_type() == rtype)
        .map(|r| r.data().to_string())
        .collect();
    let shown: Vec<String> = answers.iter().take(MAX_SHOWN_ANSWERS).cloned().collect();
    let (expected_code, expected_name) = spec.expect_rcode;
    let outcome = if rcode != expected_code {
        failed(
            FailureReason::Dns,
            format!(
                "{} {}: {}, expected {expected_name}",
                spec.record_type.as_str(),
                spec.name,
                rcode_name(rcode)
            ),
        )
    } else {
        let matching = match &spec.expect_answer {
            Some(re) => answers.iter().filter(|a| re.0.is_match(a)).count(),
            None => answers.len(),
        };
        if matching < spec.min_answers as usize {
            let wanted = match &spec.expect_answer {
                Some(re) => format!("matching /{}/", re.0.as_str()),
                None => "at all".to_string(),
            };
            failed(
                FailureReason::Dns,
                format!(
                    "{} {}: {matching} answer(s) {wanted}, expected at least {} (got: {})",
                    spec.record_type.as_str(),
                    spec.name,
                    spec.min_answers,
                    if shown.is_empty() {
                        "none".to_string()
                    } else {
                        shown.join(", ")
                    }
                ),
            )
        } else {
            Outcome::new(
                Status::Healthy,
                format!(
                    "{} {}: {}",
                    spec.record_type.as_str(),
                    spec.name,
                    if shown.is_empty() {
                        rcode_name(rcode)
                    } else {
                        shown.join(", ")
                    }
                ),
            )
        }
    };
    outcome
        .with("rcode", rcode_name(rcode))
        .with("answers", shown)
}
