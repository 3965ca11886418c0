//! The open connections of the server, each with its phase ([`super::shed`]) kept up to date
//! by what passes through it: [`TrackedIo`] sees reads and flushes of the socket, [`TrackedBody`]
//! sees an answer handed over in full, the service marks a request's start. The accept loop asks
//! [`Connections::shed_one`] to close one when it is over `--web.max-connections`.

use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

use hyper::body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use super::shed::{self, Choice, ConnectionState};
use crate::metrics::Metrics;

/// Every open connection (accepted and not yet closed, shed ones included until their task
/// drops them).
pub struct Connections {
    open: Mutex<Open>,
    next_id: AtomicU64,
    /// Told when a connection closes or finishes an answer: the accept loop waits on it when
    /// every connection is being answered.
    changed: Notify,
    metrics: Arc<Metrics>,
}

#[derive(Default)]
struct Open {
    by_id: HashMap<u64, Arc<Connection>>,
    /// How many of `by_id` are shed and about to close.
    shed: usize,
}

/// One connection's phase and the way to close it.
pub struct Connection {
    state: Mutex<ConnectionState>,
    /// Told once when the connection is shed; its task then drops it.
    shed: Notify,
    connections: Arc<Connections>,
}

/// A connection's place in [`Connections`]: leaves it when dropped (the connection's task ends).
pub struct Registered {
    id: u64,
    connection: Arc<Connection>,
}

impl Connections {
    pub fn new(metrics: Arc<Metrics>) -> Arc<Self> {
        metrics.web_connections_open(0);
        Arc::new(Connections {
            open: Mutex::default(),
            next_id: AtomicU64::new(0),
            changed: Notify::new(),
            metrics,
        })
    }

