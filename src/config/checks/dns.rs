//! `dns:` checks: one query, to the system's resolver or a given server, and what the answer
//! must hold.

use serde::Deserialize;

use super::{pattern, split_host_port, CheckAt, Kind, Pattern};
use crate::config::validate::Context;

/// DNS response codes by name (RFC 1035, 2136), for `expect_rcode`.
pub const RCODES: [(&str, u16); 11] = [
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

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsFile {
    name: String,
    #[serde(rename = "type")]
    record_type: Option<String>,
    server: Option<String>,
    transport: Option<String>,
    expect_rcode: Option<String>,
    expect_answer: Option<String>,
    min_answers: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DnsSpec {
    /// The name asked for, as written (`example.com`, `_sip._tcp.example.com`).
    pub name: String,
    pub record_type: DnsType,
    /// `host:port`; `None`: the first `nameserver` of /etc/resolv.conf, read at each probe.
    pub server: Option<String>,
    pub transport: DnsTransport,
    /// The expected response code, as its number and its name (`NOERROR`).
    pub expect_rcode: (u16, &'static str),
    pub expect_answer: Option<Pattern>,
    pub min_answers: u32,
}

/// The record types a `dns` check may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsType {
    A,
    Aaaa,
    Cname,
    Mx,
    Ns,
    Txt,
    Srv,
    Soa,
    Ptr,
}

impl DnsType {
    pub const ALL: [(&'static str, DnsType); 9] = [
        ("A", DnsType::A),
        ("AAAA", DnsType::Aaaa),
        ("CNAME", DnsType::Cname),
        ("MX", DnsType::Mx),
        ("NS", DnsType::Ns),
        ("TXT", DnsType::Txt),
        ("SRV", DnsType::Srv),
        ("SOA", DnsType::Soa),
        ("PTR", DnsType::Ptr),
    ];

    pub fn as_str(self) -> &'static str {
        DnsType::ALL
            .iter()
            .find(|(_, t)| *t == self)
            .map_or("A", |(name, _)| name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsTransport {
    Udp,
    Tcp,
}

impl Kind for DnsSpec {
    type File = DnsFile;

    fn check(cx: &mut Context, at: &CheckAt<'_>, d: DnsFile) -> Option<DnsSpec> {
        let path = at.path;
        let mut ok = true;
        let name = d.name.trim().to_string();
        if name.is_empty() || hickory_proto::rr::Name::from_ascii(&name).is_err() {
            cx.error(path, format!("dns.name {:?} is not a domain name", d.name));
            ok = false;
        }
        let record_type = record_type(cx, at, d.record_type.as_deref());
        if let Some(server) = d.server.as_deref().filter(|s| split_host_port(s).is_none()) {
            cx.error(path, format!("dns.server {server:?} is not host:port"));
            ok = false;
        }
        let transport = match d.transport.as_deref() {
            None | Some("udp") => DnsTransport::Udp,
            Some("tcp") => DnsTransport::Tcp,
            Some(other) => {
                cx.error(path, format!("dns.transport {other:?} is not udp or tcp"));
                ok = false;
                DnsTransport::Udp
            }
        };
        let expect_rcode = rcode(cx, at, d.expect_rcode.as_deref());
        let expect_answer = pattern(cx, path, "dns.expect_answer", d.expect_answer.as_deref());
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
            expect_answer: expect_answer.ok()?,
            min_answers,
        })
    }
}

fn record_type(cx: &mut Context, at: &CheckAt<'_>, written: Option<&str>) -> Option<DnsType> {
    let text = written.unwrap_or("A");
    let found = DnsType::ALL
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(text))
        .map(|(_, t)| *t);
    if found.is_none() {
        cx.error(
            at.path,
            format!("dns.type {text:?} is not one of A, AAAA, CNAME, MX, NS, TXT, SRV, SOA, PTR"),
        );
    }
    found
}

fn rcode(cx: &mut Context, at: &CheckAt<'_>, written: Option<&str>) -> Option<(u16, &'static str)> {
    let text = written.unwrap_or("NOERROR");
    let found = RCODES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(text))
        .map(|(n, c)| (*c, *n));
    if found.is_none() {
        cx.error(
            at.path,
            format!("dns.expect_rcode {text:?} is not a DNS response code (NOERROR, NXDOMAIN, SERVFAIL, ...)"),
        );
    }
    found
}
