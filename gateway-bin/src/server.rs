//! The client-facing listener: hyper-util's server driven directly, with a
//! connection cap, header limits, timeouts and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::{BodyExt, Either};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use portcullis_core::{Cause, ErrorBody, ErrorResponse, LocalAddr, PeerAddr};
use portcullis_proxy::BoxError;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::{Service, ServiceExt};

use crate::io::{InspectedIo, SharedInspector};

/// Listener limits, from `[server]`.
#[derive(Debug, Clone)]
pub struct ListenerLimits {
    /// Connections served at once.
    pub max_connections: usize,
    /// How long an excess connection may wait for a slot.
    pub connection_wait: Duration,
    /// Header read timeout (also the keep-alive idle timeout).
    pub header_timeout: Duration,
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
    let limits = Arc::new(limits);
    let builder = builder(&limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);

    loop {
        // Take a slot before accepting, so excess connections wait in the kernel's
        // backlog; past `connection_wait`, shed the oldest one waiting.
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            p = tokio::time::timeout(limits.connection_wait, slots.clone().acquire_owned()) => p,
        };
        let permit = match permit {
            Ok(Ok(p)) => Some(p),
            Ok(Err(_)) => break,
            Err(_) => None,
        };
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            a = listener.accept() => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(error) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(permit) = permit else {
            tracing::warn!(peer_addr = %peer, max_connections = limits.max_connections, "connection limit reached, closing connection");
            drop(stream);
            continue;
        };
        let local = stream.local_addr().unwrap_or(peer);
        let _ = stream.set_nodelay(true);
        let inspector = SharedInspector::new(limits.max_header_bytes + limits.max_uri_bytes + 1024);
        let svc = ConnService {
            stack: stack.clone(),
            peer,
            local,
            inspector: inspector.clone(),
            limits: limits.clone(),
        };
        let io = TokioIo::new(InspectedIo::new(stream, Some(inspector)));
        let conn = builder.serve_connection_with_upgrades(io, svc).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(error) = conn.await {
                tracing::debug!(error = %error, peer_addr = %peer, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    let open = graceful.count();
    tracing::info!(
        open_connections = open,
        "shutting down, draining in-flight requests"
    );
    if tokio::time::timeout(limits.shutdown_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("shutdown deadline passed, closing remaining connections");
    }
}

fn builder(limits: &ListenerLimits) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    // hyper's own limits sit just above ours, so that our checks answer with the
    // gateway's error shape and hyper's bare 431/414 remain a backstop.
    let buf = (limits.max_header_bytes + limits.max_uri_bytes + 4096).max(8192);
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(buf)
        .max_headers(limits.max_headers + 1)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(buf).unwrap_or(u32::MAX))
        .max_concurrent_streams(256)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    if limits.http2 { b } else { b.http1_only() }
}

/// The per-connection service: sets the connection's request extensions, applies
/// the header and URI limits, then calls the shared stack.
#[derive(Clone)]
struct ConnService<S> {
    stack: S,
    peer: SocketAddr,
    local: SocketAddr,
    inspector: SharedInspector,
    limits: Arc<ListenerLimits>,
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
            if let Some(v) = self.inspector.next_verdict() {
                req.extensions_mut().insert(v);
            }
        }
        req.extensions_mut().insert(PeerAddr(self.peer));
        req.extensions_mut().insert(LocalAddr(self.local));
        if let Some(cause) = check_limits(&req, &self.limits) {
            let res = ErrorResponse::for_request(cause, &req)
                .build()
                .map(Either::Right);
            return Box::pin(std::future::ready(Ok(res)));
        }
        let stack = self.stack.clone();
        Box::pin(async move {
            let res = stack.oneshot(req).await?;
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

/// Boxes a response body for the router's uniform type.
pub fn box_body<B>(b: B) -> crate::routes::BoxBody
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    b.map_err(Into::into).boxed_unsync()
}
