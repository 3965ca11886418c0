//! `tcp:` checks: a connection to `host:port`.

use serde::Deserialize;

use super::{CheckAt, Kind};
use crate::config::duration::Duration;
use crate::config::validate::Context;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpFile {
    address: String,
    warn_after: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TcpSpec {
    pub address: String,
    pub warn_after: Option<Duration>,
}

impl Kind for TcpSpec {
    type File = TcpFile;

    fn check(cx: &mut Context, at: &CheckAt<'_>, t: TcpFile) -> Option<TcpSpec> {
        let valid = t
            .address
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if !valid {
            cx.error(
                at.path,
                format!("tcp.address {:?} is not host:port", t.address),
            );
            return None;
        }
        at.warn_after(cx, "tcp", t.warn_after);
        Some(TcpSpec {
            address: t.address,
            warn_after: t.warn_after,
        })
    }
}
