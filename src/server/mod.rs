//! The HTTP server: a hyper accept loop with header-read timeouts, connection shedding at
//! `--web.max-connections` ([`shed`], [`connections`]) and graceful shutdown. Routes live in
//! [`routes`]; the status page in [`page`].

pub(crate) mod auth;
mod cluster;
mod connections;
mod heartbeat;
mod page;
mod pauses;
mod respond;
mod routes;
mod runs;
pub mod shed;
pub mod web_security;
mod webhook;
mod wire;

use std::convert::Infallible;
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
use connections::{Connection, Connections, TrackedBody, TrackedIo};

/// A reload request: the answer says whether the new config took effect.
pub type ReloadRequest = oneshot::Sender<Result<(), String>>;

/// What the handlers need: all of it shared, none of it domain state.
pub struct HandlerContext {
    pub state: StateHandle,
    pub metrics: Arc<Metrics>,
    pub reload: mpsc::Sender<ReloadRequest>,
    /// Set once config and state store are loaded.
    pub ready: AtomicBool,
    /// Why `ready` is false, when there is more to say than "not yet" (the state store's file
    /// was deleted and is being reopened). Shown in the 503 body of `/-/ready`.
    pub not_ready_reason: std::sync::Mutex<Option<&'static str>>,
    /// The state store, once open.
    pub store: watch::Receiver<Option<crate::store::Store>>,
    /// Webhook credentials and limits; replaced on reload.
    pub webhook: watch::Receiver<Arc<crate::config::WebhookConfig>>,
    /// Where alerts go.
    pub recovery: crate::recovery::manager::RecoveryHandle,
    /// The pauses in force; `/api/v1/pauses` writes through it.
    pub pauses: crate::pause_book::PauseBook,
    /// TLS and basic auth from `--web.config.file`; replaced on reload.
    pub web: watch::Receiver<Arc<web_security::WebSecurity>>,
    /// Pings of heartbeat checks, shared with the prober.
    pub heartbeats: crate::checks::Heartbeats,
    /// To judge a heartbeat check at once when its job reports.
    pub probes: crate::scheduler::ProbeHandle,
    /// The cluster as this replica sees it (`--cluster.shard auto`), for `/api/v1/cluster`
    /// and the status page.
    pub cluster: Option<watch::Receiver<Arc<crate::cluster::ClusterView>>>,
}

/// How long a client may take to send its request headers (no slow-loris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to finish the TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests may take to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// `--web.max-connections`'s default, as Prometheus has it.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;

/// Sockets medic may hold past `--web.max-connections`: the one just accepted and those shed
/// whose task has not yet run to close them. Past it, medic accepts nothing until they close.
pub const OVER_CAP: usize = 32;

/// Connections the kernel holds for medic before it accepts them (the default, 128, made a
/// burst of connects wait for a SYN retransmit; the kernel caps it at `somaxconn`).
const LISTEN_BACKLOG: u32 = 1024;

/// Binds `address` (`host:port`, the first address it resolves to that binds) with a listen
/// backlog of [`LISTEN_BACKLOG`].
pub async fn listen(address: &str) -> std::io::Result<TcpListener> {
    let mut last = None;
    for addr in tokio::net::lookup_host(address).await? {
        let socket = match addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        // As std's bind does: a restarted medic can listen while old connections linger.
        socket.set_reuseaddr(true)?;
        match socket
            .bind(addr)
            .and_then(|()| socket.listen(LISTEN_BACKLOG))
        {
            Ok(listener) => return Ok(listener),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the address resolves to nothing",
        )
    }))
}

