//! The client-facing listener: hyper-util's server driven directly, with a
//! connection cap, header limits, timeouts and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Either;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use portcullis_core::{
    Cause, ConnectionSlot, ErrorBody, ErrorResponse, LocalAddr, PORTCULLIS_ERROR, PeerAddr,
};
use portcullis_proxy::BoxError;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::{Service, ServiceExt};

use portcullis_body::RawHeadVerdict;

use crate::io::{InspectedIo, SharedInspector};

/// Listener limits, from `[server]`.
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// How long an excess connection may wait for a slot.
    pub connection_wait: Duration,
    /// Time to receive a request head: the first from the connection's start,
    /// later ones from their first byte (slowloris).
    pub header_timeout: Duration,
    /// How long an idle keep-alive connection is kept between requests (an
    /// HTTP/2 one with no stream open gets a GOAWAY).
    pub keepalive_timeout: Duration,
    /// How long a write to the client may stay blocked (it stopped reading).
    pub send_timeout: Duration,
    /// Largest header section (431).
    pub max_header_bytes: usize,
    /// Most header fields (431).
    pub max_headers: usize,
    /// Longest request target (414).
    pub max_uri_bytes: usize,
    /// Serve h2c beside HTTP/1.1.
    pub http2: bool,
    /// Drain deadline after a shutdown signal (or a hand-over's soft drain).
    pub shutdown_timeout: Duration,
    /// Requests served on one connection before it is closed (HTTP/1.1: the last
    /// response says `Connection: close`; HTTP/2: a GOAWAY); 0 = no limit.
    pub max_requests_per_connection: u64,
    /// Age after which a connection is closed (HTTP/1.1 after its current
    /// response, HTTP/2 by a GOAWAY); zero = no limit.
    pub max_connection_lifetime: Duration,
}

/// The proxy listener and its generations (R18). Each [`Frontend::start`] begins
/// a generation: an accept loop with its own stack and limits, on a new socket or
/// on the one the previous generation used. The previous generation then stops
/// accepting (taking what is already queued on a socket that closes) and drains
/// softly: its HTTP/1.1 connections answer the request in flight and the next
/// one with `Connection: close`, idle ones close at their keep-alive timeout (no
/// request racing a close is lost), HTTP/2 connections get a GOAWAY. What is
/// left after `keepalive_timeout + header_timeout` is drained hard, and after
/// `shutdown_timeout` more, closed. [`Frontend::shutdown`] drains every
/// generation hard at once.
///
/// `max_connections` bounds the listener as a whole: every generation takes its
/// connections' slots from one pool, resized when a generation brings another
/// limit.
pub struct Frontend {
    shutdown: watch::Sender<bool>,
    /// The listener's connection cap, shared by its generations.
    slots: Arc<Semaphore>,
    state: std::sync::Mutex<FrontState>,
}

#[derive(Default)]
struct FrontState {
    /// The generation accepting connections: its socket and its hand-over signal.
    current: Option<(Arc<TcpListener>, watch::Sender<Handover>)>,
    /// Every generation's task; finished ones are pruned at each start.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// The cap `slots` stands for: its free permits plus those held.
    cap: usize,
}

/// A generation's hand-over signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Handover {
    Serving,
    /// A newer generation accepts now; `retiring` when this one's socket is no
    /// longer used by it (the address changed) and closes.
    Over {
        retiring: bool,
    },
}

impl std::fmt::Debug for Frontend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frontend").finish_non_exhaustive()
    }
}

impl Default for Frontend {
    fn default() -> Self {
        Self::new()
    }
}

