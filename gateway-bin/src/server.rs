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
    /// How long an idle keep-alive connection is kept between requests.
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
    /// Drain deadline after a shutdown signal.
    pub shutdown_timeout: Duration,
    /// Requests served on one HTTP/1.1 connection before it is closed (the last
    /// response says `Connection: close`); 0 = no limit.
    pub max_requests_per_connection: u64,
    /// Age after which an HTTP/1.1 connection is closed after its current
    /// response; zero = no limit.
    pub max_connection_lifetime: Duration,
}

/// Serves `stack` on `listener` until `shutdown` resolves, then drains in-flight
/// requests for up to `limits.shutdown_timeout`.
pub async fn serve<S, B>(
    listener: TcpListener,
    stack: S,
    limits: ListenerLimits,
    shutdown: impl Future<Output = ()>,
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
    let frontend = Frontend::new();
    frontend.start(Arc::new(listener), stack, limits);
    shutdown.await;
    frontend.shutdown().await;
}

/// The proxy listener and its generations (R18). Each [`Frontend::start`] begins
/// a generation: an accept loop with its own stack and limits, on a new socket or
/// on the one the previous generation used. The previous generation then stops
/// accepting and drains softly: its HTTP/1.1 connections answer the request in
/// flight and the next one with `Connection: close` (an idle one closes at its
/// keep-alive timeout, so no request racing a close is lost), its HTTP/2
/// connections get a GOAWAY. [`Frontend::shutdown`] drains every generation
/// hard, up to each one's `shutdown_timeout`.
pub struct Frontend {
    shutdown: watch::Sender<bool>,
    state: std::sync::Mutex<FrontState>,
}

#[derive(Default)]
struct FrontState {
    /// The generation accepting connections: its socket and its hand-over signal.
    current: Option<(Arc<TcpListener>, watch::Sender<bool>)>,
    /// Every generation's task; finished ones are pruned at each start.
    tasks: Vec<tokio::task::JoinHandle<()>>,
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

    /// Starts a generation serving `stack` on `listener` with `limits`; the
    /// previous one (if any) stops accepting and drains softly. The new one
    /// accepts before the old one lets its socket go.
    pub fn start<S, B>(&self, listener: Arc<TcpListener>, stack: S, limits: ListenerLimits)
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
        if *self.shutdown.borrow() {
            // Shutting down: a reload racing it starts nothing.
            return;
        }
        let (handover_tx, handover_rx) = watch::channel(false);
        let task = tokio::spawn(run_generation(
            listener.clone(),
            stack,
            Arc::new(limits),
            handover_rx,
            self.shutdown.subscribe(),
        ));
        let mut state = self.state();
        state.tasks.retain(|t| !t.is_finished());
        state.tasks.push(task);
        if let Some((_, old)) = state.current.replace((listener, handover_tx)) {
            let _ = old.send(true);
        }
    }

    /// Stops every generation: no more accepts, every connection drained (HTTP/1.1
    /// `Connection: close` or closed when idle, HTTP/2 GOAWAY), in-flight requests
    /// given up to their generation's `shutdown_timeout`.
    pub async fn shutdown(&self) {
        let _ = self.shutdown.send(true);
        let tasks = {
            let mut state = self.state();
            state.current = None;
            std::mem::take(&mut state.tasks)
        };
        for t in tasks {
            let _ = t.await;
        }
    }
}

/// How a generation's connections are asked to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drain {
    Run,
    /// Handed over: HTTP/1.1 closes after its next response, HTTP/2 gets GOAWAY.
    Soft,
    /// Shutting down: idle HTTP/1.1 connections close now as well.
    Hard,
}

/// What every connection of a generation shares.
struct Generation {
    limits: ListenerLimits,
    /// Set once the generation is handed over: responses say `Connection: close`.
    draining: std::sync::atomic::AtomicBool,
}