/// Serves until `shutdown` turns true, then drains open connections.
///
/// At `max_connections` open, each connection accepted past the cap makes room by shedding
/// another ([`shed`]): the longest idle keep-alive connection, else the one that has been
/// sending its request headers the longest once it has had [`shed::HEADER_GRACE`]; never one
/// whose request is being answered. So a flood of idle or slow clients cannot keep a scrape, a
/// health probe or a webhook post from being served, while medic still holds at most
/// `max_connections` plus [`OVER_CAP`] sockets. When nothing can be shed yet, the connection
/// just accepted is served over the cap and medic accepts no more until something can be (a
/// grace ends, an answer is finished, a connection closes); new clients wait in the listen
/// backlog meanwhile.
pub async fn serve(
    listener: TcpListener,
    max_connections: usize,
    shared: Arc<HandlerContext>,
    mut shutdown: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let max_connections = max_connections.max(1);
    let connections = Connections::new(shared.metrics.clone());
    // When the cap was last logged: once a minute at most, however often it is reached.
    let mut logged: Option<tokio::time::Instant> = None;
    loop {
        let Some((stream, peer)) =
            accept_within(&listener, &connections, max_connections, &mut shutdown).await
        else {
            break;
        };
        let _ = stream.set_nodelay(true);
        let registered = connections.register(std::time::Instant::now());
        // The TLS setting in force when the connection arrives decides how it is spoken.
        let tls = shared.web.borrow().tls.clone();
        let task = connection_task(
            stream,
            peer,
            tls,
            shared.clone(),
            graceful.watcher(),
            registered,
        );
        tokio::spawn(task.instrument(tracing::debug_span!("http", peer = %peer)));
        if connections.live() <= max_connections {
            continue;
        }
        // Lets the connection just accepted, and any woken by bytes that arrived, read them
        // before anyone is judged: a busy medic does not shed a client whose request is in.
        tokio::task::yield_now().await;
        if logged.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
            logged = Some(tokio::time::Instant::now());
            tracing::warn!(
                max_connections,
                "--web.max-connections reached: idle connections, then those slow to send \
                 their headers, are closed to make room"
            );
        }
        if !make_room(&connections, max_connections, &mut shutdown).await {
            break;
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

/// The next connection, once medic holds fewer than the cap plus [`OVER_CAP`] sockets (shed
/// connections close as soon as their task runs; until then they hold one). `None` at
/// shutdown.
async fn accept_within(
    listener: &TcpListener,
    connections: &Connections,
    max_connections: usize,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(tokio::net::TcpStream, SocketAddr)> {
    loop {
        while connections.held() >= max_connections + OVER_CAP {
            tokio::select! {
                () = connections.changed() => {}
                _ = shutdown.changed() => return None,
            }
        }
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => return Some(a),
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = shutdown.changed() => return None,
        }
    }
}

/// One connection's life: TLS if configured, then HTTP/1.1, until it closes, shutdown ends
/// it, or it is shed to make room (dropping it closes its socket).
async fn connection_task(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    shared: Arc<HandlerContext>,
    watcher: Watcher,
    registered: connections::Registered,
) {
    let connection = registered.connection().clone();
    // Tracked under TLS: a handshake counts as reading headers.
    let stream = TrackedIo::new(stream, connection.clone());
    let serve = async {
        let Some(tls) = tls else {
            return serve_connection(stream, peer, shared, watcher, &connection).await;
        };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => serve_connection(stream, peer, shared, watcher, &connection).await,
            Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        }
    };
    tokio::select! {
        () = serve => {}
        () = connection.shed() => tracing::debug!("connection shed to make room"),
    }
    // Leaves the registry only now, with its socket closed.
    drop(registered);
}

/// Past the cap: sheds one connection, waiting while none can be (a grace has not ended,
/// every one is being answered) and accepting no more meanwhile. False at shutdown.
async fn make_room(
    connections: &Connections,
    max_connections: usize,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    loop {
        let wait_until = match connections.shed_one(std::time::Instant::now()) {
            shed::Choice::Shed(_) => return true,
            shed::Choice::WaitUntil(at) => Some(tokio::time::Instant::from_std(at)),
            shed::Choice::Nothing => None,
        };
        let grace_ends = async {
            match wait_until {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = connections.changed() => {}
            () = grace_ends => {}
            _ = shutdown.changed() => return false,
        }
        if connections.live() <= max_connections {
            return true;
        }
    }
}

/// Serves HTTP/1.1 on one accepted connection, plain or TLS, until it closes or shutdown ends
/// it; the service and the answers' bodies tell `connection` its phases (the stream, a
/// [`TrackedIo`], tells it reads and flushes).
async fn serve_connection<S>(
    stream: S,
    peer: SocketAddr,
    shared: Arc<HandlerContext>,
    watcher: Watcher,
    connection: &Arc<Connection>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let tracked = connection.clone();
    let service = service_fn(move |req| {
        tracked.request_started();
        let (shared, tracked) = (shared.clone(), tracked.clone());
        async move {
            let response = routes::handle(shared, peer, req).await?;
            Ok::<_, Infallible>(response.map(|body| TrackedBody::new(body, tracked)))
        }
    });
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
