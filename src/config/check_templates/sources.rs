//! A template's sources: `file_sd` (path patterns), `http_sd` and `dns_sd` (one block or a
//! list), and `max_targets`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_yaml_ng::Value;

use super::super::alertmanager::{tls, TlsConfigFile};
use super::super::checks::DnsType;
use super::super::credential::{client_auth, credential, BasicAuthFile};
use super::super::duration::Duration;
use super::super::path::YamlPath;
use super::super::secret::Secret;
use super::super::validate::Context;
use super::super::{ClientAuth, ClientTls};
use super::{SourcesFile, DEFAULT_MAX_TARGETS};

/// An `http_sd` answer larger than this is refused unless `max_body_bytes` says otherwise:
/// about 100,000 targets with a few labels each.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 32 << 20;
const DEFAULT_HTTP_REFRESH: Duration = Duration::from_secs(60);
const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_DNS_REFRESH: Duration = Duration::from_secs(30);

/// One `http_sd` endpoint: Prometheus' HTTP service discovery.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSdSpec {
    /// May carry a password; shown only through [`crate::config::redact_url`].
    pub url: Secret,
    pub refresh_interval: Duration,
    /// A request that takes longer fails (and the last good list stays).
    pub timeout: Duration,
    /// An answer larger than this fails.
    pub max_body_bytes: u64,
    pub auth: ClientAuth,
    pub tls: ClientTls,
}