    /// Adds a connection accepted at `now`.
    pub fn register(self: &Arc<Self>, now: Instant) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let connection = Arc::new(Connection {
            state: Mutex::new(ConnectionState::accepted(now)),
            shed: Notify::new(),
            connections: self.clone(),
        });
        let mut open = self.lock();
        open.by_id.insert(id, connection.clone());
        self.metrics.web_connections_open(open.by_id.len());
        Registered { id, connection }
    }

    /// Sockets held now: open connections, shed ones not yet closed included.
    pub fn held(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Open connections not shed.
    pub fn live(&self) -> usize {
        let open = self.lock();
        open.by_id.len() - open.shed
    }

    /// Sheds one connection chosen by [`shed::victim`] at `now` and counts it, or says when
    /// to ask again (every candidate within its grace) or that there is none (every
    /// connection is being answered).
    pub fn shed_one(&self, now: Instant) -> Choice<()> {
        let mut open = self.lock();
        // A candidate's phase may move between the choice and the shedding (its next request
        // came in, under the map's lock but not its own): then choose again. Each retry needs
        // a connection to have moved on, so this ends.
        loop {
            let candidates = open
                .by_id
                .iter()
                .filter_map(|(id, connection)| Some(connection.lock().sheddable()?.with_id(*id)));
            let chosen = match shed::victim(candidates, now) {
                Choice::Shed(chosen) => chosen,
                Choice::WaitUntil(at) => return Choice::WaitUntil(at),
                Choice::Nothing => return Choice::Nothing,
            };
            let Some(connection) = open.by_id.get(&chosen.id).cloned() else {
                continue;
            };
            let seen = chosen.with_id(());
            if connection.lock().shed_if_still(seen) {
                open.shed += 1;
                drop(open);
                connection.shed.notify_one();
                self.metrics.web_connection_shed(chosen.reason);
                return Choice::Shed(seen);
            }
        }
    }

    /// Waits until a connection closes or finishes an answer (or did since the last wait).
    pub async fn changed(&self) {
        self.changed.notified().await
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Connection {
    /// Resolves once the connection is shed.
    pub async fn shed(&self) {
        self.shed.notified().await
    }

    /// A request's headers are in and its handler is called.
    pub fn request_started(&self) {
        self.lock().request_started(Instant::now());
    }

    fn lock(&self) -> MutexGuard<'_, ConnectionState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Registered {
    pub fn connection(&self) -> &Arc<Connection> {
        &self.connection
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        let connections = &self.connection.connections;
        let mut open = connections.lock();
        if open.by_id.remove(&self.id).is_some()
            && self.connection.lock().phase() == shed::Phase::Shed
        {
            open.shed -= 1;
        }
        connections.metrics.web_connections_open(open.by_id.len());
        drop(open);
        connections.changed.notify_one();
    }
}

/// A connection's socket, under TLS when there is TLS (so a handshake is read and flushed
/// like headers), seeing reads and flushes for its phase.
pub struct TrackedIo<S> {
    inner: S,
    connection: Arc<Connection>,
    /// Whether medic has tried to read it yet.
    read_once: bool,
}

impl<S> TrackedIo<S> {
    pub fn new(inner: S, connection: Arc<Connection>) -> Self {
        TrackedIo {
            inner,
            connection,
            read_once: false,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TrackedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.read_once {
            this.read_once = true;
            this.connection.lock().read_attempted(Instant::now());
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.connection.lock().bytes_read(Instant::now());
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TrackedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    /// hyper (and TLS above this) flushes the socket only once its own write buffer is empty:
    /// an answer handed over before this flush is now all with the kernel.
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        if matches!(result, Poll::Ready(Ok(()))) {
            let became_sheddable = this.connection.lock().flushed(Instant::now());
            if became_sheddable {
                this.connection.connections.changed.notify_one();
            }
        }
        result
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// An answer's body that tells its connection when it is done: hyper drops it once the last
/// frame is in its write buffer (or the connection ends).
pub struct TrackedBody<B> {
    inner: B,
    connection: Arc<Connection>,
}

impl<B> TrackedBody<B> {
    pub fn new(inner: B, connection: Arc<Connection>) -> Self {
        TrackedBody { inner, connection }
    }
}

impl<B> Drop for TrackedBody<B> {
    fn drop(&mut self) {
        self.connection.lock().answer_handed_over(Instant::now());
    }
}

impl<B: hyper::body::Body + Unpin> hyper::body::Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Format;
    use std::time::Duration;

    fn answer(connection: &Connection, at: Instant) {
        let mut state = connection.lock();
        state.request_started(at);
        state.answer_handed_over(at);
        state.flushed(at);
    }

    #[tokio::test]
    async fn shedding_counts_and_closes_the_chosen_connection_only() {
        let metrics = Arc::new(Metrics::new());
        let connections = Connections::new(metrics.clone());
        let t = Instant::now();
        let busy = connections.register(t);
        let idle = connections.register(t);
        let fresh = connections.register(t);
        busy.connection().request_started();
        answer(idle.connection(), t);
        fresh.connection().lock().read_attempted(t);
        assert_eq!((connections.held(), connections.live()), (3, 3));

        // The idle one goes; the new one is within its grace; the busy one is never chosen.
        assert!(matches!(connections.shed_one(t), Choice::Shed(_)));
        idle.connection().shed().await;
        assert_eq!((connections.held(), connections.live()), (3, 2));
        assert_eq!(
            connections.shed_one(t + Duration::from_millis(1)),
            Choice::WaitUntil(t + shed::HEADER_GRACE)
        );
        drop(idle);
        assert_eq!((connections.held(), connections.live()), (2, 2));
        assert!(matches!(
            connections.shed_one(t + shed::HEADER_GRACE),
            Choice::Shed(_)
        ));
        drop(fresh);
        assert_eq!(
            connections.shed_one(t + shed::HEADER_GRACE),
            Choice::Nothing
        );
        let text = metrics.encode(Format::PrometheusText);
        for line in [
            "medic_web_connections_shed_total{reason=\"idle\"} 1",
            "medic_web_connections_shed_total{reason=\"reading_headers\"} 1",
            "medic_web_connections_open 1",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        drop(busy);
        assert_eq!(connections.held(), 0);
    }
}