/// One generation's accept loop, then its drain.
async fn run_generation<S, B>(
    listener: Arc<TcpListener>,
    stack: S,
    limits: Arc<ListenerLimits>,
    mut handover: watch::Receiver<bool>,
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
    });
    let shed_response = shed_response();
    let builders = Arc::new(Builders::new(&limits));
    let slots = Arc::new(Semaphore::new(limits.max_connections));
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
            generation: generation.clone(),
            slot: Arc::new(permit),
            served: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            opened: tokio::time::Instant::now(),
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

    let handed_over = loop {
        // Take a slot before accepting, so excess connections wait in the kernel's
        // backlog; past `connection_wait`, shed the oldest one waiting.
        let permit = tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => break false,
            _ = handover.wait_for(|h| *h) => break true,
            p = tokio::time::timeout(limits.connection_wait, slots.clone().acquire_owned()) => p,
        };
        let permit = match permit {
            Ok(Ok(p)) => Some(p),
            Ok(Err(_)) => break false,
            Err(_) => None,
        };
        let accepted = tokio::select! {
            biased;
            _ = shutdown.wait_for(|s| *s) => break false,
            _ = handover.wait_for(|h| *h) => break true,
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
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if handed_over {
        // The next generation accepts on its own socket or on this one. When this
        // socket is about to close (its address changed), the connections the
        // kernel already queued on it are taken first: closing would reset them.
        if Arc::strong_count(&listener) == 1 {
            while let Some(Ok((stream, peer))) = listener.accept().now_or_never() {
                accept_one(stream, peer, None);
            }
        }
        drop(listener);
        generation
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = drain_tx.send(Drain::Soft);
        let open = limits.max_connections - slots.available_permits();
        tracing::info!(
            open_connections = open,
            "listener handed over; its connections close after their next response"
        );
        // Every connection holds a slot until it ends: all slots back means all
        // closed. A shutdown meanwhile drains what is left hard.
        tokio::select! {
            _ = slots.acquire_many(all) => return,
            _ = shutdown.wait_for(|s| *s) => {}
        }
    } else {
        drop(listener);
    }
    let open = limits.max_connections - slots.available_permits();
    tracing::info!(
        open_connections = open,
        "shutting down, draining in-flight requests"
    );
    let _ = drain_tx.send(Drain::Hard);
    if tokio::time::timeout(limits.shutdown_timeout, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("shutdown deadline passed, closing remaining connections");
    }
}

/// The raw answer to a connection shed at the connection limit, made once at
/// start-up: the gateway's `overloaded` error (R6 shape) with `Retry-After`.
fn shed_response() -> Bytes {
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
fn shed(stream: TcpStream, response: &[u8]) {
    let _ = stream.try_write(response);
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
        let limits = &svc.generation.limits;
        let (lifetime, max_requests, idle) = (
            limits.max_connection_lifetime,
            limits.max_requests_per_connection,
            limits.keepalive_timeout,
        );
        let state = Arc::new(H2State::default());
        let served = svc.served.clone();
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
        let done = tokio::select! {
            res = conn.as_mut() => Some(res),
            _ = drain.wait_for(|d| *d != Drain::Run) => None,
            () = lifetime => None,
            () = used_up => None,
            () = idle => None,
        };
        match done {
            Some(res) => res,
            None => {
                conn.as_mut().graceful_shutdown();
                conn.await
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
            drain: Some(Box::pin(async move {
                let _ = drain.wait_for(|d| *d == Drain::Hard).await;
            })),
            peer,
        });
        return;
    };
    if let Err(error) = result {
        tracing::debug!(%error, peer_addr = %peer, "connection ended with an error");
    }
}

pin_project_lite::pin_project! {
    /// Drives an HTTP/1 connection to its end; once the drain signal fires, asks it
    /// to finish the request in flight and close (idle connections close at once).
    struct DriveH1<C> {
        #[pin]
        conn: C,
        drain: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
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
        if let Some(drain) = this.drain.as_mut() {
            if drain.as_mut().poll(cx).is_ready() {
                *this.drain = None;
                this.conn.as_mut().graceful_shutdown();
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
    generation: Arc<Generation>,
    // The connection's slot under `max_connections`: held by hyper's connection
    // (which owns this service) and by any tunnel the connection turns into.
    slot: Arc<OwnedSemaphorePermit>,
    /// Requests received on this connection so far.
    served: Arc<std::sync::atomic::AtomicU64>,
    opened: tokio::time::Instant,
    /// HTTP/2 connections only: what ends an idle or used-up connection.
    h2: Option<Arc<H2State>>,
}

/// What an HTTP/2 connection's service tells its driver.
#[derive(Default)]
struct H2State {
    /// Streams whose response head is not sent yet.
    open: std::sync::atomic::AtomicUsize,
    /// Woken at each request, for the per-connection request limit.
    request_seen: tokio::sync::Notify,
}

/// Counts an HTTP/2 stream as open until its response head is ready.
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

type ConnFuture<B> =
    Pin<Box<dyn Future<Output = Result<Response<Either<B, ErrorBody>>, Infallible>> + Send>>;

impl<S, B> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: Body<Data = Bytes> + Send + 'static,
{
    type Response = Response<Either<B, ErrorBody>>;
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
        let limits = &self.generation.limits;
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
            .served
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            .saturating_add(1);
        let h1 = req.version() < http::Version::HTTP_2;
        let last = h1
            && ((limits.max_requests_per_connection > 0
                && n >= limits.max_requests_per_connection)
                || (!limits.max_connection_lifetime.is_zero()
                    && self.opened.elapsed() >= limits.max_connection_lifetime));
        let stack = self.stack.clone();
        let inspector = may_upgrade.then(|| self.inspector.clone());
        let open = OpenStream::new(self.h2.as_ref());
        // Read when the response is ready: a listener handed over while the
        // request was in flight closes the connection after it.
        let generation = h1.then(|| self.generation.clone());
        Box::pin(async move {
            let _open = open;
            let mut res = stack.oneshot(req).await?;
            let close = last
                || generation
                    .is_some_and(|g| g.draining.load(std::sync::atomic::Ordering::Relaxed))
                || (h1
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
            Ok(res.map(Either::Left))
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
