//! The HTTP server: a hyper accept loop with header-read timeouts and graceful shutdown.
//! Routes live in [`routes`]; the status page in [`page`].

pub(crate) mod auth;
mod heartbeat;
mod page;
mod routes;
pub mod web_config;
mod webhook;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::state::StateHandle;

/// A reload request: the answer says whether the new config took effect.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// What the handlers need: all of it shared, none of it domain state.
pub struct Shared {
    pub state: StateHandle,
    pub metrics: Arc<Metrics>,
    pub reload: mpsc::Sender<ReloadRequest>,
    /// Set once config and state store are loaded.
    pub ready: AtomicBool,
    /// The state store, once open.
    pub store: watch::Receiver<Option<crate::store::Store>>,
    /// Webhook credentials and limits; replaced on reload.
    pub webhook: watch::Receiver<Arc<crate::config::WebhookConfig>>,
    /// Where alerts go.
    pub recovery: crate::recovery::engine::RecoveryHandle,
    /// TLS and basic auth from `--web.config.file`; replaced on reload.
    pub web: watch::Receiver<Arc<web_config::WebSecurity>>,
    /// Pings of heartbeat checks, shared with the prober.
    pub heartbeats: crate::checks::Heartbeats,
    /// To judge a heartbeat check at once when its job reports.
    pub probes: crate::scheduler::ProbeHandle,
}

/// How long a client may take to send its request headers (no slow-loris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves until `shutdown` turns true, then drains open connections.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                // The TLS setting in force when the connection arrives decides how it is spoken.
                let tls = shared.web.borrow().tls.clone();
                let (shared, watcher) = (shared.clone(), graceful.watcher());
                tokio::spawn(
                    async move {
                        match tls {
                            None => serve_connection(stream, peer, shared, watcher).await,
                            Some(tls) => {
                                let acceptor = tokio_rustls::TlsAcceptor::from(tls);
                                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                                    Ok(Ok(stream)) => serve_connection(stream, peer, shared, watcher).await,
                                    Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                                    Err(_) => tracing::debug!("TLS handshake timed out"),
                                }
                            }
                        }
                    }
                    .instrument(tracing::debug_span!("http", peer = %peer)),
                );
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("open HTTP connections did not finish in time");
        }
    }
}

/// Serves HTTP/1.1 on one accepted connection, plain or TLS, until it closes or shutdown ends it.
async fn serve_connection<S>(stream: S, peer: SocketAddr, shared: Arc<Shared>, watcher: Watcher)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| routes::handle(shared.clone(), peer, req));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    let _ = watcher.watch(conn).await;
}

/// Whether a client address is on this machine.
pub fn is_loopback(peer: &SocketAddr) -> bool {
    match peer.ip() {
        std::net::IpAddr::V4(ip) => ip.is_loopback(),
        std::net::IpAddr::V6(ip) => {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}
