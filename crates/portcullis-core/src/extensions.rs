//! Request extensions that layers hand to each other.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// The TCP peer of the client connection, set by the listener.
///
/// In a plain axum app, set it from `ConnectInfo<SocketAddr>` with a small
/// middleware (see `portcullis-forwarded`'s docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

/// The client's IP address as far as the gateway can tell: the TCP peer, or the
/// address a trusted proxy put in `X-Forwarded-For` (canonical: IPv4-mapped IPv6
/// as IPv4).
///
/// Set by `portcullis-forwarded`'s `ForwardedLayer`, which alone decides which
/// peers are trusted proxies; layers that key on the client (rate limits) read it,
/// and fall back to [`PeerAddr`] when it is absent — never to a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub std::net::IpAddr);

/// On a response: the client connection must close after it (its request body
/// was not read to the end, say). The listener answers with `Connection: close`;
/// a header set by an inner layer would not survive hop-by-hop removal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CloseConnection;

/// The local address the client connected to, set by the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddr(pub SocketAddr);

/// Marks a request that arrived over TLS, set by the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tls;

/// The route that matched the request: its name and its template (`/droplets/{id}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedRoute {
    /// The route's configured name.
    pub name: Arc<str>,
    /// The path template, safe to use as a metric label.
    pub template: Arc<str>,
}

/// The service the request is routed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceName(pub Arc<str>);

impl ServiceName {
    /// A service name.
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self(name.into())
    }
}

/// The authenticated identity of the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity(pub Arc<str>);

/// The upstream endpoint the request was sent to, set by the balancer or proxy.
///
/// Also put in the response extensions so logs can name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectedEndpoint {
    /// The endpoint's id (its authority when it has no registered id).
    pub id: Arc<str>,
}

/// A share of the client connection's slot under the listener's connection limit.
///
/// The listener puts one in the extensions of requests that may switch protocols;
/// a proxy that tunnels the connection after a 101 keeps it for the tunnel's life,
/// so upgraded connections still count against the limit and are waited for on
/// shutdown. The slot is freed when the last share is dropped.
#[derive(Clone)]
pub struct ConnectionSlot {
    // Never read: holding it is the point.
    _guard: Arc<dyn std::any::Any + Send + Sync>,
}

impl ConnectionSlot {
    /// A share of `guard` (whatever keeps the slot taken while it lives).
    pub fn new(guard: Arc<dyn std::any::Any + Send + Sync>) -> Self {
        Self { _guard: guard }
    }
}

impl std::fmt::Debug for ConnectionSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionSlot").finish_non_exhaustive()
    }
}

/// How long the upstream took to send its response head, measured by the proxy
/// from sending the request to receiving the status line and headers.
///
/// A response extension: the proxy inserts it into the responses it forwards so
/// that access logs, metrics and `Server-Timing` outside the router can tell the
/// upstream's share of a request's time from the gateway's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamDuration(pub Duration);
