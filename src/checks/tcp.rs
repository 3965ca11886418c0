//! TCP checks: a connect within the timeout is healthy; the connection is closed at once.

use std::time::Instant;

use super::{FailureReason, Outcome};
use crate::config::TcpSpec;
use crate::status::Status;

pub async fn probe(spec: &TcpSpec) -> Outcome {
    let started = Instant::now();
    match tokio::net::TcpStream::connect(spec.address.as_str()).await {
        Ok(stream) => {
            let elapsed = started.elapsed();
            let peer = stream
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            drop(stream);
            Outcome::new(
                Status::Healthy,
                // No timing in the message: it is in duration_seconds, and a steady message
                // is stored once for the whole history.
                format!("connected to {}", spec.address),
            )
            .warn_if_slow(elapsed, spec.warn_after)
            .with("address", spec.address.clone())
            .with("peer", peer)
            .with("connect_seconds", elapsed.as_secs_f64())
        }
        Err(e) => connect_failed(&spec.address, &e),
    }
}

/// A failed connect to `address`, with its reason.
pub(super) fn connect_failed(address: &str, e: &std::io::Error) -> Outcome {
    let reason = match FailureReason::of_io(e) {
        // A name that does not resolve comes back as a plain IO error; only its words say so.
        FailureReason::Other if e.to_string().contains("failed to lookup address") => {
            FailureReason::Dns
        }
        reason => reason,
    };
    Outcome::from_error(
        e,
        Status::Critical,
        Some(reason),
        format!("connect to {address} failed: {e}"),
    )
    .with("address", address.to_string())
}