impl Frontend {
    /// A frontend with no generation yet.
    pub fn new() -> Self {
        Self {
            shutdown: watch::channel(false).0,
            slots: Arc::new(Semaphore::new(0)),
            state: std::sync::Mutex::new(FrontState::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FrontState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The socket the current generation accepts on, to hand to the next one
    /// when the address did not change.
    pub fn listener(&self) -> Option<Arc<TcpListener>> {
        self.state().current.as_ref().map(|(l, _)| l.clone())
    }

    /// Whether [`Frontend::shutdown`] was called.
    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// Starts a generation serving `stack` on `listener` with `limits`; the
    /// previous one (if any) stops accepting and drains softly. The new one
    /// accepts before the old one lets its socket go. False (and nothing
    /// started) once the frontend is shutting down.
    pub fn start<S, B>(&self, listener: Arc<TcpListener>, stack: S, limits: ListenerLimits) -> bool
    where
        S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let mut state = self.state();
        if self.is_shutting_down() {
            return false;
        }
        self.resize(&mut state, limits.max_connections);
        let (handover_tx, handover_rx) = watch::channel(Handover::Serving);
        let task = tokio::spawn(run_generation(
            listener.clone(),
            stack,
            Arc::new(limits),
            self.slots.clone(),
            handover_rx,
            self.shutdown.subscribe(),
        ));
        state.tasks.retain(|t| !t.is_finished());
        state.tasks.push(task);
        let old = state.current.take();
        if let Some((old_listener, old_handover)) = old {
            let retiring = !Arc::ptr_eq(&old_listener, &listener);
            // Let go of the old socket first, so that its generation holds the last
            // reference when it retires.
            drop(old_listener);
            let _ = old_handover.send(Handover::Over { retiring });
        }
        state.current = Some((listener, handover_tx));
        true
    }

    /// Makes the shared connection pool stand for `cap` connections. A smaller
    /// cap takes effect as connections end.
    fn resize(&self, state: &mut FrontState, cap: usize) {
        if cap > state.cap {
            self.slots
                .add_permits((cap - state.cap).min(Semaphore::MAX_PERMITS));
        } else if cap < state.cap {
            let diff = state.cap - cap;
            let rest = diff - self.slots.forget_permits(diff);
            if rest > 0 {
                let slots = self.slots.clone();
                let rest = u32::try_from(rest).unwrap_or(u32::MAX);
                tokio::spawn(async move {
                    if let Ok(p) = slots.acquire_many_owned(rest).await {
                        p.forget();
                    }
                });
            }
        }
        state.cap = cap;
    }

    /// Stops every generation: no more accepts, every connection drained (HTTP/1.1
    /// `Connection: close` or closed when idle, HTTP/2 GOAWAY), in-flight requests
    /// given up to their generation's `shutdown_timeout`.
    pub async fn shutdown(&self) {
        let tasks = {
            let mut state = self.state();
            // `send_replace`: stored even before any generation subscribed.
            self.shutdown.send_replace(true);
            state.current = None;
            std::mem::take(&mut state.tasks)
        };
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// How a generation's connections are asked to end, in increasing order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Drain {
    Run,
    /// Handed over: HTTP/1.1 closes after its next response, HTTP/2 gets GOAWAY.
    Soft,
    /// Shutting down: idle HTTP/1.1 connections close now as well.
    Hard,
    /// Past the deadline: connections are closed, requests or not.
    Abort,
}

/// What every connection of a generation shares.
struct Generation {
    limits: ListenerLimits,
    /// Set once the generation is handed over: responses say `Connection: close`.
    draining: std::sync::atomic::AtomicBool,
    /// Connections (and the tunnels they became) still open.
    open: std::sync::atomic::AtomicUsize,
    /// Woken when `open` drops to zero.
    closed: tokio::sync::Notify,
}

impl Generation {
    /// Resolves once every connection of the generation ended.
    async fn all_closed(&self) {
        loop {
            let notified = self.closed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.open.load(std::sync::atomic::Ordering::Acquire) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// A connection's place: a slot of the listener's cap and a count in its
/// generation, both given back when the connection (or its tunnel) ends.
struct Slot {
    _cap: OwnedSemaphorePermit,
    generation: Arc<Generation>,
}

impl Slot {
    fn new(cap: OwnedSemaphorePermit, generation: Arc<Generation>) -> Self {
        generation
            .open
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        Self {
            _cap: cap,
            generation,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self
            .generation
            .open
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            == 1
        {
            self.generation.closed.notify_waiters();
        }
    }
}

/// One generation's accept loop, then its drain.
async fn run_generation<S, B>(
    listener: Arc<TcpListener>,
    stack: S,
    limits: Arc<ListenerLimits>,
    slots: Arc<Semaphore>,
    mut handover: watch::Receiver<Handover>,
    mut shutdown: watch::Receiver<bool>,
) where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let generation = Arc::new(Generation {
        limits: ListenerLimits::clone(&limits),
        draining: std::sync::atomic::AtomicBool::new(false),
        open: std::sync::atomic::AtomicUsize::new(0),
        closed: tokio::sync::Notify::new(),
    });
    let shed_response = shed_response();
    let builders = Arc::new(Builders::new(&limits));
    let (drain_tx, drain_rx) = watch::channel(Drain::Run);
    let accept_one = |stream: TcpStream, peer: SocketAddr, permit: Option<OwnedSemaphorePermit>| {
        // A slot may have freed while we waited in `accept`.
        let Some(permit) = permit.or_else(|| slots.clone().try_acquire_owned().ok()) else {
            tracing::warn!(peer_addr = %peer, max_connections = limits.max_connections, "connection limit reached, closing connection");
            shed(stream, &shed_response);
            return;
        };
        let local = stream.local_addr().unwrap_or(peer);
        let _ = stream.set_nodelay(true);
        let inspector = SharedInspector::new(head_limit(&limits));
        let svc = ConnService {
            stack: stack.clone(),
            peer,
            local,
            inspector: inspector.clone(),
            state: Arc::new(ConnState {
                generation: generation.clone(),
                served: std::sync::atomic::AtomicU64::new(0),
                opened: tokio::time::Instant::now(),
            }),
            slot: Arc::new(Slot::new(permit, generation.clone())),
            h2: None,
        };
        // The connection's future is spawned as is (no wrapping block): every
        // byte of it is held for the connection's whole life.
        tokio::spawn(serve_connection(
            stream,
            svc,
            builders.clone(),
            drain_rx.clone(),
        ));
    };

    let over = |h: &Handover| *h != Handover::Serving;
    // `Some(retiring)` once handed over, `None` on shutdown.
    let handed_over = loop {
        // Take a slot before accepting, so excess connections wait in the kernel's
        // backlog; past `connection_wait`, shed the oldest one waiting.
        let permit = tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => break None,
            h = handover.wait_for(over) => break h.ok().map(|h| *h == Handover::Over { retiring: true }),
            p = tokio::time::timeout(limits.connection_wait, slots.clone().acquire_owned()) => p,
        };
        let permit = match permit {
            Ok(Ok(p)) => Some(p),
            Ok(Err(_)) => break None,
            Err(_) => None,
        };
        let accepted = tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => break None,
            h = handover.wait_for(over) => break h.ok().map(|h| *h == Handover::Over { retiring: true }),
            a = listener.accept() => a,
        };
        match accepted {
            Ok((stream, peer)) => accept_one(stream, peer, permit),
            Err(error) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    if let Some(retiring) = handed_over {
        if retiring {
            // Closing the socket would reset the connections the kernel already
            // queued on it: they are taken first.
            // At most a listen backlog's worth (Linux's default somaxconn).
            take_queued(listener, 4096, |stream, peer| {
                accept_one(stream, peer, None)
            });
        } else {
            drop(listener);
        }
        generation
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = drain_tx.send(Drain::Soft);
        tracing::info!(
            open_connections = generation.open.load(std::sync::atomic::Ordering::Relaxed),
            "listener handed over; its connections close after their next response"
        );
        // Idle HTTP/1.1 connections end by themselves within the keep-alive
        // timeout; what is left then is drained hard. A shutdown meanwhile
        // drains at once.
        let soft = limits
            .keepalive_timeout
            .saturating_add(limits.header_timeout);
        tokio::select! {
            () = generation.all_closed() => return,
            _ = shutdown.wait_for(|s| *s) => {}
            () = tokio::time::sleep(soft) => {
                tracing::info!(
                    open_connections = generation.open.load(std::sync::atomic::Ordering::Relaxed),
                    "handed-over listener: draining its remaining connections"
                );
            }
        }
    } else {
        drop(listener);
        tracing::info!(
            open_connections = generation.open.load(std::sync::atomic::Ordering::Relaxed),
            "shutting down, draining in-flight requests"
        );
    }
    // Responses still to come say `Connection: close` (hyper closes after them).
    generation
        .draining
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = drain_tx.send(Drain::Hard);
    if tokio::time::timeout(limits.shutdown_timeout, generation.all_closed())
        .await
        .is_err()
    {
        tracing::warn!(
            open_connections = generation.open.load(std::sync::atomic::Ordering::Relaxed),
            "drain deadline passed, closing remaining connections"
        );
        let _ = drain_tx.send(Drain::Abort);
    }
}

/// Hands `take` every connection already queued on a socket about to close, at
/// most `max` of them (the socket still listens: under a steady stream of new
/// connections this must end). The socket is taken out of the runtime and read
/// until it has nothing more; when something else still holds it, only what
/// the runtime already saw is taken.
pub(crate) fn take_queued(
    listener: Arc<TcpListener>,
    max: usize,
    mut take: impl FnMut(TcpStream, SocketAddr),
) {
    let listener = match Arc::try_unwrap(listener) {
        Ok(l) => l,
        Err(shared) => {
            for _ in 0..max {
                match shared.accept().now_or_never() {
                    Some(Ok((stream, peer))) => take(stream, peer),
                    _ => break,
                }
            }
            return;
        }
    };
    let Ok(std_listener) = listener.into_std() else {
        return;
    };
    let mut taken = 0;
    while taken < max {
        match std_listener.accept() {
            Ok((stream, peer)) => {
                taken += 1;
                let stream = match stream.set_nonblocking(true) {
                    Ok(()) => TcpStream::from_std(stream),
                    Err(e) => Err(e),
                };
                if let Ok(stream) = stream {
                    take(stream, peer);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionAborted | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => break,
        }
    }
}

/// The raw answer to a connection shed at the connection limit, made once at
/// start-up: the gateway's `overloaded` error (R6 shape) with `Retry-After`.
pub(crate) fn shed_response() -> Bytes {
    let cause = Cause::Overloaded;
    let body = ErrorResponse::new(cause).json();
    Bytes::from(format!(
        "HTTP/1.1 {status}\r\n{header}: {cause}\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n{body}",
        status = cause.status(),
        header = PORTCULLIS_ERROR,
        len = body.len(),
    ))
}

/// Closes a shed connection after a best-effort write of `response`
/// (non-blocking: a client that does not read it just sees the close).
///
/// What the client already sent is read first (a bounded amount, without
/// waiting): closing a socket with unread bytes makes the kernel reset the
/// connection, and a reset can destroy the answer before the client reads it.
/// The socket is used through std (plain non-blocking syscalls): a socket the
/// runtime has only just registered may not look ready to it yet.
pub(crate) fn shed(stream: TcpStream, response: &[u8]) {
    use std::io::{Read as _, Write as _};
    let Ok(mut s) = stream.into_std() else {
        return;
    };
    let _ = s.write(response);
    let mut buf = [0u8; 4096];
    for _ in 0..16 {
        match s.read(&mut buf) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    let _ = s.shutdown(std::net::Shutdown::Write);
}

/// hyper's default read buffer limit: 8 KiB plus 100 × 4 KiB.
const HYPER_DEFAULT_MAX_BUF: usize = 8192 + 4096 * 100;

/// The longest request head the raw inspector lets through: our header and URI
/// limits plus room for the request line and line endings.
fn head_limit(limits: &ListenerLimits) -> usize {
    limits.max_header_bytes + limits.max_uri_bytes + 4096
}

/// hyper's default (and fastest) limit on request header fields.
const HYPER_DEFAULT_MAX_HEADERS: usize = 100;

/// The protocol builders, configured once.
struct Builders {
    h1: http1::Builder,
    h2: Option<http2::Builder<TokioExecutor>>,
    header_timeout: Duration,
    send_timeout: Duration,
}

impl Builders {
    fn new(limits: &ListenerLimits) -> Self {
        // Heads are bounded by the raw inspector (`head_limit`): a longer one
        // closes the connection. hyper's buffer may be larger, which lets it read
        // request bodies in large pieces (fewer syscalls per upload); our own
        // checks answer heads between our limits and the inspector's with the
        // gateway's error shape.
        let buf = head_limit(limits).max(HYPER_DEFAULT_MAX_BUF);
        let mut h1 = http1::Builder::new();
        // hyper's timer runs from when it waits for the next request to that
        // request's head: the keep-alive idle time plus the head's own, which
        // `InspectedIo` bounds to `header_timeout` from the head's first byte.
        h1.timer(TokioTimer::new())
            .header_read_timeout(
                limits
                    .keepalive_timeout
                    .saturating_add(limits.header_timeout),
            )
            .max_buf_size(buf)
            .keep_alive(true);
        // hyper parses up to 100 fields in a stack array; any other limit costs a
        // heap allocation per request. So hyper keeps its 100 (beyond it: a bare
        // 431) unless the configured limit is above that.
        if limits.max_headers > HYPER_DEFAULT_MAX_HEADERS {
            h1.max_headers(limits.max_headers + 1);
        }
        let h2 = limits.http2.then(|| {
            let mut h2 = http2::Builder::new(TokioExecutor::new());
            h2.timer(TokioTimer::new())
                .max_header_list_size(u32::try_from(head_limit(limits)).unwrap_or(u32::MAX))
                .max_concurrent_streams(256)
                .keep_alive_interval(Some(Duration::from_secs(30)));
            h2
        });
        Self {
            h1,
            h2,
            header_timeout: limits.header_timeout,
            send_timeout: limits.send_timeout,
        }
    }
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Whether the client opens with the HTTP/2 preface (h2c with prior knowledge).
/// `None` when the client sent nothing useful in time or went away.
async fn is_h2(stream: &TcpStream, timeout: Duration) -> Option<bool> {
    let look = async {
        let mut buf = [0u8; 24];
        loop {
            let n = stream.peek(&mut buf).await.ok()?;
            let seen = buf.get(..n).unwrap_or(&[]);
            if n == 0 {
                return None;
            }
            if !H2_PREFACE.starts_with(seen) {
                return Some(false);
            }
            if n >= H2_PREFACE.len() {
                return Some(true);
            }
            // A preface arriving in pieces (rare): wait for more bytes.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::time::timeout(timeout, look).await.ok().flatten()
}

/// Serves one client connection. HTTP/1 and HTTP/2 get their own hyper
/// connection types (not hyper-util's `auto`, whose future is sized for both), so
/// an idle HTTP/1 keep-alive connection costs no more than hyper's own state.
async fn serve_connection<S, B>(
    stream: TcpStream,
    svc: ConnService<S>,
    builders: Arc<Builders>,
    mut drain: watch::Receiver<Drain>,
) where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let peer = svc.peer;
    let h2 = match &builders.h2 {
        // Boxed: the detection's timers are short-lived; kept inline they would
        // be reserved in every connection's task for its whole life.
        Some(_) => match Box::pin(is_h2(&stream, builders.header_timeout)).await {
            Some(h2) => h2,
            None => return,
        },
        None => false,
    };
    let result = if let (true, Some(h2b)) = (h2, &builders.h2) {
        let io = TokioIo::new(InspectedIo::new(
            stream,
            None,
            builders.header_timeout,
            builders.send_timeout,
        ));
        let conn_state = svc.state.clone();
        let limits = &conn_state.generation.limits;
        let (lifetime, max_requests, idle) = (
            limits.max_connection_lifetime,
            limits.max_requests_per_connection,
            limits.keepalive_timeout,
        );
        let served = &conn_state.served;
        let state = Arc::new(H2State::default());
        let mut svc = svc;
        svc.h2 = Some(state.clone());
        // Boxed: HTTP/2's larger state lives on the heap, only for h2 connections.
        let mut conn = Box::pin(h2b.serve_connection(io, svc));
        // A connection's end is asked for with a GOAWAY (streams already open
        // finish): on a drain, after its lifetime or its share of requests, or
        // when no stream was open for the keep-alive timeout.
        let lifetime = async {
            if lifetime.is_zero() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(lifetime).await;
        };
        let used_up = async {
            if max_requests == 0 {
                std::future::pending::<()>().await;
            }
            while served.load(std::sync::atomic::Ordering::Relaxed) < max_requests {
                state.request_seen.notified().await;
            }
        };
        let idle = async {
            let mut seen = served.load(std::sync::atomic::Ordering::Relaxed);
            loop {
                tokio::time::sleep(idle).await;
                let now = served.load(std::sync::atomic::Ordering::Relaxed);
                if now == seen && state.open.load(std::sync::atomic::Ordering::Relaxed) == 0 {
                    return;
                }
                seen = now;
            }
        };
        // A client that stops reading a stream (never opens its flow-control
        // window) leaves its response, and the upstream exchange behind it,
        // waiting for ever: past `send_timeout` the connection is closed, as a
        // blocked write closes an HTTP/1.1 one.
        let send_timeout = builders.send_timeout;
        let stalled = async {
            loop {
                tokio::time::sleep(send_timeout / 2).await;
                if state.stalled(conn_state.opened, send_timeout) {
                    tracing::debug!(peer_addr = %peer, "HTTP/2 client stopped reading a stream; closing the connection");
                    return;
                }
            }
        };
        tokio::pin!(stalled);
        let done = tokio::select! {
            res = conn.as_mut() => Some(res),
            () = stalled.as_mut() => return,
            _ = drain.wait_for(|d| *d != Drain::Run) => None,
            () = lifetime => None,
            () = used_up => None,
            () = idle => None,
        };
        match done {
            Some(res) => res,
            None => {
                conn.as_mut().graceful_shutdown();
                tokio::select! {
                    res = conn.as_mut() => res,
                    () = stalled => return,
                    // Past the drain deadline: closed, streams or not.
                    _ = drain.wait_for(|d| *d == Drain::Abort) => Ok(()),
                }
            }
        }
    } else {
        // HTTP/1 (nearly every connection) moves on to a task of its own that
        // holds only hyper's connection and the drain signal: this detection
        // future's arguments would otherwise stay reserved for the connection's
        // whole life.
        let io = TokioIo::new(InspectedIo::new(
            stream,
            Some(svc.inspector.clone()),
            builders.header_timeout,
            builders.send_timeout,
        ));
        let conn = builders.h1.serve_connection(io, svc).with_upgrades();
        tokio::spawn(DriveH1 {
            conn,
            drain: Box::pin(wait_drain(drain, Drain::Hard)),
            shutting_down: false,
            peer,
        });
        return;
    };
    if let Err(error) = result {
        tracing::debug!(%error, peer_addr = %peer, "connection ended with an error");
    }
}

/// Resolves with the receiver once the drain reaches `level` (or its sender is
/// gone, which is the end of the generation: treated as `Abort`).
async fn wait_drain(mut drain: watch::Receiver<Drain>, level: Drain) -> watch::Receiver<Drain> {
    let _ = drain.wait_for(|d| *d >= level).await;
    drain
}

type DrainFuture = Pin<Box<dyn Future<Output = watch::Receiver<Drain>> + Send>>;

pin_project_lite::pin_project! {
    /// Drives an HTTP/1 connection to its end. On a hard drain it asks the
    /// connection to finish the request in flight and close (an idle one closes
    /// at once); past the drain deadline it drops the connection.
    struct DriveH1<C> {
        #[pin]
        conn: C,
        drain: DrainFuture,
        shutting_down: bool,
        peer: SocketAddr,
    }
}

impl<I, S, B> Future for DriveH1<http1::UpgradeableConnection<I, S>>
where
    S: hyper::service::HttpService<Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: Body + 'static,
    B::Error: Into<BoxError>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<()> {
        let mut this = self.project();
        if let std::task::Poll::Ready(rx) = this.drain.as_mut().poll(cx) {
            let level = *rx.borrow();
            if level == Drain::Abort || rx.has_changed().is_err() && level < Drain::Hard {
                // Past the deadline (or the generation is gone): dropped.
                return std::task::Poll::Ready(());
            }
            if !*this.shutting_down {
                *this.shutting_down = true;
                this.conn.as_mut().graceful_shutdown();
            }
            // Only now (a drain is rare) a second wait is allocated.
            *this.drain = Box::pin(wait_drain(rx, Drain::Abort));
            if this.drain.as_mut().poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        match std::task::ready!(this.conn.poll(cx)) {
            Ok(()) => {}
            Err(error) => {
                tracing::debug!(%error, peer_addr = %this.peer, "connection ended with an error");
            }
        }
        std::task::Poll::Ready(())
    }
}

/// The per-connection service: sets the connection's request extensions, applies
/// the header and URI limits, then calls the shared stack.
#[derive(Clone)]
struct ConnService<S> {
    stack: S,
    peer: SocketAddr,
    local: SocketAddr,
    inspector: SharedInspector,
    /// The connection's own counters and its generation.
    state: Arc<ConnState>,
    // The connection's slot under `max_connections`: held by hyper's connection
    // (which owns this service) and by any tunnel the connection turns into.
    slot: Arc<Slot>,
    /// HTTP/2 connections only: what ends an idle or used-up connection.
    h2: Option<Arc<H2State>>,
}

/// One connection's state. Its requests' futures hold it (not the generation
/// shared by every connection, whose reference count would bounce between cores).
struct ConnState {
    generation: Arc<Generation>,
    /// Requests received on this connection so far.
    served: std::sync::atomic::AtomicU64,
    opened: tokio::time::Instant,
}

/// What an HTTP/2 connection's service tells its driver.
#[derive(Default)]
struct H2State {
    /// Streams whose response is not finished yet (head waited for or body
    /// being sent).
    open: std::sync::atomic::AtomicUsize,
    /// Woken at each request, for the per-connection request limit.
    request_seen: tokio::sync::Notify,
    /// The response bodies being sent, each with when it last handed hyper a
    /// frame that hyper has not come back for.
    bodies: std::sync::Mutex<Vec<std::sync::Weak<std::sync::atomic::AtomicU64>>>,
}

impl H2State {
    /// A clock for a new response body.
    fn body_clock(&self) -> Arc<std::sync::atomic::AtomicU64> {
        let clock = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut bodies = self
            .bodies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        bodies.retain(|w| w.strong_count() > 0);
        bodies.push(Arc::downgrade(&clock));
        clock
    }

    /// Whether a body has waited `limit` for hyper to take its next frame (the
    /// client's flow-control window stays shut). Times are milliseconds since
    /// `base`, plus one.
    fn stalled(&self, base: tokio::time::Instant, limit: Duration) -> bool {
        let now = millis_since(base);
        let limit = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
        let mut bodies = self
            .bodies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        bodies.retain(|w| w.strong_count() > 0);
        bodies.iter().filter_map(std::sync::Weak::upgrade).any(|c| {
            let since = c.load(std::sync::atomic::Ordering::Relaxed);
            since != 0 && now.saturating_sub(since) >= limit
        })
    }
}

/// Milliseconds since `base`, plus one (0 stays "not waiting").
fn millis_since(base: tokio::time::Instant) -> u64 {
    u64::try_from(base.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .saturating_add(1)
}

/// Counts an HTTP/2 stream as open until its response body is done (dropped).
struct OpenStream(Option<Arc<H2State>>);

impl OpenStream {
    fn new(state: Option<&Arc<H2State>>) -> Self {
        if let Some(s) = state {
            s.open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            s.request_seen.notify_one();
        }
        Self(state.cloned())
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        if let Some(s) = &self.0 {
            s.open.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its HTTP/2 stream counted as open, and notes
    /// when it handed hyper a frame that hyper has not come back for (nothing
    /// for HTTP/1).
    struct Tracked<B> {
        #[pin]
        inner: B,
        _open: OpenStream,
        clock: Option<(Arc<std::sync::atomic::AtomicU64>, tokio::time::Instant)>,
    }
}

impl<B: Body> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let Some((clock, base)) = this.clock else {
            return this.inner.poll_frame(cx);
        };
        // Polled again: hyper took the last frame.
        clock.store(0, std::sync::atomic::Ordering::Relaxed);
        let polled = this.inner.poll_frame(cx);
        if let std::task::Poll::Ready(Some(Ok(_))) = &polled {
            clock.store(millis_since(*base), std::sync::atomic::Ordering::Relaxed);
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

type ConnFuture<B> = Pin<
    Box<dyn Future<Output = Result<Response<Either<Tracked<B>, ErrorBody>>, Infallible>> + Send>,
>;

impl<S, B> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<Either<Tracked<B>, ErrorBody>>;
    type Error = Infallible;
    type Future = ConnFuture<B>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        if req.version() < http::Version::HTTP_2 {
            // Only a rejection is passed on: an `Ok` verdict would cost an
            // extension allocation per request and tell the guard nothing.
            if let Some(v @ RawHeadVerdict::Bad { .. }) = self.inspector.next_verdict() {
                req.extensions_mut().insert(v);
            }
        }
        req.extensions_mut().insert(PeerAddr(self.peer));
        req.extensions_mut().insert(LocalAddr(self.local));
        let may_upgrade = req.headers().contains_key(http::header::UPGRADE);
        if may_upgrade {
            req.extensions_mut()
                .insert(ConnectionSlot::new(self.slot.clone()));
        }
        let limits = &self.state.generation.limits;
        if let Some(cause) = check_limits(&req, limits) {
            let res = ErrorResponse::for_request(cause, &req)
                .build()
                .map(Either::Right);
            return Box::pin(std::future::ready(Ok(res)));
        }
        // An HTTP/1.1 connection that served its share, lived its time or whose
        // listener was handed over is closed after this response (HTTP/2 gets a
        // GOAWAY from its driver instead).
        let n = self
            .state
            .served
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .saturating_add(1);
        let h1 = req.version() < http::Version::HTTP_2;
        let last = h1
            && ((limits.max_requests_per_connection > 0
                && n >= limits.max_requests_per_connection)
                || (!limits.max_connection_lifetime.is_zero()
                    && self.state.opened.elapsed() >= limits.max_connection_lifetime));
        let stack = self.stack.clone();
        let inspector = may_upgrade.then(|| self.inspector.clone());
        let open = OpenStream::new(self.h2.as_ref());
        // Read when the response is ready: a listener handed over while the
        // request was in flight closes the connection after it.
        let conn = h1.then(|| self.state.clone());
        let h2 = self.h2.clone();
        let opened = self.state.opened;
        Box::pin(async move {
            let mut res = stack.oneshot(req).await?;
            let close =
                last || conn.is_some_and(|c| {
                    c.generation
                        .draining
                        .load(std::sync::atomic::Ordering::Relaxed)
                }) || (h1
                    && res
                        .extensions()
                        .get::<portcullis_core::CloseConnection>()
                        .is_some());
            if close && res.status() != http::StatusCode::SWITCHING_PROTOCOLS {
                res.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
            }
            if res.status() == http::StatusCode::SWITCHING_PROTOCOLS {
                // Tunnel bytes follow: they are not HTTP requests.
                if let Some(inspector) = inspector {
                    inspector.stop();
                }
            }
            let clock = h2.map(|s| (s.body_clock(), opened));
            Ok(res.map(|inner| {
                Either::Left(Tracked {
                    inner,
                    _open: open,
                    clock,
                })
            }))
        })
    }
}

fn check_limits<B>(req: &Request<B>, limits: &ListenerLimits) -> Option<Cause> {
    let uri_len = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len())
        + req.uri().authority().map_or(0, |a| a.as_str().len());
    if uri_len > limits.max_uri_bytes {
        return Some(Cause::UriTooLong);
    }
    let headers = req.headers();
    if headers.len() > limits.max_headers {
        return Some(Cause::HeadersTooLarge);
    }
    let bytes: usize = headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum();
    if bytes > limits.max_header_bytes {
        return Some(Cause::HeadersTooLarge);
    }
    None
}