/// One `dns_sd` block: names looked up every `refresh_interval`.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsSdSpec {
    pub names: Vec<String>,
    /// SRV, A or AAAA.
    pub record_type: DnsType,
    /// The targets' port for A and AAAA (SRV records carry their own).
    pub port: Option<u16>,
    pub refresh_interval: Duration,
    /// `host:port`; `None`: the first `nameserver` of /etc/resolv.conf, as `dns` checks ask.
    pub server: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSdFile {
    url: String,
    refresh_interval: Option<Duration>,
    timeout: Option<Duration>,
    max_body_bytes: Option<u64>,
    basic_auth: Option<BasicAuthFile>,
    bearer_token: Option<String>,
    bearer_token_file: Option<PathBuf>,
    tls_config: Option<TlsConfigFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DnsSdFile {
    names: Vec<String>,
    #[serde(rename = "type")]
    record_type: Option<String>,
    port: Option<u16>,
    refresh_interval: Option<Duration>,
    server: Option<String>,
}

/// The checked sources of one template.
pub(super) struct Sources {
    pub file_sd: Vec<PathBuf>,
    pub http_sd: Vec<HttpSdSpec>,
    pub dns_sd: Vec<DnsSdSpec>,
    pub max_targets: usize,
}

/// The sources, or `None` when one of them is wrong (reported).
pub(super) fn sources(cx: &mut Context, path: &YamlPath, file: SourcesFile) -> Option<Sources> {
    let before = cx.error_count();
    let mut file_sd = Vec::new();
    for pattern in &file.file_sd {
        if file_pattern(cx, &path.key("file_sd"), pattern) {
            file_sd.push(cx.resolve(Path::new(pattern)));
        }
    }
    let mut http = Vec::new();
    for (at, item) in blocks(cx, &path.key("http_sd"), file.http_sd.clone()) {
        if let Some(spec) = cx.parse(item, &at).and_then(|h| http_sd(cx, &at, h)) {
            http.push(spec);
        }
    }
    let mut dns = Vec::new();
    for (at, item) in blocks(cx, &path.key("dns_sd"), file.dns_sd.clone()) {
        if let Some(spec) = cx.parse(item, &at).and_then(|d| dns_sd(cx, &at, d)) {
            dns.push(spec);
        }
    }
    let max_targets = file.max_targets.unwrap_or(DEFAULT_MAX_TARGETS);
    if max_targets == 0 {
        cx.error(path.key("max_targets"), "must be at least 1");
    }
    let sources = Sources {
        file_sd,
        http_sd: http,
        dns_sd: dns,
        max_targets,
    };
    let given = !file.file_sd.is_empty() || file.http_sd.is_some() || file.dns_sd.is_some();
    if !given && !cx.lost_a_key(path) {
        cx.error(
            path,
            "at least one of file_sd, http_sd and dns_sd is required",
        );
    }
    (given && cx.error_count() == before).then_some(sources)
}

/// One block (`http_sd: {url: …}`) or a list of them, each with its path.
fn blocks(cx: &mut Context, path: &YamlPath, value: Option<Value>) -> Vec<(YamlPath, Value)> {
    match value {
        None => Vec::new(),
        Some(Value::Sequence(items)) => Context::named(items, path),
        Some(Value::Mapping(block)) => vec![(path.clone(), Value::Mapping(block))],
        Some(_) => {
            cx.error(path, "must be a mapping or a list of mappings");
            Vec::new()
        }
    }
}

/// Prometheus' rule for file_sd paths: a JSON or YAML file, `*` at most once and only in the
/// last path segment.
fn file_pattern(cx: &mut Context, path: &YamlPath, pattern: &str) -> bool {
    let (dir, file) = pattern.rsplit_once('/').unwrap_or(("", pattern));
    let extension_ok = [".json", ".yml", ".yaml"]
        .iter()
        .any(|ext| file.to_ascii_lowercase().ends_with(ext));
    let ok = extension_ok && !dir.contains('*') && file.matches('*').count() <= 1;
    if !ok {
        cx.error(
            path,
            format!("{pattern:?} must name .json, .yml or .yaml files, with at most one * and only in the file name"),
        );
    }
    ok
}

fn http_sd(cx: &mut Context, path: &YamlPath, h: HttpSdFile) -> Option<HttpSdSpec> {
    let before = cx.error_count();
    cx.endpoint_url(path.key("url"), &h.url);
    let refresh_interval =
        positive(cx, path, "refresh_interval", h.refresh_interval).unwrap_or(DEFAULT_HTTP_REFRESH);
    let timeout = positive(cx, path, "timeout", h.timeout)
        .unwrap_or(DEFAULT_HTTP_TIMEOUT.min(refresh_interval));
    if timeout > refresh_interval {
        cx.error(
            path,
            format!("timeout {timeout} must not exceed refresh_interval {refresh_interval}"),
        );
    }
    let max_body_bytes = h.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if max_body_bytes == 0 {
        cx.error(path.key("max_body_bytes"), "must be at least 1");
    }
    let auth = client_auth(credential(
        cx,
        path,
        h.bearer_token,
        h.bearer_token_file,
        h.basic_auth,
    ));
    let tls = tls(
        cx,
        &path.key("tls_config"),
        h.tls_config.unwrap_or_default(),
    );
    (cx.error_count() == before).then(|| HttpSdSpec {
        url: Secret::new(h.url),
        refresh_interval,
        timeout,
        max_body_bytes,
        auth,
        tls,
    })
}

fn dns_sd(cx: &mut Context, path: &YamlPath, d: DnsSdFile) -> Option<DnsSdSpec> {
    let before = cx.error_count();
    if d.names.is_empty() {
        cx.error(path.key("names"), "must name at least one domain");
    }
    for name in &d.names {
        if name.trim().is_empty() || hickory_proto::rr::Name::from_ascii(name.trim()).is_err() {
            cx.error(path.key("names"), format!("{name:?} is not a domain name"));
        }
    }
    let record_type = match d
        .record_type
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("SRV") => DnsType::Srv,
        Some("A") => DnsType::A,
        Some("AAAA") => DnsType::Aaaa,
        Some(_) => {
            cx.error(
                path.key("type"),
                format!(
                    "{:?} is not SRV, A or AAAA",
                    d.record_type.unwrap_or_default()
                ),
            );
            DnsType::Srv
        }
    };
    match (record_type, d.port) {
        (DnsType::Srv, Some(_)) => cx.error(
            path.key("port"),
            "applies only to A and AAAA: SRV records carry their own port",
        ),
        (DnsType::A | DnsType::Aaaa, None) => {
            cx.error(path, "port is required for A and AAAA lookups")
        }
        _ => {}
    }
    if let Some(server) = d.server.as_deref() {
        if super::super::checks::split_host_port(server).is_none() {
            cx.error(path.key("server"), format!("{server:?} is not host:port"));
        }
    }
    let refresh_interval =
        positive(cx, path, "refresh_interval", d.refresh_interval).unwrap_or(DEFAULT_DNS_REFRESH);
    (cx.error_count() == before).then(|| DnsSdSpec {
        names: d.names.iter().map(|n| n.trim().to_string()).collect(),
        record_type,
        port: d.port,
        refresh_interval,
        server: d.server,
    })
}

/// A duration that must be greater than zero, when given.
fn positive(
    cx: &mut Context,
    path: &YamlPath,
    key: &str,
    value: Option<Duration>,
) -> Option<Duration> {
    if value.is_some_and(|v| v.is_zero()) {
        cx.error(path.key(key), "must be greater than 0s");
    }
    value
}
