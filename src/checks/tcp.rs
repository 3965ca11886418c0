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
        Err(e) => Outcome::failed(
            Status::Critical,
            match FailureReason::of_io(&e) {
                // Name resolution failures come back as plain IO errors of kind Other/Uncategorized.
                FailureReason::Other if e.to_string().contains("failed to lookup address") => {
                    FailureReason::Dns
                }
                reason => reason,
            },
            format!("connect to {} failed: {e}", spec.address),
        )
        .with("address", spec.address.clone()),
    }
}
