//! `dns_sd`: targets from DNS, as Prometheus' DNS service discovery finds them. Every
//! `refresh_interval` each name is asked (at once, each bounded by [`QUERY_TIMEOUT`]) through
//! the sockets `dns` checks use (`checks::dns::query`): SRV records give `host:port` (the
//! record's target and port), A and AAAA records `address:port` with the configured port.
//! Each name keeps its last good answer: one that times out or fails (SERVFAIL, REFUSED) is a
//! failed refresh; NXDOMAIN says the name has no targets now.

use std::collections::BTreeMap;
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RData;
use tokio::task::JoinSet;
use tracing::Instrument;

use super::targets::Target;
use super::SourceContext;
use crate::config::DnsSdSpec;

/// One lookup takes at most this long (or the refresh interval, when shorter).
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) async fn run(spec: DnsSdSpec, max_targets: usize, cx: SourceContext) {
    let mut per_name: Vec<Option<Vec<Target>>> = vec![None; spec.names.len()];
    let mut sent = None;
    let mut ticks = tokio::time::interval(spec.refresh_interval.std());
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        for (index, answer) in lookup_all(&spec).await {
            match answer {
                Ok(targets) => per_name[index] = Some(targets),
                Err(e) => cx.failed(&e),
            }
        }
        if per_name.iter().all(Option::is_none) {
            continue;
        }
        let targets: Vec<Target> = per_name
            .iter()
            .flatten()
            .flatten()
            .take(max_targets.saturating_add(1))
            .cloned()
            .collect();
        cx.send(&mut sent, targets).await;
    }
}

/// `medic check-config`: every name asked once.
pub(super) async fn read_once(spec: &DnsSdSpec) -> (Vec<Target>, Vec<String>) {
    let mut targets = Vec::new();
    let mut failures = Vec::new();
    for (_, answer) in lookup_all(spec).await {
        match answer {
            Ok(found) => targets.extend(found),
            Err(e) => failures.push(e),
        }
    }
    (targets, failures)
}

/// Every name's answer, by its index among the names.
async fn lookup_all(spec: &DnsSdSpec) -> Vec<(usize, Result<Vec<Target>, String>)> {
    let bound = QUERY_TIMEOUT.min(spec.refresh_interval.std());
    let mut lookups = JoinSet::new();
    for (index, name) in spec.names.iter().enumerate() {
        let (name, server, record, port) = (
            name.clone(),
            spec.server.clone(),
            spec.record_type,
            spec.port,
        );
        // Each lookup in the source's span, named: its log lines say which template and name.
        let span = tracing::debug_span!("lookup", name = %name);
        let lookup = async move {
            let answer = tokio::time::timeout(
                bound,
                crate::checks::dns::query(server.as_deref(), &name, record),
            )
            .await
            .map_err(|_| format!("{name}: no answer within {}s", bound.as_secs_f64()))
            .and_then(|r| r.map_err(|e| format!("{name}: {e}")))
            .and_then(|message| targets(&name, &message, port));
            (index, answer)
        };
        lookups.spawn(lookup.instrument(span));
    }
    let mut answers = Vec::with_capacity(spec.names.len());
    while let Some(joined) = lookups.join_next().await {
        if let Ok(answer) = joined {
            answers.push(answer);
        }
    }
    answers.sort_by_key(|(index, _)| *index);
    answers
}

/// The targets an answer for `name` gives, as Prometheus labels them.
fn targets(name: &str, message: &Message, port: Option<u16>) -> Result<Vec<Target>, String> {
    match message.response_code() {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return Ok(Vec::new()),
        code => return Err(format!("{name}: {code}")),
    }
    let mut out = Vec::new();
    for record in message.answers() {
        let mut labels = BTreeMap::from([("__meta_dns_name".to_string(), name.to_string())]);
        let target = match (record.data(), port) {
            (RData::SRV(srv), _) => {
                let host = srv.target().to_ascii();
                let host = host.trim_end_matches('.');
                labels.insert("__meta_dns_srv_record_target".into(), host.to_string());
                labels.insert("__meta_dns_srv_record_port".into(), srv.port().to_string());
                format!("{host}:{}", srv.port())
            }
            (RData::A(a), Some(port)) => format!("{}:{port}", a.0),
            (RData::AAAA(aaaa), Some(port)) => format!("[{}]:{port}", aaaa.0),
            // A CNAME on the way, or a record of another type.
            _ => continue,
        };
        out.push(Target { target, labels });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, AAAA, CNAME, SRV};
    use hickory_proto::rr::{Name, Record};

    fn answer(code: ResponseCode, records: Vec<RData>) -> Message {
        let mut m = Message::new();
        m.set_response_code(code);
        for data in records {
            m.add_answer(Record::from_rdata(
                Name::from_ascii("x.example.").unwrap(),
                60,
                data,
            ));
        }
        m
    }

    #[test]
    fn srv_a_and_aaaa_answers_are_targets() {
        let srv = answer(
            ResponseCode::NoError,
            vec![
                RData::SRV(SRV::new(
                    0,
                    5,
                    8080,
                    Name::from_ascii("web-1.example.").unwrap(),
                )),
                RData::CNAME(CNAME(Name::from_ascii("other.example.").unwrap())),
            ],
        );
        let got = targets("_http._tcp.x.example", &srv, None).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].target, "web-1.example:8080");
        assert_eq!(
            got[0].labels["__meta_dns_srv_record_target"],
            "web-1.example"
        );
        assert_eq!(got[0].labels["__meta_dns_srv_record_port"], "8080");
        assert_eq!(got[0].labels["__meta_dns_name"], "_http._tcp.x.example");
        let a = answer(
            ResponseCode::NoError,
            vec![
                RData::A(A::new(10, 0, 0, 1)),
                RData::AAAA(AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
            ],
        );
        let got: Vec<String> = targets("x.example", &a, Some(9100))
            .unwrap()
            .into_iter()
            .map(|t| t.target)
            .collect();
        assert_eq!(got, ["10.0.0.1:9100", "[2001:db8::1]:9100"]);
    }

    #[test]
    fn nxdomain_is_no_targets_and_servfail_a_failure() {
        assert_eq!(
            targets(
                "gone.example",
                &answer(ResponseCode::NXDomain, vec![]),
                None
            ),
            Ok(Vec::new())
        );
        let e = targets("x.example", &answer(ResponseCode::ServFail, vec![]), None).unwrap_err();
        assert!(e.starts_with("x.example: "), "{e}");
        assert!(
            e.contains("Server Failure") || e.contains("SERVFAIL"),
            "{e}"
        );
    }
}
